//! The decisions: [`NodeAgent::decide`].

use eve_proto::org::lfedge::eve::config::{DeviceOpsCmd, EdgeDevConfig};
use hostops::partitions::PartitionsStatus;
use hostops::power::BootReason;
use topics::configitems::GlobalConfig;
use topics::content::Usage;
use topics::nodestatus::Node;

use crate::maintenance;
use crate::memory::Memory;

/// The state `hostops::partitions` gives a base OS booted on trial.
const IN_PROGRESS: &str = "inprogress";
/// The state of a committed base OS.
const ACTIVE: &str = "active";

/// What nodeagent has heard; `None` for what has not arrived yet.
#[derive(Debug, Clone, Copy, Default)]
pub struct Heard<'a> {
    /// zedagent's `config-items`.
    pub items: Option<&'a GlobalConfig>,
    /// zedagent's `edge-config`.
    pub config: Option<&'a EdgeDevConfig>,
    /// The host's partitions; `None` on a node without an A/B disk.
    pub partitions: Option<&'a PartitionsStatus>,
    /// volumemgr's `content-usage`: the content store's room on PERSIST.
    pub content_usage: Option<&'a Usage>,
}

/// The one thing to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Nothing,
    /// `power.reboot` with the reason the next boot reports.
    Reboot {
        reason: BootReason,
    },
    /// `partitions.fallback`, then `power.reboot` (`FALLBACK`).
    FallbackAndReboot,
}

impl Action {
    fn stops_the_node(self) -> bool {
        self != Action::Nothing
    }
}

/// What [`NodeAgent::decide`] answers.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub action: Action,
    /// For `node-status`.
    pub status: Node,
}

/// nodeagent's state between decisions. Times are seconds on the node's
/// clock (`runtime::node_clock`), which nodeagent's restarts do not reset.
#[derive(Debug, Clone)]
pub struct NodeAgent {
    memory: Memory,
    /// The last controller contact, or when this run began.
    last_contact: u64,
    /// A stop was asked of the host this run.
    stopping: bool,
    /// The controller's `shutdown` command was acted on since the node
    /// started: the apps stay halted until a reboot. Not in [`Memory`],
    /// so the apps run again after the reboot (as EVE's), while the
    /// remembered counter keeps the same command from acting again.
    apps_shut_down: bool,
}

/// `seen` becomes `counter`; whether that is a command to act on: a
/// change from one seen before (EVE acts on any change, a drop too).
fn command(seen: &mut Option<u32>, counter: u32) -> bool {
    let act = seen.is_some_and(|s| s != counter);
    *seen = Some(counter);
    act
}

fn counter(cmd: Option<&DeviceOpsCmd>) -> Option<u32> {
    cmd.map(|c| c.counter)
}

impl NodeAgent {
    /// nodeagent remembering what a previous run saved
    /// ([`NodeAgent::memory`]); the controller counts as gone since
    /// `since`. The service passes the node's start (0 on the node's clock)
    /// and the controller's last answer as zedagent saw it
    /// ([`NodeAgent::contact`]), so a restarted nodeagent keeps the
    /// deadlines of the run before it.
    pub fn new(since: u64, memory: Memory) -> NodeAgent {
        NodeAgent {
            memory,
            last_contact: since,
            stopping: false,
            apps_shut_down: false,
        }
    }

    /// What a later run must remember, to be saved before acting.
    pub fn memory(&self) -> Memory {
        self.memory
    }

    /// The controller answered zedagent at `now` (an older answer heard
    /// late moves nothing).
    pub fn contact(&mut self, now: u64) {
        self.last_contact = self.last_contact.max(now);
    }

    /// The host refused the stop asked for: a timer may ask again (a
    /// command's counter stays acted on: it is never replayed).
    pub fn stop_failed(&mut self) {
        self.stopping = false;
    }

    /// The one thing to do at `now`, and the node's status.
    pub fn decide(&mut self, now: u64, heard: Heard<'_>) -> Decision {
        let action = if self.stopping {
            Action::Nothing
        } else {
            self.next(now, heard)
        };
        if action.stops_the_node() {
            self.stopping = true;
        }
        Decision {
            action,
            status: self.status(heard),
        }
    }

    fn next(&mut self, now: u64, heard: Heard<'_>) -> Action {
        let defaults = GlobalConfig::default();
        let items = heard.items.unwrap_or(&defaults);
        if let Some(config) = heard.config {
            let shutdown = counter(config.shutdown.as_ref())
                .is_some_and(|c| command(&mut self.memory.shutdown_seen, c));
            let reboot = counter(config.reboot.as_ref())
                .is_some_and(|c| command(&mut self.memory.reboot_seen, c));
            // EVE's shutdown halts every app and leaves the node on: there
            // is no remote power-on. A reboot in the same config still
            // reboots.
            if shutdown {
                self.apps_shut_down = true;
            }
            if reboot {
                return Action::Reboot {
                    reason: BootReason::RebootCmd,
                };
            }
        }
        let trial = heard
            .partitions
            .and_then(PartitionsStatus::booted)
            .is_some_and(|p| p.state == IN_PROGRESS);
        if let Some(items) = heard.items
            && command(&mut self.memory.fallback_seen, items.force_fallback_counter)
            && self.can_fall_back(heard.partitions)
        {
            return Action::FallbackAndReboot;
        }
        let gone = now.saturating_sub(self.last_contact);
        if trial && gone >= u64::from(items.update_fallback_no_network_s) {
            return Action::Reboot {
                reason: BootReason::Fallback,
            };
        }
        if gone >= u64::from(items.reboot_no_network_s) {
            return Action::Reboot {
                reason: BootReason::Disconnect,
            };
        }
        Action::Nothing
    }

    /// A forced fallback needs a committed boot and a base OS on the
    /// other partition (a trial falls back by not being committed).
    fn can_fall_back(&self, partitions: Option<&PartitionsStatus>) -> bool {
        let Some(p) = partitions else {
            return false;
        };
        matches!(
            (p.booted(), p.other()),
            (Some(b), Some(o)) if b.state == ACTIVE && !o.version.is_empty()
        )
    }

    fn status(&self, heard: Heard<'_>) -> Node {
        let maintenance_mode_reasons = maintenance::reasons(&heard);
        let maintenance_mode = !maintenance_mode_reasons.is_empty();
        Node {
            maintenance_mode,
            maintenance_mode_reasons,
            reboot_config_counter: self.memory.reboot_seen.unwrap_or(0),
            shutdown_config_counter: self.memory.shutdown_seen.unwrap_or(0),
            reboot_inprogress: self.stopping,
            apps_shut_down: self.apps_shut_down,
        }
    }
}

#[cfg(test)]
mod tests;
