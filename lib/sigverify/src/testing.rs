//! Test material made with the host's `openssl` command (OpenSSL 3).
//!
//! RSA keys, signatures and certificate signatures that the crates a test
//! would otherwise use cannot make: ring does not generate RSA keys, and
//! neither ring nor rcgen signs with SHA-1 or puts RSASSA-PSS signatures in
//! certificates. Keys are generated once per size and slot per test
//! process (an OpenSSL 4096-bit key takes a second or two) and kept in
//! memory; files exist only for the length of one `openssl` call.

use std::collections::BTreeMap;
use std::format;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::string::String;
use std::sync::Mutex;
use std::vec;
use std::vec::Vec;

use const_oid::ObjectIdentifier;
use const_oid::db::rfc5912::{
    ID_MGF_1, ID_RSASSA_PSS, ID_SHA_1, ID_SHA_256, ID_SHA_384, ID_SHA_512,
    SHA_1_WITH_RSA_ENCRYPTION, SHA_256_WITH_RSA_ENCRYPTION, SHA_384_WITH_RSA_ENCRYPTION,
    SHA_512_WITH_RSA_ENCRYPTION,
};
use der::asn1::{Any, BitString};
use der::{Decode, Encode};
use rsa::pkcs1::{RsaPssParams, TrailerField};
use spki::{AlgorithmIdentifier, AlgorithmIdentifierOwned, AlgorithmIdentifierRef};
use x509_cert::Certificate;

/// A digest as OpenSSL names it, SHA-1 included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Digest {
    /// SHA-1, for refusals.
    Sha1,
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl Digest {
    fn openssl_name(self) -> &'static str {
        match self {
            Self::Sha1 => "sha1",
            Self::Sha256 => "sha256",
            Self::Sha384 => "sha384",
            Self::Sha512 => "sha512",
        }
    }

    fn oid(self) -> ObjectIdentifier {
        match self {
            Self::Sha1 => ID_SHA_1,
            Self::Sha256 => ID_SHA_256,
            Self::Sha384 => ID_SHA_384,
            Self::Sha512 => ID_SHA_512,
        }
    }

    /// The digest's length in bytes.
    pub fn output_len(self) -> usize {
        match self {
            Self::Sha1 => 20,
            Self::Sha256 => 32,
            Self::Sha384 => 48,
            Self::Sha512 => 64,
        }
    }
}

/// An RSA signature padding, with PSS's salt length in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// RSASSA-PKCS1-v1_5.
    Pkcs1,
    /// RSASSA-PSS with MGF1 over the signature's digest and this salt.
    Pss {
        /// Salt length in bytes.
        salt: usize,
    },
}

