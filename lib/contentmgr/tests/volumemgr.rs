//! volumemgr's logic against the host's real `blobs` and `volumes`
//! targets (a temporary state directory, the real `qemu-img`), with a
//! downloader played by the test: it serves what a datastore or registry
//! would, through the same blob store operations the real one calls.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use contentmgr::{Host, HostError, Manager};
use eve_broker::{RpcError, RpcHandler};
use eve_host::targets::blobs::BlobsTarget;
use eve_host::targets::content::{Content, ContentOptions};
use eve_host::targets::volumes::{QemuImg, VolumesTarget};
use eve_proto::config::{
    ContentTree, Format, Volume, VolumeContentOrigin, VolumeContentOriginType,
};
use eve_proto::info::ZSwState;
use hostops::Operation;
use hostops::blobs::{self, BlobError, BlobList, Expected};
use hostops::volumes::{self, CreateRequest, VolumeError, VolumeInfo, VolumeRef};
use prost::Message;
use sha2::{Digest as _, Sha256};
use topics::DomainState;
use topics::content::{DownloadKind, DownloadProgress, DownloadRequest, DownloadState, Settings};

/// The host's targets as volumemgr calls them over the bus.
struct RealHost {
    blobs: BlobsTarget,
    volumes: VolumesTarget,
}

fn call<O: Operation>(
    target: &dyn RpcHandler,
    caller: &str,
    request: &O::Request,
) -> Result<O::Response, RpcError> {
    target
        .call(caller, O::NAME, &request.encode_to_vec())
        .map(|b| O::Response::decode(b.as_slice()).expect("a response"))
}

fn blob_err(e: RpcError) -> HostError {
    match e {
        RpcError::Failed { error, .. } => {
            HostError::Blob(BlobError::decode(error.as_slice()).expect("an error"))
        }
        other => HostError::Call(other.to_string()),
    }
}

fn volume_err(e: RpcError) -> HostError {
    match e {
        RpcError::Failed { error, .. } => {
            HostError::Volume(VolumeError::decode(error.as_slice()).expect("an error"))
        }
        other => HostError::Call(other.to_string()),
    }
}

const ME: &str = "volumemgr";

impl Host for RealHost {
    fn expect(
        &mut self,
        holder: &str,
        digest: &str,
        size: Option<u64>,
    ) -> Result<Expected, HostError> {
        call::<blobs::Expect>(
            &self.blobs,
            ME,
            &blobs::ExpectRequest {
                holder: holder.into(),
                digest: digest.into(),
                size,
            },
        )
        .map_err(blob_err)
    }
    fn reassert(&mut self, holder: &str, digests: &[String]) -> Result<Vec<String>, HostError> {
        call::<blobs::Reassert>(
            &self.blobs,
            ME,
            &blobs::ReassertRequest {
                holder: holder.into(),
                digests: digests.to_vec(),
            },
        )
        .map(|d| d.digests)
        .map_err(blob_err)
    }
    fn blobs(&mut self) -> Result<BlobList, HostError> {
        call::<blobs::List>(&self.blobs, ME, &blobs::Empty {}).map_err(blob_err)
    }
    fn read(&mut self, digest: &str, offset: u64, length: u32) -> Result<Vec<u8>, HostError> {
        call::<blobs::Read>(
            &self.blobs,
            ME,
            &blobs::ReadRequest {
                digest: digest.into(),
                offset,
                length,
            },
        )
        .map(|c| c.data)
        .map_err(blob_err)
    }
    fn collect_garbage(&mut self, after_secs: u64) -> Result<Vec<String>, HostError> {
        call::<blobs::CollectGarbage>(
            &self.blobs,
            ME,
            &blobs::GcRequest {
                unreferenced_for_secs: after_secs,
            },
        )
        .map(|d| d.digests)
        .map_err(blob_err)
    }
    fn create_volume(&mut self, request: &CreateRequest) -> Result<VolumeInfo, HostError> {
        call::<volumes::Create>(&self.volumes, ME, request).map_err(volume_err)
    }
    fn volumes(&mut self) -> Result<Vec<VolumeInfo>, HostError> {
        call::<volumes::List>(&self.volumes, ME, &volumes::Empty {})
            .map(|l| l.volumes)
            .map_err(volume_err)
    }
    fn delete_volume(&mut self, volume: &VolumeRef) -> Result<(), HostError> {
        call::<volumes::Delete>(&self.volumes, ME, volume)
            .map(|_| ())
            .map_err(volume_err)
    }
}

