//! `jemsafe page` and the live page's child: their timeline (the config's timeline file;
//! the dumps' own snapshots are plotted with it) and where the page goes. Which dumps
//! (named, `--pid`, else the newest dump's pid; `--since`) is the [`crate::read::plan`]'s;
//! which of them are of the newest dump's process is decided here, from the sidecar read
//! with each dump: each sidecar is read once (mysqld's user can rewrite it between two
//! reads). What is missing (a dump of another process, a dump that does not read, a
//! damaged timeline) becomes a note on the page; the rest is still shown. The page itself
//! is `jemsafe_report::page` (pure).

use crate::cli::PageArgs;
use crate::error::{Error, Result};
use crate::read::plan::{self, Selection};
use crate::timeline::{self, Record};
use jemsafe_report::page::{self, Timeline};
use jemsafe_report::safe::shown;
use jemsafe_report::sidecar::Known;
use jemsafe_report::{DumpLimits, LoadedDump};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Samples drawn at most: a day at one sample every 10 s is 8,640; a chart 1,200 pixels
/// wide shows no more than this.
pub const MAX_POINTS: usize = 1500;

/// The page's timeline from the timeline file's records of one process (`pid`, and its
/// start ticks when known): samples thinned to at most `max_points` (keeping the peak),
/// dumps, exits and OOM kills as markers, as `jemsafe timeline --format svg` has them.
pub fn timeline_of(
    records: &[Record],
    pid: u32,
    start: Option<u64>,
    source: &str,
    max_points: usize,
) -> Timeline {
    let this = Known::started(pid, start);
    let mine: Vec<Record> = records
        .iter()
        .filter(|r| {
            let (p, s) = match r {
                Record::Sample(s) => (s.pid, s.start),
                Record::Event(e) => (e.pid, e.start),
            };
            this.same_as(&Known::record(p, s))
        })
        .cloned()
        .collect();
    let samples = mine
        .iter()
        .filter(|r| matches!(r, Record::Sample(_)))
        .count();
    let step = samples.div_ceil(max_points.max(1)).max(1);
    let peak = timeline::peak(&mine).copied();
    let mut n = 0;
    let kept: Vec<Record> = mine
        .iter()
        .filter(|r| match r {
            Record::Sample(s) => {
                n += 1;
                (n - 1) % step == 0 || Some(*s) == peak || n == samples
            }
            Record::Event(_) => true,
        })
        .cloned()
        .collect();
    Timeline {
        source: source.to_owned(),
        ..timeline::svg::chart_of(&kept)
    }
}

/// `dump` when it is of the newest dump's process (pid, and start time when sidecars
/// tell); else None and a note naming it.
pub fn of_process(
    dump: LoadedDump,
    newest: &LoadedDump,
    notes: &mut Vec<String>,
) -> Option<LoadedDump> {
    match newest.same_process(&dump) {
        Ok(()) => Some(dump),
        Err(which) => {
            notes.push(format!(
                "{} is left out: it is of another process than the newest dump ({which}); a \
                 page shows one process",
                shown(&dump.path)
            ));
            None
        }
    }
}

/// Where a timeline file is and how it may be read.
pub struct TimelineFile {
    pub path: PathBuf,
    pub limit: u64,
    /// Named by the user: a missing file is worth a note, and it is read as named (a
    /// symbolic link followed, any owner); the dump directory's is read only when it is
    /// jemsafe's ([`timeline::file::Source`]).
    pub named: bool,
}

impl TimelineFile {
    fn source(&self) -> timeline::file::Source<'_> {
        if self.named {
            timeline::file::Source::Named(&self.path)
        } else {
            timeline::file::Source::DumpDir(&self.path)
        }
    }
}

/// What a page is made of (the command line's arguments, or the live page's settings).
pub struct Inputs {
    pub paths: Vec<PathBuf>,
    /// The user named the dumps (symbolic links followed).
    pub named: bool,
    pub timeline: Option<TimelineFile>,
    pub since: Option<SystemTime>,
    pub max_entries: usize,
    pub max_dump_mb: u64,
    pub symbolize: jemsafe_report::SymbolizeOptions,
    pub live: Option<page::Live>,
    /// What the live page left out of the dumps it was given (its budget), for a note.
    pub left_out: Option<String>,
}

