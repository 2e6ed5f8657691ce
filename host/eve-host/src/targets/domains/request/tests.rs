use std::fs;

use domains::spec::{NetBackend, PortForward};
use hostops::domains::{Disk, PortMap};

use super::*;

const APP: &str = "6ba7b810-9dad-11d1-80b4-00c04fd430c8";
const VOL: &str = "0f2bd5a4-6a2e-4a8e-9d7c-2b8f3a1c9e11";

/// A built volume generation as the volumes target leaves it.
fn built(dir: &Path, generation: i64, format: &str, components: &[(&str, &str)]) -> String {
    let name = format!("{VOL}.{generation}");
    let volume = dir.join(&name);
    fs::create_dir_all(&volume).unwrap();
    let record = serde_json::json!({
        "uuid": VOL, "generation": generation, "format": format,
        "components": components, "max_size_bytes": 0, "size_bytes": 1, "created_unix": 1,
    });
    fs::write(volume.join("volume.json"), record.to_string()).unwrap();
    match format {
        "container" => {
            let blobs = volume.join("blobs/sha256");
            fs::create_dir_all(&blobs).unwrap();
            for (digest, _) in components {
                let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
                fs::write(blobs.join(hex), b"blob").unwrap();
            }
        }
        _ => fs::write(volume.join("disk.raw"), b"disk").unwrap(),
    }
    name
}

fn request(kind: DomainKind, volume: &str) -> StartRequest {
    StartRequest {
        uuid: APP.into(),
        display_name: "hello".into(),
        kind: kind as i32,
        memory_kib: 64 * 1024,
        vcpus: 1,
        disks: vec![Disk {
            host_volume: volume.into(),
            readonly: false,
        }],
        port_maps: vec![PortMap {
            host_port: 18080,
            app_port: 80,
        }],
        ..Default::default()
    }
}

fn code(e: DomainError) -> DomainErrorCode {
    e.code()
}

#[test]
fn a_unikernel_boots_its_raw_volume_with_its_port_maps() {
    let dir = tempfile::tempdir().unwrap();
    let raw = built(dir.path(), 1, "raw", &[("sha256:aa", "")]);
    let resolver = Resolver {
        arch: Arch::X86_64,
        volumes_dir: dir.path(),
        run_dir: dir.path(),
        shim: None,
    };
    let spec = resolver
        .spec(&request(DomainKind::Unikernel, &raw))
        .unwrap();
    assert_eq!(spec.name, "a6ba7b8109dad11d180b400c04fd430c");
    assert_eq!(spec.memory_mib, 64);
    assert_eq!(
        spec.kind,
        Kind::Unikernel {
            image: dir.path().join(&raw).join("disk.raw"),
            cmdline: String::new()
        }
    );
    assert!(spec.disks.is_empty());
    assert_eq!(
        spec.nics[0].backend,
        NetBackend::User {
            forwards: vec![PortForward {
                host: 18080,
                guest: 80
            }]
        }
    );
}

#[test]
fn hostile_requests_are_refused_with_their_reason() {
    let dir = tempfile::tempdir().unwrap();
    let raw = built(dir.path(), 1, "raw", &[("sha256:aa", "")]);
    let container = built(dir.path(), 2, "container", &[("sha256:bb", "m")]);
    let shim = (PathBuf::from("/k"), PathBuf::from("/i"));
    let resolver = Resolver {
        arch: Arch::X86_64,
        volumes_dir: dir.path(),
        run_dir: dir.path(),
        shim: None,
    };
    let unikernel = request(DomainKind::Unikernel, &raw);
    let cases: Vec<(StartRequest, DomainErrorCode)> = vec![
        (
            StartRequest {
                uuid: "../../etc".into(),
                ..unikernel.clone()
            },
            DomainErrorCode::BadRequest,
        ),
        (
            StartRequest {
                memory_kib: u64::MAX,
                ..unikernel.clone()
            },
            DomainErrorCode::BadRequest,
        ),
        (
            StartRequest {
                memory_kib: 1024,
                ..unikernel.clone()
            },
            DomainErrorCode::BadRequest,
        ),
        (
            request(DomainKind::Unikernel, "../../../etc/passwd"),
            DomainErrorCode::BadRequest,
        ),
        (
            request(DomainKind::Unikernel, &format!("{VOL}.01")),
            DomainErrorCode::BadRequest,
        ),
        (
            request(DomainKind::Unikernel, &format!("{VOL}.7")),
            DomainErrorCode::VolumeNotReady,
        ),
        (
            request(DomainKind::Unikernel, &container),
            DomainErrorCode::BadRequest,
        ),
        (
            request(DomainKind::LinuxVm, &container),
            DomainErrorCode::BadRequest,
        ),
        (
            request(DomainKind::Container, &container),
            DomainErrorCode::Unsupported,
        ),
        (
            request(DomainKind::Unspecified, &raw),
            DomainErrorCode::BadRequest,
        ),
        (
            StartRequest {
                port_maps: vec![PortMap {
                    host_port: 70000,
                    app_port: 80,
                }],
                ..unikernel.clone()
            },
            DomainErrorCode::BadRequest,
        ),
        (
            StartRequest {
                user_data: vec![0xff, 0xfe],
                ..unikernel.clone()
            },
            DomainErrorCode::BadRequest,
        ),
        (
            StartRequest {
                disks: Vec::new(),
                ..unikernel.clone()
            },
            DomainErrorCode::BadRequest,
        ),
        (
            StartRequest {
                vcpus: 1000,
                ..unikernel.clone()
            },
            DomainErrorCode::BadRequest,
        ),
    ];
    for (request, expected) in cases {
        let got = resolver.spec(&request).map(|_| ()).map_err(code);
        assert_eq!(got, Err(expected), "{request:?}");
    }
    let with_shim = Resolver {
        shim: Some(&shim),
        ..resolver
    };
    assert_eq!(
        with_shim
            .spec(&request(DomainKind::Container, &raw))
            .map_err(code)
            .err(),
        Some(DomainErrorCode::BadRequest)
    );
}

#[test]
fn a_container_runs_its_volume_layout_in_the_shim() {
    let dir = tempfile::tempdir().unwrap();
    let hex = "ab".repeat(32);
    let digest = format!("sha256:{hex}");
    let container = built(dir.path(), 0, "container", &[(&digest, "m"), (&hex, "c")]);
    let blank = built(dir.path(), 3, "blank", &[]);
    let shim = (dir.path().join("kernel"), dir.path().join("initrd"));
    fs::write(&shim.0, b"kernel").unwrap();
    fs::write(&shim.1, b"initrd").unwrap();
    let resolver = Resolver {
        arch: Arch::X86_64,
        volumes_dir: dir.path(),
        run_dir: dir.path(),
        shim: Some(&shim),
    };
    let mut wanted = request(DomainKind::Container, &container);
    wanted.disks.push(Disk {
        host_volume: blank.clone(),
        readonly: true,
    });
    let spec = resolver.spec(&wanted).unwrap();
    let Kind::Container { shim, image, .. } = &spec.kind else {
        panic!("{spec:?}");
    };
    assert_eq!(shim.kernel, dir.path().join("kernel"));
    assert_eq!(image.manifest, digest);
    assert_eq!(image.blobs.len(), 2);
    assert_eq!(
        image.blobs[1].path,
        dir.path().join(&container).join("blobs/sha256").join(&hex)
    );
    assert_eq!(spec.disks.len(), 1);
    assert!(spec.disks[0].read_only);
    assert_eq!(spec.disks[0].path, dir.path().join(&blank).join("disk.raw"));
}
