//! EVE's A/B choice between IMGA and IMGB on GPT attribute bits, as
//! GRUB's `gptprio.next` makes it and EVE's `zboot` names it.
//!
//! Bits 48-51 hold a priority, 52-55 a count of tries left, 56 a
//! successful flag (the ChromeOS/CoreOS layout, set through `cgpt add -A`,
//! which writes bits 48-63 as one 16-bit value). Among the partitions of
//! the image type, in entry order, the loader takes the first with the
//! highest priority (above 0) that is successful or has a try left; if the
//! one taken has tries left, one is spent, and the table is written,
//! before the kernel starts. EVE uses four values of the 16 bits:
//!
//! | state | bits 48-63 | priority | tries | successful | meaning |
//! |---|---|---|---|---|---|
//! | active | 0x102 | 2 | 0 | yes | the committed image |
//! | updating | 0x13 | 3 | 1 | no | a new image, to be tried once |
//! | inprogress | 0x3 | 3 | 0 | no | the try was spent: booting it now, or it failed |
//! | unused | 0 | 0 | 0 | no | never chosen |
//!
//! So an update (`updating` beside `active`) is booted once; if it does
//! not mark itself `active` before the next boot, it is `inprogress` with
//! no tries left, not bootable, and the old `active` partition boots: the
//! fallback needs nothing but the attribute bits.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::{Gpt, Guid, Partition, UpdateError};

/// The first attribute bit of the priority field.
pub const PRIORITY_SHIFT: u32 = 48;
/// The first attribute bit of the tries-left field.
pub const TRIES_SHIFT: u32 = 52;
/// The successful flag's attribute bit.
pub const SUCCESSFUL_BIT: u32 = 56;
/// Where the 16 bits `cgpt add -A` writes start.
const STATE_SHIFT: u32 = 48;

/// The three `gptprio` fields of a partition's attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prio {
    /// 0 to 15; 0 is never booted.
    pub priority: u8,
    /// 0 to 15.
    pub tries_left: u8,
    pub successful: bool,
}

impl Prio {
    /// The fields of `attributes`.
    pub fn of(attributes: u64) -> Prio {
        Prio {
            priority: ((attributes >> PRIORITY_SHIFT) & 0xF) as u8,
            tries_left: ((attributes >> TRIES_SHIFT) & 0xF) as u8,
            successful: attributes >> SUCCESSFUL_BIT & 1 == 1,
        }
    }

    /// `attributes` with these fields (values above 15 are cut to their
    /// low 4 bits); every other bit kept.
    pub fn apply(self, attributes: u64) -> u64 {
        let mask = 0xF << PRIORITY_SHIFT | 0xF << TRIES_SHIFT | 1 << SUCCESSFUL_BIT;
        attributes & !mask
            | u64::from(self.priority & 0xF) << PRIORITY_SHIFT
            | u64::from(self.tries_left & 0xF) << TRIES_SHIFT
            | u64::from(self.successful) << SUCCESSFUL_BIT
    }

    /// Whether the loader may take it at all: a priority, and a try left
    /// or success behind it.
    pub fn bootable(self) -> bool {
        self.priority > 0 && (self.tries_left > 0 || self.successful)
    }
}

impl fmt::Display for Prio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "priority {}, {} {} left, {}",
            self.priority,
            self.tries_left,
            if self.tries_left == 1 { "try" } else { "tries" },
            if self.successful {
                "successful"
            } else {
                "not successful"
            }
        )
    }
}

/// EVE's name for a partition's bits 48-63, as `zboot partstate` prints
/// it: anything but the four exact values is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotState {
    Active,
    Updating,
    InProgress,
    Unused,
    /// Some other value of the 16 bits.
    Unknown(u16),
}

impl SlotState {
    /// The state of `attributes`.
    pub fn of(attributes: u64) -> SlotState {
        match (attributes >> STATE_SHIFT) as u16 {
            0x102 => SlotState::Active,
            0x13 => SlotState::Updating,
            0x3 => SlotState::InProgress,
            0 => SlotState::Unused,
            other => SlotState::Unknown(other),
        }
    }

    /// The 16 bits of this state.
    pub fn bits(self) -> u16 {
        match self {
            SlotState::Active => 0x102,
            SlotState::Updating => 0x13,
            SlotState::InProgress => 0x3,
            SlotState::Unused => 0,
            SlotState::Unknown(bits) => bits,
        }
    }

    /// `attributes` with bits 48-63 set to this state, as `cgpt add -A`
    /// sets them; bits 0-47 kept.
    pub fn apply(self, attributes: u64) -> u64 {
        attributes & ((1 << STATE_SHIFT) - 1) | u64::from(self.bits()) << STATE_SHIFT
    }
}

