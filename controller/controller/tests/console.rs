//! The web console in a real browser: Debian's headless Chromium driven
//! through chromedriver (W3C WebDriver), against the `controller` binary
//! with a simulated device. Log in with the admin token, see the device
//! onboard, open its page, deploy an app and see it run, stop it and see it
//! halt. Screenshots are taken at each step, kept in
//! `target/console-screenshots/`, and checked: the badges that carry a
//! state must be on screen in that state's colour.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use devicesim::device::{random_signer, self_signed};
use devicesim::fleet::{self, Fleet, Pace, Timers};
use hyper::{Method, StatusCode};
use serde_json::{Value, json};

mod common;
use common::*;

/// The console's colour for running and online (`.st-RUNNING`, `.online`).
const GREEN: [u8; 3] = [0x2e, 0x7d, 0x32];
/// Its colour for halted and offline.
const GREY: [u8; 3] = [0x6b, 0x77, 0x80];
/// How long the browser may take to show a change.
const PATIENCE: Duration = Duration::from_secs(60);

/// chromedriver on a loopback port, with a Chromium session.
struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
    shots: PathBuf,
    _profile: TempProfile,
}

struct TempProfile(PathBuf);

impl Drop for TempProfile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.call("DELETE", &format!("/session/{}", self.session), None);
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// One WebDriver exchange (HTTP/1.1, one connection per request).
fn webdriver(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<Value, String> {
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(|e| e.to_string())?;
    write!(
        tcp,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| e.to_string())?;
    // Read the head, then exactly Content-Length bytes: chromedriver
    // keeps the connection open whatever the request asked.
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let n = tcp.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed inside the head".into());
        }
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())
                .flatten()
        })
        .ok_or("no Content-Length")?;
    while raw.len() < head_end + length {
        let n = tcp.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed inside the body".into());
        }
        raw.extend_from_slice(&buf[..n]);
    }
    let json_body = String::from_utf8_lossy(&raw[head_end..head_end + length]).into_owned();
    let value: Value = serde_json::from_str(&json_body).map_err(|e| format!("{e}: {json_body}"))?;
    if head.starts_with("HTTP/1.1 200") {
        Ok(value["value"].clone())
    } else {
        Err(value.to_string())
    }
}

