// SPDX-License-Identifier: GPL-2.0

//! `peek`, `poke` and `map`: 32-bit accesses to device memory through the
//! test importer's mapping of an exported buffer. Every access is made in a
//! forked child (`vfio_dmabuf_uapi::mapping`), so a revoked page reports
//! `SIGBUS` instead of killing the tool.

use std::fmt;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::path::Path;
use std::str::FromStr;

use serde::Serialize;
use vfio_dmabuf_uapi::mapping::{Access, Mapping, PAGE_SIZE, PMD_SIZE, PUD_SIZE};

use crate::device::{self, Device};
use crate::error::Error;
use crate::export::{self, Exported};
use crate::importer::{Importer, NODE};
use crate::output;
use crate::size::{human_size, parse_size, RangeArg};
use crate::uapi;

/// One step of `map --do`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// `peek:OFFSET`: read the word at a buffer offset.
    Peek(u64),
    /// `poke:OFFSET=VALUE`: write it.
    Poke(u64, u32),
    /// `revoke`: revoke the BAR's exports, with the mapping alive.
    Revoke,
    /// `restore`: make them live again.
    Restore,
    /// `counters`: what the importer counted.
    Counters,
}

/// A 32-bit value: decimal, or hexadecimal after `0x`.
pub(crate) fn parse_u32(text: &str) -> Result<u32, String> {
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.map_err(|_| format!("`{text}` is not a 32-bit number"))
}

fn word_offset(text: &str) -> Result<u64, String> {
    let offset = parse_size(text)?;
    if offset % 4 != 0 {
        return Err(format!("offset {offset:#x} is not 32-bit aligned"));
    }
    Ok(offset)
}

impl FromStr for Op {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.split_once(':') {
            None => match text {
                "revoke" => Ok(Self::Revoke),
                "restore" => Ok(Self::Restore),
                "counters" => Ok(Self::Counters),
                _ => Err(format!(
                    "unknown step `{text}`: expected peek:OFFSET, poke:OFFSET=VALUE, revoke, restore or counters"
                )),
            },
            Some(("peek", offset)) => Ok(Self::Peek(word_offset(offset)?)),
            Some(("poke", rest)) => {
                let (offset, value) = rest
                    .split_once('=')
                    .ok_or_else(|| "expected poke:OFFSET=VALUE".to_owned())?;
                Ok(Self::Poke(word_offset(offset)?, parse_u32(value)?))
            }
            Some((name, _)) => Err(format!("unknown step `{name}`")),
        }
    }
}

/// What one access gave, as printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Outcome {
    /// The word read, or written.
    Value(u32),
    /// The access raised SIGBUS.
    Sigbus,
}

impl From<Access> for Outcome {
    fn from(access: Access) -> Self {
        match access {
            Access::Value(v) => Self::Value(v),
            Access::Sigbus => Self::Sigbus,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Value(v) => write!(f, "{v:#010x}"),
            Self::Sigbus => write!(f, "SIGBUS"),
        }
    }
}

/// The importer's counters, as printed.
#[derive(Clone, Copy, Debug, Serialize)]
struct Counters {
    invalidations: u64,
    table_segments: u64,
    pte_faults: u64,
    pmd_faults: u64,
    pud_faults: u64,
}

impl From<uapi::vfio_dmabuf_imp_counters> for Counters {
    fn from(c: uapi::vfio_dmabuf_imp_counters) -> Self {
        Self {
            invalidations: c.invalidations,
            table_segments: c.table_segments,
            pte_faults: c.pte_faults,
            pmd_faults: c.pmd_faults,
            pud_faults: c.pud_faults,
        }
    }
}

impl fmt::Display for Counters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural = if self.invalidations == 1 { "" } else { "s" };
        write!(
            f,
            "{} invalidation{plural}, {} table segments; entries mapped by faults: {} PTE, {} PMD, {} PUD",
            self.invalidations, self.table_segments, self.pte_faults, self.pmd_faults, self.pud_faults
        )
    }
}

/// One step of `map` and what it did.
#[derive(Debug, Serialize)]
#[serde(tag = "step", rename_all = "lowercase")]
enum Step {
    Peek {
        offset: u64,
        result: Outcome,
    },
    Poke {
        offset: u64,
        value: u32,
        result: Outcome,
    },
    Revoke,
    Restore,
    Counters(Counters),
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Peek { offset, result } => write!(f, "peek  {offset:#x}: {result}"),
            Self::Poke {
                offset,
                value,
                result,
            } => match result {
                Outcome::Sigbus => write!(f, "poke  {offset:#x} <- {value:#010x}: SIGBUS"),
                Outcome::Value(_) => write!(f, "poke  {offset:#x} <- {value:#010x}"),
            },
            Self::Revoke => write!(f, "revoke: exports revoked"),
            Self::Restore => write!(f, "restore: exports live"),
            Self::Counters(c) => write!(f, "counters: {c}"),
        }
    }
}

