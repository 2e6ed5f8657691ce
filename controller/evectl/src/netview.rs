//! `evectl network ...`: the admin calls behind the network commands, and
//! network instances as the controller's `GET .../networks` shows them
//! (config beside the device's latest `ZInfoNetworkInstance` and
//! `ZMetricNetworkInstance`), rendered readably.

use std::fmt::Write as _;

use hyper::StatusCode;
use serde_json::{Value, json};

use crate::admin::{Admin, CtlError, format_ms, proto_json_u64};
use crate::networks::{self, NetworkError, NetworkSpec};

fn refused(e: NetworkError) -> CtlError {
    CtlError::Refused {
        status: StatusCode::BAD_REQUEST,
        message: e.to_string(),
    }
}

/// `local`, `switch` or EVE's type name for others.
fn kind(net: &Value) -> String {
    let config = &net["config"];
    let t = if config.is_null() {
        match proto_json_u64(&net["info"]["instType"]) {
            1 => "ZnetInstSwitch".to_owned(),
            2 => "ZnetInstLocal".to_owned(),
            n => n.to_string(),
        }
    } else {
        config["instType"]
            .as_str()
            .unwrap_or("ZNetInstFirst")
            .to_owned()
    };
    match t.as_str() {
        "ZnetInstLocal" => "local".into(),
        "ZnetInstSwitch" => "switch".into(),
        other => other.into(),
    }
}

fn state(info: &Value) -> &str {
    if info.is_null() {
        return "not reported yet";
    }
    info["state"].as_str().map_or("UNSPECIFIED", |s| {
        s.strip_prefix("ZNETINST_STATE_").unwrap_or(s)
    })
}

/// What the config asks, in a few words: subnet or port.
fn summary(config: &Value) -> String {
    if config.is_null() {
        return "not in the config".into();
    }
    let mut parts = Vec::new();
    if let Some(subnet) = config["ip"]["subnet"].as_str() {
        parts.push(subnet.to_owned());
    }
    if let Some(port) = config["port"]["name"].as_str() {
        parts.push(format!("port {port}"));
    }
    if config["disableFlowlog"] == true {
        parts.push("no flow log".into());
    }
    parts.join("  ")
}

/// `network list` as a table.
pub fn network_table(nets: &Value) -> String {
    let mut s = String::new();
    for net in nets.as_array().into_iter().flatten() {
        let apps = net["apps"].as_array().map_or(0, Vec::len);
        let _ = writeln!(
            s,
            "{}  {}  {}  {}  {apps} app(s)  {}",
            net["name"]
                .as_str()
                .filter(|n| !n.is_empty())
                .unwrap_or("?"),
            net["uuid"].as_str().unwrap_or(""),
            kind(net),
            summary(&net["config"]),
            state(&net["info"]),
        );
    }
    if s.is_empty() {
        s.push_str("no network instances\n");
    }
    s
}

