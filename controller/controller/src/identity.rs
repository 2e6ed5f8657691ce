//! The controller's own PKI: a root CA, the TLS server certificate, the
//! envelope-signing certificate and the ECDH certificate, P-256 by default
//! or RSA for the first three (see [`crate::pki`]).
//!
//! Devices are imprinted with the root certificate (EVE's `root-certificate.pem`)
//! and check every other controller certificate against it, so the set is
//! created once, on first start, and reused from the data directory from
//! then on: regenerating it would orphan every onboarded device.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use eve_proto::certs::{ZCert, ZCertType, ZControllerCert};
use eve_proto::common::HashAlgorithm;
use eve_proto::{Message, sha256};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};

use crate::pki::{ControllerSigner, Pki, PkiError};

/// File names inside the data directory.
const ROOT_CERT: &str = "root-certificate.pem";
const ROOT_KEY: &str = "root-key.pem";
const SERVER_CERT: &str = "server.pem";
const SERVER_KEY: &str = "server-key.pem";
const SIGNING_CERT: &str = "signing.pem";
const SIGNING_KEY: &str = "signing-key.pem";
const ECDH_CERT: &str = "ecdh.pem";
const ECDH_KEY: &str = "ecdh-key.pem";

/// Why the identity could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Reading or writing a file in the data directory failed.
    #[error("{path}: {source}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Some but not all identity files exist: refusing to overwrite them.
    #[error(
        "{0}: incomplete controller identity (some certificate files are missing); restore them or remove the directory's *.pem files"
    )]
    Incomplete(PathBuf),
    /// Certificate generation failed.
    #[error("generating certificates: {0}")]
    Generate(#[from] rcgen::Error),
    /// Key generation failed.
    #[error(transparent)]
    Key(#[from] PkiError),
    /// A stored key is neither a P-256 nor an RSA private key.
    #[error("{0}: not a P-256 or RSA private key")]
    BadKey(PathBuf),
    /// The stored root certificate's key is of no PKI we make.
    #[error("{0}: the root certificate's key is neither P-256 nor RSA 2048-4096")]
    BadRoot(PathBuf),
    /// The data directory holds another PKI than the one asked for;
    /// replacing it would orphan every device imprinted with its root.
    #[error(
        "{dir}: the identity there is {found}, not {asked}; use another --data-dir for a {asked} controller"
    )]
    PkiMismatch {
        /// The data directory.
        dir: PathBuf,
        /// What is there.
        found: Pki,
        /// What was asked for.
        asked: Pki,
    },
}

/// The loaded identity, ready to serve.
pub struct Identity {
    /// Where the root certificate lives: devices need this file.
    pub root_cert_path: PathBuf,
    /// Root certificate PEM.
    pub root_pem: String,
    /// TLS server certificate and key (PEM).
    pub server_cert_pem: String,
    /// TLS server private key (PKCS#8 PEM).
    pub server_key_pem: String,
    /// The envelope-signing certificate PEM exactly as sent by `/certs`;
    /// devices fingerprint these bytes.
    pub signing_cert_pem: String,
    /// The envelope-signing key.
    pub signer: ControllerSigner,
    /// What the root, server and signing keys are.
    pub pki: Pki,
    /// SHA-256 of `signing_cert_pem`, the `senderCertHash` of our envelopes.
    pub signing_cert_hash: [u8; 32],
    /// The ECDH certificate PEM (devices encrypt secrets to it).
    pub ecdh_cert_pem: String,
    /// The ECDH private key (PKCS#8 PEM), for decrypting what devices send.
    pub ecdh_key_pem: String,
    /// Serialized `ZControllerCert` served (signed) by `/certs`.
    pub controller_certs: Vec<u8>,
    /// Whether this start created the identity.
    pub created: bool,
}

impl Identity {
    /// Loads the identity from `dir`, creating it (and `dir`) on first use
    /// with a P-256 PKI.
    pub fn load_or_create(dir: &Path) -> Result<Self, IdentityError> {
        Self::load_or_create_with(dir, None)
    }

