// SPDX-License-Identifier: GPL-2.0

//! The guest's PCI functions as sysfs shows them: finding one by ID, its
//! BARs (`resource`), and binding it to the driver through `driver_override`
//! or unbinding it, as an administrator would.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use vfio_dmabuf_uapi::sysfs::{parse_hex, parse_line};

use crate::sys;

/// Where sysfs lists the PCI functions.
const DEVICES: &str = "/sys/bus/pci/devices";
/// The bus attribute that binds a function to the driver its
/// `driver_override` names.
const DRIVERS_PROBE: &str = "/sys/bus/pci/drivers_probe";
/// The driver under test, as the PCI core names it.
pub(crate) const DRIVER: &str = "vfio_dmabuf";

/// `IORESOURCE_*` bits of `<linux/ioport.h>`, as `resource` shows them.
pub(crate) const IORESOURCE_IO: u64 = 0x100;
pub(crate) const IORESOURCE_MEM: u64 = 0x200;
pub(crate) const IORESOURCE_PREFETCH: u64 = 0x2000;
pub(crate) const IORESOURCE_MEM_64: u64 = 0x0010_0000;

/// Number of standard BARs: the first lines of `resource`.
pub(crate) const NUM_BARS: usize = 6;

/// One line of a function's `resource` file: a BAR's first and last byte
/// (physical addresses on x86) and its `IORESOURCE_*` flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Resource {
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) flags: u64,
}

impl Resource {
    /// Size in bytes, 0 for an absent BAR, as `pci_resource_len()` counts.
    pub(crate) fn size(&self) -> u64 {
        if self.end == 0 || self.end < self.start {
            0
        } else {
            (self.end - self.start).saturating_add(1)
        }
    }

    /// First page frame of the BAR.
    pub(crate) fn pfn(&self) -> u64 {
        self.start >> crate::expect::PAGE_SHIFT
    }
}

/// Parses a `resource` file: one `start end flags` line (hexadecimal) per
/// resource, the standard BARs first.
pub(crate) fn parse_resources(text: &str) -> Result<[Resource; NUM_BARS], String> {
    let mut bars = [Resource::default(); NUM_BARS];
    let mut lines = text.lines();
    for (index, bar) in bars.iter_mut().enumerate() {
        let line = lines
            .next()
            .ok_or_else(|| format!("{index} lines, expected at least {NUM_BARS}"))?;
        let [start, end, flags] =
            parse_line(line).map_err(|e| format!("line {}: {e}", index + 1))?;
        *bar = Resource { start, end, flags };
    }
    Ok(bars)
}

/// A PCI function of the guest, by its address (`0000:01:00.0`).
#[derive(Clone, Debug)]
pub(crate) struct Function {
    pub(crate) address: String,
}

impl Function {
    /// The first function (in address order) with this vendor and device ID.
    pub(crate) fn find(vendor: u16, device: u16) -> Result<Option<Self>, String> {
        let mut addresses = Vec::new();
        let entries = fs::read_dir(DEVICES).map_err(|e| io_error(Path::new(DEVICES), &e))?;
        for entry in entries {
            let entry = entry.map_err(|e| io_error(Path::new(DEVICES), &e))?;
            addresses.push(entry.file_name().to_string_lossy().into_owned());
        }
        addresses.sort();
        for address in addresses {
            let function = Self { address };
            if function.id("vendor")? == vendor && function.id("device")? == device {
                return Ok(Some(function));
            }
        }
        Ok(None)
    }

    fn sysfs(&self, attribute: &str) -> PathBuf {
        Path::new(DEVICES).join(&self.address).join(attribute)
    }

