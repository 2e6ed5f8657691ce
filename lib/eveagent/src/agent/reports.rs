//! Reports to the controller: device info (`ZInfoDevice`) on change and
//! periodically, and metrics (`ZMetricMsg`) with EVE's per-URL request
//! counters.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use eve_proto::Message;
use eve_proto::info::{ZDeviceState, ZInfoDevice, ZInfoMsg, ZInfoTypes, z_info_msg::InfoContent};
use eve_proto::metrics::{
    AppCpuMetric, DeviceMemoryMetric, DeviceMetric, DiskMetric, FlowlogCounters, FlowlogMetric,
    LogMetric, MetricItem, MetricItemType, NetworkMetric, UrlcloudMetric, ZMetricMsg,
    ZedcloudMetric, metric_item::MetricItemValue, z_metric_msg::MetricContent,
};

use crate::io::{DeviceFacts, Request, Response, TransportError};
use crate::logs::Level;
use crate::queue::Outcome;

use super::schedule::Job;
use super::{API, Agent, METRIC_PERSIST_ERRORS, METRIC_REJECTED, Phase, timestamp};

/// EVE's counters of the requests to one controller URL (`urlcloudMetric`):
/// "tried" are the attempts that failed, "sent" those that succeeded.
#[derive(Debug, Clone, Default)]
pub(super) struct UrlStats {
    /// The path last requested; it changes only with the UUID.
    pub(super) url: String,
    pub(super) tried: u64,
    pub(super) tried_bytes: u64,
    pub(super) sent: u64,
    pub(super) sent_bytes: u64,
    pub(super) received: u64,
    pub(super) received_bytes: u64,
    /// Milliseconds the successful requests took.
    pub(super) time_ms: u64,
}

impl Agent {
    /// Queues a device info report when due, asked for, or when the facts
    /// changed, and every app's latest status with it (EVE republishes
    /// all info together).
    pub(super) fn refresh_info(&mut self, now: u64) {
        let facts = self.deps.platform.device_facts();
        let changed = self.last_facts.as_ref() != Some(&facts);
        if !(changed || self.info_due || now >= self.timers.info_ms) {
            return;
        }
        let Some(uuid) = self.uuid.clone() else {
            return;
        };
        let msg = self.info_msg(&uuid, &facts);
        self.last_facts = Some(facts);
        self.info_due = false;
        self.requeue_apps();
        self.timers.info_ms = now + self.settings.info_interval_s * 1000;
        match self.sign(msg.encode_to_vec()) {
            Some(body) => {
                if self
                    .info
                    .push("device".into(), format!("{API}/id/{uuid}/info"), body, now)
                {
                    self.counters.info_dropped += 1;
                }
            }
            None => self.note(Level::Error, String::from("cannot sign device info")),
        }
    }

    fn info_msg(&self, uuid: &str, f: &DeviceFacts) -> ZInfoMsg {
        let state = if let Some(state) = self.shutdown_state() {
            state
        } else if self.phase == Phase::Running {
            ZDeviceState::ZdeviceStateOnline
        } else {
            ZDeviceState::ZdeviceStateBooting
        };
        let sw_list = if !self.base_os.is_empty() {
            self.base_os.clone()
        } else {
            self.facts_sw_list(f)
        };
        let mut device = ZInfoDevice {
            machine_arch: f.machine_arch.clone(),
            cpu_arch: f.cpu_arch.clone(),
            platform: f.platform.clone(),
            ncpu: f.ncpu,
            memory: f.memory_mb,
            storage: f.storage_mb,
            minfo: Some(f.manufacturer_info(if self.hw_serial.is_empty() {
                &self.soft_serial
            } else {
                &self.hw_serial
            })),
            boot_time: Some(timestamp(f.boot_unix_ms)),
            sw_list,
            host_name: f.host_name.clone(),
            last_reboot_reason: f.last_reboot_reason.clone(),
            last_reboot_time: (f.last_reboot_unix_ms != 0)
                .then(|| timestamp(f.last_reboot_unix_ms)),
            restart_counter: f.restart_counter,
            hsm_status: self.hsm.0 as i32,
            hsm_info: String::from(self.hsm.1),
            last_boot_reason: f.boot_reason as i32,
            state: state as i32,
            attestation_info: Some(self.attestation_info(self.now())),
            ..Default::default()
        };
        self.fill_node_status(&mut device);
        ZInfoMsg {
            ztype: ZInfoTypes::ZiDevice as i32,
            dev_id: uuid.to_string(),
            info_content: Some(InfoContent::Dinfo(device)),
            at_time_stamp: Some(timestamp(self.unix_ms())),
        }
    }