fn hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What the test's "datastore" serves: blobs by digest (possibly other
/// bytes than their digest's), and tags.
#[derive(Default)]
struct Origin {
    blobs: BTreeMap<String, Vec<u8>>,
    tags: BTreeMap<String, (String, String)>,
}

/// The downloader's part, played synchronously.
struct Downloader {
    blobs: BlobsTarget,
    origin: Origin,
    /// Bytes written for each key since the test started.
    fetched: BTreeMap<String, u64>,
    /// The attempt of each key that ended (done or failed): as the real
    /// downloader, it is not tried again until volumemgr asks again.
    ended: BTreeMap<String, u32>,
}

impl Downloader {
    /// Serves every request once per attempt (or only `limit` bytes of
    /// it); reports progress to the manager.
    fn serve(&mut self, manager: &mut Manager, limit: Option<u64>) {
        let requests: Vec<(String, DownloadRequest)> = manager
            .requests()
            .iter()
            .map(|(k, r)| (k.clone(), r.clone()))
            .collect();
        for (key, request) in requests {
            if self.ended.get(&key) == Some(&request.attempt) {
                continue;
            }
            let progress = self.one(&request, limit);
            if matches!(
                progress.state(),
                DownloadState::Done | DownloadState::Failed
            ) {
                self.ended.insert(key.clone(), request.attempt);
            }
            manager.set_download(&key, Some(progress));
        }
    }

    fn one(&mut self, request: &DownloadRequest, limit: Option<u64>) -> DownloadProgress {
        let base = DownloadProgress {
            attempt: request.attempt,
            ..Default::default()
        };
        if request.kind() == DownloadKind::Resolve {
            return match self.origin.tags.get(&request.url) {
                Some((digest, media_type)) => DownloadProgress {
                    state: DownloadState::Done as i32,
                    resolved_digest: digest.clone(),
                    media_type: media_type.clone(),
                    ..base
                },
                None => DownloadProgress {
                    state: DownloadState::Failed as i32,
                    error: "tag not found".into(),
                    ..base
                },
            };
        }
        let Some(data) = self.origin.blobs.get(&request.digest).cloned() else {
            return DownloadProgress {
                state: DownloadState::Failed as i32,
                error: "404 not found".into(),
                ..base
            };
        };
        let staged = call::<blobs::StagedLength>(
            &self.blobs,
            "downloader",
            &blobs::BlobRef {
                digest: request.digest.clone(),
            },
        )
        .expect("a slot was expected")
        .length;
        let end = limit.map_or(data.len() as u64, |l| (staged + l).min(data.len() as u64));
        let mut offset = staged;
        for chunk in data[staged as usize..end as usize].chunks(blobs::MAX_CHUNK) {
            let written = call::<blobs::Write>(
                &self.blobs,
                "downloader",
                &blobs::WriteRequest {
                    digest: request.digest.clone(),
                    offset,
                    data: chunk.to_vec(),
                },
            );
            match written {
                Ok(s) => offset = s.length,
                Err(e) => {
                    return DownloadProgress {
                        state: DownloadState::Failed as i32,
                        staged: offset,
                        error: blob_err(e).to_string(),
                        ..base
                    };
                }
            }
        }
        *self.fetched.entry(request.digest.clone()).or_default() += end - staged;
        if end < data.len() as u64 {
            return DownloadProgress {
                state: DownloadState::Downloading as i32,
                staged: end,
                total: Some(data.len() as u64),
                ..base
            };
        }
        match call::<blobs::Complete>(
            &self.blobs,
            "downloader",
            &blobs::BlobRef {
                digest: request.digest.clone(),
            },
        ) {
            Ok(_) => DownloadProgress {
                state: DownloadState::Done as i32,
                staged: end,
                total: Some(end),
                ..base
            },
            Err(e) => {
                let error = blob_err(e);
                let mismatch = matches!(&error, HostError::Blob(b) if b.code() == blobs::BlobErrorCode::Mismatch);
                DownloadProgress {
                    state: DownloadState::Failed as i32,
                    error: error.to_string(),
                    mismatch,
                    ..base
                }
            }
        }
    }
}

