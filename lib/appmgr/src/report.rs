//! What zedmanager reports of an app, as eve-api's `ZInfoApp`.

use alloc::string::String;
use alloc::vec::Vec;

use eve_proto::info::{ErrorInfo, Severity, ZInfoApp, ZSwState};
use eve_proto::prost_types::Timestamp;

/// An app's state, with the error that put it in `ERROR`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub state: ZSwState,
    /// The error text and when it was first seen (Unix seconds).
    pub error: Option<(String, u64)>,
    /// When the running guest booted (Unix seconds).
    pub boot_unix: Option<u64>,
}

impl Seen {
    pub fn state(state: ZSwState) -> Seen {
        Seen {
            state,
            error: None,
            boot_unix: None,
        }
    }

    pub fn error(text: String, since: u64) -> Seen {
        Seen {
            state: ZSwState::Error,
            error: Some((text, since)),
            boot_unix: None,
        }
    }
}

fn timestamp(unix: u64) -> Timestamp {
    Timestamp {
        seconds: i64::try_from(unix).unwrap_or(i64::MAX),
        nanos: 0,
    }
}

/// The `ZInfoApp` of an app.
pub fn app_info(
    uuid: &str,
    name: &str,
    version: &str,
    volumes: &[String],
    seen: &Seen,
) -> ZInfoApp {
    ZInfoApp {
        app_id: String::from(uuid),
        app_version: String::from(version),
        app_name: String::from(name),
        state: seen.state as i32,
        boot_time: seen.boot_unix.map(timestamp),
        app_err: seen
            .error
            .iter()
            .map(|(text, since)| ErrorInfo {
                description: text.clone(),
                timestamp: Some(timestamp(*since)),
                severity: Severity::Error as i32,
                ..Default::default()
            })
            .collect::<Vec<_>>(),
        volume_refs: volumes.to_vec(),
        ..Default::default()
    }
}
