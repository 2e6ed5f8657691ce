//! Why talking to a registry failed.

use core::fmt;

use evehttp::HttpError;
use fetch::{ConnectError, FetchError};

use crate::Digest;
use crate::reference::ReferenceError;

/// Everything a registry exchange can end with. `Copy`, allocation-free.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OciError {
    /// The reference does not parse.
    Reference(ReferenceError),
    /// Opening a connection failed.
    Connect(ConnectError),
    /// An HTTP exchange failed.
    Http(HttpError),
    /// A blob download failed.
    Fetch(FetchError),
    /// 401 after authenticating (or with no way to): credentials missing
    /// or refused.
    Unauthorized,
    /// The token service refused or answered with no token.
    TokenRefused(u16),
    /// A `WWW-Authenticate` challenge we cannot answer.
    BadChallenge,
    /// 404: no such repository, tag or blob.
    NotFound,
    /// Another status.
    Status(u16),
    /// More redirects than allowed.
    TooManyRedirects,
    /// A redirect we do not follow (no Location, https to http).
    BadRedirect,
    /// A manifest or index larger than the limit.
    ManifestTooLarge,
    /// A manifest or index that is not the JSON the media type promises;
    /// says which part.
    BadManifest(&'static str),
    /// A media type we do not handle where a manifest or config must be.
    UnsupportedMediaType,
    /// The bytes hash to something else than the digest they must have.
    DigestMismatch {
        /// The digest required (reference, config or descriptor).
        expected: Digest,
        /// What the bytes hash to.
        actual: Digest,
    },
    /// `Docker-Content-Digest` contradicts the bytes: a lying or broken
    /// registry.
    DigestHeaderMismatch,
    /// The bytes are not the size their descriptor says.
    SizeMismatch,
    /// A descriptor larger than the limit.
    BlobTooLarge,
    /// The index has no manifest for this platform.
    NoMatchingPlatform,
}

impl From<HttpError> for OciError {
    fn from(e: HttpError) -> Self {
        Self::Http(e)
    }
}

impl From<ConnectError> for OciError {
    fn from(e: ConnectError) -> Self {
        Self::Connect(e)
    }
}

impl From<FetchError> for OciError {
    fn from(e: FetchError) -> Self {
        Self::Fetch(e)
    }
}

impl OciError {
    /// Whether trying again later can help.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Connect(e) => e.is_retryable(),
            Self::Fetch(e) => e.is_retryable(),
            Self::Http(e) => FetchError::Http(*e).is_retryable(),
            Self::Status(s) => *s == 429 || *s >= 500,
            _ => false,
        }
    }
}

impl fmt::Display for OciError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Reference(e) => write!(f, "reference: {e}"),
            Self::Connect(e) => write!(f, "connect: {e}"),
            Self::Http(e) => write!(f, "http: {e}"),
            Self::Fetch(e) => write!(f, "blob: {e}"),
            Self::Unauthorized => {
                f.write_str("registry refused the credentials (or none were given)")
            }
            Self::TokenRefused(s) => write!(f, "token service answered {s}"),
            Self::BadChallenge => f.write_str("unusable WWW-Authenticate challenge"),
            Self::NotFound => f.write_str("not found in the registry"),
            Self::Status(s) => write!(f, "registry answered {s}"),
            Self::TooManyRedirects => f.write_str("too many redirects (a loop?)"),
            Self::BadRedirect => f.write_str("unusable redirect"),
            Self::ManifestTooLarge => f.write_str("manifest larger than the limit"),
            Self::BadManifest(what) => write!(f, "malformed manifest: {what}"),
            Self::UnsupportedMediaType => f.write_str("unsupported media type"),
            Self::DigestMismatch { expected, actual } => {
                write!(f, "digest mismatch: expected {expected}, got {actual}")
            }
            Self::DigestHeaderMismatch => {
                f.write_str("Docker-Content-Digest contradicts the bytes")
            }
            Self::SizeMismatch => f.write_str("size differs from the descriptor"),
            Self::BlobTooLarge => f.write_str("descriptor larger than the limit"),
            Self::NoMatchingPlatform => f.write_str("no manifest for this platform"),
        }
    }
}

impl core::error::Error for OciError {}
