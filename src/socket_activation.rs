//! systemd socket activation (sd_listen_fds(3)), passed through to mysqld.
//!
//! With a `.socket` unit (Debian 12 enables `mariadb.socket` by default) systemd itself
//! binds mysqld's Unix socket and TCP port and hands them to the service's main process
//! as descriptors 3 … 3+`LISTEN_FDS`−1, with `LISTEN_PID` naming that process. Under
//! jemsafe the main process is jemsafe, so it keeps the sockets (close-on-exec for every
//! other child) and gives them to each mysqld it starts, with `LISTEN_PID` rewritten to
//! mysqld's own pid between fork and exec. Otherwise mysqld would bind the same addresses
//! next to systemd and fail with "Address already in use".

use crate::error::{Error, Result};
use std::path::Path;

/// The first passed descriptor (SD_LISTEN_FDS_START).
pub const FIRST_FD: i32 = 3;
/// More sockets than any MySQL/MariaDB socket unit declares; a larger LISTEN_FDS is a
/// mistake, not something to walk descriptors for.
pub const MAX_FDS: u32 = 64;
/// Longest LISTEN_FDNAMES accepted (systemd's names are at most 255 bytes each).
const MAX_NAMES_LEN: usize = 256 * MAX_FDS as usize;

/// The sockets systemd passed to jemsafe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activation {
    /// LISTEN_FDS: descriptors FIRST_FD .. FIRST_FD + count.
    pub count: u32,
    /// LISTEN_FDNAMES, passed on unchanged.
    pub names: Option<String>,
}

/// [`decide`] on this process's environment and pid.
fn from_env() -> std::result::Result<Option<Activation>, String> {
    let var = |k: &str| std::env::var(k).ok();
    decide(
        var("LISTEN_PID").as_deref(),
        var("LISTEN_FDS").as_deref(),
        var("LISTEN_FDNAMES").as_deref(),
        std::process::id(),
    )
}

/// sd_listen_fds' reading of the environment, as a pure function: None when there is
/// nothing for `own_pid` (no LISTEN_FDS, LISTEN_PID missing or naming another process,
/// zero sockets); an error names the variable and what is allowed.
pub fn decide(
    listen_pid: Option<&str>,
    listen_fds: Option<&str>,
    listen_fdnames: Option<&str>,
    own_pid: u32,
) -> std::result::Result<Option<Activation>, String> {
    let (Some(pid), Some(fds)) = (listen_pid, listen_fds) else {
        return Ok(None);
    };
    let pid: u32 = pid
        .parse()
        .map_err(|_| format!("LISTEN_PID={pid:?} is not a process id"))?;
    if pid != own_pid {
        return Ok(None);
    }
    let count = fds
        .parse::<u32>()
        .ok()
        .filter(|n| *n <= MAX_FDS)
        .ok_or_else(|| {
            format!("LISTEN_FDS={fds:?} is not a number of sockets from 0 to {MAX_FDS}")
        })?;
    if count == 0 {
        return Ok(None);
    }
    if let Some(names) = listen_fdnames {
        if names.len() > MAX_NAMES_LEN {
            return Err(format!(
                "LISTEN_FDNAMES is {} bytes long (at most {MAX_NAMES_LEN})",
                names.len()
            ));
        }
        let n = names.split(':').count();
        if n != count as usize {
            return Err(format!(
                "LISTEN_FDNAMES={names:?} names {n} socket(s) but LISTEN_FDS={count}"
            ));
        }
    }
    Ok(Some(Activation {
        count,
        names: listen_fdnames.map(str::to_owned),
    }))
}

impl Activation {
    /// The passed descriptors.
    pub fn fds(&self) -> std::ops::Range<i32> {
        // count <= MAX_FDS, so this cannot overflow.
        FIRST_FD..FIRST_FD + self.count as i32
    }

    /// "3 socket(s) (fds 3-5: mariadb.socket:mariadb.socket:mariadb.socket)".
    pub fn describe(&self) -> String {
        format!(
            "{} socket(s) from systemd (fds {}-{}{})",
            self.count,
            FIRST_FD,
            self.fds().end - 1,
            self.names
                .as_deref()
                .map_or_else(String::new, |n| format!(": {n}"))
        )
    }

