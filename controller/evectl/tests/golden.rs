//! Runs the `evectl` binary on the golden vectors from `proto/testdata`.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn testdata(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../lib/eve-proto/testdata")
        .join(rel)
}

fn evectl(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_evectl"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn evectl");
    let mut input = child.stdin.take().expect("stdin");
    input
        .write_all(stdin.unwrap_or_default())
        .expect("write stdin");
    drop(input);
    child.wait_with_output().expect("evectl runs")
}

fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).expect("valid JSON")
}

fn path(rel: &str) -> String {
    testdata(rel).display().to_string()
}

/// Every golden message decodes to the JSON that Python's protobuf printed,
/// and that JSON encodes back to an equivalent binary message.
#[test]
fn decode_and_encode_match_python_for_all_golden_messages() {
    let index = json(&std::fs::read(testdata("golden/index.json")).unwrap());
    let index = index.as_object().unwrap();
    assert!(index.len() >= 18);
    for (name, ty) in index {
        let ty = ty.as_str().unwrap();
        let bin = path(&format!("golden/{name}.bin"));
        let out = evectl(&["decode", "--type", ty, &bin], None);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let expected = json(&std::fs::read(testdata(&format!("golden/{name}.json"))).unwrap());
        assert_eq!(json(&out.stdout), expected, "{name}");

        let back = evectl(&["encode", "--type", ty, "-"], Some(&out.stdout));
        assert!(
            back.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&back.stderr)
        );
        // Map entries may come out in another order (prost-reflect keeps maps
        // in a HashMap), so compare content and size rather than raw bytes.
        assert_eq!(
            back.stdout.len(),
            std::fs::read(&bin).unwrap().len(),
            "{name}: size differs"
        );
        let again = evectl(&["decode", "--type", ty, "-"], Some(&back.stdout));
        assert_eq!(
            json(&again.stdout),
            expected,
            "{name}: content differs after encode"
        );
    }
}

#[test]
fn decode_from_stdin_with_short_type_name() {
    let bytes = std::fs::read(testdata("golden/uuid_response.bin")).unwrap();
    let out = evectl(&["decode", "-t", "UuidResponse"], Some(&bytes));
    assert!(out.status.success());
    assert_eq!(json(&out.stdout)["productName"], "Edge-1");
}

