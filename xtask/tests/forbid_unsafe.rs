//! Every crate of the workspace that has no `unsafe` says so with
//! `#![forbid(unsafe_code)]`, so it stays that way: a library or binary
//! whose sources (everything under its package's `src/`) hold no `unsafe`
//! token must carry the attribute in its crate root. The workspace's
//! packages and their library and binary roots come from `cargo metadata`,
//! so a crate added anywhere (a new service, a new library, a new folder)
//! is checked without a list to update.
//!
//! Sources are read as Rust tokens, not text, so `unsafe` in a comment, a
//! doc comment or a string does not count, and `unsafe_code` is another
//! word.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;

use proc_macro2::{Delimiter, TokenStream, TokenTree};

/// A library or binary root of a workspace package.
struct CrateRoot {
    package: String,
    src_path: PathBuf,
}

/// The library and binary roots of every workspace member.
fn crate_roots() -> Vec<CrateRoot> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let out = Command::new(cargo)
        .current_dir(root)
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut roots = Vec::new();
    for package in metadata["packages"].as_array().unwrap() {
        for target in package["targets"].as_array().unwrap() {
            let kinds = target["kind"].as_array().unwrap();
            if kinds.iter().any(|k| k == "lib" || k == "bin") {
                roots.push(CrateRoot {
                    package: package["name"].as_str().unwrap().to_string(),
                    src_path: PathBuf::from(target["src_path"].as_str().unwrap()),
                });
            }
        }
    }
    roots
}

fn tokens(path: &Path) -> TokenStream {
    let source = std::fs::read_to_string(path).unwrap();
    TokenStream::from_str(&source)
        .unwrap_or_else(|e| panic!("{} does not lex as Rust: {e:?}", path.display()))
}

/// Whether `tokens` hold the keyword `unsafe` anywhere: a block, a
/// function, an impl or trait, an extern block or an unsafe attribute.
fn has_unsafe(tokens: TokenStream) -> bool {
    tokens.into_iter().any(|tree| match tree {
        TokenTree::Ident(ident) => ident == "unsafe",
        TokenTree::Group(group) => has_unsafe(group.stream()),
        TokenTree::Punct(_) | TokenTree::Literal(_) => false,
    })
}

/// Whether `tokens` (a crate root) carry the inner attribute
/// `#![forbid(unsafe_code)]` (possibly among other forbidden lints).
fn forbids_unsafe(tokens: TokenStream) -> bool {
    let trees: Vec<TokenTree> = tokens.into_iter().collect();
    trees.windows(3).any(|w| match w {
        [
            TokenTree::Punct(hash),
            TokenTree::Punct(bang),
            TokenTree::Group(attr),
        ] if hash.as_char() == '#'
            && bang.as_char() == '!'
            && attr.delimiter() == Delimiter::Bracket =>
        {
            let inner: Vec<TokenTree> = attr.stream().into_iter().collect();
            match inner.as_slice() {
                [TokenTree::Ident(name), TokenTree::Group(lints)] if name == "forbid" => lints
                    .stream()
                    .into_iter()
                    .any(|t| matches!(t, TokenTree::Ident(i) if i == "unsafe_code")),
                _ => false,
            }
        }
        _ => false,
    })
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The `src/` folder that holds a crate root (`src/lib.rs`,
/// `src/main.rs`, `src/bin/NAME.rs`, `src/bin/NAME/main.rs`).
fn src_dir(root: &Path) -> &Path {
    root.ancestors()
        .find(|dir| dir.file_name().is_some_and(|n| n == "src"))
        .unwrap_or_else(|| root.parent().unwrap())
}

#[test]
fn every_crate_without_unsafe_forbids_it() {
    let roots = crate_roots();
    assert!(
        roots.iter().any(|r| r.package == "zedagent") && roots.iter().any(|r| r.package == "hal"),
        "cargo metadata lists the services and the system layer"
    );
    let mut missing = Vec::new();
    let mut exempt = Vec::new();
    for root in &roots {
        let mut files = Vec::new();
        rust_files(src_dir(&root.src_path), &mut files);
        let with_unsafe: Vec<&PathBuf> = files.iter().filter(|f| has_unsafe(tokens(f))).collect();
        if let Some(first) = with_unsafe.first() {
            exempt.push(format!("{} ({})", root.package, first.display()));
        } else if !forbids_unsafe(tokens(&root.src_path)) {
            missing.push(root.src_path.display().to_string());
        }
    }
    assert!(
        missing.is_empty(),
        "these crates have no unsafe code but do not say #![forbid(unsafe_code)] \
         in their crate root; add it:\n  {}\n(crates with unsafe: {})",
        missing.join("\n  "),
        exempt.join(", ")
    );
}

#[test]
fn the_scan_reads_tokens_not_text() {
    let lex = |s: &str| TokenStream::from_str(s).unwrap();
    assert!(has_unsafe(lex("fn f() { let x = unsafe { g() }; }")));
    assert!(has_unsafe(lex("unsafe extern \"C\" { fn g(); }")));
    assert!(has_unsafe(lex("#[unsafe(no_mangle)] fn f() {}")));
    assert!(has_unsafe(lex("mod m { unsafe impl Send for S {} }")));
    assert!(!has_unsafe(lex("// unsafe\n/// unsafe\nfn f() {}")));
    assert!(!has_unsafe(lex("const S: &str = \"unsafe\";")));
    assert!(!has_unsafe(lex(
        "#![forbid(unsafe_code)] fn unsafe_free() {}"
    )));

    assert!(forbids_unsafe(lex(
        "//! Docs.\n#![no_std]\n#![forbid(unsafe_code)]\nfn f() {}"
    )));
    assert!(forbids_unsafe(lex("#![forbid(missing_docs, unsafe_code)]")));
    assert!(!forbids_unsafe(lex("#![deny(unsafe_code)]")));
    assert!(!forbids_unsafe(lex("#[forbid(unsafe_code)] fn f() {}")));
    assert!(!forbids_unsafe(lex("// #![forbid(unsafe_code)]")));
}
