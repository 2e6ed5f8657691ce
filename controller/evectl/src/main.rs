//! `evectl`: manage a controller through its admin API (onboarding,
//! devices, configs, info, metrics, logs), decode EVE API messages to JSON,
//! encode JSON back to protobuf, and verify/unwrap signed AuthContainer
//! envelopes.
#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use controller::pbuf;
use evectl::acl::{AclRule, RuleKind};
use evectl::admin::{Admin, CtlError, LogFilter};
use evectl::apps::{AppKind, AppSpec, parse_port};
use evectl::appview::AppChange;
use evectl::bench;
use evectl::content::DatastoreSpec;
use evectl::devops::{DeviceOp, UpdateSpec};
use evectl::networks::{LocalSpec, NetworkKind, NetworkSpec};

#[derive(Parser)]
#[command(
    version,
    about = "Manage an EVE controller and inspect EVE API messages"
)]
struct Cli {
    /// Admin API of the controller.
    #[arg(
        long,
        global = true,
        env = "EVECTL_SERVER",
        default_value = "https://127.0.0.1:8444"
    )]
    server: String,
    /// The controller's root certificate, which the admin API's HTTPS
    /// certificate must chain to (default: `root-certificate.pem` beside
    /// the token file).
    #[arg(long, global = true, env = "EVECTL_CA")]
    ca: Option<PathBuf>,
    /// File holding the admin token (the controller writes
    /// `<data dir>/admin-token` on first start).
    #[arg(long, global = true, env = "EVECTL_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// Print the admin API's JSON instead of human-readable output.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum OnboardCmd {
    /// Allow an onboarding certificate (PEM) to register devices.
    Add {
        /// Onboarding certificate, PEM.
        cert: PathBuf,
        /// Allowed serial (repeat for several); none means any serial.
        #[arg(long = "serial")]
        serials: Vec<String>,
    },
    /// List the allow-list.
    List,
    /// Remove an entry by id.
    Remove {
        /// Entry id from `onboard list`.
        id: i64,
    },
}

#[derive(Subcommand)]
enum ConfigItemCmd {
    /// Set one item (EVE's key, e.g. `timer.update.fallback.no.network`),
    /// keeping the rest of the config.
    Set {
        /// Device UUID or serial.
        device: String,
        /// The item's key.
        name: String,
        /// Its value, as EVE reads it (the node checks the range).
        value: String,
    },
}

#[derive(Subcommand)]
enum DeviceCmd {
    /// List onboarded devices.
    List,
    /// Show one device, with both base OS partitions and the last reboot.
    Show {
        /// Device UUID or serial.
        uuid: String,
    },
    /// Update the base OS: a content tree for the image and
    /// `EdgeDevConfig.baseos` naming it.
    Update {
        /// Device UUID or serial.
        device: String,
        /// http(s)://HOST/PATH/FILE of the base OS image.
        #[arg(long)]
        image: String,
        /// The version string inside the image.
        #[arg(long)]
        version: String,
        /// The image's sha256 (64 hex digits), which the node verifies.
        #[arg(long)]
        sha256: String,
        /// Boot the new version once written (else only download it).
        #[arg(long)]
        activate: bool,
        /// Retry a version that failed (bumps `retry_update`).
        #[arg(long)]
        retry: bool,
    },
    /// The device's config items (`EdgeDevConfig.configItems`).
    #[command(subcommand)]
    ConfigItem(ConfigItemCmd),
    /// Reboot the device (bumps the reboot counter).
    Reboot {
        /// Device UUID or serial.
        device: String,
    },
    /// Shut the device down (bumps the shutdown counter).
    Shutdown {
        /// Device UUID or serial.
        device: String,
    },
    /// Delete a device and all its data.
    Delete {
        /// Device UUID.
        uuid: String,
    },
    /// Set the PCR values the device's TPM quotes must show, or clear them
    /// so that its next quote's values are taken.
    PcrPolicy {
        /// Device UUID.
        uuid: String,
        /// A PCR and its SHA-256 value, `INDEX=HEX` (repeatable).
        #[arg(long = "pcr", value_name = "N=HEX", required_unless_present = "clear")]
        pcrs: Vec<String>,
        /// Clear the policy.
        #[arg(long, conflicts_with = "pcrs")]
        clear: bool,
    },
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Set a device's config from a YAML or JSON EdgeDevConfig description.
    Set {
        /// Device UUID.
        uuid: String,
        /// The description file.
        file: PathBuf,
    },
    /// Show a device's current config.
    Get {
        /// Device UUID.
        uuid: String,
    },
}

