//! Building one volume generation from verified blobs, in a directory of
//! its own that becomes the volume only when complete (it is renamed into
//! place, then the parent directory is synced): a host that stops mid-way
//! leaves a `.building-` directory that the next start removes.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use hostops::volumes::VolumeFormat;
use serde::{Deserialize, Serialize};

/// The record of a built volume, `volume.json` in its directory.
pub(super) const RECORD: &str = "volume.json";
/// Prefix of a generation being built.
pub(super) const BUILDING: &str = ".building-";
/// Prefix of a generation being removed.
pub(super) const DELETING: &str = ".deleting-";
/// The disk file of a qcow2 volume.
pub(super) const QCOW2_DISK: &str = "disk.qcow2";

/// What a volume was built from and as: written last, so a directory with
/// it is a complete volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Record {
    pub uuid: String,
    pub generation: i64,
    pub format: String,
    /// `(digest, media type)` of each component, in the request's order.
    pub components: Vec<(String, String)>,
    pub max_size_bytes: u64,
    pub size_bytes: u64,
    pub created_unix: u64,
}

/// The names formats have in records.
const FORMATS: [(VolumeFormat, &str); 4] = [
    (VolumeFormat::Raw, "raw"),
    (VolumeFormat::Qcow2, "qcow2"),
    (VolumeFormat::Container, "container"),
    (VolumeFormat::Blank, "blank"),
];

/// A format's name in records.
pub(super) fn format_name(format: VolumeFormat) -> &'static str {
    FORMATS
        .iter()
        .find(|(f, _)| *f == format)
        .map_or("unspecified", |(_, n)| n)
}

impl Record {
    pub(super) fn format(&self) -> VolumeFormat {
        FORMATS
            .iter()
            .find(|(_, n)| *n == self.format)
            .map_or(VolumeFormat::Unspecified, |(f, _)| *f)
    }
}

/// A verified blob to build from: where the store keeps it and its size.
#[derive(Debug, Clone)]
pub(super) struct Source {
    pub digest: String,
    pub media_type: String,
    pub path: PathBuf,
    pub size: u64,
}

/// How the host runs `qemu-img` on a verified image.
#[derive(Debug, Clone)]
pub struct QemuImg {
    /// The program.
    pub program: PathBuf,
    /// Wall-clock limit per run; the process is killed past it.
    pub time_limit: Duration,
    /// Address-space limit per run (`prlimit --as`).
    pub memory_limit_bytes: u64,
    /// Largest virtual size accepted.
    pub max_virtual_bytes: u64,
}

impl Default for QemuImg {
    fn default() -> Self {
        Self {
            program: PathBuf::from("qemu-img"),
            time_limit: Duration::from_secs(600),
            memory_limit_bytes: 2 << 30,
            max_virtual_bytes: 16 << 40,
        }
    }
}

/// Most bytes of `qemu-img` output read.
const MAX_OUTPUT: u64 = 1 << 20;

/// What `qemu-img info --output=json` says that matters here.
#[derive(Deserialize)]
struct ImageInfo {
    format: String,
    #[serde(rename = "virtual-size")]
    virtual_size: u64,
    #[serde(rename = "backing-filename")]
    backing_filename: Option<String>,
    #[serde(rename = "full-backing-filename")]
    full_backing_filename: Option<String>,
    #[serde(rename = "format-specific")]
    format_specific: Option<FormatSpecific>,
}

#[derive(Deserialize)]
struct FormatSpecific {
    data: Option<Qcow2Data>,
}

#[derive(Deserialize)]
struct Qcow2Data {
    #[serde(rename = "data-file")]
    data_file: Option<String>,
    corrupt: Option<bool>,
}

impl QemuImg {
    /// Runs `qemu-img ARGS` under the limits; its standard output.
    fn run(&self, args: &[&std::ffi::OsStr]) -> Result<Vec<u8>, String> {
        let mut child = Command::new("prlimit")
            .arg(format!("--as={}", self.memory_limit_bytes))
            .arg("--")
            .arg(&self.program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("running {} under prlimit: {e}", self.program.display()))?;
        let out = bounded_reader(child.stdout.take());
        let err = bounded_reader(child.stderr.take());
        let status = wait_with_deadline(&mut child, self.time_limit)?;
        let out = out.join().unwrap_or_default();
        let err = err.join().unwrap_or_default();
        if !status.success() {
            let why = String::from_utf8_lossy(&err);
            let why = why.trim();
            return Err(format!(
                "qemu-img {}: {}",
                args.first().map_or("".into(), |a| a.to_string_lossy()),
                if why.is_empty() { "failed" } else { why }
            ));
        }
        Ok(out)
    }

