//! Flattened device tree (DTB) queries.
//!
//! On aarch64 the loader passes the physical address of a DTB in `x0`. The
//! HAL maps its header, asks [`total_size`] how much to map, and hands the
//! whole blob to [`Fdt::new`]. Everything in the blob is untrusted: offsets,
//! lengths, string references and nesting are all checked, and every walk is
//! bounded by the size of the structure block (each token consumes at least
//! four bytes) and by [`MAX_DEPTH`].
//!
//! Only the handful of questions the HAL asks are answered (memory, `/chosen`
//! `bootargs`, devices by `compatible`, the PSCI conduit) rather than offering
//! a general tree API: a small surface is easier to get right against hostile
//! input, and a unikernel has no use for the rest.
//!
//! Strictness is split on purpose. The tree's *structure* is validated once,
//! in [`Fdt::new`], so a corrupt blob is rejected before anyone relies on it.
//! Property *values* are checked only where they are used: a sloppy property
//! in a node we never look at does not stop boot, but a value we return (a
//! string, a `reg`) must be well-formed or the query fails.

use core::fmt;

use crate::bytes::be_u32;

/// The DTB magic; anything else means `x0` did not point at a device tree.
pub const FDT_MAGIC: u32 = 0xd00d_feed;

/// Size of the version 17 header: what the HAL maps before [`total_size`].
pub const FDT_HEADER_LEN: usize = 40;

/// Largest blob we accept. QEMU's trees are a few KiB; the cap bounds how much
/// memory the HAL maps on the strength of an untrusted `totalsize`.
pub const MAX_FDT_LEN: usize = 1 << 21;

/// Deepest node nesting accepted. Real trees are about 5 deep; the limit lets
/// the walker keep its node stack in a fixed array.
pub const MAX_DEPTH: usize = 16;

/// Capacity of [`Fdt::memory`]'s result.
pub const MAX_MEMORY_REGIONS: usize = 8;

/// The header format we read (the one with `size_dt_struct`).
const FDT_VERSION: u32 = 17;

const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_NOP: u32 = 4;
const FDT_END: u32 = 9;

/// A block of the blob, for [`FdtError`] messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Block {
    /// The memory reservation map.
    MemReserve,
    /// The structure block (nodes and properties).
    Struct,
    /// The strings block (property names).
    Strings,
}

impl fmt::Display for Block {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::MemReserve => "memory reservation block",
            Self::Struct => "structure block",
            Self::Strings => "strings block",
        })
    }
}

/// Why a device tree was rejected. Offsets are relative to the start of the
/// structure block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FdtError {
    /// The slice is shorter than the header or than `totalsize`.
    TooShort {
        /// Bytes required.
        needed: usize,
        /// Bytes provided.
        got: usize,
    },
    /// The first word is not [`FDT_MAGIC`].
    BadMagic(u32),
    /// `totalsize` is smaller than the header or above [`MAX_FDT_LEN`].
    BadTotalSize(u32),
    /// The blob's format is not compatible with version 17.
    UnsupportedVersion {
        /// `version` from the header.
        version: u32,
        /// `last_comp_version` from the header.
        last_compatible: u32,
    },
    /// A block extends past `totalsize` or overlaps the header.
    BlockOutOfBounds(Block),
    /// A block is not aligned as the specification requires.
    Misaligned(Block),
    /// An unknown token.
    BadToken {
        /// Where it was found.
        offset: usize,
        /// Its value.
        token: u32,
    },
    /// The structure block ends before `FDT_END`, possibly mid-token.
    MissingEnd,
    /// A node name runs to the end of the structure block.
    UnterminatedName {
        /// Offset of the `FDT_BEGIN_NODE` token.
        offset: usize,
    },
    /// A node name is not UTF-8.
    BadNodeName {
        /// Offset of the `FDT_BEGIN_NODE` token.
        offset: usize,
    },
    /// A property's length runs past the structure block.
    PropertyOverflow {
        /// Offset of the `FDT_PROP` token.
        offset: usize,
    },
    /// A property appears outside any node.
    PropertyOutsideNode {
        /// Offset of the `FDT_PROP` token.
        offset: usize,
    },
    /// A property follows a subnode of the same node, which the specification
    /// forbids and which would make `#address-cells` ambiguous.
    PropertyAfterSubnode {
        /// Offset of the `FDT_PROP` token.
        offset: usize,
    },
    /// A property name offset is outside the strings block.
    BadStringOffset(u32),
    /// A property name runs to the end of the strings block.
    UnterminatedString(u32),
    /// Nodes are nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// `FDT_END_NODE` without an open node.
    UnbalancedEndNode {
        /// Offset of the token.
        offset: usize,
    },
    /// `FDT_END` while a node is still open.
    UnclosedNode,
    /// More than one top-level node, or none at all.
    BadRoot,
    /// A property we need has a malformed value (wrong length, missing NUL,
    /// not UTF-8).
    BadProperty(&'static str),
    /// `reg` must be decoded with cell counts other than 1 or 2.
    UnsupportedCells {
        /// The parent's `#address-cells`.
        address: u32,
        /// The parent's `#size-cells`.
        size: u32,
    },
    /// A `reg` entry has `base + size` beyond the 64-bit space.
    RegionOverflow,
    /// More than [`MAX_MEMORY_REGIONS`] memory banks.
    TooManyRegions,
}

