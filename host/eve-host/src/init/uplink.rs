//! The node's uplink: the first Ethernet interface with a carrier, brought
//! up and configured by DHCP, with the lease renewed at half its time, and
//! the name servers written to `/etc/resolv.conf` (QEMU's user networking
//! in each service's VM resolves through them).
//!
//! The client uses an ordinary UDP socket: before there is an address, a
//! link route for 255.255.255.255 lets the broadcast out, and Linux hands
//! broadcast replies to a socket bound to port 68 on an interface without
//! an address.

use std::fs;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use super::dhcp::{ClientMessage, MessageType, Reply};
use super::netlink::{self, Netlink};
use super::say;

/// How long to wait for replies to one DISCOVER or REQUEST.
const REPLY_WAIT: Duration = Duration::from_secs(3);
/// The longest pause between DISCOVERs when nobody answers.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How often to look for an interface with a carrier.
const LINK_POLL: Duration = Duration::from_secs(1);

/// A network interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub index: u32,
    pub mac: [u8; 6],
    pub carrier: bool,
}

fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.trim().split(':');
    for byte in &mut mac {
        *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// The Ethernet interfaces under `sys_class_net` (`/sys/class/net`),
/// sorted by name; loopback and non-Ethernet links left out.
pub fn interfaces(sys_class_net: &Path) -> Vec<Interface> {
    let Ok(entries) = fs::read_dir(sys_class_net) else {
        return Vec::new();
    };
    let mut found: Vec<Interface> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let dir = entry.path();
            let read = |file: &str| fs::read_to_string(dir.join(file)).ok();
            // ARPHRD_ETHER; loopback is 772.
            if read("type")?.trim() != "1" {
                return None;
            }
            Some(Interface {
                name: entry.file_name().into_string().ok()?,
                index: read("ifindex")?.trim().parse().ok()?,
                mac: parse_mac(&read("address")?)?,
                carrier: read("carrier").is_some_and(|c| c.trim() == "1"),
            })
        })
        .collect();
    found.sort_by(|a, b| a.name.cmp(&b.name));
    found
}

/// `/etc/resolv.conf` for these name servers.
pub fn resolv_conf(dns: &[Ipv4Addr]) -> String {
    dns.iter().map(|a| format!("nameserver {a}\n")).collect()
}

/// Brings the loopback interface up (index 1 on Linux).
pub fn loopback_up() -> io::Result<()> {
    Netlink::open()?.request(&netlink::link_up(1))
}

/// Runs the uplink for the life of the node on a thread of its own.
pub fn spawn(sys_class_net: PathBuf, resolv: PathBuf) {
    let spawned = thread::Builder::new().name("uplink".into()).spawn(move || {
        let mut client = Client {
            sys_class_net,
            resolv,
        };
        client.run();
    });
    if let Err(e) = spawned {
        say(format_args!("uplink: cannot start its thread: {e}"));
    }
}

struct Client {
    sys_class_net: PathBuf,
    resolv: PathBuf,
}

fn random_u32() -> u32 {
    let mut bytes = [0u8; 4];
    if let Ok(mut f) = fs::File::open("/dev/urandom") {
        let _ = io::Read::read_exact(&mut f, &mut bytes);
    }
    u32::from_ne_bytes(bytes) ^ std::process::id()
}

/// A socket on the DHCP client port that may broadcast.
fn dhcp_socket() -> io::Result<UdpSocket> {
    let socket = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68))?;
    socket.set_broadcast(true)?;
    socket.set_read_timeout(Some(REPLY_WAIT))?;
    Ok(socket)
}

