//! The checks `check` prints and `run` makes before it starts anything.
//!
//! Each step adds a line to the summary or a problem; `check` prints them all, `run` stops
//! at the first one that makes starting pointless.

use crate::config::{Config, Profile};
use crate::dumpdir::retention;
use crate::error::{Error, Result};
use crate::launch::{mysqld_version, Launch};
use crate::locate::{self, Located, Preload};
use crate::probe;
use crate::supervisor::{policy::RestartPolicy, RunPlan};
use crate::verify::{Expectation, FileId};
use std::path::Path;
use std::time::Duration;

/// What was checked, in order, as (label, finding) rows, plus problems found.
#[derive(Debug, Default)]
pub struct Report {
    pub rows: Vec<(&'static str, String)>,
    pub problems: Vec<String>,
    /// Ownership and mode problems of what root would preload (also in `problems`):
    /// `run` refuses on these whatever `verify` says.
    pub untrusted: Vec<String>,
    /// A dump directory mysqld's user cannot write to (also in `problems`): `run` starts
    /// anyway and says it (mysqld runs; its dumps fail until it is fixed).
    pub dump_dir: Option<String>,
}

impl Report {
    fn row(&mut self, label: &'static str, value: impl Into<String>) {
        self.rows.push((label, value.into()));
    }

    pub fn print(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        for (label, value) in &self.rows {
            writeln!(out, "{label:<12} {value}")?;
        }
        if self.problems.is_empty() {
            writeln!(out, "\nall checks passed")?;
        } else {
            writeln!(out, "\n{} problem(s):", self.problems.len())?;
            for p in &self.problems {
                writeln!(out, "  - {p}")?;
            }
        }
        Ok(())
    }
}

/// Loads the config and resolves the profile (`-p` wins over the file's `profile`).
pub fn load(config_path: &Path, profile: Option<&str>) -> Result<(Config, Profile)> {
    let config = Config::load(config_path)?;
    let name = profile.unwrap_or(&config.profile).to_owned();
    let profile = config.resolve_profile(&name)?;
    Ok((config, profile))
}

/// Everything `check` verifies; the plan is None when something essential is missing.
pub fn inspect(
    config: &Config,
    profile: &Profile,
    extra_args: &[String],
) -> (Option<RunPlan>, Report) {
    let mut report = Report::default();
    report.row("config", format!("{}: valid", config.source.display()));
    let malloc_conf = profile.malloc_conf(&config.dumps.prof_prefix());
    let conf_var = locate::conf_var(config.jemalloc.library.is_bundled());
    report.row(
        "profile",
        format!("{} -> {conf_var}={malloc_conf}", profile.name),
    );
    for var in ["MALLOC_CONF", locate::BUNDLED_CONF_VAR] {
        if let Some(inherited) = std::env::var_os(var) {
            report.row(
                "environment",
                format!(
                    "{var}={} in jemsafe's environment is replaced by the profile's",
                    inherited.to_string_lossy()
                ),
            );
        }
    }

    // As root, trust comes first: the config decides what root executes and preloads, so
    // nothing it names is executed, loaded or searched for with ldconfig before the
    // config, and then each file, has passed the CVE-2016-6662 checks.
    let root = nix::unistd::geteuid().is_root();
    let mut untrusted = Vec::new();
    let mut trusted = |path: Option<&Path>, what: &str| -> bool {
        if !root {
            return true;
        }
        let Some(path) = path else { return false };
        let problems = crate::trust::problems(path, what);
        let ok = problems.is_empty();
        untrusted.extend(problems);
        ok
    };
    let config_ok = trusted(Some(&config.source), "config file");

    // Locating only looks at files (and asks ldconfig only for a trusted config).
    let mut find = |label: &'static str, found: Result<std::path::PathBuf>| match found {
        Ok(path) => {
            report.row(label, path.display().to_string());
            Some(path)
        }
        Err(e) => {
            report.row(label, "NOT FOUND");
            report.problems.push(e.to_string());
            None
        }
    };
    let bundled = config.jemalloc.library.is_bundled();
    let mysqld = find("mysqld", locate::mysqld(config));
    let library = find(
        "libjemalloc",
        locate::library(&config.jemalloc.library, config_ok),
    );
    let shim = if bundled {
        report.row("shim", "inside the bundled library");
        library.clone()
    } else {
        find("shim", locate::shim(&config.jemalloc.shim))
    };
    let mysqld_ok = trusted(mysqld.as_deref(), "mysqld binary") && config_ok;
    let library_ok = trusted(
        library.as_deref(),
        if bundled {
            "bundled jemalloc"
        } else {
            "libjemalloc"
        },
    );
    let shim_ok = bundled || trusted(shim.as_deref(), "shim");
    // What else ld.so would load into mysqld (and into the probe), from jemsafe's
    // environment or [mysqld] env.
    let loader_ok = if root {
        let problems = crate::trust::loader_environment_problems(&config.mysqld.env);
        let ok = problems.is_empty();
        untrusted.extend(problems);
        ok
    } else {
        true
    };
    // Where root binds its sockets: someone else's directory could redirect them.
    if root {
        if let Some(dir) = config
            .supervise
            .runtime_dir
            .ancestors()
            .find(|d| d.symlink_metadata().is_ok())
        {
            untrusted.extend(crate::trust::problems(dir, "runtime_dir"));
        }
        // The bearer token: someone who could change it could let anyone in.
        if let Some(token) = &config.http.token_file {
            untrusted.extend(crate::trust::problems(token, "[http] token_file"));
        }
    }
    const NOT_EXECUTED: &str = "not executed: untrusted (see the problems below):";

