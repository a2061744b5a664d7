//! One plan per report-family command (`report`, `leaks`, `archive`, `page`, and the
//! live page's child `__page`): which dumps, which time window, what the config says.
//!
//! The config is read at most once, and only when something needs it: a named dump needs
//! none, so a missing default config is then no error. The dumps are chosen by one pure
//! rule, [`choose`]: the dumps named on the command line, else `--pid`'s dumps in the dump
//! directory, else the newest process's (or, for `report`, the newest dump); `--since`
//! then keeps those of the window.

use super::select;
use crate::config::Config;
use crate::error::{Error, Result};
use jemsafe_report::safe::shown;
use jemsafe_report::sidecar::{Known, Process};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// What a command takes from its config (the live page's child gets it as arguments).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadSettings {
    pub dumps_dir: PathBuf,
    pub prefix: String,
    pub timeline_max_mb: u64,
    /// `[report] debuginfod`.
    pub debuginfod: Vec<String>,
}

impl ReadSettings {
    pub fn of(config: &Config) -> ReadSettings {
        ReadSettings {
            dumps_dir: config.dumps.dir.clone(),
            prefix: config.dumps.prefix.clone(),
            timeline_max_mb: config.timeline.max_mb,
            debuginfod: config.report.debuginfod.clone(),
        }
    }

    /// The timeline file, and how many bytes of it are read at most.
    pub fn timeline(&self) -> (PathBuf, u64) {
        (
            self.dumps_dir
                .join(crate::timeline::file_name(&self.prefix)),
            // Twice the writer's cap: a file being compacted is still read whole.
            (self.timeline_max_mb << 21).max(64 << 20),
        )
    }
}

/// `--since`: a duration back from `now` (90m, 6h, 3d) or a time (RFC 3339, UTC).
pub fn since(s: &str, now: SystemTime) -> Result<SystemTime> {
    match humantime::parse_duration(s) {
        Ok(d) => Ok(now.checked_sub(d).unwrap_or(UNIX_EPOCH)),
        Err(_) => humantime::parse_rfc3339_weak(s).map_err(|_| {
            Error::Usage(format!(
                "--since {s:?}: give a duration (90m, 6h, 3d) or a time (2026-12-05T03:00:00Z)"
            ))
        }),
    }
}

/// How many dumps a command reads when none are named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// The newest dump (`report`).
    One,
    /// All dumps of the newest process (`leaks`, `archive`).
    Series,
    /// All dumps of the newest dump's pid: the caller tells processes apart with the
    /// sidecars it reads anyway (`page`: each sidecar read once).
    SeriesOfPid,
}

/// What the user asked for, decided on by [`choose`].
#[derive(Debug, Clone, Copy)]
pub struct Ask {
    /// The candidates are dumps named on the command line (else a dump directory's).
    pub named: bool,
    pub pid: Option<u32>,
    pub since: Option<SystemTime>,
    pub want: Want,
}

/// A heap file as [`choose`] sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub path: PathBuf,
    /// From its name, when jemsafe or jemalloc named it.
    pub pid: Option<u32>,
    /// From its name, else its mtime; None when neither is known.
    pub time: Option<SystemTime>,
}

impl Candidate {
    /// `path` with what its name and its metadata say.
    pub fn of(path: &Path) -> Candidate {
        Candidate {
            path: path.to_owned(),
            pid: select::name_info(path).0,
            time: select::time_of(path),
        }
    }

    /// A dump directory's heap file (listed: its pid and mtime known).
    pub fn listed(f: &crate::dumpdir::HeapFile) -> Candidate {
        Candidate {
            path: f.path.clone(),
            pid: Some(f.name.pid),
            time: f.name.time().or(Some(f.modified)),
        }
    }
}

/// Why [`choose`] found nothing to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// The dump directory (or archive) holds no dump.
    NoDumps,
    /// It holds none of `--pid`'s.
    NoDumpsOf(u32),
}

