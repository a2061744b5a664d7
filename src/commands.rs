//! One function per subcommand; each returns the process exit status.

use crate::check;
use crate::cli::ConfigArgs;
use crate::control::{self, ProfOp, Request};
use crate::error::Result;
use crate::{sandbox, supervisor, warn};
use std::path::Path;

pub fn check(args: &ConfigArgs) -> Result<i32> {
    let (config, profile) = check::load(&args.config, args.profile.as_deref())?;
    let (_, report) = check::inspect(&config, &profile, &[]);
    let mut out = std::io::stdout().lock();
    let _ = report.print(&mut out);
    Ok(if report.problems.is_empty() { 0 } else { 1 })
}

pub fn env(args: &ConfigArgs) -> Result<i32> {
    let (config, profile) = check::load(&args.config, args.profile.as_deref())?;
    // What this prints is meant for root's service files: root would preload it.
    let root = nix::unistd::geteuid().is_root();
    if root {
        untrusted(crate::trust::problems(&args.config, "config file"))?;
    }
    let library = crate::locate::library(&config.jemalloc.library, true)?;
    if root {
        untrusted(crate::trust::problems(&library, "libjemalloc"))?;
    }
    println!("LD_PRELOAD={}", sh_quote(&library.to_string_lossy()));
    println!(
        "MALLOC_CONF={}",
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
    if let Some(old) = std::env::var_os("MALLOC_CONF") {
        warn!(
            "MALLOC_CONF={} in jemsafe's environment is replaced by profile {:?}",
            old.to_string_lossy(),
            profile.name
        );
    }
    let plan = check::plan_for_run(&config, &profile, mysqld_args)?;
    supervisor::run(&plan)
}

pub fn sandbox(opts: sandbox::Options) -> Result<i32> {
    let config_path = sandbox::prepare(&opts)?;
    run_with(&config_path, None, &[])
}

pub fn dump(config_path: &Path) -> Result<i32> {
    let config = crate::config::Config::load(config_path)?;
    let reply = control::call(&config.supervise.runtime_dir, &Request::Dump, CALL_TIMEOUT)?;
    println!(
        "{}",
        reply.get("path").and_then(|p| p.as_str()).unwrap_or("")
    );
    Ok(0)
}

pub fn prof(config_path: &Path, op: ProfOp, lg_sample: Option<u32>) -> Result<i32> {
    if lg_sample.is_some() && op != ProfOp::Reset {
        return Err(crate::error::Error::Usage(
            "--lg-sample goes with `jemsafe prof reset` (the sample rate changes only on a reset)"
                .into(),
        ));
    }
    let config = crate::config::Config::load(config_path)?;
    let reply = control::call(
        &config.supervise.runtime_dir,
        &Request::Prof { op, lg_sample },
        CALL_TIMEOUT,
    )?;
    let get = |k: &str| {
        reply
            .get(k)
            .map(|v| v.to_string())
            .unwrap_or_else(|| "?".into())
    };
    match op {
        ProfOp::Reset => println!(
            "prof.reset done; lg_prof_sample = {}",
            get("lg_prof_sample")
        ),
        _ => println!(
            "prof.active = {} (was {})",
            get("prof_active"),
            get("was_active")
        ),
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
        println!("{}", serde_json::Value::Object(reply));
        return Ok(0);
    }
    let v = serde_json::Value::Object(reply);
    let s = |p: &str| match v.pointer(p) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Null) | None => "-".into(),
        Some(other) => other.to_string(),
    };
    let mib = |p: &str| {
        v.pointer(p)
            .and_then(|x| x.as_u64())
            .map(|b| format!("{:.1} MiB", b as f64 / 1048576.0))
            .unwrap_or_else(|| "-".into())
    };
    println!(
        "jemsafe     pid {}, profile {}",
        s("/jemsafe_pid"),
        s("/profile")
    );
    println!(
        "mysqld      pid {}, up {} s, restarts {}, last exit: {}",
        s("/mysqld_pid"),
        s("/mysqld_uptime_s"),
        s("/restarts"),
        s("/last_exit")
    );
    if let Some(why) = v.pointer("/mysqld_not_answering").and_then(|w| w.as_str()) {
        println!("ATTENTION   {why}: the jemalloc figures below are missing");
    }
    println!("MALLOC_CONF {}", s("/malloc_conf"));
    println!("verified    {}", s("/verification/message"));
    println!(
        "jemalloc    {}: opt.prof {}, prof.active {}, lg_prof_sample {}",
        s("/jemalloc/version"),
        s("/jemalloc/opt_prof"),
        s("/jemalloc/prof_active"),
        s("/jemalloc/lg_prof_sample")
    );
    println!(
        "memory      allocated {}, active {}, resident {}, mapped {}, retained {}",
        mib("/stats/allocated"),
        mib("/stats/active"),
        mib("/stats/resident"),
        mib("/stats/mapped"),
        mib("/stats/retained")
    );
    println!(
        "dumps       {}: {} files, {}; {} free",
        s("/dumps/dir"),
        s("/dumps/files"),
        mib("/dumps/bytes"),
        mib("/dumps/free_bytes")
    );
    println!(
        "last dump   {} at {}",
        s("/last_dump/path"),
        s("/last_dump/time")
    );
    Ok(0)
}

pub fn dumps(config_path: &Path) -> Result<i32> {
    let config = crate::config::Config::load(config_path)?;
    let files = crate::dumps::list(&config.dumps.dir, &config.dumps.prefix).map_err(
        crate::error::Error::io(format!("cannot list {}", config.dumps.dir.display())),
    )?;
    println!(
        "{:<20}  {:>8}  {:<8}  {:>12}  file",
        "time (UTC)", "pid", "trigger", "bytes"
    );
    for f in &files {
        println!(
            "{:<20}  {:>8}  {:<8}  {:>12}  {}",
            humantime::format_rfc3339_seconds(f.modified).to_string(),
            f.name.pid,
            f.name.trigger(),
            f.size,
            f.path.display()
        );
    }
    println!(
        "{} files, {} bytes",
        files.len(),
        files.iter().map(|f| f.size).sum::<u64>()
    );
    Ok(0)
}

/// `jemsafe report`: one dump (or the difference of two) as text, folded stacks, SVG or pprof.
pub fn report(args: &crate::cli::ReportArgs) -> Result<i32> {
    crate::report::command::report(args)
}

/// `jemsafe leaks`: stacks ranked by steady growth across dumps of one process.
pub fn leaks(args: &crate::cli::LeaksArgs) -> Result<i32> {
    crate::report::command::leaks(args)
}

/// Refuses with every trust problem found, if any.
fn untrusted(problems: Vec<String>) -> Result<()> {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(crate::error::Error::Untrusted(problems.join("; ")))
    }
}

/// How long a control client waits: a dump of a very large heap can take seconds.
const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// Single-quotes `s` for sh (and systemd's EnvironmentFile).
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn sh_quote_survives_single_quotes() {
        assert_eq!(super::sh_quote("a'b"), r"'a'\''b'");
    }
}
