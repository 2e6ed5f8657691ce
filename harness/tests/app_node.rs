//! A Linux VM app and a container app through the whole node, on both
//! arches, as a user deploys them: `evectl app deploy` (its library) puts
//! them in the device's config at our controller; zedagent, volumemgr,
//! zedmanager and domainmgr in QEMU under the host's own node code bring
//! them up in the host's `domains` target.
//!
//! - The Linux VM: a qcow2 disk image (UEFI, Debian's kernel, a busybox
//!   init) from a plain HTTP datastore with its sha256, and cloud-init
//!   user data delivered as a NoCloud seed.
//! - The container: busybox httpd, an OCI image in Debian's
//!   `docker-registry` on loopback, deployed as `docker://` through the
//!   operator's plain-HTTP registry datastore, run in the shim VM whose
//!   kernel and initrd the host is given.
//!
//! Both are deployed at once; each reaches RUNNING in the controller's
//! view and answers on its loopback port map; a stop halts both (HALTED,
//! no answer) and a delete removes them from the node and the
//! controller's view.
//!
//! The VM's user data goes sealed: the config the device gets carries it
//! only in `cipherData`, sealed for the ECDH key in the node's TPM, so the
//! file the VM serves proves zedagent opened it through the TPM and it
//! reached cloud-init. Each app's metrics at the controller carry its
//! disk as the host measures it.

mod common;
#[path = "common/hostlog.rs"]
mod hostlog;
#[path = "common/http.rs"]
mod http;
#[path = "common/images.rs"]
mod images;
#[path = "common/noderun.rs"]
mod noderun;
#[path = "common/tail.rs"]
mod tail;
#[path = "common/wholenode.rs"]
mod wholenode;

use std::thread;
use std::time::{Duration, Instant};

use eve_host::targets::DomainsOptions;
use eve_proto::Message;
use eve_proto::info::ZSwState;
use eve_proto::metrics::{AppMetric, ZMetricMsg};
use evectl::apps::{self, AppKind, AppSpec};
use harness::Arch;
use harness::appassets::{self, oci};
use harness::content::{FileServer, Registry, Served, sha256_hex};
use http::{free_port, get};
use serde_json::{Value, json};
use tail::tail;
use topics::{AppStatus, DomainStatus};
use wholenode::{LocalController, RunningNode};

/// A guard against a node or an app that never gets there, not a timing
/// target: TCG on a shared 2-core machine, two nodes, firmware and a
/// whole Linux boot on aarch64 included.
const PATIENCE: Duration = Duration::from_secs(900);
/// The memory the node's host admits apps into: both apps and their
/// VMMs' measured overhead.
const APPS_MEMORY_MIB: u64 = 2048;
/// The repository the container image is pushed to.
const REPOSITORY: &str = "apps/busybox-httpd";
/// The Linux VM's user data: a NoCloud script its init runs.
const USER_DATA: &str = "#!/bin/sh\necho \"written by user-data\" > /www/cloud-init.txt\n";

/// The scenario's node, controller and the device's config as evectl
/// leaves it.
struct World {
    arch: Arch,
    ctl: LocalController,
    node: RunningNode,
    config: Value,
}

impl World {
    /// The config to the controller, as `evectl` stores it (JSON is the
    /// description format's YAML), with a short config interval.
    fn apply(&self) {
        let mut config = self.config.clone();
        config["configItems"] = json!([
            {"key": "timer.config.interval", "value": "5"},
            {"key": "timer.metric.interval", "value": "10"},
        ]);
        self.ctl
            .ctl
            .set_config(&self.node.uuid, &config.to_string())
            .expect("the config is accepted");
    }

    /// Waits until `done` holds; fails with the apps' and domains' states
    /// and the host's log.
    fn until(&self, what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !done() {
            assert!(
                Instant::now() < deadline,
                "{}: {what} never happened\napps: {:#?}\ndomains: {:#?}\n{}",
                self.arch,
                self.node.run.table::<AppStatus>(),
                self.node.run.table::<DomainStatus>(),
                tail(&self.node.lines.snapshot())
            );
            thread::sleep(Duration::from_millis(500));
        }
    }

    /// The app's state in the controller's view.
    fn reported_state(&self, app: &str) -> Option<i32> {
        self.ctl.reported_app(&self.node.uuid, app).map(|a| a.state)
    }

    /// The newest metrics the controller holds of `app`.
    fn reported_metric(&self, app: &str) -> Option<AppMetric> {
        let records = self.ctl.ctl.store().metrics(&self.node.uuid, 1).ok()?;
        let msg = ZMetricMsg::decode(records.first()?.msg.as_slice()).ok()?;
        msg.am.into_iter().find(|m| m.app_id == app)
    }