impl fmt::Display for FdtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::TooShort { needed, got } => {
                write!(f, "device tree truncated: need {needed} bytes, got {got}")
            }
            Self::BadMagic(m) => write!(
                f,
                "bad device tree magic {m:#010x} (expected {FDT_MAGIC:#010x})"
            ),
            Self::BadTotalSize(n) => write!(
                f,
                "device tree totalsize {n} outside {FDT_HEADER_LEN}..={MAX_FDT_LEN}"
            ),
            Self::UnsupportedVersion {
                version,
                last_compatible,
            } => write!(
                f,
                "device tree version {version} (compatible with {last_compatible}) is not readable as version {FDT_VERSION}"
            ),
            Self::BlockOutOfBounds(b) => write!(f, "device tree {b} out of bounds"),
            Self::Misaligned(b) => write!(f, "device tree {b} misaligned"),
            Self::BadToken { offset, token } => {
                write!(f, "device tree: bad token {token:#x} at {offset:#x}")
            }
            Self::MissingEnd => write!(f, "device tree structure block ends without FDT_END"),
            Self::UnterminatedName { offset } => {
                write!(f, "device tree: unterminated node name at {offset:#x}")
            }
            Self::BadNodeName { offset } => {
                write!(f, "device tree: node name at {offset:#x} is not UTF-8")
            }
            Self::PropertyOverflow { offset } => {
                write!(
                    f,
                    "device tree: property at {offset:#x} overruns the structure block"
                )
            }
            Self::PropertyOutsideNode { offset } => {
                write!(f, "device tree: property at {offset:#x} outside any node")
            }
            Self::PropertyAfterSubnode { offset } => {
                write!(f, "device tree: property at {offset:#x} follows a subnode")
            }
            Self::BadStringOffset(o) => {
                write!(
                    f,
                    "device tree: property name offset {o:#x} outside strings block"
                )
            }
            Self::UnterminatedString(o) => {
                write!(f, "device tree: property name at {o:#x} is unterminated")
            }
            Self::TooDeep => write!(f, "device tree nested deeper than {MAX_DEPTH}"),
            Self::UnbalancedEndNode { offset } => {
                write!(f, "device tree: FDT_END_NODE at {offset:#x} closes nothing")
            }
            Self::UnclosedNode => write!(f, "device tree: FDT_END inside an open node"),
            Self::BadRoot => write!(f, "device tree must have exactly one root node"),
            Self::BadProperty(name) => write!(f, "device tree: malformed `{name}` property"),
            Self::UnsupportedCells { address, size } => write!(
                f,
                "device tree: unsupported #address-cells={address} #size-cells={size}"
            ),
            Self::RegionOverflow => write!(f, "device tree: reg entry wraps past 2^64"),
            Self::TooManyRegions => write!(
                f,
                "device tree has more than {MAX_MEMORY_REGIONS} memory regions"
            ),
        }
    }
}

