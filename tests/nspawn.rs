//! The .deb under a real systemd: a Debian 12 tree (packaging/nspawn-tree, cached) with
//! mariadb-server, booted with systemd-nspawn on a copy-on-write overlay with the package
//! installed, and used as the README says: the drop-in on Debian's `mariadb.service`
//! (socket activation on, as Debian ships it, and off), dumps by `systemctl kill`, stop,
//! restart, a crash, a broken config, `jemsafe.service`. Facts it relies on:
//! REFERENCE.md, "systemd in a container".

use crate::common::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

const BOOT: Duration = Duration::from_secs(60);
const T: Duration = Duration::from_secs(120);

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs one of packaging/'s scripts; its last stdout line (the path it prints).
fn packaging(script: &str, timeout: Duration) -> PathBuf {
    let out = run_bounded(Command::new(repo().join("packaging").join(script)), timeout);
    assert_eq!(
        out.code,
        0,
        "packaging/{script} failed:\n{}",
        out.stderr
            .lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .join("\n")
    );
    PathBuf::from(out.out().lines().last().unwrap_or_default().trim())
}

/// This process's cgroup in each hierarchy nspawn needs, as a path under /sys/fs/cgroup.
fn own_cgroup(hierarchy: &str) -> PathBuf {
    let text = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let key = match hierarchy {
        "memory" => "memory",
        "systemd" => "name=systemd",
        _ => "",
    };
    let rel = text
        .lines()
        .find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, controllers, path) = (f.next()?, f.next()?, f.next()?);
            controllers
                .split(',')
                .any(|c| c == key)
                .then(|| path.to_owned())
        })
        .unwrap_or_else(|| panic!("no {hierarchy} cgroup in /proc/self/cgroup: {text}"));
    Path::new("/sys/fs/cgroup")
        .join(hierarchy)
        .join(rel.trim_start_matches('/'))
}

/// A booted container on an overlay of the cached tree; halted, unmounted and its
/// cgroups removed when dropped, whatever happened.
struct Container {
    nspawn: Option<Child>,
    leader: i32,
    merged: PathBuf,
    mounted: bool,
    cgroups: Vec<PathBuf>,
    dir: Option<TempDir>,
}

impl Container {
    /// The tree with the .deb installed and the drop-in in place, as README's "Installing
    /// on a server" says; not booted yet.
    fn prepare(tree: &Path, deb: &Path) -> Container {
        let dir = TempDir::new("nspawn");
        for d in ["upper", "work", "root"] {
            std::fs::create_dir(dir.join(d)).unwrap();
        }
        let merged = dir.join("root");
        let mut c = Container {
            nspawn: None,
            leader: 0,
            merged: merged.clone(),
            mounted: false,
            cgroups: Vec::new(),
            dir: Some(dir),
        };
        let dir = c.dir.as_ref().unwrap();
        let opts = format!(
            "lowerdir={},upperdir={},workdir={}",
            tree.display(),
            dir.join("upper").display(),
            dir.join("work").display()
        );
        let mount = Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o", &opts])
            .arg(&merged)
            .status()
            .unwrap();
        assert!(mount.success(), "mount the overlay: {opts}");
        c.mounted = true;
        std::fs::copy(deb, merged.join("tmp/jemsafe.deb")).unwrap();
        let install = run_bounded(
            chroot(
                &merged,
                "dpkg -i /tmp/jemsafe.deb && mkdir -p /etc/systemd/system/mariadb.service.d && \
                 cp /usr/share/doc/jemsafe/examples/systemd/mariadb.service.d/jemsafe.conf \
                 /etc/systemd/system/mariadb.service.d/",
            ),
            T,
        );
        assert_eq!(install.code, 0, "{}{}", install.out(), install.stderr);
        c
    }