    /// That the config the device gets carries app `app`'s user data
    /// sealed, in `cipherData` alone, for the ECDH key the node's TPM
    /// certified (the cipher context names that certificate's hash).
    fn assert_user_data_sealed_for_the_tpm(&self, app: &str) {
        let config = self
            .ctl
            .ctl
            .current_config(&self.node.uuid)
            .expect("the stored config")
            .expect("a config");
        let sent = config
            .apps
            .iter()
            .find(|a| a.uuidandversion.as_ref().is_some_and(|u| u.uuid == app))
            .expect("the app in the config");
        assert!(
            sent.user_data.is_empty(),
            "{}: user data in clear",
            self.arch
        );
        let sealed = sent.cipher_data.as_ref().expect("the user data sealed");
        let device = self
            .ctl
            .ctl
            .store()
            .device(&self.node.uuid)
            .expect("the device's record")
            .expect("the device");
        let ecdh = device
            .attest
            .ecdh_cert_pem
            .expect("the TPM's ECDH certificate at the controller");
        let context = config
            .cipher_contexts
            .iter()
            .find(|c| c.context_id == sealed.cipher_context_id)
            .expect("the sealed block's cipher context");
        assert_eq!(
            context.device_cert_hash,
            eve_proto::sha256(ecdh.as_bytes())[..16],
            "{}: sealed for the TPM's ECDH key",
            self.arch
        );
    }

    /// Whether the controller's newest report of `app` is EVE's report of
    /// a deleted app: its UUID alone.
    fn reported_gone(&self, app: &str) -> bool {
        self.ctl
            .reported_app(&self.node.uuid, app)
            .is_some_and(|a| a.state == 0 && a.app_name.is_empty())
    }
}

/// One app under test: its UUID, host port and what `/` answers.
struct Deployed {
    name: &'static str,
    uuid: String,
    port: u16,
    greeting: String,
}

