//! Finding mysqld, libjemalloc and the shim.
//!
//! Every search returns where it looked when it fails, so that the error tells the DBA
//! which setting to write.

use crate::config::{Config, Library, Locator};
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// The files `run` needs, as absolute paths.
#[derive(Debug, Clone)]
pub struct Located {
    pub mysqld: PathBuf,
    pub preload: Preload,
}

pub const SHIM_FILE: &str = "libjemsafe_shim.so";
pub use crate::config::BUNDLED_FILE;
/// The variable a jemalloc built with the `_rjem_` prefix (the bundled one) reads its
/// options from; a system libjemalloc reads `MALLOC_CONF`.
pub const BUNDLED_CONF_VAR: &str = "_RJEM_MALLOC_CONF";

/// What jemsafe preloads into mysqld.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Preload {
    /// A system libjemalloc, then libjemsafe_shim.so.
    System { library: PathBuf, shim: PathBuf },
    /// libjemsafe_jemalloc.so alone: the allocator and the shim in one object.
    Bundled { library: PathBuf },
}

impl Preload {
    /// The allocator object.
    pub fn library(&self) -> &Path {
        match self {
            Preload::System { library, .. } | Preload::Bundled { library } => library,
        }
    }

    /// The object that carries the shim's control thread (the library itself when bundled).
    pub fn shim(&self) -> &Path {
        match self {
            Preload::System { shim, .. } => shim,
            Preload::Bundled { library } => library,
        }
    }

    /// LD_PRELOAD's entries, allocator first.
    pub fn objects(&self) -> Vec<&Path> {
        match self {
            Preload::System { library, shim } => vec![library, shim],
            Preload::Bundled { library } => vec![library],
        }
    }

    pub fn is_bundled(&self) -> bool {
        matches!(self, Preload::Bundled { .. })
    }

    /// The environment variable this jemalloc reads its options from.
    pub fn conf_var(&self) -> &'static str {
        conf_var(self.is_bundled())
    }
}

/// `MALLOC_CONF`, or `_RJEM_MALLOC_CONF` for the bundled jemalloc.
pub fn conf_var(bundled: bool) -> &'static str {
    if bundled {
        BUNDLED_CONF_VAR
    } else {
        "MALLOC_CONF"
    }
}

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
/// `"bundled"` finds libjemsafe_jemalloc.so where the shim would be found.
pub fn library(setting: &Library, ask_ldconfig: bool) -> Result<PathBuf> {
    match setting {
        Library::Path(path) => {
            return preloadable(path).map(|_| path.clone()).map_err(|why| {
                Error::NotFound(format!("[jemalloc] library = {}: {why}", path.display()))
            })
        }
        Library::Bundled => return beside_jemsafe(BUNDLED_FILE, "library"),
        Library::Auto => {}
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
    Err(no_libjemalloc(&candidates, ask_ldconfig))
}

/// Why "auto" found no libjemalloc, and the ways out: the bundled library first.
fn no_libjemalloc(candidates: &[PathBuf], asked_ldconfig: bool) -> Error {
    Error::NotFound(format!(
        "libjemalloc not found (tried {}{}); set [jemalloc] library = \"bundled\" to use \
         jemsafe's own profiling jemalloc ({BUNDLED_FILE}), or install one built with \
         profiling (Debian/Ubuntu: apt-get install libjemalloc2; RHEL's jemalloc package has \
         none) and set [jemalloc] library to its absolute path if it is elsewhere",
        candidates
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        if asked_ldconfig {
            " and `ldconfig -p`"
        } else {
            "; not `ldconfig -p`, since the config is not trusted"
        }
    ))
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
    beside_jemsafe(SHIM_FILE, "shim")
}

/// `file` (one of jemsafe's own objects) next to the jemsafe executable, then in
/// /usr/lib/jemsafe and /usr/local/lib/jemsafe; `key` is the `[jemalloc]` setting that
/// can name it instead.
fn beside_jemsafe(file: &str, key: &str) -> Result<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
    {
        candidates.push(dir.join(file));
        // `cargo test` runs jemsafe from target/<profile>/deps' parent; keep both.
        if dir.ends_with("deps") {
            if let Some(parent) = dir.parent() {
                candidates.push(parent.join(file));
            }
        }
    }
    candidates.push(PathBuf::from("/usr/lib/jemsafe").join(file));
    candidates.push(PathBuf::from("/usr/local/lib/jemsafe").join(file));
    if let Some(found) = candidates.iter().find(|p| preloadable(p).is_ok()) {
        return Ok(found.clone());
    }
    let instead = if file == BUNDLED_FILE {
        "set [jemalloc] library = \"auto\" or a path to use a system libjemalloc instead".to_owned()
    } else {
        format!("set [jemalloc] {key} to its absolute path")
    };
    Err(Error::NotFound(format!(
        "{file} not found (tried {}); build it with `cargo build --release --workspace` \
         or install the jemsafe package, or {instead}",
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
        let e = library(&Library::Path("/nonexistent/libjemalloc.so.2".into()), true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/libjemalloc.so.2"), "{e}");
        assert!(preloadable(Path::new("/tmp/a b.so")).is_err());
        assert!(preloadable(Path::new("relative.so")).is_err());
    }

    #[test]
    fn a_host_without_libjemalloc_is_told_about_the_bundled_one() {
        let e = no_libjemalloc(&["/usr/lib/libjemalloc.so.2".into()], true).to_string();
        assert!(
            e.contains("/usr/lib/libjemalloc.so.2")
                && e.contains("set [jemalloc] library = \"bundled\"")
                && e.contains(BUNDLED_FILE),
            "{e}"
        );
    }

    #[test]
    fn the_bundled_library_is_searched_beside_jemsafe_and_preloaded_alone() {
        let e = beside_jemsafe(BUNDLED_FILE, "library");
        if let Err(e) = e {
            let e = e.to_string();
            assert!(e.contains("/usr/lib/jemsafe/libjemsafe_jemalloc.so"), "{e}");
        }
        let p = Preload::Bundled {
            library: "/usr/lib/jemsafe/libjemsafe_jemalloc.so".into(),
        };
        assert_eq!(
            p.objects(),
            [Path::new("/usr/lib/jemsafe/libjemsafe_jemalloc.so")]
        );
        assert_eq!((p.conf_var(), p.shim()), ("_RJEM_MALLOC_CONF", p.library()));
        let s = Preload::System {
            library: "/l.so".into(),
            shim: "/s.so".into(),
        };
        assert_eq!(s.objects(), [Path::new("/l.so"), Path::new("/s.so")]);
        assert_eq!(s.conf_var(), "MALLOC_CONF");
    }
}
