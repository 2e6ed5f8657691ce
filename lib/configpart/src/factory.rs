//! The device's factory configuration, as the CONFIG partition holds it.

use alloc::string::String;
use alloc::vec::Vec;
use core::net::IpAddr;

use blockdev::BlockDevice;

use crate::{FatError, FatVolume};

/// The files of the CONFIG partition this crate reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigFile {
    Server,
    RootCertificate,
    OnboardCertificate,
    OnboardKey,
    SoftSerial,
    Hosts,
}

impl ConfigFile {
    /// The file's name on the partition (looked up ignoring case).
    pub fn file_name(self) -> &'static str {
        match self {
            ConfigFile::Server => "server",
            ConfigFile::RootCertificate => "root-certificate.pem",
            ConfigFile::OnboardCertificate => "onboard.cert.pem",
            ConfigFile::OnboardKey => "onboard.key.pem",
            ConfigFile::SoftSerial => "soft_serial",
            ConfigFile::Hosts => "hosts",
        }
    }

    /// The largest file accepted: generous for what each holds, small enough
    /// that a hostile partition cannot exhaust a service's heap.
    pub fn max_len(self) -> usize {
        match self {
            ConfigFile::Server => 1024,
            ConfigFile::RootCertificate => 256 * 1024,
            ConfigFile::OnboardCertificate | ConfigFile::OnboardKey => 16 * 1024,
            ConfigFile::SoftSerial => 256,
            ConfigFile::Hosts => 64 * 1024,
        }
    }
}

/// Why the factory configuration could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigError {
    /// The FAT volume could not be read.
    Fs(FatError),
    /// A required file is missing.
    Missing(ConfigFile),
    /// A file is larger than [`ConfigFile::max_len`].
    TooLarge(ConfigFile),
    /// A file is not UTF-8 text.
    NotText(ConfigFile),
    /// A PEM file holds no PEM block.
    BadPem(ConfigFile),
    /// `server` is not `host[:port]`.
    BadServer,
    /// Only one of `onboard.cert.pem` and `onboard.key.pem` is present.
    OnboardPairIncomplete,
    /// `soft_serial` is not printable ASCII without spaces (at most 128).
    BadSoftSerial,
    /// A `hosts` line (1-based) is not `address name...`.
    BadHostsLine(u32),
}

impl From<FatError> for ConfigError {
    fn from(error: FatError) -> Self {
        ConfigError::Fs(error)
    }
}

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ConfigError::Fs(error) => write!(f, "{error}"),
            ConfigError::Missing(file) => write!(f, "CONFIG: {} is missing", file.file_name()),
            ConfigError::TooLarge(file) => write!(f, "CONFIG: {} is too large", file.file_name()),
            ConfigError::NotText(file) => write!(f, "CONFIG: {} is not UTF-8", file.file_name()),
            ConfigError::BadPem(file) => write!(f, "CONFIG: {} holds no PEM", file.file_name()),
            ConfigError::BadServer => f.write_str("CONFIG: server is not host[:port]"),
            ConfigError::OnboardPairIncomplete => {
                f.write_str("CONFIG: onboard certificate and key must come together")
            }
            ConfigError::BadSoftSerial => f.write_str("CONFIG: soft_serial is not a serial"),
            ConfigError::BadHostsLine(line) => write!(f, "CONFIG: hosts line {line} is invalid"),
        }
    }
}

/// What the CONFIG partition tells a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FactoryConfig {
    /// The controller as `host[:port]` (trimmed, validated).
    pub server: String,
    /// The controller's trust root(s), PEM.
    pub root_certificate_pem: String,
    /// The onboarding certificate, PEM.
    pub onboard_cert_pem: Option<String>,
    /// The onboarding certificate's key, PEM.
    pub onboard_key_pem: Option<String>,
    /// A serial number to report instead of the hardware's.
    pub soft_serial: Option<String>,
    /// Static name overrides from `hosts`, in file order.
    pub hosts: Vec<(String, IpAddr)>,
}

