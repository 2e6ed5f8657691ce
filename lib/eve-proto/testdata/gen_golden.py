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
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
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
    write(f"golden/{name}.json", (json_format.MessageToJson(msg, indent=2) + "\n").encode())
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
    return b.sign(issuer_key, hashes.SHA256())


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
golden("uuid_request", eveuuid.UuidRequest(device_cert=pem(device)))
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
enc = Cipher(algorithms.AES(aes_key), modes.CFB(iv)).encryptor()
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
golden("edge_dev_config", cfg)

golden("config_request", devconfig.ConfigRequest(configHash="abc123", integrity_token=b"itoken"))
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
sw.swErr.severity = info.SEVERITY_NOTICE
sw.swErr.entities.add(entity=info.ENTITY_BASE_OS, entity_id="x")
d.HostName = "edge-001"
d.HSMStatus = info.ENABLED
d.HSMInfo = "TPM 2.0"
d.last_boot_reason = info.BOOT_REASON_PARSE_FAIL
d.state = info.ZDEVICE_STATE_ONLINE
d.attestation_info.state = info.ATTESTATION_STATE_RESTART_WAIT
d.attestation_info.error.description = "quote refused"
d.attestation_info.error.severity = info.SEVERITY_ERROR
d.attestation_info.error.entities.add(entity=info.ENTITY_ATTESTATION)
ts(d.attestation_info.error.timestamp, 1735689600, 7)
golden("info_device", im)

ia = info.ZInfoMsg(ztype=info.ZiApp, devId=cfg.id.uuid)
ia.ainfo.AppID = app.uuidandversion.uuid
ia.ainfo.AppName = "nginx"
ia.ainfo.state = info.RUNNING
ia.ainfo.volumeRefs.append(vol.uuid)
golden("info_app", ia)

inst = info.ZInfoMsg(ztype=info.ZiNetworkInstance, devId=cfg.id.uuid)
inst.niinfo.networkID = ni.uuidandversion.uuid
inst.niinfo.instType = 2
inst.niinfo.activated = True
inst.niinfo.ports.append("eth0")
inst.niinfo.state = info.ZNETINST_STATE_ONLINE
inst.niinfo.mtu = 1500
golden("info_network_instance", inst)

iv_ = info.ZInfoMsg(ztype=info.ZiVolume, devId=cfg.id.uuid)
iv_.vinfo.uuid = vol.uuid
iv_.vinfo.state = info.CREATED_VOLUME
iv_.vinfo.resources.maxSizeBytes = 1 << 30
iv_.vinfo.resources.curSizeBytes = 1 << 20
iv_.vinfo.generation_count = 1
golden("info_volume", iv_)

ic = info.ZInfoMsg(ztype=info.ZiContentTree, devId=cfg.id.uuid)
ic.cinfo.uuid = ct.uuid
ic.cinfo.sha256 = "00" * 32
ic.cinfo.state = info.LOADED
ic.cinfo.componentShaList.extend(["11" * 32, "22" * 32])
golden("info_content_tree", ic)

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
