#!/usr/bin/env python3
"""An EVE device written independently of our Rust code.

Messages come from Google's Python protobuf runtime compiled from our .proto
files (protoc bundled in grpcio-tools); keys, certificates and signatures
come from the `cryptography` package; TLS is Python's `ssl`. It walks the
device API the way EVE's client does and checks every controller answer:

  certs (chain to the root, envelope signature) -> register (201) ->
  uuid -> attest nonce + no-TPM quote (integrity token) ->
  config (200, then 304) -> info (201) -> metrics (201) -> newlogs (201)

and then reads the stored info and logs back through the admin API.

    pip install protobuf grpcio-tools cryptography
    python3 python_device.py --device HOST:PORT --admin HOST:PORT \
        --root root-certificate.pem --token-file admin-token

Prints PASS and exits 0 on success; any failed check raises.
"""

import argparse
import base64
import datetime
import gzip
import hashlib
import http.client
import importlib
import json
import os
import ssl
import subprocess
import sys
import tempfile
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from cryptography.x509.oid import NameOID

PROTO_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "lib", "eve-proto", "proto")
API = "/api/v2/edgedevice"
MIME = "application/x-proto-binary"


def compile_protos():
    out = tempfile.mkdtemp(prefix="eve_py_dev_")
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
devconfig = importlib.import_module("config.devconfig_pb2")
info = importlib.import_module("info.info_pb2")
metrics = importlib.import_module("metrics.metrics_pb2")


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def self_signed(cn):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    return key, cert


def raw_sig(key, payload):
    r, s = decode_dss_signature(key.sign(payload, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def envelope(key, cert, payload, embed=False):
    c = auth.AuthContainer()
    c.protectedPayload.payload = payload
    c.algo = common.HASH_ALGORITHM_SHA256_32BYTES
    c.senderCertHash = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest()
    c.signatureHash = raw_sig(key, payload)
    if embed:
        c.senderCert = base64.b64encode(cert.public_bytes(serialization.Encoding.PEM))
    return c.SerializeToString()


class Device:
    def __init__(self, addr, root_path):
        host, port = addr.rsplit(":", 1)
        ctx = ssl.create_default_context(cafile=root_path)
        self.conn = http.client.HTTPSConnection(host, int(port), context=ctx)
        with open(root_path, "rb") as f:
            self.root = x509.load_pem_x509_certificate(f.read())
        self.signing = None

    def call(self, method, path, body=None):
        headers = {"Content-Type": MIME} if body is not None else {}
        self.conn.request(method, API + path, body=body, headers=headers)
        resp = self.conn.getresponse()
        return resp.status, resp.read()

    def accept_certs(self, body):
        c = auth.AuthContainer.FromString(body)
        zc = certs.ZControllerCert.FromString(c.protectedPayload.payload)
        signing = [z for z in zc.certs if z.type == certs.CERT_TYPE_CONTROLLER_SIGNING]
        check(len(signing) == 1, "exactly one signing certificate")
        check(any(z.type == certs.CERT_TYPE_CONTROLLER_ECDH_EXCHANGE for z in zc.certs), "an ECDH certificate")
        pem = signing[0].cert
        check(signing[0].certHash == hashlib.sha256(pem).digest()[:16], "certHash is SHA-256 of the PEM")
        cert = x509.load_pem_x509_certificate(pem)
        self.root.public_key().verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(hashes.SHA256()))
        self.signing = (cert, hashlib.sha256(pem).digest())
        self.open(body)

    def open(self, body):
        c = auth.AuthContainer.FromString(body)
        cert, h = self.signing
        check(c.senderCertHash == h[: len(c.senderCertHash)], "controller senderCertHash")
        sig = c.signatureHash
        der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
        cert.public_key().verify(der, c.protectedPayload.payload, ec.ECDSA(hashes.SHA256()))
        return c.protectedPayload.payload


def admin_conn(addr, root_path):
    """The admin API over HTTPS, checked against the controller's root."""
    host, port = addr.rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=root_path)
    return http.client.HTTPSConnection(host, int(port), context=ctx)


def admin_get(addr, root_path, token, path):
    conn = admin_conn(addr, root_path)
    conn.request("GET", path, headers={"Authorization": "Bearer " + token})
    resp = conn.getresponse()
    check(resp.status == 200, f"admin GET {path}: {resp.status}")
    return json.loads(resp.read())