#[derive(Subcommand)]
enum DatastoreCmd {
    /// Add a datastore to a device's config (or replace the one of that
    /// name); content trees name it in `dsId`.
    Add {
        /// Device UUID.
        uuid: String,
        /// Datastore name (a UUID is derived from it) or UUID.
        name: String,
        /// http, https or registry.
        #[arg(long = "type")]
        kind: String,
        /// Server: host, host:port, or docker://host:port for a registry
        /// (http://host:port for a plain-HTTP one; `app deploy` sends
        /// docker://host:port/... images from that server through it).
        #[arg(long)]
        fqdn: String,
        /// Path prefix on the server.
        #[arg(long, default_value = "")]
        dpath: String,
        /// User name (sent sealed to the device).
        #[arg(long)]
        user: Option<String>,
        /// File holding the password (sent sealed to the device).
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// List a device's datastores and the content trees using each.
    List {
        /// Device UUID.
        uuid: String,
    },
    /// Remove a datastore no content tree uses.
    Remove {
        /// Device UUID.
        uuid: String,
        /// Datastore name or UUID.
        name: String,
    },
}

/// Names an app of a device.
#[derive(Args)]
struct AppRef {
    /// The app's name or UUID.
    name: String,
    /// Device UUID (default: the only onboarded device).
    #[arg(long, env = "EVECTL_DEVICE")]
    device: Option<String>,
}

// Parsed once per run: boxing the large deploy variant would save nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum AppCmd {
    /// Deploy an app (or replace the app of that name): its datastore,
    /// content tree, volume and app instance go into the device's config,
    /// activated.
    Deploy {
        #[command(flatten)]
        app: AppRef,
        /// http(s)://HOST/PATH/FILE (a disk image or a unikernel) or
        /// docker://REF (an OCI image).
        #[arg(long)]
        image: String,
        /// vm, container or unikernel (default: container for docker://,
        /// else vm).
        #[arg(long)]
        kind: Option<String>,
        /// Guest RAM, MiB.
        #[arg(long, default_value_t = 512)]
        memory: u32,
        /// Virtual CPUs.
        #[arg(long, default_value_t = 1)]
        vcpus: u32,
        /// Forward a host TCP port to an app port, HOST:APP (repeatable).
        #[arg(long = "port", value_name = "HOST:APP")]
        ports: Vec<String>,
        /// Cloud-init user data file.
        #[arg(long)]
        user_data: Option<PathBuf>,
        /// The sha256 of an http(s) image (64 hex digits), which the node
        /// verifies the download against (`sha256sum FILE`).
        #[arg(long)]
        sha256: Option<String>,
        /// The network instance (name or UUID) the app joins (default:
        /// the config's first, if any).
        #[arg(long)]
        network: Option<String>,
        /// Allow matching traffic: PROTO[:host=NAME|ip=CIDR][:PORT]...
        /// (e.g. tcp:host=example.org:443, all). Rules keep their order
        /// across --allow, --drop and --limit; first match wins; without
        /// rules everything is allowed.
        #[arg(long, value_name = "RULE")]
        allow: Vec<String>,
        /// Drop matching traffic (same syntax as --allow).
        #[arg(long, value_name = "RULE")]
        drop: Vec<String>,
        /// Rate-limit matching traffic: a rule ending in :RATE/UNIT[/BURST]
        /// (UNIT s, m, h or d), e.g. tcp:ip=10.0.0.0/8:100/s.
        #[arg(long, value_name = "RULE")]
        limit: Vec<String>,
    },
    /// List a device's apps: wanted state, reported state, first error.
    List {
        /// Device UUID (default: the only onboarded device).
        #[arg(long, env = "EVECTL_DEVICE")]
        device: Option<String>,
    },
    /// Show one app: config, reported state, errors, metrics.
    Show(AppRef),
    /// Stop an app (activate: false).
    Stop(AppRef),
    /// Start a stopped app (activate: true).
    Start(AppRef),
    /// Restart an app once (bumps its restart counter).
    Restart(AppRef),
    /// Rebuild an app's volumes from their content and restart it (bumps
    /// its purge counter and its volumes' generations).
    Purge(AppRef),
    /// Delete an app, with the volumes and content trees only it used.
    Delete(AppRef),
    /// The app's console lines.
    Logs {
        #[command(flatten)]
        app: AppRef,
        /// Keep printing new lines as they arrive (Ctrl-C stops).
        #[arg(long)]
        follow: bool,
    },
}

