//! The manager: the tables zedmanager follows, its memory of each app
//! (accepted counters, a purge under way, the disks the domain was given,
//! when an error was first seen), and what it publishes.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use eve_proto::config::{AppInstanceConfig, ContentTree, NetworkInstanceConfig, Volume};
use eve_proto::info::{ZInfoApp, ZSwState};
use topics::apps::{Domain, DomainDisk, DomainNic, DomainState};
use topics::content::VolumeState;
use topics::{AppNetwork, AppNetworkState};

use crate::netchange::{purge_needed, purge_reason};
use crate::network::{Nic, app_network};
use crate::plan::{Catalog, Plan, plan};
use crate::report::{Seen, app_info};
use crate::uuid;

/// Where a purge is: the new volume generations are prepared while the
/// domain runs on the old ones, then the domain is halted, given the new
/// disks and started (make-before-break).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Purge {
    /// volumemgr builds the new generations; the domain runs on.
    Preparing,
    /// Every new generation is ready: the domain halts.
    Halting,
    /// The domain has the new disks and the new purge counter.
    Starting,
}

/// zedmanager's memory of one app.
#[derive(Clone, Debug, Default)]
struct Run {
    /// The restart counter the domain was given.
    restart: u32,
    /// The purge counter the domain was given.
    purge: u32,
    /// A restart was asked for and the domain has not run since.
    restarting: bool,
    purging: Option<Purge>,
    /// The disks the domain was last given.
    disks: Vec<DomainDisk>,
    /// The interfaces the domain was last given (and zedrouter told of).
    nics: Option<Vec<Nic>>,
}

/// What a volume reference amounts to now.
struct Volumes {
    /// Every volume's ready host volume, in drive order, when all have one.
    disks: Option<Vec<DomainDisk>>,
    /// Every volume's configured generation is the one ready.
    newest_ready: bool,
    /// The first volume error, with when volumemgr saw it.
    error: Option<(String, u64)>,
    /// The least advanced state of a volume that is not ready.
    progress: ZSwState,
}

/// zedmanager's state.
#[derive(Default)]
pub struct Manager {
    configs: BTreeMap<String, AppInstanceConfig>,
    volume_config: BTreeMap<String, Volume>,
    tree_config: BTreeMap<String, ContentTree>,
    volume_states: BTreeMap<String, VolumeState>,
    domain_states: BTreeMap<String, DomainState>,
    /// The config's network instances, by key (adapters name them).
    instances: BTreeSet<String>,
    /// What zedrouter reports of each app's interfaces.
    network_states: BTreeMap<String, AppNetworkState>,
    apps_synced: bool,
    volumes_synced: bool,
    trees_synced: bool,
    instances_synced: bool,
    runs: BTreeMap<String, Run>,
    /// Each reported error's text and when it was first seen, by app key.
    errors: BTreeMap<String, (String, u64)>,
    domains: BTreeMap<String, Domain>,
    statuses: BTreeMap<String, ZInfoApp>,
    app_networks: BTreeMap<String, AppNetwork>,
    /// nodeagent acted on the controller's `shutdown`: every app is held
    /// as with `activate=false` until the node reboots.
    apps_shut_down: bool,
}

fn put<V>(table: &mut BTreeMap<String, V>, key: &str, value: Option<V>) {
    match value {
        Some(v) => {
            table.insert(String::from(key), v);
        }
        None => {
            table.remove(key);
        }
    }
}

impl Manager {
    pub fn new() -> Manager {
        Manager::default()
    }

    /// An app of the config changed (`None`: deleted).
    pub fn set_app(&mut self, key: &str, config: Option<AppInstanceConfig>) {
        put(&mut self.configs, key, config);
    }

    /// A volume of the config changed (its origin says what it holds).
    pub fn set_volume_config(&mut self, key: &str, volume: Option<Volume>) {
        put(&mut self.volume_config, key, volume);
    }

    /// A content tree of the config changed (its format says what a
    /// volume built from it holds).
    pub fn set_tree_config(&mut self, key: &str, tree: Option<ContentTree>) {
        put(&mut self.tree_config, key, tree);
    }

    /// volumemgr's view of a volume changed.
    pub fn set_volume_state(&mut self, key: &str, state: Option<VolumeState>) {
        put(&mut self.volume_states, key, state);
    }

    /// domainmgr's view of a domain changed.
    pub fn set_domain_state(&mut self, key: &str, state: Option<DomainState>) {
        put(&mut self.domain_states, key, state);
    }

    /// A network instance of the config changed (only its presence
    /// matters here: zedrouter runs it).
    pub fn set_network_instance(&mut self, key: &str, config: Option<NetworkInstanceConfig>) {
        if config.is_some() {
            self.instances.insert(String::from(key));
        } else {
            self.instances.remove(key);
        }
    }

