//! Handling what a heap dump points at as hostile: a dump is written by mysqld's user, and
//! `jemsafe report` usually runs as root.
//!
//! - [`escape`]: names and paths reach a terminal (and flame graphs, folded stacks,
//!   pprof) only with their control characters written as `\xNN` and their Unicode
//!   bidirectional controls as `\u{NNNN}`.
//! - [`open_regular`]: files named by a dump are looked at without opening them first
//!   (`O_PATH`), refused unless they are regular files, then opened through the same
//!   descriptor with `O_NONBLOCK|O_NOCTTY`: a FIFO cannot hang a report, a device is
//!   never opened, and nothing can be swapped in between the check and the open.
//! - [`FileStore`]: the bytes of the files a report reads, freed when it is done; a file
//!   that someone other than root (or the caller) can write is read into memory rather
//!   than mapped, so that truncating it under the report cannot kill the report with
//!   SIGBUS.

use std::borrow::Cow;
use std::fs::{File, Metadata};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

/// True for the control characters [`escape`] writes as `\xNN`: C0 controls, DEL and C1
/// controls.
fn is_control(c: char) -> bool {
    matches!(c, '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}')
}

/// True for the Unicode bidirectional embeddings, overrides and isolates (LRE, RLE, PDF,
/// LRO, RLO; LRI, RLI, FSI, PDI), which [`escape`] writes as `\u{NNNN}`: they reorder
/// the text that follows on a terminal or in a viewer, so that a name shows other than
/// it is (CVE-2021-42574, "Trojan Source").
fn is_bidi(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `s` with every control character (`\x00`-`\x1f`, `\x7f`, and the C1 controls
/// `\u{80}`-`\u{9f}`) written as `\xNN`, and every bidirectional control (U+202A-U+202E,
/// U+2066-U+2069) as `\u{NNNN}`; borrowed unchanged when there is none, so ordinary
/// names cost nothing and stay byte-for-byte what jeprof prints.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| is_control(c) || is_bidi(c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_control(c) {
            out.push_str(&format!("\\x{:02x}", c as u32));
        } else if is_bidi(c) {
            out.push_str(&format!("\\u{{{:04x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// [`escape`] in place, allocating only when something changes.
pub fn escape_in_place(s: &mut String) {
    if let Cow::Owned(e) = escape(s) {
        *s = e;
    }
}

/// A path as it may be shown: lossy UTF-8, control characters escaped.
pub fn shown(path: &Path) -> String {
    escape(&path.to_string_lossy()).into_owned()
}

/// What a non-regular file is, for messages.
fn kind(meta: &Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_symlink() {
        "a symbolic link"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else {
        "not a regular file"
    }
}

/// A regular file, opened for reading, with its metadata.
#[derive(Debug)]
pub struct Opened {
    pub file: File,
    pub meta: Metadata,
}

/// A directory, `path` relative to `at` (else to the working directory), without
/// following a symlink at its last component unless `follow`.
pub fn open_dir(
    at: Option<&std::os::fd::OwnedFd>,
    path: &Path,
    follow: bool,
) -> std::io::Result<std::os::fd::OwnedFd> {
    use nix::fcntl::OFlag;
    use std::os::fd::{AsRawFd, FromRawFd};
    let mut flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    if !follow {
        flags |= OFlag::O_NOFOLLOW;
    }
    let fd = nix::fcntl::openat(
        at.map(|d| d.as_raw_fd()),
        path,
        flags,
        nix::sys::stat::Mode::empty(),
    )?;
    // SAFETY: openat just returned this descriptor; nothing else owns it.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// Opens `path` for reading only if it is a regular file. With `follow` false a symbolic
/// link as the last component is refused (`O_NOFOLLOW`). Errors of kind `InvalidData`
/// say what the path is instead ("is a FIFO, not a regular file").
pub fn open_regular(path: &Path, follow: bool) -> std::io::Result<Opened> {
    let nofollow = if follow { 0 } else { libc::O_NOFOLLOW };
    // O_PATH: no open of the file itself (no FIFO wait, no device side effect).
    let handle = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | nofollow)
        .open(path)?;
    let meta = handle.metadata()?;
    if !meta.file_type().is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("is {}, not a regular file", kind(&meta)),
        ));
    }
    let flags = libc::O_NONBLOCK | libc::O_NOCTTY;
    use std::os::fd::AsRawFd;
    // Reopen the very inode the O_PATH descriptor holds.
    let via_proc = format!("/proc/self/fd/{}", handle.as_raw_fd());
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(&via_proc)
    {
        Ok(f) => f,
        // No /proc: open the path (still non-blocking, still no symlink), compare below.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(flags | nofollow)
            .open(path)?,
        Err(e) => return Err(e),
    };
    let now = file.metadata()?;
    if !now.file_type().is_file() || now.dev() != meta.dev() || now.ino() != meta.ino() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "changed while it was being opened",
        ));
    }
    Ok(Opened { file, meta: now })
}

