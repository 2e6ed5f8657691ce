//! The `volumes` target: volume generations built from verified blobs of
//! the node's blob store (see `hostops::volumes` for the forms and the
//! interface). Builds run on threads of their own, so a call never holds
//! the caller's bus connection for longer than it takes to start one.

mod build;
mod qcow2_dirty;

use std::collections::BTreeMap;
use std::error::Error;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{SystemTime, UNIX_EPOCH};

use blobstore::{BlobState as StoreState, Digest};
use eve_broker::{RpcError, RpcHandler};
use hostops::volumes::{
    Component, Create, CreateRequest, Delete, Empty, List, Status, VolumeError, VolumeErrorCode,
    VolumeFormat, VolumeInfo, VolumeList, VolumeRef, VolumeState, Volumes,
};
use hostops::{Operation, Target, TargetSpec};

pub use build::QemuImg;
use build::{BUILDING, DELETING, QCOW2_DISK, Record, Source};

use super::content::Content;
use super::{HostTarget, Refused, TargetContext, serve};

/// Longest media type accepted for a container's manifest.
const MAX_MEDIA_TYPE: usize = 255;

/// One generation as the host knows it.
#[derive(Debug, Clone)]
struct Entry {
    record: Record,
    state: VolumeState,
    error: String,
}

/// The volumes target.
pub struct VolumesTarget {
    content: Arc<Content>,
    entries: Arc<Mutex<BTreeMap<String, Entry>>>,
    qemu_img: QemuImg,
}

/// Opens the node's volumes (and the blob store they are built from,
/// shared with the `blobs` target).
pub fn open(
    context: &TargetContext<'_>,
) -> Result<Arc<dyn HostTarget>, Box<dyn Error + Send + Sync>> {
    let content = Content::shared(context.state_dir, context.content)?;
    Ok(Arc::new(VolumesTarget::new(content, QemuImg::default())?))
}

/// A built volume generation, as another host target (app domains) sees
/// it: its form, its directory and the blobs it was built from (digest,
/// media type; a container's manifest first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltVolume {
    pub format: VolumeFormat,
    pub dir: PathBuf,
    pub components: Vec<(String, String)>,
}

/// The generation `name` under `volumes_dir` if it is built: only a
/// finished build is moved under its name with its record, so a volume
/// being built or deleted is not found. `name` must be a valid
/// `<uuid>.<generation>` (the caller checks it; it names a directory).
pub fn built_volume(volumes_dir: &Path, name: &str) -> Option<BuiltVolume> {
    let dir = volumes_dir.join(name);
    let record = build::read_record(&dir)?;
    let named = VolumeRef {
        uuid: record.uuid.clone(),
        generation: record.generation,
    }
    .name();
    (named.as_deref() == Some(name)).then(|| BuiltVolume {
        format: record.format(),
        dir,
        components: record.components,
    })
}

type Answer<T> = Result<T, Refused<VolumeError>>;

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn storage(subject: &str, detail: String) -> Refused<VolumeError> {
    Refused::Failed(VolumeError {
        detail,
        ..VolumeError::new(VolumeErrorCode::Storage, subject)
    })
}

fn name_of(volume: Option<&VolumeRef>) -> Answer<String> {
    volume.and_then(VolumeRef::name).ok_or_else(|| {
        Refused::BadRequest(String::from(
            "a volume is a lowercase UUID and a generation of 0 or more",
        ))
    })
}

impl VolumesTarget {
    /// The volumes under the content's directory: complete ones are kept,
    /// what a stop left half-built or half-deleted is removed.
    pub fn new(content: Arc<Content>, qemu_img: QemuImg) -> Result<VolumesTarget, String> {
        let dir = content.volumes_dir().to_path_buf();
        fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let mut entries = BTreeMap::new();
        let listing = fs::read_dir(&dir).map_err(|e| format!("listing {}: {e}", dir.display()))?;
        for item in listing.filter_map(Result::ok) {
            let name = item.file_name().to_string_lossy().into_owned();
            let path = item.path();
            let record = build::read_record(&path).filter(|r| {
                VolumeRef {
                    uuid: r.uuid.clone(),
                    generation: r.generation,
                }
                .name()
                .as_deref()
                    == Some(name.as_str())
            });
            match record {
                Some(record) => {
                    entries.insert(
                        name,
                        Entry {
                            record,
                            state: VolumeState::Ready,
                            error: String::new(),
                        },
                    );
                }
                None => {
                    if !(name.starts_with(BUILDING) || name.starts_with(DELETING)) {
                        log::warn!("volumes: {} is not a volume; removing it", path.display());
                    }
                    let removed = if path.is_dir() {
                        fs::remove_dir_all(&path)
                    } else {
                        fs::remove_file(&path)
                    };
                    removed.map_err(|e| format!("removing {}: {e}", path.display()))?;
                }
            }
        }
        Ok(VolumesTarget {
            content,
            entries: Arc::new(Mutex::new(entries)),
            qemu_img,
        })
    }