/// The device a network or flow-log command is about.
#[derive(Args)]
struct DeviceArg {
    /// Device UUID (default: the only onboarded device).
    #[arg(long, env = "EVECTL_DEVICE")]
    device: Option<String>,
}

#[derive(Subcommand)]
enum NetworkCmd {
    /// Add a network instance (or replace the one of that name).
    Add {
        /// Its name (its UUID is derived from it).
        name: String,
        #[command(flatten)]
        device: DeviceArg,
        /// A local instance: a subnet of its own, DHCP, DNS, NAT.
        #[arg(long, conflicts_with = "switch", required_unless_present = "switch")]
        local: bool,
        /// A switch instance: an L2 segment between apps and a port.
        #[arg(long)]
        switch: bool,
        /// The local instance's subnet, A.B.C.D/N.
        #[arg(long, required_if_eq("local", "true"), conflicts_with = "switch")]
        subnet: Option<String>,
        /// The gateway (default: the subnet's first host).
        #[arg(long, requires = "subnet")]
        gateway: Option<String>,
        /// Addresses DHCP hands out, FIRST-LAST.
        #[arg(long, requires = "subnet")]
        dhcp_range: Option<String>,
        /// A DNS server handed out (repeatable; default: the gateway).
        #[arg(long, requires = "subnet")]
        dns: Vec<String>,
        /// The device port (logical label; a local instance's default is
        /// uplink, every management port).
        #[arg(long)]
        port: Option<String>,
        /// No flow logs for this instance.
        #[arg(long)]
        no_flowlog: bool,
    },
    /// List network instances: kind, subnet or port, apps, state.
    List(DeviceArg),
    /// Show one instance: config, state, leases, interfaces, errors, counters.
    Show {
        /// Its name or UUID.
        name: String,
        #[command(flatten)]
        device: DeviceArg,
    },
    /// Remove an instance no app uses.
    Remove {
        /// Its name or UUID.
        name: String,
        #[command(flatten)]
        device: DeviceArg,
    },
}

#[derive(Subcommand)]
enum FlowlogCmd {
    /// Print the flows and DNS requests the device reported.
    Show {
        /// Only this app's (name or UUID).
        #[arg(long)]
        app: Option<String>,
        #[command(flatten)]
        device: DeviceArg,
    },
}

#[derive(Args)]
struct LogArgs {
    /// Device UUID.
    uuid: String,
    /// Only this app instance's logs.
    #[arg(long)]
    app: Option<String>,
    /// From this time (Unix milliseconds).
    #[arg(long)]
    since: Option<i64>,
    /// Before this time (Unix milliseconds).
    #[arg(long)]
    until: Option<i64>,
    /// Only this severity.
    #[arg(long)]
    severity: Option<String>,
    /// Only lines containing this text.
    #[arg(long)]
    contains: Option<String>,
    /// Most lines per request.
    #[arg(long, default_value_t = 1000)]
    limit: u32,
}

#[derive(Subcommand)]
enum LogsCmd {
    /// Print matching log lines.
    Show(LogArgs),
    /// Print matching lines, then new ones as they arrive (Ctrl-C stops).
    Follow(LogArgs),
}

