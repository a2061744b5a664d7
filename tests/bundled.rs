//! `[jemalloc] library = "bundled"`: jemsafe's own profiling jemalloc
//! (libjemsafe_jemalloc.so, built from tikv-jemalloc-sys with the shim inside) in real
//! processes: a C program calling every exported function, our workload under
//! `jemsafe run`, `env`, and `check` on a libjemalloc that cannot profile.

use crate::common::*;
use nix::sys::signal::Signal;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

/// The functions the bundled library must export under their standard names.
const EXPORTS: &[&str] = &[
    "malloc",
    "calloc",
    "realloc",
    "free",
    "posix_memalign",
    "aligned_alloc",
    "memalign",
    "valloc",
    "pvalloc",
    "malloc_usable_size",
    "mallctl",
    "mallctlnametomib",
    "mallctlbymib",
    "malloc_stats_print",
];

/// Compiles `source` with gcc into `dir`/`name` (extra arguments after the source).
fn gcc(dir: &TempDir, name: &str, source: &str, args: &[&str]) -> PathBuf {
    let src = dir.join(&format!("{name}.c"));
    std::fs::write(&src, source).unwrap();
    let out = dir.join(name);
    let status = Command::new("gcc")
        .args(["-O1", "-Wall", "-o"])
        .arg(&out)
        .arg(&src)
        .args(args)
        .status()
        .expect("gcc (apt-get install gcc)");
    assert!(status.success(), "gcc {name}.c failed");
    out
}

const EVERY_FUNCTION_C: &str = r#"
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* jemalloc's own API is not in libc: found at run time, as a preloaded library's must be. */
static int (*mallctl)(const char *, void *, size_t *, void *, size_t);
static int (*mallctlnametomib)(const char *, size_t *, size_t *);
static int (*mallctlbymib)(const size_t *, size_t, void *, size_t *, void *, size_t);
static void (*malloc_stats_print)(void (*)(void *, const char *), void *, const char *);

static int failures;
#define CHECK(cond) do { if (!(cond)) { printf("FAILED line %d: %s\n", __LINE__, #cond); failures++; } } while (0)

static void count(void *opaque, const char *text) { *(size_t *)opaque += strlen(text); }

static int aligned(void *p, size_t a) { return p != NULL && ((uintptr_t)p % a) == 0; }

