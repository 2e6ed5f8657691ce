//! Golden vectors produced by Google's Python protobuf runtime from our
//! `.proto` files (see `testdata/gen_golden.py`). Each one must decode, carry
//! the expected values, and re-encode to the identical bytes.

use eve_proto::Message;
use eve_proto::{
    attest, auth, certs, common, config, flowlog, hardwarehealth, info, logs, metrics, profile,
    proxy, register, uuid,
};

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

/// Like [`check`], for messages whose oneof members have higher numbers than
/// a field outside the oneof (`ZInfoMsg.atTimeStamp` is 6, `niinfo` 12):
/// prost writes a oneof where its lowest number would go, Google's runtimes
/// write every field in number order. Both are valid encodings; the
/// re-encoding must hold the same top-level fields with the same bytes, and
/// be identical once put in number order.
fn check_number_ordered<T: Message + Default + PartialEq + std::fmt::Debug>(name: &str) -> T {
    let bytes = golden(name);
    let msg = T::decode(bytes.as_slice()).unwrap_or_else(|e| panic!("{name}: {e}"));
    let ours = msg.encode_to_vec();
    assert_ne!(ours, bytes, "{name}: no reordering: use check()");
    assert_eq!(in_number_order(&ours), bytes, "{name}: re-encoding differs");
    assert_eq!(T::decode(ours.as_slice()).unwrap(), msg);
    msg
}

/// The top-level fields of an encoded message, stably sorted by number.
fn in_number_order(mut bytes: &[u8]) -> Vec<u8> {
    fn varint(bytes: &mut &[u8]) -> u64 {
        let mut value = 0;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = bytes.split_first().expect("truncated varint");
            *bytes = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                break;
            }
        }
        value
    }
    let mut fields: Vec<(u64, &[u8])> = Vec::new();
    while !bytes.is_empty() {
        let start = bytes;
        let key = varint(&mut bytes);
        let body = match key & 7 {
            0 => {
                varint(&mut bytes);
                0
            }
            1 => 8,
            2 => usize::try_from(varint(&mut bytes)).unwrap(),
            5 => 4,
            other => panic!("wire type {other} in a golden vector"),
        };
        bytes = &bytes[body..];
        fields.push((key >> 3, &start[..start.len() - bytes.len()]));
    }
    fields.sort_by_key(|(number, _)| *number);
    fields
        .into_iter()
        .flat_map(|(_, record)| record.to_vec())
        .collect()
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
    // Empty upstream: the device is known by the envelope's certificate.
    let q: uuid::UuidRequest = check("uuid_request");
    assert!(golden("uuid_request").is_empty());
    assert_eq!(q, uuid::UuidRequest::default());
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
    let n: info::ZInfoMsg = check_number_ordered("info_network_instance");
    assert!(
        matches!(n.info_content, Some(info::z_info_msg::InfoContent::Niinfo(ref x)) if x.mtu == 1500)
    );
    let v: info::ZInfoMsg = check_number_ordered("info_volume");
    assert!(
        matches!(v.info_content, Some(info::z_info_msg::InfoContent::Vinfo(ref x)) if x.state() == info::ZSwState::CreatedVolume)
    );
    let c: info::ZInfoMsg = check_number_ordered("info_content_tree");
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

