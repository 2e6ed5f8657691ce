//! Apps in a device's config (`evectl app deploy|stop|start|restart|purge|
//! delete`): each command reads the current config through the admin API,
//! changes its `apps`, `volumes`, `contentInfo` and `datastores` as EVE's
//! controllers do, and stores it again as a new version.
//!
//! How a kind becomes EVE's config (zedmanager chooses the kind from the
//! first volume's content tree format and `virtualizationMode`):
//!
//! | kind | content tree `iformat` | `fixedresources.virtualizationMode` |
//! |---|---|---|
//! | container (`docker://REF`) | `CONTAINER`, from a `DsContainerRegistry` datastore | `PV` (eden's docker apps leave the mode at its default) |
//! | vm (`http(s)://` disk image) | `QCOW2`, `QCOW` by extension, else `RAW` (VMDK, VHD(X), OVA, ISO refused) | `HVM` |
//! | unikernel (`http(s)://` ELF or Image) | `RAW` | `PV`: a kernel booted directly, as EVE's PV mode boots one |
//!
//! Objects are named after the app: the content tree and the volume take
//! the app's name (the controller derives their UUIDs from kind and name),
//! an image another app already uses is shared, and a datastore with the
//! same type, server and path is reused.

use controller::configspec::derived_uuid;
use serde_json::{Value, json};

use crate::acl::AclRule;
use crate::content::{DatastoreError, DatastoreSpec, add_datastore};

/// What runs in the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppKind {
    /// A disk image booted with UEFI.
    Vm,
    /// An OCI image run in the shim VM.
    Container,
    /// A PVH ELF or arm64 Image booted directly.
    Unikernel,
}

impl AppKind {
    /// `vm`, `container` or `unikernel`.
    pub fn parse(s: &str) -> Result<Self, AppError> {
        match s {
            "vm" => Ok(Self::Vm),
            "container" => Ok(Self::Container),
            "unikernel" => Ok(Self::Unikernel),
            other => Err(AppError::BadKind(other.to_owned())),
        }
    }

    fn virtualization_mode(self) -> &'static str {
        match self {
            Self::Vm => "HVM",
            Self::Container | Self::Unikernel => "PV",
        }
    }
}

/// An app to deploy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSpec {
    /// Display name; the app's UUID is derived from it.
    pub name: String,
    /// `http(s)://host[:port]/path/file` or `docker://[registry/]repo[:tag|@digest]`.
    pub image: String,
    /// The kind; by default `container` for `docker://`, else `vm`.
    pub kind: Option<AppKind>,
    /// Guest RAM, MiB.
    pub memory_mib: u32,
    /// Virtual CPUs.
    pub vcpus: u32,
    /// `(host port, app port)` TCP forwards.
    pub ports: Vec<(u16, u16)>,
    /// Cloud-init user data.
    pub user_data: Option<Vec<u8>>,
    /// The sha256 of an HTTP(S) image (64 hex digits), which the node
    /// verifies the download against; required there, since nothing else
    /// vouches for a file. A `docker://` image is pinned by its reference
    /// (`@sha256:...`) or resolved by tag on the node instead.
    pub sha256: Option<String>,
    /// The network instance (display name or UUID) the app's interface
    /// joins; by default the config's first, if any.
    pub network: Option<String>,
    /// The interface's ACL rules in order (first match wins); none means
    /// one rule allowing everything.
    pub acls: Vec<AclRule>,
}

/// Why an app command was refused before reaching the controller.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AppError {
    /// Not `vm`, `container` or `unikernel`.
    #[error("kind {0:?}: expected vm, container or unikernel")]
    BadKind(String),
    /// The image is neither an HTTP(S) URL nor a `docker://` reference.
    #[error("image {0:?}: expected http://HOST/PATH, https://HOST/PATH or docker://REF")]
    BadImage(String),
    /// The kind cannot come from that kind of image.
    #[error("a {kind} app cannot be made from {image:?}")]
    KindMismatch {
        /// The kind asked for.
        kind: &'static str,
        /// The image.
        image: String,
    },
    /// Not `HOST:APP` with two ports in 1..=65535.
    #[error("port {0:?}: expected HOST:APP, two TCP ports 1-65535")]
    BadPort(String),
    /// A disk image format the node does not boot.
    #[error("a .{0} image: a VM boots RAW, QCOW or QCOW2 disk images")]
    UnsupportedFormat(String),
    /// Two forwards from one host port.
    #[error("host port {0} forwarded twice")]
    DuplicatePort(u16),
    /// An HTTP(S) image without its sha256.
    #[error(
        "image {0:?}: an HTTP(S) image needs --sha256 (the node verifies every download against it)"
    )]
    MissingSha256(String),
    /// Not 64 hex digits, or given for a `docker://` image.
    #[error(
        "--sha256 {0:?}: expected the 64 hex digits of an HTTP(S) image's sha256 (a docker:// image is pinned with @sha256:)"
    )]
    BadSha256(String),
    /// Zero memory, zero CPUs or an empty name.
    #[error("{0}")]
    Invalid(String),
    /// No app by that name or UUID.
    #[error("no app {0:?} in the device's config")]
    NotFound(String),
    /// No network instance by that name or UUID.
    #[error("no network instance {0:?} in the device's config")]
    NoNetwork(String),
    /// The datastore could not be added.
    #[error(transparent)]
    Datastore(#[from] DatastoreError),
}

