//! The checks of a parsed config that its types cannot express, one function per section:
//! each error names the key, its line and what is allowed.

use super::{
    shown, spans, Config, ConfigError, Library, Locator, TriggerSettings, TriggersSection,
    BUNDLED_FILE, MAX_LEVELS, RESERVED_ENV,
};
use std::path::Path;

impl Config {
    /// Every check a type cannot express, section by section; the first problem found is
    /// the error, naming its key and line. What a check parses is kept typed: `[triggers]`
    /// (`triggers`, as the file gave it) comes back as the settings the rest uses.
    pub(super) fn validate(
        &self,
        triggers: &TriggersSection,
    ) -> Result<TriggerSettings, ConfigError> {
        self.validate_report()?;
        self.validate_dumps()?;
        self.validate_supervise()?;
        self.validate_mysqld()?;
        self.validate_jemalloc()?;
        self.validate_http()?;
        let triggers = self.validate_triggers(triggers)?;
        self.validate_profiles()?;
        Ok(triggers)
    }

    /// `[report]`: debuginfod servers are http(s) URLs.
    fn validate_report(&self) -> Result<(), ConfigError> {
        for url in &self.report.debuginfod {
            if !(url.starts_with("http://") || url.starts_with("https://"))
                || url.contains(char::is_whitespace)
            {
                return Err(self.invalid(
                    "report.debuginfod",
                    format!(
                        "{url:?} is not a server URL: give http:// or https:// URLs, e.g. \
                         debuginfod = [\"https://debuginfod.debian.net\"]"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// `[dumps]`: a directory jemalloc can be given, a prefix that fits a file name.
    fn validate_dumps(&self) -> Result<(), ConfigError> {
        let dir = &self.dumps.dir;
        self.check_path(
            "dumps.dir",
            dir,
            "the directory heap files go to, e.g. /var/lib/jemsafe (the default)",
        )?;
        let dir_text = dir.to_string_lossy();
        if dir_text.contains([',', '\n']) {
            return Err(self.invalid("dumps.dir",
                format!(
                    "{} must not contain a comma or newline (jemalloc's MALLOC_CONF cannot carry them)",
                    shown(dir)
                ),
            ));
        }
        let prefix = &self.dumps.prefix;
        if prefix.is_empty()
            || !prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            return Err(self.invalid("dumps.prefix",
                format!("{prefix:?} is not allowed: use letters, digits, '.', '_' and '-' only (it becomes part of every heap file name)"),
            ));
        }
        Ok(())
    }

    /// `[supervise]`: the runtime directory, restart delays in order.
    fn validate_supervise(&self) -> Result<(), ConfigError> {
        self.check_path(
            "supervise.runtime_dir",
            &self.supervise.runtime_dir,
            "the directory for jemsafe's pid file and control socket, e.g. /run/jemsafe (the default)",
        )?;
        let s = &self.supervise;
        if s.restart_delay_ms > s.restart_delay_max_ms {
            let set = |key: &str| {
                if self.sets(&format!("supervise.{key}")) {
                    ""
                } else {
                    " (the default)"
                }
            };
            // At whichever of the two the file sets.
            let which = if self.sets("supervise.restart_delay_ms") {
                "supervise.restart_delay_ms"
            } else {
                "supervise.restart_delay_max_ms"
            };
            return Err(self.invalid_at(
                "supervise.restart_delay_ms",
                spans::locate(&self.text, which),
                format!(
                    "{}{} is above `supervise.restart_delay_max_ms` = {}{}: the first delay before a restart \
                     cannot be longer than the longest one; lower restart_delay_ms or raise restart_delay_max_ms",
                    s.restart_delay_ms,
                    set("restart_delay_ms"),
                    s.restart_delay_max_ms,
                    set("restart_delay_max_ms"),
                ),
            ));
        }
        Ok(())
    }

    /// `[mysqld]`: its path, arguments and environment.
    fn validate_mysqld(&self) -> Result<(), ConfigError> {
        if let Some(path) = &self.mysqld.path {
            self.check_path(
                "mysqld.path",
                path,
                "the mysqld or mariadbd binary; leave `path` out to search PATH, /usr/sbin and /usr/local/mysql/bin",
            )?;
        }
        for arg in &self.mysqld.args {
            if arg.contains('\0') {
                return Err(
                    self.invalid("mysqld.args", "an argument contains a NUL byte".to_owned())
                );
            }
        }
        for key in self.mysqld.env.keys() {
            if let Some((_, why)) = RESERVED_ENV.iter().find(|(name, _)| name == key) {
                return Err(self.invalid(
                    &format!("mysqld.env.{key}"),
                    format!("jemsafe sets {key} itself: {why}"),
                ));
            }
            if key.is_empty() || key.contains(['=', '\0']) {
                return Err(self.invalid(
                    "mysqld.env",
                    format!("{key:?} is not a valid environment variable name"),
                ));
            }
        }
        for (key, value) in &self.mysqld.env {
            let problem = if value.contains('\0') {
                Some(format!(
                    "{value:?} contains a NUL byte, which no environment variable can carry"
                ))
            } else {
                crate::trust::loader_variable_problem(key, value)
            };
            if let Some(problem) = problem {
                return Err(self.invalid(&format!("mysqld.env.{key}"), problem));
            }
        }
        Ok(())
    }

    /// `[jemalloc]`: library and shim paths, and no shim beside the bundled library.
    fn validate_jemalloc(&self) -> Result<(), ConfigError> {
        if let Library::Path(path) = &self.jemalloc.library {
            self.check_path(
                "jemalloc.library",
                path,
                "\"auto\", \"bundled\" or the absolute path of the file",
            )?;
            if path.file_name() == Some(std::ffi::OsStr::new(BUNDLED_FILE)) {
                return Err(self.invalid(
                    "jemalloc.library",
                    format!(
                        "{} is jemsafe's bundled jemalloc, which reads _RJEM_MALLOC_CONF and \
                         carries the shim inside: write library = \"bundled\" (it is found next \
                         to the jemsafe executable, in /usr/lib/jemsafe or /usr/local/lib/jemsafe)",
                        shown(path)
                    ),
                ));
            }
        }
        if let Locator::Path(path) = &self.jemalloc.shim {
            self.check_path(
                "jemalloc.shim",
                path,
                "\"auto\" or the absolute path of the file",
            )?;
            if self.jemalloc.library.is_bundled() {
                return Err(self.invalid(
                    "jemalloc.shim",
                    format!(
                        "shim = {} has no use with library = \"bundled\": the bundled library \
                         carries the shim inside; remove the `shim` line",
                        shown(path)
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The selected profile and every other one resolve.
    fn validate_profiles(&self) -> Result<(), ConfigError> {
        // Every profile must resolve, not only the selected one: a typo in an unused
        // profile would otherwise surface at 3 a.m. when someone switches to it.
        for name in self.profiles.keys() {
            self.resolve_profile(name)?;
        }
        self.resolve_profile(&self.profile)
            .map_err(|e| match e {
                ConfigError::Invalid { message, .. } if !self.profile_exists(&self.profile) => {
                    self.invalid_at("profile", self.profile_at, message)
                }
                other => other,
            })
            .map(|_| ())
    }

    /// `path` must be a non-empty absolute path without NUL; `allowed` says what is.
    fn check_path(&self, key: &str, path: &Path, allowed: &str) -> Result<(), ConfigError> {
        let problem = if path.as_os_str().is_empty() {
            format!("is empty: give {allowed}")
        } else if path.as_os_str().as_encoded_bytes().contains(&0) {
            format!(
                "{} contains a NUL byte, which no path can carry: give {allowed}",
                shown(path)
            )
        } else if !path.is_absolute() {
            format!("{} is not an absolute path: give {allowed}", shown(path))
        } else {
            return Ok(());
        };
        Err(self.invalid(key, problem))
    }

    /// `[http]`: an address that parses; anything but loopback only with `allow_remote`
    /// and a token file.
    fn validate_http(&self) -> Result<(), ConfigError> {
        let h = &self.http;
        if let Some(path) = &h.token_file {
            self.check_path(
                "http.token_file",
                path,
                "the absolute path of a file holding the bearer token (root's, mode 0600)",
            )?;
        }
        let range = crate::http::budget::MEMORY_MB_RANGE;
        if !range.contains(&h.render_memory_mb) {
            return Err(self.invalid(
                "http.render_memory_mb",
                format!(
                    "{} is out of range: allowed {}..={} (MiB of address space for a child \
                     that renders a profile or the page; default {})",
                    h.render_memory_mb,
                    range.start(),
                    range.end(),
                    crate::http::budget::DEFAULT_MEMORY_MB
                ),
            ));
        }
        if let Some(problem) = h.hosts.iter().find_map(|name| host_name_problem(name)) {
            return Err(self.invalid("http.hosts", problem));
        }
        let Some(listen) = &h.listen else {
            return Ok(());
        };
        let Ok(addr) = listen.parse::<std::net::SocketAddr>() else {
            return Err(self.invalid(
                "http.listen",
                format!(
                    "{listen:?} is not an address and port: give e.g. \"127.0.0.1:19104\" \
                     (or \"[::1]:19104\")"
                ),
            ));
        };
        if !addr.ip().is_loopback() {
            if !h.allow_remote {
                return Err(self.invalid(
                    "http.listen",
                    format!(
                        "{addr} is not a loopback address: a heap profile reveals mysqld's \
                         address-space layout, so listening beyond this host needs \
                         `allow_remote = true` and a `token_file` in [http]"
                    ),
                ));
            }
            if h.token_file.is_none() {
                return Err(self.invalid(
                    "http.allow_remote",
                    "allow_remote = true needs `token_file`: the file with the bearer token \
                     that every client must send"
                        .into(),
                ));
            }
        }
        if h.pprof && h.token_file.is_none() {
            // A heap profile shows mysqld's address-space layout and each request writes a
            // dump: on loopback too, only holders of the token may ask.
            // Missing, so point at what asks for it: `listen`.
            return Err(self.invalid_at(
                "http.token_file",
                spans::locate(&self.text, "http.listen"),
                "[http] serves /debug/pprof/heap, which needs a bearer token even on loopback \
                 (a heap profile shows mysqld's address-space layout, and each request writes \
                 a dump): make one with `install -m 600 /dev/null /etc/jemsafe/http-token; \
                 head -c 32 /dev/urandom | base64 > /etc/jemsafe/http-token` and set \
                 token_file = \"/etc/jemsafe/http-token\" in [http], or set pprof = false \
                 to serve only /metrics and /healthz"
                    .into(),
            ));
        }
        Ok(())
    }

    /// `[triggers]`: levels within their ranges, a pressure rule that parses; typed.
    fn validate_triggers(&self, t: &TriggersSection) -> Result<TriggerSettings, ConfigError> {
        let levels: [(&str, &[i64], i64, &str); 2] = [
            (
                "triggers.limit_percent",
                t.limit_percent.as_deref().unwrap_or(&[]),
                100,
                "percent of mysqld's memory limit",
            ),
            (
                "triggers.rss_mb",
                &t.rss_mb,
                16 << 20,
                "MiB of mysqld's RSS",
            ),
        ];
        for (key, values, max, what) in levels {
            if let Some(v) = values.iter().find(|v| !(1..=max).contains(*v)) {
                return Err(self.invalid(
                    key,
                    format!("{v} is out of range: allowed 1..={max} ({what})"),
                ));
            }
            if values.len() > MAX_LEVELS {
                return Err(self.invalid(
                    key,
                    format!("{} levels: at most {MAX_LEVELS} are allowed", values.len()),
                ));
            }
        }
        let pressure = t
            .pressure
            .as_deref()
            .map(crate::watch::memlimit::PressureRule::parse)
            .transpose()
            .map_err(|why| self.invalid("triggers.pressure", why))?;
        // In range, checked above: the casts keep every value.
        Ok(TriggerSettings {
            rss_mb: t.rss_mb.iter().map(|v| *v as u64).collect(),
            limit_percent: t
                .limit_percent
                .as_ref()
                .map(|l| l.iter().map(|v| *v as u8).collect()),
            pressure,
            per_hour: t.per_hour as u32,
            check: std::time::Duration::from_millis(t.check_ms),
        })
    }
}

/// What is wrong with `name` as an entry of `[http] hosts`, None if nothing: a host name
/// or an IP address as a browser writes it in `Host` before the port, nothing more.
fn host_name_problem(name: &str) -> Option<String> {
    const ALLOWED: &str = "give host names as a browser writes them before the port, e.g. \
                           hosts = [\"db1.example.com\", \"db1\"] (the listen port is added)";
    let why = if name.is_empty() {
        "an empty name".to_owned()
    } else if name.len() > 253 {
        format!("{} characters: a host name has at most 253", name.len())
    } else if name.contains("://") || name.contains(['/', '@', '?', '#']) {
        format!("{name:?} is a URL or holds userinfo or a path, not a host name")
    } else if name.parse::<std::net::Ipv6Addr>().is_ok() {
        format!("{name:?} is an IPv6 address: write it in brackets, \"[{name}]\"")
    } else if let Some(inner) = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        if inner.parse::<std::net::Ipv6Addr>().is_ok() {
            return None;
        }
        format!("{name:?} is not an IPv6 address in brackets")
    } else if name.contains(':') {
        format!("{name:?} has a port: give the name alone (the listen port is added)")
    } else if name.ends_with('.') {
        format!("{name:?} ends with a dot: give the name without it")
    } else if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
    {
        format!("{name:?} holds {c:?}")
    } else if name.split('.').any(str::is_empty) {
        format!("{name:?} has an empty label (two dots)")
    } else {
        return None;
    };
    Some(format!("{why}: {ALLOWED}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_hosts_are_bare_names_or_addresses() {
        for ok in ["db1", "db1.example.com", "10.0.0.5", "[::1]", "my_host-2"] {
            assert_eq!(host_name_problem(ok), None, "{ok}");
        }
        for (bad, needle) in [
            ("", "empty"),
            ("db1:19104", "has a port"),
            ("http://db1", "URL"),
            ("user@db1", "userinfo"),
            ("db1.", "ends with a dot"),
            ("db1..example", "empty label"),
            ("::1", "in brackets"),
            ("[db1]", "not an IPv6"),
            ("db 1", "holds ' '"),
        ] {
            let e = host_name_problem(bad).unwrap_or_else(|| panic!("{bad:?} accepted"));
            assert!(
                e.contains(needle) && e.contains("hosts = ["),
                "{bad:?}: {e}"
            );
        }
        let e = crate::config::Config::parse(
            "[http]\nlisten = \"127.0.0.1:19104\"\npprof = false\nhosts = [\"db1:19104\"]\n",
            std::path::Path::new("/etc/jemsafe/test.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("http.hosts") && e.contains("has a port"), "{e}");
    }
}
