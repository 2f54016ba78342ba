// SPDX-License-Identifier: GPL-2.0

//! A function reset of edu through sysfs (`echo 1 > reset`, which the PCI
//! core makes a secondary bus reset: edu's only `reset_method`) with a buffer
//! of its BAR0 imported: the driver's `reset_prepare` revokes the exports,
//! so the importer is told once and page frame queries fail, exports stay
//! revoked after the reset (a new one comes out revoked), and RESTORE brings
//! the same page frames back. edu is left live whatever happens.

use std::os::fd::{AsFd, OwnedFd};

use super::export::{check_walk, export_and_import};
use super::revoke::{expect_invalidations, export_revoked, exporter, refuses_page_frames, whole};
use super::{case, ensure, must, refused, Case, Context, Outcome, Shared, Which};
use crate::expect::Buffer;
use crate::importer::Importer;

/// The BAR exported: edu's only one.
const BAR: u32 = 0;

struct Reset {
    buffer: Buffer,
    dmabuf: OwnedFd,
    importer: Importer,
    /// A buffer exported after the reset.
    late: Option<OwnedFd>,
}

pub(super) fn cases() -> Vec<Case> {
    let state = Shared::<Reset>::new();
    let step = |name: &str, run: fn(&mut Context, &mut Reset) -> Outcome| {
        let state = state.clone();
        case(format!("edu reset: {name}"), move |ctx| {
            state.with(|reset| run(ctx, reset))
        })
    };
    let first = state.clone();
    let last = state.clone();
    vec![
        case(
            "edu reset: writing 1 to sysfs reset (a secondary bus reset, edu's only reset_method) tells the importer once and it drops its table",
            move |ctx| reset_first(ctx, &first),
        ),
        step(
            "WALK and GET_PFN fail with ENODEV after the reset",
            |_, r| refuses_page_frames(&r.importer),
        ),
        step("a new import fails with ENODEV after the reset", |_, r| {
            let importer = Importer::open()?;
            refused("IMPORT", importer.import(r.dmabuf.as_fd()), libc::ENODEV)
        }),
        step(
            "EXPORT after the reset succeeds with a revoked buffer",
            |ctx, r| export_revoked(ctx, &r.buffer, &mut r.late),
        ),
        case(
            "edu reset: RESTORE brings back the same page frames",
            move |ctx| {
                // Restored first, so that edu's BAR0 is live whatever else
                // failed (restoring a live BAR changes nothing).
                let restored = must("RESTORE", exporter(ctx)?.restore(BAR));
                let r = last.take()?;
                restored?;
                let walk = check_walk(&r.importer, &r.buffer, None)?;
                ctx.note(walk.note);
                expect_invalidations(&r.importer, 1)?;
                if let Some(late) = &r.late {
                    let importer = Importer::open()?;
                    must(
                        "IMPORT of the buffer exported after the reset",
                        importer.import(late.as_fd()),
                    )?;
                    check_walk(&importer, &r.buffer, None)?;
                }
                Ok(())
            },
        ),
    ]
}

/// Exports the whole of edu's BAR0, imports and walks it in a fresh
/// importer file, resets edu through sysfs and checks that the importer was
/// told to drop its table.
fn reset_first(ctx: &mut Context, state: &Shared<Reset>) -> Outcome {
    let (buffer, dmabuf, importer) = export_and_import(ctx, Which::Edu, BAR, &whole(ctx)?)?;
    check_walk(&importer, &buffer, None)?;
    let function = ctx.device(Which::Edu)?.function.clone();
    let methods = function.reset_methods();
    ctx.note(format!(
        "{} reset methods: {}",
        function.address,
        methods.as_deref().unwrap_or("none")
    ));
    // QEMU's edu has no FLR and no PM capability; alone behind its root
    // port, it is reset by a reset of the port's secondary bus.
    let first = methods
        .as_deref()
        .and_then(|m| m.split_whitespace().next())
        .unwrap_or("");
    ensure!(
        first == super::stress::RESET_METHOD,
        "the PCI core resets {} by {first:?}, not by {:?}: the case's name is wrong",
        function.address,
        super::stress::RESET_METHOD
    );
    function.reset()?;
    let counters = must("COUNTERS", importer.counters());
    state.set(Reset {
        buffer,
        dmabuf,
        importer,
        late: None,
    });
    let counters = counters?;
    ensure!(
        counters.invalidations == 1 && counters.table_segments == 0,
        "COUNTERS {counters:?} after the reset, expected 1 invalidation and no segment"
    );
    Ok(())
}