/// `HOST:APP` as `(host port, app port)`.
pub fn parse_port(s: &str) -> Result<(u16, u16), AppError> {
    let bad = || AppError::BadPort(s.to_owned());
    let (h, a) = s.split_once(':').ok_or_else(bad)?;
    let port = |p: &str| p.parse::<u16>().ok().filter(|&p| p != 0).ok_or_else(bad);
    Ok((port(h)?, port(a)?))
}

/// Where an image comes from, as EVE's config says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSource {
    /// The datastore (named after its server, for reuse).
    pub datastore: DatastoreSpec,
    /// The content tree's `URL`, relative to the datastore.
    pub url: String,
    /// The content tree's `iformat`.
    pub format: &'static str,
    /// The kind it makes.
    pub kind: AppKind,
}

/// Splits a Docker reference into registry and repository path the way
/// `docker pull` reads it: a first component with a dot or a port, or
/// `localhost`, is a registry; otherwise Docker Hub, where one-component
/// names live under `library/`. A missing tag is `latest`.
fn docker_source(reference: &str) -> Option<(String, String)> {
    if reference.is_empty() || reference.contains("://") || reference.contains(char::is_whitespace)
    {
        return None;
    }
    let (first, rest) = match reference.split_once('/') {
        Some((f, r)) if f.contains(['.', ':']) || f == "localhost" => (f.to_owned(), r.to_owned()),
        _ => (String::from("docker.io"), reference.to_owned()),
    };
    if rest.is_empty() || rest.split('/').any(str::is_empty) {
        return None;
    }
    let mut path = if first == "docker.io" && !rest.contains('/') {
        format!("library/{rest}")
    } else {
        rest
    };
    let last = path.rsplit('/').next().unwrap_or("");
    if !last.contains([':', '@']) {
        path.push_str(":latest");
    }
    Some((first, path))
}

/// A VM disk image's `iformat` by its extension: the formats a node boots
/// (zedmanager takes `RAW`, `QCOW`, `QCOW2` for a VM); other image formats
/// EVE names are refused here rather than on the device.
fn disk_format(file: &str) -> Result<&'static str, AppError> {
    let lower = file.to_ascii_lowercase();
    match lower.rsplit_once('.').map(|(_, ext)| ext) {
        Some("qcow2") => Ok("QCOW2"),
        Some("qcow") => Ok("QCOW"),
        Some(ext @ ("vmdk" | "vhdx" | "vhd" | "ova" | "iso")) => {
            Err(AppError::UnsupportedFormat(ext.to_owned()))
        }
        _ => Ok("RAW"),
    }
}

