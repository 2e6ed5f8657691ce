//! Payloads behind valid headers, so the fuzzer works on the servers and
//! parsers themselves: the first byte picks DHCP to the gateway, a DNS
//! query, an upstream DNS answer (to a query just forwarded), an HTTP
//! request to the metadata server (over a TCP handshake done here), DHCP
//! and DNS snooped on the switch, or a train of fragments.
#![no_main]

use std::net::Ipv4Addr;

use appnet::{Duration, EthernetAddress, METADATA_ADDR, PortId};
use appnet_fuzz::*;
use libfuzzer_sys::fuzz_target;

fn dns_query(id: u16, name: &str) -> Vec<u8> {
    let mut q = vec![(id >> 8) as u8, id as u8, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

fn upstream_answer(rig: &mut Rig, payload: &[u8]) {
    let ip1 = rig.app_ips[0];
    let query = dns_query(7, "www.example.org");
    let frame = udp_frame(BRIDGE_MAC, mac(1), (ip1, 5353), (GATEWAY, 53), &query);
    rig.receive(PortId(1), &frame);
    let sent = rig.take();
    let Some((_, asked)) = sent.iter().find(|(p, _)| *p == UPLINK) else {
        return;
    };
    let our_port = u16::from_be_bytes([asked[34], asked[35]]);
    let question = &asked[42..];
    let mut answer = payload.to_vec();
    // Half the time the answer starts as a genuine one would.
    if payload.first().is_some_and(|b| b & 1 == 0) {
        answer = question.to_vec();
        answer[2] |= 0x80;
        answer.extend_from_slice(payload);
    } else if answer.len() >= 2 {
        answer[..2].copy_from_slice(&question[..2]);
    }
    let frame = udp_frame(
        UPLINK_MAC,
        ROUTER_MAC,
        (ROUTER_IP, 53),
        (UPLINK_IP, our_port),
        &answer,
    );
    rig.receive(UPLINK, &frame);
    rig.take();
}

fn metadata_request(rig: &mut Rig, payload: &[u8]) {
    let ip1 = rig.app_ips[0];
    let from = (ip1, 40000);
    let to = (METADATA_ADDR, 80);
    rig.receive(
        PortId(1),
        &tcp_frame(BRIDGE_MAC, mac(1), from, to, 100, 0, 0x02, &[]),
    );
    let sent = rig.take();
    let Some((_, synack)) = sent.iter().find(|(p, _)| *p == PortId(1)) else {
        return;
    };
    if synack.len() < 54 {
        return;
    }
    let their_seq = u32::from_be_bytes([synack[38], synack[39], synack[40], synack[41]]);
    let ack = their_seq.wrapping_add(1);
    rig.receive(
        PortId(1),
        &tcp_frame(BRIDGE_MAC, mac(1), from, to, 101, ack, 0x10, &[]),
    );
    rig.receive(
        PortId(1),
        &tcp_frame(BRIDGE_MAC, mac(1), from, to, 101, ack, 0x18, payload),
    );
    rig.take();
    rig.advance(Duration::from_millis(50));
    rig.take();
}

fn fragments(rig: &mut Rig, payload: &[u8]) {
    let ip1 = rig.app_ips[0];
    // Records of (flags+offset, ident low byte, length, data).
    let mut rest = payload;
    while rest.len() >= 4 {
        let frag = u16::from_be_bytes([rest[0], rest[1]]);
        let ident = u16::from(rest[2]);
        let len = usize::from(rest[3]).min(rest.len() - 4);
        let data = &rest[4..4 + len];
        rest = &rest[4 + len..];
        let dst = if ident & 1 == 0 {
            Ipv4Addr::new(203, 0, 113, 9)
        } else {
            rig.app_ips[1]
        };
        let proto = [17u8, 6, 1, 47][usize::from(ident >> 6) & 3];
        let frame = ipv4_frame(BRIDGE_MAC, mac(1), ip1, dst, proto, ident, frag, data);
        rig.receive(PortId(1), &frame);
        rig.take();
        // And the same shape arriving from outside, at the uplink.
        let inbound = ipv4_frame(
            UPLINK_MAC, ROUTER_MAC, ROUTER_IP, UPLINK_IP, proto, ident, frag, data,
        );
        rig.receive(UPLINK, &inbound);
        rig.take();
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, payload)) = data.split_first() else {
        return;
    };
    let mut rig = Rig::new();
    let ip1 = rig.app_ips[0];
    match kind % 7 {
        0 => {
            let frame = udp_frame(
                EthernetAddress::BROADCAST,
                mac(1),
                (Ipv4Addr::UNSPECIFIED, 68),
                (Ipv4Addr::BROADCAST, 67),
                payload,
            );
            rig.receive(PortId(1), &frame);
        }
        1 => {
            let frame = udp_frame(BRIDGE_MAC, mac(1), (ip1, 5353), (GATEWAY, 53), payload);
            rig.receive(PortId(1), &frame);
        }
        2 => upstream_answer(&mut rig, payload),
        3 => metadata_request(&mut rig, payload),
        4 => {
            let server = (Ipv4Addr::new(192, 168, 1, 1), 67);
            let frame = udp_frame(
                mac(3),
                EthernetAddress([2, 0x55, 0, 0, 0, 1]),
                server,
                (Ipv4Addr::BROADCAST, 68),
                payload,
            );
            rig.receive(OUTSIDE, &frame);
        }
        5 => {
            let server = (Ipv4Addr::new(192, 168, 1, 1), 53);
            let frame = udp_frame(
                mac(3),
                EthernetAddress([2, 0x55, 0, 0, 0, 1]),
                server,
                (Ipv4Addr::new(192, 168, 1, 3), 5353),
                payload,
            );
            rig.receive(OUTSIDE, &frame);
        }
        _ => fragments(&mut rig, payload),
    }
    rig.take();
    rig.advance(Duration::from_secs(600));
    rig.take();
    rig.report();
});
