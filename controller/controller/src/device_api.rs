//! The device API's routes: EVE API v2 under `/api/v2/edgedevice/`.
//!
//! Semantics follow EVE's client and the open Adam controller: bodies are
//! signed `AuthContainer`s (`application/x-proto-binary`), telemetry posts
//! answer 201, attest answers 201 with a signed `ZAttestResponse`, config
//! answers 304 when the device's `configHash` is current. A request is
//! checked completely (size, envelope, signer, signature, payload) before
//! anything is stored, and every request is counted by route and status.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};

use crate::domain::{Controller, Reject, Reply};

/// The protobuf media type EVE uses in both directions.
pub const MIME_PROTO: &str = "application/x-proto-binary";
/// A client must send its body within this after its headers: slow senders
/// must not hold connections and memory forever.
const BODY_TIMEOUT: Duration = Duration::from_secs(60);

impl Controller {
    /// Handles one device API request; never fails at the HTTP level.
    pub async fn handle_device(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> Result<Response<Full<Bytes>>, Infallible> {
        Ok(answer(&self, req).await)
    }
}

async fn answer(ctl: &Arc<Controller>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let (route, result) = route(ctl, req).await;
    let (status, body) = match result {
        Ok((status, body)) => (status, body),
        Err(Reject(status, reason)) => (status, Some(Bytes::from(reason + "\n"))),
    };
    ctl.count(route, status);
    let mut resp = Response::builder().status(status);
    let body = match body {
        Some(b) if status.is_success() => {
            resp = resp.header(CONTENT_TYPE, MIME_PROTO);
            b
        }
        Some(b) => {
            resp = resp.header(CONTENT_TYPE, "text/plain");
            b
        }
        None => Bytes::new(),
    };
    resp.body(Full::new(body))
        .expect("static response parts are valid")
}

fn not_found() -> (&'static str, Reply) {
    (
        "unknown",
        Err(Reject::new(StatusCode::NOT_FOUND, "not found")),
    )
}

/// The route names, which are also the counters' names.
fn route_name(op: &str) -> Option<&'static str> {
    Some(match op {
        "ping" => "ping",
        "certs" => "certs",
        "register" => "register",
        "uuid" => "uuid",
        "config" => "config",
        "attest" => "attest",
        "info" => "info",
        "metrics" => "metrics",
        "logs" => "logs",
        "newlogs" => "newlogs",
        "appnewlogs" => "appnewlogs",
        "flowlog" => "flowlog",
        _ => return None,
    })
}

async fn route(ctl: &Arc<Controller>, req: Request<Incoming>) -> (&'static str, Reply) {
    let path = req.uri().path().to_owned();
    let Some(rest) = path.strip_prefix("/api/v2/edgedevice/") else {
        return not_found();
    };
    let segs: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    let (path_uuid, op, app) = match segs.as_slice() {
        [op] => (None, *op, None),
        ["id", uuid, op] => (Some(*uuid), *op, None),
        ["id", uuid, "apps", "instanceid", app, "newlogs"] => {
            (Some(*uuid), "appnewlogs", Some(*app))
        }
        _ => return not_found(),
    };
    let Some(route) = route_name(op) else {
        return not_found();
    };
    let want = if matches!(route, "ping" | "certs") {
        Method::GET
    } else {
        Method::POST
    };
    if req.method() != want {
        return (
            route,
            Err(Reject::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed",
            )),
        );
    }
    match route {
        "ping" => return (route, Ok((StatusCode::OK, None))),
        "certs" => return (route, Ok((StatusCode::OK, Some(ctl.certs_envelope())))),
        _ => {}
    }
    let body = match read_body(req, ctl.limits().max_body).await {
        Ok(b) => b,
        Err(r) => return (route, Err(r)),
    };
    // The config poll is the hot path: answered here when memory can.
    if route == "config"
        && let Some(reply) = ctl.config_poll_from_memory(&body, path_uuid)
    {
        return (route, reply);
    }
    // Everything else may wait on the store: on a blocking thread, so
    // that a slow commit never stalls the connections the runtime drives.
    let (ctl, path_uuid, app) = (
        ctl.clone(),
        path_uuid.map(str::to_owned),
        app.map(str::to_owned),
    );
    let reply = tokio::task::spawn_blocking(move || {
        handle_blocking(&ctl, route, &body, path_uuid.as_deref(), app.as_deref())
    })
    .await
    .unwrap_or_else(|e| {
        Err(Reject::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("request handler failed: {e}"),
        ))
    });
    (route, reply)
}

fn handle_blocking(
    ctl: &Controller,
    route: &'static str,
    body: &[u8],
    path_uuid: Option<&str>,
    app: Option<&str>,
) -> Reply {
    if route == "register" {
        return ctl.register(body);
    }
    let (dev, payload) = ctl.authenticate(body, path_uuid)?;
    match route {
        "uuid" => ctl.uuid(&dev),
        "config" => ctl.config(&dev, &payload),
        "attest" => ctl.attest(&dev, &payload),
        "info" => ctl.info(&dev, &payload),
        "metrics" => ctl.metrics(&dev, &payload),
        "logs" => ctl.logs(&dev, &payload),
        "newlogs" => ctl.newlogs(&dev, None, &payload),
        "appnewlogs" => ctl.newlogs(&dev, app, &payload),
        _ => ctl.flowlog(&dev, &payload),
    }
}

/// Reads a body of at most `max` bytes, refusing on a larger declared
/// `Content-Length` before reading anything.
async fn read_body(req: Request<Incoming>, max: usize) -> Result<Bytes, Reject> {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(Reject::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body larger than {max} bytes"),
        ));
    }
    let collect = Limited::new(req.into_body(), max).collect();
    let Ok(collected) = tokio::time::timeout(BODY_TIMEOUT, collect).await else {
        return Err(Reject::new(
            StatusCode::REQUEST_TIMEOUT,
            "body not received in time",
        ));
    };
    match collected {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(Reject::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body larger than {max} bytes"),
        )),
        Err(e) => Err(Reject::new(
            StatusCode::BAD_REQUEST,
            format!("reading body: {e}"),
        )),
    }
}
