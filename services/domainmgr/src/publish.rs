//! What domainmgr has published: `domain-status` brought to the
//! manager's view (what changed published, what went withdrawn, then the
//! table declared synchronized once), and `app-metrics` replaced by each
//! measurement.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use runtime::service;
use topics::{AppMetrics, DomainState, DomainStatus, Topic};

type Metric = <AppMetrics as Topic>::Value;

/// The tables as last published.
#[derive(Default)]
pub struct Published {
    states: BTreeMap<String, DomainState>,
    metrics: BTreeMap<String, Metric>,
    synchronized: bool,
}

fn publish_one<T: Topic>(old: &mut BTreeMap<String, T::Value>, key: &str, value: &T::Value)
where
    T::Value: Clone,
{
    match service::publish::<T>(key, value) {
        Ok(()) => {
            old.insert(String::from(key), value.clone());
        }
        Err(e) => log::warn!("publishing {} {key}: {e}", T::NAME),
    }
}

impl Published {
    /// One domain's state before a slow host call (BOOTING, HALTING).
    pub fn progress(&mut self, uuid: &str, state: &DomainState) {
        if self.states.get(uuid) != Some(state) {
            publish_one::<DomainStatus>(&mut self.states, uuid, state);
        }
    }

    pub fn states(&mut self, states: &BTreeMap<String, DomainState>) {
        service::sync_table::<DomainStatus>(&mut self.states, states);
        if !self.synchronized {
            self.synchronized = true;
            if let Err(e) = service::synchronized::<DomainStatus>() {
                log::warn!("declaring {} synchronized: {e}", DomainStatus::NAME);
            }
        }
    }

    pub fn metrics(&mut self, metrics: Vec<Metric>) {
        let new: BTreeMap<String, Metric> =
            metrics.into_iter().map(|m| (m.app_id.clone(), m)).collect();
        service::sync_table::<AppMetrics>(&mut self.metrics, &new);
    }
}
