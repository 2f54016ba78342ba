// SPDX-License-Identifier: GPL-2.0

//! `vfio-dmabuf`: a command-line tool over the vfio_dmabuf uAPI
//! (`include/uapi/linux/vfio_dmabuf.h`) and the test importer's
//! (`tests/importer/vfio_dmabuf_importer.h`): list the bound functions and
//! their BARs, export BAR slices as dma-bufs, walk them through the
//! importer, read and write device memory through its mapping, revoke and
//! restore. The benchmarks are another program, `vfio-dmabuf-bench`.

mod access;
mod dma;
mod list;
mod state;
mod walk;

// The shared code, under the names the modules use.
use vfio_dmabuf::{
    cli::BarArgs,
    device,
    error,
    export,
    importer,
    output,
    size,
    sysfs,
    uapi, //
};

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::error::Error;
use crate::importer::Step;
use crate::size::RangeArg;
use crate::state::State;

/// Slices of PCI BARs as page-frame-only dma-bufs: list the functions bound
/// to vfio_dmabuf, export, walk through the test importer, time the walks,
/// revoke and restore, through /dev/vfio-dmabuf/*.
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
    /// Export slices of a memory BAR as a dma-buf and walk it, or hand it to
    /// a command.
    ///
    /// By default the dma-buf is imported into a new file of the test
    /// importer (/dev/vfio-dmabuf-importer), which walks it; the table of
    /// page frames it built is printed beside the BAR's physical start from
    /// sysfs, and each segment is checked against its range.
    Export(ExportArgs),
    /// Export slices of a memory BAR and walk them, as `export` does by
    /// default.
    Walk(WalkArgs),
    /// Read 32-bit words of a memory BAR through the importer's mapping.
    ///
    /// Exports the page(s) holding the words, maps the buffer through the
    /// test importer, and reads each word (uncached). Fails if the access
    /// raises SIGBUS (the BAR's exports revoked, the device gone).
    Peek(PeekArgs),
    /// Write a 32-bit word of a memory BAR through the importer's mapping.
    Poke(PokeArgs),
    /// Map slices of a BAR through the importer and run steps on the live
    /// mapping, in order.
    ///
    /// Steps (--do, repeated): peek:OFFSET, poke:OFFSET=VALUE (offsets in
    /// the buffer, 32-bit aligned), revoke, restore, counters. An access
    /// that raises SIGBUS is reported as such and the steps go on.
    Map(MapArgs),
    /// Map slices of a BAR into an iommufd IOAS (IOMMU_IOAS_MAP_FILE) and
    /// have a client edu, bound to vfio-pci behind an IOMMU, DMA from and
    /// to them, running steps in order.
    Dma(DmaArgs),
    /// Revoke every export of a BAR.
    ///
    /// Importers drop their mappings, and page frame queries fail with
    /// ENODEV until `restore`.
    Revoke(BarArgs),
    /// Make a BAR's exports live again after `revoke` or a function reset.
    Restore(BarArgs),
}

#[derive(Args, Debug)]
struct ExportArgs {
    #[command(flatten)]
    target: BarArgs,
    /// Slices of the BAR, in buffer order: OFFSET:LENGTH, each a decimal or
    /// 0x-hexadecimal number optionally followed by K, M, G or T (powers of
    /// 1024), or `whole`. The whole BAR when none is given.
    #[arg(value_name = "RANGE")]
    ranges: Vec<RangeArg>,
    #[command(flatten)]
    walk: WalkMode,
    /// Instead of walking, run CMD with its arguments, the dma-buf an
    /// inherited file descriptor whose number is in $VFIO_DMABUF_FD, and
    /// exit with its status. Everything after --exec is the command's.
    #[arg(
        long,
        value_name = "CMD",
        num_args = 1..,
        allow_hyphen_values = true,
        conflicts_with_all = ["pages", "runs"]
    )]
    exec: Option<Vec<OsString>>,
}

#[derive(Args, Debug)]
struct WalkArgs {
    #[command(flatten)]
    target: BarArgs,
    /// Slices of the BAR, as for `export` (`whole` for all of it).
    #[arg(value_name = "RANGE", required = true)]
    ranges: Vec<RangeArg>,
    #[command(flatten)]
    walk: WalkMode,
}

/// How the importer walks the buffer: by blocks of 2^max_order pages unless
/// told otherwise.
#[derive(Args, Debug)]
struct WalkMode {
    /// Walk page by page instead of by blocks of 2^max_order pages.
    #[arg(long, conflicts_with = "runs")]
    pages: bool,
    /// Walk by the buffer's physically contiguous runs, with the range form
    /// (dma_buf_get_phys_vec_unlocked()), N runs a call.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=4096))]
    runs: Option<u32>,
}

