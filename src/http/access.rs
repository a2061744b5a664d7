//! Who may ask for what: every route with its access rule ([`route`]) and the one
//! decision ([`decide`]) that the server applies to each request (the table is in
//! `src/http.rs`'s module doc).

use super::live_page;
use crate::error::{Error, Result};
use std::io::Read;
use std::path::Path;

/// The credential a request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Credential {
    None,
    /// `Authorization: Bearer <token>`: a program (Prometheus, Pyroscope, curl).
    Bearer {
        valid: bool,
    },
    /// `Authorization: Basic` with the token as the password: a browser, which then sends
    /// it by itself with any request to this server, whoever made the browser ask.
    Basic {
        valid: bool,
    },
}

/// The credential in `authorization`, checked against `token` (in constant time).
pub(super) fn credential(token: Option<&str>, authorization: Option<&str>) -> Credential {
    let matches = |given: &str| token.is_some_and(|t| live_page::same_secret(given, t));
    match authorization {
        Some(a) if a.starts_with("Bearer ") => Credential::Bearer {
            valid: matches(a["Bearer ".len()..].trim()),
        },
        Some(a) if a.starts_with("Basic ") => Credential::Basic {
            valid: live_page::basic_password(&a["Basic ".len()..]).is_some_and(|p| matches(&p)),
        },
        Some(_) => Credential::Bearer { valid: false },
        None => Credential::None,
    }
}

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Route {
    Metrics,
    Healthz,
    Heap,
    Page,
    Dump,
    NotFound,
}

/// Who may ask for a route (the module doc's table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Access {
    /// Anyone on loopback; off loopback the Bearer token. Any Host.
    Scrape,
    /// The Bearer token, always (a heap profile shows mysqld's address-space layout,
    /// which /proc/PID/maps keeps from other users, and each request writes a dump).
    /// Any Host.
    Bearer,
    /// The token as Bearer, or as Basic's password (a browser) with a Host this server
    /// answers to (DNS rebinding).
    Page,
}

/// Every route and its access rule, in one place.
pub(super) fn route(path: &str) -> (Route, Access) {
    match path {
        "/metrics" => (Route::Metrics, Access::Scrape),
        "/healthz" => (Route::Healthz, Access::Scrape),
        "/debug/pprof/heap" => (Route::Heap, Access::Bearer),
        p if is_pprof(p) => (Route::NotFound, Access::Bearer),
        "/" => (Route::Page, Access::Page),
        "/dump" => (Route::Dump, Access::Page),
        _ => (Route::NotFound, Access::Scrape),
    }
}

/// Whether `path` is under /debug/pprof/.
pub(super) fn is_pprof(path: &str) -> bool {
    path == "/debug/pprof" || path.starts_with("/debug/pprof/")
}

/// Why a request is refused before its route runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Denial {
    /// 421: a Host this server does not answer to, where a browser could be the client.
    Host,
    /// 403: Basic credentials on a request another site made the browser send.
    CrossSite,
    /// 401: no valid credential of a kind the route takes.
    Unauthorized { basic_given: bool },
}

/// What a request may do, from its route's access rule, where the server listens, its
/// credential, whether its Host is one this server answers to, and its `Sec-Fetch-Site`.
///
/// A browser attaches saved Basic credentials by itself, also to requests that another
/// site on the same host makes it send (`<img src=…/debug/pprof/heap>`), and a name
/// rebound to this address reaches the server with them: so a request with Basic
/// credentials must name this server in Host and must not come from another site, and
/// Basic opens only the page. Programs send Bearer, which a browser never adds by itself:
/// they may use any name (Prometheus scraping `db1:19104`, a reverse proxy).
pub(super) fn decide(
    access: Access,
    loopback: bool,
    cred: Credential,
    host_ok: bool,
    sec_fetch_site: Option<&str>,
) -> std::result::Result<(), Denial> {
    let basic = matches!(cred, Credential::Basic { .. });
    let bearer = matches!(cred, Credential::Bearer { .. });
    if (access == Access::Page || basic) && !bearer && !host_ok {
        return Err(Denial::Host);
    }
    if basic && !sec_fetch_site.map_or(true, |s| matches!(s.trim(), "same-origin" | "none")) {
        return Err(Denial::CrossSite);
    }
    let allowed = match (access, cred) {
        (Access::Scrape, _) if loopback => true,
        (_, Credential::Bearer { valid }) => valid,
        (Access::Page, Credential::Basic { valid }) => valid,
        _ => false,
    };
    if allowed {
        Ok(())
    } else {
        Err(Denial::Unauthorized { basic_given: basic })
    }
}