    let mut version = None;
    if let Some(mysqld) = &mysqld {
        if mysqld_ok && loader_ok {
            version = mysqld_version(mysqld);
            if let Some(version) = &version {
                report.row("version", version);
            }
        } else {
            report.row(
                "version",
                format!("{NOT_EXECUTED} {} --version", mysqld.display()),
            );
        }
    }
    // mysqld's user writes the dumps: a directory it cannot write to fails every dump.
    let all_args: Vec<String> = config
        .mysqld
        .args
        .iter()
        .chain(extra_args)
        .cloned()
        .collect();
    // jemsafe_udf.so, optional: where the server would load it from. mysqld loads it as
    // it preloads the shim, so as root it is trusted on the same terms.
    // Only a server that says it is one (`mysqld  Ver …`) is asked for its --help.
    let a_server = version.as_ref().is_some_and(|v| v.contains(" Ver "));
    if let Some(mysqld) = mysqld
        .as_ref()
        .filter(|_| mysqld_ok && loader_ok && a_server)
    {
        match crate::sql::server_plugin_dir(mysqld, &all_args) {
            Some(dir) => {
                let udf = dir.join(jemsafe_udf::LIBRARY);
                if root && udf.symlink_metadata().is_ok() {
                    untrusted.extend(crate::trust::problems(&udf, jemsafe_udf::LIBRARY));
                }
                report.row("sql", crate::sql::installed_row(&dir));
            }
            None => report.row(
                "sql",
                format!(
                    "the server's plugin directory is unknown ({} --verbose --help did not say); \
                     put {} there (SELECT @@plugin_dir), then `jemsafe sql | mariadb`",
                    mysqld.display(),
                    jemsafe_udf::LIBRARY
                ),
            ),
        }
    }
    let unwritable = crate::supervisor::stale::mysqld_user(&all_args)
        .and_then(|(uid, gid)| crate::dumpdir::unwritable_by(&config.dumps.dir, uid, gid));
    report.row(
        "dumps",
        format!(
            "{}.* ({})",
            config.dumps.prof_prefix().display(),
            if unwritable.is_some() {
                "directory exists, not writable by mysqld's user: see the problems below"
            } else if config.dumps.dir.is_dir() {
                "directory exists"
            } else {
                "directory will be created"
            }
        ),
    );
    report.problems.extend(unwritable.clone());
    report.dump_dir = unwritable;
    report.row(
        "runtime_dir",
        config.supervise.runtime_dir.display().to_string(),
    );
    report.row("memory", memory_row(config));
    match crate::socket_activation::check_row(Path::new("/etc/systemd/system/sockets.target.wants"))
    {
        Ok(row) => report.row("sockets", row),
        Err(e) => report.problems.push(format!("socket activation: {e}")),
    }
    if root {
        report.row(
            "trust",
            if untrusted.is_empty() {
                "config, mysqld, libjemalloc, shim, loader variables and runtime_dir are root's and writable only by root"
                    .to_owned()
            } else {
                format!("{} problem(s), see below", untrusted.len())
            },
        );
        report.problems.extend(untrusted.iter().cloned());
        report.untrusted = untrusted;
    }

    let (Some(mysqld), Some(library), Some(shim)) = (mysqld, library, shim) else {
        return (None, report);
    };
    let located = Located {
        mysqld,
        preload: if bundled {
            Preload::Bundled { library }
        } else {
            Preload::System { library, shim }
        },
    };

