//! `jemsafe archive` and `jemsafe report --archive` against a hostile mysqld user, run
//! as root with the attacker as `mysql`: a dump swapped for a link to /etc/shadow between
//! its check and its packing (the swap made deterministic by holding jemsafe's open of the
//! dump with a fanotify permission event), a planted link in a debuginfod cache, FIFOs and
//! devices named by a dump's maps, compression bombs, and terminal escapes in a sidecar.
//!
//! Every jemsafe runs as a child with a bounded wait (killed if it does not finish).

use crate::common::*;
use std::ffi::OsStr;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(60);

/// `jemsafe ARGS` with debug files looked up in `scratch/debug` and a debuginfod cache
/// at `cache` only (root's own cache never enters a test).
fn jemsafe(args: &[&OsStr], scratch: &TempDir, cache: &Path) -> Command {
    let debug = scratch.join("debug");
    std::fs::create_dir_all(&debug).unwrap();
    let mut cmd = Command::new(jemsafe_bin());
    cmd.args(args)
        .env("JEMSAFE_DEBUG_DIRS", &debug)
        .env("DEBUGINFOD_CACHE_PATH", cache)
        .env_remove("DEBUGINFOD_URLS");
    cmd
}

/// `jemsafe archive -o OUT DUMP...` with `cache` as the debuginfod cache, bounded.
fn archive(dir: &TempDir, out: &Path, dumps: &[&Path], cache: &Path) -> Outcome {
    let mut args: Vec<&OsStr> = vec!["archive".as_ref(), "-o".as_ref(), out.as_os_str()];
    args.extend(dumps.iter().map(|d| d.as_os_str()));
    run_bounded(jemsafe(&args, dir, cache), T)
}

/// Where mapped files are mapped in the dumps below.
const BASE: u64 = 0x40_0000;

/// A maps line mapping `path` executable at `start`, with the file's device and inode
/// when it exists (else made-up ones).
fn maps_line(path: &Path, start: u64) -> String {
    let (major, minor, ino) = match std::fs::symlink_metadata(path) {
        Ok(m) => (libc::major(m.dev()), libc::minor(m.dev()), m.ino()),
        Err(_) => (0xfe, 1, 12345),
    };
    format!(
        "{start:x}-{:x} r-xp 00000000 {major:02x}:{minor:02x} {ino} {}\n",
        start + 0x10000,
        path.display()
    )
}

