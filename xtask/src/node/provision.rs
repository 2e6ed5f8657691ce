//! The device's side of a session: its onboarding identity (kept across
//! runs while the controller is the same one), pre-registered with the
//! controller, and its factory CONFIG partition.

use harness::provision::{OnboardIdentity, config_files, write_atomically, write_config_partition};

use super::dirs::NodeDirs;
use crate::admin::AdminClient;
use crate::controller::LocalController;

const IDENTITY_FILES: [&str; 3] = ["onboard.cert.pem", "onboard.key.pem", "soft_serial"];

/// Makes the device `controller` expects: the node's state and identity
/// are kept only while the controller is the same one (same root
/// certificate), since a device's identity means nothing to another
/// controller; the identity is pre-registered and the CONFIG partition
/// written with the controller's address and root.
pub fn provision(
    dirs: &NodeDirs,
    controller: &LocalController,
    admin: &AdminClient,
) -> Result<OnboardIdentity, String> {
    let owner = std::fs::read_to_string(dirs.state_owner()).ok();
    let same_controller = owner.as_deref() == Some(controller.root_pem.as_str());
    let kept = if same_controller {
        load_identity(dirs)
    } else {
        dirs.remove_state()?;
        None
    };
    let identity = match kept {
        Some(identity) => identity,
        None => {
            let identity = OnboardIdentity::generate("xtask-")?;
            save_identity(dirs, &identity)?;
            identity
        }
    };
    write_atomically(&dirs.state_owner(), controller.root_pem.as_bytes())?;
    admin.onboard(&identity.cert_pem, std::slice::from_ref(&identity.serial))?;
    write_config_partition(
        &dirs.config_part(),
        &config_files(
            controller.device_api.port(),
            &controller.root_pem,
            &identity,
        ),
    )?;
    Ok(identity)
}

fn load_identity(dirs: &NodeDirs) -> Option<OnboardIdentity> {
    let [cert_pem, key_pem, serial] =
        IDENTITY_FILES.map(|n| std::fs::read_to_string(dirs.identity_file(n)).ok());
    Some(OnboardIdentity {
        cert_pem: cert_pem?,
        key_pem: key_pem?,
        serial: serial?,
    })
}

fn save_identity(dirs: &NodeDirs, identity: &OnboardIdentity) -> Result<(), String> {
    let texts = [&identity.cert_pem, &identity.key_pem, &identity.serial];
    for (name, text) in IDENTITY_FILES.iter().zip(texts) {
        write_atomically(&dirs.identity_file(name), text.as_bytes())?;
    }
    Ok(())
}
