//! EVE's ACLs: a list of rules per app interface, first match wins, an
//! implicit drop-all at the end.
//!
//! [`compile`] turns EVE's `ACE` messages into [`Rule`]s the way EVE's
//! zedrouter reads them (`pkg/pillar/nireconciler/linux_acl.go`): at most
//! one action (none means allow); drop, limit and port map exclude each
//! other; matches on `ip` (address or subnet of the remote end), `host` (a
//! DNS name, suffix-matched, resolved by watching the app's DNS answers; an
//! address or subnet there is read as `ip`), `protocol`, `lport` (the app's
//! port; for a port map the outside port), `fport` (the remote port) and
//! `adapter` (the device port's label). Ports need a protocol; a port map
//! needs `lport` and a target port; `host` is refused on switch instances.
//! A rule EVE would refuse is skipped and reported, as EVE does. Rules for
//! IPv6 addresses are skipped: instances here are IPv4.
//!
//! One difference: EVE does not look at `ACE.dir`; here an `INGRESS` rule
//! is only tried for flows the remote end starts and an `EGRESS` rule only
//! for flows the app starts (`BOTH`, the default, for either).

mod hosts;
mod limit;
mod matcher;

pub(crate) use hosts::HostSets;
pub(crate) use limit::TokenBucket;
pub(crate) use matcher::{Decision, FlowView, decide};

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::net::Ipv4Addr;

use eve_proto::config::{Ace, AceDirection};
use smoltcp::wire::Ipv4Cidr;

use crate::wire::{PROTO_ICMP, PROTO_TCP, PROTO_UDP};

/// Which flows a rule is tried for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RuleDir {
    Both,
    /// Flows the remote end starts.
    Ingress,
    /// Flows the app starts.
    Egress,
}

/// The remote end a rule matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Remote {
    Net(Ipv4Cidr),
    /// A DNS name and every name under it, lower case, no trailing dot.
    Host(String),
}

/// An inclusive port range (`80`, or `8000:8080` as iptables writes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ports {
    pub first: u16,
    pub last: u16,
}

impl Ports {
    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }
}

/// iptables' `limit` match: `rate` packets per `unit`, bursts of `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LimitSpec {
    /// Nanoseconds between two packets at the sustained rate.
    pub interval_ns: u64,
    pub burst: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Allow,
    Drop,
    Limit(LimitSpec),
    /// Traffic to the outside port `lport` goes to the app's `app_port`.
    PortMap {
        app_port: u16,
    },
}

/// One compiled ACE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rule {
    pub id: i32,
    /// The ACE's name, for flow logs.
    pub name: String,
    pub dir: RuleDir,
    pub remote: Option<Remote>,
    pub proto: Option<u8>,
    pub lport: Option<Ports>,
    pub fport: Option<Ports>,
    pub adapter: Option<String>,
    pub action: Action,
}

/// Why an ACE was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AclError {
    MultipleActions,
    ConflictingActions,
    PortMapWithoutTarget,
    PortMapWithoutLport,
    /// A port match without `protocol`, or with one that has no ports.
    PortWithoutProtocol,
    BadProtocol,
    BadPort,
    BadAddress,
    BadHostName,
    BadLimitUnit,
    /// A limit iptables refuses: over 10000 a second, or bursts over 10000.
    BadLimit,
    /// `host` on a switch network instance.
    HostOnSwitch,
    /// `eidset` (EVE's overlay) or a match type EVE does not know.
    UnsupportedMatch,
}

impl core::fmt::Display for AclError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            AclError::MultipleActions => "rule with more than one action",
            AclError::ConflictingActions => "rule combines drop, limit and port map",
            AclError::PortMapWithoutTarget => "port map with no target port",
            AclError::PortMapWithoutLport => "port map without lport",
            AclError::PortWithoutProtocol => "port match without a TCP or UDP protocol match",
            AclError::BadProtocol => "unknown protocol",
            AclError::BadPort => "port is not a number or range",
            AclError::BadAddress => "not an IPv4 address or subnet",
            AclError::BadHostName => "not a DNS name",
            AclError::BadLimitUnit => "limit unit is not second, minute, hour or day",
            AclError::BadLimit => "limit over 10000 a second or burst over 10000",
            AclError::HostOnSwitch => "host match on a switch network instance",
            AclError::UnsupportedMatch => "unsupported match type",
        })
    }
}

