//! One function per subcommand; each returns the process exit status.

use crate::check;
use crate::cli::ConfigArgs;
use crate::control::{self, ProfOp, Request};
use crate::error::Result;
use crate::{sandbox, supervisor, warn};
use std::io::Write;
use std::path::Path;

/// `println!` that returns the write error instead of panicking: `main` decides what a
/// closed pipe means (exit 0), once for every command.
macro_rules! out {
    ($($arg:tt)*) => {
        writeln!(std::io::stdout().lock(), $($arg)*)
            .map_err(crate::error::Error::io("cannot write to standard output"))?
    };
}

/// `print!` counterpart of [`out!`].
macro_rules! out_raw {
    ($($arg:tt)*) => {
        write!(std::io::stdout().lock(), $($arg)*)
            .map_err(crate::error::Error::io("cannot write to standard output"))?
    };
}

pub fn check(args: &ConfigArgs) -> Result<i32> {
    let (config, profile) = check::load(&args.config, args.profile.as_deref())?;
    let (_, report) = check::inspect(&config, &profile, &[]);
    let mut out = std::io::stdout().lock();
    report
        .print(&mut out)
        .map_err(crate::error::Error::io("cannot write to standard output"))?;
    Ok(if report.problems.is_empty() { 0 } else { 1 })
}

pub fn env(args: &ConfigArgs) -> Result<i32> {
    let (config, profile) = check::load(&args.config, args.profile.as_deref())?;
    // What this prints is meant for root's service files: root would preload it.
    let root = nix::unistd::geteuid().is_root();
    if root {
        crate::error::Error::untrusted_if_any(crate::trust::problems(&args.config, "config file"))?;
    }
    // The shim's thread starts only with jemsafe's channel, so other launchers get the
    // allocator alone: libjemalloc, or the bundled library (whose shim then stays idle).
    let library = crate::locate::library(&config.jemalloc.library, true)?;
    let bundled = config.jemalloc.library.is_bundled();
    if root {
        crate::error::Error::untrusted_if_any(crate::trust::problems(
            &library,
            if bundled {
                "bundled jemalloc"
            } else {
                "libjemalloc"
            },
        ))?;
    }
    out!("LD_PRELOAD={}", sh_quote(&library.to_string_lossy()));
    out!(
        "{}={}",
        crate::locate::conf_var(bundled),
        sh_quote(&profile.malloc_conf(&config.dumps.prof_prefix()))
    );
    Ok(0)
}

pub fn run(args: &ConfigArgs, mysqld_args: &[String]) -> Result<i32> {
    run_with(&args.config, args.profile.as_deref(), mysqld_args)
}

/// `run` for a given config file; the sandbox comes through here too.
fn run_with(config_path: &Path, profile: Option<&str>, mysqld_args: &[String]) -> Result<i32> {
    let (config, profile) = check::load(config_path, profile)?;
    for var in ["MALLOC_CONF", crate::locate::BUNDLED_CONF_VAR] {
        if let Some(old) = std::env::var_os(var) {
            warn!(
                "{var}={} in jemsafe's environment is replaced by profile {:?}",
                old.to_string_lossy(),
                profile.name
            );
        }
    }
    let plan = check::plan_for_run(&config, &profile, mysqld_args)?;
    supervisor::run(&plan)
}

pub fn sandbox(opts: sandbox::Options, mysqld_args: &[String]) -> Result<i32> {
    let config_path = sandbox::prepare(&opts)?;
    run_with(&config_path, None, mysqld_args)
}

pub fn dump(config_path: &Path) -> Result<i32> {
    let config = crate::config::Config::load(config_path)?;
    let reply = control::call(
        &config.supervise.runtime_dir,
        &Request::Dump {
            via: control::DumpVia::Cli,
        },
        CALL_TIMEOUT,
    )?;
    let dumped: control::Dumped = control::from_reply(reply, "dump")?;
    out!("{}", dumped.path);
    Ok(0)
}

pub fn prof(
    config_path: &Path,
    op: ProfOp,
    lg_sample: Option<crate::config::profile::LgSample>,
) -> Result<i32> {
    if lg_sample.is_some() && op != ProfOp::Reset {
        return Err(crate::error::Error::Usage(
            "--lg-sample goes with `jemsafe prof reset` (the sample rate changes only on a reset)"
                .into(),
        ));
    }
    let config = crate::config::Config::load(config_path)?;
    let reply = control::call(
        &config.supervise.runtime_dir,
        &Request::Prof {
            op,
            lg_sample: lg_sample.map(|l| u32::from(l.0)),
        },
        CALL_TIMEOUT,
    )?;
    match op {
        ProfOp::Reset => {
            let r: control::ProfReset = control::from_reply(reply, "prof reset")?;
            out!("prof.reset done; lg_prof_sample = {}", r.lg_prof_sample)
        }
        _ => {
            let p: control::ProfChanged = control::from_reply(reply, "prof")?;
            out!("prof.active = {} (was {})", p.prof_active, p.was_active)
        }
    }
    Ok(0)
}