/// A TempDir other users can traverse (mysql's files are below it).
fn traversable(tag: &str) -> TempDir {
    let dir = TempDir::new(tag);
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// A heap dump with one stack at BASE + 0x10 and the given maps lines.
fn dump_text(maps: &str) -> String {
    format!(
        "heap_v2/524288\n  t*: 1: 4096 [0: 0]\n  t0: 1: 4096 [0: 0]\n@ 0x{:x}\n  t*: 1: 4096 \
         [0: 0]\n  t0: 1: 4096 [0: 0]\n\nMAPPED_LIBRARIES:\n{maps}",
        BASE + 0x10
    )
}

/// What an attacker as `mysql` does: `argv` run as that user.
fn as_mysql(argv: &[&OsStr]) {
    let (uid, gid) = mysql_user();
    let status = Command::new(argv[0])
        .args(&argv[1..])
        .uid(uid)
        .gid(gid)
        .status()
        .expect("run a command as mysql");
    assert!(status.success(), "{argv:?} as mysql failed");
}

/// A directory the `mysql` user owns (like mysqld's dump directory).
fn mysql_dir(path: &Path) {
    let (uid, gid) = mysql_user();
    std::fs::create_dir_all(path).unwrap();
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Writes `data` to `path` as the mysql user's file.
fn mysql_file(path: &Path, data: &[u8]) {
    let (uid, gid) = mysql_user();
    std::fs::write(path, data).unwrap();
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
}

/// The entries of a .tar.gz: name and contents.
fn entries(archive: &Path) -> Vec<(String, Vec<u8>)> {
    let file = std::fs::File::open(archive).unwrap();
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut out = Vec::new();
    for e in tar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().display().to_string();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        out.push((name, data));
    }
    out
}

/// /etc/shadow's contents, which no archive may hold.
fn shadow() -> Vec<u8> {
    let s = std::fs::read("/etc/shadow").expect("read /etc/shadow (as root)");
    assert!(s.len() > 16, "/etc/shadow is too short to look for");
    s
}

fn assert_no_shadow(archive: &Path) {
    let secret = shadow();
    for (name, data) in entries(archive) {
        assert!(
            !data.windows(secret.len()).any(|w| w == &secret[..]),
            "{name} in {} holds /etc/shadow",
            archive.display()
        );
    }
}

fn assert_private(path: &Path) {
    let m = std::fs::symlink_metadata(path).unwrap();
    assert!(m.is_file(), "{}", path.display());
    assert_eq!(
        m.mode() & 0o777,
        0o600,
        "{} mode {:o}",
        path.display(),
        m.mode()
    );
}

/// Opens of one file held by the kernel until the test answers (fanotify permission
/// events): the test decides what happens between a process's check and its next step.
struct OpenGate {
    fd: OwnedFd,
}

impl OpenGate {
    fn watch(path: &Path) -> OpenGate {
        // SAFETY: plain syscalls; the descriptor is owned below.
        let fd = unsafe {
            libc::fanotify_init(
                libc::FAN_CLASS_CONTENT | libc::FAN_CLOEXEC,
                (libc::O_RDONLY | libc::O_LARGEFILE) as u32,
            )
        };
        assert!(
            fd >= 0,
            "fanotify_init: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: a descriptor we just got.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: valid descriptor and C string.
        let r = unsafe {
            libc::fanotify_mark(
                fd.as_raw_fd(),
                libc::FAN_MARK_ADD,
                libc::FAN_OPEN_PERM,
                libc::AT_FDCWD,
                c.as_ptr(),
            )
        };
        assert_eq!(r, 0, "fanotify_mark: {}", std::io::Error::last_os_error());
        OpenGate { fd }
    }

    /// The next open, held (its opener's pid and the event's descriptor), if one comes
    /// within `timeout`.
    fn next(&self, timeout: Duration) -> Option<(i32, OwnedFd)> {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as i32) };
        if n <= 0 {
            return None;
        }
        let mut ev = std::mem::MaybeUninit::<libc::fanotify_event_metadata>::uninit();
        let size = std::mem::size_of::<libc::fanotify_event_metadata>();
        // SAFETY: reading at most one event's metadata into a buffer of that size.
        let r = unsafe { libc::read(self.fd.as_raw_fd(), ev.as_mut_ptr().cast(), size) };
        assert_eq!(r, size as isize, "fanotify read");
        // SAFETY: fully written by read.
        let ev = unsafe { ev.assume_init() };
        assert!(ev.fd >= 0, "fanotify event without a descriptor");
        // SAFETY: the kernel opened it for us.
        Some((ev.pid, unsafe { OwnedFd::from_raw_fd(ev.fd) }))
    }

    /// Lets the held open go on.
    fn allow(&self, event: OwnedFd) {
        let resp = libc::fanotify_response {
            fd: event.as_raw_fd(),
            response: libc::FAN_ALLOW,
        };
        let size = std::mem::size_of::<libc::fanotify_response>();
        // SAFETY: writing one plain struct.
        let r = unsafe {
            libc::write(
                self.fd.as_raw_fd(),
                (&resp as *const libc::fanotify_response).cast(),
                size,
            )
        };
        assert_eq!(r, size as isize, "fanotify answer");
    }
}

/// The dump directory of a config, owned by mysql, with one dump and its sidecar.
fn config_with_a_dump(dir: &TempDir) -> (PathBuf, PathBuf, Vec<u8>) {
    let config = workload_config(dir, "leak", &[], "");
    let dumps = dir.join("dumps");
    mysql_dir(&dumps);
    let dump = dumps.join("mysqld.4711.20260101T000000.1.usr1.heap");
    let text = dump_text("").into_bytes();
    mysql_file(&dump, &text);
    let mut side = jemsafe_report::sidecar::Sidecar::new();
    side.trigger = Some("usr1".into());
    mysql_file(&jemsafe_report::sidecar::path_for(&dump), &side.to_json());
    (config, dump, text)
}

