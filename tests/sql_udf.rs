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

/// `query` as the account `user` (password `password`) over `socket`: the output, or
/// the error message.
fn try_sql_as(socket: &Path, user: &str, password: &str, query: &str) -> Result<String, String> {
    let out = Command::new("mariadb")
        .arg(format!("--socket={}", socket.display()))
        .args([
            &format!("-u{user}"),
            &format!("-p{password}"),
            "--batch",
            "--skip-column-names",
            "-e",
            query,
        ])
        .output()
        .expect("run the mariadb client");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// The dumps with the trigger `sql` in `dir`.
fn sql_dumps(dir: &Path) -> Vec<PathBuf> {
    heap_files(dir)
        .into_iter()
        .filter(|p| p.to_str().unwrap().ends_with(".sql.heap"))
        .collect()
}

/// A JSON text's object keys, sorted.
fn keys(json: &serde_json::Value) -> Vec<String> {
    let mut keys: Vec<String> = json.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    keys
}

/// `jemsafe <command> --json -c config`, parsed.
fn jemsafe_json(command: &str, config: &Path) -> serde_json::Value {
    let out = cli(&[command, "--json", "-c", config.to_str().unwrap()]);
    assert!(out.status.success(), "jemsafe {command}: {out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn sql_goes_through_jemsafe_as_allow_permits_for_every_account_and_survives_a_restart() {
    let (_dir, sandbox, mut js, socket) = sandbox_with_library("sql-udf", "leak");
    let config = sandbox.join("jemsafe.toml");
    let dumps = sandbox.join("dumps");

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

    // A dump from SQL is one of jemsafe's: trigger `sql`, a sidecar, logged, readable by
    // `report`; jemsafe_dump() returns its exact path.
    let path = sql(&socket, "SELECT jemsafe_dump()");
    assert!(path.starts_with(dumps.to_str().unwrap()), "{path}");
    assert!(path.ends_with(".sql.heap"), "{path}");
    assert!(Path::new(&path).is_file(), "{path}");
    assert!(Path::new(&format!("{path}.json")).is_file(), "{path}.json");
    js.err
        .wait_for(&format!("heap dump written: {path} ("), START);
    let report = cli(&["report", &path, "--top", "5"]);
    assert!(report.status.success(), "report {path}: {report:?}");
    assert!(!report.stdout.is_empty());

    // The article's jeprof_dump() takes the same path (after storm control's interval).
    let before = sql_dumps(&dumps).len();
    assert_eq!(sql(&socket, "SELECT jeprof_dump()"), "0");
    assert_eq!(sql_dumps(&dumps).len(), before + 1);
    let last = sql_dumps(&dumps).pop().unwrap();

    let status: serde_json::Value =
        serde_json::from_str(&sql(&socket, "SELECT jemsafe_status()")).unwrap();
    assert_eq!(status["opt_prof"], true, "{status}");
    assert_eq!(status["prof_active"], true, "{status}");
    assert!(status["lg_prof_sample"].is_u64(), "{status}");
    assert!(status["jemalloc_version"].is_string(), "{status}");
    assert_eq!(
        status["last_dump"]["path"],
        last.to_str().unwrap(),
        "{status}"
    );
    assert!(status["last_dump"]["time"].is_string(), "{status}");
    assert_eq!(status["supervisor_pid"], js.pid(), "{status}");

    let memory: serde_json::Value =
        serde_json::from_str(&sql(&socket, "SELECT jemsafe_memory()")).unwrap();
    let mut cli_keys = keys(&jemsafe_json("memory", &config));
    cli_keys.retain(|k| k != "ok");
    assert_eq!(keys(&memory), cli_keys);

    // Switching profiling is not in the default `[sql] allow`: the failure value, and
    // the reason (naming the key) in the error log; nothing changed.
    assert_eq!(sql(&socket, "SELECT jeprof_disable()"), "1");
    js.err.wait_for(
        "jemsafe_udf: jeprof_disable() failed: prof-off from SQL is not permitted by `[sql] allow`",
        START,
    );
    assert_eq!(sql(&socket, "SELECT jeprof_active_status()"), "1");

    // An account with no privilege at all may call what `allow` permits, and no more.
    sql(
        &socket,
        "CREATE USER 'dba'@'localhost' IDENTIFIED BY 'dba-secret'",
    );
    let theirs = try_sql_as(&socket, "dba", "dba-secret", "SELECT jemsafe_dump()").unwrap();
    assert!(theirs.ends_with(".sql.heap"), "{theirs}");
    assert!(Path::new(&theirs).is_file(), "{theirs}");
    assert_eq!(
        try_sql_as(&socket, "dba", "dba-secret", "SELECT jeprof_enable()"),
        Ok("1".to_owned())
    );
    assert_eq!(
        try_sql_as(&socket, "dba", "dba-secret", "SELECT jeprof_disable()"),
        Ok("1".to_owned())
    );
    assert_eq!(sql(&socket, "SELECT jeprof_active_status()"), "1");

    // Arguments are refused at init, with the reason.
    let refused = try_sql(&socket, "SELECT jeprof_dump(1)").unwrap_err();
    assert!(refused.contains("takes no arguments"), "{refused}");

    // mysqld killed: jemsafe starts another, the functions are still in mysql.func and
    // work again with the new shim.
    let first = js.wait_started(1, START);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let second = js.wait_started(2, START);
    js.err.wait_for_nth("ready for connections", 2, START);
    assert_eq!(
        created_functions(&socket),
        "jemsafe_dump,jemsafe_memory,jemsafe_status,jeprof_active_status,\
         jeprof_disable,jeprof_dump,jeprof_enable,jeprof_prof_status"
    );
    let again = sql(&socket, "SELECT jemsafe_dump()");
    assert!(again.contains(&format!(".{second}.")), "{again}");
    assert!(Path::new(&again).is_file(), "{again}");

    sql(&socket, &jemsafe_sql(&["--drop"]));
    assert_eq!(created_functions(&socket), "NULL");
    let gone = try_sql(&socket, "SELECT jeprof_dump()").unwrap_err();
    assert!(gone.contains("jeprof_dump"), "{gone}");
    // Dropping twice is harmless too.
    sql(&socket, &jemsafe_sql(&["--drop"]));

    js.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(js.wait_exit(Duration::from_secs(60)), 0);
}

/// How long a call from SQL waits in [`prof_from_sql_when_allowed_and_a_load_stays_bounded`].
const TIMEOUT_MS: u64 = 4000;

#[test]
fn prof_from_sql_when_allowed_and_a_load_stays_bounded() {
    let port = free_port();
    let (dir, config) = prepared_sandbox(
        "sql-udf-load",
        &format!(
            "[sql]\nallow = [\"dump\", \"status\", \"memory\", \"prof\"]\ntimeout_ms = {TIMEOUT_MS}\n\
             [http]\nlisten = \"127.0.0.1:{port}\"\npprof = false\n"
        ),
    );
    let plugins = plugin_dir_with_library(&dir);
    let mut js = Running::start(&[
        "run",
        "-c",
        config.to_str().unwrap(),
        "-p",
        "leak",
        "--",
        &format!("--plugin-dir={}", plugins.display()),
    ]);
    js.wait_started(1, START);
    js.err.wait_for("ready for connections", START);
    let socket = dir.join("mysqld/mysqld.sock");
    let dumps = dir.join("dumps");
    sql(&socket, &jemsafe_sql(&[]));

    // `jemsafe prof off` from SQL: jemsafe's status and log know.
    assert_eq!(sql(&socket, "SELECT jeprof_disable()"), "0");
    js.err
        .wait_for("deactivate: prof.active is now false", START);
    assert_eq!(
        jemsafe_json("status", &config)["jemalloc"]["prof_active"],
        false
    );
    assert_eq!(sql(&socket, "SELECT jeprof_active_status()"), "0");
    assert_eq!(sql(&socket, "SELECT jeprof_enable()"), "0");
    assert_eq!(sql(&socket, "SELECT jeprof_active_status()"), "1");

    // 8 connections, 25 calls each. NOW(6) is each statement's start: the next one's
    // start bounds a call's time.
    let before = sql_dumps(&dumps).len();
    let started = std::time::Instant::now();
    let connections: Vec<_> = (0..8)
        .map(|_| {
            let socket = socket.clone();
            std::thread::spawn(move || {
                let script = "SELECT UNIX_TIMESTAMP(NOW(6)), jemsafe_dump();".repeat(25)
                    + "SELECT UNIX_TIMESTAMP(NOW(6)), 'end';";
                sql(&socket, &script)
            })
        })
        .collect();
    let mut answers = Vec::new();
    let mut longest = 0f64;
    for connection in connections {
        let rows: Vec<(f64, String)> = connection
            .join()
            .unwrap()
            .lines()
            .map(|row| {
                let (at, value) = row.split_once('\t').unwrap();
                (at.parse().unwrap(), value.to_owned())
            })
            .collect();
        assert_eq!(rows.len(), 26);
        for pair in rows.windows(2) {
            longest = longest.max(pair[1].0 - pair[0].0);
        }
        answers.extend(rows.into_iter().take(25).map(|(_, v)| v));
    }
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(answers.len(), 200);
    assert!(
        longest < (TIMEOUT_MS as f64) / 1000.0 + 1.0,
        "a call took {longest:.3} s"
    );
    // Every call got a dump's path, and storm control (one dump a second at most)
    // made far fewer dumps than calls.
    assert!(
        answers.iter().all(|a| a.ends_with(".sql.heap")),
        "{answers:?}"
    );
    let made = sql_dumps(&dumps).len() - before;
    assert!(
        made >= 1 && made as f64 <= elapsed + 2.0,
        "{made} dumps in {elapsed:.1} s"
    );
    assert_eq!(sql(&socket, "SELECT 1"), "1");
    // Counted with their trigger (fewer than `[dumps] keep`: none was deleted).
    let all = sql_dumps(&dumps).len();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let metrics = String::from_utf8(http_get(addr, "/metrics", &[], START).1).unwrap();
    assert!(
        metrics.contains(&format!("jemsafe_dumps_total{{trigger=\"sql\"}} {all}\n")),
        "{all} sql dumps: {metrics}"
    );

    // jemsafe going away while a call waits: the call ends at once with NULL (not at its
    // deadline) and the server stays up. jemsafe is stopped first so that the call waits.
    let jemsafe = nix::unistd::Pid::from_raw(js.pid());
    nix::sys::signal::kill(jemsafe, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let waiting = {
        let socket = socket.clone();
        std::thread::spawn(move || {
            let started = std::time::Instant::now();
            (sql(&socket, "SELECT jemsafe_dump()"), started.elapsed())
        })
    };
    // Until the call is running inside the server.
    let running = "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
                   WHERE INFO = 'SELECT jemsafe_dump()'";
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while sql(&socket, running) != "1" {
        assert!(std::time::Instant::now() < deadline, "the call never ran");
    }
    nix::sys::signal::kill(jemsafe, nix::sys::signal::Signal::SIGKILL).unwrap();
    let (answer, took) = waiting.join().unwrap();
    assert_eq!(answer, "NULL");
    assert!(took < Duration::from_millis(TIMEOUT_MS), "{took:?}");
    assert_eq!(sql(&socket, "SELECT 1"), "1");
    assert_eq!(js.wait_exit(Duration::from_secs(60)), 128 + 9);
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
