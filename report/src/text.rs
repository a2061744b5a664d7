//! The text report: jeprof --text's columns (flat, flat%, sum%, cum, cum%, name) in the
//! same order (flat descending, then name), sizes in human units (or bytes with --bytes).
//! With a base, rows that shrank are listed in a section of their own.

use super::aggregate::{FlatCum, Metric, NameProfile};
use super::human_bytes;
use std::fmt::Write;

#[derive(Debug, Clone, Copy)]
pub struct TextOptions {
    pub metric: Metric,
    /// Rows per section; 0 = all.
    pub top: usize,
    /// Exact numbers (bytes, like jeprof --show_bytes) instead of human units.
    pub exact: bool,
    /// A base was subtracted: split rows that shrank into their own section.
    pub diff: bool,
}

/// A value as printed: objects and exact bytes truncated like Perl's `%d`.
pub fn value(v: f64, o: &TextOptions) -> String {
    if !o.metric.is_bytes() || o.exact {
        format!("{}", v.trunc() as i64)
    } else {
        human_bytes(v)
    }
}

/// jeprof's Percent.
pub fn percent(num: f64, total: f64) -> String {
    if total != 0.0 {
        format!("{:.1}%", num * 100.0 / total)
    } else if num == 0.0 {
        "nan".into()
    } else if num > 0.0 {
        "+inf".into()
    } else {
        "-inf".into()
    }
}

fn limit(n: usize, top: usize) -> usize {
    if top == 0 {
        n
    } else {
        n.min(top)
    }
}

fn more(out: &mut String, shown: usize, all: usize) {
    if shown < all {
        let _ = writeln!(out, "  ... {} more rows (--top 0 shows all)", all - shown);
    }
}

/// The function table (`--by function` and `--by object`).
pub fn functions(np: &NameProfile, fc: &FlatCum, o: &TextOptions) -> String {
    let m = o.metric as usize;
    let total = fc.total[m];
    let rows = fc.rows(&np.names, o.metric);
    let (grew, shrank): (Vec<_>, Vec<_>) = if o.diff {
        rows.into_iter()
            .partition(|&(_, f, c)| f > 0.0 || (f == 0.0 && c >= 0.0))
    } else {
        (rows, Vec::new())
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>10} {:>6} {:>6} {:>10} {:>6} function",
        "flat", "flat%", "sum%", "cum", "cum%"
    );
    let mut running = 0.0;
    let n = limit(grew.len(), o.top);
    for &(id, f, c) in &grew[..n] {
        running += f;
        let _ = writeln!(
            out,
            "{:>10} {:>6} {:>6} {:>10} {:>6} {}",
            value(f, o),
            percent(f, total),
            percent(running, total),
            value(c, o),
            percent(c, total),
            np.names.get(id)
        );
    }
    more(&mut out, n, grew.len());
    if o.diff {
        let mut shrank = shrank;
        shrank.sort_by(|a, b| {
            a.1.partial_cmp(&b.1)
                .unwrap_or(std::cmp::Ordering::Equal)
                .then_with(|| a.2.partial_cmp(&b.2).unwrap_or(std::cmp::Ordering::Equal))
                .then_with(|| np.names.get(a.0).cmp(np.names.get(b.0)))
        });
        if shrank.is_empty() {
            let _ = writeln!(out, "\nNothing shrank since the base.");
        } else {
            let _ = writeln!(out, "\nShrank since the base (negative):");
            let _ = writeln!(
                out,
                "{:>10} {:>6} {:>10} {:>6} function",
                "flat", "flat%", "cum", "cum%"
            );
            let n = limit(shrank.len(), o.top);
            for &(id, f, c) in &shrank[..n] {
                let _ = writeln!(
                    out,
                    "{:>10} {:>6} {:>10} {:>6} {}",
                    value(f, o),
                    percent(f, total),
                    value(c, o),
                    percent(c, total),
                    np.names.get(id)
                );
            }
            more(&mut out, n, shrank.len());
        }
    }
    out
}

/// One row per call stack (`--by stack`): value, %, sum%, then the frames innermost first.
pub fn stacks(np: &NameProfile, o: &TextOptions) -> String {
    let m = o.metric as usize;
    let mut rows: Vec<(&Vec<u32>, f64)> = np
        .stacks
        .iter()
        .filter(|(s, v)| !s.is_empty() && v[m] != 0.0)
        .map(|(s, v)| (s, v[m]))
        .collect();
    let total: f64 = rows.iter().map(|r| r.1).sum();
    rows.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap_or(std::cmp::Ordering::Equal));
    let (grew, shrank): (Vec<_>, Vec<_>) = if o.diff {
        rows.into_iter().partition(|r| r.1 > 0.0)
    } else {
        (rows, Vec::new())
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>10} {:>6} {:>6} stack (innermost first)",
        "value", "%", "sum%"
    );
    let mut running = 0.0;
    let n = limit(grew.len(), o.top);
    for (s, v) in &grew[..n] {
        running += v;
        let frames: Vec<&str> = s.iter().map(|&id| np.names.get(id)).collect();
        let _ = writeln!(
            out,
            "{:>10} {:>6} {:>6} {}",
            value(*v, o),
            percent(*v, total),
            percent(running, total),
            frames.join(" <- ")
        );
    }
    more(&mut out, n, grew.len());
    if o.diff && !shrank.is_empty() {
        let _ = writeln!(out, "\nShrank since the base (negative):");
        let mut shrank = shrank;
        shrank.reverse();
        let n = limit(shrank.len(), o.top);
        for (s, v) in &shrank[..n] {
            let frames: Vec<&str> = s.iter().map(|&id| np.names.get(id)).collect();
            let _ = writeln!(
                out,
                "{:>10} {:>6} {}",
                value(*v, o),
                percent(*v, total),
                frames.join(" <- ")
            );
        }
        more(&mut out, n, shrank.len());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::profile_of_names;

    fn np() -> NameProfile {
        profile_of_names(&[
            (&["grow", "main"], 3.0 * 1048576.0),
            (&["shrink", "main"], -1048576.0),
        ])
    }

    #[test]
    fn diff_puts_negative_rows_in_their_own_section() {
        let np = np();
        let fc = FlatCum::of(&np);
        let o = TextOptions {
            metric: Metric::InuseSpace,
            top: 0,
            exact: false,
            diff: true,
        };
        let t = functions(&np, &fc, &o);
        let (main, neg) = t.split_once("Shrank since the base").unwrap();
        assert!(main.lines().nth(1).unwrap().ends_with(" grow"), "{t}");
        assert!(neg.contains("-1.0 MiB") && neg.contains("shrink"), "{t}");
        assert!(!main.contains("shrink"), "{t}");
    }

    #[test]
    fn exact_values_truncate_like_perl() {
        let o = TextOptions {
            metric: Metric::InuseSpace,
            top: 0,
            exact: true,
            diff: false,
        };
        assert_eq!(value(1234.9, &o), "1234");
        assert_eq!(value(-5.7, &o), "-5");
        assert_eq!(percent(1.0, 0.0), "+inf");
        assert_eq!(percent(1.0, 3.0), "33.3%");
    }
}
