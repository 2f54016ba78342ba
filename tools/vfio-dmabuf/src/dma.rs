// SPDX-License-Identifier: GPL-2.0

//! `dma`: a dma-buf of this driver mapped into an iommufd IOAS with
//! `IOMMU_IOAS_MAP_FILE`, and a client QEMU `edu` (bound to vfio-pci and
//! attached to the same IOAS through its cdev) DMAing from and to it: what
//! an IOMMU importer of page-frame dma-bufs does, made visible.
//!
//! edu (QEMU 7.2) moves at most 4095 bytes a transfer between its 4 KiB
//! buffer (device address 0x40000) and an IOVA below 256 MiB (its DMA mask);
//! its registers are 0x80 source, 0x88 destination, 0x90 count and 0x98
//! command (bit 0 run, bit 1 edu to memory). A read of the buffer is: a
//! marker into edu's buffer (from user memory mapped with `IOMMU_IOAS_MAP`),
//! the buffer's IOVA into edu's buffer, edu's buffer into user memory. A
//! transfer the IOMMU faults leaves zeros in QEMU's edu (its failed
//! `pci_dma_read()` fills the buffer with them), and a DMAR fault in the
//! kernel log; a transfer that never ran leaves the marker.

use std::fmt;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, Instant};

use serde::Serialize;
use vfio_dmabuf_uapi::iommufd::{Iommufd, VfioCdev};
use vfio_dmabuf_uapi::mapping::{Mapping, PAGE_SIZE};
use vfio_dmabuf_uapi::vfio;

use crate::device::Device;
use crate::error::Error;
use crate::export::{self, Exported};
use crate::output;
use crate::size::{human_size, parse_size, RangeArg};

const EDU_ID: u32 = 0x0100_00ed;
const EDU_SRC: usize = 0x80;
const EDU_DST: usize = 0x88;
const EDU_CNT: usize = 0x90;
const EDU_CMD: usize = 0x98;
const EDU_CMD_RUN: u32 = 1;
const EDU_CMD_TO_RAM: u32 = 2;
const EDU_BUF: u64 = 0x40000;
const EDU_MAX_XFER: u64 = 4095;
const EDU_DMA_LIMIT: u64 = 256 << 20;
/// PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER.
const PCI_COMMAND_MEMORY_MASTER: u16 = 0x6;

/// User memory: the marker's source at 0, the sink at 8 KiB.
const USER_IOVA: u64 = 1 << 20;
const USER_LEN: usize = 16 << 10;
const USER_SINK: usize = 8 << 10;
/// Where the dma-buf is mapped.
const BUFFER_IOVA: u64 = 16 << 20;

/// One step of `dma --do`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// `read:OFFSET[:LENGTH]`: edu reads LENGTH bytes (16 unless given) at
    /// the buffer's OFFSET.
    Read(u64, u64),
    /// `write:OFFSET=VALUE`: edu writes the 32-bit VALUE there.
    Write(u64, u32),
    /// `revoke`, `restore`: the BAR's exports, with the IOAS mapping live.
    Revoke,
    Restore,
    /// `remap`: IOMMU_IOAS_UNMAP and IOMMU_IOAS_MAP_FILE again.
    Remap,
}

impl FromStr for Op {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let usage = "expected read:OFFSET[:LENGTH], write:OFFSET=VALUE, revoke, restore or remap";
        match text.split_once(':') {
            None => match text {
                "revoke" => Ok(Self::Revoke),
                "restore" => Ok(Self::Restore),
                "remap" => Ok(Self::Remap),
                _ => Err(format!("unknown step `{text}`: {usage}")),
            },
            Some(("read", rest)) => {
                let (offset, length) = match rest.split_once(':') {
                    Some((o, l)) => (parse_size(o)?, parse_size(l)?),
                    None => (parse_size(rest)?, 16),
                };
                if length == 0 || length > EDU_MAX_XFER {
                    return Err(format!(
                        "read of {length} bytes: edu moves 1 to {EDU_MAX_XFER} bytes a transfer"
                    ));
                }
                Ok(Self::Read(offset, length))
            }
            Some(("write", rest)) => {
                let (offset, value) = rest
                    .split_once('=')
                    .ok_or_else(|| "expected write:OFFSET=VALUE".to_owned())?;
                Ok(Self::Write(
                    parse_size(offset)?,
                    crate::access::parse_u32(value)?,
                ))
            }
            Some((name, _)) => Err(format!("unknown step `{name}`: {usage}")),
        }
    }
}

