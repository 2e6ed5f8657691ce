//! An app's interfaces on the config's network instances, checked: the
//! NICs its domain gets (each on the host port zedrouter attaches) and
//! what zedrouter is told of them (`app-network-config`).
//!
//! As in EVE, an adapter naming a network instance the config does not
//! have is the app's error (EVE's zedagent words it "Can't find ... in
//! network instances"). An app whose adapters name no network instance at
//! all (an empty `networkId` on every one, as `evectl app deploy` writes
//! for a node without instances) is not on zedrouter: its domain keeps one
//! user-mode NIC with the adapters' port maps as loopback forwards.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use eve_proto::config::NetworkAdapter;
use topics::{AppAdapter, AppNetwork};

use crate::uuid;

/// Most interfaces an app may have: the host's port switch names at most
/// this many NICs per app.
pub const MAX_NICS: usize = 64;

/// One interface of an app, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Nic {
    /// The NIC's index in the domain: the adapter's place in the config.
    pub index: u32,
    /// `xx:xx:xx:xx:xx:xx`, lowercase: the adapter's own or generated.
    pub mac: String,
    /// The adapter as it came, its `networkId` spelled as the instance's
    /// key in `network-instance-config` (what zedrouter looks up).
    pub adapter: NetworkAdapter,
}

/// Reads `xx:xx:xx:xx:xx:xx` (either case; `-` separators as EVE's
/// parser also takes them).
fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split([':', '-']);
    for byte in &mut mac {
        let part = parts.next()?;
        if part.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

fn mac_text(mac: [u8; 6]) -> String {
    let [a, b, c, d, e, f] = mac;
    format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
}

/// A stable MAC for an adapter without one: the same app, instance and
/// NIC always get the same address, so a restarted app keeps its lease.
/// Locally administered and unicast (`02:16:3e`, the prefix EVE's
/// generated addresses use), the rest a 64-bit FNV-1a hash of the three.
pub fn generated_mac(app_uuid: &str, network_id: &str, index: u32) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let bytes = app_uuid
        .bytes()
        .chain([0])
        .chain(network_id.bytes())
        .chain([0])
        .chain(index.to_le_bytes());
    for byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let [a, b, c, ..] = hash.to_be_bytes();
    mac_text([0x02, 0x16, 0x3e, a, b, c])
}

/// The app's interfaces on network instances (`instances`: the keys of
/// `network-instance-config`), or why not. Empty when no adapter names a
/// network instance.
pub fn nics(
    app_uuid: &str,
    app_name: &str,
    adapters: &[NetworkAdapter],
    instances: &BTreeSet<String>,
) -> Result<Vec<Nic>, String> {
    if adapters.iter().all(|a| a.network_id.trim().is_empty()) {
        return Ok(Vec::new());
    }
    if adapters.len() > MAX_NICS {
        return Err(format!(
            "{} network adapters: an app has at most {MAX_NICS}",
            adapters.len()
        ));
    }
    let by_canonical: BTreeMap<String, &String> = instances
        .iter()
        .filter_map(|k| uuid::canonical(k).map(|c| (c, k)))
        .collect();
    let mut nics: Vec<Nic> = Vec::with_capacity(adapters.len());
    for (index, adapter) in (0u32..).zip(adapters) {
        let key = uuid::canonical(adapter.network_id.trim())
            .and_then(|c| by_canonical.get(&c).copied())
            .ok_or_else(|| {
                format!(
                    "App {app_name}-{app_uuid}: Can't find {} in network instances.",
                    adapter.network_id
                )
            })?;
        let mac = if adapter.mac_address.trim().is_empty() {
            generated_mac(app_uuid, key, index)
        } else {
            let mac = parse_mac(adapter.mac_address.trim())
                .filter(|m| m[0] & 1 == 0 && *m != [0; 6])
                .ok_or_else(|| {
                    format!(
                        "adapter {:?}: MAC {:?} is not a unicast MAC address",
                        adapter.name, adapter.mac_address
                    )
                })?;
            mac_text(mac)
        };
        if let Some(other) = nics.iter().find(|n| n.mac == mac) {
            return Err(format!(
                "adapters {:?} and {:?} have the same MAC {mac}",
                other.adapter.name, adapter.name
            ));
        }
        nics.push(Nic {
            index,
            mac,
            adapter: NetworkAdapter {
                network_id: key.clone(),
                ..adapter.clone()
            },
        });
    }
    Ok(nics)
}