impl core::error::Error for FdtError {}

/// Reads `totalsize` from a header so the HAL knows how much to map.
///
/// Checks the magic first so that a wrong pointer is reported as such rather
/// than as an absurd size.
pub fn total_size(header: &[u8]) -> Result<usize, FdtError> {
    if header.len() < FDT_HEADER_LEN {
        return Err(FdtError::TooShort {
            needed: FDT_HEADER_LEN,
            got: header.len(),
        });
    }
    let field = |i| {
        be_u32(header, i).ok_or(FdtError::TooShort {
            needed: FDT_HEADER_LEN,
            got: header.len(),
        })
    };
    let magic = field(0)?;
    if magic != FDT_MAGIC {
        return Err(FdtError::BadMagic(magic));
    }
    let total = field(4)?;
    usize::try_from(total)
        .ok()
        .filter(|n| (FDT_HEADER_LEN..=MAX_FDT_LEN).contains(n))
        .ok_or(FdtError::BadTotalSize(total))
}

/// A `reg` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Region {
    /// First address.
    pub base: u64,
    /// Length in bytes. `base + size` never overflows for parsed regions.
    pub size: u64,
}

/// The memory banks of a tree, in document order. A fixed array rather than a
/// collection type keeps the crate dependency-free and allocation-free.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemoryRegions {
    regions: [Region; MAX_MEMORY_REGIONS],
    len: usize,
}

impl MemoryRegions {
    /// The regions found.
    pub fn as_slice(&self) -> &[Region] {
        self.regions.get(..self.len).unwrap_or(&[])
    }

    fn push(&mut self, region: Region) -> Result<(), FdtError> {
        let slot = self
            .regions
            .get_mut(self.len)
            .ok_or(FdtError::TooManyRegions)?;
        *slot = region;
        self.len = self.len.saturating_add(1);
        Ok(())
    }
}

impl core::ops::Deref for MemoryRegions {
    type Target = [Region];

    fn deref(&self) -> &[Region] {
        self.as_slice()
    }
}

impl<'r> IntoIterator for &'r MemoryRegions {
    type Item = &'r Region;
    type IntoIter = core::slice::Iter<'r, Region>;

    fn into_iter(self) -> Self::IntoIter {
        self.as_slice().iter()
    }
}

/// A node matched by [`Fdt::compatible_regs`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Device<'a> {
    /// The node name including unit address, e.g. `virtio_mmio@a000000`.
    pub name: &'a str,
    /// The first `reg` entry, if the node has one.
    pub reg: Option<Region>,
    /// The second `reg` entry, if any: a GIC's CPU interface (v2) or its
    /// redistributors (v3).
    pub second_reg: Option<Region>,
    /// The first cells of `interrupts`, raw. The number of cells per
    /// interrupt is the interrupt parent's `#interrupt-cells`, which we do not
    /// resolve; for the GIC it is 3 (type, number, flags), so these cells are
    /// exactly the first interrupt there.
    pub irq_cells: [u32; 3],
    /// How many of `irq_cells` are valid (0 without `interrupts`).
    pub irq_count: usize,
    /// The whole `interrupts` property (big-endian cells), for nodes with
    /// several interrupts such as the architected timer.
    interrupts: &'a [u8],
}

impl Device<'_> {
    /// The valid prefix of [`Device::irq_cells`].
    pub fn irq(&self) -> &[u32] {
        self.irq_cells.get(..self.irq_count).unwrap_or(&[])
    }

    /// Cell `index` of the whole `interrupts` property.
    pub fn interrupt_cell(&self, index: usize) -> Option<u32> {
        be_u32(self.interrupts, index.checked_mul(4)?)
    }

    /// The SPI number when the interrupt is in GIC form `<0 spi flags>`;
    /// the GIC interrupt ID is this plus 32.
    pub fn gic_spi(&self) -> Option<u32> {
        match self.irq() {
            [0, spi, _] => Some(*spi),
            _ => None,
        }
    }
}

