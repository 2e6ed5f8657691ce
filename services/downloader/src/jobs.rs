//! The downloads volumemgr asks for, their turns and their progress.
//!
//! Each request (`download-request`, keyed by digest) becomes a download
//! in a [`fetch::queue::Queue`]: a few at a time take turns of bounded
//! length; a turn streams bytes from the datastore into the blob store's
//! slot for the digest until the blob is complete (then the host verifies
//! it), the turn's deadline (the download pauses, and resumes with Range
//! at its next turn), or a failure (retried with backoff when a retry can
//! help). Progress is published as `download-status` under the same key.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::time::Duration;

use fetch::queue::{Phase, Queue, Turn};
use fetch::retry::Backoff;
use fetch::{Credentials, Download, DsKind, FetchError, Proxy, SinkError};
use hal::clock::Instant;
use hostops::blobs::{BlobError, BlobErrorCode};
use net::Stack;
use ocidist::{Descriptor, OciError, Reference, Registry, RegistryOptions};
use runtime::service;
use topics::DownloadStatus;
use topics::content::{Datastore, DownloadKind, DownloadProgress, DownloadRequest, DownloadState};

use crate::sink::{Moved, StoreSink, decode_note};
use crate::transport::{GuestTransport, TlsParts};

/// Downloads taking turns at once.
const MAX_ACTIVE: usize = 3;
/// A turn's length while others wait for theirs.
const SHARED_TURN: Duration = Duration::from_secs(5);
/// A turn's length when no other download is ready.
const LONE_TURN: Duration = Duration::from_secs(30);
/// Progress is published at most this often during a turn.
const PUBLISH_EVERY: Duration = Duration::from_millis(500);
/// Redirects followed per request.
const MAX_REDIRECTS: u8 = 5;
/// Largest manifest or index.
const MAX_MANIFEST: usize = 4 << 20;

/// What retries wait: 1 s doubling to a minute, eight times without
/// progress before giving up (volumemgr then asks again later).
const BACKOFF: Backoff = Backoff {
    initial_ms: 1_000,
    max_ms: 60_000,
    max_failures: 8,
};

/// What [`Downloader::turn`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turned {
    /// A download had a turn.
    Ran,
    /// Nothing was due; the next retry is due in this long, if one waits.
    Idle(Option<Duration>),
}

/// How a turn ended, with what to report.
struct Ended {
    turn: Turn,
    error: String,
    mismatch: bool,
}

impl Ended {
    fn done() -> Self {
        Self {
            turn: Turn::Done,
            error: String::new(),
            mismatch: false,
        }
    }

    fn failed(error: String, retryable: bool, progressed: bool) -> Self {
        Self {
            turn: Turn::Failed {
                retryable,
                progressed,
            },
            error,
            mismatch: false,
        }
    }
}

/// The downloader's state.
pub struct Downloader {
    datastores: BTreeMap<String, Datastore>,
    requests: BTreeMap<String, DownloadRequest>,
    queue: Queue,
    progress: BTreeMap<String, DownloadProgress>,
    /// Which of a request's datastores the next turn uses.
    datastore_turn: BTreeMap<String, usize>,
    proxy: Option<Proxy>,
    tls: TlsParts,
    random: u32,
}

impl Downloader {
    pub fn new(tls: TlsParts, proxy: Option<Proxy>, seed: u32) -> Self {
        Self {
            datastores: BTreeMap::new(),
            requests: BTreeMap::new(),
            queue: Queue::new(MAX_ACTIVE, BACKOFF),
            progress: BTreeMap::new(),
            datastore_turn: BTreeMap::new(),
            proxy,
            tls,
            random: seed | 1,
        }
    }

    /// A datastore of the config changed (`None`: deleted).
    pub fn set_datastore(&mut self, id: &str, datastore: Option<Datastore>) {
        match datastore {
            Some(ds) => {
                self.datastores.insert(String::from(id), ds);
            }
            None => {
                self.datastores.remove(id);
            }
        }
    }

    /// volumemgr asked for `key` (again, when its attempt changed), or
    /// withdrew it.
    pub fn set_request(&mut self, key: &str, request: Option<DownloadRequest>) {
        match request {
            Some(request) => {
                if self.queue.offer(key, request.attempt) {
                    self.datastore_turn.remove(key);
                    self.progress.insert(
                        String::from(key),
                        DownloadProgress {
                            attempt: request.attempt,
                            state: DownloadState::Queued as i32,
                            ..Default::default()
                        },
                    );
                    self.publish(key);
                }
                self.requests.insert(String::from(key), request);
            }
            None => {
                self.requests.remove(key);
                self.queue.remove(key);
                self.datastore_turn.remove(key);
                if self.progress.remove(key).is_some()
                    && let Err(e) = service::unpublish::<DownloadStatus>(key)
                {
                    log::warn!("withdrawing the status of {key}: {e}");
                }
            }
        }
    }

