use super::*;

/// A small deterministic generator (xorshift64*), so that the property
/// tests need no extra crate and fail the same way every run.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self) -> bool {
        self.below(2) == 0
    }

    fn label(&mut self) -> String {
        const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let len = 1 + self.below(12) as usize;
        (0..len)
            .map(|_| CHARS[self.below(CHARS.len() as u64) as usize] as char)
            .collect()
    }

    fn ports(&mut self) -> Ports {
        let first = 1 + self.below(65_535) as u16;
        let last = if self.chance() {
            first
        } else {
            first + self.below(u64::from(u16::MAX - first) + 1) as u16
        };
        Ports { first, last }
    }

    fn rule(&mut self) -> AclRule {
        let protocol = match self.below(5) {
            0 => None,
            1 => Some(6),
            2 => Some(17),
            3 => Some(1),
            _ => Some(self.below(256) as u8),
        };
        let ported = matches!(protocol, Some(6 | 17));
        let peer = match self.below(3) {
            0 => None,
            1 => Some(Peer::Host(
                (0..1 + self.below(3))
                    .map(|_| self.label())
                    .collect::<Vec<_>>()
                    .join("."),
            )),
            _ => Some(Peer::Ip(
                Ipv4Addr::from(self.next() as u32),
                1 + self.below(32) as u8,
            )),
        };
        let verdict = match self.below(3) {
            0 => Verdict::Allow,
            1 => Verdict::Drop,
            _ => {
                // Any rate iptables takes: at most 10000 a second.
                let (unit, seconds) = [
                    (RateUnit::Second, 1),
                    (RateUnit::Minute, 60),
                    (RateUnit::Hour, 3600),
                    (RateUnit::Day, 86_400),
                ][self.below(4) as usize];
                Verdict::Limit {
                    rate: 1 + self.below(10_000 * seconds) as u32,
                    unit,
                    burst: self.chance().then(|| 1 + self.below(10_000) as u32),
                }
            }
        };
        AclRule {
            verdict,
            protocol,
            peer,
            adapter: self.chance().then(|| format!("eth{}", self.below(8))),
            lport: (ported && self.chance()).then(|| self.ports()),
            fport: (ported && self.chance()).then(|| self.ports()),
        }
    }
}

#[test]
fn parse_of_render_is_the_rule() {
    let mut g = Gen(0x9e37_79b9_7f4a_7c15);
    for _ in 0..20_000 {
        let rule = g.rule();
        let text = rule.render();
        assert_eq!(
            AclRule::parse(rule.kind(), &text),
            Ok(rule.clone()),
            "{text}"
        );
        // An ACE reads back to the same rule (the allow-everything ACE is
        // `all`, which reads back as `all`).
        assert_eq!(rule_of_ace(&rule.ace(1)), Some(rule), "{text}");
    }
}

#[test]
fn readable_rules_become_eve_aces() {
    let allow = AclRule::parse(RuleKind::Allow, "tcp:host=Example.ORG.:443").unwrap();
    assert_eq!(allow.render(), "tcp:host=example.org:443");
    assert_eq!(
        allow.ace(3),
        json!({"id": 3, "matches": [
            {"type": "protocol", "value": "tcp"},
            {"type": "host", "value": "example.org"},
            {"type": "fport", "value": "443"},
        ]})
    );
    let udp = AclRule::parse(RuleKind::Drop, "udp:ip=10.0.0.0/8:53").unwrap();
    assert_eq!(
        udp.ace(1),
        json!({"id": 1, "matches": [
            {"type": "protocol", "value": "udp"},
            {"type": "ip", "value": "10.0.0.0/8"},
            {"type": "fport", "value": "53"},
        ], "actions": [{"drop": true}]})
    );
    assert_eq!(
        AclRule::parse(RuleKind::Allow, "all:ip=0.0.0.0/0"),
        AclRule::parse(RuleKind::Allow, "all")
    );
    assert_eq!(
        AclRule::parse(RuleKind::Allow, "all").unwrap().ace(1),
        json!({"id": 1, "matches": [{"type": "ip", "value": "0.0.0.0/0"}]})
    );
    let limit = AclRule::parse(
        RuleKind::Limit,
        "tcp:lport=8000-8100:ip=192.0.2.1:100/sec/20",
    )
    .unwrap();
    assert_eq!(limit.render(), "tcp:ip=192.0.2.1:lport=8000-8100:100/s/20");
    assert_eq!(
        limit.ace(2),
        json!({"id": 2, "matches": [
            {"type": "protocol", "value": "tcp"},
            {"type": "ip", "value": "192.0.2.1/32"},
            {"type": "lport", "value": "8000:8100"},
        ], "actions": [{"limit": true, "limitrate": 100, "limitunit": "s", "limitburst": 20}]})
    );
    // A port map is not a rule.
    let portmap = json!({"id": 4, "matches": [{"type": "protocol", "value": "tcp"},
        {"type": "lport", "value": "8080"}], "actions": [{"portmap": true, "appPort": 80}]});
    assert_eq!(rule_of_ace(&portmap), None);
}

