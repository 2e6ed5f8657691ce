//! A slot of the host's blob store as `fetch::BlobSink`: bytes go over the
//! bus (`hostops::blobs::Write`) in chunks as large as a bus frame takes,
//! the download's turn ends at its deadline (the sink pauses it), and the
//! last refusal is kept in the store's own words.

use alloc::string::String;
use alloc::vec::Vec;

use fetch::{BlobSink, SinkError, Validator};
use hal::clock::Instant;
use hostops::blobs::{
    self, BlobError, BlobErrorCode, BlobRef, MAX_CHUNK, RememberRequest, WriteRequest,
};
use runtime::service::{self, CallError};

/// Bytes fetched and where they are, as the sink saw them.
#[derive(Debug, Default, Clone, Copy)]
pub struct Moved {
    /// Bytes received this turn.
    pub fetched: u64,
    /// Where this turn's last try started (0 after a restart).
    pub started_at: u64,
    /// Bytes staged when the turn began.
    pub initial: Option<u64>,
    /// Bytes staged now.
    pub staged: u64,
}

impl Moved {
    /// Whether the turn left more bytes staged than it found: bytes that
    /// were fetched and thrown away again (a server that ignores Range and
    /// cuts off) are no progress.
    pub fn progressed(&self) -> bool {
        self.staged > self.initial.unwrap_or(0)
    }
}

/// The store's slot for one digest.
pub struct StoreSink<'p> {
    digest: String,
    /// Bytes not yet written, which start at `pending_at`.
    pending: Vec<u8>,
    pending_at: u64,
    deadline: Instant,
    /// Why the store last refused, in its words.
    pub refusal: Option<BlobError>,
    pub moved: Moved,
    /// The validator kept with the staged bytes when the turn began.
    pub note: Option<String>,
    /// Called after every write with the bytes staged.
    progress: &'p mut dyn FnMut(&Moved),
}

/// The store's answer to a call, as a sink error (the typed refusal kept).
fn refused(e: CallError<BlobError>, refusal: &mut Option<BlobError>) -> SinkError {
    match e {
        CallError::Failed(error) => {
            let kind = match error.code() {
                BlobErrorCode::Reserve => SinkError::NoRoom,
                BlobErrorCode::NotExpected => SinkError::NotExpected,
                BlobErrorCode::Storage => SinkError::Io,
                _ => SinkError::Rejected,
            };
            *refusal = Some(error);
            kind
        }
        other => {
            log::warn!("blob store: {other}");
            SinkError::Io
        }
    }
}

impl<'p> StoreSink<'p> {
    /// The slot for `digest`; the turn ends at `deadline`.
    pub fn new(digest: &str, deadline: Instant, progress: &'p mut dyn FnMut(&Moved)) -> Self {
        Self {
            digest: String::from(digest),
            pending: Vec::with_capacity(MAX_CHUNK),
            pending_at: 0,
            deadline,
            refusal: None,
            moved: Moved::default(),
            note: None,
            progress,
        }
    }

    /// Writes what is pending.
    pub fn flush(&mut self) -> Result<(), SinkError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let request = WriteRequest {
            digest: self.digest.clone(),
            offset: self.pending_at,
            data: core::mem::take(&mut self.pending),
        };
        let staged =
            service::call::<blobs::Write>(&request).map_err(|e| refused(e, &mut self.refusal))?;
        self.pending = request.data;
        self.pending.clear();
        self.pending_at = staged.length;
        self.moved.staged = staged.length;
        (self.progress)(&self.moved);
        Ok(())
    }

    /// Keeps `validator` with the staged bytes for the next turn.
    pub fn remember(&mut self, validator: &Validator) {
        let note = encode_note(validator);
        if note == self.note {
            return;
        }
        let request = RememberRequest {
            digest: self.digest.clone(),
            note: note.clone(),
        };
        match service::call::<blobs::Remember>(&request) {
            Ok(_) => self.note = note,
            Err(e) => log::warn!("keeping the resume note of {}: {e}", self.digest),
        }
    }

    /// Asks the host to verify the staged bytes.
    pub fn complete(&mut self) -> Result<u64, BlobError> {
        let request = BlobRef {
            digest: self.digest.clone(),
        };
        service::call::<blobs::Complete>(&request)
            .map(|c| c.size)
            .map_err(|e| match e {
                CallError::Failed(error) => error,
                other => BlobError {
                    detail: alloc::format!("{other}"),
                    ..BlobError::new(BlobErrorCode::Storage, &self.digest)
                },
            })
    }

    /// Writes `bytes` as the whole blob (a manifest fetched in memory).
    pub fn replace_with(&mut self, bytes: &[u8]) -> Result<(), SinkError> {
        self.write(0, &[])?;
        for chunk in bytes.chunks(MAX_CHUNK) {
            let at = self.pending_at + self.pending.len() as u64;
            self.write(at, chunk)?;
        }
        self.flush()
    }
}

impl BlobSink for StoreSink<'_> {
    fn staged(&mut self) -> Result<u64, SinkError> {
        self.flush()?;
        let request = BlobRef {
            digest: self.digest.clone(),
        };
        let staged = service::call::<blobs::StagedLength>(&request)
            .map_err(|e| refused(e, &mut self.refusal))?;
        self.pending_at = staged.length;
        self.moved.staged = staged.length;
        self.moved.started_at = staged.length;
        self.moved.initial.get_or_insert(staged.length);
        self.note = staged.note;
        Ok(staged.length)
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), SinkError> {
        if offset != self.pending_at + self.pending.len() as u64 || data.is_empty() {
            // Not a continuation (a restart, or the cut to 0 itself): what
            // is pending goes first, then this write on its own.
            self.flush()?;
            let request = WriteRequest {
                digest: self.digest.clone(),
                offset,
                data: Vec::from(data),
            };
            let staged = service::call::<blobs::Write>(&request)
                .map_err(|e| refused(e, &mut self.refusal))?;
            self.pending_at = staged.length;
            self.moved.staged = staged.length;
            if offset < self.moved.started_at {
                self.moved.started_at = offset;
            }
        } else {
            let mut rest = data;
            while !rest.is_empty() {
                let room = MAX_CHUNK - self.pending.len();
                let (now, later) = rest.split_at(room.min(rest.len()));
                self.pending.extend_from_slice(now);
                rest = later;
                if self.pending.len() == MAX_CHUNK {
                    self.flush()?;
                }
            }
        }
        self.moved.fetched += data.len() as u64;
        if Instant::now() >= self.deadline {
            self.flush()?;
            return Err(SinkError::Paused);
        }
        Ok(())
    }
}

/// The validator as a note: `<total>\n<etag>` (either may be empty).
pub fn encode_note(v: &Validator) -> Option<String> {
    if v.etag.is_none() && v.total.is_none() {
        return None;
    }
    let mut note = v.total.map(|t| alloc::format!("{t}")).unwrap_or_default();
    note.push('\n');
    note.push_str(v.etag.as_deref().unwrap_or(""));
    Some(note)
}

/// The validator a note holds; a note that is not one of ours is none.
pub fn decode_note(note: Option<&str>) -> Validator {
    let Some((total, etag)) = note.and_then(|n| n.split_once('\n')) else {
        return Validator::default();
    };
    Validator {
        total: total.parse().ok(),
        etag: (!etag.is_empty() && etag.len() <= blobs::MAX_NOTE).then(|| String::from(etag)),
    }
}
