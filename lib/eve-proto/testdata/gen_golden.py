#!/usr/bin/env python3
"""Regenerates the golden vectors under lib/eve-proto/testdata/.

Independent of our Rust code: messages are built and serialized by Google's
Python protobuf runtime (compiled from our .proto files by the protoc bundled
in grpcio-tools), and all cryptography uses the Python `cryptography` package
plus a small textbook P-256 implementation for the ECDH point.

    pip install protobuf grpcio-tools cryptography
    python3 lib/eve-proto/testdata/gen_golden.py

Outputs (all committed, so `cargo test` needs no Python):
  golden/<name>.bin   binary protobuf, deterministic serialization
  golden/<name>.json  the same message in protobuf JSON mapping
  golden/index.json   name -> fully-qualified message type
  pki/*.pem           controller chain, device identity, ECDH keys
  signing/*           AuthContainer and raw-signature vectors
  cipher/*            CipherBlock vector
"""

import base64
import datetime
import hashlib
import importlib
import json
import os
import subprocess
import sys
import tempfile

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

try:  # CFB moved to the "decrepit" module in cryptography 47.
    from cryptography.hazmat.decrepit.ciphers.modes import CFB
except ImportError:
    from cryptography.hazmat.primitives.ciphers.modes import CFB
from cryptography.x509.oid import NameOID
from google.protobuf import json_format

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_ROOT = os.path.join(HERE, "..", "proto")


def compile_protos():
    out = tempfile.mkdtemp(prefix="eve_py_")
    files = []
    for d, _, names in os.walk(PROTO_ROOT):
        files += [os.path.relpath(os.path.join(d, n), PROTO_ROOT) for n in names if n.endswith(".proto")]
    import grpc_tools
    wkt = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    subprocess.check_call(
        [sys.executable, "-m", "grpc_tools.protoc", "-I", PROTO_ROOT, "-I", wkt, "--python_out", out] + sorted(files)
    )
    # Regular packages, so that `profile` (also a standard library module)
    # resolves to the generated one.
    for d, _, _ in os.walk(out):
        if d != out:
            open(os.path.join(d, "__init__.py"), "a").close()
    sys.path.insert(0, out)


compile_protos()
auth = importlib.import_module("auth.auth_pb2")
register = importlib.import_module("register.register_pb2")
eveuuid = importlib.import_module("eveuuid.eveuuid_pb2")
certs = importlib.import_module("certs.certs_pb2")
attest = importlib.import_module("attest.attest_pb2")
common = importlib.import_module("evecommon.evecommon_pb2")
acipher = importlib.import_module("evecommon.acipherinfo_pb2")
devmodelcommon = importlib.import_module("evecommon.devmodelcommon_pb2")
netcmn = importlib.import_module("evecommon.netcmn_pb2")
devconfig = importlib.import_module("config.devconfig_pb2")
info = importlib.import_module("info.info_pb2")
metrics = importlib.import_module("metrics.metrics_pb2")
logs = importlib.import_module("logs.log_pb2")
flowlog = importlib.import_module("flowlog.flowlog_pb2")
appconfig = importlib.import_module("config.appconfig_pb2")
storage = importlib.import_module("config.storage_pb2")
netinst = importlib.import_module("config.netinst_pb2")
fw = importlib.import_module("config.fw_pb2")
baseos = importlib.import_module("config.baseosconfig_pb2")
hwhealth = importlib.import_module("hardwarehealth.hardware_health_pb2")
profile_network = importlib.import_module("profile.network_pb2")
netconfig = importlib.import_module("config.netconfig_pb2")
scep = importlib.import_module("config.scep_pb2")
patch_envelope = importlib.import_module("config.patch_envelope_pb2")
cluster = importlib.import_module("config.edge_node_cluster_pb2")
hardware = importlib.import_module("info.hardware_pb2")
info_common = importlib.import_module("info.common_pb2")
pnac = importlib.import_module("info.pnac_pb2")
info_cert = importlib.import_module("info.cert_pb2")
scep_proxy = importlib.import_module("proxy.scep_pb2")

INDEX = {}


def out_path(*parts):
    p = os.path.join(HERE, *parts)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    return p


def write(path, data):
    with open(out_path(path), "wb") as f:
        f.write(data)


def golden(name, msg):
    write(f"golden/{name}.bin", msg.SerializeToString(deterministic=True))
    write(f"golden/{name}.json", (json_format.MessageToJson(msg, indent=2, sort_keys=True) + "\n").encode())
    INDEX[name] = msg.DESCRIPTOR.full_name


def ts(msg_field, secs, nanos=0):
    msg_field.seconds = secs
    msg_field.nanos = nanos


# ---------------------------------------------------------------- PKI

NOT_BEFORE = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
NOT_AFTER = datetime.datetime(2044, 1, 1, tzinfo=datetime.timezone.utc)


def fixed_key(label):
    d = int.from_bytes(hashlib.sha256(label.encode()).digest(), "big") % (2**256 - 2**224)
    return ec.derive_private_key(d, ec.SECP256R1())


