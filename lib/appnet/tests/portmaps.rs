//! The uplink ports port maps take, which zedrouter asks the host to
//! forward: each map's, while its app is attached, and none of an ICMP
//! rule or an engine without instances.

mod support;

use appnet::{MappedProto, PortId};
use support::*;

#[test]
fn mapped_uplink_ports_follow_the_apps_port_maps() {
    let mut lab = Lab::local();
    assert!(lab.engine.mapped_uplink_ports().is_empty());
    let web = ace(
        7,
        &[("protocol", "tcp"), ("lport", "8080")],
        Some(portmap_action(80)),
    );
    let dns = ace(
        8,
        &[("protocol", "udp"), ("lport", "5353")],
        Some(portmap_action(53)),
    );
    let allowed = ace(9, &[("protocol", "tcp"), ("lport", "9000")], None);
    lab.app(1, vec![web, dns, allowed]);
    let other = ace(
        3,
        &[("protocol", "tcp"), ("lport", "8081")],
        Some(portmap_action(80)),
    );
    lab.app(2, vec![other]);
    let ports: Vec<_> = lab.engine.mapped_uplink_ports().into_iter().collect();
    assert_eq!(
        ports,
        [
            (MappedProto::Tcp, 8080),
            (MappedProto::Tcp, 8081),
            (MappedProto::Udp, 5353)
        ]
    );
    lab.engine.detach(lab.now, PortId(1)).unwrap();
    let ports: Vec<_> = lab.engine.mapped_uplink_ports().into_iter().collect();
    assert_eq!(ports, [(MappedProto::Tcp, 8081)]);
}
