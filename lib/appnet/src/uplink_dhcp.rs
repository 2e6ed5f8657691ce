//! A DHCP client for an uplink, for zedrouter when its command line gives
//! no `ip=`: sans-IO like the engine, beside it on the same NIC.
//!
//! The uplink's frames belong to the engine, which has no address to
//! answer from until a lease comes; so the client is a smoltcp interface
//! of its own on the uplink's MAC that sees only what it needs: DHCP
//! replies (UDP to port 68), which the engine never wants, and copies of
//! ARP replies (it asks for the server's MAC to renew by unicast, and
//! the engine ignores replies it did not ask for). Its frames go out on
//! the uplink like the engine's. Each lease (the first, a renewal with
//! other settings, a new one after a loss) is handed to the caller, which
//! gives the engine its uplink ([`crate::Engine::set_uplink`]).

use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::socket::dhcpv4;
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, Ipv4Address, Ipv4Cidr};

/// Frames held for the client between turns; DHCP needs a handful.
const QUEUE: usize = 16;
/// An Ethernet header.
const ETH: usize = 14;

/// Frame queues standing in for a NIC.
#[derive(Default)]
struct Queues {
    rx: VecDeque<Vec<u8>>,
    tx: VecDeque<Vec<u8>>,
}

struct Rx(Vec<u8>);

struct Tx<'a>(&'a mut VecDeque<Vec<u8>>);

impl phy::RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0; len];
        let result = f(&mut frame);
        if self.0.len() < QUEUE {
            self.0.push_back(frame);
        }
        result
    }
}

impl Device for Queues {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx<'a>;

    fn receive(&mut self, _: Instant) -> Option<(Rx, Tx<'_>)> {
        let frame = self.rx.pop_front()?;
        Some((Rx(frame), Tx(&mut self.tx)))
    }

    fn transmit(&mut self, _: Instant) -> Option<Tx<'_>> {
        Some(Tx(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = 1514;
        caps
    }
}

/// What a frame from the uplink is to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wanted {
    /// The engine's alone.
    No,
    /// A DHCP reply: the client's alone.
    Only,
    /// An ARP reply: both the client's and the engine's.
    Copy,
}

/// Reads only what it checked is there: hostile frames are `No`.
pub fn wanted(frame: &[u8]) -> Wanted {
    match frame.get(12..14) {
        Some([0x08, 0x06]) if frame.get(ETH + 6..ETH + 8) == Some(&[0, 2]) => Wanted::Copy,
        Some([0x08, 0x00]) => {
            let Some(&version_ihl) = frame.get(ETH) else {
                return Wanted::No;
            };
            let ihl = usize::from(version_ihl & 0x0f) * 4;
            let udp = ETH + ihl;
            let is_udp = version_ihl >> 4 == 4 && ihl >= 20 && frame.get(ETH + 9) == Some(&17);
            if is_udp && frame.get(udp + 2..udp + 4) == Some(&68u16.to_be_bytes()) {
                Wanted::Only
            } else {
                Wanted::No
            }
        }
        _ => Wanted::No,
    }
}

/// What a lease gives the uplink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UplinkLease {
    pub address: Ipv4Cidr,
    pub router: Option<Ipv4Address>,
    pub dns_servers: Vec<Ipv4Address>,
}

/// A lease's change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseEvent {
    Leased(UplinkLease),
    Lost,
}

/// The client.
pub struct UplinkDhcp {
    iface: Interface,
    queues: Queues,
    sockets: SocketSet<'static>,
    dhcp: SocketHandle,
    /// Whether the client holds a lease: the socket's first word is
    /// "deconfigured", which is no loss.
    leased: bool,
}

impl UplinkDhcp {
    pub fn new(mac: [u8; 6], seed: u64, now: Instant) -> UplinkDhcp {
        let mut queues = Queues::default();
        let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
        config.random_seed = seed;
        let iface = Interface::new(config, &mut queues, now);
        let mut sockets = SocketSet::new(vec![]);
        let dhcp = sockets.add(dhcpv4::Socket::new());
        UplinkDhcp {
            iface,
            queues,
            sockets,
            dhcp,
            leased: false,
        }
    }

