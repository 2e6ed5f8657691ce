//! Telemetry: info, metrics, logs (both forms) and flow logs. A message is
//! decoded completely before it is stored.

use std::io::Read;

use eve_proto::Message;
use eve_proto::info::ZInfoMsg;
use eve_proto::info::z_info_msg::InfoContent;
use eve_proto::logs::{LogBundle, LogEntry};
use eve_proto::{flowlog, metrics};
use hyper::StatusCode;

use super::{Controller, Dev, Reject, Reply, unix_ms};
use crate::store::LogRecord;

impl Controller {
    /// `info`: stored as the latest for its object and in the history.
    pub fn info(&self, dev: &Dev, payload: &[u8]) -> Reply {
        let msg = ZInfoMsg::decode(payload)
            .map_err(|_| Reject::new(StatusCode::BAD_REQUEST, "payload is not a ZInfoMsg"))?;
        let key = match &msg.info_content {
            Some(InfoContent::Dinfo(_)) => "device".to_owned(),
            Some(InfoContent::Ainfo(a)) => format!("app/{}", a.app_id),
            Some(InfoContent::Niinfo(n)) => format!("network/{}", n.network_id),
            Some(InfoContent::Vinfo(v)) => format!("volume/{}", v.uuid),
            Some(InfoContent::Cinfo(c)) => format!("content/{}", c.uuid),
            Some(InfoContent::Amdinfo(m)) => format!("app-metadata/{}", m.uuid),
            Some(InfoContent::PatchInfo(p)) => format!("patch/{}", p.id),
            // One report of each of the other kinds describes the whole device.
            _ => format!("type/{}", msg.ztype),
        };
        self.store.put_info(&dev.uuid, &key, payload, unix_ms())?;
        Ok((StatusCode::CREATED, None))
    }

    /// `metrics`: stored as sent.
    pub fn metrics(&self, dev: &Dev, payload: &[u8]) -> Reply {
        metrics::ZMetricMsg::decode(payload)
            .map_err(|_| Reject::new(StatusCode::BAD_REQUEST, "payload is not a ZMetricMsg"))?;
        self.store.put_metrics(&dev.uuid, payload, unix_ms())?;
        Ok((StatusCode::CREATED, None))
    }

    /// `flowlog`: stored as sent.
    pub fn flowlog(&self, dev: &Dev, payload: &[u8]) -> Reply {
        flowlog::FlowMessage::decode(payload)
            .map_err(|_| Reject::new(StatusCode::BAD_REQUEST, "payload is not a FlowMessage"))?;
        self.store.put_flowlog(&dev.uuid, payload, unix_ms())?;
        Ok((StatusCode::CREATED, None))
    }

    /// `logs`: an older `LogBundle`, one row per entry.
    pub fn logs(&self, dev: &Dev, payload: &[u8]) -> Reply {
        let bundle = LogBundle::decode(payload)
            .map_err(|_| Reject::new(StatusCode::BAD_REQUEST, "payload is not a LogBundle"))?;
        let records: Vec<_> = bundle
            .log
            .iter()
            .map(|e| log_record(&dev.uuid, None, e))
            .collect();
        self.store.put_logs(&records, unix_ms())?;
        Ok((StatusCode::CREATED, None))
    }

    /// `newlogs`: gzip of newline-separated JSON `LogEntry`s in the form
    /// EVE writes them (see [`crate::newlog`]). The whole batch is parsed
    /// before anything is stored; a bad line refuses it, naming the line.
    pub fn newlogs(&self, dev: &Dev, app: Option<&str>, payload: &[u8]) -> Reply {
        let max = self.limits.max_log_bytes;
        let mut text = Vec::new();
        flate2::read::GzDecoder::new(payload)
            .take(max as u64 + 1)
            .read_to_end(&mut text)
            .map_err(|e| Reject::new(StatusCode::BAD_REQUEST, format!("not gzip: {e}")))?;
        if text.len() > max {
            return Err(Reject::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("logs larger than {max} bytes uncompressed"),
            ));
        }
        let text = String::from_utf8(text)
            .map_err(|_| Reject::new(StatusCode::BAD_REQUEST, "logs are not UTF-8"))?;
        let mut records = Vec::new();
        for (n, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let entry = crate::newlog::parse_line(line).map_err(|e| {
                Reject::new(StatusCode::BAD_REQUEST, format!("log line {}: {e}", n + 1))
            })?;
            records.push(log_record(&dev.uuid, app, &entry));
        }
        self.store.put_logs(&records, unix_ms())?;
        Ok((StatusCode::CREATED, None))
    }
}

/// A stored log line; a line without a timestamp is stamped on arrival.
/// Saturating: a hostile timestamp must not overflow.
fn log_record(device: &str, app: Option<&str>, e: &LogEntry) -> LogRecord {
    let ts_ms = e.timestamp.as_ref().map_or_else(unix_ms, |t| {
        t.seconds
            .saturating_mul(1000)
            .saturating_add(i64::from(t.nanos) / 1_000_000)
    });
    LogRecord {
        id: 0,
        device: device.to_owned(),
        app: app.map(str::to_owned),
        ts_ms,
        severity: e.severity.clone(),
        source: e.source.clone(),
        content: e.content.clone(),
    }
}