/// Whether a file's contents can change under us by someone other than root or the caller.
fn writable_by_others(meta: &Metadata) -> bool {
    let euid = nix::unistd::geteuid().as_raw();
    (meta.uid() != 0 && meta.uid() != euid) || meta.mode() & 0o022 != 0
}

/// The bytes of the files one report reads, owned until the report is done: the parsed
/// symbol tables and DWARF borrow from them, and dropping the store unmaps and frees them
/// all, so a process that renders many reports (the supervisor's HTTP endpoint) does not
/// grow with each.
#[derive(Default)]
pub struct FileStore {
    kept: typed_arena::Arena<Kept>,
    /// Bytes read so far from files other users can write (mapped files cost no memory
    /// until touched; read ones do), and the bound on them (0: [`MAX_READ_TOTAL`]).
    read: std::cell::Cell<u64>,
    read_bound: u64,
}

/// The most one report reads from files other users can write, all files together: a
/// dump naming many large files of its writer's cannot make root read them all.
pub const MAX_READ_TOTAL: u64 = 4 << 30;

/// One file's bytes: mapped, or read into memory.
enum Kept {
    Mapped(memmap2::Mmap),
    Read(Vec<u8>),
}

impl FileStore {
    /// The bytes of an opened file: mapped when only root or the caller can change the
    /// file, else read (at most `max_read` bytes; a larger file is refused with the
    /// reason).
    pub fn file_bytes(&self, opened: &Opened, max_read: u64) -> Result<&[u8], String> {
        if !writable_by_others(&opened.meta) {
            // SAFETY: a private read-only mapping of a file that only root or we can
            // write: nobody else can truncate it under us (SIGBUS) or change what we read.
            let mmap = unsafe { memmap2::Mmap::map(&opened.file) }
                .map_err(|e| format!("cannot be mapped ({e})"))?;
            return Ok(self.keep(Kept::Mapped(mmap)));
        }
        let len = opened.meta.len();
        if len > max_read {
            return Err(format!(
                "is {len} bytes and writable by another user (uid {}, mode {:o}); such files \
                 are read into memory rather than mapped, and this one is larger than {} MiB",
                opened.meta.uid(),
                opened.meta.mode() & 0o7777,
                max_read >> 20
            ));
        }
        let bound = if self.read_bound == 0 {
            MAX_READ_TOTAL
        } else {
            self.read_bound
        };
        let total = self.read.get().saturating_add(len);
        if total > bound {
            return Err(format!(
                "is writable by another user (uid {}) and would take what this report reads \
                 from such files past {}",
                opened.meta.uid(),
                crate::human_bytes(bound as f64)
            ));
        }
        let mut data = Vec::with_capacity(len as usize);
        (&opened.file)
            .take(max_read)
            .read_to_end(&mut data)
            .map_err(|e| format!("cannot be read ({e})"))?;
        self.read.set(total);
        Ok(self.keep(Kept::Read(data)))
    }

    /// Keeps `data` (e.g. a decompressed section) as long as the store.
    pub fn buffer(&self, data: Vec<u8>) -> &[u8] {
        self.keep(Kept::Read(data))
    }

    fn keep(&self, kept: Kept) -> &[u8] {
        match self.kept.alloc(kept) {
            Kept::Mapped(m) => &m[..],
            Kept::Read(v) => &v[..],
        }
    }
}

/// A reader that fails once more than `limit` bytes come through, and sets `hit` when it
/// does: the caller tells "too large" (a bomb) from a damaged file.
pub struct Capped<R> {
    inner: R,
    left: u64,
    hit: std::rc::Rc<std::cell::Cell<bool>>,
}

