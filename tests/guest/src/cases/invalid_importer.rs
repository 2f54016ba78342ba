// SPDX-License-Identifier: GPL-2.0

//! Requests both character devices must refuse that need more than a bad
//! field: the test importer's ioctls field by field, files that are not
//! dma-buf files or are another exporter's, and user pointers that fault
//! (unmapped, or read-only where the kernel writes). Each asserts its
//! documented errno; `invalid.rs` checks afterwards that no file
//! descriptor leaked.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use super::{all_of, ensure, must, refused, Context, Outcome, Which};
use crate::expect::{ranges, PAGE};
use crate::exporter::ExportRequest;
use crate::importer::Importer;
use crate::sys;
use crate::uapi;

/// Anonymous pages for arguments: the first read-write, the second
/// inaccessible (an address that faults), so that an argument can run off
/// the end of the first; the first can be made read-only.
struct Pages {
    addr: *mut u8,
}

impl Pages {
    fn new() -> io::Result<Self> {
        // SAFETY: a new private anonymous mapping that nothing else uses.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                2 * PAGE as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let pages = Self { addr: addr.cast() };
        pages.protect(1, libc::PROT_NONE)?;
        Ok(pages)
    }

    fn protect(&self, page: usize, prot: i32) -> io::Result<()> {
        // SAFETY: one of our own two pages.
        let ret = unsafe {
            libc::mprotect(
                self.addr.add(page * PAGE as usize).cast(),
                PAGE as usize,
                prot,
            )
        };
        if ret < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Writes `bytes` so that they end `back` bytes before the end of the
    /// first page; returns their address.
    fn put(&self, bytes: &[u8], back: usize) -> usize {
        let at = PAGE as usize - back - bytes.len();
        // SAFETY: inside the first page, which is writable until `protect`.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.addr.add(at), bytes.len()) };
        self.addr as usize + at
    }

    /// The first page's start, and the address of the inaccessible page.
    fn start(&self) -> usize {
        self.addr as usize
    }

    fn hole(&self) -> usize {
        self.addr as usize + PAGE as usize
    }
}

impl Drop for Pages {
    fn drop(&mut self) {
        // SAFETY: our own mapping, which nothing refers to any more.
        unsafe { libc::munmap(self.addr.cast(), 2 * PAGE as usize) };
    }
}

fn ioctl_at(fd: BorrowedFd<'_>, request: u32, addr: usize) -> io::Result<i32> {
    // SAFETY: `addr` is 0 or one of `Pages`' addresses: bytes no Rust
    // reference covers, which the kernel may read and write, or which fault
    // and make the call fail with EFAULT.
    unsafe { sys::ioctl_addr(fd, request, addr) }
}

fn bytes<T: uapi::Uapi>(value: &T) -> Vec<u8> {
    uapi::bytes_of(value).to_vec()
}

fn import_arg(fd: i32) -> uapi::vfio_dmabuf_imp_import {
    uapi::vfio_dmabuf_imp_import {
        argsz: uapi::argsz::<uapi::vfio_dmabuf_imp_import>(),
        fd,
        ..Default::default()
    }
}

fn walk_arg(room: u32, segments: usize) -> uapi::vfio_dmabuf_imp_walk {
    uapi::vfio_dmabuf_imp_walk {
        argsz: uapi::argsz::<uapi::vfio_dmabuf_imp_walk>(),
        nr_segments: room,
        segments: segments as u64,
        ..Default::default()
    }
}

/// A fresh importer of 16 pages of edu's BAR0, and the dma-buf.
fn imported(ctx: &Context) -> Result<(Importer, OwnedFd), super::Failure> {
    let (_, dmabuf, importer) =
        super::export::export_and_import(ctx, Which::Edu, 0, &ranges(&[(0, 16 * PAGE)]))?;
    Ok((importer, dmabuf))
}

/// `request` on `fd` with the bytes `arg` as its argument, at the end of a
/// page of its own, must fail with `errno`.
fn refused_with(what: &str, fd: BorrowedFd<'_>, request: u32, arg: &[u8], errno: i32) -> Outcome {
    let pages = must("mmap", Pages::new())?;
    let at = pages.put(arg, 0);
    refused(what, ioctl_at(fd, request, at), errno)
}

/// IMPORT of `arg` on a fresh importer file must fail with `errno`.
fn bad_import(what: &str, arg: &[u8], errno: i32) -> Outcome {
    let importer = Importer::open()?;
    refused_with(
        what,
        importer.fd(),
        uapi::VFIO_DMABUF_IMP_IMPORT,
        arg,
        errno,
    )
}

type Run = fn(&mut Context) -> Outcome;

/// The refusals; `invalid.rs` runs them after its own, between the count of
/// open files and the check that none leaked.
pub(super) const CASES: &[(&str, Run)] = &[
    (
        "importer: IMPORT with argsz short fails with EINVAL",
        |_| {
            let mut arg = import_arg(-1);
            all_of([0, 8, 16].map(|argsz| {
                arg.argsz = argsz;
                bad_import(
                    &format!("IMPORT with argsz {argsz}"),
                    &bytes(&arg),
                    libc::EINVAL,
                )
            }))
        },
    ),
    ("importer: IMPORT with flags set fails with EINVAL", |_| {
        let mut arg = import_arg(-1);
        arg.flags = 1;
        bad_import("IMPORT with flags 1", &bytes(&arg), libc::EINVAL)
    }),
    (
        "importer: IMPORT with __reserved set fails with EINVAL",
        |_| {
            let mut arg = import_arg(-1);
            arg.__reserved = 1;
            bad_import("IMPORT with __reserved 1", &bytes(&arg), libc::EINVAL)
        },
    ),
    (
        "importer: IMPORT with a non-zero byte past the structure fails with E2BIG",
        |ctx| {
            let (_, dmabuf) = imported(ctx)?;
            let mut arg = bytes(&import_arg(dmabuf.as_raw_fd()));
            arg[0] += 8;
            arg.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1]);
            bad_import("IMPORT with a non-zero tail", &arg, libc::E2BIG)
        },
    ),
    (
        "importer: IMPORT with zero bytes past the structure succeeds",
        |ctx| {
            let (_, dmabuf) = imported(ctx)?;
            let mut arg = bytes(&import_arg(dmabuf.as_raw_fd()));
            arg[0] += 8;
            arg.extend_from_slice(&[0; 8]);
            let importer = Importer::open()?;
            let pages = must("mmap", Pages::new())?;
            let at = pages.put(&arg, 0);
            must(
                "IMPORT with a zero tail",
                ioctl_at(importer.fd(), uapi::VFIO_DMABUF_IMP_IMPORT, at),
            )?;
            must("WALK", importer.walk(0, 1)).map(drop)
        },
    ),
    ("importer: IMPORT of fd -1 fails with EBADF", |_| {
        bad_import("IMPORT of fd -1", &bytes(&import_arg(-1)), libc::EBADF)
    }),
    (
        "importer: IMPORT of a closed descriptor fails with EBADF",
        |_| {
            bad_import(
                "IMPORT of fd 100000",
                &bytes(&import_arg(100_000)),
                libc::EBADF,
            )
        },
    ),
    (
        "importer: IMPORT of a file that is not a dma-buf fails with EINVAL",
        |_| {
            let null = must("open /dev/null", File::open("/dev/null"))?;
            let importer = Importer::open()?;
            all_of([
                bad_import(
                    "IMPORT of /dev/null",
                    &bytes(&import_arg(null.as_raw_fd())),
                    libc::EINVAL,
                ),
                bad_import(
                    "IMPORT of an importer file",
                    &bytes(&import_arg(importer.fd().as_raw_fd())),
                    libc::EINVAL,
                ),
            ])
        },
    ),
    (
        "importer: IMPORT of another exporter's (system heap) dma-buf fails with EINVAL",
        |_| {
            let heap = must("system heap buffer", system_heap_buffer(16 * PAGE))?;
            bad_import(
                "IMPORT of a system heap dma-buf",
                &bytes(&import_arg(heap.as_raw_fd())),
                libc::EINVAL,
            )
        },
    ),
    (
        "importer: IMPORT with the argument on an unmapped page fails with EFAULT",
        |_| {
            let importer = Importer::open()?;
            let pages = must("mmap", Pages::new())?;
            all_of([
                refused(
                    "IMPORT at NULL",
                    ioctl_at(importer.fd(), uapi::VFIO_DMABUF_IMP_IMPORT, 0),
                    libc::EFAULT,
                ),
                refused(
                    "IMPORT at an inaccessible page",
                    ioctl_at(importer.fd(), uapi::VFIO_DMABUF_IMP_IMPORT, pages.hole()),
                    libc::EFAULT,
                ),
            ])
        },
    ),
    (
        "importer: IMPORT with its output on a read-only page fails with EFAULT",
        |ctx| {
            let (_, dmabuf) = imported(ctx)?;
            let importer = Importer::open()?;
            let pages = must("mmap", Pages::new())?;
            let at = pages.put(&bytes(&import_arg(dmabuf.as_raw_fd())), 0);
            must("mprotect", pages.protect(0, libc::PROT_READ))?;
            refused(
                "IMPORT with a read-only argument",
                ioctl_at(importer.fd(), uapi::VFIO_DMABUF_IMP_IMPORT, at),
                libc::EFAULT,
            )
        },
    ),
    (
        "importer: WALK, GET_PFN and COUNTERS without an import fail with ENOENT",
        |_| {
            let importer = Importer::open()?;
            all_of([
                refused("WALK", importer.walk(0, 1), libc::ENOENT),
                refused("GET_PFN", importer.get_pfn(0), libc::ENOENT),
                refused("COUNTERS", importer.counters(), libc::ENOENT),
            ])
        },
    ),
    ("importer: WALK with argsz short fails with EINVAL", |ctx| {
        let (importer, _dmabuf) = imported(ctx)?;
        let mut arg = walk_arg(0, 0);
        arg.argsz -= 8;
        refused_with(
            "WALK",
            importer.fd(),
            uapi::VFIO_DMABUF_IMP_WALK,
            &bytes(&arg),
            libc::EINVAL,
        )
    }),
    (
        "importer: WALK with an unknown flag fails with EINVAL",
        |ctx| {
            let (importer, _dmabuf) = imported(ctx)?;
            refused("WALK with flag 4", importer.walk(4, 1), libc::EINVAL)
        },
    ),
    (
        "importer: WALK with a capacity but not by runs fails with EINVAL",
        |ctx| {
            let (importer, _dmabuf) = imported(ctx)?;
            let mut arg = walk_arg(0, 0);
            arg.capacity = 1;
            refused_with(
                "WALK",
                importer.fd(),
                uapi::VFIO_DMABUF_IMP_WALK,
                &bytes(&arg),
                libc::EINVAL,
            )
        },
    ),
    (
        "importer: WALK with its table on an unmapped page fails with EFAULT",
        |ctx| {
            let (importer, _dmabuf) = imported(ctx)?;
            let table = must("mmap", Pages::new())?;
            refused_with(
                "WALK",
                importer.fd(),
                uapi::VFIO_DMABUF_IMP_WALK,
                &bytes(&walk_arg(4, table.hole())),
                libc::EFAULT,
            )
        },
    ),
    (
        "importer: WALK with its table on a read-only page fails with EFAULT",
        |ctx| {
            let (importer, _dmabuf) = imported(ctx)?;
            let table = must("mmap", Pages::new())?;
            must("mprotect", table.protect(0, libc::PROT_READ))?;
            refused_with(
                "WALK",
                importer.fd(),
                uapi::VFIO_DMABUF_IMP_WALK,
                &bytes(&walk_arg(4, table.start())),
                libc::EFAULT,
            )
        },
    ),
    (
        "importer: WALK with its argument running into an unmapped page fails with EFAULT",
        |ctx| {
            let (importer, _dmabuf) = imported(ctx)?;
            let pages = must("mmap", Pages::new())?;
            let arg = bytes(&walk_arg(0, 0));
            let at = pages.put(&arg[..24], 0);
            refused(
                "WALK",
                ioctl_at(importer.fd(), uapi::VFIO_DMABUF_IMP_WALK, at),
                libc::EFAULT,
            )
        },
    ),
    (
        "importer: WALK with less room than the table writes only the room",
        |ctx| {
            let bar = *ctx.device(Which::Ivshmem)?.bar(2);
            let slice = ranges(&[(PAGE, 8 * PAGE)]);
            let (buffer, _dmabuf, importer) =
                super::export::export_and_import(ctx, Which::Ivshmem, 2, &slice)?;
            let expected = buffer.walk();
            ensure!(
                expected.len() >= 3,
                "the slice has {} blocks",
                expected.len()
            );
            let untouched = uapi::vfio_dmabuf_imp_segment {
                pgoff: u64::MAX,
                ..Default::default()
            };
            let mut table = vec![untouched; expected.len()];
            let mut arg = walk_arg(2, table.as_mut_ptr() as usize);
            // SAFETY: WALK writes its argument and at most `nr_segments` (2)
            // entries of `table`, which has more; any bytes make valid
            // entries.
            must("WALK", unsafe {
                sys::ioctl(importer.fd(), uapi::VFIO_DMABUF_IMP_WALK, &mut arg)
            })?;
            ensure!(
                arg.nr_segments as usize == expected.len(),
                "WALK reports {} entries, expected {}",
                arg.nr_segments,
                expected.len()
            );
            ensure!(
                table[0].pfn == bar.pfn() + 1
                    && table[1].pgoff == expected[1].pgoff
                    && table[2..].iter().all(|s| s.pgoff == u64::MAX),
                "the room was overrun or not filled: {:?}",
                &table[..3]
            );
            Ok(())
        },
    ),
    ("importer: GET_PFN past the end fails with ERANGE", |ctx| {
        let (importer, _dmabuf) = imported(ctx)?;
        all_of([
            refused("GET_PFN of page 16", importer.get_pfn(16), libc::ERANGE),
            refused(
                "GET_PFN of page 2^64-1",
                importer.get_pfn(u64::MAX),
                libc::ERANGE,
            ),
        ])
    }),
    (
        "importer: GET_PFN with flags set fails with EINVAL",
        |ctx| {
            let (importer, _dmabuf) = imported(ctx)?;
            let mut arg = uapi::vfio_dmabuf_imp_pfn {
                argsz: uapi::argsz::<uapi::vfio_dmabuf_imp_pfn>(),
                flags: 1,
                ..Default::default()
            };
            // SAFETY: GET_PFN writes only its argument, which holds no address.
            refused(
                "GET_PFN",
                unsafe { sys::ioctl(importer.fd(), uapi::VFIO_DMABUF_IMP_GET_PFN, &mut arg) },
                libc::EINVAL,
            )
        },
    ),
    (
        "importer: GET_PFN with argsz short fails with EINVAL",
        |ctx| {
            let (importer, _dmabuf) = imported(ctx)?;
            let arg = uapi::vfio_dmabuf_imp_pfn {
                argsz: uapi::argsz::<uapi::vfio_dmabuf_imp_pfn>() - 8,
                ..Default::default()
            };
            refused_with(
                "GET_PFN",
                importer.fd(),
                uapi::VFIO_DMABUF_IMP_GET_PFN,
                &bytes(&arg),
                libc::EINVAL,
            )
        },
    ),
    (
        "importer: GET_PFN with its output on a read-only page fails with EFAULT",
        |ctx| {
            let (importer, _dmabuf) = imported(ctx)?;
            let arg = uapi::vfio_dmabuf_imp_pfn {
                argsz: uapi::argsz::<uapi::vfio_dmabuf_imp_pfn>(),
                pgoff: 3,
                ..Default::default()
            };
            let pages = must("mmap", Pages::new())?;
            let at = pages.put(&bytes(&arg), 0);
            must("mprotect", pages.protect(0, libc::PROT_READ))?;
            refused(
                "GET_PFN",
                ioctl_at(importer.fd(), uapi::VFIO_DMABUF_IMP_GET_PFN, at),
                libc::EFAULT,
            )
        },
    ),
    (
        "importer: WALK with a non-zero byte past the structure fails with E2BIG",
        |ctx| {
            let (importer, _dmabuf) = imported(ctx)?;
            let mut arg = bytes(&walk_arg(0, 0));
            arg[0] += 8;
            arg.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0]);
            refused_with(
                "WALK",
                importer.fd(),
                uapi::VFIO_DMABUF_IMP_WALK,
                &arg,
                libc::E2BIG,
            )
        },
    ),
    (
        "importer: COUNTERS with flags set fails with EINVAL",
        |ctx| {
            let (importer, _dmabuf) = imported(ctx)?;
            let arg = uapi::vfio_dmabuf_imp_counters {
                argsz: uapi::argsz::<uapi::vfio_dmabuf_imp_counters>(),
                flags: 1,
                ..Default::default()
            };
            refused_with(
                "COUNTERS",
                importer.fd(),
                uapi::VFIO_DMABUF_IMP_COUNTERS,
                &bytes(&arg),
                libc::EINVAL,
            )
        },
    ),
    (
        "importer: COUNTERS with argsz short or its output read-only fails",
        |ctx| {
            let (importer, _dmabuf) = imported(ctx)?;
            let mut arg = uapi::vfio_dmabuf_imp_counters {
                argsz: uapi::argsz::<uapi::vfio_dmabuf_imp_counters>() - 8,
                ..Default::default()
            };
            let pages = must("mmap", Pages::new())?;
            let short = pages.put(&bytes(&arg), 0);
            arg.argsz += 8;
            let readonly = pages.put(&bytes(&arg), 128);
            must("mprotect", pages.protect(0, libc::PROT_READ))?;
            all_of([
                refused(
                    "COUNTERS with argsz short",
                    ioctl_at(importer.fd(), uapi::VFIO_DMABUF_IMP_COUNTERS, short),
                    libc::EINVAL,
                ),
                refused(
                    "COUNTERS on a read-only page",
                    ioctl_at(importer.fd(), uapi::VFIO_DMABUF_IMP_COUNTERS, readonly),
                    libc::EFAULT,
                ),
            ])
        },
    ),
    (
        "importer: unknown ioctls and the exporter's fail with ENOTTY",
        |_| {
            let importer = Importer::open()?;
            let pages = must("mmap", Pages::new())?;
            let at = pages.start();
            all_of(
                [
                    uapi::VFIO_DMABUF_INFO,
                    uapi::VFIO_DMABUF_UNDEFINED,
                    // In the importer's range (0x10-0x1F), none of its requests.
                    0xdb1f,
                    0,
                ]
                .map(|request| {
                    refused(
                        &format!("ioctl {request:#x} on the importer"),
                        ioctl_at(importer.fd(), request, at),
                        libc::ENOTTY,
                    )
                }),
            )
        },
    ),
    (
        "exporter: INFO with its argument unmapped or read-only fails with EFAULT",
        |ctx| {
            let exporter = &ctx.device(Which::Edu)?.exporter;
            let pages = must("mmap", Pages::new())?;
            let info = uapi::vfio_dmabuf_info {
                argsz: uapi::argsz::<uapi::vfio_dmabuf_info>(),
                ..Default::default()
            };
            let at = pages.put(&bytes(&info), 0);
            must("mprotect", pages.protect(0, libc::PROT_READ))?;
            all_of([
                refused(
                    "INFO at NULL",
                    ioctl_at(exporter.fd(), uapi::VFIO_DMABUF_INFO, 0),
                    libc::EFAULT,
                ),
                refused(
                    "INFO at an inaccessible page",
                    ioctl_at(exporter.fd(), uapi::VFIO_DMABUF_INFO, pages.hole()),
                    libc::EFAULT,
                ),
                refused(
                    "INFO on a read-only page",
                    ioctl_at(exporter.fd(), uapi::VFIO_DMABUF_INFO, at),
                    libc::EFAULT,
                ),
            ])
        },
    ),
    (
        "exporter: EXPORT with its ranges running into an unmapped page fails with EFAULT",
        |ctx| {
            let exporter = &ctx.device(Which::Edu)?.exporter;
            let request = ExportRequest::new(0, &ranges(&[(0, PAGE), (PAGE, PAGE)]));
            let words: Vec<u8> = request
                .words()
                .iter()
                .flat_map(|w| w.to_ne_bytes())
                .collect();
            let pages = must("mmap", Pages::new())?;
            // All but the last range's length: it lies on the next page.
            let at = pages.put(&words[..words.len() - 8], 0);
            all_of([
                refused(
                    "EXPORT",
                    ioctl_at(exporter.fd(), uapi::VFIO_DMABUF_EXPORT, at),
                    libc::EFAULT,
                ),
                refused(
                    "EXPORT at NULL",
                    ioctl_at(exporter.fd(), uapi::VFIO_DMABUF_EXPORT, 0),
                    libc::EFAULT,
                ),
            ])
        },
    ),
    (
        "exporter: REVOKE and RESTORE with their argument unmapped fail with EFAULT",
        |ctx| {
            let exporter = &ctx.device(Which::Edu)?.exporter;
            let pages = must("mmap", Pages::new())?;
            all_of(
                [uapi::VFIO_DMABUF_REVOKE, uapi::VFIO_DMABUF_RESTORE].map(|request| {
                    refused(
                        &format!("{request:#x} at an inaccessible page"),
                        ioctl_at(exporter.fd(), request, pages.hole()),
                        libc::EFAULT,
                    )
                }),
            )
        },
    ),
    (
        "exporter: EXPORT with nr_ranges 2^32-1 fails with E2BIG before allocating",
        |ctx| {
            let exporter = &ctx.device(Which::Edu)?.exporter;
            let mut request = ExportRequest::new(0, &ranges(&[(0, PAGE)]));
            request.head.nr_ranges = u32::MAX;
            refused("EXPORT", exporter.export(&request), libc::E2BIG)
        },
    ),
    (
        "exporter: EXPORT of the most ranges allowed (256) succeeds",
        |ctx| {
            let exporter = &ctx.device(Which::Edu)?.exporter;
            let many: Vec<(u64, u64)> = (0..u64::from(uapi::VFIO_DMABUF_MAX_RANGES))
                .map(|i| (i * PAGE, PAGE))
                .collect();
            let fd = must(
                "EXPORT",
                exporter.export(&ExportRequest::new(0, &ranges(&many))),
            )?;
            let size = must("lseek", sys::file_size(fd.as_fd()))?;
            ensure!(size == 256 * PAGE, "the dma-buf is {size:#x} bytes");
            must("close", sys::close(fd))
        },
    ),
    (
        "exporter: EXPORT with an open_flags bit beyond O_ACCMODE|O_CLOEXEC fails with EINVAL",
        |ctx| {
            let exporter = &ctx.device(Which::Edu)?.exporter;
            all_of(
                [libc::O_NONBLOCK, libc::O_SYNC, libc::O_CREAT, 1 << 30].map(|bad| {
                    let mut request = ExportRequest::new(0, &ranges(&[(0, PAGE)]));
                    request.head.open_flags = libc::O_RDWR as u32 | bad as u32;
                    refused(
                        &format!("EXPORT with open_flags {bad:#o}"),
                        exporter.export(&request),
                        libc::EINVAL,
                    )
                }),
            )
        },
    ),
];

/// A `len`-byte dma-buf from the system heap (`/dev/dma_heap/system`), an
/// exporter with a scatterlist.
fn system_heap_buffer(len: u64) -> io::Result<OwnedFd> {
    #[repr(C)]
    struct AllocationData {
        len: u64,
        fd: u32,
        fd_flags: u32,
        heap_flags: u64,
    }
    // DMA_HEAP_IOCTL_ALLOC: _IOWR('H', 0x0, struct dma_heap_allocation_data)
    const ALLOC: u32 =
        (3 << 30) | ((size_of::<AllocationData>() as u32) << 16) | (b'H' as u32) << 8;
    let heap = File::open("/dev/dma_heap/system")?;
    let mut data = AllocationData {
        len,
        fd: 0,
        fd_flags: (libc::O_RDWR | libc::O_CLOEXEC) as u32,
        heap_flags: 0,
    };
    // SAFETY: ALLOC reads and writes only `data`, whose layout is the
    // header's.
    let ret = unsafe { libc::ioctl(heap.as_raw_fd(), libc::Ioctl::from(ALLOC), &raw mut data) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    sys::owned_fd(data.fd as i32)
}