    /// The request table is complete: statuses of requests it lacks (from
    /// before a restart) go, and the status table is whole.
    pub fn requests_synchronized(&mut self) {
        let stale: Vec<String> = self
            .progress
            .keys()
            .filter(|k| !self.requests.contains_key(*k))
            .cloned()
            .collect();
        for key in stale {
            self.set_request(&key, None);
        }
        if let Err(e) = service::synchronized::<DownloadStatus>() {
            log::warn!("download-status: {e}");
        }
    }

    fn publish(&self, key: &str) {
        if let Some(p) = self.progress.get(key)
            && let Err(e) = service::publish::<DownloadStatus>(key, p)
        {
            log::warn!("publishing the status of {key}: {e}");
        }
    }

    fn next_random(&mut self) -> u32 {
        // xorshift32: jitter only.
        self.random ^= self.random << 13;
        self.random ^= self.random >> 17;
        self.random ^= self.random << 5;
        self.random
    }

    /// Runs the next turn, if one is due: [`Turned::Ran`], or when the
    /// next one will be (a retry), or nothing to do until a request comes.
    pub fn turn(&mut self, stack: &mut Stack) -> Turned {
        let now = Instant::now().as_nanos() / 1_000_000;
        let Some(key) = self.queue.next(now) else {
            return Turned::Idle(
                self.queue
                    .next_retry()
                    .map(|at| Duration::from_millis(at.saturating_sub(now))),
            );
        };
        let Some(request) = self.requests.get(&key).cloned() else {
            self.queue.remove(&key);
            return Turned::Ran;
        };
        let others = self.queue.others_waiting(&key, now);
        let deadline = Instant::now().saturating_add(if others { SHARED_TURN } else { LONE_TURN });
        if let Some(p) = self.progress.get_mut(&key) {
            p.state = DownloadState::Downloading as i32;
            p.tries += 1;
        }
        self.publish(&key);
        let ended = self.run(&key, &request, stack, deadline);
        let now = Instant::now().as_nanos() / 1_000_000;
        let random = self.next_random();
        self.queue.finished(&key, ended.turn, now, random);
        if let Turn::Failed { .. } = ended.turn {
            log::warn!("{key}: {}", ended.error);
            // The next try uses the request's next datastore.
            *self.datastore_turn.entry(key.clone()).or_default() += 1;
        }
        let phase = self.queue.phase(&key);
        if let Some(p) = self.progress.get_mut(&key) {
            p.state = match phase {
                Some(Phase::Done) => DownloadState::Done,
                Some(Phase::Failed) => DownloadState::Failed,
                Some(Phase::RetryAt(_)) => DownloadState::RetryWait,
                _ => DownloadState::Queued,
            } as i32;
            if !ended.error.is_empty() {
                p.error = ended.error;
                p.mismatch = ended.mismatch;
            } else if phase == Some(Phase::Done) {
                p.error.clear();
                p.mismatch = false;
            }
        }
        self.publish(&key);
        Turned::Ran
    }