    /// The sockets systemd passed to this process, if any: checks that each is an open
    /// socket and marks it close-on-exec, so that only mysqld (see
    /// [`crate::launch::spawn`]) inherits it, and jemsafe keeps it for every restart.
    pub fn claim() -> Result<Option<Activation>> {
        let Some(activation) =
            from_env().map_err(|e| Error::Refused(format!("socket activation: {e}")))?
        else {
            return Ok(None);
        };
        for fd in activation.fds() {
            let socket = nix::sys::stat::fstat(fd)
                .map(|st| st.st_mode & libc::S_IFMT == libc::S_IFSOCK)
                .map_err(|e| {
                    Error::Refused(format!(
                        "socket activation: LISTEN_FDS={} but descriptor {fd} is not open ({e})",
                        activation.count
                    ))
                })?;
            if !socket {
                return Err(Error::Refused(format!(
                    "socket activation: LISTEN_FDS={} but descriptor {fd} is not a socket",
                    activation.count
                )));
            }
            // SAFETY: fcntl on a descriptor number checked open above.
            if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } == -1 {
                return Err(Error::io(format!(
                    "cannot mark descriptor {fd} close-on-exec"
                ))(std::io::Error::last_os_error()));
            }
        }
        Ok(Some(activation))
    }
}

/// Socket units of MySQL/MariaDB that systemd would start jemsafe's service through.
const SOCKET_UNITS: [&str; 3] = ["mariadb.socket", "mysql.socket", "mysqld.socket"];

/// `check`'s line: the sockets in this process's environment, else which enabled socket
/// unit would pass some (`wants`: systemd's `sockets.target.wants` directory).
pub fn check_row(wants: &Path) -> std::result::Result<String, String> {
    if let Some(activation) = from_env()? {
        return Ok(format!(
            "in use: {}, passed to each mysqld jemsafe starts",
            activation.describe()
        ));
    }
    let enabled: Vec<&str> = SOCKET_UNITS
        .into_iter()
        .filter(|u| wants.join(u).symlink_metadata().is_ok())
        .collect();
    Ok(if enabled.is_empty() {
        "not in use: mysqld binds its own socket and port".to_owned()
    } else {
        format!(
            "{} enabled: systemd holds mysqld's socket and port and passes them to jemsafe \
             (LISTEN_FDS), which hands them to each mysqld it starts",
            enabled.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sockets_for_this_pid_count() {
        assert_eq!(decide(None, Some("3"), None, 7), Ok(None));
        assert_eq!(decide(Some("7"), None, None, 7), Ok(None));
        assert_eq!(decide(Some("8"), Some("3"), None, 7), Ok(None));
        assert_eq!(decide(Some("7"), Some("0"), None, 7), Ok(None));
        assert_eq!(
            decide(Some("7"), Some("3"), Some("a:b:c"), 7),
            Ok(Some(Activation {
                count: 3,
                names: Some("a:b:c".into())
            }))
        );
        let one = decide(Some("7"), Some("1"), None, 7).unwrap().unwrap();
        assert_eq!(one.fds(), 3..4);
        assert_eq!(one.describe(), "1 socket(s) from systemd (fds 3-3)");
    }

    #[test]
    fn bad_values_are_errors_naming_the_variable() {
        for (pid, fds, names, needle) in [
            ("x", "1", None, "LISTEN_PID=\"x\""),
            ("7", "-1", None, "LISTEN_FDS=\"-1\""),
            ("7", "65", None, "from 0 to 64"),
            ("7", "99999999999", None, "LISTEN_FDS"),
            ("7", "2", Some("a"), "names 1 socket(s) but LISTEN_FDS=2"),
        ] {
            let err = decide(Some(pid), Some(fds), names, 7).unwrap_err();
            assert!(err.contains(needle), "{err}");
        }
        let long = "n".repeat(MAX_NAMES_LEN + 1);
        assert!(decide(Some("7"), Some("1"), Some(&long), 7)
            .unwrap_err()
            .contains("LISTEN_FDNAMES"));
    }

    #[test]
    fn check_names_an_enabled_socket_unit() {
        let dir = std::env::temp_dir().join(format!("jemsafe-wants-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        assert!(check_row(&dir).unwrap().starts_with("not in use"));
        std::os::unix::fs::symlink(
            "/lib/systemd/system/mariadb.socket",
            dir.join("mariadb.socket"),
        )
        .unwrap();
        let row = check_row(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(row.starts_with("mariadb.socket enabled"), "{row}");
    }
}
