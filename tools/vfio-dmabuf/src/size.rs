// SPDX-License-Identifier: GPL-2.0

//! Sizes and BAR ranges as the user writes them on the command line
//! (`0x1000`, `64K`, `0:2M`, `whole`) and as the tool prints them (`1 MiB`).

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// A slice of a BAR as the user names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeArg {
    /// `whole`: the BAR from its first byte to its last.
    Whole,
    /// `offset:length`, in bytes.
    Slice { offset: u64, length: u64 },
}

impl FromStr for RangeArg {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if text == "whole" {
            return Ok(Self::Whole);
        }
        let (offset, length) = text
            .split_once(':')
            .ok_or_else(|| "expected OFFSET:LENGTH or `whole`".to_owned())?;
        let offset = parse_size(offset).map_err(|e| format!("offset: {e}"))?;
        let length = parse_size(length).map_err(|e| format!("length: {e}"))?;
        if length == 0 {
            return Err("length: a range is not empty".to_owned());
        }
        Ok(Self::Slice { offset, length })
    }
}

/// A byte range of a BAR, resolved against its size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Range {
    pub offset: u64,
    pub length: u64,
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}:{:#x}", self.offset, self.length)
    }
}

/// A size or offset: decimal, or hexadecimal after `0x`, optionally followed
/// by `K`, `M`, `G` or `T` (either case) for that power of 1024.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let (number, shift) = match text.as_bytes().last().map(u8::to_ascii_uppercase) {
        Some(b'K') => (&text[..text.len() - 1], 10),
        Some(b'M') => (&text[..text.len() - 1], 20),
        Some(b'G') => (&text[..text.len() - 1], 30),
        Some(b'T') => (&text[..text.len() - 1], 40),
        _ => (text, 0),
    };
    let value = match number
        .strip_prefix("0x")
        .or_else(|| number.strip_prefix("0X"))
    {
        Some(hex) if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            u64::from_str_radix(hex, 16)
        }
        None if !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()) => {
            number.parse()
        }
        _ => {
            return Err(format!(
                "{text:?} is not a size (decimal, or hexadecimal after 0x, optionally with K, M, G or T)"
            ))
        }
    }
    .map_err(|_| format!("{text:?} does not fit in 64 bits"))?;
    value
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("{text:?} does not fit in 64 bits"))
}

/// The ranges of an export: those the user named, `whole` standing for the
/// BAR of `bar_size` bytes, and the whole BAR when none is named.
pub fn resolve(ranges: &[RangeArg], bar_size: u64) -> Vec<Range> {
    if ranges.is_empty() {
        return vec![Range {
            offset: 0,
            length: bar_size,
        }];
    }
    ranges
        .iter()
        .map(|range| match *range {
            RangeArg::Whole => Range {
                offset: 0,
                length: bar_size,
            },
            RangeArg::Slice { offset, length } => Range { offset, length },
        })
        .collect()
}

/// Checks `ranges` as `VFIO_DMABUF_EXPORT` will, to say what is wrong in
/// words rather than with `EINVAL`: each is page aligned, not empty and
/// within a BAR of `bar_size` bytes, and there are not too many.
pub fn check(
    ranges: &[Range],
    bar_size: u64,
    page_size: u64,
    max_ranges: usize,
) -> Result<(), String> {
    if ranges.len() > max_ranges {
        return Err(format!(
            "{} ranges, more than the {max_ranges} one export may carry",
            ranges.len()
        ));
    }
    let mut total = 0u64;
    for range in ranges {
        if range.length == 0 {
            return Err(format!("range {range}: empty (is the BAR absent?)"));
        }
        if range.offset % page_size != 0 || range.length % page_size != 0 {
            return Err(format!(
                "range {range}: not a multiple of the page size ({page_size:#x})"
            ));
        }
        match range.offset.checked_add(range.length) {
            Some(end) if end <= bar_size => {}
            _ => {
                return Err(format!(
                    "range {range}: past the end of the BAR ({bar_size:#x} bytes)"
                ))
            }
        }
        total = total
            .checked_add(range.length)
            .ok_or_else(|| "the ranges add up to more than 64 bits of bytes".to_owned())?;
    }
    Ok(())
}