int main(int argc, char **argv) {
    const char *names[] = { NAMES };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        Dl_info info;
        void *f = dlsym(RTLD_DEFAULT, names[i]);
        if (f == NULL || !dladdr(f, &info) || info.dli_fname == NULL
            || strstr(info.dli_fname, "libjemsafe_jemalloc.so") == NULL) {
            printf("FAILED %s comes from %s\n", names[i], f && info.dli_fname ? info.dli_fname : "nowhere");
            failures++;
        }
    }
    mallctl = dlsym(RTLD_DEFAULT, "mallctl");
    mallctlnametomib = dlsym(RTLD_DEFAULT, "mallctlnametomib");
    mallctlbymib = dlsym(RTLD_DEFAULT, "mallctlbymib");
    malloc_stats_print = dlsym(RTLD_DEFAULT, "malloc_stats_print");
    if (!mallctl || !mallctlnametomib || !mallctlbymib || !malloc_stats_print) {
        printf("FAILED: jemalloc's API is not in the process\n");
        return 1;
    }
    long page = sysconf(_SC_PAGESIZE);
    volatile size_t huge = SIZE_MAX / 2;

    char *m = malloc(100);
    CHECK(m != NULL);
    memset(m, 'a', 100);
    CHECK(malloc_usable_size(m) >= 100);
    m = realloc(m, 100000);
    CHECK(m != NULL && m[0] == 'a' && m[99] == 'a');
    m = realloc(m, 10);
    CHECK(m != NULL && m[9] == 'a');
    free(m);

    char *r = realloc(NULL, 77);
    CHECK(r != NULL && malloc_usable_size(r) >= 77);
    free(r);
    free(NULL);

    unsigned char *c = calloc(1000, 10);
    CHECK(c != NULL);
    int zero = 1;
    for (int i = 0; i < 10000; i++) zero &= c[i] == 0;
    CHECK(zero);
    free(c);
    errno = 0;
    CHECK(calloc(huge, 4) == NULL && errno == ENOMEM);

    void *p = NULL;
    CHECK(posix_memalign(&p, 64, 100) == 0 && aligned(p, 64));
    free(p);
    CHECK(posix_memalign(&p, 3, 100) == EINVAL);
    void *a = aligned_alloc(256, 512);
    CHECK(aligned(a, 256));
    free(a);
    void *ma = memalign(4096, 100);
    CHECK(aligned(ma, 4096));
    free(ma);
    void *v = valloc(100);
    CHECK(aligned(v, page));
    free(v);
    void *pv = pvalloc(100);
    CHECK(aligned(pv, page) && malloc_usable_size(pv) >= (size_t)page);
    free(pv);

    const char *version = NULL;
    size_t len = sizeof(version);
    CHECK(mallctl("version", &version, &len, NULL, 0) == 0 && strncmp(version, "5.3", 3) == 0);
    _Bool flag = 0;
    len = sizeof(flag);
    CHECK(mallctl("config.prof", &flag, &len, NULL, 0) == 0 && flag);
    len = sizeof(flag);
    CHECK(mallctl("config.stats", &flag, &len, NULL, 0) == 0 && flag);
    len = sizeof(flag);
    CHECK(mallctl("opt.prof", &flag, &len, NULL, 0) == 0);
    printf("opt.prof=%d\n", flag);

    /* 32 MiB through the exported malloc show in the exported mallctl's statistics. */
    void *big = malloc(32 << 20);
    memset(big, 1, 32 << 20);
    uint64_t epoch = 1;
    CHECK(mallctl("epoch", NULL, NULL, &epoch, sizeof(epoch)) == 0);
    size_t mib[4], miblen = 4, allocated = 0;
    len = sizeof(allocated);
    CHECK(mallctlnametomib("stats.allocated", mib, &miblen) == 0);
    CHECK(mallctlbymib(mib, miblen, &allocated, &len, NULL, 0) == 0);
    CHECK(allocated >= (32u << 20));
    free(big);

    size_t printed = 0;
    malloc_stats_print(count, &printed, NULL);
    CHECK(printed > 1000);

    printf("%s\n", failures ? "FAILED" : "all ok");
    return failures ? 1 : 0;
}
"#;

#[test]
fn the_bundled_library_exports_the_malloc_family_and_no_private_symbol() {
    let lib = bundled();
    let out = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(&lib)
        .output()
        .expect("nm (binutils)");
    let defined: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().last().map(str::to_owned))
        .collect();
    for name in EXPORTS {
        assert!(defined.iter().any(|d| d == name), "{name} not exported");
    }
    let private: Vec<&String> = defined
        .iter()
        .filter(|d| d.starts_with("_rjem_") || d.starts_with("je_"))
        .collect();
    assert!(private.is_empty(), "{private:?}");
    let out = Command::new("readelf")
        .arg("-d")
        .arg(&lib)
        .output()
        .unwrap();
    let dynamic = String::from_utf8_lossy(&out.stdout);
    assert!(!dynamic.contains("jemalloc"), "{dynamic}");
}

#[test]
fn a_c_program_calling_every_exported_function_runs_under_it() {
    let dir = TempDir::new("bundled-c");
    let names = EXPORTS
        .iter()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let program = gcc(
        &dir,
        "every",
        EVERY_FUNCTION_C,
        &[&format!("-DNAMES={names}"), "-ldl"],
    );
    let run = |var: &str| {
        Command::new(&program)
            .env("LD_PRELOAD", bundled())
            .env_remove("MALLOC_CONF")
            .env_remove("_RJEM_MALLOC_CONF")
            .env(var, "prof:true,prof_active:true")
            .output()
            .unwrap()
    };
    // The bundled build reads _RJEM_MALLOC_CONF ...
    let out = run("_RJEM_MALLOC_CONF");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("all ok"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("opt.prof=1"), "{text}");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // ... and not MALLOC_CONF, which is why jemsafe sets the other one.
    let out = run("MALLOC_CONF");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("opt.prof=0"), "{text}");
}