/// A buffer exported, imported and mapped whole.
struct Session {
    exported: Exported,
    importer: Importer,
    mapping: Mapping,
}

impl Session {
    fn new(exported: Exported) -> Result<Self, Error> {
        let importer = Importer::open()?;
        let size = importer.import(exported.dmabuf.as_fd()).map_err(|e| {
            if e.raw_os_error() == Some(libc::ENODEV) {
                Error::invalid(
                    &exported.path,
                    format!(
                        "BAR{}: the importer cannot attach (ENODEV): the BAR's exports are revoked or the function is gone",
                        exported.bar
                    ),
                )
            } else {
                e
            }
        })?;
        let len = usize::try_from(size)
            .map_err(|_| Error::invalid(Path::new(NODE), format!("a buffer of {size} bytes")))?;
        // Aligned for the largest entry the size allows.
        let align = [PUD_SIZE, PMD_SIZE, PAGE_SIZE]
            .into_iter()
            .find(|&a| len >= a)
            .unwrap_or(PAGE_SIZE);
        let mapping = Mapping::new(importer.fd(), 0, len, align)
            .map_err(|e| Error::os(Path::new(NODE), "mmap", e))?;
        Ok(Self {
            exported,
            importer,
            mapping,
        })
    }

    fn access(&self, offset: u64, value: Option<u32>) -> Result<Outcome, Error> {
        let at = usize::try_from(offset).unwrap_or(usize::MAX);
        if at.checked_add(4).is_none_or(|end| end > self.mapping.len()) {
            return Err(Error::invalid(
                &self.exported.path,
                format!(
                    "offset {offset:#x} is outside the {} buffer",
                    human_size(self.mapping.len() as u64)
                ),
            ));
        }
        let access = match value {
            None => self.mapping.probe_read32(at),
            Some(v) => self.mapping.probe_write32(at, v),
        };
        access
            .map(Outcome::from)
            .map_err(|e| Error::os(Path::new(NODE), "access through the mapping", e))
    }

    fn step(&self, op: Op) -> Result<Step, Error> {
        Ok(match op {
            Op::Peek(offset) => Step::Peek {
                offset,
                result: self.access(offset, None)?,
            },
            Op::Poke(offset, value) => Step::Poke {
                offset,
                value,
                result: self.access(offset, Some(value))?,
            },
            Op::Revoke => {
                Device::open(&self.exported.path)?.revoke(self.exported.bar)?;
                Step::Revoke
            }
            Op::Restore => {
                Device::open(&self.exported.path)?.restore(self.exported.bar)?;
                Step::Restore
            }
            Op::Counters => Step::Counters(self.importer.counters()?.into()),
        })
    }
}

/// What `map` prints.
#[derive(Serialize)]
struct MapReport {
    address: String,
    bar: u32,
    size: u64,
    /// The mapping's virtual address.
    mapped_at: String,
    steps: Vec<Step>,
}

fn write_map(out: &mut dyn Write, report: &MapReport) -> io::Result<()> {
    writeln!(
        out,
        "{} BAR{}: {} mapped at {} through {NODE}",
        report.address,
        report.bar,
        human_size(report.size),
        report.mapped_at
    )?;
    for step in &report.steps {
        writeln!(out, "  {step}")?;
    }
    Ok(())
}