/// `1 MiB`, `256 B`: the largest binary unit that divides the size exactly,
/// as a BAR's size (a power of two) always allows.
pub fn human_size(size: u64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut value = size;
    let mut unit = 0;
    while value != 0 && value.is_multiple_of(1024) && unit + 1 < UNITS.len() {
        value /= 1024;
        unit += 1;
    }
    format!("{value} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("0x1000"), Ok(0x1000));
        assert_eq!(parse_size("0XfeA0"), Ok(0xfea0));
        assert_eq!(parse_size("4K"), Ok(4096));
        assert_eq!(parse_size("4k"), Ok(4096));
        assert_eq!(parse_size("2M"), Ok(2 << 20));
        assert_eq!(parse_size("16G"), Ok(16 << 30));
        assert_eq!(parse_size("1t"), Ok(1 << 40));
        assert_eq!(parse_size("0x10K"), Ok(0x4000));
        assert_eq!(parse_size("0x1g"), Ok(1 << 30));
        assert_eq!(parse_size("18446744073709551615"), Ok(u64::MAX));
        assert_eq!(parse_size("0xffffffffffffffff"), Ok(u64::MAX));
        assert_eq!(parse_size("16777215T"), Ok(0xffffff << 40));
    }

    #[test]
    fn bad_sizes() {
        for text in [
            "", "K", "0x", "0xK", "-1", "+1", " 1", "1 ", "1.5M", "1KB", "1KiB", "0x1h", "12a",
            "0b101", "1MK", "1P", "ten",
        ] {
            let e = parse_size(text).expect_err(text);
            assert!(e.contains("is not a size"), "{text:?}: {e}");
        }
        for text in ["18446744073709551616", "0x10000000000000000", "16777216T"] {
            let e = parse_size(text).expect_err(text);
            assert!(e.contains("does not fit in 64 bits"), "{text:?}: {e}");
        }
    }

    #[test]
    fn ranges() {
        assert_eq!("whole".parse(), Ok(RangeArg::Whole));
        assert_eq!(
            "0:4K".parse(),
            Ok(RangeArg::Slice {
                offset: 0,
                length: 4096
            })
        );
        assert_eq!(
            "0x200000:2M".parse(),
            Ok(RangeArg::Slice {
                offset: 0x20_0000,
                length: 0x20_0000
            })
        );
        assert_eq!(
            "1G:0x1000".parse(),
            Ok(RangeArg::Slice {
                offset: 1 << 30,
                length: 0x1000
            })
        );
        for (text, message) in [
            ("Whole", "expected OFFSET:LENGTH"),
            ("4096", "expected OFFSET:LENGTH"),
            ("", "expected OFFSET:LENGTH"),
            ("0:0", "length: a range is not empty"),
            (":4K", "offset: \"\" is not a size"),
            ("0:", "length: \"\" is not a size"),
            ("0:4K:1", "length: \"4K:1\" is not a size"),
            ("x:4K", "offset:"),
        ] {
            let e = text.parse::<RangeArg>().expect_err(text);
            assert!(e.starts_with(message), "{text:?}: {e}");
        }
    }

    #[test]
    fn resolves_whole() {
        let bar = 1 << 20;
        assert_eq!(
            resolve(&[], bar),
            [Range {
                offset: 0,
                length: bar
            }]
        );
        let ranges = [
            RangeArg::Slice {
                offset: 0x1000,
                length: 0x2000,
            },
            RangeArg::Whole,
        ];
        assert_eq!(
            resolve(&ranges, bar),
            [
                Range {
                    offset: 0x1000,
                    length: 0x2000
                },
                Range {
                    offset: 0,
                    length: bar
                }
            ]
        );
    }

    #[test]
    fn checks_like_the_kernel() {
        let page = 4096;
        let bar = 1 << 20;
        let range = |offset, length| Range { offset, length };
        assert_eq!(check(&[range(0, bar)], bar, page, 256), Ok(()));
        assert_eq!(
            check(&[range(0xff000, 0x1000), range(0, 0x1000)], bar, page, 256),
            Ok(())
        );
        let fails = |ranges: &[Range], message: &str| {
            let e = check(ranges, bar, page, 2).expect_err(message);
            assert!(e.contains(message), "{ranges:?}: {e}");
        };
        fails(&[range(0, 0)], "empty");
        fails(&[range(0x800, 0x1000)], "page size (0x1000)");
        fails(&[range(0, 0x1800)], "page size");
        fails(
            &[range(0xff000, 0x2000)],
            "past the end of the BAR (0x100000",
        );
        fails(&[range(!0xfff, 0x1000)], "past the end");
        fails(&[range(0, 0x1000); 3], "3 ranges, more than the 2");
        let huge = 1 << 63;
        let e = check(&[range(0, huge), range(0, huge)], u64::MAX, page, 2).expect_err("overflows");
        assert!(e.contains("more than 64 bits"), "{e}");
        assert_eq!(range(0x1000, 0x2000).to_string(), "0x1000:0x2000");
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(256), "256 B");
        assert_eq!(human_size(4096), "4 KiB");
        assert_eq!(human_size(1 << 20), "1 MiB");
        assert_eq!(human_size(3 << 30), "3 GiB");
        assert_eq!(human_size(1 << 63), "8 EiB");
        assert_eq!(human_size(1536), "1536 B");
    }
}
