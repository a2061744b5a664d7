//! `jemsafe sql`: the statements that load (or drop) jemsafe_udf.so's functions, from the
//! library's own list of what it exports ([`jemsafe_udf::FUNCTIONS`]); and where the
//! server looks for the library (its plugin directory), for `check`.

use jemsafe_udf::{FUNCTIONS, LIBRARY};
use std::path::{Path, PathBuf};

/// Where Debian and Ubuntu's MariaDB and MySQL packages look for plugins, and where the
/// .deb installs jemsafe_udf.so.
pub const DEBIAN_PLUGIN_DIR: &str = "/usr/lib/mysql/plugin";

/// What the server understands of `CREATE FUNCTION … SONAME`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dialect {
    /// `CREATE FUNCTION IF NOT EXISTS`: MariaDB 10.1.3+, MySQL 8.0.29+.
    pub create_if_not_exists: bool,
}

impl Default for Dialect {
    fn default() -> Self {
        Dialect {
            create_if_not_exists: true,
        }
    }
}

impl Dialect {
    /// The dialect of the server whose `mysqld --version` line is `version`; the default
    /// when the line says too little.
    pub fn of_version(version: &str) -> Dialect {
        let mariadb = version.contains("MariaDB");
        let Some(number) = version
            .split_whitespace()
            .find(|w| w.starts_with(|c: char| c.is_ascii_digit()) && w.contains('.'))
        else {
            return Dialect::default();
        };
        let parts: Vec<u32> = number
            .split(|c: char| !c.is_ascii_digit())
            .take(3)
            .map_while(|p| p.parse().ok())
            .collect();
        let at_least = |want: [u32; 3]| parts.as_slice() >= want.as_slice();
        Dialect {
            create_if_not_exists: if mariadb {
                at_least([10, 1, 3])
            } else {
                at_least([8, 0, 29])
            },
        }
    }
}

/// The SQL script: `CREATE FUNCTION IF NOT EXISTS` for every function (or, with `drop`,
/// `DROP FUNCTION IF EXISTS`), one statement a line. `IF NOT EXISTS` and `IF EXISTS`
/// make it safe to run twice and are understood by MariaDB (10.1.3+) and MySQL (8.0.29+).
pub fn statements(drop: bool) -> String {
    script(drop, Dialect::default(), None)
}

/// [`statements`] for a server of `dialect`, with a note on the first line about it
/// (`about`). A server without `CREATE FUNCTION IF NOT EXISTS` gets a `DROP FUNCTION IF
/// EXISTS` before each `CREATE`, so that the script is still safe to run twice.
pub fn script(drop: bool, dialect: Dialect, about: Option<&str>) -> String {
    let mut script = format!(
        "-- jemsafe_udf.so's loadable functions: {} them with `jemsafe sql{} | mariadb`\n",
        if drop { "drop" } else { "create" },
        if drop { " --drop" } else { "" },
    );
    if let Some(about) = about {
        script.push_str(&format!("-- {about}\n"));
    }
    for function in FUNCTIONS {
        if drop || !dialect.create_if_not_exists {
            script.push_str(&format!("DROP FUNCTION IF EXISTS {};\n", function.name));
        }
        if !drop {
            script.push_str(&format!(
                "CREATE FUNCTION {}{} RETURNS {} SONAME '{LIBRARY}';\n",
                if dialect.create_if_not_exists {
                    "IF NOT EXISTS "
                } else {
                    ""
                },
                function.name,
                function.returns.sql()
            ));
        }
    }
    script
}

/// The script for the server `config` runs: its `--version` decides the dialect, and the
/// first lines say which server it is for and where the library must be. As root, a
/// mysqld or config that root should not trust is not executed (as in `check`): the
/// script is then the default one, and says so.
pub fn for_configured_server(drop: bool, config: &crate::config::Config) -> String {
    let mysqld = match crate::locate::mysqld(config) {
        Ok(path) => path,
        Err(e) => return script(drop, Dialect::default(), Some(&format!("{e}"))),
    };
    if nix::unistd::geteuid().is_root() {
        let untrusted = crate::trust::problems(&config.source, "config file")
            .into_iter()
            .chain(crate::trust::problems(&mysqld, "mysqld binary"))
            .next();
        if let Some(why) = untrusted {
            return script(drop, Dialect::default(), Some(&why));
        }
    }
    let Some(version) = crate::launch::mysqld_version(&mysqld) else {
        return script(
            drop,
            Dialect::default(),
            Some(&format!("{} --version said nothing", mysqld.display())),
        );
    };
    let mut about = format!("for {version}");
    if let Some(dir) = server_plugin_dir(&mysqld, &config.mysqld.args) {
        about.push_str(&format!(
            "\n-- the server loads {LIBRARY} from {}",
            dir.join(LIBRARY).display()
        ));
    }
    script(drop, Dialect::of_version(&version), Some(&about))
}

/// The plugin directory that mysqld's arguments set (`--plugin-dir=` or `--plugin_dir=`;
/// the last one wins, as in the server).
pub fn plugin_dir_in_args(args: &[String]) -> Option<PathBuf> {
    args.iter()
        .filter_map(|a| {
            a.strip_prefix("--plugin-dir=")
                .or_else(|| a.strip_prefix("--plugin_dir="))
        })
        .next_back()
        .map(PathBuf::from)
}

