// SPDX-License-Identifier: GPL-2.0

//! VFIO's requests on `/dev/vfio-dmabuf/<address>` (SPEC §3, issue 14),
//! with `<linux/vfio.h>`'s structures as a VFIO program sends them
//! (`vfio_dmabuf_uapi::vfio`): `VFIO_DEVICE_GET_INFO` and
//! `VFIO_DEVICE_GET_REGION_INFO` against sysfs, every refusal of
//! `VFIO_DEVICE_FEATURE` with the errno the header documents, `PROBE`, and
//! `GET` exports that match `VFIO_DMABUF_EXPORT` of the same ranges through
//! the test importer; this driver's own REVOKE and RESTORE with a larger
//! `argsz`.
//!
//! Then the cross-driver program: one function ([`vfio::export_region`])
//! that makes the discovery and the export a VFIO program makes, run on
//! ivshmem bound to this driver and on ivshmem bound to vfio-pci in no-IOMMU
//! mode; both buffers, imported by the test importer, have the same size and
//! the same page frames, those sysfs's BAR start and the ranges give.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use vfio_dmabuf_uapi::vfio::{
    self, vfio_region_dma_range, FeatureRequest, VfioDevice, VFIO_DEVICE_FEATURE_DMA_BUF,
    VFIO_DEVICE_FEATURE_GET, VFIO_DEVICE_FEATURE_PROBE, VFIO_DEVICE_FEATURE_SET,
    VFIO_DEVICE_FLAGS_PCI,
};

use super::export::{check_walk, export_and_import};
use super::runs::{
    compare_frames, compare_runs, expected_frames, expected_runs, frames_of, runs_of, Run,
};
use super::setup;
use super::{
    all_of, case, ensure, must, refused, Case, Context, Device, Failure, Outcome, Shared, Which,
};
use crate::expect::{self, ranges, Buffer, PAGE};
use crate::exporter::{ExportRequest, RevokeWithTail, OPEN_FLAGS};
use crate::importer::Importer;
use crate::pci::{self, Function};
use crate::sys;
use crate::uapi;

/// The highest page-aligned offset: adding a page to it overflows.
const LAST_PAGE: u64 = !(PAGE - 1);
/// `VFIO_PCI_ROM_REGION_INDEX`: the first region index that is not a BAR.
const ROM_REGION_INDEX: u32 = 6;
/// The BARs the character device describes as regions.
const NUM_BARS: u32 = uapi::VFIO_DMABUF_NUM_BARS;
/// The importer's largest capacity for a walk by runs.
const MAX_CAPACITY: u32 = uapi::VFIO_DMABUF_IMP_MAX_CAPACITY;
/// ivshmem's shared memory BAR.
const IVSHMEM_BAR: u32 = 2;
/// Where the no-IOMMU mode of VFIO is switched on.
const NOIOMMU_MODE: &str = "/sys/module/vfio/parameters/enable_unsafe_noiommu_mode";
/// vfio-pci, as the PCI core names the driver.
const VFIO_PCI: &str = "vfio-pci";

fn dma_ranges(pairs: &[(u64, u64)]) -> Vec<vfio_region_dma_range> {
    pairs.iter().map(|&pair| pair.into()).collect()
}

/// A well-formed GET of `pairs` of BAR `region_index`.
fn get(region_index: u32, pairs: &[(u64, u64)]) -> FeatureRequest {
    FeatureRequest::dma_buf_get(region_index, OPEN_FLAGS, &dma_ranges(pairs))
}

/// Makes a well-formed GET of one page of BAR0 bad, given the device.
type Spoil = fn(&Device, &mut FeatureRequest);