    /// zedrouter's view of an app's interfaces changed.
    pub fn set_app_network_state(&mut self, key: &str, state: Option<AppNetworkState>) {
        put(&mut self.network_states, key, state);
    }

    /// Whether the controller's `shutdown` holds (nodeagent's
    /// `node-status`): while it does every app halts and none starts.
    pub fn set_apps_shut_down(&mut self, shut_down: bool) {
        self.apps_shut_down = shut_down;
    }

    /// The network instance table is complete.
    pub fn instances_synchronized(&mut self) {
        self.instances_synced = true;
    }

    /// The app table is complete: what it lacks is deleted.
    pub fn apps_synchronized(&mut self) {
        self.apps_synced = true;
    }

    /// The volume table is complete.
    pub fn volumes_synchronized(&mut self) {
        self.volumes_synced = true;
    }

    /// The content tree table is complete.
    pub fn trees_synchronized(&mut self) {
        self.trees_synced = true;
    }

    /// Whether the config is known (its four tables complete). Before,
    /// a missing item may only not have arrived yet: nothing is decided
    /// and nothing published, so a restarted zedmanager never withdraws a
    /// running app's domain, nor calls an instance not yet heard of
    /// unknown.
    pub fn ready(&self) -> bool {
        self.apps_synced && self.volumes_synced && self.trees_synced && self.instances_synced
    }

    /// The interfaces of each app on network instances, for zedrouter
    /// (`app-network-config`), by app UUID.
    pub fn app_networks(&self) -> &BTreeMap<String, AppNetwork> {
        &self.app_networks
    }

    /// The domains wanted, by app UUID.
    pub fn domains(&self) -> &BTreeMap<String, Domain> {
        &self.domains
    }

    /// Each app's report, by app UUID (by the config's key when that is
    /// not a UUID).
    pub fn statuses(&self) -> &BTreeMap<String, ZInfoApp> {
        &self.statuses
    }

    /// Decides each app's domain and state from what is known at `now`
    /// (Unix seconds).
    pub fn reconcile(&mut self, now: u64) {
        let mut domains = BTreeMap::new();
        let mut statuses = BTreeMap::new();
        let mut app_networks = BTreeMap::new();
        let mut errors = BTreeMap::new();
        let mut owners: BTreeMap<String, String> = BTreeMap::new();
        let mut ports: BTreeMap<u32, String> = BTreeMap::new();
        let mut planned = BTreeSet::new();
        // Apps keyed by their canonical UUID come first, so an app spelling
        // the same UUID otherwise is the one refused.
        let mut keys: Vec<String> = self.configs.keys().cloned().collect();
        keys.sort_by_key(|k| uuid::canonical(k).as_deref() != Some(k.as_str()));
        for key in keys {
            let config = &self.configs[&key];
            let catalog = Catalog {
                volumes: &self.volume_config,
                trees: &self.tree_config,
                instances: &self.instances,
            };
            let checked = plan(&key, config, &catalog)
                .and_then(|p| claim(&key, p, &mut owners, &mut ports))
                .map(|mut p| {
                    // EVE's shutdown halts each app as its own
                    // `activate=false` would.
                    p.activate &= !self.apps_shut_down;
                    p
                });
            let mut networks = Vec::new();
            let (report_key, seen, name, version, volumes) = match checked {
                Ok(plan) => {
                    planned.insert(plan.uuid.clone());
                    let (domain, seen, nics) = self.step(&plan);
                    if let Some(domain) = domain {
                        domains.insert(plan.uuid.clone(), domain);
                    }
                    if !nics.is_empty() {
                        app_networks.insert(
                            plan.uuid.clone(),
                            app_network(
                                &plan.uuid,
                                &plan.name,
                                plan.activate,
                                &nics,
                                &plan.user_data,
                                plan.meta_data_type,
                            ),
                        );
                        if let Some(state) = self.network_states.get(&plan.uuid) {
                            networks.clone_from(&state.networks);
                        }
                    }
                    (plan.uuid, seen, plan.name, plan.version, plan.volumes)
                }
                Err(text) => {
                    let id = config.uuidandversion.clone().unwrap_or_default();
                    let volumes = config
                        .volume_ref_list
                        .iter()
                        .map(|r| r.uuid.clone())
                        .collect();
                    (
                        key.clone(),
                        Seen::error(text, now),
                        config.displayname.clone(),
                        id.version,
                        volumes,
                    )
                }
            };
            let seen = self.stamp(&key, seen, now, &mut errors);
            let mut info = app_info(&report_key, &name, &version, &volumes, &seen);
            info.network = networks;
            statuses.insert(report_key, info);
        }
        // An app whose config is refused starts afresh once it is fixed.
        self.runs.retain(|uuid, _| planned.contains(uuid));
        self.domains = domains;
        self.statuses = statuses;
        self.app_networks = app_networks;
        self.errors = errors;
    }