#[derive(Subcommand)]
enum Command {
    /// Onboarding allow-list.
    #[command(subcommand)]
    Onboard(OnboardCmd),
    /// Onboarded devices: list, show (with base OS partitions), delete,
    /// PCR policy, base OS update, reboot, shutdown.
    #[command(subcommand)]
    Device(DeviceCmd),
    /// Device configs.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Datastores in a device's config.
    #[command(subcommand)]
    Datastore(DatastoreCmd),
    /// Apps of a device: deploy, list, show, stop, start, restart, purge,
    /// delete, logs.
    #[command(subcommand)]
    App(AppCmd),
    /// Network instances of a device: add, list, show, remove.
    #[command(subcommand)]
    Network(NetworkCmd),
    /// Flow logs of a device's apps.
    #[command(subcommand)]
    Flowlog(FlowlogCmd),
    /// Latest info messages of a device.
    Info {
        #[command(subcommand)]
        cmd: InfoCmd,
    },
    /// Metrics of a device.
    Metrics {
        #[command(subcommand)]
        cmd: MetricsCmd,
    },
    /// Logs of a device.
    #[command(subcommand)]
    Logs(LogsCmd),
    /// Binary protobuf -> JSON.
    Decode {
        /// Message type, full (org.lfedge.eve.config.EdgeDevConfig) or short (EdgeDevConfig).
        #[arg(long = "type", short = 't')]
        type_name: String,
        /// Input file, or `-` for stdin.
        #[arg(default_value = "-")]
        input: PathBuf,
    },
    /// JSON -> binary protobuf (written to stdout unless --output).
    Encode {
        /// Message type, full or short name.
        #[arg(long = "type", short = 't')]
        type_name: String,
        /// Input file, or `-` for stdin.
        #[arg(default_value = "-")]
        input: PathBuf,
        /// Output file instead of stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Verify an AuthContainer and unwrap its payload.
    Verify {
        /// Signer certificate (PEM). Without it, the envelope's embedded senderCert is used.
        #[arg(long)]
        cert: Option<PathBuf>,
        /// Print the payload as JSON of this type instead of raw bytes.
        #[arg(long = "type", short = 't')]
        type_name: Option<String>,
        /// Input file, or `-` for stdin.
        #[arg(default_value = "-")]
        input: PathBuf,
    },
    /// List the message types evectl knows.
    Types,
    /// Time EdgeDevConfig encode/decode and AuthContainer sign/verify.
    Bench {
        /// Iterations per operation.
        #[arg(long, default_value_t = 2000)]
        iterations: u32,
    },
}

#[derive(Subcommand)]
enum InfoCmd {
    /// Print the latest info per object.
    Show {
        /// Device UUID.
        uuid: String,
    },
}

#[derive(Subcommand)]
enum MetricsCmd {
    /// Print the newest metrics messages.
    Show {
        /// Device UUID.
        uuid: String,
        /// How many.
        #[arg(long, default_value_t = 1)]
        limit: u32,
    },
}

#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error(transparent)]
    Ctl(#[from] CtlError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Decode(#[from] pbuf::DecodeError),
    #[error(transparent)]
    Encode(#[from] pbuf::EncodeError),
    #[error(transparent)]
    Verify(#[from] pbuf::VerifyError),
    #[error("{0}: input is not UTF-8 JSON")]
    NotUtf8(String),
}

fn read_input(path: &PathBuf) -> Result<Vec<u8>, CliError> {
    let name = path.display().to_string();
    let io = |source| CliError::Io {
        path: name.clone(),
        source,
    };
    if name == "-" {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf).map_err(io)?;
        Ok(buf)
    } else {
        std::fs::read(path).map_err(io)
    }
}

fn write_stdout(bytes: &[u8]) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(|source| CliError::Io {
            path: "stdout".into(),
            source,
        })
}

impl LogArgs {
    fn filter(&self) -> LogFilter {
        LogFilter {
            app: self.app.clone(),
            since: self.since,
            until: self.until,
            severity: self.severity.clone(),
            contains: self.contains.clone(),
            limit: self.limit,
        }
    }
}

fn token_file(cli: &Cli) -> PathBuf {
    cli.token_file.clone().unwrap_or_else(|| {
        std::env::var_os("EVE_CONTROLLER_DATA")
            .map_or_else(|| PathBuf::from("controller-data"), PathBuf::from)
            .join("admin-token")
    })
}

/// The ACL rules of `app deploy` in command-line order, which is EVE's
/// evaluation order: clap keeps each flag's values apart, their indices
/// put them back in order.
fn ordered_rules(matches: &ArgMatches) -> Result<Vec<AclRule>, CtlError> {
    let Some(deploy) = matches
        .subcommand_matches("app")
        .and_then(|m| m.subcommand_matches("deploy"))
    else {
        return Ok(Vec::new());
    };
    let mut rules = Vec::new();
    for (id, kind) in [
        ("allow", RuleKind::Allow),
        ("drop", RuleKind::Drop),
        ("limit", RuleKind::Limit),
    ] {
        if let (Some(values), Some(indices)) =
            (deploy.get_many::<String>(id), deploy.indices_of(id))
        {
            for (value, index) in values.zip(indices) {
                rules.push((index, kind, value.clone()));
            }
        }
    }
    rules.sort_by_key(|(index, _, _)| *index);
    rules
        .into_iter()
        .map(|(_, kind, text)| AclRule::parse(kind, &text).map_err(usage))
        .collect()
}

/// Runs a controller command on a small single-threaded runtime.
fn admin_command(cli: &Cli, rules: Vec<AclRule>) -> Result<(), CliError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime starts");
    let token = token_file(cli);
    let mut admin = match &cli.ca {
        Some(ca) => Admin::connect(&cli.server, &token, ca, cli.json)?,
        None => Admin::new(&cli.server, &token, cli.json)?,
    };
    let out = rt.block_on(async {
        match &cli.command {
            Command::Onboard(OnboardCmd::Add { cert, serials }) => {
                admin.onboard_add(cert, serials).await
            }
            Command::Onboard(OnboardCmd::List) => admin.onboard_list().await,
            Command::Onboard(OnboardCmd::Remove { id }) => admin.onboard_remove(*id).await,
            Command::Device(DeviceCmd::List) => admin.device_list().await,
            Command::Device(DeviceCmd::Show { uuid }) => {
                let uuid = admin.resolve_device(uuid).await?;
                admin.device_show(&uuid).await
            }
            Command::Device(DeviceCmd::Update {
                device,
                image,
                version,
                sha256,
                activate,
                retry,
            }) => {
                let uuid = admin.resolve_device(device).await?;
                let spec = UpdateSpec {
                    image: image.clone(),
                    version: version.clone(),
                    sha256: sha256.clone(),
                    activate: *activate,
                    retry: *retry,
                };
                admin.device_update(&uuid, &spec).await
            }
            Command::Device(DeviceCmd::ConfigItem(ConfigItemCmd::Set {
                device,
                name,
                value,
            })) => {
                let uuid = admin.resolve_device(device).await?;
                admin.device_config_item_set(&uuid, name, value).await
            }
            Command::Device(DeviceCmd::Reboot { device }) => {
                let uuid = admin.resolve_device(device).await?;
                admin.device_op(&uuid, DeviceOp::Reboot).await
            }
            Command::Device(DeviceCmd::Shutdown { device }) => {
                let uuid = admin.resolve_device(device).await?;
                admin.device_op(&uuid, DeviceOp::Shutdown).await
            }
            Command::Device(DeviceCmd::PcrPolicy { uuid, pcrs, clear }) => {
                admin.device_pcr_policy(uuid, pcrs, *clear).await
            }
            Command::Device(DeviceCmd::Delete { uuid }) => admin.device_delete(uuid).await,
            Command::Config(ConfigCmd::Set { uuid, file }) => admin.config_set(uuid, file).await,
            Command::Config(ConfigCmd::Get { uuid }) => admin.config_get(uuid).await,
            Command::Datastore(DatastoreCmd::Add {
                uuid,
                name,
                kind,
                fqdn,
                dpath,
                user,
                password_file,
            }) => {
                let password = match password_file {
                    Some(path) => Some(
                        std::fs::read_to_string(path)
                            .map_err(|source| CtlError::Io {
                                path: path.clone(),
                                source,
                            })?
                            .trim_end_matches(['\r', '\n'])
                            .to_owned(),
                    ),
                    None => None,
                };
                let spec = DatastoreSpec {
                    name: name.clone(),
                    kind: kind.clone(),
                    fqdn: fqdn.clone(),
                    dpath: dpath.clone(),
                    user: user.clone(),
                    password,
                };
                admin.datastore_add(uuid, &spec).await
            }
            Command::Datastore(DatastoreCmd::List { uuid }) => admin.datastore_list(uuid).await,
            Command::Datastore(DatastoreCmd::Remove { uuid, name }) => {
                admin.datastore_remove(uuid, name).await
            }
            Command::Info {
                cmd: InfoCmd::Show { uuid },
            } => admin.info_show(uuid).await,
            Command::Metrics {
                cmd: MetricsCmd::Show { uuid, limit },
            } => admin.metrics_show(uuid, *limit).await,
            Command::Logs(LogsCmd::Show(a)) => admin.logs_show(&a.uuid, &a.filter()).await,
            Command::Logs(LogsCmd::Follow(a)) => {
                let sink = |text: &str| write_stdout(text.as_bytes()).is_ok();
                admin
                    .logs_follow(
                        &a.uuid,
                        &a.filter(),
                        std::time::Duration::from_secs(1),
                        sink,
                    )
                    .await
                    .map(|()| String::new())
            }
            Command::App(cmd) => app_command(&mut admin, cmd, rules).await,
            Command::Network(cmd) => network_command(&mut admin, cmd).await,
            Command::Flowlog(FlowlogCmd::Show { app, device }) => {
                let device = admin.pick_device(device.device.as_deref()).await?;
                admin.flowlog_show(&device, app.as_deref()).await
            }
            _ => unreachable!("only controller commands reach admin_command"),
        }
    })?;
    write_stdout(out.as_bytes())
}

