//! Ethernet frames built by hand, checksums right unless a scenario wants
//! them wrong, and a hostile mix of them: what a misbehaving app may send.

use std::net::Ipv4Addr;

pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const BROADCAST: [u8; 6] = [0xff; 6];

/// A MAC address from its text form (`02:16:3e:00:00:01`).
pub fn mac_bytes(text: &str) -> [u8; 6] {
    let mut out = [0u8; 6];
    for (byte, part) in out.iter_mut().zip(text.split(':')) {
        *byte = u8::from_str_radix(part, 16).unwrap();
    }
    out
}

pub fn ethernet(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An ARP packet for Ethernet and IPv4 (`op` 1 request, 2 reply).
pub fn arp(op: u16, sender: ([u8; 6], Ipv4Addr), target: ([u8; 6], Ipv4Addr)) -> Vec<u8> {
    let mut p = vec![0, 1, 0x08, 0x00, 6, 4];
    p.extend_from_slice(&op.to_be_bytes());
    p.extend_from_slice(&sender.0);
    p.extend_from_slice(&sender.1.octets());
    p.extend_from_slice(&target.0);
    p.extend_from_slice(&target.1.octets());
    p
}

fn sum(data: &[u8], mut acc: u32) -> u32 {
    for pair in data.chunks(2) {
        let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
        acc += u32::from(word);
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// An IPv4 packet; `frag` is the flags-and-offset field.
pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, id: u16, frag: u16, body: &[u8]) -> Vec<u8> {
    let mut p = vec![0x45, 0];
    p.extend_from_slice(&((20 + body.len()) as u16).to_be_bytes());
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&frag.to_be_bytes());
    p.extend_from_slice(&[64, proto, 0, 0]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    let checksum = fold(sum(&p, 0));
    p[10..12].copy_from_slice(&checksum.to_be_bytes());
    p.extend_from_slice(body);
    p
}

fn l4_checksum(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, segment: &[u8]) -> u16 {
    let mut pseudo = Vec::with_capacity(12);
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&[0, proto]);
    pseudo.extend_from_slice(&(segment.len() as u16).to_be_bytes());
    fold(sum(segment, sum(&pseudo, 0)))
}

pub fn udp(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), payload: &[u8]) -> Vec<u8> {
    let mut s = Vec::with_capacity(8 + payload.len());
    s.extend_from_slice(&src.1.to_be_bytes());
    s.extend_from_slice(&dst.1.to_be_bytes());
    s.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    s.extend_from_slice(&[0, 0]);
    s.extend_from_slice(payload);
    let checksum = l4_checksum(src.0, dst.0, 17, &s);
    s[6..8].copy_from_slice(&checksum.to_be_bytes());
    ipv4(src.0, dst.0, 17, 1, 0, &s)
}

pub fn tcp(
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    flags: u8,
    seq: u32,
    payload: &[u8],
) -> Vec<u8> {
    let mut s = Vec::with_capacity(20 + payload.len());
    s.extend_from_slice(&src.1.to_be_bytes());
    s.extend_from_slice(&dst.1.to_be_bytes());
    s.extend_from_slice(&seq.to_be_bytes());
    s.extend_from_slice(&0u32.to_be_bytes());
    s.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    s.extend_from_slice(payload);
    let checksum = l4_checksum(src.0, dst.0, 6, &s);
    s[16..18].copy_from_slice(&checksum.to_be_bytes());
    ipv4(src.0, dst.0, 6, 2, 0, &s)
}

/// An ICMP echo request.
pub fn ping(src: Ipv4Addr, dst: Ipv4Addr, id: u16) -> Vec<u8> {
    let mut m = vec![8, 0, 0, 0];
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes());
    m.extend_from_slice(b"netscen!");
    let checksum = fold(sum(&m, 0));
    m[2..4].copy_from_slice(&checksum.to_be_bytes());
    ipv4(src, dst, 1, 3, 0, &m)
}

/// Whether `frame` is an ICMP echo reply with identifier `id`.
pub fn is_echo_reply(frame: &[u8], id: u16) -> bool {
    frame.len() >= 14 + 20 + 8
        && frame[12..14] == ETHERTYPE_IPV4.to_be_bytes()
        && frame[14 + 9] == 1
        && frame[34] == 0
        && frame[38..40] == id.to_be_bytes()
}

/// A small deterministic generator (xorshift64), so a failing mix can be
/// replayed from its seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// Who the hostile app is and whom it aims at.
pub struct Aim {
    pub mac: [u8; 6],
    pub ip: Ipv4Addr,
    pub gateway: Ipv4Addr,
    pub gateway_mac: [u8; 6],
    /// Another app of the instance.
    pub victim: Ipv4Addr,
}

