//! `cargo xtask bench ...`: measurements printed as tables, for
//! `docs/benchmarks.md`. Never assertions: numbers depend on the machine.

use std::time::Duration;

use clap::Subcommand;
use harness::{Accel, AccelProbe, Device, Guest, Machine, Outcome, Profile, build_service};

#[derive(Subcommand)]
pub enum Bench {
    /// Boot the selftest N times per machine: exec to first console byte,
    /// guest entry to main, exec to exit.
    Boot {
        #[arg(long, default_value_t = 10)]
        runs: usize,
    },
    /// The network stack in QEMU: exec to DHCP lease, in-guest DHCP, TCP
    /// throughput guest to host and host to guest; then TCP connect plus a
    /// small HTTP round trip, the TLS 1.3 handshake and an HTTPS GET of 1 MiB;
    /// then the handshake with P-256, RSA 2048, 3072 and 4096-bit servers.
    Net {
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    /// The controller under load from a separate process on loopback:
    /// 1k and 10k devices flat out, and 10k at EVE's cadence.
    Controller,
    /// The controller under a simulated fleet (devicesim): SQLite,
    /// PostgreSQL with one and with two replicas, at EVE's cadence and flat.
    Fleet(crate::fleetbench::Args),
    /// Encode/decode a realistic EdgeDevConfig and sign/verify an
    /// AuthContainer, per operation, on the host.
    Proto {
        #[arg(long, default_value_t = 2000)]
        iterations: u32,
    },
    /// The whole node against our controller on loopback: host start to
    /// every service running and to onboarded; RSS of the host and of each
    /// service VM; image sizes; beside EVE's control-plane budget.
    Node {
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// The node's arch (the manifest's when omitted).
        #[arg(long)]
        arch: Option<harness::Arch>,
        #[arg(long, default_value_os_t = crate::node::default_manifest())]
        manifest: std::path::PathBuf,
        /// Seconds a run may take before what is missing is reported.
        #[arg(long, default_value_t = 300)]
        timeout_s: u64,
    },
    /// Node images: sizes beside EVE's, and power-on to onboarded under
    /// QEMU TCG with UEFI firmware against our controller; then the update
    /// flow in the dev node, config to committed.
    Image {
        #[arg(long, default_value_t = 1)]
        runs: usize,
        /// Only the update flow (no images built or booted).
        #[arg(long)]
        update_only: bool,
        /// One arch (both when omitted).
        #[arg(long)]
        arch: Option<harness::Arch>,
        /// Seconds a boot may take to onboard.
        #[arg(long, default_value_t = 1800)]
        timeout_s: u64,
    },
    /// zedagent under TCG: QEMU exec to registered, to first config applied,
    /// to first info accepted; its heap high-water mark and image size.
    Onboard {
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// The node's arch (the manifest's when omitted).
        #[arg(long)]
        arch: Option<harness::Arch>,
        #[arg(long, default_value_os_t = crate::node::default_manifest())]
        manifest: std::path::PathBuf,
        /// Seconds a run may take before what is missing is reported.
        #[arg(long, default_value_t = 300)]
        timeout_s: u64,
    },
    /// An idle onboarded node's CPU per process, and how fast a sleeping service wakes.
    Idle(crate::idlebench::IdleArgs),
    /// Each kind of app (unikernel, Linux VM, container): start to first answer, stop, VMM memory.
    Apps(crate::appsbench::AppsArgs),
    /// An app's TCP throughput, connection rate and echo latency through
    /// zedrouter beside QEMU user networking directly, and zedrouter's NAT
    /// capacity.
    Network(crate::netbench::NetworkArgs),
    /// Content: a blob over HTTP, HTTPS and from a registry into the blob
    /// store, beside curl on the same server; config accepted to volume
    /// ready.
    Content {
        /// The node's arch (the manifest's when omitted).
        #[arg(long)]
        arch: Option<harness::Arch>,
        #[arg(long, default_value_os_t = crate::node::default_manifest())]
        manifest: std::path::PathBuf,
        /// The blob's size in MiB.
        #[arg(long, default_value_t = 64)]
        mib: usize,
        /// Seconds the whole run may take.
        #[arg(long, default_value_t = 1200)]
        timeout_s: u64,
    },
}

pub fn run(what: Bench) -> Result<(), String> {
    match what {
        Bench::Boot { runs } => boot(runs.max(1)),
        Bench::Proto { iterations } => proto(iterations.max(1)),
        Bench::Controller => controller(),
        Bench::Fleet(args) => crate::fleetbench::run(args),
        Bench::Net { runs } => net(runs.max(1)),
        Bench::Node {
            runs,
            arch,
            manifest,
            timeout_s,
        } => crate::nodebench::node(runs.max(1), arch, &manifest, Duration::from_secs(timeout_s)),
        Bench::Idle(args) => crate::idlebench::run(args),
        Bench::Network(args) => crate::netbench::run(args),
        Bench::Apps(args) => crate::appsbench::run(args),
        Bench::Content {
            arch,
            manifest,
            mib,
            timeout_s,
        } => crate::contentbench::run(arch, &manifest, mib.max(1), Duration::from_secs(timeout_s)),
        Bench::Image {
            runs,
            update_only: true,
            arch,
            ..
        } => crate::updatebench::update_flow(
            &arch.map_or(harness::Arch::ALL.to_vec(), |a| vec![a]),
            runs.max(1),
        ),
        Bench::Image {
            runs,
            update_only: false,
            arch,
            timeout_s,
        } => crate::imagebench::image(runs.max(1), arch, Duration::from_secs(timeout_s)),
        Bench::Onboard {
            runs,
            arch,
            manifest,
            timeout_s,
        } => {
            crate::nodebench::onboard(runs.max(1), arch, &manifest, Duration::from_secs(timeout_s))
        }
    }
}

pub(crate) struct Summary {
    median: Duration,
    min: Duration,
    max: Duration,
}

pub(crate) fn summarize(mut samples: Vec<Duration>) -> Option<Summary> {
    samples.sort();
    Some(Summary {
        median: *samples.get(samples.len() / 2)?,
        min: *samples.first()?,
        max: *samples.last()?,
    })
}

pub(crate) fn cell(s: Option<Summary>) -> String {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    s.map_or("-".into(), |s| {
        format!("{:.2} ({:.2}-{:.2})", ms(s.median), ms(s.min), ms(s.max))
    })
}

/// Bytes QEMU loads: the PT_LOAD segments, i.e. the size once stripped.
fn loadable_bytes(elf: &[u8]) -> Option<u64> {
    let read = |at: usize, n: usize| -> Option<u64> {
        let b = elf.get(at..at + n)?;
        Some(b.iter().rev().fold(0u64, |acc, &x| acc << 8 | u64::from(x)))
    };
    let phoff = read(0x20, 8)? as usize;
    let phentsize = read(0x36, 2)? as usize;
    let phnum = read(0x38, 2)? as usize;
    let mut total = 0;
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        if read(ph, 4)? == 1 {
            total += read(ph + 32, 8)?;
        }
    }
    Some(total)
}

