//! The switch with plain sockets for peers: tagging both ways, ports
//! attached and detached while frames flow, fairness, a stuck app.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use portswitch::frame::{framed, tagged};
use portswitch::{Config, PortSwitch, Tag};

fn tag(n: u16) -> Tag {
    Tag::new(n).unwrap()
}

fn connect(path: &Path) -> UnixStream {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        match UnixStream::connect(path) {
            Ok(s) => {
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                return s;
            }
            Err(e) if Instant::now() < until => {
                let _ = e;
                thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("connecting {}: {e}", path.display()),
        }
    }
}

fn read_frame(stream: &mut UnixStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len)?;
    let mut frame = vec![0u8; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut frame)?;
    Ok(frame)
}

/// A frame from `src` (last MAC byte) carrying `payload`.
fn frame(src: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[2, 0, 0, 0, 0, src]);
    f.extend_from_slice(&[0x88, 0xb5]);
    f.extend_from_slice(payload);
    f
}

struct Setup {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    switch: PortSwitch,
}

fn setup(config: impl FnOnce(&mut Config)) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let mut cfg = Config::new(path.join("trunk.sock"));
    config(&mut cfg);
    let switch = PortSwitch::start(cfg).unwrap();
    Setup {
        _dir: dir,
        dir: path,
        switch,
    }
}

impl Setup {
    fn port(&self, n: u16) -> PathBuf {
        self.dir.join(format!("port{n}.sock"))
    }

    fn attach(&self, n: u16) -> UnixStream {
        self.switch.attach(tag(n), &self.port(n)).unwrap();
        connect(&self.port(n))
    }

    fn trunk(&self) -> UnixStream {
        connect(&self.dir.join("trunk.sock"))
    }

    /// Waits until the switch's counters satisfy `done`.
    fn wait(&self, mut done: impl FnMut(&portswitch::Stats) -> bool) -> portswitch::Stats {
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            let stats = self.switch.stats().unwrap();
            if done(&stats) || Instant::now() > until {
                return stats;
            }
            thread::sleep(Duration::from_millis(5));
        }
    }
}

#[test]
fn frames_carry_their_ports_tag_to_the_trunk_and_lose_it_on_the_way_back() {
    let s = setup(|_| {});
    let mut trunk = s.trunk();
    let mut app = s.attach(5);
    s.wait(|st| st.trunk.connected && st.ports[&tag(5)].connected);
    let hello = frame(5, b"to zedrouter");
    app.write_all(&framed(&hello)).unwrap();
    let got = read_frame(&mut trunk).unwrap();
    assert_eq!(framed(&got), tagged(&hello, tag(5))[..].to_vec());
    let back = frame(1, b"to the app");
    trunk.write_all(&tagged(&back, tag(5))).unwrap();
    assert_eq!(read_frame(&mut app).unwrap(), back);
    // No tag, or a tag nobody has: dropped and counted.
    trunk.write_all(&framed(&back)).unwrap();
    trunk.write_all(&tagged(&back, tag(6))).unwrap();
    let stats = s.wait(|st| st.trunk.unknown_tag == 1 && st.trunk.untagged == 1);
    assert_eq!((stats.trunk.untagged, stats.trunk.unknown_tag), (1, 1));
    assert_eq!(stats.ports[&tag(5)].to_trunk, 1);
    assert_eq!(stats.ports[&tag(5)].from_trunk, 1);
}

#[test]
fn ports_come_and_go_while_frames_flow() {
    let s = setup(|_| {});
    let mut trunk = s.trunk();
    let mut one = s.attach(1);
    one.write_all(&framed(&frame(1, b"first"))).unwrap();
    read_frame(&mut trunk).unwrap();
    let mut two = s.attach(2);
    two.write_all(&framed(&frame(2, b"second"))).unwrap();
    let got = read_frame(&mut trunk).unwrap();
    assert_eq!(&got[12..16], &[0x88, 0xa8, 0, 2]);
    s.switch.detach(tag(1)).unwrap();
    assert!(!s.port(1).exists(), "the socket goes with the port");
    assert!(s.switch.detach(tag(1)).is_err());
    trunk
        .write_all(&tagged(&frame(9, b"gone"), tag(1)))
        .unwrap();
    s.wait(|st| st.trunk.unknown_tag == 1);
    // The app's end sees the close.
    let mut buf = [0u8; 1];
    assert_eq!(one.read(&mut buf).unwrap_or(0), 0);
    // Attached again, a VM reconnects and frames flow.
    let mut again = s.attach(1);
    again.write_all(&framed(&frame(1, b"back"))).unwrap();
    let got = read_frame(&mut trunk).unwrap();
    assert_eq!(&got[12..16], &[0x88, 0xa8, 0, 1]);
    // Port 2 was never disturbed.
    trunk
        .write_all(&tagged(&frame(9, b"still"), tag(2)))
        .unwrap();
    assert_eq!(read_frame(&mut two).unwrap(), frame(9, b"still"));
    assert!(matches!(
        s.switch.attach(tag(2), &s.port(22)),
        Err(portswitch::AttachError::TagInUse(_))
    ));
    let file = s.dir.join("not-a-socket");
    std::fs::write(&file, b"keep me").unwrap();
    assert!(matches!(
        s.switch.attach(tag(3), &file),
        Err(portswitch::AttachError::NotASocket { .. })
    ));
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
}

