use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use smoltcp::wire::{DhcpMessageType, DhcpPacket, DhcpRepr};
use wirebytes::testing::XorShift;

use super::*;
use crate::config::{AddressRange, StaticHost};

const MAC: EthernetAddress = EthernetAddress([2, 0x16, 0x3e, 0, 0, 1]);
const APP: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 7);

fn local() -> LocalConfig {
    LocalConfig {
        subnet: Ipv4Cidr::new(Ipv4Addr::new(10, 1, 0, 0), 24),
        gateway: Ipv4Addr::new(10, 1, 0, 1),
        dhcp_range: AddressRange {
            first: Ipv4Addr::new(10, 1, 0, 2),
            last: Ipv4Addr::new(10, 1, 0, 100),
        },
        dns_servers: vec![],
        ntp_servers: vec![Ipv4Addr::new(192, 0, 2, 123)],
        domain: String::from("local"),
        static_routes: vec![StaticRoute {
            destination: Ipv4Cidr::new(Ipv4Addr::new(172, 16, 0, 0), 12),
            gateway: Ipv4Addr::new(10, 1, 0, 9),
        }],
        static_hosts: Vec::<StaticHost>::new(),
    }
}

fn client() -> Client {
    Client {
        mac: MAC,
        ip: APP,
        mtu: 1400,
    }
}

fn request(
    kind: DhcpMessageType,
    requested: Option<Ipv4Addr>,
    server: Option<Ipv4Addr>,
) -> Vec<u8> {
    let repr = DhcpRepr {
        message_type: kind,
        transaction_id: 0xabcd,
        secs: 0,
        client_hardware_address: MAC,
        client_ip: Ipv4Addr::UNSPECIFIED,
        your_ip: Ipv4Addr::UNSPECIFIED,
        server_ip: Ipv4Addr::UNSPECIFIED,
        router: None,
        subnet_mask: None,
        relay_agent_ip: Ipv4Addr::UNSPECIFIED,
        broadcast: false,
        requested_ip: requested,
        client_identifier: Some(MAC),
        server_identifier: server,
        parameter_request_list: Some(&[1, 3, 6, 15, 26, 42, 121]),
        dns_servers: None,
        max_size: None,
        lease_duration: None,
        renew_duration: None,
        rebind_duration: None,
        additional_options: &[],
    };
    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(&mut DhcpPacket::new_unchecked(&mut out[..]))
        .unwrap();
    out
}

/// The value of option `kind` in a DHCP message.
fn option(payload: &[u8], kind: u8) -> Option<Vec<u8>> {
    let packet = DhcpPacket::new_checked(payload).ok()?;
    packet
        .options()
        .find(|o| o.kind == kind)
        .map(|o| o.data.to_vec())
}

#[test]
fn an_offer_carries_the_address_and_eves_options() {
    let reply = serve(
        &local(),
        &client(),
        &request(DhcpMessageType::Discover, None, None),
    )
    .unwrap();
    let packet = DhcpPacket::new_checked(&reply.payload[..]).unwrap();
    let repr = DhcpRepr::parse(&packet).unwrap();
    assert_eq!(repr.message_type, DhcpMessageType::Offer);
    assert_eq!(repr.transaction_id, 0xabcd);
    assert_eq!(repr.your_ip, APP);
    assert_eq!(repr.router, Some(Ipv4Addr::new(10, 1, 0, 1)));
    assert_eq!(repr.subnet_mask, Some(Ipv4Addr::new(255, 255, 255, 0)));
    assert_eq!(repr.server_identifier, Some(Ipv4Addr::new(10, 1, 0, 1)));
    assert_eq!(repr.lease_duration, Some(3600));
    assert_eq!(reply.dst, APP);
    assert!(!reply.bound);
    let p = &reply.payload;
    assert_eq!(
        option(p, 6),
        Some(vec![10, 1, 0, 1]),
        "the gateway is the DNS server"
    );
    assert_eq!(option(p, 15), Some(b"local".to_vec()));
    assert_eq!(option(p, 26), Some(1400u16.to_be_bytes().to_vec()));
    assert_eq!(option(p, 42), Some(vec![192, 0, 2, 123]));
    assert_eq!(option(p, 58), Some(1800u32.to_be_bytes().to_vec()));
    // The subnet on-link, the static route, then the default route.
    assert_eq!(
        option(p, 121),
        Some(vec![
            24, 10, 1, 0, 0, 0, 0, 0, //
            12, 172, 16, 10, 1, 0, 9, //
            0, 10, 1, 0, 1,
        ])
    );
}

#[test]
fn a_request_for_its_address_is_acked_anything_else_naked() {
    let local = local();
    let ack = serve(
        &local,
        &client(),
        &request(DhcpMessageType::Request, Some(APP), Some(local.gateway)),
    )
    .unwrap();
    let packet = DhcpPacket::new_checked(&ack.payload[..]).unwrap();
    let repr = DhcpRepr::parse(&packet).unwrap();
    assert_eq!(repr.message_type, DhcpMessageType::Ack);
    assert!(ack.bound);
    let other = Ipv4Addr::new(10, 1, 0, 50);
    let nak = serve(
        &local,
        &client(),
        &request(DhcpMessageType::Request, Some(other), None),
    )
    .unwrap();
    let packet = DhcpPacket::new_checked(&nak.payload[..]).unwrap();
    let repr = DhcpRepr::parse(&packet).unwrap();
    assert_eq!(repr.message_type, DhcpMessageType::Nak);
    assert_eq!(nak.dst, Ipv4Addr::BROADCAST);
    assert!(!nak.bound);
    // Another server's offer was taken: not ours to answer.
    let elsewhere = serve(
        &local,
        &client(),
        &request(
            DhcpMessageType::Request,
            Some(APP),
            Some(Ipv4Addr::new(10, 1, 0, 254)),
        ),
    );
    assert!(matches!(elsewhere, Err(Outcome::Ignored)));
    assert!(matches!(
        serve(
            &local,
            &client(),
            &request(DhcpMessageType::Release, None, None)
        ),
        Err(Outcome::Released)
    ));
    assert!(matches!(
        serve(
            &local,
            &client(),
            &request(DhcpMessageType::Decline, Some(APP), None)
        ),
        Err(Outcome::Declined)
    ));
}

#[test]
fn only_the_interfaces_own_mac_is_served() {
    let mut other = client();
    other.mac = EthernetAddress([2, 0, 0, 0, 0, 99]);
    assert!(matches!(
        serve(
            &local(),
            &other,
            &request(DhcpMessageType::Discover, None, None)
        ),
        Err(Outcome::Ignored)
    ));
}

#[test]
fn hostile_requests_are_ignored() {
    let mut rng = XorShift::new(99);
    let good = request(DhcpMessageType::Discover, None, None);
    for round in 0..5000 {
        let mut bytes = if round % 2 == 0 {
            good.clone()
        } else {
            let mut random = vec![0u8; rng.below(600)];
            rng.fill(&mut random);
            random
        };
        if !bytes.is_empty() {
            let at = rng.below(bytes.len());
            bytes[at] = rng.next_u64() as u8;
        }
        bytes.truncate(rng.below(bytes.len() + 1));
        let _ = serve(&local(), &client(), &bytes);
        let _ = snoop_ack(&bytes, MAC);
    }
}
