//! Property tests: the driver's arithmetic against the reference.
//!
//! Every expectation comes from the raw request through `reference.rs`
//! (which knows nothing of `range.rs`): the driver's `layout`, `find`,
//! `pfn_and_order` and `for_each_run` (also through `crate::runs`, the
//! array the exporter fills) are only ever the side under test. Every
//! property runs each request at every page size the driver may be built
//! for (`range::TESTED_PAGE_SHIFTS`).

use crate::range::{self, RequestError, Segment, MAX_RANGES, TESTED_PAGE_SHIFTS};
use crate::reference::{self as spec, Refusal};
use proptest::prelude::*;

/// A request in pages, to be made at every page size: the BAR's first page
/// frame and size, and `(offset, length)` ranges in pages.
#[derive(Clone, Debug)]
struct Shape {
    bar_pfn: u64,
    bar_pages: u64,
    ranges: Vec<(u64, u64)>,
}

impl Shape {
    fn request(&self, page_shift: u32) -> spec::Request {
        let ranges: Vec<spec::ByteRange> = self
            .ranges
            .iter()
            .map(|&(offset, length)| spec::ByteRange {
                offset: offset << page_shift,
                length: length << page_shift,
            })
            .collect();
        spec::Request::new(
            self.bar_pfn,
            self.bar_pages << page_shift,
            &ranges,
            page_shift,
        )
    }
}

/// Lays out ranges drawn as `(kind, pick, length)`: kind 0 starts where the
/// last range ended in the BAR (its frames follow on), kind 1 starts inside
/// the last range (they overlap), kind 2 anywhere at an offset aligned to a
/// random power of two, any other kind anywhere.
fn build_shape(bar_pfn: u64, bar_pages: u64, raw: Vec<(u8, u64, u64)>) -> Shape {
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    for (kind, pick, length) in raw {
        let offset = match (kind, ranges.last()) {
            (0, Some(&(o, l))) if o + l < bar_pages => o + l,
            (1, Some(&(o, l))) => o + pick % l,
            (2, _) => (pick % bar_pages) >> (pick >> 58) << (pick >> 58),
            _ => pick % bar_pages,
        };
        ranges.push((offset, length.min(bar_pages - offset).max(1)));
    }
    Shape {
        bar_pfn,
        bar_pages,
        ranges,
    }
}

/// A page count that is often a power of two or close to one, since the
/// interesting orders come from those.
fn pages() -> impl Strategy<Value = u64> {
    prop_oneof![
        1u64..64,
        (0u32..20).prop_map(|k| 1u64 << k),
        (1u32..20, -2i64..=2).prop_map(|(k, d)| ((1i64 << k) + d).max(1) as u64),
    ]
}

/// Requests of any size: a BAR aligned to a random power of two, as BARs
/// are naturally aligned, of up to 2^23 pages, and 1 to 7 ranges.
fn shape() -> impl Strategy<Value = Shape> {
    (
        0u32..24,
        1u64..1 << 20,
        0u32..24,
        prop::collection::vec((0u8..4, any::<u64>(), pages()), 1..8),
    )
        .prop_map(|(align, base, size_log, raw)| build_shape(base << align, 1 << size_log, raw))
}

/// Requests of up to 2^40 pages, with ranges of up to as many, so that
/// orders up to 40 come up: too large to walk, probed at chosen pages.
fn huge_shape() -> impl Strategy<Value = Shape> {
    let length = prop_oneof![
        pages(),
        (0u32..41).prop_map(|k| 1u64 << k),
        (20u32..41, -2i64..=2).prop_map(|(k, d)| ((1i64 << k) + d) as u64),
    ];
    (
        0u32..41,
        1u64..1 << 16,
        0u32..41,
        prop::collection::vec((0u8..4, any::<u64>(), length), 1..8),
    )
        .prop_map(|(align, base, size_log, raw)| build_shape(base << align, 1 << size_log, raw))
}

/// Either kind of large request.
fn any_shape() -> impl Strategy<Value = Shape> {
    prop_oneof![shape(), huge_shape()]
}