    pub(super) fn metrics_msg(&self, uuid: &str) -> ZMetricMsg {
        let m = self.deps.platform.device_metrics();
        let dm = DeviceMetric {
            network: m
                .interfaces
                .iter()
                .map(|i| NetworkMetric {
                    i_name: i.name.clone(),
                    tx_bytes: i.tx_bytes,
                    rx_bytes: i.rx_bytes,
                    tx_pkts: i.tx_packets,
                    rx_pkts: i.rx_packets,
                    tx_drops: i.tx_drops,
                    rx_drops: i.rx_drops,
                    ..Default::default()
                })
                .collect(),
            disk: m
                .disks
                .iter()
                .map(|d| DiskMetric {
                    disk: d.name.clone(),
                    mount_path: d.mount_path.clone(),
                    read_bytes: d.read_bytes,
                    write_bytes: d.write_bytes,
                    read_count: d.read_count,
                    write_count: d.write_count,
                    total: d.total_mb,
                    used: d.used_mb,
                    free: d.free_mb,
                })
                .chain(self.content_disk_metric())
                .collect(),
            cpu_metric: Some(AppCpuMetric {
                total: m.cpu_total_ns / 1_000_000_000,
                total_ns: m.cpu_total_ns,
                ..Default::default()
            }),
            device_memory: Some(DeviceMemoryMetric {
                memory_mb: m.memory_mb,
                allocated_apps_mb: m.allocated_apps_mb,
                used_eve_mb: m.used_eve_mb,
                ..Default::default()
            }),
            last_received_config: self.last_config_received_unix_ms.map(timestamp),
            last_processed_config: self.last_config_applied_unix_ms.map(timestamp),
            zedcloud: alloc::vec![self.zedcloud_metric(m.management_interface)],
            metric_items: self.metric_items(),
            log: Some(self.log_metric()),
            flowlog: Some(self.flowlog_metric()),
            ..Default::default()
        };
        ZMetricMsg {
            dev_id: uuid.to_string(),
            at_time_stamp: Some(timestamp(self.unix_ms())),
            metric_content: Some(MetricContent::Dm(dm)),
            vm: self.volume_metrics(),
            am: self.app_metric_list(),
            nm: self.network_instance_metrics(),
            ..Default::default()
        }
    }

    /// Controller requests since boot, on the management interface.
    fn zedcloud_metric(&self, if_name: String) -> ZedcloudMetric {
        let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let used = || self.urls.iter().filter(|u| !u.url.is_empty());
        ZedcloudMetric {
            if_name,
            failures: used().map(|u| u.tried).sum(),
            success: used().map(|u| u.sent).sum(),
            last_failure: self.last_request_failed_unix_ms.map(timestamp),
            last_success: self.last_request_ok_unix_ms.map(timestamp),
            url_metrics: used()
                .map(|u| UrlcloudMetric {
                    url: u.url.clone(),
                    try_msg_count: count(u.tried),
                    try_byte_count: count(u.tried_bytes),
                    sent_msg_count: count(u.sent),
                    sent_byte_count: count(u.sent_bytes),
                    recv_msg_count: count(u.received),
                    recv_byte_count: count(u.received_bytes),
                    total_time_spent: count(u.time_ms),
                    sess_resume_count: 0,
                })
                .collect(),
            auth_verify_failure: self.counters.rejected.total(),
        }
    }

    /// Our counters without a field of their own in EVE's API: rejected
    /// controller answers by reason and failed state-volume writes, all
    /// present from boot so a controller sees zeros, not gaps.
    fn metric_items(&self) -> Vec<MetricItem> {
        let counter = |key: String, n: u64| MetricItem {
            key,
            r#type: MetricItemType::MetricItemCounter as i32,
            metric_item_value: Some(MetricItemValue::Uint64Value(n)),
        };
        let mut items: Vec<MetricItem> = self
            .counters
            .rejected
            .by_reason()
            .iter()
            .map(|&(reason, n)| counter(format!("{METRIC_REJECTED}{reason}"), n))
            .collect();
        items.push(counter(
            String::from(METRIC_PERSIST_ERRORS),
            self.counters.persist_errors,
        ));
        items
    }

