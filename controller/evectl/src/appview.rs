//! `evectl app ...`: the admin calls behind the app commands, and apps as
//! the controller's `GET .../apps` shows them (config beside the device's
//! latest `ZInfoApp` and `AppMetric`), rendered readably.
//!
//! The device is `--device UUID`, or the only onboarded device when there
//! is just one.

use std::fmt::Write as _;
use std::time::Duration;

use hyper::StatusCode;
use serde_json::{Value, json};

use crate::admin::{Admin, CtlError, LogFilter, format_ms, proto_json_u64};
use crate::apps::{self, AppError, AppSpec};

/// A change `evectl app` makes to an app in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppChange {
    Stop,
    Start,
    Restart,
    Purge,
    Delete,
}

impl AppChange {
    fn apply(self, config: Value, name: &str) -> Result<Value, AppError> {
        match self {
            Self::Stop => apps::set_active(config, name, false),
            Self::Start => apps::set_active(config, name, true),
            Self::Restart => apps::restart(config, name),
            Self::Purge => apps::purge(config, name),
            Self::Delete => apps::delete(config, name),
        }
    }

    fn done(self) -> &'static str {
        match self {
            Self::Stop => "stopped (activate: false)",
            Self::Start => "started (activate: true)",
            Self::Restart => "restart asked (restart counter bumped)",
            Self::Purge => "purge asked (purge counter and volume generations bumped)",
            Self::Delete => "deleted with the volumes and content trees only it used",
        }
    }
}

fn refused(e: AppError) -> CtlError {
    CtlError::Refused {
        status: StatusCode::BAD_REQUEST,
        message: e.to_string(),
    }
}

fn state(info: &Value) -> &str {
    if info.is_null() {
        return "not reported yet";
    }
    match info["state"].as_str() {
        // EVE's report of a deleted app carries its UUID alone.
        None if info["appName"].as_str().unwrap_or("").is_empty() => "gone (deleted on the device)",
        None => "INVALID",
        Some(s) => s,
    }
}

/// The app's errors (`appErr`), one per line, with their time.
fn errors(info: &Value) -> Vec<String> {
    info["appErr"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let when = e["timestamp"]
                .as_str()
                .map(|t| format!(" (at {t})"))
                .unwrap_or_default();
            format!("{}{when}", e["description"].as_str().unwrap_or("?"))
        })
        .collect()
}

/// Whether the config asks the app to run.
fn wanted(app: &Value) -> &'static str {
    if app["config"].is_null() {
        "-"
    } else if app["config"]["activate"].as_bool().unwrap_or(false) {
        "run"
    } else {
        "stop"
    }
}

/// `host->app` TCP forwards of the app's portmap ACEs.
fn ports(config: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for iface in config["interfaces"].as_array().into_iter().flatten() {
        for ace in iface["acls"].as_array().into_iter().flatten() {
            let host = ace["matches"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|m| m["type"] == "lport")
                .and_then(|m| m["value"].as_str());
            let app = ace["actions"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["portmap"] == true)
                .map(|a| proto_json_u64(&a["appPort"]));
            if let (Some(h), Some(a)) = (host, app) {
                out.push(format!("{h}->{a}"));
            }
        }
    }
    out
}

/// `app list` as a table.
pub fn app_table(apps: &Value) -> String {
    let mut s = String::new();
    for app in apps.as_array().into_iter().flatten() {
        let info = &app["info"];
        let err = errors(info)
            .first()
            .map(|e| format!("  error: {e}"))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "{}  {}  wanted {}  {}{}",
            app["name"]
                .as_str()
                .filter(|n| !n.is_empty())
                .unwrap_or("?"),
            app["uuid"].as_str().unwrap_or(""),
            wanted(app),
            state(info),
            err
        );
    }
    if s.is_empty() {
        s.push_str("no apps\n");
    }
    s
}

/// How the app's user data travels in the config the device gets:
/// `sealed` in `cipherData`, which only the device opens; `clear` in
/// `userData`, which anyone who reads the config can read (a config stored
/// before the controller sealed user data); or `none`.
pub fn user_data(config: &Value) -> &'static str {
    if config["cipherData"].is_object() {
        "sealed"
    } else if config["userData"].as_str().is_some_and(|d| !d.is_empty()) {
        "clear"
    } else {
        "none"
    }
}

