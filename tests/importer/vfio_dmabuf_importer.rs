// SPDX-License-Identifier: GPL-2.0

//! A test importer of page-frame-only dma-bufs
//! (`include/uapi/linux/vfio_dmabuf_importer.h`): attaches without a device,
//! walks a buffer with `dma_buf_get_pfn_unlocked()`, keeps the table it built,
//! and drops it when the exporter invalidates the attachment.

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
    new_mutex,
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
const COUNTERS_SIZE: usize = 40;
const SEGMENT_SIZE: usize = 24;
const WALK_PAGES: u32 = 1 << 0;

const IMPORT: u32 = _IOWR::<[u8; IMPORT_SIZE]>(0xDB, 0x10);
const WALK: u32 = _IOWR::<[u8; WALK_SIZE]>(0xDB, 0x11);
const GET_PFN: u32 = _IOWR::<[u8; PFN_SIZE]>(0xDB, 0x12);
const COUNTERS: u32 = _IOWR::<[u8; COUNTERS_SIZE]>(0xDB, 0x13);

/// One entry of the table: a block of `2^order` pages from `pgoff` on.
#[derive(Clone, Copy)]
struct Segment {
    pgoff: u64,
    pfn: u64,
    order: u32,
}

/// What the exporter's `invalidate_mappings` reaches.
#[pin_data]
struct Table {
    /// Built by the last walk; emptied on invalidation. Taken under the
    /// buffer's reservation lock (invalidation holds it; a walk takes it to
    /// store its result), never the other way round.
    #[pin]
    segments: Mutex<KVec<Segment>>,
    invalidations: AtomicU64,
}

#[vtable]
impl Importer for Table {
    fn invalidate_mappings(this: ArcBorrow<'_, Self>) {
        this.segments.lock().clear();
        this.invalidations.fetch_add(1, Ordering::Relaxed);
    }
}

struct Import {
    attachment: Attachment<Table>,
    table: Arc<Table>,
    walks: u64,
    calls: u64,
}

/// An open file of the importer's device: at most one import.
#[pin_data]
struct ImporterFile {
    #[pin]
    import: Mutex<Option<Import>>,
}

fn user(arg: usize, len: usize) -> UserSlice {
    UserSlice::new(UserPtr::from_addr(arg), len)
}

/// The `len` bytes at `arg + offset`.
fn user_at(arg: usize, offset: usize, len: usize) -> Result<UserSlice> {
    Ok(user(arg.checked_add(offset).ok_or(EFAULT)?, len))
}

/// Reads `argsz` and `flags` and checks them as the exporter does.
fn head(arg: usize, size: usize, known_flags: u32) -> Result<u32> {
    let mut reader = user(arg, 8).reader();
    let argsz: u32 = reader.read()?;
    let flags: u32 = reader.read()?;
    if usize::try_from(argsz)? != size || flags & !known_flags != 0 {
        return Err(EINVAL);
    }
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
        // A new import replaces the old one, detached first.
        *import = None;
        let buf = DmaBuf::from_fd(fd)?;
        let size = buf.size() as u64;
        let table = Arc::pin_init(
            pin_init!(Table {
                segments <- new_mutex!(KVec::new()),
                invalidations: AtomicU64::new(0),
            }),
            GFP_KERNEL,
        )?;
        let attachment = Attachment::new(buf, table.clone())?;
        *import = Some(Import {
            attachment,
            table,
            walks: 0,
            calls: 0,
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
        let mut table = KVec::new();
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
                pfn.max_order.min(usize::BITS - 1)
            };
            // The block containing pgoff; a walk from page 0 lands on block
            // starts, so this is pgoff itself.
            let block = 1usize << order;
            let first = pgoff & !(block - 1);
            // An exporter that breaks the block contract is refused, never
            // trusted with arithmetic.
            let first_pfn = pfn.pfn.checked_sub(pgoff - first).ok_or(EINVAL)?;
            table.push(
                Segment {
                    pgoff: first as u64,
                    pfn: first_pfn as u64,
                    order,
                },
                GFP_KERNEL,
            )?;
            pgoff = first.checked_add(block).ok_or(EOVERFLOW)?;
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
        ];
        drop(guard);
        let mut writer = user_at(arg, 8, COUNTERS_SIZE - 8)?.writer();
        for v in values {
            writer.write(&v)?;
        }
        Ok(0)
    }
}

#[vtable]
impl MiscDevice for ImporterFile {
    type Ptr = Pin<KBox<Self>>;

    fn open(_file: &File, _misc: &MiscDeviceRegistration<Self>) -> Result<Pin<KBox<Self>>> {
        KBox::try_pin_init(
            try_pin_init!(ImporterFile {
                import <- new_mutex!(None),
            }),
            GFP_KERNEL,
        )
    }

    fn ioctl(this: Pin<&ImporterFile>, _file: &File, cmd: u32, arg: usize) -> Result<isize> {
        match cmd {
            IMPORT => this.import(arg),
            WALK => this.walk(arg),
            GET_PFN => this.get_pfn(arg),
            COUNTERS => this.counters(arg),
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