impl FactoryConfig {
    /// The controller's host name or address (without brackets).
    pub fn server_host(&self) -> &str {
        split_server(&self.server).map_or("", |(host, _)| host)
    }

    /// The controller's port, if `server` names one (EVE's default is 443).
    pub fn server_port(&self) -> Option<u16> {
        split_server(&self.server).and_then(|(_, port)| port)
    }
}

/// Reads the factory configuration from a CONFIG disk.
pub fn read_factory_config(dev: impl BlockDevice) -> Result<FactoryConfig, ConfigError> {
    let mut volume = FatVolume::open(dev)?;
    let server = required_text(&mut volume, ConfigFile::Server)?;
    let server = String::from(server.trim());
    split_server(&server).ok_or(ConfigError::BadServer)?;
    let root_certificate_pem = pem(
        required_text(&mut volume, ConfigFile::RootCertificate)?,
        ConfigFile::RootCertificate,
    )?;
    let onboard_cert_pem = optional_text(&mut volume, ConfigFile::OnboardCertificate)?
        .map(|text| pem(text, ConfigFile::OnboardCertificate))
        .transpose()?;
    let onboard_key_pem = optional_text(&mut volume, ConfigFile::OnboardKey)?
        .map(|text| pem(text, ConfigFile::OnboardKey))
        .transpose()?;
    if onboard_cert_pem.is_some() != onboard_key_pem.is_some() {
        return Err(ConfigError::OnboardPairIncomplete);
    }
    let soft_serial = optional_text(&mut volume, ConfigFile::SoftSerial)?
        .map(|text| parse_soft_serial(&text))
        .transpose()?
        .flatten();
    let hosts = match optional_text(&mut volume, ConfigFile::Hosts)? {
        Some(text) => parse_hosts(&text)?,
        None => Vec::new(),
    };
    Ok(FactoryConfig {
        server,
        root_certificate_pem,
        onboard_cert_pem,
        onboard_key_pem,
        soft_serial,
        hosts,
    })
}

fn optional_text<D: BlockDevice>(
    volume: &mut FatVolume<D>,
    file: ConfigFile,
) -> Result<Option<String>, ConfigError> {
    let Some(entry) = volume.find(file.file_name())? else {
        return Ok(None);
    };
    let bytes = volume
        .read_file(&entry, file.max_len())
        .map_err(|error| match error {
            FatError::FileTooLarge => ConfigError::TooLarge(file),
            other => ConfigError::Fs(other),
        })?;
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| ConfigError::NotText(file))
}

fn required_text<D: BlockDevice>(
    volume: &mut FatVolume<D>,
    file: ConfigFile,
) -> Result<String, ConfigError> {
    optional_text(volume, file)?.ok_or(ConfigError::Missing(file))
}

/// Keeps PEM text as it is, once it is seen to hold a PEM block; the
/// certificates themselves are checked where they are used.
fn pem(text: String, file: ConfigFile) -> Result<String, ConfigError> {
    if text.contains("-----BEGIN ") && text.contains("-----END ") {
        Ok(text)
    } else {
        Err(ConfigError::BadPem(file))
    }
}

/// `Ok(None)` for an empty file, which EVE treats as no soft serial.
fn parse_soft_serial(text: &str) -> Result<Option<String>, ConfigError> {
    let serial = text.trim();
    if serial.is_empty() {
        return Ok(None);
    }
    if serial.len() > 128 || !serial.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ConfigError::BadSoftSerial);
    }
    Ok(Some(String::from(serial)))
}

/// `/etc/hosts` syntax: `address name [alias...]`, `#` comments.
fn parse_hosts(text: &str) -> Result<Vec<(String, IpAddr)>, ConfigError> {
    let mut hosts = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let bad = ConfigError::BadHostsLine(u32::try_from(index + 1).unwrap_or(u32::MAX));
        let content = line.split('#').next().unwrap_or("");
        let mut fields = content.split_whitespace();
        let Some(address) = fields.next() else {
            continue;
        };
        let address: IpAddr = address.parse().map_err(|_| bad)?;
        let mut names = fields.peekable();
        if names.peek().is_none() {
            return Err(bad);
        }
        for name in names {
            if !is_host_name(name) {
                return Err(bad);
            }
            hosts.push((String::from(name), address));
        }
    }
    Ok(hosts)
}

