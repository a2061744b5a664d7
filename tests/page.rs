//! `jemsafe page`: one self-contained HTML page of a real MariaDB's memory, with a leak
//! planted by the project's test UDF (tests/udf/jemsafe_test_udf.c), checked in a real
//! browser (Debian's chromium, headless): the DOM after scripts ran, no network request,
//! a screenshot that is not blank.

use crate::common::*;
use std::path::{Path, PathBuf};
use std::time::Duration;

const T: Duration = Duration::from_secs(60);
const PLANTED: &str = "jemsafe_test_leak_site";

fn file_url(p: &Path) -> String {
    format!("file://{}", p.display())
}

/// The text of the first `<tr>` of the table `id` in `dom`'s tbody.
fn first_row(dom: &str, id: &str) -> String {
    let t = &dom[dom.find(&format!("id=\"{id}\"")).expect(id)..];
    let body = &t[t.find("<tbody>").unwrap()..];
    body[..body.find("</tr>").unwrap()].to_owned()
}

/// Where test artifacts are kept (target/test-artifacts).
fn artifacts() -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn a_mariadb_series_with_a_planted_leak_makes_a_page_that_shows_it_offline() {
    let (dir, config) = prepared_sandbox("page-mariadb", "[timeline]\ninterval_s = 1\n");
    // Every dump asked for is taken at once (none coalesced into a trailing one).
    add_to_section(&config, "[dumps]", "min_interval_ms = 0");
    let (mut js, socket) = run_with_udf(&dir, &config, "leak");
    let cfg = config.to_str().unwrap();
    let samples = || {
        let out = cli(&["timeline", "-c", cfg, "--format", "json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v["samples"].as_array().map_or(0, Vec::len)
    };
    // Five dumps, 8 MiB leaked before each of the last four, a timeline sample between.
    let mut dumps = Vec::new();
    for i in 0..5 {
        if i > 0 {
            sql(&socket, "SELECT jemsafe_leak_kb(8192)");
        }
        let seen = samples();
        let deadline = std::time::Instant::now() + T;
        while samples() == seen {
            assert!(std::time::Instant::now() < deadline, "no timeline sample");
            std::thread::sleep(Duration::from_millis(100));
        }
        let out = cli(&["dump", "-c", cfg]);
        assert!(out.status.success(), "{out:?}");
        dumps.push(String::from_utf8_lossy(&out.stdout).trim().to_owned());
    }
    let page = dir.join("incident.html");
    let started = std::time::Instant::now();
    let out = cli(&["page", "-c", cfg, "-o", page.to_str().unwrap()]);
    let took = started.elapsed();
    assert!(out.status.success(), "{out:?}");
    let html = std::fs::read_to_string(&page).unwrap();
    eprintln!(
        "page of {} dumps: {} KiB in {:.2} s",
        dumps.len(),
        html.len() / 1024,
        took.as_secs_f64()
    );
    js.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(js.wait_exit(T), 0);

    // Without scripts: a document that already says it.
    assert!(html.contains("content=\"default-src 'none'"), "no CSP");
    assert!(
        first_row(&html, "leaks").contains(PLANTED),
        "{}",
        first_row(&html, "leaks")
    );
    assert_eq!(html.matches("class=\"marker dump\"").count(), dumps.len());
    assert!(html.contains("MariaDB"), "no mysqld version");
    assert!(html.contains("From the timeline file"), "timeline not used");

    // In the browser, after scripts ran, with no name resolving (the rule; a
    // canary server is no use here: chromium's own background requests would reach it).
    let resolver = "MAP * ~NOTFOUND".to_owned();
    let profile = dir.join("chromium");
    let probed = dir.join("probed.html");
    std::fs::write(&probed, with_probe(&html, "")).unwrap();
    let dom = dump_dom(
        &profile,
        &resolver,
        &format!("{}#search={PLANTED}", file_url(&probed)),
    );
    assert!(dom.contains("data-ready=\"1\""), "the script did not run");
    let leaks = first_row(&dom, "leaks");
    assert!(leaks.contains(PLANTED), "{leaks}");
    assert_eq!(dom.matches("class=\"marker dump").count(), dumps.len());
    // The newest dump is selected: its marker says so.
    assert_eq!(dom.matches("class=\"marker dump sel\"").count(), 1);
    let found = &dom[dom.find("id=\"found\"").unwrap()..];
    let found = &found[..found.find("</span>").unwrap()];
    assert!(found.contains(PLANTED), "{found}");
    let share: f64 = attr_of(&dom, "id=\"found\"", "data-share")
        .unwrap()
        .parse()
        .unwrap();
    assert!(share > 0.3, "the planted leak holds {share} of the heap");
    assert!(dom.contains("class=\"fr match\""), "no frame highlighted");
    // Another dump selected (as a click on its marker does; `#dump=N` links to it): its
    // marker, title and growth follow.
    let dom1 = dump_dom(&profile, &resolver, &format!("{}#dump=1", file_url(&page)));
    assert!(
        dom1.contains("class=\"marker dump sel\" data-dump=\"1\""),
        "the second dump's marker is not selected"
    );
    let second = Path::new(&dumps[1]).file_name().unwrap().to_string_lossy();
    let title = &dom1[dom1.find("id=\"dumptitle\"").unwrap()..];
    assert!(
        title[..title.find("</p>").unwrap()].contains(&*second),
        "{title:.300}"
    );
    // No request: nothing was blocked, nothing loaded.
    let probe: serde_json::Value =
        serde_json::from_str(&attr_of(&dom, "<body", "data-probe").expect("probe ran")).unwrap();
    assert_eq!(probe["violations"].as_array().unwrap().len(), 0, "{probe}");
    assert_eq!(probe["resources"].as_array().unwrap().len(), 0, "{probe}");
    // The probe sees a request when there is one: CSP blocks a planted image before the
    // network.
    let planted = dir.join("planted.html");
    std::fs::write(
        &planted,
        with_probe(&html, "<img src=\"http://example.com/x.png\">"),
    )
    .unwrap();
    let dom2 = dump_dom(&profile, &resolver, &file_url(&planted));
    let probe2: serde_json::Value =
        serde_json::from_str(&attr_of(&dom2, "<body", "data-probe").expect("probe ran")).unwrap();
    assert_eq!(
        probe2["violations"].as_array().unwrap().len(),
        1,
        "{probe2}"
    );

    // A picture that is not blank, kept as an artifact (and for the README with
    // JEMSAFE_SCREENSHOT_DOCS=1).
    let png = artifacts().join("page.png");
    screenshot(&profile, &resolver, &file_url(&page), &png, "1280,2200");
    let (w, h, px) = png_rgb(&std::fs::read(&png).unwrap());
    assert_eq!((w, h), (1280, 2200));
    let var = grey_variance(&px);
    assert!(var > 200.0, "the screenshot is blank (variance {var})");
    std::fs::copy(&page, artifacts().join("page.html")).unwrap();
    if std::env::var_os("JEMSAFE_SCREENSHOT_DOCS").is_some() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
        std::fs::create_dir_all(&docs).unwrap();
        std::fs::copy(&png, docs.join("page.png")).unwrap();
    }
}

/// The live page: `/` behind the token (Basic, as a browser sends it), `/dump` only from
/// the page (its CSRF token and Origin), every request's Host the listen address.
#[test]
fn the_live_page_needs_the_token_and_its_dump_button_the_pages_csrf_token_and_origin() {
    let dir = TempDir::new("page-live");
    let (mut js, config, addr) = workload_with_http(&dir, "", "min_interval_ms = 0");
    let port = addr.port();
    let cfg = config.to_str().unwrap();
    let auth = basic("dba", TOKEN);
    // Before the first dump: the page, with its button.
    let (code, _, first) = raw_http(
        addr,
        &format!("GET / HTTP/1.1\r\nHost: {addr}\r\n{auth}\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(code, 200, "{first}");
    assert!(first.contains("no heap dump of mysqld yet"), "{first}");
    assert!(first.contains("id=\"dumpnow\""));
    for _ in 0..2 {
        let out = cli(&["dump", "-c", cfg]);
        assert!(out.status.success(), "{out:?}");
    }
    let host = format!("Host: {addr}");
    let get = |extra: &str| {
        raw_http(
            addr,
            &format!("GET / HTTP/1.1\r\n{extra}Connection: close\r\n\r\n"),
        )
    };
    // Without the token: 401 and a Basic challenge (the browser prompts once).
    let (code, head, _) = get(&format!("{host}\r\n"));
    assert_eq!(code, 401, "{head}");
    assert!(
        head.contains("WWW-Authenticate: Basic realm=\"jemsafe\""),
        "{head}"
    );
    let (code, _, _) = get(&format!("{host}\r\n{}\r\n", basic("dba", "wrong")));
    assert_eq!(code, 401);
    // With it, as a browser sends it: the page.
    let (code, head, page) = get(&format!("{host}\r\n{auth}\r\n"));
    assert_eq!(code, 200, "{head}\n{page}");
    assert!(head.contains("text/html"), "{head}");
    assert!(head.contains("Content-Security-Policy: default-src 'none'"));
    assert!(page.contains("id=\"dumpnow\""));
    assert_eq!(page.matches("class=\"marker dump\"").count(), 2);
    let csrf = attr_of(&page, "name=\"csrf\"", "value").expect("a CSRF token");
    assert_eq!(csrf.len(), 32);
    // A request naming another host (a DNS-rebound name) is refused, whatever the path.
    for path in ["/", "/metrics"] {
        let (code, _, body) = raw_http(
            addr,
            &format!(
                "GET {path} HTTP/1.1\r\nHost: rebound.example:{port}\r\n{auth}\r\nConnection: close\r\n\r\n"
            ),
        );
        assert_eq!(code, 421, "{path}: {body}");
    }
    let post = |origin: Option<&str>, body: &str| {
        let origin = origin
            .map(|o| format!("Origin: {o}\r\n"))
            .unwrap_or_default();
        raw_http(
            addr,
            &format!(
                "POST /dump HTTP/1.1\r\n{host}\r\n{auth}\r\n{origin}Content-Type: \
                 application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: \
                 close\r\n\r\n{body}",
                body.len()
            ),
        )
    };
    let heaps = || heap_files(&dir.join("dumps")).len();
    let before = heaps();
    let own = format!("http://{addr}");
    // No CSRF token, a wrong one, a foreign Origin, no Origin: refused, no dump.
    assert_eq!(post(Some(&own), "").0, 403);
    assert_eq!(
        post(Some(&own), "csrf=0123456789abcdef0123456789abcdef").0,
        403
    );
    assert_eq!(
        post(Some("http://evil.example"), &format!("csrf={csrf}")).0,
        403
    );
    assert_eq!(post(None, &format!("csrf={csrf}")).0, 403);
    assert_eq!(heaps(), before, "a refused request made a dump");
    // From the page: a dump.
    let (code, _, body) = post(Some(&own), &format!("csrf={csrf}"));
    assert_eq!(code, 200, "{body}");
    assert!(Path::new(body.trim()).exists(), "{body}");
    assert_eq!(heaps(), before + 1);
    // The live page renders in a browser like the file does.
    let saved = dir.join("live.html");
    std::fs::write(&saved, &page).unwrap();
    let dom = dump_dom(&dir.join("chromium"), "MAP * ~NOTFOUND", &file_url(&saved));
    assert!(dom.contains("data-ready=\"1\""), "the script did not run");
    js.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(js.wait_exit(T), 0);
}

/// A series mixing two processes, a dump without its sidecar, a dump that is not one, a
/// damaged timeline: the page names each and shows the rest.
#[test]
fn bad_input_is_named_on_the_page_and_the_rest_still_renders() {
    let (dir, config) = series_config("page-bad");
    let first = workload_dumps(&config, 1);
    let second = workload_dumps(&config, 3);
    std::fs::remove_file(format!("{}.json", second[1].display())).unwrap();
    let broken = dir.join("broken.heap");
    std::fs::write(&broken, "heap_v2/524288\n  t*: 1: 2 [ nonsense\n").unwrap();
    let timeline = std::fs::read(dir.join("dumps/mysqld.timeline")).unwrap();
    let mid = timeline.len() / 2;
    let cut = mid + timeline[mid..].iter().position(|&b| b == b'\n').unwrap() + 1;
    let mut damaged = timeline[..cut].to_vec();
    damaged.extend_from_slice(b"{\"t\":17950000\x00\xff garbage\n");
    damaged.extend_from_slice(&timeline[cut..]);
    let damaged_path = dir.join("damaged.timeline");
    std::fs::write(&damaged_path, damaged).unwrap();

    let out_path = dir.join("bad.html");
    let mut args: Vec<String> = vec!["page".into(), "-c".into(), config.display().to_string()];
    for p in first.iter().chain(&second).chain([&broken]) {
        args.push(p.display().to_string());
    }
    args.extend([
        "--timeline".into(),
        damaged_path.display().to_string(),
        "-o".into(),
        out_path.display().to_string(),
    ]);
    let out = cli(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.status.success(), "{out:?}");
    let html = std::fs::read_to_string(&out_path).unwrap();
    let notes = &html[html.find("id=\"notes\"").expect("no notes")..];
    let notes = &notes[..notes.find("</div>").unwrap()];
    let name = |p: &Path| p.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        notes.contains(&name(&first[0])) && notes.contains("of another process"),
        "{notes}"
    );
    assert!(
        notes.contains(&name(&second[1])) && notes.contains("has no sidecar"),
        "{notes}"
    );
    assert!(
        notes.contains("broken.heap") && notes.contains("the page is made without it"),
        "{notes}"
    );
    assert!(
        notes.contains("damaged.timeline") && notes.contains("what could be read is shown"),
        "{notes}"
    );
    // The rest: the second process's three dumps, its timeline, growth.
    assert_eq!(html.matches("class=\"marker dump\"").count(), 3);
    assert!(html.contains("From the timeline file"));
    assert!(html.contains("id=\"diffflame\"") && html.contains("class=\"flame\""));

    // Nothing to show at all: an error naming why, non-zero exit.
    let out = cli(&[
        "page",
        broken.to_str().unwrap(),
        "-o",
        dir.join("none.html").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("broken.heap"), "{err}");
}
