//! Helpers for the page tests: Debian's chromium in headless mode (DOM after scripts ran,
//! screenshots), a PNG reader for the pixel-variance check, a probe that records what
//! the page loaded and what its Content-Security-Policy blocked.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where chromium is (scripts/install-deps installs Debian's `chromium`).
pub fn chromium() -> PathBuf {
    for p in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if Path::new(p).exists() {
            return p.into();
        }
    }
    panic!("chromium is not installed: run scripts/install-deps (apt-get install chromium)");
}

/// chromium headless with a profile of its own in `profile`, killed after `timeout`.
/// `resolver`: where every host name goes (the page must never need one). Returns stdout.
pub fn chromium_run(profile: &Path, resolver: &str, args: &[&str], timeout: Duration) -> Vec<u8> {
    let mut cmd = Command::new(chromium());
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .arg(format!("--host-resolver-rules={resolver}"))
    .args(args)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    // D-Bus complaints on stderr mean nothing.
    .stderr(Stdio::null());
    let mut child = cmd.spawn().expect("start chromium");
    let mut out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "chromium failed: {status}");
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    reader.join().unwrap()
}

/// The DOM of `url` after its scripts ran (5 s of virtual time for timers).
pub fn dump_dom(profile: &Path, resolver: &str, url: &str) -> String {
    let out = chromium_run(
        profile,
        resolver,
        &["--virtual-time-budget=5000", "--dump-dom", url],
        Duration::from_secs(120),
    );
    String::from_utf8_lossy(&out).into_owned()
}

/// A PNG screenshot of `url` into `png`.
pub fn screenshot(profile: &Path, resolver: &str, url: &str, png: &Path, size: &str) {
    let _ = std::fs::remove_file(png);
    chromium_run(
        profile,
        resolver,
        &[
            "--virtual-time-budget=5000",
            &format!("--screenshot={}", png.display()),
            &format!("--window-size={size}"),
            url,
        ],
        Duration::from_secs(120),
    );
    assert!(png.exists(), "no screenshot written");
}

/// Width, height and RGB pixels of an 8-bit RGB or RGBA, non-interlaced PNG (what
/// chromium writes).
pub fn png_rgb(bytes: &[u8]) -> (usize, usize, Vec<[u8; 3]>) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let (mut w, mut h, mut channels) = (0usize, 0usize, 0usize);
    let mut idat = Vec::new();
    let mut i = 8;
    while i + 8 <= bytes.len() {
        let len = u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap()) as usize;
        let kind = &bytes[i + 4..i + 8];
        let data = &bytes[i + 8..i + 8 + len];
        match kind {
            b"IHDR" => {
                w = u32::from_be_bytes(data[0..4].try_into().unwrap()) as usize;
                h = u32::from_be_bytes(data[4..8].try_into().unwrap()) as usize;
                assert_eq!(data[8], 8, "bit depth");
                channels = match data[9] {
                    2 => 3,
                    6 => 4,
                    c => panic!("colour type {c}"),
                };
                assert_eq!(data[12], 0, "interlaced");
            }
            b"IDAT" => idat.extend_from_slice(data),
            _ => {}
        }
        i += 12 + len;
    }
    let mut raw = Vec::new();
    flate2::read::ZlibDecoder::new(&idat[..])
        .read_to_end(&mut raw)
        .unwrap();
    let stride = w * channels;
    let mut prev = vec![0u8; stride];
    let mut px = Vec::with_capacity(w * h);
    for row in 0..h {
        let line = &raw[row * (stride + 1)..(row + 1) * (stride + 1)];
        let filter = line[0];
        let mut cur = line[1..].to_vec();
        for x in 0..stride {
            let a = if x >= channels {
                cur[x - channels] as i16
            } else {
                0
            };
            let b = prev[x] as i16;
            let c = if x >= channels {
                prev[x - channels] as i16
            } else {
                0
            };
            let add = match filter {
                0 => 0,
                1 => a,
                2 => b,
                3 => (a + b) / 2,
                4 => {
                    let p = a + b - c;
                    let (pa, pb, pc) = ((p - a).abs(), (p - b).abs(), (p - c).abs());
                    if pa <= pb && pa <= pc {
                        a
                    } else if pb <= pc {
                        b
                    } else {
                        c
                    }
                }
                f => panic!("filter {f}"),
            };
            cur[x] = cur[x].wrapping_add(add as u8);
        }
        for p in cur.chunks(channels) {
            px.push([p[0], p[1], p[2]]);
        }
        prev = cur;
    }
    (w, h, px)
}

