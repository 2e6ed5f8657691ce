//! The `power` target through the node's bus, in-process as `eve-host
//! run` sets it up ([`NodeBus::start_in`] with the host's stop flag): a
//! granted service's reboot is recorded and stops the node, the next boot
//! reports it as its reason, and the grants hold.

use std::{
    io::{ErrorKind, Read, Write},
    os::unix::net::UnixStream,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use eve_host::{
    bus::BusAttach,
    console::StderrLog,
    manifest::Manifest,
    nodebus::{NodeBus, TpmChoice},
    servicelog::ServiceLogs,
    targets::{
        ContentOptions, DomainsOptions, ForwardOptions, PowerSwitch, TargetContext,
        power::{EXIT_REBOOT, Ending},
    },
    volumes::StateDir,
};
use evebus::{Call, Client, ClientConfig, Event};
use hostops::power::{BootReason, BootReasonOf, BootRecord, Empty, PowerRequest, Reboot};
use hostops::{Operation, Target};
use prost::Message;

/// A guard against hanging, not a timing target.
const PATIENCE: Duration = Duration::from_secs(20);

const NODE: &str = r#"[node]
name = "powered"
arch = "x86_64"

[[service]]
name = "baseosmgr"
image = "baseosmgr"
ram_mib = 32
bus.call.power = ["reboot"]

[[service]]
name = "zedagent"
image = "zedagent"
ram_mib = 64
bus.call.power = ["boot-reason"]
"#;

/// A fake service on the bus: its end of a socket pair and its client.
struct Service {
    stream: UnixStream,
    client: Client,
    start: Instant,
}

impl Service {
    fn connect(bus: &NodeBus, name: &str) -> Service {
        let (ours, host_end) = UnixStream::pair().unwrap();
        BusAttach::attach(bus.broker(), name, host_end);
        ours.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let mut service = Service {
            stream: ours,
            client: Client::new(ClientConfig::new(name, 1)),
            start: Instant::now(),
        };
        service.client.connect().unwrap();
        service.wait_for(|e| matches!(e, Event::Connected { .. }));
        service
    }

    fn turn(&mut self) {
        self.client.poll(self.start.elapsed());
        let bytes = self.client.transmit().to_vec();
        self.stream.write_all(&bytes).unwrap();
        self.client.transmitted(bytes.len());
        let mut buf = [0; 16 << 10];
        match self.stream.read(&mut buf) {
            Ok(0) => panic!("the broker closed the connection"),
            Ok(n) => self
                .client
                .receive(&buf[..n], self.start.elapsed())
                .unwrap(),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("read: {e}"),
        }
    }

    fn wait_for(&mut self, wanted: impl Fn(&Event) -> bool) -> Event {
        let deadline = Instant::now() + PATIENCE;
        loop {
            while let Some(event) = self.client.next_event() {
                if wanted(&event) {
                    return event;
                }
            }
            assert!(Instant::now() < deadline, "the event never came");
            self.turn();
        }
    }

    /// Calls `O`: its response, or the answer's status.
    fn op<O: Operation>(&mut self, request: &O::Request) -> Result<O::Response, evebus::Status> {
        let spec = <O::Target as Target>::SPEC;
        let payload = request.encode_to_vec();
        let call = Call {
            target: spec.name,
            operation: O::NAME,
            version: spec.version,
            payload: &payload,
            timeout: PATIENCE,
        };
        let id = self.client.request(&call, self.start.elapsed()).unwrap();
        match self.wait_for(|e| {
            matches!(e, Event::Response { id: got, .. } | Event::RequestFailed { id: got, .. } if *got == id)
        }) {
            Event::Response {
                status: evebus::Status::Ok,
                payload,
                ..
            } => Ok(O::Response::decode(payload.as_slice()).unwrap()),
            Event::Response { status, .. } => Err(status),
            other => panic!("request {id} failed: {other:?}"),
        }
    }
}

/// One boot of the node's bus, as `eve-host run` starts it.
fn boot(state: &std::path::Path, stop: &Arc<AtomicBool>) -> (NodeBus, PowerSwitch) {
    let manifest = Manifest::parse(NODE).unwrap();
    let dir = StateDir::create(state).unwrap();
    let power = PowerSwitch::begin(state, stop.clone()).unwrap();
    let bus = NodeBus::start_in(
        &manifest,
        &TargetContext {
            state_dir: state,
            tpm: &TpmChoice::None,
            content: ContentOptions::default(),
            domains: &DomainsOptions::default(),
            disk: None,
            power: &power,
            forwards: &ForwardOptions::default(),
        },
        ServiceLogs::new(&dir.logs(), Arc::new(StderrLog)),
    )
    .unwrap();
    (bus, power)
}

#[test]
fn a_granted_reboot_stops_the_node_and_the_next_boot_reports_why() {
    let state = tempfile::tempdir().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (bus, power) = boot(state.path(), &stop);
    let mut zedagent = Service::connect(&bus, "zedagent");
    let first = zedagent.op::<BootReasonOf>(&Empty {}).unwrap();
    assert_eq!((first.reason(), first.boots), (BootReason::First, 1));
    let update = PowerRequest {
        reason: BootReason::Update as i32,
    };
    assert_eq!(
        zedagent.op::<Reboot>(&update).unwrap_err(),
        evebus::Status::Denied,
        "zedagent may only read the boot reason"
    );
    assert!(!stop.load(Ordering::SeqCst));
    let mut baseosmgr = Service::connect(&bus, "baseosmgr");
    assert_eq!(
        baseosmgr.op::<BootReasonOf>(&Empty {}).unwrap_err(),
        evebus::Status::Denied
    );
    baseosmgr.op::<Reboot>(&update).unwrap();
    assert!(stop.load(Ordering::SeqCst), "the host's stop flag is set");
    drop((zedagent, baseosmgr, bus));
    let ending = power.finish().unwrap();
    assert_eq!(ending, Ending::Reboot(BootReason::Update));
    assert_eq!(ending.exit_status(), EXIT_REBOOT);

    // The next boot of the same node.
    let stop = Arc::new(AtomicBool::new(false));
    let (bus, _power) = boot(state.path(), &stop);
    let mut zedagent = Service::connect(&bus, "zedagent");
    let second: BootRecord = zedagent.op::<BootReasonOf>(&Empty {}).unwrap();
    assert_eq!((second.reason(), second.boots), (BootReason::Update, 2));
    assert_eq!(second.previous_boot_time_unix, first.boot_time_unix);
}