#[test]
fn hostile_rules_get_clear_errors() {
    let why = |kind, text: &str| AclRule::parse(kind, text).unwrap_err().why;
    let cases: &[(RuleKind, &str, &str)] = &[
        (RuleKind::Allow, "", "empty"),
        (RuleKind::Allow, "gre", "protocol \"gre\""),
        (RuleKind::Allow, "256", "above 255"),
        (RuleKind::Allow, "tcp:host=bad name", "spaces"),
        (RuleKind::Allow, "tcp:host=-x.org", "not a DNS name"),
        (RuleKind::Allow, "tcp:host=a..b", "not a DNS name"),
        (RuleKind::Allow, "tcp:ip=10.0.0.300", "not an IPv4"),
        (RuleKind::Allow, "tcp:ip=10.0.0.0/33", "not an IPv4"),
        (RuleKind::Allow, "tcp:ip=10.0.0.0/", "not an IPv4"),
        (RuleKind::Allow, "tcp:ip=2001:db8::1", "not an IPv4"),
        (RuleKind::Allow, "tcp:0", "not a port"),
        (RuleKind::Allow, "tcp:65536", "not a port"),
        (RuleKind::Allow, "tcp:+80", "not a port"),
        (RuleKind::Allow, "tcp:90-80", "backwards"),
        (RuleKind::Allow, "tcp:80:81", "given twice"),
        (RuleKind::Allow, "tcp:host=a.org:ip=1.2.3.4", "given twice"),
        (RuleKind::Allow, "icmp:80", "ports need tcp or udp"),
        (RuleKind::Allow, "all:lport=80", "ports need tcp or udp"),
        (RuleKind::Allow, "tcp:dport=80", "unknown part"),
        (RuleKind::Allow, "tcp:10/s", "belongs in --limit"),
        (RuleKind::Limit, "tcp:443", "needs a rate"),
        (RuleKind::Limit, "tcp:0/s", "not a rate"),
        (RuleKind::Limit, "tcp:10/fortnight", "not a rate"),
        (RuleKind::Limit, "tcp:10/s/0", "not a rate"),
        (RuleKind::Limit, "tcp:10/s/1/2", "not a rate"),
        (RuleKind::Limit, "tcp:99999999999/s", "not a rate"),
        (RuleKind::Limit, "tcp:1/s:2/s", "given twice"),
        (RuleKind::Limit, "tcp:10001/s", "at most 10000 a second"),
        (RuleKind::Limit, "tcp:600001/m", "at most 10000 a second"),
        (RuleKind::Limit, "tcp:10/s/10001", "bursts at most 10000"),
        (RuleKind::Allow, "tcp:adapter=eth0;rm", "not a port name"),
        (RuleKind::Allow, "tcp\u{0}", "control"),
    ];
    for (kind, text, expected) in cases {
        let got = why(*kind, text);
        assert!(got.contains(expected), "{text:?}: {got}");
    }
    let long = format!("tcp:host={}", "a".repeat(600));
    assert!(why(RuleKind::Allow, &long).contains("longer than"));
    assert!(
        AclRule::parse(RuleKind::Allow, &long)
            .unwrap_err()
            .rule
            .len()
            <= 80,
        "the error quotes a bounded part of the rule"
    );
}

#[test]
fn random_bytes_never_panic() {
    let mut g = Gen(42);
    const ALPHABET: &[u8] = b"tcpudpal:=/-.0123456789hostipfportlportadapter\xff ";
    for _ in 0..20_000 {
        let len = g.below(40) as usize;
        let bytes: Vec<u8> = (0..len)
            .map(|_| ALPHABET[g.below(ALPHABET.len() as u64) as usize])
            .collect();
        let text = String::from_utf8_lossy(&bytes);
        for kind in [RuleKind::Allow, RuleKind::Drop, RuleKind::Limit] {
            if let Ok(rule) = AclRule::parse(kind, &text) {
                assert_eq!(AclRule::parse(kind, &rule.render()), Ok(rule));
            }
        }
    }
}
