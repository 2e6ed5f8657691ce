//! Console sessions: a random id in a cookie, mapped in memory to its
//! expiry and its CSRF token. Sessions live in one replica's memory: behind
//! a load balancer the console needs sticky sessions (or a new login).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hyper::Request;
use hyper::header::COOKIE;

/// The cookie's name.
pub const COOKIE_NAME: &str = "eve_session";
/// How long a login lasts.
const LIFETIME: Duration = Duration::from_secs(12 * 3600);

struct Session {
    expires: Instant,
    csrf: String,
}

/// The live sessions.
#[derive(Default)]
pub struct Sessions {
    live: Mutex<HashMap<String, Session>>,
}

fn random_hex() -> String {
    let mut raw = [0u8; 32];
    getrandom::getrandom(&mut raw).expect("the OS random source works");
    raw.iter().map(|b| format!("{b:02x}")).collect()
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a session; returns its id.
    pub fn create(&self) -> String {
        let id = random_hex();
        let now = Instant::now();
        let mut live = self.lock();
        live.retain(|_, s| s.expires > now);
        live.insert(
            id.clone(),
            Session {
                expires: now + LIFETIME,
                csrf: random_hex(),
            },
        );
        id
    }

    /// The session's id and CSRF token, if the request carries a live one.
    pub fn of_request<B>(&self, req: &Request<B>) -> Option<(String, String)> {
        let id = req
            .headers()
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|pair| {
                let (name, value) = pair.trim().split_once('=')?;
                (name == COOKIE_NAME).then(|| value.to_owned())
            })?;
        let live = self.lock();
        let session = live.get(&id).filter(|s| s.expires > Instant::now())?;
        Some((id, session.csrf.clone()))
    }

    /// Ends a session.
    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }
}
