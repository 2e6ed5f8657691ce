//! `GET /api/v1/devices/{uuid}/networks`: each network instance as the
//! controller knows it, in one answer: what the config asks (its
//! `NetworkInstanceConfig`) and which apps' interfaces join it, beside what
//! the device last reported of it (its `ZInfoNetworkInstance`: state,
//! leases, interfaces, errors) and its newest `ZMetricNetworkInstance`. An
//! instance the device still reports after it left the config is listed
//! too, without config, as apps are in [`super::apps`].

use std::collections::BTreeMap;

use eve_proto::Message;
use eve_proto::config::EdgeDevConfig;
use eve_proto::info::{ZInfoMsg, z_info_msg::InfoContent};
use eve_proto::metrics::ZMetricMsg;
use serde_json::{Value, json};

use crate::store::{Store, StoreError};

/// Metrics messages searched for an instance's newest metrics.
const METRICS_SEARCHED: u32 = 10;

fn proto_json<M: Message>(type_name: &str, msg: &M) -> Value {
    super::api::message_json(type_name, &msg.encode_to_vec())
}

/// Instance `id`'s entry, made empty when new.
fn slot<'a>(nets: &'a mut BTreeMap<String, Value>, id: &str) -> &'a mut Value {
    nets.entry(id.to_owned()).or_insert_with(|| {
        json!({
            "uuid": id, "name": "", "config": null, "apps": [], "info": null,
            "info_received_ms": null, "metric": null, "metric_received_ms": null,
        })
    })
}

/// The network instances of device `uuid`, by UUID: `{uuid, name, config,
/// apps, info, info_received_ms, metric, metric_received_ms}` (`config`,
/// `info` and `metric` null when absent; `apps` the display names of the
/// apps with an interface on it).
pub fn device_networks(
    store: &dyn Store,
    uuid: &str,
    config: Option<&EdgeDevConfig>,
) -> Result<Vec<Value>, StoreError> {
    let mut nets: BTreeMap<String, Value> = BTreeMap::new();
    if let Some(config) = config {
        for ni in &config.network_instances {
            let id = ni
                .uuidandversion
                .as_ref()
                .map(|u| u.uuid.clone())
                .unwrap_or_default();
            let apps: Vec<&str> = config
                .apps
                .iter()
                .filter(|a| a.interfaces.iter().any(|i| i.network_id == id))
                .map(|a| a.displayname.as_str())
                .collect();
            let v = slot(&mut nets, &id);
            v["name"] = json!(ni.displayname);
            v["apps"] = json!(apps);
            v["config"] = proto_json("org.lfedge.eve.config.NetworkInstanceConfig", ni);
        }
    }
    for rec in store.latest_info(uuid)? {
        let Some(id) = rec.key.strip_prefix("network/") else {
            continue;
        };
        let Ok(msg) = ZInfoMsg::decode(rec.msg.as_slice()) else {
            continue;
        };
        let Some(InfoContent::Niinfo(info)) = msg.info_content else {
            continue;
        };
        let v = slot(&mut nets, id);
        if v["name"] == "" {
            v["name"] = json!(info.displayname);
        }
        v["info"] = proto_json("org.lfedge.eve.info.ZInfoNetworkInstance", &info);
        v["info_received_ms"] = json!(rec.received_ms);
    }
    for rec in store.metrics(uuid, METRICS_SEARCHED)? {
        let Ok(msg) = ZMetricMsg::decode(rec.msg.as_slice()) else {
            continue;
        };
        for m in msg.nm {
            let Some(v) = nets.get_mut(&m.network_id) else {
                continue;
            };
            // Newest first: the first found is the newest.
            if v["metric"].is_null() {
                v["metric"] = proto_json("org.lfedge.eve.metrics.ZMetricNetworkInstance", &m);
                v["metric_received_ms"] = json!(rec.received_ms);
            }
        }
    }
    Ok(nets.into_values().collect())
}