/// What [`Fdt::scan`] collects besides devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Scan<'a> {
    /// As [`Fdt::memory`].
    pub memory: MemoryRegions,
    /// As [`Fdt::bootargs`].
    pub bootargs: Option<&'a str>,
    /// As [`Fdt::psci_method`].
    pub psci_method: Option<&'a str>,
}

/// A validated device tree blob.
#[derive(Debug, Clone, Copy)]
pub struct Fdt<'a> {
    structure: &'a [u8],
    strings: &'a [u8],
}

impl<'a> Fdt<'a> {
    /// Validates the header, the block layout and the whole structure block.
    ///
    /// `bytes` may be longer than `totalsize` (the HAL maps whole pages);
    /// everything past `totalsize` is ignored.
    pub fn new(bytes: &'a [u8]) -> Result<Fdt<'a>, FdtError> {
        let fdt = Self::from_header(bytes)?;
        let mut walker = fdt.walker();
        while let Some(node) = walker.next_node() {
            node?;
        }
        Ok(fdt)
    }

    /// Checks the header and block layout, not the structure block.
    fn from_header(bytes: &'a [u8]) -> Result<Fdt<'a>, FdtError> {
        let total = total_size(bytes)?;
        let blob = bytes.get(..total).ok_or(FdtError::TooShort {
            needed: total,
            got: bytes.len(),
        })?;
        let field = |i| {
            be_u32(blob, i).ok_or(FdtError::TooShort {
                needed: FDT_HEADER_LEN,
                got: blob.len(),
            })
        };
        let off_struct = field(8)?;
        let off_strings = field(12)?;
        let off_rsvmap = field(16)?;
        let version = field(20)?;
        let last_compatible = field(24)?;
        let size_strings = field(32)?;
        let size_struct = field(36)?;
        if version < FDT_VERSION || last_compatible > FDT_VERSION {
            return Err(FdtError::UnsupportedVersion {
                version,
                last_compatible,
            });
        }
        let structure = block(blob, off_struct, size_struct, Block::Struct)?;
        let strings = block(blob, off_strings, size_strings, Block::Strings)?;
        // We do not read reservations, but a map that starts outside the
        // blob means the header is lying about its layout.
        block(blob, off_rsvmap, 16, Block::MemReserve)?;
        if !off_struct.is_multiple_of(4) {
            return Err(FdtError::Misaligned(Block::Struct));
        }
        if !off_rsvmap.is_multiple_of(8) {
            return Err(FdtError::Misaligned(Block::MemReserve));
        }
        Ok(Fdt { structure, strings })
    }

    /// [`Fdt::new`] and [`Fdt::scan`] in one walk: the scan visits every
    /// node, so it validates the structure exactly as `new` does.
    pub fn new_scanned(
        bytes: &'a [u8],
        compatibles: &[&str],
        on_device: impl FnMut(usize, Device<'a>),
    ) -> Result<(Fdt<'a>, Scan<'a>), FdtError> {
        let fdt = Self::from_header(bytes)?;
        let scan = fdt.scan(compatibles, on_device)?;
        Ok((fdt, scan))
    }

    /// Everything boot needs, in one walk: the memory banks, `bootargs`,
    /// the PSCI method, and each node compatible with one of `compatibles`,
    /// handed to `on_device` with the index of the string it matched.
    ///
    /// Each query above walks the whole structure block, and under TCG a
    /// walk of QEMU's virt tree costs about 1.5 ms, so a boot that asked
    /// six questions spent most of its time here.
    pub fn scan(
        &self,
        compatibles: &[&str],
        mut on_device: impl FnMut(usize, Device<'a>),
    ) -> Result<Scan<'a>, FdtError> {
        let mut scan = Scan::default();
        let mut walker = self.walker();
        while let Some(node) = walker.next_node() {
            let node = node?;
            if node.is_memory() {
                for region in node.regs()? {
                    scan.memory.push(region?)?;
                }
            }
            if node.depth == 1 && node.frame.name == "chosen" {
                scan.bootargs = node
                    .frame
                    .bootargs
                    .map(|v| string_prop(v, "bootargs"))
                    .transpose()?;
            }
            let is_psci = ["arm,psci-1.0", "arm,psci-0.2", "arm,psci"]
                .iter()
                .any(|c| node.is_compatible(c));
            if is_psci && scan.psci_method.is_none() {
                scan.psci_method = node
                    .frame
                    .method
                    .map(|v| string_prop(v, "method"))
                    .transpose()?;
            }
            if let Some(index) = compatibles.iter().position(|c| node.is_compatible(c)) {
                on_device(index, node.device()?);
            }
        }
        Ok(scan)
    }

    fn walker(&self) -> Walker<'a> {
        Walker {
            structure: self.structure,
            strings: self.strings,
            offset: 0,
            stack: [Frame::default(); MAX_DEPTH],
            depth: 0,
            root_seen: false,
            done: false,
        }
    }

    /// The `reg` entries of every memory node, in document order.
    ///
    /// More banks than [`MAX_MEMORY_REGIONS`] is an error rather than a
    /// silent truncation: a machine that big is outside what we test, and
    /// booting on part of its memory would hide that.
    pub fn memory(&self) -> Result<MemoryRegions, FdtError> {
        let mut out = MemoryRegions::default();
        let mut walker = self.walker();
        while let Some(node) = walker.next_node() {
            let node = node?;
            if !node.is_memory() {
                continue;
            }
            for region in node.regs()? {
                out.push(region?)?;
            }
        }
        Ok(out)
    }

    /// `/chosen/bootargs`, the kernel command line.
    pub fn bootargs(&self) -> Result<Option<&'a str>, FdtError> {
        let mut walker = self.walker();
        while let Some(node) = walker.next_node() {
            let node = node?;
            if node.depth == 1 && node.frame.name == "chosen" {
                return node
                    .frame
                    .bootargs
                    .map(|v| string_prop(v, "bootargs"))
                    .transpose();
            }
        }
        Ok(None)
    }

    /// Every node whose `compatible` list contains `compatible`.
    ///
    /// An iterator rather than a fixed-capacity collection because QEMU's
    /// `virt` machine has 32 `virtio,mmio` nodes and other machines could have
    /// more; the caller decides how many it keeps. Nodes are visited in
    /// post-order (a node after its children), which for leaf devices is
    /// document order. The walk itself cannot fail (the structure was
    /// validated by [`Fdt::new`]), so the `Result` here is always `Ok`;
    /// malformed `reg` or `interrupts` values are reported per item, after
    /// which the iterator ends.
    pub fn compatible_regs<'c>(
        &self,
        compatible: &'c str,
    ) -> Result<CompatibleIter<'a, 'c>, FdtError> {
        Ok(CompatibleIter {
            walker: self.walker(),
            compatible,
        })
    }

