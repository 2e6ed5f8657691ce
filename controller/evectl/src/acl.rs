//! ACL rules of `evectl app deploy` (`--allow`, `--drop`, `--limit`) in a
//! readable syntax, and the EVE `ACE`s (protobuf JSON) they become.
//!
//! A rule is `PROTOCOL[:PART]...`, the parts in any order:
//!
//! | part | EVE match | meaning |
//! |---|---|---|
//! | `tcp`, `udp`, `icmp`, `0`-`255`, `all` (first) | `protocol` (none for `all`) | IP protocol |
//! | `host=NAME` | `host` | a DNS name the app resolves |
//! | `ip=A.B.C.D[/N]` | `ip` | the far end's address or subnet |
//! | `adapter=NAME` | `adapter` | the device port the traffic uses |
//! | `lport=N[-M]` | `lport` | the app side's port (range) |
//! | `N[-M]` or `fport=N[-M]` | `fport` | the far end's port (range) |
//! | `RATE/UNIT[/BURST]` (`--limit` only) | action `limit` | packets per `s`, `m`, `h` or `d` |
//!
//! `--allow all` alone is EVE's allow-everything rule (`ip 0.0.0.0/0`);
//! `ip=A.B.C.D/0` is every address, the same as no `ip` part.
//! Rules keep their order (EVE's first match wins) and take ids 1, 2, ...;
//! an app deployed without rules gets that allow-everything rule.
//! [`AclRule::render`] writes the canonical form, which parses back to
//! the same rule.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use serde_json::{Value, json};

/// What a matching packet gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Passes (EVE: an ACE without actions).
    Allow,
    /// Is dropped.
    Drop,
    /// Passes up to a rate.
    Limit {
        /// Packets per unit.
        rate: u32,
        /// The unit.
        unit: RateUnit,
        /// Packets allowed in a burst (EVE's default when absent).
        burst: Option<u32>,
    },
}

/// The time unit of a rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateUnit {
    Second,
    Minute,
    Hour,
    Day,
}

impl RateUnit {
    /// EVE's `limitunit` (iptables' unit letters, which our zedrouter
    /// also reads).
    fn letter(self) -> &'static str {
        match self {
            Self::Second => "s",
            Self::Minute => "m",
            Self::Hour => "h",
            Self::Day => "d",
        }
    }

    fn seconds(self) -> u64 {
        match self {
            Self::Second => 1,
            Self::Minute => 60,
            Self::Hour => 3600,
            Self::Day => 86_400,
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [Self::Second, Self::Minute, Self::Hour, Self::Day]
            .into_iter()
            .find(|u| {
                let word = match u {
                    Self::Second => "second",
                    Self::Minute => "minute",
                    Self::Hour => "hour",
                    Self::Day => "day",
                };
                !s.is_empty() && word.starts_with(s)
            })
    }
}

/// The far end: a DNS name or an IPv4 address or subnet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// `host=NAME`: lower-case labels of letters, digits and `-`.
    Host(String),
    /// `ip=A.B.C.D/N` (a bare address is `/32`; never `/0`, which is no
    /// peer at all).
    Ip(Ipv4Addr, u8),
}

/// A port or an inclusive range of ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    /// First port.
    pub first: u16,
    /// Last port (the first for a single port).
    pub last: u16,
}

impl Ports {
    fn render(self) -> String {
        if self.first == self.last {
            self.first.to_string()
        } else {
            format!("{}-{}", self.first, self.last)
        }
    }

    /// EVE's port value: `N` or `N:M` (iptables' range form).
    fn eve(self) -> String {
        if self.first == self.last {
            self.first.to_string()
        } else {
            format!("{}:{}", self.first, self.last)
        }
    }
}

/// One ACL rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclRule {
    /// What matching traffic gets.
    pub verdict: Verdict,
    /// IP protocol number; `None` is any.
    pub protocol: Option<u8>,
    /// The far end.
    pub peer: Option<Peer>,
    /// The device port.
    pub adapter: Option<String>,
    /// The app side's port.
    pub lport: Option<Ports>,
    /// The far end's port.
    pub fport: Option<Ports>,
}

