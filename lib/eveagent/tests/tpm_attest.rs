//! Attestation with a TPM against our real controller: the attestation
//! certificate, a nonce and a quote, in EVE's order. The TPM is played by
//! software keys behind the agent's interfaces: the device key signs, and
//! a quoter builds the `TPMS_ATTEST` a TPM would and signs it with the
//! attestation key, over PCR values the test controls.

use std::cell::RefCell;
use std::rc::Rc;

use eve_proto::Message;
use eve_proto::attest::{ZAttestReq, ZAttestReqType};
use eve_proto::auth::AuthContainer;
use eve_proto::info::AttestationState;
use eve_proto::p256::SecretKey;
use eve_proto::sha256;
use eve_proto::sign::{Signer, SoftwareSigner};
use eveagent::io::{Request, Response};
use eveagent::{AttestStatus, DeviceKeySource, Phase, QUOTED_PCRS, Quoter, TpmQuote};

mod common;

use common::*;

/// A TPM's quoting, in software: the attestation key and the PCR bank.
#[derive(Clone)]
struct SoftTpm {
    key: Rc<SoftwareSigner>,
    pcrs: Rc<RefCell<Vec<[u8; 32]>>>,
    /// When set, the TPM fails to quote.
    broken: Rc<RefCell<bool>>,
    /// Signs with this key instead (a forged quote).
    forger: Option<Rc<SoftwareSigner>>,
}

impl SoftTpm {
    fn new(seed: u8) -> Self {
        SoftTpm {
            key: Rc::new(SoftwareSigner::new(
                &SecretKey::from_slice(&[seed; 32]).unwrap(),
            )),
            pcrs: Rc::new(RefCell::new(
                QUOTED_PCRS.map(|i| sha256(&[i as u8])).collect(),
            )),
            broken: Rc::new(RefCell::new(false)),
            forger: None,
        }
    }

    /// `TPMS_ATTEST` of a quote over PCRs 0-15 of the SHA-256 bank (TPM 2.0
    /// part 2, 10.12).
    fn attest(&self, nonce: &[u8]) -> Vec<u8> {
        let mut a = Vec::new();
        a.extend_from_slice(&0xff54_4347u32.to_be_bytes()); // TPM_GENERATED
        a.extend_from_slice(&0x8018u16.to_be_bytes()); // TPM_ST_ATTEST_QUOTE
        a.extend_from_slice(&2u16.to_be_bytes());
        a.extend_from_slice(&[0, 0x0b]); // qualifiedSigner
        a.extend_from_slice(&(nonce.len() as u16).to_be_bytes());
        a.extend_from_slice(nonce);
        a.extend_from_slice(&[0; 17 + 8]); // clockInfo, firmwareVersion
        a.extend_from_slice(&1u32.to_be_bytes());
        a.extend_from_slice(&0x000bu16.to_be_bytes());
        a.extend_from_slice(&[3, 0xff, 0xff, 0x00]);
        let concat: Vec<u8> = self.pcrs.borrow().concat();
        a.extend_from_slice(&32u16.to_be_bytes());
        a.extend_from_slice(&sha256(&concat));
        a
    }
}

impl Quoter for SoftTpm {
    fn quote(&self, nonce: &[u8]) -> Result<TpmQuote, String> {
        if *self.broken.borrow() {
            return Err("TPM error 0x101".into());
        }
        let attest = self.attest(nonce);
        let signer = self.forger.as_deref().unwrap_or(&self.key);
        let signature = signer.sign_digest(&sha256(&attest)).unwrap().to_vec();
        Ok(TpmQuote {
            attest,
            signature,
            pcrs: QUOTED_PCRS
                .zip(self.pcrs.borrow().iter())
                .map(|(i, v)| (i, v.to_vec()))
                .collect(),
            event_log: Vec::new(),
        })
    }
}

fn device_key() -> DeviceKeySource {
    DeviceKeySource::External(Box::new(SoftwareSigner::new(
        &SecretKey::from_slice(&[0x21; 32]).unwrap(),
    )))
}