/// `VFIO_DEVICE_FEATURE` requests the device must refuse: the device, the
/// errno its header documents, and how the request is spoilt.
const FEATURE_REFUSALS: &[(&str, Which, i32, Spoil)] = &[
    ("argsz 0", Which::Edu, libc::EINVAL, |_, r| r.head.argsz = 0),
    (
        "argsz 4, short of the head",
        Which::Edu,
        libc::EINVAL,
        |_, r| r.head.argsz = 4,
    ),
    (
        "GET with argsz 8, the head alone",
        Which::Edu,
        libc::EINVAL,
        |_, r| r.head.argsz = 8,
    ),
    (
        "GET with argsz 23, short of the dma-buf data",
        Which::Edu,
        libc::EINVAL,
        |_, r| r.head.argsz = 8 + 16 - 1,
    ),
    (
        "an unknown flag (1 << 19)",
        Which::Edu,
        libc::EINVAL,
        |_, r| r.head.flags |= 1 << 19,
    ),
    (
        "an unknown flag (1 << 31)",
        Which::Edu,
        libc::EINVAL,
        |_, r| r.head.flags |= 1 << 31,
    ),
    (
        "GET and SET without PROBE",
        Which::Edu,
        libc::EINVAL,
        |_, r| r.head.flags |= VFIO_DEVICE_FEATURE_SET,
    ),
    ("SET", Which::Edu, libc::EINVAL, |_, r| {
        r.head.flags = VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_DMA_BUF;
    }),
    ("PROBE of SET", Which::Edu, libc::EINVAL, |_, r| {
        r.head.flags =
            VFIO_DEVICE_FEATURE_PROBE | VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_DMA_BUF;
    }),
    (
        "neither GET, SET nor PROBE",
        Which::Edu,
        libc::EINVAL,
        |_, r| r.head.flags = VFIO_DEVICE_FEATURE_DMA_BUF,
    ),
    ("GET of feature 0", Which::Edu, libc::ENOTTY, |_, r| {
        r.head.flags = VFIO_DEVICE_FEATURE_GET;
    }),
    (
        "GET of feature 1 (VFIO_DEVICE_FEATURE_PCI_VF_TOKEN)",
        Which::Edu,
        libc::ENOTTY,
        |_, r| r.head.flags = VFIO_DEVICE_FEATURE_GET | 1,
    ),
    ("GET of feature 12", Which::Edu, libc::ENOTTY, |_, r| {
        r.head.flags = VFIO_DEVICE_FEATURE_GET | 12;
    }),
    (
        "PROBE of feature 0xffff",
        Which::Edu,
        libc::ENOTTY,
        |_, r| {
            r.head.flags = VFIO_DEVICE_FEATURE_PROBE | 0xffff;
        },
    ),
    ("nr_ranges 0", Which::Edu, libc::EINVAL, |_, r| {
        *r = get(0, &[]);
    }),
    (
        "flags 1 in the dma-buf data",
        Which::Edu,
        libc::EINVAL,
        |_, r| r.dma_buf.flags = 1,
    ),
    (
        "region_index 6 (the ROM)",
        Which::Edu,
        libc::ENODEV,
        |_, r| r.dma_buf.region_index = ROM_REGION_INDEX,
    ),
    (
        "region_index 7 (the configuration space)",
        Which::Edu,
        libc::ENODEV,
        |_, r| r.dma_buf.region_index = ROM_REGION_INDEX + 1,
    ),
    (
        "region_index 0xffffffff",
        Which::Edu,
        libc::ENODEV,
        |_, r| r.dma_buf.region_index = u32::MAX,
    ),
    (
        "an absent BAR (edu BAR1)",
        Which::Edu,
        libc::ENODEV,
        |_, r| r.dma_buf.region_index = 1,
    ),
    (
        "the upper half of a 64-bit BAR (ivshmem BAR3)",
        Which::Ivshmem,
        libc::ENODEV,
        |_, r| r.dma_buf.region_index = 3,
    ),
    (
        "an I/O BAR (pci-testdev BAR1)",
        Which::Testdev,
        libc::EINVAL,
        |_, r| r.dma_buf.region_index = 1,
    ),
    ("257 ranges", Which::Edu, libc::E2BIG, |_, r| {
        *r = get(
            0,
            &vec![(0, PAGE); uapi::VFIO_DMABUF_MAX_RANGES as usize + 1],
        );
    }),
    (
        "a zero-length range after a good one",
        Which::Edu,
        libc::EINVAL,
        |_, r| *r = get(0, &[(0, PAGE), (PAGE, 0)]),
    ),
    (
        "a range at an offset not page aligned",
        Which::Edu,
        libc::EINVAL,
        |_, r| *r = get(0, &[(PAGE / 2, PAGE)]),
    ),
    (
        "a range of a length not page aligned",
        Which::Edu,
        libc::EINVAL,
        |_, r| *r = get(0, &[(0, PAGE + PAGE / 2)]),
    ),
    (
        "a range past the end of the BAR",
        Which::Edu,
        libc::EINVAL,
        |d, r| *r = get(0, &[(d.bar(0).size() - PAGE, 2 * PAGE)]),
    ),
    (
        "a range at the end of the BAR",
        Which::Edu,
        libc::EINVAL,
        |d, r| *r = get(0, &[(d.bar(0).size(), PAGE)]),
    ),
    (
        "a range whose offset plus length overflows",
        Which::Edu,
        libc::EOVERFLOW,
        |_, r| *r = get(0, &[(LAST_PAGE, PAGE)]),
    ),
    (
        "a range whose length plus offset overflows",
        Which::Edu,
        libc::EOVERFLOW,
        |_, r| *r = get(0, &[(PAGE, LAST_PAGE)]),
    ),
    (
        "a range past the end, then one that overflows (the first decides)",
        Which::Edu,
        libc::EINVAL,
        |d, r| *r = get(0, &[(0, PAGE), (d.bar(0).size(), PAGE), (LAST_PAGE, PAGE)]),
    ),
    (
        "a range that overflows, then one past the end (the first decides)",
        Which::Edu,
        libc::EOVERFLOW,
        |d, r| *r = get(0, &[(0, PAGE), (LAST_PAGE, PAGE), (d.bar(0).size(), PAGE)]),
    ),
];

/// The device's file, for VFIO's requests.
fn fd(device: &Device) -> BorrowedFd<'_> {
    device.exporter.fd()
}

