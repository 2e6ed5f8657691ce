//! Against a real registry: Debian's `docker-registry` (the distribution
//! server eden runs as registry:2) started on a loopback port with a
//! temporary config and storage, images pushed by the test.

mod common;

use std::io::Read as _;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use fetch::Validator;
use fetch::testing::{MemSink, StdTransport};
use ocidist::manifest::{OCI_INDEX, OCI_MANIFEST};
use ocidist::{Digest, OciError, Platform, Reference, Registry, RegistryOptions};

struct RealRegistry {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for RealRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_registry() -> RealRegistry {
    let dir = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("storage").display()
        ),
    )
    .unwrap();
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("docker-registry is installed (cargo xtask deps installs it)");
    let reg = RealRegistry {
        child,
        port,
        _dir: dir,
    };
    // Bounded wait for the listener (not a timing assertion).
    for _ in 0..400 {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            use std::io::Write as _;
            let _ = s.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            if out.starts_with("HTTP/1.1 200") {
                return reg;
            }
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("docker-registry did not start on 127.0.0.1:{port}");
}

fn registry(port: u16) -> (Reference, Registry<StdTransport>) {
    let r = Reference::parse(&format!("docker://127.0.0.1:{port}/apps/web:1.0")).unwrap();
    let options = RegistryOptions {
        plain_http: true,
        ..RegistryOptions::default()
    };
    let reg = Registry::new(StdTransport::default(), &r, options);
    (r, reg)
}

#[test]
fn multi_arch_image_by_tag_then_every_blob_with_resume() {
    let server = start_registry();
    let amd = image("amd64", &[300 * 1024, 1024, 2 << 20], 1);
    let arm = image("arm64", &[200 * 1024, 4096], 100);
    let attestation = image("unknown", &[10], 200);
    let idx = index(
        &[("amd64", None, &amd), ("arm64", Some("v8"), &arm)],
        &attestation.manifest,
    );
    for img in [&amd, &arm, &attestation] {
        push_image(server.port, "apps/web", img);
    }
    push_manifest(server.port, "apps/web", "1.0", OCI_INDEX, &idx);

    let (reference, mut reg) = registry(server.port);
    for (arch, img) in [("x86_64", &amd), ("aarch64", &arm)] {
        let resolved = reg
            .resolve(&reference, &Platform::for_arch(arch), None)
            .unwrap();
        let index = resolved.index.as_ref().expect("the tag names an index");
        assert_eq!(
            (index.digest, index.media_type.as_str()),
            (Digest::of(&idx), OCI_INDEX)
        );
        assert_eq!(
            resolved.manifest.digest,
            Digest::of(&img.manifest),
            "{arch}"
        );
        assert_eq!(resolved.manifest.media_type, OCI_MANIFEST);
        assert_eq!(resolved.config.digest, Digest::of(&img.config));
        assert_eq!(resolved.layers.len(), img.layers.len());
        for (blob, data) in std::iter::once((&resolved.config, &img.config))
            .chain(resolved.layers.iter().zip(&img.layers))
        {
            assert_eq!(
                (blob.digest, blob.size),
                (Digest::of(data), data.len() as u64)
            );
            let mut sink = MemSink::default();
            let out = reg
                .fetch_blob(
                    "apps/web",
                    blob,
                    &mut sink,
                    &mut Validator::default(),
                    &mut |_, _| {},
                )
                .unwrap();
            assert_eq!(out.total, data.len() as u64);
            assert_eq!(Digest::of(&sink.data), blob.digest);
        }
    }

    // Resume: half of the 2 MiB layer is staged; only the rest is fetched.
    let resolved = reg
        .resolve(&reference, &Platform::for_arch("x86_64"), None)
        .unwrap();
    let big = &resolved.layers[2];
    let half = (big.size / 2) as usize;
    let mut sink = MemSink {
        data: amd.layers[2][..half].to_vec(),
        ..MemSink::default()
    };
    let out = reg
        .fetch_blob(
            "apps/web",
            big,
            &mut sink,
            &mut Validator::default(),
            &mut |_, _| {},
        )
        .unwrap();
    assert_eq!(
        (out.resumed_from, out.fetched),
        (half as u64, big.size - half as u64)
    );
    assert!(
        out.fetched < big.size,
        "the resume fetched less than the blob"
    );
    assert_eq!((Digest::of(&sink.data), sink.rewinds), (big.digest, 0));

    // Pinned by digest: the same manifest; a different pin is refused.
    let pinned = Reference::parse(&format!(
        "docker://127.0.0.1:{}/apps/web@{}",
        server.port,
        Digest::of(&amd.manifest)
    ))
    .unwrap();
    let direct = reg
        .resolve(&pinned, &Platform::for_arch("x86_64"), None)
        .unwrap();
    assert_eq!(
        (direct.index.is_none(), direct.manifest.digest),
        (true, Digest::of(&amd.manifest))
    );
    let wrong = Digest::of(b"not it");
    assert_eq!(
        reg.resolve(&reference, &Platform::for_arch("x86_64"), Some(wrong)),
        Err(OciError::DigestMismatch {
            expected: wrong,
            actual: Digest::of(&idx)
        })
    );
    let missing =
        Reference::parse(&format!("docker://127.0.0.1:{}/apps/web:nope", server.port)).unwrap();
    assert_eq!(
        reg.resolve(&missing, &Platform::for_arch("x86_64"), None),
        Err(OciError::NotFound)
    );
    let riscv = Platform {
        os: "linux".into(),
        architecture: "riscv64".into(),
        variant: None,
    };
    assert_eq!(
        reg.resolve(&reference, &riscv, None),
        Err(OciError::NoMatchingPlatform)
    );
}

#[test]
fn a_single_manifest_by_tag() {
    let server = start_registry();
    let img = image("amd64", &[5000, 7000, 9000], 7);
    push_image(server.port, "solo", &img);
    push_manifest(server.port, "solo", "v1", OCI_MANIFEST, &img.manifest);
    let reference = Reference::from_datastore(
        &format!("docker://127.0.0.1:{}", server.port),
        "",
        "solo:v1",
    )
    .unwrap();
    let mut reg = Registry::new(
        StdTransport::default(),
        &reference,
        RegistryOptions {
            plain_http: true,
            ..RegistryOptions::default()
        },
    );
    let resolved = reg
        .resolve(&reference, &Platform::for_arch("x86_64"), None)
        .unwrap();
    assert!(resolved.index.is_none());
    assert_eq!(resolved.manifest.digest, Digest::of(&img.manifest));
    assert_eq!(
        resolved.layers.iter().map(|l| l.size).collect::<Vec<_>>(),
        [5000, 7000, 9000]
    );
}
