//! The whole pipeline for one report (a dump, or what grew since a base) and for a leak
//! ranking across dumps: typed options in, bytes and notes out. Writing them is the
//! caller's business.

use crate::aggregate::{AddrProfile, FlatCum, Metric, NameProfile};
use crate::safe::shown;
use crate::series::Series;
use crate::symbolize::{self, Frame, Symbols};
use crate::{collapsed, dot, format_time, human_bytes, leaks, pprof, svg, text};
use crate::{naming, Error, LoadedDump, Result};

pub use crate::dot::GraphOptions;

/// The output format of a report.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Format {
    /// jeprof --text's columns: flat, flat%, sum%, cum, cum%, name.
    Text,
    /// Folded stacks (`root;...;leaf value`) for any flame-graph tool.
    Collapsed,
    /// An interactive flame graph.
    Svg,
    /// A gzipped pprof profile.proto.
    Pprof,
    /// jeprof --dot's call graph (Graphviz's DOT language).
    Dot(dot::GraphOptions),
}

impl Format {
    /// Binary formats are not for a terminal.
    pub fn is_binary(self) -> bool {
        matches!(self, Format::Svg | Format::Pprof)
    }
}

/// What the rows of a text report are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum By {
    Function,
    Stack,
    /// The program and each library.
    Object,
}

#[derive(Debug, Clone)]
pub struct ReportOptions {
    pub metric: Metric,
    pub format: Format,
    pub by: By,
    /// Rows in a text report.
    pub top: usize,
    /// Exact byte counts instead of human units (jeprof's --show_bytes).
    pub exact: bool,
    pub symbolize: symbolize::Options,
}

#[derive(Debug, Clone)]
pub struct LeaksOptions {
    /// Stacks and functions listed.
    pub top: usize,
    pub symbolize: symbolize::Options,
}

/// A rendered report, and what the reader should be told beside it.
#[derive(Debug, Default)]
pub struct Rendered {
    pub data: Vec<u8>,
    /// Warnings: objects that could not be read, stacks a flame graph leaves out, ...
    pub notes: Vec<String>,
}

fn value_text(v: f64, m: Metric) -> String {
    if m.is_bytes() {
        format!("{} ({} B)", human_bytes(v), v.trunc() as i64)
    } else {
        format!("{} objects", v.trunc() as i64)
    }
}

