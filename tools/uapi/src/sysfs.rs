// SPDX-License-Identifier: GPL-2.0

//! A PCI function's sysfs `resource` file: one `start end flags` line in
//! hexadecimal per resource, the standard BARs first.

/// A hexadecimal number as sysfs prints it, `0x` first.
pub fn parse_hex(field: &str) -> Result<u64, String> {
    let digits = field
        .strip_prefix("0x")
        .ok_or_else(|| format!("{field:?}: not hexadecimal"))?;
    u64::from_str_radix(digits, 16).map_err(|e| format!("{field:?}: {e}"))
}

/// One line of a `resource` file: a resource's first and last byte and its
/// `IORESOURCE_*` flags.
pub fn parse_line(line: &str) -> Result<[u64; 3], String> {
    let fields: Vec<u64> = line
        .split_whitespace()
        .map(parse_hex)
        .collect::<Result<_, _>>()?;
    let [start, end, flags] = fields[..] else {
        return Err(format!("{line:?}: not 3 fields"));
    };
    Ok([start, end, flags])
}

/// The start address of line `bar` of a `resource` file, whose lines read
/// `start end flags` in hexadecimal, the standard BARs first.
pub fn parse_bar_start(text: &str, bar: u32) -> Result<u64, String> {
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
}