/// Where `image` comes from and what kind of app it makes.
pub fn image_source(image: &str, kind: Option<AppKind>) -> Result<ImageSource, AppError> {
    let bad = || AppError::BadImage(image.to_owned());
    let mismatch = |kind: &'static str| AppError::KindMismatch {
        kind,
        image: image.to_owned(),
    };
    if let Some(reference) = image.strip_prefix("docker://") {
        match kind {
            None | Some(AppKind::Container) => {}
            Some(AppKind::Vm) => return Err(mismatch("vm")),
            Some(AppKind::Unikernel) => return Err(mismatch("unikernel")),
        }
        let (registry, path) = docker_source(reference).ok_or_else(bad)?;
        return Ok(ImageSource {
            datastore: DatastoreSpec {
                name: format!("registry {registry}"),
                kind: "registry".into(),
                fqdn: format!("docker://{registry}"),
                dpath: String::new(),
                user: None,
                password: None,
            },
            url: path,
            format: "CONTAINER",
            kind: AppKind::Container,
        });
    }
    let (scheme, rest) = image.split_once("://").ok_or_else(bad)?;
    if scheme != "http" && scheme != "https" {
        return Err(bad());
    }
    let kind = match kind {
        Some(AppKind::Container) => return Err(mismatch("container")),
        Some(k) => k,
        None => AppKind::Vm,
    };
    let (host, path) = rest.split_once('/').ok_or_else(bad)?;
    let (dir, file) = path.rsplit_once('/').unwrap_or(("", path));
    if host.is_empty()
        || file.is_empty()
        || host.contains(['@', '?', '#'])
        || path.contains(['?', '#'])
    {
        return Err(bad());
    }
    Ok(ImageSource {
        datastore: DatastoreSpec {
            name: format!("{scheme} {host}/{dir}"),
            kind: scheme.to_owned(),
            fqdn: host.to_owned(),
            dpath: dir.to_owned(),
            user: None,
            password: None,
        },
        url: file.to_owned(),
        format: match kind {
            AppKind::Vm => disk_format(file)?,
            _ => "RAW",
        },
        kind,
    })
}

/// The content tree's `sha256` for `spec`'s image, lowercase: required
/// for an HTTP(S) image, refused for a `docker://` one (empty).
fn image_sha256(source: &ImageSource, spec: &AppSpec) -> Result<String, AppError> {
    let container = source.kind == AppKind::Container;
    match &spec.sha256 {
        None if container => Ok(String::new()),
        None => Err(AppError::MissingSha256(spec.image.clone())),
        Some(hex)
            if !container && hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            Ok(hex.to_ascii_lowercase())
        }
        Some(hex) => Err(AppError::BadSha256(hex.clone())),
    }
}

fn list<'a>(config: &'a Value, field: &str) -> impl Iterator<Item = &'a Value> {
    config[field].as_array().into_iter().flatten()
}

fn list_mut<'a>(config: &'a mut Value, field: &str) -> &'a mut Vec<Value> {
    if !config[field].is_array() {
        config[field] = json!([]);
    }
    match config.get_mut(field).and_then(Value::as_array_mut) {
        Some(v) => v,
        None => unreachable!("{field} was just made an array"),
    }
}

/// A datastore's UUID as the controller stores it: a name's derived UUID.
fn datastore_uuid(id: &str) -> String {
    if id.len() == 36 && id.matches('-').count() == 4 {
        id.to_owned()
    } else {
        derived_uuid("datastore", id)
    }
}

/// The UUID of the app `name` (display name or UUID) in `config`.
pub fn app_uuid(config: &Value, name: &str) -> Option<String> {
    list(config, "apps")
        .find(|a| a["displayname"] == name || a["uuidandversion"]["uuid"] == name)
        .map(|a| {
            a["uuidandversion"]["uuid"]
                .as_str()
                .map_or_else(|| derived_uuid("app", name), str::to_owned)
        })
}

fn app_mut<'a>(config: &'a mut Value, name: &str) -> Result<&'a mut Value, AppError> {
    list_mut(config, "apps")
        .iter_mut()
        .find(|a| a["displayname"] == name || a["uuidandversion"]["uuid"] == name)
        .ok_or_else(|| AppError::NotFound(name.to_owned()))
}

/// A protobuf-JSON integer (int64 fields are strings).
fn number(v: &Value) -> u64 {
    crate::admin::proto_json_u64(v)
}

fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The network instance the app's interface joins: the one `named` (its
/// display name or UUID), else the config's first, else none.
fn network_uuid(config: &Value, named: Option<&str>) -> Result<Option<String>, AppError> {
    let uuid = |n: &Value| {
        n["uuidandversion"]["uuid"].as_str().map_or_else(
            || derived_uuid("network instance", n["displayname"].as_str().unwrap_or("")),
            str::to_owned,
        )
    };
    let mut all = list(config, "networkInstances");
    match named {
        None => Ok(all.next().map(uuid)),
        Some(name) => all
            .find(|n| n["displayname"] == name || uuid(n) == name)
            .map(|n| Some(uuid(n)))
            .ok_or_else(|| AppError::NoNetwork(name.to_owned())),
    }
}