struct Node {
    _dir: tempfile::TempDir,
    host: RealHost,
    downloader: Downloader,
    manager: Manager,
    content: Arc<Content>,
    now: u64,
}

impl Node {
    fn new(options: ContentOptions) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let content = Content::shared(dir.path(), options).unwrap();
        let host = RealHost {
            blobs: BlobsTarget::new(content.clone()),
            volumes: VolumesTarget::new(content.clone(), QemuImg::default()).unwrap(),
        };
        let mut manager = Manager::new("x86_64");
        manager.trees_synchronized();
        manager.volumes_synchronized();
        // No domains: every generation is free to go once replaced.
        manager.domains_synchronized();
        manager.set_settings(Settings {
            gc_vdisk_secs: 3600,
            download_retry_secs: 600,
        });
        Node {
            _dir: dir,
            downloader: Downloader {
                blobs: BlobsTarget::new(content.clone()),
                origin: Origin::default(),
                fetched: BTreeMap::new(),
                ended: BTreeMap::new(),
            },
            host,
            manager,
            content,
            now: 1_000,
        }
    }

    fn reconcile(&mut self) {
        self.manager
            .reconcile(&mut self.host, self.now)
            .expect("the host answers");
    }

    /// Reconciles and downloads until nothing moves (builds included).
    fn settle(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            self.reconcile();
            self.downloader.serve(&mut self.manager, None);
            self.reconcile();
            let busy = self
                .manager
                .reconcile(&mut self.host, self.now)
                .unwrap()
                .busy;
            if !busy {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "never settled: {:?}",
                self.manager.tree_states()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn tree(&self, uuid: &str) -> topics::content::ContentTreeState {
        self.manager.tree_states()[uuid].clone()
    }

    fn volume(&self, uuid: &str) -> topics::content::VolumeState {
        self.manager.volume_states()[uuid].clone()
    }
}

const T1: &str = "11111111-1111-4111-8111-111111111111";
const T2: &str = "22222222-2222-4222-8222-222222222222";
const V1: &str = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa";
const V2: &str = "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb";

fn file_tree(sha256: &str, format: Format) -> ContentTree {
    ContentTree {
        uuid: T1.into(),
        ds_id: "ds".into(),
        url: "disk.img".into(),
        iformat: format as i32,
        sha256: sha256.into(),
        display_name: "disk".into(),
        ..Default::default()
    }
}

fn volume(tree: &str, generation: i64, max: i64) -> Volume {
    Volume {
        uuid: V1.into(),
        origin: Some(VolumeContentOrigin {
            r#type: VolumeContentOriginType::VcotDownload as i32,
            download_content_tree_id: tree.into(),
        }),
        generation_count: generation,
        maxsizebytes: max,
        display_name: "vol".into(),
        ..Default::default()
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed))
        .collect()
}

