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
    dma_buf::{
        DmaBuf,
        ExportList, //
    },
    fs::File,
    miscdevice::{
        MiscDevice,
        MiscDeviceRegistration, //
    },
    page::PAGE_SHIFT,
    prelude::*,
    sync::{
        Arc,
        ArcBorrow, //
    },
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
    uapi, //
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

/// The errno the uAPI documents for each refused request.
pub(crate) fn request_errno(e: RequestError) -> Error {
    match e {
        RequestError::TooManyRanges => E2BIG,
        RequestError::Overflow => EOVERFLOW,
        RequestError::NoRanges
        | RequestError::EmptyRange
        | RequestError::Unaligned
        | RequestError::OutsideBar => EINVAL,
    }
}

/// The state of a bound function shared with its files and buffers.
pub(crate) struct Function {
    pub(crate) bars: [BarDesc; NUM_BARS],
    /// A [`State`] per BAR; changes with `exports` locked, so that an export
    /// and a state change never interleave.
    states: [AtomicU8; NUM_BARS],
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
        if desc.flags & uapi::BAR_MEM == 0 || self.is_gone() {
            return Err(ENODEV);
        }
        Ok(desc)
    }

    /// Moves the exports of `bar` to `new`. Each buffer changes state under
    /// its reservation lock; leaving *live*, its importers are told to drop
    /// their mappings and its fences are waited for, once.
    pub(crate) fn set_state(&self, bar: usize, new: State) -> Result {
        self.memory_bar(bar)?;
        let exports = ExportList::lock(&self.exports);
        if State::from_u8(self.states[bar].load(Ordering::Relaxed)) == State::Gone {
            return Err(ENODEV);
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
    pub(crate) fn remove(&self) {
        self.set_all(State::Gone);
        self.gone.store(true, Ordering::Relaxed);
    }

    /// The function is about to be reset: every export is revoked.
    pub(crate) fn revoke_all(&self) {
        self.set_all(State::Revoked);
    }

    fn set_all(&self, state: State) {
        for bar in 0..NUM_BARS {
            if self.bars[bar].flags & uapi::BAR_MEM != 0 {
                // Fails only once the BAR is gone, which is then final.
                let _ = self.set_state(bar, state);
            }
        }
    }

    /// Exports `ranges` of `bar` as a new dma-buf and returns its fd.
    pub(crate) fn export(&self, bar: usize, ranges: &[ByteRange], open_flags: u32) -> Result<i32> {
        let desc = *self.memory_bar(bar)?;
        let empty = Segment {
            pgoff: 0,
            pages: 0,
            pfn: 0,
        };
        let mut segments = KVec::from_elem(empty, ranges.len(), GFP_KERNEL)?;
        let pages =
            range::layout(ranges, desc.size, desc.pfn, PAGE_SHIFT as u32, &mut segments)
                .map_err(request_errno)?;
        let size = usize::try_from(pages << PAGE_SHIFT).map_err(|_| EOVERFLOW)?;

        let mut exports = ExportList::lock(&self.exports);
        let state = State::from_u8(self.states[bar].load(Ordering::Relaxed));
        if state == State::Gone {
            return Err(ENODEV);
        }
        let buffer = Arc::new(Buffer::new(bar, segments, state), GFP_KERNEL)?;
        let dmabuf = exports.export(buffer, size, open_flags)?;
        drop(exports);
        DmaBuf::into_fd(dmabuf, open_flags)
    }
}

#[vtable]
impl MiscDevice for Function {
    type Ptr = Arc<Function>;

    fn open(_file: &File, misc: &MiscDeviceRegistration<Self>) -> Result<Arc<Function>> {
        misc.data().cloned().ok_or(ENODEV)
    }

    fn ioctl(this: ArcBorrow<'_, Function>, _file: &File, cmd: u32, arg: usize) -> Result<isize> {
        uapi::ioctl(&this, cmd, arg)
    }
}
