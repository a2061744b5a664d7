//! `jemsafe report` and `jemsafe leaks`: choosing the dumps, running the pipeline, writing
//! the output.

use super::aggregate::{AddrProfile, FlatCum, Metric, NameProfile};
use super::safe::shown;
use super::symbolize::{self, Frame, Symbols};
use super::LoadedDump;
use super::{collapsed, human_bytes, leaks as leak, pprof, select, svg, text, DumpLimits};
use crate::cli::{LeaksArgs, ReportArgs, ReportBy, ReportFormat};
use crate::error::{Error, Result};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

fn metric(args: &ReportArgs) -> Metric {
    match (args.alloc, args.objects) {
        (false, false) => Metric::InuseSpace,
        (false, true) => Metric::InuseObjects,
        (true, false) => Metric::AllocSpace,
        (true, true) => Metric::AllocObjects,
    }
}

fn sym_options() -> symbolize::Options {
    symbolize::Options {
        progress: std::io::stderr().is_terminal(),
        ..Default::default()
    }
}

fn symbolize_for(dump: &LoadedDump, profile: &AddrProfile) -> symbolize::Outcome {
    let outcome = symbolize::symbolize(&dump.dump.maps, &profile.pcs(), &sym_options());
    for note in &outcome.notes {
        crate::warn!("{note}");
    }
    if dump.dump.maps.is_empty() {
        crate::warn!(
            "{}: the dump lists no mapped objects; addresses are shown raw",
            shown(&dump.path)
        );
    }
    outcome
}

/// Where the output goes; binary formats are not written to a terminal.
fn open_output(path: Option<&Path>, binary: bool) -> Result<Box<dyn Write>> {
    match path {
        Some(p) if p != Path::new("-") => {
            let f = std::fs::File::create(p)
                .map_err(Error::io(format!("cannot create {}", shown(p))))?;
            Ok(Box::new(std::io::BufWriter::new(f)))
        }
        _ => {
            if binary && std::io::stdout().is_terminal() {
                return Err(Error::Refused(
                    "this format is not for a terminal: write it to a file with -o FILE \
                     (or redirect standard output)"
                        .into(),
                ));
            }
            Ok(Box::new(std::io::BufWriter::new(std::io::stdout().lock())))
        }
    }
}

fn write_all(out: &mut dyn Write, data: &[u8], what: &str) -> Result<()> {
    out.write_all(data)
        .and_then(|_| out.flush())
        .map_err(Error::io(format!("cannot write the {what}")))
}

fn value_text(v: f64, m: Metric) -> String {
    if m.is_bytes() {
        format!("{} ({} B)", human_bytes(v), v.trunc() as i64)
    } else {
        format!("{} objects", v.trunc() as i64)
    }
}

