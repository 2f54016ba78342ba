// SPDX-License-Identifier: GPL-2.0

//! Command-line arguments both programs take.

use std::path::PathBuf;

use clap::Args;

/// A BAR of a bound function.
#[derive(Args, Debug)]
pub struct BarArgs {
    /// The function: its PCI address (0000:01:00.0), or its device's path.
    pub device: PathBuf,
    /// The BAR, 0 to 5.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..6))]
    pub bar: u32,
}
