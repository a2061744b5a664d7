//! Finding mysqld, libjemalloc and the shim.
//!
//! Every search returns where it looked when it fails, so that the error tells the DBA
//! which setting to write.

use crate::config::{Config, Locator};
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// The three files `run` needs, as absolute paths.
#[derive(Debug, Clone)]
pub struct Located {
    pub mysqld: PathBuf,
    pub library: PathBuf,
    pub shim: PathBuf,
}

pub const SHIM_FILE: &str = "libjemsafe_shim.so";

/// The configured mysqld, or the first of mysqld, mariadbd on PATH, /usr/sbin,
/// /usr/local/mysql/bin.
pub fn mysqld(config: &Config) -> Result<PathBuf> {
    if let Some(path) = &config.mysqld.path {
        return executable(path).map(|_| path.clone()).map_err(|why| {
            Error::NotFound(format!(
                "mysqld.path = {} in {}: {why}",
                path.display(),
                config.source.display()
            ))
        });
    }
    let mut tried = Vec::new();
    for name in ["mysqld", "mariadbd"] {
        if let Ok(found) = which::which(name) {
            return Ok(found);
        }
        tried.push(format!("{name} on PATH"));
    }
    for dir in ["/usr/sbin", "/usr/local/mysql/bin", "/usr/local/sbin"] {
        for name in ["mysqld", "mariadbd"] {
            let path = Path::new(dir).join(name);
            if executable(&path).is_ok() {
                return Ok(path);
            }
            tried.push(path.display().to_string());
        }
    }
    Err(Error::NotFound(format!(
        "no mysqld found (tried {}); install the server package or set [mysqld] path in {}",
        tried.join(", "),
        config.source.display()
    )))
}

fn executable(path: &Path) -> std::result::Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => Ok(()),
        Ok(_) => Err("not an executable file".to_owned()),
        Err(e) => Err(e.to_string()),
    }
}

/// Directories a distribution keeps shared libraries in, most specific first.
fn library_dirs() -> Vec<PathBuf> {
    let multiarch = format!("/usr/lib/{}-linux-gnu", std::env::consts::ARCH);
    [
        multiarch.as_str(),
        "/usr/lib64",
        "/usr/lib",
        "/lib64",
        "/usr/local/lib",
        "/usr/local/lib64",
    ]
    .iter()
    .map(PathBuf::from)
    .collect()
}

/// The configured libjemalloc, or the first libjemalloc.so.2 in the usual places, then
/// (when `ask_ldconfig`) whatever `ldconfig -p` knows. Only looks at files: the caller
/// trust-checks the result before anything loads it, and passes `ask_ldconfig = false`
/// when the config that asked for the search is not trusted.
pub fn library(setting: &Locator, ask_ldconfig: bool) -> Result<PathBuf> {
    if let Locator::Path(path) = setting {
        return preloadable(path).map(|_| path.clone()).map_err(|why| {
            Error::NotFound(format!("[jemalloc] library = {}: {why}", path.display()))
        });
    }
    let candidates: Vec<PathBuf> = library_dirs()
        .into_iter()
        .map(|d| d.join("libjemalloc.so.2"))
        .collect();
    if let Some(found) = candidates.iter().find(|p| preloadable(p).is_ok()) {
        return Ok(found.clone());
    }
    if ask_ldconfig {
        if let Some(found) = from_ldconfig("libjemalloc.so.2") {
            return Ok(found);
        }
    }
    Err(Error::NotFound(format!(
        "libjemalloc not found (tried {}{}); install it \
         (Debian/Ubuntu: apt-get install libjemalloc2; RHEL: dnf install jemalloc; \
         Alpine: apk add jemalloc) or set [jemalloc] library to its absolute path",
        candidates
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        if ask_ldconfig {
            " and `ldconfig -p`"
        } else {
            "; not `ldconfig -p`, since the config is not trusted"
        }
    )))
}

/// The system's ldconfig by its absolute path (root does not run whatever `ldconfig` is
/// first on PATH); on PATH only for an ordinary user.
fn from_ldconfig(soname: &str) -> Option<PathBuf> {
    let mut programs = vec!["/sbin/ldconfig", "/usr/sbin/ldconfig"];
    if !nix::unistd::geteuid().is_root() {
        programs.push("ldconfig");
    }
    let out = programs.iter().find_map(|program| {
        std::process::Command::new(program)
            .arg("-p")
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output()
            .ok()
    })?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|line| {
            let (name, path) = line.trim().split_once(" => ")?;
            (name.split_whitespace().next()? == soname)
                .then(|| PathBuf::from(path.trim()))
                .filter(|p| preloadable(p).is_ok())
        })
}

/// The configured shim, or libjemsafe_shim.so next to the jemsafe executable, then in
/// /usr/lib/jemsafe and /usr/local/lib/jemsafe.
pub fn shim(setting: &Locator) -> Result<PathBuf> {
    if let Locator::Path(path) = setting {
        return preloadable(path).map(|_| path.clone()).map_err(|why| {
            Error::NotFound(format!("[jemalloc] shim = {}: {why}", path.display()))
        });
    }
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
    {
        candidates.push(dir.join(SHIM_FILE));
        // `cargo test` runs jemsafe from target/<profile>/deps' parent; keep both.
        if dir.ends_with("deps") {
            if let Some(parent) = dir.parent() {
                candidates.push(parent.join(SHIM_FILE));
            }
        }
    }
    candidates.push(PathBuf::from("/usr/lib/jemsafe").join(SHIM_FILE));
    candidates.push(PathBuf::from("/usr/local/lib/jemsafe").join(SHIM_FILE));
    if let Some(found) = candidates.iter().find(|p| preloadable(p).is_ok()) {
        return Ok(found.clone());
    }
    Err(Error::NotFound(format!(
        "{SHIM_FILE} not found (tried {}); build it with `cargo build --release --workspace` \
         or install the jemsafe package, or set [jemalloc] shim to its absolute path",
        candidates
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )))
}

/// A file that LD_PRELOAD can carry: absolute, no separators, exists.
pub fn preloadable(path: &Path) -> std::result::Result<(), String> {
    if !path.is_absolute() {
        return Err("not an absolute path".to_owned());
    }
    let text = path.to_string_lossy();
    if text.contains([':', ' ', '\t', '\n']) {
        return Err("the path contains ':' or white space, which LD_PRELOAD cannot carry".into());
    }
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(_) => Err("not a regular file".to_owned()),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_paths_are_checked_not_searched() {
        let e = library(&Locator::Path("/nonexistent/libjemalloc.so.2".into()), true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/libjemalloc.so.2"), "{e}");
        assert!(preloadable(Path::new("/tmp/a b.so")).is_err());
        assert!(preloadable(Path::new("relative.so")).is_err());
    }
}