fn openssl(args: &[&str], stdin: Option<&Path>) -> Vec<u8> {
    let mut cmd = Command::new("openssl");
    cmd.args(args);
    if let Some(path) = stdin {
        cmd.stdin(std::fs::File::open(path).expect("openssl input"));
    }
    let out = cmd
        .output()
        .expect("the `openssl` command runs (Debian: apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

static KEYS: Mutex<BTreeMap<(usize, u8), String>> = Mutex::new(BTreeMap::new());

/// An RSA private key of `bits` bits as PKCS#8 PEM, the same one for the
/// same `(bits, slot)` within a process.
pub fn rsa_key_pem(bits: usize, slot: u8) -> String {
    let mut keys = KEYS.lock().unwrap_or_else(|e| e.into_inner());
    keys.entry((bits, slot))
        .or_insert_with(|| {
            let pem = openssl(
                &[
                    "genpkey",
                    "-algorithm",
                    "RSA",
                    "-pkeyopt",
                    &format!("rsa_keygen_bits:{bits}"),
                ],
                None,
            );
            String::from_utf8(pem).expect("PEM is text")
        })
        .clone()
}

/// Writes `data` to a fresh file in the temporary directory, for one
/// `openssl` call; the caller removes it.
fn scratch(name: &str, data: &[u8]) -> PathBuf {
    static NEXT: Mutex<u64> = Mutex::new(0);
    let n = {
        let mut next = NEXT.lock().unwrap_or_else(|e| e.into_inner());
        *next += 1;
        *next
    };
    let path = std::env::temp_dir().join(format!("sigverify-{}-{n}-{name}", std::process::id()));
    std::fs::write(&path, data).expect("scratch file");
    path
}

/// The DER `SubjectPublicKeyInfo` of a PEM private key.
pub fn spki_der(key_pem: &str) -> Vec<u8> {
    let key = scratch("key.pem", key_pem.as_bytes());
    let out = openssl(
        &[
            "pkey",
            "-in",
            key.to_str().expect("path"),
            "-pubout",
            "-outform",
            "DER",
        ],
        None,
    );
    let _ = std::fs::remove_file(key);
    out
}

/// `key_pem`'s signature over `message` (RSA with `padding`, or the key's
/// own algorithm when `padding` is `None`), hashed with `digest`.
pub fn sign(key_pem: &str, digest: Digest, padding: Option<Padding>, message: &[u8]) -> Vec<u8> {
    let key = scratch("key.pem", key_pem.as_bytes());
    let input = scratch("message", message);
    let mut args = vec![
        String::from("dgst"),
        format!("-{}", digest.openssl_name()),
        String::from("-sign"),
        key.to_str().expect("path").into(),
    ];
    match padding {
        Some(Padding::Pkcs1) => {
            args.extend(["-sigopt".into(), "rsa_padding_mode:pkcs1".into()]);
        }
        Some(Padding::Pss { salt }) => args.extend([
            "-sigopt".into(),
            "rsa_padding_mode:pss".into(),
            "-sigopt".into(),
            format!("rsa_pss_saltlen:{salt}"),
        ]),
        None => {}
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let signature = openssl(&args, Some(&input));
    let _ = std::fs::remove_file(key);
    let _ = std::fs::remove_file(input);
    signature
}

/// The `AlgorithmIdentifier` of an RSA signature with `digest` and
/// `padding`, as certificates carry it (PSS with MGF1 over `digest`).
pub fn rsa_algorithm(digest: Digest, padding: Padding) -> AlgorithmIdentifierOwned {
    match padding {
        Padding::Pkcs1 => AlgorithmIdentifierOwned {
            oid: match digest {
                Digest::Sha1 => SHA_1_WITH_RSA_ENCRYPTION,
                Digest::Sha256 => SHA_256_WITH_RSA_ENCRYPTION,
                Digest::Sha384 => SHA_384_WITH_RSA_ENCRYPTION,
                Digest::Sha512 => SHA_512_WITH_RSA_ENCRYPTION,
            },
            parameters: Some(Any::null()),
        },
        Padding::Pss { salt } => {
            let hash = AlgorithmIdentifierRef {
                oid: digest.oid(),
                parameters: None,
            };
            let params = RsaPssParams {
                hash,
                mask_gen: AlgorithmIdentifier {
                    oid: ID_MGF_1,
                    parameters: Some(hash),
                },
                salt_len: u8::try_from(salt).expect("salt fits the parameters"),
                trailer_field: TrailerField::BC,
            };
            let der = params.to_der().expect("PSS parameters encode");
            AlgorithmIdentifierOwned {
                oid: ID_RSASSA_PSS,
                parameters: Some(Any::from_der(&der).expect("PSS parameters decode")),
            }
        }
    }
}

/// `cert_der` with its subject key replaced by the DER `spki`; the
/// signature no longer matches until [`resign_certificate`] makes one. This
/// is how a test gets certificates for RSA keys under 2048 bits, which ring
/// (and so rcgen) refuses to handle.
pub fn replace_subject_key(cert_der: &[u8], spki: &[u8]) -> Vec<u8> {
    let mut cert = Certificate::from_der(cert_der).expect("a DER certificate");
    cert.tbs_certificate.subject_public_key_info =
        spki::SubjectPublicKeyInfoOwned::from_der(spki).expect("a DER SubjectPublicKeyInfo");
    cert.to_der().expect("certificate encodes")
}

/// `cert_der` signed again by `issuer_key_pem` (RSA) with `digest` and
/// `padding`; both algorithm fields name the new signature.
pub fn resign_certificate(
    cert_der: &[u8],
    issuer_key_pem: &str,
    digest: Digest,
    padding: Padding,
) -> Vec<u8> {
    let mut cert = Certificate::from_der(cert_der).expect("a DER certificate");
    let algorithm = rsa_algorithm(digest, padding);
    cert.tbs_certificate.signature = algorithm.clone();
    cert.signature_algorithm = algorithm;
    let tbs = cert.tbs_certificate.to_der().expect("TBS encodes");
    let signature = sign(issuer_key_pem, digest, Some(padding), &tbs);
    cert.signature = BitString::from_bytes(&signature).expect("signature bits");
    cert.to_der().expect("certificate encodes")
}
