//! The addresses behind the names `host` rules match, learned from the DNS
//! answers the instance's own DNS server relays to its apps (never from
//! answers an app got elsewhere: a server of the app's choosing could name
//! any address). Like dnsmasq's ipsets in EVE, entries do not expire with
//! the answer's TTL (an app may keep using an address longer); each name
//! keeps its most recently seen addresses, up to a bound.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::String;
use alloc::vec::Vec;
use core::net::Ipv4Addr;

use smoltcp::time::Instant;

/// Whether `name` is `pattern` or a name under it.
pub(crate) fn name_matches(pattern: &str, name: &str) -> bool {
    if name.len() == pattern.len() {
        return name.eq_ignore_ascii_case(pattern);
    }
    name.len() > pattern.len()
        && name.as_bytes()[name.len() - pattern.len() - 1] == b'.'
        && name[name.len() - pattern.len()..].eq_ignore_ascii_case(pattern)
}

#[derive(Debug, Default)]
pub(crate) struct HostSets {
    sets: BTreeMap<String, BTreeMap<Ipv4Addr, Instant>>,
    per_name: usize,
}

impl HostSets {
    pub fn new(per_name: usize) -> HostSets {
        HostSets {
            sets: BTreeMap::new(),
            per_name: per_name.max(1),
        }
    }

    /// Keeps the sets of `patterns` (what the rules now name), drops the rest.
    pub fn set_patterns(&mut self, patterns: BTreeSet<String>) {
        self.sets.retain(|name, _| patterns.contains(name));
        for pattern in patterns {
            self.sets.entry(pattern).or_default();
        }
    }

    /// Records `addrs` for every pattern one of `names` falls under.
    pub fn learn(&mut self, names: &[String], addrs: &[Ipv4Addr], now: Instant) {
        let per_name = self.per_name;
        for (pattern, set) in self.sets.iter_mut() {
            if !names.iter().any(|n| name_matches(pattern, n)) {
                continue;
            }
            for &addr in addrs {
                set.insert(addr, now);
                if set.len() > per_name {
                    let oldest = set.iter().min_by_key(|(_, seen)| **seen).map(|(a, _)| *a);
                    if let Some(oldest) = oldest {
                        set.remove(&oldest);
                    }
                }
            }
        }
    }

    pub fn has_pattern(&self, pattern: &str) -> bool {
        self.sets.contains_key(pattern)
    }

    pub fn contains(&self, pattern: &str, addr: Ipv4Addr) -> bool {
        self.sets
            .get(pattern)
            .is_some_and(|set| set.contains_key(&addr))
    }

    /// Every (pattern, address) pair, for saving.
    pub fn entries(&self) -> Vec<(&str, Ipv4Addr)> {
        self.sets
            .iter()
            .flat_map(|(p, set)| set.keys().map(move |a| (p.as_str(), *a)))
            .collect()
    }

    /// Restores a saved pair, if its pattern is still named by a rule.
    pub fn restore(&mut self, pattern: &str, addr: Ipv4Addr, now: Instant) {
        let per_name = self.per_name;
        if let Some(set) = self.sets.get_mut(pattern)
            && (set.len() < per_name || set.contains_key(&addr))
        {
            set.insert(addr, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn suffix_matching_stops_at_label_boundaries() {
        assert!(name_matches("example.org", "example.org"));
        assert!(name_matches("example.org", "www.Example.ORG"));
        assert!(!name_matches("example.org", "badexample.org"));
        assert!(!name_matches("example.org", "example.org.evil"));
        assert!(!name_matches("www.example.org", "example.org"));
    }

    #[test]
    fn learns_only_for_named_patterns_and_stays_bounded() {
        let mut sets = HostSets::new(2);
        sets.set_patterns(["example.org".to_string()].into_iter().collect());
        let t = Instant::from_secs(1);
        let a = Ipv4Addr::new(192, 0, 2, 1);
        sets.learn(&["other.net".to_string()], &[a], t);
        assert!(!sets.contains("example.org", a));
        sets.learn(&["cdn.example.org".to_string()], &[a], t);
        assert!(sets.contains("example.org", a));
        let b = Ipv4Addr::new(192, 0, 2, 2);
        let c = Ipv4Addr::new(192, 0, 2, 3);
        sets.learn(&["example.org".to_string()], &[b], Instant::from_secs(2));
        sets.learn(&["example.org".to_string()], &[c], Instant::from_secs(3));
        assert!(!sets.contains("example.org", a), "oldest evicted");
        assert!(sets.contains("example.org", b) && sets.contains("example.org", c));
        sets.set_patterns(BTreeSet::new());
        assert!(!sets.contains("example.org", b));
    }
}
