// SPDX-License-Identifier: GPL-2.0

//! `vfio-dmabuf-bench`: the benchmark drivers of `make bench`, apart from the
//! user's tool: the test importer's walks of an exported dma-buf and the
//! per-call latencies, REVOKE and EXPORT times, and upstream vfio-pci's
//! dma-buf path as the peer. Every figure is printed, and with `--json`
//! written for tests/vm/bench_report.py, which judges the targets.

mod bench;
mod peer;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

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

use crate::error::Error;
use crate::size::RangeArg;

/// Benchmarks of page frame dma-bufs: walks, latencies, revoke and export,
/// ours and upstream vfio-pci's.
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
    /// Time the importer's walks of one dma-buf, by max_order and page by
    /// page.
    ///
    /// Exports once, imports into the test importer, and walks R times each
    /// way, as the importer times its walks in the kernel. Page-by-page
    /// walks are skipped for buffers of more than --max-pages pages.
    Walk(BenchArgs),
    /// Time REVOKE of a BAR with 1, 16, 256... importers attached to one of
    /// its buffers (per attachment: the median over the count).
    Revoke(BenchRevokeArgs),
    /// Time EXPORT of slices of a BAR (and the close of the new dma-buf).
    Export(BenchArgs),
    /// Time upstream vfio-pci's dma-buf path on a function bound to
    /// vfio-pci: VFIO_DEVICE_FEATURE_DMA_BUF, the benchmarks' scatterlist
    /// importer (/dev/vfio-dmabuf-peer) mapping it for a PCI client and
    /// walking the scatterlist, and the revoke when memory decoding is
    /// turned off, with 1, 16, 256... mapped attachments.
    Peer(BenchPeerArgs),
}

#[derive(Args, Debug)]
struct BenchPeerArgs {
    /// The function bound to vfio-pci, by PCI address.
    address: String,
    /// The BAR, 0 to 5.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..6))]
    bar: u32,
    /// The PCI function the importer maps for, by PCI address.
    #[arg(long, value_name = "ADDRESS")]
    client: String,
    /// Slices of the BAR, as for `export`; the whole BAR when none is given.
    #[arg(value_name = "RANGE")]
    ranges: Vec<RangeArg>,
    /// Attachment counts for the revoke, comma-separated (none: no revoke);
    /// 0 times the memory-decoding toggle with no dma-buf.
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u32).range(0..=4096))]
    attachments: Vec<u32>,
    /// Walks, exports and revokes per count.
    #[arg(long, value_name = "R", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..))]
    repeat: u32,
    /// Map/unmap and lock/unlock pairs timed for the per-call latency.
    #[arg(long, value_name = "N", default_value_t = bench::LATENCY_LOOPS,
          value_parser = clap::value_parser!(u32).range(1..=1 << 24))]
    latency_loops: u32,
}

#[derive(Args, Debug)]
struct BenchRevokeArgs {
    #[command(flatten)]
    target: BarArgs,
    /// Attachment counts, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 16, 256, 1024])]
    attachments: Vec<usize>,
    /// REVOKEs per count.
    #[arg(long, value_name = "R", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..))]
    repeat: u32,
}

/// A BAR of a bound function.
#[derive(Args, Debug)]
struct BenchArgs {
    #[command(flatten)]
    target: BarArgs,
    /// Slices of the BAR, as for `export`; the whole BAR when none is given.
    #[arg(value_name = "RANGE")]
    ranges: Vec<RangeArg>,
    /// Walks of each kind.
    #[arg(long, value_name = "R", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..))]
    repeat: u32,
    /// Skip the page-by-page walks of a buffer of more pages than this.
    #[arg(long, value_name = "PAGES", default_value_t = bench::MAX_PAGES_BY_PAGE)]
    max_pages: u64,
}

fn run(command: Command, json: bool) -> Result<ExitCode, Error> {
    match command {
        Command::Walk(args) => {
            let exported = export::export(&args.target.device, args.target.bar, &args.ranges)?;
            bench::run(&exported, args.repeat, args.max_pages, json)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Revoke(args) => {
            let exported = export::export(
                &args.target.device,
                args.target.bar,
                &[RangeArg::Slice {
                    offset: 0,
                    length: 4096,
                }],
            )?;
            bench::revoke(&exported, &args.attachments, args.repeat, json)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Export(args) => {
            bench::export(
                &args.target.device,
                args.target.bar,
                &args.ranges,
                args.repeat,
                json,
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Peer(args) => {
            let plan = peer::Plan {
                address: &args.address,
                bar: args.bar,
                client: &args.client,
                ranges: &args.ranges,
                attachments: &args.attachments,
                repeat: args.repeat,
                latency_loops: args.latency_loops,
            };
            peer::run(&plan, json)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command, cli.json) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vfio-dmabuf-bench: {e}");
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
        Cli::try_parse_from(std::iter::once("vfio-dmabuf-bench").chain(args.iter().copied()))
    }

    #[test]
    fn walk_arguments() {
        let cli = parse(&["walk", "0000:00:03.0", "--bar", "2"]).expect("parses");
        let Command::Walk(args) = cli.command else {
            panic!("not walk");
        };
        assert_eq!(args.repeat, 10);
        assert!(args.ranges.is_empty());
        let cli = parse(&[
            "walk",
            "0000:00:03.0",
            "--bar",
            "2",
            "--repeat",
            "3",
            "0:1G",
        ])
        .expect("parses");
        let Command::Walk(args) = cli.command else {
            panic!("not walk");
        };
        assert_eq!(args.repeat, 3);
        assert_eq!(
            args.ranges,
            [RangeArg::Slice {
                offset: 0,
                length: 1 << 30
            }]
        );

        let e = parse(&["walk", "0000:00:03.0", "--bar", "0", "--repeat", "0"])
            .err()
            .expect("a repeat of 0 is refused");
        assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation);
    }
}