    /// One turn of `key`.
    fn run(
        &mut self,
        key: &str,
        request: &DownloadRequest,
        stack: &mut Stack,
        deadline: Instant,
    ) -> Ended {
        let names = &request.datastores;
        if names.is_empty() {
            return Ended::failed(String::from("no datastore given"), false, false);
        }
        let pick = self.datastore_turn.get(key).copied().unwrap_or(0) % names.len();
        let name = &names[pick];
        let Some(datastore) = self.datastores.get(name).cloned() else {
            return Ended::failed(
                format!("datastore {name} is not in the config (yet)"),
                true,
                false,
            );
        };
        if !datastore.credentials_error.is_empty() {
            return Ended::failed(
                format!(
                    "datastore {name}: its credentials could not be decrypted: {}",
                    datastore.credentials_error
                ),
                false,
                false,
            );
        }
        let config = datastore.config.clone().unwrap_or_default();
        let Some(kind) = DsKind::from_ds_type(config.d_type) else {
            return Ended::failed(
                format!("datastore {name}: type {} is not supported", config.d_type),
                false,
                false,
            );
        };
        let credentials =
            (!config.api_key.is_empty() || !config.password.is_empty()).then(|| Credentials {
                username: config.api_key.clone(),
                password: config.password.clone(),
            });
        let roots: Vec<u8> = config.ds_cert_pem.concat();
        let mut transport = GuestTransport {
            stack,
            tls: &mut self.tls,
            roots_pem: &roots,
        };
        let progress = &mut self.progress;
        let mut last_publish = Instant::now();
        let mut report = |moved: &Moved| {
            if let Some(p) = progress.get_mut(key) {
                p.staged = moved.staged;
                p.resumed_from = moved.started_at;
                if last_publish.elapsed() >= PUBLISH_EVERY {
                    last_publish = Instant::now();
                    if let Err(e) = service::publish::<DownloadStatus>(key, p) {
                        log::warn!("publishing the status of {key}: {e}");
                    }
                }
            }
        };
        let mut sink = StoreSink::new(&request.digest, deadline, &mut report);
        let mut found = None;
        let outcome = match (request.kind(), kind) {
            (DownloadKind::File, DsKind::Http | DsKind::Https) => file_turn(
                &mut transport,
                self.proxy.as_ref(),
                &config,
                kind,
                credentials,
                request,
                &mut sink,
            ),
            (
                DownloadKind::Manifest | DownloadKind::Blob | DownloadKind::Resolve,
                DsKind::ContainerRegistry,
            ) => {
                let proxy = self.proxy.clone();
                oci_turn(transport, proxy, &config, credentials, request, &mut sink)
                    .map(|resolved| found = resolved)
            }
            (asked, _) => Err(Ended::failed(
                format!("a {asked:?} download from datastore {name} of type {kind:?}"),
                false,
                false,
            )),
        };
        let moved = sink.moved;
        drop(sink);
        if let Some(p) = self.progress.get_mut(key) {
            p.fetched += moved.fetched;
            p.staged = moved.staged;
            p.resumed_from = moved.started_at;
            if let Some((digest, media_type)) = found {
                p.resolved_digest = digest;
                p.media_type = media_type;
            }
        }
        match outcome {
            Ok(()) => Ended::done(),
            Err(ended) => ended,
        }
    }
}

/// The refusal the store gave, or the download error, in words.
fn fetch_ended(e: FetchError, sink: &StoreSink<'_>) -> Ended {
    let progressed = sink.moved.progressed();
    match (e, &sink.refusal) {
        (FetchError::Sink(SinkError::Paused), _) => Ended {
            turn: Turn::Paused,
            error: String::new(),
            mismatch: false,
        },
        (FetchError::Sink(_), Some(refusal)) => {
            Ended::failed(refusal.to_string(), false, progressed)
        }
        (e, _) => Ended::failed(e.to_string(), e.is_retryable(), progressed),
    }
}

/// Completes the blob: the host hashes it; a mismatch is reported as one.
fn complete(sink: &mut StoreSink<'_>) -> Result<(), Ended> {
    if let Err(e) = sink.flush() {
        return Err(fetch_ended(FetchError::Sink(e), sink));
    }
    match sink.complete() {
        Ok(_) => Ok(()),
        Err(error) => Err(completion_failed(error)),
    }
}

fn completion_failed(error: BlobError) -> Ended {
    let mismatch = error.code() == BlobErrorCode::Mismatch;
    Ended {
        turn: Turn::Failed {
            retryable: false,
            progressed: true,
        },
        error: error.to_string(),
        mismatch,
    }
}