/// A rule that could not be used: its id and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleError {
    pub rule_id: i32,
    pub error: AclError,
}

/// Compiles an interface's ACEs, skipping (and returning) those that do
/// not parse, as EVE does.
pub(crate) fn compile(aces: &[Ace], on_switch: bool) -> (Vec<Rule>, Vec<RuleError>) {
    let mut rules = Vec::new();
    let mut errors = Vec::new();
    for ace in aces {
        match compile_one(ace, on_switch) {
            Ok(Some(rule)) => rules.push(rule),
            Ok(None) => {}
            Err(error) => errors.push(RuleError {
                rule_id: ace.id,
                error,
            }),
        }
    }
    (rules, errors)
}

fn action(ace: &Ace) -> Result<Action, AclError> {
    let Some(action) = ace.actions.first() else {
        return Ok(Action::Allow);
    };
    if ace.actions.len() > 1 {
        return Err(AclError::MultipleActions);
    }
    if usize::from(action.drop) + usize::from(action.limit) + usize::from(action.portmap) > 1 {
        return Err(AclError::ConflictingActions);
    }
    if action.drop {
        return Ok(Action::Drop);
    }
    if action.portmap {
        let app_port = u16::try_from(action.app_port)
            .ok()
            .filter(|p| *p != 0)
            .ok_or(AclError::PortMapWithoutTarget)?;
        return Ok(Action::PortMap { app_port });
    }
    if action.limit {
        return Ok(Action::Limit(limit_spec(
            action.limitrate,
            &action.limitunit,
            action.limitburst,
        )?));
    }
    Ok(Action::Allow)
}

/// As EVE hands it to iptables' `limit` match (`--limit RATE/UNIT` only
/// when the rate is not 0, `--limit-burst BURST` only when the burst is
/// not 0): iptables' defaults are 3 an hour and 5; the unit is a
/// non-empty prefix of `second`, `minute`, `hour` or `day` in any case,
/// as iptables' `parse_rate` reads it (nothing else, spaces and a second
/// `/` included); a rate over 10000 a second and a burst over 10000 are
/// refused, as iptables refuses them.
fn limit_spec(rate: u32, unit: &str, burst: u32) -> Result<LimitSpec, AclError> {
    const SECOND: u64 = 1_000_000_000;
    /// iptables' `XT_LIMIT_SCALE`: the fastest rate is this many a second.
    const MAX_PER_SECOND: u64 = 10_000;
    const MAX_BURST: u32 = 10_000;
    if burst > MAX_BURST {
        return Err(AclError::BadLimit);
    }
    let burst = if burst == 0 { 5 } else { burst };
    if rate == 0 {
        return Ok(LimitSpec {
            interval_ns: 3600 * SECOND / 3,
            burst,
        });
    }
    let lower = unit.to_ascii_lowercase();
    let (seconds, unit_ns) = [
        ("second", 1, SECOND),
        ("minute", 60, 60 * SECOND),
        ("hour", 3600, 3600 * SECOND),
        ("day", 86_400, 86_400 * SECOND),
    ]
    .into_iter()
    .find(|(name, _, _)| !lower.is_empty() && name.starts_with(lower.as_str()))
    .map(|(_, seconds, ns)| (seconds, ns))
    .ok_or(AclError::BadLimitUnit)?;
    if u64::from(rate) > MAX_PER_SECOND * seconds {
        return Err(AclError::BadLimit);
    }
    Ok(LimitSpec {
        interval_ns: (unit_ns / u64::from(rate)).max(1),
        burst,
    })
}

fn protocol(value: &str) -> Result<Option<u8>, AclError> {
    let value = value.trim().to_ascii_lowercase();
    match value.as_str() {
        "tcp" => Ok(Some(PROTO_TCP)),
        "udp" => Ok(Some(PROTO_UDP)),
        "icmp" => Ok(Some(PROTO_ICMP)),
        "all" => Ok(None),
        number => number
            .parse::<u8>()
            .map(|p| if p == 0 { None } else { Some(p) })
            .map_err(|_| AclError::BadProtocol),
    }
}