impl<R> Capped<R> {
    pub fn new(inner: R, limit: u64, hit: &std::rc::Rc<std::cell::Cell<bool>>) -> Capped<R> {
        Capped {
            inner,
            left: limit,
            hit: std::rc::Rc::clone(hit),
        }
    }
}

impl<R: std::io::Read> std::io::Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // One byte beyond the cap tells "exactly the cap" from "more".
        let want = buf
            .len()
            .min(usize::try_from(self.left.saturating_add(1)).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n as u64 > self.left {
            self.hit.set(true);
            return Err(std::io::Error::other("more than the limit came through"));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_other_users_can_write_are_read_within_one_bound_for_the_report() {
        let dir = std::env::temp_dir().join(format!("jemsafe-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = FileStore {
            read_bound: 12,
            ..Default::default()
        };
        let read = |name: &str| {
            let p = dir.join(name);
            std::fs::write(&p, "8 bytes!").unwrap();
            // Another user's (as root), or writable by all (otherwise): read, not mapped.
            let _ = std::os::unix::fs::chown(&p, Some(65534), Some(65534));
            std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o666))
                .unwrap();
            let opened = open_regular(&p, false).unwrap();
            store.file_bytes(&opened, 1 << 20).map(<[u8]>::len)
        };
        assert_eq!(read("a"), Ok(8));
        let e = read("b").unwrap_err();
        assert!(e.contains("past 12 B"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn escape_rewrites_controls_and_bidi_controls_only() {
        assert!(matches!(
            escape("operator new(unsigned long)"),
            Cow::Borrowed(_)
        ));
        assert_eq!(
            escape("a\x1b[31mb\nc\x7fd\u{9b}e\0"),
            "a\\x1b[31mb\\x0ac\\x7fd\\x9be\\x00"
        );
        // Bidirectional controls, all nine, as \u{NNNN}: `evil\u{202e}cod.exe` would show
        // as "evilexe.doc".
        assert_eq!(escape("evil\u{202e}cod.exe"), "evil\\u{202e}cod.exe");
        assert_eq!(
            escape("\u{202a}\u{202b}\u{202c}\u{202d}\u{2066}\u{2067}\u{2068}\u{2069}"),
            "\\u{202a}\\u{202b}\\u{202c}\\u{202d}\\u{2066}\\u{2067}\\u{2068}\\u{2069}"
        );
        // Their neighbours, and other non-ASCII text, are kept.
        assert_eq!(
            escape("\u{2029}\u{206a}\u{2065}"),
            "\u{2029}\u{206a}\u{2065}"
        );
        assert_eq!(escape("größe_ñ"), "größe_ñ");
        assert_eq!(shown(Path::new("/tmp/x\ty")), "/tmp/x\\x09y");
    }

    #[test]
    fn only_regular_files_are_opened() {
        let dir = std::env::temp_dir().join(format!("jemsafe-safe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("fifo");
        let _ = std::fs::remove_file(&fifo);
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        // Without O_PATH this would block until a writer appears.
        let e = open_regular(&fifo, true).unwrap_err();
        assert!(e.to_string().contains("is a FIFO"), "{e}");
        let file = dir.join("file");
        std::fs::write(&file, b"data").unwrap();
        let link = dir.join("link");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&file, &link).unwrap();
        let e = open_regular(&link, false).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        let o = open_regular(&link, true).unwrap();
        let store = FileStore::default();
        assert_eq!(store.file_bytes(&o, 1 << 20).unwrap(), b"data");
        assert!(open_regular(Path::new("/dev/null"), true).is_err());
        assert!(open_regular(&dir, true).is_err());

        // Ours and not group/world-writable: mapped. Writable by others: read, bounded.
        use std::os::unix::fs::PermissionsExt;
        assert!(!writable_by_others(&o.meta));
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
        let o = open_regular(&file, false).unwrap();
        assert!(writable_by_others(&o.meta));
        assert_eq!(store.file_bytes(&o, 4).unwrap(), b"data");
        let e = store.file_bytes(&o, 3).unwrap_err();
        assert!(e.contains("writable by another user"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