impl fmt::Display for SlotState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SlotState::Active => f.write_str("active"),
            SlotState::Updating => f.write_str("updating"),
            SlotState::InProgress => f.write_str("inprogress"),
            SlotState::Unused => f.write_str("unused"),
            SlotState::Unknown(bits) => write!(f, "unknown 0x{bits:x}"),
        }
    }
}

/// One partition the loader looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub number: u32,
    pub name: String,
    pub unique_guid: Guid,
    /// Its fields before the choice.
    pub prio: Prio,
    pub state: SlotState,
}

impl Candidate {
    fn of(p: &Partition) -> Candidate {
        Candidate {
            number: p.number,
            name: p.name.clone(),
            unique_guid: p.unique_guid,
            prio: Prio::of(p.attributes),
            state: SlotState::of(p.attributes),
        }
    }

    /// Why a candidate is not bootable, in EVE's words where it has them.
    fn why_not_bootable(&self) -> &'static str {
        match self.state {
            SlotState::Unused => "unused",
            SlotState::InProgress => "an update that did not commit: no tries left",
            _ if self.prio.priority == 0 => "priority 0",
            _ => "no tries left and never successful",
        }
    }
}

/// What the loader chose and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// Index into `candidates` of the partition to boot.
    pub chosen: usize,
    /// Every partition of the image type, in entry order.
    pub candidates: Vec<Candidate>,
    /// Whether a try was spent (the table must be written before booting).
    pub spent_try: bool,
}

impl Choice {
    /// The partition to boot.
    pub fn partition(&self) -> &Candidate {
        &self.candidates[self.chosen]
    }

    /// Its fields after the choice (one try fewer if one was spent).
    pub fn after(&self) -> Prio {
        let mut prio = self.partition().prio;
        prio.tries_left -= u8::from(self.spent_try);
        prio
    }
}

impl fmt::Display for Choice {
    /// One line per candidate: the chosen one and why, the others and why
    /// not.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let chosen = self.partition();
        let why = match (chosen.prio.successful, self.spent_try) {
            (false, true) => String::from("an update on trial: this boot spends its try"),
            (true, true) => String::from("successful, with a try spent as gptprio does"),
            (true, false) => String::from("the committed image"),
            (false, false) => String::from("not bootable"),
        };
        write!(
            f,
            "booting {} (partition {}, {}; {}): {}",
            chosen.name, chosen.number, chosen.state, chosen.prio, why
        )?;
        for (i, other) in self.candidates.iter().enumerate() {
            if i == self.chosen {
                continue;
            }
            let why_not = if !other.prio.bootable() {
                other.why_not_bootable()
            } else if other.prio.priority < chosen.prio.priority {
                "lower priority"
            } else {
                "same priority, later in the table"
            };
            write!(
                f,
                "\n  not {} (partition {}, {}; {}): {}",
                other.name, other.number, other.state, other.prio, why_not
            )?;
        }
        Ok(())
    }
}

/// Why no partition could be chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChooseError {
    /// No partition of the image type.
    NoImagePartition,
    /// Partitions of the image type, none bootable.
    NothingBootable { candidates: usize },
    /// The chosen entry vanished (cannot happen with a table from `read`).
    Update(UpdateError),
}

impl fmt::Display for ChooseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChooseError::NoImagePartition => f.write_str("no IMGA/IMGB partition"),
            ChooseError::NothingBootable { candidates } => write!(
                f,
                "none of the {candidates} image partitions is bootable (priority above 0, and successful or a try left)"
            ),
            ChooseError::Update(e) => write!(f, "{e}"),
        }
    }
}

/// Chooses the partition of type `image_type` to boot, as GRUB's
/// `gptprio.next` does, and spends one of its tries if it has any (in
/// `gpt`: the caller writes the table before booting it).
pub fn choose(gpt: &mut Gpt, image_type: Guid) -> Result<Choice, ChooseError> {
    let candidates: Vec<Candidate> = gpt
        .partitions()
        .iter()
        .filter(|p| p.type_guid == image_type)
        .map(Candidate::of)
        .collect();
    if candidates.is_empty() {
        return Err(ChooseError::NoImagePartition);
    }
    let mut chosen: Option<usize> = None;
    for (i, c) in candidates.iter().enumerate() {
        let best = chosen.map_or(0, |b| candidates[b].prio.priority);
        if c.prio.bootable() && c.prio.priority > best {
            chosen = Some(i);
        }
    }
    let chosen = chosen.ok_or(ChooseError::NothingBootable {
        candidates: candidates.len(),
    })?;
    let partition = &candidates[chosen];
    let spent_try = partition.prio.tries_left > 0;
    if spent_try {
        let mut prio = partition.prio;
        prio.tries_left -= 1;
        let attributes = gpt
            .partition(partition.number)
            .map(|p| p.attributes)
            .ok_or(ChooseError::Update(UpdateError::NoSuchPartition(
                partition.number,
            )))?;
        gpt.set_attributes(partition.number, prio.apply(attributes))
            .map_err(ChooseError::Update)?;
    }
    Ok(Choice {
        chosen,
        candidates,
        spent_try,
    })
}

