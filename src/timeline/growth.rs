//! How mysqld's RSS grew, from the timeline, for the opening of `jemsafe leaks`: "RSS
//! +1.2 GiB over 3 d, steady 17 MiB/h since 2026-12-02 04:00". A pure function of the
//! samples of one process.
//!
//! When growth started: the series is cut into up to 48 spans of equal time, each taken
//! at its median (one busy minute does not count); from the last span back, the run of
//! spans that never fall more than 1% below the one after is the growth, and it started
//! at the run's first span. Its rate is the least-squares slope of the samples since then;
//! it is "steady" when the line explains the samples (R² of at least 0.9).

use super::formats::{human, span_words, stamp};
use std::time::{Duration, SystemTime};

const SPANS: usize = 48;
const STEADY_R2: f64 = 0.9;

#[derive(Debug, Clone, PartialEq)]
pub struct Growth {
    /// Last RSS minus first, in bytes.
    pub change: i64,
    pub span: Duration,
    pub growth: Option<Run>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub since: SystemTime,
    pub per_hour: f64,
    /// How well a straight line fits the samples since `since` (1 = exactly).
    pub r2: f64,
}

/// The growth of a series of (time, RSS) samples in time order; None with fewer than three
/// samples or no time between them.
pub fn assess(samples: &[(SystemTime, u64)]) -> Option<Growth> {
    let (first, last) = (samples.first()?, samples.last()?);
    let span = last.0.duration_since(first.0).ok()?;
    if samples.len() < 3 || span.is_zero() {
        return None;
    }
    let secs = |t: SystemTime| t.duration_since(first.0).unwrap_or_default().as_secs_f64();
    let n = SPANS.min(samples.len());
    let width = span.as_secs_f64() / n as f64;
    // (first time, median RSS) of each non-empty span.
    let mut spans: Vec<(SystemTime, u64)> = Vec::new();
    let mut i = 0;
    for k in 0..n {
        let end = if k + 1 == n {
            f64::INFINITY
        } else {
            width * (k + 1) as f64
        };
        let mut values = Vec::new();
        let start = samples.get(i).map(|s| s.0);
        while i < samples.len() && secs(samples[i].0) < end {
            values.push(samples[i].1);
            i += 1;
        }
        if let (Some(t), false) = (start, values.is_empty()) {
            values.sort_unstable();
            spans.push((t, values[values.len() / 2]));
        }
    }
    let mut from = spans.len() - 1;
    while from > 0 && spans[from - 1].1 as f64 <= spans[from].1 as f64 * 1.01 {
        from -= 1;
    }
    // Within that run, growth starts where a flat line turning into a slope fits best.
    let tail: Vec<(f64, f64)> = samples
        .iter()
        .filter(|s| s.0 >= spans[from].0)
        .map(|s| (secs(s.0), s.1 as f64))
        .collect();
    let since = spans[from..]
        .iter()
        .map(|s| s.0)
        .min_by(|a, b| {
            hinge_sse(&tail, secs(*a))
                .partial_cmp(&hinge_sse(&tail, secs(*b)))
                .unwrap_or(std::cmp::Ordering::Equal)
        })
        .unwrap_or(spans[from].0);
    let run: Vec<(f64, f64)> = samples
        .iter()
        .filter(|s| s.0 >= since)
        .map(|s| (secs(s.0), s.1 as f64))
        .collect();
    let growth = fit(&run).and_then(|(slope, r2)| {
        let per_hour = slope * 3600.0;
        let grown = run.last()?.1 - run.first()?.1;
        // Less than 1 MiB or 1% over the run is not growth.
        (per_hour > 0.0 && grown > (1u64 << 20) as f64 && grown > run.first()?.1 * 0.01).then_some(
            Run {
                since,
                per_hour,
                r2,
            },
        )
    });
    Some(Growth {
        // RSS read from a file can be anything up to u64::MAX: no overflow, no wrap.
        change: i64::try_from(i128::from(last.1) - i128::from(first.1))
            .unwrap_or(if last.1 > first.1 { i64::MAX } else { i64::MIN }),
        span,
        growth,
    })
}

/// The squared error of the best fit of `y = a + b * max(0, x - x0)` (flat, then a slope).
fn hinge_sse(points: &[(f64, f64)], x0: f64) -> f64 {
    let hinged: Vec<(f64, f64)> = points.iter().map(|p| ((p.0 - x0).max(0.0), p.1)).collect();
    let n = hinged.len() as f64;
    let mx = hinged.iter().map(|p| p.0).sum::<f64>() / n;
    let my = hinged.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = hinged.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = hinged.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let syy: f64 = hinged.iter().map(|p| (p.1 - my).powi(2)).sum();
    if sxx == 0.0 {
        syy
    } else {
        syy - sxy * sxy / sxx
    }
}

/// Least-squares slope (per second) and R² of points (x, y).
fn fit(points: &[(f64, f64)]) -> Option<(f64, f64)> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let syy: f64 = points.iter().map(|p| (p.1 - my).powi(2)).sum();
    if sxx == 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    let r2 = if syy == 0.0 {
        1.0
    } else {
        (sxy * sxy) / (sxx * syy)
    };
    Some((slope, r2))
}

