//! The status display: the node's status block, redrawn in place on a
//! terminal or printed as changed lines otherwise, fed by the host's events
//! and its status file.

use std::collections::{BTreeMap, VecDeque};
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::thread;
use std::time::{Duration, Instant};

use super::build::BuiltNode;
use super::host::{HostEvent, status_line_service};
use super::session::Session;
use crate::status::NodeStatus;

/// Host notes (its own lines, not guest consoles) kept for the status view.
const NOTES_SHOWN: usize = 3;

/// Shows the node's status until `stop` is set or the host ends.
pub fn watch(
    session: &mut Session,
    built: &BuiltNode,
    log: &Path,
    stop: &AtomicBool,
) -> Result<(), String> {
    let mut view = View::new(std::io::stdout().is_terminal());
    let mut host_lines: BTreeMap<String, String> = BTreeMap::new();
    let mut notes: VecDeque<String> = VecDeque::new();
    let mut next_draw = Instant::now();
    let mut changed = true;
    while !stop.load(Ordering::SeqCst) {
        match session.host.events.recv_timeout(Duration::from_millis(100)) {
            Ok(HostEvent::Status { line, .. }) => {
                if let Some(service) = status_line_service(&line) {
                    host_lines.insert(service.to_owned(), line.clone());
                }
                changed = true;
            }
            Ok(HostEvent::Note(line)) => {
                view.note(&line);
                notes.push_back(line);
                if notes.len() > NOTES_SHOWN {
                    notes.pop_front();
                }
                changed = true;
            }
            Ok(HostEvent::Stamp { .. } | HostEvent::Metric { .. })
            | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                thread::sleep(Duration::from_millis(100));
            }
        }
        if let Some(status) = session.host.exited() {
            return Err(format!(
                "eve-host ended by itself ({status}); its log: {}",
                log.display()
            ));
        }
        let now = Instant::now();
        if now >= next_draw || (changed && !view.live) {
            let status = session
                .status_file()
                .unwrap_or_else(|| NodeStatus::from_host_lines(&host_lines));
            let mut lines = Vec::new();
            if view.live {
                lines.push(format!(
                    "node {} up {} s",
                    built.manifest.node.name,
                    session.host.started.elapsed().as_secs()
                ));
            }
            lines.extend(crate::status::render(&status, view.live));
            if view.live {
                lines.extend(notes.iter().map(|n| format!("| {n}")));
            }
            view.show(&lines);
            next_draw = now + Duration::from_secs(1);
            changed = false;
        }
    }
    Ok(())
}

/// The status block on the terminal: redrawn in place (the cursor moves up
/// over the previous block only, so the scroll-back above stays), or, when
/// stdout is not a terminal, only the lines that changed.
struct View {
    live: bool,
    drawn: usize,
    previous: Vec<String>,
}

impl View {
    fn new(live: bool) -> View {
        View {
            live,
            drawn: 0,
            previous: Vec::new(),
        }
    }

    /// A host note: part of the block on a terminal, a line of its own
    /// otherwise.
    fn note(&mut self, line: &str) {
        if !self.live {
            println!("{line}");
        }
    }

    fn show(&mut self, lines: &[String]) {
        let mut out = std::io::stdout().lock();
        if self.live {
            let width = rustix::termios::tcgetwinsize(std::io::stdout())
                .map_or(100, |w| usize::from(w.ws_col).max(20));
            if self.drawn > 0 {
                let _ = write!(out, "\x1b[{}F\x1b[J", self.drawn);
            }
            for line in lines {
                let cut: String = line.chars().take(width - 1).collect();
                let _ = writeln!(out, "{cut}");
            }
            self.drawn = lines.len();
        } else {
            for line in changed_lines(&self.previous, lines) {
                let _ = writeln!(out, "{line}");
            }
            self.previous = lines.to_vec();
        }
        let _ = out.flush();
    }
}

/// The lines of `new` that `old` did not have.
pub fn changed_lines<'a>(old: &[String], new: &'a [String]) -> Vec<&'a String> {
    new.iter().filter(|l| !old.contains(l)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_changed_lines_are_printed_to_a_log() {
        let old = vec!["a".to_owned(), "b".to_owned()];
        let new = vec!["a".to_owned(), "c".to_owned()];
        assert_eq!(changed_lines(&old, &new), [&"c".to_owned()]);
        assert!(changed_lines(&new, &new).is_empty());
    }
}