fn boot(runs: usize) -> Result<(), String> {
    crate::deps::ensure()?;
    let mut configs = Vec::new();
    for machine in Machine::ALL {
        configs.push((machine, Accel::Tcg));
        if AccelProbe::default().detect(machine.arch()).accel == Accel::Kvm {
            configs.push((machine, Accel::Kvm));
        }
    }
    println!("selftest boot, {runs} runs each, median (min-max) in ms");
    println!();
    println!(
        "| machine | accel | exec to first console byte | guest entry to main | exec to exit | ELF loadable size |"
    );
    println!("|---|---|---|---|---|---|");
    for (machine, accel) in configs {
        let image = build_service("selftest", machine.arch(), Profile::Release)
            .map_err(|e| e.to_string())?;
        let elf_path = match machine.arch() {
            harness::Arch::X86_64 => image.clone(),
            harness::Arch::Aarch64 => image.with_extension(""),
        };
        let size = std::fs::read(&elf_path)
            .ok()
            .and_then(|b| loadable_bytes(&b))
            .map_or("-".into(), |n| format!("{:.1} KiB", n as f64 / 1024.0));
        let guest = Guest::new(machine, image)
            .accel(accel)
            .device(Device::VirtioRng)
            .cmdline("expect-virtio=rng");
        let mut outcomes: Vec<Outcome> = Vec::new();
        for _ in 0..runs {
            let outcome = guest.run().map_err(|e| e.to_string())?;
            if !outcome.succeeded() {
                return Err(format!("selftest failed during the benchmark:\n{outcome}"));
            }
            outcomes.push(outcome);
        }
        let first = summarize(outcomes.iter().filter_map(|o| o.first_byte).collect());
        let main = summarize(
            outcomes
                .iter()
                .filter_map(|o| o.stamp("main").map(|s| s.guest))
                .collect(),
        );
        let total = summarize(outcomes.iter().map(|o| o.total).collect());
        println!(
            "| {machine} | {accel} | {} | {} | {} | {size} |",
            cell(first),
            cell(main),
            cell(total)
        );
    }
    Ok(())
}

