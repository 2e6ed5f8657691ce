//! The `blobs` target: the node's blob store (`host/blobstore`) behind
//! the operations of `hostops::blobs`, split by caller through the
//! manifest's grants (volumemgr expects, refers, reads, lists, collects;
//! the downloader writes, resumes and completes). The store never parses
//! what it holds: it only hashes it.

use std::error::Error;
use std::path::Path;
use std::sync::Arc;

use blobstore::{
    BlobInfo as StoreInfo, BlobState as StoreState, CompleteError, CreateSlotError, Digest,
    Expected as StoreExpected, GcError, IoFailure, NoteError, ReadError, RefError, ReserveExceeded,
    StagedError, WriteError,
};
use eve_broker::{RpcError, RpcHandler};
use hostops::blobs::{
    AddRef, BlobError, BlobErrorCode, BlobInfo, BlobList, BlobState, Blobs, Chunk, CollectGarbage,
    Complete, Completed, Digests, DropRef, Empty, Expect, Expected, List, MAX_CHUNK, MAX_HOLDER,
    MAX_NOTE, Read, Reassert, Remember, Staged, StagedLength, Status, Usage, Write,
};
use hostops::{Operation, Target, TargetSpec};

use super::content::Content;
use super::{HostTarget, Refused, TargetContext, serve};

/// The blob store as a host target.
pub struct BlobsTarget {
    content: Arc<Content>,
}

/// Opens the node's content store (shared with the `volumes` target).
pub fn open(
    context: &TargetContext<'_>,
) -> Result<Arc<dyn HostTarget>, Box<dyn Error + Send + Sync>> {
    Ok(Arc::new(BlobsTarget::new(Content::shared(
        context.state_dir,
        context.content,
    )?)))
}

impl BlobsTarget {
    pub fn new(content: Arc<Content>) -> BlobsTarget {
        BlobsTarget { content }
    }
}

type Answer<T> = Result<T, Refused<BlobError>>;

fn digest(text: &str) -> Answer<Digest> {
    text.parse()
        .map_err(|e: blobstore::BadDigest| Refused::BadRequest(e.to_string()))
}

/// The holder as the store files it: under the calling service's name,
/// so a service only ever changes its own references.
fn holder(caller: &str, name: &str) -> Answer<String> {
    if name.is_empty() || name.len() > MAX_HOLDER || name.chars().any(char::is_control) {
        return Err(Refused::BadRequest(format!(
            "a holder is 1 to {MAX_HOLDER} printable characters"
        )));
    }
    Ok(format!("{caller}/{name}"))
}

fn failed(code: BlobErrorCode, digest: Digest) -> Refused<BlobError> {
    Refused::Failed(BlobError::new(code, &digest.hex()))
}

fn storage(e: &IoFailure) -> Refused<BlobError> {
    Refused::Failed(BlobError {
        detail: e.to_string(),
        ..BlobError::new(BlobErrorCode::Storage, "")
    })
}

fn reserve(e: &ReserveExceeded) -> Refused<BlobError> {
    Refused::Failed(BlobError {
        needed: e.needed,
        free: e.free,
        reserve: e.reserve,
        ..BlobError::new(BlobErrorCode::Reserve, &e.digest.hex())
    })
}

fn create_error(e: CreateSlotError) -> Refused<BlobError> {
    match e {
        CreateSlotError::Io(e) => storage(&e),
        CreateSlotError::SizeConflict {
            digest, existing, ..
        } => Refused::Failed(BlobError {
            expected: existing.unwrap_or(0),
            ..BlobError::new(BlobErrorCode::SizeConflict, &digest.hex())
        }),
        CreateSlotError::TooLarge {
            digest,
            size,
            limit,
        } => Refused::Failed(BlobError {
            staged: size,
            expected: limit,
            ..BlobError::new(BlobErrorCode::TooLarge, &digest.hex())
        }),
        CreateSlotError::BadHolder(h) => Refused::BadRequest(format!("bad holder {h:?}")),
        CreateSlotError::Reserve(e) => reserve(&e),
    }
}

fn ref_error(e: RefError) -> Refused<BlobError> {
    match e {
        RefError::Io(e) => storage(&e),
        RefError::Unknown(d) => failed(BlobErrorCode::Unknown, d),
        RefError::BadHolder(h) => Refused::BadRequest(format!("bad holder {h:?}")),
    }
}