fn usage(e: impl std::fmt::Display) -> CtlError {
    CtlError::Usage(e.to_string())
}

/// `evectl network ...`
async fn network_command(admin: &mut Admin, cmd: &NetworkCmd) -> Result<String, CtlError> {
    match cmd {
        NetworkCmd::Add {
            name,
            device,
            local,
            switch: _,
            subnet,
            gateway,
            dhcp_range,
            dns,
            port,
            no_flowlog,
        } => {
            let kind = match (local, subnet) {
                (true, Some(subnet)) => NetworkKind::Local(LocalSpec {
                    subnet: subnet.clone(),
                    gateway: gateway.clone(),
                    dhcp_range: dhcp_range.clone(),
                    dns: dns.clone(),
                }),
                (true, None) => return Err(usage("a local instance needs --subnet")),
                (false, _) => NetworkKind::Switch,
            };
            let spec = NetworkSpec {
                name: name.clone(),
                kind,
                port: port.clone(),
                flowlog: !no_flowlog,
            };
            let device = admin.pick_device(device.device.as_deref()).await?;
            admin.network_add(&device, &spec).await
        }
        NetworkCmd::List(device) => {
            let device = admin.pick_device(device.device.as_deref()).await?;
            admin.network_list(&device).await
        }
        NetworkCmd::Show { name, device } => {
            let device = admin.pick_device(device.device.as_deref()).await?;
            admin.network_show(&device, name).await
        }
        NetworkCmd::Remove { name, device } => {
            let device = admin.pick_device(device.device.as_deref()).await?;
            admin.network_remove(&device, name).await
        }
    }
}