/// The attestation requests' types, in the order the agent sent them.
fn recording(log: Rc<RefCell<Vec<ZAttestReqType>>>) -> Rewrite {
    Box::new(move |req: &Request, resp: Response| {
        if req.path.ends_with("/attest") {
            let env = AuthContainer::decode(req.body.as_slice()).unwrap();
            let payload = env.protected_payload.unwrap().payload;
            let attest = ZAttestReq::decode(payload.as_slice()).unwrap();
            log.borrow_mut().push(attest.req_type());
            if attest.req_type() == ZAttestReqType::AttestReqQuote {
                let quote = attest.quote.expect("a TPM quote");
                assert_eq!(quote.pcr_values.len(), 16, "PCRs 0-15");
            }
        }
        resp
    })
}

#[test]
fn with_a_tpm_the_device_attests_with_a_quote_in_eves_order() {
    let ctl = start_controller("tpm-quote");
    let onboard = onboarding_identity(21);
    ctl.ctl
        .onboard_add(&onboard.0, &["SN-TPMQ".into()])
        .expect("pre-register");
    let mut node = Node::new(&ctl, "SN-TPMQ", 31, onboard);
    let tpm = SoftTpm::new(0x44);
    let mut agent = node.boot_with(device_key());
    agent.use_attestation_key(Box::new(tpm.clone()), &tpm.key.public_key());
    let mut http = ctl.http();
    let log = Rc::new(RefCell::new(Vec::new()));
    let mut tamper = Tamper {
        inner: &mut http,
        rewrite: recording(log.clone()),
    };
    let uuid = onboard_to_running(&node, &mut agent, &mut tamper);
    assert_eq!(
        *log.borrow(),
        [
            ZAttestReqType::AttestReqCert,
            ZAttestReqType::AttestReqNonce,
            ZAttestReqType::AttestReqQuote
        ]
    );
    assert_eq!(agent.status().attest, AttestStatus::Attested);
    let stored = ctl.ctl.store().device(&uuid).unwrap().unwrap();
    assert_eq!(stored.attest.state, "attested-tpm");
    assert_eq!(stored.attest.nonce, None, "the nonce is spent");
    let cert_pem = stored.attest.attest_cert_pem.expect("attestation cert");
    let cert = eve_proto::x509::parse_pem(cert_pem.as_bytes()).unwrap();
    assert_eq!(
        eve_proto::x509::p256_public_key(&cert).unwrap(),
        tpm.key.public_key()
    );
    let device = SoftwareSigner::new(&SecretKey::from_slice(&[0x21; 32]).unwrap());
    assert!(eve_proto::x509::verify_signed_by(&cert, &device.public_key()).unwrap());
    // The config poll carries the token the quote earned.
    assert!(agent.status().counters.configs_accepted >= 1);
    node.run_until_time(&mut agent, &mut tamper, node.now() + 1_000);
    let d = stored_device_info(&ctl, &uuid);
    let attestation = d.attestation_info.expect("attestation info");
    assert_eq!(attestation.state(), AttestationState::Complete);
    assert!(attestation.error.is_none());

    // The next boot keeps the certificate and attests the same way.
    let mut agent = node.boot_with(device_key());
    agent.use_attestation_key(Box::new(tpm.clone()), &tpm.key.public_key());
    log.borrow_mut().clear();
    onboard_to_running(&node, &mut agent, &mut tamper);
    assert_eq!(log.borrow().len(), 3, "{:?}", log.borrow());
    let again = ctl.ctl.store().device(&uuid).unwrap().unwrap();
    assert_eq!(again.attest.attest_cert_pem, Some(cert_pem));
}

