//! A QMP client: QEMU's JSON control socket, for what a console cannot
//! do: ask the guest to power down (an ACPI or GPIO power button press),
//! power the VM off, hear why it stopped (the `SHUTDOWN` event's reason),
//! and run the monitor commands QMP has no equivalent of (a user-mode
//! network's `hostfwd_add`). One reader thread per connection keeps events
//! and command answers apart; it ends when QEMU closes the socket.
//!
//! Shared by the app domains (`domains`) and the node host (`eve-host`,
//! which forwards host ports to zedrouter's uplink).

#![forbid(unsafe_code)]

use std::{
    io::{BufRead, BufReader, Read, Write},
    os::unix::net::UnixStream,
    path::Path,
    sync::{
        Arc, Mutex,
        mpsc::{self, Receiver, RecvTimeoutError},
    },
    thread::JoinHandle,
    time::Duration,
};

use serde_json::{Value, json};

/// How long QEMU gets to answer a command.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);
/// Longest line we accept from QEMU; an event is a few hundred bytes.
const MAX_LINE: usize = 1 << 20;

/// Why a QMP exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    #[error("QMP socket {path}: {source}")]
    Connect {
        path: String,
        source: std::io::Error,
    },
    #[error("QMP: {0}")]
    Io(#[from] std::io::Error),
    #[error("QMP: QEMU closed the connection")]
    Closed,
    #[error("QMP: no answer to {0} within {ANSWER_WITHIN:?}")]
    Timeout(String),
    #[error("QMP: {command} failed: {message}")]
    Command { command: String, message: String },
    #[error("QMP: unexpected greeting {0}")]
    Greeting(String),
}

/// An asynchronous message from QEMU.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub name: String,
    pub data: Value,
}

/// A connected, negotiated QMP session.
pub struct Qmp {
    writer: UnixStream,
    answers: Receiver<Result<Value, String>>,
    events: Arc<Mutex<Vec<Event>>>,
    reader: Option<JoinHandle<()>>,
}

impl Qmp {
    /// Connects to `path` and leaves capabilities negotiation mode.
    pub fn connect(path: &Path) -> Result<Qmp, QmpError> {
        let stream = UnixStream::connect(path).map_err(|source| QmpError::Connect {
            path: path.display().to_string(),
            source,
        })?;
        let writer = stream.try_clone()?;
        let (greeting_tx, greeting_rx) = mpsc::channel();
        let (answer_tx, answers) = mpsc::channel();
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&events);
        let reader = std::thread::Builder::new()
            .name("qmp".into())
            .spawn(move || read_loop(stream, greeting_tx, answer_tx, sink))?;
        let mut qmp = Qmp {
            writer,
            answers,
            events,
            reader: Some(reader),
        };
        match greeting_rx.recv_timeout(ANSWER_WITHIN) {
            Ok(greeting) if greeting.get("QMP").is_some() => {}
            Ok(other) => return Err(QmpError::Greeting(other.to_string())),
            Err(RecvTimeoutError::Timeout) => return Err(QmpError::Timeout("the greeting".into())),
            Err(RecvTimeoutError::Disconnected) => return Err(QmpError::Closed),
        }
        qmp.execute("qmp_capabilities")?;
        Ok(qmp)
    }

    /// Runs `command` (no arguments) and returns its answer.
    pub fn execute(&mut self, command: &str) -> Result<Value, QmpError> {
        self.send(command, json!({ "execute": command }))
    }

    /// Runs a human monitor (HMP) command through QMP and returns what it
    /// printed: HMP reports its failures as text, not as QMP errors, so
    /// the caller reads the output (empty for a command that succeeded
    /// silently, such as `hostfwd_add`).
    pub fn human_command(&mut self, command_line: &str) -> Result<String, QmpError> {
        let answer = self.send(
            "human-monitor-command",
            json!({
                "execute": "human-monitor-command",
                "arguments": { "command-line": command_line },
            }),
        )?;
        Ok(answer.as_str().unwrap_or_default().to_string())
    }

    /// Whether QEMU has closed the socket (it exited): a new QEMU behind
    /// the same path needs a new connection.
    pub fn is_closed(&self) -> bool {
        self.reader.as_ref().is_none_or(JoinHandle::is_finished)
    }

    fn send(&mut self, command: &str, message: Value) -> Result<Value, QmpError> {
        let mut line = message.to_string();
        line.push('\n');
        self.writer.write_all(line.as_bytes())?;
        match self.answers.recv_timeout(ANSWER_WITHIN) {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(message)) => Err(QmpError::Command {
                command: command.into(),
                message,
            }),
            Err(RecvTimeoutError::Timeout) => Err(QmpError::Timeout(command.into())),
            Err(RecvTimeoutError::Disconnected) => Err(QmpError::Closed),
        }
    }

    /// Every event received so far.
    pub fn events(&self) -> Vec<Event> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits for the reader to see QEMU close the socket (QEMU has
    /// exited, so this is prompt), then returns every event.
    pub fn finish(mut self) -> Vec<Event> {
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        self.events()
    }
}

impl Drop for Qmp {
    fn drop(&mut self) {
        // Unblocks the reader if QEMU is still running.
        let _ = self.writer.shutdown(std::net::Shutdown::Both);
    }
}

