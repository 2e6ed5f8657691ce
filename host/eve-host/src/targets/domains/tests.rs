//! The target against real QEMU (TCG) running the `hello-http` unikernel
//! from a raw volume, as domainmgr calls it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::Instant;

use eve_broker::RpcError;
use harness::{Arch, appassets};
use hostops::domains::{
    ConsoleChunk, ConsoleRequest, Disk, DomainError, DomainErrorCode, DomainInfo, DomainList,
    DomainRef, DomainUsage, EndReason, PortMap, RunState, StartRequest, StopAnswer, StopRequest,
};
use hostops::{Operation, domains as ops};
use prost::Message;

use super::*;

const APP: &str = "6ba7b810-9dad-11d1-80b4-00c04fd430c8";
const VOLUME: &str = "0f2bd5a4-6a2e-4a8e-9d7c-2b8f3a1c9e11";
const WITHIN: Duration = Duration::from_secs(120);

/// A raw volume holding `hello-http`, as the volumes target builds one.
fn hello_volume(state_dir: &Path) -> String {
    let name = format!("{VOLUME}.1");
    let dir = volumes_dir_in(state_dir).join(&name);
    std::fs::create_dir_all(&dir).unwrap();
    let image = appassets::app_unikernel(Arch::X86_64).expect("building hello-http");
    std::fs::copy(image, dir.join("disk.raw")).unwrap();
    let record = serde_json::json!({
        "uuid": VOLUME, "generation": 1, "format": "raw",
        "components": [["sha256:00", ""]], "max_size_bytes": 0, "size_bytes": 1, "created_unix": 1,
    });
    std::fs::write(dir.join("volume.json"), record.to_string()).unwrap();
    name
}

fn call<O: Operation>(
    target: &DomainsTarget,
    request: &O::Request,
) -> Result<O::Response, RpcError> {
    target
        .call("domainmgr", O::NAME, &request.encode_to_vec())
        .map(|bytes| O::Response::decode(bytes.as_slice()).unwrap())
}

fn error(e: RpcError) -> DomainError {
    match e {
        RpcError::Failed { error, .. } => DomainError::decode(error.as_slice()).unwrap(),
        other => panic!("not a typed error: {other:?}"),
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: app\r\n\r\n").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let status = answer.split(' ').nth(1)?;
    (answer.starts_with("HTTP/1.") && status == "200").then_some(answer)
}

fn until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WITHIN;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what} within {WITHIN:?}");
        thread::sleep(Duration::from_millis(200));
    }
}

fn target(state_dir: &Path, memory_mib: u64) -> DomainsTarget {
    target_retrying_after(state_dir, memory_mib, Duration::from_millis(200))
}

fn target_retrying_after(state_dir: &Path, memory_mib: u64, first: Duration) -> DomainsTarget {
    let options = DomainsOptions {
        arch: Arch::X86_64,
        memory_mib: Some(memory_mib),
        cpus: Some(2),
        retry: RetryPolicy {
            first_delay: first,
            ..RetryPolicy::default()
        },
        ..DomainsOptions::default()
    };
    let (domains, _) =
        domains::Domains::open(&state_dir.join("domains"), options.resources().unwrap()).unwrap();
    DomainsTarget::start(State::new(
        domains,
        volumes_dir_in(state_dir),
        state_dir.join("run"),
        options,
    ))
    .unwrap()
}

fn hello(volume: &str, port: u16) -> StartRequest {
    StartRequest {
        uuid: APP.into(),
        display_name: "hello".into(),
        kind: ops::DomainKind::Unikernel as i32,
        memory_kib: 32 * 1024,
        vcpus: 1,
        disks: vec![Disk {
            host_volume: volume.into(),
            readonly: false,
        }],
        extra_args: "port=80 crash-path=/crash".into(),
        port_maps: vec![PortMap {
            host_port: u32::from(port),
            app_port: 80,
        }],
        ..Default::default()
    }
}

