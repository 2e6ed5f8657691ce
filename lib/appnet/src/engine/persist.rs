//! Saving and restoring the state that must outlive a restart (see
//! [`crate::state`]).

use alloc::string::String;
use alloc::vec::Vec;

use smoltcp::time::{Duration, Instant};

use super::Engine;
use crate::acl::Action;
use crate::addresses::Reservation;
use crate::dhcp::LEASE_SECS;
use crate::flows::{Flow, FlowKey, Nat, Verdict};
use crate::state::{PARKED_FOR, Saved, SavedFlow, SavedHost, SavedReservation, StateError};
use crate::wire::PROTO_UDP;

/// What a restore took in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RestoreSummary {
    /// Address reservations put back into their instances.
    pub reservations: usize,
    /// Flows and learned addresses waiting for their interfaces (they are
    /// applied as the interfaces attach; those already attached got theirs).
    pub waiting: usize,
}

/// The most flows a save holds: about 118 bytes each, so the state stays
/// near 360 KB however many flows are tracked (zedrouter keeps it in two
/// snapshot slots of a 1 MiB volume). Beyond it the flows seen most
/// recently are kept: they are the connections an app is still using.
pub const MAX_SAVED_FLOWS: usize = 3072;

fn secs_until(now: Instant, until: Instant) -> u32 {
    u32::try_from((until - now).secs()).unwrap_or(u32::MAX - 1)
}

impl Engine {
    /// The flows worth a save: not UDP flows nobody answered (they end in
    /// 30 s, and after a restart a new outside port serves as well), and
    /// at most [`MAX_SAVED_FLOWS`], those seen most recently.
    fn flows_to_save(&self) -> Vec<&Flow> {
        let mut flows: Vec<&Flow> = self
            .flows
            .flows()
            .filter(|f| f.key.proto != PROTO_UDP || f.replied())
            .collect();
        if flows.len() > MAX_SAVED_FLOWS {
            flows.select_nth_unstable_by_key(MAX_SAVED_FLOWS, |f| core::cmp::Reverse(f.last));
            flows.truncate(MAX_SAVED_FLOWS);
        }
        flows
    }

    /// The state to keep across a restart, as bytes; bounded (see
    /// [`MAX_SAVED_FLOWS`]).
    pub fn export_state(&self, now: Instant) -> Vec<u8> {
        let mut saved = Saved::default();
        for inst in self.instances.values() {
            if let Some(local) = &inst.local {
                for (ip, r) in local.addresses.reservations() {
                    saved.reservations.push(SavedReservation {
                        instance: inst.cfg.uuid.clone(),
                        mac: r.mac,
                        ip,
                        held_secs: r.held_until.map(|until| secs_until(now, until.max(now))),
                    });
                }
            }
            for (pattern, ip) in inst.hosts.entries() {
                saved.hosts.push(SavedHost {
                    instance: inst.cfg.uuid.clone(),
                    pattern: String::from(pattern),
                    ip,
                });
            }
        }
        for flow in self.flows_to_save() {
            let Some(app) = self.apps.get(&flow.key.port) else {
                continue;
            };
            let Some(inst) = self.instances.get(&app.inst) else {
                continue;
            };
            let nat = match flow.nat {
                Some(nat) => match self.uplinks.get(&nat.uplink) {
                    Some(uplink) => {
                        Some((uplink.cfg.label.clone(), nat.external.0, nat.external.1))
                    }
                    None => continue,
                },
                None => None,
            };
            saved.flows.push(SavedFlow {
                instance: inst.cfg.uuid.clone(),
                mac: app.cfg.mac,
                proto: flow.key.proto,
                local: flow.key.local,
                remote: flow.key.remote,
                inbound: flow.inbound,
                rule_id: flow.verdict.rule_id,
                default_drop: flow.verdict.rule.is_none(),
                nat,
                start_ms: flow.start_ms,
                remaining_secs: secs_until(now, flow.expires.max(now)),
                tcp: flow.tcp,
                counts: [
                    flow.tx.bytes,
                    flow.tx.packets,
                    flow.rx.bytes,
                    flow.rx.packets,
                ],
            });
        }
        saved.encode()
    }

