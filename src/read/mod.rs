//! `jemsafe report`, `leaks` and `archive`: the command line's side of the analyzer crate
//! (`jemsafe-report`). Here: flags mapped to typed options, `--base`, and where the output
//! goes; which dumps is the [`plan`]'s, what their names say is [`select`]'s.

pub mod archive;
pub mod graphviz;
pub mod output;
pub mod page_command;
pub mod plan;
pub mod select;

use crate::cli::{ArchiveArgs, LeaksArgs, NamesMode, ReportArgs, ReportBy, ReportFormat};
use crate::error::{Error, Result};
use jemsafe_report::render::{self, By, Format, LeaksOptions, ReportOptions};
use jemsafe_report::safe::shown;
use jemsafe_report::{DumpLimits, LoadedDump, Metric, SymbolizeOptions};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

impl From<jemsafe_report::Error> for Error {
    fn from(e: jemsafe_report::Error) -> Error {
        match e {
            jemsafe_report::Error::BadDump(m) => Error::BadInput(m),
            jemsafe_report::Error::Mismatch(m) => Error::Usage(m),
            jemsafe_report::Error::Io(io) => Error::Io(io),
        }
    }
}

fn metric(args: &ReportArgs) -> Metric {
    match (args.alloc, args.objects) {
        (false, false) => Metric::InuseSpace,
        (false, true) => Metric::InuseObjects,
        (true, false) => Metric::AllocSpace,
        (true, true) => Metric::AllocObjects,
    }
}

pub(crate) fn sym_options(
    names: NamesMode,
    debuginfod: jemsafe_report::debuginfod::Config,
) -> SymbolizeOptions {
    SymbolizeOptions {
        debuginfod,
        progress: std::io::stderr().is_terminal(),
        names: match names {
            NamesMode::Exact => jemsafe_report::NameMode::Exact,
            NamesMode::Jeprof => jemsafe_report::NameMode::Jeprof,
        },
        ..Default::default()
    }
}

/// Reads a dump; its pid and time come from its file name when jemsafe or jemalloc
/// named it.
pub(crate) fn load(path: &Path, limits: &DumpLimits) -> Result<LoadedDump> {
    Ok(named(jemsafe_report::load(path, limits)?))
}

/// [`load`] with the sidecar the plan read to choose it ([`select::Sidecars`]).
pub(crate) fn load_planned(
    path: &Path,
    limits: &DumpLimits,
    sidecars: &select::Sidecars,
) -> Result<LoadedDump> {
    let dump = jemsafe_report::load_with_sidecar(path, limits, sidecars.take(path))?;
    Ok(named(dump))
}

/// `dump` with the pid and time its file name gives.
fn named(mut dump: LoadedDump) -> LoadedDump {
    let (pid, stamp) = select::name_info(&dump.path);
    dump.pid = pid.or(dump.pid);
    dump.time = stamp.or(dump.time);
    dump
}

/// Where the output goes: a file the user named ([`output`]), else standard output (never
/// a binary format to a terminal).
struct Destination<'a> {
    path: Option<&'a Path>,
    /// The dump directory, when known: an output into it gets its group.
    dump_dir: Option<&'a Path>,
}

/// Writes the notes to the log, then the output (`main` decides what a reader that
/// stopped reading means).
fn emit(rendered: render::Rendered, to: Destination, binary: bool) -> Result<i32> {
    for note in &rendered.notes {
        crate::warn!("{note}");
    }
    match to.path {
        Some(p) if p != Path::new("-") => output::write(p, &rendered.data, to.dump_dir)?,
        _ => {
            if binary && std::io::stdout().is_terminal() {
                return Err(Error::Usage(
                    "this format is not for a terminal: write it to a file with -o FILE \
                     (or redirect standard output)"
                        .into(),
                ));
            }
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            out.write_all(&rendered.data)
                .and_then(|_| out.flush())
                .map_err(Error::io("cannot write the report"))?;
        }
    }
    Ok(0)
}