def admin_post(addr, root_path, token, path, body):
    conn = admin_conn(addr, root_path)
    conn.request("POST", path, body=json.dumps(body), headers={"Authorization": "Bearer " + token})
    resp = conn.getresponse()
    check(resp.status == 201, f"admin POST {path}: {resp.status}")
    return json.loads(resp.read())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", required=True)
    ap.add_argument("--admin", required=True)
    ap.add_argument("--root", required=True)
    ap.add_argument("--token-file", required=True)
    a = ap.parse_args()
    with open(a.token_file) as f:
        token = f.read().strip()

    onboard_key, onboard_cert = self_signed("python-onboarding")
    serial = "PY-0001"
    onboard_pem = onboard_cert.public_bytes(serialization.Encoding.PEM).decode()
    admin_post(a.admin, a.root, token, "/api/v1/onboard", {"cert_pem": onboard_pem, "serials": [serial]})
    dev_key, dev_cert = self_signed("python-device")

    d = Device(a.device, a.root)
    status, body = d.call("GET", "/certs")
    check(status == 200, f"certs: {status}")
    d.accept_certs(body)

    reg = register.ZRegisterMsg()
    reg.pemCert = base64.b64encode(dev_cert.public_bytes(serialization.Encoding.PEM))
    reg.serial = serial
    status, _ = d.call("POST", "/register", envelope(onboard_key, onboard_cert, reg.SerializeToString(), embed=True))
    check(status == 201, f"register: {status}")

    def signed(msg):
        return envelope(dev_key, dev_cert, msg.SerializeToString())

    status, body = d.call("POST", "/uuid", signed(eveuuid.UuidRequest()))
    check(status == 200, f"uuid: {status}")
    uuid = eveuuid.UuidResponse.FromString(d.open(body)).uuid
    check(len(uuid) == 36, "uuid format")

    req = attest.ZAttestReq(reqType=attest.ATTEST_REQ_NONCE)
    status, body = d.call("POST", f"/id/{uuid}/attest", signed(req))
    check(status == 201, f"attest nonce: {status}")
    check(len(attest.ZAttestResponse.FromString(d.open(body)).nonce.nonce) > 0, "nonce")
    req = attest.ZAttestReq(reqType=attest.ATTEST_REQ_QUOTE)
    status, body = d.call("POST", f"/id/{uuid}/attest", signed(req))
    check(status == 201, f"attest quote: {status}")
    qr = attest.ZAttestResponse.FromString(d.open(body)).quoteResp
    check(qr.response == attest.Z_ATTEST_RESPONSE_CODE_SUCCESS, "attest success")
    itoken = qr.integrity_token

    creq = devconfig.ConfigRequest(integrity_token=itoken)
    status, body = d.call("POST", f"/id/{uuid}/config", signed(creq))
    check(status == 200, f"config: {status}")
    cresp = devconfig.ConfigResponse.FromString(d.open(body))
    check(cresp.config.id.uuid == uuid, "config for this device")
    check(cresp.config.HasField("config_timestamp"), "config_timestamp")
    creq.configHash = cresp.configHash
    status, _ = d.call("POST", f"/id/{uuid}/config", signed(creq))
    check(status == 304, f"config again: {status}")

    im = info.ZInfoMsg(ztype=info.ZiDevice, devId=uuid)
    im.dinfo.ncpu = 3
    status, _ = d.call("POST", f"/id/{uuid}/info", signed(im))
    check(status == 201, f"info: {status}")
    mm = metrics.ZMetricMsg(devID=uuid)
    status, _ = d.call("POST", f"/id/{uuid}/metrics", signed(mm))
    check(status == 201, f"metrics: {status}")

    # Each line as EVE's newlogd writes it: Go's encoding/json of the
    # LogEntry struct (msgid a number, timestamp an object of seconds and
    # nanos, empty fields left out), not protobuf JSON.
    lines = []
    now = time.time_ns()
    for i, sev in enumerate(["info", "error"]):
        e = {"severity": sev, "source": "python", "content": f"line {i}", "msgid": i + 1,
             "timestamp": {"seconds": now // 10**9, "nanos": now % 10**9}}
        lines.append(json.dumps(e, separators=(",", ":")))
    raw = gzip.compress(("\n".join(lines) + "\n").encode())
    c = auth.AuthContainer()
    c.protectedPayload.payload = raw
    c.algo = common.HASH_ALGORITHM_SHA256_32BYTES
    c.senderCertHash = hashlib.sha256(dev_cert.public_bytes(serialization.Encoding.DER)).digest()
    c.signatureHash = raw_sig(dev_key, raw)
    status, _ = d.call("POST", f"/id/{uuid}/newlogs", c.SerializeToString())
    check(status == 201, f"newlogs: {status}")

    stored = admin_get(a.admin, a.root, token, f"/api/v1/devices/{uuid}/info")
    check(stored[0]["info"]["dinfo"]["ncpu"] == 3, "info stored")
    stored = admin_get(a.admin, a.root, token, f"/api/v1/devices/{uuid}/logs?severity=error")
    check([l["content"] for l in stored] == ["line 1"], "logs stored and searchable")
    check(stored[0]["ts_ms"] == now // 10**6, f"log time stored: {stored[0]['ts_ms']}")
    print("PASS")


if __name__ == "__main__":
    main()