#[test]
fn a_failed_or_refused_quote_is_reported_and_retried() {
    let ctl = start_controller("tpm-refused");
    let onboard = onboarding_identity(22);
    ctl.ctl
        .onboard_add(&onboard.0, &["SN-TPMR".into()])
        .expect("pre-register");
    let mut node = Node::new(&ctl, "SN-TPMR", 41, onboard);
    let mut tpm = SoftTpm::new(0x45);
    *tpm.broken.borrow_mut() = true;
    let mut agent = node.boot_with(device_key());
    agent.use_attestation_key(Box::new(tpm.clone()), &tpm.key.public_key());
    let mut http = ctl.http();
    // The TPM cannot quote: reported with the TPM's reason.
    assert!(node.run(&mut agent, &mut http, 40, |a| a.status().phase
        == Phase::Attest
        && a.status().counters.info_sent >= 1));
    let uuid = agent.status().uuid.unwrap().to_owned();
    node.run_until_time(&mut agent, &mut http, node.now() + 2_000);
    let d = stored_device_info(&ctl, &uuid);
    let attestation = d.attestation_info.expect("attestation info");
    assert_eq!(attestation.state(), AttestationState::RestartWait);
    let error = attestation.error.expect("error");
    assert!(
        error
            .description
            .contains("the TPM did not quote: TPM error 0x101"),
        "{}",
        error.description
    );
    assert_ne!(agent.status().attest, AttestStatus::Attested);

    // A quote signed by another key: the controller refuses it, the agent
    // says why and keeps trying; no token, no config.
    let forged = Rc::new(SoftwareSigner::new(
        &SecretKey::from_slice(&[0x46; 32]).unwrap(),
    ));
    tpm.forger = Some(forged);
    *tpm.broken.borrow_mut() = false;
    let mut agent = node.boot_with(device_key());
    agent.use_attestation_key(Box::new(tpm.clone()), &tpm.key.public_key());
    assert!(node.run(&mut agent, &mut http, 60, |a| a.status().attest
        == AttestStatus::Refused
        && a.status().counters.info_sent >= 1));
    node.run_until_time(&mut agent, &mut http, node.now() + 2_000);
    assert_ne!(agent.status().phase, Phase::Running);
    let d = stored_device_info(&ctl, &uuid);
    let error = d.attestation_info.unwrap().error.expect("error");
    assert!(
        error
            .description
            .contains("the controller refused the quote (Z_ATTEST_RESPONSE_CODE_INVALID)"),
        "{}",
        error.description
    );

    // With the TPM's own key again, the device attests.
    tpm.forger = None;
    let mut agent2 = node.boot_with(device_key());
    agent2.use_attestation_key(Box::new(tpm.clone()), &tpm.key.public_key());
    onboard_to_running(&node, &mut agent2, &mut http);
    assert_eq!(agent2.status().attest, AttestStatus::Attested);
}

#[test]
fn changed_pcrs_are_refused_until_the_operator_vouches_for_them() {
    let ctl = start_controller("tpm-pcrs");
    let onboard = onboarding_identity(23);
    ctl.ctl
        .onboard_add(&onboard.0, &["SN-TPMP".into()])
        .expect("pre-register");
    let mut node = Node::new(&ctl, "SN-TPMP", 51, onboard);
    let tpm = SoftTpm::new(0x47);
    let mut agent = node.boot_with(device_key());
    agent.use_attestation_key(Box::new(tpm.clone()), &tpm.key.public_key());
    let mut http = ctl.http();
    let uuid = onboard_to_running(&node, &mut agent, &mut http);
    let first = ctl.ctl.store().device(&uuid).unwrap().unwrap().attest;
    assert!(
        first.pcr_policy.is_some(),
        "the first quote's values are kept"
    );

    // A new bootloader: PCR 4 moves, and after a reboot the quote is
    // refused with the reason, and the device gets no config.
    tpm.pcrs.borrow_mut()[4] = sha256(b"another bootloader");
    let mut agent = node.boot_with(device_key());
    agent.use_attestation_key(Box::new(tpm.clone()), &tpm.key.public_key());
    assert!(node.run(&mut agent, &mut http, 60, |a| a.status().attest
        == AttestStatus::Refused));
    let refused = ctl.ctl.store().device(&uuid).unwrap().unwrap().attest;
    assert_eq!(refused.state, "failed: PCR 4 differs from the policy");
    assert_eq!(refused.pcr_policy, first.pcr_policy);
    node.run_until_time(&mut agent, &mut http, node.now() + 2_000);
    let d = stored_device_info(&ctl, &uuid);
    let error = d.attestation_info.unwrap().error.expect("error");
    assert!(
        error
            .description
            .contains("Z_ATTEST_RESPONSE_CODE_QUOTE_FAILED"),
        "{}",
        error.description
    );

    // The operator vouches for the new value: the next round attests.
    let mut policy = controller::domain::attest::PcrPolicy::new();
    policy.insert(4, tpm.pcrs.borrow()[4].to_vec());
    assert!(ctl.ctl.set_pcr_policy(&uuid, Some(&policy)).unwrap());
    onboard_to_running(&node, &mut agent, &mut http);
    assert_eq!(
        ctl.ctl.store().device(&uuid).unwrap().unwrap().attest.state,
        "attested-tpm"
    );

    // Cleared, the next quote's values become the policy.
    assert!(ctl.ctl.set_pcr_policy(&uuid, None).unwrap());
    let mut agent = node.boot_with(device_key());
    agent.use_attestation_key(Box::new(tpm.clone()), &tpm.key.public_key());
    onboard_to_running(&node, &mut agent, &mut http);
    let taken = ctl.ctl.store().device(&uuid).unwrap().unwrap().attest;
    let policy = controller::domain::attest::parse_pcr_policy(&taken.pcr_policy.unwrap()).unwrap();
    assert_eq!(policy.len(), 16);
    assert_eq!(policy[&4], tpm.pcrs.borrow()[4].to_vec());
    assert!(!ctl.ctl.set_pcr_policy("no-such-device", None).unwrap());
}