    /// The PSCI conduit (`"hvc"` or `"smc"`) from the first node compatible
    /// with `arm,psci-1.0`, `arm,psci-0.2` or `arm,psci`. `None` when there is
    /// no PSCI node or it has no `method`.
    pub fn psci_method(&self) -> Result<Option<&'a str>, FdtError> {
        let mut walker = self.walker();
        while let Some(node) = walker.next_node() {
            let node = node?;
            let is_psci = ["arm,psci-1.0", "arm,psci-0.2", "arm,psci"]
                .iter()
                .any(|c| node.is_compatible(c));
            if is_psci {
                return node
                    .frame
                    .method
                    .map(|v| string_prop(v, "method"))
                    .transpose();
            }
        }
        Ok(None)
    }
}

/// Iterator returned by [`Fdt::compatible_regs`].
pub struct CompatibleIter<'a, 'c> {
    walker: Walker<'a>,
    compatible: &'c str,
}

impl<'a> Iterator for CompatibleIter<'a, '_> {
    type Item = Result<Device<'a>, FdtError>;

    fn next(&mut self) -> Option<Self::Item> {
        while let Some(node) = self.walker.next_node() {
            let device = node.and_then(|node| {
                if node.is_compatible(self.compatible) {
                    node.device().map(Some)
                } else {
                    Ok(None)
                }
            });
            match device {
                Ok(None) => continue,
                Ok(Some(d)) => return Some(Ok(d)),
                Err(e) => {
                    self.walker.done = true;
                    return Some(Err(e));
                }
            }
        }
        None
    }
}

