//! The status display: the node's status block, redrawn in place on a
//! terminal or printed as changed lines otherwise, fed by the host's events
//! and its status file.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::io::{IsTerminal, Stdout, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::thread;
use std::time::{Duration, Instant};

use super::build::BuiltNode;
use super::dirs::NodeDirs;
use super::host::{HostEvent, status_line_service};
use super::session::Session;
use crate::output::{STDOUT_LOST, line_to};
use crate::status::NodeStatus;

/// Host notes (its own lines, not guest consoles) kept for the status view.
const NOTES_SHOWN: usize = 3;

/// Shows the node's status on `view` until `stop` is set or the host ends.
pub fn watch<W: Write>(
    view: &mut View<W>,
    session: &mut Session,
    built: &BuiltNode,
    dirs: &NodeDirs,
    stop: &AtomicBool,
) -> Result<(), String> {
    let log = dirs.host_log();
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
            if session.disk.is_some() && status.code() == Some(harness::devdisk::EXIT_REBOOT) {
                let slot = session.reboot(built, dirs)?;
                let line = format!("eve-host asked for a reboot: booting again, from {slot}");
                view.note(&line);
                notes.push_back(line);
                if notes.len() > NOTES_SHOWN {
                    notes.pop_front();
                }
                host_lines.clear();
                changed = true;
                continue;
            }
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

/// What `cargo xtask qemu` prints: the status block, redrawn in place on a
/// terminal (the cursor moves up over the previous block only, so the
/// scroll-back above stays), or, when stdout is not a terminal, only the
/// lines that changed; and lines of its own. Every write goes through
/// [`crate::output`], so a closed stdout loses the view, never the node.
pub struct View<W: Write> {
    sink: W,
    /// The loss flag of the stream `sink` is.
    lost: &'static AtomicBool,
    live: bool,
    drawn: usize,
    previous: Vec<String>,
}

impl View<Stdout> {
    /// The view on standard output, live when it is a terminal.
    pub fn stdout() -> View<Stdout> {
        let stdout = std::io::stdout();
        let live = stdout.is_terminal();
        View::new(stdout, &STDOUT_LOST, live)
    }
}

impl<W: Write> View<W> {
    fn new(sink: W, lost: &'static AtomicBool, live: bool) -> View<W> {
        View {
            sink,
            lost,
            live,
            drawn: 0,
            previous: Vec::new(),
        }
    }

    /// A line of xtask's own, above the block.
    pub fn say(&mut self, line: fmt::Arguments<'_>) {
        line_to(&mut self.sink, self.lost, line);
    }

    /// A host note: part of the block on a terminal, a line of its own
    /// otherwise.
    fn note(&mut self, line: &str) {
        if !self.live {
            self.say(format_args!("{line}"));
        }
    }

    fn show(&mut self, lines: &[String]) {
        let mut block = String::new();
        if self.live {
            let width = rustix::termios::tcgetwinsize(std::io::stdout())
                .map_or(100, |w| usize::from(w.ws_col).max(20));
            if self.drawn > 0 {
                block.push_str(&format!("\x1b[{}F\x1b[J", self.drawn));
            }
            let cut: Vec<String> = lines
                .iter()
                .map(|line| line.chars().take(width - 1).collect())
                .collect();
            block.push_str(&cut.join("\n"));
            self.drawn = lines.len();
        } else {
            let changed: Vec<&str> = changed_lines(&self.previous, lines)
                .into_iter()
                .map(String::as_str)
                .collect();
            self.previous = lines.to_vec();
            if changed.is_empty() {
                return;
            }
            block.push_str(&changed.join("\n"));
        }
        line_to(&mut self.sink, self.lost, format_args!("{block}"));
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

    #[test]
    fn a_closed_output_loses_the_view_and_nothing_else() {
        static LOST: AtomicBool = AtomicBool::new(false);
        let (reader, writer) = std::io::pipe().unwrap();
        let mut view = View::new(writer, &LOST, false);
        view.say(format_args!("node n (x86_64)"));
        assert!(!LOST.load(Ordering::Relaxed));
        drop(reader);
        view.show(&["zedagent: running (pid 1), restarts 0".to_owned()]);
        assert!(LOST.load(Ordering::Relaxed), "the loss is noticed");
        view.note("[zedagent] host: bus connected");
        view.say(format_args!("stopping the node..."));
        view.show(&["zedagent: stopped, restarts 0".to_owned()]);
    }
}
