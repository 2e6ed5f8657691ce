//! Registries that lie, loop, flood or demand credentials: scripted
//! servers on loopback. Every case ends in a clear error, never a panic.

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use fetch::testing::{MemSink, Reply, Seen, StdTransport, TestServer};
use fetch::{Credentials, FetchError, Validator};
use ocidist::manifest::{OCI_INDEX, OCI_MANIFEST};
use ocidist::{Descriptor, Digest, OciError, Platform, Reference, Registry, RegistryOptions};

fn reg(port: u16, credentials: Option<Credentials>) -> (Reference, Registry<StdTransport>) {
    let r = Reference::parse(&format!("docker://127.0.0.1:{port}/app:v1")).unwrap();
    let options = RegistryOptions {
        plain_http: true,
        credentials,
        max_manifest_bytes: 64 * 1024,
        ..RegistryOptions::default()
    };
    (
        r.clone(),
        Registry::new(StdTransport::default(), &r, options),
    )
}

fn manifest_reply(media_type: &str, body: &[u8]) -> Reply {
    let digest = Digest::of(body).to_string();
    Reply::full(
        200,
        &[
            ("Content-Type", media_type),
            ("Docker-Content-Digest", &digest),
        ],
        body,
    )
}

fn amd64() -> Platform {
    Platform::for_arch("x86_64")
}

/// A registry serving `img` under `app:v1` (and by digest), blobs too.
fn serve_image(
    img: Image,
    guard: impl Fn(&Seen) -> Option<Reply> + Send + Sync + 'static,
) -> TestServer {
    let manifest_digest = Digest::of(&img.manifest).to_string();
    TestServer::start(move |r| {
        if let Some(reply) = guard(r) {
            return reply;
        }
        let target = r.target();
        if target == "GET /v2/app/manifests/v1"
            || target == format!("GET /v2/app/manifests/{manifest_digest}")
        {
            return manifest_reply(OCI_MANIFEST, &img.manifest);
        }
        for blob in std::iter::once(&img.config).chain(&img.layers) {
            if target == format!("GET /v2/app/blobs/{}", Digest::of(blob))
                || target == format!("HEAD /v2/app/blobs/{}", Digest::of(blob))
            {
                return Reply::full(200, &[], blob);
            }
        }
        Reply::full(404, &[], b"")
    })
}

#[test]
fn bearer_token_auth_with_basic_credentials_at_the_token_service() {
    let img = image("amd64", &[1000, 2000], 3);
    let token_requests = Arc::new(Mutex::new(Vec::<Seen>::new()));
    let tr = token_requests.clone();
    let port_cell = Arc::new(Mutex::new(0u16));
    let pc = port_cell.clone();
    let server = serve_image(img, move |r| {
        if r.target().starts_with("GET /token") {
            tr.lock().unwrap().push(r.clone());
            return Some(if r.header("authorization") == Some("Basic dXNlcjpwYXNz") {
                Reply::full(
                    200,
                    &[("Content-Type", "application/json")],
                    br#"{"token":"tok-123","expires_in":300}"#,
                )
            } else {
                Reply::full(401, &[], b"")
            });
        }
        if r.header("authorization") != Some("Bearer tok-123") {
            let realm = format!(
                r#"Bearer realm="http://127.0.0.1:{}/token",service="fake.registry",scope="repository:app:pull""#,
                pc.lock().unwrap()
            );
            return Some(Reply::full(401, &[("WWW-Authenticate", &realm)], b""));
        }
        None
    });
    *port_cell.lock().unwrap() = server.port;
    let creds = Credentials {
        username: "user".into(),
        password: "pass".into(),
    };
    let (reference, mut r) = reg(server.port, Some(creds));
    let resolved = r.resolve(&reference, &amd64(), None).unwrap();
    let mut sink = MemSink::default();
    r.fetch_blob(
        "app",
        &resolved.layers[1],
        &mut sink,
        &mut Validator::default(),
        &mut |_, _| {},
    )
    .unwrap();
    assert_eq!(Digest::of(&sink.data), resolved.layers[1].digest);
    let tokens = token_requests.lock().unwrap().clone();
    assert_eq!(tokens.len(), 1, "one token, reused for the blob");
    assert_eq!(
        tokens[0].target(),
        "GET /token?service=fake.registry&scope=repository%3Aapp%3Apull"
    );

    // Wrong credentials: the token service's refusal is the error.
    let (reference, mut r) = reg(
        server.port,
        Some(Credentials {
            username: "user".into(),
            password: "nope".into(),
        }),
    );
    assert_eq!(
        r.resolve(&reference, &amd64(), None),
        Err(OciError::TokenRefused(401))
    );
}