impl core::iter::FusedIterator for CompatibleIter<'_, '_> {}

/// Slices `[offset, offset + size)` out of the blob, refusing blocks that
/// overlap the header or run past `totalsize`.
fn block(blob: &[u8], offset: u32, size: u32, which: Block) -> Result<&[u8], FdtError> {
    let start = usize::try_from(offset).map_err(|_| FdtError::BlockOutOfBounds(which))?;
    let size = usize::try_from(size).map_err(|_| FdtError::BlockOutOfBounds(which))?;
    if start < FDT_HEADER_LEN {
        return Err(FdtError::BlockOutOfBounds(which));
    }
    start
        .checked_add(size)
        .and_then(|end| blob.get(start..end))
        .ok_or(FdtError::BlockOutOfBounds(which))
}

/// A string property: exactly one NUL-terminated UTF-8 string.
fn string_prop<'a>(value: &'a [u8], name: &'static str) -> Result<&'a str, FdtError> {
    match value.split_last() {
        Some((0, text)) if !text.contains(&0) => {
            core::str::from_utf8(text).map_err(|_| FdtError::BadProperty(name))
        }
        _ => Err(FdtError::BadProperty(name)),
    }
}

fn cell_prop(value: &[u8], name: &'static str) -> Result<u32, FdtError> {
    match value.len() {
        4 => be_u32(value, 0).ok_or(FdtError::BadProperty(name)),
        _ => Err(FdtError::BadProperty(name)),
    }
}

/// The properties of one node that any query needs, collected while walking.
#[derive(Debug, Clone, Copy, Default)]
struct Frame<'a> {
    name: &'a str,
    has_children: bool,
    address_cells: Option<&'a [u8]>,
    size_cells: Option<&'a [u8]>,
    device_type: Option<&'a [u8]>,
    compatible: Option<&'a [u8]>,
    reg: Option<&'a [u8]>,
    interrupts: Option<&'a [u8]>,
    bootargs: Option<&'a [u8]>,
    method: Option<&'a [u8]>,
}

impl<'a> Frame<'a> {
    fn record(&mut self, name: &[u8], value: &'a [u8]) {
        let slot = match name {
            b"#address-cells" => &mut self.address_cells,
            b"#size-cells" => &mut self.size_cells,
            b"device_type" => &mut self.device_type,
            b"compatible" => &mut self.compatible,
            b"reg" => &mut self.reg,
            b"interrupts" => &mut self.interrupts,
            b"bootargs" => &mut self.bootargs,
            b"method" => &mut self.method,
            _ => return,
        };
        *slot = Some(value);
    }

    /// Cell counts this node declares for its children, with the
    /// specification's defaults (2 address cells, 1 size cell).
    fn child_cells(&self) -> Result<(u32, u32), FdtError> {
        let address = self
            .address_cells
            .map_or(Ok(2), |v| cell_prop(v, "#address-cells"))?;
        let size = self
            .size_cells
            .map_or(Ok(1), |v| cell_prop(v, "#size-cells"))?;
        Ok((address, size))
    }
}

/// A completed node: its properties plus the raw cell properties of its
/// parent, which decide how its `reg` is read. The parent's cells are only
/// decoded when `reg` is, so a malformed `#size-cells` on a bus we never use
/// does not matter.
#[derive(Debug, Clone, Copy)]
struct Node<'a> {
    frame: Frame<'a>,
    parent: Frame<'a>,
    depth: usize,
}

impl<'a> Node<'a> {
    fn is_memory(&self) -> bool {
        self.frame.device_type == Some(b"memory\0") || self.frame.name.starts_with("memory@")
    }

    /// Byte-wise match against the NUL-separated list; a list missing its
    /// final NUL still matches on its complete entries.
    fn is_compatible(&self, wanted: &str) -> bool {
        self.frame.compatible.is_some_and(|list| {
            list.split(|&b| b == 0)
                .any(|entry| !entry.is_empty() && entry == wanted.as_bytes())
        })
    }

