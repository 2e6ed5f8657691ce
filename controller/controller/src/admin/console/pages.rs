//! The console's pages, rendered from the store. Every value that came
//! from a device or an operator is escaped.

use std::collections::HashMap;
use std::fmt::Write as _;

use serde_json::Value;

use super::chart;
use crate::admin::api::message_json;
use crate::domain::Controller;
use crate::store::{Device, Record};

/// Devices on one overview page.
const PAGE_SIZE: usize = 100;
/// A device is online when it polled within this (three config periods).
const ONLINE_SECS: i64 = 180;
/// Metrics samples in a device page's charts.
const CHART_SAMPLES: u32 = 120;

/// HTML-escapes `s`.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes `s` for a URL path segment or query value.
pub fn url_component(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn layout(title: &str, csrf: Option<&str>, main: &str) -> String {
    let nav = match csrf {
        Some(csrf) => format!(
            "<a href=\"/console/\">Fleet</a><a href=\"/console/onboard\">Onboarding</a>\
             <form method=\"post\" action=\"/console/logout\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <button id=\"logout\">Log out</button></form>",
            esc(csrf)
        ),
        None => String::new(),
    };
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>{} - EVE controller</title>\
         <link rel=\"stylesheet\" href=\"/console/static/console.css\"></head>\
         <body><header><strong>EVE controller</strong>{nav}</header><main>{main}</main>\
         <script src=\"/console/static/console.js\"></script></body></html>",
        esc(title)
    )
}

/// A page holding one message.
pub fn message(text: &str) -> String {
    layout(
        "Console",
        None,
        &format!(
            "<p class=\"error\">{}</p><p><a href=\"/console/\">Back</a></p>",
            esc(text)
        ),
    )
}