#[test]
fn a_flooding_port_waits_its_turn() {
    let s = setup(|c| {
        c.trunk_queue = 64;
        c.budget = 4;
    });
    let mut trunk = s.trunk();
    let mut flood = s.attach(1);
    let mut quiet = s.attach(2);
    s.wait(|st| st.trunk.connected && st.ports.values().all(|p| p.connected));
    // Port 1 writes far more than the trunk takes; its writer blocks.
    let flooder = thread::spawn(move || {
        let f = framed(&frame(1, &[0u8; 1000]));
        for _ in 0..20_000 {
            if flood.write_all(&f).is_err() {
                break;
            }
        }
    });
    s.wait(|st| st.ports[&tag(1)].to_trunk >= 64);
    thread::sleep(Duration::from_millis(100));
    for i in 0..10u8 {
        quiet.write_all(&framed(&frame(2, &[i]))).unwrap();
    }
    // Reading the trunk now, port 2's frames come within the first few
    // turns, not after port 1's 20 000.
    let mut seen_quiet = 0;
    let mut position = 0;
    while seen_quiet < 10 {
        let f = read_frame(&mut trunk).unwrap();
        position += 1;
        if f[15] == 2 {
            seen_quiet += 1;
        }
        assert!(
            position < 1000,
            "port 2 starved: {seen_quiet} of 10 after {position} frames"
        );
    }
    drop(trunk);
    drop(s);
    let _ = flooder.join();
}

#[test]
fn an_app_that_does_not_read_loses_its_own_frames_only() {
    let s = setup(|c| c.port_queue = 8);
    let mut trunk = s.trunk();
    let _stuck = s.attach(1);
    let mut fine = s.attach(2);
    s.wait(|st| st.trunk.connected && st.ports.values().all(|p| p.connected));
    let big = frame(9, &[0u8; 60_000]);
    for _ in 0..200 {
        trunk.write_all(&tagged(&big, tag(1))).unwrap();
    }
    for i in 0..20u8 {
        trunk.write_all(&tagged(&frame(9, &[i]), tag(2))).unwrap();
    }
    for i in 0..20u8 {
        let got = read_frame(&mut fine);
        assert!(got.is_ok(), "{:?}", s.switch.stats());
        assert_eq!(got.unwrap(), frame(9, &[i]));
    }
    let stats = s.wait(|st| st.ports[&tag(1)].dropped_queue_full > 0);
    assert!(stats.ports[&tag(1)].dropped_queue_full > 0);
    assert_eq!(stats.ports[&tag(2)].from_trunk, 20);
}

#[test]
fn a_broken_length_drops_that_connection_only() {
    let s = setup(|_| {});
    let mut trunk = s.trunk();
    let mut bad = s.attach(1);
    let mut good = s.attach(2);
    s.wait(|st| st.trunk.connected && st.ports.values().all(|p| p.connected));
    bad.write_all(&u32::MAX.to_be_bytes()).unwrap();
    let stats = s.wait(|st| st.ports[&tag(1)].broken_streams == 1);
    assert!(!stats.ports[&tag(1)].connected);
    good.write_all(&framed(&frame(2, b"fine"))).unwrap();
    let got = read_frame(&mut trunk).unwrap();
    assert_eq!(&got[14..16], &[0, 2]);
    // Too short to be Ethernet: dropped, counted, connection kept.
    good.write_all(&framed(&[1, 2, 3])).unwrap();
    let stats = s.wait(|st| st.ports[&tag(2)].bad_frames == 1);
    assert!(stats.ports[&tag(2)].connected);
}
