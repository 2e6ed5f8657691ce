//! HTTP and HTTPS steps against the host's test server (see the harness's
//! `servers` module): a GET whose body must be the shared test pattern, and
//! a POST of the pattern that must come back unchanged. Bodies are checked
//! as they stream in, never held whole.

use alloc::{format, string::String};
use core::time::Duration;

use evehttp::{Request, Target};
use evehttps::{Fetched, TlsSession};
use net::Stack;

use crate::{metric, pattern};

const TIMEOUT: Duration = Duration::from_secs(20);

/// Checks a streamed body against the pattern, byte by byte.
struct PatternCheck {
    seen: usize,
    mismatch: Option<usize>,
}

impl PatternCheck {
    fn new() -> Self {
        Self {
            seen: 0,
            mismatch: None,
        }
    }

    fn feed(&mut self, part: &[u8]) {
        for (i, byte) in part.iter().enumerate() {
            if self.mismatch.is_none() && *byte != ((self.seen + i) % 251) as u8 {
                self.mismatch = Some(self.seen + i);
            }
        }
        self.seen += part.len();
    }

    fn verdict(&self, expected: usize) -> Result<(), String> {
        match self.mismatch {
            Some(at) => Err(format!("body differs from the pattern at byte {at}")),
            None if self.seen != expected => {
                Err(format!("body is {} bytes, expected {expected}", self.seen))
            }
            None => Ok(()),
        }
    }
}

/// The TLS session for `https://` targets, from `root=` on the command line.
pub fn session(root: &str, target: &Target) -> Result<TlsSession, String> {
    let roots = evehttps::roots_from_base64(root).map_err(|e| format!("root=: {e}"))?;
    TlsSession::for_target(roots, target).map_err(|e| format!("{}: {e}", target.host))
}

/// `fetch=URL`: GET, expecting `expect` bytes of the pattern.
pub fn fetch(
    stack: &mut Stack,
    url: &str,
    expect: usize,
    tls: Option<&mut TlsSession>,
) -> Result<String, String> {
    let target = Target::parse_url(url).map_err(|e| format!("{url}: {e}"))?;
    let mut check = PatternCheck::new();
    let request = Request::get(&target.path);
    let fetched = evehttps::fetch(stack, &target, tls, &request, TIMEOUT, &mut |part| {
        check.feed(part)
    })
    .map_err(|e| format!("{url}: {e}"))?;
    expect_ok(&fetched)?;
    check.verdict(expect)?;
    report("fetch", &fetched);
    Ok(describe(url, &fetched))
}

/// `post=URL`: POST `len` bytes of the pattern to an echo endpoint.
pub fn post(
    stack: &mut Stack,
    url: &str,
    len: usize,
    tls: Option<&mut TlsSession>,
) -> Result<String, String> {
    let target = Target::parse_url(url).map_err(|e| format!("{url}: {e}"))?;
    let body = pattern(len);
    let mut check = PatternCheck::new();
    let request = Request::post(&target.path, &body);
    let fetched = evehttps::fetch(stack, &target, tls, &request, TIMEOUT, &mut |part| {
        check.feed(part)
    })
    .map_err(|e| format!("{url}: {e}"))?;
    expect_ok(&fetched)?;
    check.verdict(len)?;
    report("post", &fetched);
    Ok(describe(url, &fetched))
}

fn expect_ok(fetched: &Fetched) -> Result<(), String> {
    if fetched.status == 200 {
        Ok(())
    } else {
        Err(format!("status {}, expected 200", fetched.status))
    }
}

/// Metrics for the benchmark: `<step>_connect_us`, `_handshake_us`,
/// `_response_us` (request to last body byte), `_total_us`, `_bytes`.
fn report(step: &str, fetched: &Fetched) {
    let t = &fetched.timings;
    metric(&format!("{step}_connect_us"), t.connect.as_micros());
    if let Some(handshake) = t.handshake {
        metric(&format!("{step}_handshake_us"), handshake.as_micros());
    }
    metric(
        &format!("{step}_response_us"),
        (t.response_head + t.body).as_micros(),
    );
    metric(&format!("{step}_total_us"), t.total().as_micros());
    metric(&format!("{step}_bytes"), u128::from(fetched.body_bytes));
}

fn describe(url: &str, fetched: &Fetched) -> String {
    let t = &fetched.timings;
    format!(
        "{url}: {} bytes from {}; connect {} us, handshake {} us, response {} us",
        fetched.body_bytes,
        fetched.peer,
        t.connect.as_micros(),
        t.handshake.map_or(0, |h| h.as_micros()),
        (t.response_head + t.body).as_micros()
    )
}