/// The app's disks as its metrics report them, one line each.
fn disks(metric: &Value) -> Vec<String> {
    metric["disk"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            format!(
                "{}: {} of {} MiB used ({}{})",
                d["disk"].as_str().unwrap_or("?"),
                proto_json_u64(&d["used"]),
                proto_json_u64(&d["provisioned"]),
                d["diskType"].as_str().unwrap_or("?"),
                if d["dirty"].as_bool() == Some(true) {
                    ", dirty"
                } else {
                    ""
                }
            )
        })
        .collect()
}

/// `app show` of one app.
pub fn app_detail(app: &Value) -> String {
    let mut s = String::new();
    let config = &app["config"];
    let info = &app["info"];
    let _ = writeln!(
        s,
        "app {} ({})",
        app["name"].as_str().unwrap_or("?"),
        app["uuid"].as_str().unwrap_or("")
    );
    if config.is_null() {
        s.push_str("  not in the config\n");
    } else {
        let res = &config["fixedresources"];
        let _ = writeln!(
            s,
            "  wanted: {}  mode {}  {} MiB  {} vCPU  restart #{}  purge #{}",
            wanted(app),
            res["virtualizationMode"].as_str().unwrap_or("PV"),
            proto_json_u64(&res["memory"]) / 1024,
            proto_json_u64(&res["vcpus"]),
            proto_json_u64(&config["restart"]["counter"]),
            proto_json_u64(&config["purge"]["counter"]),
        );
        let forwards = ports(config);
        if !forwards.is_empty() {
            let _ = writeln!(s, "  ports: {}", forwards.join(", "));
        }
        for iface in config["interfaces"].as_array().into_iter().flatten() {
            for ace in iface["acls"].as_array().into_iter().flatten() {
                if let Some(rule) = crate::acl::rule_of_ace(ace) {
                    let _ = writeln!(
                        s,
                        "  acl {} {}: {}",
                        iface["name"].as_str().unwrap_or("?"),
                        proto_json_u64(&ace["id"]),
                        rule.flag()
                    );
                }
            }
        }
        let _ = writeln!(s, "  user data: {}", user_data(config));
        for r in config["volumeRefList"].as_array().into_iter().flatten() {
            let _ = writeln!(
                s,
                "  volume {} generation {}",
                r["uuid"].as_str().unwrap_or("?"),
                proto_json_u64(&r["generationCount"])
            );
        }
    }
    let _ = writeln!(s, "  state: {}", state(info));
    if let Some(received) = app["info_received_ms"].as_i64() {
        let _ = writeln!(s, "  reported: {} UTC", format_ms(received));
    }
    if let Some(boot) = info["bootTime"].as_str() {
        let _ = writeln!(s, "  booted: {boot}");
    }
    for e in errors(info) {
        let _ = writeln!(s, "  error: {e}");
    }
    let metric = &app["metric"];
    if !metric.is_null() {
        let _ = writeln!(
            s,
            "  cpu: {} s  memory: {} of {} MiB used",
            proto_json_u64(&metric["cpu"]["total"]),
            proto_json_u64(&metric["memory"]["usedMem"]),
            proto_json_u64(&metric["memory"]["availMem"])
                + proto_json_u64(&metric["memory"]["usedMem"]),
        );
        for d in disks(metric) {
            let _ = writeln!(s, "  disk {d}");
        }
    }
    for n in metric["network"].as_array().into_iter().flatten() {
        let sum = |a: &str, b: &str| proto_json_u64(&n[a]) + proto_json_u64(&n[b]);
        let _ = writeln!(
            s,
            "  network {} ({}): sent {} packets, {} bytes; received {} packets, {} bytes; \
             dropped {}, by ACLs {}, rate-limited {}",
            n["iName"].as_str().unwrap_or("?"),
            n["localName"].as_str().unwrap_or("?"),
            proto_json_u64(&n["txPkts"]),
            proto_json_u64(&n["txBytes"]),
            proto_json_u64(&n["rxPkts"]),
            proto_json_u64(&n["rxBytes"]),
            sum("txDrops", "rxDrops"),
            sum("txAclDrops", "rxAclDrops"),
            sum("txAclRateLimitDrops", "rxAclRateLimitDrops"),
        );
    }
    s
}

