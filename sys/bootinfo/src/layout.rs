//! Choosing where the heap goes.
//!
//! Boot data tells us where RAM is, but parts of that RAM are already taken
//! by the image itself and by blobs the loader left for us (the device tree,
//! the PVH start info, the command line) which must stay intact because we
//! keep borrowing from them. The heap is the largest stretch of RAM, inside
//! what the boot page tables map, that overlaps none of those.

/// A half-open physical address range `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: u64,
    pub end: u64,
}

impl Span {
    /// The range of `len` bytes at `start`, or `None` if it would overflow.
    pub fn from_len(start: u64, len: u64) -> Option<Span> {
        Some(Span {
            start,
            end: start.checked_add(len)?,
        })
    }

    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Finds the largest part of any `ram` span inside `window` that overlaps
/// no `reserved` span, aligned inward to `align` (a power of two).
pub fn largest_free(ram: &[Span], reserved: &[Span], window: Span, align: u64) -> Option<Span> {
    let mut best: Option<Span> = None;
    for region in ram {
        let clipped = Span {
            start: region.start.max(window.start),
            end: region.end.min(window.end),
        };
        // Walk the region left to right, cutting at every reservation that
        // overlaps it; `reserved` is short, so the quadratic scan is fine.
        let mut cursor = clipped.start;
        while cursor < clipped.end {
            let blocker = reserved
                .iter()
                .filter(|r| r.start < clipped.end && r.end > cursor)
                .min_by_key(|r| r.start);
            let (piece_end, next) = match blocker {
                Some(r) if r.start <= cursor => (cursor, r.end),
                Some(r) => (r.start, r.end),
                None => (clipped.end, clipped.end),
            };
            if let Some(piece) = align_inward(
                Span {
                    start: cursor,
                    end: piece_end,
                },
                align,
            ) && best.is_none_or(|b| piece.len() > b.len())
            {
                best = Some(piece);
            }
            cursor = next.max(cursor.saturating_add(1)).min(clipped.end);
        }
    }
    best
}

fn align_inward(span: Span, align: u64) -> Option<Span> {
    let mask = align.checked_sub(1)?;
    let start = span.start.checked_add(mask)? & !mask;
    let end = span.end & !mask;
    (start < end).then_some(Span { start, end })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    const FOUR_GIB: Span = Span {
        start: 0,
        end: 4 << 30,
    };

    fn span(start: u64, end: u64) -> Span {
        Span { start, end }
    }

    #[test]
    fn skips_the_image_and_keeps_the_rest() {
        let ram = [span(0, 640 * 1024), span(MIB, 64 * MIB)];
        let reserved = [span(MIB, 3 * MIB)];
        assert_eq!(
            largest_free(&ram, &reserved, FOUR_GIB, 4096),
            Some(span(3 * MIB, 64 * MIB))
        );
    }

    #[test]
    fn a_blob_in_the_middle_splits_the_region() {
        let ram = [span(0x4000_0000, 0x4800_0000)];
        let reserved = [
            span(0x4008_0000, 0x4010_0000),
            span(0x4400_0000, 0x4400_1000),
        ];
        assert_eq!(
            largest_free(&ram, &reserved, FOUR_GIB, 4096),
            Some(span(0x4400_1000, 0x4800_0000))
        );
    }

    #[test]
    fn window_clips_ram_above_the_mapped_range() {
        let ram = [span(MIB, 8 << 30)];
        assert_eq!(
            largest_free(&ram, &[], span(MIB, 4 << 30), 4096),
            Some(span(MIB, 4 << 30))
        );
    }

    #[test]
    fn nothing_free_gives_none() {
        let ram = [span(MIB, 2 * MIB)];
        assert_eq!(
            largest_free(&ram, &[span(0, 4 * MIB)], FOUR_GIB, 4096),
            None
        );
        assert_eq!(largest_free(&[], &[], FOUR_GIB, 4096), None);
        assert_eq!(largest_free(&[span(10, 20)], &[], FOUR_GIB, 4096), None);
    }

    #[test]
    fn overlapping_and_unsorted_reservations() {
        let ram = [span(0, 100 * MIB)];
        let reserved = [
            span(50 * MIB, 60 * MIB),
            span(0, 10 * MIB),
            span(5 * MIB, 20 * MIB),
            span(55 * MIB, 70 * MIB),
        ];
        assert_eq!(
            largest_free(&ram, &reserved, FOUR_GIB, 4096),
            Some(span(20 * MIB, 50 * MIB))
        );
    }

    #[test]
    fn hostile_spans_do_not_panic() {
        let ram = [span(u64::MAX - 5, u64::MAX), span(7, 3), span(0, u64::MAX)];
        let reserved = [span(u64::MAX, 0), span(3, u64::MAX - 1)];
        assert_eq!(largest_free(&ram, &reserved, span(0, u64::MAX), 4096), None);
        assert_eq!(largest_free(&ram, &[], span(0, u64::MAX), 0), None);
        assert_eq!(Span::from_len(u64::MAX, 2), None);
    }
}
