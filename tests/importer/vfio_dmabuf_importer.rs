// SPDX-License-Identifier: GPL-2.0

//! A test importer of page-frame-only dma-bufs
//! (`include/uapi/linux/vfio_dmabuf_importer.h`): attaches without a device,
//! walks a buffer with `dma_buf_get_pfn_unlocked()`, keeps the table it built,
//! and drops it when the exporter invalidates the attachment. It maps the
//! buffer's page frames into user space from that table (uncached, with huge
//! entries where the blocks allow) and zaps the mappings on invalidation, so
//! a test can prove a page frame right by touching the device behind it.

use core::sync::atomic::{
    AtomicU64, //
    Ordering,  //
};
use kernel::{
    dma_buf::{
        Attachment,
        DmaBuf,
        Importer, //
    },
    fs::File,
    ioctl::_IOWR,
    miscdevice::{
        MiscDevice,
        MiscDeviceOptions,
        MiscDeviceRegistration, //
    },
    mm::{
        pfnmap::{
            AddressSpace,
            VmFault,
            VmFaultResult,
            PMD_ORDER,
            PUD_ORDER, //
        },
        virt::VmaNew,
    },
    new_mutex,
    page::PAGE_SIZE,
    prelude::*,
    sync::{
        Arc,
        ArcBorrow,
        Mutex, //
    },
    time::{
        Instant,
        Monotonic, //
    },
    uaccess::{
        UserPtr,
        UserSlice, //
    },
};

const IMPORT_SIZE: usize = 24;
const WALK_SIZE: usize = 40;
const PFN_SIZE: usize = 32;
const COUNTERS_SIZE: usize = 64;
const SEGMENT_SIZE: usize = 24;
const BENCH_SIZE: usize = 40;
const MAX_BENCH_LOOPS: u32 = 1 << 24;
const WALK_PAGES: u32 = 1 << 0;

const IMPORT: u32 = _IOWR::<[u8; IMPORT_SIZE]>(0xDB, 0x10);
const WALK: u32 = _IOWR::<[u8; WALK_SIZE]>(0xDB, 0x11);
const GET_PFN: u32 = _IOWR::<[u8; PFN_SIZE]>(0xDB, 0x12);
const COUNTERS: u32 = _IOWR::<[u8; COUNTERS_SIZE]>(0xDB, 0x13);
const BENCH: u32 = _IOWR::<[u8; BENCH_SIZE]>(0xDB, 0x14);

/// One entry of the table: a block of `2^order` pages from `pgoff` on.
#[derive(Clone, Copy)]
struct Segment {
    pgoff: u64,
    pfn: u64,
    order: u32,
}

impl Segment {
    /// The block of `2^order` pages that `pgoff` lies in, given its page
    /// frame. An exporter that breaks the block contract is refused, never
    /// trusted with arithmetic.
    fn containing(pgoff: usize, pfn: usize, order: u32) -> Result<Self> {
        let order = order.min(usize::BITS - 1);
        let first = pgoff & !((1usize << order) - 1);
        Ok(Segment {
            pgoff: first as u64,
            pfn: pfn.checked_sub(pgoff - first).ok_or(EINVAL)? as u64,
            order,
        })
    }

    fn end(&self) -> u64 {
        self.pgoff.saturating_add(1u64 << self.order.min(63))
    }
}

/// What the exporter's `invalidate_mappings` reaches.
#[pin_data]
struct Table {
    /// Built by the last walk, or entry by entry by faults; sorted by
    /// `pgoff`; emptied on invalidation. A page-by-page walk of a large BAR
    /// has millions of entries: kvmalloc'ed, not kmalloc'ed. Changed only under the buffer's
    /// reservation lock (invalidation holds it; a walk or a fault takes it),
    /// and taken inside it, never the other way round.
    #[pin]
    segments: Mutex<KVVec<Segment>>,
    invalidations: AtomicU64,
    /// The user mappings of the importing file, zapped on invalidation.
    mappings: Arc<AddressSpace>,
}

#[vtable]
impl Importer for Table {
    fn invalidate_mappings(this: ArcBorrow<'_, Self>) {
        this.segments.lock().clear();
        this.mappings.zap_all();
        this.invalidations.fetch_add(1, Ordering::Relaxed);
    }
}

/// The entry of a sorted table that covers `pgoff`.
fn lookup(segments: &[Segment], pgoff: u64) -> Option<Segment> {
    let after = segments.partition_point(|s| s.pgoff <= pgoff);
    let s = *segments.get(after.checked_sub(1)?)?;
    (pgoff < s.end()).then_some(s)
}

struct Import {
    attachment: Attachment<Table>,
    table: Arc<Table>,
    walks: u64,
    calls: u64,
    /// Entries installed by faults: PTE, PMD, PUD.
    faults: [u64; 3],
}

