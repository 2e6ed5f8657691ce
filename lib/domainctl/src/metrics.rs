//! `app-metrics`: each running domain's CPU and memory as the host
//! measures its QEMU, in eve-api's `AppMetric`.

use alloc::string::String;
use alloc::vec::Vec;

use eve_proto::metrics::{AppCpuMetric, AppMemoryMetric, AppMetric, MemoryMetric};
use eve_proto::prost_types::Timestamp;
use hostops::domains::DomainUsage;

use crate::{Host, HostError, Manager};

const KIB_PER_MIB: u64 = 1024;

fn mib(kib: u64) -> u32 {
    u32::try_from(kib / KIB_PER_MIB).unwrap_or(u32::MAX)
}

/// One domain's metric from the host's usage. Used memory is the guest
/// RAM the guest has touched (what EVE reports of a VM's memory); the
/// VMM's own memory is the host's to account.
pub fn app_metric(uuid: &str, name: &str, boot_unix: u64, usage: &DomainUsage) -> AppMetric {
    let allocated = mib(usage.memory_kib);
    let used = mib(usage.guest_ram_kib).min(allocated);
    let percent = |part: u32| match allocated {
        0 => 0.0,
        all => f64::from(part) * 100.0 / f64::from(all),
    };
    AppMetric {
        app_id: String::from(uuid),
        app_name: String::from(name),
        cpu: Some(AppCpuMetric {
            up_time: Some(Timestamp {
                seconds: i64::try_from(boot_unix).unwrap_or(i64::MAX),
                nanos: 0,
            }),
            total: usage.cpu_ns / 1_000_000_000,
            system_total: 0,
            total_ns: usage.cpu_ns,
        }),
        memory: Some(MemoryMetric {
            used_mem: used,
            avail_mem: allocated - used,
            used_percentage: percent(used),
            avail_percentage: percent(allocated - used),
        }),
        app_memory: Some(AppMemoryMetric {
            allocated_mb: allocated,
            used_mb: used,
        }),
        ..Default::default()
    }
}

impl Manager {
    /// The running domains' metrics. A domain that stopped since the last
    /// reconcile is left out; only a failed call is an error.
    pub fn metrics(&self, host: &mut dyn Host) -> Result<Vec<AppMetric>, HostError> {
        let mut metrics = Vec::new();
        for (uuid, state) in self.running() {
            match host.usage(uuid) {
                Ok(usage) => metrics.push(app_metric(
                    uuid,
                    &state.display_name,
                    state.boot_unix,
                    &usage,
                )),
                Err(HostError::Domain(_)) => {}
                Err(call) => return Err(call),
            }
        }
        Ok(metrics)
    }
}
