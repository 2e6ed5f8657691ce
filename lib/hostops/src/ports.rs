//! App ports: the host's port switch, which carries each app NIC's frames
//! to zedrouter's trunk NIC under the port's tag (an 802.1ad service tag,
//! 1-4094) and back.
//!
//! zedrouter decides which app interfaces exist and which tag each gets;
//! the host only moves frames. A port is named by the app instance's UUID
//! and the NIC's index in its domain: the host derives the socket the
//! app's NIC connects to from that name, so the domain that runs the app
//! finds the same port, and services never see host paths.
//!
//! - [`Attach`] starts carrying a port under a tag. Attaching the same
//!   name under the same tag again is harmless (a restarted zedrouter
//!   attaches what it finds); a tag or a name already attached otherwise
//!   fails as `TagInUse` or `NameInUse`.
//! - [`Detach`] stops carrying a tag; its socket goes.
//! - [`List`] gives every port with its counters, and the trunk's.
//!
//! And the caller's uplink forwards: a host port forwarded to a port of
//! the caller's own user-mode uplink (zedrouter's, where its port maps
//! listen), so a port map is reachable from the host.
//!
//! - [`Forward`] starts forwarding a host port (TCP or UDP) to an uplink
//!   port. Forwarding the same host port to the same uplink port again is
//!   harmless (a restarted zedrouter asks for what it wants); the host
//!   refuses ports under its lowest allowed one (1024 unless configured),
//!   ports it forwards elsewhere and ports the manifest forwards
//!   statically (`PortInUse`, `PortNotAllowed`).
//! - [`Unforward`] stops one.
//! - [`Forwards`] gives the caller's forwards and the host address they
//!   listen on. The host applies them again to a restarted VM.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

pub use crate::volumes::valid_uuid;

crate::target! {
    /// The host's port switch.
    pub struct Ports = "ports", version 1, error PortError;
    /// Carries an app NIC's frames under a tag.
    Attach = "attach": AttachRequest => PortInfo;
    /// Stops carrying a tag.
    Detach = "detach": PortRef => Empty;
    /// Every port, with counters.
    List = "list": Empty => PortList;
    /// Forwards a host port to one of the caller's uplink ports.
    Forward = "forward": ForwardRequest => Empty;
    /// Stops forwarding a host port.
    Unforward = "unforward": ForwardRef => Empty;
    /// The caller's forwards.
    Forwards = "forwards": Empty => ForwardList;
}

/// The transport a forward carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ForwardProto {
    Tcp = 0,
    Udp = 1,
}

impl ForwardProto {
    /// QEMU's and the usual name.
    pub fn name(self) -> &'static str {
        match self {
            ForwardProto::Tcp => "tcp",
            ForwardProto::Udp => "udp",
        }
    }
}

/// A host port, by transport.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Message)]
pub struct ForwardRef {
    #[prost(enumeration = "ForwardProto", tag = "1")]
    pub proto: i32,
    /// 1-65535.
    #[prost(uint32, tag = "2")]
    pub host_port: u32,
}

/// A host port forwarded to an uplink port.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Message)]
pub struct ForwardRequest {
    #[prost(message, optional, tag = "1")]
    pub host: Option<ForwardRef>,
    /// The caller's uplink port, 1-65535.
    #[prost(uint32, tag = "2")]
    pub uplink_port: u32,
}

/// The caller's forwards.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ForwardList {
    #[prost(message, repeated, tag = "1")]
    pub forwards: Vec<ForwardRequest>,
    /// The host address they listen on (127.0.0.1 unless the host was
    /// told otherwise).
    #[prost(string, tag = "2")]
    pub address: String,
}

/// Tags the switch carries: an 802.1ad VLAN ID, 0 and 4095 reserved.
pub const TAGS: core::ops::RangeInclusive<u32> = 1..=4094;

/// Most NICs an app's domain has ports for.
pub const MAX_NICS: u32 = 64;

/// A request without parameters, or an answer without content.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct Empty {}

/// One port by its tag.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct PortRef {
    #[prost(uint32, tag = "1")]
    pub tag: u32,
}

/// The app NIC a port is for.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PortName {
    /// The app instance's UUID (canonical lowercase form).
    #[prost(string, tag = "1")]
    pub app_uuid: String,
    /// The NIC's index in the app's domain, 0 first.
    #[prost(uint32, tag = "2")]
    pub nic: u32,
}

impl PortName {
    /// The host's name for the port, `<uuid>.<nic>`, when the name is
    /// valid (it names a file on the host).
    pub fn host_name(&self) -> Option<String> {
        (valid_uuid(&self.app_uuid) && self.nic < MAX_NICS)
            .then(|| alloc::format!("{}.{}", self.app_uuid, self.nic))
    }
}

/// What to attach.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct AttachRequest {
    /// In [`TAGS`].
    #[prost(uint32, tag = "1")]
    pub tag: u32,
    #[prost(message, optional, tag = "2")]
    pub name: Option<PortName>,
}

/// What happened at a port.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct PortCounters {
    /// Whether the app's NIC is connected now.
    #[prost(bool, tag = "1")]
    pub connected: bool,
    /// Connections accepted (a restarted VM connects again).
    #[prost(uint64, tag = "2")]
    pub connections: u64,
    #[prost(uint64, tag = "3")]
    pub to_trunk: u64,
    #[prost(uint64, tag = "4")]
    pub from_trunk: u64,
    /// Frames dropped: no trunk, the app's queue full, the app not
    /// connected, too short.
    #[prost(uint64, tag = "5")]
    pub dropped: u64,
}

/// One attached port.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PortInfo {
    #[prost(uint32, tag = "1")]
    pub tag: u32,
    #[prost(message, optional, tag = "2")]
    pub name: Option<PortName>,
    #[prost(message, optional, tag = "3")]
    pub counters: Option<PortCounters>,
}