    fn id(&self, attribute: &str) -> Result<u16, String> {
        let path = self.sysfs(attribute);
        let text = fs::read_to_string(&path).map_err(|e| io_error(&path, &e))?;
        let value = parse_hex(text.trim()).map_err(|e| format!("{}: {e}", path.display()))?;
        u16::try_from(value).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The standard BARs, from `resource`.
    pub(crate) fn resources(&self) -> Result<[Resource; NUM_BARS], String> {
        let path = self.sysfs("resource");
        let text = fs::read_to_string(&path).map_err(|e| io_error(&path, &e))?;
        parse_resources(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The driver bound to the function, if any.
    pub(crate) fn driver(&self) -> Result<Option<String>, String> {
        let path = self.sysfs("driver");
        match fs::read_link(&path) {
            Ok(target) => Ok(target
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(&path, &e)),
        }
    }

    /// The function's character device, `/dev/vfio-dmabuf/<address>`.
    pub(crate) fn node(&self) -> PathBuf {
        Path::new(crate::exporter::DEV_DIR).join(&self.address)
    }

    /// Binds the function to the driver through `driver_override`, first
    /// unbinding whatever driver holds it.
    pub(crate) fn bind_by_override(&self) -> Result<(), String> {
        match self.driver()? {
            Some(driver) if driver == DRIVER => return Ok(()),
            Some(_) => write(&self.sysfs("driver/unbind"), &self.address)?,
            None => {}
        }
        write(&self.sysfs("driver_override"), DRIVER)?;
        self.probe()?;
        match self.driver()? {
            Some(driver) if driver == DRIVER => Ok(()),
            Some(driver) => Err(format!("{} is bound to {driver}", self.address)),
            None => Err(format!("{} bound to no driver", self.address)),
        }
    }

    /// Asks the PCI core to bind the function again (to the driver its
    /// `driver_override` names).
    pub(crate) fn probe(&self) -> Result<(), String> {
        write(Path::new(DRIVERS_PROBE), &self.address)
    }

    /// Resets the function as `echo 1 > reset` does: the PCI core picks the
    /// first of the function's reset methods (`reset_method`) and calls the
    /// bound driver's `reset_prepare` and `reset_done` around it. The kernel
    /// shows no `reset` attribute when it knows no way to reset the
    /// function; that is an error here, said as such.
    pub(crate) fn reset(&self) -> Result<(), String> {
        let path = self.sysfs("reset");
        if !path.exists() {
            return Err(format!(
                "{} does not exist: the kernel knows no reset method for {}",
                path.display(),
                self.address
            ));
        }
        write(&path, "1")
    }

    /// The function's reset methods in the order the PCI core tries them
    /// (`reset_method`), if sysfs shows any.
    pub(crate) fn reset_methods(&self) -> Option<String> {
        let text = fs::read_to_string(self.sysfs("reset_method")).ok()?;
        let text = text.trim();
        (!text.is_empty()).then(|| text.to_owned())
    }

    /// Unbinds the function from the driver under test.
    pub(crate) fn unbind(&self) -> Result<(), String> {
        let path = Path::new("/sys/bus/pci/drivers")
            .join(DRIVER)
            .join("unbind");
        write(&path, &self.address)
    }
}

/// Writes a sysfs attribute in one write(2), as `echo` does.
fn write(path: &Path, value: &str) -> Result<(), String> {
    fs::write(path, value).map_err(|e| {
        format!(
            "writing {value:?} to {}: {}",
            path.display(),
            sys::describe(&e)
        )
    })
}

fn io_error(path: &Path, err: &io::Error) -> String {
    format!("{}: {}", path.display(), sys::describe(err))
}

/// Waits up to `timeout` for `path` to exist (`exists`) or to be gone.
/// devtmpfs adds and removes device nodes as the driver registers them, but
/// a udev rule may act on them afterwards.
pub(crate) fn wait_for(path: &Path, exists: bool, timeout: Duration) -> bool {
    let start = Instant::now();
    loop {
        if path.exists() == exists {
            return true;
        }
        if start.elapsed() >= timeout {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

impl Function {
    /// Binds the function to `driver` (as the PCI core names it) through
    /// `driver_override`, first unbinding whatever driver holds it.
    pub(crate) fn bind_to(&self, driver: &str) -> Result<(), String> {
        match self.driver()? {
            Some(bound) if bound == driver => return Ok(()),
            Some(_) => write(&self.sysfs("driver/unbind"), &self.address)?,
            None => {}
        }
        write(&self.sysfs("driver_override"), driver)?;
        self.probe()?;
        match self.driver()? {
            Some(bound) if bound == driver => Ok(()),
            Some(bound) => Err(format!(
                "{} is bound to {bound}, not {driver}",
                self.address
            )),
            None => Err(format!("{} bound to no driver, not {driver}", self.address)),
        }
    }

    /// The function's IOMMU group number, if it is in one.
    pub(crate) fn iommu_group(&self) -> Option<String> {
        let target = fs::read_link(self.sysfs("iommu_group")).ok()?;
        Some(target.file_name()?.to_string_lossy().into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `resource` file of pci-testdev with a 16 GiB BAR2, as the kernel
    /// prints it (13 lines for a function without a bridge window).
    const TESTDEV: &str = "\
0x00000000fea00000 0x00000000fea00fff 0x0000000000040200
0x000000000000c000 0x000000000000c0ff 0x0000000000040101
0x0000000400000000 0x00000007ffffffff 0x000000000014220c
0x0000000000000000 0x0000000000000000 0x0000000000000000
0x0000000000000000 0x0000000000000000 0x0000000000000000
0x0000000000000000 0x0000000000000000 0x0000000000000000
0x0000000000000000 0x0000000000000000 0x0000000000000000
0x0000000000000000 0x0000000000000000 0x0000000000000000
0x0000000000000000 0x0000000000000000 0x0000000000000000
0x0000000000000000 0x0000000000000000 0x0000000000000000
0x0000000000000000 0x0000000000000000 0x0000000000000000
0x0000000000000000 0x0000000000000000 0x0000000000000000
0x0000000000000000 0x0000000000000000 0x0000000000000000
";

    #[test]
    fn parses_resource() {
        let bars = parse_resources(TESTDEV).expect("parses");
        assert_eq!(bars[0].size(), 4096);
        assert_eq!(bars[0].flags & IORESOURCE_MEM, IORESOURCE_MEM);
        assert_eq!(bars[1].size(), 256);
        assert_eq!(bars[1].flags & IORESOURCE_IO, IORESOURCE_IO);
        assert_eq!(bars[2].size(), 16 << 30);
        assert_eq!(bars[2].pfn(), 0x40_0000);
        assert_ne!(bars[2].flags & IORESOURCE_MEM_64, 0);
        assert_ne!(bars[2].flags & IORESOURCE_PREFETCH, 0);
        assert_eq!(bars[3], Resource::default());
        assert_eq!(bars[3].size(), 0);
    }

    #[test]
    fn rejects_bad_resource() {
        assert!(parse_resources("0x0 0x0 0x0\n").is_err());
        let short_line = TESTDEV.replacen(" 0x0000000000040200", "", 1);
        assert!(parse_resources(&short_line).is_err());
        let decimal = TESTDEV.replacen("0x00000000fea00000", "4271898624", 1);
        assert!(parse_resources(&decimal).is_err());
    }

    #[test]
    fn waits_for_what_is_already_there() {
        assert!(wait_for(Path::new("/"), true, Duration::ZERO));
        assert!(wait_for(Path::new("/nonexistent/x"), false, Duration::ZERO));
        assert!(!wait_for(
            Path::new("/nonexistent/x"),
            true,
            Duration::from_millis(20)
        ));
    }
}
