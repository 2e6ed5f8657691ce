//! The state machine: [`Manager::decide`].

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use eve_proto::org::lfedge::eve::config::BaseOs;
use eve_proto::org::lfedge::eve::info::{BaseOsStatus, BaseOsSubStatus, ZSwState};
use hostops::partitions::{PartitionInfo, PartitionsStatus};
use hostops::power::BootReason;

use crate::memory::Memory;
use topics::content::ContentTreeState;

mod trial;

/// The partition states as `hostops::partitions` names them.
const ACTIVE: &str = "active";
const UPDATING: &str = "updating";
const IN_PROGRESS: &str = "inprogress";
const UNUSED: &str = "unused";

/// The base OS the controller asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    /// The content tree holding the image.
    pub content_tree: String,
    pub version: String,
    /// Whether to boot it once written (otherwise it waits, written).
    pub activate: bool,
    /// `retry_update.counter`: raised by the controller to retry a
    /// version that failed.
    pub retry_counter: u32,
}

impl Desired {
    /// The configured base OS; `None` when the config names no content
    /// tree or no version (nothing to update to).
    pub fn from_config(config: &BaseOs) -> Option<Desired> {
        (!config.content_tree_uuid.is_empty() && !config.base_os_version.is_empty()).then(|| {
            Desired {
                content_tree: config.content_tree_uuid.clone(),
                version: config.base_os_version.clone(),
                activate: config.activate,
                retry_counter: config.retry_update.as_ref().map_or(0, |r| r.counter),
            }
        })
    }
}

/// Where the desired content tree stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// volumemgr has not reported it yet.
    Unknown,
    Downloading {
        percent: u32,
    },
    Verifying,
    /// In the host's blob store, verified: the image's digest.
    Verified {
        digest: String,
    },
    Failed {
        error: String,
    },
}

impl Content {
    /// The tree as volumemgr reports it in `content-tree-status`: a
    /// loaded tree is verified, and a base OS tree is one blob, the image.
    pub fn of_tree(tree: Option<&ContentTreeState>) -> Content {
        let Some(tree) = tree else {
            return Content::Unknown;
        };
        match ZSwState::try_from(tree.state) {
            Ok(ZSwState::Loaded) => match tree.components.as_slice() {
                [digest] => Content::Verified {
                    digest: digest.clone(),
                },
                parts => Content::Failed {
                    error: alloc::format!(
                        "a base OS is one image, the content tree has {} blobs",
                        parts.len()
                    ),
                },
            },
            Ok(ZSwState::Error) => Content::Failed {
                error: tree.error.clone(),
            },
            Ok(ZSwState::Downloaded | ZSwState::Verifying) => Content::Verifying,
            _ => Content::Downloading {
                percent: tree.progress_percent,
            },
        }
    }
}

/// The one next step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Nothing,
    /// `partitions.write`.
    Write {
        digest: String,
        version: String,
    },
    /// `partitions.try-once` on `label`.
    TryOnce {
        label: String,
    },
    /// `power.reboot`: into the update (`BootReason::Update`), or back
    /// out of a failed trial (`BootReason::Fallback`), the reason the
    /// next boot reports.
    Reboot {
        reason: BootReason,
    },
    /// `partitions.commit`.
    Commit,
}

/// One partition as the controller sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotReport {
    pub label: String,
    pub booted: bool,
    /// The partition's EVE state (`active`, `updating`, ...).
    pub partition_state: String,
    pub version: String,
    pub status: BaseOsStatus,
    pub sub_status: BaseOsSubStatus,
    /// Download percent, or seconds left of a test.
    pub progress: u32,
    pub error: String,
}

/// What [`Manager::decide`] answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub action: Action,
    /// Both partitions, the booted one first.
    pub slots: Vec<SlotReport>,
}

/// A version that failed, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Failure {
    version: String,
    error: String,
}

/// What baseosmgr remembers between decisions.
#[derive(Debug, Clone)]
pub struct Manager {
    /// Seconds a trial boot gets to reach the controller (EVE's
    /// `timer.test.baseimage.update`).
    test_window: u64,
    retry_seen: Option<u32>,
    failed: Option<Failure>,
    /// The version of a fallen-back partition already counted as failed,
    /// so a retry is not undone by seeing the same fallback again.
    fallback_noted: Option<String>,
    /// The test window under way on a trial boot.
    test: Option<trial::Test>,
    /// Maintenance mode: no update is started (written, tried or booted
    /// into) while it holds; a trial already booted is still committed or
    /// given up.
    held: bool,
}

fn report(p: &PartitionInfo) -> SlotReport {
    SlotReport {
        label: p.label.clone(),
        booted: p.booted,
        partition_state: p.state.clone(),
        version: p.version.clone(),
        status: if p.booted && p.state == ACTIVE {
            BaseOsStatus::Updated
        } else {
            BaseOsStatus::None
        },
        sub_status: BaseOsSubStatus::NoneSubstatus,
        progress: 0,
        error: String::new(),
    }
}

impl Manager {
    /// A manager whose trial boots get `test_window` seconds.
    pub fn new(test_window: u64) -> Manager {
        Manager {
            test_window,
            retry_seen: None,
            failed: None,
            fallback_noted: None,
            test: None,
            held: false,
        }
    }

    /// Takes the config's `timer.test.baseimage.update` (seconds); a
    /// trial under way keeps its start and is measured against it.
    pub fn set_test_window(&mut self, seconds: u64) {
        self.test_window = seconds;
    }

    /// Holds (maintenance mode) or releases the start of updates.
    pub fn set_held(&mut self, held: bool) {
        self.held = held;
    }