/// Requests small enough to check page by page: at most 7 ranges of at
/// most 64 pages.
fn small_shape() -> impl Strategy<Value = Shape> {
    (
        0u32..12,
        1u64..1 << 12,
        prop_oneof![1u64..=64, (0u32..10).prop_map(|k| 1u64 << k)],
        prop::collection::vec(
            (
                0u8..4,
                any::<u64>(),
                prop_oneof![1u64..=8, 1u64..=64, (0u32..7).prop_map(|k| 1u64 << k)],
            ),
            1..8,
        ),
    )
        .prop_map(|(align, base, bar_pages, raw)| build_shape(base << align, bar_pages, raw))
}

fn driver_ranges(req: &spec::Request) -> Vec<range::ByteRange> {
    req.ranges
        .iter()
        .map(|r| range::ByteRange {
            offset: r.offset,
            length: r.length,
        })
        .collect()
}

/// The rule a driver error stands for.
fn refusal(error: RequestError) -> Refusal {
    match error {
        RequestError::NoRanges => Refusal::NoRanges,
        RequestError::TooManyRanges => Refusal::TooManyRanges,
        RequestError::EmptyRange => Refusal::EmptyRange,
        RequestError::Unaligned => Refusal::Unaligned,
        RequestError::Overflow => Refusal::Overflow,
        RequestError::OutsideBar => Refusal::OutsideBar,
    }
}

const NO_SEGMENT: Segment = Segment {
    pgoff: 0,
    pages: 0,
    pfn: 0,
};

/// The driver's layout of a request.
fn layout(req: &spec::Request) -> Result<(Vec<Segment>, u64), Refusal> {
    let mut segments = vec![NO_SEGMENT; req.ranges.len()];
    let total = range::layout(
        &driver_ranges(req),
        req.bar_size,
        req.bar_pfn,
        req.page_shift,
        &mut segments,
    )
    .map_err(refusal)?;
    Ok((segments, total))
}

/// The driver's layout of a request the reference accepts.
fn build(req: &spec::Request) -> Vec<Segment> {
    let total = req.validate().expect("a valid request");
    let (segments, pages) = layout(req).expect("the driver accepts a valid request");
    assert_eq!(pages, total, "buffer size of {req:?}");
    segments
}

/// The driver's answer for buffer page `p`, as `get_pfn` gives it.
fn driver_get_pfn(segments: &[Segment], p: u64) -> Option<(u64, u32)> {
    let i = range::find(segments, p)?;
    Some(range::pfn_and_order(&segments[i], p))
}

/// The driver's runs of a window, with room for `capacity`.
fn driver_runs(segments: &[Segment], pgoff: u64, pages: u64, capacity: usize) -> Vec<spec::Run> {
    let mut out = vec![range::Run { pfn: 0, pages: 0 }; capacity];
    let written = crate::runs(segments, pgoff, pages, &mut out);
    assert!(
        written <= capacity,
        "{written} runs written into {capacity}"
    );
    // for_each_run itself hands over the same runs in order, each once.
    let mut emitted = Vec::new();
    let count = range::for_each_run(segments, pgoff, pages, capacity, |i, run| {
        emitted.push((i, run))
    });
    assert_eq!(count, written, "for_each_run and runs");
    assert!(
        emitted
            .iter()
            .enumerate()
            .all(|(n, &(i, run))| i == n && run == out[n]),
        "for_each_run emitted {emitted:x?}, runs wrote {:x?}",
        &out[..written]
    );
    out[..written]
        .iter()
        .map(|r| spec::Run {
            pfn: r.pfn,
            pages: r.pages,
        })
        .collect()
}

/// Pages worth asking about in a buffer of any size: around both ends of
/// every range, past the end, and some drawn from `picks`.
fn probe_pages(req: &spec::Request, picks: &[u64]) -> Vec<u64> {
    let total = req.pages();
    let mut pages: Vec<u64> = req
        .range_pages()
        .iter()
        .flat_map(|r| {
            [
                r.start.wrapping_sub(1),
                r.start,
                r.start + 1,
                r.end - 1,
                r.end,
            ]
        })
        .chain(picks.iter().map(|&p| p % total))
        .chain([total, total + 1, u64::MAX])
        .collect();
    pages.sort_unstable();
    pages.dedup();
    pages
}

