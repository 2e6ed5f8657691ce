use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::sync::mpsc;
use std::time::Instant;

use eve_broker::{RpcError, RpcHandler};
use hostops::Operation;
use hostops::ports::{Forward, Forwards, Unforward};
use prost::Message;
use serde_json::Value;

use super::*;
use crate::targets::HostTarget;
use crate::targets::ports::PortsTarget;

/// A guard against hanging, not a timing target.
const PATIENCE: Duration = Duration::from_secs(20);

/// What the fake QEMU heard: the connection's number and the HMP command.
type Heard = mpsc::Receiver<(usize, String)>;

/// A fake QEMU monitor at `path`: greets each connection, answers QMP, and
/// answers each HMP command with what `answer` gives (QEMU prints
/// failures). Each line sent on `restart` closes the current connection,
/// as QEMU's exit does; the next connection is a new QEMU.
fn fake_monitor(path: &Path, answer: fn(&str) -> &'static str) -> (Heard, mpsc::Sender<()>) {
    let listener = UnixListener::bind(path).unwrap();
    let (heard_tx, heard) = mpsc::channel();
    let (restart, restart_rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(stream) = stream else { return };
            let mut writer = stream.try_clone().unwrap();
            writer
                .write_all(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\r\n")
                .unwrap();
            stream
                .set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            let mut lines = BufReader::new(stream);
            let mut line = String::new();
            loop {
                if restart_rx.try_recv().is_ok() {
                    break;
                }
                match lines.read_line(&mut line) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(_) => continue,
                }
                let message: Value = serde_json::from_str(&line).unwrap();
                line.clear();
                let reply = match message["arguments"]["command-line"].as_str() {
                    Some(command) => {
                        let _ = heard_tx.send((n, command.to_string()));
                        serde_json::json!({ "return": answer(command) })
                    }
                    None => serde_json::json!({ "return": {} }),
                };
                writer.write_all(format!("{reply}\r\n").as_bytes()).unwrap();
            }
            let _ = writer.shutdown(std::net::Shutdown::Both);
        }
    });
    (heard, restart)
}

/// QEMU's words for a forward set up and one removed.
fn quiet(command: &str) -> &'static str {
    if command.starts_with("hostfwd_remove") {
        "host forwarding rule for tcp:127.0.0.1:8080 removed\r\n"
    } else {
        ""
    }
}

fn call<O: Operation>(
    target: &PortsTarget,
    caller: &str,
    request: &O::Request,
) -> Result<O::Response, RpcError> {
    let bytes = target.call(caller, O::NAME, &request.encode_to_vec())?;
    Ok(O::Response::decode(bytes.as_slice()).expect("the target answers its response type"))
}

fn request(proto: ForwardProto, host_port: u32, uplink_port: u32) -> ForwardRequest {
    ForwardRequest {
        host: Some(ForwardRef {
            proto: proto as i32,
            host_port,
        }),
        uplink_port,
    }
}

fn forward(target: &PortsTarget, caller: &str, host: u32, uplink: u32) -> Result<Empty, RpcError> {
    call::<Forward>(target, caller, &request(ForwardProto::Tcp, host, uplink))
}

fn code_of(result: Result<impl std::fmt::Debug, RpcError>) -> PortErrorCode {
    match result {
        Err(RpcError::Failed { error, .. }) => PortError::decode(error.as_slice()).unwrap().code(),
        other => panic!("not a failure: {other:?}"),
    }
}

fn next(heard: &Heard) -> (usize, String) {
    heard
        .recv_timeout(PATIENCE)
        .expect("the monitor hears a command")
}

fn target(dir: &Path) -> PortsTarget {
    let options = ForwardOptions {
        reserved: vec![2222],
        ..ForwardOptions::default()
    };
    PortsTarget::start(dir, options).unwrap()
}

