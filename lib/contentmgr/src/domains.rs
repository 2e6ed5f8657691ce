//! The host volumes app domains run with, from domainmgr's
//! `domain-status`: a generation some domain lists is never deleted, so a
//! purge (make-before-break) can build the next generation while the
//! domain still runs on the old one, and the old one goes only once
//! zedmanager swapped the disks and domainmgr reports the new list.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::String;
use alloc::vec::Vec;

use topics::DomainState;

/// Why a host volume must stay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Held {
    /// The `domain-status` table is not complete yet (a volumemgr that
    /// started again has not seen every domain): any volume may be in use.
    Unknown,
    /// A domain lists it among its disks.
    InUse,
}

/// What volumemgr knows of the domains' disks.
#[derive(Debug, Default)]
pub(crate) struct DomainDisks {
    /// Each domain's host volumes, by domain key.
    disks: BTreeMap<String, Vec<String>>,
    /// The table is complete: a volume no domain lists is free.
    synced: bool,
    /// Volumes kept already logged as such (logged once, not every
    /// reconciliation).
    logged: BTreeSet<String>,
}

impl DomainDisks {
    pub(crate) fn set(&mut self, key: &str, state: Option<DomainState>) {
        match state {
            Some(state) => {
                self.disks.insert(String::from(key), state.disks);
            }
            None => {
                self.disks.remove(key);
            }
        }
    }

    pub(crate) fn synchronized(&mut self) {
        self.synced = true;
    }

    /// Why host volume `name` must stay, if it must.
    pub(crate) fn holds(&self, name: &str) -> Option<Held> {
        if !self.synced {
            Some(Held::Unknown)
        } else if self.disks.values().flatten().any(|disk| disk == name) {
            Some(Held::InUse)
        } else {
            None
        }
    }

    /// Logs, once per volume, that `name` is kept instead of deleted
    /// because of `why`.
    pub(crate) fn note_kept(&mut self, name: &str, why: Held, instead_of: &str) {
        if self.logged.insert(String::from(name)) {
            match why {
                Held::Unknown => log::info!(
                    "keeping volume {name} ({instead_of}): domain-status is not synchronized yet"
                ),
                Held::InUse => {
                    log::info!("keeping volume {name} ({instead_of}): a domain runs with it")
                }
            }
        }
    }

    /// Forgets the log notes of volumes that no longer exist.
    pub(crate) fn forget_missing(&mut self, exists: impl Fn(&str) -> bool) {
        self.logged.retain(|name| exists(name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(disks: &[&str]) -> DomainState {
        DomainState {
            disks: disks.iter().map(|d| String::from(*d)).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn a_volume_is_held_until_the_table_is_complete_and_while_listed() {
        let mut domains = DomainDisks::default();
        assert_eq!(domains.holds("v.0"), Some(Held::Unknown));
        domains.set("app", Some(state(&["v.0", "w.2"])));
        assert_eq!(domains.holds("x.0"), Some(Held::Unknown));
        domains.synchronized();
        assert_eq!(domains.holds("v.0"), Some(Held::InUse));
        assert_eq!(domains.holds("w.2"), Some(Held::InUse));
        assert_eq!(domains.holds("v.1"), None);
        domains.set("app", Some(state(&["v.1"])));
        assert_eq!(domains.holds("v.0"), None);
        assert_eq!(domains.holds("v.1"), Some(Held::InUse));
        domains.set("app", None);
        assert_eq!(domains.holds("v.1"), None);
    }
}
