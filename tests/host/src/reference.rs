//! Brute-force readings of the definitions (SPEC §2, and §3's export
//! validation), written for clarity, not speed.
//!
//! Everything here starts from the raw export request: the BAR's first page
//! frame (or byte address) and size, the `(offset, length)` byte ranges
//! asked for, and the page size. It shares no code and no type with the
//! driver's arithmetic (`drivers/vfio_dmabuf/range.rs`) and keeps no table
//! of pieces: each answer walks the ranges' lengths afresh. The host
//! property tests compare the driver with it, and the guest tests
//! (`tests/guest`, which include this file) take every expected page frame,
//! order and walk from it.

/// The most ranges one export may ask for: `VFIO_DMABUF_MAX_RANGES` in the
/// uAPI header.
pub(crate) const MAX_RANGES: usize = 256;

/// One range of an export request, in bytes from the start of the BAR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ByteRange {
    /// Offset into the BAR.
    pub(crate) offset: u64,
    /// Length in bytes.
    pub(crate) length: u64,
}

/// Why a request is refused, by the rule it breaks (SPEC §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// No range at all.
    NoRanges,
    /// More than [`MAX_RANGES`] ranges.
    TooManyRanges,
    /// A range of length zero.
    EmptyRange,
    /// An offset or a length that is not a whole number of pages.
    Unaligned,
    /// A sum that does not fit 64 bits: a range's end in bytes, its page
    /// frames, or the buffer's size in bytes.
    Overflow,
    /// A range that ends past the end of the BAR.
    OutsideBar,
}

/// A physically contiguous run of page frames: `pages` frames from `pfn` on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Run {
    /// First page frame.
    pub(crate) pfn: u64,
    /// Length in pages.
    pub(crate) pages: u64,
}

/// An export request as user space makes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Request {
    /// Page frame of the BAR's first byte.
    pub(crate) bar_pfn: u64,
    /// Size of the BAR in bytes.
    pub(crate) bar_size: u64,
    /// The ranges, in buffer order.
    pub(crate) ranges: Vec<ByteRange>,
    /// Pages are `1 << page_shift` bytes.
    pub(crate) page_shift: u32,
}

/// Where a buffer page lies: the range holding it, as SPEC §2 names it.
#[derive(Clone, Copy, Debug)]
struct Place {
    /// `O_r`: the range's first buffer page.
    first: u128,
    /// `L_r`: its length in pages.
    pages: u128,
    /// `P_r`: the page frame behind its first page.
    pfn: u128,
}

impl Place {
    /// Whether the `2^k` pages from buffer page `b` are a block SPEC §2
    /// allows in this range: `b` aligned to `2^k`, the whole block inside
    /// the range (condition 1), `pfn(b)` aligned to `2^k` (condition 2).
    fn allows(&self, b: u64, k: u32) -> bool {
        if k >= 64 {
            return false;
        }
        let size = 1u128 << k;
        let b = u128::from(b);
        let inside = self.first <= b && b + size <= self.first + self.pages;
        inside && b.is_multiple_of(size) && (self.pfn + (b - self.first)).is_multiple_of(size)
    }
}

impl Request {
    /// A request for `ranges` of a BAR whose first page frame is `bar_pfn`.
    pub(crate) fn new(bar_pfn: u64, bar_size: u64, ranges: &[ByteRange], page_shift: u32) -> Self {
        assert!(page_shift < 64, "pages of 2^{page_shift} bytes");
        Self {
            bar_pfn,
            bar_size,
            ranges: ranges.to_vec(),
            page_shift,
        }
    }

    /// A request for `ranges` of a BAR that starts at byte address
    /// `bar_start` (as sysfs' `resource` file shows it).
    pub(crate) fn at_address(
        bar_start: u64,
        bar_size: u64,
        ranges: &[ByteRange],
        page_shift: u32,
    ) -> Self {
        Self::new(
            bar_start / (1u64 << page_shift),
            bar_size,
            ranges,
            page_shift,
        )
    }

    fn page_size(&self) -> u128 {
        1u128 << self.page_shift
    }

