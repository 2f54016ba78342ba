//! Property tests: the driver's arithmetic against the reference.

use crate::range::{self, ByteRange, RequestError, Segment, MAX_RANGES};

const PAGE_SHIFT: u32 = 12;
const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;
use crate::reference as spec;
use proptest::prelude::*;

/// A page count that is often a power of two or close to one, since the
/// interesting orders come from those.
fn pages() -> impl Strategy<Value = u64> {
    prop_oneof![
        1u64..64,
        (0u32..20).prop_map(|k| 1u64 << k),
        (1u32..20, -2i64..=2).prop_map(|(k, d)| ((1i64 << k) + d).max(1) as u64),
    ]
}

/// A BAR: its first page frame (aligned to a random power of two, as BARs
/// are naturally aligned) and a list of valid page ranges inside it.
fn bar_and_ranges() -> impl Strategy<Value = (u64, u64, Vec<ByteRange>)> {
    (0u32..24, 1u64..1 << 20, 0u32..24, 1usize..8).prop_flat_map(|(align, base, size_log, n)| {
        let bar_pfn = base << align;
        let bar_pages = 1u64 << size_log;
        let range = (0..bar_pages, pages()).prop_map(move |(off, len)| {
            let len = len.min(bar_pages - off).max(1);
            ByteRange {
                offset: off << PAGE_SHIFT,
                length: len << PAGE_SHIFT,
            }
        });
        (
            Just(bar_pfn),
            Just(bar_pages << PAGE_SHIFT),
            prop::collection::vec(range, n),
        )
    })
}

fn build(bar_pfn: u64, bar_size: u64, ranges: &[ByteRange]) -> (Vec<Segment>, u64) {
    let mut segments = vec![
        Segment {
            pgoff: 0,
            pages: 0,
            pfn: 0
        };
        ranges.len()
    ];
    let total =
        range::layout(ranges, bar_size, bar_pfn, PAGE_SHIFT, &mut segments).expect("valid request");
    (segments, total)
}

fn lookup(segments: &[Segment], p: u64) -> (u64, u32) {
    let i = range::find(segments, p).expect("page inside the buffer");
    range::pfn_and_order(&segments[i], p)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// pfn and max_order are the definition's, at any page; the two
    /// conditions hold for the returned order and fail for the next one.
    #[test]
    fn order_is_the_definition((bar_pfn, bar_size, ranges) in bar_and_ranges(), pick in any::<u64>()) {
        let (segments, total) = build(bar_pfn, bar_size, &ranges);
        let p = pick % total;
        let i = range::find(&segments, p).unwrap();
        prop_assert_eq!(Some(i), spec::find(&segments, p));
        let s = &segments[i];
        let (pfn, k) = range::pfn_and_order(s, p);
        prop_assert_eq!(pfn, spec::pfn(s, p));
        prop_assert_eq!(k, spec::max_order(s, p));
        let b = p & !((1u64 << k) - 1);
        prop_assert!(b >= s.pgoff && b + (1 << k) <= s.pgoff + s.pages, "condition 1");
        prop_assert_eq!(spec::pfn(s, b) % (1 << k), 0, "condition 2");
    }

    /// Every page of the returned block maps linearly from the block's first
    /// frame and reports an order at least as large.
    #[test]
    fn block_is_linear((bar_pfn, bar_size, ranges) in bar_and_ranges(), pick in any::<u64>()) {
        let (segments, total) = build(bar_pfn, bar_size, &ranges);
        let p = pick % total;
        let (pfn, k) = lookup(&segments, p);
        let b = p & !((1u64 << k) - 1);
        let pfn_b = pfn - (p - b);
        let size = 1u64 << k;
        // All pages of small blocks, 257 spread over large ones.
        let step = (size / 256).max(1);
        let mut q = b;
        while q < b + size {
            let (pfn_q, k_q) = lookup(&segments, q);
            prop_assert_eq!(pfn_q, pfn_b + (q - b));
            prop_assert!(k_q >= k);
            q += step;
        }
        let last = b + size - 1;
        prop_assert_eq!(lookup(&segments, last).0, pfn_b + (last - b));
    }

    /// A walk stepping by 2^max_order tiles the buffer (each block starts
    /// where the last ended) and makes exactly as many calls as the greedy
    /// aligned decomposition, which is the fewest possible.
    #[test]
    fn walk_is_minimal((bar_pfn, bar_size, ranges) in bar_and_ranges()) {
        let (segments, total) = build(bar_pfn, bar_size, &ranges);
        let (mut p, mut calls) = (0u64, 0u64);
        while p < total {
            let (_, k) = lookup(&segments, p);
            prop_assert_eq!(p & ((1u64 << k) - 1), 0, "block starts before the walk's position");
            p += 1 << k;
            calls += 1;
        }
        prop_assert_eq!(p, total, "blocks overrun the buffer");
        let greedy: u64 = segments.iter().map(spec::greedy_blocks).sum();
        prop_assert_eq!(calls, greedy);
        for s in segments.iter().filter(|s| s.pages <= 4096) {
            prop_assert_eq!(spec::greedy_blocks(s), spec::min_blocks(s));
        }
    }

    /// Validation accepts exactly the requests the rules accept, with the
    /// same error for the ones they refuse.
    #[test]
    fn validation_follows_the_rules(
        bar_size in prop_oneof![Just(0u64), (0u32..40).prop_map(|k| 1u64 << k), any::<u64>()],
        ranges in prop::collection::vec(
            (prop_oneof![0u64..1 << 24, any::<u64>(), (0u64..1 << 12).prop_map(|o| o << 12)],
             prop_oneof![0u64..1 << 24, any::<u64>(), (0u64..1 << 12).prop_map(|l| l << 12), Just(0)])
                .prop_map(|(offset, length)| ByteRange { offset, length }),
            0..6),
    ) {
        let mut segments = vec![Segment { pgoff: 0, pages: 0, pfn: 0 }; ranges.len()];
        let got = range::layout(&ranges, bar_size, 0x1000, PAGE_SHIFT, &mut segments);
        prop_assert_eq!(got, spec::validate(&ranges, bar_size));
    }

    /// Nothing a caller can pass makes the arithmetic panic or overflow
    /// (overflow checks are on in this build, as in the kernel's).
    #[test]
    fn never_panics(
        bar_size in any::<u64>(),
        bar_pfn in any::<u64>(),
        raw in prop::collection::vec((any::<u64>(), any::<u64>()), 0..4),
        pick in any::<u64>(),
        count in any::<u64>(),
    ) {
        let _ = range::check_count(count);
        let ranges: Vec<ByteRange> = raw.iter()
            .map(|&(o, l)| ByteRange { offset: o & !(PAGE_SIZE - 1), length: l & !(PAGE_SIZE - 1) })
            .collect();
        let mut segments = vec![Segment { pgoff: 0, pages: 0, pfn: 0 }; ranges.len()];
        if let Ok(total) = range::layout(&ranges, bar_size, bar_pfn, PAGE_SHIFT, &mut segments) {
            let p = pick % total;
            let i = range::find(&segments, p).unwrap();
            let _ = range::pfn_and_order(&segments[i], p);
            prop_assert_eq!(range::find(&segments, total), None);
        }
    }
}

