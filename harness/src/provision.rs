//! What a device is shipped with: an onboarding identity and the factory
//! CONFIG partition naming the controller. `cargo xtask qemu` provisions
//! its node with it and the zedagent tests their devices, so both make the
//! partition the same way an installer would.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use configpart::{ConfigFile, ImageLayout, build_config_image};

use crate::Running;

use crate::servers::GUEST_HOST_ADDR;

/// The CONFIG partition: a bare FAT volume of 1 MiB, as EVE's `config.img`.
pub const CONFIG_VOLUME_BYTES: u64 = 1 << 20;

/// The onboarding identity a device is shipped with: a self-signed P-256
/// certificate (as EVE's `onboard.cert.pem`), its PKCS#8 key and the soft
/// serial it registers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnboardIdentity {
    pub cert_pem: String,
    pub key_pem: String,
    pub serial: String,
}

impl OnboardIdentity {
    /// A fresh identity whose serial is `serial_prefix` and 12 random hex
    /// digits.
    pub fn generate(serial_prefix: &str) -> Result<OnboardIdentity, String> {
        let mut random = [0u8; 6];
        File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut random))
            .map_err(|e| format!("/dev/urandom: {e}"))?;
        let serial: String = std::iter::once(serial_prefix.to_owned())
            .chain(random.iter().map(|b| format!("{b:02x}")))
            .collect();
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| format!("onboarding key: {e}"))?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
            .map_err(|e| format!("onboarding certificate: {e}"))?;
        let mut name = rcgen::DistinguishedName::new();
        name.push(rcgen::DnType::CommonName, format!("onboard {serial}"));
        params.distinguished_name = name;
        let cert = params
            .self_signed(&key)
            .map_err(|e| format!("onboarding certificate: {e}"))?;
        Ok(OnboardIdentity {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            serial,
        })
    }
}

/// The files of the CONFIG partition for a device of a controller whose
/// device API listens on the host's loopback `port`: guests on QEMU user
/// networking reach it as 10.0.2.2, a name the controller's TLS
/// certificate carries.
pub fn config_files(
    port: u16,
    root_pem: &str,
    identity: &OnboardIdentity,
) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (
            ConfigFile::Server.file_name(),
            format!("{GUEST_HOST_ADDR}:{port}").into_bytes(),
        ),
        (
            ConfigFile::RootCertificate.file_name(),
            root_pem.as_bytes().to_vec(),
        ),
        (
            ConfigFile::OnboardCertificate.file_name(),
            identity.cert_pem.as_bytes().to_vec(),
        ),
        (
            ConfigFile::OnboardKey.file_name(),
            identity.key_pem.as_bytes().to_vec(),
        ),
        (
            ConfigFile::SoftSerial.file_name(),
            identity.serial.as_bytes().to_vec(),
        ),
    ]
}

/// Writes the CONFIG partition image (whole, then renamed into place).
pub fn write_config_partition(path: &Path, files: &[(&str, Vec<u8>)]) -> Result<(), String> {
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (*n, b.as_slice())).collect();
    let image = build_config_image(
        &refs,
        ImageLayout::Bare {
            volume_bytes: CONFIG_VOLUME_BYTES,
        },
    )
    .map_err(|e| format!("CONFIG partition: {e}"))?;
    write_atomically(path, &image)
}

/// Writes `bytes` to a temporary file, syncs it and renames it over
/// `path`, so `path` holds the old or the new bytes, never a mix.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let fail = |e: std::io::Error| format!("{}: {e}", path.display());
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = File::create(&tmp).map_err(fail)?;
    file.write_all(bytes).map_err(fail)?;
    file.sync_all().map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)
}

/// The UUID zedagent prints once onboarded (its "onboarded as U" line);
/// panics if the line does not come within `timeout`. The scenarios that
/// onboard a device compare it across reboots and look it up at the
/// controller.
pub fn onboarded_uuid(guest: &mut Running, timeout: Duration) -> String {
    let line = guest.expect_line("onboarded as ", timeout);
    line.rsplit(' ').next().expect("a UUID").trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> OnboardIdentity {
        OnboardIdentity {
            cert_pem: "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n".into(),
            key_pem: "-----BEGIN PRIVATE KEY-----\nAA==\n-----END PRIVATE KEY-----\n".into(),
            serial: "xtask-0011aabbccdd".into(),
        }
    }

    #[test]
    fn the_config_partition_holds_what_a_device_is_shipped_with() {
        let files = config_files(40123, "ROOT PEM", &identity());
        let names: Vec<&str> = files.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "server",
                "root-certificate.pem",
                "onboard.cert.pem",
                "onboard.key.pem",
                "soft_serial"
            ]
        );
        assert_eq!(files[0].1, b"10.0.2.2:40123");
        assert_eq!(files[1].1, b"ROOT PEM");
        assert_eq!(files[4].1, b"xtask-0011aabbccdd");
    }

    #[test]
    fn the_config_partition_reads_back_as_factory_config() {
        let dir = std::env::temp_dir().join(format!("harness-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config.img");
        let identity = OnboardIdentity::generate("test-").unwrap();
        let root = "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n";
        write_config_partition(&path, &config_files(8443, root, &identity)).unwrap();
        let image = std::fs::read(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(image.len() as u64, CONFIG_VOLUME_BYTES);
        let config = configpart::read_factory_config(blockdev::MemDisk::from_image(image)).unwrap();
        assert_eq!(config.server_host(), "10.0.2.2");
        assert_eq!(config.server_port(), Some(8443));
        assert_eq!(
            config.soft_serial.as_deref(),
            Some(identity.serial.as_str())
        );
    }

    #[test]
    fn onboarding_certificates_are_self_signed_p256() {
        let identity = OnboardIdentity::generate("xtask-").unwrap();
        let cert = eve_proto::x509::parse_pem(identity.cert_pem.as_bytes()).unwrap();
        let key = eve_proto::x509::p256_public_key(&cert).unwrap();
        assert_eq!(eve_proto::x509::verify_signed_by(&cert, &key), Ok(true));
        let signer = eve_proto::sign::SoftwareSigner::from_pem(&identity.key_pem);
        assert!(signer.is_ok());
        assert!(identity.serial.starts_with("xtask-") && identity.serial.len() == 18);
        assert_ne!(OnboardIdentity::generate("xtask-").unwrap(), identity);
    }
}