/// The marker edu's buffer holds before a read: not the pattern.
fn marker_byte(i: usize) -> u8 {
    0xa5 ^ (i as u8).wrapping_mul(13)
}

/// One step and what it did.
#[derive(Debug, Serialize)]
#[serde(tag = "step", rename_all = "lowercase")]
enum Step {
    Read {
        offset: u64,
        length: u64,
        /// Whether edu's buffer changed at all: false when it kept the
        /// marker. (A read the IOMMU faults leaves zeros in QEMU's edu.)
        moved: bool,
        /// The bytes that reached user memory, as little-endian words.
        words: Vec<u32>,
    },
    Write {
        offset: u64,
        value: u32,
    },
    Revoke,
    Restore,
    Remap,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read {
                offset,
                length,
                moved,
                words,
            } => {
                write!(f, "read  {offset:#x} ({length} bytes): ")?;
                if !moved {
                    return write!(f, "nothing moved: edu's buffer kept the marker");
                }
                for (i, w) in words.iter().enumerate() {
                    write!(f, "{}{w:#010x}", if i == 0 { "" } else { " " })?;
                }
                if words.iter().all(|&w| w == 0) {
                    write!(
                        f,
                        " (all zero: what QEMU's edu stores when its DMA read fails, as when the IOMMU faults it; the kernel logs a DMAR fault then)"
                    )?;
                }
                Ok(())
            }
            Self::Write { offset, value } => write!(f, "write {offset:#x} <- {value:#010x}"),
            Self::Revoke => write!(f, "revoke: exports revoked, the IOAS mapping unmapped"),
            Self::Restore => write!(f, "restore: exports live (the IOAS mapping stays unmapped)"),
            Self::Remap => write!(f, "remap: IOMMU_IOAS_UNMAP, then IOMMU_IOAS_MAP_FILE again"),
        }
    }
}

/// Anonymous user memory, unmapped on drop.
struct UserMemory {
    addr: *mut u8,
    len: usize,
}

impl UserMemory {
    fn new(len: usize) -> io::Result<Self> {
        // SAFETY: a fresh anonymous mapping, owned by the returned value.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            addr: addr.cast(),
            len,
        })
    }

    fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: the mapping is ours, `len` bytes, readable and writable;
        // the device writes it only while a DMA runs, which `edu_dma`
        // waits for before the bytes are looked at again.
        unsafe { std::slice::from_raw_parts_mut(self.addr, self.len) }
    }
}

impl Drop for UserMemory {
    fn drop(&mut self) {
        // SAFETY: unmaps the mapping `new` made.
        unsafe { libc::munmap(self.addr.cast(), self.len) };
    }
}

/// The set-up: the buffer mapped into the IOAS the client is attached to.
struct Session {
    exported: Exported,
    iommufd: Iommufd,
    _client: VfioCdev,
    bar0: Mapping,
    user: UserMemory,
    size: u64,
    client: String,
}

