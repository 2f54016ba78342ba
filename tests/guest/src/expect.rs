// SPDX-License-Identifier: GPL-2.0

//! What the kernel's answers should be, computed from sysfs and the raw
//! request alone: the BARs INFO describes, and the page frames, orders and
//! number of calls of a walk over an exported buffer, by the host tests'
//! brute-force reference (`tests/host/src/reference.rs`), which shares
//! nothing with the driver's arithmetic (`drivers/vfio_dmabuf/range.rs` is
//! not compiled into the guest tests at all).

use crate::pci::{self, Resource};
pub(crate) use crate::reference::ByteRange;
use crate::reference::Request;
use crate::uapi;

/// The guest kernel's pages (x86-64).
pub(crate) const PAGE_SHIFT: u32 = 12;
pub(crate) const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;

/// The description INFO should give of BAR `index`, whose `resource` line is
/// `bar`: the driver's reading of the `IORESOURCE_*` flags.
pub(crate) fn bar_info(index: usize, bar: &Resource) -> uapi::vfio_dmabuf_bar_info {
    let absent = uapi::vfio_dmabuf_bar_info {
        index: index as u32,
        flags: uapi::VFIO_DMABUF_BAR_ABSENT,
        size: 0,
    };
    let size = bar.size();
    if size == 0 {
        return absent;
    }
    let flags = if bar.flags & pci::IORESOURCE_IO != 0 {
        uapi::VFIO_DMABUF_BAR_IO
    } else if bar.flags & pci::IORESOURCE_MEM != 0 {
        let mut flags = uapi::VFIO_DMABUF_BAR_MEM;
        if bar.flags & pci::IORESOURCE_MEM_64 != 0 {
            flags |= uapi::VFIO_DMABUF_BAR_64;
        }
        if bar.flags & pci::IORESOURCE_PREFETCH != 0 {
            flags |= uapi::VFIO_DMABUF_BAR_PREFETCH;
        }
        flags
    } else {
        return absent;
    };
    uapi::vfio_dmabuf_bar_info {
        index: index as u32,
        flags,
        size,
    }
}

/// `VFIO_DMABUF_BAR_*` bits as text, for messages.
pub(crate) fn bar_flags(flags: u32) -> String {
    let names = [
        (uapi::VFIO_DMABUF_BAR_MEM, "MEM"),
        (uapi::VFIO_DMABUF_BAR_IO, "IO"),
        (uapi::VFIO_DMABUF_BAR_64, "64"),
        (uapi::VFIO_DMABUF_BAR_PREFETCH, "PREFETCH"),
        (uapi::VFIO_DMABUF_BAR_ABSENT, "ABSENT"),
    ];
    let mut parts: Vec<String> = names
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, name)| (*name).to_owned())
        .collect();
    let unknown = names.iter().fold(flags, |rest, (bit, _)| rest & !bit);
    if unknown != 0 {
        parts.push(format!("{unknown:#x}"));
    }
    if parts.is_empty() {
        "0".to_owned()
    } else {
        parts.join("|")
    }
}

/// A size in bytes as people write it: `1 GiB`, `2052 KiB`, `256 B`.
pub(crate) fn human(bytes: u64) -> String {
    for (shift, unit) in [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{} {unit}", bytes >> shift);
        }
    }
    format!("{bytes} B")
}

/// Shorthand for a list of `(offset, length)` ranges in bytes.
pub(crate) fn ranges(pairs: &[(u64, u64)]) -> Vec<ByteRange> {
    pairs
        .iter()
        .map(|&(offset, length)| ByteRange { offset, length })
        .collect()
}

/// One entry of a walk's table, as the importer reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) pgoff: u64,
    pub(crate) pfn: u64,
    pub(crate) order: u32,
}

impl From<&uapi::vfio_dmabuf_imp_segment> for Entry {
    fn from(segment: &uapi::vfio_dmabuf_imp_segment) -> Self {
        Self {
            pgoff: segment.pgoff,
            pfn: segment.pfn,
            order: segment.order,
        }
    }
}

/// The buffer an export of `ranges` from a BAR should make, as the
/// reference reads the request: the BAR's start and size from sysfs, and
/// the ranges' offsets and lengths.
#[derive(Clone, Debug)]
pub(crate) struct Buffer {
    request: Request,
    pages: u64,
}

