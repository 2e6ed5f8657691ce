//! The mediator against a real swtpm, started by each test in its own
//! temporary node state directory.

use std::path::Path;
use std::process::Command;

use eve_tpm::{
    DEVICE_KEY_HANDLE, KeyRole, Mediator, Refusal, SocketTransport, Swtpm, Tpm, TpmTransport,
    TransportError, attributes,
};
use hostops::tpm::{
    Invalid, PcrBank, PcrSelect, PcrSelection, QuoteRequest, SignRequest, TpmError, TpmErrorCode,
};
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use p256::ecdsa::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};
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

fn mediator(swtpm: &Swtpm) -> Mediator {
    Mediator::new(swtpm.transport().unwrap()).unwrap()
}

fn failed(code: TpmErrorCode) -> Refusal {
    Refusal::Failed(TpmError::new(code))
}

fn public_key(key: Result<hostops::tpm::PublicKey, Refusal>) -> [u8; 65] {
    *key.expect("a public key").point().expect("a P-256 point")
}

fn sign(mediator: &Mediator, digest: &[u8; 32]) -> Result<[u8; 64], Refusal> {
    mediator
        .sign(&SignRequest {
            digest: digest.to_vec(),
        })
        .map(|s| *s.raw().expect("64 bytes"))
}

fn select(bits: u32) -> PcrSelect {
    PcrSelect::new(PcrBank::Sha256, PcrSelection::from_bits(bits).unwrap())
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
        let m = mediator(&swtpm);
        let created = public_key(m.create_device_key());
        assert_eq!(created[0], 0x04);
        assert_eq!(
            public_key(m.create_device_key()),
            created,
            "creating again returns the existing key"
        );
        assert_eq!(public_key(m.device_public_key()), created);
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
    let m = mediator(&swtpm);
    assert_eq!(
        public_key(m.device_public_key()),
        first,
        "the key persists across an swtpm restart"
    );
    let digest: [u8; 32] = Sha256::digest(b"after restart").into();
    let sig = sign(&m, &digest).unwrap();
    assert!(verify(&first, &digest, &sig));
}

