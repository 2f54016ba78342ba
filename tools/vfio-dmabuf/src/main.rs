// SPDX-License-Identifier: GPL-2.0

//! `vfio-dmabuf`: a command-line tool over the vfio_dmabuf uAPI
//! (`include/uapi/linux/vfio_dmabuf.h`): list the bound functions and their
//! BARs, export BAR slices as dma-bufs, hand them to the test importer,
//! revoke and restore them.

mod device;
mod list;
mod uapi;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// Slices of PCI BARs as page-frame-only dma-bufs: list the functions bound
/// to vfio_dmabuf, export, revoke and restore, through /dev/vfio-dmabuf/*.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// Print JSON, for scripts, instead of text.
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the functions bound to vfio_dmabuf and their BARs.
    List {
        /// Devices, as paths or PCI addresses (0000:00:03.0); all of
        /// /dev/vfio-dmabuf when none is given.
        devices: Vec<PathBuf>,
    },
    /// Export slices of a memory BAR as a dma-buf (not implemented yet).
    Export(Pending),
    /// Walk a buffer's page frames through the test importer (not
    /// implemented yet).
    Walk(Pending),
    /// Read device memory through the importer's mapping (not implemented
    /// yet).
    Peek(Pending),
    /// Write device memory through the importer's mapping (not implemented
    /// yet).
    Poke(Pending),
    /// Revoke a BAR's exports (not implemented yet).
    Revoke(Pending),
    /// Make a BAR's exports live again (not implemented yet).
    Restore(Pending),
    /// Time page-frame walks (not implemented yet).
    Bench(Pending),
}

/// The arguments of a subcommand that is not written yet: taken as they are.
#[derive(Args)]
struct Pending {
    #[arg(hide = true, trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<OsString>,
}

/// The exit status of a subcommand that is not written yet, as for a usage
/// error.
const NOT_IMPLEMENTED: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let name = match cli.command {
        Command::List { devices } => return list::run(&devices, cli.json),
        Command::Export(_) => "export",
        Command::Walk(_) => "walk",
        Command::Peek(_) => "peek",
        Command::Poke(_) => "poke",
        Command::Revoke(_) => "revoke",
        Command::Restore(_) => "restore",
        Command::Bench(_) => "bench",
    };
    eprintln!("vfio-dmabuf: {name}: not implemented yet");
    ExitCode::from(NOT_IMPLEMENTED)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli() {
        Cli::command().debug_assert();
    }

    #[test]
    fn json_anywhere() {
        for args in [
            ["vfio-dmabuf", "--json", "list"],
            ["vfio-dmabuf", "list", "--json"],
        ] {
            let cli = Cli::try_parse_from(args).expect("parses");
            assert!(cli.json);
            assert!(matches!(cli.command, Command::List { .. }));
        }
    }
}
