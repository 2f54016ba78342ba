// SPDX-License-Identifier: GPL-2.0

//! Where a function's BARs sit in physical memory, from its sysfs
//! `resource` file, to set beside the page frames the importer reports.

use std::fs;
use std::path::{Path, PathBuf};

use vfio_dmabuf_uapi::sysfs::parse_bar_start;

use crate::error::Error;

/// Where sysfs lists the PCI functions.
const DEVICES: &str = "/sys/bus/pci/devices";

/// The `resource` file of the function at PCI address `address`.
pub fn resource_path(address: &str) -> PathBuf {
    Path::new(DEVICES).join(address).join("resource")
}

/// The first byte of BAR `bar` of the function at `address`: the start
/// address of its line in `resource`.
pub fn bar_start(address: &str, bar: u32) -> Result<u64, Error> {
    let path = resource_path(address);
    let text = fs::read_to_string(&path).map_err(|e| Error::os(&path, "read", e))?;
    parse_bar_start(&text, bar).map_err(|e| Error::invalid(&path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_function() {
        let e = bar_start("ffff:ff:1f.7", 0).expect_err("no such function");
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
        assert!(e
            .to_string()
            .starts_with("/sys/bus/pci/devices/ffff:ff:1f.7/resource: read: ENOENT"));
    }
}
