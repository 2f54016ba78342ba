// SPDX-License-Identifier: GPL-2.0

//! `list`: the functions bound to vfio_dmabuf and their BARs, as text or as
//! JSON.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::Serialize;

use crate::device::{self, Device};
use crate::error::Error;
use crate::output;
use crate::size::human_size;
use crate::uapi;

/// One function, as `--json` prints it.
#[derive(Serialize)]
struct Function {
    /// PCI address, from the device's name.
    address: String,
    /// The character device.
    path: PathBuf,
    bars: Vec<Bar>,
}

/// The kind of a BAR, from its `VFIO_DMABUF_BAR_*` flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Kind {
    Mem,
    Io,
    Absent,
    /// Flags this tool does not know.
    Unknown,
}

/// One BAR, as `--json` prints it.
#[derive(Serialize)]
struct Bar {
    index: u32,
    kind: Kind,
    /// Size in bytes, 0 when absent.
    size: u64,
    /// The raw `VFIO_DMABUF_BAR_*` flags.
    flags: u32,
    #[serde(rename = "64bit")]
    is_64bit: bool,
    prefetchable: bool,
    /// Whether `VFIO_DMABUF_EXPORT` may export from it.
    exportable: bool,
}

impl Bar {
    fn new(info: &uapi::vfio_dmabuf_bar_info) -> Self {
        let kind = if info.flags & uapi::VFIO_DMABUF_BAR_ABSENT != 0 {
            Kind::Absent
        } else if info.flags & uapi::VFIO_DMABUF_BAR_MEM != 0 {
            Kind::Mem
        } else if info.flags & uapi::VFIO_DMABUF_BAR_IO != 0 {
            Kind::Io
        } else {
            Kind::Unknown
        };
        Self {
            index: info.index,
            kind,
            size: info.size,
            flags: info.flags,
            is_64bit: info.flags & uapi::VFIO_DMABUF_BAR_64 != 0,
            prefetchable: info.flags & uapi::VFIO_DMABUF_BAR_PREFETCH != 0,
            exportable: kind == Kind::Mem,
        }
    }
}

/// Describes one device with `VFIO_DMABUF_INFO`.
fn describe(path: &Path) -> Result<Function, Error> {
    let device = Device::open(path)?;
    let info = device.info()?;
    let count = usize::try_from(info.num_bars).unwrap_or(usize::MAX);
    // The kernel never reports more than the array holds; `take` makes sure.
    let bars = info.bars.iter().take(count).map(Bar::new).collect();
    Ok(Function {
        address: device.address(),
        path: device.path().to_owned(),
        bars,
    })
}

fn write_text(out: &mut dyn Write, functions: &[Function]) -> io::Result<()> {
    for function in functions {
        writeln!(out, "{}  {}", function.address, function.path.display())?;
        let mut previous_64bit: Option<u32> = None;
        for bar in &function.bars {
            let kind = match bar.kind {
                Kind::Mem => format!(
                    "mem{}{}",
                    if bar.is_64bit { "64" } else { "32" },
                    if bar.prefetchable {
                        " prefetchable"
                    } else {
                        ""
                    }
                ),
                Kind::Absent => match previous_64bit {
                    Some(lower) => format!("absent (upper half of BAR{lower})"),
                    None => "absent".to_owned(),
                },
                Kind::Io => "io".to_owned(),
                Kind::Unknown => format!("unknown (flags {:#x})", bar.flags),
            };
            if bar.kind == Kind::Absent {
                writeln!(out, "  BAR{}  {kind}", bar.index)?;
            } else {
                writeln!(
                    out,
                    "  BAR{}  {kind:<20} {:>8}  ({:#x})",
                    bar.index,
                    human_size(bar.size),
                    bar.size
                )?;
            }
            previous_64bit = (bar.kind == Kind::Mem && bar.is_64bit).then_some(bar.index);
        }
    }
    Ok(())
}

/// Runs `list` over `names` (paths or PCI addresses), or over every device
/// when there are none.
pub(crate) fn run(names: &[PathBuf], json: bool) -> ExitCode {
    let mut failed = false;
    let paths = if names.is_empty() {
        match device::all() {
            Ok(paths) => paths,
            Err(e) => {
                eprintln!("vfio-dmabuf: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        names.iter().map(|name| device::resolve(name)).collect()
    };

    let mut functions = Vec::new();
    for path in &paths {
        match describe(path) {
            Ok(function) => functions.push(function),
            Err(e) => {
                eprintln!("vfio-dmabuf: {e}");
                failed = true;
            }
        }
    }
    if paths.is_empty() && !json {
        eprintln!(
            "vfio-dmabuf: no device in {}: no function is bound to vfio_dmabuf",
            device::DEV_DIR
        );
    }

    if let Err(e) = output::print(json, &functions, |out, functions| {
        write_text(out, functions)
    }) {
        eprintln!("vfio-dmabuf: {e}");
        failed = true;
    }

    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(index: u32, flags: u32, size: u64) -> Bar {
        Bar::new(&uapi::vfio_dmabuf_bar_info { index, flags, size })
    }

    #[test]
    fn text_and_json() {
        let function = Function {
            address: "0000:00:03.0".to_owned(),
            path: PathBuf::from("/dev/vfio-dmabuf/0000:00:03.0"),
            bars: vec![
                bar(0, uapi::VFIO_DMABUF_BAR_MEM, 1 << 20),
                bar(
                    1,
                    uapi::VFIO_DMABUF_BAR_MEM
                        | uapi::VFIO_DMABUF_BAR_64
                        | uapi::VFIO_DMABUF_BAR_PREFETCH,
                    1 << 30,
                ),
                bar(2, uapi::VFIO_DMABUF_BAR_ABSENT, 0),
                bar(3, uapi::VFIO_DMABUF_BAR_IO, 256),
                bar(4, uapi::VFIO_DMABUF_BAR_ABSENT, 0),
                bar(5, 1 << 7, 0),
            ],
        };
        let mut text = Vec::new();
        write_text(&mut text, std::slice::from_ref(&function)).expect("writes to a Vec");
        let text = String::from_utf8(text).expect("UTF-8");
        let expected = "\
0000:00:03.0  /dev/vfio-dmabuf/0000:00:03.0
  BAR0  mem32                   1 MiB  (0x100000)
  BAR1  mem64 prefetchable      1 GiB  (0x40000000)
  BAR2  absent (upper half of BAR1)
  BAR3  io                      256 B  (0x100)
  BAR4  absent
  BAR5  unknown (flags 0x80)      0 B  (0x0)
";
        assert_eq!(text, expected);

        let json = serde_json::to_value(&function).expect("serializes");
        assert_eq!(json["bars"][1]["kind"], "mem");
        assert_eq!(json["bars"][1]["64bit"], true);
        assert_eq!(json["bars"][1]["prefetchable"], true);
        assert_eq!(json["bars"][1]["exportable"], true);
        assert_eq!(json["bars"][1]["size"], 1u64 << 30);
        assert_eq!(json["bars"][2]["kind"], "absent");
        assert_eq!(json["bars"][3]["exportable"], false);
        assert_eq!(json["path"], "/dev/vfio-dmabuf/0000:00:03.0");
    }
}
