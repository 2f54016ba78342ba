// SPDX-License-Identifier: GPL-2.0

//! REVOKE and RESTORE of edu's BAR0 with a buffer imported: the importer is
//! told once per transition away from live, page frame queries and new
//! attachments fail while revoked, and the same page frames come back on
//! RESTORE.

use std::os::fd::{AsFd, OwnedFd};

use super::export::{check_walk, export_and_import};
use super::{case, ensure, must, refused, Case, Context, Failure, Outcome, Shared, Which};
use crate::expect::{ranges, Buffer};
use crate::exporter::ExportRequest;
use crate::importer::Importer;
use crate::sys;

/// The BAR revoked: edu's only one.
const BAR: u32 = 0;

struct Revoked {
    buffer: Buffer,
    dmabuf: OwnedFd,
    importer: Importer,
    /// A buffer exported while the BAR was revoked.
    late: Option<OwnedFd>,
    /// The importer of `late`, once the BAR is live again.
    late_importer: Option<Importer>,
}

pub(super) fn cases() -> Vec<Case> {
    let state = Shared::<Revoked>::new();
    let step = |name: &str, run: fn(&mut Context, &mut Revoked) -> Outcome| {
        let state = state.clone();
        case(format!("edu BAR0: {name}"), move |ctx| {
            state.with(|revoked| run(ctx, revoked))
        })
    };
    let first = state.clone();
    let last = state.clone();
    vec![
        case(
            "edu BAR0: REVOKE tells the importer once and it drops its table",
            move |ctx| revoke_first(ctx, &first),
        ),
        step("WALK and GET_PFN fail with ENODEV while revoked", |_, r| {
            refuses_page_frames(&r.importer)
        }),
        step("a new import fails with ENODEV while revoked", |_, r| {
            let importer = Importer::open()?;
            refused("IMPORT", importer.import(r.dmabuf.as_fd()), libc::ENODEV)
        }),
        step(
            "REVOKE of a revoked BAR succeeds and tells no one again",
            |ctx, r| {
                must("REVOKE again", exporter(ctx)?.revoke(BAR))?;
                expect_invalidations(&r.importer, 1)
            },
        ),
        step(
            "EXPORT from a revoked BAR succeeds with a revoked buffer",
            |ctx, r| export_revoked(ctx, &r.buffer, &mut r.late),
        ),
        step(
            "RESTORE brings back the same page frames, for both buffers",
            |ctx, r| {
                must("RESTORE", exporter(ctx)?.restore(BAR))?;
                let walk = check_walk(&r.importer, &r.buffer, None)?;
                ctx.note(walk.note);
                expect_invalidations(&r.importer, 1)?;
                let late = r.late.as_ref().ok_or_else(|| {
                    Failure::Skip("no buffer was exported while revoked".to_owned())
                })?;
                let importer = Importer::open()?;
                must(
                    "IMPORT of the buffer exported while revoked",
                    importer.import(late.as_fd()),
                )?;
                check_walk(&importer, &r.buffer, None)?;
                r.late_importer = Some(importer);
                Ok(())
            },
        ),
        step(
            "RESTORE of a live BAR succeeds and changes nothing",
            |ctx, r| {
                must("RESTORE again", exporter(ctx)?.restore(BAR))?;
                check_walk(&r.importer, &r.buffer, None)?;
                expect_invalidations(&r.importer, 1)
            },
        ),
        case(
            "edu BAR0: a second REVOKE tells every importer again",
            move |ctx| {
                let r = last.take()?;
                let exporter = exporter(ctx)?;
                let revoked = must("REVOKE", exporter.revoke(BAR));
                // Whatever happened, edu's BAR0 is left live.
                let restored = must("RESTORE", exporter.restore(BAR));
                revoked?;
                expect_invalidations(&r.importer, 2)?;
                if let Some(importer) = &r.late_importer {
                    expect_invalidations(importer, 1)?;
                }
                restored?;
                check_walk(&r.importer, &r.buffer, None)?;
                Ok(())
            },
        ),
    ]
}

/// edu's character device.
/// WALK and GET_PFN are refused with ENODEV: the exports are not live.
pub(super) fn refuses_page_frames(importer: &Importer) -> Outcome {
    refused("WALK", importer.walk(0, 16), libc::ENODEV)?;
    refused("GET_PFN of page 0", importer.get_pfn(0), libc::ENODEV)
}

/// EXPORT of the whole BAR while its exports are revoked succeeds, at the
/// size of `buffer`, and the new buffer cannot be imported. The new buffer is
/// kept in `late` (before anything is checked) for the cases that follow.
pub(super) fn export_revoked(
    ctx: &Context,
    buffer: &Buffer,
    late: &mut Option<OwnedFd>,
) -> Outcome {
    let request = ExportRequest::new(BAR, &whole(ctx)?);
    let fd = must("EXPORT", exporter(ctx)?.export(&request))?;
    let size = must("lseek(SEEK_END) on the dma-buf", sys::file_size(fd.as_fd()))?;
    let importer = Importer::open()?;
    let import = importer.import(fd.as_fd());
    *late = Some(fd);
    ensure!(size == buffer.size(), "the dma-buf is {size:#x} bytes");
    refused("IMPORT of the new buffer", import, libc::ENODEV)
}

pub(super) fn exporter(ctx: &Context) -> Result<&crate::exporter::Exporter, Failure> {
    Ok(&ctx.device(Which::Edu)?.exporter)
}

/// The whole of edu's BAR0.
pub(super) fn whole(ctx: &Context) -> Result<Vec<crate::expect::ByteRange>, Failure> {
    let bar = ctx.device(Which::Edu)?.bar(BAR);
    Ok(ranges(&[(0, bar.size())]))
}

fn revoke_first(ctx: &mut Context, state: &Shared<Revoked>) -> Outcome {
    let (buffer, dmabuf, importer) = export_and_import(ctx, Which::Edu, BAR, &whole(ctx)?)?;
    check_walk(&importer, &buffer, None)?;
    let revoked = must("REVOKE", exporter(ctx)?.revoke(BAR));
    let counters = must("COUNTERS", importer.counters());
    state.set(Revoked {
        buffer,
        dmabuf,
        importer,
        late: None,
        late_importer: None,
    });
    revoked?;
    let counters = counters?;
    ensure!(
        counters.invalidations == 1 && counters.table_segments == 0,
        "COUNTERS {counters:?}, expected 1 invalidation and no segment"
    );
    Ok(())
}

/// The importer was told `expected` times to drop its mappings.
pub(super) fn expect_invalidations(importer: &Importer, expected: u64) -> Outcome {
    let counters = must("COUNTERS", importer.counters())?;
    ensure!(
        counters.invalidations == expected,
        "{} invalidations, expected {expected} (COUNTERS {counters:?})",
        counters.invalidations
    );
    Ok(())
}