/// Runs `devicesim` (release), which starts the release controller as its
/// own process on loopback and prints a table per run.
fn controller() -> Result<(), String> {
    crate::cargo(&[
        "build",
        "--quiet",
        "--release",
        "--package",
        "controller",
        "--package",
        "devicesim",
        "--bins",
    ])?;
    let load = harness::workspace_root().join("target/release/devicesim");
    let runs: [&[&str]; 3] = [
        &[
            "load",
            "--devices",
            "1000",
            "--mode",
            "flat",
            "--max-requests",
            "200000",
        ],
        &[
            "load",
            "--devices",
            "10000",
            "--mode",
            "flat",
            "--max-requests",
            "200000",
        ],
        &[
            "load",
            "--devices",
            "10000",
            "--mode",
            "cadence",
            "--duration",
            "30",
        ],
    ];
    for args in runs {
        println!("devicesim {}", args.join(" "));
        let status = std::process::Command::new(&load)
            .args(args)
            .status()
            .map_err(|e| format!("{}: {e}", load.display()))?;
        if !status.success() {
            return Err(format!("devicesim failed ({status})"));
        }
    }
    Ok(())
}

/// Runs the release build of `evectl bench`, so the numbers are those of
/// optimised code whatever profile xtask itself was built with.
fn proto(iterations: u32) -> Result<(), String> {
    let iterations = iterations.to_string();
    crate::cargo(&[
        "run",
        "--quiet",
        "--release",
        "--package",
        "evectl",
        "--bin",
        "evectl",
        "--",
        "bench",
        "--iterations",
        &iterations,
    ])
}

/// A loopback server for one connection: `Sink` counts what arrives,
/// `Source` sends `bytes` and closes. Returns the port.
fn one_shot_server(send: Option<usize>) -> Result<u16, String> {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    std::thread::spawn(move || {
        if let Ok((mut conn, _)) = listener.accept() {
            match send {
                Some(bytes) => {
                    let chunk = vec![0x5au8; 64 * 1024];
                    let mut left = bytes;
                    while left > 0 {
                        let n = left.min(chunk.len());
                        if conn.write_all(&chunk[..n]).is_err() {
                            return;
                        }
                        left -= n;
                    }
                }
                None => {
                    let mut buf = vec![0u8; 64 * 1024];
                    while matches!(conn.read(&mut buf), Ok(n) if n > 0) {}
                }
            }
        }
    });
    Ok(port)
}

fn net(runs: usize) -> Result<(), String> {
    use harness::{HOST_SERVICES_ADDR, UserNet};
    crate::deps::ensure()?;
    const BYTES: usize = 8 << 20;
    println!(
        "nettest, {runs} runs each, median (min-max); throughput of {} MiB",
        BYTES >> 20
    );
    println!();
    println!(
        "| machine | accel | exec to DHCP lease (ms) | in-guest DHCP (ms) | TCP guest to host (MiB/s) | TCP host to guest (MiB/s) |"
    );
    println!("|---|---|---|---|---|---|");
    for machine in [Machine::Microvm, Machine::Q35, Machine::Virt] {
        let image = build_service("nettest", machine.arch(), Profile::Release)
            .map_err(|e| e.to_string())?;
        let accel = Accel::for_arch(machine.arch());
        let (mut lease, mut dhcp, mut send, mut receive) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..runs {
            let sink = one_shot_server(None)?;
            let source = one_shot_server(Some(BYTES))?;
            let guest = Guest::new(machine, image.clone())
                .accel(accel)
                .device(Device::VirtioRng)
                .device(Device::UserNet(UserNet {
                    guest_to_host: vec![(1, sink), (2, source)],
                    ..UserNet::default()
                }))
                .cmdline(format!(
                    "send-to={HOST_SERVICES_ADDR}:1 send-bytes={BYTES} \
                     receive-from={HOST_SERVICES_ADDR}:2 receive-bytes={BYTES}"
                ));
            let outcome = guest.run().map_err(|e| e.to_string())?;
            if !outcome.succeeded() {
                return Err(format!("nettest failed during the benchmark:\n{outcome}"));
            }
            let metric = |name: &str| {
                outcome
                    .metric(name)
                    .ok_or(format!("no {name} metric:\n{outcome}"))
            };
            lease.push(outcome.stamp("lease").ok_or("no lease stamp")?.host);
            dhcp.push(Duration::from_micros(metric("dhcp_us")?));
            send.push(metric("tcp_send_bytes")? as f64 / metric("tcp_send_us")?.max(1) as f64);
            receive.push(
                metric("tcp_receive_bytes")? as f64 / metric("tcp_receive_us")?.max(1) as f64,
            );
        }
        // Bytes per microsecond to MiB/s.
        let rate = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            let mib = |x: f64| x * 1e6 / f64::from(1u32 << 20);
            format!(
                "{:.1} ({:.1}-{:.1})",
                mib(v[v.len() / 2]),
                mib(v[0]),
                mib(v[v.len() - 1])
            )
        };
        println!(
            "| {machine} | {accel} | {} | {} | {} | {} |",
            cell(summarize(lease)),
            cell(summarize(dhcp)),
            rate(send),
            rate(receive)
        );
    }
    println!();
    https(runs)
}