    /// An error keeps the time it was first seen while its text stays.
    fn stamp(
        &self,
        key: &str,
        mut seen: Seen,
        now: u64,
        errors: &mut BTreeMap<String, (String, u64)>,
    ) -> Seen {
        if let Some((text, at)) = seen.error.as_mut() {
            match self.errors.get(key) {
                Some((old, since)) if old == text => *at = *since,
                _ if *at == 0 => *at = now,
                _ => {}
            }
            errors.insert(String::from(key), (text.clone(), *at));
        }
        seen
    }

    fn volumes(&self, plan: &Plan) -> Volumes {
        let mut disks = Vec::with_capacity(plan.volumes.len());
        let mut all_ready = true;
        let mut newest_ready = true;
        let mut error = None;
        let mut progress = ZSwState::CreatedVolume;
        for volume in &plan.volumes {
            let Some(state) = self.volume_states.get(volume) else {
                all_ready = false;
                newest_ready = false;
                progress = ZSwState::Initial;
                continue;
            };
            if state.state == ZSwState::Error as i32 && error.is_none() {
                error = Some((
                    format!("volume {volume}: {}", state.error),
                    state.error_unix,
                ));
            }
            let newest = format!("{volume}.{}", state.generation_count);
            newest_ready &=
                state.state == ZSwState::CreatedVolume as i32 && state.host_volume == newest;
            if state.host_volume.is_empty() {
                all_ready = false;
                let at = ZSwState::try_from(state.state)
                    .ok()
                    .filter(|s| *s != ZSwState::Invalid && *s != ZSwState::Error)
                    .unwrap_or(ZSwState::Initial);
                progress = progress.min(at);
            } else {
                disks.push(DomainDisk {
                    host_volume: state.host_volume.clone(),
                    volume_uuid: volume.clone(),
                    readonly: false,
                });
            }
        }
        Volumes {
            disks: all_ready.then_some(disks),
            newest_ready,
            error,
            progress,
        }
    }

    /// One app's step: its domain (if it should have one), its state and
    /// the interfaces in effect.
    fn step(&mut self, plan: &Plan) -> (Option<Domain>, Seen, Vec<Nic>) {
        let domain_state = self
            .domain_states
            .get(&plan.uuid)
            .filter(|d| d.uuid.is_empty() || d.uuid == plan.uuid)
            .cloned();
        let volumes = self.volumes(plan);
        let run = self.runs.entry(plan.uuid.clone()).or_insert_with(|| {
            // A restarted zedmanager takes up the counters the domain
            // follows; a new app's counters are where it starts.
            let (restart, purge) = domain_state
                .as_ref()
                .map_or((plan.restart, plan.purge), |d| {
                    (d.restart_counter, d.purge_counter)
                });
            // It also takes up the disks the domain runs with, so a purge
            // under way keeps its domain until the new disks are ready.
            let disks = domain_state.as_ref().map_or_else(Vec::new, |d| {
                d.disks
                    .iter()
                    .map(|name| DomainDisk {
                        host_volume: name.clone(),
                        volume_uuid: String::from(
                            name.split_once('.').map_or(name.as_str(), |(u, _)| u),
                        ),
                        readonly: false,
                    })
                    .collect()
            });
            Run {
                restart,
                purge,
                disks,
                ..Default::default()
            }
        });
        if plan.restart != run.restart {
            run.restart = plan.restart;
            run.restarting = plan.activate;
        }
        if !plan.activate {
            run.restarting = false;
        }
        if plan.purge != run.purge && run.purging.is_none() {
            run.purging = Some(Purge::Preparing);
        }
        let halted = domain_state.as_ref().is_none_or(|d| {
            d.state == ZSwState::Halted as i32 || d.state == ZSwState::Error as i32
        });
        let mut activate = plan.activate;
        match run.purging {
            Some(Purge::Preparing) if volumes.newest_ready => {
                run.purging = Some(if halted {
                    Purge::Starting
                } else {
                    activate = false;
                    Purge::Halting
                });
            }
            Some(Purge::Halting) if halted => run.purging = Some(Purge::Starting),
            Some(Purge::Halting) => activate = false,
            _ => {}
        }
        if run.purging == Some(Purge::Starting) {
            run.purge = plan.purge;
        }
        let disks_now = run.purging.is_none() || run.purging == Some(Purge::Starting);
        if disks_now && let Some(disks) = &volumes.disks {
            run.disks.clone_from(disks);
        }
        let ran = domain_state.as_ref().is_some_and(|d| {
            d.restart_counter == run.restart
                && d.purge_counter == run.purge
                && d.state == ZSwState::Running as i32
        });
        if ran {
            run.restarting = false;
            if run.purging == Some(Purge::Starting) {
                run.purging = None;
            }
        }
        if !plan.activate && run.purging == Some(Purge::Starting) {
            run.purging = None;
        }
        // A domain takes other interfaces only as a purge starts it again;
        // ACL changes are taken at once.
        let mut waiting_purge = None;
        let nics = match run.nics.as_ref() {
            Some(given) if !run.disks.is_empty() => match purge_reason(given, &plan.nics) {
                None => plan.nics.clone(),
                Some(_) if run.purging == Some(Purge::Starting) => plan.nics.clone(),
                Some(_) if run.purging.is_some() => given.clone(),
                Some(reason) => {
                    waiting_purge = Some(purge_needed(&reason));
                    given.clone()
                }
            },
            _ => plan.nics.clone(),
        };
        run.nics = Some(nics.clone());
        let domain = (!run.disks.is_empty()).then(|| Domain {
            uuid: plan.uuid.clone(),
            display_name: plan.name.clone(),
            activate,
            kind: plan.kind as i32,
            memory_kib: plan.memory_kib,
            vcpus: plan.vcpus,
            disks: run.disks.clone(),
            extra_args: plan.extra_args.clone(),
            user_data: plan.user_data.clone(),
            restart_counter: run.restart,
            purge_counter: run.purge,
            port_maps: plan.port_maps.clone(),
            nics: nics
                .iter()
                .map(|n| DomainNic {
                    index: n.index,
                    mac: n.mac.clone(),
                })
                .collect(),
        });
        let mut seen = seen(plan, run, domain.is_some(), domain_state.as_ref(), volumes);
        if seen.error.is_none() {
            // The app runs on as it was, with the error (as EVE's).
            seen.error = waiting_purge.map(|text| (text, 0));
        }
        (domain, seen, nics)
    }
}