#[test]
fn run_verifies_dumps_and_reports_the_workload_under_the_bundled_library() {
    let dir = TempDir::new("bundled-run");
    let config = bundled_workload_config(&dir, "leak", &["--alloc-mb", "64"], "");
    // Options inherited from jemsafe's environment never reach mysqld: the profile's do.
    let mut js = Running::start_with(&["run", "-c", config.to_str().unwrap()], |cmd| {
        cmd.env("_RJEM_MALLOC_CONF", "prof:false");
    });
    let replaced = js.err.wait_for("in jemsafe's environment is replaced", T);
    assert!(
        replaced.contains("_RJEM_MALLOC_CONF=prof:false"),
        "{replaced}"
    );
    let pid = js.wait_verified(T);
    let verified = js.err.wait_for("verified: mysqld pid", T);
    assert!(
        verified.contains("(bundled, the shim inside)")
            && verified.contains("opt.prof=true prof.active=true"),
        "{verified}"
    );
    let started = js.err.wait_for("started mysqld pid", T);
    assert!(started.contains("_RJEM_MALLOC_CONF=prof:true"), "{started}");
    js.out.wait_for("ready pid=", T);

    // One object: the bundled library; no system jemalloc and no separate shim.
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    assert!(maps.contains("/libjemsafe_jemalloc.so"), "{maps}");
    assert!(!maps.contains("libjemalloc.so"), "{maps}");
    assert!(!maps.contains("libjemsafe_shim.so"), "{maps}");
    assert_eq!(
        env_value(pid, "LD_PRELOAD").unwrap(),
        bundled().display().to_string()
    );
    assert_eq!(
        env_value(pid, "_RJEM_MALLOC_CONF").unwrap(),
        format!(
            "prof:true,prof_active:true,prof_prefix:{}",
            dir.join("dumps/mysqld").display()
        )
    );
    assert_eq!(env_value(pid, "MALLOC_CONF"), None);

    js.signal(Signal::SIGUSR1);
    let dump = dump_path(&js.err.wait_for("heap dump written: ", T));
    let (report, bundled_top) = top_functions(&config);
    assert!(report.contains(&dump.display().to_string()), "{report}");
    // The allocator's own frames (`_rjem_*`, the exported wrappers) are dropped.
    assert!(!report.contains("_rjem_"), "{report}");
    assert!(report.contains("jemsafe_workload_leak_marker"), "{report}");
    let by_object = cli(&["report", "-c", config.to_str().unwrap(), "--by", "object"]);
    let by_object = String::from_utf8_lossy(&by_object.stdout);
    // The exported wrappers (`malloc`...) are dropped too, so the library holds none of the
    // workload's 64 MiB. It may hold a sample of its own: the shim's start-up allocations
    // (its thread, its buffers) are sampled now and then, at 512 KiB each.
    assert!(
        flat_percent(&by_object, "libjemsafe_jemalloc.so") < 5.0,
        "{by_object}"
    );

    let out = cli(&["status", "-c", config.to_str().unwrap()]);
    let status = String::from_utf8_lossy(&out.stdout);
    assert!(status.contains("allocated 6"), "{status}");

    js.signal(Signal::SIGTERM);
    assert_eq!(js.wait_exit(T), 0);

    // The same program under the system libjemalloc and its shim: the same functions
    // hold the memory, in the same order.
    let system = TempDir::new("bundled-run-system");
    let config = workload_config(&system, "leak", &["--alloc-mb", "64"], "");
    let mut js = Running::start(&["run", "-c", config.to_str().unwrap()]);
    js.wait_verified(T);
    js.out.wait_for("ready pid=", T);
    js.signal(Signal::SIGUSR1);
    js.err.wait_for("heap dump written: ", T);
    let (report, system_top) = top_functions(&config);
    js.signal(Signal::SIGTERM);
    assert_eq!(js.wait_exit(T), 0);
    assert_eq!(bundled_top, system_top, "system libjemalloc:\n{report}");
}

/// `jemsafe report` of the newest dump, and the functions whose cumulative share is at
/// least 50 % (the workload's allocation path), by name.
fn top_functions(config: &std::path::Path) -> (String, Vec<String>) {
    let out = cli(&["report", "-c", config.to_str().unwrap(), "--top", "0"]);
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{report}");
    let names = report
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("flat"))
        .skip(1)
        .filter_map(|row| {
            // flat (2 words) flat% sum% cum (2 words) cum% function
            let words: Vec<&str> = row.split_whitespace().collect();
            let cum: f64 = words.get(6)?.strip_suffix('%')?.parse().ok()?;
            (cum >= 50.0).then(|| words[7..].join(" "))
        })
        .collect::<Vec<_>>();
    assert!(!names.is_empty(), "{report}");
    (report, names)
}

