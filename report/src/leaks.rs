//! Leak suspects across a series of dumps of one process: stacks and functions ranked by
//! steady growth. For each, the series of in-use bytes (one value per dump) gives:
//!
//! - gained: last minus first;
//! - per hour: gained over the time between the first and the last dump;
//! - steadiness: the share of intervals in which it grew.
//!
//! The score is `gained x steadiness^2`: a stack that grows in every interval outranks
//! one that jumped once (a cache warming up) unless the jump is many times larger.

use super::aggregate::{FlatCum, Metric, NameProfile};
use std::collections::HashMap;
use std::fmt::Write;
use std::time::SystemTime;

/// One ranked entry: a stack (innermost first) or a function (one name).
#[derive(Debug, Clone, PartialEq)]
pub struct Suspect {
    pub frames: Vec<String>,
    pub series: Vec<f64>,
    pub gained: f64,
    pub per_hour: Option<f64>,
    /// Intervals in which the value grew, out of `series.len() - 1`.
    pub grew: usize,
    pub score: f64,
}

/// Growth figures of one series; `hours` between the first and the last dump.
pub fn assess(frames: Vec<String>, series: Vec<f64>, hours: Option<f64>) -> Suspect {
    let first = series.first().copied().unwrap_or(0.0);
    let last = series.last().copied().unwrap_or(0.0);
    let gained = last - first;
    let intervals = series.len().saturating_sub(1);
    // Growth smaller than one byte is float noise from un-sampling.
    let grew = series.windows(2).filter(|w| w[1] > w[0] + 0.5).count();
    let steadiness = if intervals == 0 {
        0.0
    } else {
        grew as f64 / intervals as f64
    };
    let score = if gained > 0.0 {
        gained * steadiness * steadiness
    } else {
        0.0
    };
    Suspect {
        frames,
        series,
        gained,
        per_hour: hours.filter(|h| *h > 0.0).map(|h| gained / h),
        grew,
        score,
    }
}

fn rank(mut v: Vec<Suspect>) -> Vec<Suspect> {
    v.retain(|s| s.score > 0.0);
    v.sort_by(|a, b| {
        b.score
            .partial_cmp(&a.score)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| {
                b.gained
                    .partial_cmp(&a.gained)
                    .unwrap_or(std::cmp::Ordering::Equal)
            })
            .then_with(|| a.frames.cmp(&b.frames))
    });
    v
}

/// Ranked stacks and functions for name profiles of consecutive dumps.
pub fn analyze(
    profiles: &[NameProfile],
    times: &[Option<SystemTime>],
    metric: Metric,
) -> (Vec<Suspect>, Vec<Suspect>) {
    let m = metric as usize;
    let n = profiles.len();
    let hours = match (
        times.first().copied().flatten(),
        times.last().copied().flatten(),
    ) {
        (Some(a), Some(b)) => b.duration_since(a).ok().map(|d| d.as_secs_f64() / 3600.0),
        _ => None,
    };
    let mut stacks: HashMap<Vec<String>, Vec<f64>> = HashMap::new();
    let mut funcs: HashMap<String, Vec<f64>> = HashMap::new();
    for (i, np) in profiles.iter().enumerate() {
        for (stack, v) in &np.stacks {
            if stack.is_empty() {
                continue;
            }
            let key: Vec<String> = stack
                .iter()
                .map(|&id| np.names.get(id).to_owned())
                .collect();
            stacks.entry(key).or_insert_with(|| vec![0.0; n])[i] += v[m];
        }
        let fc = FlatCum::of(np);
        for (&id, v) in &fc.cum {
            funcs
                .entry(np.names.get(id).to_owned())
                .or_insert_with(|| vec![0.0; n])[i] += v[m];
        }
    }
    let stacks = rank(
        stacks
            .into_iter()
            .map(|(k, s)| assess(k, s, hours))
            .collect(),
    );
    let funcs = rank(
        funcs
            .into_iter()
            .map(|(k, s)| assess(vec![k], s, hours))
            .collect(),
    );
    (stacks, funcs)
}