fn write_error(e: WriteError) -> Refused<BlobError> {
    match e {
        WriteError::Io(e) => storage(&e),
        WriteError::NotExpected(d) => failed(BlobErrorCode::NotExpected, d),
        WriteError::Gap { digest, staged, .. } => Refused::Failed(BlobError {
            staged,
            ..BlobError::new(BlobErrorCode::Gap, &digest.hex())
        }),
        WriteError::TooLarge { digest, end, limit } => Refused::Failed(BlobError {
            staged: end,
            expected: limit,
            ..BlobError::new(BlobErrorCode::TooLarge, &digest.hex())
        }),
        WriteError::Reserve(e) => reserve(&e),
    }
}

fn complete_error(e: CompleteError) -> Refused<BlobError> {
    match e {
        CompleteError::Io(e) => storage(&e),
        CompleteError::NotExpected(d) => failed(BlobErrorCode::NotExpected, d),
        CompleteError::Incomplete {
            digest,
            staged,
            expected,
        } => Refused::Failed(BlobError {
            staged,
            expected,
            ..BlobError::new(BlobErrorCode::Incomplete, &digest.hex())
        }),
        CompleteError::Mismatch {
            expected,
            actual,
            attempts,
        } => Refused::Failed(BlobError {
            actual: actual.hex(),
            attempts,
            ..BlobError::new(BlobErrorCode::Mismatch, &expected.hex())
        }),
    }
}

fn info(i: &StoreInfo) -> BlobInfo {
    BlobInfo {
        digest: i.digest.hex(),
        state: match i.state {
            StoreState::Staging => BlobState::Staging,
            StoreState::Verified => BlobState::Verified,
        } as i32,
        size: i.size,
        current: i.current,
        progress_percent: i.progress_percent(),
        holders: i.holders.clone(),
        created_unix: i.created,
        last_ref_change_unix: i.last_ref_change,
        mismatches: i.mismatches,
        last_mismatch: i.last_mismatch.map(|d| d.hex()).unwrap_or_default(),
    }
}

/// The filesystem's size under `path`.
fn filesystem_bytes(path: &Path) -> u64 {
    rustix::fs::statvfs(path).map_or(0, |st| st.f_blocks.saturating_mul(st.f_frsize))
}

impl BlobsTarget {
    fn usage(&self) -> Answer<Usage> {
        let mut store = self.content.store();
        let used = store.manager().usage();
        let free = store.free_bytes().map_err(|e| storage(&e))?;
        let options = self.content.options();
        let disk = filesystem_bytes(
            self.content
                .volumes_dir()
                .parent()
                .unwrap_or(Path::new(".")),
        );
        Ok(Usage {
            verified_bytes: used.verified_bytes,
            staged_bytes: used.staged_bytes,
            mismatches_total: used.mismatches_total,
            free_bytes: free,
            reserve_bytes: options.reserve_bytes,
            total_bytes: options.capacity_bytes.map_or(disk, |c| c.min(disk)),
        })
    }

