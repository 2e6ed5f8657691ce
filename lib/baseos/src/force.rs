//! EVE's `force.fallback.counter` config item: the controller's lever to
//! send a node back to the base OS in its other partition. A change of
//! the counter (EVE acts on any change, not only a rise) asks for it; the
//! first value a node sees is only remembered, so a node does not fall
//! back because it was configured once.
//!
//! As EVE's baseosmgr, it is done only from a committed (`active`) booted
//! partition to an `unused` other one that holds a base OS: never into a
//! half-written or failed partition, never away from an update on trial.
//! Unlike EVE, which keeps a refused change pending and acts on it once
//! the partitions allow, a refused change is remembered as seen: a later
//! update that leaves a new image in the other partition must not turn an
//! old request into a fall back to that image.

use alloc::string::String;

use hostops::partitions::PartitionsStatus;

/// The partition states that allow it, as `hostops::partitions` names them.
const ACTIVE: &str = "active";
const UNUSED: &str = "unused";

/// What a `force.fallback.counter` value asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForceFallback {
    /// The first value seen, or no change.
    Nothing,
    /// `partitions.fallback` (the other partition, `label`, holding
    /// `version`, becomes `updating`), then a reboot into it.
    Fallback { label: String, version: String },
    /// The counter changed, but the partitions do not allow it.
    Refused(Refusal),
}

/// Why a change of the counter was not acted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The target did not report a booted and another partition.
    NoPartitions,
    /// The booted partition is on trial (or failed): not committed.
    BootedNotActive,
    /// The other partition holds no base OS.
    OtherEmpty,
    /// The other partition is being updated, or failed its trial.
    OtherNotUnused,
}

/// What `counter` asks for, given the value `seen` before (`None`: never)
/// and the partitions.
pub fn force_fallback(
    counter: u32,
    seen: Option<u32>,
    partitions: &PartitionsStatus,
) -> ForceFallback {
    if seen.is_none_or(|seen| seen == counter) {
        return ForceFallback::Nothing;
    }
    let (Some(booted), Some(other)) = (partitions.booted(), partitions.other()) else {
        return ForceFallback::Refused(Refusal::NoPartitions);
    };
    if booted.state != ACTIVE {
        return ForceFallback::Refused(Refusal::BootedNotActive);
    }
    if other.version.is_empty() {
        return ForceFallback::Refused(Refusal::OtherEmpty);
    }
    if other.state != UNUSED {
        return ForceFallback::Refused(Refusal::OtherNotUnused);
    }
    ForceFallback::Fallback {
        label: other.label.clone(),
        version: other.version.clone(),
    }
}

#[cfg(test)]
mod tests {
    use alloc::vec;

    use hostops::partitions::PartitionInfo;

    use super::*;

    fn part(label: &str, state: &str, version: &str, booted: bool) -> PartitionInfo {
        PartitionInfo {
            label: label.into(),
            state: state.into(),
            version: version.into(),
            size_bytes: 1 << 30,
            booted,
        }
    }

    /// IMGB booted in `booted_state` with 2.0; IMGA in `other_state`
    /// holding `other_version`.
    fn disk(booted_state: &str, other_state: &str, other_version: &str) -> PartitionsStatus {
        PartitionsStatus {
            partitions: vec![
                part("IMGA", other_state, other_version, false),
                part("IMGB", booted_state, "2.0", true),
            ],
        }
    }

    #[test]
    fn a_changed_counter_falls_back_to_a_valid_other_partition() {
        let committed = disk("active", "unused", "1.0");
        let back = ForceFallback::Fallback {
            label: "IMGA".into(),
            version: "1.0".into(),
        };
        assert_eq!(force_fallback(1, Some(0), &committed), back);
        assert_eq!(force_fallback(0, Some(3), &committed), back, "any change");
    }

    #[test]
    fn the_first_value_or_no_change_does_nothing() {
        let committed = disk("active", "unused", "1.0");
        assert_eq!(force_fallback(5, None, &committed), ForceFallback::Nothing);
        assert_eq!(
            force_fallback(5, Some(5), &committed),
            ForceFallback::Nothing
        );
    }

    #[test]
    fn only_from_a_committed_partition_to_an_unused_one_holding_a_base_os() {
        let refused = |d: &PartitionsStatus| match force_fallback(2, Some(1), d) {
            ForceFallback::Refused(why) => why,
            other => panic!("acted: {other:?}"),
        };
        assert_eq!(
            refused(&disk("inprogress", "active", "1.0")),
            Refusal::BootedNotActive
        );
        assert_eq!(refused(&disk("active", "unused", "")), Refusal::OtherEmpty);
        assert_eq!(
            refused(&disk("active", "inprogress", "3.0")),
            Refusal::OtherNotUnused
        );
        assert_eq!(
            refused(&disk("active", "updating", "3.0")),
            Refusal::OtherNotUnused
        );
        let unknown = PartitionsStatus {
            partitions: vec![part("IMGA", "active", "1.0", false)],
        };
        assert_eq!(refused(&unknown), Refusal::NoPartitions);
    }
}
