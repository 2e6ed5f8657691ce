//! Apps' console lines as `app-logs` items: one pass's lines grouped per
//! app, at most [`AppLogs::MAX_LINES`] an item, numbered, each carrying the
//! lines of its app that an earlier item failed to carry, so a subscriber
//! can account for every line.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use topics::{AppLogBatch, AppLogLine, AppLogs};

use crate::ConsoleLine;

/// Numbers `app-logs` items and remembers, per app, lines not published.
#[derive(Debug, Clone)]
pub struct AppLogBatcher {
    run: u32,
    next: u64,
    dropped: BTreeMap<String, u64>,
}

impl AppLogBatcher {
    /// `run` tells this publisher's items from a previous run's.
    pub fn new(run: u32) -> AppLogBatcher {
        AppLogBatcher {
            run,
            next: 0,
            dropped: BTreeMap::new(),
        }
    }

    /// The items for `lines` (read at `unix_ms`), with their bus keys, in
    /// the order read.
    pub fn batches(&mut self, lines: Vec<ConsoleLine>, unix_ms: u64) -> Vec<(String, AppLogBatch)> {
        let mut out: Vec<(String, AppLogBatch)> = Vec::new();
        for line in lines {
            let open = out.iter().rposition(|(_, b)| b.app_uuid == line.uuid);
            let index = match open {
                Some(i) if out[i].1.lines.len() < AppLogs::MAX_LINES => i,
                _ => {
                    let batch = AppLogBatch {
                        dropped: self.dropped.remove(&line.uuid).unwrap_or(0),
                        app_uuid: line.uuid.clone(),
                        display_name: line.display_name.clone(),
                        lines: Vec::new(),
                        run: self.run,
                        sequence: self.next,
                        truncated: 0,
                    };
                    out.push((format!("{:08x}-{:08}", self.run, self.next), batch));
                    self.next += 1;
                    out.len() - 1
                }
            };
            let batch = &mut out[index].1;
            batch.truncated += u32::from(line.truncated);
            batch.lines.push(AppLogLine {
                unix_ms,
                text: line.line,
            });
        }
        out
    }

    /// An item that could not be published: its lines (and those it
    /// carried as dropped) are counted in the app's next item.
    pub fn lost(&mut self, batch: &AppLogBatch) {
        let lost = batch.dropped + batch.lines.len() as u64;
        *self.dropped.entry(batch.app_uuid.clone()).or_default() += lost;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "6ba7b810-9dad-11d1-80b4-00c04fd430c8";
    const B: &str = "0b4c7e1a-3f7e-4d1c-8a2b-9c8d7e6f5a4b";

    fn line(uuid: &str, text: &str, truncated: bool) -> ConsoleLine {
        ConsoleLine {
            uuid: uuid.into(),
            display_name: if uuid == A { "a".into() } else { "b".into() },
            line: text.into(),
            truncated,
        }
    }

    #[test]
    fn lines_are_grouped_per_app_bounded_and_numbered() {
        let mut b = AppLogBatcher::new(0xabc);
        let mut lines = alloc::vec![line(A, "one", false), line(B, "x", true)];
        lines.extend((0..AppLogs::MAX_LINES).map(|i| line(A, &format!("{i}"), false)));
        let items = b.batches(lines, 5);
        assert_eq!(items.len(), 3);
        assert_eq!(items[0].0, "00000abc-00000000");
        assert_eq!(items[2].0, "00000abc-00000002");
        assert_eq!(items[0].1.lines.len(), AppLogs::MAX_LINES);
        assert_eq!(items[0].1.lines[0].text, "one");
        assert_eq!(items[0].1.lines[0].unix_ms, 5);
        assert_eq!((items[1].1.app_uuid.as_str(), items[1].1.truncated), (B, 1));
        assert_eq!(items[1].1.display_name, "b");
        assert_eq!(items[2].1.lines.len(), 1);
        assert_eq!(items[2].1.sequence, 2);
        assert!(b.batches(Vec::new(), 6).is_empty());
    }

    #[test]
    fn lost_items_are_counted_in_the_apps_next_item() {
        let mut b = AppLogBatcher::new(1);
        let items = b.batches(alloc::vec![line(A, "1", false), line(A, "2", false)], 1);
        b.lost(&items[0].1);
        let items = b.batches(alloc::vec![line(A, "3", false)], 2);
        assert_eq!(items[0].1.dropped, 2);
        b.lost(&items[0].1);
        let items = b.batches(alloc::vec![line(B, "4", false), line(A, "5", false)], 3);
        assert_eq!(items[0].1.dropped, 0);
        assert_eq!(items[1].1.dropped, 3);
        let items = b.batches(alloc::vec![line(A, "6", false)], 4);
        assert_eq!(items[0].1.dropped, 0);
    }
}