/// The host's TPM (swtpm through `eve_tpm::Mediator`, as the `tpm` target
/// runs it) behind the agent's interfaces: device key, attestation key
/// and quotes are the TPM's own.
struct Swtpm(std::sync::Arc<eve_tpm::Mediator>);

impl Signer for Swtpm {
    fn public_key(&self) -> eve_proto::p256::PublicKey {
        let point = self.0.create_device_key().expect("device key").point;
        eve_proto::p256::PublicKey::from_sec1_bytes(&point).expect("P-256")
    }

    fn sign_digest(&self, digest: &[u8; 32]) -> Result<[u8; 64], eve_proto::sign::SignError> {
        let request = hostops::tpm::SignRequest {
            digest: digest.to_vec(),
        };
        let signature = self
            .0
            .sign(&request)
            .map_err(|_| eve_proto::sign::SignError::Backend)?;
        signature
            .raw()
            .copied()
            .map_err(|_| eve_proto::sign::SignError::Backend)
    }
}

impl Quoter for Swtpm {
    fn quote(&self, nonce: &[u8]) -> Result<TpmQuote, String> {
        use hostops::tpm::{PcrBank, PcrSelect, PcrSelection, QuoteRequest};
        let bits = QUOTED_PCRS.fold(0u32, |b, i| b | (1 << i));
        let request = QuoteRequest {
            nonce: nonce.to_vec(),
            select: Some(PcrSelect::new(
                PcrBank::Sha256,
                PcrSelection::from_bits(bits).unwrap(),
            )),
        };
        let answer = self.0.quote(&request).map_err(|e| e.to_string())?;
        let pcrs = answer
            .pcrs
            .as_ref()
            .unwrap()
            .values()
            .map_err(|e| e.to_string())?
            .map(|(i, v)| (u32::from(i), v.to_vec()))
            .collect();
        Ok(TpmQuote {
            attest: answer.attest,
            signature: answer.signature,
            pcrs,
            event_log: Vec::new(),
        })
    }
}

#[test]
fn a_software_tpm_attests_to_our_controller() {
    let found = std::process::Command::new("swtpm")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("SKIPPED: the swtpm binary is not installed (apt-get install swtpm)");
        return;
    }
    // A bare TPM: its state directory exists, so no swtpm_setup.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("tpm")).unwrap();
    let swtpm = eve_tpm::Swtpm::start(dir.path()).unwrap();
    let mediator = std::sync::Arc::new(eve_tpm::Mediator::new(swtpm.transport().unwrap()).unwrap());
    let ctl = start_controller("swtpm");
    let onboard = onboarding_identity(24);
    ctl.ctl
        .onboard_add(&onboard.0, &["SN-SWTPM".into()])
        .expect("pre-register");
    let mut node = Node::new(&ctl, "SN-SWTPM", 61, onboard);
    let mut agent = node.boot_with(DeviceKeySource::External(Box::new(Swtpm(mediator.clone()))));
    let point = mediator.create_attestation_key().unwrap().point;
    let aik = eve_proto::p256::PublicKey::from_sec1_bytes(&point).unwrap();
    agent.use_attestation_key(Box::new(Swtpm(mediator.clone())), &aik);
    let mut http = ctl.http();
    let uuid = onboard_to_running(&node, &mut agent, &mut http);
    let stored = ctl.ctl.store().device(&uuid).unwrap().unwrap().attest;
    assert_eq!(stored.state, "attested-tpm");
    let policy = controller::domain::attest::parse_pcr_policy(&stored.pcr_policy.unwrap()).unwrap();
    assert_eq!(policy.len(), 16, "PCRs 0-15 of the TPM's SHA-256 bank");
}
