//! Sizes in bytes as people read them: one formatter, in the three precisions jemsafe's
//! outputs have always used (tests and scripts read them).

/// How a size is written: its units from the smallest up, each with its power of 1024
/// and its decimals. A size takes the largest unit it reaches (else the smallest).
#[derive(Debug, Clone, Copy)]
pub struct Style(&'static [(&'static str, i32, usize)]);

/// `12 KiB`, `512 MiB`, `7.6 GiB`: messages about limits and readings, the timeline.
pub const WHOLE: Style = Style(&[("KiB", 1, 0), ("MiB", 2, 0), ("GiB", 3, 1)]);

/// `512 B`, `1.5 KiB`, `64.0 MiB`, `-3.2 GiB`, up to PiB: reports, the page.
pub const TENTHS: Style = Style(&[
    ("B", 0, 0),
    ("KiB", 1, 1),
    ("MiB", 2, 1),
    ("GiB", 3, 1),
    ("TiB", 4, 1),
    ("PiB", 5, 1),
]);

/// `12 KiB`, `1.5 MiB`, `1.25 GiB`: the memory breakdown.
pub const BREAKDOWN: Style = Style(&[("KiB", 1, 0), ("MiB", 2, 1), ("GiB", 3, 2)]);

/// `bytes` (negative for a shrink) in `style`.
pub fn bytes(bytes: f64, style: Style) -> String {
    let size = bytes.abs();
    let units = style.0;
    let (name, power, decimals) = units
        .iter()
        .rev()
        .find(|(_, power, _)| size >= 1024f64.powi(*power))
        .or(units.first())
        .copied()
        .unwrap_or(("B", 0, 0));
    format!("{:.*} {name}", decimals, bytes / 1024f64.powi(power))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: f64 = 1024.0;
    const MIB: f64 = KIB * KIB;
    const GIB: f64 = MIB * KIB;

    #[test]
    fn whole_units_for_messages() {
        assert_eq!(bytes(512.0 * MIB, WHOLE), "512 MiB");
        assert_eq!(bytes(7.6 * GIB, WHOLE), "7.6 GiB");
        assert_eq!(bytes(1024.0 * GIB, WHOLE), "1024.0 GiB");
        assert_eq!(bytes(12.0 * KIB, WHOLE), "12 KiB");
        assert_eq!(bytes(0.0, WHOLE), "0 KiB");
        assert_eq!(bytes(1.4 * MIB, WHOLE), "1 MiB");
    }

    #[test]
    fn tenths_for_reports() {
        assert_eq!(bytes(512.0, TENTHS), "512 B");
        assert_eq!(bytes(1536.0, TENTHS), "1.5 KiB");
        assert_eq!(bytes(64.0 * MIB, TENTHS), "64.0 MiB");
        assert_eq!(bytes(-3.0 * GIB, TENTHS), "-3.0 GiB");
        assert_eq!(bytes(1024.0 * GIB, TENTHS), "1.0 TiB");
        assert_eq!(bytes(0.0, TENTHS), "0 B");
    }

    #[test]
    fn the_breakdown_is_finer_in_gib() {
        assert_eq!(bytes(1.25 * GIB, BREAKDOWN), "1.25 GiB");
        assert_eq!(bytes(1.5 * MIB, BREAKDOWN), "1.5 MiB");
        assert_eq!(bytes(-12.0 * KIB, BREAKDOWN), "-12 KiB");
        assert_eq!(bytes(100.0, BREAKDOWN), "0 KiB");
    }
}