    /// Boots it: nspawn in cgroups of its own, with a writable memory cgroup (else
    /// MemoryMax= is silently ignored), no network but lo; returns once systemd says the
    /// boot is over.
    fn boot(&mut self) {
        let name = self.name();
        for hierarchy in ["memory", "systemd", "unified"] {
            let group = own_cgroup(hierarchy).join(&name);
            std::fs::create_dir(&group)
                .unwrap_or_else(|e| panic!("mkdir {}: {e}", group.display()));
            self.cgroups.push(group);
        }
        self.start_nspawn(&name, &["-b", "--console=passive"], None);
        // is-system-running --wait blocks until the boot is over; nsenter needs the
        // namespaces, which exist once PID 1 runs systemd.
        let deadline = Instant::now() + BOOT;
        loop {
            // nspawn's first child may be an intermediate process that forks PID 1.
            self.leader = self.nspawn_child().unwrap_or(self.leader);
            let state = self.sh("systemctl is-system-running --wait");
            let state = state.out();
            if state.contains("running") || state.contains("degraded") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the container did not boot within {BOOT:?}: {state}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts systemd-nspawn on the tree in the container's cgroups with `args` (then
    /// `command`, run as PID 1 when not booting) and waits for its PID 1 to exist;
    /// stdout and stderr go to `output` (None: discarded).
    fn start_nspawn(&mut self, name: &str, args: &[&str], output: Option<&Path>) {
        let mut sh = Command::new("/bin/sh");
        sh.arg("-c")
            .arg(
                "for g in \"$1\" \"$2\" \"$3\"; do echo $$ > \"$g/cgroup.procs\" || exit 1; done; \
                 mem=$1; shift 3; \
                 exec systemd-nspawn -q --register=no --keep-unit --private-network \
                 --tmpfs=/sys/fs/cgroup:mode=755 --bind=\"$mem\":/sys/fs/cgroup/memory \"$@\"",
            )
            .arg("sh")
            .args(&self.cgroups)
            .arg("-D")
            .arg(&self.merged)
            .args(["-M", name])
            .args(args)
            .stdin(std::process::Stdio::null());
        match output {
            Some(path) => {
                let file = std::fs::File::create(path).unwrap();
                sh.stdout(file.try_clone().unwrap()).stderr(file);
            }
            None => {
                sh.stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null());
            }
        }
        self.nspawn = Some(sh.spawn().expect("start systemd-nspawn"));
        self.leader = 0;
        // The container's PID 1 is nspawn's child; it appears within moments.
        let deadline = Instant::now() + BOOT;
        while self.leader == 0 {
            self.leader = self.nspawn_child().unwrap_or(0);
            if let Some(status) = self
                .nspawn
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("systemd-nspawn exited with {status} before its PID 1 ran");
            }
            assert!(
                Instant::now() < deadline,
                "no container PID 1 within {BOOT:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// nspawn's child process now.
    fn nspawn_child(&self) -> Option<i32> {
        let pid = self.nspawn.as_ref()?.id();
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .ok()?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    /// Halts the container: SIGTERM to nspawn (about 1.6 s for a booted one); bounded,
    /// then SIGKILL to its PID 1, which ends every process in it, and to nspawn. Returns
    /// nspawn's exit status if it exited by itself.
    fn halt(&mut self) -> Option<std::process::ExitStatus> {
        let mut nspawn = self.nspawn.take()?;
        unsafe { libc::kill(nspawn.id() as i32, libc::SIGTERM) };
        let status = exits_within(&mut nspawn, Duration::from_secs(30));
        if status.is_none() {
            if self.leader > 0 {
                unsafe { libc::kill(self.leader, libc::SIGKILL) };
            }
            let _ = nspawn.kill();
        }
        let _ = nspawn.wait();
        status
    }

    /// The machine name: unique per test process and overlay.
    fn name(&self) -> String {
        let tag = self
            .merged
            .parent()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().replace('.', "-"))
            .unwrap_or_default();
        format!("jemsafe-{}-{tag}", std::process::id())
    }

    /// `script` run by /bin/sh inside the booted container.
    fn sh(&self, script: &str) -> Outcome {
        let mut cmd = Command::new("nsenter");
        cmd.args([
            "-t",
            &self.leader.to_string(),
            "-a",
            "/bin/sh",
            "-c",
            script,
        ]);
        run_bounded(cmd, T)
    }

    /// Like `sh`, failing the test unless it exits 0; its stdout, trimmed.
    fn ok(&self, script: &str) -> String {
        let out = self.sh(script);
        assert_eq!(
            out.code,
            0,
            "in the container: {script}\n{}{}\nthe journal's end:\n{}",
            out.out(),
            out.stderr,
            self.sh("journalctl -n 40 --no-pager").out()
        );
        out.out().trim().to_owned()
    }

    /// The journal's cursor now: what happens next is after it.
    fn cursor(&self) -> String {
        let out = self.ok("journalctl -n 0 --show-cursor");
        out.lines()
            .find_map(|l| l.strip_prefix("-- cursor: "))
            .expect("a cursor")
            .to_owned()
    }

    /// The unit's journal entries after `cursor` ("": all of them), as JSON objects.
    fn journal(&self, unit: &str, cursor: &str) -> Vec<serde_json::Value> {
        let after = if cursor.is_empty() {
            String::new()
        } else {
            format!("--after-cursor='{cursor}'")
        };
        self.ok(&format!("journalctl -u {unit} {after} -o json --no-pager"))
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits (bounded) for a journal entry of `unit` after `cursor` whose MESSAGE
    /// contains `needle`; returns it.
    fn wait_journal(&self, unit: &str, cursor: &str, needle: &str) -> serde_json::Value {
        let deadline = Instant::now() + T;
        loop {
            if let Some(e) = self
                .journal(unit, cursor)
                .into_iter()
                .find(|e| message(e).contains(needle))
            {
                return e;
            }
            assert!(
                Instant::now() < deadline,
                "no journal line of {unit} with {needle:?} within {T:?}:\n{}\n{}",
                self.sh(&format!(
                    "journalctl -u {unit} --after-cursor='{cursor}' --no-pager"
                ))
                .out(),
                self.sh(&format!(
                    "ps -eo pid,ppid,stat,comm; systemctl status --no-pager {unit}"
                ))
                .out()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `systemctl show -p PROP --value UNIT`.
    fn prop(&self, unit: &str, prop: &str) -> String {
        self.ok(&format!("systemctl show -p {prop} --value {unit}"))
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        self.halt();
        if self.mounted {
            let gone = Command::new("umount")
                .arg("--lazy")
                .arg(&self.merged)
                .status()
                .is_ok_and(|s| s.success());
            if !gone {
                // Never let the temp dir's removal reach the cached tree through a mount.
                std::mem::forget(self.dir.take());
            }
        }
        for group in self.cgroups.iter().rev() {
            remove_cgroup(group);
        }
    }
}

fn exits_within(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().ok().flatten() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// rmdir of a cgroup and the groups systemd made below it, depth-first; a group whose
/// last process is still exiting is busy for a moment, so each rmdir is retried (bounded).
fn remove_cgroup(group: &Path) {
    if let Ok(entries) = std::fs::read_dir(group) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup(&e.path());
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::remove_dir(group).is_err() && group.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn chroot(root: &Path, script: &str) -> Command {
    let mut cmd = Command::new("chroot");
    cmd.arg(root).args(["/bin/sh", "-c", script]);
    cmd
}

fn message(entry: &serde_json::Value) -> String {
    match &entry["MESSAGE"] {
        serde_json::Value::String(s) => s.clone(),
        // journald stores non-UTF-8 messages as byte arrays.
        serde_json::Value::Array(bytes) => {
            let b: Vec<u8> = bytes
                .iter()
                .filter_map(|v| v.as_u64().map(|n| n as u8))
                .collect();
            String::from_utf8_lossy(&b).into_owned()
        }
        _ => String::new(),
    }
}

fn field(entry: &serde_json::Value, name: &str) -> String {
    entry[name].as_str().unwrap_or_default().to_owned()
}

/// Position in `entries` of the first one matching `pred`.
fn position(entries: &[serde_json::Value], pred: impl Fn(&serde_json::Value) -> bool) -> usize {
    entries
        .iter()
        .position(pred)
        .unwrap_or_else(|| panic!("not in the journal: {entries:#?}"))
}

/// mysqld's pid: the child of mariadb.service's main process, jemsafe.
const MYSQLD_PID: &str = "pgrep -P $(systemctl show -p MainPID --value mariadb)";

/// systemd's "unit started" catalog message (sd-messages.h SD_MESSAGE_UNIT_STARTED).
const UNIT_STARTED: &str = "39f53479d3a045ac8e11786248231fbf";

/// One timed step, reported on stderr (the closing note's timings).
fn step<R>(name: &str, f: impl FnOnce() -> R) -> R {
    let t = Instant::now();
    let r = f();
    eprintln!(
        "nspawn step {name}: ok in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    r
}

/// `systemctl restart mariadb`, then: active only after mariadbd said it is ready and
/// jemsafe verified it; the "verified" line at PRIORITY 6; SQL answers.
fn restart_is_ready_when_active(c: &Container) {
    let cursor = c.cursor();
    c.ok("systemctl restart mariadb");
    assert_eq!(c.ok("systemctl is-active mariadb"), "active");
    // journald reads service output asynchronously: wait until it has the lines.
    c.wait_journal("mariadb", &cursor, "ready for connections");
    c.wait_journal("mariadb", &cursor, "verified: mysqld pid");
    let entries = c.journal("mariadb", &cursor);
    let started = position(&entries, |e| field(e, "MESSAGE_ID") == UNIT_STARTED);
    let ready = position(&entries, |e| message(e).contains("ready for connections"));
    let verified = position(&entries, |e| message(e).contains("verified: mysqld pid"));
    assert!(
        ready < started && verified < started,
        "the unit was active before mysqld was ready: {entries:#?}"
    );
    assert_eq!(field(&entries[verified], "PRIORITY"), "6");
    assert_eq!(c.ok("mariadb -uroot -N -e 'SELECT 1+1'"), "2");
}

#[test]
fn the_deb_under_a_booted_debian_12_systemd() {
    let deb = step("1 build the .deb", || {
        packaging("build-deb", Duration::from_secs(1800))
    });
    let tree = step("2-3 Debian 12 tree with mariadb-server", || {
        packaging("nspawn-tree", Duration::from_secs(1800))
    });
    let mut c = step("3 the .deb and the drop-in into an overlay", || {
        Container::prepare(&tree, &deb)
    });
    step("4 boot", || c.boot());

    step(
        "4.1 drop-in, socket activation on (Debian's default)",
        || {
            // Debian 12's mariadb-server 10.11.18 enabled the socket at installation, 10.11.19
            // does not: enabled here either way, as on the servers that have it.
            c.ok("systemctl stop mariadb && systemctl enable --now mariadb.socket");
            assert_eq!(c.ok("systemctl is-active mariadb.socket"), "active");
            restart_is_ready_when_active(&c);
            // mariadbd serves on systemd's sockets: jemsafe passed them on.
            let pid = c.ok(MYSQLD_PID);
            let env = c.ok(&format!("tr '\\0' '\\n' < /proc/{pid}/environ"));
            assert!(env.contains(&format!("LISTEN_PID={pid}")), "{env}");
            assert!(env.contains("LISTEN_FDS=3"), "{env}");
        },
    );
    step(
        "4.2 a dump by systemctl kill -s USR1 --kill-whom=main",
        || {
            let cursor = c.cursor();
            c.ok("systemctl kill -s USR1 --kill-whom=main mariadb");
            let line = message(&c.wait_journal("mariadb", &cursor, "heap dump written: "));
            let path = dump_path(&line);
            assert!(path.starts_with("/var/lib/jemsafe"), "{line}");
            let owner = c.ok(&format!(
                "stat -c %U {0} && stat -c %U {0}.json",
                path.display()
            ));
            assert_eq!(owner, "mysql\nmysql", "{line}");
            assert_eq!(c.ok("systemctl is-active mariadb"), "active");
        },
    );
    step("4.3 stop, then two restarts in a row", || {
        // Stopped right after a start: debian-start's background helpers still run.
        c.ok("systemctl restart mariadb");
        let cursor = c.cursor();
        // The socket too: a connection to it (debian-start's helpers make some) would
        // start the service again.
        c.ok("systemctl stop mariadb.socket mariadb");
        c.wait_journal("mariadb", &cursor, "Shutdown complete");
        assert_eq!(c.sh("systemctl is-active mariadb").out().trim(), "inactive");
        assert_eq!(c.prop("mariadb", "Result"), "success");
        c.ok("systemctl start mariadb.socket");
        restart_is_ready_when_active(&c);
        restart_is_ready_when_active(&c);
    });
    step(
        "4.4 a crash: jemsafe restarts mariadbd, systemd does not",
        || {
            let main = c.prop("mariadb", "MainPID");
            let old = c.ok(MYSQLD_PID);
            c.ok(&format!("kill -9 {old}"));
            // Found by the killed pid in the whole journal: journald reads service output
            // asynchronously, so a cursor taken just before the kill can come after
            // lines written before it.
            let killed = format!("mysqld pid {old} was killed by SIGKILL: restarting it in");
            c.wait_journal("mariadb", "", &killed);
            let deadline = Instant::now() + T;
            loop {
                let entries = c.journal("mariadb", "");
                let at = position(&entries, |e| message(e).contains(&killed));
                if entries[at..]
                    .iter()
                    .any(|e| message(e).contains("told systemd READY=1"))
                {
                    break;
                }
                assert!(Instant::now() < deadline, "no READY=1 after the restart");
                std::thread::sleep(Duration::from_millis(200));
            }
            assert_eq!(c.prop("mariadb", "MainPID"), main);
            assert_eq!(c.prop("mariadb", "NRestarts"), "0");
            assert_eq!(c.ok("mariadb -uroot -N -e 'SELECT 3'"), "3");
        },
    );
    step("4.1 drop-in, socket activation off", || {
        c.ok("systemctl disable --now mariadb.socket");
        restart_is_ready_when_active(&c);
        let pid = c.ok(MYSQLD_PID);
        let env = c.ok(&format!("tr '\\0' '\\n' < /proc/{pid}/environ"));
        assert!(!env.contains("LISTEN_FDS"), "{env}");
    });
    step(
        "4.5 a broken config: failed, no restart loop, file and line",
        || {
            c.ok("cp /etc/jemsafe/jemsafe.toml /tmp/good.toml && \
              sed -i 's/^keep = 50/keep = \"many\"/' /etc/jemsafe/jemsafe.toml");
            let cursor = c.cursor();
            assert_ne!(c.sh("systemctl restart mariadb").code, 0);
            assert_eq!(c.sh("systemctl is-failed mariadb").out().trim(), "failed");
            assert_eq!(c.prop("mariadb", "ExecMainStatus"), "78");
            assert_eq!(c.prop("mariadb", "NRestarts"), "0");
            let error = c.wait_journal("mariadb", &cursor, "/etc/jemsafe/jemsafe.toml");
            assert!(message(&error).contains("line "), "{error:#}");
            assert_eq!(field(&error, "PRIORITY"), "3", "{error:#}");
            // The explanation is a line of its own in the journal: an error too.
            let why = c.wait_journal("mariadb", &cursor, "invalid type");
            assert_eq!(field(&why, "PRIORITY"), "3", "{why:#}");
            c.ok("cp /tmp/good.toml /etc/jemsafe/jemsafe.toml && systemctl reset-failed mariadb");
        },
    );
    step(
        "4.6 a memory limit on the unit: limit dump, OOM kill explained",
        || {
            a_memory_limit_on_the_unit(&c);
        },
    );
    step("4.7 jemsafe.service: start, dump, stop", || {
        c.ok("systemctl stop mariadb");
        let cursor = c.cursor();
        c.ok("systemctl start jemsafe");
        assert_eq!(c.ok("systemctl is-active jemsafe"), "active");
        c.wait_journal("jemsafe", &cursor, "verified: mysqld pid");
        assert_eq!(c.ok("mariadb -uroot -N -e 'SELECT 4'"), "4");
        c.ok("systemctl kill -s USR1 --kill-whom=main jemsafe");
        c.wait_journal("jemsafe", &cursor, "heap dump written: ");
        // The unit's sandboxing leaves the control socket and the timeline working.
        let status = c.ok("jemsafe status -c /etc/jemsafe/jemsafe.toml");
        assert!(status.contains("verified"), "{status}");
        c.ok("jemsafe timeline -c /etc/jemsafe/jemsafe.toml --format csv | grep -q .");
        c.ok("systemctl stop jemsafe");
        c.wait_journal("jemsafe", &cursor, "Shutdown complete");
        assert_eq!(c.prop("jemsafe", "Result"), "success");
    });
    step("4.9 systemd-analyze security", || {
        for unit in ["jemsafe.service", "mariadb.service"] {
            let out = c.ok(&format!(
                "systemd-analyze security --no-pager {unit} | tail -1"
            ));
            eprintln!("nspawn security {unit}: {out}");
            assert!(out.contains("Overall exposure level"), "{out}");
        }
        // jemsafe.service's own sandboxing (9.6 UNSAFE without it, 6.1 with it); the
        // dumps, control socket and timeline of step 4.7 ran inside it.
        let out = c.ok("systemd-analyze security --no-pager jemsafe.service | tail -1");
        let score: f64 = out
            .split_whitespace()
            .find_map(|w| w.parse().ok())
            .unwrap_or(10.0);
        assert!(score < 7.0, "{out}");
        let verify =
            c.ok("systemd-analyze verify --man=no /usr/lib/systemd/system/jemsafe.service 2>&1");
        assert_eq!(verify, "", "systemd-analyze verify");
    });
    step("4.8 jemsafe as a container's PID 1", || {
        c.halt();
        as_a_containers_pid_1(&mut c);
    });
}

/// 4.6: MemoryMax= on mariadb.service (systemd 252 writes it to memory.limit_in_bytes on
/// cgroup v1), mysqld climbing with the test UDF: jemsafe reads the unit's limit, dumps at
/// 90 %, and names the kernel's OOM kill in the journal and in `status`; systemd itself
/// restarts nothing (jemsafe does).
fn a_memory_limit_on_the_unit(c: &Container) {
    c.ok("systemctl set-property mariadb MemoryMax=600M");
    let cursor = c.cursor();
    c.ok("systemctl restart mariadb");
    let plugin_dir = c.ok("mariadb -uroot -N -e 'SELECT @@plugin_dir'");
    let built = udf_plugin_dir(c.dir.as_ref().unwrap().path()).join("jemsafe_test_udf.so");
    let inside = c
        .merged
        .join(plugin_dir.trim_start_matches('/'))
        .join("jemsafe_test_udf.so");
    std::fs::copy(&built, &inside).unwrap();
    let limit = message(&c.wait_journal("mariadb", &cursor, "memory limit 600 MiB"));
    assert!(
        limit.contains("memory.limit_in_bytes") && limit.contains("limit90"),
        "{limit}"
    );
    c.ok(
        "mariadb -uroot -e \"CREATE OR REPLACE FUNCTION jemsafe_alloc_mb RETURNS INTEGER \
          SONAME 'jemsafe_test_udf.so'\"",
    );
    // Climb in 50 MiB steps until the 90 % dump is written, then past the limit.
    let dumped = |c: &Container| {
        c.journal("mariadb", &cursor)
            .iter()
            .any(|e| message(e).contains(".limit90.heap ("))
    };
    for _ in 0..12 {
        if dumped(c) {
            break;
        }
        c.ok("mariadb -uroot -N -e 'SELECT jemsafe_alloc_mb(50)'");
        std::thread::sleep(Duration::from_millis(1500));
    }
    c.wait_journal("mariadb", &cursor, ".limit90.heap (");
    // The query dies with mysqld.
    let _ = c.sh("mariadb -uroot -N -e 'SELECT jemsafe_alloc_mb(400)'");
    let oom = message(&c.wait_journal("mariadb", &cursor, "killed by the kernel's OOM killer"));
    assert!(oom.contains("memory limit 600 MiB"), "{oom}");
    c.wait_journal("mariadb", &cursor, "told systemd READY=1");
    assert_eq!(c.prop("mariadb", "NRestarts"), "0");
    let status = c.ok("jemsafe status -c /etc/jemsafe/jemsafe.toml");
    assert!(status.contains("OOM killer"), "{status}");
    c.ok("systemctl set-property mariadb MemoryMax=infinity");
}

/// The container entrypoint the README shows: mysqld's socket directory (systemd-tmpfiles
/// makes it on a booted system), then jemsafe as PID 1, mysqld as mysql.
const ENTRYPOINT: &str = "install -d -o mysql -g mysql /run/mysqld && \
     exec /usr/sbin/jemsafe run -c /etc/jemsafe/jemsafe.toml -- --user=mysql";

/// Waits (bounded) for a line containing `needle` in the file `path`; returns it.
fn wait_in_file(path: &Path, needle: &str) -> String {
    let deadline = Instant::now() + T;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains(needle)) {
            return line.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no line with {needle:?} in {} within {T:?}:\n{text}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// 4.8: the same tree started without systemd, `jemsafe run` as PID 1 (docker's and
/// Kubernetes' way): the memory limit read inside, orphans reaped, SIGTERM a clean stop.
fn as_a_containers_pid_1(c: &mut Container) {
    const LIMIT: u64 = 3 << 30;
    std::fs::write(
        c.cgroups[0].join("memory.limit_in_bytes"),
        LIMIT.to_string(),
    )
    .unwrap();
    let log = c.dir.as_ref().unwrap().join("pid1.log");
    let name = c.name();
    c.start_nspawn(
        &name,
        &["--console=pipe", "/bin/sh", "-c", ENTRYPOINT],
        Some(&log),
    );
    wait_in_file(&log, "verified: mysqld pid");
    wait_in_file(&log, "ready for connections");
    c.leader = c.nspawn_child().unwrap_or(c.leader);
    assert_eq!(c.ok("cat /proc/1/comm"), "jemsafe");
    assert_eq!(c.ok("mariadb -uroot -N -e 'SELECT 5'"), "5");
    let status = c.ok("jemsafe status -c /etc/jemsafe/jemsafe.toml");
    assert!(
        status.contains("memory.limit_in_bytes") && status.contains("3.0 GiB"),
        "{status}"
    );
    // An orphan is reparented to PID 1, which must reap it when it exits.
    let orphan = c.ok("sh -c 'sleep 1 >/dev/null 2>&1 & echo $!'");
    assert_eq!(c.ok(&format!("ps -o ppid= -p {orphan}")), "1");
    let deadline = Instant::now() + T;
    while c.sh(&format!("test -e /proc/{orphan}")).code == 0 {
        assert!(
            Instant::now() < deadline,
            "orphan {orphan} was never reaped: {}",
            c.sh("ps -eo pid,ppid,stat,comm").out()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(c.sh("ps -eo stat= | grep -c '^Z'").out().trim(), "0");
    // SIGTERM to PID 1 (a PID 1 has no default actions: jemsafe's own handler).
    unsafe { libc::kill(c.leader, libc::SIGTERM) };
    // Left in the container's guard until it has exited, so that a failure still halts it.
    let exited = exits_within(c.nspawn.as_mut().unwrap(), T);
    if exited.is_some() {
        c.nspawn = None; // reaped: nothing left for the guard to halt
    }
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(exited.is_some_and(|s| s.success()), "{exited:?}\n{text}");
    assert!(text.contains("Shutdown complete"), "{text}");
}
