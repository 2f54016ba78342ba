// SPDX-License-Identifier: GPL-2.0

//! INFO against sysfs: each BAR's index, kind and size as the function's
//! `resource` file gives them.

use super::{case, ensure, must, Case, Context, Outcome, Which};
use crate::expect;
use crate::uapi;

pub(super) fn cases() -> Vec<Case> {
    Which::ALL
        .iter()
        .map(|&which| {
            case(
                format!(
                    "{}: INFO describes the BARs as sysfs resource does",
                    which.name()
                ),
                move |ctx| info_matches_sysfs(ctx, which),
            )
        })
        .collect()
}

fn info_matches_sysfs(ctx: &mut Context, which: Which) -> Outcome {
    let device = ctx.device(which)?;
    let info = must("INFO", device.exporter.info())?;
    ensure!(
        info.num_bars == uapi::VFIO_DMABUF_NUM_BARS,
        "num_bars {}, expected {}",
        info.num_bars,
        uapi::VFIO_DMABUF_NUM_BARS
    );
    ensure!(info.__reserved == 0, "__reserved {:#x}", info.__reserved);
    let mut notes = Vec::new();
    let mut mismatches = Vec::new();
    for (index, (got, bar)) in info.bars.iter().zip(&device.bars).enumerate() {
        let expected = expect::bar_info(index, bar);
        let (got_kind, expected_kind) = (
            expect::bar_flags(got.flags),
            expect::bar_flags(expected.flags),
        );
        if got.index != expected.index || got.flags != expected.flags || got.size != expected.size {
            mismatches.push(format!(
                "BAR{index}: index {} {got_kind} {:#x} bytes, expected index {index} {expected_kind} {:#x} bytes (resource {:#x}-{:#x} flags {:#x})",
                got.index, got.size, expected.size, bar.start, bar.end, bar.flags
            ));
        }
        if got.flags & uapi::VFIO_DMABUF_BAR_ABSENT == 0 {
            notes.push(format!(
                "BAR{index}: {got_kind}, {} at {:#x}",
                expect::human(got.size),
                bar.start
            ));
        }
    }
    for note in notes {
        ctx.note(note);
    }
    ensure!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    Ok(())
}
