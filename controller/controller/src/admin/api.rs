//! The admin REST API: JSON, every request authenticated (see
//! [`super`]).
//!
//! | method | path | answer |
//! |---|---|---|
//! | GET | `/api/v1/stats` | devices, database bytes, this replica's request counters by route and status |
//! | GET, POST | `/api/v1/onboard` | allow-list; POST `{cert_pem, serials}` |
//! | DELETE | `/api/v1/onboard/{id}` | 204, 404 |
//! | GET | `/api/v1/devices` | devices |
//! | GET, DELETE | `/api/v1/devices/{uuid}` | device; 204; 404 |
//! | GET, PUT | `/api/v1/devices/{uuid}/config` | current config as JSON; PUT a YAML/JSON description |
//! | GET | `/api/v1/devices/{uuid}/config/history` | versions |
//! | GET | `/api/v1/devices/{uuid}/info` | latest info per object |
//! | GET | `/api/v1/devices/{uuid}/metrics?limit=` | newest metrics |
//! | GET | `/api/v1/devices/{uuid}/logs?app=&since=&until=&severity=&contains=&after=&limit=` | logs |
//! | PUT, DELETE | `/api/v1/devices/{uuid}/pcr-policy` | PUT `{"pcrs": {"7": "<64 hex>"}}` sets the PCR values quotes must show; DELETE clears it (the next quote's values become it) |
//! | GET | `/api/v1/devices/{uuid}/apps` | each app: its config, latest `ZInfoApp` and newest `AppMetric` |
//! | GET | `/api/v1/devices/{uuid}/networks` | each network instance: its config, the apps on it, latest `ZInfoNetworkInstance` and newest `ZMetricNetworkInstance` |
//! | GET | `/api/v1/devices/{uuid}/flowlogs?limit=&app=` | newest `FlowMessage`s (default 100), only app `app`'s (UUID) when given |
//! | POST | `/api/v1/devices/{uuid}/apps` | deploy `{name, memory_mib, vcpus}` (replaces one of that name) |
//! | POST | `/api/v1/devices/{uuid}/apps/{name}/stop`, `.../start` | deactivate, activate |

use std::sync::Arc;

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use serde_json::{Value, json};

use crate::domain::{Controller, ControllerError, NewApp};
use crate::pbuf;
use crate::store::LogQuery;

/// Largest admin request body.
const MAX_ADMIN_BODY: usize = 4 << 20;

/// A JSON answer, or a status and an error message.
pub type Answer = Result<(StatusCode, Value), (StatusCode, String)>;

fn bad(status: StatusCode, msg: impl Into<String>) -> (StatusCode, String) {
    (status, msg.into())
}