/// The state EVE would report: an error first (the domain's, then a
/// volume's), then a restart or purge under way, then the domain's state
/// against what was asked, or the volumes' progress while there is no
/// domain.
fn seen(
    plan: &Plan,
    run: &Run,
    has_domain: bool,
    domain: Option<&DomainState>,
    volumes: Volumes,
) -> Seen {
    if let Some(d) = domain.filter(|d| d.state == ZSwState::Error as i32) {
        return Seen::error(d.error.clone(), d.error_unix);
    }
    if let Some((text, at)) = volumes.error {
        return Seen::error(text, at);
    }
    if run.purging.is_some() {
        return Seen::state(ZSwState::Purging);
    }
    if run.restarting {
        return Seen::state(ZSwState::Restarting);
    }
    if !has_domain {
        return Seen::state(volumes.progress);
    }
    let state = domain.map_or(ZSwState::Invalid, |d| {
        ZSwState::try_from(d.state).unwrap_or(ZSwState::Invalid)
    });
    // A crash the host booted it again after: the app keeps its state and
    // carries the crash's reason.
    let crash = domain
        .filter(|d| !d.error.is_empty())
        .map(|d| (d.error.clone(), d.error_unix));
    match (plan.activate, state) {
        (true, ZSwState::Running) => Seen {
            boot_unix: domain.map(|d| d.boot_unix).filter(|t| *t != 0),
            error: crash,
            ..Seen::state(ZSwState::Running)
        },
        (true, _) => Seen {
            error: crash,
            ..Seen::state(ZSwState::Booting)
        },
        (false, ZSwState::Halted | ZSwState::Invalid) => Seen::state(ZSwState::Halted),
        (false, _) => Seen::state(ZSwState::Halting),
    }
}

/// Claims an app's UUID and host ports: the first app (in key order) to
/// claim one has it; a later one is refused.
fn claim(
    key: &str,
    plan: Plan,
    owners: &mut BTreeMap<String, String>,
    ports: &mut BTreeMap<u32, String>,
) -> Result<Plan, String> {
    if let Some(owner) = owners.get(&plan.uuid) {
        return Err(format!(
            "UUID {} is already the app published as {owner:?}",
            plan.uuid
        ));
    }
    owners.insert(plan.uuid.clone(), String::from(key));
    let mut mine = BTreeSet::new();
    for map in &plan.port_maps {
        if let Some(owner) = ports.get(&map.host_port) {
            return Err(format!(
                "host port {} is already mapped to app {owner}",
                map.host_port
            ));
        }
        mine.insert(map.host_port);
    }
    for port in mine {
        ports.insert(port, plan.uuid.clone());
    }
    Ok(plan)
}
