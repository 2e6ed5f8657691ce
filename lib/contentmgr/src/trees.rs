//! One content tree: from its root digest to every blob it needs, each
//! expected in the blob store, fetched by the downloader, verified by the
//! host; OCI manifests read back and walked once verified.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use eve_proto::config::{ContentTree, Format};
use eve_proto::info::ZSwState;
use hostops::blobs::{BlobInfo, BlobState, MAX_CHUNK, valid_digest};
use hostops::volumes::{Component, valid_uuid};
use ocidist::{Document, manifest};
use topics::content::{
    ContentTreeState, DownloadKind, DownloadProgress, DownloadRequest, DownloadRequests,
    DownloadState,
};

use crate::manager::{Manager, View};
use crate::{Host, MAX_MISMATCHES};

/// Holder of every blob of tree `<uuid>`: `ct.<uuid>`.
pub(crate) const PARTS_HOLDER: &str = "ct.";
/// Holder of the root a tag resolved to: `root.<uuid>`.
pub(crate) const ROOT_HOLDER: &str = "root.";
/// Largest manifest or index read back.
const MAX_MANIFEST: u64 = 4 << 20;
/// Largest blob of a tree that gives no size.
const DEFAULT_MAX_BLOB: u64 = 64 << 30;

/// What identifies a tree's content: a change starts it over.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Fingerprint {
    sha256: String,
    url: String,
    format: i32,
    generation: i64,
}

impl Fingerprint {
    fn of(ct: &ContentTree) -> Self {
        Self {
            sha256: ct.sha256.clone(),
            url: ct.url.clone(),
            format: ct.iformat,
            generation: ct.generation_count,
        }
    }
}

/// One blob of a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Part {
    pub digest: String,
    pub kind: DownloadKind,
    /// Its exact size, when a verified manifest gave it.
    pub size: Option<u64>,
    /// The media type the manifest that listed it gave.
    pub media_type: String,
    /// A manifest or index read and walked.
    pub walked: bool,
}

/// What volumemgr remembers of a tree between reconciliations.
#[derive(Debug, Clone, Default)]
pub(crate) struct TreeRun {
    fingerprint: Fingerprint,
    pub root: Option<String>,
    pub parts: Vec<Part>,
    /// An OCI image's manifest, config and layers, once walked.
    pub image: Option<Vec<Component>>,
}

impl TreeRun {
    /// The tree is complete: every part verified and walked.
    pub fn complete(&self, view: &View) -> bool {
        self.root.is_some()
            && self.parts.iter().all(|p| {
                verified(view.blobs.get(&p.digest))
                    && (p.kind != DownloadKind::Manifest || p.walked)
            })
    }
}

fn verified(info: Option<&BlobInfo>) -> bool {
    info.is_some_and(|i| i.state() == BlobState::Verified)
}

/// A digest as the store names it: 64 lowercase hex digits.
fn normalize(digest: &str) -> Option<String> {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    valid_digest(hex).then(|| hex.to_ascii_lowercase())
}

fn holder(prefix: &str, uuid: &str) -> String {
    format!("{prefix}{uuid}")
}

/// What a verified manifest leads to.
enum Walked {
    /// An index: the platform's manifest.
    Child(Part),
    /// An image manifest: its media type, config and layers.
    Image {
        media_type: String,
        config: ocidist::Descriptor,
        layers: Vec<ocidist::Descriptor>,
    },
}