pub(super) fn cases() -> Vec<Case> {
    let mut cases: Vec<Case> = Vec::new();
    for which in Which::ALL {
        cases.push(case(
            format!(
                "VFIO: GET_INFO on {} says a PCI device with 6 regions and no interrupts",
                which.name()
            ),
            move |ctx| device_info(ctx, which),
        ));
        cases.push(case(
            format!(
                "VFIO: GET_REGION_INFO on {} gives each BAR's size as sysfs resource does, and no access flags",
                which.name()
            ),
            move |ctx| region_sizes(ctx, which),
        ));
        cases.push(case(
            format!(
                "VFIO: GET_REGION_INFO on {} gives each BAR offset 0 and no capabilities, as the header documents (nothing is accessed through this device)",
                which.name()
            ),
            move |ctx| region_offsets(ctx, which),
        ));
    }
    let open_before = Shared::<usize>::new();
    let record = open_before.clone();
    cases.push(case(
        "VFIO: GET_REGION_INFO of index 6 and above, or with argsz short, fails with EINVAL",
        move |ctx| {
            record.set(must("counting /proc/self/fd", sys::open_fds())?);
            region_refusals(ctx)
        },
    ));
    for &(what, which, errno, spoil) in FEATURE_REFUSALS {
        cases.push(case(
            format!(
                "VFIO: FEATURE(DMA_BUF) with {what} fails with {}",
                sys::name(errno)
            ),
            move |ctx| bad_feature(ctx, which, errno, spoil),
        ));
    }
    cases.push(case(
        "VFIO: the refused VFIO requests leave no file descriptor behind",
        move |_| {
            let before = open_before.take()?;
            let after = must("counting /proc/self/fd", sys::open_fds())?;
            ensure!(after == before, "{before} open files before, {after} after");
            Ok(())
        },
    ));
    cases.extend([
        case(
            "VFIO: PROBE of DMA_BUF, alone and with GET, succeeds with 0 and exports nothing",
            probe,
        ),
        case(
            "VFIO: GET whose argsz covers no range still exports the ranges that follow",
            get_short_argsz,
        ),
        case(
            "VFIO: GET of ivshmem BAR2 whole equals EXPORT of it: same size, same tables by max_order and by runs",
            |ctx| {
                let size = ctx.device(Which::Ivshmem)?.bar(IVSHMEM_BAR).size();
                get_equals_export(ctx, &[(0, size)])
            },
        ),
        case(
            "VFIO: GET of a 3-range unaligned slice of ivshmem BAR2 equals EXPORT of it: same size, same tables by max_order and by runs",
            |ctx| {
                let size = ctx.device(Which::Ivshmem)?.bar(IVSHMEM_BAR).size();
                get_equals_export(
                    ctx,
                    &[(0x5000, PAGE), (0x20_1000, 0x3f_f000), (size - PAGE, PAGE)],
                )
            },
        ),
        case(
            "VFIO: GET's dma-buf has the access mode and close-on-exec of open_flags",
            get_open_flags,
        ),
        case(
            "REVOKE and RESTORE with a larger argsz and zero bytes past the structure succeed",
            change_zero_tail,
        ),
        case(
            "REVOKE and RESTORE with a non-zero byte past the structure fail with E2BIG and change nothing",
            change_nonzero_tail,
        ),
    ]);
    cases
}

fn device_info(ctx: &mut Context, which: Which) -> Outcome {
    let device = ctx.device(which)?;
    let argsz = uapi::argsz::<vfio::vfio_device_info>();
    let (info, bytes) = must(
        "VFIO_DEVICE_GET_INFO",
        vfio::device_info_raw(fd(device), argsz),
    )?;
    let note = format!("{}: {info:?}", which.name());
    ensure!(
        info.argsz == argsz
            && info.flags == VFIO_DEVICE_FLAGS_PCI
            && info.num_regions == ROM_REGION_INDEX
            && info.num_irqs == 0,
        "{info:?}, expected argsz {argsz}, flags VFIO_DEVICE_FLAGS_PCI, 6 regions, 0 interrupts"
    );
    ensure!(
        bytes[argsz as usize..].iter().all(|&b| b == 0xff),
        "the kernel wrote past argsz {argsz}: {bytes:02x?}"
    );
    // vfio-pci's minimum is the structure up to num_irqs: 16 bytes.
    let (short, bytes) = must(
        "VFIO_DEVICE_GET_INFO with argsz 16",
        vfio::device_info_raw(fd(device), 16),
    )?;
    ensure!(
        short.num_regions == ROM_REGION_INDEX && bytes[16..].iter().all(|&b| b == 0xff),
        "with argsz 16: {short:?}, bytes {bytes:02x?}"
    );
    let refusals = all_of([12, 0].map(|argsz| {
        refused(
            &format!("VFIO_DEVICE_GET_INFO with argsz {argsz}"),
            vfio::device_info_raw(fd(device), argsz),
            libc::EINVAL,
        )
    }));
    ctx.note(note);
    refusals
}

