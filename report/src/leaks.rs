//! Leak suspects across a series of dumps of one process: stacks and functions ranked by
//! steady growth. For each, the series of in-use bytes (one value per dump) gives:
//!
//! - gained: last minus first;
//! - per hour: gained over the time between the first and the last dump;
//! - steadiness: the share of intervals in which it grew.
//!
//! The score is `gained x steadiness^2`: a stack that grows in every interval outranks
//! one that jumped once (a cache warming up) unless the jump is many times larger.

use super::aggregate::Metric;
use crate::series::Named;
use std::fmt::Write;
use std::time::SystemTime;

/// One ranked entry: a stack (innermost first) or a function (one name).
#[derive(Debug, Clone, PartialEq)]
pub struct Suspect {
    /// The name stack's id (stacks) or the name's id (functions) in the series.
    pub id: u32,
    pub frames: Vec<String>,
    pub first: f64,
    pub last: f64,
    /// Intervals between dumps (dumps - 1).
    pub intervals: usize,
    pub gained: f64,
    pub per_hour: Option<f64>,
    /// Intervals in which the value grew, out of `intervals`.
    pub grew: usize,
    pub score: f64,
}

/// Growth figures of many series at once, folded one dump at a time: per key its first
/// and latest value and the intervals in which it grew. Memory is per key, not per dump.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GrowthFold {
    pub first: Vec<f64>,
    pub last: Vec<f64>,
    pub grew: Vec<usize>,
    pub dumps: usize,
}

impl GrowthFold {
    pub fn new(keys: usize) -> GrowthFold {
        GrowthFold {
            first: vec![0.0; keys],
            last: vec![0.0; keys],
            grew: vec![0; keys],
            dumps: 0,
        }
    }

    /// Adds the next dump's value of every key (`values[key]`; a missing key holds 0).
    pub fn add(&mut self, values: &[f64]) {
        for (k, last) in self.last.iter_mut().enumerate() {
            let v = values.get(k).copied().unwrap_or(0.0);
            // Growth smaller than one byte is float noise from un-sampling.
            if self.dumps > 0 && v > *last + 0.5 {
                self.grew[k] += 1;
            }
            if self.dumps == 0 {
                self.first[k] = v;
            }
            *last = v;
        }
        self.dumps += 1;
    }

    /// The growth figures of `key`; `hours` between the first and the last dump.
    pub fn assess(&self, id: u32, frames: Vec<String>, hours: Option<f64>) -> Suspect {
        let k = id as usize;
        let (first, last) = (self.first[k], self.last[k]);
        let gained = last - first;
        let intervals = self.dumps.saturating_sub(1);
        let grew = self.grew[k];
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
            id,
            frames,
            first,
            last,
            intervals,
            gained,
            per_hour: hours.filter(|h| *h > 0.0).map(|h| gained / h),
            grew,
            score,
        }
    }

    /// The keys worth ranking (they gained and grew at least once).
    fn candidates(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.last.len())
            .filter(|&k| self.last[k] > self.first[k] && self.grew[k] > 0)
            .map(|k| k as u32)
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

/// Hours between the first and the last of `times`.
fn span_hours(times: &[Option<SystemTime>]) -> Option<f64> {
    match (
        times.first().copied().flatten(),
        times.last().copied().flatten(),
    ) {
        (Some(a), Some(b)) => b.duration_since(a).ok().map(|d| d.as_secs_f64() / 3600.0),
        _ => None,
    }
}