#[test]
fn a_disk_image_goes_from_download_to_volume_and_a_purge_swaps_generations() {
    let mut node = Node::new(ContentOptions::default());
    let disk = pattern(600_000, 3);
    let digest = hex(&disk);
    node.downloader
        .origin
        .blobs
        .insert(digest.clone(), disk.clone());
    node.manager
        .set_tree(T1, Some(file_tree(&digest.to_uppercase(), Format::Raw)));
    node.manager.set_volume(V1, Some(volume(T1, 0, 1 << 20)));

    node.reconcile();
    let request = node.manager.requests()[&digest].clone();
    assert_eq!(
        (
            request.kind(),
            request.url.as_str(),
            request.datastores.as_slice()
        ),
        (DownloadKind::File, "disk.img", &["ds".to_string()][..])
    );
    // Half of it.
    node.downloader.serve(&mut node.manager, Some(300_000));
    node.reconcile();
    let tree = node.tree(T1);
    assert_eq!(tree.state, ZSwState::DownloadStarted as i32);
    assert_eq!(tree.progress_percent, 50);
    assert_eq!(node.volume(V1).state, ZSwState::DownloadStarted as i32);

    node.settle();
    let tree = node.tree(T1);
    assert_eq!(tree.state, ZSwState::Loaded as i32, "{tree:?}");
    assert_eq!(
        (tree.sha256.as_str(), tree.components.as_slice()),
        (&digest[..], &[digest.clone()][..])
    );
    assert!(node.manager.requests().is_empty());
    let vol = node.volume(V1);
    assert_eq!(vol.state, ZSwState::CreatedVolume as i32, "{vol:?}");
    assert_eq!(vol.host_volume, format!("{V1}.0"));
    let disk_file = node.content.volumes_dir().join(format!("{V1}.0/disk.raw"));
    assert_eq!(&std::fs::read(&disk_file).unwrap()[..disk.len()], &disk[..]);
    // Its use as app disk metrics take it: the host's disk, its format
    // and what it takes on the host (the image's bytes, not its grown size).
    let usage = &node.manager.usage().volumes;
    assert_eq!(usage.len(), 1, "{usage:?}");
    assert_eq!(
        (
            usage[0].disk.as_str(),
            usage[0].disk_type.as_str(),
            usage[0].dirty
        ),
        (format!("{V1}.0").as_str(), "raw", false)
    );
    assert_eq!(usage[0].total_bytes, 1 << 20);
    assert!(
        usage[0].used_bytes >= disk.len() as u64 && usage[0].used_bytes < 1 << 20,
        "{usage:?}"
    );

    // Purge: the next generation is built while the old one stays.
    let before = std::fs::metadata(&disk_file).unwrap().modified().unwrap();
    node.manager.set_volume(V1, Some(volume(T1, 1, 1 << 20)));
    node.reconcile();
    let during = node.volume(V1);
    assert!(
        during.state == ZSwState::CreatingVolume as i32
            || during.state == ZSwState::CreatedVolume as i32,
        "{during:?}"
    );
    if during.state == ZSwState::CreatingVolume as i32 {
        assert_eq!(
            during.host_volume,
            format!("{V1}.0"),
            "the old one serves until then"
        );
        assert!(disk_file.exists());
        assert_eq!(
            std::fs::metadata(&disk_file).unwrap().modified().unwrap(),
            before
        );
    }
    node.settle();
    let after = node.volume(V1);
    assert_eq!(after.host_volume, format!("{V1}.1"));
    assert_eq!(after.host_generations, [format!("{V1}.1")]);
    assert!(
        !disk_file.exists(),
        "the old generation stayed after the new was ready"
    );

    // The volume and the tree go: the volume at once, the blob after the
    // GC timer.
    node.manager.set_volume(V1, None);
    node.manager.set_tree(T1, None);
    node.settle();
    assert!(node.host.volumes().unwrap().is_empty());
    let list = node.host.blobs().unwrap();
    assert!(list.blobs[0].holders.is_empty(), "{list:?}");
    node.manager.set_settings(Settings {
        gc_vdisk_secs: 0,
        download_retry_secs: 600,
    });
    node.now += 120;
    node.settle();
    assert!(node.host.blobs().unwrap().blobs.is_empty());
}

#[test]
fn a_wrong_sha256_is_retried_a_bounded_number_of_times_and_never_becomes_a_volume() {
    let mut node = Node::new(ContentOptions::default());
    let served = b"the bytes the server has".to_vec();
    let claimed = hex(b"the bytes the config names");
    node.downloader
        .origin
        .blobs
        .insert(claimed.clone(), served.clone());
    node.manager
        .set_tree(T1, Some(file_tree(&claimed, Format::Raw)));
    node.manager.set_volume(V1, Some(volume(T1, 0, 0)));
    for _ in 0..10 {
        node.reconcile();
        node.downloader.serve(&mut node.manager, None);
    }
    node.reconcile();
    let tree = node.tree(T1);
    assert_eq!(tree.state, ZSwState::Error as i32);
    assert!(
        tree.error.contains(&claimed) && tree.error.contains(&hex(&served)),
        "{}",
        tree.error
    );
    let vol = node.volume(V1);
    assert_eq!(vol.state, ZSwState::Error as i32);
    assert!(node.host.volumes().unwrap().is_empty());
    // Three mismatches at once, then nothing until the retry timer.
    assert_eq!(node.downloader.fetched[&claimed], 3 * served.len() as u64);
    node.now += 601;
    node.reconcile();
    node.downloader.serve(&mut node.manager, None);
    assert_eq!(node.downloader.fetched[&claimed], 4 * served.len() as u64);
    let report = node.manager.blob_report();
    assert!(report.blobs[0].error.contains(&hex(&served)), "{report:?}");
}

