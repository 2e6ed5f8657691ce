//! A node image (`cargo xtask image`) booted as a whole machine: UEFI
//! firmware (OVMF on x86_64, AAVMF on aarch64) with a writable copy of its
//! variables, the image as a virtio disk, and an uplink on QEMU user
//! networking.
//!
//! The uplink is 10.7.0.0/24, not QEMU's default 10.0.2.0/24: the node's
//! own services run in VMs on user networking of their own, where
//! 10.0.2.0/24 is their VM's private network and 10.0.2.2 the node itself,
//! so a controller on the outer host's loopback must be somewhere else for
//! them. It is [`UPLINK_HOST`], which the controller's TLS certificate must
//! name ([`reissue_controller_tls`]).
//!
//! The test of the image (`tests/image.rs`) and `cargo xtask bench image`
//! boot it the same way.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::Arch;

/// The node's uplink network.
pub const UPLINK_NET: &str = "10.7.0.0/24";
/// The outer host's loopback as the node reaches it.
pub const UPLINK_HOST: &str = "10.7.0.2";

/// UEFI firmware for a machine: read-only code and a template of its
/// variable store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Firmware {
    pub code: PathBuf,
    pub vars: PathBuf,
}

impl Firmware {
    /// Debian's OVMF (`ovmf`) or AAVMF (`qemu-efi-aarch64`), without
    /// Secure Boot keys.
    pub fn for_arch(arch: Arch) -> Firmware {
        match arch {
            Arch::X86_64 => Firmware {
                code: PathBuf::from("/usr/share/OVMF/OVMF_CODE_4M.fd"),
                vars: PathBuf::from("/usr/share/OVMF/OVMF_VARS_4M.fd"),
            },
            Arch::Aarch64 => Firmware {
                code: PathBuf::from("/usr/share/AAVMF/AAVMF_CODE.fd"),
                vars: PathBuf::from("/usr/share/AAVMF/AAVMF_VARS.fd"),
            },
        }
    }
}

/// One machine booting a node image.
#[derive(Debug, Clone)]
pub struct NodeMachine {
    pub arch: Arch,
    pub image: PathBuf,
    /// The machine's own copy of the firmware variables.
    pub vars: PathBuf,
    pub memory_mib: u32,
    pub vcpus: u32,
}

impl NodeMachine {
    /// A machine for `image`, its firmware variables copied to `vars`.
    pub fn new(arch: Arch, image: &Path, vars: &Path) -> Result<NodeMachine, String> {
        let firmware = Firmware::for_arch(arch);
        std::fs::copy(&firmware.vars, vars).map_err(|e| {
            format!(
                "{}: {e} (install ovmf / qemu-efi-aarch64: cargo xtask deps)",
                firmware.vars.display()
            )
        })?;
        Ok(NodeMachine {
            arch,
            image: image.to_path_buf(),
            vars: vars.to_path_buf(),
            memory_mib: 1536,
            vcpus: 2,
        })
    }

    /// The QEMU arguments: emulated (TCG) with a CPU that offers no
    /// hardware virtualisation, so the node's own QEMUs choose TCG too.
    pub fn args(&self) -> Vec<String> {
        let firmware = Firmware::for_arch(self.arch);
        let (machine, cpu) = match self.arch {
            Arch::X86_64 => ("q35", "max,vmx=off,svm=off"),
            // No pointer authentication: it is slow to emulate.
            Arch::Aarch64 => ("virt", "max,pauth=off"),
        };
        let quote = |p: &Path| p.display().to_string().replace(',', ",,");
        let mut args: Vec<String> = [
            "-M",
            machine,
            "-accel",
            "tcg",
            "-cpu",
            cpu,
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-serial",
            "stdio",
            "-monitor",
            "none",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend([
            "-m".into(),
            self.memory_mib.to_string(),
            "-smp".into(),
            self.vcpus.to_string(),
            "-drive".into(),
            format!(
                "if=pflash,format=raw,readonly=on,file={}",
                quote(&firmware.code)
            ),
            "-drive".into(),
            format!("if=pflash,format=raw,file={}", quote(&self.vars)),
            "-drive".into(),
            format!("file={},format=raw,if=none,id=disk", quote(&self.image)),
            "-device".into(),
            "virtio-blk-pci,drive=disk".into(),
            "-netdev".into(),
            format!("user,id=uplink,net={UPLINK_NET}"),
            // An empty romfile: no iPXE in the boot order.
            "-device".into(),
            "virtio-net-pci,netdev=uplink,romfile=".into(),
            "-device".into(),
            "virtio-rng-pci".into(),
        ]);
        args
    }

    /// Powers the machine on.
    pub fn power_on(&self) -> Result<NodeConsole, String> {
        let binary = self.arch.qemu();
        let mut child = Command::new(binary)
            .args(self.args())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("{binary}: {e}"))?;
        let started = Instant::now();
        let (send, lines) = mpsc::channel();
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let send = send.clone();
            thread::spawn(move || {
                let mut reader = BufReader::new(stream);
                let mut line = Vec::new();
                while reader.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
                    let text = String::from_utf8_lossy(&line).replace('\r', "");
                    if send
                        .send((started.elapsed(), text.trim_end().to_string()))
                        .is_err()
                    {
                        return;
                    }
                    line.clear();
                }
            });
        }
        Ok(NodeConsole {
            child,
            lines,
            seen: Vec::new(),
            started,
        })
    }
}

/// A running node machine's console (serial and QEMU's own messages).
pub struct NodeConsole {
    child: Child,
    lines: mpsc::Receiver<(Duration, String)>,
    seen: Vec<(Duration, String)>,
    started: Instant,
}