/// What zedrouter is told of an app: its interfaces, activation, name and
/// user data (for the metadata server).
pub fn app_network(
    app_uuid: &str,
    display_name: &str,
    activate: bool,
    nics: &[Nic],
    user_data: &[u8],
    meta_data_type: i32,
) -> AppNetwork {
    AppNetwork {
        app_uuid: String::from(app_uuid),
        display_name: String::from(display_name),
        activate,
        adapters: nics
            .iter()
            .map(|n| AppAdapter {
                nic: n.index,
                adapter: Some(n.adapter.clone()),
                mac: n.mac.clone(),
            })
            .collect(),
        user_data: user_data.to_vec(),
        meta_data_type,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const APP: &str = "6ba7b810-9dad-11d1-80b4-00c04fd430c8";
    const NI: &str = "0b4c7e1a-3f7e-4d1c-8a2b-9c8d7e6f5a4b";

    fn adapter(network_id: &str, mac: &str) -> NetworkAdapter {
        NetworkAdapter {
            name: "eth0".into(),
            network_id: network_id.into(),
            mac_address: mac.into(),
            ..Default::default()
        }
    }

    fn instances() -> BTreeSet<String> {
        [String::from(NI)].into()
    }

    #[test]
    fn macs_are_given_or_generated_stably_and_unicast() {
        let nics = nics(
            APP,
            "web",
            &[
                adapter(NI, ""),
                adapter(&NI.to_uppercase(), "02:AA:bb:cc:dd:EE"),
            ],
            &instances(),
        )
        .unwrap();
        assert_eq!(nics.len(), 2);
        assert_eq!(nics[0].mac, generated_mac(APP, NI, 0));
        assert!(nics[0].mac.starts_with("02:16:3e:"));
        assert_ne!(generated_mac(APP, NI, 0), generated_mac(APP, NI, 1));
        assert_eq!(nics[1].mac, "02:aa:bb:cc:dd:ee");
        // The instance is named as the instances' table keys it.
        assert_eq!(nics[1].adapter.network_id, NI);
        assert_eq!((nics[0].index, nics[1].index), (0, 1));
    }

    #[test]
    fn adapters_on_no_instance_are_not_on_zedrouter() {
        assert_eq!(
            nics(APP, "web", &[adapter("", "")], &instances()),
            Ok(Vec::new())
        );
        assert_eq!(nics(APP, "web", &[], &BTreeSet::new()), Ok(Vec::new()));
    }

    #[test]
    fn unknown_instances_and_bad_macs_are_the_apps_error() {
        let missing = "11111111-2222-3333-4444-555555555555";
        assert_eq!(
            nics(APP, "web", &[adapter(missing, "")], &instances()),
            Err(format!(
                "App web-{APP}: Can't find {missing} in network instances."
            ))
        );
        // One adapter on an instance makes an empty one an unknown instance.
        assert!(
            nics(
                APP,
                "web",
                &[adapter(NI, ""), adapter("", "")],
                &instances()
            )
            .is_err()
        );
        for bad in [
            "01:00:5e:00:00:01",
            "00:00:00:00:00:00",
            "02:00:00:00:00",
            "02:00:00:00:00:00:00",
            "02:0g:00:00:00:00",
            "0200:00:00:00:00",
            "02:00:00:00:00:é",
        ] {
            assert!(
                nics(APP, "web", &[adapter(NI, bad)], &instances()).is_err(),
                "{bad}"
            );
        }
        let same = nics(
            APP,
            "web",
            &[
                adapter(NI, "02:00:00:00:00:01"),
                adapter(NI, "02-00-00-00-00-01"),
            ],
            &instances(),
        );
        assert!(same.unwrap_err().contains("the same MAC"));
        let many: Vec<NetworkAdapter> = (0..=MAX_NICS).map(|_| adapter(NI, "")).collect();
        assert!(nics(APP, "web", &many, &instances()).is_err());
    }
}
