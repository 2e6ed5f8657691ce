//! Image references as EVE writes them: a container-registry datastore's
//! `fqdn` (`docker://host[:port]`), its `dpath`, and the content tree's
//! `URL` (`repo[:tag][@digest]`), joined with `/` the way EVE's downloader
//! joins them, then split into registry and repository.

use alloc::format;
use alloc::string::{String, ToString};
use core::fmt;

use crate::Digest;

/// Longest repository name (the distribution spec's bound).
const MAX_REPOSITORY: usize = 255;
/// Longest tag.
const MAX_TAG: usize = 128;

/// A parsed reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// Registry host, lowercased (Docker Hub's `docker.io` mapped to the
    /// host that serves its API).
    pub host: String,
    /// Registry port (443 unless given).
    pub port: Option<u16>,
    /// `library/alpine`, `lfedge/eve`, ...
    pub repository: String,
    /// The tag; `latest` when neither tag nor digest is given.
    pub tag: Option<String>,
    /// A digest pins the content: what arrives must hash to it.
    pub digest: Option<Digest>,
}

/// Why a reference was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReferenceError {
    /// Not `docker://` or `oci://`.
    Scheme,
    /// Bad registry host or port.
    Host,
    /// Bad repository name.
    Repository,
    /// Bad tag.
    Tag,
    /// Bad digest (only sha256 is accepted).
    Digest,
}

impl fmt::Display for ReferenceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Scheme => "not a docker:// or oci:// reference",
            Self::Host => "bad registry host or port",
            Self::Repository => "bad repository name",
            Self::Tag => "bad tag",
            Self::Digest => "bad digest (sha256:<64 hex> only)",
        })
    }
}

impl Reference {
    /// Parses `docker://host[:port]/repo[:tag][@sha256:...]` (or `oci://`).
    pub fn parse(url: &str) -> Result<Self, ReferenceError> {
        let rest = url
            .strip_prefix("docker://")
            .or_else(|| url.strip_prefix("oci://"))
            .ok_or(ReferenceError::Scheme)?;
        let (authority, path) = rest.split_once('/').ok_or(ReferenceError::Repository)?;
        let (host, port) = parse_authority(authority)?;
        let (name, digest) = match path.rsplit_once('@') {
            Some((name, d)) => (name, Some(Digest::parse(d).ok_or(ReferenceError::Digest)?)),
            None => (path, None),
        };
        let last_slash = name.rfind('/').map_or(0, |i| i + 1);
        let (repository, tag) = match name[last_slash..].rfind(':') {
            Some(i) => {
                let at = last_slash + i;
                (&name[..at], Some(&name[at + 1..]))
            }
            None => (name, None),
        };
        if let Some(tag) = tag {
            check_tag(tag)?;
        }
        check_repository(repository)?;
        let docker_hub = matches!(host.as_str(), "docker.io" | "index.docker.io");
        let (host, repository) = if docker_hub {
            let repo = if repository.contains('/') {
                repository.to_string()
            } else {
                format!("library/{repository}")
            };
            (String::from("registry-1.docker.io"), repo)
        } else {
            (host, repository.to_string())
        };
        let tag = match (tag, digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, Some(_)) => None,
            (None, None) => Some(String::from("latest")),
        };
        Ok(Self {
            host,
            port,
            repository,
            tag,
            digest,
        })
    }

    /// A content tree's reference from its datastore: `fqdn`, `dpath` and
    /// the tree's `URL` joined with `/` as EVE does; an `fqdn` without
    /// scheme is taken as `docker://`.
    pub fn from_datastore(fqdn: &str, dpath: &str, url: &str) -> Result<Self, ReferenceError> {
        let fqdn = fqdn.trim().trim_end_matches('/');
        let mut joined = if fqdn.contains("://") {
            String::from(fqdn)
        } else {
            format!("docker://{fqdn}")
        };
        for part in [dpath, url] {
            let part = part.trim().trim_matches('/');
            if !part.is_empty() {
                joined.push('/');
                joined.push_str(part);
            }
        }
        Self::parse(&joined)
    }

    /// What the manifest is asked for by: the digest if pinned, else the
    /// tag.
    pub fn manifest_ref(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => String::from("latest"),
        }
    }
}

fn parse_authority(authority: &str) -> Result<(String, Option<u16>), ReferenceError> {
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => {
            let port = p
                .parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or(ReferenceError::Host)?;
            (h, Some(port))
        }
        None => (authority, None),
    };
    let ok = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if ok {
        Ok((host.to_ascii_lowercase(), port))
    } else {
        Err(ReferenceError::Host)
    }
}