/// Variance of the pixels' grey level (0 for a blank picture).
pub fn grey_variance(px: &[[u8; 3]]) -> f64 {
    let g: Vec<f64> = px
        .iter()
        .map(|p| (p[0] as f64 + p[1] as f64 + p[2] as f64) / 3.0)
        .collect();
    let mean = g.iter().sum::<f64>() / g.len().max(1) as f64;
    g.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / g.len().max(1) as f64
}

/// A copy of `page` with a probe script first in its head: it counts CSP violations and
/// the resources loaded, and writes both to `<body data-probe=...>` a second after load.
pub fn with_probe(page: &str, extra_in_body: &str) -> String {
    let probe = "<script>var jemsafeViolations=[];document.addEventListener(\
        'securitypolicyviolation',function(e){jemsafeViolations.push(e.blockedURI)});\
        window.addEventListener('load',function(){setTimeout(function(){document.body.\
        setAttribute('data-probe',JSON.stringify({violations:jemsafeViolations,resources:\
        performance.getEntriesByType('resource').map(function(r){return r.name})}))},1000)});\
        </script>";
    let at = page.find("<style>").expect("a <style> in the head");
    let mut out = String::with_capacity(page.len() + 1024);
    out.push_str(&page[..at]);
    out.push_str(probe);
    let body = page[at..].find("<body>").map(|b| at + b + 6).unwrap();
    out.push_str(&page[at..body]);
    out.push_str(extra_in_body);
    out.push_str(&page[body..]);
    out
}

/// The attribute `name` of the first element with `id="id"` in `dom` (HTML-unescaped
/// enough for JSON: &quot; only).
pub fn attr_of(dom: &str, tag_start: &str, name: &str) -> Option<String> {
    let at = dom.find(tag_start)?;
    let tag = &dom[at..at + dom[at..].find('>')?];
    let key = format!("{name}=\"");
    let v = &tag[tag.find(&key)? + key.len()..];
    Some(
        v[..v.find('"')?]
            .replace("&quot;", "\"")
            .replace("&amp;", "&"),
    )
}

/// Sends `request` as it is (head and body) and returns (status, head, body).
pub fn raw_http(addr: std::net::SocketAddr, request: &str) -> (u16, String, String) {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(10)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(150))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    let code = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (code, head.to_owned(), body.to_owned())
}

/// `Authorization: Basic ...` for `user:password`.
pub fn basic(user: &str, password: &str) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let input = format!("{user}:{password}").into_bytes();
    let mut out = String::new();
    for c in input.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    format!("Authorization: Basic {out}")
}

/// Runs the workload under jemsafe once (config `config`), takes `n` dumps, runs `before_stop`,
/// stops it; the dumps' paths.
pub fn workload_dumps_then(config: &Path, n: usize, before_stop: impl FnOnce()) -> Vec<PathBuf> {
    const T: Duration = Duration::from_secs(60);
    let cfg = config.to_str().unwrap();
    let mut js = super::Running::start(&["run", "-c", cfg]);
    js.wait_verified(T);
    js.out.wait_for("ready pid=", T);
    let mut dumps = Vec::new();
    for _ in 0..n {
        let out = super::cli(&["dump", "-c", cfg]);
        assert!(out.status.success(), "{out:?}");
        dumps.push(PathBuf::from(
            String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        ));
    }
    before_stop();
    js.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(js.wait_exit(T), 0);
    dumps
}

/// Runs the workload under jemsafe once, takes `n` dumps, stops it; the dumps' paths.
pub fn workload_dumps(config: &Path, n: usize) -> Vec<PathBuf> {
    workload_dumps_then(config, n, || {})
}

/// A workload config in a new directory (`tag`) for a series of dumps: 8 MiB held, a
/// timeline sample a second, every dump asked for taken at once.
pub fn series_config(tag: &str) -> (super::TempDir, PathBuf) {
    let dir = super::TempDir::new(tag);
    let config = super::workload_config(
        &dir,
        "leak",
        &["--alloc-mb", "8"],
        "[timeline]\ninterval_s = 1\n",
    );
    super::add_to_section(&config, "[dumps]", "min_interval_ms = 0");
    (dir, config)
}