def make_cert(cn, key, issuer_cn, issuer_key, serial, ca):
    b = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_cn)]))
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(NOT_BEFORE)
        .not_valid_after(NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    return b.sign(issuer_key, hashes.SHA256(), ecdsa_deterministic=True)


def pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


root_key = fixed_key("root")
inter_key = fixed_key("intermediate")
sign_key = fixed_key("signing")
ctrl_ecdh_key = fixed_key("controller-ecdh")
dev_key = fixed_key("device")
dev_ecdh_key = fixed_key("device-ecdh")
other_root_key = fixed_key("other-root")

root = make_cert("EVE Test Root", root_key, "EVE Test Root", root_key, 1, True)
inter = make_cert("EVE Test Intermediate", inter_key, "EVE Test Root", root_key, 2, True)
signing = make_cert("EVE Test Signing", sign_key, "EVE Test Intermediate", inter_key, 3, False)
ctrl_ecdh = make_cert("EVE Test ECDH", ctrl_ecdh_key, "EVE Test Intermediate", inter_key, 4, False)
other_root = make_cert("EVE Test Root", other_root_key, "EVE Test Root", other_root_key, 5, True)
device = make_cert("device-0001", dev_key, "device-0001", dev_key, 6, False)

write("pki/root.pem", pem(root))
write("pki/other_root.pem", pem(other_root))
write("pki/intermediate.pem", pem(inter))
write("pki/signing.pem", pem(signing))
write("pki/signing_key.pem", key_pem(sign_key))
write("pki/controller_ecdh.pem", pem(ctrl_ecdh))
write("pki/controller_ecdh_key.pem", key_pem(ctrl_ecdh_key))
write("pki/device.pem", pem(device))
write("pki/device_key.pem", key_pem(dev_key))
write("pki/device_ecdh_key.pem", key_pem(dev_ecdh_key))


def zcert(cert, ctype):
    z = certs.ZCert()
    z.hashAlgo = common.HASH_ALGORITHM_SHA256_32BYTES
    z.certHash = hashlib.sha256(pem(cert)).digest()
    z.type = ctype
    z.cert = pem(cert)
    z.attributes.is_mutable = True
    return z


zc = certs.ZControllerCert()
zc.certs.append(zcert(inter, certs.CERT_TYPE_CONTROLLER_INTERMEDIATE))
zc.certs.append(zcert(signing, certs.CERT_TYPE_CONTROLLER_SIGNING))
zc.certs.append(zcert(ctrl_ecdh, certs.CERT_TYPE_CONTROLLER_ECDH_EXCHANGE))
golden("controller_certs", zc)

two = certs.ZControllerCert()
two.CopyFrom(zc)
two.certs.append(zcert(signing, certs.CERT_TYPE_CONTROLLER_SIGNING))
write("signing/two_signing_certs.bin", two.SerializeToString(deterministic=True))

# ---------------------------------------------------------------- messages

reg = register.ZRegisterMsg(pemCert=pem(device), serial="SN-0001", softSerial="soft-0001")
golden("register", reg)
golden("uuid_request", eveuuid.UuidRequest())
golden("uuid_response", eveuuid.UuidResponse(uuid="6ba7b810-9dad-11d1-80b4-00c04fd430c8", manufacturer="ACME", product_name="Edge-1"))

areq = attest.ZAttestReq(reqType=attest.ATTEST_REQ_QUOTE)
areq.quote.attestData = bytes(range(32))
areq.quote.signature = b"\x01" * 64
for i in range(3):
    areq.quote.pcr_values.add(index=i, hash_algo=attest.TPM_HASH_ALGO_SHA256, value=bytes([i]) * 32)
areq.quote.versions.add(version_type=attest.ATTEST_VERSION_TYPE_EVE, version="14.5.0-kvm-amd64")
areq.quote.gps_info.gps_input = attest.ATTEST_GPS_INPUT_PRESENT
areq.quote.gps_info.latitude = 52.52
areq.quote.gps_info.longitude = 13.405
areq.storage_keys.integrity_token = b"itoken"
areq.storage_keys.keys.add(key_type=attest.ATTEST_VOLUME_KEY_TYPE_VSK, key=b"sealed-key")
golden("attest_request", areq)

aresp = attest.ZAttestResponse(respType=attest.ATTEST_RESP_QUOTE_RESP)
aresp.quoteResp.response = attest.Z_ATTEST_RESPONSE_CODE_SUCCESS
aresp.quoteResp.integrity_token = b"itoken"
aresp.quoteResp.keys.add(key_type=attest.ATTEST_VOLUME_KEY_TYPE_VSK, key=b"sealed-key")
golden("attest_response", aresp)

# ---------------------------------------------------------------- cipher (ECDH P-256)

P = 2**256 - 2**224 + 2**192 + 2**96 - 1
A = P - 3


def ec_add(p1, p2):
    if p1 is None:
        return p2
    if p2 is None:
        return p1
    (x1, y1), (x2, y2) = p1, p2
    if x1 == x2 and (y1 + y2) % P == 0:
        return None
    if p1 == p2:
        lam = (3 * x1 * x1 + A) * pow(2 * y1, -1, P) % P
    else:
        lam = (y2 - y1) * pow(x2 - x1, -1, P) % P
    x3 = (lam * lam - x1 - x2) % P
    return (x3, (lam * (x1 - x3) - y1) % P)


def ec_mul(k, pt):
    acc = None
    while k:
        if k & 1:
            acc = ec_add(acc, pt)
        pt = ec_add(pt, pt)
        k >>= 1
    return acc


def pub_point(key):
    n = key.public_key().public_numbers()
    return (n.x, n.y)


# Controller side: Z = d_controller * Q_device.
zx, zy = ec_mul(ctrl_ecdh_key.private_numbers().private_value, pub_point(dev_ecdh_key))
aes_key = hashlib.sha256(zx.to_bytes(32, "big") + zy.to_bytes(32, "big")).digest()
iv = bytes(range(16, 32))
eb = acipher.EncryptionBlock(dsAPIKey="AKIAEXAMPLE", dsPassword="s3cr3t", wifiUserName="user", wifiPassword="wifi-pass", protectedUserData="#cloud-config\n")
clear = eb.SerializeToString(deterministic=True)
enc = Cipher(algorithms.AES(aes_key), CFB(iv)).encryptor()
cb = acipher.CipherBlock(
    cipherContextId="ctx-1",
    initialValue=iv,
    cipherData=enc.update(clear) + enc.finalize(),
    clearTextSha256=hashlib.sha256(clear).digest(),
)
cctx = acipher.CipherContext(
    contextId="ctx-1",
    hashScheme=common.HASH_ALGORITHM_SHA256_32BYTES,
    keyExchangeScheme=acipher.KEA_ECDH,
    encryptionScheme=acipher.SA_AES_256_CFB,
    deviceCertHash=hashlib.sha256(pem(device)).digest(),
    controllerCertHash=hashlib.sha256(pem(ctrl_ecdh)).digest(),
)
write("cipher/cipher_block.bin", cb.SerializeToString(deterministic=True))
write("cipher/cipher_context.bin", cctx.SerializeToString(deterministic=True))
write("cipher/clear_text.bin", clear)

# ---------------------------------------------------------------- EdgeDevConfig

cfg = devconfig.EdgeDevConfig()
cfg.id.uuid = "6ba7b810-9dad-11d1-80b4-00c04fd430c8"
cfg.id.version = "42"
app = cfg.apps.add(displayname="nginx", activate=True, userData="ZWNobyBoaQ==", remoteConsole=False)
app.uuidandversion.uuid = "11111111-2222-3333-4444-555555555555"
app.uuidandversion.version = "3"
app.fixedresources.memory = 524288
app.fixedresources.maxmem = 524288
app.fixedresources.vcpus = 2
app.fixedresources.virtualizationMode = 1
app.fixedresources.irqs.extend([5, 7])
nic = app.interfaces.add(name="eth0", networkId="aaaaaaaa-0000-0000-0000-000000000001", macAddress="02:00:00:00:00:01")
ace = nic.acls.add(name="allow-http", id=1, dir=1)
ace.matches.add(type="protocol", value="tcp")
ace.matches.add(type="lport", value="8080")
ace.actions.add(portmap=True, appPort=80)
app.adapters.add(type=devmodelcommon.PhyIoUSB, name="USB0")
app.restart.counter = 1
app.purge.counter = 2
app.cipherData.CopyFrom(cb)
app.volumeRefList.add(uuid="bbbbbbbb-0000-0000-0000-000000000001", generationCount=1, mount_dir="/data")
app.profile_list.extend(["default", "lab"])
app.start_delay_in_seconds = 30
net = cfg.networks.add(id="cccccccc-0000-0000-0000-000000000001", type=netcmn.V4, mtu=1500)
net.ip.dhcp = netcmn.Client
net.ip.subnet = "192.168.1.0/24"
net.ip.gateway = "192.168.1.1"
net.ip.dns.extend(["1.1.1.1", "8.8.8.8"])
net.ip.dhcpRange.start = "192.168.1.100"
net.ip.dhcpRange.end = "192.168.1.200"
net.entProxy.networkProxyEnable = True
net.entProxy.proxies.add(proto=netcmn.PROXY_HTTPS, server="proxy.local", port=3128)
ds = cfg.datastores.add(id="dddddddd-0000-0000-0000-000000000001", dType=2, fqdn="https://images.example", dpath="eve")
ds.cipherData.CopyFrom(cb)
cfg.reboot.counter = 4
cfg.configItems.add(key="timer.config.interval", value="60")
cfg.configItems.add(key="debug.enable.ssh", value="true")
cfg.systemAdapterList.add(name="eth0", uplink=True, networkUUID="cccccccc-0000-0000-0000-000000000001", lowerLayerName="eth0", cost=0)
pio = cfg.deviceIoList.add(ptype=devmodelcommon.PhyIoNetEth, phylabel="eth0", logicallabel="eth0", assigngrp="eth0", usage=devmodelcommon.PhyIoUsageMgmtAndApps)
pio.phyaddrs["ifname"] = "eth0"
pio.phyaddrs["pcilong"] = "0000:02:00.0"
cfg.manufacturer = "ACME"
cfg.productName = "Edge-1"
ni = cfg.networkInstances.add(displayname="local-ni", instType=2, activate=True, ipType=1)
ni.uuidandversion.uuid = "aaaaaaaa-0000-0000-0000-000000000001"
ni.uuidandversion.version = "1"
ni.port.type = devmodelcommon.PhyIoNetEth
ni.port.name = "uplink"
ni.ip.subnet = "10.1.0.0/24"
ni.ip.gateway = "10.1.0.1"
ni.ip.dhcpRange.start = "10.1.0.2"
ni.ip.dhcpRange.end = "10.1.0.254"
cfg.cipherContexts.append(cctx)
ct = cfg.contentInfo.add(uuid="eeeeeeee-0000-0000-0000-000000000001", dsId="dddddddd-0000-0000-0000-000000000001", URL="library/nginx:1.27", iformat=8, maxSizeBytes=1 << 30, displayName="nginx", generation_count=1)
vol = cfg.volumes.add(uuid="bbbbbbbb-0000-0000-0000-000000000001", generationCount=1, maxsizebytes=1 << 30, displayName="nginx-root")
vol.origin.type = 2
vol.origin.downloadContentTreeID = ct.uuid
vol.protocols.append(0)
cfg.controllercert_confighash = "abc123"
cfg.controller_epoch = 7
cfg.baseos.content_tree_uuid = "ffffffff-0000-0000-0000-000000000001"
cfg.baseos.activate = True
cfg.baseos.base_os_version = "14.5.0-kvm-amd64"
cfg.baseos.retry_update.counter = 1
cfg.global_profile = "default"
cfg.device_name = "edge-001"
cfg.project_name = "demo"
ts(cfg.config_timestamp, 1735689600, 500)
# Fields and objects beyond the first vectors: ports with shared labels,
# VLANs, bonds, EdgeView, disks, LOC, patch envelopes, cluster, 802.1X, SCEP.
cfg.systemAdapterList[0].shared_labels.extend(["uplink", "portfwd"])
cfg.systemAdapterList[0].allow_local_modifications = True
net.dns.add(HostName="ntp.local", Address=["192.168.1.5"])
net.ip.more_ntp.append("ntp.local")
net.ip.dhcp_options_ignore.ntp_server_exclusively = True
cfg.vlans.add(logicallabel="vlan100", interface_name="eth0.100", lower_layer_name="eth0", vlan_id=100)
bond = cfg.bonds.add(logicallabel="bond0", interface_name="bond0", bond_mode=netcmn.BOND_MODE_802_3AD, lacp_rate=netcmn.LACP_RATE_FAST)
bond.lower_layer_names.extend(["eth1", "eth2"])
bond.mii.interval = 100
bond.mii.updelay = 200
cfg.edgeview.token = "ev-token"
cfg.edgeview.disp_cert_pem.append(pem(root))
cfg.edgeview.dev_policy.allow_dev = True
cfg.edgeview.app_policy.allow_app = True
cfg.edgeview.generation_id = 3
cfg.disks.array_type = storage.DISKS_ARRAY_TYPE_RAID1
for n, disk in enumerate(["nvme0n1", "nvme1n1"]):
    dc = cfg.disks.disks.add(disk_config=storage.DISK_CONFIG_TYPE_PERSIST)
    dc.disk.name = disk
    dc.disk.serial = f"NVME-{n}"
cfg.shutdown.counter = 1
cfg.enterprise_id = "ent-1"
cfg.project_id = "proj-1"
cfg.loc_config.loc_url = "https://loc.example"
cfg.loc_config.datastore_collect_info_id.append(ds.id)
pe = cfg.patchEnvelopes.add(displayName="ca-bundle", uuid="99999999-0000-0000-0000-000000000001", version="2", action=patch_envelope.ACTIVATE)
pe.appInstIdsAllowed.append(app.uuidandversion.uuid)
art = pe.artifacts.add(format=patch_envelope.BASE64, artifactMetaData="pem bundle")
art.inline.base64Data = base64.b64encode(pem(root)).decode()
art.inline.fileNameToUse = "ca.pem"
ts(pe.createTime, 1735689000)
cfg.cluster.cluster_name = "line-3"
cfg.cluster.cluster_id = "77777777-0000-0000-0000-000000000001"
cfg.cluster.cluster_interface = "eth1"
cfg.cluster.cluster_ip_prefix = "10.244.0.2/24"
cfg.cluster.join_server_ip = "10.244.0.1"
cfg.cluster.cluster_type = cluster.CLUSTER_TYPE_REPLICATED_STORAGE
cfg.cluster.load_balancer_service.interfaces.add(interface_name="eth1", address_cidrs=["10.244.0.128/28"])
cfg.pnacs.add(logicallabel="eth0", eap_identity="device-0001", eap_method=netconfig.EAP_METHOD_TLS, cert_enrollment_profile_name="corp")
sp = cfg.scep_profiles.add(profile_name="corp", scep_url="https://scep.example/scep", use_controller_proxy=True)
sp.ca_cert_pem.append(pem(root))
sp.csr_profile.common_name = "device-0001"
sp.csr_profile.san_dns.append("device-0001.example")
sp.csr_profile.renew_period_percent = 70
sp.csr_profile.key_type = scep.KEY_TYPE_ECDSA_P256
sp.csr_profile.hash_algorithm = scep.HASH_ALGORITHM_SHA256
golden("edge_dev_config", cfg)

golden("config_request", devconfig.ConfigRequest(configHash="abc123", integrity_token=b"itoken"))
# ---------------------------------------------------------------- config objects, one vector each

full = appconfig.AppInstanceConfig(displayname="plc-gateway", activate=True, metaDataType=appconfig.MetaDataDriveMultipart,
                                   start_delay_in_seconds=10, service=False, cloud_init_version=2,
                                   designated_node_id="node-2", vm_resolution="1920x1080",
                                   runtime_type=appconfig.APP_RUNTIME_TYPE_DOCKER, affinity=appconfig.AFFINITY_TYPE_REQUIRED)
full.uuidandversion.uuid = "12121212-0000-0000-0000-000000000001"
full.uuidandversion.version = "5"
vm = full.fixedresources
vm.memory = 2097152
vm.maxmem = 2097152
vm.vcpus = 2
vm.cpus = "2-3"
vm.pin_cpu = True
vm.virtualizationMode = 1
vm.enable_vnc = True
vm.vncDisplay = 1
vm.vmm_maxmem = 65536
vm.boot_mode = 2
vm.enforce_network_interface_order = True
vm.disable_vtpm = True
vm.boot_order = common.BOOT_ORDER_NOUSB
adapter = full.interfaces.add(name="eth0", networkId=ni.uuidandversion.uuid, addr="10.1.0.10", macAddress="02:00:00:00:00:10",
                              access_vlan_id=100, allow_to_discover=True, interface_order=1)
rule = adapter.acls.add(name="modbus", id=2, dir=fw.INGRESS)
rule.matches.add(type="protocol", value="tcp")
rule.matches.add(type="lport", value="5020")
rule.actions.add(portmap=True, appPort=502)
usb = full.adapters.add(type=devmodelcommon.PhyIoNetEthVF, name="eth1", interface_order=2)
usb.eth_vf.index = 1
usb.eth_vf.mac = "02:00:00:00:01:01"
usb.eth_vf.vlan_id = 20
full.restart.counter = 3
full.restart.opsTime = "2025-01-01T00:00:00Z"
full.purge.counter = 1
full.cipherData.CopyFrom(cb)
full.volumeRefList.add(uuid="13131313-0000-0000-0000-000000000001", generationCount=2, mount_dir="/var/lib/plc")
full.profile_list.append("line-3")
full.snapshot.active_snapshot = "snap-1"
full.snapshot.rollback_cmd.counter = 1
full.snapshot.max_snapshots = 2
full.snapshot.snapshots.add(id="snap-1", type=appconfig.SNAPSHOT_TYPE_APP_UPDATE)
full.patchRef.name = "ca-bundle"
full.patchRef.id = pe.uuid
golden("app_instance", full)

store = storage.DatastoreConfig(id="14141414-0000-0000-0000-000000000001", dType=storage.DsS3, fqdn="https://s3.example",
                                dpath="images", region="eu-central-1")
store.cipherData.CopyFrom(cb)
store.dsCertPEM.append(pem(root))
golden("datastore", store)

tree = storage.ContentTree(uuid="15151515-0000-0000-0000-000000000001", dsId=store.id, URL="plc/rootfs.qcow2",
                           iformat=storage.QCOW2, sha256="ab" * 32, maxSizeBytes=8 << 30, displayName="plc-rootfs",
                           generation_count=4, custom_meta_data="eyJ0aWVyIjoxfQ==", designated_node_id="node-2")
tree.siginfo.signercerturl = "https://s3.example/certs/signer.pem"
tree.siginfo.signature = b"\x02" * 64
tree.ds_ids_list.extend([store.id, ds.id])
golden("content_tree", tree)

volume = storage.Volume(uuid="13131313-0000-0000-0000-000000000001", generationCount=2, maxsizebytes=8 << 30, readonly=False,
                        displayName="plc-root", clear_text=True, target=storage.Disk, designated_node_id="node-2")
volume.origin.type = storage.VCOT_DOWNLOAD
volume.origin.downloadContentTreeID = tree.uuid
volume.protocols.append(storage.VAP_9P)
golden("volume", volume)

switch = netinst.NetworkInstanceConfig(displayname="plant-floor", instType=netinst.ZnetInstLocal, activate=True,
                                       ipType=netinst.IPV4, propagate_connected_routes=True, mtu=1400, disable_flowlog=False,
                                       forward_lldp=True)
switch.uuidandversion.uuid = "16161616-0000-0000-0000-000000000001"
switch.uuidandversion.version = "2"
switch.port.type = devmodelcommon.PhyIoNetEth
switch.port.name = "uplink"
switch.stp.ports_with_bpdu_guard = "eth2"
switch.ip.dhcp = netcmn.Static
switch.ip.subnet = "10.2.0.0/24"
switch.ip.gateway = "10.2.0.1"
switch.ip.domain = "plant.local"
switch.ip.ntp = "10.2.0.1"
switch.ip.dns.append("10.2.0.1")
switch.ip.dhcpRange.start = "10.2.0.10"
switch.ip.dhcpRange.end = "10.2.0.99"
switch.dns.add(HostName="historian.plant.local", Address=["10.2.0.5"])
route = switch.static_routes.add(destination_network="172.16.0.0/16", gateway="10.2.0.254", port="eth1", prefer_lower_cost=True)
route.probe.enable_gw_ping = True
route.probe.gw_ping_max_cost = 1
route.probe.custom_probe.probe_method = netcmn.CONNECTIVITY_PROBE_METHOD_TCP
route.probe.custom_probe.probe_endpoint.host = "172.16.0.1"
route.probe.custom_probe.probe_endpoint.port = 443
switch.vlan_access_ports.add(vlan_id=100, access_port="eth2")
golden("network_instance", switch)

acl = netconfig.NetworkAdapter(name="eth0", networkId=switch.uuidandversion.uuid, macAddress="02:00:00:00:00:20")
allow_dns = acl.acls.add(name="dns", id=1, dir=fw.EGRESS)
allow_dns.matches.add(type="host", value="historian.plant.local")
allow_dns.actions.add(drop=False)
limit = acl.acls.add(name="icmp-limit", id=2, dir=fw.BOTH)
limit.matches.add(type="protocol", value="icmp")
limit.actions.add(limit=True, limitrate=10, limitunit="s", limitburst=20)
deny = acl.acls.add(name="deny-subnet", id=3, dir=fw.INGRESS)
deny.matches.add(type="ip", value="192.168.0.0/16")
deny.actions.add(drop=True)
fwd = acl.acls.add(name="http", id=4, dir=fw.INGRESS)
fwd.matches.add(type="protocol", value="tcp")
fwd.matches.add(type="lport", value="8080")
fwd.actions.add(portmap=True, appPort=80)
golden("acl", acl)

os_ = baseos.BaseOS(content_tree_uuid="17171717-0000-0000-0000-000000000001", activate=True, base_os_version="14.5.1-kvm-amd64")
os_.retry_update.counter = 2
os_.retry_update.opsTime = "2025-01-02T00:00:00Z"
golden("baseos", os_)

resp = devconfig.ConfigResponse(configHash="def456")
resp.config.CopyFrom(cfg)
golden("config_response", resp)

# ---------------------------------------------------------------- info / metrics / logs / flowlog

im = info.ZInfoMsg(ztype=info.ZiDevice, devId=cfg.id.uuid)
ts(im.atTimeStamp, 1735689601)
d = im.dinfo
d.machineArch = "x86_64"
d.cpuArch = "x86_64"
d.platform = "kvm"
d.ncpu = 4
d.memory = 8192
d.storage = 65536
d.powerCycleCounter = -1
d.minfo.manufacturer = "ACME"
d.minfo.serialNumber = "SN-0001"
ts(d.bootTime, 1735680000)
sw = d.swList.add(activated=True, partitionLabel="IMGA", status=info.INSTALLED, shortVersion="14.5.0", userStatus=info.UPDATED)
sw.swErr.description = "none"
sw.swErr.severity = info_common.SEVERITY_NOTICE
sw.swErr.entities.add(entity=info_common.ENTITY_BASE_OS, entity_id="x")
d.HostName = "edge-001"
d.HSMStatus = info.ENABLED
d.HSMInfo = "TPM 2.0"
d.last_boot_reason = info.BOOT_REASON_PARSE_FAIL
d.state = info.ZDEVICE_STATE_ONLINE
d.attestation_info.state = info.ATTESTATION_STATE_RESTART_WAIT
d.attestation_info.error.description = "quote refused"
d.attestation_info.error.severity = info_common.SEVERITY_ERROR
d.attestation_info.error.entities.add(entity=info_common.ENTITY_ATTESTATION)
ts(d.attestation_info.error.timestamp, 1735689600, 7)
# Names and ids, hardware, storage, DNS and device ports.
d.minfo.productName = "Edge-1"
d.minfo.UUID = "4c4c4544-0000-1000-8000-000000000001"
d.minfo.biosVendor = "SeaBIOS"
d.minfo.biosVersion = "1.16.2"
d.device_name = cfg.device_name
d.project_name = "demo"
d.project_id = "proj-1"
d.enterprise_name = "ACME Corp"
d.enterprise_id = "ent-1"
eth0 = d.network.add(macAddr="02:00:00:00:00:01", devName="eth0", ipv4_up=True, uplink=True, localName="eth0", alias="wan")
eth0.IPAddrs.extend(["192.168.1.20", "fe80::1"])
eth0.defaultRouters.append("192.168.1.1")
eth0.dns.DNSservers.extend(["1.1.1.1", "8.8.8.8"])
eth0.dns.DNSdomain = "example.org"
eth0.dns.DNSsearch.append("example.org")
eth0.location.City = "Berlin"
eth0.location.Country = "DE"
eth0.ntp_servers.append("192.168.1.5")
eth0.proxy.networkProxyEnable = True
eth0.proxy.proxies.add(type=netcmn.PROXY_HTTPS, server="proxy.local", port=3128)
d.dns.DNSservers.append("1.1.1.1")
d.storageList.add(device="/dev/sda9", mountPath="/persist", total=60000, storageLocation=True)
bundle = d.assignableAdapters.add(type=devmodelcommon.PhyIoUSB, name="USB0", usedByAppUUID=app.uuidandversion.uuid, usage=devmodelcommon.PhyIoUsageDedicated)
bundle.members.append("USB0")
bundle.ioAddressList.add(macAddress="02:00:00:00:02:01")
ports = d.systemAdapter
ports.currentIndex = 0
dps = ports.status.add(version=2, key="zedagent")
ts(dps.timePriority, 1735689000)
ts(dps.lastSucceeded, 1735689550)
port = dps.ports.add(ifname="eth0", name="eth0", isMgmt=True, dhcpType=netcmn.Client, subnet="192.168.1.0/24",
                     gateway="192.168.1.1", up=True, macAddr="02:00:00:00:00:01", usage=devmodelcommon.PhyIoUsageMgmtAndApps,
                     networkUUID=net.id, cost=0, mtu=1500)
port.dnsServers.extend(["1.1.1.1"])
port.IPAddrs.append("192.168.1.20")
port.defaultRouters.append("192.168.1.1")
port.dns.DNSservers.append("1.1.1.1")
port.config_source.origin = netcmn.NETWORK_CONFIG_ORIGIN_CONTROLLER
ts(port.config_source.submitted_at, 1735689000)
port.pnac_status.enabled = True
port.pnac_status.state = pnac.SUPPLICANT_STATE_AUTHENTICATED
port.bond_status.mode = netcmn.BOND_MODE_ACTIVE_BACKUP
port.bond_status.members.add(logicallabel="eth1", mii_up=True)
pool = d.storage_info.add(pool_name="persist", storage_type=info.STORAGE_TYPE_INFO_ZFS, zfs_version="2.2.2",
                          current_raid=info.STORAGE_RAID_TYPE_RAID1, compression_ratio=1.5, zpool_size=1 << 36,
                          count_zvols=3, storage_state=info.STORAGE_STATUS_ONLINE)
vdev = pool.children.add(current_raid=info.STORAGE_RAID_TYPE_RAID1, display_name="mirror-0", g_u_i_d=1234567890123)
for n, name in enumerate(["nvme0n1", "nvme1n1"]):
    member = vdev.disks.add(status=info.STORAGE_STATUS_ONLINE, smart_status="PASSED")
    member.disk_name.name = name
    member.disk_name.serial = f"NVME-{n}"
d.api_capability = info.API_CAPABILITY_REPORT_TPM_EVENTLOG
d.optional_capabilities.hw_inventory_support = True
d.capabilities.HWAssistedVirtualization = True
d.configItemStatus.configItems["timer.config.interval"].value = "60"
d.configItemStatus.unknownConfigItems["no.such.item"].error = "unknown"
d.appInstances.add(uuid=app.uuidandversion.uuid, name="nginx", domainName="nginx.1")
d.maintenance_mode_reasons.append(info.MAINTENANCE_MODE_REASON_NONE)
d.dataSecAtRestInfo.status = info.DATASEC_AT_REST_ENABLED
d.dataSecAtRestInfo.vaultList.add(name="Application Data Store", status=info.DATASEC_AT_REST_ENABLED, pcrStatus=info.PCR_ENABLED)
d.sec_info.sha_root_ca = hashlib.sha256(pem(root)).digest()
cert = d.enrolled_certs.add(cert_enrollment_profile_name="corp", renew_period_percent=70, status=info_cert.CERT_STATUS_AVAILABLE)
cert.subject.common_name = "device-0001"
cert.issuer.common_name = "EVE Test Root"
ts(cert.expiration_timestamp, 1767225600)
golden("info_device", im)

ia = info.ZInfoMsg(ztype=info.ZiApp, devId=cfg.id.uuid)
ia.ainfo.AppID = app.uuidandversion.uuid
ia.ainfo.AppName = "nginx"
ia.ainfo.state = info.RUNNING
ia.ainfo.volumeRefs.append(vol.uuid)
ts(ia.atTimeStamp, 1735689605)
ia.ainfo.appVersion = "3"
ts(ia.ainfo.bootTime, 1735689100)
ia.ainfo.softwareList.add(swVersion="1.27", imageName="nginx", state=info.RUNNING, downloadProgress=100)
ia.ainfo.assignedAdapters.add(type=devmodelcommon.PhyIoUSB, name="USB0", usedByAppUUID=app.uuidandversion.uuid)
app_net = ia.ainfo.network.add(macAddr="02:00:00:00:00:01", devName="nbu1x1", ipv4_up=True)
app_net.IPAddrs.append("10.1.0.2")
app_net.dns.DNSservers.append("10.1.0.1")
app_err = ia.ainfo.appErr.add(description="volume slow", severity=info_common.SEVERITY_WARNING, retry_condition="retrying")
app_err.entities.add(entity=info_common.ENTITY_VOLUME, entity_id=vol.uuid, entity_name="nginx-root")
snap = ia.ainfo.snapshots.add(id="snap-1", config_id=app.uuidandversion.uuid, config_version="3", type=info.SNAPSHOT_TYPE_APP_UPDATE)
ts(snap.create_time, 1735689200)
ia.ainfo.cluster_app_running = True
golden("info_app", ia)

inst = info.ZInfoMsg(ztype=info.ZiNetworkInstance, devId=cfg.id.uuid)
inst.niinfo.networkID = ni.uuidandversion.uuid
inst.niinfo.instType = 2
inst.niinfo.activated = True
inst.niinfo.ports.append("eth0")
inst.niinfo.state = info.ZNETINST_STATE_ONLINE
inst.niinfo.mtu = 1500
ts(inst.atTimeStamp, 1735689606)
inst.niinfo.displayname = "local-ni"
inst.niinfo.networkVersion = "1"
ts(inst.niinfo.upTimeStamp, 1735689100)
inst.niinfo.bridgeNum = 1
inst.niinfo.bridgeName = "bn1"
inst.niinfo.bridgeIPAddr = "10.1.0.1"
lease = inst.niinfo.ipAssignments.add(macAddress="02:00:00:00:00:01")
lease.ipAddress.append("10.1.0.2")
inst.niinfo.vifs.add(vifName="nbu1x1", macAddress="02:00:00:00:00:01", appID=app.uuidandversion.uuid)
inst.niinfo.ip_routes.add(destination_network="0.0.0.0/0", gateway="192.168.1.1", port="eth0")
inst.niinfo.ip_routes.add(destination_network="172.16.0.0/16", gateway="10.1.0.2", gateway_app=app.uuidandversion.uuid)
ni_err = inst.niinfo.networkErr.add(description="port eth1 missing", severity=info_common.SEVERITY_WARNING)
ni_err.entities.add(entity=info_common.ENTITY_PORT, entity_name="eth1")
golden("info_network_instance", inst)

iv_ = info.ZInfoMsg(ztype=info.ZiVolume, devId=cfg.id.uuid)
iv_.vinfo.uuid = vol.uuid
iv_.vinfo.state = info.CREATED_VOLUME
iv_.vinfo.resources.maxSizeBytes = 1 << 30
iv_.vinfo.resources.curSizeBytes = 1 << 20
iv_.vinfo.generation_count = 1
ts(iv_.atTimeStamp, 1735689607)
iv_.vinfo.displayName = "nginx-root"
iv_.vinfo.progressPercentage = 100
ts(iv_.vinfo.usage.createTime, 1735689050)
iv_.vinfo.usage.refCount = 1
ts(iv_.vinfo.usage.lastRefcountChangeTime, 1735689060)
golden("info_volume", iv_)

ic = info.ZInfoMsg(ztype=info.ZiContentTree, devId=cfg.id.uuid)
ic.cinfo.uuid = ct.uuid
ic.cinfo.sha256 = "00" * 32
ic.cinfo.state = info.LOADED
ic.cinfo.componentShaList.extend(["11" * 32, "22" * 32])
ts(ic.atTimeStamp, 1735689608)
ic.cinfo.displayName = "nginx"
ic.cinfo.resources.curSizeBytes = 1 << 26
ic.cinfo.usage.refCount = 1
ic.cinfo.progressPercentage = 100
ic.cinfo.generation_count = 1
ic.cinfo.err.description = "retrying blob 22"
ic.cinfo.err.severity = info_common.SEVERITY_NOTICE
ic.cinfo.err.entities.add(entity=info_common.ENTITY_CONTENT_BLOB, entity_id="22" * 32)
golden("info_content_tree", ic)

ih = info.ZInfoMsg(ztype=info.ZiHardware, devId=cfg.id.uuid)
ts(ih.atTimeStamp, 1735689609)
hw = ih.hwinfo
hw.eve_release = "14.5.0-kvm-amd64"
hw.kernel_flavor = "generic"
hw.kernel_version = "6.1.112"
hw.eve_platform = "generic"
hw.partition = "IMGA"
hw.kernel_cmdline = "console=ttyS0"
inv = hw.inventory
root_port = inv.pci_devices.add(driver="pcieport", vendor_id=0x8086, device_id=0x7C0, class_id=6, subclass_id=4, iommu_group="3")
root_port.address.bus = 0
root_port.address.device = 0x1C
nic_dev = inv.pci_devices.add(driver="igb", vendor_id=0x8086, device_id=0x1533, revision=3, subsystem_id=0x1533, class_id=2, iommu_group="7")
nic_dev.parent_pci_device_address.device = 0x1C
nic_dev.address.bus = 2
stick = inv.usb_devices.add(vendor_id=0x0403, product_id=0x6001, driver="ftdi_sio", class_id=0, suggested_assigngrp="USB0")
stick.parent.pci_parent.bus = 0
stick.parent.pci_parent.device = 0x14
stick.bus_port.bus = 1
stick.bus_port.port = "2.1"
inv.serial_devices.add(ioport_range="3f8-3ff", irq=4, devpath="/dev/ttyS0")
eth = inv.network_devices.add(ifname="eth0", type=hardware.NETWORK_DEVICE_TYPE_ETHERNET, mac_address="02:00:00:00:00:01", speed_mbps=1000)
eth.parent.pci_parent.bus = 2
inv.can_devices.add(ifname="can0")
inv.bios.vendor = "SeaBIOS"
inv.bios.version = "1.16.2"
inv.bios.attributes["secure_boot"] = "off"
inv.cpu_info.cpus.add(model="Xeon E-2278GE", vendor="GenuineIntel", id=0, freq=3300)
inv.total_memory_bytes = 32 << 30
inv.total_storage_bytes = 1 << 40
inv.watchdog_present = True
inv.tpm.present = True
inv.tpm.manufacturer = "IBM"
inv.tpm.spec_version = "2.0"
inv.misc["chassis"] = "fanless"
golden("info_hardware", ih)

health = hwhealth.ZHardwareHealth(dev_id=cfg.id.uuid)
ts(health.at_time_stamp, 1735689610)
mc = health.mr.memory_controllers.add(controller_name="mc0", ce_count=3, ue_count=0)
mc.ranks.add(rank_name="csrow0", ce_count=3, ue_count=0)
sd = health.disks.add(disk_name="/dev/nvme0n1", wwn="eui.0025388b91b0c5e1", serial_number="NVME-0", model="Samsung 980")
sd.smart_attr.add(id=5, value=100, worst=100, thresh=10, raw_value=0, type="Pre-fail", attribute_name="Reallocated_Sector_Ct")
golden("hardware_health", health)

lps = profile_network.NetworkInfo(is_using_fallback_config=False)
lpc = lps.latest_config.add(logical_label="eth0", config_applied=True, ip_version=profile_network.IP_VERSION_IPV4_ONLY,
                            use_dhcp=False, mtu=1500, wireless_device_type=profile_network.WIRELESS_TYPE_CELLULAR,
                            local_modifications_allowed=True)
lpc.port_addresses.interface_name = "eth0"
lpc.port_addresses.pci_address = "0000:02:00.0"
lpc.ip_addresses.append("192.168.1.20/24")
lpc.gateways.append("192.168.1.1")
lpc.dns_servers.append("1.1.1.1")
lpc.cellular_config.apn = "internet"
lpc.cellular_config.default_bearer_auth.auth_protocol = netcmn.CELLULAR_AUTH_PROTOCOL_CHAP
lpc.cellular_config.default_bearer_auth.username = "user"
lpc.config_source.origin = netcmn.NETWORK_CONFIG_ORIGIN_LPS
lps.config_testing.controller_reachable = True
ts(lps.config_testing.last_test_time, 1735689611)
lps.port_status.add(logical_label="eth0", interface_name="eth0", link_up=True, mac_address="02:00:00:00:00:01",
                    ip_addresses=["192.168.1.20"], mtu=1500)
golden("lps_network_info", lps)

scep_req = scep_proxy.SCEPProxyRequest(scep_profile_name="corp", operation=scep_proxy.SCEP_OPERATION_PKI_MESSAGE,
                                       message=b"\x30\x82\x01\x00", http_method=scep_proxy.HTTP_METHOD_POST)
scep_req.http_header_fields.add(name="Content-Type", value="application/x-pki-message")
golden("scep_proxy_request", scep_req)

mm = metrics.ZMetricMsg(devID=cfg.id.uuid)
ts(mm.atTimeStamp, 1735689602)
mm.dm.network.add(iName="eth0", txBytes=1000, rxBytes=2000, txPkts=10, rxPkts=20)
mm.dm.disk.add(disk="sda", mountPath="/persist", total=65536, used=1024, free=64512)
mm.dm.cpuMetric.total = 1234
mm.dm.deviceMemory.memoryMB = 8192
mm.dm.deviceMemory.used_eveMB = 700
zc = mm.dm.zedcloud.add(ifName="eth0", failures=3, success=120, authVerifyFailure=2)
ts(zc.lastFailure, 1735689500)
ts(zc.lastSuccess, 1735689590, 250000000)
zc.urlMetrics.add(url="/api/v2/edgedevice/id/x/config", tryMsgCount=3, tryByteCount=300, sentMsgCount=100,
                  sentByteCount=10000, recvMsgCount=103, recvByteCount=2 ** 40, total_time_spent=4567, sess_resume_count=1)
mm.dm.metricItems.add(key="zedagent.rejected.bad_signature", type=metrics.MetricItemCounter, uint64Value=2 ** 63)
mm.dm.metricItems.add(key="lte-up", type=metrics.MetricItemState, boolValue=True)
mm.dm.metricItems.add(key="essid", stringValue="net")
mm.dm.metricItems.add(key="temp", type=metrics.MetricItemGauge, floatValue=41.5)
mm.dm.metricItems.add(key="uptime", type=metrics.MetricItemGauge, uint32Value=0)
mm.dm.log.numDeviceEventsSent = 500
mm.dm.log.numDeviceBundlesSent = 7
mm.dm.log.num4xxResponses = 1
ts(mm.dm.log.lastDeviceBundleSendTime, 1735689599)
mm.dm.log.totalDeviceLogInput = 520
mm.dm.log.numDeviceEventErrors = 19
mm.dm.log.numDeviceBundleProtoBytesSent = 65536
mm.dm.log.input_sources["zedagent"] = 300
mm.dm.log.input_sources["nim"] = 220
am = mm.am.add(AppID=app.uuidandversion.uuid, AppName="nginx", appVersion="3")
am.cpu.total = 55
am.appMemory.allocatedMB = 512
am.appMemory.usedMB = 100
am.disk.add(disk="nginx-root", provisioned=1024, used=10, diskType="QCOW2")
nm = mm.nm.add(networkID=ni.uuidandversion.uuid, instType=2, displayname="local-ni", activated=True)
nm.networkStats.rx.totalBytes = 4096
nm.networkStats.tx.totalPackets = 3
mm.vm.add(uuid=vol.uuid, displayName="nginx-root", totalBytes=1 << 30, usedBytes=1 << 20)
# Processes, newlog and storage.
proc = mm.pr.add(pid=812, name="zedbox", user_process=False, watched=True, num_fds=96, num_threads=24,
                 user_time=12.5, system_time=3.25, cpu_percent=1.5, vm_bytes=1 << 31, rss_bytes=1 << 27, memory_percent=0.75)
ts(proc.create_time, 1735689000)
nl = mm.dm.newlog
nl.totalBytesUpload = 1 << 20
nl.currentUploadIntv = 30
nl.averageCPULoadPct = 2.5
nl.deviceMetrics.numGzipFileSent = 12
ts(nl.deviceMetrics.lastGzipFileSendTime, 1735689590)
nl.top10_input_sources["zedagent"] = 40
nl.top10_input_sources["nim"] = 12
nl.total_size_logs = 1 << 22
sm = mm.dm.storage_metrics.add(pool_name="persist")
ts(sm.collection_time, 1735689600)
sm.zpool_metrics.alloc = 1 << 30
sm.zpool_metrics.total = 1 << 36
sm.zpool_metrics.bytes_read = 4096
disk_metric = sm.disks.add()
disk_metric.disk_name.name = "nvme0n1"
disk_metric.metrics.write_errors = 0
disk_metric.metrics.ops_count_write = 77
sm.zvols.add(volume_u_u_i_d=vol.uuid, alloc=1 << 20)
mm.dm.flowlog.messages.success = 10
mm.dm.flowlog.flows.drops = 1
mm.dm.cellular.add(logicallabel="wwan0").signal_strength.rssi = -70
golden("metrics", mm)

lb = logs.LogBundle(devID=cfg.id.uuid, image="IMGA", eveVersion="14.5.0")
ts(lb.timestamp, 1735689603)
le = lb.log.add(severity="info", source="zedagent", iid="1234", content="config applied", msgid=99, filename="handleconfig.go", function="applyConfig")
le.tags["app"] = "nginx"
le.tags["level"] = "info"
ts(le.timestamp, 1735689603, 123456789)
golden("log_bundle", lb)

fm = flowlog.FlowMessage(devId=cfg.id.uuid)
fm.scope.uuid = app.uuidandversion.uuid
fm.scope.intf = "eth0"
fm.scope.localIntf = "nbu1x1"
fm.scope.netInstUUID = ni.uuidandversion.uuid
fr = fm.flows.add(inbound=True, aclId=1, aclName="allow-http", txBytes=100, txPkts=1, rxBytes=200, rxPkts=2, action=flowlog.ActionAccept)
fr.flow.src = "10.1.0.2"
fr.flow.srcPort = 40000
fr.flow.dest = "93.184.216.34"
fr.flow.destPort = 443
fr.flow.protocol = 6
ts(fr.startTime, 1735689604)
dr = fm.dnsReqs.add(hostName="example.org", aclNum=1)
dr.addrs.append("93.184.216.34")
ts(dr.requestTime, 1735689604)
blocked = fm.flows.add(inbound=False, aclId=3, aclName="deny-subnet", txPkts=1, action=flowlog.ActionDrop)
blocked.flow.src = "10.1.0.2"
blocked.flow.srcPort = 40001
blocked.flow.dest = "192.168.7.7"
blocked.flow.destPort = 22
blocked.flow.protocol = 6
ts(blocked.startTime, 1735689605)
ts(blocked.endTime, 1735689606)
golden("flow_message", fm)

# ---------------------------------------------------------------- signing

def raw_sig(key, data, deterministic=True):
    der = key.sign(data, ec.ECDSA(hashes.SHA256(), deterministic_signing=deterministic))
    r, s = decode_dss_signature(der)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def container(payload, key, cert_hash, algo, sender_cert=b""):
    c = auth.AuthContainer()
    c.protectedPayload.payload = payload
    c.algo = algo
    c.senderCertHash = cert_hash[:16] if algo == common.HASH_ALGORITHM_SHA256_16BYTES else cert_hash
    c.signatureHash = raw_sig(key, payload)
    if sender_cert:
        c.senderCert = sender_cert
    return c


cfg_bytes = cfg.SerializeToString(deterministic=True)
ctrl_hash = hashlib.sha256(pem(signing)).digest()
c32 = container(cfg_bytes, sign_key, ctrl_hash, common.HASH_ALGORITHM_SHA256_32BYTES)
golden("auth_container", c32)
write("signing/config_signed_32.bin", c32.SerializeToString(deterministic=True))
write("signing/config_signed_16.bin", container(cfg_bytes, sign_key, ctrl_hash, common.HASH_ALGORITHM_SHA256_16BYTES).SerializeToString(deterministic=True))

dev_der = device.public_bytes(serialization.Encoding.DER)
reg_bytes = reg.SerializeToString(deterministic=True)
onboard = container(reg_bytes, dev_key, hashlib.sha256(dev_der).digest(), common.HASH_ALGORITHM_SHA256_32BYTES, base64.b64encode(pem(device)))
write("signing/register_signed.bin", onboard.SerializeToString(deterministic=True))

vec = {
    "private_key": "%064x" % sign_key.private_numbers().private_value,
    "payload": cfg_bytes.hex(),
    "sha256": hashlib.sha256(cfg_bytes).hexdigest(),
    "signature_rs": raw_sig(sign_key, cfg_bytes).hex(),
    "signing_cert_pem_sha256": ctrl_hash.hex(),
    "device_cert_der_sha256": hashlib.sha256(dev_der).hexdigest(),
    "not_before_unix": int(NOT_BEFORE.timestamp()),
    "not_after_unix": int(NOT_AFTER.timestamp()),
}
write("signing/vector.json", (json.dumps(vec, indent=2) + "\n").encode())
write("golden/index.json", (json.dumps(INDEX, indent=2, sort_keys=True) + "\n").encode())
print("wrote", len(INDEX), "golden messages")
