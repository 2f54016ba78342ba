// SPDX-License-Identifier: GPL-2.0

//! Printing a subcommand's result on standard output: as text for people,
//! or as JSON (`--json`) for scripts.

use std::io::{self, Write};
use std::path::Path;

use serde::Serialize;

use crate::error::Error;

/// Prints `value` as pretty JSON when `json`, else as `text` writes it.
pub fn print<T: Serialize>(
    json: bool,
    value: &T,
    text: impl FnOnce(&mut dyn Write, &T) -> io::Result<()>,
) -> Result<(), Error> {
    let mut out = io::stdout().lock();
    let written = if json {
        serde_json::to_writer_pretty(&mut out, value)
            .map_err(io::Error::from)
            .and_then(|()| writeln!(out))
    } else {
        text(&mut out, value)
    };
    written
        .and_then(|()| out.flush())
        .map_err(|e| Error::os(Path::new("standard output"), "write", e))
}