    /// Checks a qcow2 image: its header (no backing file, no external
    /// data file, not marked corrupt, a bounded virtual size), then its
    /// metadata (`qemu-img check`). Returns its virtual size.
    fn check_qcow2(&self, image: &Path) -> Result<u64, String> {
        let json = self.run(&[
            "info".as_ref(),
            "--output=json".as_ref(),
            "-f".as_ref(),
            "qcow2".as_ref(),
            image.as_os_str(),
        ])?;
        let info: ImageInfo = serde_json::from_slice(&json)
            .map_err(|e| format!("qemu-img info answered what is not its JSON: {e}"))?;
        if info.format != "qcow2" {
            return Err(format!("the image is {}, not qcow2", info.format));
        }
        if info.backing_filename.is_some() || info.full_backing_filename.is_some() {
            return Err(String::from(
                "the image names a backing file: refused (a VM would open a host path)",
            ));
        }
        let data = info.format_specific.and_then(|f| f.data);
        if data.as_ref().is_some_and(|d| d.data_file.is_some()) {
            return Err(String::from(
                "the image names an external data file: refused (a VM would open a host path)",
            ));
        }
        if data.and_then(|d| d.corrupt) == Some(true) {
            return Err(String::from("the image is marked corrupt"));
        }
        if info.virtual_size > self.max_virtual_bytes {
            return Err(format!(
                "virtual size {} is over the host's limit of {} bytes",
                info.virtual_size, self.max_virtual_bytes
            ));
        }
        self.run(&[
            "check".as_ref(),
            "-f".as_ref(),
            "qcow2".as_ref(),
            image.as_os_str(),
        ])?;
        Ok(info.virtual_size)
    }

    fn resize(&self, image: &Path, size: u64) -> Result<(), String> {
        self.run(&[
            "resize".as_ref(),
            "-f".as_ref(),
            "qcow2".as_ref(),
            image.as_os_str(),
            size.to_string().as_ref(),
        ])
        .map(|_| ())
    }
}

fn bounded_reader<R: Read + Send + 'static>(stream: Option<R>) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut out = Vec::new();
        if let Some(stream) = stream {
            let _ = stream.take(MAX_OUTPUT).read_to_end(&mut out);
        }
        out
    })
}

fn wait_with_deadline(
    child: &mut Child,
    limit: Duration,
) -> Result<std::process::ExitStatus, String> {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "qemu-img took longer than {} s: stopped",
                    limit.as_secs()
                ));
            }
            Ok(None) => thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("waiting for qemu-img: {e}")),
        }
    }
}

fn io(what: &str, path: &Path) -> impl FnOnce(io::Error) -> String + use<> {
    let what = format!("{what} {}", path.display());
    move |e| format!("{what}: {e}")
}

/// A writable copy of a verified blob (the store's copy is read-only).
fn copy_writable(from: &Path, to: &Path) -> Result<(), String> {
    fs::copy(from, to).map_err(io("copying into", to))?;
    fs::set_permissions(to, fs::Permissions::from_mode(0o644)).map_err(io("permissions of", to))
}

/// Grows a disk file (sparse) to `size` when that is larger.
fn grow(path: &Path, size: u64) -> Result<u64, String> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io("opening", path))?;
    let len = file.metadata().map_err(io("reading", path))?.len();
    if size > len {
        file.set_len(size).map_err(io("growing", path))?;
    }
    Ok(len.max(size))
}

fn sync(path: &Path) -> Result<(), String> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(io("syncing", path))
}

/// Writes `text` into a new file and syncs it.
fn write_file(path: &Path, text: &[u8]) -> Result<(), String> {
    fs::write(path, text).map_err(io("writing", path))?;
    sync(path)
}

