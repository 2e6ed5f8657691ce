//! The linker scripts are passed by `.cargo/config.toml`, which cargo does
//! not track: rebuild this crate (and so relink every service) when they
//! change.
fn main() {
    println!("cargo:rerun-if-changed=src/x86_64/link.ld");
    println!("cargo:rerun-if-changed=src/aarch64/link.ld");
}
