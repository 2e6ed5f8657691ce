//! Golden vectors produced by Google's Python protobuf runtime from our
//! `.proto` files (see `testdata/gen_golden.py`). Each one must decode, carry
//! the expected values, and re-encode to the identical bytes.

use eve_proto::Message;
use eve_proto::{attest, auth, certs, config, flowlog, info, logs, metrics, register, uuid};

fn golden(name: &str) -> Vec<u8> {
    let path = format!("{}/testdata/golden/{name}.bin", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Decodes `name` as `T`, checks the re-encoding is byte-identical, returns it.
fn check<T: Message + Default + PartialEq + std::fmt::Debug>(name: &str) -> T {
    let bytes = golden(name);
    let msg = T::decode(bytes.as_slice()).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(msg.encode_to_vec(), bytes, "{name}: re-encoding differs");
    assert_eq!(T::decode(msg.encode_to_vec().as_slice()).unwrap(), msg);
    msg
}

#[test]
fn edge_dev_config() {
    let cfg: config::EdgeDevConfig = check("edge_dev_config");
    assert_eq!(cfg.id.as_ref().unwrap().version, "42");
    let app = &cfg.apps[0];
    assert_eq!(app.displayname, "nginx");
    assert_eq!(app.fixedresources.as_ref().unwrap().irqs, [5, 7]);
    let ace = &app.interfaces[0].acls[0];
    assert_eq!(ace.dir(), config::AceDirection::Ingress);
    assert_eq!(ace.actions[0].app_port, 80);
    assert_eq!(app.volume_ref_list[0].mount_dir, "/data");
    assert_eq!(
        cfg.networks[0].ip.as_ref().unwrap().dns,
        ["1.1.1.1", "8.8.8.8"]
    );
    assert_eq!(cfg.datastores[0].id, "dddddddd-0000-0000-0000-000000000001");
    assert_eq!(cfg.device_io_list[0].phyaddrs["pcilong"], "0000:02:00.0");
    assert_eq!(
        cfg.network_instances[0].inst_type(),
        config::ZNetworkInstType::ZnetInstLocal
    );
    assert_eq!(cfg.content_info[0].iformat(), config::Format::Container);
    assert_eq!(
        cfg.volumes[0].origin.as_ref().unwrap().r#type(),
        config::VolumeContentOriginType::VcotDownload
    );
    assert_eq!(
        cfg.baseos.as_ref().unwrap().base_os_version,
        "14.5.0-kvm-amd64"
    );
    assert_eq!(cfg.config_timestamp.unwrap().nanos, 500);
    assert_eq!(cfg.cipher_contexts[0].context_id, "ctx-1");
}

#[test]
fn config_request_response() {
    let req: config::ConfigRequest = check("config_request");
    assert_eq!(req.config_hash, "abc123");
    let resp: config::ConfigResponse = check("config_response");
    assert_eq!(resp.config.unwrap().device_name, "edge-001");
}

#[test]
fn auth_and_identity() {
    let c: auth::AuthContainer = check("auth_container");
    assert_eq!(c.signature_hash.len(), 64);
    assert_eq!(c.sender_cert_hash.len(), 32);
    let r: register::ZRegisterMsg = check("register");
    assert_eq!(r.serial, "SN-0001");
    let q: uuid::UuidRequest = check("uuid_request");
    assert!(q.device_cert.starts_with(b"-----BEGIN CERTIFICATE-----"));
    let u: uuid::UuidResponse = check("uuid_response");
    assert_eq!(u.product_name, "Edge-1");
    let zc: certs::ZControllerCert = check("controller_certs");
    assert_eq!(
        zc.certs[1].r#type(),
        certs::ZCertType::CertTypeControllerSigning
    );
    assert!(zc.certs[0].attributes.unwrap().is_mutable);
}

#[test]
fn attestation() {
    let req: attest::ZAttestReq = check("attest_request");
    let quote = req.quote.unwrap();
    assert_eq!(quote.pcr_values.len(), 3);
    assert_eq!(quote.gps_info.unwrap().latitude, 52.52);
    assert_eq!(req.storage_keys.unwrap().keys[0].key, b"sealed-key");
    let resp: attest::ZAttestResponse = check("attest_response");
    assert_eq!(
        resp.quote_resp.unwrap().response(),
        attest::ZAttestResponseCode::Success
    );
}

#[test]
fn info_messages() {
    let m: info::ZInfoMsg = check("info_device");
    let Some(info::z_info_msg::InfoContent::Dinfo(d)) = m.info_content else {
        panic!("not a device info");
    };
    assert_eq!(d.power_cycle_counter, -1);
    assert_eq!(d.state(), info::ZDeviceState::ZdeviceStateOnline);
    assert_eq!(d.sw_list[0].user_status(), info::BaseOsStatus::Updated);
    assert_eq!(d.hsm_status(), info::HwSecurityModuleStatus::Enabled);
    assert_eq!(d.hsm_info, "TPM 2.0");
    // 255: the enum's one value out of sequence.
    assert_eq!(d.last_boot_reason(), info::BootReason::ParseFail);
    let attestation = d.attestation_info.as_ref().unwrap();
    assert_eq!(attestation.state(), info::AttestationState::RestartWait);
    let error = attestation.error.as_ref().unwrap();
    assert_eq!(error.description, "quote refused");
    assert_eq!(error.timestamp.unwrap().nanos, 7);
    assert_eq!(error.entities[0].entity(), info::Entity::Attestation);
    let a: info::ZInfoMsg = check("info_app");
    assert!(
        matches!(a.info_content, Some(info::z_info_msg::InfoContent::Ainfo(ref x)) if x.state() == info::ZSwState::Running)
    );
    let n: info::ZInfoMsg = check("info_network_instance");
    assert!(
        matches!(n.info_content, Some(info::z_info_msg::InfoContent::Niinfo(ref x)) if x.mtu == 1500)
    );
    let v: info::ZInfoMsg = check("info_volume");
    assert!(
        matches!(v.info_content, Some(info::z_info_msg::InfoContent::Vinfo(ref x)) if x.state() == info::ZSwState::CreatedVolume)
    );
    let c: info::ZInfoMsg = check("info_content_tree");
    assert!(
        matches!(c.info_content, Some(info::z_info_msg::InfoContent::Cinfo(ref x)) if x.component_sha_list.len() == 2)
    );
}

#[test]
fn metrics_logs_flows() {
    let m: metrics::ZMetricMsg = check("metrics");
    let Some(metrics::z_metric_msg::MetricContent::Dm(dm)) = m.metric_content else {
        panic!("no device metrics");
    };
    assert_eq!(dm.device_memory.unwrap().used_eve_mb, 700);
    let z = &dm.zedcloud[0];
    assert_eq!(
        (z.if_name.as_str(), z.failures, z.success),
        ("eth0", 3, 120)
    );
    assert_eq!(z.auth_verify_failure, 2);
    assert_eq!(z.last_success.unwrap().nanos, 250_000_000);
    let url = &z.url_metrics[0];
    assert_eq!(
        (url.try_msg_count, url.sent_byte_count, url.recv_byte_count),
        (3, 10_000, 1 << 40)
    );
    assert_eq!((url.total_time_spent, url.sess_resume_count), (4567, 1));
    use metrics::metric_item::MetricItemValue as V;
    let values: Vec<_> = dm
        .metric_items
        .iter()
        .map(|i| (i.key.as_str(), i.r#type(), i.metric_item_value.clone()))
        .collect();
    assert_eq!(
        values,
        [
            (
                "zedagent.rejected.bad_signature",
                metrics::MetricItemType::MetricItemCounter,
                Some(V::Uint64Value(1 << 63))
            ),
            (
                "lte-up",
                metrics::MetricItemType::MetricItemState,
                Some(V::BoolValue(true))
            ),
            (
                "essid",
                metrics::MetricItemType::MetricItemOther,
                Some(V::StringValue("net".into()))
            ),
            (
                "temp",
                metrics::MetricItemType::MetricItemGauge,
                Some(V::FloatValue(41.5))
            ),
            // A oneof member set to zero is still present.
            (
                "uptime",
                metrics::MetricItemType::MetricItemGauge,
                Some(V::Uint32Value(0))
            ),
        ]
    );
    let log = dm.log.as_ref().unwrap();
    assert_eq!(
        (
            log.num_device_events_sent,
            log.num_device_bundles_sent,
            log.num4xx_responses
        ),
        (500, 7, 1)
    );
    assert_eq!(
        (log.total_device_log_input, log.num_device_event_errors),
        (520, 19)
    );
    assert_eq!(log.num_device_bundle_proto_bytes_sent, 65_536);
    assert_eq!(
        log.last_device_bundle_send_time.unwrap().seconds,
        1_735_689_599
    );
    assert_eq!(log.input_sources["nim"], 220);
    assert_eq!(m.am[0].app_memory.unwrap().allocated_mb, 512);
    assert_eq!(m.nm[0].network_stats.unwrap().rx.unwrap().total_bytes, 4096);
    assert_eq!(m.vm[0].used_bytes, 1 << 20);
    let l: logs::LogBundle = check("log_bundle");
    assert_eq!(l.log[0].tags["app"], "nginx");
    assert_eq!(l.log[0].timestamp.unwrap().nanos, 123_456_789);
    let f: flowlog::FlowMessage = check("flow_message");
    assert_eq!(f.flows[0].flow.as_ref().unwrap().dest_port, 443);
    assert_eq!(f.flows[0].action(), flowlog::AclAction::ActionAccept);
    assert_eq!(f.dns_reqs[0].addrs, ["93.184.216.34"]);
}

/// prost drops unknown fields (documented in README); decoding must still
/// succeed and the known fields must be intact.
#[test]
fn unknown_fields_are_tolerated() {
    let mut bytes = golden("edge_dev_config");
    // field 999 varint, field 1000 length-delimited, field 1001 fixed32/64.
    bytes.extend_from_slice(&[0xb8, 0x3e, 0x2a]);
    bytes.extend_from_slice(&[0xc2, 0x3e, 0x03, b'a', b'b', b'c']);
    bytes.extend_from_slice(&[0xcd, 0x3e, 1, 2, 3, 4]);
    bytes.extend_from_slice(&[0xd1, 0x3e, 1, 2, 3, 4, 5, 6, 7, 8]);
    let cfg = config::EdgeDevConfig::decode(bytes.as_slice()).unwrap();
    assert_eq!(cfg.encode_to_vec(), golden("edge_dev_config"));
}

/// Every generated message survives encode/decode of a populated value.
#[test]
fn round_trip_built_messages() {
    let cfg = config::EdgeDevConfig::decode(golden("edge_dev_config").as_slice()).unwrap();
    let parts: Vec<Vec<u8>> = vec![
        cfg.apps[0].encode_to_vec(),
        cfg.apps[0].interfaces[0].encode_to_vec(),
        cfg.apps[0].interfaces[0].acls[0].encode_to_vec(),
        cfg.networks[0].encode_to_vec(),
        cfg.network_instances[0].encode_to_vec(),
        cfg.datastores[0].encode_to_vec(),
        cfg.content_info[0].encode_to_vec(),
        cfg.volumes[0].encode_to_vec(),
        cfg.system_adapter_list[0].encode_to_vec(),
        cfg.device_io_list[0].encode_to_vec(),
    ];
    assert!(parts.iter().all(|p| !p.is_empty()));
    assert_eq!(
        config::AppInstanceConfig::decode(parts[0].as_slice()).unwrap(),
        cfg.apps[0]
    );
    assert_eq!(
        config::Volume::decode(parts[7].as_slice()).unwrap(),
        cfg.volumes[0]
    );
    assert_eq!(
        config::PhysicalIo::decode(parts[9].as_slice()).unwrap(),
        cfg.device_io_list[0]
    );
}