/// Why a state change was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransitionError {
    /// No partition with that name.
    NoSuchPartition,
    /// The partition is not of the image type.
    NotAnImage,
    /// `inprogress` is reached by booting, never set (as in `zboot`).
    NotSettable,
    /// The running partition is not `inprogress`: nothing to commit.
    CurrentNotInProgress(SlotState),
    /// The other partition is neither `active` nor `inprogress`.
    OtherNotActive(SlotState),
    Update(UpdateError),
}

impl fmt::Display for TransitionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransitionError::NoSuchPartition => f.write_str("no such partition"),
            TransitionError::NotAnImage => f.write_str("not an IMGA/IMGB partition"),
            TransitionError::NotSettable => {
                f.write_str("inprogress is reached by booting, not set")
            }
            TransitionError::CurrentNotInProgress(s) => {
                write!(f, "the running partition is {s}, not inprogress")
            }
            TransitionError::OtherNotActive(s) => {
                write!(f, "the other partition is {s}, not active or inprogress")
            }
            TransitionError::Update(e) => write!(f, "{e}"),
        }
    }
}

fn image_partition(gpt: &Gpt, name: &str, image_type: Guid) -> Result<Partition, TransitionError> {
    let p = gpt
        .partition_named(name)
        .ok_or(TransitionError::NoSuchPartition)?;
    if p.type_guid != image_type {
        return Err(TransitionError::NotAnImage);
    }
    Ok(p)
}

/// `zboot set_partstate NAME STATE`: sets one of the settable states
/// (`active`, `updating`, `unused`) on the image partition `name`.
pub fn set_state(
    gpt: &mut Gpt,
    name: &str,
    image_type: Guid,
    state: SlotState,
) -> Result<(), TransitionError> {
    if !matches!(
        state,
        SlotState::Active | SlotState::Updating | SlotState::Unused
    ) {
        return Err(TransitionError::NotSettable);
    }
    let p = image_partition(gpt, name, image_type)?;
    gpt.set_attributes(p.number, state.apply(p.attributes))
        .map_err(TransitionError::Update)
}

/// EVE's commit of a tested update: the running partition goes from
/// `inprogress` to `active` and the other one, `active` (the image the
/// update replaced) or `inprogress`, to `unused`.
pub fn commit(
    gpt: &mut Gpt,
    current: &str,
    other: &str,
    image_type: Guid,
) -> Result<(), TransitionError> {
    let cur = image_partition(gpt, current, image_type)?;
    let oth = image_partition(gpt, other, image_type)?;
    match SlotState::of(cur.attributes) {
        SlotState::InProgress => {}
        state => return Err(TransitionError::CurrentNotInProgress(state)),
    }
    match SlotState::of(oth.attributes) {
        SlotState::Active | SlotState::InProgress => {}
        state => return Err(TransitionError::OtherNotActive(state)),
    }
    gpt.set_attributes(cur.number, SlotState::Active.apply(cur.attributes))
        .map_err(TransitionError::Update)?;
    gpt.set_attributes(oth.number, SlotState::Unused.apply(oth.attributes))
        .map_err(TransitionError::Update)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eve_states_decode_to_their_fields() {
        let active = Prio::of(SlotState::Active.apply(0));
        assert_eq!(
            active,
            Prio {
                priority: 2,
                tries_left: 0,
                successful: true
            }
        );
        assert_eq!(
            Prio::of(SlotState::Updating.apply(0)),
            Prio {
                priority: 3,
                tries_left: 1,
                successful: false
            }
        );
        assert_eq!(
            Prio::of(SlotState::InProgress.apply(0)),
            Prio {
                priority: 3,
                tries_left: 0,
                successful: false
            }
        );
        assert!(!Prio::of(SlotState::Unused.apply(0)).bootable());
        // make-raw sets bits 49 and 56 on IMGA: "active".
        assert_eq!(SlotState::of(1 << 49 | 1 << 56), SlotState::Active);
    }

    #[test]
    fn spending_the_update_try_makes_it_in_progress() {
        let mut prio = Prio::of(SlotState::Updating.apply(0));
        prio.tries_left -= 1;
        assert_eq!(SlotState::of(prio.apply(0)), SlotState::InProgress);
    }

    #[test]
    fn fields_keep_the_other_bits() {
        let other = 1 << 0 | 1 << 2 | 1 << 60 | 1 << 63;
        let prio = Prio {
            priority: 15,
            tries_left: 9,
            successful: true,
        };
        let bits = prio.apply(other);
        assert_eq!(Prio::of(bits), prio);
        assert_eq!(bits & other, other);
        assert_eq!(
            SlotState::Active.apply(u64::MAX) & ((1 << 48) - 1),
            (1 << 48) - 1
        );
    }
}
