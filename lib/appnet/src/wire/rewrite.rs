//! Changing packets in place: addresses and ports for NAT, TTL, MAC
//! addresses. Checksums are updated incrementally (RFC 1624), so a packet
//! that arrived with a bad transport checksum still has one: the engine
//! never vouches for bytes it did not check.

use core::net::Ipv4Addr;

use smoltcp::wire::EthernetAddress;
use wirebytes::be_u16_at;

use super::{Inner, Ip, L4, PROTO_TCP, PROTO_UDP};

/// Which end of a packet to rewrite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Src,
    Dst,
}

/// A one's complement checksum after one 16-bit word changed from `old`
/// to `new` (RFC 1624, equation 3).
fn adjust(check: u16, old: u16, new: u16) -> u16 {
    let sum = u32::from(!check) + u32::from(!old) + u32::from(new);
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

fn get16(frame: &[u8], at: usize) -> Option<u16> {
    be_u16_at(frame, at).ok()
}

fn put16(frame: &mut [u8], at: usize, value: u16) -> Option<()> {
    frame
        .get_mut(at..at + 2)?
        .copy_from_slice(&value.to_be_bytes());
    Some(())
}

/// Replaces the 16-bit word at `at` and folds the change into the checksum
/// at `check_at` (when given). A UDP checksum of zero means "none" and
/// stays so; a computed zero is sent as 0xffff.
fn replace16(frame: &mut [u8], at: usize, new: u16, check_at: Option<(usize, bool)>) -> Option<()> {
    let old = get16(frame, at)?;
    put16(frame, at, new)?;
    if let Some((check_at, udp)) = check_at {
        let check = get16(frame, check_at)?;
        if udp && check == 0 {
            return Some(());
        }
        let mut new_check = adjust(check, old, new);
        if udp && new_check == 0 {
            new_check = 0xffff;
        }
        put16(frame, check_at, new_check)?;
    }
    Some(())
}

fn replace_addr(
    frame: &mut [u8],
    at: usize,
    addr: Ipv4Addr,
    checks: &[(usize, bool)],
) -> Option<()> {
    let new = addr.octets();
    for word in [0usize, 2] {
        let value = u16::from_be_bytes([new[word], new[word + 1]]);
        let old = get16(frame, at + word)?;
        put16(frame, at + word, value)?;
        for &(check_at, udp) in checks {
            let check = get16(frame, check_at)?;
            if udp && check == 0 {
                continue;
            }
            let mut new_check = adjust(check, old, value);
            if udp && new_check == 0 {
                new_check = 0xffff;
            }
            put16(frame, check_at, new_check)?;
        }
    }
    Some(())
}

/// Where a transport checksum covering the pseudo-header sits, if this
/// packet carries its transport header: `(offset, is_udp)`.
fn transport_check(ip: &Ip, l4: &L4) -> Option<(usize, bool)> {
    match l4 {
        L4::Tcp { .. } if ip.l4() + 18 <= ip.end() => Some((ip.l4() + 16, false)),
        L4::Udp { .. } if ip.l4() + 8 <= ip.end() => Some((ip.l4() + 6, true)),
        _ => None,
    }
}

/// Rewrites the source or destination address of the packet and, for TCP
/// and UDP, its port on that side; for an ICMP echo, `port` is the new
/// identifier. Returns `None` if the frame is shorter than its parsed
/// headers (never the case for frames read by this module).
pub(crate) fn rewrite_address(
    frame: &mut [u8],
    ip: &Ip,
    l4: &L4,
    side: Side,
    addr: Ipv4Addr,
    port: Option<u16>,
) -> Option<()> {
    let addr_at = ip.l3 + if side == Side::Src { 12 } else { 16 };
    let ip_check = (ip.l3 + 10, false);
    let l4_check = transport_check(ip, l4);
    match l4_check {
        Some(check) => replace_addr(frame, addr_at, addr, &[ip_check, check])?,
        None => replace_addr(frame, addr_at, addr, &[ip_check])?,
    }
    let Some(port) = port else {
        return Some(());
    };
    match l4 {
        L4::Tcp { .. } | L4::Udp { .. } => {
            let port_at = ip.l4() + if side == Side::Src { 0 } else { 2 };
            replace16(frame, port_at, port, l4_check)
        }
        L4::EchoRequest { .. } | L4::EchoReply { .. } => {
            replace16(frame, ip.l4() + 4, port, Some((ip.l4() + 2, false)))
        }
        _ => Some(()),
    }
}

/// Rewrites one end of the packet quoted by an ICMP error (the reverse of
/// what NAT did to the original), then recomputes the ICMP checksum, which
/// the parser verified before.
pub(crate) fn rewrite_icmp_error(
    frame: &mut [u8],
    ip: &Ip,
    inner: &Inner,
    side: Side,
    addr: Ipv4Addr,
    port: u16,
) -> Option<()> {
    let inner_l4 = inner.l3 + inner.header_len;
    let quoted_end = ip.end();
    let inner_check = match inner.proto {
        PROTO_TCP if inner_l4 + 18 <= quoted_end => Some((inner_l4 + 16, false)),
        PROTO_UDP if inner_l4 + 8 <= quoted_end => Some((inner_l4 + 6, true)),
        _ => None,
    };
    let addr_at = inner.l3 + if side == Side::Src { 12 } else { 16 };
    let ip_check = (inner.l3 + 10, false);
    match inner_check {
        Some(check) => replace_addr(frame, addr_at, addr, &[ip_check, check])?,
        None => replace_addr(frame, addr_at, addr, &[ip_check])?,
    }
    match inner.proto {
        PROTO_TCP | PROTO_UDP => {
            let port_at = inner_l4 + if side == Side::Src { 0 } else { 2 };
            replace16(frame, port_at, port, inner_check)?;
        }
        _ => replace16(frame, inner_l4 + 4, port, None)?,
    }
    let icmp = frame.get_mut(ip.l4()..quoted_end)?;
    icmp.get_mut(2..4)?.copy_from_slice(&[0, 0]);
    let check = super::build::internet_checksum(icmp);
    icmp.get_mut(2..4)?.copy_from_slice(&check.to_be_bytes());
    Some(())
}

/// Decrements the TTL of a routed packet; `None` when it would reach zero
/// (the packet must be dropped).
pub(crate) fn decrement_ttl(frame: &mut [u8], ip: &Ip) -> Option<()> {
    if ip.ttl <= 1 {
        return None;
    }
    let at = ip.l3 + 8;
    let old = get16(frame, at)?;
    replace16(
        frame,
        at,
        old.wrapping_sub(0x0100),
        Some((ip.l3 + 10, false)),
    )
}

/// Sets the Ethernet destination and source.
pub(crate) fn set_macs(frame: &mut [u8], dst: EthernetAddress, src: EthernetAddress) {
    if let Some(head) = frame.get_mut(..12) {
        head[..6].copy_from_slice(dst.as_bytes());
        head[6..].copy_from_slice(src.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incremental_adjust_matches_a_full_recompute() {
        // Words of a header; change one and compare with a fresh sum.
        let mut words = [
            0x4500u16, 0x0073, 0x0000, 0x4000, 0x4011, 0x0000, 0xc0a8, 0x0001,
        ];
        let full = |w: &[u16]| {
            let bytes: alloc::vec::Vec<u8> = w.iter().flat_map(|v| v.to_be_bytes()).collect();
            super::super::build::internet_checksum(&bytes)
        };
        let check = full(&words);
        let old = words[6];
        words[6] = 0x0a00;
        assert_eq!(adjust(check, old, 0x0a00), full(&words));
    }
}
