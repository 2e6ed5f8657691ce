//! `evectl`'s controller commands: thin calls to the admin API with
//! human-readable output by default and the API's JSON with `--json`.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};

use crate::client::{Client, ClientError};

/// Why a controller command failed.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// `--server` is not `http://IP:PORT` or `http://localhost:PORT`.
    #[error("--server {0}: expected http://IP:PORT or http://localhost:PORT")]
    BadServer(String),
    /// A local file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The request did not complete.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The controller refused; its message is included.
    #[error("controller answered {status}: {message}")]
    Refused {
        /// HTTP status.
        status: StatusCode,
        /// The `error` field or the raw body.
        message: String,
    },
    /// The controller's answer was not JSON.
    #[error("controller answer is not JSON: {0}")]
    NotJson(#[from] serde_json::Error),
}

/// A connection to the admin API.
pub struct Admin {
    client: Client,
    /// Print raw JSON instead of tables.
    pub json: bool,
}

/// Parses `http://IP:PORT` (or `localhost`) into a socket address.
pub fn parse_server(url: &str) -> Result<SocketAddr, CtlError> {
    let hostport = url
        .strip_prefix("http://")
        .unwrap_or(url)
        .trim_end_matches('/');
    let hostport = hostport.replacen("localhost:", "127.0.0.1:", 1);
    hostport
        .parse()
        .map_err(|_| CtlError::BadServer(url.to_owned()))
}

fn read(path: &Path) -> Result<String, CtlError> {
    std::fs::read_to_string(path).map_err(|source| CtlError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Formats Unix milliseconds as UTC `YYYY-MM-DD hh:mm:ss.mmm`.
pub fn format_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
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
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:03}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms.rem_euclid(1000)
    )
}

/// Filters for `logs show` and `logs follow`.
#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    /// App instance UUID.
    pub app: Option<String>,
    /// From (Unix ms).
    pub since: Option<i64>,
    /// Until (Unix ms).
    pub until: Option<i64>,
    /// Exact severity.
    pub severity: Option<String>,
    /// Substring.
    pub contains: Option<String>,
    /// Most lines per request.
    pub limit: u32,
}

fn encode_component(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl LogFilter {
    fn query(&self, after: Option<i64>) -> String {
        let mut q = vec![format!("limit={}", self.limit)];
        let mut add = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                q.push(format!("{k}={}", encode_component(&v)));
            }
        };
        add("app", self.app.clone());
        add("since", self.since.map(|v| v.to_string()));
        add("until", self.until.map(|v| v.to_string()));
        add("severity", self.severity.clone());
        add("contains", self.contains.clone());
        add("after", after.map(|v| v.to_string()));
        q.join("&")
    }
}

impl Admin {
    /// Connects lazily to `server` with the token read from `token_file`.
    pub fn new(server: &str, token_file: &Path, json: bool) -> Result<Self, CtlError> {
        let addr = parse_server(server)?;
        let token = read(token_file)?;
        Ok(Self {
            client: Client::admin(addr, token.trim()),
            json,
        })
    }

    /// A GET with no body: most admin calls.
    async fn get(&mut self, path: &str) -> Result<Value, CtlError> {
        self.call(Method::GET, path, String::new()).await
    }