/// Whether a datastore's `fqdn` names the server `wanted` names. A
/// registry is the same whatever its scheme: an operator declares a
/// plain-HTTP registry on a local network as `http://host:port` (the node
/// then speaks HTTP to it), and a `docker://host:port/...` image from it
/// goes through that datastore rather than a new HTTPS one.
fn same_server(ds_type: &str, fqdn: &str, wanted: &str) -> bool {
    if ds_type != "DsContainerRegistry" {
        return fqdn == wanted;
    }
    let host = |f: &str| {
        let f = f.trim().trim_end_matches('/');
        ["docker://", "oci://", "http://", "https://"]
            .iter()
            .find_map(|scheme| f.strip_prefix(scheme))
            .unwrap_or(f)
            .to_owned()
    };
    host(fqdn) == host(wanted)
}

/// `config` with app `spec` added (or replacing the app of that name),
/// with its datastore, content tree and volume.
pub fn deploy(mut config: Value, spec: &AppSpec) -> Result<Value, AppError> {
    let name = spec.name.trim();
    if name.is_empty() || name != spec.name {
        return Err(AppError::Invalid(
            "an app needs a name without leading or trailing spaces".into(),
        ));
    }
    if spec.memory_mib == 0 || spec.vcpus == 0 {
        return Err(AppError::Invalid(
            "an app needs at least 1 MiB of memory and 1 vCPU".into(),
        ));
    }
    let memory_kib = u64::from(spec.memory_mib) * 1024;
    if memory_kib > u64::from(u32::MAX) {
        return Err(AppError::Invalid(format!(
            "{} MiB is more memory than EVE's config can say",
            spec.memory_mib
        )));
    }
    for (i, (host, _)) in spec.ports.iter().enumerate() {
        if spec.ports[..i].iter().any(|(h, _)| h == host) {
            return Err(AppError::DuplicatePort(*host));
        }
    }
    let source = image_source(&spec.image, spec.kind)?;
    let sha256 = image_sha256(&source, spec)?;

    // The datastore: one with the same type, server and path, or a new one.
    let ds_type = match source.datastore.kind.as_str() {
        "registry" => "DsContainerRegistry",
        "https" => "DsHttps",
        _ => "DsHttp",
    };
    let existing_ds = list(&config, "datastores")
        .find(|d| {
            d["dType"] == ds_type
                && same_server(
                    ds_type,
                    d["fqdn"].as_str().unwrap_or(""),
                    &source.datastore.fqdn,
                )
                && d["dpath"].as_str().unwrap_or("") == source.datastore.dpath
        })
        .and_then(|d| d["id"].as_str())
        .map(str::to_owned);
    let ds_id = match existing_ds {
        Some(id) => id,
        None => {
            config = add_datastore(config, &source.datastore)?;
            source.datastore.name.clone()
        }
    };
    let ds_uuid = datastore_uuid(&ds_id);

    // Drop the previous app of that name and what only it used.
    if app_uuid(&config, name).is_some() {
        config = delete(config, name)?;
    }

    // The content tree: shared with an app using the same image.
    let existing_tree = list(&config, "contentInfo")
        .find(|t| {
            (t["dsId"] == ds_id.as_str() || t["dsId"] == ds_uuid.as_str())
                && t["URL"] == source.url.as_str()
                && t["iformat"] == source.format
                && t["sha256"].as_str().unwrap_or("") == sha256
        })
        .and_then(|t| t["uuid"].as_str().or(t["displayName"].as_str()))
        .map(str::to_owned);
    let tree = match existing_tree {
        Some(t) => t,
        None => {
            // Named after the app; a tree of that name another app still
            // uses keeps its name, the new one gets a suffix.
            let taken = |n: &str| list(&config, "contentInfo").any(|t| t["displayName"] == n);
            let tree_name = (1..)
                .map(|i| {
                    if i == 1 {
                        name.to_owned()
                    } else {
                        format!("{name}-{i}")
                    }
                })
                .find(|n| !taken(n))
                .unwrap_or_else(|| name.to_owned());
            let mut tree = json!({
                "displayName": tree_name,
                "dsId": ds_id,
                "URL": source.url,
                "iformat": source.format,
            });
            if !sha256.is_empty() {
                tree["sha256"] = json!(sha256);
            }
            list_mut(&mut config, "contentInfo").push(tree);
            derived_uuid("content", &tree_name)
        }
    };
    let volume_uuid = derived_uuid("volume", name);
    let volumes = list_mut(&mut config, "volumes");
    volumes.retain(|v| v["displayName"] != name && v["uuid"] != volume_uuid.as_str());
    volumes.push(json!({
        "uuid": volume_uuid,
        "displayName": name,
        "origin": {"type": "VCOT_DOWNLOAD", "downloadContentTreeID": tree},
    }));

    // The rules take ids 1, 2, ... (flow logs name them), the port maps
    // the ids after them.
    let mut acls: Vec<Value> = if spec.acls.is_empty() {
        vec![json!({
            "id": 1,
            "matches": [{"type": "ip", "value": "0.0.0.0/0"}],
        })]
    } else {
        spec.acls
            .iter()
            .enumerate()
            .map(|(i, rule)| rule.ace(i + 1))
            .collect()
    };
    for (host, app) in &spec.ports {
        acls.push(json!({
            "id": acls.len() + 1,
            "matches": [
                {"type": "protocol", "value": "tcp"},
                {"type": "lport", "value": host.to_string()},
            ],
            "actions": [{"portmap": true, "appPort": app}],
            "dir": "BOTH",
        }));
    }
    let mut interface = json!({"name": "eth0", "acls": acls});
    if let Some(ni) = network_uuid(&config, spec.network.as_deref())? {
        interface["networkId"] = json!(ni);
    }
    let mut app = json!({
        "uuidandversion": {"uuid": derived_uuid("app", name), "version": "1"},
        "displayname": name,
        "activate": true,
        "fixedresources": {
            "memory": memory_kib,
            "maxmem": memory_kib,
            "vcpus": spec.vcpus,
            "virtualizationMode": source.kind.virtualization_mode(),
        },
        "volumeRefList": [{"uuid": volume_uuid}],
        "interfaces": [interface],
    });
    if let Some(data) = &spec.user_data {
        app["userData"] = json!(base64(data));
    }
    list_mut(&mut config, "apps").push(app);
    Ok(config)
}

