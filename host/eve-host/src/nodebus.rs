//! The node's bus broker and TPM, set up from what the manifest grants.
//!
//! One [`Broker`] per node enforces the manifest: each service publishes
//! the topics it lists (one publisher per topic), subscribes to those it
//! lists (and to the log stream `@log` and the broker's own tables, such
//! as the device's facts, if listed), and may call the `"tpm"` target only
//! if it has TPM grants. The TPM [`Mediator`] behind that target checks
//! each operation against the service's own grants.
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
    time::Instant,
};

use eve_broker::{
    Broker, BrokerConfig, LogSink, OpenError, OwnPublishError, Policy, PolicyError, RpcError,
};
use eve_tpm::{
    DeviceTransport, Grants, Mediator, Operation, Swtpm, SwtpmError, TpmCommandError,
    TransportError,
};
use topics::{DeviceFacts, Topic, facts::Facts};
use tpmwire::{Failure, ResponseRepr};

use crate::{
    bus::BusAttach,
    facts,
    heartbeat::Heartbeats,
    manifest::{Manifest, TpmGrant},
    orphans::{self, ReapError},
    status::BusView,
};

/// The kernel's resource-managed TPM device.
pub const DEFAULT_TPM_DEVICE: &str = "/dev/tpmrm0";

/// Which TPM the host owns for services with TPM grants.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum TpmChoice {
    /// A software TPM the host starts, with its state in the node's state
    /// directory (`<state-dir>/tpm`): development and tests.
    #[default]
    Swtpm,
    /// A TPM character device (a board's `/dev/tpmrm0`).
    Device(PathBuf),
    /// No TPM: every TPM request of a granted service is answered
    /// [`Failure::Unavailable`] (the TPM cannot be reached), so services
    /// see the same answer as on a board whose TPM is gone.
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

