// SPDX-License-Identifier: GPL-2.0

//! Requests the exporter must refuse, each with the errno its header
//! documents, and a check that the refusals left no file descriptor behind.

use std::os::fd::AsFd;

use super::{
    case, ensure, invalid_importer, must, refused, Case, Context, Device, Outcome, Shared, Which,
};
use crate::expect::{ranges, PAGE};
use crate::exporter::{revoke_arg, ExportRequest, InfoWithTail};
use crate::pci;
use crate::sys;
use crate::uapi;

/// The highest page-aligned offset: adding a page to it overflows.
const LAST_PAGE: u64 = !(PAGE - 1);

type Run = fn(&mut Context) -> Outcome;

/// Makes a well-formed REVOKE argument bad.
type Spoil = fn(&mut uapi::vfio_dmabuf_revoke);

/// The refusals, between the first case (which counts the open files) and
/// the last (which counts them again).
const REFUSALS: &[(&str, Run)] = &[
    (
        "INFO with argsz short of the structure fails with EINVAL",
        |ctx| {
            let exporter = &ctx.device(Which::Edu)?.exporter;
            for argsz in [uapi::argsz::<uapi::vfio_dmabuf_info>() - 8, 0] {
                let mut arg = InfoWithTail::default();
                arg.info.argsz = argsz;
                refused(
                    &format!("INFO with argsz {argsz}"),
                    exporter.info_raw(&mut arg),
                    libc::EINVAL,
                )?;
            }
            Ok(())
        },
    ),
    (
        "INFO with a larger argsz and zero bytes past the structure succeeds",
        |ctx| {
            let exporter = &ctx.device(Which::Edu)?.exporter;
            let mut arg = InfoWithTail::default();
            arg.info.argsz = uapi::argsz::<InfoWithTail>();
            must("INFO with a zero tail", exporter.info_raw(&mut arg))?;
            ensure!(
                arg.info.num_bars == uapi::VFIO_DMABUF_NUM_BARS,
                "num_bars {}",
                arg.info.num_bars
            );
            ensure!(
                arg.info.argsz == uapi::argsz::<InfoWithTail>()
                    && arg.info.flags == 0
                    && arg.tail == [0; 8],
                "the kernel changed argsz, flags or the tail: {arg:?}"
            );
            Ok(())
        },
    ),
    (
        "INFO with a non-zero byte past the structure fails with E2BIG",
        |ctx| {
            let exporter = &ctx.device(Which::Edu)?.exporter;
            let mut arg = InfoWithTail::default();
            arg.info.argsz = uapi::argsz::<InfoWithTail>();
            arg.tail[7] = 1;
            refused(
                "INFO with a non-zero tail",
                exporter.info_raw(&mut arg),
                libc::E2BIG,
            )
        },
    ),
    ("INFO with flags set fails with EINVAL", |ctx| {
        let exporter = &ctx.device(Which::Edu)?.exporter;
        let mut arg = InfoWithTail::default();
        arg.info.argsz = uapi::argsz::<uapi::vfio_dmabuf_info>();
        arg.info.flags = 1;
        refused(
            "INFO with flags 1",
            exporter.info_raw(&mut arg),
            libc::EINVAL,
        )
    }),
    ("EXPORT with flags set fails with EINVAL", |ctx| {
        bad_export(ctx, Which::Edu, libc::EINVAL, |_, request| {
            request.head.flags = 1
        })
    }),
    ("EXPORT with __reserved set fails with EINVAL", |ctx| {
        bad_export(ctx, Which::Edu, libc::EINVAL, |_, request| {
            request.head.__reserved = 1
        })
    }),
    (
        "EXPORT with O_APPEND in open_flags fails with EINVAL",
        |ctx| {
            bad_export(ctx, Which::Edu, libc::EINVAL, |_, request| {
                request.head.open_flags |= libc::O_APPEND as u32;
            })
        },
    ),
    ("EXPORT from region_index 6 fails with EINVAL", |ctx| {
        bad_export(ctx, Which::Edu, libc::EINVAL, |_, request| {
            request.head.region_index = 6
        })
    }),
    (
        "EXPORT from region_index 0xffffffff fails with EINVAL",
        |ctx| {
            bad_export(ctx, Which::Edu, libc::EINVAL, |_, request| {
                request.head.region_index = u32::MAX;
            })
        },
    ),
    (
        "EXPORT from an I/O BAR (pci-testdev BAR1) fails with ENODEV",
        |ctx| {
            let bar = *ctx.device(Which::Testdev)?.bar(1);
            ensure!(
                bar.flags & pci::IORESOURCE_IO != 0 && bar.size() != 0,
                "sysfs shows no I/O BAR1 on pci-testdev: {bar:x?}"
            );
            bad_export(ctx, Which::Testdev, libc::ENODEV, |_, request| {
                request.head.region_index = 1
            })
        },
    ),
    (
        "EXPORT from an absent BAR (edu BAR1) fails with ENODEV",
        |ctx| {
            let bar = *ctx.device(Which::Edu)?.bar(1);
            ensure!(bar.size() == 0, "sysfs shows a BAR1 on edu: {bar:x?}");
            bad_export(ctx, Which::Edu, libc::ENODEV, |_, request| {
                request.head.region_index = 1
            })
        },
    ),
    (
        "EXPORT from the upper half of a 64-bit BAR (ivshmem BAR3) fails with ENODEV",
        |ctx| {
            let device = ctx.device(Which::Ivshmem)?;
            let (low, high) = (*device.bar(2), *device.bar(3));
            ensure!(
                low.flags & pci::IORESOURCE_MEM_64 != 0 && high.size() == 0,
                "sysfs shows no 64-bit BAR2 on ivshmem: {low:x?} {high:x?}"
            );
            bad_export(ctx, Which::Ivshmem, libc::ENODEV, |_, request| {
                request.head.region_index = 3;
            })
        },
    ),
    ("EXPORT of no range fails with EINVAL", |ctx| {
        bad_export(ctx, Which::Edu, libc::EINVAL, |_, request| {
            *request = ExportRequest::new(0, &[]);
        })
    }),
    ("EXPORT of 257 ranges fails with E2BIG", |ctx| {
        bad_export(ctx, Which::Edu, libc::E2BIG, |_, request| {
            let many = vec![(0, PAGE); uapi::VFIO_DMABUF_MAX_RANGES as usize + 1];
            *request = ExportRequest::new(0, &ranges(&many));
        })
    }),
    (
        "EXPORT with argsz short of its ranges fails with EINVAL",
        |ctx| {
            bad_export(ctx, Which::Edu, libc::EINVAL, |_, request| {
                *request = ExportRequest::new(0, &ranges(&[(0, PAGE), (PAGE, PAGE)]));
                request.head.argsz -= 16;
            })
        },
    ),
    ("EXPORT of a zero-length range fails with EINVAL", |ctx| {
        bad_export(ctx, Which::Edu, libc::EINVAL, |_, request| {
            *request = ExportRequest::new(0, &ranges(&[(0, PAGE), (PAGE, 0)]));
        })
    }),
    (
        "EXPORT of a range at an offset not page aligned fails with EINVAL",
        |ctx| {
            bad_export(ctx, Which::Edu, libc::EINVAL, |_, request| {
                *request = ExportRequest::new(0, &ranges(&[(PAGE / 2, PAGE)]));
            })
        },
    ),
    (
        "EXPORT of a range of a length not page aligned fails with EINVAL",
        |ctx| {
            bad_export(ctx, Which::Edu, libc::EINVAL, |_, request| {
                *request = ExportRequest::new(0, &ranges(&[(0, PAGE + PAGE / 2)]));
            })
        },
    ),
    (
        "EXPORT of a range whose offset plus length overflows fails with EOVERFLOW",
        |ctx| {
            bad_export(ctx, Which::Edu, libc::EOVERFLOW, |_, request| {
                *request = ExportRequest::new(0, &ranges(&[(LAST_PAGE, PAGE)]));
            })?;
            bad_export(ctx, Which::Edu, libc::EOVERFLOW, |_, request| {
                *request = ExportRequest::new(0, &ranges(&[(PAGE, LAST_PAGE)]));
            })
        },
    ),
    (
        "EXPORT of a range past the end of the BAR fails with EINVAL",
        |ctx| {
            bad_export(ctx, Which::Edu, libc::EINVAL, |device, request| {
                let size = device.bar(0).size();
                *request = ExportRequest::new(0, &ranges(&[(size - PAGE, 2 * PAGE)]));
            })?;
            bad_export(ctx, Which::Edu, libc::EINVAL, |device, request| {
                let size = device.bar(0).size();
                *request = ExportRequest::new(0, &ranges(&[(size, PAGE)]));
            })
        },
    ),
    (
        "EXPORT: the first faulty range decides between EINVAL and EOVERFLOW",
        |ctx| {
            bad_export(ctx, Which::Edu, libc::EINVAL, |device, request| {
                let size = device.bar(0).size();
                *request =
                    ExportRequest::new(0, &ranges(&[(0, PAGE), (size, PAGE), (LAST_PAGE, PAGE)]));
            })?;
            bad_export(ctx, Which::Edu, libc::EOVERFLOW, |device, request| {
                let size = device.bar(0).size();
                *request =
                    ExportRequest::new(0, &ranges(&[(0, PAGE), (LAST_PAGE, PAGE), (size, PAGE)]));
            })
        },
    ),
    (
        "EXPORT with a non-zero byte past its ranges fails with E2BIG",
        |ctx| {
            bad_export(ctx, Which::Edu, libc::E2BIG, |_, request| {
                *request = ExportRequest::new(0, &ranges(&[(0, PAGE)]))
                    .with_tail(&[0, 0, 0, 0, 0, 0, 0, 1]);
            })
        },
    ),
    ("EXPORT with zero bytes past its ranges succeeds", |ctx| {
        let exporter = &ctx.device(Which::Edu)?.exporter;
        let request = ExportRequest::new(0, &ranges(&[(0, PAGE)])).with_tail(&[0; 16]);
        let dmabuf = must("EXPORT with a zero tail", exporter.export(&request))?;
        let size = must(
            "lseek(SEEK_END) on the dma-buf",
            sys::file_size(dmabuf.as_fd()),
        )?;
        ensure!(
            size == PAGE,
            "the dma-buf is {size:#x} bytes, expected {PAGE:#x}"
        );
        Ok(())
    }),
    (
        "REVOKE and RESTORE of region_index 6 fail with EINVAL",
        |ctx| {
            let exporter = &ctx.device(Which::Edu)?.exporter;
            refused("REVOKE of region 6", exporter.revoke(6), libc::EINVAL)?;
            refused("RESTORE of region 6", exporter.restore(6), libc::EINVAL)
        },
    ),
    (
        "REVOKE and RESTORE of an I/O BAR (pci-testdev BAR1) fail with ENODEV",
        |ctx| {
            let exporter = &ctx.device(Which::Testdev)?.exporter;
            refused("REVOKE of BAR1", exporter.revoke(1), libc::ENODEV)?;
            refused("RESTORE of BAR1", exporter.restore(1), libc::ENODEV)
        },
    ),
    (
        "REVOKE and RESTORE of an absent BAR (edu BAR1) fail with ENODEV",
        |ctx| {
            let exporter = &ctx.device(Which::Edu)?.exporter;
            refused("REVOKE of BAR1", exporter.revoke(1), libc::ENODEV)?;
            refused("RESTORE of BAR1", exporter.restore(1), libc::ENODEV)
        },
    ),
    (
        "REVOKE with flags or __reserved set, or argsz short, fails with EINVAL",
        |ctx| {
            let exporter = &ctx.device(Which::Edu)?.exporter;
            let variants: [(&str, Spoil); 3] = [
                ("flags 1", |arg| arg.flags = 1),
                ("__reserved 1", |arg| arg.__reserved = 1),
                ("argsz 8", |arg| arg.argsz = 8),
            ];
            for (what, spoil) in variants {
                let mut arg = revoke_arg(0);
                spoil(&mut arg);
                let result = exporter.change(uapi::VFIO_DMABUF_REVOKE, &mut arg);
                if result.is_ok() {
                    // Leave edu's BAR0 live for the cases that follow.
                    let _ = exporter.restore(0);
                }
                refused(
                    &format!("REVOKE of edu BAR0 with {what}"),
                    result,
                    libc::EINVAL,
                )?;
            }
            Ok(())
        },
    ),
];

