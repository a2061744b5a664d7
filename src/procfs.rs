//! What /proc says about a process, read in one place and with a bound (its files are a
//! few KiB; the bound keeps a surprise from costing memory).

use std::io::Read;

/// /proc/`pid`/`name` as text, at most 1 MiB of it.
pub fn read(pid: i32, name: &str) -> std::io::Result<String> {
    let mut text = String::new();
    std::fs::File::open(format!("/proc/{pid}/{name}"))?
        .take(1 << 20)
        .read_to_string(&mut text)?;
    Ok(text)
}

/// The fields of /proc/`pid`/stat after the command name: the state (field 3 of proc(5))
/// first. The name is in parentheses and may hold anything, so they follow the last ')'.
pub fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = read(pid, "stat").ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// The value after `key:` in /proc/`pid`/status.
pub fn status_value(pid: i32, key: &str) -> Option<String> {
    read(pid, "status").ok()?.lines().find_map(|l| {
        l.strip_prefix(key)?
            .strip_prefix(':')
            .map(|v| v.trim().to_owned())
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn our_own_state_uid_and_start_time_read() {
        let me = std::process::id() as i32;
        let fields = super::stat_fields(me).unwrap();
        assert!(matches!(fields[0].as_str(), "R" | "S"), "{fields:?}");
        assert!(fields[19].parse::<u64>().is_ok(), "starttime: {fields:?}");
        let uid = super::status_value(me, "Uid").unwrap();
        assert_eq!(uid.split_whitespace().count(), 4, "{uid}");
    }
}