#[derive(Args, Debug)]
struct PeekArgs {
    #[command(flatten)]
    target: BarArgs,
    /// Byte offset in the BAR, 32-bit aligned (0x10, 4K...).
    #[arg(value_parser = word_offset)]
    offset: u64,
    /// Words to read.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1024))]
    count: u64,
}

#[derive(Args, Debug)]
struct PokeArgs {
    #[command(flatten)]
    target: BarArgs,
    /// Byte offset in the BAR, 32-bit aligned.
    #[arg(value_parser = word_offset)]
    offset: u64,
    /// The word to write: decimal or 0x-hexadecimal.
    #[arg(value_parser = access::parse_u32)]
    value: u32,
}

#[derive(Args, Debug)]
struct MapArgs {
    #[command(flatten)]
    target: BarArgs,
    /// Slices of the BAR, as for `export`; the whole BAR when none is given.
    #[arg(value_name = "RANGE")]
    ranges: Vec<RangeArg>,
    /// A step: peek:OFFSET, poke:OFFSET=VALUE, revoke, restore, counters.
    #[arg(long = "do", value_name = "STEP", required = true)]
    steps: Vec<access::Op>,
}

#[derive(Args, Debug)]
struct DmaArgs {
    #[command(flatten)]
    target: BarArgs,
    /// The edu function that DMAs, bound to vfio-pci (PCI address).
    #[arg(long, value_name = "ADDRESS")]
    client: String,
    /// Slices of the BAR, as for `export`; the whole BAR when none is given.
    #[arg(value_name = "RANGE")]
    ranges: Vec<RangeArg>,
    /// A step: read:OFFSET[:LENGTH], write:OFFSET=VALUE, revoke, restore, remap.
    #[arg(long = "do", value_name = "STEP", required = true)]
    steps: Vec<dma::Op>,
}

fn word_offset(text: &str) -> Result<u64, String> {
    let offset = size::parse_size(text)?;
    if offset % 4 != 0 {
        return Err(format!("{offset:#x} is not 32-bit aligned"));
    }
    Ok(offset)
}

/// The exit status of a usage error.
const USAGE: u8 = 2;

fn step(mode: &WalkMode) -> Step {
    match (mode.pages, mode.runs) {
        (_, Some(capacity)) => Step::Runs(capacity),
        (true, None) => Step::Pages,
        (false, None) => Step::MaxOrder,
    }
}

