//! A throw-away PostgreSQL server for tests and benchmarks: Debian's
//! `postgresql` binaries, a fresh cluster in a temporary directory, a
//! random password, listening on a free loopback port only. PostgreSQL
//! refuses to run as root, so as root the server runs as the `postgres`
//! user the package creates. Stopped and removed when dropped.

use std::os::unix::fs::{PermissionsExt, chown};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// The superuser the cluster is created with.
const USER: &str = "eve";

/// Why a server could not be started.
#[derive(Debug, thiserror::Error)]
pub enum PgServerError {
    /// No PostgreSQL server binaries on this machine.
    #[error(
        "PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin); `cargo xtask deps` installs Debian's postgresql"
    )]
    NotInstalled,
    /// Running as root without a `postgres` user to run the server as.
    #[error("running as root and there is no `postgres` user to run the server as")]
    NoUser,
    /// A step failed.
    #[error("{step}: {detail}")]
    Step {
        /// What was being done.
        step: &'static str,
        /// What went wrong.
        detail: String,
    },
}

fn step(step: &'static str) -> impl Fn(std::io::Error) -> PgServerError {
    move |e| PgServerError::Step {
        step,
        detail: e.to_string(),
    }
}

/// A running throw-away server.
pub struct PgServer {
    child: Child,
    dir: PathBuf,
    port: u16,
    password: String,
}

/// The newest installed server's binary directory.
fn bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// Whether this machine can run a throw-away server.
pub fn available() -> bool {
    bin_dir().is_some()
}

/// The uid and gid to run as: ours, or `postgres`'s when we are root.
fn run_as() -> Result<Option<(u32, u32)>, PgServerError> {
    let me = Command::new("id")
        .arg("-u")
        .output()
        .map_err(step("id -u"))?;
    if String::from_utf8_lossy(&me.stdout).trim() != "0" {
        return Ok(None);
    }
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").args([flag, "postgres"]).output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().parse().ok())
            .flatten()
    };
    match (id("-u"), id("-g")) {
        (Some(u), Some(g)) => Ok(Some((u, g))),
        _ => Err(PgServerError::NoUser),
    }
}

fn command(bin: &Path, program: &str, user: Option<(u32, u32)>) -> Command {
    match user {
        None => Command::new(bin.join(program)),
        Some((uid, gid)) => {
            let mut c = Command::new("setpriv");
            c.arg(format!("--reuid={uid}"))
                .arg(format!("--regid={gid}"))
                .arg("--clear-groups")
                .arg("--")
                .arg(bin.join(program));
            c
        }
    }
}

fn free_port() -> Result<u16, PgServerError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(step("picking a port"))?;
    Ok(listener
        .local_addr()
        .map_err(step("picking a port"))?
        .port())
}

impl PgServer {
    /// Creates a cluster and starts it. `durable: false` turns off fsync
    /// (tests); benchmarks keep PostgreSQL's defaults.
    pub fn start(durable: bool) -> Result<Self, PgServerError> {
        let bin = bin_dir().ok_or(PgServerError::NotInstalled)?;
        let user = run_as()?;
        let mut raw = [0u8; 16];
        getrandom::getrandom(&mut raw).expect("the OS random source works");
        let password: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        let dir =
            std::env::temp_dir().join(format!("eve-pg-{}-{}", std::process::id(), &password[..8]));
        std::fs::create_dir_all(&dir).map_err(step("creating the directory"))?;
        let pwfile = dir.join("pw");
        std::fs::write(&pwfile, format!("{password}\n")).map_err(step("writing the password"))?;
        if let Some((uid, gid)) = user {
            for path in [&dir, &pwfile] {
                chown(path, Some(uid), Some(gid)).map_err(step("chown to postgres"))?;
            }
        }
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .map_err(step("chmod"))?;
        let data = dir.join("data");
        let init = command(&bin, "initdb", user)
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                USER,
                "--auth=scram-sha-256",
                "-E",
                "UTF8",
                "--no-instructions",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .stdout(Stdio::null())
            .output()
            .map_err(step("initdb"))?;
        if !init.status.success() {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(PgServerError::Step {
                step: "initdb",
                detail: String::from_utf8_lossy(&init.stderr).into_owned(),
            });
        }
        let port = free_port()?;
        let mut server = command(&bin, "postgres", user);
        server
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(&dir)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "max_connections=200",
                "-c",
                "shared_buffers=256MB",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(dir.join("server.log"))
                    .map(Stdio::from)
                    .unwrap_or_else(|_| Stdio::null()),
            );
        if !durable {
            server.args(["-c", "fsync=off", "-c", "synchronous_commit=off"]);
        }
        let child = server.spawn().map_err(step("starting postgres"))?;
        let pg = Self {
            child,
            dir,
            port,
            password,
        };
        pg.wait_ready(&bin)?;
        Ok(pg)
    }

    fn wait_ready(&self, bin: &Path) -> Result<(), PgServerError> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let ready = Command::new(bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-q"])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
                return Err(PgServerError::Step {
                    step: "waiting for postgres",
                    detail: log,
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The URL of database `name` (`postgres` exists from the start).
    pub fn url(&self, name: &str) -> String {
        format!(
            "postgres://{USER}:{}@127.0.0.1:{}/{name}",
            self.password, self.port
        )
    }

    /// Creates an empty database and returns its URL.
    pub fn create_database(&self, name: &str) -> Result<String, PgServerError> {
        let bin = bin_dir().ok_or(PgServerError::NotInstalled)?;
        let out = Command::new(bin.join("psql"))
            .arg(self.url("postgres"))
            .args(["-q", "-v", "ON_ERROR_STOP=1", "-c"])
            .arg(format!("CREATE DATABASE \"{name}\""))
            .output()
            .map_err(step("psql"))?;
        if !out.status.success() {
            return Err(PgServerError::Step {
                step: "CREATE DATABASE",
                detail: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        Ok(self.url(name))
    }

    /// Bytes the cluster's data directory takes on disk.
    pub fn disk_bytes(&self) -> u64 {
        fn walk(p: &Path) -> u64 {
            let Ok(meta) = std::fs::symlink_metadata(p) else {
                return 0;
            };
            if meta.is_dir() {
                std::fs::read_dir(p)
                    .map(|d| d.flatten().map(|e| walk(&e.path())).sum())
                    .unwrap_or(0)
            } else {
                meta.len()
            }
        }
        walk(&self.dir.join("data"))
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        // SIGINT is PostgreSQL's fast shutdown.
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = Command::new("kill")
                .args(["-INT", &pid.to_string()])
                .status();
        }
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A server for a test, or `None` (with a message) where PostgreSQL is not
/// installed outside CI. Under CI (`CI` set), where `cargo xtask test`
/// installs it, a missing server fails the test.
pub fn for_test(test: &str) -> Option<PgServer> {
    if !available() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: {}",
            PgServerError::NotInstalled
        );
        eprintln!("SKIPPED {test}: {}", PgServerError::NotInstalled);
        return None;
    }
    Some(PgServer::start(false).unwrap_or_else(|e| panic!("{test}: starting PostgreSQL: {e}")))
}