pub(super) fn cases() -> Vec<Case> {
    let open_before = Shared::<usize>::new();
    let record = open_before.clone();
    let mut cases = vec![case("unknown ioctl numbers fail with ENOTTY", move |ctx| {
        record.set(must("counting /proc/self/fd", sys::open_fds())?);
        unknown_ioctls(ctx)
    })];
    cases.extend(REFUSALS.iter().map(|&(name, run)| case(name, run)));
    cases.extend(
        invalid_importer::CASES
            .iter()
            .map(|&(name, run)| case(name, run)),
    );
    cases.push(case(
        "the refused requests of both devices leave no file descriptor behind",
        move |_| {
            let before = open_before.take()?;
            let after = must("counting /proc/self/fd", sys::open_fds())?;
            ensure!(after == before, "{before} open files before, {after} after");
            Ok(())
        },
    ));
    cases
}

fn unknown_ioctls(ctx: &mut Context) -> Outcome {
    let exporter = &ctx.device(Which::Edu)?.exporter;
    let mut info = InfoWithTail::default();
    info.info.argsz = uapi::argsz::<uapi::vfio_dmabuf_info>();
    refused(
        "sequence number 0x0f",
        exporter.undefined(uapi::VFIO_DMABUF_UNDEFINED, &mut info),
        libc::ENOTTY,
    )?;
    let mut import = uapi::vfio_dmabuf_imp_import {
        argsz: uapi::argsz::<uapi::vfio_dmabuf_imp_import>(),
        fd: -1,
        ..Default::default()
    };
    refused(
        "the importer's IMPORT",
        exporter.undefined(uapi::VFIO_DMABUF_IMP_IMPORT, &mut import),
        libc::ENOTTY,
    )
}

/// EXPORT of one page of `which`'s BAR0, spoilt by `spoil`, must fail with
/// `errno`.
fn bad_export(
    ctx: &Context,
    which: Which,
    errno: i32,
    spoil: impl FnOnce(&Device, &mut ExportRequest),
) -> Outcome {
    let device = ctx.device(which)?;
    let mut request = ExportRequest::new(0, &ranges(&[(0, PAGE)]));
    spoil(device, &mut request);
    let what = format!(
        "EXPORT from {} BAR{} of {} range(s), argsz {}",
        which.name(),
        request.head.region_index,
        request.head.nr_ranges,
        request.head.argsz
    );
    refused(&what, device.exporter.export(&request), errno)
}