/// `evectl app ...`; `rules` are deploy's ACL rules in order.
async fn app_command(
    admin: &mut Admin,
    cmd: &AppCmd,
    rules: Vec<AclRule>,
) -> Result<String, CtlError> {
    let (app, change) = match cmd {
        AppCmd::Deploy {
            app,
            image,
            kind,
            memory,
            vcpus,
            ports,
            user_data,
            sha256,
            network,
            ..
        } => {
            let spec = AppSpec {
                name: app.name.clone(),
                image: image.clone(),
                kind: kind
                    .as_deref()
                    .map(AppKind::parse)
                    .transpose()
                    .map_err(usage)?,
                memory_mib: *memory,
                vcpus: *vcpus,
                ports: ports
                    .iter()
                    .map(|p| parse_port(p))
                    .collect::<Result<_, _>>()
                    .map_err(usage)?,
                user_data: match user_data {
                    Some(path) => Some(std::fs::read(path).map_err(|source| CtlError::Io {
                        path: path.clone(),
                        source,
                    })?),
                    None => None,
                },
                network: network.clone(),
                sha256: sha256.clone(),
                acls: rules,
            };
            let device = admin.pick_device(app.device.as_deref()).await?;
            return admin.app_deploy(&device, &spec).await;
        }
        AppCmd::List { device } => {
            let device = admin.pick_device(device.as_deref()).await?;
            return admin.app_list(&device).await;
        }
        AppCmd::Show(app) => {
            let device = admin.pick_device(app.device.as_deref()).await?;
            return admin.app_show(&device, &app.name).await;
        }
        AppCmd::Logs { app, follow } => {
            let device = admin.pick_device(app.device.as_deref()).await?;
            let sink = |text: &str| write_stdout(text.as_bytes()).is_ok();
            return admin.app_logs(&device, &app.name, *follow, sink).await;
        }
        AppCmd::Stop(app) => (app, AppChange::Stop),
        AppCmd::Start(app) => (app, AppChange::Start),
        AppCmd::Restart(app) => (app, AppChange::Restart),
        AppCmd::Purge(app) => (app, AppChange::Purge),
        AppCmd::Delete(app) => (app, AppChange::Delete),
    };
    let device = admin.pick_device(app.device.as_deref()).await?;
    admin.app_change(&device, &app.name, change).await
}