/// The HTTP and TLS columns: per run, a 64-byte POST echoed by a plain
/// HTTP server and an HTTPS GET of 1 MiB from a TLS 1.3 server whose
/// certificate chains to a test root the guest pins.
fn https(runs: usize) -> Result<(), String> {
    use harness::UserNet;
    use harness::pki::{leaf, root};
    use harness::servers::{Behaviour, GUEST_HOST_ADDR, Server, tls_config};
    const NAME: &str = "bench.test";
    const BYTES: usize = 1 << 20;
    let ca = root("Bench Root");
    let server_cert = leaf(&[NAME], &ca);
    let http = Server::start(Behaviour::Http).map_err(|e| format!("HTTP server: {e}"))?;
    let tls = Server::start(Behaviour::Tls(tls_config(&[&server_cert])))
        .map_err(|e| format!("TLS server: {e}"))?;
    println!("nettest over HTTP and HTTPS, {runs} runs each, median (min-max)");
    println!();
    println!(
        "| machine | accel | TCP connect + 64 B HTTP round trip (ms) | TLS 1.3 handshake (ms) | HTTPS GET 1 MiB (ms) | HTTPS GET 1 MiB (MiB/s) |"
    );
    println!("|---|---|---|---|---|---|");
    for machine in [Machine::Microvm, Machine::Q35, Machine::Virt] {
        let image = build_service("nettest", machine.arch(), Profile::Release)
            .map_err(|e| e.to_string())?;
        let accel = Accel::for_arch(machine.arch());
        let (mut round_trip, mut handshake, mut download) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..runs {
            let guest = Guest::new(machine, image.clone())
                .accel(accel)
                .device(Device::VirtioRng)
                .device(Device::UserNet(UserNet {
                    open: true,
                    ..UserNet::default()
                }))
                .cmdline(format!(
                    "post=http://{GUEST_HOST_ADDR}:{}/echo post-bytes=64 \
                     hosts={NAME}={GUEST_HOST_ADDR} root={} \
                     fetch=https://{NAME}:{}/pattern/{BYTES} fetch-bytes={BYTES}",
                    http.port(),
                    ca.der_base64(),
                    tls.port()
                ));
            let outcome = guest.run().map_err(|e| e.to_string())?;
            if !outcome.succeeded() {
                return Err(format!("nettest failed during the benchmark:\n{outcome}"));
            }
            let metric = |name: &str| {
                outcome
                    .metric(name)
                    .map(Duration::from_micros)
                    .ok_or(format!("no {name} metric:\n{outcome}"))
            };
            round_trip.push(metric("post_connect_us")? + metric("post_response_us")?);
            handshake.push(metric("fetch_handshake_us")?);
            download.push(metric("fetch_response_us")?);
        }
        let rates = download
            .iter()
            .map(|d| BYTES as f64 / d.as_secs_f64().max(1e-9) / f64::from(1u32 << 20))
            .collect::<Vec<_>>();
        let mut sorted = rates.clone();
        sorted.sort_by(f64::total_cmp);
        println!(
            "| {machine} | {accel} | {} | {} | {} | {:.1} ({:.1}-{:.1}) |",
            cell(summarize(round_trip)),
            cell(summarize(handshake)),
            cell(summarize(download)),
            sorted[sorted.len() / 2],
            sorted[0],
            sorted[sorted.len() - 1]
        );
    }
    println!();
    handshake_by_key(runs)
}