/// The bearer token: the file's first line, which must not be empty.
pub(super) fn read_token(path: &Path) -> Result<String> {
    use std::os::unix::fs::PermissionsExt;
    let mut text = String::new();
    // A regular file only, opened without blocking (never a FIFO), read with a bound.
    let opened = jemsafe_report::safe::open_regular(path, true)
        .map_err(Error::io(format!("[http] token_file {}", path.display())))?;
    use std::os::unix::fs::MetadataExt;
    let mode = opened.meta.permissions().mode() & 0o777;
    let euid = nix::unistd::geteuid().as_raw();
    if let Some(problem) = token_file_problem(path, opened.meta.uid(), mode, euid) {
        return Err(Error::Refused(problem));
    }
    opened
        .file
        .take(4096)
        .read_to_string(&mut text)
        .map_err(Error::io(format!("[http] token_file {}", path.display())))?;
    let token = text.lines().next().unwrap_or("").trim().to_owned();
    if token.is_empty() {
        return Err(Error::Refused(format!(
            "[http] token_file {} is empty: write the bearer token clients will send on its first line",
            path.display()
        )));
    }
    Ok(token)
}

/// What is wrong with a token file owned by `owner` with permission bits `mode`, read by
/// a jemsafe running as `euid`; None if nothing. Whoever can read the token can read
/// mysqld's call stacks and mapping layout, and whoever owns the file can make it readable
/// or change the token: only root or jemsafe's own user may own it.
pub(super) fn token_file_problem(path: &Path, owner: u32, mode: u32, euid: u32) -> Option<String> {
    let shown = path.display();
    if owner != 0 && owner != euid {
        let fix_owner = if euid == 0 {
            "root".to_owned()
        } else {
            crate::trust::user_name(euid)
                .split(' ')
                .next()
                .unwrap_or("root")
                .to_owned()
        };
        return Some(format!(
            "[http] token_file {shown} is owned by {}: its owner can read or change the \
             token; only root or the user jemsafe runs as may own it: `chown {fix_owner} {shown}`",
            crate::trust::user_name(owner)
        ));
    }
    (mode & 0o077 != 0).then(|| {
        format!(
            "[http] token_file {shown} has mode {mode:03o}: others can read the token; make \
             it private with `chmod 600 {shown}`"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch directory for one test and a token file "s3cret" in it.
    fn token_in(tag: &str) -> (std::path::PathBuf, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("jemsafe-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        std::fs::write(&path, "s3cret\n").unwrap();
        (dir, path)
    }

    #[test]
    fn a_token_file_others_can_read_is_refused_with_the_fix() {
        use std::os::unix::fs::PermissionsExt;
        let (dir, path) = token_in("token");
        for (mode, ok) in [(0o600, true), (0o400, true), (0o640, false), (0o644, false)] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            match read_token(&path) {
                Ok(token) => assert!(ok && token == "s3cret", "{mode:o}"),
                Err(e) => assert!(!ok && e.to_string().contains("chmod 600"), "{mode:o}: {e}"),
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_token_file_owned_by_another_user_is_refused_with_the_chown() {
        let (dir, path) = token_in("token-own");
        nix::unistd::chown(&path, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
        let refused = read_token(&path);
        std::fs::remove_dir_all(&dir).unwrap();
        let e = refused
            .expect_err("a token file owned by nobody")
            .to_string();
        assert!(
            e.contains(&path.display().to_string())
                && e.contains("owned by nobody (uid 65534)")
                && e.contains(&format!("chown root {}", path.display())),
            "{e}"
        );
        // The decision: root's or jemsafe's own user's file, private.
        let p = Path::new("/etc/jemsafe/http-token");
        assert_eq!(token_file_problem(p, 0, 0o600, 0), None);
        assert_eq!(token_file_problem(p, 1000, 0o600, 1000), None);
        assert!(token_file_problem(p, 0, 0o600, 1000).is_none());
        assert!(token_file_problem(p, 1000, 0o600, 0).is_some());
        assert!(token_file_problem(p, 0, 0o640, 0)
            .unwrap()
            .contains("chmod 600"));
    }

    #[test]
    fn every_route_has_its_access_rule() {
        assert_eq!(route("/metrics"), (Route::Metrics, Access::Scrape));
        assert_eq!(route("/healthz"), (Route::Healthz, Access::Scrape));
        assert_eq!(route("/debug/pprof/heap"), (Route::Heap, Access::Bearer));
        for path in ["/debug/pprof/", "/debug/pprof", "/debug/pprof/profile"] {
            assert_eq!(route(path), (Route::NotFound, Access::Bearer), "{path}");
        }
        assert_eq!(route("/"), (Route::Page, Access::Page));
        assert_eq!(route("/dump"), (Route::Dump, Access::Page));
        for path in ["/nothing", "/debug/pprofx", "//"] {
            assert_eq!(route(path), (Route::NotFound, Access::Scrape), "{path}");
        }
    }

    #[test]
    fn pprof_takes_bearer_only_metrics_and_health_need_the_token_only_off_loopback() {
        let bearer = Credential::Bearer { valid: true };
        let basic = Credential::Basic { valid: true };
        let unauthorized = |basic_given| Err(Denial::Unauthorized { basic_given });
        for loopback in [true, false] {
            assert_eq!(decide(Access::Bearer, loopback, bearer, true, None), Ok(()));
            assert_eq!(
                decide(Access::Bearer, loopback, Credential::None, true, None),
                unauthorized(false)
            );
            assert_eq!(
                decide(
                    Access::Bearer,
                    loopback,
                    Credential::Bearer { valid: false },
                    true,
                    None
                ),
                unauthorized(false)
            );
            // A browser's saved credentials never open pprof (item 5: an <img> on
            // another local site took dumps with them).
            assert_eq!(
                decide(Access::Bearer, loopback, basic, true, Some("same-origin")),
                unauthorized(true)
            );
            assert_eq!(decide(Access::Page, loopback, basic, true, None), Ok(()));
            assert_eq!(decide(Access::Page, loopback, bearer, true, None), Ok(()));
            assert_eq!(
                decide(
                    Access::Page,
                    loopback,
                    Credential::Basic { valid: false },
                    true,
                    None
                ),
                unauthorized(true)
            );
        }
        assert_eq!(
            decide(Access::Scrape, true, Credential::None, true, None),
            Ok(())
        );
        assert_eq!(
            decide(Access::Scrape, false, Credential::None, true, None),
            unauthorized(false)
        );
        assert_eq!(decide(Access::Scrape, false, bearer, true, None), Ok(()));
        assert_eq!(
            decide(Access::Scrape, false, basic, true, None),
            unauthorized(true)
        );
    }

    #[test]
    fn basic_credentials_need_the_servers_host_and_no_other_site() {
        let basic = Credential::Basic { valid: true };
        let bearer = Credential::Bearer { valid: true };
        for site in [None, Some("same-origin"), Some("none")] {
            assert_eq!(
                decide(Access::Page, true, basic, true, site),
                Ok(()),
                "{site:?}"
            );
        }
        for site in ["same-site", "cross-site", "", "bogus"] {
            for access in [Access::Page, Access::Scrape, Access::Bearer] {
                assert_eq!(
                    decide(access, true, basic, true, Some(site)),
                    Err(Denial::CrossSite),
                    "{site} {access:?}"
                );
            }
        }
        // Host: the page and Basic anywhere; Bearer (which no browser adds by itself) and
        // open scrapes take any name.
        for access in [Access::Page, Access::Scrape, Access::Bearer] {
            assert_eq!(decide(access, true, basic, false, None), Err(Denial::Host));
        }
        assert_eq!(decide(Access::Page, true, bearer, false, None), Ok(()));
        assert_eq!(
            decide(Access::Page, true, Credential::None, false, None),
            Err(Denial::Host)
        );
        assert_eq!(decide(Access::Bearer, true, bearer, false, None), Ok(()));
        assert_eq!(
            decide(Access::Scrape, true, Credential::None, false, None),
            Ok(())
        );
        assert_eq!(decide(Access::Scrape, false, bearer, false, None), Ok(()));
    }
}
