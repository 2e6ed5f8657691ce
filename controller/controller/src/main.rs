//! `controller`: the EVE controller. With no arguments it creates (or
//! reuses) its identity and database under `./controller-data` (or
//! `$EVE_CONTROLLER_DATA`), serves the device API over TLS on
//! 127.0.0.1:8443 and the admin API on 127.0.0.1:8444, and prints where the
//! root certificate and the admin token are.
#![forbid(unsafe_code)]

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use controller::identity::{Identity, IdentityError, write_atomic};
use controller::pki::Pki;
use controller::server::{self, Controller, ControllerError, Limits, ServeError};
use controller::store::Store;
use controller::store::StoreError;
use controller::store::postgres::PgStore;
use controller::store::sqlite::SqliteStore;

#[derive(Parser)]
#[command(
    version,
    about = "EVE controller: device API v2 over TLS, admin API, SQLite storage"
)]
struct Args {
    /// Device API address (TLS). Port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// Admin API and web console address (HTTPS with the controller's
    /// certificate; bearer token, console login with the same token).
    #[arg(long, default_value = "127.0.0.1:8444")]
    admin_listen: SocketAddr,
    /// Serve the admin API and console as plain HTTP: refused unless the
    /// admin address is a loopback one.
    #[arg(long)]
    admin_plain_http: bool,
    /// Where identity, database and admin token live.
    #[arg(long, env = "EVE_CONTROLLER_DATA", default_value = "controller-data")]
    data_dir: PathBuf,
    /// Admin token file; created with a random token if missing.
    #[arg(long)]
    admin_token_file: Option<PathBuf>,
    /// The database: a PostgreSQL URL (`postgres://user:password@host/db`,
    /// shared by any number of controller replicas), or a SQLite file
    /// (default: `controller.db` in the data directory).
    #[arg(long, env = "EVE_CONTROLLER_DATABASE")]
    database: Option<String>,
    /// Most PostgreSQL connections this replica opens.
    #[arg(long, default_value_t = 16)]
    database_pool: usize,
    /// Days of metrics to keep.
    #[arg(long, default_value_t = 7)]
    metrics_retention_days: u64,
    /// Days of device logs and flow logs to keep.
    #[arg(long, default_value_t = 30)]
    log_retention_days: u64,
    /// Largest accepted device request body, bytes.
    #[arg(long, default_value_t = 4 << 20)]
    max_body: usize,
    /// Key type of the root, TLS server and envelope-signing certificates
    /// made on first start: p256 (default), or rsa2048, rsa3072, rsa4096
    /// (`rsa` is rsa3072), as the open controller Adam uses. The ECDH
    /// certificate is P-256 either way. A data directory keeps its PKI: asking
    /// for another one is an error.
    #[arg(long)]
    pki: Option<Pki>,
}

#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Controller(#[from] ControllerError),
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error("{path}: {source}")]
    Token {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}: admin token file is empty")]
    EmptyToken(PathBuf),
    #[error(
        "--admin-plain-http on {0}: the admin token and console session would cross the network in clear; bind a loopback address or use HTTPS"
    )]
    PlainOffLoopback(SocketAddr),
}

fn admin_token(path: &PathBuf) -> Result<String, StartError> {
    match std::fs::read_to_string(path) {
        Ok(t) if t.trim().is_empty() => Err(StartError::EmptyToken(path.clone())),
        Ok(t) => Ok(t.trim().to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut raw = [0u8; 32];
            getrandom::getrandom(&mut raw).expect("the OS random source works");
            let token: String = raw.iter().map(|b| format!("{b:02x}")).collect();
            write_atomic(path, format!("{token}\n").as_bytes(), true)?;
            Ok(token)
        }
        Err(source) => Err(StartError::Token {
            path: path.clone(),
            source,
        }),
    }
}

/// The store `--database` names, and how to print it (no password).
fn open_store(args: &Args) -> Result<(Arc<dyn Store>, String), StartError> {
    match args.database.as_deref() {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            let shown = match (url.find("://"), url.rfind('@')) {
                (Some(scheme), Some(at)) => format!("{}://...{}", &url[..scheme], &url[at..]),
                _ => url.to_owned(),
            };
            let store = PgStore::connect(url, args.database_pool)?;
            Ok((Arc::new(store), format!("PostgreSQL {shown}")))
        }
        other => {
            let path = other.map_or_else(|| args.data_dir.join("controller.db"), PathBuf::from);
            let store = SqliteStore::open(&path)?;
            Ok((Arc::new(store), format!("SQLite {}", path.display())))
        }
    }
}

async fn run(args: Args) -> Result<(), StartError> {
    if args.admin_plain_http && !args.admin_listen.ip().is_loopback() {
        return Err(StartError::PlainOffLoopback(args.admin_listen));
    }
    let identity = Identity::load_or_create_with(&args.data_dir, args.pki)?;
    let token_path = args
        .admin_token_file
        .clone()
        .unwrap_or_else(|| args.data_dir.join("admin-token"));
    let token = Arc::new(admin_token(&token_path)?);
    let (store, database) = open_store(&args)?;
    let tls = server::tls_config(&identity)?;
    let root =
        std::fs::canonicalize(&identity.root_cert_path).unwrap_or(identity.root_cert_path.clone());
    let created = identity.created;
    let pki = identity.pki;
    let limits = Limits {
        max_body: args.max_body,
        metrics_retention: Duration::from_secs(args.metrics_retention_days * 24 * 3600),
        log_retention: Duration::from_secs(args.log_retention_days * 24 * 3600),
        ..Limits::default()
    };
    let ctl = Arc::new(Controller::new(store, identity, limits)?);
    ctl.watch();
    let bind = |addr: SocketAddr| async move {
        tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Io {
                addr: addr.to_string(),
                source,
            })
    };
    let devices = bind(args.listen).await?;
    let admin = bind(args.admin_listen).await?;
    let local = |l: &tokio::net::TcpListener| {
        l.local_addr()
            .map_or_else(|_| "?".into(), |a| a.to_string())
    };
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "root certificate: {} ({pki}, {}; imprint devices with it)",
            root.display(),
            if created { "created" } else { "reused" }
        );
        let _ = writeln!(
            out,
            "device API: https://{}/api/v2/edgedevice/",
            local(&devices)
        );
        let scheme = if args.admin_plain_http {
            "http"
        } else {
            "https"
        };
        let _ = writeln!(
            out,
            "admin API: {scheme}://{}/api/v1/ (token in {})",
            local(&admin),
            token_path.display()
        );
        let _ = writeln!(out, "console: {scheme}://{}/console/", local(&admin));
        let _ = writeln!(out, "database: {database}");
        let _ = out.flush();
    }
    tokio::spawn(server::housekeeping(ctl.clone()));
    let admin_task = if args.admin_plain_http {
        tokio::spawn(controller::admin::serve_admin(ctl.clone(), admin, token))
    } else {
        tokio::spawn(controller::admin::serve_admin_tls(
            ctl.clone(),
            admin,
            token,
            tls.clone(),
        ))
    };
    let device_task = tokio::spawn(server::serve_devices(ctl.clone(), devices, tls));
    let result = tokio::select! {
        r = device_task => r.unwrap_or(Ok(())),
        r = admin_task => r.unwrap_or(Ok(())),
        () = shutdown_signal() => Ok(()),
    };
    ctl.flush_last_seen()?;
    Ok(result?)
}

/// Ctrl-C or SIGTERM: stop accepting and write the last-seen times.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

fn main() -> ExitCode {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime starts");
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("controller: {e}");
            ExitCode::FAILURE
        }
    }
}