/// Path components of lowercase alphanumerics joined by `.`, `_`, `__`
/// or runs of `-`, separated by `/`.
fn check_repository(repo: &str) -> Result<(), ReferenceError> {
    let component_ok = |c: &str| {
        let b = c.as_bytes();
        let alnum = |x: &u8| x.is_ascii_lowercase() || x.is_ascii_digit();
        let (Some(first), Some(last)) = (b.first(), b.last()) else {
            return false;
        };
        if !alnum(first) || !alnum(last) {
            return false;
        }
        // Separators between alphanumerics: ".", "_", "__" or a run of "-".
        let sep_ok =
            |sep: &[u8]| matches!(sep, b"." | b"_" | b"__") || sep.iter().all(|&x| x == b'-');
        let mut sep_start = None;
        for (i, x) in b.iter().enumerate() {
            match (alnum(x), sep_start) {
                (true, Some(start)) => {
                    if !sep_ok(b.get(start..i).unwrap_or(&[])) {
                        return false;
                    }
                    sep_start = None;
                }
                (true, None) => {}
                (false, None) => sep_start = Some(i),
                (false, Some(_)) => {}
            }
        }
        true
    };
    if repo.is_empty() || repo.len() > MAX_REPOSITORY || !repo.split('/').all(component_ok) {
        return Err(ReferenceError::Repository);
    }
    Ok(())
}

fn check_tag(tag: &str) -> Result<(), ReferenceError> {
    let b = tag.as_bytes();
    let word = |x: &u8| x.is_ascii_alphanumeric() || *x == b'_';
    let ok = !b.is_empty()
        && b.len() <= MAX_TAG
        && b.first().is_some_and(word)
        && b.iter().all(|x| word(x) || *x == b'.' || *x == b'-');
    if ok { Ok(()) } else { Err(ReferenceError::Tag) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eve_forms() {
        let r = Reference::parse("docker://127.0.0.1:5000/apps/web:1.2").unwrap();
        assert_eq!(
            (
                r.host.as_str(),
                r.port,
                r.repository.as_str(),
                r.tag.as_deref(),
                r.digest
            ),
            ("127.0.0.1", Some(5000), "apps/web", Some("1.2"), None)
        );
        let r = Reference::from_datastore("docker://docker.io", "", "alpine").unwrap();
        assert_eq!(
            (r.host.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("registry-1.docker.io", "library/alpine", Some("latest"))
        );
        let r = Reference::from_datastore("registry.example:5000/", "/team/", "/img:v1").unwrap();
        assert_eq!(
            (r.host.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("registry.example", "team/img", Some("v1"))
        );
        let d = Digest::of(b"x");
        let r = Reference::parse(&format!("oci://Reg.Example/a/b@{d}")).unwrap();
        assert_eq!(
            (r.host.as_str(), r.tag.clone(), r.digest, r.manifest_ref()),
            ("reg.example", None, Some(d), d.to_string())
        );
        let r = Reference::parse(&format!("docker://h/a:t@{d}")).unwrap();
        assert_eq!((r.tag.as_deref(), r.digest), (Some("t"), Some(d)));
        let r = Reference::parse("docker://h:1/a.b/c__d/e-f--g").unwrap();
        assert_eq!(r.repository, "a.b/c__d/e-f--g");
    }

    #[test]
    fn refusals() {
        for (bad, why) in [
            ("http://h/a", ReferenceError::Scheme),
            ("docker://h", ReferenceError::Repository),
            ("docker://h:0/a", ReferenceError::Host),
            ("docker://h:x/a", ReferenceError::Host),
            ("docker://b@d/a", ReferenceError::Host),
            ("docker://h/A", ReferenceError::Repository),
            ("docker://h/a//b", ReferenceError::Repository),
            ("docker://h/-a", ReferenceError::Repository),
            ("docker://h/a..b", ReferenceError::Repository),
            ("docker://h/a___b", ReferenceError::Repository),
            ("docker://h/../a", ReferenceError::Repository),
            ("docker://h/a:", ReferenceError::Tag),
            ("docker://h/a:.x", ReferenceError::Tag),
            ("docker://h/a:t/x", ReferenceError::Repository),
            ("docker://h/a@sha256:00", ReferenceError::Digest),
            ("docker://h/a@md5:00", ReferenceError::Digest),
        ] {
            assert_eq!(Reference::parse(bad), Err(why), "{bad}");
        }
        let long_tag = format!("docker://h/a:{}", "t".repeat(129));
        assert_eq!(Reference::parse(&long_tag), Err(ReferenceError::Tag));
    }
}