/// An open file of the importer's device: at most one import, and the
/// address space its mappings live in.
#[pin_data]
struct ImporterFile {
    #[pin]
    import: Mutex<Option<Import>>,
    mappings: Arc<AddressSpace>,
}

fn user(arg: usize, len: usize) -> UserSlice {
    UserSlice::new(UserPtr::from_addr(arg), len)
}

/// The `len` bytes at `arg + offset`.
fn user_at(arg: usize, offset: usize, len: usize) -> Result<UserSlice> {
    Ok(user(arg.checked_add(offset).ok_or(EFAULT)?, len))
}

/// Checks that the `len` bytes at `arg + offset` are zero, as
/// `copy_struct_from_user()` does for an argument larger than the kernel
/// knows.
fn check_zero_tail(arg: usize, offset: usize, len: usize) -> Result {
    let mut reader = user_at(arg, offset, len)?.reader();
    let mut chunk = [0u8; 64];
    while !reader.is_empty() {
        let n = reader.len().min(chunk.len());
        reader.read_slice(&mut chunk[..n])?;
        if chunk[..n].iter().any(|&b| b != 0) {
            return Err(E2BIG);
        }
    }
    Ok(())
}

/// Reads `argsz` and `flags` and checks them as the exporter does: `argsz`
/// at least `size`, only bytes of zero past it, no unknown flag.
fn head(arg: usize, size: usize, known_flags: u32) -> Result<u32> {
    let mut reader = user(arg, 8).reader();
    let argsz: u32 = reader.read()?;
    let flags: u32 = reader.read()?;
    let argsz = usize::try_from(argsz)?;
    if argsz < size || flags & !known_flags != 0 {
        return Err(EINVAL);
    }
    check_zero_tail(arg, size, argsz - size)?;
    Ok(flags)
}

impl ImporterFile {
    fn import(&self, arg: usize) -> Result<isize> {
        head(arg, IMPORT_SIZE, 0)?;
        let mut reader = user(arg, IMPORT_SIZE).reader();
        reader.skip(8)?;
        let fd: i32 = reader.read()?;
        let reserved: u32 = reader.read()?;
        if reserved != 0 {
            return Err(EINVAL);
        }
        let mut import = self.import.lock();
        // A new import replaces the old one, detached first; no mapping of
        // the old buffer survives it.
        *import = None;
        self.mappings.zap_all();
        let buf = DmaBuf::from_fd(fd)?;
        let size = buf.size() as u64;
        let table = Arc::pin_init(
            pin_init!(Table {
                segments <- new_mutex!(KVVec::new()),
                invalidations: AtomicU64::new(0),
                mappings: self.mappings.clone(),
            }),
            GFP_KERNEL,
        )?;
        let attachment = Attachment::new(buf, table.clone())?;
        *import = Some(Import {
            attachment,
            table,
            walks: 0,
            calls: 0,
            faults: [0; 3],
        });
        drop(import);
        let mut writer = user_at(arg, 16, IMPORT_SIZE - 16)?.writer();
        writer.write(&size)?;
        Ok(0)
    }

    fn walk(&self, arg: usize) -> Result<isize> {
        let flags = head(arg, WALK_SIZE, WALK_PAGES)?;
        let mut reader = user(arg, WALK_SIZE).reader();
        reader.skip(8)?;
        let room: u32 = reader.read()?;
        let reserved: u32 = reader.read()?;
        let segments_addr: u64 = reader.read()?;
        if reserved != 0 {
            return Err(EINVAL);
        }

        let mut guard = self.import.lock();
        let import = Option::as_mut(&mut *guard).ok_or(ENOENT)?;
        let pages = import.attachment.buffer().size() / kernel::page::PAGE_SIZE;
        let generation = import.table.invalidations.load(Ordering::Relaxed);
        let mut table = KVVec::new();
        let start = Instant::<Monotonic>::now();
        let mut pgoff = 0usize;
        let mut calls = 0u64;
        while pgoff < pages {
            let pfn = import.attachment.get_pfn_unlocked(pgoff);
            calls += 1;
            let pfn = match pfn {
                Ok(pfn) => pfn,
                Err(e) => {
                    import.calls += calls;
                    return Err(e);
                }
            };
            let order = if flags & WALK_PAGES != 0 {
                0
            } else {
                pfn.max_order
            };
            // The block containing pgoff; a walk from page 0 lands on block
            // starts, so this is pgoff itself.
            let segment = Segment::containing(pgoff, pfn.pfn, order)?;
            table.push(segment, GFP_KERNEL)?;
            pgoff = usize::try_from(segment.end()).map_err(|_| EOVERFLOW)?;
        }
        let nanoseconds = start.elapsed().as_nanos();
        import.calls += calls;

        // Keep the table only if no invalidation came in meanwhile.
        {
            let _resv = import.attachment.buffer().lock();
            if import.table.invalidations.load(Ordering::Relaxed) != generation {
                return Err(EAGAIN);
            }
            let mut kept = import.table.segments.lock();
            kept.clear();
            kept.extend_from_slice(&table, GFP_KERNEL)?;
        }
        import.walks += 1;
        drop(guard);

        let count = u32::try_from(table.len()).map_err(|_| EOVERFLOW)?;
        if segments_addr != 0 {
            let n = table.len().min(usize::try_from(room)?);
            let addr = usize::try_from(segments_addr)?;
            let mut writer = user(addr, n.checked_mul(SEGMENT_SIZE).ok_or(EOVERFLOW)?).writer();
            for s in &table[..n] {
                writer.write(&s.pgoff)?;
                writer.write(&s.pfn)?;
                writer.write(&s.order)?;
                writer.write(&0u32)?;
            }
        }
        let mut writer = user_at(arg, 8, WALK_SIZE - 8)?.writer();
        writer.write(&count)?;
        writer.write(&0u32)?;
        writer.write(&segments_addr)?;
        writer.write(&calls)?;
        writer.write(&(nanoseconds as u64))?;
        Ok(0)
    }

