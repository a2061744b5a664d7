//! jemsafe_udf.so in a real MariaDB: the library copied into the server's plugin
//! directory, its functions created from `jemsafe sql`'s output, called from SQL, and
//! dropped by `jemsafe sql --drop`.

use crate::common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// MariaDB's first start includes creating the datadir; CI machines can be slow.
const START: Duration = Duration::from_secs(180);

/// A plugin directory in `dir` holding the library under its installed name, readable by
/// mysqld's user.
fn plugin_dir_with_library(dir: &TempDir) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::set_permissions(&plugins, std::fs::Permissions::from_mode(0o755)).unwrap();
    let installed = plugins.join("jemsafe_udf.so");
    std::fs::copy(udf_library(), &installed).unwrap();
    std::fs::set_permissions(&installed, std::fs::Permissions::from_mode(0o644)).unwrap();
    plugins
}

/// `jemsafe sandbox` in `dir`/sandbox with `profile`, mysqld loading plugins from a
/// directory holding the library; returns once the server is ready, with the sandbox's
/// directory and the server's socket.
fn sandbox_with_library(tag: &str, profile: &str) -> (TempDir, PathBuf, Running, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new(tag);
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let plugins = plugin_dir_with_library(&dir);
    let sandbox = dir.join("sandbox");
    let mut js = Running::start(&[
        "sandbox",
        sandbox.to_str().unwrap(),
        "-p",
        profile,
        "--",
        &format!("--plugin-dir={}", plugins.display()),
    ]);
    js.wait_started(1, START);
    js.err.wait_for("ready for connections", START);
    let socket = sandbox.join("mysqld/mysqld.sock");
    (dir, sandbox, js, socket)
}

/// `jemsafe sql` with `args`: its standard output, the script.
fn jemsafe_sql(args: &[&str]) -> String {
    let out = Command::new(jemsafe_bin())
        .arg("sql")
        .args(args)
        .output()
        .expect("run jemsafe sql");
    assert!(out.status.success(), "jemsafe sql {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// The functions of jemsafe_udf.so that `mysql.func` lists.
fn created_functions(socket: &Path) -> String {
    sql(
        socket,
        "SELECT GROUP_CONCAT(name ORDER BY name) FROM mysql.func WHERE dl = 'jemsafe_udf.so'",
    )
}

/// The heap files in `dir`.
fn heap_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "heap"))
        .collect();
    files.sort();
    files
}

#[test]
fn the_library_exports_exactly_its_functions_and_contains_no_jemalloc() {
    let library = udf_library();
    assert_no_jemalloc_inside(&library);
    let mut want: Vec<String> = jemsafe_udf::FUNCTIONS
        .iter()
        .flat_map(|f| {
            [
                f.name.to_owned(),
                format!("{}_init", f.name),
                format!("{}_deinit", f.name),
            ]
        })
        .collect();
    want.sort();
    let mut exported: Vec<String> = defined_symbols(&library)
        .into_iter()
        .filter(|s| s.starts_with("jeprof_") || s.starts_with("jemsafe_"))
        .collect();
    exported.sort();
    assert_eq!(exported, want);
    assert_eq!(want.len(), 24);
}

#[test]
fn the_articles_functions_work_from_sql_under_jemsafe_run_and_drop_removes_them() {
    let (_dir, sandbox, mut js, socket) = sandbox_with_library("sql-udf", "leak");

    sql(&socket, &jemsafe_sql(&[]));
    assert_eq!(
        created_functions(&socket),
        "jemsafe_dump,jemsafe_memory,jemsafe_status,jeprof_active_status,\
         jeprof_disable,jeprof_dump,jeprof_enable,jeprof_prof_status"
    );
    // Twice is harmless (IF NOT EXISTS).
    sql(&socket, &jemsafe_sql(&[]));

    assert_eq!(sql(&socket, "SELECT jeprof_prof_status()"), "1");
    assert_eq!(sql(&socket, "SELECT jeprof_active_status()"), "1");

    // jemalloc's own dump, named after its prof_prefix, in jemsafe's dump directory.
    let dumps = sandbox.join("dumps");
    let before = heap_files(&dumps);
    assert_eq!(sql(&socket, "SELECT jeprof_dump()"), "0");
    let after = heap_files(&dumps);
    assert_eq!(after.len(), before.len() + 1, "{before:?} -> {after:?}");
    // Any account may call it: of two calls in one row (well within the 1 s floor), the
    // second is refused with 1 and writes nothing.
    let row = sql(&socket, "SELECT jeprof_dump(), jeprof_dump()");
    let (first, second) = row.split_once('\t').unwrap();
    assert_eq!(second, "1", "{row}");
    let dumped = usize::from(first == "0");
    assert_eq!(heap_files(&dumps).len(), after.len() + dumped, "{row}");

    assert_eq!(sql(&socket, "SELECT jeprof_disable()"), "0");
    assert_eq!(sql(&socket, "SELECT jeprof_active_status()"), "0");
    assert_eq!(sql(&socket, "SELECT jeprof_prof_status()"), "1");
    assert_eq!(sql(&socket, "SELECT jeprof_enable()"), "0");
    assert_eq!(sql(&socket, "SELECT jeprof_active_status()"), "1");

    // Arguments are refused at init, with the reason.
    let refused = try_sql(&socket, "SELECT jeprof_dump(1)").unwrap_err();
    assert!(refused.contains("takes no arguments"), "{refused}");

    // Not yet through the supervisor: NULL, and the reason in the server's log.
    assert_eq!(sql(&socket, "SELECT jemsafe_dump()"), "NULL");
    js.err.wait_for(
        "jemsafe_udf: jemsafe_dump() through jemsafe's supervisor",
        START,
    );

    sql(&socket, &jemsafe_sql(&["--drop"]));
    assert_eq!(created_functions(&socket), "NULL");
    let gone = try_sql(&socket, "SELECT jeprof_dump()").unwrap_err();
    assert!(gone.contains("jeprof_dump"), "{gone}");
    // Dropping twice is harmless too.
    sql(&socket, &jemsafe_sql(&["--drop"]));

    js.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(js.wait_exit(Duration::from_secs(60)), 0);
}

