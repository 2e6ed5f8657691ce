//! What the scenarios that run our controller in their own process share:
//! the controller on a SQLite store, a runtime for its APIs and a loopback
//! listener for its device API, built the same way in each.

use std::path::Path;
use std::sync::Arc;

use controller::identity::Identity;
use controller::server::{self, Controller, Limits};
use controller::store::sqlite::SqliteStore;

/// Our controller in this process, its device API not served yet: each
/// scenario serves it its own way (the controller's server, or behind a
/// stand-in for another controller's registration).
pub struct InProcessController {
    /// Runs the APIs' tasks; the controller serves for as long as it lives.
    pub rt: tokio::runtime::Runtime,
    pub ctl: Arc<Controller>,
    /// The device API's TLS, from the controller's identity.
    pub tls: Arc<rustls::ServerConfig>,
    /// Bound to a free loopback port, `port`.
    pub device_listener: tokio::net::TcpListener,
    pub port: u16,
}

impl InProcessController {
    /// The controller with `identity`, its store at `db`, and a two-thread
    /// runtime (the node's cores are for the emulated node).
    pub fn new(identity: Identity, db: &Path) -> InProcessController {
        let tls = server::tls_config(&identity).expect("TLS config");
        let store = Arc::new(SqliteStore::open(db).expect("store"));
        let ctl =
            Arc::new(Controller::new(store, identity, Limits::default()).expect("controller"));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let device_listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("device API listener");
        let port = device_listener
            .local_addr()
            .expect("device API address")
            .port();
        InProcessController {
            rt,
            ctl,
            tls,
            device_listener,
            port,
        }
    }
}