/// Sends `message` and returns the first reply of a kind in `wanted`
/// within the reply wait.
fn exchange(
    socket: &UdpSocket,
    message: &ClientMessage,
    wanted: &[MessageType],
) -> io::Result<Option<Reply>> {
    let server = SocketAddrV4::new(Ipv4Addr::BROADCAST, 67);
    socket.send_to(&message.emit(), server)?;
    let until = Instant::now() + REPLY_WAIT;
    let mut buf = [0u8; 1500];
    while Instant::now() < until {
        let len = match socket.recv_from(&mut buf) {
            Ok((len, _)) => len,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        if let Ok(reply) = Reply::parse(&buf[..len], message.xid, message.mac)
            && wanted.contains(&reply.kind)
        {
            return Ok(Some(reply));
        }
    }
    Ok(None)
}

impl Client {
    fn run(&mut self) {
        let mut backoff = Duration::from_secs(1);
        loop {
            match self.lease_once() {
                Ok(Some(lease_secs)) => {
                    backoff = Duration::from_secs(1);
                    if lease_secs == u32::MAX {
                        // An infinite lease: nothing more to do.
                        return;
                    }
                    thread::sleep(Duration::from_secs(u64::from(lease_secs / 2).max(1)));
                }
                Ok(None) => {
                    thread::sleep(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Err(e) => {
                    say(format_args!("uplink: {e}"));
                    thread::sleep(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// The first interface with a carrier, waiting for one.
    fn uplink(&self) -> Interface {
        let mut said = false;
        loop {
            let all = interfaces(&self.sys_class_net);
            if let Some(up) = all.iter().find(|i| i.carrier) {
                return up.clone();
            }
            // Carrier is only known once the link is up.
            if let Ok(nl) = Netlink::open() {
                for i in &all {
                    let _ = nl.request(&netlink::link_up(i.index));
                }
            }
            if !said {
                let names: Vec<&str> = all.iter().map(|i| i.name.as_str()).collect();
                say(format_args!(
                    "uplink: waiting for a carrier on an Ethernet interface (have: {})",
                    if names.is_empty() {
                        String::from("none")
                    } else {
                        names.join(", ")
                    }
                ));
                said = true;
            }
            thread::sleep(LINK_POLL);
        }
    }

    /// One DISCOVER/OFFER/REQUEST/ACK round; the lease time on success.
    fn lease_once(&mut self) -> io::Result<Option<u32>> {
        let link = self.uplink();
        let nl = Netlink::open()?;
        nl.request(&netlink::link_up(link.index))?;
        nl.request(&netlink::route_add(
            link.index,
            Ipv4Addr::BROADCAST,
            32,
            None,
        ))?;
        let socket = dhcp_socket()?;
        let xid = random_u32();
        let discover = ClientMessage {
            kind: MessageType::Discover,
            xid,
            mac: link.mac,
            requested: None,
            ciaddr: None,
        };
        let Some(offer) = exchange(&socket, &discover, &[MessageType::Offer])? else {
            return Ok(None);
        };
        let Some(server) = offer.server else {
            return Ok(None);
        };
        let request = ClientMessage {
            kind: MessageType::Request,
            requested: Some((offer.yiaddr, server)),
            ..discover
        };
        let Some(ack) = exchange(&socket, &request, &[MessageType::Ack, MessageType::Nak])? else {
            return Ok(None);
        };
        if ack.kind == MessageType::Nak {
            say(format_args!(
                "uplink {}: {server} refused the lease",
                link.name
            ));
            return Ok(None);
        }
        self.configure(&nl, &link, &ack)?;
        Ok(Some(ack.lease_secs.unwrap_or(3600)))
    }

    fn configure(&self, nl: &Netlink, link: &Interface, ack: &Reply) -> io::Result<()> {
        let prefix = ack.prefix_len();
        nl.request(&netlink::address_add(link.index, ack.yiaddr, prefix))?;
        if let Some(&router) = ack.routers.first() {
            nl.request(&netlink::route_add(
                link.index,
                Ipv4Addr::UNSPECIFIED,
                0,
                Some(router),
            ))?;
        }
        if !ack.dns.is_empty() {
            fs::write(&self.resolv, resolv_conf(&ack.dns))?;
        }
        let via = ack
            .routers
            .first()
            .map_or(String::from("no router"), |r| format!("via {r}"));
        let dns: Vec<String> = ack.dns.iter().map(ToString::to_string).collect();
        say(format_args!(
            "uplink {}: {}/{prefix} {via}, DNS {}, lease {} s",
            link.name,
            ack.yiaddr,
            if dns.is_empty() {
                String::from("none")
            } else {
                dns.join(" ")
            },
            ack.lease_secs.unwrap_or(3600)
        ));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_ethernet_interfaces_in_sysfs() {
        let dir = tempfile::tempdir().unwrap();
        let add = |name: &str, kind: &str, index: &str, mac: &str, carrier: Option<&str>| {
            let d = dir.path().join(name);
            fs::create_dir(&d).unwrap();
            fs::write(d.join("type"), kind).unwrap();
            fs::write(d.join("ifindex"), index).unwrap();
            fs::write(d.join("address"), mac).unwrap();
            if let Some(c) = carrier {
                fs::write(d.join("carrier"), c).unwrap();
            }
        };
        add("lo", "772\n", "1\n", "00:00:00:00:00:00\n", Some("1\n"));
        add("eth1", "1\n", "3\n", "52:54:00:00:00:02\n", None);
        add("eth0", "1\n", "2\n", "52:54:00:12:34:56\n", Some("1\n"));
        add("bad", "1\n", "x\n", "52:54:00:12:34:56\n", Some("1\n"));
        add("short", "1\n", "5\n", "52:54:00\n", Some("1\n"));
        let found = interfaces(dir.path());
        assert_eq!(
            found,
            [
                Interface {
                    name: "eth0".into(),
                    index: 2,
                    mac: [0x52, 0x54, 0, 0x12, 0x34, 0x56],
                    carrier: true
                },
                Interface {
                    name: "eth1".into(),
                    index: 3,
                    mac: [0x52, 0x54, 0, 0, 0, 2],
                    carrier: false
                }
            ]
        );
        assert!(interfaces(&dir.path().join("missing")).is_empty());
    }

    #[test]
    fn resolv_conf_lists_every_server() {
        assert_eq!(
            resolv_conf(&[Ipv4Addr::new(10, 7, 0, 3), Ipv4Addr::new(1, 1, 1, 1)]),
            "nameserver 10.7.0.3\nnameserver 1.1.1.1\n"
        );
        assert_eq!(parse_mac("52:54:00:12:34:56:78"), None);
        assert_eq!(parse_mac("zz:54:00:12:34:56"), None);
    }
}
