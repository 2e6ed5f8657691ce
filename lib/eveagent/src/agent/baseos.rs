//! The device's base OS partitions in `ZInfoDevice.swList`: baseosmgr's
//! report once it has one, the host's facts before.

use alloc::vec::Vec;

use eve_proto::info::{ZInfoDevSw, ZSwState};

use super::Agent;
use crate::io::DeviceFacts;

impl Agent {
    /// baseosmgr's view of both partitions (`base-os-status`), which
    /// replaces the host's facts in the next device info.
    pub fn set_base_os(&mut self, partitions: Vec<ZInfoDevSw>) {
        if self.base_os != partitions {
            self.base_os = partitions;
            self.notify_info_changed();
        }
    }

    /// The partitions as the host's facts give them (no update state).
    pub(super) fn facts_sw_list(&self, f: &DeviceFacts) -> Vec<ZInfoDevSw> {
        f.partitions
            .iter()
            .map(|p| ZInfoDevSw {
                activated: p.activated,
                partition_label: p.label.clone(),
                partition_state: p.state.clone(),
                status: if p.activated {
                    ZSwState::Running
                } else {
                    ZSwState::Initial
                } as i32,
                short_version: p.short_version.clone(),
                long_version: p.long_version.clone(),
                ..Default::default()
            })
            .collect()
    }
}