#[test]
fn basic_auth_and_unanswerable_challenges() {
    let img = image("amd64", &[100], 4);
    let server = serve_image(img, |r| match r.header("authorization") {
        Some("Basic YTpi") => None,
        _ => Some(Reply::full(
            401,
            &[("WWW-Authenticate", r#"Basic realm="registry""#)],
            b"",
        )),
    });
    let (reference, mut r) = reg(
        server.port,
        Some(Credentials {
            username: "a".into(),
            password: "b".into(),
        }),
    );
    r.resolve(&reference, &amd64(), None).unwrap();
    let (reference, mut r) = reg(server.port, None);
    assert_eq!(
        r.resolve(&reference, &amd64(), None),
        Err(OciError::Unauthorized)
    );
    let (reference, mut r) = reg(
        server.port,
        Some(Credentials {
            username: "a".into(),
            password: "x".into(),
        }),
    );
    assert_eq!(
        r.resolve(&reference, &amd64(), None),
        Err(OciError::Unauthorized)
    );

    let odd = TestServer::start(|_| Reply::full(401, &[("WWW-Authenticate", "Negotiate")], b""));
    let (reference, mut r) = reg(odd.port, None);
    assert_eq!(
        r.resolve(&reference, &amd64(), None),
        Err(OciError::BadChallenge)
    );
}

#[test]
fn an_index_entry_whose_bytes_hash_elsewhere_is_refused() {
    let honest = image("amd64", &[100], 5);
    let mut tampered = honest.manifest.clone();
    tampered.extend_from_slice(b" ");
    let idx = index(&[("amd64", None, &honest)], b"att");
    let wanted = Digest::of(&honest.manifest);
    let server = TestServer::start(move |r| {
        if r.target() == "GET /v2/app/manifests/v1" {
            manifest_reply(OCI_INDEX, &idx)
        } else {
            // The registry serves other bytes under the entry's digest
            // (and even claims they hash right).
            Reply::full(
                200,
                &[
                    ("Content-Type", OCI_MANIFEST),
                    ("Docker-Content-Digest", &wanted.to_string()),
                ],
                &tampered,
            )
        }
    });
    let (reference, mut r) = reg(server.port, None);
    assert_eq!(
        r.resolve(&reference, &amd64(), None),
        Err(OciError::DigestHeaderMismatch)
    );
    // Without the lying header, the bytes' own digest is what is checked.
    let honest = image("amd64", &[100], 5);
    let mut tampered = honest.manifest.clone();
    tampered.extend_from_slice(b" ");
    let idx = index(&[("amd64", None, &honest)], b"att");
    let server = TestServer::start(move |r| {
        if r.target() == "GET /v2/app/manifests/v1" {
            Reply::full(200, &[("Content-Type", OCI_INDEX)], &idx)
        } else {
            Reply::full(200, &[("Content-Type", OCI_MANIFEST)], &tampered)
        }
    });
    let (reference, mut r) = reg(server.port, None);
    match r.resolve(&reference, &amd64(), None) {
        Err(OciError::DigestMismatch { expected, .. }) => assert_eq!(expected, wanted),
        other => panic!("{other:?}"),
    }
}

#[test]
fn huge_endless_and_malformed_manifests() {
    // Announces 100 MiB: refused before the body is read.
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {OCI_MANIFEST}\r\nContent-Length: {}\r\n\r\n",
        100 << 20
    )
    .into_bytes();
    let server = TestServer::start(move |_| Reply::Endless {
        head: head.clone(),
        chunk: vec![b' '; 8192],
    });
    let (reference, mut r) = reg(server.port, None);
    assert_eq!(
        r.resolve(&reference, &amd64(), None),
        Err(OciError::ManifestTooLarge)
    );
    assert!(*server.sent.lock().unwrap() < 100 << 20);

    // Chunked, never ending: cut at the limit.
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {OCI_MANIFEST}\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    let chunk: Vec<u8> = b"2000\r\n"
        .iter()
        .chain(&[b' '; 0x2000])
        .chain(b"\r\n")
        .copied()
        .collect();
    let server = TestServer::start(move |_| Reply::Endless {
        head: head.clone(),
        chunk: chunk.clone(),
    });
    let (reference, mut r) = reg(server.port, None);
    assert_eq!(
        r.resolve(&reference, &amd64(), None),
        Err(OciError::ManifestTooLarge)
    );

    for (content_type, body, want) in [
        ("text/html", &b"<html>"[..], OciError::UnsupportedMediaType),
        (OCI_MANIFEST, b"{\"schemaVersion\":2,", OciError::BadManifest("manifest JSON")),
        (OCI_INDEX, b"{\"schemaVersion\":2,\"manifests\":[]}", OciError::NoMatchingPlatform),
        (OCI_INDEX, br#"{"schemaVersion":2,"manifests":[{"mediaType":"x/y","digest":"sha256:00","size":1}]}"#, OciError::BadManifest("descriptor digest")),
    ] {
        let body = body.to_vec();
        let server = TestServer::start(move |_| Reply::full(200, &[("Content-Type", content_type)], &body));
        let (reference, mut r) = reg(server.port, None);
        assert_eq!(r.resolve(&reference, &amd64(), None), Err(want), "{content_type}");
    }

    let server = TestServer::start(|_| Reply::full(503, &[], b""));
    let (reference, mut r) = reg(server.port, None);
    let e = r.resolve(&reference, &amd64(), None).unwrap_err();
    assert_eq!((e, e.is_retryable()), (OciError::Status(503), true));
}

#[test]
fn blob_redirect_loops_lies_and_floods() {
    let blob = bytes(50_000, 9);
    let desc = Descriptor {
        media_type: "application/vnd.oci.image.layer.v1.tar".into(),
        digest: Digest::of(&blob),
        size: blob.len() as u64,
        platform: None,
    };
    let path = format!("GET /v2/app/blobs/{}", desc.digest);

    // Redirect loop between two paths.
    let p = path.clone();
    let server = TestServer::start(move |r| {
        if r.target() == p {
            Reply::full(307, &[("Location", "/storage/a")], b"")
        } else if r.target() == "GET /storage/a" {
            Reply::full(302, &[("Location", "/storage/b")], b"")
        } else {
            Reply::full(302, &[("Location", "/storage/a")], b"")
        }
    });
    let (_, mut r) = reg(server.port, None);
    let e = r.fetch_blob(
        "app",
        &desc,
        &mut MemSink::default(),
        &mut Validator::default(),
        &mut |_, _| {},
    );
    assert_eq!(e, Err(OciError::Fetch(FetchError::TooManyRedirects)));
    assert!(
        server.requests().len() <= 7,
        "bounded: {}",
        server.requests().len()
    );

    // Content-Length says more than the descriptor.
    let big = bytes(60_000, 9);
    let server = TestServer::start(move |_| Reply::full(200, &[], &big));
    let (_, mut r) = reg(server.port, None);
    let e = r.fetch_blob(
        "app",
        &desc,
        &mut MemSink::default(),
        &mut Validator::default(),
        &mut |_, _| {},
    );
    assert_eq!(
        e,
        Err(OciError::Fetch(FetchError::LengthMismatch {
            expected: 50_000,
            got: 60_000
        }))
    );

    // An endless body: stops at the descriptor's size.
    let server = TestServer::start(|_| Reply::Endless {
        head: b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_vec(),
        chunk: vec![7; 4096],
    });
    let (_, mut r) = reg(server.port, None);
    let mut sink = MemSink::default();
    let e = r.fetch_blob(
        "app",
        &desc,
        &mut sink,
        &mut Validator::default(),
        &mut |_, _| {},
    );
    assert_eq!(
        e,
        Err(OciError::Fetch(FetchError::TooLarge { limit: 50_000 }))
    );
    assert!(sink.data.len() <= 50_000);

    // Served through a redirect to storage: our token is not sent there.
    let b2 = blob.clone();
    let p = path.clone();
    let storage = TestServer::start(move |_| Reply::full(200, &[], &b2));
    let sp = storage.port;
    let server = TestServer::start(move |r| {
        if r.target() == p {
            Reply::full(
                307,
                &[(
                    "Location",
                    &format!("http://127.0.0.1:{sp}/s3/object?sig=x"),
                )],
                b"",
            )
        } else {
            Reply::full(404, &[], b"")
        }
    });
    let (_, mut r) = reg(
        server.port,
        Some(Credentials {
            username: "u".into(),
            password: "p".into(),
        }),
    );
    let mut sink = MemSink::default();
    r.fetch_blob(
        "app",
        &desc,
        &mut sink,
        &mut Validator::default(),
        &mut |_, _| {},
    )
    .unwrap();
    assert_eq!(Digest::of(&sink.data), desc.digest);
    assert_eq!(storage.requests()[0].header("authorization"), None);
}