impl From<ControllerError> for (StatusCode, String) {
    fn from(e: ControllerError) -> Self {
        let status = match e {
            ControllerError::NoDevice(_) => StatusCode::NOT_FOUND,
            ControllerError::Spec(_)
            | ControllerError::BadCert(_)
            | ControllerError::Invalid(_) => StatusCode::BAD_REQUEST,
            ControllerError::Store(_) | ControllerError::CorruptConfig(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        (status, e.to_string())
    }
}

fn store_err(e: crate::store::StoreError) -> (StatusCode, String) {
    ControllerError::from(e).into()
}

/// A stored EVE message as its protobuf JSON (null when it does not decode).
pub fn message_json(type_name: &str, bytes: &[u8]) -> Value {
    pbuf::decode_to_json(type_name, bytes)
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or(Value::Null)
}

/// `application/x-www-form-urlencoded` decoding of one component.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hexval = |c: u8| (c as char).to_digit(16);
                match (hexval(b[i + 1]), hexval(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The pairs of a query string or form body.
pub fn query(req_query: Option<&str>) -> Vec<(String, String)> {
    req_query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn param<T: std::str::FromStr>(
    q: &[(String, String)],
    name: &str,
) -> Result<Option<T>, (StatusCode, String)> {
    match q.iter().find(|(k, _)| k == name) {
        None => Ok(None),
        Some((_, v)) => v.parse().map(Some).map_err(|_| {
            bad(
                StatusCode::BAD_REQUEST,
                format!("query parameter {name}: bad value {v:?}"),
            )
        }),
    }
}

/// Answers one API request.
pub async fn dispatch(ctl: &Arc<Controller>, req: Request<Incoming>) -> Answer {
    let method = req.method().clone();
    let path = req.uri().path().trim_end_matches('/').to_owned();
    let q = query(req.uri().query());
    let body = Limited::new(req.into_body(), MAX_ADMIN_BODY)
        .collect()
        .await
        .map_err(|e| bad(StatusCode::PAYLOAD_TOO_LARGE, format!("body: {e}")))?
        .to_bytes();
    // Every route reads or writes the store: on a blocking thread.
    let ctl = ctl.clone();
    tokio::task::spawn_blocking(move || api(&ctl, &method, &path, &q, &body))
        .await
        .unwrap_or_else(|e| {
            Err(bad(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("admin handler failed: {e}"),
            ))
        })
}

fn api(
    ctl: &Controller,
    method: &Method,
    path: &str,
    q: &[(String, String)],
    body: &[u8],
) -> Answer {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let store = ctl.store();
    match (method, segs.as_slice()) {
        (&Method::GET, ["api", "v1", "stats"]) => {
            let devices = store.devices().map_err(store_err)?.len();
            let database_bytes = store.size_bytes().map_err(store_err)?;
            Ok((
                StatusCode::OK,
                json!({
                    "devices": devices,
                    "database_bytes": database_bytes,
                    "requests": ctl.counters(),
                }),
            ))
        }
        (&Method::GET, ["api", "v1", "onboard"]) => Ok((
            StatusCode::OK,
            json!(store.onboard_list().map_err(store_err)?),
        )),
        (&Method::POST, ["api", "v1", "onboard"]) => {
            #[derive(serde::Deserialize)]
            struct Add {
                cert_pem: String,
                #[serde(default)]
                serials: Vec<String>,
            }
            let add: Add = serde_json::from_slice(body).map_err(|e| {
                bad(
                    StatusCode::BAD_REQUEST,
                    format!("expected {{cert_pem, serials}}: {e}"),
                )
            })?;
            let id = ctl.onboard_add(&add.cert_pem, &add.serials)?;
            Ok((StatusCode::CREATED, json!({ "id": id })))
        }
        (&Method::DELETE, ["api", "v1", "onboard", id]) => {
            let id: i64 = id
                .parse()
                .map_err(|_| bad(StatusCode::BAD_REQUEST, "onboard id must be a number"))?;
            if store.onboard_remove(id).map_err(store_err)? {
                Ok((StatusCode::NO_CONTENT, Value::Null))
            } else {
                Err(bad(StatusCode::NOT_FOUND, format!("no onboard entry {id}")))
            }
        }
        (&Method::GET, ["api", "v1", "devices"]) => {
            Ok((StatusCode::OK, json!(store.devices().map_err(store_err)?)))
        }
        (&Method::GET, ["api", "v1", "devices", uuid]) => {
            match store.device(uuid).map_err(store_err)? {
                Some(d) => Ok((StatusCode::OK, json!(d))),
                None => Err(bad(StatusCode::NOT_FOUND, format!("no device {uuid}"))),
            }
        }
        (&Method::DELETE, ["api", "v1", "devices", uuid]) => {
            if ctl.delete_device(uuid)? {
                Ok((StatusCode::NO_CONTENT, Value::Null))
            } else {
                Err(bad(StatusCode::NOT_FOUND, format!("no device {uuid}")))
            }
        }
        (&Method::GET, ["api", "v1", "devices", uuid, "config"]) => {
            let c = store
                .latest_config(uuid)
                .map_err(store_err)?
                .ok_or_else(|| bad(StatusCode::NOT_FOUND, format!("no device {uuid}")))?;
            Ok((
                StatusCode::OK,
                json!({
                    "version": c.version,
                    "created": c.created,
                    "config_hash": crate::server::config_hash(&c.config),
                    "config": message_json("org.lfedge.eve.config.EdgeDevConfig", &c.config),
                }),
            ))
        }
        (&Method::PUT, ["api", "v1", "devices", uuid, "config"]) => {
            let text = std::str::from_utf8(body)
                .map_err(|_| bad(StatusCode::BAD_REQUEST, "description is not UTF-8"))?;
            let (version, cfg) = ctl.set_config(uuid, text)?;
            let bytes = eve_proto::Message::encode_to_vec(&cfg);
            Ok((
                StatusCode::OK,
                json!({
                    "version": version,
                    "config": message_json("org.lfedge.eve.config.EdgeDevConfig", &bytes),
                }),
            ))
        }
        (&Method::PUT, ["api", "v1", "devices", uuid, "pcr-policy"]) => {
            #[derive(serde::Deserialize)]
            struct Policy {
                pcrs: std::collections::BTreeMap<String, String>,
            }
            let given: Policy = serde_json::from_slice(body).map_err(|e| {
                bad(
                    StatusCode::BAD_REQUEST,
                    format!("expected {{\"pcrs\": {{\"INDEX\": \"HEX\"}}}}: {e}"),
                )
            })?;
            let text = given
                .pcrs
                .iter()
                .map(|(i, v)| format!("{i}={v}"))
                .collect::<Vec<_>>()
                .join(",");
            let policy = crate::domain::attest::parse_pcr_policy(&text).ok_or_else(|| {
                bad(
                    StatusCode::BAD_REQUEST,
                    "each PCR needs an index 0-23 and a 32-byte SHA-256 value in hex",
                )
            })?;
            if !ctl.set_pcr_policy(uuid, Some(&policy)).map_err(store_err)? {
                return Err(bad(StatusCode::NOT_FOUND, format!("no device {uuid}")));
            }
            Ok((
                StatusCode::OK,
                json!({ "pcr_policy": crate::domain::attest::format_pcr_policy(&policy) }),
            ))
        }
        (&Method::DELETE, ["api", "v1", "devices", uuid, "pcr-policy"]) => {
            if ctl.set_pcr_policy(uuid, None).map_err(store_err)? {
                Ok((StatusCode::NO_CONTENT, Value::Null))
            } else {
                Err(bad(StatusCode::NOT_FOUND, format!("no device {uuid}")))
            }
        }
        (&Method::GET, ["api", "v1", "devices", uuid, "config", "history"]) => Ok((
            StatusCode::OK,
            json!(store.config_history(uuid).map_err(store_err)?),
        )),
        (&Method::GET, ["api", "v1", "devices", uuid, "info"]) => {
            let info: Vec<Value> = store
                .latest_info(uuid)
                .map_err(store_err)?
                .into_iter()
                .map(|r| {
                    json!({
                        "key": r.key,
                        "received_ms": r.received_ms,
                        "info": message_json("org.lfedge.eve.info.ZInfoMsg", &r.msg),
                    })
                })
                .collect();
            Ok((StatusCode::OK, Value::Array(info)))
        }
        (&Method::GET, ["api", "v1", "devices", uuid, "metrics"]) => {
            let limit = param(q, "limit")?.unwrap_or(10u32);
            let metrics: Vec<Value> = store
                .metrics(uuid, limit)
                .map_err(store_err)?
                .into_iter()
                .map(|r| {
                    json!({
                        "received_ms": r.received_ms,
                        "metrics": message_json("org.lfedge.eve.metrics.ZMetricMsg", &r.msg),
                    })
                })
                .collect();
            Ok((StatusCode::OK, Value::Array(metrics)))
        }
        (&Method::GET, ["api", "v1", "devices", uuid, "logs"]) => {
            let lq = LogQuery {
                device: (*uuid).to_owned(),
                app: param(q, "app")?,
                since_ms: param(q, "since")?,
                until_ms: param(q, "until")?,
                severity: param(q, "severity")?,
                contains: param(q, "contains")?,
                after_id: param(q, "after")?,
                limit: param(q, "limit")?.unwrap_or(1000),
            };
            Ok((
                StatusCode::OK,
                json!(store.query_logs(&lq).map_err(store_err)?),
            ))
        }
        (&Method::GET, ["api", "v1", "devices", uuid, "apps"]) => {
            let config = ctl.current_config(uuid)?;
            let apps = super::apps::device_apps(store.as_ref(), uuid, config.as_ref())
                .map_err(store_err)?;
            Ok((StatusCode::OK, Value::Array(apps)))
        }
        (&Method::GET, ["api", "v1", "devices", uuid, "networks"]) => {
            let config = ctl.current_config(uuid)?;
            let nets = super::networks::device_networks(store.as_ref(), uuid, config.as_ref())
                .map_err(store_err)?;
            Ok((StatusCode::OK, Value::Array(nets)))
        }
        (&Method::GET, ["api", "v1", "devices", uuid, "flowlogs"]) => {
            let limit = param(q, "limit")?.unwrap_or(100u32);
            let app: Option<String> = param(q, "app")?;
            let flows =
                super::flowlogs::device_flowlogs(store.as_ref(), uuid, limit, app.as_deref())
                    .map_err(store_err)?;
            Ok((StatusCode::OK, Value::Array(flows)))
        }
        (&Method::POST, ["api", "v1", "devices", uuid, "apps"]) => {
            let app: NewApp = serde_json::from_slice(body).map_err(|e| {
                bad(
                    StatusCode::BAD_REQUEST,
                    format!("expected {{name, memory_mib, vcpus}}: {e}"),
                )
            })?;
            let version = ctl.deploy_app(uuid, &app)?;
            Ok((StatusCode::OK, json!({ "version": version })))
        }
        (
            &Method::POST,
            [
                "api",
                "v1",
                "devices",
                uuid,
                "apps",
                name,
                action @ ("stop" | "start"),
            ],
        ) => {
            let version = ctl.set_app_active(uuid, name, *action == "start")?;
            Ok((StatusCode::OK, json!({ "version": version })))
        }
        _ => Err(bad(
            StatusCode::NOT_FOUND,
            format!("no admin route {method} {path}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding_and_token_compare() {
        let q = query(Some("contains=link%20down&limit=5&x"));
        assert_eq!(q[0], ("contains".into(), "link down".into()));
        assert_eq!(param::<u32>(&q, "limit").unwrap(), Some(5));
        assert!(param::<u32>(&q, "contains").is_err());
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }
}