fn region_sizes(ctx: &mut Context, which: Which) -> Outcome {
    let device = ctx.device(which)?;
    let mut wrong = Vec::new();
    let mut notes = Vec::new();
    for index in 0..NUM_BARS {
        let bar = device.bar(index);
        let info = must(
            &format!("VFIO_DEVICE_GET_REGION_INFO of {index}"),
            vfio::region_info(fd(device), index),
        )?;
        if info.size != bar.size()
            || info.flags != 0
            || info.index != index
            || info.cap_offset != 0
            || info.argsz != uapi::argsz::<vfio::vfio_region_info>()
        {
            wrong.push(format!(
                "region {index}: {info:x?}, expected size {:#x} (resource {:#x}-{:#x}), flags 0, cap_offset 0",
                bar.size(),
                bar.start,
                bar.end
            ));
        }
        if info.size != 0 {
            notes.push(format!("region {index}: {}", expect::human(info.size)));
        }
    }
    ctx.note(notes.join(", "));
    ensure!(wrong.is_empty(), "{}", wrong.join("\n"));
    Ok(())
}

fn region_offsets(ctx: &mut Context, which: Which) -> Outcome {
    let device = ctx.device(which)?;
    let mut wrong = Vec::new();
    for index in 0..NUM_BARS {
        let info = must(
            &format!("VFIO_DEVICE_GET_REGION_INFO of {index}"),
            vfio::region_info(fd(device), index),
        )?;
        if info.offset != 0 || info.cap_offset != 0 {
            wrong.push(format!(
                "region {index}: offset {:#x}, cap_offset {:#x}, expected both 0",
                info.offset, info.cap_offset
            ));
        }
    }
    ensure!(wrong.is_empty(), "{}", wrong.join("\n"));
    Ok(())
}

fn region_refusals(ctx: &mut Context) -> Outcome {
    let device = ctx.device(Which::Ivshmem)?;
    let full = uapi::argsz::<vfio::vfio_region_info>();
    let mut checks = Vec::new();
    for index in [ROM_REGION_INDEX, 7, 8, 9, u32::MAX] {
        checks.push(refused(
            &format!("VFIO_DEVICE_GET_REGION_INFO of {index}"),
            vfio::region_info(fd(device), index),
            libc::EINVAL,
        ));
    }
    for argsz in [full - 1, 16, 0] {
        checks.push(refused(
            &format!("VFIO_DEVICE_GET_REGION_INFO of BAR2 with argsz {argsz}"),
            vfio::region_info_raw(fd(device), IVSHMEM_BAR, argsz),
            libc::EINVAL,
        ));
    }
    all_of(checks)
}

/// FEATURE(DMA_BUF) GET of one page of `which`'s BAR0, spoilt by `spoil`,
/// must fail with `errno`.
fn bad_feature(ctx: &mut Context, which: Which, errno: i32, spoil: Spoil) -> Outcome {
    let device = ctx.device(which)?;
    let mut request = get(0, &[(0, PAGE)]);
    spoil(device, &mut request);
    let what = format!(
        "VFIO_DEVICE_FEATURE on {} with flags {:#x}, argsz {}, region {}, {} range(s)",
        which.name(),
        request.head.flags,
        request.head.argsz,
        request.dma_buf.region_index,
        request.dma_buf.nr_ranges
    );
    match vfio::feature(fd(device), &request) {
        Ok(ret) => {
            // Whatever the kernel gave, do not leak it.
            if ret > 0 {
                drop(sys::owned_fd(ret));
            }
            Err(Failure::Fail(format!(
                "{what}: returned {ret}, expected {}",
                sys::name(errno)
            )))
        }
        result => refused(&what, result, errno),
    }
}

fn probe(ctx: &mut Context) -> Outcome {
    let device = ctx.device(Which::Ivshmem)?;
    let before = must("counting /proc/self/fd", sys::open_fds())?;
    let alone = FeatureRequest::probe(VFIO_DEVICE_FEATURE_DMA_BUF);
    let mut with_get = get(IVSHMEM_BAR, &[(0, PAGE)]);
    with_get.head.flags |= VFIO_DEVICE_FEATURE_PROBE;
    let mut checks = Vec::new();
    for (what, request) in [("PROBE", &alone), ("PROBE | GET", &with_get)] {
        checks.push(match vfio::feature(fd(device), request) {
            Ok(0) => Ok(()),
            Ok(ret) => {
                if ret > 0 {
                    drop(sys::owned_fd(ret));
                }
                Err(Failure::Fail(format!("{what}: returned {ret}, expected 0")))
            }
            Err(e) => Err(Failure::Fail(format!("{what}: {}", sys::describe(&e)))),
        });
    }
    let after = must("counting /proc/self/fd", sys::open_fds())?;
    checks.push(if after == before {
        Ok(())
    } else {
        Err(Failure::Fail(format!(
            "{before} open files before the probes, {after} after"
        )))
    });
    all_of(checks)
}

fn get_short_argsz(ctx: &mut Context) -> Outcome {
    let device = ctx.device(Which::Edu)?;
    let pairs = [(PAGE, 2 * PAGE), (0, PAGE)];
    let mut request = get(0, &pairs);
    request.head.argsz = 8 + 16;
    let ret = must(
        "VFIO_DEVICE_FEATURE GET with argsz 24",
        vfio::feature(fd(device), &request),
    )?;
    let dmabuf = must("the returned fd", sys::owned_fd(ret))?;
    let size = must("lseek(SEEK_END)", sys::file_size(dmabuf.as_fd()))?;
    ensure!(
        size == 3 * PAGE,
        "the dma-buf is {size:#x} bytes, expected the two ranges' {:#x}",
        3 * PAGE
    );
    let bar = *device.bar(0);
    let importer = Importer::open()?;
    must("IMPORT", importer.import(dmabuf.as_fd()))?;
    let walk = must("WALK by runs", importer.walk_runs(MAX_CAPACITY, 16))?;
    compare_runs(&runs_of(&walk)?, &expected_runs(bar.start, &pairs))?;
    Ok(())
}