    /// A manager whose trial boots get `test_window` seconds, remembering
    /// what a previous run saved ([`Manager::memory`]).
    pub fn restore(test_window: u64, memory: Memory) -> Manager {
        Manager {
            retry_seen: memory.retry_seen,
            failed: memory.failed_version.map(|version| Failure {
                version,
                error: memory.failed_error,
            }),
            fallback_noted: memory.fallback_noted,
            test: trial::Test::restore(memory.testing_version, memory.test_started),
            ..Manager::new(test_window)
        }
    }

    /// What a later run must remember, to be saved whenever it changes.
    pub fn memory(&self) -> Memory {
        Memory {
            retry_seen: self.retry_seen,
            failed_version: self.failed.as_ref().map(|f| f.version.clone()),
            failed_error: self
                .failed
                .as_ref()
                .map(|f| f.error.clone())
                .unwrap_or_default(),
            fallback_noted: self.fallback_noted.clone(),
            testing_version: self.test.as_ref().map(|t| t.version.clone()),
            test_started: self.test.as_ref().map(|t| t.started),
        }
    }

    /// Records that `version` failed (a refused write, a failed trial):
    /// it is not tried again until a retry.
    pub fn fail(&mut self, version: &str, error: &str) {
        self.failed = Some(Failure {
            version: version.to_string(),
            error: error.to_string(),
        });
    }

    /// The next step at `now` (seconds on the node's clock: since the
    /// host started this boot, not reset by a restart of baseosmgr), from
    /// the configured base OS, its content, the partitions and whether the
    /// controller answered since this boot.
    pub fn decide(
        &mut self,
        now: u64,
        desired: Option<&Desired>,
        content: &Content,
        partitions: &PartitionsStatus,
        controller_reached: bool,
    ) -> Decision {
        let (Some(booted), Some(other)) = (partitions.booted(), partitions.other()) else {
            return Decision {
                action: Action::Nothing,
                slots: partitions.partitions.iter().map(report).collect(),
            };
        };
        let mut cur = report(booted);
        let mut oth = report(other);
        if let Some(d) = desired {
            match self.retry_seen {
                Some(seen) if d.retry_counter > seen => {
                    self.failed = None;
                    self.retry_seen = Some(d.retry_counter);
                }
                None => self.retry_seen = Some(d.retry_counter),
                Some(_) => {}
            }
        }
        let mut action = self.next(
            now,
            desired,
            content,
            &mut cur,
            &mut oth,
            controller_reached,
        );
        let starts_update = matches!(
            action,
            Action::Write { .. }
                | Action::TryOnce { .. }
                | Action::Reboot {
                    reason: BootReason::Update
                }
        );
        if self.held && starts_update {
            action = Action::Nothing;
            oth.sub_status = BaseOsSubStatus::UpdateDeferred;
        }
        Decision {
            action,
            slots: alloc::vec![cur, oth],
        }
    }

    fn next(
        &mut self,
        now: u64,
        desired: Option<&Desired>,
        content: &Content,
        cur: &mut SlotReport,
        oth: &mut SlotReport,
        controller_reached: bool,
    ) -> Action {
        if cur.partition_state == IN_PROGRESS {
            return self.trial(now, cur, controller_reached);
        }
        self.test = None;
        if oth.partition_state == IN_PROGRESS
            && self.fallback_noted.as_deref() != Some(oth.version.as_str())
        {
            self.fallback_noted = Some(oth.version.clone());
            let error = alloc::format!("booted once and fell back to {}", cur.label);
            self.fail(&oth.version.clone(), &error);
        }
        let Some(d) = desired else {
            return Action::Nothing;
        };
        if cur.version == d.version {
            return Action::Nothing;
        }
        if let Some(f) = self.failed.as_ref().filter(|f| f.version == d.version) {
            oth.status = if oth.partition_state == IN_PROGRESS {
                BaseOsStatus::Fallback
            } else {
                BaseOsStatus::Failed
            };
            oth.error = f.error.clone();
            return Action::Nothing;
        }
        if oth.version == d.version {
            if oth.partition_state == UPDATING {
                oth.status = BaseOsStatus::Updating;
                oth.sub_status = BaseOsSubStatus::UpdateRebooting;
                return Action::Reboot {
                    reason: BootReason::Update,
                };
            }
            if oth.partition_state == UNUSED {
                if !d.activate {
                    oth.status = BaseOsStatus::DownloadDone;
                    oth.sub_status = BaseOsSubStatus::UpdateDeferred;
                    return Action::Nothing;
                }
                oth.status = BaseOsStatus::Updating;
                oth.sub_status = BaseOsSubStatus::UpdateInitializing;
                return Action::TryOnce {
                    label: oth.label.clone(),
                };
            }
        }
        match content {
            Content::Unknown => {
                oth.status = BaseOsStatus::Downloading;
                oth.sub_status = BaseOsSubStatus::DownloadInprogress;
                Action::Nothing
            }
            Content::Downloading { percent } => {
                oth.status = BaseOsStatus::Downloading;
                oth.sub_status = BaseOsSubStatus::DownloadInprogress;
                oth.progress = *percent;
                Action::Nothing
            }
            Content::Verifying => {
                oth.status = BaseOsStatus::Downloading;
                oth.sub_status = BaseOsSubStatus::VerifyInprogress;
                Action::Nothing
            }
            Content::Failed { error } => {
                oth.status = BaseOsStatus::Failed;
                oth.error = error.clone();
                Action::Nothing
            }
            Content::Verified { digest } => {
                oth.status = BaseOsStatus::Updating;
                oth.sub_status = BaseOsSubStatus::UpdateInitializing;
                Action::Write {
                    digest: digest.clone(),
                    version: d.version.clone(),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
