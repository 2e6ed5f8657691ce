//! Compiles the `.proto` files under `proto/` with protox (pure Rust, so no
//! system `protoc` is needed) and generates prost code for `no_std + alloc`.
//! The serialized descriptor set is kept too, so host tools can decode any
//! message by name without a second compiler run.

use std::path::PathBuf;

fn main() {
    let root = PathBuf::from("proto");
    let mut files = Vec::new();
    collect(&root, &mut files);
    files.sort();
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }

    let fds = protox::compile(&files, [&root]).expect("compiling .proto files");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    std::fs::write(
        out.join("eve_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )
    .expect("writing descriptor set");

    prost_build::Config::new()
        // BTreeMap works without std and gives a stable (sorted) map encoding,
        // which is what deterministic encoders in other languages produce.
        .btree_map(["."])
        .compile_fds(fds)
        .expect("generating Rust from descriptors");
}

fn collect(dir: &std::path::Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("reading proto dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "proto") {
            out.push(path);
        }
    }
}