/// A window of buffer pages from raw picks: anywhere, from around a range's
/// start, or the whole buffer and beyond.
fn window(req: &spec::Request, mode: u8, a: u64, b: u64) -> (u64, u64) {
    let total = req.pages();
    let starts = req.range_pages();
    let pgoff = match mode {
        0 => a % (total + 3),
        1 => starts[(a % starts.len() as u64) as usize]
            .start
            .saturating_sub(a >> 62),
        _ => 0,
    };
    let pages = match (mode, b % 8) {
        (2, _) | (_, 0) => u64::MAX - b % 3,
        (_, 1) => 0,
        _ => b % (total + 3),
    };
    (pgoff, pages)
}

/// A range for the validation property, of a kind drawn from `kind` and
/// placed by `a` and `b`, for a BAR of `bar_size` bytes in pages of
/// `1 << shift` bytes.
fn validation_range(kind: u8, a: u64, b: u64, bar_size: u64, shift: u32) -> spec::ByteRange {
    let page = 1u64 << shift;
    let (offset, length) = match kind {
        // Anything: hardly ever aligned.
        0 => (a, b),
        // Aligned, small, possibly empty.
        1 => ((a % (1 << 12)) << shift, (b % (1 << 12)) << shift),
        // Aligned to 4 KiB, so often not to larger pages.
        2 => ((a % (1 << 16)) << 12, ((b % (1 << 16)) + 1) << 12),
        // Ending a page before, at, or a page past the BAR's last page.
        3 => {
            let length = ((b % 4) + 1) << shift;
            let end = (bar_size & !(page - 1))
                .wrapping_add(page.wrapping_mul(a % 3))
                .wrapping_sub(page);
            (end.wrapping_sub(length), length)
        }
        // Huge: two of them overflow the buffer's size.
        4 => ((a % (1 << 12)) << shift, b & !0xffff),
        // Ending near or past 2^64.
        _ => (!(page - 1) - ((a % 4) << shift), ((b % 8) + 1) << shift),
    };
    spec::ByteRange { offset, length }
}