/// The plugin directory in `mysqld --verbose --help`'s table of variables
/// (`plugin-dir   /usr/lib/mysql/plugin/`).
pub fn plugin_dir_in_help(text: &str) -> Option<PathBuf> {
    text.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some("plugin-dir" | "plugin_dir"), Some(dir), None) if dir.starts_with('/') => {
                Some(PathBuf::from(dir))
            }
            _ => None,
        }
    })
}

/// The server's plugin directory: from its arguments, else from what `mysqld <args>
/// --verbose --help` says (it reads the option files the arguments name), else None.
pub fn server_plugin_dir(mysqld: &Path, args: &[String]) -> Option<PathBuf> {
    if let Some(dir) = plugin_dir_in_args(args) {
        return Some(dir);
    }
    plugin_dir_in_help(&server_help(mysqld, args)?)
}

/// `mysqld <args> --verbose --help`'s output (a few hundred KiB; at most 1 MiB read),
/// waiting at most 10 s.
fn server_help(mysqld: &Path, args: &[String]) -> Option<String> {
    let args: Vec<String> = args
        .iter()
        .cloned()
        .chain(["--verbose".to_owned(), "--help".to_owned()])
        .collect();
    crate::launch::mysqld_output(mysqld, &args, 1 << 20)
}

/// `check`'s line about the library in `plugin_dir`: whether it is there, and how to
/// install it if not.
pub fn installed_row(plugin_dir: &Path) -> String {
    let path = plugin_dir.join(LIBRARY);
    if path.is_file() {
        format!(
            "{} is there: create its functions with `jemsafe sql | mariadb`",
            path.display()
        )
    } else {
        format!(
            "{LIBRARY} is not in {dir} (optional, for SELECT jemsafe_dump() and the article's \
             jeprof_* functions): the .deb installs it; from a build, `install -o root -g root \
             -m 0644 target/release/libjemsafe_udf.so {path}`, then `jemsafe sql | mariadb`",
            dir = plugin_dir.display(),
            path = path.display()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_every_function_with_its_type_from_the_library() {
        let script = statements(false);
        assert!(script.contains(
            "CREATE FUNCTION IF NOT EXISTS jeprof_dump RETURNS INTEGER SONAME 'jemsafe_udf.so';\n"
        ));
        assert!(script.contains(
            "CREATE FUNCTION IF NOT EXISTS jemsafe_dump RETURNS STRING SONAME 'jemsafe_udf.so';\n"
        ));
        assert_eq!(script.matches("CREATE FUNCTION").count(), FUNCTIONS.len());
        assert!(!script.contains("DROP"));
    }

    #[test]
    fn a_server_without_if_not_exists_gets_a_drop_before_each_create() {
        let old_mysql = Dialect::of_version("/usr/sbin/mysqld  Ver 8.0.28 for Linux on x86_64");
        assert!(!old_mysql.create_if_not_exists);
        let script = script(false, old_mysql, Some("MySQL 8.0.28"));
        assert!(script.contains("-- MySQL 8.0.28\n"));
        assert!(script.contains(
            "DROP FUNCTION IF EXISTS jeprof_dump;\nCREATE FUNCTION jeprof_dump RETURNS INTEGER"
        ));
        assert!(!script.contains("IF NOT EXISTS"));
        for version in [
            "/usr/sbin/mysqld  Ver 8.0.36-0ubuntu0.22.04.1 for Linux on x86_64 ((Ubuntu))",
            "/usr/sbin/mariadbd  Ver 10.11.6-MariaDB-0+deb12u1 for debian-linux-gnu on x86_64",
            "something else",
        ] {
            assert!(
                Dialect::of_version(version).create_if_not_exists,
                "{version}"
            );
        }
        assert!(!Dialect::of_version("mysqld  Ver 10.0.38-MariaDB for Linux").create_if_not_exists);
    }

    #[test]
    fn the_plugin_dir_comes_from_the_arguments_or_the_servers_help() {
        let args = |list: &[&str]| list.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        assert_eq!(
            plugin_dir_in_args(&args(&[
                "--plugin-dir=/a",
                "--user=mysql",
                "--plugin_dir=/b"
            ])),
            Some(PathBuf::from("/b"))
        );
        assert_eq!(plugin_dir_in_args(&args(&["--user=mysql"])), None);
        let help = "plugin-dir-extra                         x\n\
                    plugin-dir                                                   /usr/lib/mysql/plugin/\n\
                    plugin-load-add                                              \n";
        assert_eq!(
            plugin_dir_in_help(help),
            Some(PathBuf::from("/usr/lib/mysql/plugin/"))
        );
        assert_eq!(plugin_dir_in_help("plugin-dir (No default value)"), None);
    }

    #[test]
    fn the_row_says_how_to_install_a_missing_library() {
        let dir = std::env::temp_dir().join(format!("jemsafe-sql-row-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = installed_row(&dir);
        assert!(missing.contains("is not in"), "{missing}");
        assert!(missing.contains("-m 0644"), "{missing}");
        std::fs::write(dir.join(LIBRARY), b"").unwrap();
        assert!(installed_row(&dir).contains("is there"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn drop_drops_every_function_and_creates_none() {
        let script = statements(true);
        assert!(script.contains("DROP FUNCTION IF EXISTS jeprof_active_status;\n"));
        assert_eq!(script.matches("DROP FUNCTION").count(), FUNCTIONS.len());
        assert!(!script.contains("CREATE"));
    }
}