impl Session {
    fn new(exported: Exported, client: &str) -> Result<Self, Error> {
        let size: u64 = exported.ranges.iter().map(|r| r.length).sum();
        if BUFFER_IOVA + size > EDU_DMA_LIMIT {
            return Err(Error::invalid(
                &exported.path,
                format!(
                    "a {} buffer: edu reaches IOVAs below {} only, and the buffer goes at {}",
                    human_size(size),
                    human_size(EDU_DMA_LIMIT),
                    human_size(BUFFER_IOVA)
                ),
            ));
        }
        let iommufd = Iommufd::open()?;
        let cdev = VfioCdev::open(client, &iommufd)?;
        let region = |index| {
            vfio::region_info(cdev.fd(), index)
                .map_err(|e| Error::os(cdev.path(), "VFIO_DEVICE_GET_REGION_INFO", e))
        };
        let bar0 = region(0)?;
        let bar0 = Mapping::new(cdev.fd(), bar0.offset, bar0.size as usize, PAGE_SIZE)
            .map_err(|e| Error::os(cdev.path(), "mmap of BAR0", e))?;
        // Memory decoding and bus mastering, through vfio-pci's view of
        // the configuration space.
        let config = region(vfio_dmabuf_uapi::bindings::VFIO_PCI_CONFIG_REGION_INDEX)?;
        let at = config.offset + 4;
        let config_file = std::fs::File::from(
            cdev.fd()
                .try_clone_to_owned()
                .map_err(|e| Error::os(cdev.path(), "dup", e))?,
        );
        let mut command = [0u8; 2];
        config_file
            .read_exact_at(&mut command, at)
            .map_err(|e| Error::os(cdev.path(), "read PCI_COMMAND", e))?;
        let value = u16::from_le_bytes(command) | PCI_COMMAND_MEMORY_MASTER;
        config_file
            .write_all_at(&value.to_le_bytes(), at)
            .map_err(|e| Error::os(cdev.path(), "write PCI_COMMAND", e))?;
        let id = bar0
            .read32(0)
            .map_err(|e| Error::os(cdev.path(), "read of edu's ID register", e))?;
        if id != EDU_ID {
            return Err(Error::invalid(
                cdev.path(),
                format!("{client} is not an edu: its ID register reads {id:#010x}"),
            ));
        }
        let mut user =
            UserMemory::new(USER_LEN).map_err(|e| Error::os(Path::new("memory"), "mmap", e))?;
        iommufd.map_user(user.bytes().as_ptr() as usize, USER_LEN as u64, USER_IOVA)?;
        iommufd.map_file(exported.dmabuf.as_fd(), 0, size, BUFFER_IOVA)?;
        Ok(Self {
            exported,
            iommufd,
            _client: cdev,
            bar0,
            user,
            size,
            client: client.to_owned(),
        })
    }

    fn reg(&self, reg: usize) -> Result<u32, Error> {
        self.bar0
            .read32(reg)
            .map_err(|e| Error::os(Path::new(&self.client), "edu register read", e))
    }

    fn set(&self, reg: usize, value: u32) -> Result<(), Error> {
        self.bar0
            .write32(reg, value)
            .map_err(|e| Error::os(Path::new(&self.client), "edu register write", e))
    }