/// `config` with app `name` started (`true`) or stopped: EVE's `activate`.
pub fn set_active(mut config: Value, name: &str, active: bool) -> Result<Value, AppError> {
    app_mut(&mut config, name)?["activate"] = json!(active);
    Ok(config)
}

/// `config` with app `name`'s restart counter bumped: EVE restarts the
/// app once.
pub fn restart(mut config: Value, name: &str) -> Result<Value, AppError> {
    let app = app_mut(&mut config, name)?;
    let next = number(&app["restart"]["counter"]) + 1;
    app["restart"] = json!({"counter": next});
    Ok(config)
}

/// `config` with app `name`'s purge counter bumped, and the generation of
/// each of its volumes (in the volume and in the app's reference): EVE
/// rebuilds those volumes from their content and restarts the app.
pub fn purge(mut config: Value, name: &str) -> Result<Value, AppError> {
    let app = app_mut(&mut config, name)?;
    let next = number(&app["purge"]["counter"]) + 1;
    app["purge"] = json!({"counter": next});
    let mut purged = Vec::new();
    for r in app["volumeRefList"].as_array_mut().into_iter().flatten() {
        let generation = number(&r["generationCount"]) + 1;
        r["generationCount"] = json!(generation.to_string());
        purged.push((r["uuid"].as_str().unwrap_or("").to_owned(), generation));
    }
    for v in list_mut(&mut config, "volumes") {
        if let Some((_, generation)) = purged.iter().find(|(u, _)| v["uuid"] == u.as_str()) {
            let current = number(&v["generationCount"]);
            v["generationCount"] = json!(current.max(*generation).to_string());
        }
    }
    Ok(config)
}