/// The timeline for the dumps' process, or a note saying why there is none.
fn read_timeline(
    file: Option<&TimelineFile>,
    since: Option<SystemTime>,
    dumps: &[LoadedDump],
    notes: &mut Vec<String>,
) -> Option<Timeline> {
    let file = file?;
    let newest = dumps.last()?;
    let pid = newest.pid?;
    let start = LoadedDump::known_of_series(dumps).start_ticks;
    let shown_path = shown(&file.path);
    let parsed = match timeline::file::read(file.source(), file.limit) {
        Ok(p) => p,
        // The dump directory's timeline is absent where jemsafe never wrote one.
        Err(timeline::file::ReadError::Missing { .. }) if !file.named => return None,
        Err(e @ timeline::file::ReadError::NotOurs { .. }) => {
            notes.push(format!(
                "{e}: the chart is drawn from the dumps' memory snapshots"
            ));
            return None;
        }
        Err(e) => {
            notes.push(format!(
                "the timeline {shown_path} cannot be read ({e}); the chart is drawn from the \
                 dumps' memory snapshots"
            ));
            return None;
        }
    };
    if let Some(d) = &parsed.damage {
        notes.push(format!(
            "the timeline {shown_path}: {}; what could be read is shown",
            d.describe()
        ));
    }
    let records = timeline::select(&parsed.records, since, Some(pid));
    let t = timeline_of(
        &records,
        pid,
        start,
        &format!("the timeline file {shown_path}"),
        MAX_POINTS,
    );
    if t.points.is_empty() {
        notes.push(format!(
            "the timeline {shown_path} has no samples of pid {pid}; the chart is drawn from the \
             dumps' memory snapshots"
        ));
        return None;
    }
    Some(t)
}

/// The page's HTML for `inputs`; what is missing becomes a note on the page.
pub fn render(inputs: Inputs) -> Result<String> {
    let limits = DumpLimits::new(inputs.max_dump_mb, inputs.named);
    let mut notes: Vec<String> = inputs.left_out.iter().cloned().collect();
    // The newest readable dump says which process the page is of; then every dump is read
    // one at a time and folded into the series (its stacks dropped).
    let mut newest = None;
    let mut unreadable = Vec::new();
    for (i, p) in inputs.paths.iter().enumerate().rev() {
        match crate::read::load(p, &limits) {
            Ok(d) => {
                newest = Some((i, d));
                break;
            }
            Err(e) => unreadable.push(format!("{e}; the page is made without it")),
        }
    }
    let Some((newest_index, newest)) = newest else {
        notes.extend(unreadable.into_iter().rev());
        if inputs.live.is_some() {
            // The live page before the first dump: its button takes one.
            notes.push("no heap dump of mysqld yet: take one with the button above".into());
            let model = page::Model {
                title: "mysqld memory: no dumps yet".into(),
                notes,
                live: inputs.live,
                ..Default::default()
            };
            return Ok(page::html::render(&model));
        }
        return Err(Error::NotFound(format!(
            "no heap dump to show{}",
            if notes.is_empty() {
                String::new()
            } else {
                format!(": {}", notes.join("; "))
            }
        )));
    };
    let mut series = jemsafe_report::series::Series::new();
    for p in &inputs.paths[..newest_index] {
        match crate::read::load(p, &limits) {
            Ok(d) => {
                if let Some(d) = of_process(d, &newest, &mut notes) {
                    series.push(d);
                }
            }
            // One unreadable dump does not hide the others.
            Err(e) => notes.push(format!("{e}; the page is made without it")),
        }
    }
    series.push(newest);
    notes.extend(unreadable.into_iter().rev());
    let timeline = read_timeline(
        inputs.timeline.as_ref(),
        inputs.since,
        &series.dumps,
        &mut notes,
    );
    let options = page::Options {
        symbolize: inputs.symbolize,
        max_entries: inputs.max_entries,
        ..Default::default()
    };
    let mut model = page::build(series, timeline, notes, &options)?;
    model.live = inputs.live;
    Ok(page::html::render(&model))
}

/// Builds the page's HTML for the command line's arguments; also the dump directory, when
/// the config names one (where the page is written with its group).
pub fn html(args: &PageArgs) -> Result<(String, Option<PathBuf>)> {
    let plan = Selection::make(plan::Request {
        pid: args.pid,
        since: args.since.as_deref(),
        debuginfod: Some(&args.read),
        timeline: args.timeline.is_none(),
        ..plan::Request::new(&args.config, &args.dumps, plan::Want::SeriesOfPid)
    })?;
    let timeline = match &args.timeline {
        Some(f) => Some(TimelineFile {
            path: f.clone(),
            limit: 256 << 20,
            named: true,
        }),
        None => plan.settings.as_ref().map(timeline_file),
    };
    let dump_dir = crate::read::output::dump_dir(&args.config, plan.settings.as_ref());
    let html = render(Inputs {
        paths: plan.dumps,
        named: plan.named,
        timeline,
        since: plan.since,
        max_entries: args.max_entries,
        max_dump_mb: args.read.max_dump_mb,
        symbolize: crate::read::sym_options(crate::cli::NamesMode::Exact, plan.debuginfod),
        live: None,
        left_out: None,
    })?;
    Ok((html, dump_dir))
}

