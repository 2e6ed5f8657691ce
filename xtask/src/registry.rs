//! `cargo xtask registry`: a local container registry for apps, as the
//! README's container deploy uses it: Debian's `docker-registry` on
//! 127.0.0.1:PORT (10.0.2.2:PORT to a node under QEMU user networking),
//! holding `busybox-httpd:latest`, the image the app scenarios build
//! (busybox httpd serving on 8080), until Ctrl-C. No OCI push tool is
//! needed: the image is pushed over the registry's HTTP API.

use std::sync::atomic::Ordering;
use std::thread;
use std::time::Duration;

use harness::appassets::oci;
use harness::content::Registry;
use harness::{Arch, workspace_root};

/// The repository the image is pushed to.
pub const REPOSITORY: &str = "busybox-httpd";

/// Starts the registry, pushes the image for `arch`, prints how a node
/// and `evectl` name it, and serves until SIGINT, SIGTERM or SIGHUP.
pub fn run(arch: Arch, port: u16) -> Result<(), String> {
    let registry = Registry::start_on(port).map_err(|e| format!("127.0.0.1:{port}: {e}"))?;
    let dir = workspace_root().join(format!("target/app-assets/{arch}/busybox-httpd-oci"));
    let image = oci::busybox_httpd_image(arch, &dir).map_err(|e| e.to_string())?;
    image
        .push_tagged(&registry, REPOSITORY, "latest")
        .map_err(|e| format!("pushing {REPOSITORY}:latest: {e}"))?;
    println!(
        "registry: http://127.0.0.1:{port} (http://10.0.2.2:{port} from a node)\n\
         image: docker://10.0.2.2:{port}/{REPOSITORY}:latest ({arch}, httpd on {})\n\
         Ctrl-C stops it",
        oci::HTTPD_PORT
    );
    let stop = crate::node::on_signals()?;
    while !stop.load(Ordering::Relaxed) {
        thread::sleep(Duration::from_millis(200));
    }
    drop(registry);
    Ok(())
}