fn capacity() -> impl Strategy<Value = usize> {
    prop_oneof![Just(1usize), 0usize..5, Just(64)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// pfn(p) and max_order(p) straight from the request: for pages around
    /// every range boundary and random ones, the driver's layout, find and
    /// pfn_and_order answer what the reference computes by walking the
    /// ranges' lengths and trying every order; past the end, nothing.
    #[test]
    fn pfn_and_order_from_the_request(
        shape in any_shape(),
        picks in prop::collection::vec(any::<u64>(), 8),
    ) {
        for shift in TESTED_PAGE_SHIFTS {
            let req = shape.request(shift);
            let segments = build(&req);
            for p in probe_pages(&req, &picks) {
                prop_assert_eq!(
                    driver_get_pfn(&segments, p), req.get_pfn(p),
                    "page {:#x}, page shift {}", p, shift
                );
            }
        }
    }

    /// The same for every page of small buffers, with ranges that follow
    /// on, overlap or repeat.
    #[test]
    fn every_page_from_the_request(shape in small_shape()) {
        for shift in TESTED_PAGE_SHIFTS {
            let req = shape.request(shift);
            let segments = build(&req);
            for p in 0..req.pages() + 2 {
                prop_assert_eq!(
                    driver_get_pfn(&segments, p), req.get_pfn(p),
                    "page {:#x}, page shift {}", p, shift
                );
            }
        }
    }

    /// The order returned satisfies both conditions of SPEC §2 and no
    /// larger order does.
    #[test]
    fn order_is_the_definition(shape in any_shape(), pick in any::<u64>()) {
        for shift in TESTED_PAGE_SHIFTS {
            let req = shape.request(shift);
            let segments = build(&req);
            let p = pick % req.pages();
            let (pfn, k) = driver_get_pfn(&segments, p).expect("a page inside the buffer");
            prop_assert_eq!(Some(pfn), req.pfn(p));
            prop_assert!(req.is_block(p >> k << k, k), "conditions 1 and 2 at order {}", k);
            for j in k + 1..64 {
                prop_assert!(!req.is_block(p >> j << j, j), "order {} qualifies too", j);
            }
        }
    }

    /// Every page of the returned block maps linearly from the block's first
    /// frame, as the request says, and reports an order at least as large.
    #[test]
    fn block_is_linear(shape in any_shape(), pick in any::<u64>()) {
        for shift in TESTED_PAGE_SHIFTS {
            let req = shape.request(shift);
            let segments = build(&req);
            let p = pick % req.pages();
            let (pfn, k) = driver_get_pfn(&segments, p).unwrap();
            let b = p >> k << k;
            let pfn_b = pfn - (p - b);
            prop_assert_eq!(req.pfn(b), Some(pfn_b));
            let size = 1u64 << k;
            // All pages of small blocks, 257 spread over large ones.
            let step = (size / 256).max(1);
            let last = b + size - 1;
            for q in (b..b + size).step_by(step as usize).chain([last]) {
                let (pfn_q, k_q) = driver_get_pfn(&segments, q).unwrap();
                prop_assert_eq!(pfn_q, pfn_b + (q - b));
                prop_assert_eq!(Some(pfn_q), req.pfn(q));
                prop_assert!(k_q >= k);
            }
        }
    }

    /// A walk stepping by 2^max_order tiles the buffer (each block starts
    /// where the last ended) and makes exactly as many calls as the greedy
    /// aligned decomposition of the request, which is the fewest possible.
    #[test]
    fn walk_is_minimal(shape in shape()) {
        for shift in TESTED_PAGE_SHIFTS {
            let req = shape.request(shift);
            let segments = build(&req);
            let total = req.pages();
            let (mut p, mut calls) = (0u64, 0u64);
            while p < total {
                let (_, k) = driver_get_pfn(&segments, p).unwrap();
                prop_assert_eq!(p & ((1u64 << k) - 1), 0, "block starts before the walk's position");
                p += 1 << k;
                calls += 1;
            }
            prop_assert_eq!(p, total, "blocks overrun the buffer");
            prop_assert_eq!(range::find(&segments, total), None);
            prop_assert_eq!(calls, req.greedy_blocks());
        }
    }

    /// The greedy decomposition is the minimal tiling (the reference with
    /// itself: what makes the walk's count the fewest possible).
    #[test]
    fn greedy_is_minimal(shape in small_shape()) {
        for shift in TESTED_PAGE_SHIFTS {
            let req = shape.request(shift);
            prop_assert_eq!(req.greedy_blocks(), req.min_blocks());
        }
    }

    /// Validation accepts exactly the requests the rules accept, with the
    /// same error for the ones they refuse and the same size for the others:
    /// ranges unaligned, aligned to 4 KiB only, empty, around the BAR's end,
    /// huge, near 2^64, in BARs whose frames come near 2^64.
    #[test]
    fn validation_follows_the_rules(
        bar_size in prop_oneof![
            Just(0u64),
            (0u32..40).prop_map(|k| 1u64 << k),
            any::<u64>(),
            any::<u64>().prop_map(|s| s & !0xffff),
            Just(u64::MAX),
        ],
        bar_pfn in prop_oneof![0u64..1 << 40, (0u64..1 << 12).prop_map(|d| u64::MAX - d), any::<u64>()],
        raw in prop::collection::vec((0u8..6, any::<u64>(), any::<u64>()), 0..6),
    ) {
        for shift in TESTED_PAGE_SHIFTS {
            let ranges: Vec<spec::ByteRange> = raw
                .iter()
                .map(|&(kind, a, b)| validation_range(kind, a, b, bar_size, shift))
                .collect();
            let req = spec::Request::new(bar_pfn, bar_size, &ranges, shift);
            let got = layout(&req).map(|(_, total)| total);
            prop_assert_eq!(got, req.validate(), "{:x?}", req);
        }
    }

    /// Nothing a caller can pass makes the arithmetic panic or overflow
    /// (overflow checks are on in this build, as in the kernel's).
    #[test]
    fn never_panics(
        bar_size in any::<u64>(),
        bar_pfn in any::<u64>(),
        raw in prop::collection::vec((any::<u64>(), any::<u64>()), 0..4),
        pick in any::<u64>(),
        window in prop_oneof![any::<u64>(), (0u64..16).prop_map(|d| u64::MAX - d)],
        count in any::<u64>(),
    ) {
        let _ = range::check_count(count);
        for shift in TESTED_PAGE_SHIFTS {
            let mask = (1u64 << shift) - 1;
            let ranges: Vec<range::ByteRange> = raw.iter()
                .map(|&(o, l)| range::ByteRange { offset: o & !mask, length: l & !mask })
                .collect();
            let mut segments = vec![NO_SEGMENT; ranges.len()];
            if let Ok(total) = range::layout(&ranges, bar_size, bar_pfn, shift, &mut segments) {
                let p = pick % total;
                let i = range::find(&segments, p).unwrap();
                let _ = range::pfn_and_order(&segments[i], p);
                prop_assert_eq!(range::find(&segments, total), None);
                let mut out = [range::Run { pfn: 0, pages: 0 }; 2];
                let _ = crate::runs(&segments, p, window, &mut out);
            }
        }
    }

    /// runs writes the first `capacity` of the maximal runs the request
    /// makes of the window, for windows anywhere (across range boundaries,
    /// past the end, empty), ranges that follow on physically (they merge),
    /// overlap or repeat, and any room including 1.
    #[test]
    fn runs_are_the_reference(
        shape in small_shape(),
        (mode, a, b) in (0u8..3, any::<u64>(), any::<u64>()),
        capacity in capacity(),
    ) {
        for shift in TESTED_PAGE_SHIFTS {
            let req = shape.request(shift);
            let segments = build(&req);
            let (pgoff, pages) = window(&req, mode, a, b);
            prop_assert_eq!(
                driver_runs(&segments, pgoff, pages, capacity),
                req.runs(pgoff, pages, capacity),
                "window {:#x} + {:#x}, room for {}, page shift {}", pgoff, pages, capacity, shift
            );
        }
    }

    /// The runs written, on their own terms: none empty, none physically
    /// adjacent to the next (they are maximal), together the pages of a
    /// prefix of the window with the frames the request gives them; all of
    /// the window unless `out` was full, and when full the last run ends
    /// where the frames jump or the window ends.
    #[test]
    fn runs_are_maximal_and_cover_a_prefix(
        shape in small_shape(),
        (mode, a, b) in (0u8..3, any::<u64>(), any::<u64>()),
        capacity in capacity(),
    ) {
        for shift in TESTED_PAGE_SHIFTS {
            let req = shape.request(shift);
            let segments = build(&req);
            let (pgoff, pages) = window(&req, mode, a, b);
            let runs = driver_runs(&segments, pgoff, pages, capacity);
            let end = pgoff.saturating_add(pages).min(req.pages()).max(pgoff);
            for pair in runs.windows(2) {
                prop_assert!(pair[0].pfn + pair[0].pages != pair[1].pfn, "{:x?} not merged", pair);
            }
            let mut p = pgoff;
            for run in &runs {
                prop_assert!(run.pages > 0, "an empty run");
                prop_assert!(run.pages <= end - p, "{:x?} runs past the window", run);
                for i in 0..run.pages {
                    prop_assert_eq!(Some(run.pfn + i), req.pfn(p), "page {:#x}", p);
                    p += 1;
                }
            }
            if runs.len() < capacity {
                prop_assert_eq!(p, end, "room left, but the window is not covered");
            } else if let (true, Some(last)) = (p < end, runs.last()) {
                prop_assert!(req.pfn(p) != Some(last.pfn + last.pages), "the last run stops short");
            }
        }
    }

    /// Asking again from the page after the runs written, until the window
    /// is covered, gives the whole list of runs, at any room.
    #[test]
    fn runs_resume(
        shape in small_shape(),
        (mode, a, b) in (0u8..3, any::<u64>(), any::<u64>()),
        capacity in prop_oneof![Just(1usize), 1usize..5],
    ) {
        for shift in TESTED_PAGE_SHIFTS {
            let req = shape.request(shift);
            let segments = build(&req);
            let (pgoff, pages) = window(&req, mode, a, b);
            let end = pgoff.saturating_add(pages).min(req.pages()).max(pgoff);
            let mut all = Vec::new();
            let mut next = pgoff;
            while next < end {
                let runs = driver_runs(&segments, next, end - next, capacity);
                let covered: u64 = runs.iter().map(|r| r.pages).sum();
                prop_assert!(covered > 0, "no progress at page {:#x}: {:x?}", next, runs);
                prop_assert!(covered <= end - next, "{:x?} overrun the window", runs);
                next += covered;
                all.extend(runs);
            }
            prop_assert_eq!(next, end);
            prop_assert_eq!(all, req.runs(pgoff, pages, usize::MAX), "room for {}", capacity);
        }
    }
}

#[test]
fn range_count_limits() {
    assert_eq!(range::MAX_RANGES, spec::MAX_RANGES);
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
    for shift in TESTED_PAGE_SHIFTS {
        let page = 1u64 << shift;
        let one = spec::ByteRange {
            offset: 0,
            length: page,
        };
        let req = spec::Request::new(0, page, &vec![one; MAX_RANGES + 1], shift);
        assert_eq!(layout(&req).map(|(_, t)| t), Err(Refusal::TooManyRanges));
        let req = spec::Request::new(0, page, &vec![one; MAX_RANGES], shift);
        assert_eq!(layout(&req).map(|(_, t)| t), Ok(MAX_RANGES as u64));
    }
}

#[test]
fn tested_page_shifts() {
    assert_eq!(TESTED_PAGE_SHIFTS, [12, 14, 16]);
    for shift in 0..64 {
        assert_eq!(
            range::page_shift_is_tested(shift),
            TESTED_PAGE_SHIFTS.contains(&shift)
        );
    }
}

fn bytes(pairs: &[(u64, u64)]) -> Vec<spec::ByteRange> {
    pairs
        .iter()
        .map(|&(offset, length)| spec::ByteRange { offset, length })
        .collect()
}

fn lookup(segments: &[Segment], p: u64) -> (u64, u32) {
    driver_get_pfn(segments, p).expect("a page inside the buffer")
}

/// The devices of the guest tests, worked by hand.
#[test]
fn whole_bars_are_one_block() {
    // edu: a 1 MiB BAR, 1 MiB aligned: one block of order 8.
    let s = build(&spec::Request::new(
        0xfea00,
        1 << 20,
        &bytes(&[(0, 1 << 20)]),
        12,
    ));
    assert_eq!(s.iter().map(|s| s.pages).sum::<u64>(), 256);
    assert_eq!(lookup(&s, 0), (0xfea00, 8));
    assert_eq!(lookup(&s, 255), (0xfeaff, 8));
    // ivshmem: a 1 GiB BAR at 1 GiB alignment: order 18 everywhere.
    let s = build(&spec::Request::new(
        0x40_0000,
        1 << 30,
        &bytes(&[(0, 1 << 30)]),
        12,
    ));
    assert_eq!(lookup(&s, 12345), (0x40_0000 + 12345, 18));
    // The same with 64 KiB pages: 16384 pages from frame 0x4000, order 14.
    let s = build(&spec::Request::new(
        0x4000,
        1 << 30,
        &bytes(&[(0, 1 << 30)]),
        16,
    ));
    assert_eq!(lookup(&s, 16383), (0x4000 + 16383, 14));
    // pci-testdev: 16 GiB: order 22.
    let s = build(&spec::Request::new(
        0x400_0000,
        16 << 30,
        &bytes(&[(0, 16 << 30)]),
        12,
    ));
    assert_eq!(lookup(&s, 0).1, 22);
}

#[test]
fn unaligned_slices_split() {
    const PAGE: u64 = 4096;
    // Two ranges: pages 1..4 of the BAR, then pages 8..16. Buffer pages:
    // 0..3 -> frames 0x101..0x104 (skew 0x101: order 0 only),
    // 3..11 -> frames 0x108..0x110 (skew 0x105: order 0 only).
    let req = spec::Request::new(
        0x100,
        16 * PAGE,
        &bytes(&[(PAGE, 3 * PAGE), (8 * PAGE, 8 * PAGE)]),
        12,
    );
    let s = build(&req);
    assert_eq!(lookup(&s, 0), (0x101, 0));
    assert_eq!(lookup(&s, 3), (0x108, 0));
    assert_eq!(lookup(&s, 10), (0x10f, 0));
    assert_eq!(range::find(&s, 11), None);
    // One range at page 4, four pages, BAR at frame 0x100: buffer pages
    // 0..4 -> frames 0x104..0x108: skew 0x104, aligned to 4: one block.
    let s = build(&spec::Request::new(
        0x100,
        16 * PAGE,
        &bytes(&[(4 * PAGE, 4 * PAGE)]),
        12,
    ));
    assert_eq!(lookup(&s, 2), (0x106, 2));
    assert_eq!(range::find(&s, 4), None);
    // With 16 KiB pages, BAR at frame 0x40: range 0 is BAR page 1 (frame
    // 0x41), range 1 BAR pages 4..8 (frames 0x44..0x48) at buffer pages
    // 1..5: skew 0x43, order 0.
    let page = 1 << 14;
    let s = build(&spec::Request::new(
        0x40,
        8 * page,
        &bytes(&[(page, page), (4 * page, 4 * page)]),
        14,
    ));
    assert_eq!(lookup(&s, 0), (0x41, 0));
    assert_eq!(lookup(&s, 1), (0x44, 0));
    assert_eq!(lookup(&s, 4), (0x47, 0));
}

/// The driver's runs, worked by hand: ranges that follow on merge, an
/// overlapping one starts a new run, a full `out` stops early.
#[test]
fn runs_by_hand() {
    const PAGE: u64 = 4096;
    let run = |pfn, pages| spec::Run { pfn, pages };
    // BAR at frame 0x100. BAR pages 0..2, 2..5 (follows on), 9..10, 0..1
    // (overlaps the first), 1..3 (follows on from that).
    let req = spec::Request::new(
        0x100,
        16 * PAGE,
        &bytes(&[
            (0, 2 * PAGE),
            (2 * PAGE, 3 * PAGE),
            (9 * PAGE, PAGE),
            (0, PAGE),
            (PAGE, 2 * PAGE),
        ]),
        12,
    );
    let s = build(&req);
    assert_eq!(
        driver_runs(&s, 0, 9, 8),
        [run(0x100, 5), run(0x109, 1), run(0x100, 3)]
    );
    assert_eq!(
        driver_runs(&s, 0, u64::MAX, 8),
        [run(0x100, 5), run(0x109, 1), run(0x100, 3)]
    );
    assert_eq!(driver_runs(&s, 0, 9, 1), [run(0x100, 5)]);
    assert_eq!(driver_runs(&s, 1, 3, 1), [run(0x101, 3)]);
    assert_eq!(
        driver_runs(&s, 4, 3, 8),
        [run(0x104, 1), run(0x109, 1), run(0x100, 1)]
    );
    assert_eq!(driver_runs(&s, 5, 100, 2), [run(0x109, 1), run(0x100, 3)]);
    assert_eq!(driver_runs(&s, 9, 1, 8), []);
    assert_eq!(driver_runs(&s, 0, 9, 0), []);
}

/// An empty window has no runs, wherever it starts: a run is never empty.
#[test]
fn runs_of_an_empty_window_are_none() {
    const PAGE: u64 = 4096;
    let req = spec::Request::new(
        0x100,
        16 * PAGE,
        &bytes(&[(0, 4 * PAGE), (8 * PAGE, 4 * PAGE)]),
        12,
    );
    let s = build(&req);
    for pgoff in 0..10 {
        assert_eq!(driver_runs(&s, pgoff, 0, 8), [], "at page {pgoff}");
    }
}
