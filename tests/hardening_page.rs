//! What `jemsafe page` and the other outputs reveal, and where they are written (issue 23,
//! items 4 and 8): no output but pprof shows an absolute address of mysqld (its layout);
//! each dump is named with its own mappings; `-o` replaces whatever is at the path, never
//! writes through it, and leaves a private file; a link's fragment cannot stop the page's
//! script.

use crate::common::*;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(60);
const PLANTED: &str = "jemsafe_test_leak_site";

/// The mapped ranges of a heap dump (its MAPPED_LIBRARIES section).
fn mapped_ranges(dump: &Path) -> Vec<(u64, u64)> {
    let text = std::fs::read_to_string(dump).unwrap();
    let maps = &text[text.find("MAPPED_LIBRARIES:").expect("no maps section")..];
    maps.lines()
        .skip(1)
        .filter_map(|l| {
            let (a, b) = l.split_whitespace().next()?.split_once('-')?;
            Some((
                u64::from_str_radix(a, 16).ok()?,
                u64::from_str_radix(b, 16).ok()?,
            ))
        })
        .collect()
}

/// Every run of 8 to 16 hex digits in `text` (with or without `0x`) whose value lies in
/// one of `ranges`: an absolute address of the process.
fn addresses_in(text: &str, ranges: &[(u64, u64)]) -> Vec<String> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_hexdigit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_hexdigit() {
            i += 1;
        }
        // `0x7f...` is the run `0`, then `x`, then this run of digits.
        let run = &text[start..i];
        if run.len() >= 8 && run.len() <= 16 {
            if let Ok(v) = u64::from_str_radix(run, 16) {
                if ranges.iter().any(|&(a, b)| a <= v && v < b) {
                    found.push(text[start.saturating_sub(2)..i].to_owned());
                }
            }
        }
    }
    found
}

#[test]
fn the_address_scan_finds_raw_addresses_only() {
    let ranges = [(0x7fd7_9300_0000, 0x7fd7_9400_0000)];
    assert_eq!(
        addresses_in("a 0x00007fd79323c21f b", &ranges),
        ["0x00007fd79323c21f"]
    );
    assert_eq!(addresses_in("7fd79323c21f;x", &ranges).len(), 1);
    // Offsets in a file, byte counts and build-ids are not addresses.
    assert!(addresses_in(
        "libx.so+0x3c21f 8388608 0123456789abcdef0123456789abcdef01234567",
        &ranges
    )
    .is_empty());
}

/// The pid in a dump's sidecar.
fn pid_of(dump: &Path) -> i32 {
    let side: serde_json::Value =
        serde_json::from_slice(&std::fs::read(format!("{}.json", dump.display())).unwrap())
            .unwrap();
    side["process"]["pid"]
        .as_i64()
        .expect("no pid in the sidecar") as i32
}

