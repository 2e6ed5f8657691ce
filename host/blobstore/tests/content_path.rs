//! The content path on the host, end to end: an OCI image resolved with
//! `ocidist`, its blobs fetched with `fetch` into slots volumemgr expects
//! in the blob store, and verified there. A connection cut mid-blob and a
//! power cut mid-blob both resume with fewer bytes than the blob; a
//! registry serving other bytes under a digest never produces a blob.

use std::sync::{Arc, Mutex};

use blobstore::sim::SimStorage;
use blobstore::{BlobState, BlobStore, Clock, CompleteError, Config, Digest, Expected, Storage};
use fetch::testing::{Reply, Seen, StdTransport, TestServer};
use fetch::{BlobSink, SinkError, Validator};
use ocidist::manifest::{OCI_CONFIG, OCI_MANIFEST};
use ocidist::{Platform, Reference, Registry, RegistryOptions};

struct Fixed;

impl Clock for Fixed {
    fn now(&self) -> u64 {
        1_000
    }
}

/// The downloader's side of a slot: what the host operation will carry.
struct Slot<'s, S: Storage> {
    store: &'s mut BlobStore<S>,
    digest: Digest,
}

impl<S: Storage> BlobSink for Slot<'_, S> {
    fn staged(&mut self) -> Result<u64, SinkError> {
        self.store
            .writer()
            .staged(self.digest)
            .map(|s| s.length)
            .map_err(|_| SinkError::NotExpected)
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), SinkError> {
        match self.store.writer().write(self.digest, offset, data) {
            Ok(_) => Ok(()),
            Err(blobstore::WriteError::Reserve(_)) => Err(SinkError::NoRoom),
            Err(blobstore::WriteError::NotExpected(_)) => Err(SinkError::NotExpected),
            Err(blobstore::WriteError::Io(_)) => Err(SinkError::Io),
            Err(_) => Err(SinkError::Rejected),
        }
    }
}

fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| ((i * 13) as u8).wrapping_add(seed) ^ (i >> 9) as u8)
        .collect()
}

fn descriptor(media_type: &str, data: &[u8]) -> String {
    format!(
        r#"{{"mediaType":"{media_type}","digest":"{}","size":{}}}"#,
        ocidist::Digest::of(data),
        data.len()
    )
}

/// A reply honouring `Range: bytes=N-`.
fn ranged(req: &Seen, data: &[u8]) -> Vec<u8> {
    let start = req
        .header("range")
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|s| s.parse::<usize>().ok());
    let reply = match start {
        Some(s) => {
            let range = format!("bytes {s}-{}/{}", data.len() - 1, data.len());
            Reply::full(206, &[("Content-Range", &range)], &data[s..])
        }
        None => Reply::full(200, &[], data),
    };
    match reply {
        Reply::Raw(bytes) => bytes,
        _ => unreachable!("full replies are raw"),
    }
}

fn config() -> Config {
    Config {
        reserve_bytes: 0,
        capacity_bytes: None,
        max_blob_bytes: 1 << 30,
        checkpoint_bytes: 64 * 1024,
    }
}

fn digest(d: &ocidist::Descriptor) -> Digest {
    Digest::from_bytes(d.digest.0)
}