    /// One edu transfer between its buffer and `iova`.
    fn edu_dma(&self, to_ram: bool, iova: u64, count: u64) -> Result<(), Error> {
        let edu = EDU_BUF as u32;
        let iova = iova as u32;
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        self.set(EDU_SRC, if to_ram { edu } else { iova })?;
        self.set(EDU_DST, if to_ram { iova } else { edu })?;
        self.set(EDU_CNT, count as u32)?;
        self.set(
            EDU_CMD,
            EDU_CMD_RUN | if to_ram { EDU_CMD_TO_RAM } else { 0 },
        )?;
        let end = Instant::now() + Duration::from_secs(10);
        while self.reg(EDU_CMD)? & EDU_CMD_RUN != 0 {
            if Instant::now() > end {
                return Err(Error::invalid(
                    Path::new(&self.client),
                    "edu's DMA did not finish in 10 s",
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    fn check(&self, offset: u64, length: u64) -> Result<(), Error> {
        if offset.checked_add(length).is_none_or(|end| end > self.size) {
            return Err(Error::invalid(
                &self.exported.path,
                format!(
                    "{length} bytes at {offset:#x} are outside the {} buffer",
                    human_size(self.size)
                ),
            ));
        }
        Ok(())
    }

    fn step(&mut self, op: Op) -> Result<Step, Error> {
        Ok(match op {
            Op::Read(offset, length) => {
                self.check(offset, length)?;
                let n = length as usize;
                for (i, b) in self.user.bytes()[..n].iter_mut().enumerate() {
                    *b = marker_byte(i);
                }
                self.edu_dma(false, USER_IOVA, length)?;
                self.edu_dma(false, BUFFER_IOVA + offset, length)?;
                self.user.bytes()[USER_SINK..USER_SINK + n].fill(0x5a);
                self.edu_dma(true, USER_IOVA + USER_SINK as u64, length)?;
                let got = self.user.bytes()[USER_SINK..USER_SINK + n].to_vec();
                let moved = got.iter().enumerate().any(|(i, &b)| b != marker_byte(i));
                let words = got
                    .chunks(4)
                    .map(|c| {
                        let mut w = [0u8; 4];
                        w[..c.len()].copy_from_slice(c);
                        u32::from_le_bytes(w)
                    })
                    .collect();
                Step::Read {
                    offset,
                    length,
                    moved,
                    words,
                }
            }
            Op::Write(offset, value) => {
                self.check(offset, 4)?;
                self.user.bytes()[..4].copy_from_slice(&value.to_le_bytes());
                self.edu_dma(false, USER_IOVA, 4)?;
                self.edu_dma(true, BUFFER_IOVA + offset, 4)?;
                Step::Write { offset, value }
            }
            Op::Revoke => {
                Device::open(&self.exported.path)?.revoke(self.exported.bar)?;
                Step::Revoke
            }
            Op::Restore => {
                Device::open(&self.exported.path)?.restore(self.exported.bar)?;
                Step::Restore
            }
            Op::Remap => {
                self.iommufd.unmap(BUFFER_IOVA, self.size)?;
                self.iommufd
                    .map_file(self.exported.dmabuf.as_fd(), 0, self.size, BUFFER_IOVA)?;
                Step::Remap
            }
        })
    }
}

/// What `dma` prints.
#[derive(Serialize)]
struct DmaReport {
    address: String,
    bar: u32,
    size: u64,
    client: String,
    iova: String,
    steps: Vec<Step>,
}

fn write_report(out: &mut dyn Write, report: &DmaReport) -> io::Result<()> {
    writeln!(
        out,
        "{} BAR{}: {} mapped with IOMMU_IOAS_MAP_FILE at IOVA {}; edu {} DMAs through the IOMMU",
        report.address,
        report.bar,
        human_size(report.size),
        report.iova,
        report.client
    )?;
    for step in &report.steps {
        writeln!(out, "  {step}")?;
    }
    Ok(())
}

/// `dma`: exports `ranges` of the BAR, maps the buffer into an IOAS that
/// the client edu is attached to, and runs `ops` in order. A read the
/// IOMMU faulted is a result, not a failure.
pub(crate) fn run(
    device: &Path,
    bar: u32,
    ranges: &[RangeArg],
    client: &str,
    ops: &[Op],
    json: bool,
) -> Result<(), Error> {
    let mut session = Session::new(export::export(device, bar, ranges)?, client)?;
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
    let report = DmaReport {
        address: session.exported.address.clone(),
        bar,
        size: session.size,
        client: session.client.clone(),
        iova: format!("{BUFFER_IOVA:#x}"),
        steps,
    };
    output::print(json, &report, |out, r| write_report(out, r))?;
    failed.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_parse() {
        assert_eq!("read:0x100".parse(), Ok(Op::Read(0x100, 16)));
        assert_eq!("read:4K:64".parse(), Ok(Op::Read(4096, 64)));
        assert_eq!("write:8=0x1234".parse(), Ok(Op::Write(8, 0x1234)));
        assert_eq!("revoke".parse(), Ok(Op::Revoke));
        assert_eq!("restore".parse(), Ok(Op::Restore));
        assert_eq!("remap".parse(), Ok(Op::Remap));
        assert!("read:0:4096".parse::<Op>().is_err());
        assert!("read:0:0".parse::<Op>().is_err());
        assert!("peek:0".parse::<Op>().is_err());
    }

    #[test]
    fn marker_is_not_zero_or_the_pattern_start() {
        // The pattern's first words are their own offsets (0, 4, 8...), and
        // a faulted DMA in QEMU may leave zeros: the marker is neither.
        let m: Vec<u8> = (0..16).map(marker_byte).collect();
        assert!(m.iter().all(|&b| b != 0));
        assert_ne!(&m[..4], &[0, 0, 0, 0]);
    }
}