    fn entries(&self) -> MutexGuard<'_, BTreeMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn info(&self, name: &str, entry: &Entry) -> VolumeInfo {
        VolumeInfo {
            volume: Some(VolumeRef {
                uuid: entry.record.uuid.clone(),
                generation: entry.record.generation,
            }),
            format: entry.record.format() as i32,
            state: entry.state as i32,
            error: entry.error.clone(),
            name: String::from(name),
            size_bytes: entry.record.size_bytes,
            used_bytes: match entry.state {
                VolumeState::Ready => build::disk_usage(&self.content.volumes_dir().join(name)),
                _ => 0,
            },
            created_unix: entry.record.created_unix,
            dirty: entry.state == VolumeState::Ready
                && entry.record.format() == VolumeFormat::Qcow2
                && qcow2_dirty::is_dirty(&self.content.volumes_dir().join(name).join(QCOW2_DISK)),
        }
    }

    /// The verified blobs a request names, with where they are.
    fn sources(&self, components: &[Component]) -> Answer<Vec<Source>> {
        let mut store = self.content.store();
        let manager = store.manager();
        components
            .iter()
            .map(|c| {
                let digest: Digest = c
                    .digest
                    .parse()
                    .map_err(|e: blobstore::BadDigest| Refused::BadRequest(e.to_string()))?;
                let not_verified = || {
                    Refused::Failed(VolumeError::new(
                        VolumeErrorCode::NotVerified,
                        &digest.hex(),
                    ))
                };
                let info = manager
                    .status(digest)
                    .filter(|i| i.state == StoreState::Verified)
                    .ok_or_else(not_verified)?;
                let path = manager.verified_path(digest).ok_or_else(not_verified)?;
                Ok(Source {
                    digest: digest.hex(),
                    media_type: c.media_type.clone(),
                    path,
                    size: info.size.unwrap_or(0),
                })
            })
            .collect()
    }

    /// Refuses a build that would leave less than the reserve free.
    fn check_reserve(&self, name: &str, needed: u64) -> Answer<()> {
        let dir = self.content.volumes_dir();
        let free = rustix::fs::statvfs(dir)
            .map(|st| st.f_bavail.saturating_mul(st.f_frsize))
            .map_err(|e| storage(name, format!("measuring free space: {e}")))?;
        let reserve = self.content.options().reserve_bytes;
        if free.saturating_sub(needed) < reserve || free < needed {
            return Err(Refused::Failed(VolumeError {
                needed,
                free,
                reserve,
                ..VolumeError::new(VolumeErrorCode::Reserve, name)
            }));
        }
        Ok(())
    }

    fn create(&self, request: CreateRequest) -> Answer<VolumeInfo> {
        let volume = request.volume.clone();
        let name = name_of(volume.as_ref())?;
        let format = request.format();
        let wanted_components = match format {
            VolumeFormat::Raw | VolumeFormat::Qcow2 => request.components.len() == 1,
            VolumeFormat::Container => request.components.len() >= 2,
            VolumeFormat::Blank => request.components.is_empty() && request.max_size_bytes > 0,
            VolumeFormat::Unspecified => false,
        };
        if !wanted_components {
            return Err(Refused::BadRequest(format!(
                "a {format:?} volume needs {}",
                match format {
                    VolumeFormat::Raw | VolumeFormat::Qcow2 => "exactly one image",
                    VolumeFormat::Container => "a manifest, a config and its layers",
                    VolumeFormat::Blank => "no blobs and a size",
                    VolumeFormat::Unspecified => "a format",
                }
            )));
        }
        if format == VolumeFormat::Container {
            let media_type = &request.components[0].media_type;
            let printable = media_type.bytes().all(|b| b.is_ascii_graphic());
            if media_type.is_empty() || media_type.len() > MAX_MEDIA_TYPE || !printable {
                return Err(Refused::BadRequest(String::from(
                    "the manifest's media type is missing or not printable",
                )));
            }
        }
        let volume = volume.unwrap_or_default();
        let record = Record {
            uuid: volume.uuid.clone(),
            generation: volume.generation,
            format: build::format_name(format).to_owned(),
            components: request
                .components
                .iter()
                .map(|c| (c.digest.clone(), c.media_type.clone()))
                .collect(),
            max_size_bytes: request.max_size_bytes,
            size_bytes: 0,
            created_unix: now_unix(),
        };
        if let Some(entry) = self.entries().get(&name) {
            let same = entry.record.format == record.format
                && entry.record.components == record.components
                && entry.record.max_size_bytes == record.max_size_bytes;
            return if same {
                Ok(self.info(&name, entry))
            } else {
                Err(Refused::Failed(VolumeError::new(
                    VolumeErrorCode::Exists,
                    &name,
                )))
            };
        }
        let sources = self.sources(&request.components)?;
        let copied = match format {
            VolumeFormat::Raw | VolumeFormat::Qcow2 => sources.iter().map(|s| s.size).sum(),
            _ => 0,
        };
        self.check_reserve(&name, copied)?;
        let entry = Entry {
            record,
            state: VolumeState::Creating,
            error: String::new(),
        };
        let info = self.info(&name, &entry);
        self.entries().insert(name.clone(), entry.clone());
        log::info!(
            "volumes: building {name} ({format:?}, {}) from {} verified blobs",
            request.display_name,
            sources.len()
        );
        let (entries, qemu_img) = (self.entries.clone(), self.qemu_img.clone());
        let volumes = self.content.volumes_dir().to_path_buf();
        thread::Builder::new()
            .name(format!("volume {name}"))
            .spawn(move || {
                let done = build_one(&volumes, &name, entry.record, &sources, &qemu_img);
                let mut entries = entries.lock().unwrap_or_else(|e| e.into_inner());
                match &done.error[..] {
                    "" => log::info!("volumes: {name} ready"),
                    why => log::warn!("volumes: {name} failed: {why}"),
                }
                entries.insert(name, done);
            })
            .map_err(|e| storage(&info.name, format!("starting the build: {e}")))?;
        Ok(info)
    }

    fn delete(&self, volume: &VolumeRef) -> Answer<Empty> {
        let name = name_of(Some(volume))?;
        let mut entries = self.entries();
        match entries.get(&name).map(|e| e.state) {
            None => Err(Refused::Failed(VolumeError::new(
                VolumeErrorCode::NotFound,
                &name,
            ))),
            Some(VolumeState::Creating) => Err(Refused::Failed(VolumeError::new(
                VolumeErrorCode::Busy,
                &name,
            ))),
            Some(VolumeState::Ready) => {
                build::remove(self.content.volumes_dir(), &name).map_err(|e| storage(&name, e))?;
                entries.remove(&name);
                log::info!("volumes: {name} deleted");
                Ok(Empty {})
            }
            // A failed build left nothing under the volume's name.
            Some(_) => {
                entries.remove(&name);
                Ok(Empty {})
            }
        }
    }
}