/// One frame of the hostile mix: fuzzed Ethernet, IPv4, TCP, UDP, DHCP
/// and DNS, fragments, and floods of well-formed work (SYNs, DNS queries,
/// ARP). Most carry the app's own addresses, so they get past
/// anti-spoofing to the parsers behind it.
pub fn hostile(rng: &mut Rng, aim: &Aim) -> Vec<u8> {
    let me = aim.ip;
    let to = if rng.below(2) == 0 {
        aim.gateway
    } else {
        aim.victim
    };
    let eth = |payload: &[u8]| ethernet(aim.gateway_mac, aim.mac, ETHERTYPE_IPV4, payload);
    match rng.below(10) {
        // Any bytes at all, any length up to a jumbo frame.
        0 => {
            let len = rng.below(1600) as usize;
            rng.bytes(len)
        }
        // Ethernet with a random type (VLAN tags included) and body.
        1 => {
            let ethertype =
                [0x8100, 0x0806, 0x0800, 0x86dd, rng.next() as u16][rng.below(5) as usize];
            let len = rng.below(200) as usize;
            ethernet(aim.gateway_mac, aim.mac, ethertype, &rng.bytes(len))
        }
        // An IPv4 header with random bytes after the addresses are set.
        2 => {
            let len = rng.below(100) as usize;
            let mut p = ipv4(me, to, rng.next() as u8, 0, 0, &rng.bytes(len));
            let at = rng.below(20) as usize;
            p[at] = rng.next() as u8;
            eth(&p)
        }
        // TCP with random flags, ports and options-length.
        3 => {
            let len = rng.below(64) as usize;
            let mut p = tcp(
                (me, rng.next() as u16),
                (to, rng.next() as u16),
                rng.next() as u8,
                rng.next() as u32,
                &rng.bytes(len),
            );
            if rng.below(2) == 0 {
                p[32] = rng.next() as u8;
            }
            eth(&p)
        }
        4 => {
            let len = rng.below(512) as usize;
            eth(&udp(
                (me, rng.next() as u16),
                (to, rng.next() as u16),
                &rng.bytes(len),
            ))
        }
        // DHCP: a BOOTP request with random fields and options.
        5 => {
            let mut bootp = rng.bytes(236);
            bootp[0] = 1;
            bootp[28..34].copy_from_slice(&aim.mac);
            bootp.extend_from_slice(&[99, 130, 83, 99, 53, 1, 1 + rng.below(8) as u8]);
            let len = rng.below(64) as usize;
            bootp.extend_from_slice(&rng.bytes(len));
            let p = udp(
                (Ipv4Addr::UNSPECIFIED, 68),
                (Ipv4Addr::BROADCAST, 67),
                &bootp,
            );
            ethernet(BROADCAST, aim.mac, ETHERTYPE_IPV4, &p)
        }
        // DNS to the instance: random after a plausible header.
        6 => {
            let len = rng.below(300) as usize;
            let mut query = rng.bytes(12 + len);
            query[2] &= 0x7f;
            eth(&udp((me, 5353), (aim.gateway, 53), &query))
        }
        // Fragments with random offsets and more-fragments bits.
        7 => {
            let len = 8 * (1 + rng.below(60) as usize);
            let frag = (rng.next() as u16) & 0x3fff;
            eth(&ipv4(me, to, 17, rng.next() as u16, frag, &rng.bytes(len)))
        }
        // Floods of well-formed work: SYNs, DNS queries, ARP requests.
        8 => eth(&tcp(
            (me, rng.next() as u16),
            (to, 7),
            0x02,
            rng.next() as u32,
            &[],
        )),
        _ => {
            if rng.below(2) == 0 {
                let mut query = vec![rng.next() as u8, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
                query.extend_from_slice(b"\x05flood\x04test\x00\x00\x01\x00\x01");
                eth(&udp((me, 5353), (aim.gateway, 53), &query))
            } else {
                let mut arp = vec![0, 1, 8, 0, 6, 4, 0, 1];
                arp.extend_from_slice(&aim.mac);
                arp.extend_from_slice(&me.octets());
                arp.extend_from_slice(&[0; 6]);
                arp.extend_from_slice(&Ipv4Addr::new(10, 1, 0, rng.next() as u8).octets());
                ethernet(BROADCAST, aim.mac, ETHERTYPE_ARP, &arp)
            }
        }
    }
}
