//! PCR banks, selections and values as they cross the bus.

use crate::{Cursor, WireError, Writer};

/// A PCR bank, named on the wire by its TPM algorithm id so that more banks
/// can be added without changing the encoding.
///
/// Only SHA-256 is offered: EVE quotes and seals against the SHA-256 bank,
/// and the controller refuses quotes over any other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PcrBank {
    /// `TPM_ALG_SHA256`.
    Sha256,
}

impl PcrBank {
    /// The bank's TPM algorithm id (`TPM_ALG_ID`).
    pub const fn algorithm_id(self) -> u16 {
        match self {
            PcrBank::Sha256 => 0x000b,
        }
    }

    /// Length of one PCR value in this bank.
    pub const fn digest_len(self) -> usize {
        match self {
            PcrBank::Sha256 => 32,
        }
    }

    /// The bank for a TPM algorithm id.
    pub fn from_algorithm_id(id: u16) -> Result<Self, WireError> {
        match id {
            0x000b => Ok(PcrBank::Sha256),
            other => Err(WireError::UnsupportedBank(other)),
        }
    }
}

/// A non-empty set of PCR indices among the 24 a PC-client TPM has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PcrSelection(u32);

impl PcrSelection {
    /// Number of PCRs a TPM following the PC client profile has.
    pub const PCR_COUNT: u8 = 24;

    /// A selection from a bitmap (bit `i` selects PCR `i`).
    pub fn from_bits(bits: u32) -> Result<Self, WireError> {
        if bits == 0 || bits >> Self::PCR_COUNT != 0 {
            return Err(WireError::BadSelection);
        }
        Ok(PcrSelection(bits))
    }

    /// A selection of the given indices.
    pub fn from_indices(indices: &[u8]) -> Result<Self, WireError> {
        let mut bits = 0u32;
        for &i in indices {
            if i >= Self::PCR_COUNT {
                return Err(WireError::BadSelection);
            }
            bits |= 1 << i;
        }
        Self::from_bits(bits)
    }

    /// The bitmap (bit `i` selects PCR `i`).
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// Number of selected PCRs.
    pub const fn count(self) -> usize {
        self.0.count_ones() as usize
    }

    /// Whether PCR `index` is selected.
    pub const fn contains(self, index: u8) -> bool {
        index < Self::PCR_COUNT && self.0 & (1 << index) != 0
    }

    /// The selected indices, lowest first.
    pub fn indices(self) -> impl Iterator<Item = u8> {
        (0..Self::PCR_COUNT).filter(move |&i| self.contains(i))
    }
}

/// The values of selected PCRs of one bank, in index order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PcrValues<'a> {
    bank: PcrBank,
    selection: PcrSelection,
    digests: &'a [u8],
}

impl<'a> PcrValues<'a> {
    /// Values for `selection`: `digests` holds one digest of the bank's
    /// length per selected PCR, lowest index first.
    pub fn new(
        bank: PcrBank,
        selection: PcrSelection,
        digests: &'a [u8],
    ) -> Result<Self, WireError> {
        if digests.len() != selection.count() * bank.digest_len() {
            return Err(WireError::BadLength);
        }
        Ok(PcrValues {
            bank,
            selection,
            digests,
        })
    }

    /// The bank the values come from.
    pub fn bank(&self) -> PcrBank {
        self.bank
    }

    /// Which PCRs the values are of.
    pub fn selection(&self) -> PcrSelection {
        self.selection
    }

    /// The value of PCR `index`, if selected.
    pub fn get(&self, index: u8) -> Option<&'a [u8]> {
        self.iter().find(|&(i, _)| i == index).map(|(_, v)| v)
    }

    /// `(index, value)` pairs, lowest index first.
    pub fn iter(&self) -> impl Iterator<Item = (u8, &'a [u8])> + use<'a> {
        let digests = self.digests;
        self.selection
            .indices()
            .zip(digests.chunks_exact(self.bank.digest_len()))
    }

    /// The digests back to back, as the quote's PCR digest hashes them.
    pub fn concatenated(&self) -> &'a [u8] {
        self.digests
    }

    pub(crate) const fn wire_len(&self) -> usize {
        2 + 4 + self.digests.len()
    }

    pub(crate) fn read(cursor: &mut Cursor<'a>) -> Result<Self, WireError> {
        let bank = PcrBank::from_algorithm_id(cursor.u16()?)?;
        let selection = PcrSelection::from_bits(cursor.u32()?)?;
        let digests = cursor.take(selection.count() * bank.digest_len())?;
        PcrValues::new(bank, selection, digests)
    }

    pub(crate) fn write(&self, w: &mut Writer<'_>) {
        w.u16(self.bank.algorithm_id());
        w.u32(self.selection.bits());
        w.bytes(self.digests);
    }
}
