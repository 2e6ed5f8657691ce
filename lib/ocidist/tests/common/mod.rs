//! Shared by the registry tests: images built in the test, and pushing
//! them over HTTP with our own client.

#![allow(dead_code)]

use std::net::TcpStream;

use evehttp::{Client, Request};
use fetch::testing::StdStream;
use ocidist::Digest;
use ocidist::manifest::{OCI_CONFIG, OCI_INDEX, OCI_MANIFEST};

/// Bytes that differ per seed and do not compress to nothing.
pub fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub fn descriptor_json(
    media_type: &str,
    data: &[u8],
    platform: Option<(&str, Option<&str>)>,
) -> String {
    let platform = platform.map_or(String::new(), |(arch, variant)| {
        let v = variant.map_or(String::new(), |v| format!(r#","variant":"{v}""#));
        format!(r#","platform":{{"architecture":"{arch}","os":"linux"{v}}}"#)
    });
    format!(
        r#"{{"mediaType":"{media_type}","digest":"{}","size":{}{platform}}}"#,
        Digest::of(data),
        data.len()
    )
}

/// One arch's image: config, layers and manifest bytes.
pub struct Image {
    pub config: Vec<u8>,
    pub layers: Vec<Vec<u8>>,
    pub manifest: Vec<u8>,
}

pub fn image(arch: &str, layer_sizes: &[usize], seed: u64) -> Image {
    let layers: Vec<Vec<u8>> = layer_sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| bytes(n, seed + i as u64))
        .collect();
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|l| format!("\"{}\"", Digest::of(l)))
        .collect();
    let config = format!(
        r#"{{"architecture":"{arch}","os":"linux","rootfs":{{"type":"layers","diff_ids":[{}]}},"config":{{"Cmd":["/bin/true"]}}}}"#,
        diff_ids.join(",")
    )
    .into_bytes();
    let layer_json: Vec<String> = layers
        .iter()
        .map(|l| descriptor_json("application/vnd.oci.image.layer.v1.tar", l, None))
        .collect();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{},"layers":[{}]}}"#,
        descriptor_json(OCI_CONFIG, &config, None),
        layer_json.join(",")
    )
    .into_bytes();
    Image {
        config,
        layers,
        manifest,
    }
}

/// An index of images by (arch, variant), plus an attestation-style entry
/// with an unknown platform, as image builders add.
pub fn index(images: &[(&str, Option<&str>, &Image)], attestation: &[u8]) -> Vec<u8> {
    let mut entries: Vec<String> = images
        .iter()
        .map(|(arch, variant, img)| {
            descriptor_json(OCI_MANIFEST, &img.manifest, Some((arch, *variant)))
        })
        .collect();
    entries.push(descriptor_json(
        OCI_MANIFEST,
        attestation,
        Some(("unknown", None)),
    ));
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{}]}}"#,
        entries.join(",")
    )
    .into_bytes()
}

fn client(port: u16) -> Client<StdStream> {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect to registry");
    Client::new(StdStream(s), &format!("127.0.0.1:{port}")).unwrap()
}

/// Pushes a blob: open an upload session, then put the bytes with the
/// digest (the registry checks it).
pub fn push_blob(port: u16, repo: &str, data: &[u8]) {
    let mut c = client(port);
    let resp = c
        .send(&Request::post(&format!("/v2/{repo}/blobs/uploads/"), b"").close())
        .unwrap();
    assert_eq!(resp.status(), 202, "start upload to {repo}");
    let location = resp
        .head
        .headers()
        .get_str("location")
        .expect("upload location")
        .to_string();
    let path = match location.find("/v2/") {
        Some(i) => location[i..].to_string(),
        None => panic!("upload location {location}"),
    };
    let sep = if path.contains('?') { '&' } else { '?' };
    let put = format!("{path}{sep}digest={}", Digest::of(data)).replace("sha256:", "sha256%3A");
    drop(resp);
    let mut c = client(port);
    let resp = c
        .send(
            &Request::put(&put, data)
                .header("Content-Type", "application/octet-stream")
                .close(),
        )
        .unwrap();
    assert_eq!(resp.status(), 201, "finish upload to {repo}");
}

pub fn push_manifest(port: u16, repo: &str, reference: &str, media_type: &str, data: &[u8]) {
    let path = format!("/v2/{repo}/manifests/{reference}");
    let mut c = client(port);
    let resp = c
        .send(
            &Request::put(&path, data)
                .header("Content-Type", media_type)
                .close(),
        )
        .unwrap();
    assert_eq!(resp.status(), 201, "push manifest {repo}:{reference}");
}

pub fn push_image(port: u16, repo: &str, img: &Image) {
    push_blob(port, repo, &img.config);
    for l in &img.layers {
        push_blob(port, repo, l);
    }
    push_manifest(
        port,
        repo,
        &Digest::of(&img.manifest).to_string(),
        OCI_MANIFEST,
        &img.manifest,
    );
}
