//! zedrouter's reports for the controller: each network instance's
//! `ZInfoNetworkInstance` (state, address assignments, VIFs, errors) as a
//! `ZInfoMsg` of type `ZiNetworkInstance`, as EVE's zedagent sends them.

use alloc::format;
use alloc::string::{String, ToString};

use eve_proto::Message;
use eve_proto::info::{ZInfoMsg, ZInfoNetworkInstance, ZInfoTypes, z_info_msg::InfoContent};

use crate::logs::Level;

use super::{API, Agent, timestamp};

impl Agent {
    /// Queues a network instance's report for the controller, replacing a
    /// queued one about the same instance.
    pub fn report_network_instance(&mut self, info: ZInfoNetworkInstance) {
        let Some(uuid) = self.uuid.clone() else {
            return;
        };
        let key = format!("network/{}", info.network_id);
        let msg = ZInfoMsg {
            ztype: ZInfoTypes::ZiNetworkInstance as i32,
            dev_id: uuid.to_string(),
            info_content: Some(InfoContent::Niinfo(info)),
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
            None => self.note(
                Level::Error,
                String::from("cannot sign network instance info"),
            ),
        }
    }
}