pub fn status(config_path: &Path, as_json: bool) -> Result<i32> {
    let config = crate::config::Config::load(config_path)?;
    let reply = control::call(
        &config.supervise.runtime_dir,
        &Request::Status,
        CALL_TIMEOUT,
    )?;
    if as_json {
        out!("{}", serde_json::Value::Object(reply));
        return Ok(0);
    }
    let st = control::Status::from_reply(reply)?;
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let mib = |v: Option<u64>| opt(v.map(|b| format!("{:.1} MiB", b as f64 / 1048576.0)));
    out!("jemsafe     pid {}, profile {}", st.jemsafe_pid, st.profile);
    out!(
        "mysqld      pid {}, up {} s, restarts {}, last exit: {}",
        opt(st.mysqld_pid.map(|p| p.to_string())),
        opt(st.mysqld_uptime_s.map(|u| u.to_string())),
        st.restarts,
        // An OOM kill says so in its words: "was killed by SIGKILL (the kernel's OOM killer)".
        opt(st.last_exit)
    );
    if let Some(l) = &st.memory_limit {
        let rss = st
            .rss_at_last_check
            .map(|r| {
                format!(
                    "; RSS {} ({:.0}% of it)",
                    crate::watch::memlimit::human(r),
                    100.0 * r as f64 / l.bytes.max(1) as f64
                )
            })
            .unwrap_or_default();
        out!(
            "limit       {} from {}{rss}",
            crate::watch::memlimit::human(l.bytes),
            l.source
        );
    }
    if let Some(psi) = &st.pressure_source {
        out!("pressure    read from {psi}");
    }
    if let Some(why) = &st.mysqld_not_answering {
        out!("ATTENTION   {why}: the jemalloc figures below are missing");
    }
    out!("MALLOC_CONF {}", st.malloc_conf);
    out!("verified    {}", opt(st.verification.map(|v| v.message)));
    let j = &st.jemalloc;
    out!(
        "jemalloc    {}: opt.prof {}, prof.active {}, lg_prof_sample {}",
        opt(j.version.clone()),
        opt(j.opt_prof.map(|b| b.to_string())),
        opt(j.prof_active.map(|b| b.to_string())),
        opt(j.lg_prof_sample.map(|l| l.to_string()))
    );
    if let Some(t) = &j.capabilities {
        out!("can do      {}", t.summary());
    }
    let m = &st.stats;
    out!(
        "memory      allocated {}, active {}, resident {}, mapped {}, retained {}",
        mib(m.allocated),
        mib(m.active),
        mib(m.resident),
        mib(m.mapped),
        mib(m.retained)
    );
    out!(
        "dumps       {}: {} files, {}; {} free",
        st.dumps.dir,
        st.dumps.files,
        mib(Some(st.dumps.bytes)),
        mib(st.dumps.free_bytes)
    );
    let (path, time) = st
        .last_dump
        .map_or((None, None), |d| (Some(d.path), Some(d.time)));
    out!("last dump   {} at {}", opt(path), opt(time));
    if let Some(b) = &st.memory {
        out!("breakdown   {}", b.summary());
    }
    Ok(0)
}

/// The breakdown recorded with `dump` (and, for a dump jemalloc wrote on its own, how
/// many ms after it the readings were taken), or why there is none: never invented numbers.
/// `dump` may also name the sidecar itself (`X.heap.json`).
fn recorded_breakdown(dump: &Path) -> Result<(jemsafe_report::memory::Breakdown, Option<u64>)> {
    use crate::error::Error;
    let dump = dump_of_sidecar(dump);
    let dump = dump.as_path();
    let shown = jemsafe_report::safe::shown(dump);
    let sidecar = jemsafe_report::sidecar::read_for(dump, true)
        .map_err(Error::BadInput)?
        .ok_or_else(|| {
            Error::BadInput(format!(
                "{shown} has no sidecar ({shown}.json): only dumps jemsafe took record where \
                 the memory was; for the running mysqld use `jemsafe memory --live`"
            ))
        })?;
    sidecar
        .memory_snapshot()
        .ok_or_else(|| {
            Error::BadInput(format!(
                "{shown}: its sidecar holds no memory snapshot (a dump jemalloc wrote while \
                 mysqld did not answer has none); for the running mysqld use `jemsafe memory --live`"
            ))
        })?
        .and_then(|s| Ok((s.breakdown()?, s.after_close_ms)))
        .map_err(|why| Error::BadInput(format!("{shown}: {why}")))
}

