//! A raw Ethernet socket on one Linux interface (`AF_PACKET`,
//! `SOCK_RAW`, every EtherType): whole frames in and out, the interface
//! promiscuous while the socket is open, frames the host itself sends on
//! the interface not seen.
//!
//! The only unsafe code of the crate: `bind` with a `sockaddr_ll`, two
//! `setsockopt`s and the `SIOCGIFMTU` ioctl, which rustix does not offer.

use std::io;
use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use rustix::io::Errno;
use rustix::net::{
    AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType, eth, netdevice, socket_with,
};

/// The longest Linux interface name (`IFNAMSIZ` less its NUL).
pub const MAX_INTERFACE_NAME: usize = 15;

/// Why a packet socket could not be opened on an interface.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{0:?} is not a network interface name (1 to 15 characters, no `/`, no space)")]
    BadName(String),
    #[error("opening a packet socket: {0} (it needs CAP_NET_RAW: run as root)")]
    Socket(io::Error),
    #[error("no network interface {interface}: {source}")]
    NoInterface {
        interface: String,
        source: io::Error,
    },
    #[error("reading the MTU of {interface}: {source}")]
    Mtu {
        interface: String,
        source: io::Error,
    },
    #[error("binding the packet socket to {interface}: {source}")]
    Bind {
        interface: String,
        source: io::Error,
    },
    #[error("making {interface} promiscuous: {source}")]
    Promiscuous {
        interface: String,
        source: io::Error,
    },
    #[error("asking not to see {interface}'s outgoing frames: {source}")]
    IgnoreOutgoing {
        interface: String,
        source: io::Error,
    },
}

/// What became of the interface a socket is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// It is still there, under its name and index.
    There,
    /// No interface has its name now, or another one (a new index) does:
    /// the socket will never carry a frame again.
    Gone,
}

/// A frame read from the interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// A whole frame of this many bytes is at the start of the buffer.
    Frame(usize),
    /// A frame of this many bytes did not fit the buffer (only its start
    /// was read).
    Truncated(usize),
}

/// A raw Ethernet socket bound to one interface.
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
    interface: String,
    index: u32,
    mtu: usize,
}

/// Whether `name` can name a Linux interface.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_INTERFACE_NAME
        && !name.contains(['/', ':', '\0'])
        && !name.chars().any(char::is_whitespace)
        && name != "."
        && name != ".."
}

impl PacketSocket {
    /// Opens a non-blocking packet socket on `interface` (in this thread's
    /// network namespace) and makes the interface promiscuous for as long
    /// as the socket is open (the kernel counts promiscuous users, so this
    /// undoes itself when the socket closes, whatever ends the process).
    pub fn open(interface: &str) -> Result<PacketSocket, OpenError> {
        if !valid_name(interface) {
            return Err(OpenError::BadName(interface.to_string()));
        }
        let name = interface.to_string();
        let fd = socket_with(
            AddressFamily::PACKET,
            SocketType::RAW,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            Some(eth::ALL),
        )
        .map_err(|e| OpenError::Socket(e.into()))?;
        let index =
            netdevice::name_to_index(&fd, interface).map_err(|e| OpenError::NoInterface {
                interface: name.clone(),
                source: e.into(),
            })?;
        let mtu = read_mtu(fd.as_fd(), interface).map_err(|source| OpenError::Mtu {
            interface: name.clone(),
            source,
        })?;
        bind_to(fd.as_fd(), index).map_err(|source| OpenError::Bind {
            interface: name.clone(),
            source,
        })?;
        let promiscuous = libc::packet_mreq {
            mr_ifindex: index as libc::c_int,
            mr_type: libc::PACKET_MR_PROMISC as libc::c_ushort,
            mr_alen: 0,
            mr_address: [0; 8],
        };
        set_packet_option(fd.as_fd(), libc::PACKET_ADD_MEMBERSHIP, &promiscuous).map_err(
            |source| OpenError::Promiscuous {
                interface: name.clone(),
                source,
            },
        )?;
        let ignore: libc::c_int = 1;
        set_packet_option(fd.as_fd(), libc::PACKET_IGNORE_OUTGOING, &ignore).map_err(|source| {
            OpenError::IgnoreOutgoing {
                interface: name.clone(),
                source,
            }
        })?;
        let socket = PacketSocket {
            fd,
            interface: name,
            index,
            mtu,
        };
        socket.drain_unbound();
        Ok(socket)
    }