    fn regs(&self) -> Result<RegIter<'a>, FdtError> {
        let Some(reg) = self.frame.reg else {
            return Ok(RegIter {
                chunks: <&[u8]>::default().chunks_exact(4),
                address_len: 4,
            });
        };
        let (address, size) = self.parent.child_cells()?;
        let bytes = |cells| match cells {
            1 => Some(4usize),
            2 => Some(8),
            _ => None,
        };
        let (Some(address_len), Some(size_len)) = (bytes(address), bytes(size)) else {
            return Err(FdtError::UnsupportedCells { address, size });
        };
        // 8 to 16 bytes: cannot overflow, never zero.
        let entry = address_len + size_len;
        if !reg.len().is_multiple_of(entry) {
            return Err(FdtError::BadProperty("reg"));
        }
        Ok(RegIter {
            chunks: reg.chunks_exact(entry),
            address_len,
        })
    }

    fn device(&self) -> Result<Device<'a>, FdtError> {
        let mut regs = self.regs()?;
        let reg = regs.next().transpose()?;
        let second_reg = regs.next().transpose()?;
        let mut irq_cells = [0u32; 3];
        let mut irq_count = 0;
        if let Some(value) = self.frame.interrupts {
            if !value.len().is_multiple_of(4) {
                return Err(FdtError::BadProperty("interrupts"));
            }
            for (slot, cell) in irq_cells.iter_mut().zip(value.chunks_exact(4)) {
                *slot = be_u32(cell, 0).ok_or(FdtError::BadProperty("interrupts"))?;
                // At most 3: the zip stops at the array's end.
                irq_count += 1;
            }
        }
        Ok(Device {
            name: self.frame.name,
            reg,
            second_reg,
            irq_cells,
            irq_count,
            interrupts: self.frame.interrupts.unwrap_or_default(),
        })
    }
}

/// Decodes `reg` entries whose shape was checked by [`Node::regs`].
struct RegIter<'a> {
    chunks: core::slice::ChunksExact<'a, u8>,
    /// Bytes of address at the start of each entry (4 or 8).
    address_len: usize,
}

/// A big-endian number of one or two cells.
fn read_cells(cells: &[u8]) -> Option<u64> {
    match cells.len() {
        4 => be_u32(cells, 0).map(u64::from),
        8 => Some((u64::from(be_u32(cells, 0)?) << 32) | u64::from(be_u32(cells, 4)?)),
        _ => None,
    }
}

impl Iterator for RegIter<'_> {
    type Item = Result<Region, FdtError>;

    fn next(&mut self) -> Option<Self::Item> {
        let entry = self.chunks.next()?;
        let region = entry.split_at_checked(self.address_len).and_then(|(a, s)| {
            Some(Region {
                base: read_cells(a)?,
                size: read_cells(s)?,
            })
        });
        Some(match region {
            None => Err(FdtError::BadProperty("reg")),
            Some(r) if r.base.checked_add(r.size).is_none() => Err(FdtError::RegionOverflow),
            Some(r) => Ok(r),
        })
    }
}

/// A resumable walk over the structure block that yields each node when it
/// closes, so that all of its properties (and its parent's cell counts) are
/// known. The node stack is a fixed array of [`MAX_DEPTH`] frames.
struct Walker<'a> {
    structure: &'a [u8],
    strings: &'a [u8],
    offset: usize,
    stack: [Frame<'a>; MAX_DEPTH],
    depth: usize,
    root_seen: bool,
    done: bool,
}