pub fn report(args: &ReportArgs) -> Result<i32> {
    // Paths the user named may be symlinks; those picked from the dump directory (which
    // mysqld's user can write) may not.
    let named = DumpLimits::new(args.max_dump_mb, true);
    let picked = DumpLimits::new(args.max_dump_mb, false);
    let (target_path, target_limits) = match &args.dump {
        Some(p) => (p.clone(), named),
        None => (select::newest(&args.config)?, picked),
    };
    let base_path = match &args.base {
        Some(b) if b == Path::new("previous") && !b.exists() => {
            Some((select::previous(&target_path)?, picked))
        }
        Some(b) => Some((b.clone(), named)),
        None => None,
    };
    let mut target = super::load(&target_path, &target_limits)?;
    let mut base = base_path
        .as_ref()
        .map(|(p, l)| super::load(p, l))
        .transpose()?;
    let stack_count = target.dump.stacks.len();
    let m = metric(args);
    if matches!(m, Metric::AllocSpace | Metric::AllocObjects)
        && target
            .dump
            .stacks
            .iter()
            .all(|s| s.counts.alloc_objects == 0)
    {
        crate::warn!(
            "{}: no allocation totals in this dump (they need MALLOC_CONF prof_accum:true)",
            shown(&target.path)
        );
    }
    let mut profile = AddrProfile::take_from_dump(&mut target.dump);
    if let Some(b) = &mut base {
        profile = profile.subtract(&AddrProfile::take_from_dump(&mut b.dump));
        if let (Some(a), Some(b)) = (target.pid, b.pid) {
            if a != b {
                return Err(Error::Refused(format!(
                    "the base is from another process (pid {b}, dump pid {a}): addresses differ \
                     between processes, so their difference means nothing; compare two dumps of \
                     one process"
                )));
            }
        }
    }
    let outcome = symbolize_for(&target, &profile);
    let display: Option<Symbols> = (args.by == ReportBy::Object).then(|| {
        outcome
            .object
            .iter()
            .map(|(&pc, o)| {
                (
                    pc,
                    vec![Frame {
                        func: o.clone(),
                        full: o.clone(),
                    }],
                )
            })
            .collect()
    });
    let np = NameProfile::build(&profile, &outcome.symbols, display.as_ref());
    let total = np.total[m as usize];
    let title = match &base {
        Some(b) => format!(
            "{}: {} {} from {} to {}",
            target.program(),
            m.name(),
            value_text(total, m),
            b.time
                .map(super::format_time)
                .unwrap_or_else(|| shown(&b.path)),
            target
                .time
                .map(super::format_time)
                .unwrap_or_else(|| shown(&target.path)),
        ),
        None => format!(
            "{}: {} {}",
            target.describe(),
            m.name(),
            value_text(total, m)
        ),
    };
    match args.format {
        ReportFormat::Text => {
            let mut s = String::new();
            s.push_str(&format!(
                "File: {} ({})\n",
                shown(&target.path),
                target.describe()
            ));
            if let Some(b) = &base {
                s.push_str(&format!("Base: {} ({})\n", shown(&b.path), b.describe()));
            }
            s.push_str(&format!(
                "Type: {}; {} stacks, {} threads; sampled 1 in {} on average\n",
                m.name(),
                stack_count,
                target.dump.threads,
                human_bytes(target.dump.rate as f64)
            ));
            let sign = if base.is_some() && total > 0.0 {
                "+"
            } else {
                ""
            };
            s.push_str(&format!(
                "Total: {sign}{}{}\n",
                value_text(total, m),
                if base.is_some() {
                    " from base to dump"
                } else {
                    ""
                }
            ));
            let o = text::TextOptions {
                metric: m,
                top: args.top,
                exact: args.bytes,
                diff: base.is_some(),
            };
            match args.by {
                ReportBy::Function | ReportBy::Object => {
                    s.push_str(&text::functions(&np, &FlatCum::of(&np), &o))
                }
                ReportBy::Stack => s.push_str(&text::stacks(&np, &o)),
            }
            let mut out = open_output(args.output.as_deref(), false)?;
            write_all(&mut out, s.as_bytes(), "report")?;
        }
        ReportFormat::Collapsed | ReportFormat::Svg => {
            let (lines, dropped, dropped_sum) = collapsed::lines(&np, m);
            if dropped > 0 {
                crate::warn!(
                    "{dropped} stacks shrank since the base (together {}); flame graphs show \
                     growth only: see them with --format text",
                    value_text(dropped_sum, m)
                );
            }
            if args.format == ReportFormat::Collapsed {
                let mut s = lines.join("\n");
                if !s.is_empty() {
                    s.push('\n');
                }
                let mut out = open_output(args.output.as_deref(), false)?;
                write_all(&mut out, s.as_bytes(), "folded stacks")?;
            } else {
                let subtitle = shown(&target.path);
                let mut buf = Vec::new();
                svg::render(&lines, &title, Some(&subtitle), m.is_bytes(), &mut buf)
                    .map_err(Error::io("cannot draw the flame graph"))?;
                let mut out = open_output(args.output.as_deref(), true)?;
                write_all(&mut out, &buf, "flame graph")?;
            }
        }
        ReportFormat::Pprof => {
            let p = pprof::build(
                &profile,
                &outcome.symbols,
                &target.dump.maps,
                m,
                target.time,
                &title,
            );
            let data = pprof::encode(&p).map_err(Error::io("cannot encode the pprof profile"))?;
            let mut out = open_output(args.output.as_deref(), true)?;
            write_all(&mut out, &data, "pprof profile")?;
        }
    }
    Ok(0)
}

