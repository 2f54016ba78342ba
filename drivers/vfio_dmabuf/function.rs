// SPDX-License-Identifier: GPL-2.0

//! A bound PCI function as its character device and its buffers see it:
//! what its BARs are, the state of their exports, and the buffers handed out.
//! Reference counted, so that open files and buffers may outlive the binding.

use core::sync::atomic::{
    AtomicBool,
    AtomicU8, //
    Ordering, //
};
use kernel::{
    alloc::AllocError,
    dma_buf::{
        DmaBuf,
        ExportList, //
    },
    page::PAGE_SHIFT,
    prelude::*,
    sync::Arc,
    uapi::VFIO_DMABUF_BAR_MEM,
};

use crate::{
    buffer::{
        Buffer,
        State, //
    },
    range::{
        self,
        ByteRange,
        RequestError,
        Segment, //
    },
};

// Offsets and page frames are in the kernel's pages, which the arithmetic of
// range.rs takes as a parameter: only page sizes its host tests cover build.
const _: () = assert!(range::page_shift_is_tested(PAGE_SHIFT as u32));

/// Number of standard BARs of a PCI function.
pub(crate) const NUM_BARS: usize = 6;

/// One BAR as the uAPI describes it.
#[derive(Clone, Copy, Default)]
pub(crate) struct BarDesc {
    /// `VFIO_DMABUF_BAR_*` bits.
    pub(crate) flags: u32,
    /// Size in bytes.
    pub(crate) size: u64,
    /// First page frame of a memory BAR.
    pub(crate) pfn: u64,
}

impl BarDesc {
    fn is_mem(&self) -> bool {
        self.flags & VFIO_DMABUF_BAR_MEM != 0
    }
}

/// Why an export failed: a request the uAPI refuses (each interface maps it
/// to its own errno), or any other error.
#[derive(Debug)]
pub(crate) enum ExportError {
    Request(RequestError),
    Other(Error),
}

impl From<Error> for ExportError {
    fn from(e: Error) -> Self {
        Self::Other(e)
    }
}

impl From<AllocError> for ExportError {
    fn from(e: AllocError) -> Self {
        Self::Other(e.into())
    }
}

impl ExportError {
    /// The errno, with `request` giving the one for a refused request.
    pub(crate) fn errno(self, request: impl FnOnce(RequestError) -> Error) -> Error {
        match self {
            Self::Request(e) => request(e),
            Self::Other(e) => e,
        }
    }
}

/// The state of a bound function shared with its files and buffers.
pub(crate) struct Function {
    pub(crate) bars: [BarDesc; NUM_BARS],
    /// A [`State`] per BAR; changes with `exports` locked, so that an export
    /// and a state change never interleave.
    states: [AtomicU8; NUM_BARS],
    /// Set from `reset_prepare` to `reset_done`, with `exports` locked: the
    /// BARs do not decode meanwhile, so nothing may make them live.
    resetting: AtomicBool,
    /// Set once the function is unbound or removed.
    gone: AtomicBool,
    exports: Arc<ExportList<Buffer>>,
}

impl Function {
    pub(crate) fn new(bars: [BarDesc; NUM_BARS]) -> Result<Arc<Self>> {
        let exports = Arc::pin_init(ExportList::new(), GFP_KERNEL)?;
        Ok(Arc::new(
            Self {
                bars,
                states: Default::default(),
                resetting: AtomicBool::new(false),
                gone: AtomicBool::new(false),
                exports,
            },
            GFP_KERNEL,
        )?)
    }

    pub(crate) fn is_gone(&self) -> bool {
        self.gone.load(Ordering::Relaxed)
    }

    fn memory_bar(&self, bar: usize) -> Result<&BarDesc> {
        let desc = self.bars.get(bar).ok_or(EINVAL)?;
        if !desc.is_mem() || self.is_gone() {
            return Err(ENODEV);
        }
        Ok(desc)
    }

    /// Moves the exports of `bar` to `new`. Each buffer changes state under
    /// its reservation lock; leaving *live*, its importers are told to drop
    /// their mappings and its fences are waited for, once. Making them live
    /// is refused with `EBUSY` while the function is being reset.
    pub(crate) fn set_state(&self, bar: usize, new: State) -> Result {
        self.memory_bar(bar)?;
        let exports = ExportList::lock(&self.exports);
        if State::from_u8(self.states[bar].load(Ordering::Relaxed)) == State::Gone {
            return Err(ENODEV);
        }
        if new == State::Live && self.resetting.load(Ordering::Relaxed) {
            return Err(EBUSY);
        }
        self.states[bar].store(new as u8, Ordering::Relaxed);
        exports.for_each(|dmabuf, buffer| {
            if buffer.bar != bar {
                return;
            }
            let resv = dmabuf.lock();
            if buffer.state() == new {
                return;
            }
            buffer.set_state(&resv, new);
            if new != State::Live {
                resv.invalidate_mappings();
                resv.wait_fences();
            }
        });
        Ok(())
    }

    /// The function is unbound or removed: every export is gone for good.
    /// Called again (the binding's drop after `unbind`), it does nothing.
    pub(crate) fn remove(&self) {
        self.set_all(State::Gone);
        self.gone.store(true, Ordering::Relaxed);
    }

    /// The function is about to be reset: every export is revoked, and stays
    /// so at least until [`Function::reset_done`].
    pub(crate) fn reset_prepare(&self) {
        {
            let _exports = ExportList::lock(&self.exports);
            self.resetting.store(true, Ordering::Relaxed);
        }
        self.set_all(State::Revoked);
    }

    /// The reset is over: user space may restore the exports, knowing what
    /// the reset did to the device's memory.
    pub(crate) fn reset_done(&self) {
        let _exports = ExportList::lock(&self.exports);
        self.resetting.store(false, Ordering::Relaxed);
    }

    fn set_all(&self, state: State) {
        for bar in 0..NUM_BARS {
            if self.bars[bar].is_mem() {
                // Fails only once the BAR is gone, which is then final.
                let _ = self.set_state(bar, state);
            }
        }
    }

    /// Exports `ranges` of `bar` as a new dma-buf and returns its fd.
    pub(crate) fn export(
        &self,
        bar: usize,
        ranges: &[ByteRange],
        open_flags: u32,
    ) -> Result<i32, ExportError> {
        let desc = *self.memory_bar(bar)?;
        let empty = Segment {
            pgoff: 0,
            pages: 0,
            pfn: 0,
        };
        let mut segments = KVec::from_elem(empty, ranges.len(), GFP_KERNEL)?;
        let pages = range::layout(
            ranges,
            desc.size,
            desc.pfn,
            PAGE_SHIFT as u32,
            &mut segments,
        )
        .map_err(ExportError::Request)?;
        let size = usize::try_from(pages << PAGE_SHIFT).map_err(|_| EOVERFLOW)?;

        let mut exports = ExportList::lock(&self.exports);
        let state = State::from_u8(self.states[bar].load(Ordering::Relaxed));
        if state == State::Gone {
            return Err(ENODEV.into());
        }
        let buffer = Arc::new(Buffer::new(bar, segments, state), GFP_KERNEL)?;
        let dmabuf = exports.export(buffer, size, open_flags)?;
        drop(exports);
        Ok(DmaBuf::into_fd(dmabuf, open_flags)?)
    }
}