/// The timeline file of a dump directory, read as `jemsafe timeline` reads it.
pub fn timeline_file(settings: &plan::ReadSettings) -> TimelineFile {
    let (path, limit) = settings.timeline();
    TimelineFile {
        path,
        limit,
        named: false,
    }
}

/// The live page's child (`jemsafe __page`): the newest process's dumps in `dir`, its
/// timeline, the CSRF token from the environment; the HTML written framed (its length as 8
/// bytes little-endian, then the bytes) for the HTTP server.
pub fn live_child_main(dir: &Path, prefix: &str, timeline_max_mb: u64) -> Result<i32> {
    let settings = plan::ReadSettings {
        dumps_dir: dir.to_owned(),
        prefix: prefix.to_owned(),
        timeline_max_mb,
        debuginfod: Vec::new(),
    };
    // Planned as `jemsafe page` plans, from the directory the server was given.
    let plan = Selection::make(plan::Request {
        listing: plan::Listing::Dir(&settings),
        timeline: true,
        ..plan::Request::new(Path::new(""), &[], plan::Want::SeriesOfPid)
    })?;
    let csrf = std::env::var(crate::http::PAGE_CSRF_ENV).unwrap_or_default();
    // The newest dumps within the server's render budget; the page says what it left out.
    use crate::http::budget;
    let sized = plan.dumps.into_iter().map(|p| {
        let size = budget::size_of(&p);
        (p, size)
    });
    let max_bytes = budget::dump_bytes_from_env(jemsafe_report::DEFAULT_MAX_DUMP_MB << 20);
    let (paths, left_out) = budget::cap_series(sized.collect(), budget::MAX_PAGE_DUMPS, max_bytes);
    let html = render(Inputs {
        paths,
        left_out,
        named: false,
        timeline: Some(timeline_file(&settings)),
        since: None,
        max_entries: page::Options::default().max_entries,
        max_dump_mb: (max_bytes >> 20).max(1),
        symbolize: Default::default(),
        live: Some(page::Live { csrf }),
    })?;
    crate::http::child::write_framed(html.as_bytes())
        .map_err(Error::io("cannot write the page to the HTTP server"))?;
    Ok(0)
}

/// `jemsafe page`.
pub fn command(args: &PageArgs) -> Result<i32> {
    let started = std::time::Instant::now();
    let (text, dump_dir) = html(args)?;
    crate::read::output::write(&args.output, text.as_bytes(), dump_dir.as_deref())?;
    crate::info!(
        "page written: {} ({} KiB) in {:.1} s",
        shown(&args.output),
        text.len() / 1024,
        started.elapsed().as_secs_f64()
    );
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::{Event, EventKind, Parts, Sample};
    use std::time::{Duration, UNIX_EPOCH};

    fn sample(s: u64, pid: u32, rss: u64) -> Record {
        Record::Sample(Sample {
            time: UNIX_EPOCH + Duration::from_secs(s),
            pid,
            start: 7,
            rss,
            parts: Some(Parts::default().with("heap_in_use", rss / 2)),
            allocated: None,
            cgroup_usage: None,
            limit: Some(1000),
        })
    }

    #[test]
    fn the_timeline_is_one_process_thinned_with_its_peak_kept() {
        let mut records: Vec<Record> = (0..100).map(|i| sample(i, 5, 100 + i)).collect();
        records[37] = sample(37, 5, 999);
        records.push(sample(50, 6, 5000));
        records.push(Record::Event(Event {
            time: UNIX_EPOCH + Duration::from_secs(60),
            pid: 5,
            start: 7,
            kind: EventKind::Exit {
                how: "was killed by SIGKILL".into(),
                oom: true,
            },
        }));
        let t = timeline_of(&records, 5, Some(7), "x", 10);
        assert!(t.points.len() <= 12, "{}", t.points.len());
        assert!(t.points.iter().any(|p| p.rss == 999), "peak dropped");
        assert!(t.points.iter().all(|p| p.rss != 5000), "other pid shown");
        let p = &t.points[0];
        assert_eq!(p.parts.unwrap()[0], 50);
        assert_eq!(p.parts.unwrap()[7], 50);
        assert_eq!(t.markers.len(), 1);
        assert_eq!(t.markers[0].kind, "oom");
        // Another process that had pid 5 (other start ticks) is not this one.
        assert!(timeline_of(&records, 5, Some(8), "x", 10).points.is_empty());
    }
}