/// The dump a path names: `X.heap.json` (a sidecar) names `X.heap`, anything else itself.
fn dump_of_sidecar(path: &Path) -> std::path::PathBuf {
    match path.to_str().and_then(|p| p.strip_suffix(".heap.json")) {
        Some(stem) => std::path::PathBuf::from(format!("{stem}.heap")),
        None => path.to_owned(),
    }
}

/// The fragmentation-by-stack section of `memory DUMP` (shown when fragmentation is above
/// its advice threshold); a dump that cannot be read is a warning, the breakdown stands.
fn fragmentation_by_stack(dump: &Path) -> Result<()> {
    let limits = jemsafe_report::DumpLimits::default();
    match jemsafe_report::load(dump, &limits) {
        Ok(loaded) => {
            let options = jemsafe_report::SymbolizeOptions::default();
            if let Some((text, notes)) = crate::read::fragmentation_section(&loaded, &options, 10) {
                for n in notes {
                    crate::warn!("{n}");
                }
                out_raw!("\n{text}");
            }
        }
        Err(e) => crate::warn!("fragmentation by stack: {e}"),
    }
    Ok(())
}

/// `jemsafe memory`: the running mysqld's RSS broken down, through the control socket.
pub fn memory(config_path: &Path, dump: Option<&Path>, as_json: bool) -> Result<i32> {
    if let Some(dump) = dump {
        let (b, after_close_ms) = recorded_breakdown(dump)?;
        if as_json {
            let text = serde_json::to_string(&b)
                .map_err(|e| crate::error::Error::Refused(e.to_string()))?;
            out!("{text}");
        } else {
            let when = match after_close_ms {
                Some(ms) => format!("{ms} ms after jemalloc closed it"),
                None => "when it was taken".to_owned(),
            };
            out!("{} ({when}):", jemsafe_report::safe::shown(dump));
            out_raw!("{}", b.render());
            if b.fragmentation_advised() {
                fragmentation_by_stack(&dump_of_sidecar(dump))?;
            }
        }
        return Ok(0);
    }
    let config = crate::config::Config::load(config_path)?;
    let mut reply = control::call(
        &config.supervise.runtime_dir,
        &Request::Memory,
        CALL_TIMEOUT,
    )?;
    reply.remove("ok");
    let value = serde_json::Value::Object(reply);
    if as_json {
        out!("{value}");
        return Ok(0);
    }
    let b: jemsafe_report::memory::Breakdown = serde_json::from_value(value).map_err(|e| {
        crate::error::Error::Refused(format!("unreadable answer from jemsafe: {e}"))
    })?;
    out_raw!("{}", b.render());
    Ok(0)
}

pub fn dumps(config_path: &Path) -> Result<i32> {
    let config = crate::config::Config::load(config_path)?;
    let files = crate::dumpdir::list(&config.dumps.dir, &config.dumps.prefix).map_err(
        crate::error::Error::io(format!("cannot list {}", config.dumps.dir.display())),
    )?;
    out!(
        "{:<20}  {:>8}  {:<8}  {:>12}  file",
        "time (UTC)",
        "pid",
        "trigger",
        "bytes"
    );
    for f in &files {
        // The reading that fired the trigger, from the sidecar (never through a symlink).
        let reason = jemsafe_report::sidecar::read_for(&f.path, false)
            .ok()
            .flatten()
            .and_then(|s| s.reason)
            .map(|r| format!("  ({})", jemsafe_report::safe::escape(&r)))
            .unwrap_or_default();
        out!(
            "{:<20}  {:>8}  {:<8}  {:>12}  {}{reason}",
            jemsafe_report::clock::rfc3339_or_why(f.modified),
            f.name.pid,
            f.name.trigger(),
            f.size,
            jemsafe_report::safe::shown(&f.path)
        );
    }
    out!(
        "{} files, {} bytes",
        files.len(),
        files.iter().map(|f| f.size).sum::<u64>()
    );
    Ok(0)
}

/// `jemsafe report`: one dump (or the difference of two) as text, folded stacks, SVG or pprof.
pub fn report(args: &crate::cli::ReportArgs) -> Result<i32> {
    crate::read::report(args)
}

/// `jemsafe archive`: dumps with what reading them needs, in one .tar.gz.
pub fn archive(args: &crate::cli::ArchiveArgs) -> Result<i32> {
    crate::read::archive_command(args)
}

