//! Brute-force readings of the definitions, written for clarity, not speed.

use crate::range::{ByteRange, RequestError, Segment, MAX_RANGES};

const PAGE_SIZE: u64 = 4096;

/// pfn(p) for a page inside `s`.
pub(crate) fn pfn(s: &Segment, p: u64) -> u64 {
    s.pfn + (p - s.pgoff)
}

/// SPEC §2, literally: the largest k for which both conditions hold.
pub(crate) fn max_order(s: &Segment, p: u64) -> u32 {
    let mut best = 0;
    for k in 0..64u32 {
        let size = 1u128 << k;
        let b = (p as u128) & !(size - 1);
        let inside = b >= s.pgoff as u128 && b + size <= (s.pgoff + s.pages) as u128;
        let aligned = ((s.pfn as i128 - s.pgoff as i128).rem_euclid(size as i128)) == 0;
        if inside && aligned {
            best = k;
        }
    }
    best
}

/// The segment holding page p, by linear search.
pub(crate) fn find(segments: &[Segment], p: u64) -> Option<usize> {
    segments
        .iter()
        .position(|s| s.pgoff <= p && p < s.pgoff + s.pages)
}

/// Greedy aligned decomposition of a segment: from its start, each time the
/// largest block that starts here, fits, and is pfn-aligned.
pub(crate) fn greedy_blocks(s: &Segment) -> u64 {
    let (mut q, end, mut n) = (s.pgoff, s.pgoff + s.pages, 0);
    while q < end {
        let mut k = 0;
        while k < 63 {
            let size = 1u64 << (k + 1);
            let ok = q % size == 0
                && q + size <= end
                && (s.pfn as i128 - s.pgoff as i128).rem_euclid(size as i128) == 0;
            if !ok {
                break;
            }
            k += 1;
        }
        q += 1 << k;
        n += 1;
    }
    n
}

/// The fewest aligned, pfn-aligned blocks that tile a segment exactly, by
/// dynamic programming over its pages (small segments only).
pub(crate) fn min_blocks(s: &Segment) -> u64 {
    let len = s.pages as usize;
    let mut best = vec![u64::MAX; len + 1];
    best[len] = 0;
    for i in (0..len).rev() {
        let q = s.pgoff + i as u64;
        for k in 0..40u32 {
            let size = 1u64 << k;
            if !q.is_multiple_of(size) || i as u64 + size > s.pages {
                break;
            }
            if (s.pfn as i128 - s.pgoff as i128).rem_euclid(size as i128) != 0 {
                break;
            }
            let rest = best[i + size as usize];
            if rest != u64::MAX {
                best[i] = best[i].min(rest + 1);
            }
        }
    }
    best[0]
}

/// SPEC §3's export validation, written as the list of rules.
pub(crate) fn validate(ranges: &[ByteRange], bar_size: u64) -> Result<u64, RequestError> {
    if ranges.is_empty() {
        return Err(RequestError::NoRanges);
    }
    if ranges.len() > MAX_RANGES {
        return Err(RequestError::TooManyRanges);
    }
    let mut total: u128 = 0;
    for r in ranges {
        if r.length == 0 {
            return Err(RequestError::EmptyRange);
        }
        if r.offset % PAGE_SIZE != 0 || r.length % PAGE_SIZE != 0 {
            return Err(RequestError::Unaligned);
        }
        let end = r.offset as u128 + r.length as u128;
        if end > u64::MAX as u128 {
            return Err(RequestError::Overflow);
        }
        if end > bar_size as u128 {
            return Err(RequestError::OutsideBar);
        }
        total += r.length as u128;
        if total > u64::MAX as u128 {
            return Err(RequestError::Overflow);
        }
    }
    Ok((total / PAGE_SIZE as u128) as u64)
}