/// An OCI image index with an amd64 and an arm64 image, each with a
/// config and two layers.
fn image_index(origin: &mut Origin) -> (String, Vec<String>) {
    let mut entries = Vec::new();
    let mut amd64 = Vec::new();
    for arch in ["amd64", "arm64"] {
        let config = format!(r#"{{"architecture":"{arch}","os":"linux"}}"#).into_bytes();
        let layers = [
            pattern(70_000, arch.len() as u8),
            pattern(90_000, 1 + arch.len() as u8),
        ];
        let layer_json: Vec<String> = layers
            .iter()
            .map(|l| {
                format!(
                    r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:{}","size":{}}}"#,
                    hex(l),
                    l.len()
                )
            })
            .collect();
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{}","size":{}}},"layers":[{}]}}"#,
            hex(&config),
            config.len(),
            layer_json.join(",")
        )
        .into_bytes();
        entries.push(format!(
            r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{}","size":{},"platform":{{"os":"linux","architecture":"{arch}"}}}}"#,
            hex(&manifest),
            manifest.len()
        ));
        if arch == "amd64" {
            amd64 = vec![
                hex(&manifest),
                hex(&config),
                hex(&layers[0]),
                hex(&layers[1]),
            ];
        }
        origin.blobs.insert(hex(&manifest), manifest);
        origin.blobs.insert(hex(&config), config);
        for l in layers {
            origin.blobs.insert(hex(&l), l);
        }
    }
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{}]}}"#,
        entries.join(",")
    )
    .into_bytes();
    let digest = hex(&index);
    origin.blobs.insert(digest.clone(), index);
    (digest, amd64)
}

#[test]
fn an_oci_image_by_tag_is_resolved_walked_for_the_nodes_arch_and_laid_out() {
    let mut node = Node::new(ContentOptions::default());
    let (index, amd64) = image_index(&mut node.downloader.origin);
    node.downloader.origin.tags.insert(
        "docker://registry.local/app:1.0".into(),
        (
            index.clone(),
            "application/vnd.oci.image.index.v1+json".into(),
        ),
    );
    let tree = ContentTree {
        uuid: T2.into(),
        ds_id: "registry".into(),
        url: "docker://registry.local/app:1.0".into(),
        iformat: Format::Container as i32,
        display_name: "app".into(),
        ..Default::default()
    };
    node.manager.set_tree(T2, Some(tree.clone()));
    node.manager.set_volume(
        V2,
        Some(Volume {
            uuid: V2.into(),
            ..volume(T2, 0, 0)
        }),
    );
    node.reconcile();
    assert_eq!(node.tree(T2).state, ZSwState::ResolvingTag as i32);
    assert_eq!(
        node.manager.requests()[&format!("resolve.{T2}")].kind(),
        DownloadKind::Resolve
    );
    node.settle();
    let state = node.tree(T2);
    assert_eq!(state.state, ZSwState::Loaded as i32, "{state:?}");
    assert_eq!(state.sha256, index);
    let mut want = vec![index.clone()];
    want.extend(amd64.iter().cloned());
    assert_eq!(state.components, want);
    let vol = node.volume(V2);
    assert_eq!(vol.state, ZSwState::CreatedVolume as i32, "{vol:?}");
    let layout = node.content.volumes_dir().join(format!("{V2}.0"));
    let index_json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(
        index_json["manifests"][0]["digest"],
        format!("sha256:{}", amd64[0])
    );
    for digest in &amd64 {
        assert!(
            layout.join("blobs/sha256").join(digest).is_file(),
            "{digest}"
        );
    }

    // A restarted volumemgr finds the root it resolved without resolving
    // again, and asks for nothing.
    let mut again = Manager::new("x86_64");
    again.set_tree(T2, Some(tree));
    again.set_volume(
        V2,
        Some(Volume {
            uuid: V2.into(),
            ..volume(T2, 0, 0)
        }),
    );
    again.trees_synchronized();
    again.volumes_synchronized();
    again.set_settings(Settings::DEFAULT);
    again.reconcile(&mut node.host, node.now).unwrap();
    assert!(again.requests().is_empty(), "{:?}", again.requests());
    assert_eq!(again.tree_states()[T2].state, ZSwState::Loaded as i32);
    assert_eq!(again.volume_states()[V2].host_volume, format!("{V2}.0"));
}