    fn get_pfn(&self, arg: usize) -> Result<isize> {
        head(arg, PFN_SIZE, 0)?;
        let mut reader = user(arg, PFN_SIZE).reader();
        reader.skip(8)?;
        let pgoff: u64 = reader.read()?;
        let mut guard = self.import.lock();
        let import = Option::as_mut(&mut *guard).ok_or(ENOENT)?;
        import.calls += 1;
        let pfn = import
            .attachment
            .get_pfn_unlocked(usize::try_from(pgoff).map_err(|_| ERANGE)?)?;
        drop(guard);
        let mut writer = user_at(arg, 16, PFN_SIZE - 16)?.writer();
        writer.write(&(pfn.pfn as u64))?;
        writer.write(&pfn.max_order)?;
        writer.write(&0u32)?;
        Ok(0)
    }

    fn counters(&self, arg: usize) -> Result<isize> {
        head(arg, COUNTERS_SIZE, 0)?;
        let guard = self.import.lock();
        let import = guard.as_ref().ok_or(ENOENT)?;
        let values = [
            import.walks,
            import.calls,
            import.table.invalidations.load(Ordering::Relaxed),
            import.table.segments.lock().len() as u64,
            import.faults[0],
            import.faults[1],
            import.faults[2],
        ];
        drop(guard);
        let mut writer = user_at(arg, 8, COUNTERS_SIZE - 8)?.writer();
        for v in values {
            writer.write(&v)?;
        }
        Ok(0)
    }

    /// Times `loops` get_pfn calls and as many reservation lock/unlock pairs.
    fn bench(&self, arg: usize) -> Result<isize> {
        head(arg, BENCH_SIZE, 0)?;
        let mut reader = user(arg, 24).reader();
        reader.skip(8)?;
        let pgoff: u64 = reader.read()?;
        let loops: u32 = reader.read()?;
        let reserved: u32 = reader.read()?;
        if reserved != 0 || loops == 0 || loops > MAX_BENCH_LOOPS {
            return Err(EINVAL);
        }
        let pgoff = usize::try_from(pgoff).map_err(|_| ERANGE)?;
        let mut guard = self.import.lock();
        let import = Option::as_mut(&mut *guard).ok_or(ENOENT)?;
        let start = Instant::<Monotonic>::now();
        for _ in 0..loops {
            import.attachment.get_pfn_unlocked(pgoff)?;
        }
        let get_pfn_ns = start.elapsed().as_nanos() as u64;
        import.calls += u64::from(loops);
        let buffer = import.attachment.buffer();
        let start = Instant::<Monotonic>::now();
        for _ in 0..loops {
            drop(buffer.lock());
        }
        let lock_ns = start.elapsed().as_nanos() as u64;
        drop(guard);
        let mut writer = user_at(arg, 24, BENCH_SIZE - 24)?.writer();
        writer.write(&get_pfn_ns)?;
        writer.write(&lock_ns)?;
        Ok(0)
    }

    /// Maps the page frames behind buffer pages `vm_pgoff..` on fault.
    fn mmap(&self, vma: &VmaNew) -> Result {
        let guard = self.import.lock();
        let import = guard.as_ref().ok_or(ENOENT)?;
        let pages = import.attachment.buffer().size() / PAGE_SIZE;
        let len = (vma.end() - vma.start()) / PAGE_SIZE;
        let end = vma.pgoff().checked_add(len).ok_or(EINVAL)?;
        if end > pages {
            return Err(EINVAL);
        }
        vma.set_pfnmap()?;
        vma.set_noncached();
        Ok(())
    }