impl Manager {
    /// Reconciles tree `uuid`: its state, and whether it is still moving.
    pub(crate) fn reconcile_tree(
        &mut self,
        uuid: &str,
        host: &mut dyn Host,
        view: &mut View,
        requests: &mut BTreeMap<String, DownloadRequest>,
        now: u64,
    ) -> (ContentTreeState, bool) {
        let Some(ct) = self.tree_config.get(uuid).cloned() else {
            return (ContentTreeState::default(), false);
        };
        let mut run = self.runs.remove(uuid).unwrap_or_default();
        if run.fingerprint != Fingerprint::of(&ct) {
            run = TreeRun {
                fingerprint: Fingerprint::of(&ct),
                ..TreeRun::default()
            };
        }
        let mut state = ContentTreeState {
            uuid: String::from(uuid),
            display_name: ct.display_name.clone(),
            generation_count: ct.generation_count,
            ..Default::default()
        };
        let outcome = self.tree_steps(uuid, &ct, &mut run, host, view, requests, now, &mut state);
        self.runs.insert(String::from(uuid), run);
        match outcome {
            Ok(busy) => (state, busy),
            Err(error) => {
                state.state = ZSwState::Error as i32;
                state.error = error;
                state.error_unix = now;
                (state, false)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn tree_steps(
        &mut self,
        uuid: &str,
        ct: &ContentTree,
        run: &mut TreeRun,
        host: &mut dyn Host,
        view: &mut View,
        requests: &mut BTreeMap<String, DownloadRequest>,
        now: u64,
        state: &mut ContentTreeState,
    ) -> Result<bool, String> {
        if !valid_uuid(uuid) {
            return Err(String::from("the content tree's id is not a UUID"));
        }
        let mut datastores: Vec<String> = Vec::new();
        for ds in core::iter::once(&ct.ds_id).chain(&ct.ds_ids_list) {
            if !ds.is_empty() && !datastores.contains(ds) {
                datastores.push(ds.clone());
            }
        }
        if datastores.is_empty() {
            return Err(String::from("the content tree names no datastore"));
        }
        let oci = ct.iformat == Format::Container as i32;
        let request =
            |kind: DownloadKind, digest: &str, size: Option<u64>, attempt: u32| DownloadRequest {
                kind: kind as i32,
                digest: String::from(digest),
                size,
                max_size: size.unwrap_or(match kind {
                    DownloadKind::Manifest | DownloadKind::Resolve => MAX_MANIFEST,
                    _ if ct.max_size_bytes > 0 => ct.max_size_bytes,
                    _ => DEFAULT_MAX_BLOB,
                }),
                datastores: datastores.clone(),
                url: ct.url.clone(),
                content_tree: String::from(uuid),
                attempt,
            };

        // The root: the config's digest, or the tag's resolution.
        if run.root.is_none() {
            run.root = if !ct.sha256.is_empty() {
                Some(
                    normalize(&ct.sha256)
                        .ok_or_else(|| format!("sha256 {:?} is not 64 hex digits", ct.sha256))?,
                )
            } else if oci {
                let held = format!("volumemgr/{}", holder(ROOT_HOLDER, uuid));
                let kept = view
                    .blobs
                    .values()
                    .find(|b| b.holders.contains(&held))
                    .map(|b| b.digest.clone());
                match kept {
                    Some(root) => Some(root),
                    None => {
                        let key = format!("resolve.{uuid}");
                        let resolved = self.resolved(&key);
                        if resolved.is_none() {
                            let failure = self.failure(&key, None, now);
                            let attempt = self.attempt(&key);
                            let ask = request(DownloadKind::Resolve, "", None, attempt);
                            requests.insert(DownloadRequests::key(&ask), ask);
                            if let Some(error) = failure {
                                return Err(error);
                            }
                            state.state = ZSwState::ResolvingTag as i32;
                            return Ok(true);
                        }
                        resolved
                    }
                }
            } else {
                return Err(String::from(
                    "a content tree without sha256 cannot be verified",
                ));
            };
            let root = run.root.clone().unwrap_or_default();
            run.parts = vec![Part {
                digest: root,
                kind: if oci {
                    DownloadKind::Manifest
                } else {
                    DownloadKind::File
                },
                size: None,
                media_type: String::new(),
                walked: false,
            }];
        }
        let root = run.root.clone().unwrap_or_default();
        state.sha256 = root.clone();
        if ct.sha256.is_empty() {
            let held = holder(ROOT_HOLDER, uuid);
            let owner = format!("volumemgr/{held}");
            let holds = view
                .blobs
                .get(&root)
                .is_some_and(|b| b.holders.contains(&owner));
            if !holds {
                host.expect(&held, &root, None).map_err(|e| e.to_string())?;
            }
        }

        // Expect every part; walk the verified manifests.
        let parts_holder = holder(PARTS_HOLDER, uuid);
        let mut errors = Vec::new();
        let mut i = 0;
        while i < run.parts.len() {
            let part = run.parts[i].clone();
            let info = self.expected(host, view, &parts_holder, &part)?;
            if verified(Some(&info)) && part.kind == DownloadKind::Manifest && !part.walked {
                let hint = match (&part.media_type[..], i) {
                    ("", 0) => self
                        .downloads
                        .get(&part.digest)
                        .map(|d| d.media_type.clone())
                        .filter(|m| !m.is_empty())
                        .or_else(|| self.resolved_media_type(uuid)),
                    (given, _) => Some(String::from(given)),
                };
                match self.walk(host, &info, &part, hint.as_deref())? {
                    Walked::Child(child) => {
                        if !run.parts.iter().any(|p| p.digest == child.digest) {
                            run.parts.push(child);
                        }
                    }
                    Walked::Image {
                        media_type,
                        config,
                        layers,
                    } => {
                        let mut components = vec![Component {
                            digest: part.digest.clone(),
                            media_type,
                        }];
                        for d in core::iter::once(&config).chain(&layers) {
                            components.push(Component {
                                digest: d.digest.hex(),
                                media_type: d.media_type.clone(),
                            });
                            if !run.parts.iter().any(|p| p.digest == d.digest.hex()) {
                                run.parts.push(Part {
                                    digest: d.digest.hex(),
                                    kind: DownloadKind::Blob,
                                    size: Some(d.size),
                                    media_type: d.media_type.clone(),
                                    walked: false,
                                });
                            }
                        }
                        run.image = Some(components);
                    }
                }
                run.parts[i].walked = true;
            }
            i += 1;
        }

        // Ask for what is not verified yet.
        let mut total = 0u64;
        let mut current = 0u64;
        let mut all_staged = true;
        let mut pending = false;
        let mut retrying = None;
        for part in &run.parts {
            let info = view.blobs.get(&part.digest);
            let size = part
                .size
                .or(info.and_then(|i| i.size))
                .or_else(|| self.downloads.get(&part.digest).and_then(|d| d.total));
            total += size.unwrap_or(0);
            current += info.map_or(0, |i| i.current);
            if verified(info) {
                continue;
            }
            pending = true;
            all_staged &= size.is_some_and(|s| info.is_some_and(|i| i.current == s));
            let failure = self.failure(&part.digest, info, now);
            if let Some(error) = failure {
                errors.push(error);
            } else if let Some(d) = self
                .current(&part.digest)
                .filter(|d| d.state() == DownloadState::RetryWait && !d.error.is_empty())
            {
                retrying.get_or_insert_with(|| format!("retrying: {}", d.error));
            }
            let attempt = self.attempt(&part.digest);
            requests
                .entry(part.digest.clone())
                .or_insert_with(|| request(part.kind, &part.digest, part.size, attempt));
        }
        state.components = run.parts.iter().map(|p| p.digest.clone()).collect();
        state.size_bytes = current;

        // References the tree no longer needs (its content changed, or it
        // was walked before a restart along another path).
        let wanted: BTreeSet<&String> = run.parts.iter().map(|p| &p.digest).collect();
        let owner = format!("volumemgr/{parts_holder}");
        let stale = view
            .blobs
            .values()
            .any(|b| b.holders.contains(&owner) && !wanted.contains(&b.digest));
        if stale && run.complete(view) {
            let digests: Vec<String> = run.parts.iter().map(|p| p.digest.clone()).collect();
            host.reassert(&parts_holder, &digests)
                .map_err(|e| e.to_string())?;
        }

        if let Some(error) = errors.into_iter().next() {
            return Err(error);
        }
        if !pending && run.complete(view) {
            state.state = ZSwState::Loaded as i32;
            state.progress_percent = 100;
            return Ok(false);
        }
        state.state = if pending && all_staged {
            ZSwState::Downloaded
        } else {
            ZSwState::DownloadStarted
        } as i32;
        // A download that failed and will be tried again is not an error of
        // the tree yet, but the operator sees why it is not moving.
        if let Some(why) = retrying {
            state.error = why;
            state.error_unix = now;
        }
        state.progress_percent = current
            .saturating_mul(100)
            .checked_div(total)
            .map_or(0, |p| u32::try_from(p).unwrap_or(99).min(99));
        Ok(true)
    }

    /// The part's blob as the store has it, expecting it for the tree's
    /// holder first if the tree does not hold it yet.
    fn expected(
        &mut self,
        host: &mut dyn Host,
        view: &mut View,
        holder: &str,
        part: &Part,
    ) -> Result<BlobInfo, String> {
        let owner = format!("volumemgr/{holder}");
        if let Some(info) = view.blobs.get(&part.digest)
            && info.holders.contains(&owner)
        {
            return Ok(info.clone());
        }
        let found = host
            .expect(holder, &part.digest, part.size)
            .map_err(|e| e.to_string())?;
        let mut info = view.blobs.get(&part.digest).cloned().unwrap_or(BlobInfo {
            digest: part.digest.clone(),
            size: part.size,
            ..Default::default()
        });
        info.state = found.state;
        if found.state() == BlobState::Verified {
            info.size = Some(found.bytes);
            info.current = found.bytes;
        } else {
            info.current = found.bytes;
        }
        info.holders.push(owner);
        view.blobs.insert(part.digest.clone(), info.clone());
        Ok(info)
    }

    /// Reads a verified manifest back from the store and parses it.
    fn walk(
        &self,
        host: &mut dyn Host,
        info: &BlobInfo,
        part: &Part,
        hint: Option<&str>,
    ) -> Result<Walked, String> {
        let size = info.size.unwrap_or(info.current);
        if size > MAX_MANIFEST {
            return Err(format!(
                "manifest {} is {size} bytes, more than {MAX_MANIFEST}",
                part.digest
            ));
        }
        let mut bytes = Vec::new();
        while (bytes.len() as u64) < size {
            let chunk = host
                .read(&part.digest, bytes.len() as u64, MAX_CHUNK as u32)
                .map_err(|e| e.to_string())?;
            if chunk.is_empty() {
                break;
            }
            bytes.extend(chunk);
        }
        if bytes.len() as u64 != size {
            return Err(format!("manifest {} read back short", part.digest));
        }
        let bad = |e: ocidist::OciError| format!("manifest {}: {e}", part.digest);
        let (media_type, document) =
            ocidist::parse_document(&bytes, hint, DEFAULT_MAX_BLOB).map_err(bad)?;
        if !part.media_type.is_empty() && media_type != part.media_type {
            return Err(format!(
                "manifest {} is a {media_type}, the index says {}",
                part.digest, part.media_type
            ));
        }
        Ok(match document {
            Document::Index(entries) => {
                let chosen = manifest::choose(&entries, &self.platform).map_err(bad)?;
                Walked::Child(Part {
                    digest: chosen.digest.hex(),
                    kind: DownloadKind::Manifest,
                    size: Some(chosen.size),
                    media_type: chosen.media_type,
                    walked: false,
                })
            }
            Document::Manifest(image) => Walked::Image {
                media_type,
                config: image.config,
                layers: image.layers,
            },
        })
    }

    fn attempt(&self, key: &str) -> u32 {
        self.attempts.get(key).copied().unwrap_or(0)
    }

    /// The downloader's progress on `key`'s current attempt.
    fn current(&self, key: &str) -> Option<&DownloadProgress> {
        self.downloads
            .get(key)
            .filter(|d| d.attempt == self.attempt(key))
    }

    /// The digest a resolution found, if it is done.
    fn resolved(&self, key: &str) -> Option<String> {
        self.current(key)
            .filter(|d| d.state() == DownloadState::Done)
            .and_then(|d| normalize(&d.resolved_digest))
    }

    fn resolved_media_type(&self, uuid: &str) -> Option<String> {
        self.downloads
            .get(&format!("resolve.{uuid}"))
            .map(|d| d.media_type.clone())
            .filter(|m| !m.is_empty())
    }

    /// Whether `key`'s current attempt failed, and why; asks for a new
    /// attempt at once after a mismatch (up to [`MAX_MISMATCHES`]), else
    /// once `timer.download.retry` has passed.
    fn failure(&mut self, key: &str, info: Option<&BlobInfo>, now: u64) -> Option<String> {
        let Some(status) = self
            .current(key)
            .filter(|d| d.state() == DownloadState::Failed)
            .cloned()
        else {
            self.failed_at.remove(key);
            return None;
        };
        let seen = *self.failed_at.entry(String::from(key)).or_insert(now);
        let mismatches = info.map_or(0, |i| i.mismatches);
        let error = match info.filter(|i| status.mismatch && !i.last_mismatch.is_empty()) {
            Some(i) => format!(
                "sha256 mismatch: expected {key}, the bytes received hash to {} ({mismatches} of {MAX_MISMATCHES} attempts)",
                i.last_mismatch
            ),
            None => status.error.clone(),
        };
        let again = (status.mismatch && mismatches < MAX_MISMATCHES)
            || now >= seen.saturating_add(self.settings.download_retry_secs);
        if again {
            log::info!("asking again for {key}: {error}");
            self.attempts
                .insert(String::from(key), status.attempt.saturating_add(1));
            self.failed_at.remove(key);
        }
        Some(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_normalized_or_refused() {
        let hex = "AB".repeat(32);
        assert_eq!(normalize(&hex), Some("ab".repeat(32)));
        assert_eq!(
            normalize(&format!("sha256:{}", "cd".repeat(32))),
            Some("cd".repeat(32))
        );
        assert_eq!(normalize("abc"), None);
        assert_eq!(normalize(&"zz".repeat(32)), None);
    }
}