impl Buffer {
    pub(crate) fn new(ranges: &[ByteRange], bar: &Resource) -> Result<Self, String> {
        let request = Request::at_address(bar.start, bar.size(), ranges, PAGE_SHIFT);
        let pages = request.validate().map_err(|e| {
            format!(
                "ranges {ranges:x?} do not fit a BAR of {}: {e:?}",
                human(bar.size())
            )
        })?;
        Ok(Self { request, pages })
    }

    /// Size in pages.
    pub(crate) fn pages(&self) -> u64 {
        self.pages
    }

    /// Size in bytes.
    pub(crate) fn size(&self) -> u64 {
        self.pages << PAGE_SHIFT
    }

    /// The buffer pages of each range, in order.
    pub(crate) fn range_pages(&self) -> Vec<std::ops::Range<u64>> {
        self.request.range_pages()
    }

    /// What `dma_buf_get_pfn()` should answer for buffer page `pgoff`: the
    /// page frame and `max_order`; `None` past the end.
    pub(crate) fn get_pfn(&self, pgoff: u64) -> Option<(u64, u32)> {
        self.request.get_pfn(pgoff)
    }

    /// The table of a walk that steps by `2^max_order` pages: from each
    /// answer, on to the end of the aligned block that holds the page.
    pub(crate) fn walk(&self) -> Vec<Entry> {
        let mut entries = Vec::new();
        let mut pgoff = 0;
        while let Some((pfn, order)) = self.get_pfn(pgoff) {
            entries.push(Entry { pgoff, pfn, order });
            let block = 1u64 << order;
            pgoff = (pgoff & !(block - 1)) + block;
        }
        entries
    }

    /// The table of a page-by-page walk.
    pub(crate) fn walk_pages(&self) -> Vec<Entry> {
        (0..self.pages)
            .filter_map(|pgoff| {
                self.request.pfn(pgoff).map(|pfn| Entry {
                    pgoff,
                    pfn,
                    order: 0,
                })
            })
            .collect()
    }

    /// The number of blocks of the greedy aligned decomposition of the
    /// buffer (SPEC §2): the fewest calls a walk may make.
    pub(crate) fn greedy_blocks(&self) -> u64 {
        self.request.greedy_blocks()
    }
}

/// Checks a walk's table on its own terms (SPEC §2): the blocks tile the
/// buffer of `pages` pages in order, with no gap and no overlap, and each is
/// aligned to its size in the buffer and in the page frames.
pub(crate) fn check_tiling(table: &[Entry], pages: u64) -> Result<(), String> {
    let mut next = 0u64;
    for (i, entry) in table.iter().enumerate() {
        if entry.order >= 64 {
            return Err(format!("entry {i}: order {} (64 or more)", entry.order));
        }
        let block = 1u64 << entry.order;
        if entry.pgoff != next {
            return Err(format!(
                "entry {i} starts at page {:#x}, expected {next:#x} (a gap or an overlap)",
                entry.pgoff
            ));
        }
        if entry.pgoff % block != 0 || entry.pfn % block != 0 {
            return Err(format!(
                "entry {i} {entry:x?}: not aligned to its {block} pages"
            ));
        }
        next = entry
            .pgoff
            .checked_add(block)
            .ok_or_else(|| format!("entry {i} {entry:x?} ends past 2^64 pages"))?;
    }
    if next != pages {
        return Err(format!(
            "the table covers {next:#x} pages, the buffer {pages:#x}"
        ));
    }
    Ok(())
}

/// Compares a walk's table with the expected one, naming the first
/// difference.
pub(crate) fn compare(table: &[Entry], expected: &[Entry]) -> Result<(), String> {
    if let Some(i) = (0..table.len().min(expected.len())).find(|&i| table[i] != expected[i]) {
        return Err(format!(
            "entry {i}: {:x?}, expected {:x?}",
            table[i], expected[i]
        ));
    }
    if table.len() != expected.len() {
        return Err(format!(
            "{} entries, expected {}",
            table.len(),
            expected.len()
        ));
    }
    Ok(())
}

