//! `evectl flowlog show [--app NAME]`: the flow logs a device posted to
//! the controller (EVE's `FlowMessage`: one app interface's flows with
//! their 5-tuple, the ACL that decided and its action, bytes and packets
//! each way, start and end; and the DNS requests seen), one line each.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;

use crate::admin::{Admin, CtlError, format_ms, proto_json_u64};

/// Flow-log messages fetched per call.
const MESSAGES: u32 = 200;

fn protocol(n: u64) -> String {
    match n {
        6 => "tcp".into(),
        17 => "udp".into(),
        1 => "icmp".into(),
        n => format!("proto {n}"),
    }
}

fn endpoint(addr: &Value, port: &Value) -> String {
    let addr = addr.as_str().unwrap_or("?");
    let port = port.as_i64().unwrap_or(0);
    let addr = if addr.contains(':') {
        format!("[{addr}]")
    } else {
        addr.to_owned()
    };
    if port == 0 {
        addr
    } else {
        format!("{addr}:{port}")
    }
}

/// The flow logs `records` (`{received_ms, flowlog}`, newest first) as
/// lines, oldest first; `names` maps app UUIDs to display names.
pub fn flow_lines(records: &Value, names: &BTreeMap<String, String>) -> String {
    let mut s = String::new();
    let records: Vec<&Value> = records.as_array().into_iter().flatten().collect();
    for rec in records.into_iter().rev() {
        let msg = &rec["flowlog"];
        let scope = &msg["scope"];
        let app = scope["uuid"].as_str().unwrap_or("");
        let who = format!(
            "{} {}",
            names.get(app).map_or(app, String::as_str),
            scope["intf"].as_str().unwrap_or("")
        );
        let _ = writeln!(
            s,
            "== received {} UTC: app {}",
            format_ms(rec["received_ms"].as_i64().unwrap_or(0)),
            who.trim_end()
        );
        for f in msg["flows"].as_array().into_iter().flatten() {
            let ip = &f["flow"];
            let action = f["action"]
                .as_str()
                .map_or("unknown", |a| a.strip_prefix("Action").unwrap_or(a))
                .to_ascii_lowercase();
            let _ = writeln!(
                s,
                "  {} {} -> {} {}  ACL {} {}  tx {} B {} pkts  rx {} B {} pkts  {} .. {}",
                protocol(proto_json_u64(&ip["protocol"])),
                endpoint(&ip["src"], &ip["srcPort"]),
                endpoint(&ip["dest"], &ip["destPort"]),
                if f["inbound"] == true { "in" } else { "out" },
                f["aclId"].as_i64().unwrap_or(0),
                action,
                proto_json_u64(&f["txBytes"]),
                proto_json_u64(&f["txPkts"]),
                proto_json_u64(&f["rxBytes"]),
                proto_json_u64(&f["rxPkts"]),
                f["startTime"].as_str().unwrap_or("?"),
                f["endTime"].as_str().unwrap_or("?"),
            );
        }
        for d in msg["dnsReqs"].as_array().into_iter().flatten() {
            let addrs: Vec<&str> = d["addrs"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let _ = writeln!(
                s,
                "  dns {} -> {}  ACL {}  at {}",
                d["hostName"].as_str().unwrap_or("?"),
                if addrs.is_empty() {
                    "(no answer)".to_owned()
                } else {
                    addrs.join(", ")
                },
                d["aclNum"].as_i64().unwrap_or(0),
                d["requestTime"].as_str().unwrap_or("?"),
            );
        }
    }
    if s.is_empty() {
        s.push_str("no flow logs\n");
    }
    s
}

impl Admin {
    /// `flowlog show [--app NAME]`
    pub async fn flowlog_show(
        &mut self,
        device: &str,
        app: Option<&str>,
    ) -> Result<String, CtlError> {
        let apps = self.get(&format!("/api/v1/devices/{device}/apps")).await?;
        let names: BTreeMap<String, String> = apps
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| {
                Some((
                    a["uuid"].as_str()?.to_owned(),
                    a["name"].as_str()?.to_owned(),
                ))
            })
            .collect();
        let mut path = format!("/api/v1/devices/{device}/flowlogs?limit={MESSAGES}");
        if let Some(app) = app {
            let uuid = names
                .iter()
                .find(|(u, n)| *n == app || *u == app)
                .map(|(u, _)| u.clone())
                .ok_or_else(|| CtlError::Usage(format!("no app {app:?} on device {device}")))?;
            let _ = write!(path, "&app={uuid}");
        }
        let records = self.get(&path).await?;
        Ok(self.out(&records, |r| flow_lines(r, &names)))
    }
}