/// `RSS +1.2 GiB over 3 d, steady 17 MiB/h since 2026-12-02 04:00`.
pub fn describe(g: &Growth) -> String {
    let sign = if g.change < 0 { "-" } else { "+" };
    let mut s = format!(
        "RSS {sign}{} over {}",
        human(g.change.unsigned_abs()),
        span_words(g.span)
    );
    match &g.growth {
        Some(r) => s.push_str(&format!(
            ", {} {}/h since {}",
            if r.r2 >= STEADY_R2 {
                "steady"
            } else {
                "uneven, about"
            },
            human(r.per_hour as u64),
            // Minutes are enough for days of growth; a short run is told to the second.
            if g.span >= Duration::from_secs(7200) {
                stamp(r.since)[..16].to_owned()
            } else {
                stamp(r.since)
            }
        )),
        None => s.push_str(", no steady growth"),
    }
    s
}

/// The opening line of `leaks` for mysqld `process` (its pid, and its start when known)
/// from the timeline at `path`; None when it has nothing to say about that process.
pub fn leaks_line(
    path: &std::path::Path,
    limit: u64,
    process: &jemsafe_report::sidecar::Known,
) -> Option<String> {
    let pid = process.pid?;
    let parsed = super::file::read(super::file::Source::DumpDir(path), limit).ok()?;
    let samples: Vec<(SystemTime, u64)> = parsed
        .records
        .iter()
        .filter_map(|r| match r {
            super::Record::Sample(s)
                if process.same_as(&jemsafe_report::sidecar::Known::record(s.pid, s.start)) =>
            {
                Some((s.time, s.rss))
            }
            _ => None,
        })
        .collect();
    let g = assess(&samples)?;
    Some(format!("Timeline (mysqld pid {pid}): {}\n", describe(&g)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: f64 = 1048576.0;

    fn at(h: f64) -> SystemTime {
        SystemTime::UNIX_EPOCH
            + Duration::from_secs(1_796_000_400)
            + Duration::from_secs_f64(h * 3600.0)
    }

    /// Every 10 minutes for `hours`, RSS from `f(hours)` in MiB.
    fn series(hours: f64, f: impl Fn(f64) -> f64) -> Vec<(SystemTime, u64)> {
        let mut out = Vec::new();
        let mut h = 0.0;
        while h <= hours {
            out.push((at(h), (f(h) * MIB) as u64));
            h += 1.0 / 6.0;
        }
        out
    }

    #[test]
    fn steady_growth_after_a_flat_day_is_dated_and_measured() {
        // Flat at 2 GiB with noise for a day, then 17 MiB/h for two days.
        let s = series(72.0, |h| {
            let noise = ((h * 7.0).sin()) * 3.0;
            2048.0 + noise + if h > 24.0 { (h - 24.0) * 17.0 } else { 0.0 }
        });
        let g = assess(&s).unwrap();
        let run = g.growth.clone().unwrap();
        let since_h = run.since.duration_since(at(0.0)).unwrap().as_secs_f64() / 3600.0;
        assert!((22.0..=26.0).contains(&since_h), "since {since_h} h");
        assert!(
            (run.per_hour / MIB - 17.0).abs() < 1.0,
            "{}",
            run.per_hour / MIB
        );
        assert!(run.r2 > 0.99);
        let text = describe(&g);
        assert!(text.starts_with("RSS +"), "{text}");
        assert!(
            text.contains(" over 3 d, steady 17 MiB/h since 2026-"),
            "{text}"
        );
    }

    /// RSS is read from a file: values at the ends of u64 make no overflow.
    #[test]
    fn extreme_values_are_assessed_without_overflow() {
        let up = [(at(0.0), 1), (at(1.0), u64::MAX / 2), (at(2.0), u64::MAX)];
        assert_eq!(assess(&up).unwrap().change, i64::MAX);
        let down = [(at(0.0), u64::MAX), (at(1.0), 5), (at(2.0), 0)];
        assert_eq!(assess(&down).unwrap().change, i64::MIN);
        assert!(describe(&assess(&down).unwrap()).starts_with("RSS -"));
    }

    #[test]
    fn a_flat_or_shrinking_series_has_no_growth_and_a_jump_is_not_steady() {
        let flat = assess(&series(10.0, |h| 1000.0 + (h * 3.0).sin())).unwrap();
        assert_eq!(flat.growth, None);
        assert!(describe(&flat).ends_with("no steady growth"));
        let shrink = assess(&series(10.0, |h| 2000.0 - h * 50.0)).unwrap();
        assert!(shrink.change < 0 && shrink.growth.is_none());
        assert!(
            describe(&shrink).starts_with("RSS -500 MiB over 10 h"),
            "{}",
            describe(&shrink)
        );
        // One jump (a cache filling) is not steady growth.
        let jump = assess(&series(10.0, |h| if h < 5.0 { 1000.0 } else { 1500.0 })).unwrap();
        let text = describe(&jump);
        assert!(text.starts_with("RSS +500 MiB over 10 h, "), "{text}");
        assert!(!text.contains(", steady "), "{text}");
        // Growth in bursts is said to be uneven.
        let bursts = assess(&series(10.0, |h| {
            1000.0 + 100.0 * (h.floor() + (h.fract() * 4.0).min(1.0))
        }))
        .unwrap();
        let text = describe(&bursts);
        assert!(
            text.contains(", uneven, about ") || text.contains(", steady "),
            "{text}"
        );
        assert_eq!(assess(&series(0.2, |_| 1.0)[..2]), None);
    }
}