/// `jemsafe report`: one dump (or the difference of two) as text, folded stacks, SVG or pprof.
pub fn report(args: &ReportArgs) -> Result<i32> {
    check_graph_flags(args)?;
    // Paths the user named may be symlinks; those picked from the dump directory (which
    // mysqld's user can write) may not.
    let named_limits = DumpLimits::new(args.read.max_dump_mb, true);
    let picked = DumpLimits::new(args.read.max_dump_mb, false);
    let unpacked = args.archive.as_deref().map(archive::unpack).transpose()?;
    // In an archive, dumps are named by their file names.
    let in_archive = |p: &Path| -> Result<PathBuf> {
        let Some(u) = &unpacked else {
            return Ok(p.to_owned());
        };
        u.dumps()
            .into_iter()
            .find(|d| d.file_name() == p.file_name())
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "no dump named {} in the archive {}",
                    shown(p),
                    args.archive.as_deref().map(shown).unwrap_or_default()
                ))
            })
    };
    let named: Vec<PathBuf> = args
        .dump
        .as_deref()
        .map(in_archive)
        .transpose()?
        .into_iter()
        .collect();
    let plan = plan::Selection::make(plan::Request {
        listing: match (&unpacked, &args.archive) {
            (Some(u), Some(file)) => plan::Listing::Archive {
                file,
                dumps: u.dumps(),
            },
            _ => plan::Listing::Config,
        },
        debuginfod: Some(&args.read),
        ..plan::Request::new(&args.config, &named, plan::Want::One)
    })?;
    let target_limits = if plan.named { named_limits } else { picked };
    let dump_dir = args
        .output
        .as_ref()
        .and_then(|_| output::dump_dir(&args.config, plan.settings.as_ref()));
    let to = Destination {
        path: args.output.as_deref(),
        dump_dir: dump_dir.as_deref(),
    };
    let Some(target_path) = plan.dumps.last().cloned() else {
        return Err(Error::NotFound("no heap dump to read".into()));
    };
    let base_path = match &args.base {
        Some(b) if b == Path::new("previous") && !b.exists() => {
            Some((select::previous(&target_path)?, picked))
        }
        Some(b) => Some((in_archive(b)?, named_limits)),
        None => None,
    };
    let target = load(&target_path, &target_limits)?;
    let base = base_path.as_ref().map(|(p, l)| load(p, l)).transpose()?;
    let format = match args.format {
        ReportFormat::Text => Format::Text,
        ReportFormat::Collapsed => Format::Collapsed,
        ReportFormat::Svg => Format::Svg,
        ReportFormat::Pprof => Format::Pprof,
        ReportFormat::Dot => Format::Dot(graph_options(args, false)),
        ReportFormat::Callgraph => Format::Dot(graph_options(args, true)),
    };
    let options = ReportOptions {
        metric: metric(args),
        format,
        by: match args.by {
            ReportBy::Function => By::Function,
            ReportBy::Stack => By::Stack,
            ReportBy::Object => By::Object,
        },
        top: args.top,
        exact: args.bytes,
        symbolize: sym_options(args.names, plan.debuginfod),
    };
    let mut options = options;
    if let Some(u) = &unpacked {
        // The archive's .build-id tree first: its files are the builds that were mapped.
        options.symbolize.debug_dirs.insert(0, u.dir.clone());
    }
    if args.fragmentation {
        if format != Format::Text {
            return Err(Error::Usage(
                "--fragmentation writes text only: leave out --format".into(),
            ));
        }
        let rendered = render::fragmentation(target, &options.symbolize, args.top)?;
        return emit(rendered, to, false);
    }
    let mut rendered = render::report(target, base, &options)?;
    if args.format == ReportFormat::Callgraph {
        rendered.data = graphviz::svg(&rendered.data)?;
    }
    emit(
        rendered,
        to,
        format.is_binary() || args.format == ReportFormat::Callgraph,
    )
}

/// The call graph's flags, jeprof's defaults for those not given.
fn graph_options(args: &ReportArgs, for_svg: bool) -> render::GraphOptions {
    let d = render::GraphOptions::default();
    let count = |n: Option<u64>, default: usize| {
        n.map_or(default, |n| usize::try_from(n).unwrap_or(usize::MAX))
    };
    render::GraphOptions {
        node_count: count(args.node_count, d.node_count),
        node_fraction: args.node_fraction.unwrap_or(d.node_fraction),
        edge_fraction: args.edge_fraction.unwrap_or(d.edge_fraction),
        max_degree: count(args.max_degree, d.max_degree),
        for_svg,
    }
}

/// The call graph's flags mean nothing to the other formats: say so rather than ignore them.
fn check_graph_flags(args: &ReportArgs) -> Result<()> {
    let given = [
        ("--node-count", args.node_count.is_some()),
        ("--node-fraction", args.node_fraction.is_some()),
        ("--edge-fraction", args.edge_fraction.is_some()),
        ("--max-degree", args.max_degree.is_some()),
    ];
    let graph = matches!(args.format, ReportFormat::Dot | ReportFormat::Callgraph);
    match given.iter().find(|g| g.1) {
        Some((flag, _)) if !graph => Err(Error::Usage(format!(
            "{flag} shapes the call graph: add --format dot or --format callgraph"
        ))),
        _ => Ok(()),
    }
}