/// `map`: exports `ranges` of the BAR, maps the buffer through the importer
/// and runs `ops` on the mapping in order. A SIGBUS is a result, not a
/// failure: only a step that cannot be made fails the command.
pub(crate) fn map(
    device: &Path,
    bar: u32,
    ranges: &[RangeArg],
    ops: &[Op],
    json: bool,
) -> Result<(), Error> {
    let session = Session::new(export::export(device, bar, ranges)?)?;
    let mut steps = Vec::new();
    let mut failed = None;
    for &op in ops {
        match session.step(op) {
            Ok(step) => steps.push(step),
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    let report = MapReport {
        address: session.exported.address.clone(),
        bar,
        size: session.mapping.len() as u64,
        mapped_at: format!("{:#x}", session.mapping.addr()),
        steps,
    };
    output::print(json, &report, |out, r| write_map(out, r))?;
    failed.map_or(Ok(()), Err)
}

/// What `peek` and `poke` print.
#[derive(Serialize)]
struct WordReport {
    address: String,
    bar: u32,
    /// Byte offset in the BAR.
    offset: u64,
    value: u32,
    write: bool,
}

/// Exports the page(s) of BAR `bar` holding `count` words from byte `offset`
/// on, and maps them.
fn session_for(device: &Path, bar: u32, offset: u64, count: u64) -> Result<(Session, u64), Error> {
    let page = device::page_size();
    let path = device::resolve(device);
    let end = count
        .checked_mul(4)
        .and_then(|len| offset.checked_add(len))
        .ok_or_else(|| Error::invalid(&path, "the words run past 2^64"))?;
    let first = offset - offset % page;
    let length = end.div_ceil(page) * page - first;
    let exported = export::export(
        device,
        bar,
        &[RangeArg::Slice {
            offset: first,
            length,
        }],
    )?;
    Ok((Session::new(exported)?, first))
}

fn sigbus(session: &Session, offset: u64) -> Error {
    Error::invalid(
        &session.exported.path,
        format!(
            "BAR{} offset {offset:#x}: the access raised SIGBUS: the BAR's exports are revoked or the device is gone",
            session.exported.bar
        ),
    )
}

/// `peek`: reads `count` 32-bit words of BAR `bar` from byte `offset` on.
pub(crate) fn peek(
    device: &Path,
    bar: u32,
    offset: u64,
    count: u64,
    json: bool,
) -> Result<(), Error> {
    let (session, first) = session_for(device, bar, offset, count)?;
    let mut words = Vec::new();
    for i in 0..count {
        let at = offset + 4 * i;
        match session.access(at - first, None)? {
            Outcome::Value(value) => words.push(WordReport {
                address: session.exported.address.clone(),
                bar,
                offset: at,
                value,
                write: false,
            }),
            Outcome::Sigbus => return Err(sigbus(&session, at)),
        }
    }
    output::print(json, &words, |out, words| {
        for w in words {
            writeln!(
                out,
                "{} BAR{}+{:#x}: {:#010x}",
                w.address, w.bar, w.offset, w.value
            )?;
        }
        Ok(())
    })
}

/// `poke`: writes `value` to the 32-bit word of BAR `bar` at byte `offset`.
pub(crate) fn poke(
    device: &Path,
    bar: u32,
    offset: u64,
    value: u32,
    json: bool,
) -> Result<(), Error> {
    let (session, first) = session_for(device, bar, offset, 1)?;
    if session.access(offset - first, Some(value))? == Outcome::Sigbus {
        return Err(sigbus(&session, offset));
    }
    let report = WordReport {
        address: session.exported.address.clone(),
        bar,
        offset,
        value,
        write: true,
    };
    output::print(json, &report, |out, w| {
        writeln!(
            out,
            "{} BAR{}+{:#x} <- {:#010x}",
            w.address, w.bar, w.offset, w.value
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_parse() {
        assert_eq!("peek:0".parse(), Ok(Op::Peek(0)));
        assert_eq!("peek:0x1000".parse(), Ok(Op::Peek(0x1000)));
        assert_eq!("peek:4K".parse(), Ok(Op::Peek(4096)));
        assert_eq!("poke:4=0x12345678".parse(), Ok(Op::Poke(4, 0x1234_5678)));
        assert_eq!("poke:8=7".parse(), Ok(Op::Poke(8, 7)));
        assert_eq!("revoke".parse(), Ok(Op::Revoke));
        assert_eq!("restore".parse(), Ok(Op::Restore));
        assert_eq!("counters".parse(), Ok(Op::Counters));
        for bad in [
            "peek:2",
            "poke:4",
            "poke:4=0x100000000",
            "peek",
            "zap",
            "zap:1",
            "peek:x",
        ] {
            assert!(bad.parse::<Op>().is_err(), "{bad}");
        }
    }

    #[test]
    fn steps_print() {
        let lines: Vec<String> = [
            Step::Peek {
                offset: 0,
                result: Outcome::Value(0x0100_00ed),
            },
            Step::Poke {
                offset: 4,
                value: 1,
                result: Outcome::Value(1),
            },
            Step::Peek {
                offset: 4,
                result: Outcome::Sigbus,
            },
            Step::Revoke,
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        assert_eq!(
            lines,
            [
                "peek  0x0: 0x010000ed",
                "poke  0x4 <- 0x00000001",
                "peek  0x4: SIGBUS",
                "revoke: exports revoked"
            ]
        );
        let json = serde_json::to_value(Step::Peek {
            offset: 8,
            result: Outcome::Sigbus,
        })
        .unwrap();
        assert_eq!(json["step"], "peek");
        assert_eq!(json["result"], "sigbus");
        let json = serde_json::to_value(Step::Peek {
            offset: 8,
            result: Outcome::Value(3),
        })
        .unwrap();
        assert_eq!(json["result"]["value"], 3);
    }
}