impl Admin {
    /// The device `device` names, or the only onboarded one.
    pub async fn pick_device(&mut self, device: Option<&str>) -> Result<String, CtlError> {
        if let Some(d) = device {
            return Ok(d.to_owned());
        }
        let devices = self.get("/api/v1/devices").await?;
        match devices.as_array().map(Vec::as_slice) {
            Some([one]) => Ok(one["uuid"].as_str().unwrap_or("").to_owned()),
            Some([]) | None => Err(CtlError::Usage("no device is onboarded".into())),
            Some(_) => Err(CtlError::Usage(
                "several devices are onboarded: name one with --device UUID".into(),
            )),
        }
    }

    async fn apps(&mut self, device: &str) -> Result<Value, CtlError> {
        self.get(&format!("/api/v1/devices/{device}/apps")).await
    }

    async fn find_app(&mut self, device: &str, name: &str) -> Result<Value, CtlError> {
        let apps = self.apps(device).await?;
        apps.as_array()
            .into_iter()
            .flatten()
            .find(|a| a["name"] == name || a["uuid"] == name)
            .cloned()
            .ok_or_else(|| refused(AppError::NotFound(name.to_owned())))
    }

    /// `app deploy NAME --image ...`
    pub async fn app_deploy(&mut self, device: &str, spec: &AppSpec) -> Result<String, CtlError> {
        let config = apps::deploy(self.current_config(device).await?, spec).map_err(refused)?;
        let v = self.store_config(device, &config).await?;
        let uuid = apps::app_uuid(&config, &spec.name).unwrap_or_default();
        let v = json!({"app": uuid, "version": v["version"]});
        Ok(self.out(&v, |v| {
            format!(
                "app {} ({uuid}) deployed; config version {} stored for {device}\n",
                spec.name, v["version"]
            )
        }))
    }

    /// `app stop|start|restart|purge|delete NAME`
    pub async fn app_change(
        &mut self,
        device: &str,
        name: &str,
        change: AppChange,
    ) -> Result<String, CtlError> {
        let config = change
            .apply(self.current_config(device).await?, name)
            .map_err(refused)?;
        let v = self.store_config(device, &config).await?;
        let v = json!({"app": name, "version": v["version"]});
        Ok(self.out(&v, |v| {
            format!(
                "app {name} {}; config version {} stored for {device}\n",
                change.done(),
                v["version"]
            )
        }))
    }

    /// `app list`
    pub async fn app_list(&mut self, device: &str) -> Result<String, CtlError> {
        let apps = self.apps(device).await?;
        Ok(self.out(&apps, app_table))
    }

    /// `app show NAME`
    pub async fn app_show(&mut self, device: &str, name: &str) -> Result<String, CtlError> {
        let mut app = self.find_app(device, name).await?;
        if !app["config"].is_null() {
            app["user_data"] = json!(user_data(&app["config"]));
        }
        Ok(self.out(&app, app_detail))
    }

    /// `app logs NAME [--follow]`: the app's console lines from the
    /// device's app newlogs.
    pub async fn app_logs(
        &mut self,
        device: &str,
        name: &str,
        follow: bool,
        sink: impl FnMut(&str) -> bool,
    ) -> Result<String, CtlError> {
        let app = self.find_app(device, name).await?;
        let filter = LogFilter {
            app: app["uuid"].as_str().map(str::to_owned),
            limit: 1000,
            ..Default::default()
        };
        if follow {
            self.logs_follow(device, &filter, Duration::from_secs(1), sink)
                .await?;
            return Ok(String::new());
        }
        self.logs_show(device, &filter).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_data_is_sealed_clear_or_none() {
        let sealed = json!({"cipherData": {"cipherContextId": "c"}, "userData": ""});
        assert_eq!(user_data(&sealed), "sealed");
        assert_eq!(user_data(&json!({"userData": "I2Nsb3Vk"})), "clear");
        assert_eq!(user_data(&json!({"userData": ""})), "none");
        assert_eq!(user_data(&json!({})), "none");
    }
}
