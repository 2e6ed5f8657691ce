//! `show=URL[,URL...]`: GET each plain-HTTP URL and print its status and
//! body on one console line (`nettest: show URL -> STATUS BODY`, the body
//! escaped), so a host test can check what a server told this app, such
//! as zedrouter's metadata server answering each app with its own data.

use alloc::{format, string::String, vec::Vec};
use core::time::Duration;

use evehttp::{Request, Scheme, Target};
use net::Stack;

const TIMEOUT: Duration = Duration::from_secs(20);
/// Enough for the metadata server's answers; the rest is cut off.
const MAX_SHOWN: usize = 4096;

/// Fetches and prints every URL of the comma-separated list; fails on the
/// first that cannot be fetched (any HTTP status is an answer).
pub fn show(stack: &mut Stack, urls: &str) -> Result<String, String> {
    let mut shown = 0;
    for url in urls.split(',').filter(|u| !u.is_empty()) {
        let target = Target::parse_url(url).map_err(|e| format!("{url}: {e}"))?;
        if target.scheme != Scheme::Http {
            return Err(format!("{url}: show= takes http:// URLs"));
        }
        let mut body = Vec::new();
        let request = Request::get(&target.path);
        let fetched = evehttps::fetch(stack, &target, None, &request, TIMEOUT, &mut |part| {
            let room = MAX_SHOWN.saturating_sub(body.len());
            body.extend_from_slice(&part[..part.len().min(room)]);
        })
        .map_err(|e| format!("{url}: {e}"))?;
        let text = String::from_utf8_lossy(&body);
        log::info!(
            "nettest: show {url} -> {} {}",
            fetched.status,
            text.escape_debug()
        );
        shown += 1;
    }
    Ok(format!("{shown} URLs shown"))
}
