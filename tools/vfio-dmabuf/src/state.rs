// SPDX-License-Identifier: GPL-2.0

//! `revoke` and `restore`: move every export of a BAR to the revoked state
//! or back to live.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::device::{self, Device};
use crate::error::Error;
use crate::export;
use crate::output;

/// The state a subcommand puts a BAR's exports in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum State {
    /// `VFIO_DMABUF_REVOKE`.
    Revoked,
    /// `VFIO_DMABUF_RESTORE`.
    Live,
}

/// What `revoke` and `restore` print, and `--json` shows as is.
#[derive(Serialize)]
struct Report {
    device: PathBuf,
    address: String,
    bar: u32,
    /// The state of the BAR's exports now.
    state: State,
}

fn write_text(out: &mut dyn Write, report: &Report) -> io::Result<()> {
    let state = match report.state {
        State::Revoked => "revoked",
        State::Live => "live",
    };
    writeln!(out, "{} BAR{}: exports {state}", report.address, report.bar)
}

/// Puts the exports of BAR `bar` of the device `name` (a path or a PCI
/// address) in `state`.
pub(crate) fn run(name: &Path, bar: u32, state: State, json: bool) -> Result<(), Error> {
    let path = device::resolve(name);
    let device = Device::open(&path)?;
    // Says what is wrong with an absent or I/O BAR in words, not ENODEV.
    export::memory_bar(&device, bar)?;
    match state {
        State::Revoked => device.revoke(bar)?,
        State::Live => device.restore(bar)?,
    }
    let report = Report {
        device: path,
        address: device.address(),
        bar,
        state,
    };
    output::print(json, &report, |out, report| write_text(out, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_json() {
        let report = Report {
            device: PathBuf::from("/dev/vfio-dmabuf/0000:00:03.0"),
            address: "0000:00:03.0".to_owned(),
            bar: 0,
            state: State::Revoked,
        };
        let mut text = Vec::new();
        write_text(&mut text, &report).expect("writes to a Vec");
        assert_eq!(text, b"0000:00:03.0 BAR0: exports revoked\n");
        let json = serde_json::to_value(&report).expect("serializes");
        assert_eq!(json["state"], "revoked");
        assert_eq!(json["bar"], 0);
    }
}
