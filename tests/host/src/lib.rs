//! Host tests of the driver's pure arithmetic. The driver's own file is
//! compiled here unchanged and compared with `reference.rs`, a brute-force
//! reading of SPEC §2 and §3 that works from the raw request alone and
//! shares nothing with it.

#[path = "../../../drivers/vfio_dmabuf/range.rs"]
#[allow(dead_code)]
pub(crate) mod range;

#[cfg(test)]
mod props;
#[cfg(test)]
mod reference;

/// The range form's runs as an array, the way the exporter fills the
/// importer's `struct phys_vec` array: `range::for_each_run` into `out`.
#[cfg(test)]
pub(crate) fn runs(
    segments: &[range::Segment],
    pgoff: u64,
    pages: u64,
    out: &mut [range::Run],
) -> usize {
    let max = out.len();
    range::for_each_run(segments, pgoff, pages, max, |i, run| out[i] = run)
}