/// The dumps to read, in the order of `candidates` (oldest first, as the listing or
/// [`select::oldest_first`] gives them): all of them when named, else `--pid`'s, or the
/// newest one (`Want::One`), or all of the newest one's process ([`Known::same_as`]: a
/// restart that got the same pid is another process); then those from `--since` on.
/// `process` reads a dump's process from its sidecar.
pub fn choose(
    ask: &Ask,
    candidates: &[Candidate],
    process: impl Fn(&Path) -> Option<Process>,
) -> std::result::Result<Vec<PathBuf>, Missing> {
    let mut chosen: Vec<&Candidate> = if ask.named {
        candidates.iter().collect()
    } else {
        let newest = candidates.last().ok_or(Missing::NoDumps)?;
        match (ask.pid, ask.want) {
            (Some(pid), _) => {
                let of_pid: Vec<&Candidate> =
                    candidates.iter().filter(|c| c.pid == Some(pid)).collect();
                if of_pid.is_empty() {
                    return Err(Missing::NoDumpsOf(pid));
                }
                of_pid
            }
            (None, Want::One) => vec![newest],
            (None, Want::SeriesOfPid) => {
                candidates.iter().filter(|c| c.pid == newest.pid).collect()
            }
            (None, Want::Series) => {
                let known = |c: &Candidate| Known::of(c.pid, process(&c.path).as_ref());
                let mine = known(newest);
                candidates
                    .iter()
                    .filter(|c| known(c).same_as(&mine))
                    .collect()
            }
        }
    };
    if let Some(since) = ask.since {
        chosen.retain(|c| c.time.is_some_and(|t| t >= since));
    }
    Ok(chosen.into_iter().map(|c| c.path.clone()).collect())
}

/// Where the dumps come from when none are named.
pub enum Listing<'a> {
    /// The dump directory of the command's config (`-c`).
    Config,
    /// A dump directory given as such (the live page's child): empty is no error there.
    Dir(&'a ReadSettings),
    /// The dumps of an unpacked archive (`report --archive`), oldest first.
    Archive { file: &'a Path, dumps: Vec<PathBuf> },
}

/// What a command asks of its plan.
pub struct Request<'a> {
    /// `-c FILE`.
    pub config: &'a Path,
    /// Dumps named on the command line.
    pub named: &'a [PathBuf],
    pub pid: Option<u32>,
    pub since: Option<&'a str>,
    pub want: Want,
    pub listing: Listing<'a>,
    /// `--debuginfod` URLs and `--offline`; None: the command names no frames itself.
    pub debuginfod: Option<&'a crate::cli::ReadArgs>,
    /// The config's timeline is wanted (`leaks`; `page` without `--timeline`).
    pub timeline: bool,
}

impl<'a> Request<'a> {
    /// `named` dumps, else those of the config's dump directory; no `--pid`, `--since`,
    /// debuginfod or timeline.
    pub fn new(config: &'a Path, named: &'a [PathBuf], want: Want) -> Request<'a> {
        Request {
            config,
            named,
            pid: None,
            since: None,
            want,
            listing: Listing::Config,
            debuginfod: None,
            timeline: false,
        }
    }
}

/// What a command reads.
pub struct Selection {
    /// Oldest first.
    pub dumps: Vec<PathBuf>,
    /// The user named the dumps: symbolic links are followed.
    pub named: bool,
    pub since: Option<SystemTime>,
    /// What the config says, when it was needed and could be read (or was given).
    pub settings: Option<ReadSettings>,
    /// debuginfod: `--debuginfod` URLs, else DEBUGINFOD_URLS, else the config's.
    pub debuginfod: jemsafe_report::debuginfod::Config,
    /// The sidecars read to choose the dumps, for loading them without a second read.
    pub sidecars: select::Sidecars,
}

