//! The node's bus broker and host targets, set up from what the manifest
//! grants.
//!
//! One [`Broker`] per node enforces the manifest: each service publishes
//! the topics it lists (one publisher per topic), subscribes to those it
//! lists (and to the log stream `@log` and the broker's own tables, such
//! as the device's facts, if listed), and calls the host operations it
//! lists (`[service.bus] call`, per target and operation). Each target
//! some service is granted is opened ([`crate::targets`]) and registered
//! with the broker, which checks every call against the grants before the
//! target sees it.
//!
//! The broker is also the source of the supervisor's heartbeats (it
//! records each service's latest beat, so there is nothing to copy),
//! takes every accepted bus connection of a VM and shows the status file
//! what is on the bus, so it implements those seams directly.

use std::{
    collections::BTreeMap,
    fmt,
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    str::FromStr,
    sync::{Arc, atomic::AtomicBool},
    time::Instant,
};

use eve_broker::{Broker, BrokerConfig, LogSink, OpenError, OwnPublishError, Policy, PolicyError};
use topics::{DeviceFacts, Topic, facts::Facts};

use crate::{
    bus::BusAttach,
    facts,
    heartbeat::Heartbeats,
    manifest::Manifest,
    status::BusView,
    targets::{
        self, BootDisk, ContentOptions, DomainsOptions, ForwardOptions, HOST_TARGETS, HostTarget,
        PowerSwitch, TargetContext,
    },
};

/// The kernel's resource-managed TPM device.
pub const DEFAULT_TPM_DEVICE: &str = "/dev/tpmrm0";

/// Which TPM the host owns for services granted operations of the `tpm`
/// target.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum TpmChoice {
    /// A software TPM the host starts, with its state in the node's state
    /// directory (`<state-dir>/tpm`): development and tests.
    #[default]
    Swtpm,
    /// A TPM character device (a board's `/dev/tpmrm0`).
    Device(PathBuf),
    /// No TPM: every TPM operation of a granted service fails as
    /// `Unavailable` (the TPM cannot be reached), so services see the same
    /// answer as on a board whose TPM is gone.
    None,
}

impl FromStr for TpmChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "swtpm" => Ok(TpmChoice::Swtpm),
            "none" => Ok(TpmChoice::None),
            "device" => Ok(TpmChoice::Device(PathBuf::from(DEFAULT_TPM_DEVICE))),
            other => match other.strip_prefix("device:") {
                Some(path) if !path.is_empty() => Ok(TpmChoice::Device(PathBuf::from(path))),
                _ => Err(format!(
                    "unknown TPM {other:?} (swtpm, device, device:PATH or none)"
                )),
            },
        }
    }
}

impl fmt::Display for TpmChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TpmChoice::Swtpm => f.write_str("swtpm"),
            TpmChoice::Device(path) => write!(f, "device:{}", path.display()),
            TpmChoice::None => f.write_str("none"),
        }
    }
}

