// SPDX-License-Identifier: GPL-2.0

//! Page arithmetic of a page-frame dma-buf: validation of an export
//! request, lookup of the segment holding a buffer page, the page frame and
//! `max_order` behind it (SPEC §2), and the physically contiguous runs of a
//! page range.
//!
//! Pure `core` code with no kernel dependency: the same file builds in the
//! driver and in the host test crate (`tests/host`), where it is checked
//! against a brute-force reading of the definition. Everything past
//! [`layout`] is in pages of the kernel's size, which the driver passes in
//! (`kernel::page::PAGE_SHIFT`): 4, 16 and 64 KiB pages are all tested.

/// The page sizes, as shifts, that the host tests check this file with. The
/// driver refuses at build time to be built for a page size not among them.
pub(crate) const TESTED_PAGE_SHIFTS: [u32; 3] = [12, 14, 16];

/// Whether the host tests cover pages of `1 << page_shift` bytes.
pub(crate) const fn page_shift_is_tested(page_shift: u32) -> bool {
    let mut i = 0;
    while i < TESTED_PAGE_SHIFTS.len() {
        if TESTED_PAGE_SHIFTS[i] == page_shift {
            return true;
        }
        i += 1;
    }
    false
}

/// The most ranges one export may ask for (`VFIO_DMABUF_MAX_RANGES` in the
/// uAPI). It bounds the table the driver allocates for a request.
pub(crate) const MAX_RANGES: usize = 256;

/// One range of an export request, in bytes from the start of the BAR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ByteRange {
    /// Offset into the BAR.
    pub(crate) offset: u64,
    /// Length in bytes.
    pub(crate) length: u64,
}

/// A piece of the buffer: `pages` pages from buffer page `pgoff` on, backed
/// by the page frames from `pfn` on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Segment {
    /// First buffer page of the segment.
    pub(crate) pgoff: u64,
    /// Length in pages, never zero.
    pub(crate) pages: u64,
    /// Page frame behind `pgoff`.
    pub(crate) pfn: u64,
}

/// Why an export request is refused. The driver maps each to the errno the
/// uAPI documents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RequestError {
    /// No range at all (`EINVAL`).
    NoRanges,
    /// More than [`MAX_RANGES`] ranges (`E2BIG`).
    TooManyRanges,
    /// A range of length zero (`EINVAL`).
    EmptyRange,
    /// An offset or length that is not a multiple of the page size
    /// (`EINVAL`).
    Unaligned,
    /// `offset + length` of a range, or the sum of all lengths, overflows
    /// (`EOVERFLOW`).
    Overflow,
    /// A range that ends past the end of the BAR (`EINVAL`, as in VFIO).
    OutsideBar,
}

/// Checks the number of ranges before anything is read or allocated for
/// them.
pub(crate) fn check_count(nr_ranges: u64) -> Result<usize, RequestError> {
    match usize::try_from(nr_ranges) {
        Ok(0) => Err(RequestError::NoRanges),
        Ok(n) if n <= MAX_RANGES => Ok(n),
        _ => Err(RequestError::TooManyRanges),
    }
}

/// Validates `ranges` against a BAR of `bar_size` bytes whose first page
/// frame is `bar_pfn`, in pages of `1 << page_shift` bytes, and fills
/// `segments` (one per range, in order).
///
/// Returns the size of the buffer in pages. The ranges are checked in
/// order, each completely, so the first faulty range decides the error.
/// Ranges may overlap: the same BAR page may appear twice in one buffer.
pub(crate) fn layout(
    ranges: &[ByteRange],
    bar_size: u64,
    bar_pfn: u64,
    page_shift: u32,
    segments: &mut [Segment],
) -> Result<u64, RequestError> {
    check_count(ranges.len() as u64)?;
    if segments.len() < ranges.len() {
        return Err(RequestError::TooManyRanges);
    }
    let page_mask = (1u64 << page_shift) - 1;
    let mut total: u64 = 0;
    for (range, segment) in ranges.iter().zip(segments.iter_mut()) {
        if range.length == 0 {
            return Err(RequestError::EmptyRange);
        }
        if range.offset & page_mask != 0 || range.length & page_mask != 0 {
            return Err(RequestError::Unaligned);
        }
        let end = range
            .offset
            .checked_add(range.length)
            .ok_or(RequestError::Overflow)?;
        if end > bar_size {
            return Err(RequestError::OutsideBar);
        }
        let pages = range.length >> page_shift;
        // Inside a BAR that exists, so the frame cannot overflow; checked
        // all the same, since bar_pfn comes from the caller.
        let pfn = bar_pfn
            .checked_add(range.offset >> page_shift)
            .ok_or(RequestError::Overflow)?;
        pfn.checked_add(pages).ok_or(RequestError::Overflow)?;
        *segment = Segment {
            pgoff: total,
            pages,
            pfn,
        };
        total = total.checked_add(pages).ok_or(RequestError::Overflow)?;
        // The buffer's size in bytes must fit a u64 as well.
        total
            .checked_mul(1u64 << page_shift)
            .ok_or(RequestError::Overflow)?;
    }
    Ok(total)
}