impl Selection {
    /// The plan for `req`: reads the config (once, if needed) and the dump directory.
    pub fn make(req: Request) -> Result<Selection> {
        let since = req.since.map(|s| since(s, SystemTime::now())).transpose()?;
        let named = !req.named.is_empty();
        let dir_needed = !named && matches!(req.listing, Listing::Config);
        // The config's servers are asked only when neither the command line nor the
        // environment names any; a config that cannot be read then is only a warning.
        let servers_needed = req.debuginfod.is_some_and(|a| a.debuginfod.is_empty())
            && std::env::var_os("DEBUGINFOD_URLS").is_none()
            && req.config.exists();
        let settings = match &req.listing {
            Listing::Dir(s) => Some((*s).clone()),
            _ if !(dir_needed || servers_needed || req.timeline) => None,
            _ => match Config::load(req.config) {
                Ok(c) => Some(ReadSettings::of(&c)),
                Err(e) if dir_needed => return Err(e.into()),
                Err(e) => {
                    if servers_needed {
                        crate::warn!("{e}; its [report] debuginfod servers are not used");
                    }
                    None
                }
            },
        };
        let mut debuginfod = jemsafe_report::debuginfod::Config::from_env();
        if let Some(args) = req.debuginfod {
            debuginfod.offline = args.offline;
            if !args.debuginfod.is_empty() {
                debuginfod.urls = args
                    .debuginfod
                    .iter()
                    .flat_map(|u| jemsafe_report::debuginfod::split_urls(u))
                    .collect();
            } else if servers_needed {
                if let Some(s) = &settings {
                    debuginfod.urls = s.debuginfod.clone();
                }
            }
        }
        let ask = Ask {
            named,
            pid: req.pid,
            since,
            want: req.want,
        };
        let sidecars = select::Sidecars::new(named);
        let process = |p: &Path| sidecars.process(p);
        let dumps = if named {
            let named: Vec<Candidate> = select::oldest_first(req.named)
                .iter()
                .map(|p| Candidate::of(p))
                .collect();
            choose(&ask, &named, process).unwrap_or_default()
        } else {
            chosen_from(&req, &ask, settings.as_ref(), process)?
        };
        Ok(Selection {
            dumps,
            named,
            since,
            settings,
            debuginfod,
            sidecars,
        })
    }
}