#[test]
fn nothing_is_dropped_before_the_config_is_complete_and_the_reserve_is_reported() {
    let options = ContentOptions {
        reserve_bytes: 1 << 20,
        capacity_bytes: Some((1 << 20) + 200_000),
    };
    let mut node = Node::new(options);
    let small = pattern(100_000, 1);
    let big = pattern(400_000, 2);
    node.downloader
        .origin
        .blobs
        .insert(hex(&small), small.clone());
    node.downloader.origin.blobs.insert(hex(&big), big.clone());
    node.manager
        .set_tree(T1, Some(file_tree(&hex(&small), Format::Raw)));
    node.settle();
    assert_eq!(node.tree(T1).state, ZSwState::Loaded as i32);
    node.manager.set_tree(
        T2,
        Some(ContentTree {
            uuid: T2.into(),
            ..file_tree(&hex(&big), Format::Raw)
        }),
    );
    node.settle();
    // Nothing else broke.
    assert_eq!(node.tree(T1).state, ZSwState::Loaded as i32);
    let refused = node.tree(T2);
    assert_eq!(refused.state, ZSwState::Error as i32);
    assert!(refused.error.contains("reserve"), "{}", refused.error);
    assert!(
        refused.error.contains("must stay free"),
        "{}",
        refused.error
    );

    // A volumemgr that starts again holds off until its tables are whole
    // and zedagent's settings say they are the config's.
    let mut restarted = Manager::new("x86_64");
    restarted.trees_synchronized();
    restarted.volumes_synchronized();
    let busy = restarted.reconcile(&mut node.host, node.now).unwrap();
    assert!(!busy.busy);
    let list = node.host.blobs().unwrap();
    assert!(list.blobs.iter().any(|b| !b.holders.is_empty()), "{list:?}");
    restarted.set_settings(Settings::DEFAULT);
    restarted.reconcile(&mut node.host, node.now).unwrap();
    // Only now, with a config that has no trees, are references dropped.
    let list = node.host.blobs().unwrap();
    assert!(list.blobs.iter().all(|b| b.holders.is_empty()), "{list:?}");
}

fn running_on(disks: &[String]) -> DomainState {
    DomainState {
        uuid: APP.into(),
        state: ZSwState::Running as i32,
        disks: disks.to_vec(),
        ..Default::default()
    }
}

const APP: &str = "cccccccc-cccc-4ccc-8ccc-cccccccccccc";

/// A node whose volume V1 (tree T1, a raw disk) is built at generation 0
/// and purged to generation 1 while a domain runs on generation 0.
fn purged_under_a_running_domain() -> (Node, Vec<u8>) {
    let mut node = Node::new(ContentOptions::default());
    let disk = pattern(300_000, 9);
    let digest = hex(&disk);
    node.downloader
        .origin
        .blobs
        .insert(digest.clone(), disk.clone());
    node.manager
        .set_tree(T1, Some(file_tree(&digest, Format::Raw)));
    node.manager.set_volume(V1, Some(volume(T1, 0, 1 << 20)));
    node.settle();
    assert_eq!(node.volume(V1).host_volume, format!("{V1}.0"));
    node.manager
        .set_domain(APP, Some(running_on(&[format!("{V1}.0")])));
    node.manager.set_volume(V1, Some(volume(T1, 1, 1 << 20)));
    node.settle();
    (node, disk)
}

fn host_volumes(node: &mut Node) -> Vec<String> {
    let mut names: Vec<String> = node
        .host
        .volumes()
        .unwrap()
        .into_iter()
        .map(|v| v.name)
        .collect();
    names.sort();
    names
}

fn disk_of(node: &Node, host_volume: &str) -> Vec<u8> {
    std::fs::read(
        node.content
            .volumes_dir()
            .join(host_volume)
            .join("disk.raw"),
    )
    .unwrap()
}