#[test]
fn device_config_beyond_apps() {
    let cfg: config::EdgeDevConfig = check("edge_dev_config");
    let port = &cfg.system_adapter_list[0];
    assert_eq!(port.shared_labels, ["uplink", "portfwd"]);
    assert!(port.allow_local_modifications);
    let net = &cfg.networks[0];
    assert_eq!(net.dns[0].address, ["192.168.1.5"]);
    assert_eq!(net.ip.as_ref().unwrap().more_ntp, ["ntp.local"]);
    assert_eq!(cfg.vlans[0].vlan_id, 100);
    let bond = &cfg.bonds[0];
    assert_eq!(bond.bond_mode(), common::BondMode::BondMode8023ad);
    assert!(matches!(
        bond.monitoring,
        Some(config::bond_adapter::Monitoring::Mii(m)) if m.updelay == 200
    ));
    let edgeview = cfg.edgeview.as_ref().unwrap();
    assert!(edgeview.dev_policy.unwrap().allow_dev);
    assert_eq!(edgeview.generation_id, 3);
    let disks = cfg.disks.as_ref().unwrap();
    assert_eq!(disks.array_type(), config::DisksArrayType::Raid1);
    assert_eq!(disks.disks[1].disk.as_ref().unwrap().serial, "NVME-1");
    let envelope = &cfg.patch_envelopes[0];
    assert_eq!(envelope.version.as_deref(), Some("2"));
    assert_eq!(envelope.action(), config::EvePatchEnvelopeAction::Activate);
    let artifact = &envelope.artifacts[0];
    assert_eq!(artifact.artifact_meta_data.as_deref(), Some("pem bundle"));
    assert!(matches!(
        &artifact.binary_blob,
        Some(config::eve_binary_artifact::BinaryBlob::Inline(i)) if i.file_name_to_use == "ca.pem"
    ));
    let cluster = cfg.cluster.as_ref().unwrap();
    assert_eq!(
        cluster.cluster_type(),
        config::ClusterType::ReplicatedStorage
    );
    assert_eq!(
        cluster.load_balancer_service.as_ref().unwrap().interfaces[0].address_cidrs,
        ["10.244.0.128/28"]
    );
    assert_eq!(cfg.pnacs[0].eap_method(), config::EapMethod::Tls);
    let csr = cfg.scep_profiles[0].csr_profile.as_ref().unwrap();
    assert_eq!(csr.key_type(), config::KeyType::EcdsaP256);
    assert_eq!(csr.hash_algorithm(), config::HashAlgorithm::Sha256);
    assert_eq!(cfg.loc_config.unwrap().loc_url, "https://loc.example");
}

#[test]
fn app_instance() {
    let app: config::AppInstanceConfig = check("app_instance");
    // 26 upstream (24 is reserved there).
    assert_eq!(app.designated_node_id, "node-2");
    assert_eq!(app.runtime_type(), config::AppRuntimeType::Docker);
    assert_eq!(app.affinity(), config::AffinityType::Required);
    assert_eq!(
        app.meta_data_type(),
        config::MetaDataType::MetaDataDriveMultipart
    );
    let vm = app.fixedresources.as_ref().unwrap();
    assert_eq!(
        (vm.memory, vm.vmm_maxmem, vm.cpus.as_str()),
        (2_097_152, 65_536, "2-3")
    );
    assert_eq!(vm.boot_mode(), config::VmBootMode::Uefi);
    assert_eq!(vm.boot_order(), common::BootOrder::Nousb);
    assert!(vm.disable_vtpm && vm.enforce_network_interface_order);
    let nic = &app.interfaces[0];
    assert_eq!((nic.access_vlan_id, nic.interface_order), (100, 1));
    assert!(nic.allow_to_discover);
    assert_eq!(nic.acls[0].actions[0].app_port, 502);
    let vf = app.adapters[0].eth_vf.as_ref().unwrap();
    assert_eq!((vf.index, vf.vlan_id), (1, 20));
    let snapshot = app.snapshot.as_ref().unwrap();
    assert_eq!(snapshot.max_snapshots, 2);
    assert_eq!(
        snapshot.snapshots[0].r#type(),
        config::SnapshotType::AppUpdate
    );
    assert_eq!(app.patch_ref.as_ref().unwrap().name, "ca-bundle");
    assert_eq!(
        app.restart.as_ref().unwrap().ops_time,
        "2025-01-01T00:00:00Z"
    );
    assert_eq!(app.volume_ref_list[0].generation_count, 2);
}

