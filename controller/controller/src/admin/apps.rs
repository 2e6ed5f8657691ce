//! `GET /api/v1/devices/{uuid}/apps`: each app as the controller knows it,
//! in one answer: what the config asks (activate, restart and purge
//! counters, resources, volumes) beside what the device last reported of
//! it (its `ZInfoApp`, from the latest info per object) and its newest
//! metrics (the `AppMetric` of the newest metrics message that has one).
//! An app the device still reports after it left the config is listed
//! too, without config: that is how a deleted app's last report (EVE's
//! UUID-only `ZInfoApp`) stays visible.

use std::collections::BTreeMap;

use eve_proto::Message;
use eve_proto::config::EdgeDevConfig;
use eve_proto::info::{ZInfoMsg, z_info_msg::InfoContent};
use eve_proto::metrics::ZMetricMsg;
use serde_json::{Value, json};

use crate::store::{Store, StoreError};

/// Metrics messages searched for an app's newest `AppMetric`.
const METRICS_SEARCHED: u32 = 10;

fn proto_json<M: Message>(type_name: &str, msg: &M) -> Value {
    super::api::message_json(type_name, &msg.encode_to_vec())
}

/// App `app`'s entry, made empty when new.
fn slot<'a>(apps: &'a mut BTreeMap<String, Value>, app: &str) -> &'a mut Value {
    apps.entry(app.to_owned()).or_insert_with(|| {
        json!({
            "uuid": app, "name": "", "config": null, "info": null,
            "info_received_ms": null, "metric": null, "metric_received_ms": null,
        })
    })
}

/// The apps of device `uuid`, by UUID: `{uuid, name, config, info,
/// info_received_ms, metric, metric_received_ms}` (`config`, `info` and
/// `metric` null when absent).
pub fn device_apps(
    store: &dyn Store,
    uuid: &str,
    config: Option<&EdgeDevConfig>,
) -> Result<Vec<Value>, StoreError> {
    let mut apps: BTreeMap<String, Value> = BTreeMap::new();
    for app in config.map(|c| c.apps.as_slice()).unwrap_or_default() {
        let id = app
            .uuidandversion
            .as_ref()
            .map(|u| u.uuid.clone())
            .unwrap_or_default();
        let v = slot(&mut apps, &id);
        v["name"] = json!(app.displayname);
        v["config"] = proto_json("org.lfedge.eve.config.AppInstanceConfig", app);
    }
    for rec in store.latest_info(uuid)? {
        let Some(app) = rec.key.strip_prefix("app/") else {
            continue;
        };
        let Ok(msg) = ZInfoMsg::decode(rec.msg.as_slice()) else {
            continue;
        };
        let Some(InfoContent::Ainfo(info)) = msg.info_content else {
            continue;
        };
        let v = slot(&mut apps, app);
        if v["name"] == "" {
            v["name"] = json!(info.app_name);
        }
        v["info"] = proto_json("org.lfedge.eve.info.ZInfoApp", &info);
        v["info_received_ms"] = json!(rec.received_ms);
    }
    for rec in store.metrics(uuid, METRICS_SEARCHED)? {
        let Ok(msg) = ZMetricMsg::decode(rec.msg.as_slice()) else {
            continue;
        };
        for m in msg.am {
            let Some(v) = apps.get_mut(&m.app_id) else {
                continue;
            };
            // Newest first: the first found is the newest.
            if v["metric"].is_null() {
                v["metric"] = proto_json("org.lfedge.eve.metrics.appMetric", &m);
                v["metric_received_ms"] = json!(rec.received_ms);
            }
        }
    }
    Ok(apps.into_values().collect())
}