/// The login form.
pub fn login(error: Option<&str>) -> String {
    let error = error.map_or(String::new(), |e| {
        format!("<p class=\"error\">{}</p>", esc(e))
    });
    layout(
        "Log in",
        None,
        &format!(
            "<form class=\"login\" method=\"post\" action=\"/console/login\"><h1>Log in</h1>{error}\
             <p>The admin token is in the controller's data directory (<code>admin-token</code>).</p>\
             <p><input type=\"password\" id=\"token\" name=\"token\" size=\"40\" autocomplete=\"current-password\" autofocus></p>\
             <p><button id=\"login\">Log in</button></p></form>"
        ),
    )
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Unix milliseconds as UTC `YYYY-MM-DD hh:mm:ss`.
fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn online(d: &Device) -> bool {
    now_secs() - d.last_seen <= ONLINE_SECS
}

fn badge(class: &str, text: &str) -> String {
    format!("<span class=\"badge {}\">{}</span>", esc(class), esc(text))
}

fn state(text: &str) -> String {
    format!("<span class=\"state st-{0}\">{0}</span>", esc(text))
}

/// The decoded info messages of a device, by object key.
fn infos(records: &[Record]) -> HashMap<String, Value> {
    records
        .iter()
        .map(|r| {
            (
                r.key.clone(),
                message_json("org.lfedge.eve.info.ZInfoMsg", &r.msg),
            )
        })
        .collect()
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The EVE version a device runs: its activated partition's.
fn version(dinfo: &Value) -> String {
    dinfo["swList"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|sw| sw["activated"] == true)
        .map(|sw| text(&sw["shortVersion"]))
        .unwrap_or_default()
}

/// The fleet overview.
pub fn fleet(ctl: &Controller, page: usize, csrf: &str) -> Result<String, String> {
    let store = ctl.store();
    let devices = store.devices().map_err(|e| e.to_string())?;
    let online_count = devices.iter().filter(|d| online(d)).count();
    let mut rows = String::new();
    for d in devices.iter().skip(page * PAGE_SIZE).take(PAGE_SIZE) {
        let info = infos(&store.latest_info(&d.uuid).map_err(|e| e.to_string())?);
        let dinfo = info
            .get("device")
            .map_or(Value::Null, |i| i["dinfo"].clone());
        let apps: Vec<&Value> = info
            .iter()
            .filter(|(k, _)| k.starts_with("app/"))
            .map(|(_, v)| &v["ainfo"])
            .collect();
        let running = apps.iter().filter(|a| a["state"] == "RUNNING").count();
        let (class, word) = if online(d) {
            ("online", "online")
        } else {
            ("offline", "offline")
        };
        let _ = write!(
            rows,
            "<tr data-device=\"{uuid}\"><td><a class=\"mono\" href=\"/console/device/{uuid}\">{uuid}</a></td>\
             <td>{serial}</td><td>{status}</td><td>{seen}</td><td>{version}</td>\
             <td>{running} running / {apps}</td><td>{attest}</td></tr>",
            uuid = esc(&d.uuid),
            serial = esc(&d.serial),
            status = badge(class, word),
            seen = utc(d.last_seen * 1000),
            version = esc(&version(&dinfo)),
            apps = apps.len(),
            attest = state(&d.attest.state),
        );
    }
    let pages = devices.len().div_ceil(PAGE_SIZE).max(1);
    let mut pager = String::new();
    if pages > 1 {
        for p in 0..pages {
            let _ = write!(pager, "<a href=\"/console/?page={p}\">{}</a> ", p + 1);
        }
    }
    Ok(layout(
        "Fleet",
        Some(csrf),
        &format!(
            "<h1>Fleet</h1><p id=\"summary\">{} devices, {online_count} online</p>\
             <table id=\"devices\"><thead><tr><th>Device</th><th>Serial</th><th>State</th>\
             <th>Last seen (UTC)</th><th>EVE version</th><th>Apps</th><th>Attestation</th></tr></thead>\
             <tbody>{rows}</tbody></table><p>{pager}</p>",
            devices.len()
        ),
    ))
}

/// A device's page, or `None` for an unknown device.
pub fn device(
    ctl: &Controller,
    uuid: &str,
    csrf: &str,
    note: &str,
) -> Result<Option<String>, String> {
    let store = ctl.store();
    let Some(d) = store.device(uuid).map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let info = infos(&store.latest_info(uuid).map_err(|e| e.to_string())?);
    let config = ctl
        .current_config(uuid)
        .map_err(|e| e.to_string())?
        .map(|c| {
            message_json(
                "org.lfedge.eve.config.EdgeDevConfig",
                &eve_proto::Message::encode_to_vec(&c),
            )
        })
        .unwrap_or(Value::Null);
    let dinfo = info
        .get("device")
        .map_or(Value::Null, |i| i["dinfo"].clone());
    let mut main = format!("<div id=\"device\" data-uuid=\"{}\">", esc(uuid));
    let _ = write!(
        main,
        "<h1>Device <span class=\"mono\">{}</span></h1>",
        esc(uuid)
    );
    if !note.is_empty() {
        let _ = write!(main, "<p class=\"note\" id=\"note\">{}</p>", esc(note));
    }
    let (class, word) = if online(&d) {
        ("online", "online")
    } else {
        ("offline", "offline")
    };
    let facts: Vec<(&str, String)> = vec![
        ("State", badge(class, word)),
        ("Serial", esc(&d.serial)),
        ("Registered (UTC)", utc(d.registered * 1000)),
        ("Last seen (UTC)", utc(d.last_seen * 1000)),
        ("Attestation", state(&d.attest.state)),
        ("EVE version", esc(&version(&dinfo))),
        ("Architecture", esc(&text(&dinfo["machineArch"]))),
        ("CPUs", esc(&text(&dinfo["ncpu"]))),
        ("Memory (MiB)", esc(&text(&dinfo["memory"]))),
        ("Storage (MiB)", esc(&text(&dinfo["storage"]))),
        ("Last boot reason", esc(&text(&dinfo["lastBootReason"]))),
        (
            "Device certificate",
            format!(
                "<span class=\"mono\">sha256 {}</span>",
                esc(&d.device_cert_hash)
            ),
        ),
    ];
    main.push_str("<dl class=\"facts\" id=\"facts\">");
    for (k, v) in facts {
        let _ = write!(main, "<dt>{k}</dt><dd>{v}</dd>");
    }
    main.push_str("</dl>");
    main.push_str(&apps(uuid, csrf, &config, &info));
    main.push_str(&networks(&config, &info));
    main.push_str(&content(&config, &info));
    main.push_str(&charts(ctl, uuid)?);
    main.push_str(
        "<h2>Logs</h2><div class=\"panel\"><label>Severity <select id=\"log-severity\">\
         <option value=\"\">any</option><option>error</option><option>warning</option>\
         <option>info</option><option>debug</option></select></label> \
         <label>Containing <input id=\"log-contains\" size=\"30\"></label></div>\
         <table id=\"logs\"><thead><tr><th>Time (UTC)</th><th>Severity</th><th>Source</th>\
         <th>Message</th></tr></thead><tbody></tbody></table></div>",
    );
    Ok(Some(layout(&format!("Device {uuid}"), Some(csrf), &main)))
}

fn apps(uuid: &str, csrf: &str, config: &Value, info: &HashMap<String, Value>) -> String {
    let reported: HashMap<String, String> = info
        .iter()
        .filter(|(k, _)| k.starts_with("app/"))
        .map(|(_, v)| (text(&v["ainfo"]["AppName"]), text(&v["ainfo"]["state"])))
        .collect();
    let mut rows = String::new();
    for app in config["apps"].as_array().into_iter().flatten() {
        let name = text(&app["displayname"]);
        let active = app["activate"] == true;
        let shown = reported.get(&name).cloned().unwrap_or_else(|| {
            if active {
                "deploying".into()
            } else {
                "HALTED".into()
            }
        });
        let (action, label) = if active {
            ("stop", "Stop")
        } else {
            ("start", "Start")
        };
        let res = &app["fixedresources"];
        let _ = write!(
            rows,
            "<tr data-app=\"{n}\" id=\"app-{n}\"><td>{n}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td><form class=\"inline\" method=\"post\" action=\"/console/device/{u}/app/{nu}/{action}\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{c}\"><button class=\"{action}\">{label}</button></form></td></tr>",
            if active { "yes" } else { "no" },
            text(&res["memory"])
                .parse::<u64>()
                .map_or(String::new(), |kb| (kb / 1024).to_string()),
            esc(&text(&res["vcpus"])),
            state(&shown),
            n = esc(&name),
            u = esc(uuid),
            nu = esc(&url_component(&name)),
            c = esc(csrf),
        );
    }
    format!(
        "<h2>Apps</h2><table id=\"apps\"><thead><tr><th>App</th><th>Activated</th><th>Memory (MiB)</th>\
         <th>vCPUs</th><th>State</th><th></th></tr></thead><tbody>{rows}</tbody></table>\
         <form class=\"panel\" id=\"deploy\" method=\"post\" action=\"/console/device/{u}/deploy\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{c}\">\
         <label>Name <input name=\"name\" id=\"deploy-name\" required></label> \
         <label>Memory (MiB) <input name=\"memory_mib\" type=\"number\" value=\"256\" min=\"16\"></label> \
         <label>vCPUs <input name=\"vcpus\" type=\"number\" value=\"1\" min=\"1\"></label> \
         <button id=\"deploy-button\">Deploy app</button></form>",
        u = esc(uuid),
        c = esc(csrf),
    )
}

fn networks(config: &Value, info: &HashMap<String, Value>) -> String {
    let mut rows = String::new();
    for ni in config["networkInstances"].as_array().into_iter().flatten() {
        let id = text(&ni["uuidandversion"]["uuid"]);
        let reported = info.get(&format!("network/{id}")).map(|v| &v["niinfo"]);
        let status = match reported {
            Some(r) if r["activated"] == true => "ONLINE",
            Some(_) => "INITIAL",
            None => "pending",
        };
        let _ = write!(
            rows,
            "<tr><td>{}</td><td class=\"mono\">{}</td><td>{}</td></tr>",
            esc(&text(&ni["displayname"])),
            esc(&id),
            state(status)
        );
    }
    format!(
        "<h2>Network instances</h2><table id=\"networks\"><thead><tr><th>Name</th><th>UUID</th>\
         <th>State</th></tr></thead><tbody>{rows}</tbody></table>"
    )
}

fn content(config: &Value, info: &HashMap<String, Value>) -> String {
    let mut rows = String::new();
    let kinds = [
        ("contentInfo", "content", "cinfo", "content tree"),
        ("volumes", "volume", "vinfo", "volume"),
    ];
    for (list, key, field, kind) in kinds {
        for item in config[list].as_array().into_iter().flatten() {
            let id = text(&item["uuid"]);
            let reported = info
                .get(&format!("{key}/{id}"))
                .map_or("pending".to_owned(), |v| text(&v[field]["state"]));
            let _ = write!(
                rows,
                "<tr><td>{kind}</td><td>{}</td><td class=\"mono\">{}</td><td>{}</td></tr>",
                esc(&text(&item["displayName"])),
                esc(&id),
                state(&reported)
            );
        }
    }
    format!(
        "<h2>Content and volumes</h2><table id=\"content\"><thead><tr><th>Kind</th><th>Name</th>\
         <th>UUID</th><th>State</th></tr></thead><tbody>{rows}</tbody></table>"
    )
}

/// A protobuf-JSON number (64-bit ones are strings).
fn number(v: &Value) -> Option<f64> {
    v.as_f64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

fn charts(ctl: &Controller, uuid: &str) -> Result<String, String> {
    let mut samples: Vec<(i64, Value)> = ctl
        .store()
        .metrics(uuid, CHART_SAMPLES)
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|r| {
            (
                r.received_ms,
                message_json("org.lfedge.eve.metrics.ZMetricMsg", &r.msg),
            )
        })
        .collect();
    samples.reverse();
    let memory: Vec<(i64, f64)> = samples
        .iter()
        .filter_map(|(t, m)| number(&m["dm"]["deviceMemory"]["usedEveMB"]).map(|v| (*t, v)))
        .collect();
    let cpu_total: Vec<(i64, f64)> = samples
        .iter()
        .filter_map(|(t, m)| number(&m["dm"]["cpuMetric"]["total"]).map(|v| (*t, v)))
        .collect();
    // CPU seconds used per second between samples, as a percentage.
    let cpu: Vec<(i64, f64)> = cpu_total
        .windows(2)
        .filter(|w| w[1].0 > w[0].0)
        .map(|w| {
            let used = (w[1].1 - w[0].1).max(0.0);
            (w[1].0, 100.0 * used / ((w[1].0 - w[0].0) as f64 / 1000.0))
        })
        .collect();
    Ok(format!(
        "<h2>Metrics</h2><div class=\"panel\">{}<br>{}</div>",
        chart::line("chart-memory", "EVE memory used", "MB", &memory),
        chart::line("chart-cpu", "CPU", "% of one CPU", &cpu)
    ))
}

/// The onboarding allow-list, with add and remove forms.
pub fn onboard(ctl: &Controller, csrf: &str) -> Result<String, String> {
    let entries = ctl.store().onboard_list().map_err(|e| e.to_string())?;
    let mut rows = String::new();
    for e in &entries {
        let serials = if e.serials.is_empty() {
            "(any)".to_owned()
        } else {
            e.serials.join(", ")
        };
        let _ = write!(
            rows,
            "<tr><td>{}</td><td class=\"mono\">{}</td><td>{}</td><td>{}</td>\
             <td><form class=\"inline\" method=\"post\" action=\"/console/onboard/{}/remove\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\"><button>Remove</button></form></td></tr>",
            e.id,
            esc(&e.cert_hash[..e.cert_hash.len().min(16)]),
            esc(&serials),
            utc(e.created * 1000),
            e.id,
            esc(csrf)
        );
    }
    Ok(layout(
        "Onboarding",
        Some(csrf),
        &format!(
            "<h1>Onboarding allow-list</h1><table id=\"onboard\"><thead><tr><th>Id</th>\
             <th>Certificate (sha256)</th><th>Serials</th><th>Added (UTC)</th><th></th></tr></thead>\
             <tbody>{rows}</tbody></table>\
             <form class=\"panel\" method=\"post\" action=\"/console/onboard\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <p><label>Onboarding certificate (PEM)<br><textarea name=\"cert_pem\" rows=\"8\" cols=\"70\" required></textarea></label></p>\
             <p><label>Serials (comma separated; empty: any) <input name=\"serials\" size=\"40\"></label></p>\
             <p><button>Add</button></p></form>",
            esc(csrf)
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_and_times() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(url_component("web app/1"), "web%20app%2F1");
        assert_eq!(utc(1_767_225_600_000), "2026-01-01 00:00:00");
        let dinfo = serde_json::json!({"swList": [
            {"activated": false, "shortVersion": "1.0"},
            {"activated": true, "shortVersion": "2.0"}]});
        assert_eq!(version(&dinfo), "2.0");
    }
}