fn read_loop(
    stream: UnixStream,
    greeting: mpsc::Sender<Value>,
    answers: mpsc::Sender<Result<Value, String>>,
    events: Arc<Mutex<Vec<Event>>>,
) {
    let mut lines = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        match (&mut lines)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut line)
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let Ok(value) = serde_json::from_slice::<Value>(&line) else {
            continue;
        };
        if value.get("QMP").is_some() {
            let _ = greeting.send(value);
        } else if let Some(name) = value.get("event").and_then(Value::as_str) {
            let data = value.get("data").cloned().unwrap_or(Value::Null);
            events
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Event {
                    name: name.to_string(),
                    data,
                });
        } else if let Some(answer) = value.get("return") {
            let _ = answers.send(Ok(answer.clone()));
        } else if let Some(error) = value.get("error") {
            let message = error
                .get("desc")
                .and_then(Value::as_str)
                .unwrap_or("unknown error")
                .to_string();
            let _ = answers.send(Err(message));
        }
    }
}

/// The reason of the last `SHUTDOWN` event (`guest-shutdown`,
/// `guest-reset`, `guest-panic`, `host-qmp-quit`, `host-signal`, ...).
pub fn shutdown_reason(events: &[Event]) -> Option<String> {
    events
        .iter()
        .rev()
        .find(|e| e.name == "SHUTDOWN")
        .and_then(|e| e.data.get("reason")?.as_str().map(str::to_string))
}

/// Whether the guest reported a panic (pvpanic): `GUEST_PANICKED`.
pub fn guest_panicked(events: &[Event]) -> bool {
    events.iter().any(|e| e.name == "GUEST_PANICKED")
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixListener;

    use super::*;

    /// A fake QEMU: greets, answers each command, sends events.
    fn fake_qemu(path: &Path, script: Vec<&'static str>) -> std::thread::JoinHandle<Vec<String>> {
        let listener = UnixListener::bind(path).unwrap();
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut writer = stream.try_clone().unwrap();
            writer
                .write_all(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\r\n")
                .unwrap();
            let mut received = Vec::new();
            let mut lines = BufReader::new(stream).lines();
            for reply in script {
                let Some(Ok(line)) = lines.next() else { break };
                received.push(line);
                writer.write_all(reply.as_bytes()).unwrap();
            }
            received
        })
    }

    /// A fake QEMU playing `script` in a fresh directory, and a client
    /// connected to it; the directory lives as long as the test holds it.
    fn connected(
        script: Vec<&'static str>,
    ) -> (tempfile::TempDir, std::thread::JoinHandle<Vec<String>>, Qmp) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qmp.sock");
        let qemu = fake_qemu(&path, script);
        let qmp = Qmp::connect(&path).unwrap();
        (dir, qemu, qmp)
    }

    #[test]
    fn commands_get_answers_and_events_are_kept() {
        let (_dir, qemu, mut qmp) = connected(vec![
            "{\"return\": {}}\r\n",
            "{\"timestamp\": {}, \"event\": \"POWERDOWN\"}\r\n{\"return\": {}}\r\n",
            "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"no such command\"}}\r\n\
                 {\"event\": \"SHUTDOWN\", \"data\": {\"guest\": true, \"reason\": \"guest-shutdown\"}}\r\n",
        ]);
        qmp.execute("system_powerdown").unwrap();
        let err = qmp.execute("nonsense").unwrap_err();
        assert!(err.to_string().contains("no such command"), "{err}");
        let received = qemu.join().unwrap();
        assert!(received[0].contains("qmp_capabilities"));
        assert!(received[1].contains("system_powerdown"));
        let events = qmp.finish();
        assert_eq!(events[0].name, "POWERDOWN");
        assert_eq!(shutdown_reason(&events).as_deref(), Some("guest-shutdown"));
        assert!(!guest_panicked(&events));
    }

    #[test]
    fn human_commands_go_through_qmp_and_return_their_text() {
        let (_dir, qemu, mut qmp) = connected(vec![
            "{\"return\": {}}\r\n",
            "{\"return\": \"\"}\r\n",
            "{\"return\": \"Could not set up host forwarding rule\\r\\n\"}\r\n",
        ]);
        assert_eq!(
            qmp.human_command("hostfwd_add net0 tcp:127.0.0.1:8080-:8080")
                .unwrap(),
            ""
        );
        let failed = qmp
            .human_command("hostfwd_add net0 tcp:127.0.0.1:8080-:8080")
            .unwrap();
        assert!(failed.starts_with("Could not"), "{failed}");
        let received = qemu.join().unwrap();
        let sent: Value = serde_json::from_str(&received[1]).unwrap();
        assert_eq!(sent["execute"], "human-monitor-command");
        assert_eq!(
            sent["arguments"]["command-line"],
            "hostfwd_add net0 tcp:127.0.0.1:8080-:8080"
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !qmp.is_closed() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(qmp.is_closed());
    }

    #[test]
    fn a_closed_socket_is_an_error_not_a_hang() {
        let (dir, qemu, mut qmp) = connected(vec!["{\"return\": {}}\r\n"]);
        qemu.join().unwrap();
        assert!(matches!(
            qmp.execute("quit"),
            Err(QmpError::Closed | QmpError::Io(_))
        ));
        assert!(Qmp::connect(&dir.path().join("none.sock")).is_err());
    }
}
