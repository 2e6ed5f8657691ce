//! Apps' consoles as log lines: domainmgr reads each running domain's
//! console through the host, a bounded chunk at a time, and logs its
//! complete lines (which reach the controller with the service's logs).
//!
//! A domain this domainmgr started is read from the start of its console
//! file; one it adopted from an earlier domainmgr from where the file
//! ends (its earlier lines were forwarded then). Offsets survive restarts
//! of the domain (the host appends each boot to the same file).

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use crate::{Host, HostError, Manager};

/// Bytes asked for per call.
pub const CONSOLE_CHUNK: u32 = 4096;
/// Calls per domain per pass: a chatty app cannot hold domainmgr up.
const CHUNKS_PER_PASS: usize = 4;
/// A line longer than this is cut (a guest may print anything).
pub const MAX_LINE: usize = 1024;

/// One domain's console position and its incomplete last line.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tail {
    offset: u64,
    partial: Vec<u8>,
    /// Bytes of the partial line were left out (it is longer than
    /// [`MAX_LINE`]).
    cut: bool,
    /// The last pass stopped at its budget with more of the console
    /// unread.
    behind: bool,
}

impl Tail {
    /// From the start of the console file.
    pub(crate) fn from_start() -> Tail {
        Tail::default()
    }

    /// Takes `data`; the complete lines in it, each with whether it was
    /// cut.
    fn take(&mut self, data: &[u8]) -> Vec<(String, bool)> {
        let mut lines = Vec::new();
        for &b in data {
            if b == b'\n' {
                lines.push(self.line());
            } else if self.partial.len() < MAX_LINE {
                self.partial.push(b);
            } else if b != b'\r' {
                self.cut = true;
            }
        }
        lines
    }

    fn line(&mut self) -> (String, bool) {
        let text = String::from_utf8_lossy(&self.partial);
        let line = String::from(text.trim_end_matches('\r'));
        self.partial.clear();
        (line, core::mem::take(&mut self.cut))
    }
}

/// One console line of an app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleLine {
    pub uuid: String,
    pub display_name: String,
    pub line: String,
    /// The guest printed more than [`MAX_LINE`] bytes on it: the rest is
    /// left out (and counted by who forwards it).
    pub truncated: bool,
}

impl Manager {
    /// The running domains' new console lines.
    pub fn console_lines(&mut self, host: &mut dyn Host) -> Result<Vec<ConsoleLine>, HostError> {
        let running: Vec<(String, String)> = self
            .running()
            .map(|(u, s)| (String::from(u), s.display_name.clone()))
            .collect();
        let mut out = Vec::new();
        for (uuid, name) in running {
            let tail = self.tails.entry(uuid.clone()).or_insert(Tail {
                // Adopted: its earlier lines were forwarded already.
                offset: u64::MAX,
                partial: Vec::new(),
                cut: false,
                behind: false,
            });
            tail.behind = false;
            for chunk_index in 0..CHUNKS_PER_PASS {
                let chunk = match host.console(&uuid, tail.offset, CONSOLE_CHUNK) {
                    Ok(chunk) => chunk,
                    Err(HostError::Domain(_)) => break,
                    Err(call) => return Err(call),
                };
                tail.offset = chunk.next_offset;
                out.extend(tail.take(&chunk.data).into_iter().map(|(line, truncated)| {
                    ConsoleLine {
                        uuid: uuid.clone(),
                        display_name: name.clone(),
                        line,
                        truncated,
                    }
                }));
                if chunk.next_offset >= chunk.size || chunk.data.is_empty() {
                    break;
                }
                tail.behind = chunk_index + 1 == CHUNKS_PER_PASS;
            }
        }
        let configs = &self.configs;
        self.tails.retain(|u, _| configs.contains_key(u));
        Ok(out)
    }

    /// Whether a console had more unread than the last pass's budget: the
    /// caller reads again soon instead of at its idle pace, so a burst (a
    /// Linux VM's boot log) reaches the logs in seconds, not one budget
    /// per idle round.
    pub fn console_behind(&self) -> bool {
        self.running()
            .any(|(u, _)| self.tails.get(u).is_some_and(|t| t.behind))
    }
}

/// The tails of domains by UUID.
pub(crate) type Tails = BTreeMap<String, Tail>;