fn get_open_flags(ctx: &mut Context) -> Outcome {
    let device = ctx.device(Which::Edu)?;
    for (open_flags, mode, cloexec) in [
        (libc::O_RDONLY, libc::O_RDONLY, false),
        (libc::O_RDWR | libc::O_CLOEXEC, libc::O_RDWR, true),
        (libc::O_WRONLY | libc::O_CLOEXEC, libc::O_WRONLY, true),
    ] {
        let what = format!("GET with open_flags {open_flags:#o}");
        let dmabuf = must(
            &what,
            vfio::export_dma_buf(fd(device), 0, open_flags as u32, &dma_ranges(&[(0, PAGE)])),
        )?;
        let (status, fd_cloexec) = must("fcntl", sys::fd_flags(dmabuf.as_fd()))?;
        ensure!(
            status & libc::O_ACCMODE == mode && fd_cloexec == cloexec,
            "{what}: file flags {status:#o}, close-on-exec {fd_cloexec}"
        );
    }
    Ok(())
}

/// The tables a buffer's import gives: by `max_order` and by runs.
struct Tables {
    size: u64,
    blocks: Vec<expect::Entry>,
    block_frames: Vec<u64>,
    runs: Vec<Run>,
}

/// Imports `dmabuf` and walks it both ways; each table is checked against
/// what sysfs's BAR start and the ranges give.
fn tables(
    what: &str,
    dmabuf: BorrowedFd<'_>,
    bar: &pci::Resource,
    pairs: &[(u64, u64)],
) -> Result<Tables, Failure> {
    let buffer = Buffer::new(&ranges(pairs), bar)?;
    let size = must(&format!("{what}: lseek(SEEK_END)"), sys::file_size(dmabuf))?;
    let importer = Importer::open()?;
    let imported = must(&format!("{what}: IMPORT"), importer.import(dmabuf))?;
    ensure!(
        size == buffer.size() && imported == size,
        "{what}: the dma-buf is {size:#x} bytes and IMPORT says {imported:#x}, expected {:#x}",
        buffer.size()
    );
    let walk = check_walk(&importer, &buffer, None).map_err(|e| prefix(what, e))?;
    let blocks = must(
        &format!("{what}: WALK by max_order"),
        importer.walk_segments(0, 0, walk.table.len() + 16),
    )?;
    let block_frames = frames_of(&blocks).map_err(|e| format!("{what}: {e}"))?;
    compare_frames(
        &format!("{what}: max_order walk"),
        &block_frames,
        &expected_frames(bar.start, pairs),
    )?;
    let expected = expected_runs(bar.start, pairs);
    let runs_walk = must(
        &format!("{what}: WALK by runs"),
        importer.walk_runs(MAX_CAPACITY, expected.len() + 16),
    )?;
    let runs = runs_of(&runs_walk).map_err(|e| format!("{what}: {e}"))?;
    compare_runs(&runs, &expected).map_err(|e| format!("{what}: {e}"))?;
    Ok(Tables {
        size,
        blocks: walk.table,
        block_frames,
        runs,
    })
}

fn prefix(what: &str, failure: Failure) -> Failure {
    match failure {
        Failure::Fail(message) => Failure::Fail(format!("{what}: {message}")),
        skip => skip,
    }
}

/// The two buffers' tables are the same.
fn same_tables(a: (&str, &Tables), b: (&str, &Tables)) -> Outcome {
    let (an, at) = a;
    let (bn, bt) = b;
    ensure!(
        at.size == bt.size,
        "{an} is {:#x} bytes, {bn} {:#x}",
        at.size,
        bt.size
    );
    expect::compare(&at.blocks, &bt.blocks)
        .map_err(|e| format!("max_order walks, {an} against {bn}: {e}"))?;
    compare_frames(
        &format!("{an} against {bn}"),
        &at.block_frames,
        &bt.block_frames,
    )?;
    compare_runs(&at.runs, &bt.runs).map_err(|e| format!("runs, {an} against {bn}: {e}"))?;
    Ok(())
}

fn get_equals_export(ctx: &mut Context, pairs: &[(u64, u64)]) -> Outcome {
    let device = ctx.device(Which::Ivshmem)?;
    let bar = *device.bar(IVSHMEM_BAR);
    let by_vfio = must(
        "VFIO_DEVICE_FEATURE(DMA_BUF) GET",
        vfio::export_dma_buf(fd(device), IVSHMEM_BAR, OPEN_FLAGS, &dma_ranges(pairs)),
    )?;
    let by_export = must(
        "VFIO_DMABUF_EXPORT",
        device
            .exporter
            .export(&ExportRequest::new(IVSHMEM_BAR, &ranges(pairs))),
    )?;
    let a = tables("GET", by_vfio.as_fd(), &bar, pairs)?;
    let b = tables("EXPORT", by_export.as_fd(), &bar, pairs)?;
    same_tables(("GET", &a), ("EXPORT", &b))?;
    ctx.note(format!(
        "{} range(s), {}: {} blocks, {} runs",
        pairs.len(),
        expect::human(a.size),
        a.blocks.len(),
        a.runs.len()
    ));
    Ok(())
}

