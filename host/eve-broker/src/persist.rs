//! Tables that survive a host restart: one file per topic, replaced
//! atomically on every change.
//!
//! A file is the topic's items as a sequence of bus Publish frames, so
//! there is one encoding to trust and test. It is named after the topic in
//! hex, which never needs escaping. A write goes to a temporary file that is
//! fsynced and renamed over the old one, and the directory is fsynced, so
//! after a power loss the file holds either the old or the new table.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use evebus::{Decoder, Limits, Message, WireError};

use crate::table::Table;

/// Why a persisted table could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not a table file")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: WireError,
    },
    #[error("{path} holds items of topic {found}")]
    WrongTopic { path: PathBuf, found: String },
}

pub(crate) fn table_path(dir: &Path, topic: &str) -> PathBuf {
    let hex: String = topic.bytes().map(|b| format!("{b:02x}")).collect();
    dir.join(format!("{hex}.table"))
}

/// Writes `table` as the persisted state of `topic`.
pub(crate) fn save(dir: &Path, topic: &str, table: &Table, limits: &Limits) -> io::Result<()> {
    let mut bytes = Vec::new();
    for (key, value) in table.items() {
        Message::Publish {
            topic: topic.to_owned(),
            key: key.to_owned(),
            value: value.to_vec(),
        }
        .encode(limits, &mut bytes)
        .map_err(io::Error::other)?;
    }
    let path = table_path(dir, topic);
    let temporary = path.with_extension("tmp");
    let mut file = File::create(&temporary)?;
    file.write_all(&bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&temporary, &path)?;
    File::open(dir)?.sync_all()
}

/// Reads the persisted state of `topic`; `None` if it was never saved.
pub(crate) fn load(
    dir: &Path,
    topic: &str,
    limits: &Limits,
) -> Result<Option<BTreeMap<String, Vec<u8>>>, LoadError> {
    let path = table_path(dir, topic);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(LoadError::Read { path, source }),
    };
    let mut decoder = Decoder::new(*limits);
    let mut messages = Vec::new();
    decoder
        .feed(&bytes, |m| messages.push(m))
        .map_err(|source| LoadError::Corrupt {
            path: path.clone(),
            source,
        })?;
    if decoder.buffered() != 0 {
        return Err(LoadError::Corrupt {
            path,
            source: WireError::Truncated,
        });
    }
    let mut items = BTreeMap::new();
    for message in messages {
        match message {
            Message::Publish {
                topic: found,
                key,
                value,
            } if found == topic => {
                items.insert(key, value);
            }
            Message::Publish { topic: found, .. } => {
                return Err(LoadError::WrongTopic { path, found });
            }
            other => {
                return Err(LoadError::Corrupt {
                    path,
                    source: WireError::UnknownKind(other.kind().code()),
                });
            }
        }
    }
    Ok(Some(items))
}