impl<'a> Walker<'a> {
    /// The next closed node, `None` at `FDT_END`. After an error the walk is
    /// over, so a caller looping on this cannot spin on a bad token.
    fn next_node(&mut self) -> Option<Result<Node<'a>, FdtError>> {
        if self.done {
            return None;
        }
        let result = self.step();
        if !matches!(result, Ok(Some(_))) {
            self.done = true;
        }
        result.transpose()
    }

    fn top(&mut self) -> Option<&mut Frame<'a>> {
        let index = self.depth.checked_sub(1)?;
        self.stack.get_mut(index)
    }

    /// Consumes tokens until a node closes. Every token advances `offset` by
    /// at least 4, so this loop runs at most `structure.len() / 4` times.
    fn step(&mut self) -> Result<Option<Node<'a>>, FdtError> {
        while let Some(token) = be_u32(self.structure, self.offset) {
            let at = self.offset;
            // Cannot overflow: the token at `at` was in bounds.
            let body = at + 4;
            match token {
                FDT_BEGIN_NODE => self.begin_node(at, body)?,
                FDT_END_NODE => {
                    let Some(depth) = self.depth.checked_sub(1) else {
                        return Err(FdtError::UnbalancedEndNode { offset: at });
                    };
                    self.depth = depth;
                    self.offset = body;
                    let frame = self.stack.get(depth).copied().unwrap_or_default();
                    let parent = match depth.checked_sub(1) {
                        Some(p) => self.stack.get(p).copied().unwrap_or_default(),
                        None => Frame::default(),
                    };
                    return Ok(Some(Node {
                        frame,
                        parent,
                        depth,
                    }));
                }
                FDT_PROP => self.property(at, body)?,
                FDT_NOP => self.offset = body,
                FDT_END => {
                    return match (self.depth, self.root_seen) {
                        (0, true) => Ok(None),
                        (0, false) => Err(FdtError::BadRoot),
                        _ => Err(FdtError::UnclosedNode),
                    };
                }
                token => return Err(FdtError::BadToken { offset: at, token }),
            }
        }
        Err(FdtError::MissingEnd)
    }

    fn begin_node(&mut self, at: usize, name_start: usize) -> Result<(), FdtError> {
        let rest = self.structure.get(name_start..).unwrap_or(&[]);
        let len = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(FdtError::UnterminatedName { offset: at })?;
        let name = rest
            .get(..len)
            .and_then(|n| core::str::from_utf8(n).ok())
            .ok_or(FdtError::BadNodeName { offset: at })?;
        let root_seen = self.root_seen;
        match self.top() {
            Some(parent) => parent.has_children = true,
            None if root_seen => return Err(FdtError::BadRoot),
            None => self.root_seen = true,
        }
        let slot = self.stack.get_mut(self.depth).ok_or(FdtError::TooDeep)?;
        *slot = Frame {
            name,
            ..Frame::default()
        };
        self.depth = self.depth.saturating_add(1);
        // name_start + len < structure.len(), so neither addition overflows.
        self.offset = align4(name_start + len + 1);
        Ok(())
    }

    fn property(&mut self, at: usize, header: usize) -> Result<(), FdtError> {
        let overflow = FdtError::PropertyOverflow { offset: at };
        let len = be_u32(self.structure, header).ok_or(overflow)?;
        let name_offset = be_u32(self.structure, header.saturating_add(4)).ok_or(overflow)?;
        let value_start = header.saturating_add(8);
        let value_end = usize::try_from(len)
            .ok()
            .and_then(|len| value_start.checked_add(len))
            .ok_or(overflow)?;
        let value = self.structure.get(value_start..value_end).ok_or(overflow)?;
        let name = self.property_name(name_offset)?;
        let frame = self
            .top()
            .ok_or(FdtError::PropertyOutsideNode { offset: at })?;
        if frame.has_children {
            return Err(FdtError::PropertyAfterSubnode { offset: at });
        }
        frame.record(name, value);
        // value_end <= structure.len() <= MAX_FDT_LEN, so this cannot overflow.
        self.offset = align4(value_end);
        Ok(())
    }

    fn property_name(&self, offset: u32) -> Result<&'a [u8], FdtError> {
        let rest = usize::try_from(offset)
            .ok()
            .and_then(|o| self.strings.get(o..))
            .filter(|rest| !rest.is_empty())
            .ok_or(FdtError::BadStringOffset(offset))?;
        let len = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(FdtError::UnterminatedString(offset))?;
        rest.get(..len).ok_or(FdtError::UnterminatedString(offset))
    }
}

/// Rounds up to the next multiple of 4. Callers pass offsets bounded by
/// [`MAX_FDT_LEN`], far from `usize::MAX`; saturation keeps it panic-free.
fn align4(n: usize) -> usize {
    n.saturating_add(3) & !3
}

#[cfg(test)]
mod tests;