    /// Takes back state saved by [`Engine::export_state`]; see
    /// [`crate::state`] for when to call it. Bytes that do not read are
    /// refused and change nothing.
    pub fn restore_state(
        &mut self,
        now: Instant,
        bytes: &[u8],
    ) -> Result<RestoreSummary, StateError> {
        let saved = Saved::decode(bytes)?;
        let mut summary = RestoreSummary::default();
        for r in saved.reservations {
            let Some(inst) = self
                .by_uuid
                .get(&r.instance)
                .and_then(|id| self.instances.get_mut(id))
            else {
                continue;
            };
            let attached = inst
                .ports
                .iter()
                .any(|p| self.apps.get(p).is_some_and(|a| a.cfg.mac == r.mac));
            let Some(local) = inst.local.as_mut() else {
                continue;
            };
            if attached {
                continue;
            }
            let held = r.held_secs.unwrap_or(LEASE_SECS);
            let until = now + Duration::from_secs(u64::from(held));
            local.addresses.restore(
                &local.cfg,
                r.ip,
                Reservation {
                    mac: r.mac,
                    held_until: Some(until),
                },
            );
            self.deadline = Some(self.deadline.map_or(until, |d| d.min(until)));
            summary.reservations += 1;
        }
        self.parked.flows.extend(saved.flows);
        self.parked.hosts.extend(saved.hosts);
        let until = now + PARKED_FOR;
        self.parked.until = Some(until);
        self.wake_at(until);
        self.unpark(now);
        summary.waiting = self.parked.flows.len() + self.parked.hosts.len();
        Ok(summary)
    }

    /// Applies saved flows and learned addresses whose interfaces are here.
    pub(super) fn unpark(&mut self, now: Instant) {
        let flows = core::mem::take(&mut self.parked.flows);
        for saved in flows {
            if !self.restore_flow(now, &saved) {
                self.parked.flows.push(saved);
            }
        }
        let hosts = core::mem::take(&mut self.parked.hosts);
        for saved in hosts {
            let inst = self
                .by_uuid
                .get(&saved.instance)
                .and_then(|id| self.instances.get_mut(id));
            match inst {
                Some(inst) if inst.hosts.has_pattern(&saved.pattern) => {
                    inst.hosts.restore(&saved.pattern, saved.ip, now);
                }
                _ => self.parked.hosts.push(saved),
            }
        }
    }

    /// Puts a saved flow back if its interface is attached; false if it
    /// has to wait. A flow that can no longer be (its rule gone, its
    /// uplink's address changed, its ports taken) is dropped.
    fn restore_flow(&mut self, now: Instant, saved: &SavedFlow) -> bool {
        let Some(inst) = self
            .by_uuid
            .get(&saved.instance)
            .and_then(|id| self.instances.get(id))
        else {
            return false;
        };
        let port = inst
            .ports
            .iter()
            .copied()
            .find(|p| self.apps.get(p).is_some_and(|a| a.cfg.mac == saved.mac));
        let Some(port) = port else {
            return false;
        };
        let Some(app) = self.apps.get(&port) else {
            return false;
        };
        if inst.cfg.is_local() && app.ip != Some(saved.local.0) {
            return true;
        }
        let verdict = if saved.default_drop {
            Verdict {
                rule: None,
                rule_id: 0,
                drop: true,
            }
        } else {
            let Some(i) = app.rules.iter().position(|r| r.id == saved.rule_id) else {
                return true;
            };
            Verdict {
                rule: Some(i),
                rule_id: saved.rule_id,
                drop: app.rules[i].action == Action::Drop,
            }
        };
        let nat = match &saved.nat {
            Some((label, addr, outside)) => {
                let uplink = self
                    .uplinks
                    .iter()
                    .find(|(_, u)| u.cfg.label == *label && u.cfg.address.address() == *addr);
                match uplink {
                    Some((id, _)) => Some(Nat {
                        uplink: *id,
                        external: (*addr, *outside),
                    }),
                    None => return true,
                }
            }
            None => None,
        };
        let key = FlowKey {
            port,
            proto: saved.proto,
            local: saved.local,
            remote: saved.remote,
        };
        let remaining = Duration::from_secs(u64::from(saved.remaining_secs));
        let flow = Flow::restored(
            key,
            saved.inbound,
            verdict,
            nat,
            saved.start_ms,
            now,
            remaining,
            saved.tcp,
            saved.counts,
        );
        let expires = flow.expires;
        if self.flows.find(&key).is_none() && self.flows.insert(flow).is_ok() {
            self.wake_at(expires);
        }
        true
    }
}