fn signed(v: f64, bytes: bool) -> String {
    let s = if bytes {
        super::human_bytes(v)
    } else {
        format!("{}", v.round() as i64)
    };
    if v > 0.0 {
        format!("+{s}")
    } else {
        s
    }
}

fn plain(v: f64, bytes: bool) -> String {
    if bytes {
        super::human_bytes(v)
    } else {
        format!("{}", v.round() as i64)
    }
}

fn table(out: &mut String, title: &str, rows: &[Suspect], top: usize, bytes: bool) {
    let _ = writeln!(out, "{title}");
    if rows.is_empty() {
        let _ = writeln!(out, "  (nothing grew)");
        return;
    }
    let _ = writeln!(
        out,
        "{:>4} {:>11} {:>13} {:>7}  {:>23}  where (innermost frame)",
        "rank", "gained", "per hour", "grew in", "first -> last"
    );
    let n = if top == 0 {
        rows.len()
    } else {
        rows.len().min(top)
    };
    for (i, s) in rows[..n].iter().enumerate() {
        let intervals = s.series.len().saturating_sub(1);
        let per_hour = s
            .per_hour
            .map(|h| format!("{}/h", signed(h, bytes)))
            .unwrap_or_else(|| "-".into());
        let first_last = format!(
            "{} -> {}",
            plain(s.series.first().copied().unwrap_or(0.0), bytes),
            plain(s.series.last().copied().unwrap_or(0.0), bytes)
        );
        let _ = writeln!(
            out,
            "{:>4} {:>11} {:>13} {:>7}  {:>23}  {}",
            i + 1,
            signed(s.gained, bytes),
            per_hour,
            format!("{}/{}", s.grew, intervals),
            first_last,
            s.frames.first().map(String::as_str).unwrap_or("?")
        );
    }
    if n < rows.len() {
        let _ = writeln!(out, "  ... {} more (--top 0 shows all)", rows.len() - n);
    }
}

/// The report: both tables, then the full stack of the top suspect.
pub fn render(stacks: &[Suspect], funcs: &[Suspect], top: usize, metric: Metric) -> String {
    let bytes = metric.is_bytes();
    let mut out = String::new();
    table(&mut out, "Stacks by steady growth:", stacks, top, bytes);
    let _ = writeln!(out);
    table(
        &mut out,
        "Functions by steady growth (cumulative: the function or its callees hold it):",
        funcs,
        top,
        bytes,
    );
    if let Some(s) = stacks.first() {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "Most likely leak: {} in {} of {} intervals{}; its stack (innermost first):",
            signed(s.gained, bytes),
            s.grew,
            s.series.len().saturating_sub(1),
            s.per_hour
                .map(|h| format!(", {}/h", signed(h, bytes)))
                .unwrap_or_default()
        );
        for f in &s.frames {
            let _ = writeln!(out, "    {f}");
        }
        let series: Vec<String> = s.series.iter().map(|v| plain(*v, bytes)).collect();
        let _ = writeln!(out, "  held per dump: {}", series.join(", "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steady_growth_outranks_a_single_jump() {
        let steady = assess(
            vec!["leak".into()],
            vec![0.0, 10.0, 20.0, 30.0, 40.0],
            Some(2.0),
        );
        let jump = assess(
            vec!["cache".into()],
            vec![0.0, 0.0, 60.0, 60.0, 60.0],
            Some(2.0),
        );
        let flat = assess(
            vec!["flat".into()],
            vec![5.0, 5.0, 5.0, 5.0, 5.0],
            Some(2.0),
        );
        let shrink = assess(
            vec!["shrink".into()],
            vec![9.0, 5.0, 3.0, 2.0, 1.0],
            Some(2.0),
        );
        assert_eq!(steady.grew, 4);
        assert_eq!(steady.gained, 40.0);
        assert_eq!(steady.per_hour, Some(20.0));
        assert_eq!(jump.grew, 1);
        let ranked = rank(vec![jump, flat, steady, shrink]);
        let names: Vec<&str> = ranked.iter().map(|s| s.frames[0].as_str()).collect();
        assert_eq!(names, vec!["leak", "cache"]);
    }
}