    /// Drops what the socket caught between its creation and its bind,
    /// which may come from any interface.
    fn drain_unbound(&self) {
        let mut scratch = [0u8; 64];
        while rustix::net::recv(&self.fd, &mut scratch[..], RecvFlags::TRUNC).is_ok() {}
    }

    /// The interface's name.
    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// The interface's MTU when the socket was opened: the longest
    /// payload after the Ethernet header it carries.
    pub fn mtu(&self) -> usize {
        self.mtu
    }

    /// Reads one frame into `buf`, or `WouldBlock` when none is waiting.
    pub fn receive(&self, buf: &mut [u8]) -> io::Result<Received> {
        let (got, full) = rustix::net::recv(&self.fd, buf, RecvFlags::TRUNC)?;
        Ok(if full > got {
            Received::Truncated(full)
        } else {
            Received::Frame(full)
        })
    }

    /// Sends one whole frame out of the interface. `EMSGSIZE` says the
    /// frame is longer than the interface carries.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        rustix::net::send(&self.fd, frame, SendFlags::empty())?;
        Ok(())
    }

    /// Whether the interface the socket is bound to still exists.
    pub fn presence(&self) -> Presence {
        match netdevice::name_to_index(&self.fd, &self.interface) {
            Ok(index) if index == self.index => Presence::There,
            Ok(_) | Err(Errno::NODEV) => Presence::Gone,
            // Anything else says nothing about the interface.
            Err(_) => Presence::There,
        }
    }
}

impl AsFd for PacketSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for PacketSocket {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }
}

/// The interface's MTU (`SIOCGIFMTU`, in the socket's namespace).
fn read_mtu(fd: BorrowedFd<'_>, interface: &str) -> io::Result<usize> {
    // SAFETY: ifreq is plain integers, byte arrays and a union of them,
    // all zero being valid.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(interface.bytes()) {
        *slot = byte as libc::c_char;
    }
    // SAFETY: `fd` is an open socket for the duration of the call;
    // SIOCGIFMTU reads the NUL-terminated name (at most 15 bytes were
    // copied into the 16-byte, zeroed `ifr_name`) and writes an int into
    // the union of `request`, which lives until the call returns.
    let result = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::SIOCGIFMTU as libc::Ioctl,
            &raw mut request,
        )
    };
    if result != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFMTU succeeded, so it wrote `ifru_mtu`.
    let mtu = unsafe { request.ifr_ifru.ifru_mtu };
    usize::try_from(mtu).map_err(|_| io::Error::other(format!("a negative MTU: {mtu}")))
}

/// Binds `fd` to the interface `index`, receiving every EtherType.
fn bind_to(fd: BorrowedFd<'_>, index: u32) -> io::Result<()> {
    // SAFETY: sockaddr_ll is plain integers and byte arrays, all zero
    // being a valid (unspecified) address.
    let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    address.sll_family = libc::AF_PACKET as libc::c_ushort;
    address.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
    address.sll_ifindex = index as libc::c_int;
    // SAFETY: `fd` is an open socket for the duration of the call, and the
    // pointer and length describe `address`, a sockaddr_ll that lives
    // until the call returns; the kernel only reads it.
    let result = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&raw const address).cast::<libc::sockaddr>(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `setsockopt(fd, SOL_PACKET, option, value)`, for an option whose value
/// has exactly the type `T`.
fn set_packet_option<T>(fd: BorrowedFd<'_>, option: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `fd` is an open socket for the duration of the call; the
    // pointer and length describe `value`, borrowed for the call, and the
    // kernel only reads that many bytes. Callers pass the C type the
    // option expects (packet_mreq, int).
    let result = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            option,
            (value as *const T).cast::<libc::c_void>(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_are_checked_before_any_socket_is_opened() {
        for bad in ["", "sixteen-chars-xx", "a/b", "eth 0", "eth0:1", ".", ".."] {
            assert!(
                matches!(PacketSocket::open(bad), Err(OpenError::BadName(_))),
                "{bad:?}"
            );
        }
        for good in ["eth0", "veth-a.1", "enp0s31f6", "fifteen-chars-x"] {
            assert!(valid_name(good), "{good}");
        }
    }
}