/// Why the node's bus or TPM could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum NodeBusError {
    #[error("the manifest's bus grants: {0}")]
    Policy(#[from] PolicyError),
    #[error("starting the bus broker: {0}")]
    Broker(#[from] OpenError),
    #[error("starting swtpm (or run with --tpm device or --tpm none): {0}")]
    Swtpm(#[from] SwtpmError),
    #[error("opening the TPM: {0}")]
    Transport(#[from] TransportError),
    #[error("starting the TPM: {0}")]
    Startup(#[from] TpmCommandError),
    #[error("stopping the swtpm a previous host left running: {0}")]
    Orphan(#[from] ReapError),
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
        if !service.devices.tpm.is_empty() {
            builder.call(name, tpmwire::TARGET);
        }
    }
    builder.build()
}

/// The TPM operations each service of `manifest` is granted.
pub fn tpm_grants(manifest: &Manifest) -> Grants {
    let mut grants = Grants::new();
    for service in &manifest.services {
        for &grant in &service.devices.tpm {
            grants.grant(&service.name, tpm_operation(grant));
        }
    }
    grants
}

fn tpm_operation(grant: TpmGrant) -> Operation {
    match grant {
        TpmGrant::CreateDeviceKey => Operation::CreateDeviceKey,
        TpmGrant::Sign => Operation::Sign,
        TpmGrant::ReadPcrs => Operation::ReadPcrs,
        TpmGrant::Quote => Operation::Quote,
        TpmGrant::ReadEkCert => Operation::ReadEkCert,
    }
}

/// What the node's TPM is, once set up.
#[derive(Debug)]
pub enum HostTpm {
    /// No service has TPM grants, so the host opened no TPM.
    NotNeeded,
    /// The software TPM the host started; shut down when dropped.
    Swtpm(Swtpm),
    Device(PathBuf),
    /// Granted services are answered [`Failure::Unavailable`].
    Absent,
}

impl fmt::Display for HostTpm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostTpm::NotNeeded => f.write_str("not needed"),
            HostTpm::Swtpm(swtpm) => write!(f, "swtpm ({})", swtpm.state_dir().display()),
            HostTpm::Device(path) => write!(f, "{}", path.display()),
            HostTpm::Absent => f.write_str("none"),
        }
    }
}

/// A node's broker and the TPM behind its `"tpm"` target. Dropping it
/// stops the software TPM, if the host started one.
#[derive(Debug)]
pub struct NodeBus {
    broker: Broker,
    tpm: HostTpm,
}

impl NodeBus {
    /// Starts the broker with the manifest's grants and log records going
    /// to `logs`, publishes this machine's facts ([`facts::gather`]) and,
    /// if any service has TPM grants, opens the TPM `choice` names
    /// (`state_dir` holds a software TPM's state) and serves it to them.
    pub fn start(
        manifest: &Manifest,
        state_dir: &Path,
        choice: &TpmChoice,
        logs: impl LogSink + 'static,
    ) -> Result<NodeBus, NodeBusError> {
        let facts = facts::gather(state_dir);
        NodeBus::start_with_facts(manifest, state_dir, choice, logs, &facts)
    }

    /// [`NodeBus::start`] with the device's facts given rather than read
    /// from this machine.
    pub fn start_with_facts(
        manifest: &Manifest,
        state_dir: &Path,
        choice: &TpmChoice,
        logs: impl LogSink + 'static,
        facts: &Facts,
    ) -> Result<NodeBus, NodeBusError> {
        let broker = Broker::new(bus_policy(manifest)?, BrokerConfig::default())?;
        broker.set_log_sink(logs);
        broker.publish_own(
            DeviceFacts::NAME,
            DeviceFacts::KEY,
            topics::encode::<DeviceFacts>(facts),
        )?;
        let grants = tpm_grants(manifest);
        let tpm = if manifest.services.iter().all(|s| s.devices.tpm.is_empty()) {
            HostTpm::NotNeeded
        } else {
            match choice {
                TpmChoice::Swtpm => {
                    if let Some(orphan) = orphans::reap(&Swtpm::pid_file(state_dir))? {
                        eprintln!(
                            "eve-host: stopped swtpm {} that a previous host left running",
                            orphan.pid
                        );
                    }
                    let swtpm = Swtpm::start(state_dir)?;
                    let mediator = Mediator::new(swtpm.transport()?, grants)?;
                    serve(&broker, mediator);
                    HostTpm::Swtpm(swtpm)
                }
                TpmChoice::Device(path) => {
                    let mediator = Mediator::new(DeviceTransport::open(path)?, grants)?;
                    serve(&broker, mediator);
                    HostTpm::Device(path.clone())
                }
                TpmChoice::None => {
                    broker.register(tpmwire::TARGET, |_: &str, _: &[u8]| {
                        ResponseRepr::Failure(Failure::Unavailable)
                            .to_vec()
                            .map_err(|e| RpcError::Failed(format!("{e:?}")))
                    });
                    HostTpm::Absent
                }
            }
        };
        Ok(NodeBus { broker, tpm })
    }

    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    pub fn tpm(&self) -> &HostTpm {
        &self.tpm
    }
}

/// Makes `mediator` the `"tpm"` target. Its refusals are answers in the
/// TPM wire format, so the bus call itself always succeeds.
fn serve(broker: &Broker, mediator: Mediator) {
    broker.register(tpmwire::TARGET, move |caller: &str, request: &[u8]| {
        Ok(mediator.handle(caller, request))
    });
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
devices.tpm = ["sign", "quote"]
bus.publish = ["onboard-status"]
bus.subscribe = ["@log", "report"]

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
        assert!(policy.may_call("agent", "tpm"));
        assert!(!policy.may_call("diag", "tpm"));
    }

    #[test]
    fn tpm_grants_follow_the_manifest() {
        let manifest = Manifest::parse(NODE).unwrap();
        let grants = tpm_grants(&manifest);
        assert!(grants.allows("agent", Operation::Sign));
        assert!(grants.allows("agent", Operation::Quote));
        assert!(!grants.allows("agent", Operation::CreateDeviceKey));
        assert!(!grants.allows("diag", Operation::Sign));
        for grant in [
            TpmGrant::CreateDeviceKey,
            TpmGrant::Sign,
            TpmGrant::ReadPcrs,
            TpmGrant::Quote,
            TpmGrant::ReadEkCert,
        ] {
            assert_eq!(
                grant.name().parse::<Operation>(),
                Ok(tpm_operation(grant)),
                "{grant:?}"
            );
        }
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
    fn without_grants_no_tpm_is_opened() {
        let dir = tempfile::tempdir().unwrap();
        let manifest =
            Manifest::parse(&NODE.replace("devices.tpm = [\"sign\", \"quote\"]", "")).unwrap();
        let missing = TpmChoice::Device(dir.path().join("no-such-tpm"));
        let bus = NodeBus::start(
            &manifest,
            dir.path(),
            &missing,
            |_: &eve_broker::LogEntry| {},
        )
        .unwrap();
        assert!(matches!(bus.tpm(), HostTpm::NotNeeded));
        let manifest = Manifest::parse(NODE).unwrap();
        let err = NodeBus::start(
            &manifest,
            dir.path(),
            &missing,
            |_: &eve_broker::LogEntry| {},
        )
        .unwrap_err();
        assert!(matches!(err, NodeBusError::Transport(_)), "{err}");
    }
}