/// A port or range as iptables' `--sport`/`--dport` read what EVE hands
/// them: `N`, `N:M`, `:M` (from 0) or `N:` (to 65535), the first not
/// above the last. Service names (`/etc/services`) are not known here.
fn ports(value: &str) -> Result<Ports, AclError> {
    let value = value.trim();
    let port = |text: &str, empty: u16| -> Result<u16, AclError> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(empty);
        }
        text.parse().map_err(|_| AclError::BadPort)
    };
    let (first, last) = match value.split_once(':') {
        Some((first, last)) => (port(first, 0)?, port(last, u16::MAX)?),
        None if value.is_empty() => return Err(AclError::BadPort),
        None => {
            let only = port(value, 0)?;
            (only, only)
        }
    };
    if first > last {
        return Err(AclError::BadPort);
    }
    Ok(Ports { first, last })
}

/// An address or subnet; `Ok(None)` for IPv6 (the rule is for the other
/// IP version and is skipped, as EVE skips it on IPv4).
fn address(value: &str) -> Result<Option<Ipv4Cidr>, AclError> {
    let value = value.trim();
    let (addr, len) = value.split_once('/').unwrap_or((value, "32"));
    if addr.contains(':') {
        return Ok(None);
    }
    let addr: Ipv4Addr = addr.parse().map_err(|_| AclError::BadAddress)?;
    let len: u8 = len.parse().map_err(|_| AclError::BadAddress)?;
    if len > 32 {
        return Err(AclError::BadAddress);
    }
    Ok(Some(Ipv4Cidr::new(addr, len).network()))
}

fn looks_like_address(value: &str) -> bool {
    let head = value.split('/').next().unwrap_or(value);
    head.parse::<Ipv4Addr>().is_ok() || head.contains(':')
}

fn host_name(value: &str) -> Result<String, AclError> {
    let name = value.trim().trim_end_matches('.').to_ascii_lowercase();
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if valid {
        Ok(name)
    } else {
        Err(AclError::BadHostName)
    }
}

fn compile_one(ace: &Ace, on_switch: bool) -> Result<Option<Rule>, AclError> {
    let action = action(ace)?;
    let mut rule = Rule {
        id: ace.id,
        name: ace.name.clone(),
        dir: match AceDirection::try_from(ace.dir) {
            Ok(AceDirection::Ingress) => RuleDir::Ingress,
            Ok(AceDirection::Egress) => RuleDir::Egress,
            _ => RuleDir::Both,
        },
        remote: None,
        proto: None,
        lport: None,
        fport: None,
        adapter: None,
        action,
    };
    let mut ipv6 = false;
    for m in &ace.matches {
        match m.r#type.as_str() {
            "ip" => match address(&m.value)? {
                Some(net) => rule.remote = Some(Remote::Net(net)),
                None => ipv6 = true,
            },
            "host" if looks_like_address(&m.value) => match address(&m.value)? {
                Some(net) => rule.remote = Some(Remote::Net(net)),
                None => ipv6 = true,
            },
            "host" if on_switch => return Err(AclError::HostOnSwitch),
            "host" => rule.remote = Some(Remote::Host(host_name(&m.value)?)),
            "protocol" => rule.proto = protocol(&m.value)?,
            // EVE matches a port only when the value is not empty.
            "lport" if m.value.is_empty() => rule.lport = None,
            "fport" if m.value.is_empty() => rule.fport = None,
            "lport" => rule.lport = Some(ports(&m.value)?),
            "fport" => rule.fport = Some(ports(&m.value)?),
            "adapter" => rule.adapter = Some(m.value.trim().to_string()),
            _ => return Err(AclError::UnsupportedMatch),
        }
    }
    let has_ports = matches!(rule.proto, Some(PROTO_TCP | PROTO_UDP));
    if (rule.lport.is_some() || rule.fport.is_some()) && !has_ports {
        return Err(AclError::PortWithoutProtocol);
    }
    if let Action::PortMap { .. } = rule.action {
        match rule.lport {
            Some(p) if p.first == p.last => {}
            Some(_) => return Err(AclError::BadPort),
            None => return Err(AclError::PortMapWithoutLport),
        }
        if !has_ports {
            return Err(AclError::PortWithoutProtocol);
        }
    }
    if ipv6 {
        return Ok(None);
    }
    Ok(Some(rule))
}

#[cfg(test)]
mod tests;