/// `jemsafe leaks`: stacks ranked by steady growth across dumps of one process.
pub fn leaks(args: &crate::cli::LeaksArgs) -> Result<i32> {
    crate::read::leaks(args)
}

/// `jemsafe timeline`: mysqld's memory over time as text, CSV, JSON or SVG.
pub fn timeline(args: &crate::cli::TimelineArgs) -> Result<i32> {
    use crate::cli::TimelineFormat;
    use crate::error::Error;
    use crate::timeline::{self, formats};
    use std::time::{Duration, SystemTime};
    let (path, limit) = match &args.file {
        Some(f) => (f.clone(), 256u64 << 20),
        None => crate::read::plan::ReadSettings::of(&crate::config::Config::load(&args.config)?)
            .timeline(),
    };
    let shown = jemsafe_report::safe::shown(&path);
    // A file named on the command line is read as named; the dump directory's only when
    // it is jemsafe's (mysqld's user can put a file of its own at that name).
    let source = match &args.file {
        Some(_) => timeline::file::Source::Named(&path),
        None => timeline::file::Source::DumpDir(&path),
    };
    let parsed = timeline::file::read(source, limit)?;
    if let Some(d) = &parsed.damage {
        warn!("{shown}: {}", d.describe());
    }
    if parsed.started_mid_file {
        warn!(
            "{shown} is longer than {} MiB: only its newest part is read",
            limit >> 20
        );
    }
    let now = SystemTime::now();
    let since = args
        .since
        .as_deref()
        .map(|s| crate::read::plan::since(s, now))
        .transpose()?;
    let records = timeline::select(&parsed.records, since, args.pid);
    let damage = parsed.damage.as_ref();
    let text = match args.format {
        TimelineFormat::Csv => formats::csv(&records, damage),
        TimelineFormat::Json => formats::json(&records, damage),
        TimelineFormat::Svg => timeline::svg::svg(
            &records,
            &format!(
                "mysqld memory{}",
                args.pid.map(|p| format!(", pid {p}")).unwrap_or_default()
            ),
            damage,
            path.parent(),
        ),
        TimelineFormat::Text => {
            let step = match args.step.as_deref() {
                Some(s) => humantime::parse_duration(s)
                    .ok()
                    .filter(|d| !d.is_zero())
                    .ok_or_else(|| {
                        Error::Usage(format!(
                            "--step {s:?}: give a duration such as 30s, 10m, 1h"
                        ))
                    })?,
                None => {
                    let span = match (records.first(), records.last()) {
                        (Some(a), Some(b)) => b.time().duration_since(a.time()).unwrap_or_default(),
                        _ => Duration::ZERO,
                    };
                    let events = records
                        .iter()
                        .filter(|r| matches!(r, timeline::Record::Event(_)))
                        .count();
                    let rows = terminal_rows().saturating_sub(4 + events).max(10);
                    formats::choose_step(span, rows)
                }
            };
            formats::text(&records, step)
        }
    };
    match &args.output {
        Some(out) if out != Path::new("-") => {
            let dump_dir = crate::read::output::dump_dir(&args.config, None);
            crate::read::output::write(out, text.as_bytes(), dump_dir.as_deref())?
        }
        _ => out_raw!("{text}"),
    }
    Ok(0)
}

/// Rows of the terminal on standard output, else $LINES, else 40.
fn terminal_rows() -> usize {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ fills the winsize it is given; stdout is a valid descriptor.
    let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) } == 0;
    if ok && ws.ws_row > 0 {
        return usize::from(ws.ws_row);
    }
    std::env::var("LINES")
        .ok()
        .and_then(|l| l.parse().ok())
        .unwrap_or(40)
}

/// How long a control client waits: a dump of a very large heap can take seconds.
const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// `jemsafe sql [--drop] [-c CONFIG]`: the statements, on standard output.
pub fn sql(drop: bool, config: Option<&Path>) -> Result<i32> {
    let script = match config {
        None => crate::sql::statements(drop),
        Some(path) => crate::sql::for_configured_server(drop, &crate::config::Config::load(path)?),
    };
    out_raw!("{script}");
    Ok(0)
}

/// Single-quotes `s` for sh (and systemd's EnvironmentFile).
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_sidecar_path_names_its_dump() {
        use std::path::Path;
        assert_eq!(
            super::dump_of_sidecar(Path::new("/d/m.1.2.heap.json")),
            Path::new("/d/m.1.2.heap")
        );
        assert_eq!(
            super::dump_of_sidecar(Path::new("/d/m.1.2.heap")),
            Path::new("/d/m.1.2.heap")
        );
    }

    #[test]
    fn sh_quote_survives_single_quotes() {
        assert_eq!(super::sh_quote("a'b"), r"'a'\''b'");
    }
}
