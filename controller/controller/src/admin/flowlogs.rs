//! `GET /api/v1/devices/{uuid}/flowlogs?limit=&app=`: the newest flow-log
//! messages the device posted to `/flowlog`, each as its `FlowMessage`
//! JSON with its receive time; `app` (an app instance UUID) keeps only the
//! messages whose scope is that app's.

use eve_proto::Message;
use eve_proto::flowlog::FlowMessage;
use serde_json::{Value, json};

use crate::store::{Store, StoreError};

/// The newest `limit` flow-log messages of device `uuid` (newest first),
/// `{received_ms, flowlog}`, only app `app`'s when given. A stored
/// message that no longer decodes is skipped: it was checked on arrival.
pub fn device_flowlogs(
    store: &dyn Store,
    uuid: &str,
    limit: u32,
    app: Option<&str>,
) -> Result<Vec<Value>, StoreError> {
    let mut out = Vec::new();
    for rec in store.flowlogs(uuid, limit)? {
        let Ok(msg) = FlowMessage::decode(rec.msg.as_slice()) else {
            continue;
        };
        let scope_app = msg.scope.as_ref().map_or("", |s| s.uuid.as_str());
        if app.is_some_and(|a| a != scope_app) {
            continue;
        }
        out.push(json!({
            "received_ms": rec.received_ms,
            "flowlog": super::api::message_json(
                "org.lfedge.eve.flowlog.FlowMessage",
                &msg.encode_to_vec(),
            ),
        }));
    }
    Ok(out)
}