/// `config` without app `name`, its volumes no other app uses, and the
/// content trees no remaining volume uses. Datastores stay.
pub fn delete(mut config: Value, name: &str) -> Result<Value, AppError> {
    let apps = list_mut(&mut config, "apps");
    let at = apps
        .iter()
        .position(|a| a["displayname"] == name || a["uuidandversion"]["uuid"] == name)
        .ok_or_else(|| AppError::NotFound(name.to_owned()))?;
    let gone = apps.remove(at);
    let used: Vec<String> = apps
        .iter()
        .flat_map(|a| a["volumeRefList"].as_array().cloned().unwrap_or_default())
        .filter_map(|r| r["uuid"].as_str().map(str::to_owned))
        .collect();
    let orphans: Vec<String> = gone["volumeRefList"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["uuid"].as_str())
        .filter(|u| !used.iter().any(|x| x == u))
        .map(str::to_owned)
        .collect();
    let volume_id = |v: &Value| {
        v["uuid"].as_str().map_or_else(
            || derived_uuid("volume", v["displayName"].as_str().unwrap_or("")),
            str::to_owned,
        )
    };
    list_mut(&mut config, "volumes").retain(|v| !orphans.contains(&volume_id(v)));
    let trees_used: Vec<String> = list(&config, "volumes")
        .filter_map(|v| v["origin"]["downloadContentTreeID"].as_str())
        .map(str::to_owned)
        .collect();
    list_mut(&mut config, "contentInfo").retain(|t| {
        let uuid = t["uuid"].as_str().map_or_else(
            || derived_uuid("content", t["displayName"].as_str().unwrap_or("")),
            str::to_owned,
        );
        let display = t["displayName"].as_str().unwrap_or("");
        trees_used.iter().any(|u| *u == uuid || u == display)
    });
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_references_are_read_as_docker_pull_reads_them() {
        let src = |r: &str| docker_source(r);
        assert_eq!(
            src("httpd"),
            Some(("docker.io".into(), "library/httpd:latest".into()))
        );
        assert_eq!(
            src("bitnami/redis:7"),
            Some(("docker.io".into(), "bitnami/redis:7".into()))
        );
        assert_eq!(
            src("127.0.0.1:5000/busybox"),
            Some(("127.0.0.1:5000".into(), "busybox:latest".into()))
        );
        assert_eq!(
            src("localhost/a/b@sha256:ab"),
            Some(("localhost".into(), "a/b@sha256:ab".into()))
        );
        for bad in ["", "a//b", "reg.io/", "x y", "http://a/b"] {
            assert_eq!(src(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn http_images_name_server_path_and_format() {
        let s = image_source("http://10.0.2.2:8000/img/os.QCOW", None).unwrap();
        assert_eq!(
            (
                s.datastore.fqdn.as_str(),
                s.datastore.dpath.as_str(),
                s.url.as_str()
            ),
            ("10.0.2.2:8000", "img", "os.QCOW")
        );
        assert_eq!((s.format, s.kind), ("QCOW", AppKind::Vm));
        assert_eq!(
            image_source("http://h/disk.raw", None).unwrap().format,
            "RAW"
        );
        assert_eq!(
            image_source("http://h/w.vmdk", None),
            Err(AppError::UnsupportedFormat("vmdk".into()))
        );
        let s = image_source("https://h/k.elf", Some(AppKind::Unikernel)).unwrap();
        assert_eq!((s.datastore.dpath.as_str(), s.format), ("", "RAW"));
        for bad in [
            "https://h",
            "https://h/",
            "https:///x",
            "https://u@h/x",
            "file:///x",
            "h/x",
        ] {
            assert!(
                matches!(image_source(bad, None), Err(AppError::BadImage(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_docker_image_goes_through_the_registry_datastore_of_its_server_whatever_its_scheme() {
        let spec = |name: &str, image: &str| AppSpec {
            name: name.into(),
            image: image.into(),
            kind: None,
            memory_mib: 64,
            vcpus: 1,
            ports: Vec::new(),
            user_data: None,
            sha256: None,
            network: None,
            acls: Vec::new(),
        };
        let config = json!({"datastores": [
            {"id": "local", "dType": "DsContainerRegistry", "fqdn": "http://10.0.2.2:5000/"},
        ]});
        let config = deploy(config, &spec("web", "docker://10.0.2.2:5000/httpd:1")).unwrap();
        assert_eq!(config["datastores"].as_array().unwrap().len(), 1);
        assert_eq!(config["contentInfo"][0]["dsId"], "local");
        // Another port is another server: a new (HTTPS) datastore.
        let config = deploy(config, &spec("db", "docker://10.0.2.2:5001/db")).unwrap();
        let stores = config["datastores"].as_array().unwrap();
        assert_eq!(stores.len(), 2);
        assert_eq!(stores[1]["fqdn"], "docker://10.0.2.2:5001");
        // HTTP datastores still match by exact server.
        assert!(same_server("DsHttp", "h:80", "h:80"));
        assert!(!same_server("DsHttp", "http://h:80", "h:80"));
    }

    #[test]
    fn user_data_is_base64_as_eve_expects() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn ports_are_two_nonzero_tcp_ports() {
        assert_eq!(parse_port("8080:80"), Ok((8080, 80)));
        for bad in [
            "80", ":80", "80:", "0:80", "80:0", "65536:1", "a:b", "1:2:3",
        ] {
            assert_eq!(parse_port(bad), Err(AppError::BadPort(bad.into())), "{bad}");
        }
    }
}