    /// Installs the entry a fault asks for from the table, filling the table
    /// first if the entry is missing. The reservation lock is held from the
    /// lookup to the insertion, so an invalidation either comes before (and
    /// the exporter refuses the page frame: SIGBUS) or after (and zaps what
    /// was inserted).
    fn fault(&self, vmf: &VmFault<'_>) -> VmFaultResult {
        let order = vmf.order();
        let huge = order > 0;
        let fallback = if huge {
            VmFaultResult::FALLBACK
        } else {
            VmFaultResult::SIGBUS
        };
        let mut guard = self.import.lock();
        let Some(import) = Option::as_mut(&mut *guard) else {
            return VmFaultResult::SIGBUS;
        };
        let pages = import.attachment.buffer().size() / PAGE_SIZE;
        let pgoff = vmf.pgoff();
        let block = 1usize << order;
        if pgoff % block != 0 || pgoff.checked_add(block).is_none_or(|end| end > pages) {
            return fallback;
        }

        let resv = import.attachment.buffer().lock();
        let mut segments = import.table.segments.lock();
        let segment = match lookup(&segments, pgoff as u64) {
            Some(segment) => segment,
            None => {
                import.calls += 1;
                let found = import
                    .attachment
                    .get_pfn(&resv, pgoff)
                    .and_then(|pfn| Segment::containing(pgoff, pfn.pfn, pfn.max_order));
                let segment = match found {
                    Ok(segment) => segment,
                    Err(e) if e == ENOMEM => return VmFaultResult::OOM,
                    Err(_) => return VmFaultResult::SIGBUS,
                };
                let at = segments.partition_point(|s| s.pgoff < segment.pgoff);
                if segments.push(segment, GFP_KERNEL).is_err() {
                    return VmFaultResult::OOM;
                }
                segments[at..].rotate_right(1);
                segment
            }
        };
        if segment.order < order {
            return fallback;
        }
        let Ok(pfn) = usize::try_from(segment.pfn + (pgoff as u64 - segment.pgoff)) else {
            return VmFaultResult::SIGBUS;
        };
        // SAFETY: The page frame is the exporter's answer for this page of
        // the buffer, under the reservation lock, which is held until the
        // entry is in place. Before the exporter may take the memory away it
        // calls invalidate_mappings under that lock, which zaps this file's
        // mappings.
        let ret = unsafe { vmf.insert_pfn(pfn) };
        drop(segments);
        drop(resv);
        if ret == VmFaultResult::NOPAGE {
            let level = match order {
                0 => 0,
                PMD_ORDER => 1,
                PUD_ORDER => 2,
                _ => return ret,
            };
            import.faults[level] += 1;
        }
        ret
    }
}

#[vtable]
impl MiscDevice for ImporterFile {
    type Ptr = Pin<KBox<Self>>;

    fn open(_file: &File, _misc: &MiscDeviceRegistration<Self>) -> Result<Pin<KBox<Self>>> {
        KBox::try_pin_init(
            try_pin_init!(ImporterFile {
                import <- new_mutex!(None),
                mappings: Arc::pin_init(AddressSpace::new(), GFP_KERNEL)?,
            }),
            GFP_KERNEL,
        )
    }

    fn mapping(this: Pin<&ImporterFile>) -> Arc<AddressSpace> {
        this.mappings.clone()
    }

    fn mmap(this: Pin<&ImporterFile>, _file: &File, vma: &VmaNew) -> Result {
        this.mmap(vma)
    }

    fn fault(this: Pin<&ImporterFile>, vmf: &VmFault<'_>) -> VmFaultResult {
        this.fault(vmf)
    }

    fn ioctl(this: Pin<&ImporterFile>, _file: &File, cmd: u32, arg: usize) -> Result<isize> {
        match cmd {
            IMPORT => this.import(arg),
            WALK => this.walk(arg),
            GET_PFN => this.get_pfn(arg),
            COUNTERS => this.counters(arg),
            BENCH => this.bench(arg),
            _ => Err(ENOTTY),
        }
    }
}

#[pin_data]
struct ImporterModule {
    #[pin]
    _misc: MiscDeviceRegistration<ImporterFile>,
}

impl kernel::InPlaceModule for ImporterModule {
    fn init(_module: &'static ThisModule) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            _misc <- MiscDeviceRegistration::register(MiscDeviceOptions {
                name: c"vfio-dmabuf-importer",
            }),
        })
    }
}

module! {
    type: ImporterModule,
    name: "vfio_dmabuf_importer",
    authors: ["vfio-dmabuf developers"],
    description: "Test importer of page-frame-only dma-bufs",
    license: "GPL",
    imports_ns: ["DMA_BUF"],
}