/// A turn of a file on an HTTP(S) datastore.
fn file_turn(
    transport: &mut GuestTransport<'_>,
    proxy: Option<&Proxy>,
    config: &eve_proto::config::DatastoreConfig,
    kind: DsKind,
    credentials: Option<Credentials>,
    request: &DownloadRequest,
    sink: &mut StoreSink<'_>,
) -> Result<(), Ended> {
    let datastore = fetch::Datastore {
        kind,
        fqdn: config.fqdn.clone(),
        dpath: config.dpath.clone(),
        credentials,
    };
    let url = datastore
        .url_for(&request.url)
        .map_err(|e| Ended::failed(format!("{}: {e}", request.url), false, false))?;
    let download = Download {
        url,
        authorization: datastore
            .credentials
            .as_ref()
            .map(Credentials::basic_header),
        expected_size: request.size,
        max_size: request.max_size,
        max_redirects: MAX_REDIRECTS,
    };
    let staged =
        fetch::BlobSink::staged(sink).map_err(|e| fetch_ended(FetchError::Sink(e), sink))?;
    let mut validator = decode_note(sink.note.as_deref());
    log::info!(
        "{}: {} from byte {staged}",
        request.digest,
        download.url.path
    );
    let result = fetch::download(
        transport,
        proxy,
        sink,
        &download,
        &mut validator,
        &mut |_, _| {},
    );
    let saved = sink.flush();
    sink.remember(&validator);
    match (result, saved) {
        (Ok(_), Ok(())) => complete(sink),
        (Ok(_), Err(e)) => Err(fetch_ended(FetchError::Sink(e), sink)),
        (Err(e), _) => Err(fetch_ended(e, sink)),
    }
}

fn oci_ended(e: OciError, sink: &StoreSink<'_>) -> Ended {
    match e {
        OciError::Fetch(f) => fetch_ended(f, sink),
        other => Ended::failed(
            other.to_string(),
            other.is_retryable(),
            sink.moved.progressed(),
        ),
    }
}

/// A turn of a registry download: a manifest by digest, a blob by digest,
/// or a tag's resolution (answering the digest and media type).
fn oci_turn(
    transport: GuestTransport<'_>,
    proxy: Option<Proxy>,
    config: &eve_proto::config::DatastoreConfig,
    credentials: Option<Credentials>,
    request: &DownloadRequest,
    sink: &mut StoreSink<'_>,
) -> Result<Option<(String, String)>, Ended> {
    // `http://` before the registry's name asks for plain http (a
    // registry on the local network); anything else is https.
    let fqdn = config.fqdn.trim();
    let (plain_http, fqdn) = match fqdn.strip_prefix("http://") {
        Some(rest) => (true, rest),
        None => (false, fqdn.strip_prefix("https://").unwrap_or(fqdn)),
    };
    let reference = Reference::from_datastore(fqdn, &config.dpath, &request.url)
        .map_err(|e| Ended::failed(format!("{}: {e}", request.url), false, false))?;
    let options = RegistryOptions {
        plain_http,
        credentials,
        proxy,
        max_manifest_bytes: MAX_MANIFEST,
        max_blob_bytes: request.max_size,
        max_redirects: MAX_REDIRECTS,
    };
    let repository = reference.repository.clone();
    let mut registry = Registry::new(transport, &reference, options);
    let digest = || {
        ocidist::Digest::parse(&format!("sha256:{}", request.digest))
            .ok_or_else(|| Ended::failed(format!("bad digest {:?}", request.digest), false, false))
    };
    match request.kind() {
        DownloadKind::Resolve => {
            let fetched = registry
                .fetch_manifest(&repository, &reference.manifest_ref(), reference.digest)
                .map_err(|e| oci_ended(e, sink))?;
            log::info!("{}: resolved to {}", request.url, fetched.digest);
            Ok(Some((fetched.digest.hex(), fetched.media_type)))
        }
        DownloadKind::Manifest => {
            let pinned = digest()?;
            let fetched = registry
                .fetch_manifest(&repository, &pinned.to_string(), Some(pinned))
                .map_err(|e| oci_ended(e, sink))?;
            sink.replace_with(&fetched.bytes)
                .map_err(|e| fetch_ended(FetchError::Sink(e), sink))?;
            complete(sink)?;
            Ok(Some((String::new(), fetched.media_type)))
        }
        _ => {
            let size = request.size.ok_or_else(|| {
                Ended::failed(String::from("a blob without its size"), false, false)
            })?;
            let descriptor = Descriptor {
                media_type: String::new(),
                digest: digest()?,
                size,
                platform: None,
            };
            fetch::BlobSink::staged(sink).map_err(|e| fetch_ended(FetchError::Sink(e), sink))?;
            let mut validator = decode_note(sink.note.as_deref());
            let result = registry.fetch_blob(
                &repository,
                &descriptor,
                sink,
                &mut validator,
                &mut |_, _| {},
            );
            let saved = sink.flush();
            sink.remember(&validator);
            match (result, saved) {
                (Ok(_), Ok(())) => complete(sink).map(|()| None),
                (Ok(_), Err(e)) => Err(fetch_ended(FetchError::Sink(e), sink)),
                (Err(e), _) => Err(oci_ended(e, sink)),
            }
        }
    }
}