    /// Loads the identity from `dir`, creating it (and `dir`) on first use
    /// with `pki` (P-256 when `None`). An existing identity of another PKI
    /// than `pki` is an error, not replaced.
    pub fn load_or_create_with(dir: &Path, pki: Option<Pki>) -> Result<Self, IdentityError> {
        fs::create_dir_all(dir).map_err(|source| IdentityError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let files = [
            ROOT_CERT,
            ROOT_KEY,
            SERVER_CERT,
            SERVER_KEY,
            SIGNING_CERT,
            SIGNING_KEY,
            ECDH_CERT,
            ECDH_KEY,
        ];
        let present = files.iter().filter(|f| dir.join(f).exists()).count();
        let created = match present {
            0 => {
                generate(dir, pki.unwrap_or(Pki::P256))?;
                true
            }
            n if n == files.len() => false,
            _ => return Err(IdentityError::Incomplete(dir.to_path_buf())),
        };
        let read = |name: &str| {
            let path = dir.join(name);
            fs::read_to_string(&path).map_err(|source| IdentityError::Io { path, source })
        };
        let signing_cert_pem = read(SIGNING_CERT)?;
        let signer = ControllerSigner::from_pem(&read(SIGNING_KEY)?)
            .ok_or_else(|| IdentityError::BadKey(dir.join(SIGNING_KEY)))?;
        let root_pem = read(ROOT_CERT)?;
        let found = Pki::of_root(root_pem.as_bytes())
            .ok_or_else(|| IdentityError::BadRoot(dir.join(ROOT_CERT)))?;
        if let Some(asked) = pki.filter(|&asked| asked != found) {
            return Err(IdentityError::PkiMismatch {
                dir: dir.to_path_buf(),
                found,
                asked,
            });
        }
        let ecdh_cert_pem = read(ECDH_CERT)?;
        let signing_cert_hash = sha256(signing_cert_pem.as_bytes());
        let controller_certs = controller_certs(&signing_cert_pem, &ecdh_cert_pem, &root_pem);
        Ok(Self {
            root_cert_path: dir.join(ROOT_CERT),
            root_pem,
            server_cert_pem: read(SERVER_CERT)?,
            server_key_pem: read(SERVER_KEY)?,
            signing_cert_pem,
            signer,
            pki: found,
            signing_cert_hash,
            ecdh_cert_pem,
            ecdh_key_pem: read(ECDH_KEY)?,
            controller_certs,
            created,
        })
    }
}

/// The `/certs` body as EVE expects it: the signing leaf, the ECDH leaf and
/// the CA as an intermediate (EVE pools intermediates and ends at its pinned
/// root), each with the 16-byte PEM fingerprint.
fn controller_certs(signing: &str, ecdh: &str, root: &str) -> Vec<u8> {
    let zcert = |pem: &str, kind: ZCertType| ZCert {
        hash_algo: HashAlgorithm::Sha25616bytes as i32,
        cert_hash: sha256(pem.as_bytes())[..16].to_vec(),
        r#type: kind as i32,
        cert: pem.as_bytes().to_vec(),
        attributes: None,
        meta_data_items: Vec::new(),
    };
    ZControllerCert {
        certs: vec![
            zcert(signing, ZCertType::CertTypeControllerSigning),
            zcert(ecdh, ZCertType::CertTypeControllerEcdhExchange),
            zcert(root, ZCertType::CertTypeControllerIntermediate),
        ],
    }
    .encode_to_vec()
}

fn generate(dir: &Path, pki: Pki) -> Result<(), IdentityError> {
    let root_key = pki.generate()?;
    let mut root = CertificateParams::new(Vec::<String>::new())?;
    root.distinguished_name
        .push(DnType::CommonName, "EVE controller root CA");
    root.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    root.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let root_cert = root.self_signed(&root_key)?;

    let leaf = |cn: &str,
                key: KeyPair,
                usages: Vec<KeyUsagePurpose>,
                ext: Vec<ExtendedKeyUsagePurpose>,
                sans: Vec<SanType>|
     -> Result<(String, String), IdentityError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = usages;
        params.extended_key_usages = ext;
        params.subject_alt_names = sans;
        let cert = params.signed_by(&key, &root_cert, &root_key)?;
        Ok((cert.pem(), key.serialize_pem()))
    };
    let localhost = SanType::DnsName("localhost".try_into()?);
    let (server, server_key) = leaf(
        "localhost",
        pki.generate()?,
        vec![KeyUsagePurpose::DigitalSignature],
        vec![ExtendedKeyUsagePurpose::ServerAuth],
        vec![
            localhost,
            SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()),
            SanType::IpAddress(std::net::Ipv6Addr::LOCALHOST.into()),
            // QEMU user networking shows the host's loopback to guests as
            // 10.0.2.2, so `cargo xtask qemu` nodes reach us with no set-up.
            SanType::IpAddress(std::net::Ipv4Addr::new(10, 0, 2, 2).into()),
        ],
    )?;
    let (signing, signing_key) = leaf(
        "EVE controller signing",
        pki.generate()?,
        vec![KeyUsagePurpose::DigitalSignature],
        Vec::new(),
        Vec::new(),
    )?;
    // ECDH needs an EC key whatever the PKI.
    let (ecdh, ecdh_key) = leaf(
        "EVE controller ECDH",
        Pki::P256.generate()?,
        vec![KeyUsagePurpose::KeyAgreement],
        Vec::new(),
        Vec::new(),
    )?;
    // Keys first and the root certificate last: a crash part-way leaves an
    // incomplete set, which the next start reports instead of half-using.
    write_atomic(
        &dir.join(ROOT_KEY),
        root_key.serialize_pem().as_bytes(),
        true,
    )?;
    write_atomic(&dir.join(SERVER_KEY), server_key.as_bytes(), true)?;
    write_atomic(&dir.join(SIGNING_KEY), signing_key.as_bytes(), true)?;
    write_atomic(&dir.join(ECDH_KEY), ecdh_key.as_bytes(), true)?;
    write_atomic(&dir.join(SERVER_CERT), server.as_bytes(), false)?;
    write_atomic(&dir.join(SIGNING_CERT), signing.as_bytes(), false)?;
    write_atomic(&dir.join(ECDH_CERT), ecdh.as_bytes(), false)?;
    write_atomic(&dir.join(ROOT_CERT), root_cert.pem().as_bytes(), false)?;
    Ok(())
}

