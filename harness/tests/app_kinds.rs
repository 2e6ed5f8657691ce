//! The three kinds of app under `host/domains`, in real QEMU (TCG), on
//! x86_64 and aarch64: each boots and answers on a forwarded loopback
//! port; stops are graceful within their timeout and a guest that ignores
//! the power button is powered off; a crashing app is reported with its
//! reason; admission refuses an app that does not fit while the others
//! keep running; a killed host leaves no QEMU behind once the next one
//! opens the same directory.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use domains::{
    AdmissionError, DomainSpec, Domains, End, Kind, NodeResources, StartError, spec::CloudInit,
};
use harness::{
    Arch,
    appassets::{self, apps},
    workspace_root,
};

/// Generous: TCG on a shared 2-core machine, firmware and a whole Linux
/// boot on aarch64 included. A deadline, never a timing assertion.
const ANSWER_WITHIN: Duration = Duration::from_secs(240);
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// Removes a test's directory once it passed (a failed one stays to be read).
fn clean(dir: &Path, domains: Domains) {
    drop(domains);
    let _ = std::fs::remove_dir_all(dir);
}

/// A fresh domains directory for one test (short: it holds sockets).
fn scratch(test: &str) -> PathBuf {
    let dir = workspace_root()
        .join("target/app-kinds")
        .join(format!("{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn node(memory_mib: u64) -> NodeResources {
    NodeResources {
        memory_mib,
        cpus: 2,
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One GET; the body if the answer was 200.
fn get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: app\r\n\r\n").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.").then_some(())?;
    head.split(' ').nth(1).filter(|s| *s == "200")?;
    Some(body.to_string())
}

/// Waits for a 200 on `port`, checking the domain is still up.
fn wait_for_answer(domains: &mut Domains, name: &str, port: u16, path: &str) -> String {
    let deadline = Instant::now() + ANSWER_WITHIN;
    loop {
        if let Some(body) = get(port, path) {
            return body;
        }
        if let Some(ended) = domains.poll().into_iter().find(|e| e.name == name) {
            panic!("{name} ended before answering: {}", ended.end);
        }
        assert!(
            Instant::now() < deadline,
            "{name} did not answer on {port} within {ANSWER_WITHIN:?}; console:\n{}",
            domains.get(name).map(|d| d.console()).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits for `name` to end by itself.
fn wait_for_end(domains: &mut Domains, name: &str) -> End {
    let deadline = Instant::now() + ANSWER_WITHIN;
    loop {
        if let Some(ended) = domains.poll().into_iter().find(|e| e.name == name) {
            return ended.end;
        }
        assert!(Instant::now() < deadline, "{name} did not end");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn unikernel(arch: Arch, name: &str, port: u16, cmdline: &str) -> DomainSpec {
    apps::unikernel_app(arch, name, port, cmdline).expect("building hello-http")
}

fn linux_vm(arch: Arch, dir: &Path, name: &str, port: u16) -> DomainSpec {
    let overlay = dir.join(format!("{name}.qcow2"));
    apps::linux_vm_app(arch, name, &overlay, port).expect("building the Linux VM")
}

fn container(arch: Arch, dir: &Path, name: &str, port: u16) -> DomainSpec {
    let image_dir = dir.join(format!("{name}-image"));
    apps::container_app(arch, name, &image_dir, port).expect("building the container")
}

fn stop_gracefully(domains: &mut Domains, name: &str) {
    let (outcome, ended) = domains.stop(name, STOP_TIMEOUT).expect("stopping");
    assert!(
        outcome.graceful,
        "{name} did not power down within {STOP_TIMEOUT:?}: {}",
        ended.end
    );
    assert_eq!(ended.end, End::Stopped { graceful: true });
}

fn unikernel_app(arch: Arch) {
    let dir = scratch(&format!("uni-{arch}"));
    let (mut domains, _) = Domains::open(&dir, node(1024)).unwrap();
    let port = free_port();
    domains
        .start(unikernel(arch, "hello", port, "crash-path=/crash"))
        .expect("starting hello-http");
    let body = wait_for_answer(&mut domains, "hello", port, "/");
    assert_eq!(body, format!("hello from hello-http ({arch})\n"));
    let usage = domains.usage("hello").expect("usage");
    assert!(usage.pss_kib > 0 && usage.guest_ram_kib > 0, "{usage:?}");
    stop_gracefully(&mut domains, "hello");
    let console = std::fs::read_to_string(dir.join("hello/console.log")).unwrap();
    assert!(console.contains("power button pressed"), "{console}");

    // The same app crashes on request: the host says why.
    domains
        .start(unikernel(arch, "hello", port, "crash-path=/crash"))
        .expect("starting hello-http again");
    wait_for_answer(&mut domains, "hello", port, "/");
    assert_eq!(get(port, "/crash"), None);
    let End::Crashed(crash) = wait_for_end(&mut domains, "hello") else {
        panic!("not a crash")
    };
    assert_eq!(crash.status, Some(101), "{crash:?}");
    assert!(
        crash
            .reason
            .contains("panic in hello-http: crash requested with GET /crash"),
        "{}",
        crash.reason
    );
    clean(&dir, domains);
}

#[test]
fn unikernel_app_x86_64() {
    unikernel_app(Arch::X86_64);
}

#[test]
fn unikernel_app_aarch64() {
    unikernel_app(Arch::Aarch64);
}

fn linux_vm_app(arch: Arch) {
    let dir = scratch(&format!("vm-{arch}"));
    let (mut domains, _) = Domains::open(&dir, node(2048)).unwrap();
    let port = free_port();
    let mut spec = linux_vm(arch, &dir, "vm", port);
    spec.cloud_init = Some(CloudInit {
        user_data: "#!/bin/sh\necho \"written by user-data\" > /www/cloud-init.txt\n".into(),
        meta_data: None,
    });
    domains.start(spec).expect("starting the Linux VM");
    let body = wait_for_answer(&mut domains, "vm", port, "/");
    let uname = match arch {
        Arch::X86_64 => "x86_64",
        Arch::Aarch64 => "aarch64",
    };
    assert_eq!(body, format!("hello from the Linux VM ({uname})\n"));
    assert_eq!(
        get(port, "/cloud-init.txt").as_deref(),
        Some("written by user-data\n")
    );
    stop_gracefully(&mut domains, "vm");
    let console = std::fs::read_to_string(dir.join("vm/console.log")).unwrap();
    assert!(
        console.contains("init: power button, powering off"),
        "{console}"
    );
    clean(&dir, domains);
}

#[test]
fn linux_vm_app_x86_64() {
    linux_vm_app(Arch::X86_64);
}

#[test]
fn linux_vm_app_aarch64() {
    linux_vm_app(Arch::Aarch64);
}

fn container_app(arch: Arch) {
    let dir = scratch(&format!("box-{arch}"));
    let (mut domains, _) = Domains::open(&dir, node(2048)).unwrap();
    let port = free_port();
    let mut spec = container(arch, &dir, "box", port);
    let Kind::Container { overrides, .. } = &mut spec.kind else {
        unreachable!()
    };
    overrides.env = vec!["GREETING=from-eve".into()];
    domains.start(spec).expect("starting the container");
    let body = wait_for_answer(&mut domains, "box", port, "/");
    assert_eq!(body, "hello from the container\n");
    // The second layer's whiteout removed the first layer's file.
    assert_eq!(get(port, "/old.html"), None);
    let console = domains.get("box").unwrap().console();
    assert!(
        console.contains(
            "running [\"/bin/httpd\", \"-f\", \"-v\", \"-p\", \"8080\", \"-h\", \"/www\"] as 1000:1000 in /www with PATH=/bin GREETING=from-eve"
        ),
        "{console}"
    );
    stop_gracefully(&mut domains, "box");
    let console = std::fs::read_to_string(dir.join("box/console.log")).unwrap();
    assert!(
        console.contains("shim-init: power button: stopping the app"),
        "{console}"
    );

    // EVE's entrypoint override: a process that fails is reported with
    // its status.
    let mut failing = container(arch, &dir, "box", port);
    let Kind::Container { overrides, .. } = &mut failing.kind else {
        unreachable!()
    };
    overrides.entrypoint = Some(vec![
        "/bin/sh".into(),
        "-c".into(),
        "echo giving up; exit 3".into(),
    ]);
    domains
        .start(failing)
        .expect("starting the failing container");
    let End::Crashed(crash) = wait_for_end(&mut domains, "box") else {
        panic!("not a crash")
    };
    assert_eq!(crash.status, Some(3));
    assert_eq!(crash.reason, "the app exited with status 3");
    assert!(crash.console.iter().any(|l| l == "giving up"), "{crash:?}");
    clean(&dir, domains);
}

#[test]
fn container_app_x86_64() {
    container_app(Arch::X86_64);
}

#[test]
fn container_app_aarch64() {
    container_app(Arch::Aarch64);
}

#[test]
fn a_guest_that_ignores_the_power_button_is_powered_off() {
    let arch = Arch::X86_64;
    let dir = scratch("hung");
    let (mut domains, _) = Domains::open(&dir, node(1024)).unwrap();
    let port = free_port();
    domains
        .start(unikernel(arch, "stubborn", port, "power-button=ignore"))
        .unwrap();
    wait_for_answer(&mut domains, "stubborn", port, "/");
    let timeout = Duration::from_secs(3);
    let (outcome, ended) = domains.stop("stubborn", timeout).unwrap();
    assert!(!outcome.graceful);
    assert!(outcome.took >= timeout, "{outcome:?}");
    assert_eq!(ended.end, End::Stopped { graceful: false });
    assert_eq!(get(port, "/"), None, "powered off");
    clean(&dir, domains);
}

#[test]
fn an_app_that_does_not_fit_is_refused_while_the_others_run() {
    let arch = Arch::Aarch64;
    let dir = scratch("admission");
    let overhead = domains::VmmOverhead::measured().of(arch, domains::KindClass::Unikernel);
    // Room for one 32 MiB unikernel and 16 MiB more: a 48 MiB one fits
    // only alone.
    let (mut domains, _) = Domains::open(&dir, node(32 + overhead + 16)).unwrap();
    let (port_a, port_b) = (free_port(), free_port());
    domains.start(unikernel(arch, "small", port_a, "")).unwrap();
    wait_for_answer(&mut domains, "small", port_a, "/");
    let mut big = unikernel(arch, "big", port_b, "");
    big.memory_mib = 48;
    let err = domains.start(big.clone()).unwrap_err();
    let StartError::Admission(AdmissionError::Memory {
        needs_mib,
        free_mib,
        ..
    }) = &err
    else {
        panic!("not refused for memory: {err}")
    };
    assert_eq!((*needs_mib, *free_mib), (48 + overhead, 16));
    assert!(
        err.to_string().starts_with("big does not fit: it needs"),
        "{err}"
    );
    assert!(!dir.join("big").exists(), "nothing was started for it");
    // The running app never noticed.
    assert!(get(port_a, "/").is_some());
    assert!(domains.poll().is_empty());
    // Once the first is stopped, the second fits.
    stop_gracefully(&mut domains, "small");
    domains.start(big).unwrap();
    wait_for_answer(&mut domains, "big", port_b, "/");
    clean(&dir, domains);
}

#[test]
fn a_killed_host_leaves_no_qemu_once_the_next_one_opens() {
    let arch = Arch::X86_64;
    let dir = scratch("killed");
    let port = free_port();
    let spec_path = dir.join("hello.json");
    let spec = unikernel(arch, "hello", port, "");
    std::fs::write(&spec_path, serde_json::to_vec(&spec).unwrap()).unwrap();
    let program = appassets::host_program("domains", "domains").expect("building domains");
    let root = dir.join("root");
    let mut host = Command::new(program)
        .args(["run", "--root"])
        .arg(&root)
        .arg(&spec_path)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(host.stdout.take().unwrap()).lines();
    let qemu: u32 = loop {
        let line = lines
            .next()
            .expect("domains ended")
            .expect("reading domains");
        if let Some(rest) = line.strip_prefix("domains: hello started (pid ") {
            break rest.split(',').next().unwrap().parse().unwrap();
        }
        assert!(!line.contains("refused"), "{line}");
    };
    let deadline = Instant::now() + ANSWER_WITHIN;
    while get(port, "/").is_none() {
        assert!(Instant::now() < deadline, "hello never answered");
        std::thread::sleep(Duration::from_millis(200));
    }
    host.kill().unwrap();
    host.wait().unwrap();
    assert!(alive(qemu), "a SIGKILLed host cannot stop its QEMU");
    assert!(get(port, "/").is_some(), "the orphan still runs the app");
    let (domains, reaped) = Domains::open(&root, node(1024)).unwrap();
    assert_eq!(reaped.len(), 1, "{reaped:?}");
    assert_eq!(reaped[0].pid, qemu);
    assert!(!alive(qemu));
    assert_eq!(get(port, "/"), None);
    clean(&dir, domains);
}

/// Running and not a zombie.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z'))
    })
}