/// Why a rule was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("ACL rule {rule:?}: {why}")]
pub struct AclError {
    /// The rule as given (truncated when long).
    pub rule: String,
    /// What is wrong with it.
    pub why: String,
}

/// Longest rule text accepted: a DNS name is at most 253 bytes.
const MAX_RULE: usize = 512;

fn protocol_name(p: u8) -> String {
    match p {
        6 => "tcp".into(),
        17 => "udp".into(),
        1 => "icmp".into(),
        n => n.to_string(),
    }
}

fn parse_ports(s: &str) -> Result<Ports, String> {
    let port = |p: &str| {
        if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        p.parse::<u16>().ok().filter(|&p| p != 0)
    };
    let bad = || format!("{s:?} is not a port 1-65535 or a range N-M");
    let (first, last) = match s.split_once('-') {
        Some((a, b)) => (port(a).ok_or_else(bad)?, port(b).ok_or_else(bad)?),
        None => {
            let p = port(s).ok_or_else(bad)?;
            (p, p)
        }
    };
    if first > last {
        return Err(format!("port range {s:?} runs backwards"));
    }
    Ok(Ports { first, last })
}

fn parse_host(s: &str) -> Result<String, String> {
    let name = s.trim_end_matches('.').to_ascii_lowercase();
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(format!("host {s:?} is not a DNS name"));
    }
    Ok(name)
}

fn parse_ip(s: &str) -> Result<Peer, String> {
    let bad = || format!("ip {s:?} is not an IPv4 address or A.B.C.D/N subnet");
    let (addr, len) = match s.split_once('/') {
        Some((a, n)) => {
            let digits = !n.is_empty() && n.len() <= 2 && n.bytes().all(|b| b.is_ascii_digit());
            let len = n
                .parse::<u8>()
                .ok()
                .filter(|&n| digits && n <= 32)
                .ok_or_else(bad)?;
            (a, len)
        }
        None => (s, 32),
    };
    let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
    Ok(Peer::Ip(addr, len))
}

fn parse_rate(s: &str) -> Result<Verdict, String> {
    let bad = || format!("{s:?} is not a rate RATE/UNIT[/BURST] (UNIT s, m, h or d)");
    let mut it = s.split('/');
    let number = |p: Option<&str>| {
        p.filter(|p| !p.is_empty() && p.len() <= 10 && p.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|p| p.parse::<u32>().ok())
            .filter(|&n| n != 0)
    };
    let rate = number(it.next()).ok_or_else(bad)?;
    let unit = it.next().and_then(RateUnit::parse).ok_or_else(bad)?;
    let burst = match it.next() {
        None => None,
        some => Some(number(some).ok_or_else(bad)?),
    };
    if it.next().is_some() {
        return Err(bad());
    }
    // EVE hands the limit to iptables, which refuses more than 10000 a
    // second and bursts over 10000 (and so the whole rule).
    if u64::from(rate) > 10_000 * unit.seconds() {
        return Err(format!("{s:?}: iptables limits at most 10000 a second"));
    }
    if burst.is_some_and(|b| b > 10_000) {
        return Err(format!("{s:?}: iptables bursts at most 10000"));
    }
    Ok(Verdict::Limit { rate, unit, burst })
}

/// Whether `verdict` is `--allow`, `--drop` or `--limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleKind {
    Allow,
    Drop,
    Limit,
}

