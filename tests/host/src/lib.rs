//! Host tests of the driver's pure arithmetic. The driver's own file is
//! compiled here unchanged; the tests read SPEC §2 and §3 literally and
//! compare.

#[path = "../../../drivers/vfio_dmabuf/range.rs"]
#[allow(dead_code)]
pub(crate) mod range;

#[cfg(test)]
mod props;
#[cfg(test)]
mod reference;