#[test]
fn forwards_reach_the_callers_monitor_on_loopback_and_refuse_what_they_must() {
    let dir = tempfile::tempdir().unwrap();
    let target = target(dir.path());
    std::fs::create_dir_all(socket_dir(dir.path())).unwrap();
    let (heard, _restart) = fake_monitor(&monitor_socket(dir.path(), "zedrouter"), quiet);

    forward(&target, "zedrouter", 8080, 8080).unwrap();
    assert_eq!(
        next(&heard),
        (0, "hostfwd_add net0 tcp:127.0.0.1:8080-:8080".into())
    );
    call::<Forward>(&target, "zedrouter", &request(ForwardProto::Udp, 8080, 53)).unwrap();
    assert_eq!(
        next(&heard),
        (0, "hostfwd_add net0 udp:127.0.0.1:8080-:53".into())
    );
    forward(&target, "zedrouter", 8080, 8080).expect("the same forward again is harmless");

    assert_eq!(
        code_of(forward(&target, "zedrouter", 8080, 9090)),
        PortErrorCode::PortInUse
    );
    assert_eq!(
        code_of(forward(&target, "other", 8080, 8080)),
        PortErrorCode::PortInUse,
        "another service's host port"
    );
    assert_eq!(
        code_of(forward(&target, "zedrouter", 2222, 22)),
        PortErrorCode::PortInUse,
        "the manifest's static forward"
    );
    assert_eq!(
        code_of(forward(&target, "zedrouter", 80, 80)),
        PortErrorCode::PortNotAllowed
    );
    assert!(matches!(
        forward(&target, "zedrouter", 70000, 80),
        Err(RpcError::BadRequest(_))
    ));

    let list = call::<Forwards>(&target, "zedrouter", &Empty {}).unwrap();
    assert_eq!(list.address, "127.0.0.1");
    assert_eq!(
        list.forwards,
        [
            request(ForwardProto::Tcp, 8080, 8080),
            request(ForwardProto::Udp, 8080, 53)
        ]
    );
    assert!(
        call::<Forwards>(&target, "other", &Empty {})
            .unwrap()
            .forwards
            .is_empty()
    );

    let tcp = ForwardRef {
        proto: ForwardProto::Tcp as i32,
        host_port: 8080,
    };
    assert_eq!(
        code_of(call::<Unforward>(&target, "other", &tcp)),
        PortErrorCode::NoForward,
        "a service removes only its own"
    );
    call::<Unforward>(&target, "zedrouter", &tcp).unwrap();
    assert_eq!(
        next(&heard),
        (0, "hostfwd_remove net0 tcp:127.0.0.1:8080".into())
    );
    assert_eq!(
        code_of(call::<Unforward>(&target, "zedrouter", &tcp)),
        PortErrorCode::NoForward
    );
    forward(&target, "other", 8080, 8080)
        .expect_err("other has no monitor, so the host cannot apply it");
    assert!(
        target
            .describe()
            .contains("uplink forwards on 127.0.0.1 (1)")
    );
}

#[test]
fn a_restarted_vm_gets_its_forwards_again() {
    let dir = tempfile::tempdir().unwrap();
    let target = target(dir.path());
    std::fs::create_dir_all(socket_dir(dir.path())).unwrap();
    let (heard, restart) = fake_monitor(&monitor_socket(dir.path(), "zedrouter"), quiet);
    forward(&target, "zedrouter", 8080, 80).unwrap();
    forward(&target, "zedrouter", 8081, 81).unwrap();
    assert_eq!(next(&heard).0, 0);
    assert_eq!(next(&heard).0, 0);

    restart.send(()).unwrap();
    let until = Instant::now() + PATIENCE;
    let mut again = Vec::new();
    while again.len() < 2 && Instant::now() < until {
        let (connection, command) = next(&heard);
        assert_eq!(connection, 1, "only the new QEMU hears them");
        again.push(command);
    }
    assert_eq!(
        again,
        [
            "hostfwd_add net0 tcp:127.0.0.1:8080-:80",
            "hostfwd_add net0 tcp:127.0.0.1:8081-:81"
        ]
    );
}

#[test]
fn a_forward_qemu_cannot_set_up_is_refused_and_not_kept() {
    fn busy(command: &str) -> &'static str {
        if command.contains(":9000-") {
            "Could not set up host forwarding rule 'tcp:127.0.0.1:9000-:80'\r\n"
        } else {
            ""
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let target = target(dir.path());
    std::fs::create_dir_all(socket_dir(dir.path())).unwrap();
    let (_heard, _restart) = fake_monitor(&monitor_socket(dir.path(), "zedrouter"), busy);
    let Err(RpcError::Failed { error, .. }) = forward(&target, "zedrouter", 9000, 80) else {
        panic!("QEMU's refusal is the caller's error");
    };
    let error = PortError::decode(error.as_slice()).unwrap();
    assert_eq!(error.code(), PortErrorCode::Host);
    assert!(error.detail.contains("Could not set up"), "{error}");
    assert!(
        call::<Forwards>(&target, "zedrouter", &Empty {})
            .unwrap()
            .forwards
            .is_empty()
    );
    forward(&target, "zedrouter", 9001, 80).unwrap();
}
