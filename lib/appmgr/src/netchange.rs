//! Which changes of a running app's interfaces its domain can take, as
//! EVE's zedmanager decides (`quantifyChanges`): another number of
//! adapters, or an adapter's MAC, static address or network instance,
//! needs a purge; ACL changes (port maps included) need nothing and are
//! applied live by zedrouter. A change that needs a purge without a
//! bumped purge counter is the app's error ("Need purge due to ... but
//! not a purgeCmd") and is not applied: the app runs on as it was.

use alloc::format;
use alloc::string::String;

use crate::network::Nic;

/// Why going from the interfaces `given` to `wanted` needs a purge, in
/// EVE's words; `None` when it does not.
pub fn purge_reason(given: &[Nic], wanted: &[Nic]) -> Option<String> {
    if given.len() != wanted.len() {
        return Some(format!(
            "number of network adapters changed from {} to {}",
            given.len(),
            wanted.len()
        ));
    }
    let mut reason = String::new();
    for (old, new) in given.iter().zip(wanted) {
        if old.mac != new.mac {
            reason += &format!("AppMacAddr changed from {} to {}\n", old.mac, new.mac);
        }
        if old.adapter.addr != new.adapter.addr {
            reason += &format!(
                "AppIPAddr changed from {:?} to {:?}\n",
                old.adapter.addr, new.adapter.addr
            );
        }
        if old.adapter.network_id != new.adapter.network_id {
            reason += &format!(
                "Network changed from {} to {}\n",
                old.adapter.network_id, new.adapter.network_id
            );
        }
    }
    let reason = reason.trim_end();
    (!reason.is_empty()).then(|| String::from(reason))
}

/// The error an app reports while a change needing a purge waits for one.
pub fn purge_needed(reason: &str) -> String {
    format!("Need purge due to {reason} but not a purgeCmd")
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use eve_proto::config::{Ace, NetworkAdapter};

    fn nic(index: u32, mac: &str, network: &str, addr: &str) -> Nic {
        Nic {
            index,
            mac: mac.into(),
            adapter: NetworkAdapter {
                network_id: network.into(),
                addr: addr.into(),
                ..Default::default()
            },
        }
    }

    #[test]
    fn acl_changes_need_nothing_the_rest_a_purge() {
        let given = vec![nic(0, "02:16:3e:00:00:01", "ni-a", "")];
        let mut acl = given.clone();
        acl[0].adapter.acls = vec![Ace {
            id: 1,
            ..Default::default()
        }];
        assert_eq!(purge_reason(&given, &acl), None);
        assert_eq!(purge_reason(&given, &given), None);

        let moved = vec![nic(0, "02:16:3e:00:00:01", "ni-b", "")];
        assert_eq!(
            purge_reason(&given, &moved).as_deref(),
            Some("Network changed from ni-a to ni-b")
        );
        let readdressed = vec![nic(0, "02:16:3e:00:00:02", "ni-a", "10.1.0.9")];
        let reason = purge_reason(&given, &readdressed).unwrap();
        assert!(reason.contains("AppMacAddr changed"), "{reason}");
        assert!(reason.contains("AppIPAddr changed"), "{reason}");
        let more = vec![given[0].clone(), nic(1, "02:16:3e:00:00:03", "ni-b", "")];
        assert_eq!(
            purge_reason(&given, &more).as_deref(),
            Some("number of network adapters changed from 1 to 2")
        );
        assert_eq!(purge_needed("x"), "Need purge due to x but not a purgeCmd");
    }
}