/// Buffer pages worth asking about one by one: the first and last page of
/// each range, and `count` more drawn from a fixed seed, so that a failure
/// repeats.
pub(crate) fn sample_pages(buffer: &Buffer, count: usize) -> Vec<u64> {
    let mut pages: Vec<u64> = buffer
        .range_pages()
        .iter()
        .flat_map(|r| [r.start, r.end - 1])
        .collect();
    // xorshift64*: enough to scatter the pages, and the same on every run.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..count {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let random = state.wrapping_mul(0x2545_f491_4f6c_dd1d);
        pages.push(random % buffer.pages().max(1));
    }
    pages
}

/// A page: the unit of every offset and length of an export.
pub(crate) const PAGE: u64 = PAGE_SIZE;

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    fn bar(start: u64, size: u64, flags: u64) -> Resource {
        Resource {
            start,
            end: start + size - 1,
            flags,
        }
    }

    #[test]
    fn bars_from_resource_flags() {
        let mem64 = bar(
            0x4_0000_0000,
            16 * GIB,
            0x0014_220c, // MEM | PREFETCH | MEM_64 | SIZEALIGN, as sysfs shows
        );
        let info = bar_info(2, &mem64);
        assert_eq!(info.index, 2);
        assert_eq!(
            info.flags,
            uapi::VFIO_DMABUF_BAR_MEM | uapi::VFIO_DMABUF_BAR_64 | uapi::VFIO_DMABUF_BAR_PREFETCH
        );
        assert_eq!(info.size, 16 * GIB);
        let io = bar(0xc000, 256, 0x0004_0101);
        assert_eq!(bar_info(1, &io).flags, uapi::VFIO_DMABUF_BAR_IO);
        assert_eq!(bar_info(1, &io).size, 256);
        let mem32 = bar(0xfea0_0000, MIB, 0x0004_0200);
        assert_eq!(bar_info(0, &mem32).flags, uapi::VFIO_DMABUF_BAR_MEM);
        let absent = bar_info(3, &Resource::default());
        assert_eq!(absent.flags, uapi::VFIO_DMABUF_BAR_ABSENT);
        assert_eq!(absent.size, 0);
        assert_eq!(absent.index, 3);
    }

    #[test]
    fn names() {
        assert_eq!(bar_flags(0b1101), "MEM|64|PREFETCH");
        assert_eq!(bar_flags(0x10), "ABSENT");
        assert_eq!(bar_flags(0x101), "MEM|0x100");
        assert_eq!(bar_flags(0), "0");
        assert_eq!(human(16 * GIB), "16 GiB");
        assert_eq!(human(2 * MIB + 20 * 1024), "2068 KiB");
        assert_eq!(human(256), "256 B");
    }

    #[test]
    fn whole_aligned_bar_is_one_block() {
        let edu = bar(0xfea0_0000, MIB, 0x200);
        let buffer = Buffer::new(&ranges(&[(0, MIB)]), &edu).expect("fits");
        assert_eq!(buffer.size(), MIB);
        let walk = buffer.walk();
        assert_eq!(
            walk,
            [Entry {
                pgoff: 0,
                pfn: 0xfea00,
                order: 8
            }]
        );
        assert_eq!(buffer.greedy_blocks(), 1);
        check_tiling(&walk, buffer.pages()).expect("tiles");
        let pages = buffer.walk_pages();
        assert_eq!(pages.len(), 256);
        assert_eq!(
            pages[255],
            Entry {
                pgoff: 255,
                pfn: 0xfea00 + 255,
                order: 0
            }
        );
        check_tiling(&pages, buffer.pages()).expect("tiles");
    }

    #[test]
    fn odd_ranges_walk_in_small_blocks() {
        let ivshmem = bar(0x8_0000_0000, GIB, 0x0014_220c);
        let buffer = Buffer::new(
            &ranges(&[(5 * PAGE, 4 * PAGE), (6 * MIB, 2 * MIB), (GIB - PAGE, PAGE)]),
            &ivshmem,
        )
        .expect("fits");
        assert_eq!(buffer.pages(), 4 + 512 + 1);
        let walk = buffer.walk();
        // 4 single pages (odd frames), 128 blocks of 4 (the skew 1532 is
        // 4-aligned), 1 page.
        assert_eq!(walk.len(), 4 + 128 + 1);
        assert_eq!(walk.len() as u64, buffer.greedy_blocks());
        check_tiling(&walk, buffer.pages()).expect("tiles");
        assert_eq!(
            walk[4],
            Entry {
                pgoff: 4,
                pfn: 0x80_0000 + 1536,
                order: 2
            }
        );
        assert_eq!(buffer.get_pfn(517), None);
    }

    #[test]
    fn later_ranges_map_from_their_own_offsets() {
        // edu's BAR at frame 0xfea00: BAR pages 1..4, then 8..16. Buffer
        // page 3 is BAR page 8; P - O is odd in both ranges: order 0.
        let edu = bar(0xfea0_0000, MIB, 0x200);
        let buffer =
            Buffer::new(&ranges(&[(PAGE, 3 * PAGE), (8 * PAGE, 8 * PAGE)]), &edu).expect("fits");
        assert_eq!(buffer.pages(), 11);
        assert_eq!(buffer.get_pfn(2), Some((0xfea03, 0)));
        assert_eq!(buffer.get_pfn(3), Some((0xfea08, 0)));
        assert_eq!(buffer.get_pfn(10), Some((0xfea0f, 0)));
        assert_eq!(buffer.get_pfn(11), None);
        assert_eq!(buffer.range_pages(), [0..3, 3..11]);
        assert_eq!(buffer.walk().len(), 11);
        assert_eq!(buffer.greedy_blocks(), 11);
        // Two ranges whose frames follow on: each is its own block (a block
        // lies inside one range), even though together they would be an
        // aligned 4-page block.
        let buffer =
            Buffer::new(&ranges(&[(0, 2 * PAGE), (2 * PAGE, 2 * PAGE)]), &edu).expect("fits");
        let entry = |pgoff, pfn, order| Entry { pgoff, pfn, order };
        assert_eq!(buffer.walk(), [entry(0, 0xfea00, 1), entry(2, 0xfea02, 1)]);
        assert_eq!(buffer.greedy_blocks(), 2);
        assert_eq!(
            buffer.walk_pages(),
            [
                entry(0, 0xfea00, 0),
                entry(1, 0xfea01, 0),
                entry(2, 0xfea02, 0),
                entry(3, 0xfea03, 0)
            ]
        );
    }

    #[test]
    fn overlapping_ranges_repeat_frames() {
        let edu = bar(0xfea0_0000, MIB, 0x200);
        let buffer = Buffer::new(&ranges(&[(0, PAGE), (0, PAGE)]), &edu).expect("fits");
        let walk = buffer.walk();
        assert_eq!(walk.len(), 2);
        assert_eq!(walk[0].pfn, walk[1].pfn);
    }

    #[test]
    fn refuses_what_the_driver_refuses() {
        let edu = bar(0xfea0_0000, MIB, 0x200);
        assert!(Buffer::new(&ranges(&[(MIB - PAGE, 2 * PAGE)]), &edu).is_err());
        assert!(Buffer::new(&[], &edu).is_err());
    }

    #[test]
    fn tiling_catches_gaps_and_misalignment() {
        let entry = |pgoff, pfn, order| Entry { pgoff, pfn, order };
        assert!(check_tiling(&[entry(0, 0, 1), entry(2, 2, 0)], 3).is_ok());
        assert!(check_tiling(&[entry(0, 0, 1), entry(3, 3, 0)], 4).is_err());
        assert!(check_tiling(&[entry(0, 0, 1), entry(1, 1, 0)], 3).is_err());
        assert!(check_tiling(&[entry(0, 1, 1)], 2).is_err());
        assert!(check_tiling(&[entry(0, 0, 1)], 3).is_err());
        assert!(compare(&[entry(0, 0, 1)], &[entry(0, 0, 0)]).is_err());
        assert!(compare(&[entry(0, 0, 1)], &[entry(0, 0, 1), entry(2, 2, 0)]).is_err());
    }

    #[test]
    fn samples_stay_inside() {
        let edu = bar(0xfea0_0000, MIB, 0x200);
        let buffer = Buffer::new(&ranges(&[(PAGE, 3 * PAGE), (0, PAGE)]), &edu).expect("fits");
        let pages = sample_pages(&buffer, 100);
        assert_eq!(pages.len(), 4 + 100);
        assert!(pages.iter().all(|&p| p < buffer.pages()));
        assert_eq!(pages, sample_pages(&buffer, 100));
    }
}
