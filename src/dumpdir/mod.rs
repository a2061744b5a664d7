//! The dump directory: what its files are called ([`naming`]), how root touches them
//! ([`files`]), the supervisor's handle on it ([`dir`]), which ones are kept
//! ([`retention`]), and dumps' sidecars.

pub mod dir;
pub mod files;
pub mod naming;
pub mod retention;
pub mod sidecar;

pub use dir::DumpDir;
pub use naming::{on_demand_name, HeapName, Trigger};

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

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
    } else if let Some((uid, gid)) = owner {
        // An existing directory is left as it is, but one mysqld cannot write to is said
        // at once rather than at the first failed dump.
        if let Some(why) = unwritable_by(dir, uid, gid) {
            crate::warn!("{why}: dumps will fail");
        }
    }
    Ok(())
}

/// Whether a process of `uid` in the groups `gids` can create files in a directory of
/// `dir_uid:dir_gid` with `mode` (write and search permission of the class it falls in;
/// root always can). ACLs are not read: a directory they open is reported unwritable.
pub fn can_create_in(dir_uid: u32, dir_gid: u32, mode: u32, uid: u32, gids: &[u32]) -> bool {
    let class = if uid == 0 {
        return true;
    } else if dir_uid == uid {
        mode >> 6
    } else if gids.contains(&dir_gid) {
        mode >> 3
    } else {
        mode
    };
    class & 0o3 == 0o3
}

/// Why mysqld's user (`uid`, primary group `gid`) cannot create dumps in `dir`, with the
/// commands that fix it; None when it can (or `dir` is not a directory: said elsewhere).
pub fn unwritable_by(dir: &Path, uid: u32, gid: u32) -> Option<String> {
    use nix::unistd::{Gid, Group, Uid, User};
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(dir).ok().filter(|m| m.is_dir())?;
    let user = User::from_uid(Uid::from_raw(uid)).ok().flatten();
    let gids: Vec<u32> = user
        .as_ref()
        .and_then(|u| {
            let name = std::ffi::CString::new(u.name.as_str()).ok()?;
            nix::unistd::getgrouplist(&name, Gid::from_raw(gid)).ok()
        })
        .map_or_else(|| vec![gid], |g| g.iter().map(|g| g.as_raw()).collect());
    if can_create_in(meta.uid(), meta.gid(), meta.mode(), uid, &gids) {
        return None;
    }
    let user_name = |uid: u32| {
        User::from_uid(Uid::from_raw(uid))
            .ok()
            .flatten()
            .map_or_else(|| uid.to_string(), |u| u.name)
    };
    let group_name = |gid: u32| {
        Group::from_gid(Gid::from_raw(gid))
            .ok()
            .flatten()
            .map_or_else(|| gid.to_string(), |g| g.name)
    };
    let (who, group) = (user_name(uid), group_name(gid));
    Some(format!(
        "dump directory {d} is not writable by mysqld's user {who} (uid {uid}), who writes the \
         dumps: it is {}:{} mode {:04o}; fix: chown {who}:{group} {d} && chmod 0750 {d}",
        user_name(meta.uid()),
        group_name(meta.gid()),
        meta.mode() & 0o7777,
        d = dir.display(),
    ))
}

/// A heap file in the dump directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeapFile {
    pub path: PathBuf,
    pub name: HeapName,
    pub size: u64,
    pub modified: SystemTime,
}

/// The entries of `dir` named like files of `prefix` ([`DumpDir::scan`], for a caller
/// without a handle).
pub fn scan(dir: &Path, prefix: &str) -> std::io::Result<Vec<retention::Entry>> {
    dir::scan_fd(&files::open_dir(dir)?, prefix)
}

/// The heap files of `prefix` in `dir` (jemsafe's and jemalloc's names, any pid, regular
/// files only), oldest first in [`retention::chronological`]'s order.
pub fn list(dir: &Path, prefix: &str) -> std::io::Result<Vec<HeapFile>> {
    Ok(dir::heap_files(dir, &scan(dir, prefix)?))
}

/// Free space in words: KiB below a MiB, so that "0 MiB" never hides 1016 KiB.
pub fn human_space(bytes: u64) -> String {
    if bytes < 1 << 20 {
        format!("{} KiB", bytes >> 10)
    } else {
        format!("{} MiB", bytes >> 20)
    }
}

/// Bytes available to unprivileged writers on the filesystem holding `dir`.
pub fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    let st = nix::sys::statvfs::statvfs(dir).map_err(std::io::Error::from)?;
    Ok(st.blocks_available() as u64 * st.fragment_size() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_space_below_a_mib_is_said_in_kib() {
        assert_eq!(human_space(1016 << 10), "1016 KiB");
        assert_eq!(human_space(3 << 20), "3 MiB");
    }

    #[test]
    fn only_write_and_search_in_the_users_class_let_it_create_dumps() {
        let (mysql, mysql_group, other) = (102, 105, 7);
        // Re-created by root, 0755: mysql may read it, not create in it.
        assert!(!can_create_in(0, 0, 0o40755, mysql, &[mysql_group]));
        assert!(can_create_in(
            mysql,
            mysql_group,
            0o40750,
            mysql,
            &[mysql_group]
        ));
        assert!(can_create_in(
            0,
            mysql_group,
            0o40770,
            mysql,
            &[mysql_group]
        ));
        // The owner's class decides for the owner, even when others may.
        assert!(!can_create_in(mysql, 0, 0o40577, mysql, &[mysql_group]));
        // Write without search is not enough.
        assert!(!can_create_in(
            0,
            mysql_group,
            0o40720,
            mysql,
            &[mysql_group]
        ));
        assert!(can_create_in(0, 0, 0o41777, mysql, &[]));
        assert!(!can_create_in(0, other, 0o40770, mysql, &[mysql_group]));
        assert!(can_create_in(0, 0, 0o40700, 0, &[]), "root");
    }

    #[test]
    fn an_unwritable_directory_is_said_with_its_owner_mode_and_the_fix() {
        use std::os::unix::fs::PermissionsExt;
        let dir = nix::unistd::mkdtemp("/tmp/jemsafe-dumpdir.XXXXXX").unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let me = nix::unistd::geteuid().as_raw();
        if me == 0 {
            // uid 65534 (nobody) in no group of the directory's.
            let why = unwritable_by(&dir, 65534, 65534).unwrap();
            assert!(
                why.contains("is not writable by mysqld's user ")
                    && why.contains("(uid 65534)")
                    && why.contains("mode 0755; fix: chown ")
                    && why.ends_with(&format!("{d} && chmod 0750 {d}", d = dir.display())),
                "{why}"
            );
        }
        assert_eq!(unwritable_by(&dir, me, 0), None);
        assert_eq!(unwritable_by(&dir.join("missing"), 65534, 65534), None);
        std::fs::remove_dir(&dir).unwrap();
    }
}