#[test]
fn range_count_limits() {
    assert_eq!(range::check_count(0), Err(RequestError::NoRanges));
    assert_eq!(range::check_count(1), Ok(1));
    assert_eq!(range::check_count(MAX_RANGES as u64), Ok(MAX_RANGES));
    assert_eq!(
        range::check_count(MAX_RANGES as u64 + 1),
        Err(RequestError::TooManyRanges)
    );
    assert_eq!(
        range::check_count(u64::MAX),
        Err(RequestError::TooManyRanges)
    );
    let too_many = vec![
        ByteRange {
            offset: 0,
            length: PAGE_SIZE
        };
        MAX_RANGES + 1
    ];
    let mut segments = vec![
        Segment {
            pgoff: 0,
            pages: 0,
            pfn: 0
        };
        MAX_RANGES + 1
    ];
    assert_eq!(
        range::layout(&too_many, PAGE_SIZE, 0, PAGE_SHIFT, &mut segments),
        Err(RequestError::TooManyRanges)
    );
}

/// The devices of the guest tests, worked by hand.
#[test]
fn whole_bars_are_one_block() {
    // edu: a 1 MiB BAR, 1 MiB aligned: one block of order 8.
    let (s, total) = build(
        0xfea00,
        1 << 20,
        &[ByteRange {
            offset: 0,
            length: 1 << 20,
        }],
    );
    assert_eq!(total, 256);
    assert_eq!(lookup(&s, 0), (0xfea00, 8));
    assert_eq!(lookup(&s, 255), (0xfeaff, 8));
    // ivshmem: a 1 GiB BAR at 1 GiB alignment: order 18 everywhere.
    let (s, _) = build(
        0x40_0000,
        1 << 30,
        &[ByteRange {
            offset: 0,
            length: 1 << 30,
        }],
    );
    assert_eq!(lookup(&s, 12345), (0x40_0000 + 12345, 18));
    // pci-testdev: 16 GiB: order 22.
    let (s, _) = build(
        0x400_0000,
        16 << 30,
        &[ByteRange {
            offset: 0,
            length: 16 << 30,
        }],
    );
    assert_eq!(lookup(&s, 0).1, 22);
}

#[test]
fn unaligned_slices_split() {
    // Two ranges: pages 1..4 of the BAR, then pages 8..16. Buffer pages:
    // 0..3 -> frames 0x101..0x104 (skew 0x101: order 0 only),
    // 3..11 -> frames 0x108..0x110 (skew 0x105: order 0 only).
    let (s, total) = build(
        0x100,
        16 * PAGE_SIZE,
        &[
            ByteRange {
                offset: PAGE_SIZE,
                length: 3 * PAGE_SIZE,
            },
            ByteRange {
                offset: 8 * PAGE_SIZE,
                length: 8 * PAGE_SIZE,
            },
        ],
    );
    assert_eq!(total, 11);
    assert_eq!(lookup(&s, 0), (0x101, 0));
    assert_eq!(lookup(&s, 3), (0x108, 0));
    // One range at page 4, four pages, BAR at frame 0x100: buffer pages
    // 0..4 -> frames 0x104..0x108: skew 0x104, aligned to 4: one block.
    let (s, _) = build(
        0x100,
        16 * PAGE_SIZE,
        &[ByteRange {
            offset: 4 * PAGE_SIZE,
            length: 4 * PAGE_SIZE,
        }],
    );
    assert_eq!(lookup(&s, 2), (0x106, 2));
    assert_eq!(range::find(&s, 4), None);
}