#[test]
fn a_dump_swapped_for_a_link_to_shadow_after_its_check_is_not_packed() {
    let dir = traversable("archive-swap");
    let (config, dump, original) = config_with_a_dump(&dir);
    let out = dir.join("a.tar.gz");
    let gate = OpenGate::watch(&dump);
    let cmd = jemsafe(
        &[
            "archive".as_ref(),
            "-c".as_ref(),
            config.as_os_str(),
            "-o".as_ref(),
            out.as_os_str(),
        ],
        &dir,
        &dir.join("no-cache"),
    );
    // The attacker swaps the dump as soon as jemsafe opens it (inotify's IN_OPEN does it
    // for a real attacker; here jemsafe waits until the swap is done). The gate answers
    // every later open too, until jemsafe has finished.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let gate_thread = {
        let stop = stop.clone();
        let dump = dump.clone();
        std::thread::spawn(move || {
            let mut swapped = false;
            let deadline = Instant::now() + T;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) && Instant::now() < deadline {
                let Some((_pid, event)) = gate.next(Duration::from_millis(100)) else {
                    continue;
                };
                if !swapped {
                    as_mysql(&[
                        "ln".as_ref(),
                        "-sfn".as_ref(),
                        "/etc/shadow".as_ref(),
                        dump.as_os_str(),
                    ]);
                    swapped = true;
                }
                gate.allow(event);
            }
            swapped
        })
    };
    let o = run_bounded(cmd, T);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let swapped = gate_thread.join().unwrap();
    assert!(swapped, "jemsafe never opened the dump: {}", o.stderr);
    assert!(
        std::fs::symlink_metadata(&dump)
            .unwrap()
            .file_type()
            .is_symlink(),
        "the swap did not happen"
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    eprintln!("{}", o.stderr);
    assert_no_shadow(&out);
    assert!(o.stderr.contains("mode 0600"), "{}", o.stderr);
    assert_private(&out);
    // What was packed is what was checked and parsed: the dump as it was.
    let name = format!("dumps/{}", dump.file_name().unwrap().to_str().unwrap());
    let packed = entries(&out);
    let (_, data) = packed
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no {name} in the archive"));
    assert_eq!(data, &original);
}

