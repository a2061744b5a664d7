//! One function per subcommand; each returns the process exit status.

use crate::check;
use crate::cli::ConfigArgs;
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
    let library = crate::locate::library(&config.jemalloc.library)?;
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
    let owner = mysqld_user(&config.mysqld.args);
    crate::dumps::prepare_dir(&config.dumps.dir, owner)?;
    supervisor::run(&plan)
}

pub fn sandbox(opts: sandbox::Options) -> Result<i32> {
    let config_path = sandbox::prepare(&opts)?;
    run_with(&config_path, None, &[])
}

/// uid/gid of `--user=NAME` in mysqld's arguments, when jemsafe is root (only then can
/// and must it hand the dump directory to that user).
fn mysqld_user(args: &[String]) -> Option<(u32, u32)> {
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    let name = args
        .iter()
        .rev()
        .find_map(|a| a.strip_prefix("--user=").or_else(|| a.strip_prefix("-u")))?;
    let user = nix::unistd::User::from_name(name).ok()??;
    Some((user.uid.as_raw(), user.gid.as_raw()))
}

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