fn run(command: Command, json: bool) -> Result<ExitCode, Error> {
    match command {
        Command::List { devices } => Ok(list::run(&devices, json)),
        Command::Export(args) => {
            if args.exec.is_some() && json {
                eprintln!("vfio-dmabuf: export: --json does not apply to --exec: the output is the command's");
                return Ok(ExitCode::from(USAGE));
            }
            let exported = export::export(&args.target.device, args.target.bar, &args.ranges)?;
            match &args.exec {
                Some(command) => Ok(export::exec(&exported, command)),
                None => walk::run(&exported, step(&args.walk), json),
            }
        }
        Command::Walk(args) => {
            let exported = export::export(&args.target.device, args.target.bar, &args.ranges)?;
            walk::run(&exported, step(&args.walk), json)
        }
        Command::Revoke(args) => {
            state::run(&args.device, args.bar, State::Revoked, json)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Restore(args) => {
            state::run(&args.device, args.bar, State::Live, json)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Peek(args) => {
            access::peek(
                &args.target.device,
                args.target.bar,
                args.offset,
                args.count,
                json,
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Poke(args) => {
            access::poke(
                &args.target.device,
                args.target.bar,
                args.offset,
                args.value,
                json,
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Dma(args) => {
            dma::run(
                &args.target.device,
                args.target.bar,
                &args.ranges,
                &args.client,
                &args.steps,
                json,
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Map(args) => {
            access::map(
                &args.target.device,
                args.target.bar,
                &args.ranges,
                &args.steps,
                json,
            )?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command, cli.json) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vfio-dmabuf: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli() {
        Cli::command().debug_assert();
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("vfio-dmabuf").chain(args.iter().copied()))
    }

    #[test]
    fn json_anywhere() {
        for args in [["--json", "list"], ["list", "--json"]] {
            let cli = parse(&args).expect("parses");
            assert!(cli.json);
            assert!(matches!(cli.command, Command::List { .. }));
        }
    }

    #[test]
    fn export_arguments() {
        let cli = parse(&[
            "export",
            "0000:00:03.0",
            "--bar",
            "2",
            "0:4K",
            "0x200000:2M",
            "whole",
            "--json",
        ])
        .expect("parses");
        assert!(cli.json);
        let Command::Export(args) = cli.command else {
            panic!("not export");
        };
        assert_eq!(args.target.device, PathBuf::from("0000:00:03.0"));
        assert_eq!(args.target.bar, 2);
        assert_eq!(
            args.ranges,
            [
                RangeArg::Slice {
                    offset: 0,
                    length: 4096
                },
                RangeArg::Slice {
                    offset: 0x20_0000,
                    length: 0x20_0000
                },
                RangeArg::Whole,
            ]
        );
        assert!(!args.walk.pages);
        assert!(args.exec.is_none());

        let cli =
            parse(&["export", "/dev/vfio-dmabuf/x", "--bar", "0", "--pages"]).expect("parses");
        let Command::Export(args) = cli.command else {
            panic!("not export");
        };
        assert!(args.ranges.is_empty());
        assert!(args.walk.pages);
    }

    #[test]
    fn export_exec_takes_the_rest() {
        let cli = parse(&[
            "export",
            "0000:00:03.0",
            "--bar",
            "0",
            "0:4K",
            "--exec",
            "sh",
            "-c",
            "echo $VFIO_DMABUF_FD",
            "--pages",
            "--json",
        ])
        .expect("parses");
        assert!(!cli.json);
        let Command::Export(args) = cli.command else {
            panic!("not export");
        };
        assert!(!args.walk.pages);
        assert_eq!(
            args.exec.expect("--exec"),
            ["sh", "-c", "echo $VFIO_DMABUF_FD", "--pages", "--json"]
        );
        assert_eq!(args.ranges.len(), 1);
        let e = parse(&["export", "0000:00:03.0", "--bar", "0", "--exec"])
            .err()
            .expect("--exec needs a command");
        assert_eq!(e.kind(), clap::error::ErrorKind::InvalidValue);
    }

    #[test]
    fn bad_arguments() {
        for (args, kind) in [
            (
                &["export", "0000:00:03.0"][..],
                clap::error::ErrorKind::MissingRequiredArgument,
            ),
            (
                &["export", "0000:00:03.0", "--bar", "6"],
                clap::error::ErrorKind::ValueValidation,
            ),
            (
                &["export", "0000:00:03.0", "--bar", "0", "0:0"],
                clap::error::ErrorKind::ValueValidation,
            ),
            (
                &["export", "0000:00:03.0", "--bar", "0", "4K"],
                clap::error::ErrorKind::ValueValidation,
            ),
            (
                &["walk", "0000:00:03.0", "--bar", "0"],
                clap::error::ErrorKind::MissingRequiredArgument,
            ),
            (
                &["revoke", "0000:00:03.0"],
                clap::error::ErrorKind::MissingRequiredArgument,
            ),
        ] {
            let e = parse(args)
                .err()
                .unwrap_or_else(|| panic!("{args:?} parses"));
            assert_eq!(e.kind(), kind, "{args:?}: {e}");
        }
    }

    #[test]
    fn walk_and_state_arguments() {
        let cli =
            parse(&["walk", "0000:00:03.0", "--bar", "0", "whole", "--pages"]).expect("parses");
        let Command::Walk(args) = cli.command else {
            panic!("not walk");
        };
        assert_eq!(args.ranges, [RangeArg::Whole]);
        assert!(args.walk.pages);

        let cli =
            parse(&["restore", "/dev/vfio-dmabuf/0000:00:03.0", "--bar", "4"]).expect("parses");
        let Command::Restore(args) = cli.command else {
            panic!("not restore");
        };
        assert_eq!(args.bar, 4);
    }

    #[test]
    fn peek_poke_and_map_arguments() {
        let cli =
            parse(&["peek", "0000:01:00.0", "--bar", "0", "0x4", "--count", "2"]).expect("parses");
        let Command::Peek(args) = cli.command else {
            panic!("not peek");
        };
        assert_eq!((args.target.bar, args.offset, args.count), (0, 4, 2));
        let cli =
            parse(&["poke", "0000:01:00.0", "--bar", "0", "4", "0xffffffff"]).expect("parses");
        let Command::Poke(args) = cli.command else {
            panic!("not poke");
        };
        assert_eq!((args.offset, args.value), (4, u32::MAX));
        let cli = parse(&[
            "map",
            "0000:01:00.0",
            "--bar",
            "0",
            "0:4K",
            "--do",
            "peek:0",
            "--do",
            "revoke",
        ])
        .expect("parses");
        let Command::Map(args) = cli.command else {
            panic!("not map");
        };
        assert_eq!(args.steps, [access::Op::Peek(0), access::Op::Revoke]);
        for bad in [
            &["peek", "0000:01:00.0", "--bar", "0", "2"][..],
            &["peek", "0000:01:00.0", "--bar", "0", "0", "--count", "0"],
            &["poke", "0000:01:00.0", "--bar", "0", "4", "0x100000000"],
            &["poke", "0000:01:00.0", "--bar", "0", "4"],
            &["map", "0000:01:00.0", "--bar", "0"],
            &["map", "0000:01:00.0", "--bar", "0", "--do", "zap"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