/// The dumps of `req`'s listing that [`choose`] keeps, or why there are none.
fn chosen_from(
    req: &Request,
    ask: &Ask,
    settings: Option<&ReadSettings>,
    process: impl Fn(&Path) -> Option<Process>,
) -> Result<Vec<PathBuf>> {
    let candidates: Vec<Candidate> = match (&req.listing, settings) {
        (Listing::Archive { dumps, .. }, _) => dumps.iter().map(|p| Candidate::of(p)).collect(),
        (_, Some(s)) => crate::dumpdir::list(&s.dumps_dir, &s.prefix)
            .map_err(Error::io(match req.listing {
                Listing::Config => format!(
                    "cannot list the dump directory {} (from {})",
                    shown(&s.dumps_dir),
                    shown(req.config)
                ),
                _ => format!("cannot list the dump directory {}", shown(&s.dumps_dir)),
            }))?
            .iter()
            .map(Candidate::listed)
            .collect(),
        // Unreachable: a config that is needed and unreadable already failed.
        (_, None) => Vec::new(),
    };
    match (choose(ask, &candidates, process), &req.listing) {
        (Ok(dumps), _) => Ok(dumps),
        // The live page before the first dump says so on the page.
        (Err(_), Listing::Dir(_)) => Ok(Vec::new()),
        (Err(_), Listing::Archive { file, .. }) => Err(Error::NotFound(format!(
            "the archive {} holds no dump",
            shown(file)
        ))),
        (Err(Missing::NoDumpsOf(pid)), Listing::Config) => Err(Error::NotFound(format!(
            "no heap dumps of pid {pid} in the dump directory of {}",
            shown(req.config)
        ))),
        (Err(Missing::NoDumps), Listing::Config) => Err(Error::NotFound(format!(
            "no heap dumps in {} (dumps.dir of {}): take one with `kill -USR1 <jemsafe pid>` \
             or `jemsafe dump`, or name a dump file",
            settings.map(|s| shown(&s.dumps_dir)).unwrap_or_default(),
            shown(req.config)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(s)
    }

    fn c(name: &str, pid: u32, t: u64) -> Candidate {
        Candidate {
            path: PathBuf::from(name),
            pid: Some(pid),
            time: Some(at(t)),
        }
    }

    fn ask(named: bool, pid: Option<u32>, since: Option<u64>, want: Want) -> Ask {
        Ask {
            named,
            pid,
            since: since.map(at),
            want,
        }
    }

    fn paths(v: &[&str]) -> Vec<PathBuf> {
        v.iter().map(PathBuf::from).collect()
    }

    /// The process of a dump: pid 5 restarted (start ticks 2) for the files named "new*".
    fn process(p: &Path) -> Option<Process> {
        let name = p.to_str()?;
        (!name.starts_with("nosidecar")).then(|| Process {
            pid: 5,
            start_ticks: if name.starts_with("new") { 2 } else { 1 },
            boot_id: None,
            started_at: None,
            executable: None,
        })
    }

    #[test]
    fn named_dumps_come_first_then_pid_then_the_newest_process() {
        let dir = [
            c("a", 5, 10),
            c("b", 6, 20),
            c("new1", 5, 30),
            c("new2", 5, 40),
        ];
        // Named: all of them, in the order given, whatever --pid says.
        let named = [c("x", 8, 5), c("y", 9, 50)];
        let got = choose(&ask(true, Some(6), None, Want::Series), &named, process);
        assert_eq!(got, Ok(paths(&["x", "y"])));
        // --pid: every dump of that pid.
        let got = choose(&ask(false, Some(6), None, Want::Series), &dir, process);
        assert_eq!(got, Ok(paths(&["b"])));
        // Neither: the newest process (pid 5 again, but restarted: "a" is not it).
        let got = choose(&ask(false, None, None, Want::Series), &dir, process);
        assert_eq!(got, Ok(paths(&["new1", "new2"])));
        // `report`: the newest dump.
        let got = choose(&ask(false, None, None, Want::One), &dir, process);
        assert_eq!(got, Ok(paths(&["new2"])));
    }

    #[test]
    fn since_keeps_the_window_of_any_choice() {
        let dir = [c("old", 5, 10), c("mid", 5, 20), c("new", 5, 30)];
        let none = |_: &Path| None;
        let got = choose(&ask(false, None, Some(20), Want::Series), &dir, none);
        assert_eq!(got, Ok(paths(&["mid", "new"])));
        let got = choose(&ask(true, None, Some(25), Want::Series), &dir, none);
        assert_eq!(got, Ok(paths(&["new"])));
        // A dump whose time is unknown is outside every window.
        let mut unknown = c("u", 5, 0);
        unknown.time = None;
        let got = choose(&ask(true, None, Some(0), Want::Series), &[unknown], none);
        assert_eq!(got, Ok(vec![]));
    }

    #[test]
    fn missing_dumps_are_told_apart() {
        let none = |_: &Path| None;
        assert_eq!(
            choose(&ask(false, None, None, Want::One), &[], none),
            Err(Missing::NoDumps)
        );
        assert_eq!(
            choose(
                &ask(false, Some(7), None, Want::Series),
                &[c("a", 5, 1)],
                none
            ),
            Err(Missing::NoDumpsOf(7))
        );
        // Named dumps are never missing here: reading them says what is wrong.
        assert_eq!(
            choose(&ask(true, None, None, Want::One), &[], none),
            Ok(vec![])
        );
    }

    /// "Oldest first" is the listing's: the running mysqld's dumps come last even when
    /// the clock says otherwise, and `choose` does not sort them again.
    #[test]
    fn the_order_given_is_kept() {
        let listing = [c("other", 6, 50), c("new1", 5, 30), c("new2", 5, 40)];
        let none = |_: &Path| None;
        let got = choose(&ask(true, None, None, Want::Series), &listing, none);
        assert_eq!(got, Ok(paths(&["other", "new1", "new2"])));
        let got = choose(&ask(false, Some(5), None, Want::Series), &listing, none);
        assert_eq!(got, Ok(paths(&["new1", "new2"])));
    }

    #[test]
    fn dumps_without_sidecars_count_as_the_newest_process() {
        let dir = [c("nosidecar-a", 5, 10), c("b", 5, 20), c("new", 5, 30)];
        let got = choose(&ask(false, None, None, Want::Series), &dir, process);
        assert_eq!(got, Ok(paths(&["nosidecar-a", "new"])));
    }

    #[test]
    fn since_takes_durations_and_times() {
        let now = at(100_000);
        assert_eq!(since("90m", now).unwrap(), at(100_000 - 5400));
        assert_eq!(since("1d 1h", now).unwrap(), at(100_000 - 90_000));
        assert_eq!(
            since("2026-12-05T03:00:00Z", now).unwrap(),
            humantime::parse_rfc3339("2026-12-05T03:00:00Z").unwrap()
        );
        assert_eq!(
            since("2026-12-05 03:00:00", now).unwrap(),
            humantime::parse_rfc3339("2026-12-05T03:00:00Z").unwrap()
        );
        let e = since("yesterday", now).unwrap_err();
        assert!(matches!(e, Error::Usage(_)), "{e}");
    }
}
