//! The command line as a user meets it: every exit status the documentation mentions comes
//! from the one table in src/error.rs (`EXIT_STATUSES`): the README's table, `--help`
//! texts, the example config and the systemd units' `RestartPreventExitStatus=`; and a
//! reader that stops reading (`jemsafe dumps | head -1`) ends no command with an error.

use crate::common::*;
use jemsafe::error::EXIT_STATUSES;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel))
        .unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn table_codes() -> BTreeSet<i32> {
    EXIT_STATUSES.iter().map(|s| s.code).collect()
}

/// Statuses that are not jemsafe's own failures: success, `check` finding problems,
/// mysqld's RESTART (16) passed through.
const NOT_FAILURES: [i32; 3] = [0, 1, 16];

/// The numbers that follow "exit", "exits", "exit status", "exit with status", "exit code"
/// in `text` (case-insensitive), with the line they stand on.
fn mentioned_statuses(text: &str) -> Vec<(i32, String)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let lower = line.to_ascii_lowercase();
        let words: Vec<&str> = lower
            .split(|c: char| c.is_whitespace() || matches!(c, '(' | ')' | ',' | ';' | '`' | '*'))
            .filter(|w| !w.is_empty())
            .collect();
        for (i, w) in words.iter().enumerate() {
            if !matches!(*w, "exit" | "exits" | "exited") {
                continue;
            }
            for next in words.iter().skip(i + 1).take(3) {
                if matches!(*next, "status" | "with" | "code" | "statuses") {
                    continue;
                }
                let digits: String = next.chars().take_while(|c| c.is_ascii_digit()).collect();
                let rest = &next[digits.len()..];
                // "128+N" is mysqld's death by a signal, passed through.
                if !digits.is_empty() && !rest.starts_with('+') {
                    if let Ok(n) = digits.parse() {
                        out.push((n, line.trim().to_owned()));
                    }
                }
                break;
            }
        }
    }
    out
}

fn assert_only_known(what: &str, text: &str) {
    let known = table_codes();
    let found = mentioned_statuses(text);
    for (n, line) in found {
        assert!(
            known.contains(&n) || NOT_FAILURES.contains(&n),
            "{what} mentions exit status {n}, which is not in src/error.rs EXIT_STATUSES: {line}"
        );
    }
}

#[test]
fn the_scanner_finds_statuses() {
    let found: Vec<i32> = mentioned_statuses(
        "stop mysqld and exit 3 when\nexit with status 70.\nExit status of `run` is mysqld's own (128+N if ...)\nthey exit 69.",
    )
    .into_iter()
    .map(|(n, _)| n)
    .collect();
    assert_eq!(found, [3, 70, 69]);
}

#[test]
fn readme_table_is_the_exit_status_table() {
    let readme = read("README.md");
    let start = readme
        .find("| status | meaning |")
        .expect("README has the exit status table");
    let rows: BTreeSet<i32> = readme[start..]
        .lines()
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            l.trim_start_matches('|')
                .split('|')
                .next()
                .and_then(|c| c.trim().parse().ok())
                .unwrap_or_else(|| panic!("README exit table row without a status: {l}"))
        })
        .collect();
    assert_eq!(rows, table_codes(), "README's exit status table");
    assert_only_known("README.md", &readme);
}

#[test]
fn example_config_and_help_mention_only_table_statuses() {
    assert_only_known("etc/jemsafe.toml", &read("etc/jemsafe.toml"));
    for cmd in [
        "check", "env", "run", "sandbox", "dump", "status", "prof", "memory", "dumps", "report",
        "archive", "leaks",
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_jemsafe"))
            .args([cmd, "--help"])
            .output()
            .expect("run jemsafe --help");
        assert!(out.status.success(), "jemsafe {cmd} --help");
        assert_only_known(
            &format!("jemsafe {cmd} --help"),
            &String::from_utf8_lossy(&out.stdout),
        );
    }
}

#[test]
fn systemd_units_prevent_restart_exactly_where_it_cannot_help() {
    let want: BTreeSet<i32> = EXIT_STATUSES
        .iter()
        .filter(|s| s.restart_helps == Some(false))
        .map(|s| s.code)
        .collect();
    for unit in [
        "systemd/jemsafe.service",
        "systemd/mariadb.service.d/jemsafe.conf",
        "systemd/mysql.service.d/jemsafe.conf",
        "systemd/mysqld.service.d/jemsafe.conf",
    ] {
        let text = read(unit);
        let values: Vec<BTreeSet<i32>> = text
            .lines()
            .filter_map(|l| l.strip_prefix("RestartPreventExitStatus="))
            .filter(|v| !v.trim().is_empty())
            .map(|v| {
                v.split_whitespace()
                    .filter_map(|n| n.parse().ok())
                    .collect()
            })
            .collect();
        assert_eq!(
            values,
            std::slice::from_ref(&want),
            "{unit}: RestartPreventExitStatus="
        );
    }
}

/// Runs jemsafe with `args`, its standard output a pipe whose reader has already gone:
/// the first write fails with EPIPE (Rust ignores SIGPIPE), as under `| head -1`.
fn with_closed_stdout(args: &[&str]) -> std::process::Output {
    let (reader, writer) = nix::unistd::pipe().unwrap();
    drop(reader);
    Command::new(jemsafe_bin())
        .args(args)
        .stdout(std::process::Stdio::from(writer))
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("run jemsafe")
}

#[test]
fn a_closed_pipe_ends_every_command_quietly() {
    let dir = TempDir::new("pipe");
    let config = workload_config(&dir, "leak", &[], "");
    let c = config.to_str().unwrap();
    std::fs::create_dir_all(dir.join("dumps")).unwrap();
    // A dump with a sidecar-less name for `dumps` to list.
    std::fs::write(dir.join("dumps/mysqld.1.0.m0.heap"), "heap_v2/524288\n").unwrap();
    for args in [
        &["dumps", "-c", c][..],
        &["env", "-c", c],
        &["check", "-c", c],
        &["--help"],
    ] {
        let out = with_closed_stdout(args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "jemsafe {args:?} into a closed pipe: {out:?}"
        );
        assert!(
            out.stderr.is_empty() || !String::from_utf8_lossy(&out.stderr).contains("panicked"),
            "jemsafe {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !String::from_utf8_lossy(&out.stderr).contains("Broken pipe"),
            "jemsafe {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
