//! `evectl`'s controller commands: thin calls to the admin API with
//! human-readable output by default and the API's JSON with `--json`.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};

use devicesim::http::{Client, ClientError};

/// Why a controller command failed.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// `--server` is not `https://IP:PORT`, `http://IP:PORT` or localhost.
    #[error(
        "--server {0}: expected https://IP:PORT or https://localhost:PORT (http:// for a plain loopback listener)"
    )]
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
    /// An argument is malformed.
    #[error("{0}")]
    Usage(String),
}

/// A connection to the admin API.
pub struct Admin {
    client: Client,
    /// Print raw JSON instead of tables.
    pub json: bool,
}

/// Where the admin API is: `https://IP:PORT` (the default scheme when
/// none is given) or `http://IP:PORT`; `localhost` means 127.0.0.1.
/// Returns the address and whether it is HTTPS.
pub fn parse_server(url: &str) -> Result<(SocketAddr, bool), CtlError> {
    let (https, hostport) = match url.split_once("://") {
        Some(("https", rest)) => (true, rest),
        Some(("http", rest)) => (false, rest),
        Some(_) => return Err(CtlError::BadServer(url.to_owned())),
        None => (true, url),
    };
    let hostport = hostport
        .trim_end_matches('/')
        .replacen("localhost:", "127.0.0.1:", 1);
    hostport
        .parse()
        .map(|addr| (addr, https))
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

/// Prefix of the `metricItems` keys in which our devices count rejected
/// controller answers by reason (the agent's `METRIC_REJECTED`).
pub const REJECTED_ITEM_PREFIX: &str = "zedagent.rejected.";
/// The `metricItems` key of our devices' failed state-volume writes.
pub const PERSIST_ERRORS_ITEM: &str = "zedagent.persist.errors";

/// A protobuf-JSON integer: 64-bit ones are strings, the others numbers;
/// absent (zero) is 0.
pub fn proto_json_u64(v: &Value) -> u64 {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(0)
}

/// A protobuf-JSON enum name without its prefix; absent is the zero value.
fn enum_name<'a>(v: &'a Value, prefix: &str, zero: &'a str) -> &'a str {
    v.as_str()
        .map_or(zero, |s| s.strip_prefix(prefix).unwrap_or(s))
}

/// The lines `info show` puts above a device info's JSON: attestation
/// state and last error, HSM status, boot reason. Empty for other infos.
pub fn device_info_summary(info: &Value) -> String {
    let d = &info["dinfo"];
    if !d.is_object() {
        return String::new();
    }
    let attestation = &d["attestationInfo"];
    let mut s = format!(
        "attestation:  {}\n",
        enum_name(&attestation["state"], "ATTESTATION_STATE_", "UNSPECIFIED")
    );
    let error = &attestation["error"];
    if let Some(why) = error["description"].as_str() {
        let _ = writeln!(
            s,
            "  last error: {why} (at {})",
            error["timestamp"].as_str().unwrap_or("an unknown time")
        );
    }
    let _ = writeln!(
        s,
        "HSM:          {}{}",
        d["HSMStatus"].as_str().unwrap_or("UNKNOWN"),
        d["HSMInfo"]
            .as_str()
            .map(|i| format!(" ({i})"))
            .unwrap_or_default()
    );
    let _ = writeln!(
        s,
        "boot reason:  {}",
        enum_name(&d["lastBootReason"], "BOOT_REASON_", "UNSPECIFIED")
    );
    s
}

/// The lines `metrics show` puts above a metrics message's JSON:
/// controller requests per management port, rejected answers (with our
/// devices' split by reason), failed state-volume writes, the log queue.
pub fn metrics_summary(metrics: &Value) -> String {
    let dm = &metrics["dm"];
    let mut s = String::new();
    for z in dm["zedcloud"].as_array().into_iter().flatten() {
        let when = |key: &str| z[key].as_str().unwrap_or("never").to_owned();
        let _ = writeln!(
            s,
            "controller requests via {}: {} ok, {} failed (last ok {}, last failure {})",
            z["ifName"]
                .as_str()
                .filter(|n| !n.is_empty())
                .unwrap_or("?"),
            proto_json_u64(&z["success"]),
            proto_json_u64(&z["failures"]),
            when("lastSuccess"),
            when("lastFailure"),
        );
        let reasons: Vec<String> = dm["metricItems"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| {
                let reason = i["key"].as_str()?.strip_prefix(REJECTED_ITEM_PREFIX)?;
                let n = proto_json_u64(&i["uint64Value"]);
                (n > 0).then(|| format!("{reason} {n}"))
            })
            .collect();
        let _ = writeln!(
            s,
            "rejected controller answers: {}{}",
            proto_json_u64(&z["authVerifyFailure"]),
            if reasons.is_empty() {
                String::new()
            } else {
                format!(" ({})", reasons.join(", "))
            }
        );
    }
    if let Some(persist) = dm["metricItems"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|i| i["key"] == PERSIST_ERRORS_ITEM)
    {
        let _ = writeln!(
            s,
            "failed state-volume writes: {}",
            proto_json_u64(&persist["uint64Value"])
        );
    }
    let log = &dm["log"];
    if log.is_object() {
        let _ = writeln!(
            s,
            "log lines: {} in, {} sent in {} bundles, {} refused, {} dropped",
            proto_json_u64(&log["totalDeviceLogInput"]),
            proto_json_u64(&log["numDeviceEventsSent"]),
            proto_json_u64(&log["numDeviceBundlesSent"]),
            proto_json_u64(&log["num4xxResponses"]),
            proto_json_u64(&log["numDeviceEventErrors"]),
        );
    }
    s
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
    /// Connects lazily to `server` with the token read from `token_file`;
    /// over HTTPS the controller is checked against the root certificate
    /// the controller keeps beside its token (`root-certificate.pem`).
    pub fn new(server: &str, token_file: &Path, json: bool) -> Result<Self, CtlError> {
        let ca = token_file
            .parent()
            .unwrap_or(Path::new("."))
            .join("root-certificate.pem");
        Self::connect(server, token_file, &ca, json)
    }

    /// As [`Self::new`], with the root certificate read from `ca`.
    pub fn connect(
        server: &str,
        token_file: &Path,
        ca: &Path,
        json: bool,
    ) -> Result<Self, CtlError> {
        let (addr, https) = parse_server(server)?;
        let token = read(token_file)?;
        let client = if https {
            Client::admin_tls(addr, &read(ca)?, token.trim())?
        } else {
            Client::admin(addr, token.trim())
        };
        Ok(Self { client, json })
    }

    /// A GET with no body: most admin calls.
    pub(crate) async fn get(&mut self, path: &str) -> Result<Value, CtlError> {
        self.call(Method::GET, path, String::new()).await
    }

    pub(crate) async fn call(
        &mut self,
        method: Method,
        path: &str,
        body: String,
    ) -> Result<Value, CtlError> {
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

    pub(crate) fn out(&self, value: &Value, human: impl FnOnce(&Value) -> String) -> String {
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
        if self.json {
            return Ok(self.out(&v, |_| String::new()));
        }
        // The readable view adds the device's content, volumes and blobs
        // from its latest info (`info show` has the JSON).
        let infos = self.get(&format!("/api/v1/devices/{uuid}/info")).await?;
        let content = crate::content::content_status(&infos);
        let partitions = infos
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["info"]["dinfo"].is_object())
            .map(|r| crate::devops::partitions_summary(&r["info"]["dinfo"]))
            .unwrap_or_default();
        Ok(self.out(&v, |d| {
            let t = |k: &str| format_ms(d[k].as_i64().unwrap_or(0) * 1000);
            format!(
                "uuid:         {}\nserial:       {}\nregistered:   {}\nlast seen:    {}\nattestation:  {}\npcr policy:   {}\ndevice cert:  sha256 {}\nonboarding:   sha256 {}\n",
                d["uuid"].as_str().unwrap_or(""),
                d["serial"].as_str().unwrap_or(""),
                t("registered"),
                t("last_seen"),
                d["attest"]["state"].as_str().unwrap_or(""),
                d["attest"]["pcr_policy"].as_str().unwrap_or("none"),
                d["device_cert_hash"].as_str().unwrap_or(""),
                d["onboard_cert_hash"].as_str().unwrap_or(""),
            ) + &partitions
                + &content
        }))
    }

    /// `device pcr-policy UUID --pcr N=HEX ... | --clear`
    pub async fn device_pcr_policy(
        &mut self,
        uuid: &str,
        pcrs: &[String],
        clear: bool,
    ) -> Result<String, CtlError> {
        let path = format!("/api/v1/devices/{uuid}/pcr-policy");
        if clear {
            let v = self.call(Method::DELETE, &path, String::new()).await?;
            return Ok(self.out(&v, |_| {
                format!("PCR policy of {uuid} cleared: its next quote's values are taken\n")
            }));
        }
        let mut map = serde_json::Map::new();
        for pcr in pcrs {
            let (index, value) = pcr
                .split_once('=')
                .ok_or_else(|| CtlError::Usage(format!("--pcr {pcr}: expected INDEX=HEX")))?;
            map.insert(index.trim().to_owned(), Value::from(value.trim()));
        }
        let body = serde_json::json!({ "pcrs": map }).to_string();
        let v = self.call(Method::PUT, &path, body).await?;
        Ok(self.out(&v, |v| {
            format!(
                "PCR policy of {uuid}: {}\n",
                v["pcr_policy"].as_str().unwrap_or("")
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
                    "== {} (received {} UTC)\n{}{}",
                    r["key"].as_str().unwrap_or(""),
                    format_ms(r["received_ms"].as_i64().unwrap_or(0)),
                    device_info_summary(&r["info"]),
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
                    "== received {} UTC\n{}{}",
                    format_ms(r["received_ms"].as_i64().unwrap_or(0)),
                    metrics_summary(&r["metrics"]),
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
        assert_eq!(
            parse_server("http://localhost:8444/").unwrap().0.port(),
            8444
        );
        assert!(!parse_server("http://localhost:8444/").unwrap().1);
        assert!(parse_server("https://127.0.0.1:9").unwrap().1);
        assert!(parse_server("127.0.0.1:9").unwrap().1);
        assert!(parse_server("https://example:1").is_err());
        assert!(parse_server("ftp://127.0.0.1:1").is_err());
        let f = LogFilter {
            contains: Some("a b&c".into()),
            limit: 5,
            ..Default::default()
        };
        assert_eq!(f.query(Some(3)), "limit=5&contains=a%20b%26c&after=3");
    }

    /// A message as the admin API renders it: protobuf-JSON from the
    /// descriptors, as the controller stores and serves it.
    fn admin_json(type_name: &str, msg: &impl prost::Message) -> Value {
        let text = controller::pbuf::decode_to_json(type_name, &msg.encode_to_vec()).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn device_info_summary_shows_attestation_hsm_and_boot_reason() {
        use eve_proto::info::*;
        let ts = |seconds| eve_proto::prost_types::Timestamp { seconds, nanos: 0 };
        let msg = ZInfoMsg {
            info_content: Some(z_info_msg::InfoContent::Dinfo(ZInfoDevice {
                hsm_status: HwSecurityModuleStatus::Enabled as i32,
                hsm_info: "TPM 2.0 through the host".into(),
                last_boot_reason: BootReason::First as i32,
                attestation_info: Some(AttestationInfo {
                    state: AttestationState::RestartWait as i32,
                    error: Some(ErrorInfo {
                        description: "attest: the controller answered 403".into(),
                        timestamp: Some(ts(1_767_225_600)),
                        ..Default::default()
                    }),
                }),
                ..Default::default()
            })),
            ..Default::default()
        };
        assert_eq!(
            device_info_summary(&admin_json("ZInfoMsg", &msg)),
            "attestation:  RESTART_WAIT\n  \
             last error: attest: the controller answered 403 (at 2026-01-01T00:00:00Z)\n\
             HSM:          ENABLED (TPM 2.0 through the host)\n\
             boot reason:  FIRST\n"
        );
        let bare = ZInfoMsg {
            info_content: Some(z_info_msg::InfoContent::Dinfo(ZInfoDevice::default())),
            ..Default::default()
        };
        assert_eq!(
            device_info_summary(&admin_json("ZInfoMsg", &bare)),
            "attestation:  UNSPECIFIED\nHSM:          UNKNOWN\nboot reason:  UNSPECIFIED\n"
        );
        let app = ZInfoMsg {
            info_content: Some(z_info_msg::InfoContent::Ainfo(ZInfoApp::default())),
            ..Default::default()
        };
        assert_eq!(device_info_summary(&admin_json("ZInfoMsg", &app)), "");
    }

    #[test]
    fn metrics_summary_shows_requests_rejections_and_logs() {
        use eve_proto::metrics::*;
        let counter = |key: &str, n| MetricItem {
            key: key.into(),
            r#type: MetricItemType::MetricItemCounter as i32,
            metric_item_value: Some(metric_item::MetricItemValue::Uint64Value(n)),
        };
        let msg = ZMetricMsg {
            metric_content: Some(z_metric_msg::MetricContent::Dm(DeviceMetric {
                zedcloud: vec![ZedcloudMetric {
                    if_name: "eth0".into(),
                    failures: 3,
                    success: 12,
                    last_failure: Some(eve_proto::prost_types::Timestamp {
                        seconds: 1_767_225_600,
                        nanos: 0,
                    }),
                    auth_verify_failure: 4,
                    ..Default::default()
                }],
                metric_items: vec![
                    counter("zedagent.rejected.bad_signature", 3),
                    counter("zedagent.rejected.malformed", 0),
                    counter("zedagent.rejected.wrong_uuid", 1),
                    counter(PERSIST_ERRORS_ITEM, 2),
                    counter("lte-signal", 9),
                ],
                log: Some(LogMetric {
                    total_device_log_input: 40,
                    num_device_events_sent: 35,
                    num_device_bundles_sent: 3,
                    num4xx_responses: 1,
                    num_device_event_errors: 4,
                    ..Default::default()
                }),
                ..Default::default()
            })),
            ..Default::default()
        };
        assert_eq!(
            metrics_summary(&admin_json("ZMetricMsg", &msg)),
            "controller requests via eth0: 12 ok, 3 failed \
             (last ok never, last failure 2026-01-01T00:00:00Z)\n\
             rejected controller answers: 4 (bad_signature 3, wrong_uuid 1)\n\
             failed state-volume writes: 2\n\
             log lines: 40 in, 35 sent in 3 bundles, 1 refused, 4 dropped\n"
        );
        assert_eq!(
            metrics_summary(&admin_json("ZMetricMsg", &ZMetricMsg::default())),
            ""
        );
    }
}