    /// A frame [`wanted`] said is the client's.
    pub fn receive(&mut self, frame: &[u8]) {
        if self.queues.rx.len() < QUEUE {
            self.queues.rx.push_back(frame.to_vec());
        }
    }

    /// Runs the client; a change of lease when there is one.
    pub fn poll(&mut self, now: Instant) -> Option<LeaseEvent> {
        self.iface.poll(now, &mut self.queues, &mut self.sockets);
        let event = match self.sockets.get_mut::<dhcpv4::Socket>(self.dhcp).poll()? {
            dhcpv4::Event::Configured(lease) => LeaseEvent::Leased(UplinkLease {
                address: lease.address,
                router: lease.router,
                dns_servers: lease.dns_servers.iter().copied().collect(),
            }),
            dhcpv4::Event::Deconfigured if self.leased => LeaseEvent::Lost,
            dhcpv4::Event::Deconfigured => return None,
        };
        self.leased = matches!(event, LeaseEvent::Leased(_));
        // The client's own address and route, so it renews by unicast.
        let (address, router) = match &event {
            LeaseEvent::Leased(lease) => (Some(lease.address), lease.router),
            LeaseEvent::Lost => (None, None),
        };
        self.iface.update_ip_addrs(|addrs| {
            addrs.clear();
            if let Some(address) = address {
                // Capacity is at least one address.
                let _ = addrs.push(IpCidr::Ipv4(address));
            }
        });
        let routes = self.iface.routes_mut();
        routes.remove_default_ipv4_route();
        if let Some(gateway) = router {
            // Fails only when the route table is full, which one route cannot make it.
            let _ = routes.add_default_ipv4_route(gateway);
        }
        // Send what the change brought (a request, an ARP) on this turn.
        self.iface.poll(now, &mut self.queues, &mut self.sockets);
        Some(event)
    }

    /// A frame to send on the uplink.
    pub fn pop_transmit(&mut self) -> Option<Vec<u8>> {
        self.queues.tx.pop_front()
    }

    /// When the client next has timed work (a retry, a renewal).
    pub fn poll_at(&mut self, now: Instant) -> Option<Instant> {
        self.iface
            .poll_delay(now, &self.sockets)
            .map(|delay| now + delay)
    }
}

#[cfg(test)]
mod tests {
    use alloc::vec;

    use super::*;

    fn ipv4_udp(dst_port: u16, ihl_words: u8) -> Vec<u8> {
        let mut f = vec![0u8; ETH + usize::from(ihl_words) * 4 + 8];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[ETH] = 0x40 | ihl_words;
        f[ETH + 9] = 17;
        let udp = ETH + usize::from(ihl_words) * 4;
        f[udp + 2..udp + 4].copy_from_slice(&dst_port.to_be_bytes());
        f
    }

    #[test]
    fn only_dhcp_replies_and_arp_replies_are_the_clients() {
        assert_eq!(wanted(&ipv4_udp(68, 5)), Wanted::Only);
        assert_eq!(wanted(&ipv4_udp(68, 6)), Wanted::Only);
        assert_eq!(wanted(&ipv4_udp(53, 5)), Wanted::No);
        let mut tcp = ipv4_udp(68, 5);
        tcp[ETH + 9] = 6;
        assert_eq!(wanted(&tcp), Wanted::No);
        let mut arp = vec![0u8; 42];
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        arp[ETH + 7] = 1;
        assert_eq!(wanted(&arp), Wanted::No, "a request is the engine's");
        arp[ETH + 7] = 2;
        assert_eq!(wanted(&arp), Wanted::Copy);
    }

    #[test]
    fn short_and_hostile_frames_are_the_engines() {
        // Cut anywhere before the destination port's end; a frame cut
        // later is the client's, whose smoltcp interface drops it.
        let full = ipv4_udp(68, 15);
        for len in 0..ETH + 60 + 4 {
            assert_eq!(wanted(&full[..len]), Wanted::No, "{len} bytes");
        }
        let mut bad_ihl = ipv4_udp(68, 5);
        bad_ihl[ETH] = 0x42;
        assert_eq!(wanted(&bad_ihl), Wanted::No);
        let mut v6 = ipv4_udp(68, 5);
        v6[ETH] = 0x65;
        assert_eq!(wanted(&v6), Wanted::No);
    }
}
