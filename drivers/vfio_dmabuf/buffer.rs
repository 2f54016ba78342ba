// SPDX-License-Identifier: GPL-2.0

//! One exported dma-buf: its pieces of a BAR, and whether importers may
//! still reach them.

use core::sync::atomic::{
    AtomicU8, //
    Ordering, //
};
use kernel::{
    dma_buf::{
        AttachmentRef,
        Exporter,
        Pfn,
        PhysVec,
        ResvGuard, //
    },
    page::PAGE_SHIFT,
    prelude::*,
    sync::ArcBorrow, //
};

use crate::range::{
    self,    //
    Segment, //
};

/// The state of a BAR's exports (see the uAPI's "States of a BAR's exports").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum State {
    /// Importers may attach and query page frames.
    Live = 0,
    /// Temporarily taken away, until restored.
    Revoked = 1,
    /// Taken away for good: the function was unbound or removed.
    Gone = 2,
}

impl State {
    pub(crate) fn from_u8(value: u8) -> Self {
        match value {
            0 => State::Live,
            1 => State::Revoked,
            _ => State::Gone,
        }
    }
}

/// The exporter's data of one dma-buf. It holds no reference to the bound
/// device: it answers `ENODEV` once the device is gone, however long it lives.
pub(crate) struct Buffer {
    /// The BAR it was exported from.
    pub(crate) bar: usize,
    /// The buffer's pieces, in buffer page order.
    segments: KVec<Segment>,
    /// A [`State`], changed only with the buffer's reservation lock held.
    state: AtomicU8,
}

impl Buffer {
    pub(crate) fn new(bar: usize, segments: KVec<Segment>, state: State) -> Self {
        Self {
            bar,
            segments,
            state: AtomicU8::new(state as u8),
        }
    }

    pub(crate) fn state(&self) -> State {
        State::from_u8(self.state.load(Ordering::Relaxed))
    }

    /// Changes the state; `_resv` proves the buffer's reservation lock is held,
    /// so that no `get_pfn` runs meanwhile.
    pub(crate) fn set_state(&self, _resv: &ResvGuard<'_>, state: State) {
        self.state.store(state as u8, Ordering::Relaxed);
    }
}

#[vtable]
impl Exporter for Buffer {
    fn attach(this: ArcBorrow<'_, Self>, attachment: &AttachmentRef) -> Result {
        // Device memory has no struct page; and an importer that cannot be told
        // to drop its mappings could keep reaching the device after a revoke.
        if !attachment.allows_peer2peer() || !attachment.is_revocable() {
            return Err(EOPNOTSUPP);
        }
        // Not the real gate (get_pfn is, under the reservation lock), but an
        // importer of a revoked buffer learns it at once.
        if this.state() != State::Live {
            return Err(ENODEV);
        }
        Ok(())
    }

    fn get_pfn(
        this: ArcBorrow<'_, Self>,
        _attachment: &AttachmentRef,
        pgoff: usize,
    ) -> Result<Pfn> {
        if this.state() != State::Live {
            return Err(ENODEV);
        }
        let pgoff = u64::try_from(pgoff)?;
        // The core checked pgoff against the buffer's size, which is the sum of
        // the segments.
        let index = range::find(&this.segments, pgoff).ok_or(EINVAL)?;
        let (pfn, max_order) = range::pfn_and_order(&this.segments[index], pgoff);
        // A smaller order is always a correct answer: the benchmarks' knob.
        let cap = crate::module_parameters::bench_max_order.value();
        Ok(Pfn {
            pfn: usize::try_from(pfn)?,
            max_order: max_order.min(cap),
        })
    }

    /// The segments are the runs, adjacent ones merged where their frames
    /// follow on: one call per `runs.len()` runs, whatever the alignment.
    fn get_phys_vec(
        this: ArcBorrow<'_, Self>,
        _attachment: &AttachmentRef,
        pgoff: usize,
        pages: usize,
        runs: &mut [PhysVec],
    ) -> Result<usize> {
        if this.state() != State::Live {
            return Err(ENODEV);
        }
        let (pgoff, pages) = (u64::try_from(pgoff)?, u64::try_from(pages)?);
        let mut failed = false;
        let count = range::for_each_run(&this.segments, pgoff, pages, runs.len(), |i, run| {
            // Inside a BAR that exists: the addresses fit. Checked all the
            // same; a failure leaves the answer short, which is refused.
            // (`phys_addr_t` is `u64` here, but 32 bits on some configurations.)
            #[allow(clippy::useless_conversion)]
            let (Some(paddr), Some(len)) = (
                run.pfn
                    .checked_mul(1 << PAGE_SHIFT)
                    .and_then(|a| a.try_into().ok()),
                run.pages
                    .checked_mul(1 << PAGE_SHIFT)
                    .and_then(|l| usize::try_from(l).ok()),
            ) else {
                failed = true;
                return;
            };
            runs[i] = PhysVec::new(paddr, len);
        });
        if failed {
            return Err(EOVERFLOW);
        }
        Ok(count)
    }
}