#[test]
fn a_unikernel_runs_is_measured_restarted_after_a_crash_and_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let volume = hello_volume(dir.path());
    let target = target(dir.path(), 200);
    let port = free_port();
    let start = hello(&volume, port);
    let info: DomainInfo = call::<ops::Start>(&target, &start).unwrap();
    assert_eq!((info.state(), info.boot_count), (RunState::Running, 1));
    assert_eq!(info.disks, std::slice::from_ref(&volume));
    until("an answer", || get(port, "/"));

    // Twice is refused; so is one that does not fit beside it.
    let again = error(call::<ops::Start>(&target, &start).unwrap_err());
    assert_eq!(again.code(), DomainErrorCode::Exists);
    let big = StartRequest {
        uuid: "7ba7b810-9dad-11d1-80b4-00c04fd430c8".into(),
        memory_kib: 150 * 1024,
        port_maps: Vec::new(),
        ..start.clone()
    };
    let refused = error(call::<ops::Start>(&target, &big).unwrap_err());
    assert_eq!(refused.code(), DomainErrorCode::Admission, "{refused}");
    assert!(refused.needed_mib > 150 && refused.free_mib < refused.needed_mib);

    let usage: DomainUsage = call::<ops::Usage>(&target, &DomainRef { uuid: APP.into() }).unwrap();
    assert!(usage.cpu_ns > 0 && usage.rss_kib > 0, "{usage:?}");
    assert_eq!(usage.memory_kib, 32 * 1024);
    let console: ConsoleChunk = call::<ops::Console>(
        &target,
        &ConsoleRequest {
            uuid: APP.into(),
            offset: 0,
            max_bytes: 1 << 30,
        },
    )
    .unwrap();
    assert!(console.data.len() <= ops::MAX_CONSOLE_CHUNK as usize);
    assert_eq!(console.next_offset, console.data.len() as u64);
    assert!(!console.data.is_empty());

    // A crash: the host says why and starts it again.
    assert_eq!(get(port, "/crash"), None);
    let restarted = until("a restart", || {
        let info: DomainInfo =
            call::<ops::Status>(&target, &DomainRef { uuid: APP.into() }).unwrap();
        (info.boot_count == 2 && info.state() == RunState::Running).then_some(info)
    });
    assert_eq!(restarted.end(), EndReason::Crashed);
    assert!(
        restarted.end_detail.contains("crash requested"),
        "{}",
        restarted.end_detail
    );
    until("an answer after the restart", || get(port, "/"));

    let stopped: StopAnswer = call::<ops::Stop>(
        &target,
        &StopRequest {
            uuid: APP.into(),
            timeout_secs: 30,
        },
    )
    .unwrap();
    assert_eq!(stopped.end(), EndReason::Stopped, "{stopped:?}");
    let list: DomainList = call::<ops::List>(&target, &ops::Empty {}).unwrap();
    assert!(list.domains.is_empty());
    let gone = error(call::<ops::Status>(&target, &DomainRef { uuid: APP.into() }).unwrap_err());
    assert_eq!(gone.code(), DomainErrorCode::NotFound);
    assert_eq!(get(port, "/"), None);

    // The host's stop (dropping the target) stops what runs.
    call::<ops::Start>(&target, &start).unwrap();
    until("an answer after a new start", || get(port, "/"));
    drop(target);
    assert_eq!(get(port, "/"), None, "a domain outlived its host");
}

#[test]
fn garbage_and_unknown_domains_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let target = target(dir.path(), 200);
    assert!(matches!(
        target.call("domainmgr", "start", &[0x0a, 0x7f]),
        Err(RpcError::BadRequest(_))
    ));
    assert!(matches!(
        target.call("domainmgr", "reboot", &[]),
        Err(RpcError::BadRequest(_))
    ));
    let no_volume = StartRequest {
        uuid: APP.into(),
        kind: ops::DomainKind::Unikernel as i32,
        memory_kib: 32 * 1024,
        disks: vec![Disk {
            host_volume: format!("{VOLUME}.9"),
            readonly: false,
        }],
        ..Default::default()
    };
    let e = error(call::<ops::Start>(&target, &no_volume).unwrap_err());
    assert_eq!(e.code(), DomainErrorCode::VolumeNotReady);
    let stop = StopRequest {
        uuid: APP.into(),
        timeout_secs: 1,
    };
    let e = error(call::<ops::Stop>(&target, &stop).unwrap_err());
    assert_eq!(e.code(), DomainErrorCode::NotFound);
    let hostile = ConsoleRequest {
        uuid: "../../etc/passwd".into(),
        offset: 0,
        max_bytes: 10,
    };
    assert!(matches!(
        call::<ops::Console>(&target, &hostile),
        Err(RpcError::BadRequest(_))
    ));
}

#[test]
fn a_crashed_domain_waiting_for_its_retry_is_stopped_without_starting_again() {
    let dir = tempfile::tempdir().unwrap();
    let volume = hello_volume(dir.path());
    let target = target_retrying_after(dir.path(), 200, Duration::from_secs(3));
    let port = free_port();
    call::<ops::Start>(&target, &hello(&volume, port)).unwrap();
    until("an answer", || get(port, "/"));
    assert_eq!(get(port, "/crash"), None);
    let retrying = until("the crash", || {
        let info: DomainInfo =
            call::<ops::Status>(&target, &DomainRef { uuid: APP.into() }).unwrap();
        (info.state() == RunState::Retrying).then_some(info)
    });
    assert!(retrying.retry_unix >= retrying.end_unix, "{retrying:?}");
    let stop = StopRequest {
        uuid: APP.into(),
        timeout_secs: 5,
    };
    let stopped: StopAnswer = call::<ops::Stop>(&target, &stop).unwrap();
    assert_eq!(stopped.end(), EndReason::Crashed);
    thread::sleep(Duration::from_secs(4));
    let list: DomainList = call::<ops::List>(&target, &ops::Empty {}).unwrap();
    assert!(list.domains.is_empty());
    assert_eq!(get(port, "/"), None, "started again after the stop");
}