#[test]
fn env_prints_the_bundled_library_and_its_variable() {
    let dir = TempDir::new("bundled-env");
    let config = bundled_workload_config(&dir, "standby", &[], "");
    let out = cli(&["env", "-c", config.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        [
            format!("LD_PRELOAD='{}'", bundled().display()),
            format!(
                "_RJEM_MALLOC_CONF='prof:true,prof_active:false,prof_prefix:{}'",
                dir.join("dumps/mysqld").display()
            ),
        ]
    );
    let out = cli(&["check", "-c", config.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("inside the bundled library"), "{text}");
    assert!(text.contains("_RJEM_MALLOC_CONF=prof:true"), "{text}");
    assert!(text.contains("profiling compiled in"), "{text}");
}

/// A "libjemalloc" built without profiling, as RHEL's: malloc from glibc, and a mallctl
/// that knows `version` and says `config.prof` is false.
const NO_PROF_C: &str = r#"
#include <errno.h>
#include <stddef.h>
#include <string.h>
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);
void *malloc(size_t n) { return __libc_malloc(n); }
void *calloc(size_t n, size_t s) { return __libc_calloc(n, s); }
void *realloc(void *p, size_t n) { return __libc_realloc(p, n); }
void free(void *p) { __libc_free(p); }
int mallctl(const char *name, void *old, size_t *oldlen, void *new, size_t newlen) {
    (void)new; (void)newlen;
    if (strcmp(name, "version") == 0 && old && *oldlen == sizeof(char *)) {
        *(const char **)old = "5.3.0-0-gnoprof";
        return 0;
    }
    if (strcmp(name, "config.prof") == 0 && old && *oldlen == 1) {
        *(unsigned char *)old = 0;
        return 0;
    }
    return ENOENT;
}
"#;

#[test]
fn check_points_to_bundled_when_the_libjemalloc_cannot_profile() {
    let dir = TempDir::new("bundled-noprof");
    let lib = gcc(&dir, "libjemalloc.so.2", NO_PROF_C, &["-shared", "-fPIC"]);
    let config = workload_config(&dir, "leak", &[], "");
    add_to_section(
        &config,
        "[jemalloc]",
        &format!("library = {:?}", lib.display().to_string()),
    );
    let out = cli(&["check", "-c", config.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("profiling NOT compiled in"), "{text}");
    assert!(
        text.contains("was built without --enable-prof")
            && text.contains("set [jemalloc] library = \"bundled\""),
        "{text}"
    );
}

#[test]
fn a_path_to_the_bundled_library_is_refused_with_the_word_to_write() {
    let dir = TempDir::new("bundled-path");
    let config = workload_config(&dir, "leak", &[], "");
    add_to_section(
        &config,
        "[jemalloc]",
        &format!("library = {:?}", bundled().display().to_string()),
    );
    let out = cli(&["check", "-c", config.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{text}");
    assert!(text.contains("write library = \"bundled\""), "{text}");
}

/// The workload with `preload`, `var`=`conf` and the shim channel; returns once it is ready.
fn host_with_channel(
    preload: &str,
    var: &str,
    conf: &str,
) -> (std::process::Child, jemsafe::shim_link::ShimLink, Lines) {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let (link, theirs) = jemsafe::shim_link::ShimLink::pair().unwrap();
    let fd = theirs.as_raw_fd();
    let mut cmd = Command::new(workload());
    cmd.args(["--alloc-mb", "32"])
        .env("LD_PRELOAD", preload)
        .env_remove("MALLOC_CONF")
        .env_remove("_RJEM_MALLOC_CONF")
        .env(var, conf)
        .env(jemsafe_proto::ENV_SHIM_FD, fd.to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    // SAFETY: one fcntl between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::fcntl(fd, libc::F_SETFD, 0);
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    drop(theirs);
    let mut out = Lines::new(child.stdout.take().unwrap());
    out.wait_for("ready pid=", T);
    (child, link, out)
}

fn stop(mut child: std::process::Child) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        Signal::SIGTERM,
    );
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

#[test]
fn the_shim_inside_sees_the_hosts_heap_and_refuses_when_another_malloc_serves_it() {
    use jemsafe_proto::{Command as Ask, Hello, Stats};
    // First in LD_PRELOAD: the bundled jemalloc is the allocator; its shim reports the
    // host's 32 MiB and dumps the host's stacks.
    let (child, mut link, _out) = host_with_channel(
        &bundled().display().to_string(),
        "_RJEM_MALLOC_CONF",
        "prof:true,prof_active:true,lg_prof_sample:16",
    );
    let hello: Hello = link.request(Ask::Hello, T).unwrap().body().unwrap();
    let bound = hello.bound().expect("bound to the bundled jemalloc");
    assert!(bound.path.ends_with("/libjemsafe_jemalloc.so"), "{hello:?}");
    assert!(bound.config_prof && bound.opt_prof, "{hello:?}");
    assert!(bound.version.starts_with("5.3.1-"), "{hello:?}");
    assert_eq!(bound.lg_prof_sample, Some(16));
    let stats: Stats = link.request(Ask::Stats, T).unwrap().body().unwrap();
    assert!(stats.allocated >= 32 << 20, "{stats:?}");
    stop(child);

    // Behind the system libjemalloc it allocates for no one: the shim inside says so
    // instead of reporting an idle heap.
    let preload = format!("{}:{}", libjemalloc().display(), bundled().display());
    let (child, mut link, _out) = host_with_channel(&preload, "_RJEM_MALLOC_CONF", "prof:true");
    let hello = link.request(Ask::Hello, T).unwrap();
    assert_eq!(hello.get("jemalloc"), Some("missing"), "{hello:?}");
    let reason = hello.get("reason").unwrap_or_default();
    assert!(
        reason.contains("libjemalloc.so.2") && reason.contains("must be first in LD_PRELOAD"),
        "{reason}"
    );
    let stats = link.request(Ask::Stats, T).unwrap();
    assert!(!stats.ok, "{stats:?}");
    stop(child);
}

/// Failures through tikv-jemalloc-ctl: the errno comes back (mapped from ctl's text) and
/// ctl's text (jemalloc's manual) travels in the message.
#[test]
fn bundled_failures_carry_the_errno_and_ctls_text() {
    use jemsafe_proto::{Command as Ask, Failure};
    let (child, mut link, _out) = host_with_channel(
        &bundled().display().to_string(),
        "_RJEM_MALLOC_CONF",
        "prof:true",
    );
    let reply = link
        .request(Ask::Dump(Some("/nonexistent-jemsafe-dir/x.heap".into())), T)
        .unwrap();
    let f: Failure = reply.body::<jemsafe_proto::Dumped>().unwrap_err();
    assert_eq!(
        (f.mallctl.as_deref(), f.error.as_deref(), f.errno),
        (Some("prof.dump"), Some("EFAULT"), Some(libc::EFAULT)),
        "{f}"
    );
    assert!(f.message.contains("could not write the heap file"), "{f}");
    assert!(
        f.message
            .contains("(jemalloc: An interface with side effects failed"),
        "{f}"
    );
    // A dump and a reset without arguments go through ctl too.
    let dir = TempDir::new("bundled-ctl");
    let path = dir.join("x.heap");
    let ok = link
        .request(Ask::Dump(Some(path.display().to_string())), T)
        .unwrap();
    assert!(ok.ok, "{ok:?}");
    assert!(std::fs::read_to_string(&path)
        .unwrap()
        .starts_with("heap_v2/"));
    let reset = link.request(Ask::Reset(None), T).unwrap();
    assert_eq!(reset.get("lg_prof_sample"), Some("19"), "{reset:?}");
    stop(child);

    let (child, mut link, _out) = host_with_channel(
        &bundled().display().to_string(),
        "_RJEM_MALLOC_CONF",
        "prof:false",
    );
    let f: Failure = link
        .request(Ask::Dump(None), T)
        .unwrap()
        .body::<jemsafe_proto::Dumped>()
        .unwrap_err();
    assert_eq!(f.error.as_deref(), Some("ENOENT"), "{f}");
    assert!(f.message.contains("profiling is not enabled"), "{f}");
    assert!(f.message.contains("unknown/invalid value"), "{f}");
    stop(child);
}