/// A real MariaDB loads the project's UDF, leaks through it, is dumped, drops the UDF
/// (mysqld unloads the library) and is dumped again. The page over both, and the
/// reports of each, name the old dump's frames through its own maps and show no
/// absolute address.
#[test]
fn a_plugin_unloaded_between_two_dumps_is_named_and_no_output_shows_an_address() {
    let (dir, config) = prepared_sandbox("page-unload", "");
    add_to_section(&config, "[dumps]", "min_interval_ms = 0");
    let (mut js, socket) = run_with_udf(&dir, &config, "leak");
    let cfg = config.to_str().unwrap();
    sql(&socket, "SELECT jemsafe_leak_kb(8192)");
    let dump = || {
        let out = cli(&["dump", "-c", cfg]);
        assert!(out.status.success(), "{out:?}");
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    };
    let loaded = dump();
    let mysqld = pid_of(&loaded);
    for f in UDF_FUNCTIONS {
        sql(&socket, &format!("DROP FUNCTION {f}"));
    }
    let maps = format!("/proc/{mysqld}/maps");
    let deadline = Instant::now() + T;
    while std::fs::read_to_string(&maps)
        .unwrap()
        .contains("jemsafe_test_udf.so")
    {
        assert!(Instant::now() < deadline, "mysqld did not unload the UDF");
        std::thread::sleep(Duration::from_millis(100));
    }
    let unloaded = dump();
    js.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(js.wait_exit(T), 0);
    assert!(std::fs::read_to_string(&loaded)
        .unwrap()
        .contains("jemsafe_test_udf.so"));
    let mut ranges = mapped_ranges(&loaded);
    ranges.extend(mapped_ranges(&unloaded));

    let page = dir.join("unload.html");
    let (l, u) = (loaded.to_str().unwrap(), unloaded.to_str().unwrap());
    let out = cli(&["page", "-c", cfg, l, u, "-o", page.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let html = std::fs::read_to_string(&page).unwrap();
    let leaked = addresses_in(&html, &ranges);
    assert!(leaked.is_empty(), "the page shows addresses: {leaked:?}");
    // The first dump's frames are named with its own maps: the UDF's leak site.
    assert!(
        html.contains(PLANTED),
        "the unloaded UDF's frames are not named"
    );
    assert_eq!(
        std::fs::metadata(&page).unwrap().mode() & 0o7777,
        0o600,
        "the page is readable by others"
    );

    let mut outputs = Vec::new();
    for d in [l, u] {
        for format in ["text", "svg", "collapsed"] {
            let out = cli(&["report", "-c", cfg, d, "--format", format]);
            assert!(out.status.success(), "{format}: {out:?}");
            outputs.push((format!("report {format} {d}"), out.stdout));
        }
    }
    let out = cli(&["leaks", "-c", cfg, l, u]);
    assert!(out.status.success(), "{out:?}");
    outputs.push(("leaks".into(), out.stdout));
    for (what, bytes) in &outputs {
        let text = String::from_utf8_lossy(bytes);
        let leaked = addresses_in(&text, &ranges);
        assert!(leaked.is_empty(), "{what} shows addresses: {leaked:?}");
    }
    // The old dump names the leak site; the new one, with no mapping there, says so.
    let text_of = |i: usize| String::from_utf8_lossy(&outputs[i].1).into_owned();
    assert!(text_of(0).contains(PLANTED), "{}", text_of(0));
    assert!(text_of(3).contains("[unmapped]"), "{}", text_of(3));
}

/// nobody's uid and gid.
const NOBODY: u32 = 65534;

/// What was at an output path before a command ran, to check it afterwards.
enum Planted {
    /// A 0666 file of nobody's, held open (its inode) with its content.
    NobodysFile(std::fs::File, u64),
    /// A symbolic link to a 0600 file of root's with this content.
    LinkToRoots(PathBuf, Vec<u8>),
}

fn plant_file(path: &Path) -> Planted {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, b"nobody's").unwrap();
    std::os::unix::fs::chown(path, Some(NOBODY), Some(NOBODY)).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let held = std::fs::File::open(path).unwrap();
    let ino = held.metadata().unwrap().ino();
    Planted::NobodysFile(held, ino)
}

fn plant_link(path: &Path, target: &Path) -> Planted {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(target, b"root's secret").unwrap();
    std::fs::set_permissions(target, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::symlink(target, path).unwrap();
    Planted::LinkToRoots(target.to_owned(), b"root's secret".to_vec())
}

/// The output at `path` is a new regular file of root's with `mode`, and what was
/// planted there is as it was.
fn assert_replaced(what: &str, path: &Path, planted: Planted, mode: u32) {
    let meta = std::fs::symlink_metadata(path).unwrap();
    assert!(meta.file_type().is_file(), "{what}: not a regular file");
    assert_eq!(meta.uid(), 0, "{what}: not root's");
    assert_eq!(meta.mode() & 0o7777, mode, "{what}: mode {:o}", meta.mode());
    match planted {
        Planted::NobodysFile(held, ino) => {
            assert_ne!(meta.ino(), ino, "{what}: nobody's file was written through");
            let old = held.metadata().unwrap();
            assert_eq!(old.uid(), NOBODY, "{what}");
            let text = std::fs::read(format!("/proc/self/fd/{}", {
                use std::os::fd::AsRawFd;
                held.as_raw_fd()
            }))
            .unwrap();
            assert_eq!(text, b"nobody's", "{what}: nobody's file was written");
        }
        Planted::LinkToRoots(target, content) => {
            assert_eq!(
                std::fs::read(&target).unwrap(),
                content,
                "{what}: target written"
            );
        }
    }
}

/// `page -o`, `report -o`, `archive -o` and `timeline -o` over a name that nobody
/// pre-created in a sticky /tmp-like directory, and over a link mysqld's user planted in
/// the dump directory: each output replaces the name with a new private file.
#[test]
fn outputs_replace_what_is_at_the_path_and_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("page-output");
    let config = workload_config(&dir, "leak", &["--alloc-mb", "8"], "");
    let cfg = config.to_str().unwrap();
    let dump = workload_dumps(&config, 1)[0].display().to_string();
    let tmp = dir.join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let dumps_dir = dir.join("dumps");
    let dumps_gid = std::fs::metadata(&dumps_dir).unwrap().gid();
    let secret = dir.join("root-secret");
    let commands: [(&str, &[&str]); 4] = [
        ("page", &["page", "-c", cfg, &dump]),
        ("report", &["report", "-c", cfg, &dump]),
        ("archive", &["archive", "-c", cfg, &dump]),
        ("timeline", &["timeline", "-c", cfg]),
    ];
    for (what, args) in commands {
        let run = |out: &Path| {
            let mut a: Vec<&str> = args.to_vec();
            a.extend(["-o", out.to_str().unwrap()]);
            let o = cli(&a);
            assert!(o.status.success(), "{what}: {o:?}");
        };
        // nobody's 0666 file in /tmp.
        let out = tmp.join(format!("{what}.out"));
        let planted = plant_file(&out);
        run(&out);
        assert_replaced(&format!("{what} over nobody's file"), &out, planted, 0o600);
        // A link to root's file, planted in the dump directory: replaced, and beside the
        // dumps the output is readable by their group.
        let out = dumps_dir.join(format!("{what}.out"));
        let _ = std::fs::remove_file(&secret);
        let planted = plant_link(&out, &secret);
        run(&out);
        assert_replaced(&format!("{what} over a link"), &out, planted, 0o640);
        assert_eq!(std::fs::metadata(&out).unwrap().gid(), dumps_gid, "{what}");
    }
    // No temporary file is left anywhere.
    for d in [&tmp, &dumps_dir] {
        for e in std::fs::read_dir(d).unwrap() {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            assert!(!name.contains(".jemsafe-"), "left behind: {name}");
        }
    }
}

/// A page of workload dumps, opened in headless chromium with a hostile fragment: the
/// script still runs to its end (it marks `<body data-ready="1">`) within the bound.
#[test]
fn a_links_fragment_cannot_freeze_or_stop_the_page() {
    let dir = TempDir::new("page-fragment");
    let config = workload_config(&dir, "leak", &["--alloc-mb", "8"], "");
    let cfg = config.to_str().unwrap();
    workload_dumps(&config, 1);
    let page = dir.join("p.html");
    let out = cli(&["page", "-c", cfg, "-o", page.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let url = format!("file://{}", page.display());
    for fragment in [
        // Exponential backtracking for a RegExp engine.
        "#search=(.*){1,40}(.*){1,40}%00",
        // Not UTF-8 once decoded: decodeURIComponent throws URIError.
        "#search=%E0%A4%A",
        "#dump=%&base=%E0",
    ] {
        let started = Instant::now();
        let dom = String::from_utf8_lossy(&chromium_run(
            &dir.join("chromium"),
            "MAP * ~NOTFOUND",
            &[
                "--virtual-time-budget=5000",
                "--dump-dom",
                &format!("{url}{fragment}"),
            ],
            Duration::from_secs(90),
        ))
        .into_owned();
        assert!(
            dom.contains("data-ready=\"1\""),
            "{fragment}: the script did not finish"
        );
        eprintln!("{fragment}: {:.1} s", started.elapsed().as_secs_f64());
    }
    // A plain search still finds what it names.
    let dom = dump_dom(
        &dir.join("chromium"),
        "MAP * ~NOTFOUND",
        &format!("{url}#search=jemsafe_workload_leak_marker"),
    );
    let share = attr_of(&dom, "id=\"found\"", "data-share").expect("no search result");
    assert!(share.parse::<f64>().unwrap() > 0.5, "{share}");
}

/// Markup that would run script if a field reached the page unescaped (inline handlers
/// are also refused by the page's CSP; the element must not exist at all).
const PAYLOAD: &str = "<img src=x onerror=alert(1)>";

/// Sidecar strings (host, trigger, version, profile) and timeline strings (an exit's
/// description) of mysqld's user's making reach the page as text only: in the file as
/// written, and after the script re-rendered it with another dump, base and a search.
#[test]
fn sidecar_and_timeline_strings_reach_the_page_as_text_only() {
    let (dir, config) = series_config("page-markup");
    let cfg = config.to_str().unwrap();
    let timeline = dir.join("dumps/mysqld.timeline");
    let dumps: Vec<String> = workload_dumps_then(&config, 2, || {
        let deadline = Instant::now() + T;
        while !std::fs::read_to_string(&timeline)
            .unwrap_or_default()
            .contains("\"rss\"")
        {
            assert!(Instant::now() < deadline, "no timeline sample");
            std::thread::sleep(Duration::from_millis(100));
        }
    })
    .iter()
    .map(|d| d.display().to_string())
    .collect();

    for d in &dumps {
        let path = format!("{d}.json");
        let mut side: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        for key in ["host", "trigger", "mysqld_version", "profile"] {
            side[key] = format!("{key}{PAYLOAD}").into();
        }
        std::fs::write(&path, serde_json::to_vec(&side).unwrap()).unwrap();
    }
    // An exit of the dumps' process described with markup, after its samples.
    let text = std::fs::read_to_string(&timeline).unwrap();
    let last: serde_json::Value = text
        .lines()
        .rev()
        .find(|l| l.contains("\"rss\""))
        .map(|l| serde_json::from_str(l).unwrap())
        .unwrap();
    let exit = serde_json::json!({
        "t": last["t"].as_u64().unwrap() + 1,
        "pid": last["pid"],
        "start": last["start"],
        "event": "exit",
        "how": format!("how{PAYLOAD}"),
        "flag": true,
    });
    let planted = dir.join("planted.timeline");
    std::fs::write(&planted, format!("{text}{exit}\n")).unwrap();

    let page = dir.join("markup.html");
    let mut args = vec!["page", "-c", cfg, "--timeline", planted.to_str().unwrap()];
    args.extend(dumps.iter().map(String::as_str));
    args.extend(["-o", page.to_str().unwrap()]);
    let out = cli(&args);
    assert!(out.status.success(), "{out:?}");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(!html.contains("<img"), "markup in the page as written");
    for field in ["host", "trigger", "mysqld_version", "profile", "how"] {
        assert!(
            html.contains(&format!("{field}&lt;img src=x")),
            "{field} is not on the page: the test shows nothing"
        );
    }
    // Re-rendered by the script: the other dump selected, a base, a search for the markup.
    let fragment = "#dump=0&base=1&search=%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E";
    let dom = dump_dom(
        &dir.join("chromium"),
        "MAP * ~NOTFOUND",
        &format!("file://{}{fragment}", page.display()),
    );
    assert!(
        dom.contains("data-ready=\"1\""),
        "the script did not finish"
    );
    assert!(!dom.contains("<img"), "markup became an element");
    assert!(
        dom.contains("how&lt;img src=x"),
        "the exit marker is not drawn"
    );
}
