//! Shared test scaffolding, one file per concern: here the built artefacts, throwaway
//! directories and configs; `running` a handle on a running `jemsafe` that reads its log
//! lines and always cleans up; `system` the machine (tmpfs, users, /proc, libraries);
//! `notify` a stand-in for systemd's notify socket; `parity` the jeprof oracle.

mod bombs;
mod bounded;
mod http;
mod moment;
mod notify;
mod page;
mod parity;
mod running;
mod servers;
mod system;

pub use bombs::*;
pub use bounded::*;
pub use http::*;
pub use moment::*;
pub use notify::*;
pub use page::*;
pub use parity::*;
pub use running::*;
pub use servers::*;
pub use system::*;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub fn jemsafe_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_jemsafe"))
}

fn target_dir() -> PathBuf {
    jemsafe_bin()
        .parent()
        .expect("jemsafe binary has a directory")
        .to_path_buf()
}

/// `cargo test` neither builds cdylibs nor (with `--test NAME`) examples, so the first
/// caller builds the shim, the bundled jemalloc and the workload with the cargo and
/// profile that built the tests; a no-op when they are fresh.
fn build_artifacts() -> &'static PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        for target in [
            &[
                "-p",
                "jemsafe-shim",
                "-p",
                "jemsafe-jemalloc",
                "-p",
                "jemsafe-udf",
            ][..],
            &["-p", "jemsafe", "--example", "workload"],
        ] {
            let mut cmd = Command::new(&cargo);
            cmd.args(["build", "--quiet"])
                .args(target)
                .current_dir(env!("CARGO_MANIFEST_DIR"));
            if target_dir().ends_with("release") {
                cmd.arg("--release");
            }
            let status = cmd.status().expect("run cargo build");
            assert!(status.success(), "cargo build {target:?} failed");
        }
        target_dir()
    })
}

/// The shim cdylib.
pub fn shim() -> PathBuf {
    let path = build_artifacts().join("libjemsafe_shim.so");
    assert!(path.is_file(), "{} missing after build", path.display());
    path
}

/// The bundled jemalloc with the shim inside (`[jemalloc] library = "bundled"`).
pub fn bundled() -> PathBuf {
    let path = build_artifacts().join("libjemsafe_jemalloc.so");
    assert!(path.is_file(), "{} missing after build", path.display());
    path
}

/// The loadable-function library (udf/), as cargo names it (installed as jemsafe_udf.so).
pub fn udf_library() -> PathBuf {
    let path = build_artifacts().join("libjemsafe_udf.so");
    assert!(path.is_file(), "{} missing after build", path.display());
    path
}

/// `nm -D --defined-only` of `library`: the names of the symbols it defines.
pub fn defined_symbols(library: &Path) -> Vec<String> {
    let out = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(library)
        .output()
        .expect("nm (binutils)");
    assert!(out.status.success(), "nm {}: {out:?}", library.display());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().last().map(str::to_owned))
        .collect()
}

/// `library` (the shim, jemsafe_udf.so) defines no allocator and needs no jemalloc: it
/// can only use the one that serves the process.
pub fn assert_no_jemalloc_inside(library: &Path) {
    let defined = defined_symbols(library);
    for forbidden in ["malloc", "mallctl", "je_", "_rjem_", "free", "calloc"] {
        let hits: Vec<&String> = defined.iter().filter(|s| s.contains(forbidden)).collect();
        assert!(
            hits.is_empty(),
            "{} defines {forbidden}: {hits:?}",
            library.display()
        );
    }
    let out = Command::new("readelf")
        .arg("-d")
        .arg(library)
        .output()
        .unwrap();
    let dynamic = String::from_utf8_lossy(&out.stdout);
    assert!(!dynamic.contains("jemalloc"), "{dynamic}");
}

/// Our workload program (examples/workload.rs).
pub fn workload() -> PathBuf {
    let path = build_artifacts().join("examples/workload");
    assert!(path.is_file(), "{} missing after build", path.display());
    path
}

pub fn libjemalloc() -> PathBuf {
    let path = PathBuf::from(format!(
        "/usr/lib/{}-linux-gnu/libjemalloc.so.2",
        std::env::consts::ARCH
    ));
    assert!(
        path.is_file(),
        "{} missing: apt-get install libjemalloc2",
        path.display()
    );
    path
}

/// A directory removed when the test ends (passed or failed).
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let template = format!("/tmp/jemsafe-test-{tag}.XXXXXX");
        let path = nix::unistd::mkdtemp(template.as_str()).expect("mkdtemp");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A config for the workload in `dir`; `extra` is appended verbatim.
pub fn workload_config(dir: &TempDir, profile: &str, args: &[&str], extra: &str) -> PathBuf {
    let args = args
        .iter()
        .map(|a| format!("{a:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let text = format!(
        "profile = {profile:?}\n\
         [mysqld]\npath = {:?}\nargs = [{args}]\n\
         [jemalloc]\nshim = {:?}\n\
         [dumps]\ndir = {:?}\n\
         [supervise]\nruntime_dir = {:?}\n{extra}",
        workload().display().to_string(),
        shim().display().to_string(),
        dir.join("dumps").display().to_string(),
        dir.join("run").display().to_string(),
    );
    let path = dir.join("jemsafe.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// `workload_config` for the bundled jemalloc: `library = "bundled"` and no shim line.
pub fn bundled_workload_config(
    dir: &TempDir,
    profile: &str,
    args: &[&str],
    extra: &str,
) -> PathBuf {
    bundled(); // built beside jemsafe, where "bundled" finds it
    let path = workload_config(dir, profile, args, extra);
    let text = std::fs::read_to_string(&path).expect("read config");
    let shim_line = format!("shim = {:?}\n", shim().display().to_string());
    assert!(text.contains(&shim_line), "{text}");
    let text = text.replacen(&shim_line, "library = \"bundled\"\n", 1);
    std::fs::write(&path, text).expect("write config");
    path
}

/// Adds `lines` at the top of `section` (e.g. "[dumps]") of the config at `path`.
pub fn add_to_section(path: &Path, section: &str, lines: &str) {
    let text = std::fs::read_to_string(path).expect("read config");
    let header = format!("{section}\n");
    assert!(text.contains(&header), "no {section} in {}", path.display());
    let text = text.replacen(&header, &format!("{header}{lines}\n"), 1);
    std::fs::write(path, text).expect("write config");
}

/// The flat% of `row_name` in a text report (`--by object` rows end with the object's
/// name); 0 when there is no such row.
pub fn flat_percent(report: &str, row_name: &str) -> f64 {
    let suffix = format!(" {row_name}");
    report
        .lines()
        .find(|row| row.ends_with(&suffix))
        .map_or(0.0, |row| {
            // "  512.0 KiB   0.8% 100.0% ...": the value and its unit, then flat%.
            let flat = row.split_whitespace().nth(2).unwrap_or("100%");
            flat.trim_end_matches('%').parse().unwrap_or(100.0)
        })
}
