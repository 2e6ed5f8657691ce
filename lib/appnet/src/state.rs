//! What survives a restart of zedrouter: every instance's address
//! reservations (so apps keep their addresses), the tracked flows with
//! their NAT bindings (so connections, port-mapped ones included, carry
//! on), and the addresses learned for `host` rules. The caller stores the
//! bytes (atomically, e.g. in a statestore record) and gives them back
//! after a restart.
//!
//! Restore after the instances are set and before the interfaces are
//! attached: reservations go straight into the instances, so an
//! interface attached next gets its old address; flows and learned
//! addresses wait (at most [`PARKED_FOR`]) for their interface and rules.
//!
//! The format is ours: `APNS`, a version byte, then three counted lists
//! (reservations, flows, learned addresses), big-endian. Reading checks
//! every length and count against a bound; bytes that do not read
//! completely are refused whole and change nothing.

use alloc::string::String;
use alloc::vec::Vec;
use core::net::Ipv4Addr;

use smoltcp::time::{Duration, Instant};
use smoltcp::wire::EthernetAddress;
use wirebytes::{Reader, Sink};

use crate::flows::TcpPhase;

const MAGIC: &[u8; 4] = b"APNS";
const VERSION: u8 = 1;
/// How long saved flows and learned addresses wait for their interface.
pub const PARKED_FOR: Duration = Duration::from_secs(120);
const MAX_ITEMS: usize = 1 << 20;
const MAX_NAME: usize = 255;
/// A reservation of an attached interface, not a held one.
const ATTACHED: u32 = u32::MAX;

/// Why saved state could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateError {
    /// Not our format, or a version this engine does not read.
    NotOurs,
    /// Cut short, a field too long, or bytes after the end.
    Malformed,
}

impl core::fmt::Display for StateError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            StateError::NotOurs => "not saved app-network state of a known version",
            StateError::Malformed => "saved app-network state is cut short or malformed",
        })
    }
}

impl core::error::Error for StateError {}