/// Imports and walks the whole of edu's BAR0; the buffer and its importer.
fn edu_imported(ctx: &Context) -> Result<(Buffer, OwnedFd, Importer), Failure> {
    let size = ctx.device(Which::Edu)?.bar(0).size();
    let (buffer, dmabuf, importer) = export_and_import(ctx, Which::Edu, 0, &ranges(&[(0, size)]))?;
    check_walk(&importer, &buffer, None)?;
    Ok((buffer, dmabuf, importer))
}

/// GET_PFN of page 0 answers what the buffer's reference says.
fn live(importer: &Importer, buffer: &Buffer) -> Outcome {
    let got = must("GET_PFN of page 0", importer.get_pfn(0))?;
    let expected = buffer
        .get_pfn(0)
        .ok_or_else(|| "an empty buffer".to_owned())?;
    ensure!(
        got == expected,
        "GET_PFN of page 0: {got:x?}, expected {expected:x?}"
    );
    Ok(())
}

fn change_zero_tail(ctx: &mut Context) -> Outcome {
    let (buffer, _dmabuf, importer) = edu_imported(ctx)?;
    let exporter = &ctx.device(Which::Edu)?.exporter;
    let mut revoke = RevokeWithTail::new(0, [0; 8]);
    let revoked = exporter.change_with_tail(uapi::VFIO_DMABUF_REVOKE, &mut revoke);
    let while_revoked = importer.get_pfn(0);
    let counters = importer.counters();
    let mut restore = RevokeWithTail::new(0, [0; 8]);
    let restored = exporter.change_with_tail(uapi::VFIO_DMABUF_RESTORE, &mut restore);
    // edu's BAR0 is left live whatever happened.
    let _ = exporter.restore(0);
    must("REVOKE with argsz 24 and a zero tail", revoked)?;
    refused("GET_PFN after that REVOKE", while_revoked, libc::ENODEV)?;
    let counters = must("COUNTERS", counters)?;
    ensure!(
        counters.invalidations == 1,
        "{} invalidations after REVOKE",
        counters.invalidations
    );
    must("RESTORE with argsz 24 and a zero tail", restored)?;
    ensure!(
        revoke.tail == [0; 8] && restore.tail == [0; 8] && revoke.arg.argsz == 24,
        "the kernel changed the arguments: {revoke:?} {restore:?}"
    );
    live(&importer, &buffer)
}

fn change_nonzero_tail(ctx: &mut Context) -> Outcome {
    let (buffer, _dmabuf, importer) = edu_imported(ctx)?;
    let exporter = &ctx.device(Which::Edu)?.exporter;
    let mut tail = [0u8; 8];
    tail[7] = 1;
    let mut revoke = RevokeWithTail::new(0, tail);
    let refused_revoke = exporter.change_with_tail(uapi::VFIO_DMABUF_REVOKE, &mut revoke);
    let still_live = live(&importer, &buffer);
    let revoked = exporter.revoke(0);
    let mut restore = RevokeWithTail::new(0, tail);
    let refused_restore = exporter.change_with_tail(uapi::VFIO_DMABUF_RESTORE, &mut restore);
    let still_revoked = importer.get_pfn(0);
    // edu's BAR0 is left live whatever happened.
    let restored = exporter.restore(0);
    all_of([
        refused("REVOKE with a non-zero tail", refused_revoke, libc::E2BIG),
        still_live.map_err(|e| prefix("after the refused REVOKE", e)),
        must("REVOKE", revoked),
        refused("RESTORE with a non-zero tail", refused_restore, libc::E2BIG),
        refused(
            "GET_PFN after the refused RESTORE",
            still_revoked,
            libc::ENODEV,
        ),
        must("RESTORE", restored),
    ])?;
    live(&importer, &buffer)
}

/// The exports the cross-driver program makes of ivshmem's BAR2: the whole
/// BAR, and a slice of ranges at odd pages, two of which follow on.
fn cross_slices(size: u64) -> [Vec<(u64, u64)>; 2] {
    [
        vec![(0, size)],
        vec![
            (0x5000, PAGE),
            (0x6000, 2 * PAGE),
            (0x20_1000, 0x3f_f000),
            (size - PAGE, PAGE),
        ],
    ]
}

/// One driver's exports of [`cross_slices`], with their tables.
struct Exports {
    tables: Vec<Tables>,
    /// The dma-bufs and their importers, kept for the cases that follow.
    kept: Vec<(OwnedFd, Importer)>,
    /// What GET_INFO and GET_REGION_INFO said.
    info: String,
}

/// What the cross-driver cases hand on.
#[derive(Default)]
struct Cross {
    function: Option<Function>,
    bar: pci::Resource,
    ours: Option<Exports>,
    vfio: Option<VfioDevice>,
    theirs: Option<Exports>,
}