#[test]
fn a_planted_debuginfod_cache_link_is_not_packed() {
    let dir = traversable("archive-cache");
    // A debuginfod cache the mysql user can write (`sudo -E` keeping their HOME, or a
    // shared DEBUGINFOD_CACHE_PATH).
    let cache = dir.join("cache");
    mysql_dir(&cache);
    // One object gone from this machine, of build `planted`: the attacker's link in the
    // cache leads to /etc/shadow.
    let planted = "0123456789abcdef0123456789abcdef01234567";
    let gone = Path::new("/nonexistent-jemsafe-test/libgone.so");
    as_mysql(&["mkdir".as_ref(), cache.join(planted).as_os_str()]);
    as_mysql(&[
        "ln".as_ref(),
        "-s".as_ref(),
        "/etc/shadow".as_ref(),
        cache.join(planted).join("debuginfo").as_os_str(),
    ]);
    // Another, of a real build (a copy of /usr/bin/true): its debug file in the cache is
    // packed (so the cache is looked at at all).
    let real = {
        let data = std::fs::read("/usr/bin/true").unwrap();
        use object::Object;
        let file = object::File::parse(&data[..]).unwrap();
        let id = file
            .build_id()
            .unwrap()
            .expect("/usr/bin/true has a build-id");
        id.iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    let real_gone = Path::new("/nonexistent-jemsafe-test/libtrue.so");
    as_mysql(&["mkdir".as_ref(), cache.join(&real).as_os_str()]);
    as_mysql(&[
        "cp".as_ref(),
        "/usr/bin/true".as_ref(),
        cache.join(&real).join("debuginfo").as_os_str(),
    ]);

    let dump = dir.join("gone.heap");
    let maps = maps_line(gone, BASE) + &maps_line(real_gone, 0x7f00_0000_0000);
    std::fs::write(&dump, dump_text(&maps)).unwrap();
    let mut side = jemsafe_report::sidecar::Sidecar::new();
    for (path, id) in [(gone, planted), (real_gone, real.as_str())] {
        side.objects.push(jemsafe_report::sidecar::Object {
            path: path.display().to_string(),
            build_id: Some(id.to_owned()),
            ..Default::default()
        });
    }
    std::fs::write(jemsafe_report::sidecar::path_for(&dump), side.to_json()).unwrap();

    let out = dir.join("a.tar.gz");
    let o = archive(&dir, &out, &[&dump], &cache);
    assert_eq!(o.code, 0, "{}", o.stderr);
    eprintln!("{}", o.stderr);
    assert_no_shadow(&out);
    assert_private(&out);
    let packed = entries(&out);
    let names: Vec<&str> = packed.iter().map(|(n, _)| n.as_str()).collect();
    let real_debug = format!(".build-id/{}/{}.debug", &real[..2], &real[2..]);
    assert!(names.contains(&real_debug.as_str()), "{names:?}");
    assert!(
        !names.iter().any(|n| n.contains(&planted[2..])),
        "{names:?}"
    );
    assert!(
        o.stderr.contains("libgone.so (build-id 0123456789abcdef"),
        "{}",
        o.stderr
    );

    // `report` ignores the link as well.
    let r = run_bounded(
        jemsafe(&["report".as_ref(), dump.as_os_str()], &dir, &cache),
        T,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let secret = String::from_utf8_lossy(&shadow()).into_owned();
    let first = secret.lines().next().unwrap();
    assert!(!r.out().contains(first) && !r.stderr.contains(first));
}

#[test]
fn fifos_and_devices_named_by_a_dump_are_never_opened() {
    let dir = TempDir::new("archive-fifo");
    let fifo = dir.join("libfifo.so");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    // A device node of our own (/dev/zero's numbers), watched: nothing else opens it.
    let node = dir.join("libzero.so");
    nix::sys::stat::mknod(
        &node,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o644),
        nix::sys::stat::makedev(1, 5),
    )
    .unwrap();
    use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
    let inotify = Inotify::init(InitFlags::IN_NONBLOCK).unwrap();
    inotify.add_watch(&node, AddWatchFlags::IN_OPEN).unwrap();
    inotify.add_watch(&fifo, AddWatchFlags::IN_OPEN).unwrap();
    let maps = maps_line(&fifo, BASE)
        + &maps_line(&node, 0x7f00_0000_0000)
        + &maps_line(Path::new("/dev/zero"), 0x7f00_0010_0000);
    let dump = dir.join("fifo.heap");
    std::fs::write(&dump, dump_text(&maps)).unwrap();
    let out = dir.join("a.tar.gz");
    let o = archive(&dir, &out, &[&dump], &dir.join("no-cache"));
    assert_eq!(o.code, 0, "{}", o.stderr);
    eprintln!("{}", o.stderr);
    for needle in [
        "libfifo.so (is a FIFO, not a regular file)",
        "libzero.so (is a character device, not a regular file)",
        "/dev/zero (is a character device, not a regular file)",
    ] {
        assert!(o.stderr.contains(needle), "{needle}: {}", o.stderr);
    }
    let opened = match inotify.read_events() {
        Ok(events) => events.len(),
        Err(nix::errno::Errno::EAGAIN) => 0,
        Err(e) => panic!("inotify: {e}"),
    };
    assert_eq!(opened, 0, "the FIFO or the device was opened");
    assert_private(&out);
    assert!(entries(&out).iter().any(|(n, _)| n == "dumps/fifo.heap"));
}

#[test]
fn a_failed_archive_leaves_no_output_behind() {
    let dir = TempDir::new("archive-fail");
    let good = dir.join("good.heap");
    std::fs::write(&good, dump_text("")).unwrap();
    let bad = dir.join("bad.heap");
    std::fs::write(&bad, "heap_v2/524288\n@ 0xzz\n").unwrap();
    let out = dir.join("a.tar.gz");
    let run = |dumps: &[&Path]| archive(&dir, &out, dumps, &dir.join("no-cache"));
    // The good dump is packed first, then the bad one fails the archive.
    let o = run(&[&good, &bad]);
    assert_eq!(o.code, 65, "{}", o.stderr);
    assert!(o.stderr.contains("bad.heap"), "{}", o.stderr);
    assert!(
        std::fs::symlink_metadata(&out).is_err(),
        "a partial archive was left: {}",
        out.display()
    );
    // So the same command, corrected, is not refused for an existing file.
    let o = run(&[&good]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_private(&out);
    // An existing file is replaced by a new one (never written through), and so is a
    // link (never followed).
    let before = std::fs::metadata(&out).unwrap().ino();
    let o = run(&[&good]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_ne!(std::fs::metadata(&out).unwrap().ino(), before);
    assert_private(&out);
    let link_out = dir.join("link.tar.gz");
    let target = dir.join("target");
    std::os::unix::fs::symlink(&target, &link_out).unwrap();
    let o = archive(&dir, &link_out, &[&good], &dir.join("no-cache"));
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(!target.exists());
    assert!(std::fs::symlink_metadata(&link_out)
        .unwrap()
        .file_type()
        .is_file());
}

/// A tar header block for `name`, of `kind` and `size`.
fn tar_header(name: &str, kind: tar::EntryType, size: u64) -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    h.set_path(name).unwrap();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(0o600);
    h.set_cksum();
    h.as_bytes().to_vec()
}

/// The `jemsafe-archive.*` entries of `dir`.
fn unpack_dirs(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("jemsafe-archive."))
        .collect()
}

#[test]
fn archive_bombs_are_refused_and_nothing_is_left_behind() {
    let dir = traversable("archive-bomb");
    // Unpacking goes to $TMPDIR: here, to see what is left there.
    let tmp = dir.join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let report = |archive: &Path| {
        let mut cmd = jemsafe(
            &["report".as_ref(), "--archive".as_ref(), archive.as_os_str()],
            &dir,
            &dir.join("no-cache"),
        );
        cmd.env("TMPDIR", &tmp);
        let started = Instant::now();
        let o = run_bounded(cmd, T);
        eprintln!(
            "{}: exit {} in {:?}: {}",
            archive.display(),
            o.code,
            started.elapsed(),
            o.stderr.trim_end()
        );
        o
    };

    // Left by a jemsafe killed while unpacking (its pid is gone): removed by the next.
    // Not one of a live process, nor another user's.
    let dead = {
        let mut c = Command::new("true").spawn().unwrap();
        let pid = c.id();
        c.wait().unwrap();
        pid
    };
    let stale = tmp.join(format!("jemsafe-archive.{dead}.0"));
    std::fs::create_dir_all(stale.join("dumps")).unwrap();
    std::fs::write(stale.join("dumps/x.heap"), "left over").unwrap();
    let live = tmp.join(format!("jemsafe-archive.{}.0", std::process::id()));
    std::fs::create_dir(&live).unwrap();
    let theirs = tmp.join(format!("jemsafe-archive.{dead}.1"));
    mysql_dir(&theirs);

    // 1. 20,000 empty entries (some 300 KB): once 20,000 files.
    let many = dir.join("many.tar.gz");
    {
        let gz = flate2::write::GzEncoder::new(
            std::fs::File::create(&many).unwrap(),
            flate2::Compression::best(),
        );
        let mut tar = tar::Builder::new(gz);
        for i in 0..20_000 {
            let mut h = tar::Header::new_gnu();
            h.set_size(0);
            h.set_mode(0o600);
            tar.append_data(&mut h, format!("dumps/f{i}.json"), &[][..])
                .unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap();
    }
    eprintln!(
        "many.tar.gz: {} bytes",
        std::fs::metadata(&many).unwrap().len()
    );
    let o = report(&many);
    assert_eq!(o.code, 65, "{}", o.stderr);
    for needle in ["many.tar.gz", "more than 10000 entries"] {
        assert!(o.stderr.contains(needle), "{needle}: {}", o.stderr);
    }
    assert!(!stale.exists(), "the stale directory was not removed");
    assert_eq!(
        unpack_dirs(&tmp).len(),
        2,
        "only the live pid's and the other user's stay: {:?}",
        unpack_dirs(&tmp)
    );
    assert!(live.is_dir() && theirs.is_dir());
    std::fs::remove_dir(&live).unwrap();
    std::fs::remove_dir(&theirs).unwrap();

    // 2. One dump of 1 GiB of zeros in 1 MiB: refused by its declared size.
    let big = dir.join("big.tar.gz");
    let head = tar_header("dumps/big.heap", tar::EntryType::Regular, 1 << 30);
    std::fs::write(&big, gzip_repeated(&head, &vec![0u8; 1 << 20], 1024)).unwrap();
    eprintln!(
        "big.tar.gz: {} bytes",
        std::fs::metadata(&big).unwrap().len()
    );
    let o = report(&big);
    assert_eq!(o.code, 65, "{}", o.stderr);
    for needle in ["big.tar.gz", "unpacks to more than", "compression bomb"] {
        assert!(o.stderr.contains(needle), "{needle}: {}", o.stderr);
    }
    assert_eq!(unpack_dirs(&tmp), Vec::<String>::new());

    // 3. The same gigabyte in an entry that is not unpacked (a directory with data):
    // refused by what comes out of the decompressor.
    let skipped = dir.join("skipped.tar.gz");
    let head = tar_header("dumps/d", tar::EntryType::Directory, 1 << 30);
    std::fs::write(&skipped, gzip_repeated(&head, &vec![0u8; 1 << 20], 1024)).unwrap();
    let o = report(&skipped);
    assert_eq!(o.code, 65, "{}", o.stderr);
    for needle in ["skipped.tar.gz", "unpacks to more than"] {
        assert!(o.stderr.contains(needle), "{needle}: {}", o.stderr);
    }
    assert_eq!(unpack_dirs(&tmp), Vec::<String>::new());

    // 4. A "long name" of 64 MiB (which the tar crate would read into memory).
    let long = dir.join("long.tar.gz");
    let head = tar_header("././@LongLink", tar::EntryType::GNULongName, 64 << 20);
    std::fs::write(&long, gzip_repeated(&head, &vec![0u8; 1 << 20], 64)).unwrap();
    let o = report(&long);
    assert_eq!(o.code, 65, "{}", o.stderr);
    for needle in ["long.tar.gz", "a name of 67108864 bytes"] {
        assert!(o.stderr.contains(needle), "{needle}: {}", o.stderr);
    }
    assert_eq!(unpack_dirs(&tmp), Vec::<String>::new());
}

/// No byte that drives a terminal (newline and tab aside, which the outputs use) and no
/// bidirectional control.
fn assert_clean(what: &str, text: &str) {
    for c in text.chars() {
        let control = matches!(c, '\u{0}'..='\u{8}' | '\u{b}'..='\u{1f}' | '\u{7f}'..='\u{9f}');
        let bidi = matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        assert!(!control && !bidi, "{what} holds {c:?}:\n{text}");
    }
}

#[test]
fn a_hostile_sidecar_cannot_forge_terminal_lines() {
    let dir = TempDir::new("archive-escape");
    let evil = dir.join("lib\u{1b}[2J\u{202e}os.so");
    let dump = dir.join("escape.heap");
    std::fs::write(&dump, dump_text(&maps_line(&evil, BASE))).unwrap();
    let mut side = jemsafe_report::sidecar::Sidecar::new();
    side.objects.push(jemsafe_report::sidecar::Object {
        path: evil.display().to_string(),
        build_id: Some(
            "ab\r\n2026-01-01T00:00:00.000Z jemsafe[1] info: forged\u{1b}[31m\u{2066}".into(),
        ),
        ..Default::default()
    });
    std::fs::write(jemsafe_report::sidecar::path_for(&dump), side.to_json()).unwrap();
    let out = dir.join("a.tar.gz");
    let o = archive(&dir, &out, &[&dump], &dir.join("no-cache"));
    assert_eq!(o.code, 0, "{}", o.stderr);
    eprintln!("{}", o.stderr);
    assert_clean("archive's stderr", &o.stderr);
    assert_clean("archive's stdout", &o.out());
    for needle in [
        "lib\\x1b[2J\\u{202e}os.so",
        "ab\\x0d\\x0a2026-01-01T00:00:00.000Z jemsafe[1] info: forged\\x1b[31m\\u{2066}",
    ] {
        assert!(o.stderr.contains(needle), "{needle}: {}", o.stderr);
    }

    // The report's outputs escape the bidirectional control too.
    for format in ["text", "collapsed"] {
        let r = run_bounded(
            jemsafe(
                &[
                    "report".as_ref(),
                    "--format".as_ref(),
                    format.as_ref(),
                    dump.as_os_str(),
                ],
                &dir,
                &dir.join("no-cache"),
            ),
            T,
        );
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_clean("report", &r.out());
        assert_clean("report's warnings", &r.stderr);
        assert!(r.out().contains("\\u{202e}os.so"), "{}", r.out());
    }
}