    async fn call(&mut self, method: Method, path: &str, body: String) -> Result<Value, CtlError> {
        let (status, body) = self.client.request(method, path, Bytes::from(body)).await?;
        if !status.is_success() {
            let message = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_owned))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
            return Err(CtlError::Refused { status, message });
        }
        if body.is_empty() {
            return Ok(Value::Null);
        }
        Ok(serde_json::from_slice(&body)?)
    }

    fn out(&self, value: &Value, human: impl FnOnce(&Value) -> String) -> String {
        if self.json {
            format!(
                "{}\n",
                serde_json::to_string_pretty(value).unwrap_or_default()
            )
        } else {
            human(value)
        }
    }

    /// `onboard add CERT [--serial S]...`
    pub async fn onboard_add(
        &mut self,
        cert: &Path,
        serials: &[String],
    ) -> Result<String, CtlError> {
        let body = json!({ "cert_pem": read(cert)?, "serials": serials }).to_string();
        let v = self.call(Method::POST, "/api/v1/onboard", body).await?;
        Ok(self.out(&v, |v| format!("onboarding entry {} added\n", v["id"])))
    }

    /// `onboard list`
    pub async fn onboard_list(&mut self) -> Result<String, CtlError> {
        let v = self.get("/api/v1/onboard").await?;
        Ok(self.out(&v, |v| {
            let mut s = format!("{:<6} {:<18} SERIALS\n", "ID", "CERT (sha256)");
            for e in v.as_array().into_iter().flatten() {
                let serials: Vec<&str> = e["serials"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                let hash = e["cert_hash"].as_str().unwrap_or("");
                let _ = writeln!(
                    s,
                    "{:<6} {:<18} {}",
                    e["id"],
                    &hash[..hash.len().min(16)],
                    if serials.is_empty() {
                        "(any)".to_owned()
                    } else {
                        serials.join(",")
                    }
                );
            }
            s
        }))
    }

    /// `onboard remove ID`
    pub async fn onboard_remove(&mut self, id: i64) -> Result<String, CtlError> {
        let v = self
            .call(
                Method::DELETE,
                &format!("/api/v1/onboard/{id}"),
                String::new(),
            )
            .await?;
        Ok(self.out(&v, |_| format!("onboarding entry {id} removed\n")))
    }

    /// `device list`
    pub async fn device_list(&mut self) -> Result<String, CtlError> {
        let v = self.get("/api/v1/devices").await?;
        Ok(self.out(&v, |v| {
            let mut s = format!(
                "{:<36}  {:<16} {:<15} LAST SEEN (UTC)\n",
                "UUID", "SERIAL", "ATTESTATION"
            );
            for d in v.as_array().into_iter().flatten() {
                let _ = writeln!(
                    s,
                    "{:<36}  {:<16} {:<15} {}",
                    d["uuid"].as_str().unwrap_or(""),
                    d["serial"].as_str().unwrap_or(""),
                    d["attest"]["state"].as_str().unwrap_or(""),
                    format_ms(d["last_seen"].as_i64().unwrap_or(0) * 1000)
                );
            }
            s
        }))
    }

    /// `device show UUID`
    pub async fn device_show(&mut self, uuid: &str) -> Result<String, CtlError> {
        let v = self.get(&format!("/api/v1/devices/{uuid}")).await?;
        Ok(self.out(&v, |d| {
            let t = |k: &str| format_ms(d[k].as_i64().unwrap_or(0) * 1000);
            format!(
                "uuid:         {}\nserial:       {}\nregistered:   {}\nlast seen:    {}\nattestation:  {}\ndevice cert:  sha256 {}\nonboarding:   sha256 {}\n",
                d["uuid"].as_str().unwrap_or(""),
                d["serial"].as_str().unwrap_or(""),
                t("registered"),
                t("last_seen"),
                d["attest"]["state"].as_str().unwrap_or(""),
                d["device_cert_hash"].as_str().unwrap_or(""),
                d["onboard_cert_hash"].as_str().unwrap_or(""),
            )
        }))
    }

    /// `device delete UUID`
    pub async fn device_delete(&mut self, uuid: &str) -> Result<String, CtlError> {
        let v = self
            .call(
                Method::DELETE,
                &format!("/api/v1/devices/{uuid}"),
                String::new(),
            )
            .await?;
        Ok(self.out(&v, |_| format!("device {uuid} deleted\n")))
    }

    /// `config set UUID FILE`
    pub async fn config_set(&mut self, uuid: &str, file: &Path) -> Result<String, CtlError> {
        let v = self
            .call(
                Method::PUT,
                &format!("/api/v1/devices/{uuid}/config"),
                read(file)?,
            )
            .await?;
        Ok(self.out(&v, |v| {
            format!("config version {} stored for {uuid}\n", v["version"])
        }))
    }

    /// `config get UUID`
    pub async fn config_get(&mut self, uuid: &str) -> Result<String, CtlError> {
        let v = self.get(&format!("/api/v1/devices/{uuid}/config")).await?;
        Ok(self.out(&v, |v| {
            format!(
                "version {} set {} UTC, configHash {}\n{}\n",
                v["version"],
                format_ms(v["created"].as_i64().unwrap_or(0) * 1000),
                v["config_hash"].as_str().unwrap_or(""),
                serde_json::to_string_pretty(&v["config"]).unwrap_or_default()
            )
        }))
    }

    /// `info show UUID`
    pub async fn info_show(&mut self, uuid: &str) -> Result<String, CtlError> {
        let v = self.get(&format!("/api/v1/devices/{uuid}/info")).await?;
        Ok(self.out(&v, |v| {
            let mut s = String::new();
            for r in v.as_array().into_iter().flatten() {
                let _ = writeln!(
                    s,
                    "== {} (received {} UTC)\n{}",
                    r["key"].as_str().unwrap_or(""),
                    format_ms(r["received_ms"].as_i64().unwrap_or(0)),
                    serde_json::to_string_pretty(&r["info"]).unwrap_or_default()
                );
            }
            s
        }))
    }

    /// `metrics show UUID [--limit N]`
    pub async fn metrics_show(&mut self, uuid: &str, limit: u32) -> Result<String, CtlError> {
        let v = self
            .get(&format!("/api/v1/devices/{uuid}/metrics?limit={limit}"))
            .await?;
        Ok(self.out(&v, |v| {
            let mut s = String::new();
            for r in v.as_array().into_iter().flatten() {
                let _ = writeln!(
                    s,
                    "== received {} UTC\n{}",
                    format_ms(r["received_ms"].as_i64().unwrap_or(0)),
                    serde_json::to_string_pretty(&r["metrics"]).unwrap_or_default()
                );
            }
            s
        }))
    }

    fn log_lines(&self, v: &Value) -> String {
        if self.json {
            return v
                .as_array()
                .into_iter()
                .flatten()
                .map(|l| format!("{l}\n"))
                .collect();
        }
        let mut s = String::new();
        for l in v.as_array().into_iter().flatten() {
            let app = l["app"]
                .as_str()
                .map(|a| format!(" [app {a}]"))
                .unwrap_or_default();
            let _ = writeln!(
                s,
                "{} {:<7} {}{}: {}",
                format_ms(l["ts_ms"].as_i64().unwrap_or(0)),
                l["severity"].as_str().unwrap_or(""),
                l["source"].as_str().unwrap_or(""),
                app,
                l["content"].as_str().unwrap_or("")
            );
        }
        s
    }

    /// `logs show UUID [filters]`; with `--json`, one JSON object per line.
    pub async fn logs_show(&mut self, uuid: &str, filter: &LogFilter) -> Result<String, CtlError> {
        let v = self
            .get(&format!(
                "/api/v1/devices/{uuid}/logs?{}",
                filter.query(None)
            ))
            .await?;
        Ok(self.log_lines(&v))
    }

    /// `logs follow UUID [filters]`: polls every `interval` and hands new
    /// lines to `sink` until it returns `false`.
    pub async fn logs_follow(
        &mut self,
        uuid: &str,
        filter: &LogFilter,
        interval: Duration,
        mut sink: impl FnMut(&str) -> bool,
    ) -> Result<(), CtlError> {
        let mut after = None;
        loop {
            let v = self
                .get(&format!(
                    "/api/v1/devices/{uuid}/logs?{}",
                    filter.query(after)
                ))
                .await?;
            if let Some(last) = v.as_array().and_then(|a| a.last()) {
                after = last["id"].as_i64();
            }
            let text = self.log_lines(&v);
            if !text.is_empty() && !sink(&text) {
                return Ok(());
            }
            if v.as_array().is_none_or(|a| a.len() < filter.limit as usize) {
                tokio::time::sleep(interval).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_servers_and_queries() {
        assert_eq!(format_ms(0), "1970-01-01 00:00:00.000");
        assert_eq!(format_ms(1_767_225_600_123), "2026-01-01 00:00:00.123");
        assert_eq!(format_ms(951_782_400_000), "2000-02-29 00:00:00.000");
        assert_eq!(parse_server("http://localhost:8444/").unwrap().port(), 8444);
        assert!(parse_server("https://example:1").is_err());
        let f = LogFilter {
            contains: Some("a b&c".into()),
            limit: 5,
            ..Default::default()
        };
        assert_eq!(f.query(Some(3)), "limit=5&contains=a%20b%26c&after=3");
    }
}