impl From<wirebytes::Error> for StateError {
    fn from(_: wirebytes::Error) -> Self {
        StateError::Malformed
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SavedReservation {
    pub instance: String,
    pub mac: EthernetAddress,
    pub ip: Ipv4Addr,
    /// Seconds left on a hold; `None` for an attached interface.
    pub held_secs: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SavedFlow {
    pub instance: String,
    pub mac: EthernetAddress,
    pub proto: u8,
    pub local: (Ipv4Addr, u16),
    pub remote: (Ipv4Addr, u16),
    pub inbound: bool,
    pub rule_id: i32,
    pub default_drop: bool,
    /// The uplink's label and the outside address and port.
    pub nat: Option<(String, Ipv4Addr, u16)>,
    pub start_ms: u64,
    pub remaining_secs: u32,
    pub tcp: TcpPhase,
    pub counts: [u64; 4],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SavedHost {
    pub instance: String,
    pub pattern: String,
    pub ip: Ipv4Addr,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Saved {
    pub reservations: Vec<SavedReservation>,
    pub flows: Vec<SavedFlow>,
    pub hosts: Vec<SavedHost>,
}

struct VecSink(Vec<u8>);

impl Sink for VecSink {
    fn put(&mut self, bytes: &[u8]) -> Result<(), wirebytes::Error> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
}

fn name(out: &mut VecSink, s: &str) {
    let bytes = s.as_bytes();
    let _ = out.u8_prefixed(&bytes[..bytes.len().min(MAX_NAME)]);
}

fn read_name(r: &mut Reader<'_>) -> Result<String, StateError> {
    let bytes = r.u8_prefixed(MAX_NAME)?;
    core::str::from_utf8(bytes)
        .map(String::from)
        .map_err(|_| StateError::Malformed)
}

fn ip(r: &mut Reader<'_>) -> Result<Ipv4Addr, StateError> {
    Ok(Ipv4Addr::from(r.array::<4>()?))
}

fn count(r: &mut Reader<'_>) -> Result<usize, StateError> {
    let n = r.be_u32()? as usize;
    if n > MAX_ITEMS {
        return Err(StateError::Malformed);
    }
    Ok(n)
}

fn phase_byte(phase: TcpPhase) -> u8 {
    match phase {
        TcpPhase::Opening => 0,
        TcpPhase::Established => 1,
        TcpPhase::Closing => 2,
        TcpPhase::Closed => 3,
    }
}

fn phase(byte: u8) -> Result<TcpPhase, StateError> {
    Ok(match byte {
        0 => TcpPhase::Opening,
        1 => TcpPhase::Established,
        2 => TcpPhase::Closing,
        3 => TcpPhase::Closed,
        _ => return Err(StateError::Malformed),
    })
}

impl Saved {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = VecSink(Vec::new());
        let _ = out.put(MAGIC);
        let _ = out.u8(VERSION);
        let _ = out.be_u32(self.reservations.len() as u32);
        for r in &self.reservations {
            name(&mut out, &r.instance);
            let _ = out.put(r.mac.as_bytes());
            let _ = out.put(&r.ip.octets());
            let _ = out.be_u32(r.held_secs.unwrap_or(ATTACHED));
        }
        let _ = out.be_u32(self.flows.len() as u32);
        for f in &self.flows {
            name(&mut out, &f.instance);
            let _ = out.put(f.mac.as_bytes());
            let _ = out.u8(f.proto);
            let _ = out.put(&f.local.0.octets());
            let _ = out.be_u16(f.local.1);
            let _ = out.put(&f.remote.0.octets());
            let _ = out.be_u16(f.remote.1);
            let _ = out.u8(u8::from(f.inbound) | (u8::from(f.default_drop) << 1));
            let _ = out.be_u32(f.rule_id as u32);
            match &f.nat {
                Some((label, addr, port)) => {
                    let _ = out.u8(1);
                    name(&mut out, label);
                    let _ = out.put(&addr.octets());
                    let _ = out.be_u16(*port);
                }
                None => {
                    let _ = out.u8(0);
                }
            }
            let _ = out.be_u64(f.start_ms);
            let _ = out.be_u32(f.remaining_secs);
            let _ = out.u8(phase_byte(f.tcp));
            for c in f.counts {
                let _ = out.be_u64(c);
            }
        }
        let _ = out.be_u32(self.hosts.len() as u32);
        for h in &self.hosts {
            name(&mut out, &h.instance);
            name(&mut out, &h.pattern);
            let _ = out.put(&h.ip.octets());
        }
        out.0
    }

    pub fn decode(bytes: &[u8]) -> Result<Saved, StateError> {
        let mut r = Reader::new(bytes);
        if r.take(4).map_err(|_| StateError::NotOurs)? != MAGIC
            || r.u8().map_err(|_| StateError::NotOurs)? != VERSION
        {
            return Err(StateError::NotOurs);
        }
        let mut saved = Saved::default();
        for _ in 0..count(&mut r)? {
            let instance = read_name(&mut r)?;
            let mac = EthernetAddress(r.array::<6>()?);
            let ip = ip(&mut r)?;
            let held = r.be_u32()?;
            saved.reservations.push(SavedReservation {
                instance,
                mac,
                ip,
                held_secs: (held != ATTACHED).then_some(held),
            });
        }
        for _ in 0..count(&mut r)? {
            let instance = read_name(&mut r)?;
            let mac = EthernetAddress(r.array::<6>()?);
            let proto = r.u8()?;
            let local = (ip(&mut r)?, r.be_u16()?);
            let remote = (ip(&mut r)?, r.be_u16()?);
            let flags = r.u8()?;
            if flags > 3 {
                return Err(StateError::Malformed);
            }
            let rule_id = r.be_u32()? as i32;
            let nat = match r.u8()? {
                0 => None,
                1 => Some((read_name(&mut r)?, ip(&mut r)?, r.be_u16()?)),
                _ => return Err(StateError::Malformed),
            };
            let start_ms = r.be_u64()?;
            let remaining_secs = r.be_u32()?;
            let tcp = phase(r.u8()?)?;
            let mut counts = [0u64; 4];
            for c in &mut counts {
                *c = r.be_u64()?;
            }
            saved.flows.push(SavedFlow {
                instance,
                mac,
                proto,
                local,
                remote,
                inbound: flags & 1 != 0,
                rule_id,
                default_drop: flags & 2 != 0,
                nat,
                start_ms,
                remaining_secs,
                tcp,
                counts,
            });
        }
        for _ in 0..count(&mut r)? {
            saved.hosts.push(SavedHost {
                instance: read_name(&mut r)?,
                pattern: read_name(&mut r)?,
                ip: ip(&mut r)?,
            });
        }
        r.finish()?;
        Ok(saved)
    }
}

/// Saved flows and learned addresses waiting for their interface.
#[derive(Debug, Default)]
pub(crate) struct Parked {
    pub flows: Vec<SavedFlow>,
    pub hosts: Vec<SavedHost>,
    pub until: Option<Instant>,
}