impl AclRule {
    /// Parses the text of an `--allow`, `--drop` or `--limit` rule.
    pub fn parse(kind: RuleKind, text: &str) -> Result<Self, AclError> {
        let fail = |why: String| AclError {
            rule: text.chars().take(80).collect(),
            why,
        };
        if text.len() > MAX_RULE {
            return Err(fail(format!("longer than {MAX_RULE} bytes")));
        }
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(fail("spaces or control characters".into()));
        }
        let mut parts = text.split(':');
        let protocol = match parts.next().unwrap_or("") {
            "" => {
                return Err(fail(
                    "empty: expected PROTOCOL[:PART]... (tcp:host=example.org:443, all)".into(),
                ));
            }
            "all" => None,
            "tcp" => Some(6),
            "udp" => Some(17),
            "icmp" => Some(1),
            n if n.len() <= 3 && n.bytes().all(|b| b.is_ascii_digit()) => Some(
                n.parse::<u8>()
                    .map_err(|_| fail(format!("protocol {n} is above 255")))?,
            ),
            other => {
                return Err(fail(format!(
                    "protocol {other:?}: expected tcp, udp, icmp, all or a number 0-255"
                )));
            }
        };
        let mut rule = Self {
            verdict: match kind {
                RuleKind::Allow => Verdict::Allow,
                RuleKind::Drop => Verdict::Drop,
                RuleKind::Limit => Verdict::Allow,
            },
            protocol,
            peer: None,
            adapter: None,
            lport: None,
            fport: None,
        };
        let mut limited = false;
        let mut any_ip = false;
        for part in parts {
            let twice = |what: &str| fail(format!("{what} given twice"));
            match part.split_once('=') {
                Some(("host", v)) => {
                    if rule.peer.is_some() {
                        return Err(twice("host or ip"));
                    }
                    rule.peer = Some(Peer::Host(parse_host(v).map_err(fail)?));
                }
                Some(("ip", v)) => {
                    if rule.peer.is_some() || any_ip {
                        return Err(twice("host or ip"));
                    }
                    // `/0` is every address: the same as no ip part.
                    rule.peer =
                        Some(parse_ip(v).map_err(fail)?).filter(|p| !matches!(p, Peer::Ip(_, 0)));
                    any_ip = rule.peer.is_none();
                }
                Some(("adapter", v)) => {
                    if rule.adapter.is_some() {
                        return Err(twice("adapter"));
                    }
                    if v.is_empty()
                        || v.len() > 64
                        || !v
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                    {
                        return Err(fail(format!("adapter {v:?} is not a port name")));
                    }
                    rule.adapter = Some(v.to_owned());
                }
                Some(("lport", v)) => {
                    if rule.lport.is_some() {
                        return Err(twice("lport"));
                    }
                    rule.lport = Some(parse_ports(v).map_err(fail)?);
                }
                Some(("fport", v)) => {
                    if rule.fport.is_some() {
                        return Err(twice("port"));
                    }
                    rule.fport = Some(parse_ports(v).map_err(fail)?);
                }
                Some((key, _)) => {
                    return Err(fail(format!(
                        "unknown part {key:?}: expected host=, ip=, adapter=, lport=, fport= or a port"
                    )));
                }
                None if part.contains('/') => {
                    if kind != RuleKind::Limit {
                        return Err(fail(format!(
                            "a rate {part:?} belongs in --limit, not --allow or --drop"
                        )));
                    }
                    if limited {
                        return Err(twice("rate"));
                    }
                    limited = true;
                    rule.verdict = parse_rate(part).map_err(fail)?;
                }
                None => {
                    if rule.fport.is_some() {
                        return Err(twice("port"));
                    }
                    rule.fport = Some(parse_ports(part).map_err(fail)?);
                }
            }
        }
        if kind == RuleKind::Limit && !limited {
            return Err(fail("--limit needs a rate RATE/UNIT (e.g. 100/s)".into()));
        }
        let ported = rule.lport.is_some() || rule.fport.is_some();
        if ported && !matches!(rule.protocol, Some(6 | 17)) {
            return Err(fail("ports need tcp or udp".into()));
        }
        Ok(rule)
    }

    /// Which flag this rule goes with.
    pub fn kind(&self) -> RuleKind {
        match self.verdict {
            Verdict::Allow => RuleKind::Allow,
            Verdict::Drop => RuleKind::Drop,
            Verdict::Limit { .. } => RuleKind::Limit,
        }
    }

    /// The canonical text, which [`Self::parse`] reads back to this rule.
    pub fn render(&self) -> String {
        let mut s = self
            .protocol
            .map_or_else(|| "all".to_owned(), protocol_name);
        match &self.peer {
            Some(Peer::Host(h)) => {
                let _ = write!(s, ":host={h}");
            }
            Some(Peer::Ip(_, 0)) => {}
            Some(Peer::Ip(a, 32)) => {
                let _ = write!(s, ":ip={a}");
            }
            Some(Peer::Ip(a, n)) => {
                let _ = write!(s, ":ip={a}/{n}");
            }
            None => {}
        }
        if let Some(a) = &self.adapter {
            let _ = write!(s, ":adapter={a}");
        }
        if let Some(p) = self.lport {
            let _ = write!(s, ":lport={}", p.render());
        }
        if let Some(p) = self.fport {
            let _ = write!(s, ":{}", p.render());
        }
        if let Verdict::Limit { rate, unit, burst } = self.verdict {
            let _ = write!(s, ":{rate}/{}", unit.letter());
            if let Some(b) = burst {
                let _ = write!(s, "/{b}");
            }
        }
        s
    }

    /// The rule as the flag and text a user would type.
    pub fn flag(&self) -> String {
        let flag = match self.kind() {
            RuleKind::Allow => "--allow",
            RuleKind::Drop => "--drop",
            RuleKind::Limit => "--limit",
        };
        format!("{flag} {}", self.render())
    }

    /// The EVE `ACE` (protobuf JSON) with id `id`.
    pub fn ace(&self, id: usize) -> Value {
        let mut matches = Vec::new();
        if let Some(p) = self.protocol {
            matches.push(json!({"type": "protocol", "value": protocol_name(p)}));
        }
        match &self.peer {
            Some(Peer::Host(h)) => matches.push(json!({"type": "host", "value": h})),
            Some(Peer::Ip(a, n)) => {
                matches.push(json!({"type": "ip", "value": format!("{a}/{n}")}))
            }
            None => {}
        }
        if let Some(a) = &self.adapter {
            matches.push(json!({"type": "adapter", "value": a}));
        }
        if let Some(p) = self.lport {
            matches.push(json!({"type": "lport", "value": p.eve()}));
        }
        if let Some(p) = self.fport {
            matches.push(json!({"type": "fport", "value": p.eve()}));
        }
        if matches.is_empty() {
            // EVE's allow-everything: an ACE needs a match.
            matches.push(json!({"type": "ip", "value": "0.0.0.0/0"}));
        }
        let mut ace = json!({"id": id, "matches": matches});
        match self.verdict {
            Verdict::Allow => {}
            Verdict::Drop => ace["actions"] = json!([{"drop": true}]),
            Verdict::Limit { rate, unit, burst } => {
                let mut action =
                    json!({"limit": true, "limitrate": rate, "limitunit": unit.letter()});
                if let Some(b) = burst {
                    action["limitburst"] = json!(b);
                }
                ace["actions"] = json!([action]);
            }
        }
        ace
    }
}

