//! Volumes: each configured volume's generation built by the host from
//! its content tree's verified blobs (or blank), the old generation kept
//! until the new one is ready and no domain runs with it, host volumes
//! nobody configures removed once no domain runs with them.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use eve_proto::config::{Format, Volume, VolumeContentOriginType};
use eve_proto::info::ZSwState;
use hostops::volumes::{Component, CreateRequest, VolumeFormat, VolumeInfo, VolumeRef};
use topics::content::VolumeState;

use crate::Host;
use crate::manager::{Manager, View};

/// The UUID of a host volume's name (`<uuid>.<generation>`).
fn uuid_of(name: &str) -> &str {
    name.split_once('.').map_or(name, |(uuid, _)| uuid)
}

fn host_ref(info: &VolumeInfo) -> VolumeRef {
    info.volume.clone().unwrap_or_default()
}

impl Manager {
    /// Reconciles every volume; whether a build or a download is moving.
    pub(crate) fn reconcile_volumes(
        &mut self,
        host: &mut dyn Host,
        view: &mut View,
        now: u64,
    ) -> bool {
        let mut busy = false;
        let mut states = BTreeMap::new();
        let configured: Vec<(String, Volume)> = self
            .volume_config
            .iter()
            .map(|(u, v)| (u.clone(), v.clone()))
            .collect();
        for (uuid, volume) in configured {
            let mut state = VolumeState {
                uuid: uuid.clone(),
                display_name: volume.display_name.clone(),
                generation_count: volume.generation_count,
                max_size_bytes: u64::try_from(volume.maxsizebytes).unwrap_or(0),
                ..Default::default()
            };
            match self.reconcile_volume(&uuid, &volume, host, view, now, &mut state) {
                Ok(moving) => busy |= moving,
                Err(error) => {
                    state.state = ZSwState::Error as i32;
                    state.error = error;
                    state.error_unix = now;
                }
            }
            states.insert(uuid, state);
        }
        let orphans: Vec<VolumeInfo> = view
            .volumes
            .values()
            .filter(|v| !self.volume_config.contains_key(uuid_of(&v.name)))
            .cloned()
            .collect();
        for orphan in orphans {
            self.retire(host, view, &orphan, "no longer configured");
        }
        self.domains
            .forget_missing(|name| view.volumes.contains_key(name));
        self.build_failed_at.retain(|name, _| {
            view.volumes
                .get(name)
                .is_some_and(|v| v.state() == hostops::volumes::VolumeState::Failed)
        });
        self.volume_states = states;
        busy
    }

    fn reconcile_volume(
        &mut self,
        uuid: &str,
        volume: &Volume,
        host: &mut dyn Host,
        view: &mut View,
        now: u64,
        state: &mut VolumeState,
    ) -> Result<bool, String> {
        let wanted = VolumeRef {
            uuid: String::from(uuid),
            generation: volume.generation_count,
        };
        let name = wanted.name().ok_or_else(|| {
            String::from("the volume's id is not a UUID or its generation is negative")
        })?;
        let mut generations: Vec<&VolumeInfo> = view
            .volumes
            .values()
            .filter(|v| uuid_of(&v.name) == uuid)
            .collect();
        generations.sort_by_key(|v| host_ref(v).generation);
        state.host_generations = generations.iter().map(|v| v.name.clone()).collect();
        // Until the wanted generation is ready, the newest ready one serves.
        if let Some(old) = generations
            .iter()
            .rev()
            .find(|v| v.state() == hostops::volumes::VolumeState::Ready)
        {
            state.host_volume = old.name.clone();
            state.used_bytes = old.used_bytes;
        }
        let current = view.volumes.get(&name).cloned();
        match current.as_ref().map(VolumeInfo::state) {
            Some(hostops::volumes::VolumeState::Ready) => {
                let info = current.unwrap_or_default();
                state.state = ZSwState::CreatedVolume as i32;
                state.progress_percent = 100;
                state.host_volume = name.clone();
                state.used_bytes = info.used_bytes;
                // Make-before-break: only now do older generations go.
                let older: Vec<VolumeInfo> = view
                    .volumes
                    .values()
                    .filter(|v| uuid_of(&v.name) == uuid && v.name != name)
                    .cloned()
                    .collect();
                let why = format!("{name} replaced it");
                for old in older {
                    self.retire(host, view, &old, &why);
                }
                state.host_generations = view
                    .volumes
                    .keys()
                    .filter(|n| uuid_of(n) == uuid)
                    .cloned()
                    .collect();
                Ok(false)
            }
            Some(hostops::volumes::VolumeState::Creating) => {
                state.state = ZSwState::CreatingVolume as i32;
                Ok(true)
            }
            Some(hostops::volumes::VolumeState::Failed) => {
                let error = current.map(|v| v.error).unwrap_or_default();
                let seen = *self.build_failed_at.entry(name).or_insert(now);
                if now >= seen.saturating_add(self.settings.download_retry_secs) {
                    match host.delete_volume(&wanted) {
                        Ok(()) => {
                            view.volumes.remove(&wanted.name().unwrap_or_default());
                        }
                        Err(e) => log::warn!("clearing a failed build: {e}"),
                    }
                }
                Err(format!("building the volume failed: {error}"))
            }
            _ => {
                let Some(request) = self.build_request(volume, wanted, state)? else {
                    return Ok(state.state != ZSwState::Error as i32);
                };
                match host.create_volume(&request) {
                    Ok(info) => {
                        state.state = match info.state() {
                            hostops::volumes::VolumeState::Ready => ZSwState::CreatedVolume,
                            _ => ZSwState::CreatingVolume,
                        } as i32;
                        view.volumes.insert(info.name.clone(), info);
                        Ok(true)
                    }
                    Err(e) => Err(e.to_string()),
                }
            }
        }
    }

