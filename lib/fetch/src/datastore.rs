//! EVE's datastores as the downloader sees them: where a content tree's
//! file is, and with which credentials.
//!
//! EVE joins `fqdn`, `dpath` and the content tree's `URL` with `/` to
//! make the download URL (`http(s)://fqdn/dpath/name`), and takes the user
//! and password from the decrypted `cipherData` (or the clear `apiKey` and
//! `password` fields of old controllers).

use alloc::format;
use alloc::string::String;
use core::fmt;

use base64ct::{Base64, Encoding};
use evehttp::{Scheme, Target};

/// `DsType` values the downloader handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DsKind {
    /// `DsHttp`.
    Http,
    /// `DsHttps`.
    Https,
    /// `DsContainerRegistry`.
    ContainerRegistry,
}

impl DsKind {
    /// From `DsType`'s number; `None` for the types we cannot fetch from
    /// (S3, SFTP, Azure, Google: not built).
    pub fn from_ds_type(value: i32) -> Option<Self> {
        match value {
            1 => Some(Self::Http),
            2 => Some(Self::Https),
            5 => Some(Self::ContainerRegistry),
            _ => None,
        }
    }
}

/// A user name and password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User (EVE's `apiKey` / `dsAPIKey`).
    pub username: String,
    /// Password.
    pub password: String,
}

impl Credentials {
    /// `Basic <base64(user:password)>`.
    pub fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!("Basic {}", Base64::encode_string(raw.as_bytes()))
    }
}

/// Never prints the password.
impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// One datastore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datastore {
    /// Its type.
    pub kind: DsKind,
    /// `fqdn`: a host, `host:port`, or a URL with scheme.
    pub fqdn: String,
    /// `dpath`: a path prefix on the server (may be empty).
    pub dpath: String,
    /// Decrypted credentials, if any.
    pub credentials: Option<Credentials>,
}

/// Why no URL could be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatastoreError {
    /// The datastore is a container registry: use `ocidist`.
    NotAFileStore,
    /// The joined URL does not parse.
    BadUrl,
    /// The name or path would leave the datastore (`..`, a query, a
    /// fragment, control characters).
    BadName,
}

impl fmt::Display for DatastoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotAFileStore => "a container registry is not a file datastore",
            Self::BadUrl => "datastore URL does not parse",
            Self::BadName => "name would leave the datastore path",
        })
    }
}

impl Datastore {
    /// The URL of `name` (a content tree's `URL`) on this datastore.
    pub fn url_for(&self, name: &str) -> Result<Target, DatastoreError> {
        let scheme = match self.kind {
            DsKind::Http => "http://",
            DsKind::Https => "https://",
            DsKind::ContainerRegistry => return Err(DatastoreError::NotAFileStore),
        };
        if name.trim_matches('/').is_empty() {
            return Err(DatastoreError::BadName);
        }
        for part in [self.dpath.as_str(), name] {
            let bad = part.split('/').any(|seg| seg == "..")
                || part
                    .bytes()
                    .any(|b| !b.is_ascii_graphic() || b == b'?' || b == b'#' || b == b'%');
            if bad {
                return Err(DatastoreError::BadName);
            }
        }
        let host = self
            .fqdn
            .strip_prefix("https://")
            .or_else(|| self.fqdn.strip_prefix("http://"))
            .unwrap_or(&self.fqdn)
            .trim_end_matches('/');
        let mut url = format!("{scheme}{host}");
        for part in [self.dpath.as_str(), name] {
            let part = part.trim_matches('/');
            if !part.is_empty() {
                url.push('/');
                url.push_str(part);
            }
        }
        let target = Target::parse_url(&url).map_err(|_| DatastoreError::BadUrl)?;
        if target.path.contains("//") || target.path == "/" {
            return Err(DatastoreError::BadName);
        }
        debug_assert!(matches!(target.scheme, Scheme::Http | Scheme::Https));
        Ok(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ds(kind: DsKind, fqdn: &str, dpath: &str) -> Datastore {
        Datastore {
            kind,
            fqdn: fqdn.into(),
            dpath: dpath.into(),
            credentials: None,
        }
    }

    #[test]
    fn joins_like_eve() {
        let t = ds(DsKind::Https, "files.example:8443", "/images/")
            .url_for("vm/disk.qcow2")
            .unwrap();
        assert_eq!(
            (t.scheme, t.host.as_str(), t.port, t.path.as_str()),
            (
                Scheme::Https,
                "files.example",
                8443,
                "/images/vm/disk.qcow2"
            )
        );
        let t = ds(DsKind::Http, "http://10.0.2.2:8080", "")
            .url_for("a.img")
            .unwrap();
        assert_eq!((t.port, t.path.as_str()), (8080, "/a.img"));
        // The kind decides the scheme, whatever the fqdn says.
        let t = ds(DsKind::Https, "http://h", "").url_for("a").unwrap();
        assert_eq!(t.scheme, Scheme::Https);
    }

    #[test]
    fn refuses_escapes_and_registries() {
        let d = ds(DsKind::Https, "h", "p");
        for bad in [
            "../etc/passwd",
            "a/../../b",
            "a?x=1",
            "a#f",
            "a b",
            "%2e%2e/x",
            "",
        ] {
            assert!(d.url_for(bad).is_err(), "{bad}");
        }
        assert_eq!(
            ds(DsKind::ContainerRegistry, "h", "").url_for("a"),
            Err(DatastoreError::NotAFileStore)
        );
        assert_eq!(
            ds(DsKind::Https, "bad host", "").url_for("a"),
            Err(DatastoreError::BadUrl)
        );
        assert_eq!(DsKind::from_ds_type(5), Some(DsKind::ContainerRegistry));
        assert_eq!(DsKind::from_ds_type(3), None);
    }

    #[test]
    fn basic_header_and_no_password_in_debug() {
        let c = Credentials {
            username: "Aladdin".into(),
            password: "open sesame".into(),
        };
        assert_eq!(c.basic_header(), "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
        assert!(!format!("{c:?}").contains("sesame"));
    }
}
