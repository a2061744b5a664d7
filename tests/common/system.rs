//! The machine: jemsafe run to completion, heap files, tmpfs mounts, users, /proc,
//! shared libraries built for a test.

use super::jemsafe_bin;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs jemsafe with `args` to completion.
pub fn cli(args: &[&str]) -> std::process::Output {
    Command::new(jemsafe_bin())
        .args(args)
        .output()
        .expect("run jemsafe")
}

/// `jemsafe dump -c config` on a thread of its own, for a test that acts while it waits.
pub fn dump_in_background(config: &Path) -> std::thread::JoinHandle<std::process::Output> {
    let config = config.to_str().expect("a UTF-8 config path").to_owned();
    std::thread::spawn(move || cli(&["dump", "-c", &config]))
}

/// The `*.heap` names in `dir`, sorted.
pub fn heap_files(dir: &Path) -> Vec<String> {
    files_ending(dir, ".heap")
}

/// The names in `dir` that end with `suffix`, sorted.
pub fn files_ending(dir: &Path, suffix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(suffix))
        .collect();
    names.sort();
    names
}

/// A tmpfs mounted at `path` (created if missing) for the test's lifetime (needs root).
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    pub fn mount(path: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).expect("create mount point");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .is_ok_and(|s| s.success());
        assert!(mounted, "mounting a tmpfs needs root (CI runs as root)");
        Tmpfs(path.to_path_buf())
    }

    /// `mount -o remount,OPTIONS`.
    pub fn remount(path: &Path, options: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(path)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "remount {} {options}", path.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// uid and gid of the `mysql` user (the server package creates it).
pub fn mysql_user() -> (u32, u32) {
    let u = nix::unistd::User::from_name("mysql")
        .expect("read the user database")
        .expect("a mysql user: apt-get install mariadb-server");
    (u.uid.as_raw(), u.gid.as_raw())
}

/// State, user and system CPU ticks of process `pid` (/proc/PID/stat).
pub fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read stat");
    let (_, rest) = stat.rsplit_once(')').expect("stat format");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, utime 14, stime 15 (1-based in proc(5)).
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// A shared library whose constructor leaves `marker` behind when anything loads it.
pub fn marker_library(dir: &Path, marker: &Path) -> PathBuf {
    let src = dir.join("marker.c");
    let lib = dir.join("libmarker.so");
    std::fs::write(
        &src,
        format!(
            "#include <stdio.h>\n#include <unistd.h>\n\
             __attribute__((constructor)) static void mark(void) {{\n\
               FILE *f = fopen(\"{}\", \"a\");\n\
               if (f) {{ fprintf(f, \"uid=%d euid=%d\\n\", (int)getuid(), (int)geteuid()); fclose(f); }}\n\
             }}\n",
            marker.display()
        ),
    )
    .unwrap();
    let status = Command::new("gcc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&lib)
        .arg(&src)
        .status()
        .expect("run gcc (apt-get install gcc)");
    assert!(status.success(), "gcc failed");
    lib
}