#[test]
fn storage_objects() {
    let ds: config::DatastoreConfig = check("datastore");
    assert_eq!(ds.d_type(), config::DsType::DsS3);
    assert_eq!(ds.region, "eu-central-1");
    assert!(ds.ds_cert_pem[0].starts_with(b"-----BEGIN CERTIFICATE-----"));
    assert_eq!(ds.cipher_data.as_ref().unwrap().cipher_context_id, "ctx-1");
    let tree: config::ContentTree = check("content_tree");
    assert_eq!(tree.iformat(), config::Format::Qcow2);
    assert_eq!(tree.max_size_bytes, 8 << 30);
    assert_eq!(tree.ds_ids_list.len(), 2);
    assert_eq!(tree.custom_meta_data, "eyJ0aWVyIjoxfQ==");
    assert_eq!(tree.siginfo.as_ref().unwrap().signature.len(), 64);
    assert_eq!(tree.designated_node_id, "node-2");
    let volume: config::Volume = check("volume");
    assert!(
        volume
            .protocols()
            .eq([config::VolumeAccessProtocols::Vap9p])
    );
    assert_eq!(volume.target(), config::Target::Disk);
    assert!(volume.clear_text);
    let origin = volume.origin.as_ref().unwrap();
    assert_eq!(origin.download_content_tree_id, tree.uuid);
    let os: config::BaseOs = check("baseos");
    assert_eq!(os.retry_update.as_ref().unwrap().counter, 2);
    assert_eq!(os.base_os_version, "14.5.1-kvm-amd64");
}

