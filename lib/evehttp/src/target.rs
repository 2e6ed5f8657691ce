//! What to connect to: `http://host[:port]/path`, `https://...`, or an EVE
//! `server` value (`host[:port]`, always https).

use alloc::string::{String, ToString};
use core::fmt;

/// The protocol on top of TCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// A parsed request target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub scheme: Scheme,
    /// A DNS name or an IPv4 literal, lowercased.
    pub host: String,
    pub port: u16,
    /// Starts with `/`.
    pub path: String,
}

/// Why a URL or server value was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetError {
    /// Neither `http://` nor `https://`.
    UnsupportedScheme,
    /// Empty, or characters a host name cannot have.
    BadHost,
    /// Not a number from 1 to 65535.
    BadPort,
    /// User information (`user@host`) is never sent.
    UserInfo,
}

impl fmt::Display for TargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::UnsupportedScheme => "only http:// and https:// are supported",
            Self::BadHost => "bad host name",
            Self::BadPort => "bad port",
            Self::UserInfo => "user information in a URL is not supported",
        })
    }
}

impl Target {
    /// Parses an absolute `http://` or `https://` URL.
    pub fn parse_url(url: &str) -> Result<Target, TargetError> {
        let (scheme, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (Scheme::Https, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (Scheme::Http, rest)
        } else {
            return Err(TargetError::UnsupportedScheme);
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], &rest[i..]),
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let mut target = Self::parse_authority(scheme, authority)?;
        target.path = if path.starts_with('/') {
            path.to_string()
        } else {
            ["/", path].concat()
        };
        Ok(target)
    }

    /// Parses an EVE `server` value: `host[:port]`, spoken over https.
    pub fn parse_server(server: &str) -> Result<Target, TargetError> {
        Self::parse_authority(Scheme::Https, server.trim())
    }

    fn parse_authority(scheme: Scheme, authority: &str) -> Result<Target, TargetError> {
        if authority.contains('@') {
            return Err(TargetError::UserInfo);
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) => (
                host,
                port.parse::<u16>()
                    .ok()
                    .filter(|&p| p != 0)
                    .ok_or(TargetError::BadPort)?,
            ),
            None => (authority, scheme.default_port()),
        };
        let valid = !host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if !valid {
            return Err(TargetError::BadHost);
        }
        Ok(Target {
            scheme,
            host: host.to_ascii_lowercase(),
            port,
            path: String::from("/"),
        })
    }

    /// `host` or `host:port` as the Host header wants it.
    pub fn authority(&self) -> String {
        if self.port == self.scheme.default_port() {
            self.host.clone()
        } else {
            alloc::format!("{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_servers() {
        let t = Target::parse_url("https://Controller.Test:8443/api/v2/edgedevice/ping").unwrap();
        assert_eq!(t.scheme, Scheme::Https);
        assert_eq!(t.host, "controller.test");
        assert_eq!(t.port, 8443);
        assert_eq!(t.path, "/api/v2/edgedevice/ping");
        assert_eq!(t.authority(), "controller.test:8443");
        let t = Target::parse_url("http://10.0.2.100").unwrap();
        assert_eq!(
            (t.port, t.path.as_str(), t.authority().as_str()),
            (80, "/", "10.0.2.100")
        );
        let t = Target::parse_url("http://h?q=1").unwrap();
        assert_eq!(t.path, "/?q=1");
        let t = Target::parse_server(" zedcloud.example:443\n").unwrap();
        assert_eq!(
            (t.scheme, t.port, t.authority().as_str()),
            (Scheme::Https, 443, "zedcloud.example")
        );
    }

    #[test]
    fn refusals() {
        assert_eq!(
            Target::parse_url("ftp://h/"),
            Err(TargetError::UnsupportedScheme)
        );
        assert_eq!(Target::parse_url("http://u@h/"), Err(TargetError::UserInfo));
        assert_eq!(Target::parse_url("http://h:0/"), Err(TargetError::BadPort));
        assert_eq!(
            Target::parse_url("http://h:99999/"),
            Err(TargetError::BadPort)
        );
        assert_eq!(Target::parse_url("http:///x"), Err(TargetError::BadHost));
        assert_eq!(
            Target::parse_server("bad host:1"),
            Err(TargetError::BadHost)
        );
        assert_eq!(Target::parse_server("[::1]:1"), Err(TargetError::BadHost));
    }
}