    fn run(&self, caller: &str, operation: &str, request: &[u8]) -> Result<Vec<u8>, RpcError> {
        match operation {
            Expect::NAME => serve::<Expect>(request, |r| {
                let (d, h) = (digest(&r.digest)?, holder(caller, &r.holder)?);
                let found = self
                    .content
                    .store()
                    .manager()
                    .expect(&h, d, r.size)
                    .map_err(create_error)?;
                Ok(match found {
                    StoreExpected::Staging { staged } => Expected {
                        state: BlobState::Staging as i32,
                        bytes: staged,
                    },
                    StoreExpected::Verified { size } => Expected {
                        state: BlobState::Verified as i32,
                        bytes: size,
                    },
                })
            }),
            AddRef::NAME => serve::<AddRef>(request, |r| {
                let (d, h) = (digest(&r.digest)?, holder(caller, &r.holder)?);
                let mut store = self.content.store();
                store.manager().add_ref(&h, d).map_err(ref_error)?;
                Ok(Empty {})
            }),
            DropRef::NAME => serve::<DropRef>(request, |r| {
                let (d, h) = (digest(&r.digest)?, holder(caller, &r.holder)?);
                let mut store = self.content.store();
                store.manager().drop_ref(&h, d).map_err(ref_error)?;
                Ok(Empty {})
            }),
            Reassert::NAME => serve::<Reassert>(request, |r| {
                let h = holder(caller, &r.holder)?;
                let digests = r
                    .digests
                    .iter()
                    .map(|d| digest(d))
                    .collect::<Answer<Vec<_>>>()?;
                let mut store = self.content.store();
                let missing = store.manager().reassert(&h, &digests).map_err(ref_error)?;
                Ok(Digests {
                    digests: missing.iter().map(Digest::hex).collect(),
                })
            }),
            Status::NAME => serve::<Status>(request, |r| {
                let d = digest(&r.digest)?;
                let mut store = self.content.store();
                let found = store.manager().status(d);
                found
                    .map(|i| info(&i))
                    .ok_or_else(|| failed(BlobErrorCode::Unknown, d))
            }),
            List::NAME => serve::<List>(request, |_| {
                let blobs = self.content.store().manager().list();
                Ok(BlobList {
                    blobs: blobs.iter().map(info).collect(),
                    usage: Some(self.usage()?),
                })
            }),
            Read::NAME => serve::<Read>(request, |r| {
                let d = digest(&r.digest)?;
                let length = usize::try_from(r.length).unwrap_or(usize::MAX);
                if length > MAX_CHUNK {
                    return Err(Refused::BadRequest(format!(
                        "at most {MAX_CHUNK} bytes per read"
                    )));
                }
                let mut store = self.content.store();
                let data = store
                    .manager()
                    .read(d, r.offset, length)
                    .map_err(|e| match e {
                        ReadError::Io(e) => storage(&e),
                        ReadError::NotVerified(d) => failed(BlobErrorCode::NotVerified, d),
                    })?;
                Ok(Chunk { data })
            }),
            CollectGarbage::NAME => serve::<CollectGarbage>(request, |r| {
                let mut store = self.content.store();
                let gone = store
                    .manager()
                    .collect_garbage(r.unreferenced_for_secs)
                    .map_err(|GcError::Io(e)| storage(&e))?;
                Ok(Digests {
                    digests: gone.iter().map(Digest::hex).collect(),
                })
            }),
            Write::NAME => serve::<Write>(request, |r| {
                let d = digest(&r.digest)?;
                if r.data.len() > MAX_CHUNK {
                    return Err(Refused::BadRequest(format!(
                        "at most {MAX_CHUNK} bytes per write"
                    )));
                }
                let mut store = self.content.store();
                let staged = store
                    .writer()
                    .write(d, r.offset, &r.data)
                    .map_err(write_error)?;
                Ok(Staged {
                    length: staged.length,
                    expected_size: staged.expected_size,
                    note: staged.note,
                })
            }),
            StagedLength::NAME => serve::<StagedLength>(request, |r| {
                let d = digest(&r.digest)?;
                let mut store = self.content.store();
                let staged = store
                    .writer()
                    .staged(d)
                    .map_err(|StagedError::NotExpected(d)| failed(BlobErrorCode::NotExpected, d))?;
                Ok(Staged {
                    length: staged.length,
                    expected_size: staged.expected_size,
                    note: staged.note,
                })
            }),
            Remember::NAME => serve::<Remember>(request, |r| {
                let d = digest(&r.digest)?;
                if r.note.as_ref().is_some_and(|n| n.len() > MAX_NOTE) {
                    return Err(Refused::BadRequest(format!(
                        "a note is at most {MAX_NOTE} bytes"
                    )));
                }
                let mut store = self.content.store();
                store
                    .writer()
                    .remember(d, r.note.as_deref())
                    .map_err(|e| match e {
                        NoteError::Io(e) => storage(&e),
                        NoteError::NotExpected(d) => failed(BlobErrorCode::NotExpected, d),
                        NoteError::TooLong(n) => {
                            Refused::BadRequest(format!("a note of {n} bytes is too long"))
                        }
                    })?;
                Ok(Empty {})
            }),
            Complete::NAME => serve::<Complete>(request, |r| {
                let d = digest(&r.digest)?;
                let mut store = self.content.store();
                let size = store.writer().complete(d).map_err(complete_error)?;
                log::info!("blobs: {d} verified ({size} bytes) for {caller}");
                Ok(Completed { size })
            }),
            other => Err(RpcError::BadRequest(format!(
                "blobs has no operation {other}"
            ))),
        }
    }
}

impl RpcHandler for BlobsTarget {
    fn call(&self, caller: &str, operation: &str, request: &[u8]) -> Result<Vec<u8>, RpcError> {
        log::trace!("blobs: {operation} for {caller}");
        self.run(caller, operation, request)
    }
}

impl HostTarget for BlobsTarget {
    fn spec(&self) -> &'static TargetSpec {
        &Blobs::SPEC
    }

    fn describe(&self) -> String {
        let options = self.content.options();
        format!(
            "{} (reserve {} MiB{})",
            self.content
                .volumes_dir()
                .parent()
                .unwrap_or(Path::new("."))
                .join("store")
                .display(),
            options.reserve_bytes >> 20,
            options
                .capacity_bytes
                .map(|c| format!(", capacity {} MiB", c >> 20))
                .unwrap_or_default()
        )
    }
}