/// Runs the program on `device` for every slice: [`vfio::export_region`],
/// then the import and both walks.
fn run_program(
    device: BorrowedFd<'_>,
    name: &str,
    bar: &pci::Resource,
) -> Result<Exports, Failure> {
    let mut tables_of = Vec::new();
    let mut kept = Vec::new();
    let mut info = String::new();
    for pairs in cross_slices(bar.size()) {
        let export = vfio::export_region(device, name, IVSHMEM_BAR, &dma_ranges(&pairs))
            .map_err(|e| Failure::Fail(e.to_string()))?;
        ensure!(
            export.region.size == bar.size(),
            "{name}: region {IVSHMEM_BAR} is {:#x} bytes, sysfs says {:#x}",
            export.region.size,
            bar.size()
        );
        info = format!(
            "{name}: GET_INFO flags {:#x}, {} regions, {} irqs; region {IVSHMEM_BAR}: {} flags {:#x} offset {:#x}",
            export.device.flags,
            export.device.num_regions,
            export.device.num_irqs,
            expect::human(export.region.size),
            export.region.flags,
            export.region.offset
        );
        let what = format!("{name}, {} range(s)", pairs.len());
        tables_of.push(tables(&what, export.dmabuf.as_fd(), bar, &pairs)?);
        let importer = Importer::open()?;
        must("IMPORT", importer.import(export.dmabuf.as_fd()))?;
        kept.push((export.dmabuf, importer));
    }
    Ok(Exports {
        tables: tables_of,
        kept,
        info,
    })
}

pub(super) fn cross_driver_cases() -> Vec<Case> {
    let state = Shared::<Cross>::new();
    let (s1, s2, s3, s4, s5, last) = (
        state.clone(),
        state.clone(),
        state.clone(),
        state.clone(),
        state.clone(),
        state,
    );
    vec![
        case(
            "vfio-pci: the VFIO program exports ivshmem BAR2 from vfio_dmabuf: the frames sysfs and the ranges give",
            move |ctx| {
                let device = ctx.device(Which::Ivshmem)?;
                let bar = *device.bar(IVSHMEM_BAR);
                let mut cross = Cross {
                    function: Some(device.function.clone()),
                    bar,
                    ..Cross::default()
                };
                let name = device.function.node().display().to_string();
                // The function is handed on whatever happens, so that the
                // last case binds it back.
                match run_program(fd(device), &name, &bar) {
                    Ok(ours) => {
                        ctx.note(ours.info.clone());
                        cross.ours = Some(ours);
                        s1.set(cross);
                        Ok(())
                    }
                    Err(e) => {
                        s1.set(cross);
                        Err(e)
                    }
                }
            },
        ),
        case(
            "vfio-pci: ivshmem binds to vfio-pci in no-IOMMU mode and opens through its group",
            move |ctx| s2.with(|cross| bind_vfio_pci(ctx, cross)),
        ),
        case(
            "vfio-pci: the same VFIO program on vfio-pci gives the same buffers: same size, same page frames by max_order and by runs",
            move |ctx| s3.with(|cross| compare_drivers(ctx, cross)),
        ),
        case(
            "vfio-pci: PROBE of DMA_BUF succeeds on vfio-pci as on vfio_dmabuf, and a run walk of a vfio-pci buffer with capacity 1 makes one call per run",
            move |_| s4.with(vfio_pci_probe_and_runs),
        ),
        case(
            "vfio-pci: memory decoding off revokes the vfio-pci buffer: the importer is told, a run walk fails with ENODEV, and works again once decoding is on",
            move |_| s5.with(vfio_pci_revoke),
        ),
        case(
            "vfio-pci: ivshmem binds back to vfio_dmabuf and the VFIO program works again",
            move |ctx| rebind(ctx, last.take()?),
        ),
    ]
}

fn bind_vfio_pci(ctx: &mut Context, cross: &mut Cross) -> Outcome {
    // Our buffers and imports stay open across the unbind (they are gone
    // then); the tables are what is compared.
    let device = ctx.take_device(Which::Ivshmem)?;
    let function = device.function.clone();
    must("closing the character device", device.exporter.close())?;
    must(
        &format!("writing 1 to {NOIOMMU_MODE}"),
        std::fs::write(NOIOMMU_MODE, "1"),
    )?;
    function.bind_to(VFIO_PCI)?;
    let group = function
        .iommu_group()
        .ok_or_else(|| format!("{} has no IOMMU group on vfio-pci", function.address))?;
    let node = format!("/dev/vfio/noiommu-{group}");
    ensure!(
        pci::wait_for(Path::new(&node), true, setup::NODE_TIMEOUT),
        "{node} did not appear"
    );
    let vfio = VfioDevice::open(&function.address).map_err(|e| Failure::Fail(e.to_string()))?;
    ctx.note(format!(
        "{} on vfio-pci, group {}",
        function.address,
        vfio.group_path().display()
    ));
    cross.vfio = Some(vfio);
    Ok(())
}