#[test]
fn network_instance_and_acls() {
    let ni: config::NetworkInstanceConfig = check("network_instance");
    assert_eq!(ni.inst_type(), config::ZNetworkInstType::ZnetInstLocal);
    assert_eq!(ni.mtu, 1400);
    assert!(ni.propagate_connected_routes && ni.forward_lldp);
    assert_eq!(ni.dns[0].host_name, "historian.plant.local");
    let route = &ni.static_routes[0];
    assert!(route.prefer_lower_cost);
    let probe = route.probe.as_ref().unwrap().custom_probe.as_ref().unwrap();
    assert_eq!(probe.probe_method(), common::ConnectivityProbeMethod::Tcp);
    assert_eq!(probe.probe_endpoint.as_ref().unwrap().port, 443);
    assert_eq!(ni.vlan_access_ports[0].access_port, "eth2");
    assert_eq!(ni.stp.as_ref().unwrap().ports_with_bpdu_guard, "eth2");
    assert_eq!(ni.ip.as_ref().unwrap().dhcp(), common::DhcpType::Static);

    let nic: config::NetworkAdapter = check("acl");
    let rules: Vec<_> = nic
        .acls
        .iter()
        .map(|r| (r.id, r.dir(), r.matches[0].r#type.as_str()))
        .collect();
    assert_eq!(
        rules,
        [
            (1, config::AceDirection::Egress, "host"),
            (2, config::AceDirection::Both, "protocol"),
            (3, config::AceDirection::Ingress, "ip"),
            (4, config::AceDirection::Ingress, "protocol"),
        ]
    );
    let limit = &nic.acls[1].actions[0];
    assert_eq!(
        (
            limit.limit,
            limit.limitrate,
            limit.limitunit.as_str(),
            limit.limitburst
        ),
        (true, 10, "s", 20)
    );
    assert!(nic.acls[2].actions[0].drop);
}

#[test]
fn object_info() {
    let a: info::ZInfoMsg = check("info_app");
    let Some(info::z_info_msg::InfoContent::Ainfo(app)) = a.info_content else {
        panic!("not an app info");
    };
    assert_eq!(a.at_time_stamp.unwrap().seconds, 1_735_689_605);
    assert_eq!(app.software_list[0].download_progress, 100);
    assert_eq!(
        app.network[0].dns.as_ref().unwrap().dn_sservers,
        ["10.1.0.1"]
    );
    assert_eq!(app.app_err[0].entities[0].entity(), info::Entity::Volume);
    assert_eq!(app.snapshots[0].r#type(), info::SnapshotType::AppUpdate);
    assert!(app.cluster_app_running);

    let n: info::ZInfoMsg = check_number_ordered("info_network_instance");
    let Some(info::z_info_msg::InfoContent::Niinfo(ni)) = n.info_content else {
        panic!("not a network instance info");
    };
    assert_eq!(ni.ip_assignments[0].ip_address, ["10.1.0.2"]);
    assert_eq!(ni.vifs[0].vif_name, "nbu1x1");
    assert_eq!(
        ni.ip_routes[1].gateway_app,
        "11111111-2222-3333-4444-555555555555"
    );
    assert_eq!(ni.network_err[0].entities[0].entity(), info::Entity::Port);
    assert_eq!(ni.state(), info::ZNetworkInstanceState::ZnetinstStateOnline);

    let v: info::ZInfoMsg = check_number_ordered("info_volume");
    let Some(info::z_info_msg::InfoContent::Vinfo(volume)) = v.info_content else {
        panic!("not a volume info");
    };
    let usage = volume.usage.unwrap();
    assert_eq!(
        (usage.ref_count, usage.create_time.unwrap().seconds),
        (1, 1_735_689_050)
    );
    assert_eq!(volume.resources.unwrap().cur_size_bytes, 1 << 20);

    let c: info::ZInfoMsg = check_number_ordered("info_content_tree");
    let Some(info::z_info_msg::InfoContent::Cinfo(tree)) = c.info_content else {
        panic!("not a content tree info");
    };
    assert_eq!(tree.resources.unwrap().cur_size_bytes, 1 << 26);
    assert_eq!(
        tree.err.unwrap().entities[0].entity(),
        info::Entity::ContentBlob
    );
}

#[test]
fn device_info_names_ports_storage() {
    let m: info::ZInfoMsg = check("info_device");
    let Some(info::z_info_msg::InfoContent::Dinfo(d)) = m.info_content else {
        panic!("not a device info");
    };
    assert_eq!(
        (
            d.device_name.as_str(),
            d.project_id.as_str(),
            d.enterprise_name.as_str()
        ),
        ("edge-001", "proj-1", "ACME Corp")
    );
    let eth0 = &d.network[0];
    let dns = eth0.dns.as_ref().unwrap();
    assert_eq!(dns.dn_sservers, ["1.1.1.1", "8.8.8.8"]);
    assert_eq!(dns.dn_sdomain, "example.org");
    assert_eq!(eth0.location.as_ref().unwrap().city, "Berlin");
    assert_eq!(eth0.alias, "wan");
    assert_eq!(d.storage_list[0].total, 60_000);
    let port_status = &d.system_adapter.as_ref().unwrap().status[0];
    let port = &port_status.ports[0];
    assert_eq!(
        port.usage(),
        common::PhyIoMemberUsage::PhyIoUsageMgmtAndApps
    );
    assert_eq!(
        port.config_source.unwrap().origin(),
        common::NetworkConfigOrigin::Controller
    );
    assert!(port.pnac_status.as_ref().unwrap().enabled);
    assert_eq!(
        port.bond_status.as_ref().unwrap().mode(),
        common::BondMode::ActiveBackup
    );
    let pool = &d.storage_info[0];
    assert_eq!(pool.storage_type(), info::StorageTypeInfo::Zfs);
    assert_eq!(pool.compression_ratio, 1.5);
    assert_eq!(pool.children[0].g_u_i_d, 1_234_567_890_123);
    assert_eq!(
        pool.children[0].disks[1].disk_name.as_ref().unwrap().serial,
        "NVME-1"
    );
    assert_eq!(d.api_capability(), info::ApiCapability::ReportTpmEventlog);
    let items = d.config_item_status.as_ref().unwrap();
    assert_eq!(items.config_items["timer.config.interval"].value, "60");
    assert_eq!(items.unknown_config_items["no.such.item"].error, "unknown");
    assert_eq!(d.enrolled_certs[0].status(), info::CertStatus::Available);
    assert_eq!(d.assignable_adapters[0].members, ["USB0"]);
}

#[test]
fn hardware_inventory_and_health() {
    let m: info::ZInfoMsg = check_number_ordered("info_hardware");
    let Some(info::z_info_msg::InfoContent::Hwinfo(hw)) = m.info_content else {
        panic!("not a hardware info");
    };
    assert_eq!(hw.kernel_version, "6.1.112");
    let inv = hw.inventory.unwrap();
    let nic = &inv.pci_devices[1];
    assert_eq!((nic.vendor_id, nic.device_id), (0x8086, 0x1533));
    assert_eq!(nic.parent_pci_device_address.unwrap().device, 0x1c);
    // The root port has no parent.
    assert_eq!(inv.pci_devices[0].parent_pci_device_address, None);
    let usb = &inv.usb_devices[0];
    let parent = usb.parent.as_ref().unwrap().pci_parent.unwrap();
    assert_eq!((parent.bus, parent.device), (0, 0x14));
    assert_eq!(usb.bus_port.as_ref().unwrap().port, "2.1");
    assert_eq!(inv.serial_devices[0].irq, 4);
    assert_eq!(
        inv.network_devices[0].r#type(),
        info::NetworkDeviceType::Ethernet
    );
    assert_eq!(inv.bios.as_ref().unwrap().attributes["secure_boot"], "off");
    assert_eq!(inv.total_memory_bytes, 32 << 30);
    assert_eq!(inv.tpm.as_ref().unwrap().spec_version, "2.0");
    assert_eq!(inv.misc["chassis"], "fanless");

    let health: hardwarehealth::ZHardwareHealth = check("hardware_health");
    let mc = &health.mr.as_ref().unwrap().memory_controllers[0];
    assert_eq!((mc.ce_count, mc.ranks[0].ce_count), (3, 3));
    assert_eq!(
        health.disks[0].smart_attr[0].attribute_name,
        "Reallocated_Sector_Ct"
    );
}

#[test]
fn process_newlog_and_storage_metrics() {
    let m: metrics::ZMetricMsg = check("metrics");
    let process = &m.pr[0];
    assert_eq!((process.pid, process.name.as_str()), (812, "zedbox"));
    assert_eq!((process.user_time, process.memory_percent), (12.5, 0.75));
    let Some(metrics::z_metric_msg::MetricContent::Dm(dm)) = m.metric_content else {
        panic!("no device metrics");
    };
    let newlog = dm.newlog.as_ref().unwrap();
    assert_eq!(newlog.top10_input_sources["zedagent"], 40);
    assert_eq!(
        newlog.device_metrics.as_ref().unwrap().num_gzip_file_sent,
        12
    );
    let pool = &dm.storage_metrics[0];
    assert_eq!(pool.zpool_metrics.as_ref().unwrap().total, 1 << 36);
    assert_eq!(pool.disks[0].metrics.as_ref().unwrap().ops_count_write, 77);
    assert_eq!(pool.zvols[0].alloc, 1 << 20);
    assert_eq!(
        dm.flowlog.as_ref().unwrap().flows.as_ref().unwrap().drops,
        1
    );
    assert_eq!(dm.cellular[0].signal_strength.as_ref().unwrap().rssi, -70);
    let f: flowlog::FlowMessage = check("flow_message");
    assert_eq!(f.flows[1].action(), flowlog::AclAction::ActionDrop);
    assert_eq!(f.flows[1].end_time.unwrap().seconds, 1_735_689_606);
}

#[test]
fn local_profile_server_and_scep() {
    let info: profile::NetworkInfo = check("lps_network_info");
    let port = &info.latest_config[0];
    assert!(port.local_modifications_allowed);
    assert_eq!(port.ip_version(), profile::IpVersion::Ipv4Only);
    let Some(profile::network_port_config::WirelessConfig::CellularConfig(cell)) =
        &port.wireless_config
    else {
        panic!("no cellular config");
    };
    assert_eq!(cell.apn, "internet");
    assert_eq!(
        cell.default_bearer_auth.as_ref().unwrap().auth_protocol(),
        common::CellularAuthProtocol::Chap
    );
    assert!(info.config_testing.unwrap().controller_reachable);
    assert!(info.port_status[0].link_up);

    let req: proxy::ScepProxyRequest = check("scep_proxy_request");
    assert_eq!(req.operation(), proxy::ScepOperation::PkiMessage);
    assert_eq!(req.http_method(), proxy::HttpMethod::Post);
    assert_eq!(req.http_header_fields[0].name, "Content-Type");
}
