//! A partition's report as eve-api `ZInfoDevSw`, the entries zedagent
//! puts in `ZInfoDevice.swList`.

use eve_proto::org::lfedge::eve::info::{BaseOsStatus, ErrorInfo, ZInfoDevSw, ZSwState};

use crate::SlotReport;

/// `slot` as the controller reads it.
pub fn dev_sw(slot: &SlotReport) -> ZInfoDevSw {
    let holds_image = !slot.version.is_empty();
    let state = match slot.status {
        _ if slot.booted => ZSwState::Installed,
        BaseOsStatus::Downloading => ZSwState::DownloadStarted,
        BaseOsStatus::DownloadDone => ZSwState::Downloaded,
        BaseOsStatus::Failed | BaseOsStatus::Fallback => ZSwState::Error,
        _ if holds_image => ZSwState::Installed,
        _ => ZSwState::Initial,
    };
    let downloading = slot.status == BaseOsStatus::Downloading;
    ZInfoDevSw {
        activated: slot.booted && slot.partition_state == "active",
        partition_label: slot.label.clone(),
        partition_state: slot.partition_state.clone(),
        status: state as i32,
        short_version: slot.version.clone(),
        sw_err: (!slot.error.is_empty()).then(|| ErrorInfo {
            description: slot.error.clone(),
            ..Default::default()
        }),
        download_progress: if downloading { slot.progress } else { 0 },
        user_status: slot.status as i32,
        sub_status: slot.sub_status as i32,
        sub_status_progress: slot.progress,
        ..Default::default()
    }
}