/// A DNS host name: dot-separated labels of letters, digits and inner
/// hyphens, at most 63 bytes each and 253 in all (a final dot allowed).
fn is_host_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Splits `host[:port]` or `[ipv6][:port]`; `None` if it is neither.
pub fn split_server(server: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if let Some(rest) = server.strip_prefix('[') {
        let (address, after) = rest.split_once(']')?;
        address.parse::<core::net::Ipv6Addr>().ok()?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':')?),
        };
        (address, port)
    } else {
        let (host, port) = match server.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (server, None),
        };
        if host.parse::<core::net::Ipv4Addr>().is_err() && !is_host_name(host) {
            return None;
        }
        (host, port)
    };
    let port = match port {
        None => None,
        Some(digits) => {
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            Some(digits.parse::<u16>().ok().filter(|&p| p != 0)?)
        }
    };
    Some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::Ipv4Addr;

    #[test]
    fn server_forms() {
        assert_eq!(
            split_server("zedcloud.example.net"),
            Some(("zedcloud.example.net", None))
        );
        assert_eq!(
            split_server("ctrl.local:3000"),
            Some(("ctrl.local", Some(3000)))
        );
        assert_eq!(
            split_server("10.0.2.2:8443"),
            Some(("10.0.2.2", Some(8443)))
        );
        assert_eq!(split_server("[fd00::1]:443"), Some(("fd00::1", Some(443))));
        assert_eq!(split_server("[fd00::1]"), Some(("fd00::1", None)));
        for bad in [
            "",
            ":443",
            "host:",
            "host:0",
            "host:65536",
            "host:+1",
            "ho st",
            "-host",
            "host:1:2",
            "[fd00::1",
            "[nothex]:1",
            "[fd00::1]443",
            "https://host",
        ] {
            assert_eq!(split_server(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn hosts_lines() {
        let text = "# static names\n10.0.2.2 ctrl.local ctrl\n\n  fd00::2   v6.local # trailing\n";
        let hosts = parse_hosts(text).unwrap();
        let ctrl = IpAddr::V4(Ipv4Addr::new(10, 0, 2, 2));
        assert_eq!(hosts[0], (String::from("ctrl.local"), ctrl));
        assert_eq!(hosts[1], (String::from("ctrl"), ctrl));
        assert_eq!(hosts[2].0, "v6.local");
        assert_eq!(hosts.len(), 3);
        assert_eq!(
            parse_hosts("1.2.3.4 ok\n1.2.3 bad\n"),
            Err(ConfigError::BadHostsLine(2))
        );
        assert_eq!(parse_hosts("1.2.3.4\n"), Err(ConfigError::BadHostsLine(1)));
        assert_eq!(
            parse_hosts("1.2.3.4 under_score\n"),
            Err(ConfigError::BadHostsLine(1))
        );
    }

    #[test]
    fn soft_serial_rules() {
        assert_eq!(
            parse_soft_serial(" ABC-123\n"),
            Ok(Some(String::from("ABC-123")))
        );
        assert_eq!(parse_soft_serial("\n"), Ok(None));
        assert_eq!(
            parse_soft_serial("two words"),
            Err(ConfigError::BadSoftSerial)
        );
        assert_eq!(
            parse_soft_serial(&"x".repeat(129)),
            Err(ConfigError::BadSoftSerial)
        );
    }

    #[test]
    fn host_names() {
        assert!(is_host_name("a.b-c.d9."));
        assert!(!is_host_name("a..b"));
        assert!(!is_host_name(&"a".repeat(64)));
        assert!(!is_host_name("end-.x"));
    }
}