/// The trunk to zedrouter.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct TrunkCounters {
    #[prost(bool, tag = "1")]
    pub connected: bool,
    #[prost(uint64, tag = "2")]
    pub connections: u64,
    #[prost(uint64, tag = "3")]
    pub frames_in: u64,
    #[prost(uint64, tag = "4")]
    pub frames_out: u64,
    /// Frames from zedrouter without a valid tag, or with a tag no port
    /// has.
    #[prost(uint64, tag = "5")]
    pub misdirected: u64,
}

/// Every attached port and the trunk.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PortList {
    #[prost(message, repeated, tag = "1")]
    pub ports: Vec<PortInfo>,
    #[prost(message, optional, tag = "2")]
    pub trunk: Option<TrunkCounters>,
}

/// Why a port operation failed.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PortError {
    #[prost(enumeration = "PortErrorCode", tag = "1")]
    pub code: i32,
    /// What it is about: a tag or a port's host name.
    #[prost(string, tag = "2")]
    pub subject: String,
    /// The host's words (a socket that could not be made).
    #[prost(string, tag = "3")]
    pub detail: String,
}

/// The reasons a port operation fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum PortErrorCode {
    Unspecified = 0,
    /// The tag carries another port.
    TagInUse = 1,
    /// The port is attached under another tag.
    NameInUse = 2,
    /// No port has the tag.
    NotFound = 3,
    /// The host could not make the port's socket, or apply a forward.
    Host = 4,
    /// The host port is forwarded elsewhere, or by the manifest.
    PortInUse = 5,
    /// The host port is under the lowest the host allows.
    PortNotAllowed = 6,
    /// No forward has the host port.
    NoForward = 7,
}

impl PortError {
    /// An error of `code` about `subject`.
    pub fn new(code: PortErrorCode, subject: &str) -> PortError {
        PortError {
            code: code as i32,
            subject: String::from(subject),
            detail: String::new(),
        }
    }
}

impl fmt::Display for PortError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.subject;
        match self.code() {
            PortErrorCode::TagInUse => write!(f, "tag {s} carries another port"),
            PortErrorCode::NameInUse => write!(f, "port {s} is attached under another tag"),
            PortErrorCode::NotFound => write!(f, "no port has tag {s}"),
            PortErrorCode::Host => write!(f, "port {s}: the host failed: {}", self.detail),
            PortErrorCode::PortInUse => write!(f, "host port {s} is forwarded elsewhere"),
            PortErrorCode::PortNotAllowed => {
                write!(f, "host port {s} is not one the host forwards")
            }
            PortErrorCode::NoForward => write!(f, "host port {s} is not forwarded"),
            PortErrorCode::Unspecified => write!(f, "{s}: port error {}", self.code),
        }
    }
}

#[cfg(test)]
mod tests {
    use alloc::format;
    use prost::Message;

    use super::*;
    use crate::{Operation, Target};

    #[test]
    fn the_target_lists_every_operation_once() {
        let spec = Ports::SPEC;
        assert_eq!((spec.name, spec.version), ("ports", 1));
        for name in [
            Attach::NAME,
            Detach::NAME,
            List::NAME,
            Forward::NAME,
            Unforward::NAME,
            Forwards::NAME,
        ] {
            assert!(spec.serves(name), "{name}");
        }
        assert_eq!(spec.operations.len(), 6);
    }

    #[test]
    fn host_names_come_only_from_valid_names() {
        let good = PortName {
            app_uuid: "6ba7b810-9dad-11d1-80b4-00c04fd430c8".into(),
            nic: 2,
        };
        assert_eq!(
            good.host_name().as_deref(),
            Some("6ba7b810-9dad-11d1-80b4-00c04fd430c8.2")
        );
        let far = PortName {
            nic: MAX_NICS,
            ..good.clone()
        };
        assert_eq!(far.host_name(), None);
        for uuid in [
            "../../run/zedagent.bus-aaaaaaaaaaaaaaaaaaa",
            "",
            "6BA7B810-9DAD-11D1-80B4-00C04FD430C8",
        ] {
            let bad = PortName {
                app_uuid: uuid.into(),
                nic: 0,
            };
            assert_eq!(bad.host_name(), None, "{uuid}");
        }
    }

    #[test]
    fn errors_round_trip_and_read_well() {
        let e = PortError {
            detail: "permission denied".into(),
            ..PortError::new(PortErrorCode::Host, "u.0")
        };
        let back = PortError::decode(e.encode_to_vec().as_slice()).unwrap();
        assert_eq!(
            format!("{back}"),
            "port u.0: the host failed: permission denied"
        );
        assert_eq!(
            format!("{}", PortError::new(PortErrorCode::TagInUse, "7")),
            "tag 7 carries another port"
        );
        assert!(PortList::decode(&[0x0a, 0x7f][..]).is_err());
        assert_eq!(
            format!("{}", PortError::new(PortErrorCode::PortInUse, "tcp/8080")),
            "host port tcp/8080 is forwarded elsewhere"
        );
    }

    #[test]
    fn forwards_round_trip() {
        let list = ForwardList {
            forwards: alloc::vec![ForwardRequest {
                host: Some(ForwardRef {
                    proto: ForwardProto::Udp as i32,
                    host_port: 5353,
                }),
                uplink_port: 53,
            }],
            address: "127.0.0.1".into(),
        };
        let back = ForwardList::decode(list.encode_to_vec().as_slice()).unwrap();
        assert_eq!(back, list);
        assert_eq!(back.forwards[0].host.unwrap().proto(), ForwardProto::Udp);
        assert_eq!(ForwardProto::Tcp.name(), "tcp");
    }
}