/// Writes through a temporary file, fsyncs and renames, so a crash never
/// leaves a truncated file. Private files are created mode 0600.
pub fn write_atomic(path: &Path, data: &[u8], private: bool) -> Result<(), IdentityError> {
    let io = |source| IdentityError::Io {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = opts.open(&tmp).map_err(io)?;
    file.write_all(data).map_err(io)?;
    file.sync_all().map_err(io)?;
    fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_identity_verifies_with_eve_proto_and_is_reused() {
        let dir = std::env::temp_dir().join(format!("ctl-ident-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let first = Identity::load_or_create(&dir).expect("create");
        assert!(first.created);
        let root = eve_proto::x509::parse_pem(first.root_pem.as_bytes()).expect("root");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        let certs =
            eve_proto::x509::verify_controller_cert_bytes(&first.controller_certs, &root, now)
                .expect("EVE-style chain check accepts our /certs");
        assert_eq!(certs.signing.cert_hash, first.signing_cert_hash);
        assert_eq!(certs.ecdh.len(), 1);
        let second = Identity::load_or_create(&dir).expect("reload");
        assert!(!second.created);
        assert_eq!(second.signing_cert_pem, first.signing_cert_pem);
        fs::remove_file(dir.join(ECDH_KEY)).expect("remove");
        assert!(matches!(
            Identity::load_or_create(&dir),
            Err(IdentityError::Incomplete(_))
        ));
        fs::remove_dir_all(&dir).expect("cleanup");
    }

    fn unix_now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs()
    }

    #[test]
    fn rsa_identity_chains_signs_envelopes_serves_tls_and_is_kept() {
        use eve_proto::common::HashAlgorithm;
        use eve_proto::sign::{self, SenderIdentity, TrustedSigner};
        use eve_proto::sigverify::KeyKind;

        let dir = std::env::temp_dir().join(format!("ctl-ident-rsa-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let rsa = Pki::Rsa { bits: 2048 };
        let id = Identity::load_or_create_with(&dir, Some(rsa)).expect("create");
        assert!(id.created);
        assert_eq!(id.pki, rsa);
        let root = eve_proto::x509::parse_pem(id.root_pem.as_bytes()).expect("root");
        let certs =
            eve_proto::x509::verify_controller_cert_bytes(&id.controller_certs, &root, unix_now())
                .expect("EVE-style chain check accepts our RSA /certs");
        assert_eq!(certs.signing.key.kind(), KeyKind::Rsa { bits: 2048 });
        assert_eq!(certs.ecdh[0].key.kind(), KeyKind::P256);
        // Envelopes signed as EVE verifies RSA ones.
        let sender = SenderIdentity {
            cert_hash: id.signing_cert_hash,
            algo: HashAlgorithm::Sha25632bytes,
            embed_cert_pem: None,
        };
        let envelope = sign::sign_auth_container(b"config".to_vec(), &id.signer, &sender)
            .expect("RSA signing");
        assert_eq!(envelope.signature_hash.len(), 256);
        let trusted = TrustedSigner::from_controller(&certs.signing);
        assert_eq!(
            sign::verify_auth_container(&envelope, &trusted),
            Ok(&b"config"[..])
        );
        crate::tls::tls_config(&id).expect("rustls takes the RSA server key");
        // Reloaded as it is, whether asked for by name or not; another PKI
        // is refused rather than replaced.
        let again = Identity::load_or_create(&dir).expect("reload");
        assert!(!again.created);
        assert_eq!(again.pki, rsa);
        assert!(Identity::load_or_create_with(&dir, Some(rsa)).is_ok());
        assert!(matches!(
            Identity::load_or_create_with(&dir, Some(Pki::P256)),
            Err(IdentityError::PkiMismatch {
                found: Pki::Rsa { bits: 2048 },
                asked: Pki::P256,
                ..
            })
        ));
        fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn pki_names() {
        for (name, pki) in [
            ("p256", Pki::P256),
            ("rsa", Pki::Rsa { bits: 3072 }),
            ("rsa2048", Pki::Rsa { bits: 2048 }),
            ("rsa3072", Pki::Rsa { bits: 3072 }),
            ("rsa4096", Pki::Rsa { bits: 4096 }),
        ] {
            assert_eq!(name.parse::<Pki>(), Ok(pki));
        }
        assert_eq!(Pki::Rsa { bits: 4096 }.to_string(), "rsa4096");
        for bad in ["rsa1024", "rsa8192", "rsa2047", "ed25519", "RSA", ""] {
            assert!(bad.parse::<Pki>().is_err(), "{bad}");
        }
    }
}
