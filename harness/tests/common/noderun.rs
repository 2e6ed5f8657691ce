//! The node's VMs on a thread and the host's bus and targets in this
//! process, as `eve-host run` runs them (`NodeBus::start`, `Node::run`).
//! Included with `#[path]` (with `hostlog`) by the whole-node scenarios.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use eve_host::manifest::Manifest;
use eve_host::node::{Node, NodePaths, Seams};
use eve_host::nodebus::{NodeBus, TpmChoice};
use eve_host::qemu::QemuVmm;
use eve_host::servicelog::ServiceLogs;
use eve_host::targets::{ContentOptions, DomainsOptions};
use eve_host::vfio::VfioRoots;
use eve_host::volumes::StateDir;
use topics::Topic;

use crate::hostlog::Lines;

/// A running node: the host's bus and targets, and its VMs on a thread.
pub struct NodeRun {
    bus: Option<NodeBus>,
    stop: Arc<AtomicBool>,
    runner: Option<thread::JoinHandle<()>>,
    states: Arc<Mutex<Vec<String>>>,
}

impl NodeRun {
    /// Starts `manifest`'s services from `images` over the state directory
    /// `state`, with a software TPM (the device key and the ECDH key that
    /// opens datastores' credentials live in it) and the CONFIG partition
    /// `config_part`; every host line goes to `lines`.
    pub fn start(
        manifest: &Manifest,
        images: &Path,
        state: &Path,
        config_part: &Path,
        content: ContentOptions,
        domains: &DomainsOptions,
        lines: &Arc<Lines>,
    ) -> NodeRun {
        let dir = StateDir::create(state).expect("state directory");
        let bus = NodeBus::start(
            manifest,
            state,
            &TpmChoice::Swtpm,
            content,
            domains,
            None,
            ServiceLogs::new(&dir.logs(), lines.clone()),
        )
        .expect("the node's bus");
        let accel = guest_arch::choose_accel(manifest.node.arch, None).expect("an accelerator");
        let paths = NodePaths {
            images: images.to_path_buf(),
            state_dir: state.to_path_buf(),
            config_part: Some(config_part.to_path_buf()),
        };
        let node = Node::prepare(manifest, &paths, &accel, &VfioRoots::default()).expect("node");
        let broker = bus.broker().clone();
        let seams = Seams {
            bus: Arc::new(broker.clone()),
            heartbeats: Arc::new(broker),
            log: lines.clone(),
            status: None,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let states = Arc::new(Mutex::new(Vec::new()));
        let (stopping, seen) = (stop.clone(), states.clone());
        let runner = thread::spawn(move || {
            node.run(QemuVmm, seams, &stopping, Duration::from_secs(10), |s| {
                seen.lock().unwrap().push(s.to_string());
            });
        });
        NodeRun {
            bus: Some(bus),
            stop,
            runner: Some(runner),
            states,
        }
    }

    /// Stops every VM, then the host's targets (the blob store syncs).
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(runner) = self.runner.take() {
            let _ = runner.join();
        }
        self.bus.take();
    }

    /// A topic's table on the node's bus, decoded.
    pub fn table<T: Topic>(&self) -> BTreeMap<String, T::Value> {
        self.bus
            .as_ref()
            .map(|bus| bus.broker().table(T::NAME))
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(k, v)| topics::decode::<T>(&v).ok().map(|v| (k, v)))
            .collect()
    }

    /// Service states that say something panicked or crash-looped.
    pub fn troubles(&self) -> Vec<String> {
        self.states
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.contains("panic") || s.contains("CRASH"))
            .cloned()
            .collect()
    }
}

impl Drop for NodeRun {
    fn drop(&mut self) {
        self.stop();
    }
}
