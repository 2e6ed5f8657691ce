//! Each app's disks in its metrics (`AppMetric.disk`), as EVE's zedagent
//! fills them: one `appDiskMetric` per volume of the app, named by the
//! disk the host keeps for it, with its provisioned size and the bytes it
//! takes on the host's disk (in MiB, rounded to the nearest, as EVE
//! rounds), its format and its dirty flag. The app's volumes are those
//! zedmanager reports (`ZInfoApp.volumeRefs`); the sizes are volumemgr's
//! (`content-usage`, the same data as `ZMetricMsg.vm`). A volume not
//! measured yet is left out.

use alloc::string::String;
use alloc::vec::Vec;

use eve_proto::metrics::AppDiskMetric;

use super::Agent;

/// Bytes to MiB, rounded to the nearest.
fn round_to_mib(bytes: u64) -> u64 {
    const MIB: u64 = 1 << 20;
    bytes.saturating_add(MIB / 2) / MIB
}

impl Agent {
    /// The disks of app `app` for its metrics.
    pub(super) fn app_disks(&self, app: &str) -> Vec<AppDiskMetric> {
        let (Some(status), Some(usage)) = (self.apps.get(app), &self.content_usage) else {
            return Vec::new();
        };
        status
            .volume_refs
            .iter()
            .filter_map(|volume| usage.volumes.iter().find(|v| &v.uuid == volume))
            .map(|v| AppDiskMetric {
                disk: v.disk.clone(),
                provisioned: round_to_mib(v.total_bytes),
                used: round_to_mib(v.used_bytes),
                disk_type: String::from(v.disk_type.as_str()),
                dirty: v.dirty,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::round_to_mib;

    #[test]
    fn mib_round_to_the_nearest() {
        assert_eq!(round_to_mib(0), 0);
        assert_eq!(round_to_mib((1 << 19) - 1), 0);
        assert_eq!(round_to_mib(1 << 19), 1);
        assert_eq!(round_to_mib(3 << 20), 3);
        assert_eq!(round_to_mib(u64::MAX), u64::MAX >> 20);
    }
}
