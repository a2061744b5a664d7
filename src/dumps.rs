//! Heap dump files: where they go and what they are called.

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Why a dump was taken; part of the file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Usr1,
    Usr2,
    Cli,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Usr1 => "usr1",
            Trigger::Usr2 => "usr2",
            Trigger::Cli => "cli",
        }
    }
}

/// `<prefix>.<pid>.<UTC yyyymmddThhmmss>.<seq>.<trigger>.heap`: for one pid, names sort
/// in time order, and each says when, why and from which process. jemalloc's own
/// automatic names (`<prefix>.<pid>.<seq>.<type><n>.heap`) cannot collide with it.
pub fn on_demand_name(
    prefix: &str,
    pid: i32,
    when: SystemTime,
    seq: u64,
    trigger: Trigger,
) -> String {
    format!(
        "{prefix}.{pid}.{}.{seq:04}.{}.heap",
        utc_stamp(when),
        trigger.as_str()
    )
}

/// `20261126T182554` (UTC).
pub fn utc_stamp(when: SystemTime) -> String {
    humantime::format_rfc3339_seconds(when)
        .to_string()
        .chars()
        .filter(|c| !matches!(c, '-' | ':' | 'Z'))
        .collect()
}

/// Creates the dump directory if missing: mode 0750, and owned by mysqld's user when
/// jemsafe runs as root, since mysqld (not jemsafe) writes the files.
pub fn prepare_dir(dir: &Path, owner: Option<(u32, u32)>) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(dir)
            .map_err(Error::io(format!(
                "cannot create dump directory {}",
                dir.display()
            )))?;
        // The umask may have taken bits away; the mode is part of the contract.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o750)).map_err(
            Error::io(format!("cannot chmod dump directory {}", dir.display())),
        )?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir, Some(uid), Some(gid)).map_err(Error::io(format!(
                "cannot give dump directory {} to uid {uid}",
                dir.display()
            )))?;
        }
    } else if !dir.is_dir() {
        return Err(Error::Refused(format!(
            "dump directory {} exists but is not a directory",
            dir.display()
        )));
    }
    Ok(())
}

pub fn path_for(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn on_demand_names_carry_pid_time_seq_and_trigger() {
        let when = UNIX_EPOCH + Duration::from_secs(1_795_717_554);
        assert_eq!(
            on_demand_name("mysqld", 4242, when, 7, Trigger::Usr1),
            "mysqld.4242.20261126T182554.0007.usr1.heap"
        );
        let later = on_demand_name(
            "mysqld",
            4242,
            when + Duration::from_secs(1),
            8,
            Trigger::Cli,
        );
        assert!(later > on_demand_name("mysqld", 4242, when, 7, Trigger::Usr1));
    }
}
