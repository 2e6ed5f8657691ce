//! The mediator against a real swtpm, started by each test in its own
//! temporary node state directory.

use std::path::Path;
use std::process::Command;

use eve_tpm::{
    DEVICE_KEY_HANDLE, Grants, KeyRole, Mediator, Operation, SocketTransport, Swtpm, Tpm,
    TpmTransport, TransportError, attributes,
};
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use p256::ecdsa::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};
use tpmwire::{Failure, PcrBank, PcrSelection, RequestRepr, ResponseRepr};
use wirebytes::testing::XorShift as Rng;

/// Whether swtpm is installed; tests that need it say so and pass without
/// it only then.
fn swtpm_installed() -> bool {
    let found = Command::new("swtpm")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("SKIPPED: the swtpm binary is not installed (apt-get install swtpm swtpm-tools)");
    }
    found
}

fn swtpm_setup_installed() -> bool {
    // `swtpm_setup --version` exits with 1; this query exits with 0.
    Command::new("swtpm_setup")
        .arg("--print-capabilities")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A node state directory whose TPM state directory already exists, so
/// swtpm manufactures a bare TPM (no EK certificate) there instead of
/// running swtpm_setup, which takes a second for its RSA EK.
fn bare_node() -> tempfile::TempDir {
    let node = tempfile::tempdir().unwrap();
    std::fs::create_dir(node.path().join("tpm")).unwrap();
    node
}

fn all_grants(service: &str) -> Grants {
    let mut grants = Grants::new();
    for op in Operation::ALL {
        grants.grant(service, op);
    }
    grants
}

fn mediator(swtpm: &Swtpm, grants: Grants) -> Mediator {
    Mediator::new(swtpm.transport().unwrap(), grants).unwrap()
}

fn ask(mediator: &Mediator, caller: &str, request: RequestRepr<'_>) -> Vec<u8> {
    mediator.handle(caller, &request.to_vec().unwrap())
}

fn public_key(mediator: &Mediator, caller: &str, request: RequestRepr<'_>) -> [u8; 65] {
    let bytes = ask(mediator, caller, request);
    match ResponseRepr::from_bytes(&bytes).unwrap() {
        ResponseRepr::PublicKey(key) => *key,
        other => panic!("expected a public key, got {other:?}"),
    }
}

fn failure(bytes: &[u8]) -> Failure {
    match ResponseRepr::from_bytes(bytes).unwrap() {
        ResponseRepr::Failure(f) => f,
        other => panic!("expected a failure, got {other:?}"),
    }
}

fn sign(mediator: &Mediator, caller: &str, digest: &[u8; 32]) -> Result<[u8; 64], Failure> {
    let bytes = ask(mediator, caller, RequestRepr::SignDigest { digest });
    match ResponseRepr::from_bytes(&bytes).unwrap() {
        ResponseRepr::Signature(sig) => Ok(*sig),
        ResponseRepr::Failure(f) => Err(f),
        other => panic!("expected a signature, got {other:?}"),
    }
}

fn verify(key: &[u8; 65], digest: &[u8; 32], signature: &[u8; 64]) -> bool {
    let key = VerifyingKey::from_sec1_bytes(key).unwrap();
    let signature = Signature::from_slice(signature).unwrap();
    key.verify_prehash(digest, &signature).is_ok()
}

#[test]
fn device_key_is_created_once_and_survives_restart() {
    if !swtpm_installed() {
        return;
    }
    let node = tempfile::tempdir().unwrap();
    let first = {
        let swtpm = Swtpm::start(node.path()).unwrap();
        let m = mediator(&swtpm, all_grants("zedagent"));
        let created = public_key(&m, "zedagent", RequestRepr::CreateDeviceKey);
        assert_eq!(created[0], 0x04);
        assert_eq!(
            public_key(&m, "zedagent", RequestRepr::CreateDeviceKey),
            created,
            "creating again returns the existing key"
        );
        assert_eq!(
            public_key(&m, "zedagent", RequestRepr::DevicePublicKey),
            created
        );
        created
    };
    assert!(node.path().join("tpm").is_dir());
    let swtpm = Swtpm::start(node.path()).unwrap();
    assert_eq!(swtpm.state_dir(), node.path().join("tpm"));
    // The pid file names a process that carries its path, which is how a
    // host started after one that died recognises the swtpm it left.
    let pid_file = Swtpm::pid_file(node.path());
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", pid.trim())).unwrap();
    assert!(
        String::from_utf8_lossy(&cmdline).contains(pid_file.to_str().unwrap()),
        "{pid_file:?} names process {pid}"
    );
    let m = mediator(&swtpm, all_grants("zedagent"));
    assert_eq!(
        public_key(&m, "zedagent", RequestRepr::DevicePublicKey),
        first,
        "the key persists across an swtpm restart"
    );
    let digest: [u8; 32] = Sha256::digest(b"after restart").into();
    let sig = sign(&m, "zedagent", &digest).unwrap();
    assert!(verify(&first, &digest, &sig));
}

#[test]
fn signatures_verify_under_the_device_key() {
    if !swtpm_installed() {
        return;
    }
    let node = bare_node();
    let swtpm = Swtpm::start(node.path()).unwrap();
    let m = mediator(&swtpm, all_grants("zedagent"));
    let digest: [u8; 32] = Sha256::digest(b"an EVE API v2 payload").into();
    assert_eq!(
        sign(&m, "zedagent", &digest),
        Err(Failure::NotProvisioned),
        "no signing before the key exists"
    );
    let key = public_key(&m, "zedagent", RequestRepr::CreateDeviceKey);
    for message in [&b"an EVE API v2 payload"[..], b"another", b""] {
        let digest: [u8; 32] = Sha256::digest(message).into();
        let sig = sign(&m, "zedagent", &digest).unwrap();
        assert!(verify(&key, &digest, &sig), "signature over {message:?}");
        let other: [u8; 32] = Sha256::digest(b"not what was signed").into();
        assert!(!verify(&key, &other, &sig));
    }
}

#[test]
fn keys_are_bound_to_the_tpm() {
    if !swtpm_installed() {
        return;
    }
    let node = bare_node();
    let swtpm = Swtpm::start(node.path()).unwrap();
    let mut tpm = Tpm::new(SocketTransport::connect(swtpm.socket_path()).unwrap());
    let device = tpm.ensure_key(KeyRole::Device).unwrap();
    let attestation = tpm.ensure_key(KeyRole::Attestation).unwrap();
    assert_ne!(device.point, attestation.point);
    // What the TPM itself reports, not what we asked for.
    let reported = tpm.read_public(DEVICE_KEY_HANDLE).unwrap();
    assert_eq!(reported.point, device.point);
    let bound = attributes::FIXED_TPM | attributes::FIXED_PARENT;
    assert_eq!(
        reported.attributes & bound,
        bound,
        "the TPM refuses to duplicate (export) the device key"
    );
    assert_ne!(reported.attributes & attributes::SENSITIVE_DATA_ORIGIN, 0);
    assert_eq!(reported.attributes & attributes::DECRYPT, 0);
    let reported = tpm.read_public(KeyRole::Attestation.handle()).unwrap();
    assert_eq!(reported.attributes & bound, bound);
    assert_ne!(reported.attributes & attributes::RESTRICTED, 0);
}

#[test]
fn pcrs_read_as_sha256_values() {
    if !swtpm_installed() {
        return;
    }
    let node = bare_node();
    let swtpm = Swtpm::start(node.path()).unwrap();
    let m = mediator(&swtpm, all_grants("zedagent"));
    // All 24: more than the eight a TPM returns per PCR_Read.
    let selection = PcrSelection::from_bits(0x00ff_ffff).unwrap();
    let bytes = ask(
        &m,
        "zedagent",
        RequestRepr::ReadPcrs {
            bank: PcrBank::Sha256,
            selection,
        },
    );
    let ResponseRepr::Pcrs(values) = ResponseRepr::from_bytes(&bytes).unwrap() else {
        panic!("expected PCR values");
    };
    assert_eq!(values.selection(), selection);
    assert_eq!(values.iter().count(), 24);
    for (index, value) in values.iter() {
        assert_eq!(value.len(), 32);
        // Nothing has been measured into swtpm: resettable PCRs 17-22
        // start at all ones, the others at zero.
        let expected = if (17..=22).contains(&index) { 0xff } else { 0 };
        assert_eq!(value, &[expected; 32][..], "PCR {index}");
    }
}

/// The fields of a `TPMS_ATTEST` quote a verifier checks.
struct QuoteInfo {
    extra_data: Vec<u8>,
    selection_bits: u32,
    pcr_digest: Vec<u8>,
}

fn parse_quote(attest: &[u8]) -> QuoteInfo {
    let mut at = 0;
    let mut take = |n: usize| {
        let field = &attest[at..at + n];
        at += n;
        field.to_vec()
    };
    assert_eq!(take(4), 0xff54_4347u32.to_be_bytes(), "TPM_GENERATED_VALUE");
    assert_eq!(take(2), 0x8018u16.to_be_bytes(), "TPM_ST_ATTEST_QUOTE");
    let n = u16::from_be_bytes(take(2).try_into().unwrap()) as usize;
    take(n); // qualifiedSigner
    let n = u16::from_be_bytes(take(2).try_into().unwrap()) as usize;
    let extra_data = take(n);
    take(17 + 8); // clockInfo, firmwareVersion
    assert_eq!(take(4), 1u32.to_be_bytes(), "one PCR bank");
    assert_eq!(take(2), 0x000bu16.to_be_bytes(), "SHA-256 bank");
    let n = take(1)[0] as usize;
    let mut select = take(n);
    select.resize(4, 0);
    let selection_bits = u32::from_le_bytes(select.try_into().unwrap());
    let n = u16::from_be_bytes(take(2).try_into().unwrap()) as usize;
    let pcr_digest = take(n);
    assert_eq!(at, attest.len(), "nothing after the quote info");
    QuoteInfo {
        extra_data,
        selection_bits,
        pcr_digest,
    }
}

#[test]
fn quotes_verify_and_carry_the_nonce() {
    if !swtpm_installed() {
        return;
    }
    let node = bare_node();
    let swtpm = Swtpm::start(node.path()).unwrap();
    let m = mediator(&swtpm, all_grants("zedagent"));
    let device = public_key(&m, "zedagent", RequestRepr::CreateDeviceKey);
    let nonce: [u8; 32] = Sha256::digest(b"controller nonce").into();
    let selection = PcrSelection::from_bits(0xffff).unwrap();
    let request = RequestRepr::Quote {
        nonce: &nonce,
        bank: PcrBank::Sha256,
        selection,
    };
    let first_key = {
        let bytes = ask(&m, "zedagent", request);
        let ResponseRepr::Quote {
            attest,
            signature,
            attestation_key,
            pcrs,
        } = ResponseRepr::from_bytes(&bytes).unwrap()
        else {
            panic!("expected a quote");
        };
        assert_ne!(attestation_key, &device, "quotes use their own key");
        let digest: [u8; 32] = Sha256::digest(attest).into();
        assert!(verify(attestation_key, &digest, signature));
        let info = parse_quote(attest);
        assert_eq!(info.extra_data, nonce);
        assert_eq!(info.selection_bits, 0xffff);
        assert_eq!(
            info.pcr_digest,
            Sha256::digest(pcrs.concatenated()).to_vec(),
            "the reported PCR values hash to the quoted digest"
        );
        // A tampered attestation no longer verifies.
        let mut tampered = attest.to_vec();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        let digest: [u8; 32] = Sha256::digest(&tampered).into();
        assert!(!verify(attestation_key, &digest, signature));
        *attestation_key
    };
    // The attestation key is persistent: a second quote uses the same one.
    let bytes = ask(&m, "zedagent", request);
    let ResponseRepr::Quote {
        attestation_key, ..
    } = ResponseRepr::from_bytes(&bytes).unwrap()
    else {
        panic!("expected a quote");
    };
    assert_eq!(attestation_key, &first_key);
}

#[test]
fn services_are_refused_what_the_manifest_does_not_grant() {
    if !swtpm_installed() {
        return;
    }
    let node = bare_node();
    let swtpm = Swtpm::start(node.path()).unwrap();
    let mut grants = Grants::new();
    grants
        .grant("zedagent", Operation::CreateDeviceKey)
        .grant("zedagent", Operation::Sign)
        .grant("nim", Operation::ReadPcrs)
        .grant("verifier", Operation::Sign);
    let m = mediator(&swtpm, grants);
    let key = public_key(&m, "zedagent", RequestRepr::CreateDeviceKey);
    let digest = [7u8; 32];
    assert_eq!(sign(&m, "nim", &digest), Err(Failure::Denied));
    assert_eq!(sign(&m, "unknown", &digest), Err(Failure::Denied));
    assert_eq!(
        failure(&ask(&m, "nim", RequestRepr::CreateDeviceKey)),
        Failure::Denied
    );
    assert_eq!(
        failure(&ask(&m, "zedagent", RequestRepr::ReadEkCert)),
        Failure::Denied
    );
    assert_eq!(
        failure(&ask(
            &m,
            "zedagent",
            RequestRepr::Quote {
                nonce: &[1; 8],
                bank: PcrBank::Sha256,
                selection: PcrSelection::from_bits(1).unwrap(),
            }
        )),
        Failure::Denied
    );
    assert_eq!(
        failure(&ask(
            &m,
            "zedagent",
            RequestRepr::ReadPcrs {
                bank: PcrBank::Sha256,
                selection: PcrSelection::from_bits(1).unwrap(),
            }
        )),
        Failure::Denied
    );
    // A service allowed to sign may read the public key but not create it.
    assert_eq!(
        public_key(&m, "verifier", RequestRepr::DevicePublicKey),
        key
    );
    assert_eq!(
        failure(&ask(&m, "verifier", RequestRepr::CreateDeviceKey)),
        Failure::Denied
    );
    assert!(verify(
        &key,
        &digest,
        &sign(&m, "verifier", &digest).unwrap()
    ));
}

#[test]
fn ek_certificate_is_read_when_provisioned() {
    if !swtpm_installed() {
        return;
    }
    let node = tempfile::tempdir().unwrap();
    // What a crash in the middle of manufacturing leaves: a staging
    // directory that was never renamed into place. It is made again.
    std::fs::create_dir(node.path().join("tpm.new")).unwrap();
    std::fs::write(node.path().join("tpm.new/tpm2-00.permall"), b"half").unwrap();
    let swtpm = Swtpm::start(node.path()).unwrap();
    assert!(!node.path().join("tpm.new").exists());
    assert!(node.path().join("tpm").is_dir());
    let m = mediator(&swtpm, all_grants("attest"));
    let bytes = ask(&m, "attest", RequestRepr::ReadEkCert);
    if !swtpm_setup_installed() {
        assert_eq!(failure(&bytes), Failure::NotProvisioned);
        return;
    }
    let ResponseRepr::EkCert(der) = ResponseRepr::from_bytes(&bytes).unwrap() else {
        panic!("expected an EK certificate");
    };
    // A DER SEQUENCE with a two-byte length covering exactly the rest.
    assert_eq!(der[0], 0x30);
    assert_eq!(der[1], 0x82);
    assert_eq!(
        usize::from(u16::from_be_bytes([der[2], der[3]])) + 4,
        der.len()
    );
}

#[test]
fn ek_certificate_is_not_provisioned_on_a_bare_tpm() {
    if !swtpm_installed() {
        return;
    }
    // A state directory that exists is used as it is.
    let node = bare_node();
    let swtpm = Swtpm::start(node.path()).unwrap();
    let m = mediator(&swtpm, all_grants("attest"));
    assert_eq!(
        failure(&ask(&m, "attest", RequestRepr::ReadEkCert)),
        Failure::NotProvisioned
    );
}

fn valid_requests() -> Vec<Vec<u8>> {
    let selection = PcrSelection::from_bits(0x83).unwrap();
    [
        RequestRepr::CreateDeviceKey,
        RequestRepr::DevicePublicKey,
        RequestRepr::SignDigest { digest: &[3; 32] },
        RequestRepr::ReadPcrs {
            bank: PcrBank::Sha256,
            selection,
        },
        RequestRepr::Quote {
            nonce: &[9; 16],
            bank: PcrBank::Sha256,
            selection,
        },
        RequestRepr::ReadEkCert,
    ]
    .iter()
    .map(|r| r.to_vec().unwrap())
    .collect()
}

#[test]
fn hostile_request_bytes_are_bad_requests() {
    if !swtpm_installed() {
        return;
    }
    let node = bare_node();
    let swtpm = Swtpm::start(node.path()).unwrap();
    let m = mediator(&swtpm, all_grants("zedagent"));
    let mut rng = Rng::new(0x1234_5678_9abc_def1);
    let seeds = valid_requests();
    let mut bad = 0;
    for i in 0..400 {
        let mut request: Vec<u8> = if i % 2 == 0 {
            (0..rng.below(100)).map(|_| rng.next_u64() as u8).collect()
        } else {
            seeds[rng.below(seeds.len())].clone()
        };
        if !request.is_empty() {
            let at = rng.below(request.len());
            request[at] ^= 1 << rng.below(8);
        }
        let response = m.handle("zedagent", &request);
        let parsed = ResponseRepr::from_bytes(&response).expect("a well-formed response");
        if tpmwire::RequestRepr::from_bytes(&request).is_err() {
            assert_eq!(parsed, ResponseRepr::Failure(Failure::BadRequest));
            bad += 1;
        }
    }
    assert!(
        bad > 200,
        "only {bad} of the mutated requests were malformed"
    );
    // The mediator still works afterwards.
    public_key(&m, "zedagent", RequestRepr::CreateDeviceKey);
}

/// A transport between the mediator and swtpm that corrupts responses
/// after the first `clean` ones.
struct Corrupting {
    inner: SocketTransport,
    rng: Rng,
    clean: usize,
}

impl TpmTransport for Corrupting {
    fn transact(&mut self, command: &[u8]) -> Result<Vec<u8>, TransportError> {
        let mut response = self.inner.transact(command)?;
        if self.clean > 0 {
            self.clean -= 1;
            return Ok(response);
        }
        let rng = &mut self.rng;
        match rng.below(5) {
            0 => response.truncate(rng.below(response.len() + 1)),
            1 => {
                let at = rng.below(response.len());
                response[at] = rng.next_u64() as u8;
            }
            2 => response = (0..rng.below(64)).map(|_| rng.next_u64() as u8).collect(),
            3 => {
                // Consistent header, cut or padded parameters.
                let len = rng.below(response.len() + 16).max(10);
                response.resize(len, rng.next_u64() as u8);
                response[2..6].copy_from_slice(&(len as u32).to_be_bytes());
            }
            _ => {}
        }
        Ok(response)
    }
}

#[test]
fn corrupted_tpm_responses_are_errors_not_panics() {
    if !swtpm_installed() {
        return;
    }
    let node = bare_node();
    let swtpm = Swtpm::start(node.path()).unwrap();
    // Provision the keys over a clean connection first, so that the
    // corrupted runs exercise every command's response parsing.
    {
        let mut tpm = Tpm::new(swtpm.transport().unwrap());
        tpm.ensure_key(KeyRole::Device).unwrap();
        tpm.ensure_key(KeyRole::Attestation).unwrap();
    }
    // The mediator's own startup command goes through clean.
    let corrupting = Corrupting {
        inner: swtpm.transport().unwrap(),
        rng: Rng::new(0x0dd_b1a5_e5ba_d5e1),
        clean: 1,
    };
    let m = Mediator::new(corrupting, all_grants("zedagent")).unwrap();
    let requests = valid_requests();
    let mut failures = 0;
    for i in 0..300 {
        let response = m.handle("zedagent", &requests[i % requests.len()]);
        if let ResponseRepr::Failure(f) = ResponseRepr::from_bytes(&response).unwrap() {
            assert_ne!(f, Failure::Denied);
            assert_ne!(f, Failure::BadRequest);
            failures += 1;
        }
    }
    assert!(failures > 0, "corruption never surfaced as a failure");
}

/// A transport that answers from a script instead of a TPM.
struct Scripted(Vec<Vec<u8>>);

impl TpmTransport for Scripted {
    fn transact(&mut self, _command: &[u8]) -> Result<Vec<u8>, TransportError> {
        if self.0.is_empty() {
            return Err(TransportError::Io(std::io::ErrorKind::BrokenPipe.into()));
        }
        Ok(self.0.remove(0))
    }
}

#[test]
fn garbage_from_the_tpm_maps_to_failures() {
    // Startup succeeds, then every answer is wrong in a different way.
    let startup_ok = vec![0x80, 0x01, 0, 0, 0, 10, 0, 0, 0, 0];
    let script = vec![
        startup_ok,
        // Truncated header.
        vec![0x80, 0x01, 0, 0],
        // A response code: the TPM is in failure mode.
        vec![0x80, 0x01, 0, 0, 0, 10, 0, 0, 0x01, 0x01],
        // Success with no parameters where a handle list is due.
        vec![0x80, 0x01, 0, 0, 0, 10, 0, 0, 0, 0],
    ];
    let m = Mediator::new(Scripted(script), all_grants("zedagent")).unwrap();
    let digest = RequestRepr::SignDigest { digest: &[0; 32] };
    assert_eq!(failure(&ask(&m, "zedagent", digest)), Failure::TpmMalformed);
    assert_eq!(
        failure(&ask(&m, "zedagent", RequestRepr::CreateDeviceKey)),
        Failure::Tpm(0x101)
    );
    assert_eq!(
        failure(&ask(&m, "zedagent", RequestRepr::ReadEkCert)),
        Failure::TpmMalformed
    );
    // The script is exhausted: the TPM is gone.
    assert_eq!(
        failure(&ask(&m, "zedagent", RequestRepr::DevicePublicKey)),
        Failure::Unavailable
    );
}

#[test]
fn swtpm_refuses_a_state_dir_too_deep_for_a_socket() {
    let node = tempfile::tempdir().unwrap();
    let deep = node.path().join("d".repeat(120));
    std::fs::create_dir_all(deep.join("tpm")).unwrap();
    assert!(matches!(
        Swtpm::start(Path::new(&deep)),
        Err(eve_tpm::SwtpmError::SocketPathTooLong(_))
    ));
}
