// SPDX-License-Identifier: GPL-2.0

//! `guest-tests`: the exporter's tests in the guest (SPEC §3, §5). Run as
//! root once `vfio_dmabuf.ko` and `vfio_dmabuf_importer.ko` are loaded, with
//! the VM's `edu`, `ivshmem-plain` and `pci-testdev`; prints KTAP on stdout
//! and exits non-zero if a case failed. The last cases unload both modules,
//! so a second run needs them loaded again.
//!
//! Expected page frames, orders and the fewest calls a walk may make come
//! from the raw request (the BAR addresses sysfs shows, the offsets and
//! lengths asked for) through the host tests' brute-force reference
//! (`tests/host/src/reference.rs`, compiled here unchanged), never from the
//! driver's own arithmetic (`drivers/vfio_dmabuf/range.rs`), which is not
//! part of this program.

mod bufinfo;
mod cases;
mod expect;
mod exporter;
mod importer;
mod ktap;
mod pci;
mod sys;
mod uapi;

#[path = "../../host/src/reference.rs"]
#[allow(
    dead_code,
    clippy::all,
    reason = "the host tests' file, linted there: the tests use part of it"
)]
mod reference;

use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::process::ExitCode;

use cases::Context;
use ktap::{Ktap, Verdict};

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("guest-tests: writing the results: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs every case in order; true when none failed.
fn run() -> io::Result<bool> {
    let mut cases = cases::all();
    // VFIO_DMABUF_CASES=A|B|...: only the cases whose names contain one of
    // them (with the set-up cases they depend on named too), to iterate on
    // a few; the plan counts only those.
    if let Ok(filter) = std::env::var("VFIO_DMABUF_CASES") {
        let parts: Vec<&str> = filter.split('|').filter(|p| !p.is_empty()).collect();
        cases.retain(|case| parts.iter().any(|p| case.name.contains(p)));
    }
    let mut ktap = Ktap::new(io::stdout().lock(), cases.len())?;
    let mut ctx = Context::default();
    for case in cases {
        // A bug in one case (a panic) fails that case, not the run.
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| (case.run)(&mut ctx)));
        let verdict = match outcome {
            Ok(outcome) => Verdict::from(outcome),
            Err(payload) => Verdict::Fail(format!("panicked: {}", panic_message(&*payload))),
        };
        let notes = ctx.take_notes();
        ktap.result(&case.name, &verdict, &notes)?;
    }
    ktap.finish()
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "(no message)".to_owned()
    }
}
