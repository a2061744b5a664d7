//! What /proc says about a process: the one module that reads it. Every file is opened
//! without following a symbolic link and read with a bound (a few KiB for stat and
//! status, 64 MiB for maps: a surprise costs no memory), and maps lines are parsed by the
//! analyzer's one parser ([`jemsafe_report::maps::parse_line`]).

use jemsafe_report::maps::MapEntry;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

/// stat, status, comm and the like are a few KiB.
const MAX_SMALL: u64 = 1 << 20;
/// The maps of a large mysqld are a few hundred KiB; this is a bound, not a size.
const MAX_MAPS: u64 = 64 << 20;

fn open(path: &str) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
}

fn read_bounded(path: &str, max: u64) -> std::io::Result<String> {
    let mut bytes = Vec::new();
    open(path)?.take(max).read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// /proc/`pid`/`name` as text, at most 1 MiB of it.
pub fn read(pid: i32, name: &str) -> std::io::Result<String> {
    read_bounded(&format!("/proc/{pid}/{name}"), MAX_SMALL)
}

/// A system-wide file (`/proc/stat`, `/proc/sys/kernel/hostname`), trimmed; None when it
/// cannot be read or is empty.
pub fn system(path: &str) -> Option<String> {
    read_bounded(path, MAX_SMALL)
        .ok()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
}

/// The fields of /proc/`pid`/stat after the command name: the state (field 3 of proc(5))
/// first. The name is in parentheses and may hold anything, so they follow the last ')'.
pub fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = read(pid, "stat").ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// The process state letter (`R`, `S`, `D`, `T`, `t`, `Z`…).
pub fn state(pid: i32) -> Option<char> {
    stat_fields(pid)?.first()?.chars().next()
}

/// The value after `key:` in /proc/`pid`/status.
pub fn status_value(pid: i32, key: &str) -> Option<String> {
    read(pid, "status").ok()?.lines().find_map(|l| {
        l.strip_prefix(key)?
            .strip_prefix(':')
            .map(|v| v.trim().to_owned())
    })
}

/// The command name (`mariadbd`).
pub fn comm(pid: i32) -> Option<String> {
    read(pid, "comm").ok().map(|c| c.trim().to_owned())
}

/// The executable's path, as the kernel resolved it.
pub fn exe(pid: i32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/exe")).ok()
}

/// /proc/`pid`/maps, parsed; lines that do not parse are left out.
pub fn maps(pid: i32) -> std::io::Result<Vec<MapEntry>> {
    let text = read_bounded(&format!("/proc/{pid}/maps"), MAX_MAPS)?;
    Ok(text
        .lines()
        .filter_map(jemsafe_report::maps::parse_line)
        .collect())
}

/// The very file a mapping maps (/proc/PID/map_files, root only), even after an upgrade
/// replaced the path: opened without blocking, regular files only.
pub fn mapped_file(pid: i32, m: &MapEntry) -> std::io::Result<File> {
    let path = format!("/proc/{pid}/map_files/{:x}-{:x}", m.start, m.end);
    let opened = jemsafe_report::safe::open_regular(std::path::Path::new(&path), true)?;
    Ok(opened.file)
}

/// Why `pid` does not answer, as far as its state tells: "" when nothing explains it.
pub fn state_note(state: Option<char>) -> &'static str {
    match state {
        Some('T') => " (it is stopped: SIGSTOP or SIGTSTP; `kill -CONT` resumes it)",
        Some('t') => " (it is stopped by a debugger)",
        Some('D') => " (it is in uninterruptible sleep: waiting on disk or swap)",
        Some('Z') => " (it has exited)",
        _ => "",
    }
}

/// Why mysqld `pid` does not answer, as far as /proc tells.
pub fn not_answering(pid: i32) -> String {
    format!(
        "mysqld pid {pid} is not answering{}",
        state_note(state(pid))
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn our_own_state_uid_maps_and_start_time_read() {
        let me = std::process::id() as i32;
        let fields = super::stat_fields(me).unwrap();
        assert!(matches!(fields[0].as_str(), "R" | "S"), "{fields:?}");
        assert!(fields[19].parse::<u64>().is_ok(), "starttime: {fields:?}");
        let uid = super::status_value(me, "Uid").unwrap();
        assert_eq!(uid.split_whitespace().count(), 4, "{uid}");
        let maps = super::maps(me).unwrap();
        let exe = super::exe(me).unwrap();
        assert!(
            maps.iter()
                .any(|m| m.executable() && m.path.as_deref() == exe.to_str()),
            "{exe:?} not in {maps:?}"
        );
    }

    #[test]
    fn stopped_states_are_explained() {
        assert!(super::state_note(Some('T')).contains("kill -CONT"));
        assert_eq!(super::state_note(Some('S')), "");
        assert_eq!(super::state_note(None), "");
    }
}