fn run(matches: &ArgMatches) -> Result<(), CliError> {
    let cli = Cli::from_arg_matches(matches).unwrap_or_else(|e| e.exit());
    match cli.command {
        Command::Onboard(_)
        | Command::Device(_)
        | Command::Config(_)
        | Command::Datastore(_)
        | Command::App(_)
        | Command::Network(_)
        | Command::Flowlog(_)
        | Command::Info { .. }
        | Command::Metrics { .. }
        | Command::Logs(_) => admin_command(&cli, ordered_rules(matches)?),
        Command::Decode { type_name, input } => {
            let json = pbuf::decode_to_json(&type_name, &read_input(&input)?)?;
            write_stdout(json.as_bytes())
        }
        Command::Encode {
            type_name,
            input,
            output,
        } => {
            let raw = read_input(&input)?;
            let text = String::from_utf8(raw)
                .map_err(|_| CliError::NotUtf8(input.display().to_string()))?;
            let bytes = pbuf::encode_from_json(&type_name, &text)?;
            match output {
                Some(path) => std::fs::write(&path, bytes).map_err(|source| CliError::Io {
                    path: path.display().to_string(),
                    source,
                }),
                None => write_stdout(&bytes),
            }
        }
        Command::Verify {
            cert,
            type_name,
            input,
        } => {
            let cert = cert.as_ref().map(read_input).transpose()?;
            let out =
                pbuf::verify_envelope(&read_input(&input)?, cert.as_deref(), type_name.as_deref())?;
            eprintln!("signature OK ({} payload bytes)", out.payload.len());
            match out.json {
                Some(json) => write_stdout(json.as_bytes()),
                None => write_stdout(&out.payload),
            }
        }
        Command::Types => {
            write_stdout(format!("{}\n", pbuf::message_types().join("\n")).as_bytes())
        }
        Command::Bench { iterations } => {
            let mut report = String::new();
            for (name, per_op) in bench::run_proto_bench(iterations) {
                report.push_str(&format!("{name:<45} {:>10} ns/op\n", per_op.as_nanos()));
            }
            write_stdout(report.as_bytes())
        }
    }
}

fn main() -> ExitCode {
    match run(&Cli::command().get_matches()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("evectl: {e}");
            ExitCode::FAILURE
        }
    }
}