/// Why the node's bus could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum NodeBusError {
    #[error("the manifest's bus grants: {0}")]
    Policy(#[from] PolicyError),
    #[error("starting the bus broker: {0}")]
    Broker(#[from] OpenError),
    #[error(transparent)]
    Target(#[from] targets::OpenError),
    #[error("service `{service}` is granted operations of `{target}`, which no host target serves")]
    TargetMissing { service: String, target: String },
    #[error(transparent)]
    BootRecord(#[from] targets::power::RecordError),
    #[error("publishing the device's facts: {0}")]
    Facts(#[from] OwnPublishError),
}

/// The bus grants of every service in `manifest`.
pub fn bus_policy(manifest: &Manifest) -> Result<Policy, PolicyError> {
    let mut builder = Policy::builder();
    for service in &manifest.services {
        let name = service.name.as_str();
        builder.service(name);
        for topic in &service.bus.publish {
            builder.publish(name, topic);
        }
        for topic in &service.bus.subscribe {
            builder.subscribe(name, topic);
        }
        for (target, operations) in &service.bus.call {
            for operation in operations {
                builder.call(name, target, operation);
            }
        }
    }
    builder.build()
}

/// A node's broker and the host targets behind it. Dropping it takes the
/// targets off the broker and closes them (a software TPM the host started
/// is stopped).
pub struct NodeBus {
    broker: Broker,
    targets: Vec<Arc<dyn HostTarget>>,
}

impl fmt::Debug for NodeBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeBus")
            .field("broker", &self.broker)
            .field(
                "targets",
                &self
                    .targets
                    .iter()
                    .map(|t| t.spec().name)
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl NodeBus {
    /// The broker with the manifest's grants and log records going to
    /// `logs`; the host targets some service is granted, opened with
    /// `state_dir`, the TPM `choice`, the `content` store's settings, the
    /// app `domains`' settings and the A/B `disk`; this machine's facts
    /// ([`facts::gather`]) in `@device-facts`. The boot record is begun
    /// in `state_dir` with a stop flag of its own, which nothing watches:
    /// a reboot a service asks for is recorded and left to whoever runs
    /// the bus (`eve-host run` uses [`NodeBus::start_in`] with its own).
    pub fn start(
        manifest: &Manifest,
        state_dir: &Path,
        choice: &TpmChoice,
        content: ContentOptions,
        domains: &DomainsOptions,
        disk: Option<&BootDisk>,
        logs: impl LogSink + 'static,
    ) -> Result<NodeBus, NodeBusError> {
        let power = PowerSwitch::begin(state_dir, Arc::new(AtomicBool::new(false)))?;
        let context = TargetContext {
            state_dir,
            tpm: choice,
            content,
            domains,
            disk,
            power: &power,
            forwards: &ForwardOptions::default().reserving(manifest),
        };
        NodeBus::start_in(manifest, &context, logs)
    }

    /// What `eve-host run` starts: as [`NodeBus::start`], with the
    /// targets opened in `context`.
    pub fn start_in(
        manifest: &Manifest,
        context: &TargetContext<'_>,
        logs: impl LogSink + 'static,
    ) -> Result<NodeBus, NodeBusError> {
        let targets = targets::open_granted(manifest, HOST_TARGETS, context)?;
        NodeBus::start_with(manifest, logs, targets, &facts::gather(context.state_dir))
    }

    /// The broker with the manifest's grants, serving `targets` (which
    /// must cover every target the manifest grants operations of) and
    /// publishing `facts` as the device's.
    pub fn start_with(
        manifest: &Manifest,
        logs: impl LogSink + 'static,
        targets: Vec<Arc<dyn HostTarget>>,
        facts: &Facts,
    ) -> Result<NodeBus, NodeBusError> {
        for service in &manifest.services {
            if let Some(target) = service.bus.call.keys().find(|t| {
                !targets
                    .iter()
                    .any(|served| served.spec().name == t.as_str())
            }) {
                return Err(NodeBusError::TargetMissing {
                    service: service.name.clone(),
                    target: target.clone(),
                });
            }
        }
        let broker = Broker::new(bus_policy(manifest)?, BrokerConfig::default())?;
        broker.set_log_sink(logs);
        broker.publish_own(
            DeviceFacts::NAME,
            DeviceFacts::KEY,
            topics::encode::<DeviceFacts>(facts),
        )?;
        for target in &targets {
            log::info!("host target {}: {}", target.spec().name, target.describe());
            broker.register(target.spec(), target.clone());
        }
        Ok(NodeBus { broker, targets })
    }

    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// The TPM the node's services use: what backs the `tpm` target, or
    /// `not needed` when no service is granted any of its operations.
    pub fn tpm(&self) -> String {
        self.targets
            .iter()
            .find(|t| t.spec().name == <hostops::tpm::Tpm as hostops::Target>::SPEC.name)
            .map_or_else(|| String::from("not needed"), |t| t.describe())
    }
}

impl Drop for NodeBus {
    fn drop(&mut self) {
        for target in &self.targets {
            self.broker.unregister(target.spec().name);
        }
    }
}

impl BusAttach for Broker {
    fn attach(&self, service: &str, stream: UnixStream) {
        if let Err(e) = Broker::attach(self, service, stream) {
            log::error!(target: "bus", "{service}: bus connection not served: {e}");
        }
    }
}

impl Heartbeats for Broker {
    fn last_heartbeat(&self, service: &str) -> Option<Instant> {
        Broker::last_heartbeat(self, service)
    }
}

impl BusView for Broker {
    fn connected(&self, service: &str) -> bool {
        self.status(service).is_some_and(|s| s.connected)
    }

    fn last_heartbeat(&self, service: &str) -> Option<Instant> {
        Broker::last_heartbeat(self, service)
    }

    fn table(&self, topic: &str) -> BTreeMap<String, Vec<u8>> {
        Broker::table(self, topic)
    }
}

#[cfg(test)]
mod tests {
    use evebus::LOG_TOPIC;

    use super::*;

    const NODE: &str = r#"[node]
name = "n"
arch = "x86_64"

[[service]]
name = "agent"
image = "zedagent"
ram_mib = 32
bus.publish = ["onboard-status"]
bus.subscribe = ["@log", "report"]
bus.call = { tpm = ["sign", "quote"] }

[[service]]
name = "diag"
image = "diag"
ram_mib = 32
bus.publish = ["report"]
"#;

    #[test]
    fn the_policy_is_what_the_manifest_grants() {
        let manifest = Manifest::parse(NODE).unwrap();
        let policy = bus_policy(&manifest).unwrap();
        assert!(policy.knows("agent") && policy.knows("diag") && !policy.knows("nim"));
        assert_eq!(policy.publisher_of("onboard-status"), Some("agent"));
        assert_eq!(policy.publisher_of("report"), Some("diag"));
        assert!(policy.may_subscribe("agent", LOG_TOPIC));
        assert!(policy.may_subscribe("agent", "report"));
        assert!(!policy.may_subscribe("diag", LOG_TOPIC));
        assert!(policy.may_call("agent", "tpm", "sign"));
        assert!(policy.may_call("agent", "tpm", "quote"));
        assert!(!policy.may_call("agent", "tpm", "create-device-key"));
        assert!(!policy.may_call("diag", "tpm", "sign"));
    }

    #[test]
    fn tpm_choices_parse() {
        assert_eq!("swtpm".parse(), Ok(TpmChoice::Swtpm));
        assert_eq!("none".parse(), Ok(TpmChoice::None));
        assert_eq!(
            "device".parse(),
            Ok(TpmChoice::Device(PathBuf::from("/dev/tpmrm0")))
        );
        assert_eq!(
            "device:/dev/tpm1".parse(),
            Ok(TpmChoice::Device(PathBuf::from("/dev/tpm1")))
        );
        assert!("device:".parse::<TpmChoice>().is_err());
        assert!("tpm2".parse::<TpmChoice>().is_err());
        for choice in ["swtpm", "none", "device:/dev/tpm1"] {
            assert_eq!(choice.parse::<TpmChoice>().unwrap().to_string(), choice);
        }
    }

    #[test]
    fn only_granted_targets_are_opened_and_every_granted_one_must_be() {
        let dir = tempfile::tempdir().unwrap();
        let manifest =
            Manifest::parse(&NODE.replace("bus.call = { tpm = [\"sign\", \"quote\"] }", ""))
                .unwrap();
        let missing = TpmChoice::Device(dir.path().join("no-such-tpm"));
        let bus = NodeBus::start(
            &manifest,
            dir.path(),
            &missing,
            ContentOptions::default(),
            &DomainsOptions::default(),
            None,
            |_: &eve_broker::LogEntry| {},
        )
        .unwrap();
        assert_eq!(bus.tpm(), "not needed");
        drop(bus);
        let manifest = Manifest::parse(NODE).unwrap();
        let err = NodeBus::start(
            &manifest,
            dir.path(),
            &missing,
            ContentOptions::default(),
            &DomainsOptions::default(),
            None,
            |_: &eve_broker::LogEntry| {},
        )
        .unwrap_err();
        assert!(
            matches!(&err, NodeBusError::Target(e) if e.target == "tpm"),
            "{err}"
        );
        let err = NodeBus::start_with(
            &manifest,
            |_: &eve_broker::LogEntry| {},
            Vec::new(),
            &Facts::default(),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "service `agent` is granted operations of `tpm`, which no host target serves"
        );
    }
}