fn apps_on_a_node(arch: Arch) {
    let vm_disk = appassets::linux_vm_disk(arch).expect("the Linux VM disk");
    let shim = appassets::shim(arch).expect("the shim VM");
    let image_dir = tempfile::tempdir().expect("image directory");
    let image = oci::busybox_httpd_image(arch, image_dir.path()).expect("the busybox image");

    // The VM's disk on a plain HTTP datastore.
    let http = FileServer::start(None).expect("HTTP datastore");
    let disk = std::fs::read(&vm_disk.qcow2).expect("the VM's disk");
    let disk_sha256 = sha256_hex(&disk);
    http.put("/images/linux-vm.qcow2", Served::file(disk));
    // The container's image in a registry, by tag.
    let registry = Registry::start().expect("docker-registry");
    image
        .push_tagged(&registry, REPOSITORY, "latest")
        .expect("pushing the image");

    let ctl = LocalController::start();
    let domains = DomainsOptions {
        arch,
        memory_mib: Some(APPS_MEMORY_MIB),
        shim: Some((shim.kernel, shim.initrd)),
        ..DomainsOptions::default()
    };
    let node = RunningNode::onboard(arch, &ctl, domains, PATIENCE);
    // The operator's plain-HTTP registry on the node's network (the host
    // is 10.0.2.2 to a user-mode guest): `docker://` images from that
    // server go through it.
    let registry_server = format!("10.0.2.2:{}", registry.port());
    let mut world = World {
        arch,
        ctl,
        node,
        config: json!({"datastores": [{
            "id": "local-registry",
            "dType": "DsContainerRegistry",
            "fqdn": format!("http://{registry_server}"),
        }]}),
    };

    let uname = match arch {
        Arch::X86_64 => "x86_64",
        Arch::Aarch64 => "aarch64",
    };
    let vm = Deployed {
        name: "vm",
        uuid: String::new(),
        port: free_port(),
        greeting: format!("hello from the Linux VM ({uname})\n"),
    };
    let container = Deployed {
        name: "box",
        uuid: String::new(),
        port: free_port(),
        greeting: "hello from the container\n".into(),
    };
    let specs = [
        AppSpec {
            name: vm.name.into(),
            image: format!("http://10.0.2.2:{}/images/linux-vm.qcow2", http.port()),
            kind: Some(AppKind::Vm),
            memory_mib: 256,
            vcpus: 1,
            ports: vec![(vm.port, 80)],
            user_data: Some(USER_DATA.as_bytes().to_vec()),
            network: None,
            sha256: Some(disk_sha256),
            acls: Vec::new(),
        },
        AppSpec {
            name: container.name.into(),
            image: format!("docker://{registry_server}/{REPOSITORY}:latest"),
            kind: None,
            memory_mib: 128,
            vcpus: 1,
            ports: vec![(container.port, oci::HTTPD_PORT)],
            user_data: None,
            network: None,
            sha256: None,
            acls: Vec::new(),
        },
    ];
    for spec in &specs {
        world.config = apps::deploy(world.config.clone(), spec).expect("evectl app deploy");
    }
    assert_eq!(
        world.config["datastores"].as_array().map(Vec::len),
        Some(2),
        "the container came through the registry datastore: {}",
        world.config
    );
    let mut deployed = [vm, container];
    for app in &mut deployed {
        app.uuid = apps::app_uuid(&world.config, app.name).expect("the app's UUID");
    }
    // The controller seals for the TPM's ECDH key once attestation gave
    // its certificate; before, it would seal for the device certificate.
    world.until("the TPM's ECDH certificate at the controller", || {
        world
            .ctl
            .ctl
            .store()
            .device(&world.node.uuid)
            .ok()
            .flatten()
            .is_some_and(|d| d.attest.ecdh_cert_pem.is_some())
    });
    world.apply();
    world.assert_user_data_sealed_for_the_tpm(&deployed[0].uuid);

    for app in &deployed {
        world.until(&format!("{} answering", app.name), || {
            get(app.port, "/").is_some()
        });
        assert_eq!(
            get(app.port, "/").as_deref(),
            Some(app.greeting.as_str()),
            "{arch}: {}",
            app.name
        );
        world.until(
            &format!("{} RUNNING in the controller's view", app.name),
            || world.reported_state(&app.uuid) == Some(ZSwState::Running as i32),
        );
    }
    let [vm, container] = &deployed;
    assert_eq!(
        get(vm.port, "/cloud-init.txt").as_deref(),
        Some("written by user-data\n"),
        "{arch}: the VM ran its user data"
    );
    // The second layer's whiteout removed the first layer's file.
    assert_eq!(get(container.port, "/old.html"), None);
    // The VM's disk in its metrics: the qcow2 grown to what it was given,
    // with the bytes it takes on the host.
    world.until("the VM's disk in its metrics", || {
        world
            .reported_metric(&vm.uuid)
            .is_some_and(|m| !m.disk.is_empty())
    });
    let disks = world
        .reported_metric(&vm.uuid)
        .expect("the VM's metrics")
        .disk;
    assert_eq!(disks.len(), 1, "{arch}: {disks:?}");
    assert_eq!(disks[0].disk_type, "qcow2", "{arch}: {disks:?}");
    assert!(
        disks[0].provisioned > 0 && disks[0].used > 0 && disks[0].used <= disks[0].provisioned,
        "{arch}: {disks:?}"
    );
    let volume = world
        .ctl
        .reported_app(&world.node.uuid, &vm.uuid)
        .and_then(|a| a.volume_refs.first().cloned())
        .expect("the VM's volume in its report");
    assert_eq!(disks[0].disk, format!("{volume}.0"), "{arch}: {disks:?}");

    for app in &deployed {
        world.config = apps::set_active(world.config.clone(), app.name, false).expect("app stop");
    }
    world.apply();
    for app in &deployed {
        world.until(
            &format!("{} HALTED in the controller's view", app.name),
            || world.reported_state(&app.uuid) == Some(ZSwState::Halted as i32),
        );
        assert_eq!(
            get(app.port, "/"),
            None,
            "{arch}: halted {} answers",
            app.name
        );
    }

    for app in &deployed {
        world.config = apps::delete(world.config.clone(), app.name).expect("app delete");
    }
    world.apply();
    world.until("the apps, their domains and volumes gone", || {
        world.node.run.table::<AppStatus>().is_empty()
            && world.node.run.table::<DomainStatus>().is_empty()
            && world.node.run.table::<topics::VolumeStatus>().is_empty()
    });
    for app in &deployed {
        world.until(
            &format!("{} gone from the controller's view", app.name),
            || world.reported_gone(&app.uuid),
        );
    }
    let troubles = world.node.run.troubles();
    assert!(
        troubles.is_empty(),
        "{troubles:?}\n{}",
        tail(&world.node.lines.snapshot())
    );
}

#[test]
fn a_linux_vm_and_a_container_through_an_x86_64_node() {
    apps_on_a_node(Arch::X86_64);
}

#[test]
fn a_linux_vm_and_a_container_through_an_aarch64_node() {
    apps_on_a_node(Arch::Aarch64);
}
