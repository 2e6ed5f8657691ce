//! A trial boot (the booted partition `inprogress`), as EVE runs it: the
//! new base OS is committed once `timer.test.baseimage.update` has passed
//! since its first controller answer, so it must keep working that long
//! with the controller reachable, not merely reach it once. EVE's
//! nodeagent starts that test at the trial boot's first successful config
//! request and lets baseosmgr commit when it completes (`testComplete`).
//! A config answer here already needs attestation (the controller gives
//! config only for a valid integrity token), so no separate attestation
//! check is made.
//!
//! A trial that never hears the controller is given up after the same
//! window counted from the boot (nodeagent's shorter
//! `timer.update.fallback.no.network` usually fires first, as in EVE).
//! Both are measured on the node's clock, so a restart of baseosmgr does
//! not begin either window again; the test's start is also saved
//! ([`crate::Memory`]) since the restarted service cannot tell the first
//! answer from the last.

use alloc::string::String;

use eve_proto::org::lfedge::eve::info::{BaseOsStatus, BaseOsSubStatus};

use super::{Action, BootReason, Manager, SlotReport};

/// A test window under way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Test {
    /// The version on trial.
    pub(super) version: String,
    /// Its first controller answer, seconds on the node's clock.
    pub(super) started: u64,
}

impl Test {
    pub(super) fn restore(version: Option<String>, started: Option<u64>) -> Option<Test> {
        Some(Test {
            version: version?,
            started: started?,
        })
    }
}

impl Manager {
    /// The step on a trial boot of `cur` at `now`, reporting
    /// `UPDATE_TESTING` with the seconds left of the window that runs.
    pub(super) fn trial(
        &mut self,
        now: u64,
        cur: &mut SlotReport,
        controller_reached: bool,
    ) -> Action {
        // A test saved on another boot: another version, or a start later
        // than now (the node's clock began again at this boot).
        if self
            .test
            .as_ref()
            .is_some_and(|t| t.version != cur.version || t.started > now)
        {
            self.test = None;
        }
        if controller_reached && self.test.is_none() {
            self.test = Some(Test {
                version: cur.version.clone(),
                started: now,
            });
        }
        let elapsed = match &self.test {
            Some(test) => now - test.started,
            None => now,
        };
        if elapsed >= self.test_window {
            if self.test.is_some() {
                return Action::Commit;
            }
            self.fail(
                &cur.version,
                "the controller was not reached in the test window",
            );
            cur.status = BaseOsStatus::Failed;
            cur.error = self
                .failed
                .as_ref()
                .map(|f| f.error.clone())
                .unwrap_or_default();
            return Action::Reboot {
                reason: BootReason::Fallback,
            };
        }
        cur.status = BaseOsStatus::Updating;
        cur.sub_status = BaseOsSubStatus::UpdateTesting;
        cur.progress = u32::try_from(self.test_window - elapsed).unwrap_or(u32::MAX);
        Action::Nothing
    }
}