/// JSON as upstream tools write it, naming fields our first `.proto` files
/// lacked (`dns`, `network`, `shared_labels`), in both the protobuf field
/// name and the JSON (lowerCamelCase) spelling, encodes to messages that
/// carry those fields.
#[test]
fn encode_accepts_upstream_json_naming_newer_fields() {
    use eve_proto::Message;
    let config = serde_json::json!({
        "id": {"uuid": "6ba7b810-9dad-11d1-80b4-00c04fd430c8", "version": "7"},
        "networks": [{
            "id": "cccccccc-0000-0000-0000-000000000001",
            "type": "V4",
            "dns": [{"HostName": "ntp.local", "Address": ["192.168.1.5"]}]
        }],
        "systemAdapterList": [
            {"name": "eth0", "uplink": true, "shared_labels": ["uplink", "portfwd"]},
            {"name": "eth1", "sharedLabels": ["portfwd"]}
        ]
    });
    let out = evectl(
        &["encode", "--type", "EdgeDevConfig", "-"],
        Some(serde_json::to_vec(&config).unwrap().as_slice()),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cfg = eve_proto::config::EdgeDevConfig::decode(out.stdout.as_slice()).unwrap();
    assert_eq!(cfg.networks[0].dns[0].address, ["192.168.1.5"]);
    assert_eq!(
        cfg.system_adapter_list[0].shared_labels,
        ["uplink", "portfwd"]
    );
    assert_eq!(cfg.system_adapter_list[1].shared_labels, ["portfwd"]);

    let info = serde_json::json!({
        "ztype": "ZiDevice",
        "devId": "6ba7b810-9dad-11d1-80b4-00c04fd430c8",
        "dinfo": {
            "network": [{
                "devName": "eth0",
                "IPAddrs": ["192.168.1.20"],
                "dns": {"DNSservers": ["1.1.1.1"], "DNSdomain": "example.org"}
            }],
            "dns": {"DNSservers": ["1.1.1.1"]},
            "device_name": "edge-001",
            "projectId": "proj-1"
        }
    });
    let out = evectl(
        &["encode", "--type", "ZInfoMsg", "-"],
        Some(serde_json::to_vec(&info).unwrap().as_slice()),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let msg = eve_proto::info::ZInfoMsg::decode(out.stdout.as_slice()).unwrap();
    let Some(eve_proto::info::z_info_msg::InfoContent::Dinfo(device)) = msg.info_content else {
        panic!("no device info in {msg:?}");
    };
    let eth0 = &device.network[0];
    assert_eq!(eth0.dev_name, "eth0");
    assert_eq!(eth0.dns.as_ref().unwrap().dn_sdomain, "example.org");
    assert_eq!(device.dns.unwrap().dn_sservers, ["1.1.1.1"]);
    assert_eq!(
        (device.device_name.as_str(), device.project_id.as_str()),
        ("edge-001", "proj-1")
    );
}

#[test]
fn verify_controller_signed_config() {
    for file in [
        "signing/config_signed_32.bin",
        "signing/config_signed_16.bin",
    ] {
        let out = evectl(
            &[
                "verify",
                "--cert",
                &path("pki/signing.pem"),
                "--type",
                "EdgeDevConfig",
                &path(file),
            ],
            None,
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(json(&out.stdout)["deviceName"], "edge-001");
    }
    // Without --type the raw payload comes out.
    let out = evectl(
        &[
            "verify",
            "--cert",
            &path("pki/signing.pem"),
            &path("signing/config_signed_32.bin"),
        ],
        None,
    );
    assert_eq!(
        out.stdout,
        std::fs::read(testdata("golden/edge_dev_config.bin")).unwrap()
    );
}

#[test]
fn verify_device_signed_register_by_der_hash_and_embedded_cert() {
    let file = path("signing/register_signed.bin");
    let with_cert = evectl(
        &[
            "verify",
            "--cert",
            &path("pki/device.pem"),
            "-t",
            "ZRegisterMsg",
            &file,
        ],
        None,
    );
    assert!(
        with_cert.status.success(),
        "{}",
        String::from_utf8_lossy(&with_cert.stderr)
    );
    assert_eq!(json(&with_cert.stdout)["serial"], "SN-0001");
    let embedded = evectl(&["verify", "-t", "ZRegisterMsg", &file], None);
    assert!(embedded.status.success());
    assert_eq!(embedded.stdout, with_cert.stdout);
}

#[test]
fn errors_exit_non_zero_with_a_message() {
    let wrong_signer = evectl(
        &[
            "verify",
            "--cert",
            &path("pki/device.pem"),
            &path("signing/config_signed_32.bin"),
        ],
        None,
    );
    assert!(!wrong_signer.status.success());
    assert!(String::from_utf8_lossy(&wrong_signer.stderr).contains("UnknownSenderCert"));

    let mut tampered = std::fs::read(testdata("signing/config_signed_32.bin")).unwrap();
    tampered[10] ^= 1;
    let bad_sig = evectl(
        &["verify", "--cert", &path("pki/signing.pem"), "-"],
        Some(&tampered),
    );
    assert!(!bad_sig.status.success());
    assert!(String::from_utf8_lossy(&bad_sig.stderr).contains("BadSignature"));

    let no_signer = evectl(&["verify", &path("signing/config_signed_32.bin")], None);
    assert!(!no_signer.status.success());
    assert!(String::from_utf8_lossy(&no_signer.stderr).contains("no signer certificate"));

    let unknown = evectl(&["decode", "-t", "NoSuchMessage", "-"], Some(b""));
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("unknown message type"));

    let garbage = evectl(
        &["decode", "-t", "EdgeDevConfig", "-"],
        Some(&[0x0a, 0xff, 0x01]),
    );
    assert!(!garbage.status.success());
    assert!(
        String::from_utf8_lossy(&garbage.stderr)
            .contains("not a valid org.lfedge.eve.config.EdgeDevConfig")
    );

    let bad_json = evectl(
        &["encode", "-t", "EdgeDevConfig", "-"],
        Some(br#"{"apps": 5}"#),
    );
    assert!(!bad_json.status.success());

    let missing = evectl(
        &["decode", "-t", "EdgeDevConfig", "/nonexistent/file.bin"],
        None,
    );
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/file.bin"));
}

#[test]
fn types_lists_all_top_level_messages() {
    let out = evectl(&["types"], None);
    let text = String::from_utf8(out.stdout).unwrap();
    for ty in [
        "org.lfedge.eve.auth.AuthContainer",
        "org.lfedge.eve.config.EdgeDevConfig",
        "org.lfedge.eve.info.ZInfoMsg",
        "org.lfedge.eve.metrics.ZMetricMsg",
        "org.lfedge.eve.logs.LogBundle",
        "org.lfedge.eve.flowlog.FlowMessage",
        "org.lfedge.eve.attest.ZAttestReq",
        "org.lfedge.eve.uuid.UuidResponse",
    ] {
        assert!(text.lines().any(|l| l == ty), "{ty} missing");
    }
}

#[test]
fn bench_reports_four_operations() {
    let results = evectl::bench::run_proto_bench(3);
    assert_eq!(results.len(), 4);
    let cfg = evectl::bench::realistic_config();
    assert_eq!(
        (
            cfg.apps.len(),
            cfg.network_instances.len(),
            cfg.volumes.len()
        ),
        (10, 5, 20)
    );
}