    let launch = Launch::new(
        &located,
        config.mysqld.args.clone(),
        config
            .mysqld
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            // How long a call from SQL waits: the shim reads it at load time.
            .chain([(
                jemsafe_proto::ENV_SQL_TIMEOUT_MS.to_owned(),
                config.sql.timeout_ms.to_string(),
            )])
            .collect(),
        malloc_conf,
    );
    if config_ok && library_ok && shim_ok && loader_ok {
        // The process `run` would start, with jemsafe in mysqld's place and no automatic
        // dumps (empty prof_prefix).
        match probe::probe(&launch, &profile.malloc_conf(Path::new(""))) {
            Ok(found) => {
                report.row("allocator", found.summary());
                if let Some(b) = found.hello.as_ref().ok().and_then(|h| h.bound()) {
                    let table = crate::capabilities::Table::of(b);
                    for (i, line) in table.lines().into_iter().enumerate() {
                        report.row(if i == 0 { "can do" } else { "" }, line);
                    }
                    if let Some(note) = table.upgrade_note() {
                        report.row("note", note);
                    }
                }
                report.problems.extend(found.problems(profile));
            }
            Err(e) => report.problems.push(format!("probe failed: {e}")),
        }
    } else {
        report.row(
            "allocator",
            format!(
                "{NOT_EXECUTED} the probe preloading {}",
                located
                    .preload
                    .objects()
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" and ")
            ),
        );
    }
    if !report.untrusted.is_empty() {
        // `run` refuses on these; no plan is made from untrusted files.
        return (None, report);
    }

    let library = located.preload.library().to_path_buf();
    let shim = located.preload.shim().to_path_buf();
    let ids = FileId::of(&library).and_then(|l| Ok((l, FileId::of(&shim)?)));
    let (library_id, shim_id) = match ids {
        Ok(ids) => ids,
        Err(e) => {
            report
                .problems
                .push(format!("cannot stat the preloaded files: {e}"));
            return (None, report);
        }
    };
    let plan = RunPlan {
        launch,
        sql: config.sql.clone(),
        extra_args: extra_args.to_vec(),
        expectation: Expectation {
            library,
            library_id,
            shim,
            shim_id,
            bundled,
            profile: profile.clone(),
            prof_prefix: config.dumps.prof_prefix().to_string_lossy().into_owned(),
        },
        verify: config.supervise.verify,
        verify_timeout: Duration::from_secs(config.supervise.verify_timeout_s),
        usr1: config.signals.usr1,
        usr2: config.signals.usr2,
        dump_dir: config.dumps.dir.clone(),
        dump_prefix: config.dumps.prefix.clone(),
        runtime_dir: config.supervise.runtime_dir.clone(),
        restart: RestartPolicy {
            mode: config.supervise.restart,
            delay: Duration::from_millis(config.supervise.restart_delay_ms),
            delay_max: Duration::from_millis(config.supervise.restart_delay_max_ms),
            max_restarts: config.supervise.max_restarts,
            window: Duration::from_secs(config.supervise.restart_window_s),
        },
        retention: retention::Policy {
            keep: config.dumps.keep,
            max_total_bytes: config.dumps.max_total_mb << 20,
            max_age: Duration::from_secs(config.dumps.max_age_h * 3600),
        },
        min_dump_interval: Duration::from_millis(config.dumps.min_interval_ms),
        min_free_bytes: config.dumps.min_free_mb << 20,
        growth_step_bytes: config.dumps.on_growth_mb << 20,
        growth_check: Duration::from_secs(config.dumps.growth_check_s),
        http: config
            .http
            .address()
            .map(|listen| crate::http::HttpSettings {
                listen,
                token_file: config.http.token_file.clone(),
                pprof: config.http.pprof,
                hosts: config.http.hosts.clone(),
                render_memory_mb: config.http.render_memory_mb,
                page: Some(crate::read::plan::ReadSettings::of(config)),
            }),
        triggers: crate::config::TriggerSettings::of(config),
        timeline: (config.timeline.interval_s > 0).then(|| {
            (
                Duration::from_secs(config.timeline.interval_s),
                config.timeline.max_mb << 20,
            )
        }),
    };
    (Some(plan), report)
}

/// The memory limit mysqld would run under (jemsafe's own cgroup: mysqld inherits it),
/// where it comes from, and the dump triggers it makes.
fn memory_row(config: &Config) -> String {
    let group = crate::watch::memlimit::Group::of(std::process::id() as i32);
    let limit = crate::watch::memlimit::limit_for(group.as_ref());
    let cgroup = limit
        .as_ref()
        .is_some_and(crate::watch::memlimit::Limit::from_cgroup);
    let triggers = crate::config::TriggerSettings::of(config);
    let pressure = triggers
        .pressure
        .as_ref()
        .map(|_| {
            let source = crate::watch::memlimit::PressureSource::of(std::process::id() as i32);
            format!("; pressure read from {}", source.describe())
        })
        .unwrap_or_default();
    format!(
        "limit {}; dump triggers: {}{pressure}",
        limit
            .as_ref()
            .map_or_else(|| "unknown".to_owned(), |l| l.describe()),
        triggers.describe(cgroup)
    )
}

/// The plan for `run`, or the reason not to start.
pub fn plan_for_run(config: &Config, profile: &Profile, extra_args: &[String]) -> Result<RunPlan> {
    let (plan, report) = inspect(config, profile, extra_args);
    if !report.untrusted.is_empty() {
        return Err(Error::Untrusted(report.untrusted.join("; ")));
    }
    let Some(plan) = plan else {
        return Err(Error::NotFound(report.problems.join("; ")));
    };
    let problems: Vec<&str> = report
        .problems
        .iter()
        .filter(|p| Some(*p) != report.dump_dir.as_ref())
        .map(String::as_str)
        .collect();
    if !problems.is_empty() {
        let all = problems.join("; ");
        match config.supervise.verify {
            crate::config::VerifyMode::Require => {
                return Err(Error::Refused(format!(
                    "not starting mysqld (verify = \"require\"): {all}"
                )))
            }
            crate::config::VerifyMode::Warn => {
                crate::warn!("starting anyway (verify = \"warn\"): {all}")
            }
        }
    }
    Ok(plan)
}
