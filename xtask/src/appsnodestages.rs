//! Where an app's time from the config accepted to RUNNING goes, through
//! the whole node: the host's log (`eve-host.log`) says when the download
//! started (the downloader), when the blob was verified and the volume
//! built (the host's `blobs` and `volumes` targets, at volumemgr's
//! request) and when the domain started (the `domains` target, at
//! domainmgr's); the bench stamps each line as it appears, read every
//! poll (50 ms), since the host's own lines carry no time. What lies
//! between two stamps is the services' decisions and the bus: e.g.
//! volume ready to domain started is volumemgr's `volume-status`,
//! zedmanager's `domain-config` and domainmgr's start call.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A stage of an app's deployment the host's log marks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// The downloader began fetching (its first `from byte` line).
    DownloadStarted,
    /// The host verified a blob (the last one before the volume build).
    BlobVerified,
    /// The host began building the app's volume.
    VolumeBuilding,
    /// The app's volume is ready.
    VolumeReady,
    /// The host started the app's domain.
    DomainStarted,
}

/// The stages in order, with the heading of the time up to each.
pub const STAGES: [(Stage, &str); 5] = [
    (Stage::DownloadStarted, "accepted to download start"),
    (Stage::BlobVerified, "download and verify"),
    (Stage::VolumeBuilding, "verified to volume build"),
    (Stage::VolumeReady, "volume build"),
    (Stage::DomainStarted, "volume ready to domain started"),
];

/// The host's log, read from where it was when opened.
pub struct HostLog {
    path: PathBuf,
    offset: u64,
    partial: String,
}

impl HostLog {
    /// Follows `path` from its current end.
    pub fn follow(path: &Path) -> HostLog {
        let offset = std::fs::metadata(path).map_or(0, |m| m.len());
        HostLog {
            path: path.to_path_buf(),
            offset,
            partial: String::new(),
        }
    }

    /// The whole lines written since the last call.
    pub fn new_lines(&mut self) -> Vec<String> {
        let mut bytes = Vec::new();
        let read = File::open(&self.path).and_then(|mut f| {
            f.seek(SeekFrom::Start(self.offset))?;
            f.read_to_end(&mut bytes)
        });
        let Ok(n) = read else {
            return Vec::new();
        };
        self.offset += n as u64;
        self.partial.push_str(&String::from_utf8_lossy(&bytes));
        let Some(end) = self.partial.rfind('\n') else {
            return Vec::new();
        };
        let rest = self.partial.split_off(end + 1);
        let lines = std::mem::replace(&mut self.partial, rest);
        lines.lines().map(str::to_owned).collect()
    }
}

/// When each stage of one app was seen.
pub struct Stages {
    name: String,
    uuid: String,
    volume: Option<String>,
    seen: Vec<(Stage, Instant)>,
}

impl Stages {
    /// For the app called `name` with UUID `uuid`.
    pub fn new(name: &str, uuid: &str) -> Stages {
        Stages {
            name: name.to_owned(),
            uuid: uuid.to_owned(),
            volume: None,
            seen: Vec::new(),
        }
    }

    fn at(&self, stage: Stage) -> Option<Instant> {
        self.seen.iter().find(|(s, _)| *s == stage).map(|(_, t)| *t)
    }

    fn mark(&mut self, stage: Stage, at: Instant) {
        if self.at(stage).is_none() {
            self.seen.push((stage, at));
        }
    }

    /// Notes what `line`, read at `at`, says of this app.
    pub fn observe(&mut self, line: &str, at: Instant) {
        if line.starts_with("[downloader]") && line.contains(" from byte ") {
            self.mark(Stage::DownloadStarted, at);
        } else if line.contains("blobs: sha256:") && line.contains(" verified ") {
            if self.at(Stage::VolumeBuilding).is_none() {
                self.seen.retain(|(s, _)| *s != Stage::BlobVerified);
                self.seen.push((Stage::BlobVerified, at));
            }
        } else if let Some(rest) = line.split_once("volumes: building ").map(|(_, r)| r) {
            if rest.contains(&format!(", {})", self.name)) {
                self.volume = rest.split_whitespace().next().map(str::to_owned);
                self.mark(Stage::VolumeBuilding, at);
            }
        } else if let Some(volume) = &self.volume {
            if line.ends_with(&format!("volumes: {volume} ready")) {
                self.mark(Stage::VolumeReady, at);
            } else if line.contains(&format!("domains: started {}", self.uuid)) {
                self.mark(Stage::DomainStarted, at);
            }
        }
    }

    /// The time up to each stage from the one before it (the first from
    /// `accepted`), and from the last stage to `running`; `None` for a
    /// stage not seen (a blob already in the store is not downloaded).
    pub fn breakdown(&self, accepted: Instant, running: Instant) -> Vec<Option<Duration>> {
        let mut last = accepted;
        let mut times = Vec::with_capacity(STAGES.len() + 1);
        for (stage, _) in STAGES {
            times.push(self.at(stage).map(|t| {
                let took = t.saturating_duration_since(last);
                last = t;
                took
            }));
        }
        times.push(Some(running.saturating_duration_since(last)));
        times
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_are_read_from_the_hosts_lines_of_this_app_only() {
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        let mut stages = Stages::new("web", "deb72bc0-1be4-8b0d-b067-37d7fd4825c9");
        let lines = [
            "[downloader] [ 31.1] downloader INFO: 2cca: /bench/hello-http.img from byte 0",
            "[host] eve_host::targets::blobs INFO: blobs: sha256:2cca verified (214416 bytes) for downloader",
            "[host] eve_host::targets::blobs INFO: blobs: sha256:2ccb verified (10 bytes) for downloader",
            "[host] eve_host::targets::volumes INFO: volumes: building 9bfb.0 (Raw, other) from 1 verified blobs",
            "[host] eve_host::targets::volumes INFO: volumes: building 9bfc.0 (Raw, web) from 1 verified blobs",
            "[host] eve_host::targets::volumes INFO: volumes: 9bfb.0 ready",
            "[host] eve_host::targets::volumes INFO: volumes: 9bfc.0 ready",
            "[host] eve_host::targets::domains::state INFO: domains: started deb72bc0-1be4-8b0d-b067-37d7fd4825c9 (web) as a",
        ];
        for (i, line) in lines.iter().enumerate() {
            stages.observe(line, s(i as u64 + 1));
        }
        let secs: Vec<Option<u64>> = stages
            .breakdown(t0, s(10))
            .iter()
            .map(|d| d.map(|d| d.as_secs()))
            .collect();
        assert_eq!(secs, [Some(1), Some(2), Some(2), Some(2), Some(1), Some(2)]);
        let mut none = Stages::new("web", "x");
        none.observe(lines[4], s(2));
        assert_eq!(none.breakdown(t0, s(3))[0], None);
    }

    #[test]
    fn only_whole_lines_are_given() {
        let dir = std::env::temp_dir().join(format!("hostlog-{}", std::process::id()));
        std::fs::write(&dir, "old\n").unwrap();
        let mut log = HostLog::follow(&dir);
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(&dir).unwrap();
        write!(f, "one\ntw").unwrap();
        assert_eq!(log.new_lines(), ["one"]);
        writeln!(f, "o").unwrap();
        assert_eq!(log.new_lines(), ["two"]);
        assert!(log.new_lines().is_empty());
        let _ = std::fs::remove_file(&dir);
    }
}
