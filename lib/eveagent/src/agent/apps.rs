//! Apps: what zedmanager reports of each app instance (`app-status`) sent
//! to the controller as EVE's zedagent sends it, one `ZInfoMsg` of type
//! `ZiApp` per app, and each app's metrics (`app-metrics`, from domainmgr,
//! with its interfaces' counters from zedrouter: `net_metrics`) in the
//! device metrics (`ZMetricMsg.am`).
//!
//! EVE sends an app's info when its status changes, again for every app
//! whenever it republishes all info (with the device info), and, when an
//! app's status disappears, a `ZInfoApp` that carries only the app's UUID:
//! that is how a controller learns the app is gone. The same here: the
//! latest status of every app is kept, re-sent with each device info
//! report, and a removed app gets the UUID-only message.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use eve_proto::Message;
use eve_proto::info::{ZInfoApp, ZInfoMsg, ZInfoTypes, z_info_msg::InfoContent};
use eve_proto::metrics::AppMetric;

use crate::logs::Level;

use super::{API, Agent, timestamp};

/// The info queue's key of an app's report: a newer report of the same
/// app replaces one not sent yet.
fn queue_key(app: &str) -> String {
    format!("app/{app}")
}

/// What is sent when an app's status disappeared: its UUID alone.
pub fn deleted_app_info(app: &str) -> ZInfoApp {
    ZInfoApp {
        app_id: String::from(app),
        system_app: false,
        ..Default::default()
    }
}

impl Agent {
    /// zedmanager's status of app `app` changed (`Some`) or the app is gone
    /// (`None`): queues its `ZInfoApp` for the controller. The report's
    /// `appID` is always `app`, whatever the status says, so a controller
    /// files it under the key the bus uses.
    pub fn report_app(&mut self, app: &str, status: Option<ZInfoApp>) {
        let info = match status {
            Some(mut s) => {
                s.app_id = String::from(app);
                self.apps.insert(String::from(app), s.clone());
                s
            }
            None => {
                if self.apps.remove(app).is_none() {
                    return;
                }
                deleted_app_info(app)
            }
        };
        self.queue_app_info(info);
        if self.apps_shutting_down() {
            // The device state waits for every app to halt.
            self.notify_info_changed();
        }
    }

    /// domainmgr's metrics of app `app` (`None`: the app no longer runs),
    /// for the next metrics message.
    pub fn set_app_metrics(&mut self, app: &str, metrics: Option<AppMetric>) {
        match metrics {
            Some(mut m) => {
                m.app_id = String::from(app);
                self.app_metrics.insert(String::from(app), m);
            }
            None => {
                self.app_metrics.remove(app);
            }
        }
    }

    /// Every app's metrics (`ZMetricMsg.am`), in UUID order, each with
    /// its interfaces' counters from zedrouter and its disks.
    pub(super) fn app_metric_list(&self) -> Vec<AppMetric> {
        self.app_metrics
            .iter()
            .map(|(app, m)| AppMetric {
                network: self.app_network_metrics(app),
                disk: self.app_disks(&m.app_id),
                ..m.clone()
            })
            .collect()
    }

    /// Queues every known app's latest status again, as EVE does when it
    /// republishes all info.
    pub(super) fn requeue_apps(&mut self) {
        let all: Vec<ZInfoApp> = self.apps.values().cloned().collect();
        for info in all {
            self.queue_app_info(info);
        }
    }

    fn queue_app_info(&mut self, info: ZInfoApp) {
        let Some(uuid) = self.uuid.clone() else {
            // Sent with the first device info once the device has a UUID.
            return;
        };
        let key = queue_key(&info.app_id);
        let msg = ZInfoMsg {
            ztype: ZInfoTypes::ZiApp as i32,
            dev_id: uuid.clone(),
            info_content: Some(InfoContent::Ainfo(info)),
            at_time_stamp: Some(timestamp(self.unix_ms())),
        };
        let now = self.now();
        match self.sign(msg.encode_to_vec()) {
            Some(body) => {
                if self
                    .info
                    .push(key, format!("{API}/id/{uuid}/info"), body, now)
                {
                    self.counters.info_dropped += 1;
                }
            }
            None => self.note(Level::Error, String::from("cannot sign app info")),
        }
    }
}