#[test]
fn signatures_verify_under_the_device_key() {
    if !swtpm_installed() {
        return;
    }
    let node = bare_node();
    let swtpm = Swtpm::start(node.path()).unwrap();
    let m = mediator(&swtpm);
    let digest: [u8; 32] = Sha256::digest(b"an EVE API v2 payload").into();
    assert_eq!(
        sign(&m, &digest),
        Err(failed(TpmErrorCode::NotProvisioned)),
        "no signing before the key exists"
    );
    assert_eq!(
        m.device_public_key(),
        Err(failed(TpmErrorCode::NotProvisioned))
    );
    let key = public_key(m.create_device_key());
    for message in [&b"an EVE API v2 payload"[..], b"another", b""] {
        let digest: [u8; 32] = Sha256::digest(message).into();
        let sig = sign(&m, &digest).unwrap();
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
    let m = mediator(&swtpm);
    // All 24: more than the eight a TPM returns per PCR_Read.
    let pcrs = m.read_pcrs(&select(0x00ff_ffff)).unwrap();
    assert_eq!(pcrs.select, Some(select(0x00ff_ffff)));
    assert_eq!(pcrs.values().unwrap().count(), 24);
    for (index, value) in pcrs.values().unwrap() {
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
    let m = mediator(&swtpm);
    let device = public_key(m.create_device_key());
    let nonce: [u8; 32] = Sha256::digest(b"controller nonce").into();
    let request = QuoteRequest {
        nonce: nonce.to_vec(),
        select: Some(select(0xffff)),
    };
    let first_key = {
        let quote = m.quote(&request).unwrap();
        quote.check().expect("a well-formed quote");
        let attestation_key: [u8; 65] = quote.attestation_key.as_slice().try_into().unwrap();
        let signature: [u8; 64] = quote.signature.as_slice().try_into().unwrap();
        assert_ne!(attestation_key, device, "quotes use their own key");
        let digest: [u8; 32] = Sha256::digest(&quote.attest).into();
        assert!(verify(&attestation_key, &digest, &signature));
        let info = parse_quote(&quote.attest);
        assert_eq!(info.extra_data, nonce);
        assert_eq!(info.selection_bits, 0xffff);
        let pcrs = quote.pcrs.as_ref().unwrap();
        assert_eq!(
            info.pcr_digest,
            Sha256::digest(pcrs.digests.concat()).to_vec(),
            "the reported PCR values hash to the quoted digest"
        );
        // A tampered attestation no longer verifies.
        let mut tampered = quote.attest.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        let digest: [u8; 32] = Sha256::digest(&tampered).into();
        assert!(!verify(&attestation_key, &digest, &signature));
        attestation_key
    };
    // The attestation key is persistent: a second quote uses the same one.
    let again = m.quote(&request).unwrap();
    assert_eq!(again.attestation_key, first_key);
}

#[test]
fn the_attestation_key_is_created_once_and_is_the_quoting_key() {
    if !swtpm_installed() {
        return;
    }
    let node = bare_node();
    let swtpm = Swtpm::start(node.path()).unwrap();
    let m = mediator(&swtpm);
    let created = public_key(m.create_attestation_key());
    assert_eq!(public_key(m.create_attestation_key()), created, "kept");
    let device = public_key(m.create_device_key());
    assert_ne!(created, device, "a key of its own");
    // The key certified before the first quote is the one that signs it.
    let quote = m
        .quote(&QuoteRequest {
            nonce: vec![7; 32],
            select: Some(select(0xffff)),
        })
        .unwrap();
    assert_eq!(quote.attestation_key, created);
    let digest: [u8; 32] = Sha256::digest(&quote.attest).into();
    let signature: [u8; 64] = quote.signature.as_slice().try_into().unwrap();
    assert!(verify(&created, &digest, &signature));
}

#[test]
fn malformed_requests_are_refused_without_using_the_tpm() {
    // A TPM that answers its startup and nothing else: any command would
    // fail as Unavailable, so a BadRequest means none was sent.
    let m = Mediator::new(Scripted(vec![startup_ok()])).unwrap();
    let bad = |invalid| Err::<(), _>(Refusal::BadRequest(invalid));
    assert_eq!(
        m.sign(&SignRequest {
            digest: vec![0; 31]
        })
        .map(drop),
        bad(Invalid::Digest)
    );
    assert_eq!(
        m.read_pcrs(&PcrSelect {
            bank: 0x0004,
            selection: 1
        })
        .map(drop),
        bad(Invalid::UnsupportedBank(4))
    );
    assert_eq!(
        m.read_pcrs(&PcrSelect {
            bank: 0x000b,
            selection: 0
        })
        .map(drop),
        bad(Invalid::Selection)
    );
    for nonce in [vec![], vec![1; 65]] {
        assert_eq!(
            m.quote(&QuoteRequest {
                nonce,
                select: Some(select(1))
            })
            .map(drop),
            bad(Invalid::Nonce)
        );
    }
    assert_eq!(
        m.quote(&QuoteRequest {
            nonce: vec![1],
            select: None
        })
        .map(drop),
        bad(Invalid::Selection)
    );
    assert_eq!(
        m.device_public_key(),
        Err(failed(TpmErrorCode::Unavailable))
    );
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
    let m = mediator(&swtpm);
    let answer = m.read_ek_cert();
    if !swtpm_setup_installed() {
        assert_eq!(answer, Err(failed(TpmErrorCode::NotProvisioned)));
        return;
    }
    let der = answer.expect("an EK certificate").der;
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
    let m = mediator(&swtpm);
    assert_eq!(m.read_ek_cert(), Err(failed(TpmErrorCode::NotProvisioned)));
}

/// Runs operation `i` of the six, for tests that cycle through them all;
/// whether it failed.
fn run_operation(m: &Mediator, i: usize) -> Result<(), Refusal> {
    let selection = select(0x83);
    match i % 6 {
        0 => m.create_device_key().map(drop),
        1 => m.device_public_key().map(drop),
        2 => m
            .sign(&SignRequest {
                digest: vec![3; 32],
            })
            .map(drop),
        3 => m.read_pcrs(&selection).map(drop),
        4 => m
            .quote(&QuoteRequest {
                nonce: vec![9; 16],
                select: Some(selection),
            })
            .map(drop),
        _ => m.read_ek_cert().map(drop),
    }
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
    let m = Mediator::new(corrupting).unwrap();
    let mut failures = 0;
    for i in 0..300 {
        if let Err(refusal) = run_operation(&m, i) {
            assert!(
                matches!(refusal, Refusal::Failed(_)),
                "valid requests are never bad: {refusal}"
            );
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

/// A `TPM2_Startup` answered with success.
fn startup_ok() -> Vec<u8> {
    vec![0x80, 0x01, 0, 0, 0, 10, 0, 0, 0, 0]
}

#[test]
fn garbage_from_the_tpm_maps_to_failures() {
    // Startup succeeds, then every answer is wrong in a different way.
    let script = vec![
        startup_ok(),
        // Truncated header.
        vec![0x80, 0x01, 0, 0],
        // A response code: the TPM is in failure mode.
        vec![0x80, 0x01, 0, 0, 0, 10, 0, 0, 0x01, 0x01],
        // Success with no parameters where a handle list is due.
        vec![0x80, 0x01, 0, 0, 0, 10, 0, 0, 0, 0],
    ];
    let m = Mediator::new(Scripted(script)).unwrap();
    assert_eq!(sign(&m, &[0; 32]), Err(failed(TpmErrorCode::TpmMalformed)));
    assert_eq!(
        m.create_device_key(),
        Err(Refusal::Failed(TpmError::refused(0x101)))
    );
    assert_eq!(m.read_ek_cert(), Err(failed(TpmErrorCode::TpmMalformed)));
    // The script is exhausted: the TPM is gone.
    assert_eq!(
        m.device_public_key(),
        Err(failed(TpmErrorCode::Unavailable))
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

#[test]
fn the_ecdh_key_agrees_with_a_peer_and_never_signs() {
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    if !swtpm_installed() {
        return;
    }
    let node = bare_node();
    let swtpm = Swtpm::start(node.path()).unwrap();
    let m = mediator(&swtpm);
    let peer = hostops::tpm::PublicKey { point: vec![4; 65] };
    // Before it exists.
    assert_eq!(m.ecdh(&peer), Err(failed(TpmErrorCode::NotProvisioned)));
    let ecdh_public = public_key(m.create_ecdh_key());
    assert_eq!(public_key(m.create_ecdh_key()), ecdh_public);
    let device = public_key(m.create_device_key());
    assert_ne!(ecdh_public, device, "a key of its own");
    // The TPM's shared point is the one the peer computes with its secret.
    let mut rng = Rng::new(0x5eed);
    let mut scalar = [0u8; 32];
    for b in &mut scalar {
        *b = rng.next_u64() as u8;
    }
    let secret = p256::SecretKey::from_slice(&scalar).unwrap();
    let peer = hostops::tpm::PublicKey {
        point: secret
            .public_key()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec(),
    };
    let shared = m.ecdh(&peer).expect("a shared point");
    let tpm_key = p256::PublicKey::from_sec1_bytes(&ecdh_public).unwrap();
    let expected = (tpm_key.to_projective() * *secret.to_nonzero_scalar()).to_affine();
    let expected = expected.to_encoded_point(false);
    assert_eq!(&shared.point().unwrap()[..], &expected.as_bytes()[1..]);
    // A point off the curve is the TPM's refusal, not a crash.
    let off = hostops::tpm::PublicKey {
        point: {
            let mut p = peer.point.clone();
            p[64] ^= 1;
            p
        },
    };
    assert!(matches!(m.ecdh(&off), Err(Refusal::Failed(_))));
    // A malformed point never reaches the TPM.
    let short = hostops::tpm::PublicKey { point: vec![4; 10] };
    assert_eq!(m.ecdh(&short), Err(Refusal::BadRequest(Invalid::PublicKey)));
}