/// A verified blob in an OCI layout: a hard link to the store's
/// read-only file (a copy if the link cannot be made).
fn link_blob(source: &Source, layout: &Path) -> Result<(), String> {
    let hex = source
        .digest
        .strip_prefix("sha256:")
        .unwrap_or(&source.digest);
    let to = layout.join("blobs/sha256").join(hex);
    if to.exists() {
        return Ok(());
    }
    if fs::hard_link(&source.path, &to).is_err() {
        fs::copy(&source.path, &to).map_err(io("copying into", &to))?;
        fs::set_permissions(&to, fs::Permissions::from_mode(0o444))
            .map_err(io("permissions of", &to))?;
    }
    Ok(())
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LayoutIndex<'a> {
    schema_version: u32,
    media_type: &'static str,
    manifests: [LayoutEntry<'a>; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LayoutEntry<'a> {
    media_type: &'a str,
    digest: String,
    size: u64,
}

/// The OCI image layout of a container volume: the verified manifest,
/// config and layers, and an index naming the manifest. The host writes
/// the index from what volumemgr said and the store's sizes; it reads
/// none of the blobs.
fn build_container(dir: &Path, sources: &[Source]) -> Result<u64, String> {
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).map_err(io("creating", &blobs))?;
    for source in sources {
        link_blob(source, dir)?;
    }
    sync(&blobs)?;
    let manifest = sources.first().ok_or("no manifest")?;
    let hex = manifest
        .digest
        .strip_prefix("sha256:")
        .unwrap_or(&manifest.digest);
    let index = LayoutIndex {
        schema_version: 2,
        media_type: "application/vnd.oci.image.index.v1+json",
        manifests: [LayoutEntry {
            media_type: &manifest.media_type,
            digest: format!("sha256:{hex}"),
            size: manifest.size,
        }],
    };
    let json = serde_json::to_vec_pretty(&index).map_err(|e| e.to_string())?;
    write_file(&dir.join("index.json"), &json)?;
    write_file(
        &dir.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    Ok(sources.iter().map(|s| s.size).sum())
}

/// Builds the generation `record` describes from `sources` into `dir`
/// (a fresh `.building-` directory); returns its size.
pub(super) fn build(
    dir: &Path,
    format: VolumeFormat,
    sources: &[Source],
    max_size: u64,
    qemu_img: &QemuImg,
) -> Result<u64, String> {
    match format {
        VolumeFormat::Raw => {
            let image = sources.first().ok_or("no image")?;
            let disk = dir.join("disk.raw");
            copy_writable(&image.path, &disk)?;
            let size = grow(&disk, max_size)?;
            sync(&disk)?;
            Ok(size)
        }
        VolumeFormat::Qcow2 => {
            let image = sources.first().ok_or("no image")?;
            // Checked before it is copied, and the copy is what a VM gets:
            // it cannot change in between.
            let virtual_size = qemu_img.check_qcow2(&image.path)?;
            let disk = dir.join(QCOW2_DISK);
            copy_writable(&image.path, &disk)?;
            let size = if max_size > virtual_size {
                qemu_img.resize(&disk, max_size)?;
                max_size
            } else {
                virtual_size
            };
            sync(&disk)?;
            Ok(size)
        }
        VolumeFormat::Container => build_container(dir, sources),
        VolumeFormat::Blank => {
            let disk = dir.join("disk.raw");
            File::create(&disk).map_err(io("creating", &disk))?;
            let size = grow(&disk, max_size)?;
            sync(&disk)?;
            Ok(size)
        }
        VolumeFormat::Unspecified => Err(String::from("no format")),
    }
}

/// Makes `building` the volume `dir`: the record, then the rename, then
/// the parent directory synced.
pub(super) fn finish(building: &Path, dir: &Path, record: &Record) -> Result<(), String> {
    let json = serde_json::to_vec_pretty(record).map_err(|e| e.to_string())?;
    write_file(&building.join(RECORD), &json)?;
    sync(building)?;
    fs::rename(building, dir).map_err(io("renaming into place", dir))?;
    sync(dir.parent().unwrap_or(Path::new(".")))
}

/// Reads a volume's record.
pub(super) fn read_record(dir: &Path) -> Option<Record> {
    let bytes = fs::read(dir.join(RECORD)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Bytes the files under `dir` take on disk.
pub(super) fn disk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => disk_usage(&e.path()),
            Ok(m) => m.blocks().saturating_mul(512),
            Err(_) => 0,
        })
        .sum()
}

/// Removes a volume directory: renamed aside first, so a cut mid-way
/// leaves a `.deleting-` directory the next start removes, never half a
/// volume under its own name.
pub(super) fn remove(volumes: &Path, name: &str) -> Result<(), String> {
    let dir = volumes.join(name);
    let aside = volumes.join(format!("{DELETING}{name}"));
    fs::rename(&dir, &aside).map_err(io("moving aside", &dir))?;
    sync(volumes)?;
    fs::remove_dir_all(&aside).map_err(io("removing", &aside))
}
