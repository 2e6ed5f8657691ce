//! The TCP stack every unikernel runs (smoltcp, with the one change in
//! `third_party/smoltcp`) must send again a byte its peer dropped for a full
//! receive buffer once the peer opens its window. Without the change a
//! window update stops the zero-window probe timer and leaves the socket
//! with no timer at all: both ends wait forever, which is how an app's echo
//! through zedrouter lost its last byte under load.

mod support;

use std::net::Ipv4Addr;

use appnet::{Duration, EthernetAddress, Ipv4Cidr};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetFrame, EthernetProtocol, EthernetRepr, IpProtocol,
    Ipv4Packet, Ipv4Repr, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber,
};
use support::{Host, START};

const APP_MAC: EthernetAddress = EthernetAddress([0x02, 0xaa, 0, 0, 0, 1]);
const APP_IP: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 2);
const PEER_MAC: EthernetAddress = EthernetAddress([0x02, 0xaa, 0, 0, 0, 2]);
const PEER_IP: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 3);
const PEER_PORT: u16 = 7;
const APP_PORT: u16 = 40_000;
const PEER_ISN: TcpSeqNumber = TcpSeqNumber(5_000);

/// The peer, scripted by hand: what the app sent, and frames to send it.
struct Peer {
    seen: Vec<TcpRepr<'static>>,
    payloads: Vec<Vec<u8>>,
}

impl Peer {
    /// Takes every frame the app sent: answers ARP, keeps TCP segments.
    fn take(&mut self, app: &mut Host) {
        while let Some(frame) = app.device.tx.pop_front() {
            let eth = EthernetFrame::new_checked(&frame[..]).expect("an Ethernet frame");
            match eth.ethertype() {
                EthernetProtocol::Arp => {
                    let arp = ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).unwrap())
                        .expect("an ARP packet");
                    if let ArpRepr::EthernetIpv4 {
                        operation: ArpOperation::Request,
                        source_hardware_addr,
                        source_protocol_addr,
                        ..
                    } = arp
                    {
                        let reply = ArpRepr::EthernetIpv4 {
                            operation: ArpOperation::Reply,
                            source_hardware_addr: PEER_MAC,
                            source_protocol_addr: PEER_IP,
                            target_hardware_addr: source_hardware_addr,
                            target_protocol_addr: source_protocol_addr,
                        };
                        let mut bytes = vec![0; 14 + reply.buffer_len()];
                        let mut out = EthernetFrame::new_unchecked(&mut bytes[..]);
                        EthernetRepr {
                            src_addr: PEER_MAC,
                            dst_addr: source_hardware_addr,
                            ethertype: EthernetProtocol::Arp,
                        }
                        .emit(&mut out);
                        reply.emit(&mut ArpPacket::new_unchecked(out.payload_mut()));
                        app.device.rx.push_back(bytes);
                    }
                }
                EthernetProtocol::Ipv4 => {
                    let ip = Ipv4Packet::new_checked(eth.payload()).expect("an IPv4 packet");
                    assert_eq!(ip.next_header(), IpProtocol::Tcp);
                    let tcp = TcpPacket::new_checked(ip.payload()).expect("a TCP segment");
                    let repr = TcpRepr::parse(
                        &tcp,
                        &ip.src_addr().into(),
                        &ip.dst_addr().into(),
                        &ChecksumCapabilities::default(),
                    )
                    .expect("a valid TCP segment");
                    self.payloads.push(repr.payload.to_vec());
                    self.seen.push(TcpRepr {
                        payload: &[],
                        ..repr
                    });
                }
                other => panic!("unexpected ethertype {other}"),
            }
        }
    }

    /// A segment from the peer to the app.
    fn send(app: &mut Host, control: TcpControl, seq: TcpSeqNumber, ack: TcpSeqNumber, win: u16) {
        let tcp = TcpRepr {
            src_port: PEER_PORT,
            dst_port: APP_PORT,
            control,
            seq_number: seq,
            ack_number: Some(ack),
            window_len: win,
            window_scale: None,
            max_seg_size: (control == TcpControl::Syn).then_some(1460),
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: None,
            payload: &[],
        };
        let ip = Ipv4Repr {
            src_addr: PEER_IP,
            dst_addr: APP_IP,
            next_header: IpProtocol::Tcp,
            payload_len: tcp.buffer_len(),
            hop_limit: 64,
        };
        let mut bytes = vec![0; 14 + ip.buffer_len() + tcp.buffer_len()];
        let mut eth = EthernetFrame::new_unchecked(&mut bytes[..]);
        EthernetRepr {
            src_addr: PEER_MAC,
            dst_addr: APP_MAC,
            ethertype: EthernetProtocol::Ipv4,
        }
        .emit(&mut eth);
        let checksums = ChecksumCapabilities::default();
        let mut packet = Ipv4Packet::new_unchecked(eth.payload_mut());
        ip.emit(&mut packet, &checksums);
        tcp.emit(
            &mut TcpPacket::new_unchecked(packet.payload_mut()),
            &PEER_IP.into(),
            &APP_IP.into(),
            &checksums,
        );
        app.device.rx.push_back(bytes);
    }
}

#[test]
fn a_byte_dropped_for_a_full_window_is_sent_again_when_the_window_opens() {
    let mut now = START;
    let mut app = Host::fixed(APP_MAC, Ipv4Cidr::new(APP_IP, 24), None, now);
    let mut peer = Peer {
        seen: Vec::new(),
        payloads: Vec::new(),
    };
    let socket = app.tcp_socket();
    app.connect(socket, (PEER_IP, PEER_PORT), APP_PORT);

    // ARP, then the SYN.
    for _ in 0..3 {
        app.poll(now);
        peer.take(&mut app);
        now += Duration::from_millis(1);
    }
    let syn = *peer.seen.last().expect("the app's SYN");
    assert_eq!(syn.control, TcpControl::Syn);
    let data_seq = syn.seq_number + 1;

    // The peer accepts with room for four bytes; the app sends them.
    Peer::send(&mut app, TcpControl::Syn, PEER_ISN, data_seq, 4);
    app.poll(now);
    assert!(app.tcp(socket).may_send(), "the connection is open");
    assert_eq!(app.tcp(socket).send_slice(b"abcd"), Ok(4));
    now += Duration::from_millis(1);
    app.poll(now);
    peer.take(&mut app);
    let sent: Vec<u8> = peer.payloads.concat();
    assert_eq!(sent, b"abcd", "the app sent all four bytes");

    // The peer's buffer is full after three: it drops the fourth and
    // says so with a zero window, then opens the window 10 ms later.
    now += Duration::from_millis(1);
    Peer::send(&mut app, TcpControl::None, PEER_ISN + 1, data_seq + 3, 0);
    app.poll(now);
    now += Duration::from_millis(10);
    Peer::send(&mut app, TcpControl::None, PEER_ISN + 1, data_seq + 3, 1000);
    app.poll(now);

    // The fourth byte must come again, at its own sequence number.
    let before = peer.seen.len();
    let end = now + Duration::from_secs(10);
    while now < end {
        now += Duration::from_millis(50);
        app.poll(now);
        peer.take(&mut app);
    }
    let resent = peer.seen[before..]
        .iter()
        .zip(&peer.payloads[before..])
        .find(|(_, payload)| !payload.is_empty());
    let (segment, payload) = resent.expect("the dropped byte was never sent again");
    assert_eq!(segment.seq_number, data_seq + 3);
    assert_eq!(payload.as_slice(), b"d");
}