#[test]
fn without_a_profiling_jemalloc_create_works_and_the_first_call_says_why() {
    // Profile `off`: jemalloc preloaded with prof:false.
    let (_dir, _sandbox, mut js, socket) = sandbox_with_library("sql-udf-off", "off");

    sql(&socket, &jemsafe_sql(&[]));
    for function in ["jeprof_dump", "jeprof_active_status", "jemsafe_status"] {
        let refused = try_sql(&socket, &format!("SELECT {function}()")).unwrap_err();
        assert!(
            refused.contains(&format!("Can't initialize function '{function}'"))
                && refused.contains("opt.prof is false: mysqld started without prof:true"),
            "{function}: {refused}"
        );
    }
    // The server is still up.
    assert_eq!(sql(&socket, "SELECT 1"), "1");

    js.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(js.wait_exit(Duration::from_secs(60)), 0);
}

/// mysqld as the sandbox `config` starts it, by hand (no jemsafe), loading plugins from
/// `plugins`, with the environment `env`; returns once it is ready.
fn mysqld_by_hand(config: &Path, plugins: &Path, env: &[(String, String)]) -> Running {
    let text = std::fs::read_to_string(config).unwrap();
    let table: toml::Table = text.parse().unwrap();
    let mysqld = &table["mysqld"];
    let path = mysqld
        .get("path")
        .and_then(|p| p.as_str())
        .unwrap_or("mariadbd");
    let mut cmd = Command::new(path);
    for arg in mysqld["args"].as_array().unwrap() {
        cmd.arg(arg.as_str().unwrap());
    }
    cmd.arg(format!("--plugin-dir={}", plugins.display()));
    let mut server = Running::start_command(cmd, |cmd| {
        cmd.envs(env.iter().map(|(k, v)| (k, v)));
    });
    server.err.wait_for("ready for connections", START);
    server
}

/// `jemsafe env -c config`'s variables (`KEY='value'` lines, sh-quoted without quotes
/// inside for these values).
fn jemsafe_env(config: &Path) -> Vec<(String, String)> {
    let out = Command::new(jemsafe_bin())
        .args(["env", "-c", config.to_str().unwrap()])
        .output()
        .expect("run jemsafe env");
    assert!(out.status.success(), "jemsafe env: {out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| (key.to_owned(), value.trim_matches('\'').to_owned()))
        .collect()
}

#[test]
fn by_hand_jeprof_functions_work_with_envs_preload_and_say_why_with_none() {
    let (dir, config) = prepared_sandbox("sql-udf-hand", "");
    let plugins = plugin_dir_with_library(&dir);
    let socket = dir.join("mysqld/mysqld.sock");

    // No jemalloc at all: CREATE works, the first call says why.
    let mut server = mysqld_by_hand(&config, &plugins, &[]);
    sql(&socket, &jemsafe_sql(&[]));
    let refused = try_sql(&socket, "SELECT jeprof_dump()").unwrap_err();
    assert!(
        refused.contains("no usable jemalloc in mysqld: start it with `jemsafe run`"),
        "{refused}"
    );
    server.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(server.wait_exit(Duration::from_secs(60)), 0);

    // `jemsafe env`'s LD_PRELOAD and MALLOC_CONF, as the article starts mysqld: the
    // functions (kept in mysql.func) work, and jemalloc writes at its prof_prefix.
    let env = jemsafe_env(&config);
    let malloc_conf = &env.iter().find(|(k, _)| k == "MALLOC_CONF").unwrap().1;
    let prefix = PathBuf::from(
        malloc_conf
            .split(',')
            .find_map(|o| o.strip_prefix("prof_prefix:"))
            .unwrap(),
    );
    let mut server = mysqld_by_hand(&config, &plugins, &env);
    assert_eq!(sql(&socket, "SELECT jeprof_prof_status()"), "1");
    assert_eq!(sql(&socket, "SELECT jeprof_dump()"), "0");
    let own_name = format!(
        "{}.{}.",
        prefix.file_name().unwrap().to_str().unwrap(),
        server.pid()
    );
    let written: Vec<PathBuf> = heap_files(prefix.parent().unwrap())
        .into_iter()
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with(&own_name)
        })
        .collect();
    assert_eq!(written.len(), 1, "{own_name}*.heap: {written:?}");

    // Without jemsafe's shim the jemsafe_* functions return NULL and say why.
    assert_eq!(sql(&socket, "SELECT jemsafe_dump()"), "NULL");
    server.err.wait_for(
        "jemsafe_udf: jemsafe_dump() needs mysqld started by `jemsafe run`",
        START,
    );
    server.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(server.wait_exit(Duration::from_secs(60)), 0);
}
