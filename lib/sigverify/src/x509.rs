//! The signature algorithms of X.509 certificates.

use const_oid::ObjectIdentifier;
use const_oid::db::rfc5912::{
    DSA_WITH_SHA_1, ECDSA_WITH_SHA_256, ECDSA_WITH_SHA_384, ID_MGF_1, ID_RSASSA_PSS, ID_SHA_1,
    ID_SHA_256, ID_SHA_384, ID_SHA_512, MD_2_WITH_RSA_ENCRYPTION, MD_5_WITH_RSA_ENCRYPTION,
    SHA_1_WITH_RSA_ENCRYPTION, SHA_256_WITH_RSA_ENCRYPTION, SHA_384_WITH_RSA_ENCRYPTION,
    SHA_512_WITH_RSA_ENCRYPTION,
};
use const_oid::db::rfc8410::ID_ED_25519;
use der::asn1::Any;
use rsa::pkcs1::RsaPssParams;
use spki::AlgorithmIdentifierOwned;

use crate::error::VerifyError;
use crate::scheme::{Hash, Scheme};

/// ecdsa-with-SHA1 (RFC 3279 2.2.3), which the OID database lacks.
const ECDSA_WITH_SHA_1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.1");

/// The scheme a certificate's `signatureAlgorithm` names: ECDSA with
/// SHA-256 or SHA-384 (RFC 5758: no parameters), RSA PKCS#1 v1.5 with
/// SHA-256, SHA-384 or SHA-512 (RFC 4055: NULL parameters, absent
/// accepted as Go does), RSASSA-PSS with the parameters [`Scheme::RsaPss`]
/// allows, and Ed25519 (RFC 8410: no parameters).
///
/// Identifiers over SHA-1 or MD5 are [`VerifyError::WeakHash`]; other
/// algorithms [`VerifyError::UnsupportedAlgorithm`].
pub fn x509_scheme(algorithm: &AlgorithmIdentifierOwned) -> Result<Scheme, VerifyError> {
    let params = algorithm.parameters.as_ref();
    let absent = params.is_none();
    let null_or_absent = params.is_none_or(Any::is_null);
    let scheme = match algorithm.oid {
        ECDSA_WITH_SHA_256 if absent => Scheme::EcdsaDer(Hash::Sha256),
        ECDSA_WITH_SHA_384 if absent => Scheme::EcdsaDer(Hash::Sha384),
        SHA_256_WITH_RSA_ENCRYPTION if null_or_absent => Scheme::RsaPkcs1(Hash::Sha256),
        SHA_384_WITH_RSA_ENCRYPTION if null_or_absent => Scheme::RsaPkcs1(Hash::Sha384),
        SHA_512_WITH_RSA_ENCRYPTION if null_or_absent => Scheme::RsaPkcs1(Hash::Sha512),
        ID_ED_25519 if absent => Scheme::Ed25519,
        ECDSA_WITH_SHA_256
        | ECDSA_WITH_SHA_384
        | ID_ED_25519
        | SHA_256_WITH_RSA_ENCRYPTION
        | SHA_384_WITH_RSA_ENCRYPTION
        | SHA_512_WITH_RSA_ENCRYPTION => {
            return Err(VerifyError::Malformed);
        }
        // RFC 4055 3.1: the parameters must be present.
        ID_RSASSA_PSS => pss_scheme(params.ok_or(VerifyError::Malformed)?)?,
        SHA_1_WITH_RSA_ENCRYPTION
        | ECDSA_WITH_SHA_1
        | DSA_WITH_SHA_1
        | MD_5_WITH_RSA_ENCRYPTION
        | MD_2_WITH_RSA_ENCRYPTION => return Err(VerifyError::WeakHash),
        _ => return Err(VerifyError::UnsupportedAlgorithm),
    };
    Ok(scheme)
}

/// RSASSA-PSS parameters (RFC 4055 3.1): SHA-256, SHA-384 or SHA-512, MGF1
/// over the same hash, a salt as long as the hash, trailer field 1. Their
/// defaults (when left out) are SHA-1, so an empty parameter sequence is a
/// SHA-1 signature.
fn pss_scheme(params: &Any) -> Result<Scheme, VerifyError> {
    let params: RsaPssParams<'_> = params.decode_as().map_err(|_| VerifyError::Malformed)?;
    if params.hash.parameters.is_some_and(|p| !p.is_null()) {
        return Err(VerifyError::Malformed);
    }
    let hash = digest(params.hash.oid)?;
    if params.mask_gen.oid != ID_MGF_1 {
        return Err(VerifyError::UnsupportedAlgorithm);
    }
    let mgf_hash = params.mask_gen.parameters.ok_or(VerifyError::Malformed)?;
    if digest(mgf_hash.oid)? != hash || usize::from(params.salt_len) != hash.output_len() {
        return Err(VerifyError::UnsupportedAlgorithm);
    }
    Ok(Scheme::RsaPss(hash))
}

fn digest(oid: ObjectIdentifier) -> Result<Hash, VerifyError> {
    match oid {
        ID_SHA_256 => Ok(Hash::Sha256),
        ID_SHA_384 => Ok(Hash::Sha384),
        ID_SHA_512 => Ok(Hash::Sha512),
        ID_SHA_1 => Err(VerifyError::WeakHash),
        _ => Err(VerifyError::UnsupportedAlgorithm),
    }
}
