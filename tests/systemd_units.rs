//! The drop-ins keep what the distribution's units pass to mysqld.

use crate::common::*;
use nix::sys::signal::Signal;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// `ExecStart=` values of a unit or drop-in, continuation lines joined.
fn exec_starts(text: &str) -> Vec<String> {
    let joined = text.replace("\\\n", "");
    joined
        .lines()
        .filter_map(|l| l.strip_prefix("ExecStart="))
        .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

fn dropin() -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/mariadb.service.d/jemsafe.conf"),
    )
    .unwrap()
}

#[test]
fn mariadb_dropin_is_debians_execstart_with_jemsafe_in_front_of_mariadbd() {
    let debian = std::fs::read_to_string("/lib/systemd/system/mariadb.service")
        .expect("Debian's mariadb.service (apt-get install mariadb-server)");
    let original = exec_starts(&debian);
    assert_eq!(original.len(), 1, "{original:?}");
    let ours = exec_starts(&dropin());
    assert_eq!(ours[0], "", "the drop-in must reset ExecStart first");
    let expected = original[0].replace(
        "exec /usr/sbin/mariadbd ",
        "exec /usr/sbin/jemsafe run -c /etc/jemsafe/jemsafe.toml -- ",
    );
    assert_ne!(
        expected, original[0],
        "Debian's ExecStart no longer execs /usr/sbin/mariadbd"
    );
    assert_eq!(ours[1], expected);
    for kept in [
        "$MYSQLD_OPTS",
        "$_WSREP_NEW_CLUSTER",
        "$VAR",
        "galera_recovery",
    ] {
        assert!(ours[1].contains(kept), "{kept} lost");
    }
}

#[test]
fn the_dropins_command_line_passes_mysqld_opts_through() {
    // Run the drop-in's ExecStart the way systemd would (sh -c, environment from the
    // unit), with our binary and a workload config in place of the installed paths.
    let dir = TempDir::new("dropin");
    let config = workload_config(&dir, "standby", &[], "");
    let cmd = exec_starts(&dropin())[1]
        .replace("/usr/sbin/jemsafe", jemsafe_bin().to_str().unwrap())
        .replace("/etc/jemsafe/jemsafe.toml", config.to_str().unwrap());
    let script = cmd
        .strip_prefix("/bin/sh -c \"")
        .and_then(|s| s.strip_suffix('"'))
        .expect("sh -c \"...\"")
        .to_owned();
    let mut sh = Command::new("/bin/sh");
    sh.arg("-c").arg(script);
    let mut js = Running::start_command(sh, |c| {
        c.env("MYSQLD_OPTS", "--alloc-mb 2 --on-term-exit 0")
            .env("_WSREP_NEW_CLUSTER", "--report-child");
    });
    let pid = js.wait_verified(Duration::from_secs(30));
    js.out.wait_for("ready pid=", Duration::from_secs(30));
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    assert!(
        args.ends_with(&[
            "--alloc-mb".into(),
            "2".into(),
            "--on-term-exit".into(),
            "0".into(),
            "--report-child".into(),
            "".into()
        ]),
        "{args:?}"
    );
    js.signal(Signal::SIGTERM);
    assert_eq!(js.wait_exit(Duration::from_secs(30)), 0);
}