/// `network show` of one instance: config, reported state, leases,
/// interfaces, errors, counters.
pub fn network_detail(net: &Value) -> String {
    let mut s = String::new();
    let config = &net["config"];
    let info = &net["info"];
    let _ = writeln!(
        s,
        "network {} ({}) {}",
        net["name"].as_str().unwrap_or("?"),
        net["uuid"].as_str().unwrap_or(""),
        kind(net)
    );
    let _ = writeln!(s, "  config: {}", summary(config));
    let ip = &config["ip"];
    if let Some(gw) = ip["gateway"].as_str() {
        let _ = writeln!(s, "  gateway: {gw}");
    }
    if ip["dhcpRange"].is_object() {
        let _ = writeln!(
            s,
            "  dhcp range: {}-{}",
            ip["dhcpRange"]["start"].as_str().unwrap_or("?"),
            ip["dhcpRange"]["end"].as_str().unwrap_or("?")
        );
    }
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect()
    };
    let dns = strings(&ip["dns"]);
    if !dns.is_empty() {
        let _ = writeln!(s, "  dns: {}", dns.join(", "));
    }
    let apps = strings(&net["apps"]);
    if !apps.is_empty() {
        let _ = writeln!(s, "  apps: {}", apps.join(", "));
    }
    let _ = writeln!(s, "  state: {}", state(info));
    if let Some(received) = net["info_received_ms"].as_i64() {
        let _ = writeln!(s, "  reported: {} UTC", format_ms(received));
    }
    if let Some(bridge) = info["bridgeIPAddr"].as_str() {
        let _ = writeln!(s, "  bridge address: {bridge}");
    }
    for lease in info["ipAssignments"].as_array().into_iter().flatten() {
        let _ = writeln!(
            s,
            "  lease: {} {}",
            lease["macAddress"].as_str().unwrap_or("?"),
            strings(&lease["ipAddress"]).join(", ")
        );
    }
    for vif in info["vifs"].as_array().into_iter().flatten() {
        let _ = writeln!(
            s,
            "  interface: {} {} app {}",
            vif["vifName"].as_str().unwrap_or("?"),
            vif["macAddress"].as_str().unwrap_or("?"),
            vif["appID"].as_str().unwrap_or("?")
        );
    }
    for e in info["networkErr"].as_array().into_iter().flatten() {
        let when = e["timestamp"]
            .as_str()
            .map(|t| format!(" (at {t})"))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "  error: {}{when}",
            e["description"].as_str().unwrap_or("?")
        );
    }
    let stats = &net["metric"]["networkStats"];
    if stats.is_object() {
        let side = |v: &Value| {
            format!(
                "{} packets, {} bytes, {} dropped, {} errors",
                proto_json_u64(&v["totalPackets"]),
                proto_json_u64(&v["totalBytes"]),
                proto_json_u64(&v["drops"]),
                proto_json_u64(&v["errors"])
            )
        };
        let _ = writeln!(s, "  received: {}", side(&stats["rx"]));
        let _ = writeln!(s, "  sent: {}", side(&stats["tx"]));
    }
    s
}

impl Admin {
    async fn networks(&mut self, device: &str) -> Result<Value, CtlError> {
        self.get(&format!("/api/v1/devices/{device}/networks"))
            .await
    }

    /// `network add NAME ...`
    pub async fn network_add(
        &mut self,
        device: &str,
        spec: &NetworkSpec,
    ) -> Result<String, CtlError> {
        let config = networks::add(self.current_config(device).await?, spec).map_err(refused)?;
        let v = self.store_config(device, &config).await?;
        let uuid = config["networkInstances"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|n| n["displayname"] == spec.name.as_str())
            .map(networks::network_uuid)
            .unwrap_or_default();
        let v = json!({"network": uuid, "version": v["version"]});
        Ok(self.out(&v, |v| {
            format!(
                "network instance {} ({uuid}) set; config version {} stored for {device}\n",
                spec.name, v["version"]
            )
        }))
    }

    /// `network remove NAME`
    pub async fn network_remove(&mut self, device: &str, name: &str) -> Result<String, CtlError> {
        let config = networks::remove(self.current_config(device).await?, name).map_err(refused)?;
        let v = self.store_config(device, &config).await?;
        let v = json!({"network": name, "version": v["version"]});
        Ok(self.out(&v, |v| {
            format!(
                "network instance {name} removed; config version {} stored for {device}\n",
                v["version"]
            )
        }))
    }

    /// `network list`
    pub async fn network_list(&mut self, device: &str) -> Result<String, CtlError> {
        let nets = self.networks(device).await?;
        Ok(self.out(&nets, network_table))
    }

    /// `network show NAME`
    pub async fn network_show(&mut self, device: &str, name: &str) -> Result<String, CtlError> {
        let nets = self.networks(device).await?;
        let net = nets
            .as_array()
            .into_iter()
            .flatten()
            .find(|n| n["name"] == name || n["uuid"] == name)
            .cloned()
            .ok_or_else(|| refused(NetworkError::NotFound(name.to_owned())))?;
        Ok(self.out(&net, network_detail))
    }
}
