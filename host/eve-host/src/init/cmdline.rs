//! What the boot loader tells the node on the kernel command line:
//! `eve.slot=IMGA eve.slot_guid=<partition GUID> eve.slot_state=active`.

use gptab::Guid;

/// The partition the node booted from, as far as the loader said.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BootSlot {
    /// IMGA or IMGB.
    pub name: Option<String>,
    /// The partition's unique GUID: finds the boot disk among several.
    pub guid: Option<Guid>,
    /// Its EVE state after the loader's choice (`active`, or `inprogress`
    /// while an update is on trial).
    pub state: Option<String>,
}

impl BootSlot {
    /// On a Raspberry Pi, whose firmware chose the partition (`tryboot`
    /// A/B): the partition number and tryboot flag it leaves in the device
    /// tree's `/chosen/bootloader` (`dir`), as big-endian 32-bit cells.
    pub fn from_raspberry_pi(dir: &std::path::Path) -> Option<BootSlot> {
        let cell = |name: &str| {
            let bytes = std::fs::read(dir.join(name)).ok()?;
            Some(u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?))
        };
        let partition = cell("partition")?;
        let tryboot = cell("tryboot").unwrap_or(0) == 1;
        Some(BootSlot {
            name: Some(format!("partition {partition}")),
            guid: None,
            state: Some(String::from(if tryboot {
                "tryboot: an update on trial"
            } else {
                "the firmware's default partition"
            })),
        })
    }

    /// Reads the `eve.slot*` words of `cmdline`; other words are ignored.
    pub fn parse(cmdline: &str) -> BootSlot {
        let mut slot = BootSlot::default();
        for word in cmdline.split_ascii_whitespace() {
            match word.split_once('=') {
                Some(("eve.slot", v)) => slot.name = Some(v.to_string()),
                Some(("eve.slot_guid", v)) => slot.guid = Guid::parse(v),
                Some(("eve.slot_state", v)) => slot.state = Some(v.to_string()),
                _ => {}
            }
        }
        slot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_the_loader_appends() {
        let slot = BootSlot::parse(
            "console=ttyS0 panic=10 eve.slot=IMGB eve.slot_guid=ad6871ee-31f9-4cf3-9e09-6f7a25c30053 eve.slot_state=inprogress\n",
        );
        assert_eq!(slot.name.as_deref(), Some("IMGB"));
        assert_eq!(
            slot.guid.map(|g| g.to_string()).as_deref(),
            Some("ad6871ee-31f9-4cf3-9e09-6f7a25c30053")
        );
        assert_eq!(slot.state.as_deref(), Some("inprogress"));
        assert_eq!(BootSlot::parse("quiet"), BootSlot::default());
        assert_eq!(BootSlot::parse("eve.slot_guid=nonsense").guid, None);
    }

    #[test]
    fn reads_the_raspberry_pi_firmware_choice() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(BootSlot::from_raspberry_pi(dir.path()), None);
        std::fs::write(dir.path().join("partition"), 3u32.to_be_bytes()).unwrap();
        std::fs::write(dir.path().join("tryboot"), 1u32.to_be_bytes()).unwrap();
        let slot = BootSlot::from_raspberry_pi(dir.path()).unwrap();
        assert_eq!(slot.name.as_deref(), Some("partition 3"));
        assert_eq!(slot.state.as_deref(), Some("tryboot: an update on trial"));
        std::fs::write(dir.path().join("tryboot"), [0u8; 2]).unwrap();
        let slot = BootSlot::from_raspberry_pi(dir.path()).unwrap();
        assert_eq!(
            slot.state.as_deref(),
            Some("the firmware's default partition")
        );
    }
}