pub fn leaks(args: &LeaksArgs) -> Result<i32> {
    let limits = DumpLimits::new(args.max_dump_mb, !args.dumps.is_empty());
    let mut paths: Vec<PathBuf> = if args.dumps.is_empty() {
        select::newest_series(&args.config)?
    } else {
        args.dumps.clone()
    };
    select::sort_by_time(&mut paths);
    if paths.len() < 2 {
        return Err(Error::NotFound(format!(
            "jemsafe leaks needs at least two dumps of one process, found {}{}: take more with \
             `kill -USR1 <jemsafe pid>` (or `jemsafe dump`) as memory grows",
            paths.len(),
            paths
                .first()
                .map(|p| format!(" ({})", shown(p)))
                .unwrap_or_default()
        )));
    }
    let mut dumps: Vec<LoadedDump> = paths
        .iter()
        .map(|p| super::load(p, &limits))
        .collect::<Result<_>>()?;
    let mut pids: Vec<u32> = dumps.iter().filter_map(|d| d.pid).collect();
    pids.sort_unstable();
    pids.dedup();
    if pids.len() > 1 {
        return Err(Error::Refused(format!(
            "these dumps come from different processes (pids {pids:?}); addresses differ between \
             processes: pass the dumps of one pid"
        )));
    }
    let profiles: Vec<AddrProfile> = dumps
        .iter_mut()
        .map(|d| AddrProfile::take_from_dump(&mut d.dump))
        .collect();
    let mut all = AddrProfile::default();
    for p in &profiles {
        for k in p.stacks.keys() {
            all.stacks.entry(k.clone()).or_insert([0.0; 4]);
        }
    }
    let Some(newest) = dumps.last() else {
        return Err(Error::NotFound("no dumps to compare".into()));
    };
    let outcome = symbolize_for(newest, &all);
    let names: Vec<NameProfile> = profiles
        .iter()
        .map(|p| NameProfile::build(p, &outcome.symbols, None))
        .collect();
    let m = Metric::InuseSpace;
    let times: Vec<_> = dumps.iter().map(|d| d.time).collect();
    let (stacks, funcs) = leak::analyze(&names, &times, m);
    let mut s = String::new();
    let first = &dumps[0];
    let span = match (first.time, newest.time) {
        (Some(a), Some(b)) => b
            .duration_since(a)
            .map(|d| {
                format!(
                    ", {} to {} ({})",
                    super::format_time(a),
                    super::format_time(b),
                    humantime::format_duration(std::time::Duration::from_secs(d.as_secs()))
                )
            })
            .unwrap_or_default(),
        _ => String::new(),
    };
    s.push_str(&format!(
        "Leak suspects in {} dumps of {}{}{span}:\n",
        dumps.len(),
        newest.program(),
        newest.pid.map(|p| format!(" pid {p}")).unwrap_or_default()
    ));
    for (d, np) in dumps.iter().zip(&names) {
        s.push_str(&format!(
            "  {:>12}  {}  {}\n",
            human_bytes(np.total[m as usize]),
            d.time.map(super::format_time).unwrap_or_else(|| "-".into()),
            shown(&d.path)
        ));
    }
    s.push('\n');
    s.push_str(&leak::render(&stacks, &funcs, args.top, m));
    let mut out = open_output(None, false)?;
    write_all(&mut out, s.as_bytes(), "report")?;
    Ok(0)
}