    /// SPEC §3's validation, rule by rule: the number of ranges first, then
    /// each range in order, completely, so the first faulty range decides.
    /// Returns the size of the buffer in pages.
    pub(crate) fn validate(&self) -> Result<u64, Refusal> {
        const LIMIT: u128 = u64::MAX as u128;
        if self.ranges.is_empty() {
            return Err(Refusal::NoRanges);
        }
        if self.ranges.len() > MAX_RANGES {
            return Err(Refusal::TooManyRanges);
        }
        let page = self.page_size();
        let mut bytes: u128 = 0;
        for r in &self.ranges {
            let (offset, length) = (u128::from(r.offset), u128::from(r.length));
            if length == 0 {
                return Err(Refusal::EmptyRange);
            }
            if !offset.is_multiple_of(page) || !length.is_multiple_of(page) {
                return Err(Refusal::Unaligned);
            }
            let end = offset + length;
            if end > LIMIT {
                return Err(Refusal::Overflow);
            }
            if end > u128::from(self.bar_size) {
                return Err(Refusal::OutsideBar);
            }
            // Every frame of the range, and the one after its last, is a
            // 64-bit number.
            if u128::from(self.bar_pfn) + end / page > LIMIT {
                return Err(Refusal::Overflow);
            }
            bytes += length;
            if bytes > LIMIT {
                return Err(Refusal::Overflow);
            }
        }
        Ok((bytes / page) as u64)
    }

    /// The size of the buffer in pages, the sum of the lengths.
    pub(crate) fn pages(&self) -> u64 {
        let total: u128 = self.ranges.iter().map(|r| u128::from(r.length)).sum();
        (total / self.page_size()) as u64
    }

    /// The range holding buffer page `p`, by walking the lengths from page
    /// 0: range r starts where the lengths of ranges 0..r add up to.
    fn place(&self, p: u64) -> Option<Place> {
        let page = self.page_size();
        let p = u128::from(p);
        let mut first: u128 = 0;
        for r in &self.ranges {
            let pages = u128::from(r.length) / page;
            if first <= p && p < first + pages {
                return Some(Place {
                    first,
                    pages,
                    pfn: u128::from(self.bar_pfn) + u128::from(r.offset) / page,
                });
            }
            first += pages;
        }
        None
    }

    /// `pfn(p) = P_r + (p - O_r)` for the range r holding p; `None` past the
    /// end of the buffer.
    pub(crate) fn pfn(&self, p: u64) -> Option<u64> {
        let place = self.place(p)?;
        Some((place.pfn + (u128::from(p) - place.first)) as u64)
    }

    /// Whether the `2^k` pages from buffer page `b` form a block SPEC §2
    /// allows: `b` aligned to `2^k`, the whole block inside the range that
    /// holds `b` (condition 1), and `pfn(b)` aligned to `2^k` (condition 2).
    pub(crate) fn is_block(&self, b: u64, k: u32) -> bool {
        self.place(b).is_some_and(|place| place.allows(b, k))
    }

    /// `max_order(p)`: of every k from 0 to 63, the largest for which the
    /// aligned block of `2^k` pages containing p is allowed in the range
    /// holding p; `None` past the end of the buffer.
    pub(crate) fn max_order(&self, p: u64) -> Option<u32> {
        let place = self.place(p)?;
        (0..64u32)
            .filter(|&k| place.allows((u128::from(p) >> k << k) as u64, k))
            .max()
    }

    /// What `get_pfn(p)` must answer: `pfn(p)` and `max_order(p)`.
    pub(crate) fn get_pfn(&self, p: u64) -> Option<(u64, u32)> {
        Some((self.pfn(p)?, self.max_order(p)?))
    }

    /// The number of blocks of the greedy aligned decomposition of the
    /// buffer: from page 0, each time the largest allowed block that starts
    /// at the current page. (A block of `2^(k+1)` pages allowed at q makes
    /// the one of `2^k` at q allowed too, so the largest is the last k
    /// before the first that fails.)
    pub(crate) fn greedy_blocks(&self) -> u64 {
        let total = self.pages();
        let (mut q, mut blocks) = (0u64, 0u64);
        while q < total {
            let mut k = 0;
            while self.is_block(q, k + 1) {
                k += 1;
            }
            assert!(self.is_block(q, k), "page {q} is no block of its own");
            q += 1 << k;
            blocks += 1;
        }
        blocks
    }

    /// The fewest allowed blocks that tile the buffer exactly, by dynamic
    /// programming over its pages: for small buffers only.
    pub(crate) fn min_blocks(&self) -> u64 {
        let total = self.pages();
        assert!(
            total <= 1 << 20,
            "a buffer of {total} pages is too large to tile by brute force"
        );
        let len = total as usize;
        let mut best = vec![u64::MAX; len + 1];
        best[len] = 0;
        for i in (0..len).rev() {
            for k in 0..64u32 {
                if !self.is_block(i as u64, k) {
                    continue;
                }
                let rest = best[i + (1usize << k)];
                if rest != u64::MAX {
                    best[i] = best[i].min(rest + 1);
                }
            }
        }
        best[0]
    }