/// What holds memory in `target`, or (with `base`) what grew since `base`.
pub fn report(
    mut target: LoadedDump,
    mut base: Option<LoadedDump>,
    opts: &ReportOptions,
) -> Result<Rendered> {
    let mut notes = Vec::new();
    let m = opts.metric;
    let stack_count = target.dump.stacks.len();
    if matches!(m, Metric::AllocSpace | Metric::AllocObjects)
        && target
            .dump
            .stacks
            .iter()
            .all(|s| s.counts.alloc_objects == 0)
    {
        notes.push(format!(
            "{}: no allocation totals in this dump (they need MALLOC_CONF prof_accum:true)",
            shown(&target.path)
        ));
    }
    notes.extend(target.notes.iter().cloned());
    let mut profile = AddrProfile::take_from_dump(&mut target.dump);
    if let Some(b) = &mut base {
        notes.extend(b.notes.iter().cloned());
        if let Err(which) = target.same_process(b) {
            return Err(Error::Mismatch(format!(
                "the base is from another process than the dump ({which}): addresses differ \
                 between processes, so their difference means nothing; compare two dumps of \
                 one process"
            )));
        }
        profile = profile.subtract(&AddrProfile::take_from_dump(&mut b.dump));
    }
    let outcome = naming::symbolize_for(&target, &profile.pcs(), &opts.symbolize, &mut notes);
    let display: Option<Symbols> = (opts.by == By::Object).then(|| {
        outcome
            .object
            .iter()
            .map(|(&pc, o)| {
                (
                    pc,
                    vec![Frame {
                        func: o.clone(),
                        full: o.clone(),
                        source: Default::default(),
                        allocator: false,
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
            b.time.map(format_time).unwrap_or_else(|| shown(&b.path)),
            target
                .time
                .map(format_time)
                .unwrap_or_else(|| shown(&target.path)),
        ),
        None => format!(
            "{}: {} {}",
            target.describe(),
            m.name(),
            value_text(total, m)
        ),
    };
    let data = match opts.format {
        Format::Text => {
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
            s.push_str(
                &crate::provenance::Provenance::of(&profile, &outcome.symbols, &outcome.object, m)
                    .text(&outcome.objects, m, opts.symbolize.names),
            );
            let o = text::TextOptions {
                metric: m,
                top: opts.top,
                exact: opts.exact,
                diff: base.is_some(),
            };
            match opts.by {
                By::Function | By::Object => {
                    s.push_str(&text::functions(&np, &FlatCum::of(&np), &o))
                }
                By::Stack => s.push_str(&text::stacks(&np, &o)),
            }
            s.into_bytes()
        }
        Format::Collapsed | Format::Svg => {
            let (lines, dropped, dropped_sum) = collapsed::lines(&np, m);
            if dropped > 0 {
                notes.push(format!(
                    "{dropped} stacks shrank since the base (together {}); flame graphs show \
                     growth only: see them with --format text",
                    value_text(dropped_sum, m)
                ));
            }
            if opts.format == Format::Collapsed {
                let mut s = lines.join("\n");
                if !s.is_empty() {
                    s.push('\n');
                }
                s.into_bytes()
            } else {
                let subtitle = shown(&target.path);
                let mut buf = Vec::new();
                svg::render(&lines, &title, Some(&subtitle), m.is_bytes(), &mut buf)
                    .map_err(Error::io("cannot draw the flame graph"))?;
                buf
            }
        }
        Format::Pprof => {
            let recorded = target.sidecar.as_ref().map_or(&[][..], |s| &s.objects[..]);
            let p = pprof::build(
                &profile,
                &outcome.symbols,
                &target.dump.maps,
                &pprof::object_facts(&outcome.objects, recorded),
                m,
                target.time,
                &title,
            );
            pprof::encode(&p).map_err(Error::io("cannot encode the pprof profile"))?
        }
        Format::Dot(graph) => {
            let heading = [title.clone(), shown(&target.path)];
            let g = dot::render(&np, m, opts.exact, &heading, &graph);
            notes.extend(g.note);
            g.dot.into_bytes()
        }
    };
    Ok(Rendered { data, notes })
}

/// `--fragmentation`: the stacks whose objects fill the size classes with the most waste,
/// as text.
pub fn fragmentation(
    dump: LoadedDump,
    options: &symbolize::Options,
    top: usize,
) -> Result<Rendered> {
    let mut notes = Vec::new();
    let head = format!("File: {} ({})\n", shown(&dump.path), dump.describe());
    let text = fragmentation_section(dump, options, top, &mut notes)?;
    Ok(Rendered {
        data: format!("{head}{text}").into_bytes(),
        notes,
    })
}

/// The fragmentation-by-stack section of `memory DUMP` and `leaks`: `top` rows, the
/// notes of naming added to `notes`.
pub fn fragmentation_section(
    dump: LoadedDump,
    options: &symbolize::Options,
    top: usize,
    notes: &mut Vec<String>,
) -> Result<String> {
    Ok(crate::fragmentation::of_dump(dump, options, notes)?.render(top))
}

/// Stacks and functions ranked by steady growth across the dumps of one process in
/// `series`, oldest first.
pub fn leaks(series: Series, opts: &LeaksOptions) -> Result<Rendered> {
    let mut notes = Vec::new();
    let dumps = &series.dumps;
    if dumps.len() < 2 {
        return Err(Error::Mismatch(format!(
            "a leak ranking needs at least two dumps of one process, found {}{}",
            dumps.len(),
            dumps
                .first()
                .map(|d| format!(" ({})", shown(&d.path)))
                .unwrap_or_default()
        )));
    }
    for d in dumps {
        notes.extend(d.notes.iter().cloned());
    }
    // Every pair: a dump whose pid or start is unknown agrees with each of the others,
    // which need not agree with one another.
    for (i, d) in dumps.iter().enumerate() {
        if let Some(Err(which)) = dumps[..i]
            .iter()
            .map(|e| e.same_process(d))
            .find(Result::is_err)
        {
            return Err(Error::Mismatch(format!(
                "these dumps come from different processes ({which}); addresses differ \
                 between processes: pass the dumps of one process"
            )));
        }
    }
    let named = series.name(&opts.symbolize, &mut notes);
    let m = crate::series::METRIC;
    let (stacks, funcs) = leaks::analyze(&named);
    let dumps = &named.dumps;
    let newest = &dumps[dumps.len() - 1];
    let mut s = String::new();
    let first = &dumps[0];
    let span = match (first.time, newest.time) {
        (Some(a), Some(b)) => b
            .duration_since(a)
            .map(|d| {
                format!(
                    ", {} to {} ({})",
                    format_time(a),
                    format_time(b),
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
    for (i, d) in dumps.iter().enumerate() {
        s.push_str(&format!(
            "  {:>12}  {}  {}\n",
            human_bytes(named.total(i)[m as usize]),
            d.time.map(format_time).unwrap_or_else(|| "-".into()),
            shown(&d.path)
        ));
    }
    let outcome = &named.outcome;
    s.push_str(
        &crate::provenance::Provenance::of(&named.newest, &outcome.symbols, &outcome.object, m)
            .text(&outcome.objects, m, opts.symbolize.names),
    );
    s.push('\n');
    // The top suspect's value in each dump, read back from the series.
    let mut held = Vec::new();
    if let Some(top) = stacks.first() {
        let mut values = Vec::new();
        for i in 0..dumps.len() {
            named.values_into(i, &mut values);
            held.push(values.get(top.id as usize).copied().unwrap_or(0.0));
        }
    }
    s.push_str(&leaks::render(&stacks, &funcs, opts.top, m, &held));
    Ok(Rendered {
        data: s.into_bytes(),
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dump of one stack (a frame in a plugin at 0x7f3a00001010, called from the
    /// program), whose maps list the program and, with `plugin`, the plugin.
    fn dump(plugin: bool) -> LoadedDump {
        let mut text = String::from(
            "heap_v2/524288\n  t*: 1: 1048576 [0: 0]\n\
             @ 0x7f3a00001010 0x55d1c3801234\n  t*: 1: 1048576 [0: 0]\n\
             \nMAPPED_LIBRARIES:\n\
             55d1c3800000-55d1c3a00000 r-xp 00001000 00:00 7 /nonexistent-jemsafe/mysqld\n",
        );
        if plugin {
            text.push_str(
                "7f3a00001000-7f3a00002000 r-xp 00002000 00:00 8 /nonexistent-jemsafe/libplugin.so\n",
            );
        }
        LoadedDump::from_text(&text)
    }

    /// A dump of unknown pid agrees with both of two others of different pids: the
    /// ranking is still refused.
    #[test]
    fn leaks_refuses_dumps_of_two_processes_wherever_they_stand() {
        for pids in [[None, Some(5), Some(6)], [Some(5), None, Some(6)]] {
            let mut series = Series::new();
            for pid in pids {
                series.push(LoadedDump { pid, ..dump(false) });
            }
            let opts = LeaksOptions {
                top: 5,
                symbolize: symbolize::Options {
                    debug_dirs: Vec::new(),
                    ..Default::default()
                },
            };
            let err = leaks(series, &opts).err().map(|e| e.to_string());
            assert!(
                err.as_deref()
                    .is_some_and(|e| e.contains("different processes (pid 6 and pid 5)")),
                "{pids:?}: {err:?}"
            );
        }
    }

    #[test]
    fn each_dump_is_named_with_its_own_mappings_and_no_address_is_shown_raw() {
        // The plugin was unloaded between the two dumps.
        let mut series = Series::new();
        series.push(dump(true));
        series.push(dump(false));
        let mut notes = Vec::new();
        let opts = symbolize::Options {
            debug_dirs: Vec::new(),
            ..Default::default()
        };
        let named = series.name(&opts, &mut notes);
        let mut values = Vec::new();
        let names_of = |values: &[f64]| -> Vec<String> {
            (0..values.len())
                .filter(|&s| values[s] != 0.0)
                .flat_map(|s| {
                    named.stacks[s]
                        .iter()
                        .map(|&n| named.names.get(n).to_owned())
                })
                .collect()
        };
        named.values_into(0, &mut values);
        assert!(names_of(&values).contains(&"libplugin.so+0x2010".to_owned()));
        named.values_into(1, &mut values);
        assert!(names_of(&values).contains(&symbolize::UNMAPPED.to_owned()));
        for n in &named.names.list {
            assert!(!n.contains("7f3a"), "{n}");
        }
        assert!(named
            .outcome
            .objects
            .iter()
            .all(|o| o.label != "libplugin.so"));
        // Notes are said once, though two symbolizations each found mysqld missing.
        let missing = notes.iter().filter(|n| n.contains("mysqld")).count();
        assert_eq!(missing, 1, "{notes:?}");
        // Dumps with the same code mapped share one symbolization.
        assert!(crate::naming::same_naming(&dump(true), &dump(true)));
        assert!(!crate::naming::same_naming(&dump(true), &dump(false)));
    }
}