    /// Deletes host volume `old` (`why`: what made it unneeded) unless a
    /// domain may run with it; then it stays, and goes on a later
    /// reconciliation once no domain lists it.
    fn retire(&mut self, host: &mut dyn Host, view: &mut View, old: &VolumeInfo, why: &str) {
        if let Some(held) = self.domains.holds(&old.name) {
            self.domains.note_kept(&old.name, held, why);
            return;
        }
        match host.delete_volume(&host_ref(old)) {
            Ok(()) => {
                log::info!("deleted volume {}: {why}", old.name);
                view.volumes.remove(&old.name);
            }
            Err(e) => log::warn!("deleting volume {}: {e}", old.name),
        }
    }

    /// What to ask the host to build, once the volume's content is ready;
    /// until then the volume follows its content tree's state.
    fn build_request(
        &self,
        volume: &Volume,
        wanted: VolumeRef,
        state: &mut VolumeState,
    ) -> Result<Option<CreateRequest>, String> {
        let origin = volume.origin.clone().unwrap_or_default();
        let max_size_bytes = u64::try_from(volume.maxsizebytes).unwrap_or(0);
        let (format, components) = match origin.r#type() {
            VolumeContentOriginType::VcotBlank => {
                if max_size_bytes == 0 {
                    return Err(String::from("a blank volume needs maxsizebytes"));
                }
                (VolumeFormat::Blank, Vec::new())
            }
            VolumeContentOriginType::VcotDownload => {
                let tree_id = &origin.download_content_tree_id;
                let tree = self
                    .tree_states
                    .get(tree_id)
                    .ok_or_else(|| format!("content tree {tree_id} is not in the config"))?;
                if tree.state != ZSwState::Loaded as i32 {
                    state.state = tree.state;
                    state.progress_percent = tree.progress_percent;
                    if tree.state == ZSwState::Error as i32 {
                        return Err(format!("content tree {tree_id}: {}", tree.error));
                    }
                    return Ok(None);
                }
                let ct = self.tree_config.get(tree_id).cloned().unwrap_or_default();
                let run = self.runs.get(tree_id).cloned().unwrap_or_default();
                let root = run.root.clone().unwrap_or_default();
                let image = |digest: String| {
                    vec![Component {
                        digest,
                        media_type: String::new(),
                    }]
                };
                match ct.iformat() {
                    Format::Raw | Format::Iso => (VolumeFormat::Raw, image(root)),
                    Format::Qcow | Format::Qcow2 => (VolumeFormat::Qcow2, image(root)),
                    Format::Container => (
                        VolumeFormat::Container,
                        run.image
                            .clone()
                            .ok_or("the image's manifest was not walked")?,
                    ),
                    other => {
                        return Err(format!(
                            "content tree {tree_id}: format {} is not supported",
                            other.as_str_name()
                        ));
                    }
                }
            }
            VolumeContentOriginType::VcotUnknown => {
                return Err(String::from("the volume's origin is unknown"));
            }
        };
        Ok(Some(CreateRequest {
            volume: Some(wanted),
            format: format as i32,
            components,
            max_size_bytes,
            display_name: volume.display_name.clone(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_split_at_the_generation() {
        assert_eq!(
            uuid_of("6ba7b810-9dad-11d1-80b4-00c04fd430c8.3"),
            "6ba7b810-9dad-11d1-80b4-00c04fd430c8"
        );
        assert_eq!(uuid_of("odd"), "odd");
    }
}
