use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use eve_broker::{RpcError, RpcHandler};
use hostops::Operation;
use hostops::ports::{
    Attach, AttachRequest, Detach, Empty, List, PortError, PortErrorCode, PortInfo, PortList,
    PortName, PortRef,
};
use portswitch::Tag;
use portswitch::frame::{framed, tagged};
use prost::Message;

use super::*;

const APP: &str = "6ba7b810-9dad-11d1-80b4-00c04fd430c8";

fn call<O: Operation>(target: &PortsTarget, request: &O::Request) -> Result<O::Response, RpcError> {
    let bytes = target.call("zedrouter", O::NAME, &request.encode_to_vec())?;
    Ok(O::Response::decode(bytes.as_slice()).expect("the target answers its response type"))
}

fn attach(target: &PortsTarget, tag: u32, app: &str, nic: u32) -> Result<PortInfo, RpcError> {
    call::<Attach>(
        target,
        &AttachRequest {
            tag,
            name: Some(PortName {
                app_uuid: app.into(),
                nic,
            }),
        },
    )
}

fn code_of(result: Result<impl std::fmt::Debug, RpcError>) -> PortErrorCode {
    match result {
        Err(RpcError::Failed { error, .. }) => PortError::decode(error.as_slice()).unwrap().code(),
        other => panic!("not a failure: {other:?}"),
    }
}

fn connect(path: &Path) -> UnixStream {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        match UnixStream::connect(path) {
            Ok(s) => {
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                return s;
            }
            Err(e) if Instant::now() > until => panic!("{}: {e}", path.display()),
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

fn read_framed(stream: &mut UnixStream) -> Vec<u8> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).unwrap();
    let mut frame = vec![0u8; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut frame).unwrap();
    frame
}

fn frame(src: u8) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, src]);
    f.extend_from_slice(&[0x08, 0x06]);
    f.extend_from_slice(&[0xab; 28]);
    f
}

#[test]
fn an_attached_port_carries_frames_both_ways_under_its_tag_until_detached() {
    let dir = tempfile::tempdir().unwrap();
    let target = PortsTarget::start(dir.path(), ForwardOptions::default()).unwrap();
    assert!(trunk_socket(dir.path()).exists());
    let info = attach(&target, 7, APP, 1).unwrap();
    assert_eq!(info.tag, 7);
    let socket = app_socket(dir.path(), &format!("{APP}.1"));
    assert!(socket.exists(), "{}", socket.display());

    let mut trunk = connect(&trunk_socket(dir.path()));
    let mut app = connect(&socket);
    // Frames from an app while no trunk is connected are dropped: wait
    // until the switch has accepted both.
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let list = call::<List>(&target, &Empty {}).unwrap();
        if list.trunk.unwrap().connected && list.ports[0].counters.unwrap().connected {
            break;
        }
        assert!(Instant::now() < until, "never connected: {list:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    let sent = frame(1);
    let expected = tagged(&sent, Tag::new(7).unwrap());
    app.write_all(&framed(&sent)).unwrap();
    let got = read_framed(&mut trunk);
    assert_eq!(got, expected[4..], "the trunk sees the frame under tag 7");

    let back = frame(9);
    trunk
        .write_all(&tagged(&back, Tag::new(7).unwrap()))
        .unwrap();
    assert_eq!(read_framed(&mut app), back, "the app sees it untagged");

    let list = call::<List>(&target, &Empty {}).unwrap();
    let port = &list.ports[0];
    assert_eq!(port.tag, 7);
    let counters = port.counters.unwrap();
    assert!(counters.connected && counters.to_trunk == 1 && counters.from_trunk == 1);
    let trunk_counters = list.trunk.unwrap();
    assert!(trunk_counters.connected);
    assert_eq!(
        (trunk_counters.frames_in, trunk_counters.frames_out),
        (1, 1)
    );

    call::<Detach>(&target, &PortRef { tag: 7 }).unwrap();
    assert!(!socket.exists(), "the port's socket goes with it");
    assert_eq!(call::<List>(&target, &Empty {}).unwrap().ports, vec![]);
    assert_eq!(
        code_of(call::<Detach>(&target, &PortRef { tag: 7 })),
        PortErrorCode::NotFound
    );
}

#[test]
fn tags_and_names_are_each_attached_once_and_bad_requests_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let target = PortsTarget::start(dir.path(), ForwardOptions::default()).unwrap();
    attach(&target, 3, APP, 0).unwrap();
    // The same again is harmless: a restarted zedrouter attaches again.
    attach(&target, 3, APP, 0).unwrap();
    assert_eq!(code_of(attach(&target, 3, APP, 1)), PortErrorCode::TagInUse);
    assert_eq!(
        code_of(attach(&target, 4, APP, 0)),
        PortErrorCode::NameInUse
    );
    for (tag, app, nic) in [
        (0, APP, 0),
        (4095, APP, 0),
        (70_000, APP, 0),
        (5, "../zedagent", 0),
        (5, APP, 64),
    ] {
        match attach(&target, tag, app, nic) {
            Err(RpcError::BadRequest(_)) => {}
            other => panic!("{tag} {app} {nic}: {other:?}"),
        }
    }
    assert!(matches!(
        target.call("zedrouter", "rename", &[]),
        Err(RpcError::BadRequest(_))
    ));
    let list: PortList = call::<List>(&target, &Empty {}).unwrap();
    assert_eq!(list.ports.len(), 1);
    assert_eq!(
        code_of(call::<Detach>(&target, &PortRef { tag: 9 })),
        PortErrorCode::NotFound
    );
}

#[test]
fn a_run_directory_too_deep_for_a_socket_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let deep = dir.path().join("d".repeat(100));
    match PortsTarget::start(&deep, ForwardOptions::default()) {
        Err(PortsOpenError::PathTooLong { .. }) => {}
        other => panic!("{:?}", other.err()),
    }
}