/// A root and a server certificate for `name` whose keys are both RSA of
/// `bits` (from the host's OpenSSL: ring cannot generate RSA keys), the
/// certificates signed sha256WithRSAEncryption.
fn rsa_chain(
    bits: usize,
    name: &str,
) -> Result<(harness::pki::Issued, harness::pki::Issued), String> {
    use harness::pki::Issued;
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, PKCS_RSA_SHA256};
    let key = |slot| {
        KeyPair::from_pkcs8_pem_and_sign_algo(
            &sigverify::testing::rsa_key_pem(bits, slot),
            &PKCS_RSA_SHA256,
        )
        .map_err(|e| e.to_string())
    };
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
    params
        .distinguished_name
        .push(DnType::CommonName, format!("Bench RSA {bits} Root"));
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let root_key = key(0)?;
    let root = params.self_signed(&root_key).map_err(|e| e.to_string())?;
    let root = Issued {
        cert: root,
        key: root_key,
    };
    let server_key = key(1)?;
    let server = CertificateParams::new(vec![name.to_owned()])
        .and_then(|p| p.signed_by(&server_key, &root.cert, &root.key))
        .map_err(|e| e.to_string())?;
    Ok((
        root,
        Issued {
            cert: server,
            key: server_key,
        },
    ))
}

/// The TLS 1.3 handshake in the guest by the server's key: root and server
/// certificate both P-256, or both RSA of one size (rustls then signs the
/// handshake rsa_pss_rsae_sha512, the strongest scheme we offer). The cost
/// is the chain check (one signature), CertificateVerify (one more) and
/// the P-256 ECDHE every handshake does.
fn handshake_by_key(runs: usize) -> Result<(), String> {
    use harness::UserNet;
    use harness::pki::{leaf, root};
    use harness::servers::{Behaviour, GUEST_HOST_ADDR, Server, tls_config};
    const NAME: &str = "bench.test";
    let mut chains = vec![("P-256".to_owned(), {
        let ca = root("Bench Root");
        let server = leaf(&[NAME], &ca);
        (ca, server)
    })];
    for bits in [2048, 3072, 4096] {
        chains.push((format!("RSA {bits}"), rsa_chain(bits, NAME)?));
    }
    let servers = chains
        .iter()
        .map(|(_, (ca, server))| {
            Server::start(Behaviour::Tls(tls_config(&[server])))
                .map(|s| (ca.der_base64(), s))
                .map_err(|e| format!("TLS server: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    println!(
        "TLS 1.3 handshake in the guest by server key (root and server certificate alike), {runs} runs each, median (min-max), ms"
    );
    println!();
    let keys: Vec<&str> = chains.iter().map(|(k, _)| k.as_str()).collect();
    println!("| machine | accel | {} |", keys.join(" | "));
    println!("|---|---|{}", "---|".repeat(keys.len()));
    for machine in [Machine::Microvm, Machine::Q35, Machine::Virt] {
        let image = build_service("nettest", machine.arch(), Profile::Release)
            .map_err(|e| e.to_string())?;
        let accel = Accel::for_arch(machine.arch());
        let mut cells = Vec::new();
        for (root_b64, server) in &servers {
            let mut handshake = Vec::new();
            for _ in 0..runs {
                let guest = Guest::new(machine, image.clone())
                    .accel(accel)
                    .device(Device::VirtioRng)
                    .device(Device::UserNet(UserNet {
                        open: true,
                        ..UserNet::default()
                    }))
                    .cmdline(format!(
                        "hosts={NAME}={GUEST_HOST_ADDR} root={root_b64} \
                         fetch=https://{NAME}:{}/pattern/1024 fetch-bytes=1024",
                        server.port()
                    ));
                let outcome = guest.run().map_err(|e| e.to_string())?;
                if !outcome.succeeded() {
                    return Err(format!("nettest failed during the benchmark:\n{outcome}"));
                }
                handshake.push(
                    outcome
                        .metric("fetch_handshake_us")
                        .map(Duration::from_micros)
                        .ok_or(format!("no fetch_handshake_us metric:\n{outcome}"))?,
                );
            }
            cells.push(cell(summarize(handshake)));
        }
        println!("| {machine} | {accel} | {} |", cells.join(" | "));
    }
    Ok(())
}