fn compare_drivers(ctx: &mut Context, cross: &mut Cross) -> Outcome {
    let vfio = cross
        .vfio
        .as_ref()
        .ok_or_else(|| Failure::Skip("vfio-pci is not open".to_owned()))?;
    let theirs = run_program(vfio.fd(), vfio.name(), &cross.bar)?;
    ctx.note(theirs.info.clone());
    let ours = cross
        .ours
        .as_ref()
        .ok_or_else(|| Failure::Skip("vfio_dmabuf's exports failed".to_owned()))?;
    let checks: Vec<Outcome> = ours
        .tables
        .iter()
        .zip(&theirs.tables)
        .map(|(a, b)| same_tables(("vfio_dmabuf", a), ("vfio-pci", b)))
        .collect();
    for (t, pairs) in theirs.tables.iter().zip(cross_slices(cross.bar.size())) {
        ctx.note(format!(
            "{} range(s): {}, {} blocks, {} runs on both",
            pairs.len(),
            expect::human(t.size),
            t.blocks.len(),
            t.runs.len()
        ));
    }
    cross.theirs = Some(theirs);
    all_of(checks)
}

fn vfio_pci_probe_and_runs(cross: &mut Cross) -> Outcome {
    let vfio = cross
        .vfio
        .as_ref()
        .ok_or_else(|| Failure::Skip("vfio-pci is not open".to_owned()))?;
    let probe = vfio::feature(
        vfio.fd(),
        &FeatureRequest::probe(VFIO_DEVICE_FEATURE_DMA_BUF),
    );
    ensure!(
        matches!(probe, Ok(0)),
        "PROBE of DMA_BUF on vfio-pci: {probe:?}"
    );
    let theirs = cross
        .theirs
        .as_ref()
        .ok_or_else(|| Failure::Skip("vfio-pci's exports failed".to_owned()))?;
    let (_, importer) = theirs
        .kept
        .last()
        .ok_or_else(|| Failure::Skip("no vfio-pci buffer".to_owned()))?;
    let pairs = cross_slices(cross.bar.size())[1].clone();
    let expected = expected_runs(cross.bar.start, &pairs);
    let walk = super::runs::check_runs(importer, 1, &expected)?;
    ensure!(
        walk.calls == expected.len() as u64,
        "{} calls for {} runs",
        walk.calls,
        expected.len()
    );
    Ok(())
}

fn vfio_pci_revoke(cross: &mut Cross) -> Outcome {
    let vfio = cross
        .vfio
        .as_ref()
        .ok_or_else(|| Failure::Skip("vfio-pci is not open".to_owned()))?;
    let theirs = cross
        .theirs
        .as_ref()
        .ok_or_else(|| Failure::Skip("vfio-pci's exports failed".to_owned()))?;
    let (_, importer) = theirs
        .kept
        .last()
        .ok_or_else(|| Failure::Skip("no vfio-pci buffer".to_owned()))?;
    let pairs = cross_slices(cross.bar.size())[1].clone();
    let expected = expected_runs(cross.bar.start, &pairs);
    super::runs::check_runs(importer, MAX_CAPACITY, &expected)?;
    let off = vfio.set_memory(false);
    let counters = importer.counters();
    let while_off = importer.walk_runs(MAX_CAPACITY, 16);
    let on = vfio.set_memory(true);
    off.map_err(|e| Failure::Fail(e.to_string()))?;
    let counters = must("COUNTERS", counters)?;
    ensure!(
        counters.invalidations == 1 && counters.table_segments == 0,
        "COUNTERS {counters:?} with decoding off, expected 1 invalidation and no entry"
    );
    refused("WALK by runs with decoding off", while_off, libc::ENODEV)?;
    on.map_err(|e| Failure::Fail(e.to_string()))?;
    super::runs::check_runs(importer, MAX_CAPACITY, &expected)?;
    Ok(())
}

fn rebind(ctx: &mut Context, cross: Cross) -> Outcome {
    let Cross {
        function,
        ours,
        vfio,
        theirs,
        ..
    } = cross;
    let function = function.ok_or_else(|| Failure::Skip("no function".to_owned()))?;
    // Everything of both drivers is closed before the function changes
    // driver again.
    let mut closed = Vec::new();
    for exports in [theirs, ours].into_iter().flatten() {
        for (dmabuf, importer) in exports.kept {
            closed.push(must("closing an importer", importer.close()));
            closed.push(must("closing a dma-buf", sys::close(dmabuf)));
        }
    }
    if let Some(vfio) = vfio {
        closed.push(must(
            "closing the vfio-pci device, group and container",
            vfio.close(),
        ));
    }
    if ctx.device(Which::Ivshmem).is_err() {
        function.bind_by_override()?;
        ctx.set_device(Which::Ivshmem, setup::open(function)?);
    }
    all_of(closed)?;
    let device = ctx.device(Which::Ivshmem)?;
    let bar = *device.bar(IVSHMEM_BAR);
    let name = device.function.node().display().to_string();
    let again = run_program(fd(device), &name, &bar)?;
    for (dmabuf, importer) in again.kept {
        must("closing an importer", importer.close())?;
        must("closing a dma-buf", sys::close(dmabuf))?;
    }
    Ok(())
}