#[test]
fn an_image_lands_verified_through_cuts_and_a_lie_never_does() {
    let config_blob = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
    let big = bytes(1 << 20, 1);
    let honest = bytes(5000, 2);
    let served_instead = bytes(5000, 3);
    let layer = "application/vnd.oci.image.layer.v1.tar";
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{},"layers":[{},{}]}}"#,
        descriptor(OCI_CONFIG, &config_blob),
        descriptor(layer, &big),
        descriptor(layer, &honest),
    )
    .into_bytes();
    let path = |data: &[u8]| format!("GET /v2/app/blobs/{}", ocidist::Digest::of(data));
    let (config_path, big_path, honest_path) = (path(&config_blob), path(&big), path(&honest));
    let big_requests = Arc::new(Mutex::new(0));
    let counter = big_requests.clone();
    let (m, c, b, lie) = (
        manifest.clone(),
        config_blob.clone(),
        big.clone(),
        served_instead.clone(),
    );
    let server = TestServer::start(move |r| {
        let t = r.target();
        if t == "GET /v2/app/manifests/v1" {
            Reply::full(200, &[("Content-Type", OCI_MANIFEST)], &m)
        } else if t == config_path {
            Reply::Raw(ranged(r, &c))
        } else if t == big_path {
            let mut n = counter.lock().unwrap();
            *n += 1;
            let full = ranged(r, &b);
            // The first two answers are cut 300 KiB and 200 KiB in.
            let head = full.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
            Reply::Raw(match *n {
                1 => full[..head + 300 * 1024].to_vec(),
                2 => full[..head + 200 * 1024].to_vec(),
                _ => full,
            })
        } else if t == honest_path {
            // Same length, other bytes: a lying or compromised registry.
            Reply::full(200, &[], &lie)
        } else {
            Reply::full(404, &[], b"")
        }
    });

    let reference =
        Reference::parse(&format!("docker://127.0.0.1:{}/app:v1", server.port)).unwrap();
    let options = RegistryOptions {
        plain_http: true,
        ..RegistryOptions::default()
    };
    let mut registry = Registry::new(StdTransport::default(), &reference, options);
    let image = registry
        .resolve(&reference, &Platform::for_arch("x86_64"), None)
        .unwrap();
    let sim = SimStorage::new(64 << 20, 5);
    let mut store = BlobStore::open(sim, config(), Box::new(Fixed)).unwrap();
    // volumemgr expects every blob by the digests of the verified manifest.
    for d in std::iter::once(&image.config).chain(&image.layers) {
        let expected = store
            .manager()
            .expect("volumemgr/app", digest(d), Some(d.size))
            .unwrap();
        assert_eq!(expected, Expected::Staging { staged: 0 });
    }

    // The config: straight through.
    let config_digest = digest(&image.config);
    let mut slot = Slot {
        store: &mut store,
        digest: config_digest,
    };
    let mut validator = Validator::default();
    registry
        .fetch_blob(
            "app",
            &image.config,
            &mut slot,
            &mut validator,
            &mut |_, _| {},
        )
        .unwrap();
    store.writer().complete(config_digest).unwrap();

    // The big layer: cut at 300 KiB, resumed and cut again at 500 KiB,
    // and then the power goes.
    let big_layer = &image.layers[0];
    let big_digest = digest(big_layer);
    let mut validator = Validator::default();
    for cut_at in [300 * 1024, 500 * 1024] {
        let mut slot = Slot {
            store: &mut store,
            digest: big_digest,
        };
        let e = registry
            .fetch_blob("app", big_layer, &mut slot, &mut validator, &mut |_, _| {})
            .unwrap_err();
        assert!(e.is_retryable(), "{e}");
        assert_eq!(slot.staged().unwrap(), cut_at);
    }
    let staged = store.writer().staged(big_digest).unwrap().length;
    assert_eq!(staged, 500 * 1024);
    // Power cut: the store comes back at its last durable point.
    let after = store.into_storage().crash();
    let mut store = BlobStore::open(after, config(), Box::new(Fixed)).unwrap();
    let resumed = store.writer().staged(big_digest).unwrap().length;
    assert!(
        (448 * 1024..=500 * 1024).contains(&resumed),
        "resumes at the last checkpoint: {resumed}"
    );
    let mut slot = Slot {
        store: &mut store,
        digest: big_digest,
    };
    let out = registry
        .fetch_blob("app", big_layer, &mut slot, &mut validator, &mut |_, _| {})
        .unwrap();
    assert_eq!(out.resumed_from, resumed);
    assert!(
        out.fetched < big_layer.size,
        "fetched {} of {} after the restart",
        out.fetched,
        big_layer.size
    );
    assert_eq!(store.writer().complete(big_digest).unwrap(), big_layer.size);
    assert_eq!(*big_requests.lock().unwrap(), 3);

    // The lying layer: staged, hashed, refused with both digests.
    let honest_digest = digest(&image.layers[1]);
    let mut slot = Slot {
        store: &mut store,
        digest: honest_digest,
    };
    registry
        .fetch_blob(
            "app",
            &image.layers[1],
            &mut slot,
            &mut Validator::default(),
            &mut |_, _| {},
        )
        .unwrap();
    match store.writer().complete(honest_digest) {
        Err(CompleteError::Mismatch {
            expected,
            actual,
            attempts: 1,
        }) => assert_eq!(
            (expected, actual),
            (honest_digest, Digest::of(&served_instead))
        ),
        other => panic!("a lie became {other:?}"),
    }
    let states: Vec<(Digest, BlobState)> = store
        .manager()
        .list()
        .into_iter()
        .map(|i| (i.digest, i.state))
        .collect();
    assert!(states.contains(&(config_digest, BlobState::Verified)));
    assert!(states.contains(&(big_digest, BlobState::Verified)));
    assert!(
        states.contains(&(honest_digest, BlobState::Staging)),
        "{states:?}"
    );
    assert_eq!(store.manager().usage().mismatches_total, 1);
}