/// Index of the segment holding buffer page `pgoff`, in O(log n), or `None`
/// past the end. `segments` must tile the buffer from page 0 in order, as
/// [`layout`] makes them.
pub(crate) fn find(segments: &[Segment], pgoff: u64) -> Option<usize> {
    let i = segments.partition_point(|s| s.pgoff + s.pages <= pgoff);
    segments.get(i).filter(|s| s.pgoff <= pgoff).map(|_| i)
}

/// The page frame behind buffer page `pgoff` of `segment`, and the largest
/// order `k` such that the naturally aligned block of `2^k` pages containing
/// `pgoff` lies inside the segment and maps onto `2^k`-aligned page frames
/// (SPEC §2). `pgoff` must lie inside `segment`.
pub(crate) fn pfn_and_order(segment: &Segment, pgoff: u64) -> (u64, u32) {
    let delta = pgoff - segment.pgoff;
    let pfn = segment.pfn + delta;
    let end = segment.pgoff + segment.pages;
    // Condition 2: 2^k divides pfn(B) - B, the same for every page of the
    // segment. Two's complement keeps the low bits right when pfn < pgoff.
    let skew = segment.pfn.wrapping_sub(segment.pgoff);
    let align = if skew == 0 {
        63
    } else {
        skew.trailing_zeros().min(63)
    };
    // Condition 1: the aligned block containing pgoff fits the segment. A
    // block that fits holds every smaller aligned block around pgoff, so the
    // first k that fits, from the top down, is the largest.
    let limit = align.min(63 - segment.pages.leading_zeros());
    let mut k = limit;
    loop {
        let size = 1u64 << k;
        let start = pgoff & !(size - 1);
        if k == 0 || (start >= segment.pgoff && start.checked_add(size).is_some_and(|e| e <= end)) {
            return (pfn, k);
        }
        k -= 1;
    }
}

/// A physically contiguous run of page frames: `pages` frames from `pfn` on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Run {
    /// First page frame.
    pub(crate) pfn: u64,
    /// Length in pages, never zero.
    pub(crate) pages: u64,
}

/// Hands `emit` the maximal physically contiguous runs that cover buffer
/// pages `[pgoff, pgoff + pages)`, in buffer order, each with its index as
/// soon as it is complete, at most `max` of them, and returns how many.
/// Segments whose frames follow on from each other merge into one run; a run
/// is cut only where the window ends. When `max` runs do not cover the
/// window, they cover a prefix of it, and the caller asks again from the
/// page after them.
///
/// Pages of the window past the end of the buffer are not covered (the
/// dma-buf core checks the window against the buffer's size first).
/// `segments` must tile the buffer as [`layout`] makes them.
pub(crate) fn for_each_run(
    segments: &[Segment],
    pgoff: u64,
    pages: u64,
    max: usize,
    mut emit: impl FnMut(usize, Run),
) -> usize {
    let Some(first) = find(segments, pgoff) else {
        return 0;
    };
    if max == 0 || pages == 0 {
        return 0;
    }
    let end = pgoff.saturating_add(pages);
    let mut count = 0;
    let mut current: Option<Run> = None;
    for segment in &segments[first..] {
        if segment.pgoff >= end {
            break;
        }
        let start = segment.pgoff.max(pgoff);
        let stop = (segment.pgoff + segment.pages).min(end);
        let piece = Run {
            pfn: segment.pfn + (start - segment.pgoff),
            pages: stop - start,
        };
        match current.as_mut() {
            Some(run) if run.pfn.checked_add(run.pages) == Some(piece.pfn) => {
                run.pages += piece.pages
            }
            Some(run) => {
                emit(count, *run);
                count += 1;
                if count == max {
                    return count;
                }
                current = Some(piece);
            }
            None => current = Some(piece),
        }
    }
    if let Some(run) = current {
        emit(count, run);
        count += 1;
    }
    count
}
