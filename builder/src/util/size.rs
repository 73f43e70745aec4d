//! Byte sizes as users write them on the command line (`10GiB`, `512M`, `2G`).

use anyhow::{bail, Result};

pub const MIB: u64 = 1 << 20;
pub const GIB: u64 = 1 << 30;

/// Parses a size: a whole number with an optional binary unit (K/KiB, M/MiB, G/GiB, T/TiB;
/// K, M, G and T alone are binary too, as in qemu-img and truncate).
pub fn parse_size(text: &str) -> Result<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        bail!("'{text}' is not a size (expected a number with a unit, like 10GiB)");
    }
    let n: u64 = num
        .parse()
        .map_err(|_| anyhow::anyhow!("'{text}' is too large"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "K" | "KiB" | "k" => 1 << 10,
        "M" | "MiB" => MIB,
        "G" | "GiB" => GIB,
        "T" | "TiB" => 1 << 40,
        other => {
            bail!("'{text}' has an unknown unit '{other}' (use K, M, G, T or KiB, MiB, GiB, TiB)")
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| anyhow::anyhow!("'{text}' is too large"))
}

/// A size for people: `1.5 GiB`, `106 MiB`.
pub fn human(bytes: u64) -> String {
    let units = [
        ("TiB", 1u64 << 40),
        ("GiB", GIB),
        ("MiB", MIB),
        ("KiB", 1 << 10),
    ];
    for (name, unit) in units {
        if bytes >= unit {
            let v = bytes as f64 / unit as f64;
            return if bytes.is_multiple_of(unit) {
                format!("{} {name}", bytes / unit)
            } else {
                format!("{v:.1} {name}")
            };
        }
    }
    format!("{bytes} B")
}

pub fn round_up(value: u64, to: u64) -> u64 {
    value.div_ceil(to) * to
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        let good = [
            ("10GiB", 10 * GIB),
            ("10G", 10 * GIB),
            ("512M", 512 * MIB),
            ("4096", 4096),
            ("1TiB", 1 << 40),
        ];
        for (text, want) in good {
            assert_eq!(parse_size(text).unwrap(), want, "{text}");
        }
        let bad = [
            (
                "",
                "'' is not a size (expected a number with a unit, like 10GiB)",
            ),
            (
                "GiB",
                "'GiB' is not a size (expected a number with a unit, like 10GiB)",
            ),
            (
                "10GB",
                "'10GB' has an unknown unit 'GB' (use K, M, G, T or KiB, MiB, GiB, TiB)",
            ),
            ("99999999999T", "'99999999999T' is too large"),
        ];
        for (text, want) in bad {
            assert_eq!(parse_size(text).unwrap_err().to_string(), want);
        }
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human(106 * MIB), "106 MiB");
        assert_eq!(human(3 * GIB / 2), "1.5 GiB");
        assert_eq!(human(12), "12 B");
    }
}