/// Builds `name` in a `.building-` directory and moves it into place.
fn build_one(
    volumes: &Path,
    name: &str,
    mut record: Record,
    sources: &[Source],
    qemu_img: &QemuImg,
) -> Entry {
    let building: PathBuf = volumes.join(format!("{BUILDING}{name}"));
    let result = (|| {
        if building.exists() {
            fs::remove_dir_all(&building).map_err(|e| format!("clearing {name}: {e}"))?;
        }
        fs::create_dir(&building).map_err(|e| format!("creating {name}: {e}"))?;
        record.size_bytes = build::build(
            &building,
            record.format(),
            sources,
            record.max_size_bytes,
            qemu_img,
        )?;
        build::finish(&building, &volumes.join(name), &record)
    })();
    match result {
        Ok(()) => Entry {
            record,
            state: VolumeState::Ready,
            error: String::new(),
        },
        Err(error) => {
            let _ = fs::remove_dir_all(&building);
            Entry {
                record,
                state: VolumeState::Failed,
                error,
            }
        }
    }
}

impl RpcHandler for VolumesTarget {
    fn call(&self, caller: &str, operation: &str, request: &[u8]) -> Result<Vec<u8>, RpcError> {
        log::debug!("volumes: {operation} for {caller}");
        match operation {
            Create::NAME => serve::<Create>(request, |r| self.create(r)),
            Status::NAME => serve::<Status>(request, |r| {
                let name = name_of(Some(&r))?;
                let entries = self.entries();
                entries
                    .get(&name)
                    .map(|e| self.info(&name, e))
                    .ok_or_else(|| {
                        Refused::Failed(VolumeError::new(VolumeErrorCode::NotFound, &name))
                    })
            }),
            List::NAME => serve::<List>(request, |_| {
                let entries = self.entries();
                Ok(VolumeList {
                    volumes: entries.iter().map(|(n, e)| self.info(n, e)).collect(),
                })
            }),
            Delete::NAME => serve::<Delete>(request, |r| self.delete(&r)),
            other => Err(RpcError::BadRequest(format!(
                "volumes has no operation {other}"
            ))),
        }
    }
}

impl HostTarget for VolumesTarget {
    fn spec(&self) -> &'static TargetSpec {
        &Volumes::SPEC
    }

    fn describe(&self) -> String {
        format!(
            "{} ({} volume generations)",
            self.content.volumes_dir().display(),
            self.entries().len()
        )
    }
}