/// Ranked stacks and functions of a named series (in-use bytes), folded one dump at a time.
pub fn analyze(series: &Named) -> (Vec<Suspect>, Vec<Suspect>) {
    let times: Vec<_> = series.dumps.iter().map(|d| d.time).collect();
    let hours = span_hours(&times);
    // Each stack's distinct names: a recursive function counts once (cumulative).
    let distinct: Vec<Vec<u32>> = series
        .stacks
        .iter()
        .map(|s| {
            let mut d = Vec::with_capacity(s.len());
            for &n in s {
                if !d.contains(&n) {
                    d.push(n);
                }
            }
            d
        })
        .collect();
    let mut stacks = GrowthFold::new(series.stacks.len());
    let mut funcs = GrowthFold::new(series.names.list.len());
    let mut values = Vec::new();
    let mut cum = vec![0.0; series.names.list.len()];
    for i in 0..series.dumps.len() {
        series.values_into(i, &mut values);
        cum.fill(0.0);
        for (s, &v) in values.iter().enumerate() {
            if v != 0.0 {
                for &n in &distinct[s] {
                    cum[n as usize] += v;
                }
            }
        }
        stacks.add(&values);
        funcs.add(&cum);
    }
    let name = |id: u32| series.names.get(id).to_owned();
    let stacks_ranked = rank(
        stacks
            .candidates()
            .filter(|&s| !series.stacks[s as usize].is_empty())
            .map(|s| {
                let frames = series.stacks[s as usize].iter().map(|&n| name(n)).collect();
                stacks.assess(s, frames, hours)
            })
            .collect(),
    );
    let funcs_ranked = rank(
        funcs
            .candidates()
            .map(|n| funcs.assess(n, vec![name(n)], hours))
            .collect(),
    );
    (stacks_ranked, funcs_ranked)
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
        let intervals = s.intervals;
        let per_hour = s
            .per_hour
            .map(|h| format!("{}/h", signed(h, bytes)))
            .unwrap_or_else(|| "-".into());
        let first_last = format!("{} -> {}", plain(s.first, bytes), plain(s.last, bytes));
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

/// The report: both tables, then the full stack of the top suspect and `held`, its value
/// in each dump.
pub fn render(
    stacks: &[Suspect],
    funcs: &[Suspect],
    top: usize,
    metric: Metric,
    held: &[f64],
) -> String {
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
            s.intervals,
            s.per_hour
                .map(|h| format!(", {}/h", signed(h, bytes)))
                .unwrap_or_default()
        );
        for f in &s.frames {
            let _ = writeln!(out, "    {f}");
        }
        let series: Vec<String> = held.iter().map(|v| plain(*v, bytes)).collect();
        let _ = writeln!(out, "  held per dump: {}", series.join(", "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steady_growth_outranks_a_single_jump() {
        // Keys: leak, cache, flat, shrink; one row per dump.
        let dumps = [
            [0.0, 0.0, 5.0, 9.0],
            [10.0, 0.0, 5.0, 5.0],
            [20.0, 60.0, 5.0, 3.0],
            [30.0, 60.0, 5.0, 2.0],
            [40.0, 60.0, 5.0, 1.0],
        ];
        let mut fold = GrowthFold::new(4);
        for d in &dumps {
            fold.add(d);
        }
        let names = ["leak", "cache", "flat", "shrink"];
        let all: Vec<Suspect> = (0..4)
            .map(|k| fold.assess(k, vec![names[k as usize].into()], Some(2.0)))
            .collect();
        let steady = &all[0];
        assert_eq!((steady.grew, steady.intervals), (4, 4));
        assert_eq!((steady.first, steady.last), (0.0, 40.0));
        assert_eq!(steady.gained, 40.0);
        assert_eq!(steady.per_hour, Some(20.0));
        assert_eq!(all[1].grew, 1);
        assert_eq!(all[3].gained, -8.0);
        let ranked = rank(all.clone());
        let ranked: Vec<&str> = ranked.iter().map(|s| s.frames[0].as_str()).collect();
        assert_eq!(ranked, vec!["leak", "cache"]);
        let candidates: Vec<u32> = fold.candidates().collect();
        assert_eq!(candidates, vec![0, 1]);
    }

    #[test]
    fn a_key_first_seen_late_starts_from_zero_and_growth_below_a_byte_is_noise() {
        let mut fold = GrowthFold::new(2);
        fold.add(&[1.0]); // key 1 absent: holds 0
        fold.add(&[1.4, 7.0]);
        fold.add(&[1.8, 7.0]);
        assert_eq!(fold.first, vec![1.0, 0.0]);
        assert_eq!(fold.last, vec![1.8, 7.0]);
        assert_eq!(fold.grew, vec![0, 1]);
        assert_eq!(fold.dumps, 3);
    }
}
