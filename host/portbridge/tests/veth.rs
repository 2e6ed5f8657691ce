//! The bridge on a real interface (root only): one end of a veth pair is
//! bridged with a port socket this test connects to as QEMU would; the
//! other end, in a network namespace, is a packet socket this test reads
//! and writes. Frames pass both ways exactly; a frame longer than the
//! MTU is dropped and counted while the bridge keeps running; a NIC that
//! closes, or is replaced by a newer connection, is followed by the
//! next; the interface going away ends the bridge with its reason and
//! removes its socket.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

use harness::netns::VethNamespace;
use portbridge::{Bridge, PacketSocket, Received};
use portswitch::frame::{Deframer, framed};

const PATIENCE: Duration = Duration::from_secs(10);

fn frame(dst: [u8; 6], src: [u8; 6], payload_len: usize, fill: u8) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x88, 0xb5]);
    f.extend((0..payload_len).map(|i| fill.wrapping_add(i as u8)));
    f
}

const BROADCAST: [u8; 6] = [0xff; 6];
const PORT_MAC: [u8; 6] = [0x02, 0, 0x7e, 0, 1, 0];
const WIRE_MAC: [u8; 6] = [0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0x01];

/// Whether `wire` receives `expected` within [`PATIENCE`] (other frames,
/// such as the kernel's IPv6 chatter, are skipped).
fn wire_gets(wire: &PacketSocket, expected: &[u8]) -> bool {
    let deadline = Instant::now() + PATIENCE;
    let mut buf = vec![0; 70_000];
    while Instant::now() < deadline {
        match wire.receive(&mut buf) {
            Ok(Received::Frame(n)) if buf[..n] == *expected => return true,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => sleep(Duration::from_millis(5)),
            Err(e) => panic!("reading the wire: {e}"),
        }
    }
    false
}

/// A NIC on the port's socket, as QEMU's stream netdev is.
struct Nic {
    stream: UnixStream,
    deframer: Deframer,
}

impl Nic {
    fn connect(socket: &Path) -> Nic {
        let stream = UnixStream::connect(socket).expect("the bridge listens");
        stream
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        Nic {
            stream,
            deframer: Deframer::default(),
        }
    }

    fn send(&mut self, frame: &[u8]) {
        self.stream.write_all(&framed(frame)).unwrap();
    }

    /// Whether `expected` arrives within [`PATIENCE`]; `None` if the
    /// bridge closed the connection.
    fn gets(&mut self, expected: &[u8]) -> Option<bool> {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            while let Some(f) = self.deframer.next_frame().unwrap() {
                if f == expected {
                    return Some(true);
                }
            }
            match self.stream.read(self.deframer.spare()) {
                Ok(0) => return None,
                Ok(n) => self.deframer.filled(n),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return None,
                Err(e) => panic!("reading the port: {e}"),
            }
        }
        Some(false)
    }
}

fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        sleep(Duration::from_millis(20));
    }
}

#[test]
fn frames_cross_between_a_port_socket_and_a_veth_both_ways() {
    let segment = VethNamespace::create(None).expect("a namespace and a veth pair");
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("device-eth1.sock");
    let bridge = Bridge::start("eth1", &socket, &segment.outer).expect("the bridge");
    let inner = segment.inner.clone();
    let wire = segment
        .run_inside(move || PacketSocket::open(&inner))
        .unwrap()
        .expect("a packet socket inside the namespace");
    assert_eq!(wire.mtu(), 1500);

    let mut nic = Nic::connect(&socket);
    let out = frame(WIRE_MAC, PORT_MAC, 100, 1);
    nic.send(&out);
    assert!(wire_gets(&wire, &out), "the port's frame reached the wire");
    let back = frame(BROADCAST, WIRE_MAC, 1486, 2);
    wire.send(&back).unwrap();
    assert_eq!(
        nic.gets(&back),
        Some(true),
        "the wire's frame reached the port"
    );

    // Longer than the MTU: dropped and counted, and the bridge goes on.
    nic.send(&frame(WIRE_MAC, PORT_MAC, 1600, 3));
    let after = frame(WIRE_MAC, PORT_MAC, 1500, 4);
    nic.send(&after);
    assert!(
        wire_gets(&wire, &after),
        "a full-size frame after it passed"
    );
    let stats = bridge.stats();
    assert_eq!(stats.too_big_for_wire, 1, "{stats:?}");
    assert!(stats.to_wire >= 2 && stats.from_wire >= 1, "{stats:?}");

    // The NIC goes and comes back.
    drop(nic);
    let mut nic = Nic::connect(&socket);
    let again = frame(BROADCAST, WIRE_MAC, 60, 5);
    until("the new connection is taken", || {
        bridge.stats().connections == 2
    });
    wire.send(&again).unwrap();
    assert_eq!(nic.gets(&again), Some(true), "after a reconnection");

    // A newer connection replaces the older one.
    let mut newer = Nic::connect(&socket);
    until("the newer connection is taken", || {
        bridge.stats().connections == 3
    });
    assert_eq!(nic.gets(&[]), None, "the older connection was closed");
    let latest = frame(WIRE_MAC, PORT_MAC, 80, 6);
    newer.send(&latest);
    assert!(wire_gets(&wire, &latest), "the newer connection's frame");
    assert_eq!(bridge.ended(), None);

    // The interface goes away: the bridge ends, saying why.
    let deleted = std::process::Command::new("ip")
        .args(["link", "del", &segment.outer])
        .status()
        .unwrap();
    assert!(deleted.success());
    until("the bridge ends", || bridge.ended().is_some());
    let reason = bridge.ended().unwrap();
    assert!(reason.contains("went away"), "{reason}");
    assert!(!socket.exists(), "its socket was removed");
    assert_eq!(newer.gets(&[]), None, "its NIC's connection was closed");
}

#[test]
fn a_missing_interface_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("device-eth1.sock");
    let error = Bridge::start("eth1", &socket, "evenosuchif0")
        .err()
        .expect("no bridge on a missing interface")
        .to_string();
    assert!(
        error.contains("no network interface evenosuchif0"),
        "{error}"
    );
    assert!(!socket.exists());
}
