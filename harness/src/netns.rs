//! A network namespace holding one end of a veth pair, the other end in
//! this process's namespace: a private Ethernet segment for tests that
//! bridge a device port with a real interface (root only). The namespace
//! and the pair go away when the value is dropped (also when a test
//! panics), and namespaces a killed test process left are removed when
//! the next one is made.

use std::fs::File;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};

/// Every namespace this module makes is named `<PREFIX><pid>-<n>`.
const PREFIX: &str = "evetest-";

/// Why a namespace could not be made.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("`ip {args}`: {detail}")]
    Ip { args: String, detail: String },
    #[error("entering namespace {name}: {source}")]
    Enter {
        name: String,
        source: std::io::Error,
    },
}

/// A namespace and a veth pair between it and this process's namespace.
#[derive(Debug)]
pub struct VethNamespace {
    /// The namespace's name (`ip netns`).
    pub name: String,
    /// The veth end in this process's namespace.
    pub outer: String,
    /// The veth end inside the namespace.
    pub inner: String,
}

fn ip(args: &[&str]) -> Result<String, NetnsError> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| NetnsError::Ip {
            args: args.join(" "),
            detail: e.to_string(),
        })?;
    if !output.status.success() {
        return Err(NetnsError::Ip {
            args: args.join(" "),
            detail: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Removes the namespaces of test processes that no longer run.
fn remove_stale() {
    let Ok(list) = ip(&["netns", "list"]) else {
        return;
    };
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
        else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

impl VethNamespace {
    /// Makes a namespace and a veth pair, both ends up (the inner one
    /// with `inner_address`, e.g. `192.168.50.20/24`, when given).
    pub fn create(inner_address: Option<&str>) -> Result<VethNamespace, NetnsError> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        remove_stale();
        let pid = std::process::id();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let namespace = VethNamespace {
            name: format!("{PREFIX}{pid}-{n}"),
            // Interface names have at most 15 characters.
            outer: format!("ev{pid}x{n}o"),
            inner: format!("ev{pid}x{n}i"),
        };
        ip(&["netns", "add", &namespace.name])?;
        // From here on, dropping it removes what was made.
        ip(&[
            "link",
            "add",
            &namespace.outer,
            "type",
            "veth",
            "peer",
            "name",
            &namespace.inner,
            "netns",
            &namespace.name,
        ])?;
        ip(&["link", "set", &namespace.outer, "up"])?;
        let inside = |args: &[&str]| {
            let mut all = vec!["-n", namespace.name.as_str()];
            all.extend_from_slice(args);
            ip(&all)
        };
        inside(&["link", "set", "lo", "up"])?;
        inside(&["link", "set", &namespace.inner, "up"])?;
        if let Some(address) = inner_address {
            inside(&["addr", "add", address, "dev", &namespace.inner])?;
        }
        Ok(namespace)
    }

    /// Runs `work` on a thread inside the namespace: sockets it opens
    /// stay there.
    pub fn run_inside<T: Send>(&self, work: impl FnOnce() -> T + Send) -> Result<T, NetnsError> {
        let enter_error = |source| NetnsError::Enter {
            name: self.name.clone(),
            source,
        };
        let handle = File::open(Path::new("/run/netns").join(&self.name)).map_err(enter_error)?;
        std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    move_into_link_name_space(
                        std::os::fd::AsFd::as_fd(&handle),
                        Some(LinkNameSpaceType::Network),
                    )
                    .map_err(|e| enter_error(e.into()))?;
                    Ok(work())
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }
}

impl Drop for VethNamespace {
    fn drop(&mut self) {
        // Deleting the namespace deletes its veth end, and with it the
        // pair; the outer end is deleted too in case the namespace stays
        // held by a process still in it.
        let _ = ip(&["link", "del", &self.outer]);
        let _ = ip(&["netns", "del", &self.name]);
    }
}