    /// Flow messages, flows and DNS requests sent, dropped and failed, as
    /// EVE's zedagent counts them.
    fn flowlog_metric(&self) -> FlowlogMetric {
        let c = self.flows.counters();
        let of = |f: fn(&crate::flow_logs::FlowCount) -> u64| FlowlogCounters {
            success: f(&c.success),
            drops: f(&c.drops),
            failed_attempts: f(&c.failed_attempts),
        };
        FlowlogMetric {
            messages: Some(of(|n| n.messages)),
            flows: Some(of(|n| n.flows)),
            dns_requests: Some(of(|n| n.dns_requests)),
        }
    }

    /// The log queues in `logMetric` terms: lines in are those queued for
    /// upload, errors those the queue bound dropped (for apps also those
    /// lost before zedagent took them), 4xx those in batches the
    /// controller refused.
    fn log_metric(&self) -> LogMetric {
        let apps = self.app_logs.counters();
        LogMetric {
            num_app_events_sent: self.counters.app_log_lines_sent,
            num_app_bundles_sent: self.counters.app_log_batches_sent,
            total_app_log_input: apps.input_lines,
            num_app_event_errors: apps.bound_dropped + apps.lost_before + apps.bad_app,
            num_app_bundle_proto_bytes_sent: self.counters.app_log_bytes_sent,
            num_device_events_sent: self.counters.log_lines_sent,
            num_device_bundles_sent: self.counters.log_batches_sent,
            num4xx_responses: self.logs.refused_lines() + apps.refused,
            last_device_bundle_send_time: self.last_log_sent_unix_ms.map(timestamp),
            total_device_log_input: self.logs.input_lines(),
            num_device_event_errors: self.logs.bound_dropped_lines(),
            num_device_bundle_proto_bytes_sent: self.counters.log_bytes_sent,
            ..Default::default()
        }
    }

    /// Counts one exchange as EVE's zedcloud metrics do: an answer with a
    /// success status (2xx or 304) is a success, anything else (no
    /// answer, an error status) a failure; bytes received count either way.
    pub(super) fn count_exchange(
        &mut self,
        job: Job,
        request: &Request,
        result: &Result<Response, TransportError>,
        started_ms: u64,
    ) {
        let ok = matches!(result, Ok(r) if (200..300).contains(&r.status) || r.status == 304);
        let (now, unix) = (self.now(), self.unix_ms());
        let stats = &mut self.urls[job as usize];
        if stats.url != request.path {
            stats.url.clone_from(&request.path);
        }
        let sent = request.body.len() as u64;
        if let Ok(r) = result {
            stats.received += 1;
            stats.received_bytes += r.body.len() as u64;
        }
        if ok {
            stats.sent += 1;
            stats.sent_bytes += sent;
            stats.time_ms += now.saturating_sub(started_ms);
            self.last_request_ok_unix_ms = Some(unix);
        } else {
            stats.tried += 1;
            stats.tried_bytes += sent;
            self.last_request_failed_unix_ms = Some(unix);
        }
    }

    pub(super) fn on_info(&mut self, resp: Response) {
        let now = self.now();
        let Some(key) = self.info.due(now).map(|d| d.key.clone()) else {
            return;
        };
        match self
            .info
            .settle(&key, Some(resp.status), now, &mut *self.deps.rng)
        {
            Outcome::Sent => {
                self.counters.info_sent += 1;
                self.last_info_ms = Some(now);
            }
            Outcome::Dropped => {
                self.counters.info_dropped += 1;
                self.unexpected("info", resp.status);
            }
            Outcome::Retry => self.unexpected("info", resp.status),
        }
    }

    pub(super) fn on_metrics(&mut self, resp: Response) {
        let now = self.now();
        self.timers.metrics_ms = now + self.settings.metric_interval_s * 1000;
        if (200..300).contains(&resp.status) {
            self.counters.metrics_sent += 1;
            self.last_metrics_ms = Some(now);
        } else {
            self.counters.metrics_failed += 1;
            self.unexpected("metrics", resp.status);
        }
    }
}