    /// The buffer pages of each range, in order: where its lengths add up.
    pub(crate) fn range_pages(&self) -> Vec<std::ops::Range<u64>> {
        let page = self.page_size();
        let mut first: u128 = 0;
        self.ranges
            .iter()
            .map(|r| {
                let start = first;
                first += u128::from(r.length) / page;
                start as u64..first as u64
            })
            .collect()
    }

    /// The maximal physically contiguous runs of the buffer pages
    /// `[pgoff, pgoff + pages)` that exist, in buffer order, page by page:
    /// each page extends the last run when its frame follows that run's
    /// last frame, and starts a new run otherwise; so runs are cut only
    /// where the frames jump and where the window ends. With room for
    /// `capacity` runs, the first `capacity` of them.
    pub(crate) fn runs(&self, pgoff: u64, pages: u64, capacity: usize) -> Vec<Run> {
        let end = (u128::from(pgoff) + u128::from(pages)).min(u128::from(self.pages())) as u64;
        let mut runs: Vec<Run> = Vec::new();
        for p in pgoff..end.max(pgoff) {
            let pfn = self.pfn(p).expect("a page inside the buffer");
            match runs.last_mut() {
                Some(last) if u128::from(last.pfn) + u128::from(last.pages) == u128::from(pfn) => {
                    last.pages += 1;
                }
                _ => runs.push(Run { pfn, pages: 1 }),
            }
        }
        runs.truncate(capacity);
        runs
    }
}

#[cfg(test)]
mod tests {
    //! The reference itself, against answers worked out by hand.

    use super::*;

    const PAGE: u64 = 4096;

    fn r(offset: u64, length: u64) -> ByteRange {
        ByteRange { offset, length }
    }

    #[test]
    fn two_ranges_by_hand() {
        // BAR at frame 0x100, 16 pages. Pages 1..4 of the BAR, then 8..16.
        // Buffer pages 0..3 -> frames 0x101..0x104, 3..11 -> 0x108..0x110.
        let req = Request::new(
            0x100,
            16 * PAGE,
            &[r(PAGE, 3 * PAGE), r(8 * PAGE, 8 * PAGE)],
            12,
        );
        assert_eq!(req.validate(), Ok(11));
        assert_eq!(req.pfn(0), Some(0x101));
        assert_eq!(req.pfn(2), Some(0x103));
        assert_eq!(req.pfn(3), Some(0x108));
        assert_eq!(req.pfn(10), Some(0x10f));
        assert_eq!(req.pfn(11), None);
        // Range 1: P - O = 0x108 - 3 = 0x105, odd: order 0 everywhere.
        assert_eq!(req.get_pfn(4), Some((0x109, 0)));
        // Range 0: P - O = 0x101, odd.
        assert_eq!(req.get_pfn(1), Some((0x102, 0)));
        assert_eq!(req.greedy_blocks(), 11);
        assert_eq!(req.min_blocks(), 11);
        assert_eq!(req.range_pages(), [0..3, 3..11]);
    }

    #[test]
    fn orders_by_hand() {
        // One range at BAR page 4, 4 pages, BAR at 0x100: frames 0x104..,
        // P - O = 0x104, 4-aligned: one block of order 2.
        let req = Request::new(0x100, 16 * PAGE, &[r(4 * PAGE, 4 * PAGE)], 12);
        assert_eq!(req.get_pfn(2), Some((0x106, 2)));
        assert_eq!(req.greedy_blocks(), 1);
        // Then 6 pages from BAR page 2: buffer pages 4..10 -> 0x102..0x108,
        // P - O = 0x102 - 4 = 0xfe: 2-aligned. Pages 4,5 form an order-1
        // block, 6,7 too, 8,9 too; an order-2 block at 4 has pfn 0x102.
        let req = Request::new(
            0x100,
            16 * PAGE,
            &[r(4 * PAGE, 4 * PAGE), r(2 * PAGE, 6 * PAGE)],
            12,
        );
        assert_eq!(req.get_pfn(5), Some((0x103, 1)));
        assert_eq!(req.get_pfn(9), Some((0x107, 1)));
        assert_eq!(req.greedy_blocks(), 4);
        assert_eq!(req.min_blocks(), 4);
        // edu: a 1 MiB BAR at 0xfea00000: order 8, one block.
        let req = Request::at_address(0xfea0_0000, 1 << 20, &[r(0, 1 << 20)], 12);
        assert_eq!(req.get_pfn(255), Some((0xfeaff, 8)));
        // With 16 KiB pages, the same BAR is 64 pages from frame 0x3fa80.
        let req = Request::at_address(0xfea0_0000, 1 << 20, &[r(0, 1 << 20)], 14);
        assert_eq!(req.validate(), Ok(64));
        assert_eq!(req.get_pfn(63), Some((0x3fa80 + 63, 6)));
        // pci-testdev: 16 GiB at 16 GiB, 64 KiB pages: 2^18 pages, order 18.
        let req = Request::at_address(16 << 30, 16 << 30, &[r(0, 16 << 30)], 16);
        assert_eq!(req.get_pfn(12345), Some(((16 << 30 >> 16) + 12345, 18)));
        // A block may not be larger than its range, however aligned.
        let req = Request::new(0, 16 * PAGE, &[r(0, 3 * PAGE)], 12);
        assert_eq!(req.max_order(0), Some(1));
        assert_eq!(req.max_order(2), Some(0));
    }