#[test]
fn a_purge_keeps_the_generation_a_domain_runs_on_until_the_domain_lists_the_new_one() {
    let (mut node, disk) = purged_under_a_running_domain();
    let (old, new) = (format!("{V1}.0"), format!("{V1}.1"));
    // The new generation is ready and reported; the old one stays whole.
    let vol = node.volume(V1);
    assert_eq!(vol.state, ZSwState::CreatedVolume as i32, "{vol:?}");
    assert_eq!(vol.host_volume, new);
    assert_eq!(vol.host_generations, [old.as_str(), new.as_str()]);
    assert_eq!(host_volumes(&mut node), [old.as_str(), new.as_str()]);
    assert_eq!(&disk_of(&node, &old)[..disk.len()], &disk[..]);

    // Halted for the swap, the domain still lists its old disks: kept.
    node.manager.set_domain(
        APP,
        Some(DomainState {
            state: ZSwState::Halted as i32,
            ..running_on(std::slice::from_ref(&old))
        }),
    );
    node.settle();
    assert_eq!(host_volumes(&mut node), [old.as_str(), new.as_str()]);

    // Started on the new generation: the old one goes.
    node.manager
        .set_domain(APP, Some(running_on(std::slice::from_ref(&new))));
    node.settle();
    assert_eq!(host_volumes(&mut node), [new.as_str()]);
    assert_eq!(node.volume(V1).host_generations, [new.as_str()]);
    assert_eq!(&disk_of(&node, &new)[..disk.len()], &disk[..]);
}

#[test]
fn a_restarted_volumemgr_deletes_no_volume_before_it_has_seen_the_domain_table() {
    let (mut node, disk) = purged_under_a_running_domain();
    let (old, new) = (format!("{V1}.0"), format!("{V1}.1"));
    let tree = file_tree(&hex(&disk), Format::Raw);

    // volumemgr starts again: the config is whole, the domains are not.
    let mut again = Manager::new("x86_64");
    again.set_tree(T1, Some(tree));
    again.set_volume(V1, Some(volume(T1, 1, 1 << 20)));
    again.trees_synchronized();
    again.volumes_synchronized();
    again.set_settings(Settings {
        gc_vdisk_secs: 3600,
        download_retry_secs: 600,
    });
    node.manager = again;
    node.settle();
    assert_eq!(node.volume(V1).host_volume, new);
    assert_eq!(host_volumes(&mut node), [old.as_str(), new.as_str()]);

    // The table arrives: the domain still runs on the old generation.
    node.manager
        .set_domain(APP, Some(running_on(std::slice::from_ref(&old))));
    node.manager.domains_synchronized();
    node.settle();
    assert_eq!(host_volumes(&mut node), [old.as_str(), new.as_str()]);

    // Released: deleted.
    node.manager
        .set_domain(APP, Some(running_on(std::slice::from_ref(&new))));
    node.settle();
    assert_eq!(host_volumes(&mut node), [new.as_str()]);
}

#[test]
fn a_volume_removed_from_the_config_stays_while_a_domain_runs_on_it_and_gc_leaves_it_whole() {
    let (mut node, disk) = purged_under_a_running_domain();
    let new = format!("{V1}.1");
    node.manager
        .set_domain(APP, Some(running_on(std::slice::from_ref(&new))));
    node.settle();
    assert_eq!(host_volumes(&mut node), [new.as_str()]);

    // The app, its volume and its tree leave the config before domainmgr
    // stopped the domain.
    node.manager.set_volume(V1, None);
    node.manager.set_tree(T1, None);
    node.settle();
    assert_eq!(host_volumes(&mut node), [new.as_str()]);
    assert!(!node.manager.volume_states().contains_key(V1));

    // The tree's blobs are collected; the volume the domain runs on keeps
    // its own copy.
    node.manager.set_settings(Settings {
        gc_vdisk_secs: 0,
        download_retry_secs: 600,
    });
    node.now += 120;
    node.settle();
    assert!(node.host.blobs().unwrap().blobs.is_empty());
    assert_eq!(host_volumes(&mut node), [new.as_str()]);
    assert_eq!(&disk_of(&node, &new)[..disk.len()], &disk[..]);

    // The domain is gone: so is the volume.
    node.manager.set_domain(APP, None);
    node.settle();
    assert!(host_volumes(&mut node).is_empty());
}
