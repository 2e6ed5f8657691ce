//! nodeagent's view of the node (`node-status`) in `ZInfoDevice`:
//! maintenance mode and why, the reboot and shutdown command counters it
//! acted on, whether a reboot is under way, and the device state while
//! the controller's `shutdown` holds.

use eve_proto::info::{ZDeviceState, ZInfoDevice, ZSwState};
use topics::nodestatus::Node;

use super::Agent;

impl Agent {
    /// nodeagent's latest `node-status`, reported in the next device info.
    pub fn set_node_status(&mut self, node: Node) {
        if self.node_status.as_ref() != Some(&node) {
            self.node_status = Some(node);
            self.notify_info_changed();
        }
    }

    /// Fills the device info's node fields; left at their defaults until
    /// nodeagent has reported.
    pub(super) fn fill_node_status(&self, device: &mut ZInfoDevice) {
        let Some(node) = &self.node_status else {
            return;
        };
        device.maintenance_mode = node.maintenance_mode;
        device.maintenance_mode_reasons = node.maintenance_mode_reasons.clone();
        // The single reason field is deprecated in eve-api but still read
        // by older controllers: the first reason.
        #[allow(deprecated)]
        {
            device.maintenance_mode_reason =
                node.maintenance_mode_reasons.first().copied().unwrap_or(0);
        }
        device.reboot_config_counter = node.reboot_config_counter;
        device.shutdown_config_counter = node.shutdown_config_counter;
        device.reboot_inprogress = node.reboot_inprogress;
    }

    /// The device state while the controller's `shutdown` holds, as EVE's
    /// zedagent reports it: `PREPARING_POWEROFF` until every app reports
    /// `HALTED`, then `PREPARED_POWEROFF` (the node stays on). `None`
    /// otherwise, and in maintenance mode or while rebooting, which EVE
    /// reports before a shutdown.
    pub(super) fn shutdown_state(&self) -> Option<ZDeviceState> {
        let node = self.node_status.as_ref()?;
        if !node.apps_shut_down || node.maintenance_mode || node.reboot_inprogress {
            return None;
        }
        let halted = self
            .apps
            .values()
            .all(|a| a.state == ZSwState::Halted as i32);
        Some(if halted {
            ZDeviceState::ZdeviceStatePreparedPoweroff
        } else {
            ZDeviceState::ZdeviceStatePreparingPoweroff
        })
    }

    /// Whether the device state follows the apps' (see
    /// [`Self::shutdown_state`]), so an app's report is news for the
    /// device info too.
    pub(super) fn apps_shutting_down(&self) -> bool {
        self.node_status.as_ref().is_some_and(|n| n.apps_shut_down)
    }
}
