// SPDX-License-Identifier: GPL-2.0

//! Where a function's BARs sit in physical memory, from its sysfs
//! `resource` file, to set beside the page frames the importer reports.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::Error;

/// Where sysfs lists the PCI functions.
const DEVICES: &str = "/sys/bus/pci/devices";

/// The `resource` file of the function at PCI address `address`.
pub(crate) fn resource_path(address: &str) -> PathBuf {
    Path::new(DEVICES).join(address).join("resource")
}

/// The first byte of BAR `bar` of the function at `address`: the start
/// address of its line in `resource`.
pub(crate) fn bar_start(address: &str, bar: u32) -> Result<u64, Error> {
    let path = resource_path(address);
    let text = fs::read_to_string(&path).map_err(|e| Error::os(&path, "read", e))?;
    parse_bar_start(&text, bar).map_err(|e| Error::invalid(&path, e))
}

/// The start address of line `bar` of a `resource` file, whose lines read
/// `start end flags` in hexadecimal, the standard BARs first.
fn parse_bar_start(text: &str, bar: u32) -> Result<u64, String> {
    let line = text
        .lines()
        .nth(bar as usize)
        .ok_or_else(|| format!("no line for BAR{bar}"))?;
    let start = line
        .split_whitespace()
        .next()
        .ok_or_else(|| format!("line {}: empty", bar + 1))?;
    start
        .strip_prefix("0x")
        .and_then(|digits| u64::from_str_radix(digits, 16).ok())
        .ok_or_else(|| format!("line {}: {start:?} is not a hexadecimal address", bar + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The start of a `resource` file of pci-testdev with a 16 GiB BAR2, as
    /// the kernel prints it.
    const TESTDEV: &str = "\
0x00000000fea00000 0x00000000fea00fff 0x0000000000040200
0x000000000000c000 0x000000000000c0ff 0x0000000000040101
0x0000000400000000 0x00000007ffffffff 0x000000000014220c
0x0000000000000000 0x0000000000000000 0x0000000000000000
";

    #[test]
    fn parses_resource() {
        assert_eq!(parse_bar_start(TESTDEV, 0), Ok(0xfea0_0000));
        assert_eq!(parse_bar_start(TESTDEV, 2), Ok(0x4_0000_0000));
        assert_eq!(parse_bar_start(TESTDEV, 3), Ok(0));
        assert!(parse_bar_start(TESTDEV, 4)
            .expect_err("4 lines")
            .contains("no line for BAR4"));
        assert!(parse_bar_start("4271898624 0 0\n", 0)
            .expect_err("decimal")
            .contains("not a hexadecimal address"));
        assert!(parse_bar_start("\n", 0)
            .expect_err("empty")
            .contains("empty"));
    }

    #[test]
    fn missing_function() {
        let e = bar_start("ffff:ff:1f.7", 0).expect_err("no such function");
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
        assert!(e
            .to_string()
            .starts_with("/sys/bus/pci/devices/ffff:ff:1f.7/resource: read: ENOENT"));
    }
}
