//! Networking: every NIC up with a DHCP lease, as a container expects
//! (EVE's app networks hand out addresses by DHCP). The DHCP messages are
//! the library's; here they go over a UDP socket bound to the interface,
//! and the lease is applied with the classic interface ioctls.

use std::{
    ffi::OsString,
    net::{Ipv4Addr, SocketAddrV4, UdpSocket},
    os::fd::AsRawFd,
    path::Path,
    time::{Duration, Instant},
};

use nix::sys::socket::{setsockopt, sockopt::BindToDevice};
use shim_init::dhcp::{self, Lease, Reply};

/// How long one interface may take to get a lease.
const LEASE_WITHIN: Duration = Duration::from_secs(30);

/// Brings `lo` and every NIC up; the leases taken.
pub fn bring_up_all() -> Result<Vec<(String, Lease)>, String> {
    let control = UdpSocket::bind("0.0.0.0:0").map_err(|e| format!("control socket: {e}"))?;
    set_up(&control, "lo")?;
    let mut names: Vec<String> = std::fs::read_dir("/sys/class/net")
        .map_err(|e| format!("/sys/class/net: {e}"))?
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n != "lo")
        .collect();
    names.sort();
    let mut leases = Vec::new();
    for name in names {
        set_up(&control, &name)?;
        let lease = lease(&name)?;
        apply(&control, &name, &lease)?;
        crate::say!(
            "shim-init: {name} has {}/{} router {:?} dns {:?}",
            lease.address,
            lease.prefix_len,
            lease.router,
            lease.dns
        );
        leases.push((name, lease));
    }
    Ok(leases)
}

/// `/etc/resolv.conf` in the container from the leases' DNS servers.
pub fn write_resolver(root: &Path, leases: &[(String, Lease)]) -> Result<(), String> {
    let text: String = leases
        .iter()
        .flat_map(|(_, l)| &l.dns)
        .map(|dns| format!("nameserver {dns}\n"))
        .collect();
    let etc = root.join("etc");
    std::fs::create_dir_all(&etc).map_err(|e| format!("{}: {e}", etc.display()))?;
    let path = etc.join("resolv.conf");
    // An image may ship resolv.conf as a symlink; never write through it.
    let _ = std::fs::remove_file(&path);
    std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))
}

fn mac(name: &str) -> Result<[u8; 6], String> {
    let path = format!("/sys/class/net/{name}/address");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    let mut mac = [0u8; 6];
    let mut parts = text.trim().split(':');
    for byte in &mut mac {
        *byte = parts
            .next()
            .and_then(|p| u8::from_str_radix(p, 16).ok())
            .ok_or_else(|| format!("{path}: {text:?} is not a MAC"))?;
    }
    Ok(mac)
}

/// DISCOVER, OFFER, REQUEST, ACK on `name`.
fn lease(name: &str) -> Result<Lease, String> {
    let mac = mac(name)?;
    let socket = UdpSocket::bind("0.0.0.0:68").map_err(|e| format!("DHCP socket: {e}"))?;
    setsockopt(&socket, BindToDevice, &OsString::from(name))
        .map_err(|e| format!("binding to {name}: {e}"))?;
    socket.set_broadcast(true).map_err(|e| e.to_string())?;
    socket
        .set_read_timeout(Some(Duration::from_secs(1)))
        .map_err(|e| e.to_string())?;
    let server = SocketAddrV4::new(Ipv4Addr::BROADCAST, 67);
    let xid = u32::from_be_bytes([mac[2], mac[3], mac[4], mac[5]]) ^ std::process::id();
    let deadline = Instant::now() + LEASE_WITHIN;
    let mut offered: Option<Lease> = None;
    let mut buf = [0u8; 1500];
    while Instant::now() < deadline {
        let message = match &offered {
            None => dhcp::discover(xid, mac),
            Some(offer) => dhcp::request(xid, mac, offer),
        };
        socket
            .send_to(&message, server)
            .map_err(|e| format!("DHCP send on {name}: {e}"))?;
        // Answers to this message, until the read times out.
        while let Ok((n, _)) = socket.recv_from(&mut buf) {
            match (dhcp::parse(&buf[..n], xid, mac), &offered) {
                (Ok(Reply::Offer(offer)), None) => {
                    offered = Some(offer);
                    break;
                }
                (Ok(Reply::Ack(lease)), Some(_)) => return Ok(lease),
                (Ok(Reply::Nak), Some(_)) => {
                    offered = None;
                    break;
                }
                _ => {}
            }
        }
    }
    Err(format!("no DHCP lease on {name} within {LEASE_WITHIN:?}"))
}

fn ifreq(name: &str) -> Result<libc::ifreq, String> {
    // SAFETY: ifreq is plain old data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    let bytes = name.as_bytes();
    if bytes.len() >= req.ifr_name.len() {
        return Err(format!("interface name {name:?} is too long"));
    }
    for (dst, &src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = src as libc::c_char;
    }
    Ok(req)
}

fn sockaddr(addr: Ipv4Addr) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(addr).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr have the same size on Linux, and
    // the kernel reads an AF_INET sockaddr as a sockaddr_in.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

fn ioctl(
    socket: &UdpSocket,
    request: libc::c_ulong,
    arg: *mut libc::c_void,
    what: &str,
) -> Result<(), String> {
    // SAFETY: `arg` points to the structure `request` expects (an ifreq or
    // an rtentry), alive for the call; the socket is open.
    // The request's type differs between C libraries (musl: int).
    let result = unsafe { libc::ioctl(socket.as_raw_fd(), request as _, arg) };
    if result < 0 {
        return Err(format!("{what}: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

fn set_up(socket: &UdpSocket, name: &str) -> Result<(), String> {
    let mut req = ifreq(name)?;
    ioctl(
        socket,
        libc::SIOCGIFFLAGS,
        (&raw mut req).cast(),
        &format!("reading {name}'s flags"),
    )?;
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    ioctl(
        socket,
        libc::SIOCSIFFLAGS,
        (&raw mut req).cast(),
        &format!("bringing {name} up"),
    )
}

fn apply(socket: &UdpSocket, name: &str, lease: &Lease) -> Result<(), String> {
    let mut req = ifreq(name)?;
    req.ifr_ifru.ifru_addr = sockaddr(lease.address);
    ioctl(
        socket,
        libc::SIOCSIFADDR,
        (&raw mut req).cast(),
        &format!("setting {name}'s address"),
    )?;
    let mask = Ipv4Addr::from(
        u32::MAX
            .checked_shl(32 - u32::from(lease.prefix_len))
            .unwrap_or(0),
    );
    let mut req = ifreq(name)?;
    req.ifr_ifru.ifru_netmask = sockaddr(mask);
    ioctl(
        socket,
        libc::SIOCSIFNETMASK,
        (&raw mut req).cast(),
        &format!("setting {name}'s netmask"),
    )?;
    if let Some(router) = lease.router {
        // SAFETY: rtentry is plain old data; all zeroes is a valid value.
        let mut route: libc::rtentry = unsafe { std::mem::zeroed() };
        route.rt_dst = sockaddr(Ipv4Addr::UNSPECIFIED);
        route.rt_genmask = sockaddr(Ipv4Addr::UNSPECIFIED);
        route.rt_gateway = sockaddr(router);
        route.rt_flags = libc::RTF_UP | libc::RTF_GATEWAY;
        ioctl(
            socket,
            libc::SIOCADDRT,
            (&raw mut route).cast(),
            "adding the default route",
        )?;
    }
    Ok(())
}