/// An ACE (protobuf JSON) read back as a rule, for `app show`; `None` for
/// a port map or an ACE this syntax cannot say.
pub fn rule_of_ace(ace: &Value) -> Option<AclRule> {
    let mut text = Vec::new();
    let mut protocol = "all".to_owned();
    for m in ace["matches"].as_array()? {
        let value = m["value"].as_str().unwrap_or("");
        match m["type"].as_str()? {
            "protocol" => protocol = value.to_owned(),
            "ip" if value.ends_with("/0") => {}
            "lport" | "fport" => {
                text.push(format!(
                    "{}={}",
                    m["type"].as_str()?,
                    value.replace(':', "-")
                ));
            }
            kind @ ("host" | "ip" | "adapter") => text.push(format!("{kind}={value}")),
            _ => return None,
        }
    }
    let action = ace["actions"].as_array().and_then(|a| a.first());
    let kind = match action {
        None => RuleKind::Allow,
        Some(a) if a["portmap"] == true => return None,
        Some(a) if a["drop"] == true => RuleKind::Drop,
        Some(a) if a["limit"] == true => {
            let n = |v: &Value| crate::admin::proto_json_u64(v);
            let mut rate = format!(
                "{}/{}",
                n(&a["limitrate"]),
                a["limitunit"].as_str().unwrap_or("s")
            );
            if n(&a["limitburst"]) > 0 {
                let _ = write!(rate, "/{}", n(&a["limitburst"]));
            }
            text.push(rate);
            RuleKind::Limit
        }
        Some(_) => RuleKind::Allow,
    };
    let joined = std::iter::once(protocol)
        .chain(text)
        .collect::<Vec<_>>()
        .join(":");
    AclRule::parse(kind, &joined).ok()
}

#[cfg(test)]
mod tests;