/// `jemsafe leaks`: stacks ranked by steady growth across dumps of one process.
pub fn leaks(args: &LeaksArgs) -> Result<i32> {
    let plan = plan::Selection::make(plan::Request {
        debuginfod: Some(&args.read),
        timeline: true,
        ..plan::Request::new(&args.config, &args.dumps, plan::Want::Series)
    })?;
    let limits = DumpLimits::new(args.read.max_dump_mb, plan.named);
    let paths = plan.dumps;
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
    let options = LeaksOptions {
        top: args.top,
        symbolize: sym_options(args.names, plan.debuginfod),
    };
    // One dump at a time: each is folded into the series and its stacks dropped.
    let mut series = jemsafe_report::series::Series::new();
    let mut closing = None;
    for (i, p) in paths.iter().enumerate() {
        let dump = load_planned(p, &limits, &plan.sidecars)?;
        if i + 1 == paths.len() {
            closing = fragmentation_section(&dump, &options.symbolize, args.top);
        }
        series.push(dump);
    }
    let opening = memory_growth(&series.dumps);
    let timeline = plan
        .settings
        .as_ref()
        .and_then(|s| timeline_growth(s, &series.dumps));
    let mut rendered = render::leaks(series, &options)?;
    if let Some(opening) = opening {
        rendered.data.splice(0..0, opening.into_bytes());
    }
    if let Some(line) = timeline {
        rendered.data.splice(0..0, line.into_bytes());
    }
    if let Some((text, notes)) = closing {
        rendered.data.extend_from_slice(b"\n");
        rendered.data.extend_from_slice(text.as_bytes());
        rendered.notes.extend(notes);
    }
    emit(
        rendered,
        Destination {
            path: None,
            dump_dir: None,
        },
        false,
    )
}

/// Which part of RSS grew from the first dump to the last, from their sidecars' memory
/// snapshots; None when either has none (dumps of jemalloc's own, or of an older jemsafe).
fn memory_growth(dumps: &[LoadedDump]) -> Option<String> {
    let snapshot = |d: &LoadedDump| {
        d.sidecar
            .as_ref()?
            .memory_snapshot()?
            .ok()?
            .breakdown()
            .ok()
    };
    let first = snapshot(dumps.first()?)?;
    let last = snapshot(dumps.last()?)?;
    Some(format!(
        "Memory, first dump to last: {}\n",
        jemsafe_report::memory::growth(&first, &last).trim_end()
    ))
}

/// When RSS growth started and how fast it runs, from the config's timeline, for the
/// process of `dumps` (pid and, from a sidecar, its start time); None without either.
fn timeline_growth(settings: &plan::ReadSettings, dumps: &[LoadedDump]) -> Option<String> {
    let (path, limit) = settings.timeline();
    crate::timeline::growth::leaks_line(&path, limit, &LoadedDump::known_of_series(dumps))
}

/// Fragmentation by call stack for `dump`, when its sidecar's memory snapshot says
/// fragmentation is above its advice threshold (`memory DUMP`, `leaks`); None otherwise.
pub fn fragmentation_section(
    dump: &LoadedDump,
    symbolize: &SymbolizeOptions,
    top: usize,
) -> Option<(String, Vec<String>)> {
    let snapshot = dump.sidecar.as_ref()?.memory_snapshot()?.ok()?;
    if !snapshot.breakdown().ok()?.fragmentation_advised() {
        return None;
    }
    let mut notes = Vec::new();
    match render::fragmentation_section(dump.clone(), symbolize, top, &mut notes) {
        Ok(text) => Some((text, notes)),
        Err(e) => Some((String::new(), vec![format!("fragmentation by stack: {e}")])),
    }
}

/// `jemsafe archive`.
pub fn archive_command(args: &ArchiveArgs) -> Result<i32> {
    let plan = plan::Selection::make(plan::Request::new(
        &args.config,
        &args.dumps,
        plan::Want::Series,
    ))?;
    let limits = DumpLimits::new(args.max_dump_mb, plan.named);
    let dump_dir = output::dump_dir(&args.config, plan.settings.as_ref());
    let summary = archive::create(&plan.dumps, &args.output, dump_dir.as_deref(), &limits)?;
    crate::info!("{summary}");
    writeln!(std::io::stdout().lock(), "{}", shown(&args.output))
        .map_err(Error::io("cannot write to standard output"))?;
    Ok(0)
}