impl Browser {
    fn start() -> Option<Browser> {
        let have = |bin: &str| {
            Command::new(bin)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        };
        if !have("chromium") || !have("chromedriver") {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI needs Debian's chromium and chromium-driver (cargo xtask test installs them)"
            );
            eprintln!("SKIPPED the console test: needs Debian's chromium and chromium-driver");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let deadline = Instant::now() + Duration::from_secs(30);
        while webdriver(addr, "GET", "/status", None).is_err() {
            assert!(Instant::now() < deadline, "chromedriver never answered");
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = temp_dir("chromium-profile");
        std::fs::create_dir_all(&profile).unwrap();
        // The flags that work on these machines: no sandbox as root, and
        // none of Chromium's own traffic (the network here is closed).
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            // The controller's certificate chains to its own root, which
            // this throw-away profile does not trust.
            "acceptInsecureCerts": true,
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--window-size=1280,1400", "--force-device-scale-factor=1",
                    format!("--user-data-dir={}", profile.display())]
            }
        }}});
        let session = webdriver(addr, "POST", "/session", Some(&caps)).expect("a Chromium session");
        let shots =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/console-screenshots");
        std::fs::create_dir_all(&shots).unwrap();
        Some(Browser {
            driver,
            addr,
            session: session["sessionId"].as_str().unwrap().to_owned(),
            shots,
            _profile: TempProfile(profile),
        })
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
        webdriver(self.addr, method, path, body)
    }

    fn session(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let full = format!("/session/{}{path}", self.session);
        self.call(method, &full, body.as_ref())
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    fn go(&self, url: &str) {
        self.session("POST", "/url", Some(json!({ "url": url })));
    }

    fn find(&self, css: &str) -> Option<String> {
        let found = self
            .call(
                "POST",
                &format!("/session/{}/element", self.session),
                Some(&json!({"using": "css selector", "value": css})),
            )
            .ok()?;
        found
            .as_object()?
            .values()
            .next()?
            .as_str()
            .map(str::to_owned)
    }

    fn element(&self, css: &str) -> String {
        self.find(css).unwrap_or_else(|| panic!("no element {css}"))
    }

    fn text(&self, css: &str) -> Option<String> {
        let id = self.find(css)?;
        self.call(
            "GET",
            &format!("/session/{}/element/{id}/text", self.session),
            None,
        )
        .ok()?
        .as_str()
        .map(str::to_owned)
    }

    fn click(&self, css: &str) {
        let id = self.element(css);
        self.session("POST", &format!("/element/{id}/click"), Some(json!({})));
    }

    fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css);
        self.session(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        );
    }

    /// Waits until `check` holds, reloading the page with `reload`.
    fn wait_for(&self, what: &str, reload: bool, check: impl Fn(&Browser) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !check(self) {
            assert!(Instant::now() < deadline, "the console never showed {what}");
            std::thread::sleep(Duration::from_millis(300));
            if reload {
                self.session("POST", "/refresh", Some(json!({})));
            }
        }
    }

    /// Takes a screenshot, saves it as `name.png`, and checks that the
    /// element `css` is on it with `colour` as its background.
    fn check_shot(&self, name: &str, css: &str, colour: [u8; 3]) {
        let shot = self.session("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot.as_str().unwrap())
            .unwrap();
        std::fs::write(self.shots.join(format!("{name}.png")), &png).unwrap();
        let id = self.element(css);
        let rect = self.session("GET", &format!("/element/{id}/rect"), None);
        let decoder = png::Decoder::new(std::io::Cursor::new(png));
        let mut reader = decoder.read_info().unwrap();
        let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut pixels).unwrap();
        let channels = info.color_type.samples();
        let (x0, y0) = (
            rect["x"].as_f64().unwrap() as usize,
            rect["y"].as_f64().unwrap() as usize,
        );
        let (w, h) = (
            rect["width"].as_f64().unwrap() as usize,
            rect["height"].as_f64().unwrap() as usize,
        );
        assert!(
            w > 0 && h > 0 && x0 + w <= info.width as usize && y0 + h <= info.height as usize,
            "{name}: {css} is not on screen: {rect}"
        );
        let mut matching = 0;
        for y in y0..y0 + h {
            for x in x0..x0 + w {
                let p = (y * info.width as usize + x) * channels;
                let near = (0..3).all(|c| pixels[p + c].abs_diff(colour[c]) <= 12);
                matching += usize::from(near);
            }
        }
        assert!(
            matching * 3 >= w * h,
            "{name}: {css} is not drawn in {colour:?} ({matching} of {} pixels)",
            w * h
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_chromium() {
    let Some(browser) = Browser::start() else {
        return;
    };
    let dir = temp_dir("console");
    let ctl = start_with(&dir, &[]);
    let base = format!("https://{}", ctl.admin);
    let token = ctl.token.clone();

    // A device that polls its config every second.
    let key = random_signer();
    let (cert_pem, _) = self_signed(&key, "console onboarding").unwrap();
    let (s, _) = ctl
        .admin(
            Method::POST,
            "/api/v1/onboard",
            &json!({ "cert_pem": cert_pem }).to_string(),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let device = tokio::spawn(fleet::run(Fleet {
        devices: 1,
        controllers: vec![ctl.dev],
        root_pem: ctl.root_pem.clone(),
        onboarding: (key, cert_pem),
        serial_prefix: "CONSOLE".into(),
        connections: 1,
        pace: Pace::Cadence(Timers {
            config: Duration::from_secs(1),
            metrics: Duration::from_secs(1),
            info: Duration::from_secs(5),
            logs: Duration::from_secs(2),
        }),
        duration: PATIENCE * 4,
        report_every: None,
    }));

    tokio::task::spawn_blocking(move || {
        // Not logged in: the login page. A wrong token is refused.
        browser.go(&format!("{base}/console/"));
        browser.type_into("#token", "wrong");
        browser.click("#login");
        browser.wait_for("the wrong token refused", false, |b| {
            b.text(".error").is_some_and(|t| t.contains("Wrong token"))
        });
        browser.type_into("#token", &token);
        browser.click("#login");

        // The device onboards and shows up online.
        browser.wait_for("the device", true, |b| {
            b.text("#summary")
                .is_some_and(|t| t.starts_with("1 devices, 1 online"))
        });
        browser.check_shot("1-fleet", "#devices .badge.online", GREEN);

        // Its page: facts reported by the device, charts, logs.
        browser.click("#devices a");
        browser.wait_for("the device's version", true, |b| {
            b.text("#facts")
                .is_some_and(|t| t.contains("devicesim-1.0"))
        });
        browser.wait_for("live logs", false, |b| b.find("#logs tbody tr").is_some());
        browser.wait_for("a metrics chart", true, |b| {
            b.find("#chart-memory polyline").is_some()
        });
        browser.check_shot("2-device", "#facts .badge.online", GREEN);

        // Deploy an app: the device boots it and reports it running.
        browser.type_into("#deploy-name", "web");
        browser.click("#deploy-button");
        browser.wait_for("the deployment noted", false, |b| {
            b.text("#note").is_some_and(|t| t.contains("web deployed"))
        });
        browser.wait_for("the app running", false, |b| {
            b.text("[data-app=\"web\"] .state").as_deref() == Some("RUNNING")
        });
        browser.check_shot("3-app-running", "[data-app=\"web\"] .state", GREEN);

        // Stop it: the device halts it.
        browser.click("[data-app=\"web\"] button.stop");
        browser.wait_for("the app halted", false, |b| {
            b.text("[data-app=\"web\"] .state").as_deref() == Some("HALTED")
        });
        browser.check_shot("4-app-halted", "[data-app=\"web\"] .state", GREY);

        // The onboarding allow-list lists the fleet's certificate.
        browser.click("header a[href=\"/console/onboard\"]");
        browser.wait_for("the allow-list", false, |b| {
            b.text("#onboard").is_some_and(|t| t.contains("(any)"))
        });
    })
    .await
    .expect("the browser steps pass");
    device.abort();
    drop(ctl);
    let _ = std::fs::remove_dir_all(&dir);
}