    #[test]
    fn greedy_can_beat_nothing() {
        // 6 pages, frames 0..6 at buffer pages 0..6: blocks 4 + 2.
        let req = Request::new(0, 8 * PAGE, &[r(0, 6 * PAGE)], 12);
        assert_eq!(req.greedy_blocks(), 2);
        assert_eq!(req.min_blocks(), 2);
    }

    #[test]
    fn validation_by_hand() {
        let v = |ranges: &[ByteRange], bar_size, bar_pfn, shift| {
            Request::new(bar_pfn, bar_size, ranges, shift).validate()
        };
        assert_eq!(v(&[], PAGE, 0, 12), Err(Refusal::NoRanges));
        assert_eq!(
            v(&[r(0, PAGE); 257], PAGE, 0, 12),
            Err(Refusal::TooManyRanges)
        );
        assert_eq!(v(&[r(0, PAGE); 256], PAGE, 0, 12), Ok(256));
        assert_eq!(v(&[r(0, 0)], PAGE, 0, 12), Err(Refusal::EmptyRange));
        assert_eq!(v(&[r(PAGE, PAGE)], 1 << 20, 0, 14), Err(Refusal::Unaligned));
        assert_eq!(
            v(&[r(0, PAGE), r(PAGE, 1)], 1 << 20, 0, 12),
            Err(Refusal::Unaligned)
        );
        assert_eq!(
            v(&[r(u64::MAX - PAGE + 1, PAGE)], u64::MAX, 0, 12),
            Err(Refusal::Overflow)
        );
        assert_eq!(v(&[r(0, 2 * PAGE)], PAGE, 0, 12), Err(Refusal::OutsideBar));
        // The first faulty range decides.
        assert_eq!(
            v(&[r(0, 2 * PAGE), r(0, 0)], PAGE, 0, 12),
            Err(Refusal::OutsideBar)
        );
        // Frames past 2^64.
        assert_eq!(v(&[r(0, PAGE)], PAGE, u64::MAX, 12), Err(Refusal::Overflow));
        assert_eq!(v(&[r(0, PAGE)], PAGE, u64::MAX - 1, 12), Ok(1));
        // The buffer's size in bytes past 2^64.
        let half = 1u64 << 63;
        assert_eq!(
            v(&[r(0, half), r(0, half)], u64::MAX, 0, 12),
            Err(Refusal::Overflow)
        );
    }

    #[test]
    fn runs_by_hand() {
        // BAR at frame 0x100. Ranges: BAR pages 0..2, 2..5 (follows on),
        // 9..10, 0..1 (overlaps the first), 1..3.
        let req = Request::new(
            0x100,
            16 * PAGE,
            &[
                r(0, 2 * PAGE),
                r(2 * PAGE, 3 * PAGE),
                r(9 * PAGE, PAGE),
                r(0, PAGE),
                r(PAGE, 2 * PAGE),
            ],
            12,
        );
        assert_eq!(req.validate(), Ok(9));
        let run = |pfn, pages| Run { pfn, pages };
        let all = [run(0x100, 5), run(0x109, 1), run(0x100, 3)];
        assert_eq!(req.runs(0, 9, 10), all);
        assert_eq!(req.runs(0, u64::MAX, 10), all);
        assert_eq!(req.runs(0, 9, 1), [run(0x100, 5)]);
        assert_eq!(req.runs(1, 4, 10), [run(0x101, 4)]);
        assert_eq!(
            req.runs(4, 3, 10),
            [run(0x104, 1), run(0x109, 1), run(0x100, 1)]
        );
        assert_eq!(req.runs(6, 100, 2), [run(0x100, 3)]);
        assert_eq!(req.runs(9, 1, 10), []);
        assert_eq!(req.runs(3, 0, 10), []);
        assert_eq!(req.runs(0, 9, 0), []);
    }
}