impl NodeConsole {
    /// Time since power-on.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Takes what arrived, waiting up to `wait` for a line.
    pub fn pump(&mut self, wait: Duration) {
        if let Ok(line) = self.lines.recv_timeout(wait) {
            self.seen.push(line);
            while let Ok(line) = self.lines.try_recv() {
                self.seen.push(line);
            }
        }
    }

    /// The first line holding `needle` (with the time it arrived after
    /// power-on), waiting up to `timeout` for it.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> Option<(Duration, String)> {
        let until = Instant::now() + timeout;
        loop {
            if let Some(found) = self.seen.iter().find(|(_, l)| l.contains(needle)) {
                return Some(found.clone());
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() || self.exited() {
                return None;
            }
            self.pump(left.min(Duration::from_millis(200)));
        }
    }

    /// Whether QEMU has ended.
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Every line so far.
    pub fn transcript(&mut self) -> String {
        self.pump(Duration::ZERO);
        self.seen
            .iter()
            .map(|(at, l)| format!("[{:8.3}] {l}\n", at.as_secs_f64()))
            .collect()
    }
}

impl Drop for NodeConsole {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The names the controller's TLS certificate carries: its own, and the
/// node's way to the host.
pub const CONTROLLER_NAMES: [&str; 5] = ["localhost", "127.0.0.1", "::1", "10.0.2.2", UPLINK_HOST];

/// Gives the controller whose data directory is `data_dir` a new TLS
/// server certificate for [`CONTROLLER_NAMES`], signed by its own root
/// (`root-certificate.pem`, `root-key.pem`), as an operator does for the
/// addresses devices use. The controller reads it at its next start.
pub fn reissue_controller_tls(data_dir: &Path) -> Result<(), String> {
    let read = |name: &str| {
        let path = data_dir.join(name);
        std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))
    };
    let root_key = rcgen::KeyPair::from_pem(&read("root-key.pem")?)
        .map_err(|e| format!("root-key.pem: {e}"))?;
    let root_params = rcgen::CertificateParams::from_ca_cert_pem(&read("root-certificate.pem")?)
        .map_err(|e| format!("root-certificate.pem: {e}"))?;
    let root = root_params
        .self_signed(&root_key)
        .map_err(|e| format!("root: {e}"))?;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| format!("server key: {e}"))?;
    let names: Vec<String> = CONTROLLER_NAMES.iter().map(|n| n.to_string()).collect();
    let mut params =
        rcgen::CertificateParams::new(names).map_err(|e| format!("server certificate: {e}"))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    params.is_ca = rcgen::IsCa::ExplicitNoCa;
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params
        .signed_by(&key, &root, &root_key)
        .map_err(|e| format!("server certificate: {e}"))?;
    crate::provision::write_atomically(
        &data_dir.join("server-key.pem"),
        key.serialize_pem().as_bytes(),
    )?;
    crate::provision::write_atomically(&data_dir.join("server.pem"), cert.pem().as_bytes())
}

/// The CONFIG files of a node image for a controller on the outer host's
/// loopback `port`: [`crate::provision::config_files`], with the server
/// the node's services reach.
pub fn config_files(
    port: u16,
    root_pem: &str,
    identity: &crate::provision::OnboardIdentity,
) -> Vec<(&'static str, Vec<u8>)> {
    let mut files = crate::provision::config_files(port, root_pem, identity);
    for (name, data) in &mut files {
        if *name == configpart::ConfigFile::Server.file_name() {
            *data = format!("{UPLINK_HOST}:{port}").into_bytes();
        }
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::ServerCertVerifier;

    #[test]
    fn the_machine_boots_its_image_from_firmware_on_the_uplink_net() {
        let dir = std::env::temp_dir().join(format!("nodeimage-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let template = dir.join("template.fd");
        std::fs::write(&template, b"vars").unwrap();
        let machine = NodeMachine {
            arch: Arch::X86_64,
            image: PathBuf::from("/images/eve,x86.img"),
            vars: dir.join("vars.fd"),
            memory_mib: 1536,
            vcpus: 2,
        };
        let args = machine.args().join(" ");
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(args.contains(
            "-drive if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd"
        ));
        assert!(
            args.contains("file=/images/eve,,x86.img,format=raw"),
            "{args}"
        );
        assert!(args.contains("user,id=uplink,net=10.7.0.0/24"));
        assert!(args.contains("vmx=off,svm=off"));
        assert!(
            !args.contains("-no-reboot"),
            "the node reboots to fall back"
        );
    }

    #[test]
    fn a_reissued_certificate_names_the_uplink_host_and_chains_to_the_root() {
        let dir = std::env::temp_dir().join(format!("nodeimage-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let root = crate::pki::root("EVE controller root CA");
        std::fs::write(dir.join("root-certificate.pem"), root.cert.pem()).unwrap();
        std::fs::write(dir.join("root-key.pem"), root.key.serialize_pem()).unwrap();
        reissue_controller_tls(&dir).unwrap();
        let pem = std::fs::read_to_string(dir.join("server.pem")).unwrap();
        let key = std::fs::read_to_string(dir.join("server-key.pem")).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        use rustls::pki_types::pem::PemObject;
        let leaf = rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(root.cert.der().clone()).unwrap();
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            roots.into(),
            controller::tls::provider(),
        )
        .build()
        .unwrap();
        let name = rustls::pki_types::ServerName::try_from(UPLINK_HOST).unwrap();
        verifier
            .verify_server_cert(&leaf, &[], &name, &[], rustls::pki_types::UnixTime::now())
            .expect("the leaf chains to the root and names the uplink host");
        assert!(key.contains("PRIVATE KEY"));
    }
}
