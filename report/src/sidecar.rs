//! The sidecar of a dump: `<dump>.json`, written by jemsafe at the moment of the dump,
//! holding what is needed to read the dump correctly later and elsewhere: which files
//! were mapped (path, build-id, device, inode, size), which process it was (pid and
//! start time, so that two processes that shared a pid are never compared), and how it
//! was profiled.
//!
//! The format grows: [`Sidecar::version`] is [`VERSION`] for what this module writes;
//! readers ignore fields they do not know and treat every field but `version` as
//! optional, so a newer writer's file still reads, and an older one's too. A field added
//! later (a memory snapshot, ...) is an `Option` or a `Vec` with `#[serde(default)]`.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The format version this module writes.
pub const VERSION: u32 = 1;

/// Sidecars larger than this are refused (a few hundred objects take some 50 KB).
pub const MAX_SIDECAR: u64 = 16 << 20;

/// What jemsafe knew about a dump when it was taken.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sidecar {
    /// Format version ([`VERSION`] when written by this jemsafe).
    pub version: u32,
    /// The dump's file name, for a sidecar that travels alone.
    #[serde(default)]
    pub dump: Option<String>,
    /// What asked for the dump: `usr1`, `cli`, `growth`, ... or jemalloc's own kind
    /// (`interval`, `gdump`, `final`, `manual`).
    #[serde(default)]
    pub trigger: Option<String>,
    /// The reading that fired the trigger, in words (`limit90: RSS 691 MiB of 768 MiB`,
    /// `pressure: some avg10=31.5 > 20`); absent for dumps asked for by a person or
    /// written by jemalloc on its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When the sidecar was written (RFC 3339, UTC).
    #[serde(default)]
    pub written_at: Option<String>,
    #[serde(default)]
    pub host: Option<String>,
    /// The process the dump was taken of.
    #[serde(default)]
    pub process: Option<Process>,
    /// `mysqld --version`'s first line.
    #[serde(default)]
    pub mysqld_version: Option<String>,
    /// jemsafe's profile and the MALLOC_CONF mysqld was started with.
    #[serde(default)]
    pub profile: Option<String>,
    #[serde(default)]
    pub malloc_conf: Option<String>,
    #[serde(default)]
    pub jemalloc: Option<Jemalloc>,
    /// Every file mapped executable in the process when the dump was taken.
    #[serde(default)]
    pub objects: Vec<Object>,
    #[serde(default)]
    pub jemsafe_version: Option<String>,
    /// Where the process's memory was: read just before jemsafe's on-demand dumps, and
    /// just after jemalloc's automatic ones when jemsafe saw them (its `after_close_ms`).
    /// Kept as JSON here and read by [`Sidecar::memory_snapshot`], so that a snapshot of
    /// another format never makes the rest of the sidecar unreadable.
    #[serde(default)]
    pub memory: Option<serde_json::Value>,
}

/// A process, told apart from any other that had the same pid.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Process {
    pub pid: u32,
    /// The 22nd field of /proc/PID/stat: clock ticks from boot to the process's start.
    pub start_ticks: u64,
    /// /proc/sys/kernel/random/boot_id: with `start_ticks`, unique per process.
    #[serde(default)]
    pub boot_id: Option<String>,
    /// The start time, RFC 3339 UTC (for people; `start_ticks` decides).
    #[serde(default)]
    pub started_at: Option<String>,
    #[serde(default)]
    pub executable: Option<String>,
}

/// What is known of a process: its pid (from a dump's name, a sidecar, a timeline record),
/// and its start ticks and boot where a sidecar or record tells them. The one rule for
/// "same process": two are one unless a part known on both sides differs (a restart that
/// got the same pid has another start; a reboot, another boot id).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Known {
    pub pid: Option<u32>,
    pub start_ticks: Option<u64>,
    pub boot_id: Option<String>,
}

impl Known {
    /// A dump's: the pid its name gives (else its sidecar's), start and boot from its
    /// sidecar.
    pub fn of(pid: Option<u32>, process: Option<&Process>) -> Known {
        Known {
            pid: pid.or(process.map(|p| p.pid)),
            start_ticks: process.map(|p| p.start_ticks),
            boot_id: process.and_then(|p| p.boot_id.clone()),
        }
    }

    /// A process by its pid, and its start ticks when known (no boot id).
    pub fn started(pid: u32, start_ticks: Option<u64>) -> Known {
        Known {
            pid: Some(pid),
            start_ticks,
            boot_id: None,
        }
    }

    /// A timeline record's (it carries no boot id).
    pub fn record(pid: u32, start_ticks: u64) -> Known {
        Known::started(pid, Some(start_ticks))
    }

    /// Whether `self` and `other` may be one process: nothing known of both differs.
    pub fn same_as(&self, other: &Known) -> bool {
        fn agree<T: PartialEq>(a: &Option<T>, b: &Option<T>) -> bool {
            a.is_none() || b.is_none() || a == b
        }
        agree(&self.pid, &other.pid)
            && agree(&self.start_ticks, &other.start_ticks)
            && agree(&self.boot_id, &other.boot_id)
    }
}

impl Process {
    /// Whether `self` and `other` are one process (same pid, boot and start time).
    pub fn same_as(&self, other: &Process) -> bool {
        Known::of(None, Some(self)).same_as(&Known::of(None, Some(other)))
    }

    /// `pid 4711 started 2026-11-27T08:00:00Z` (the time as the sidecar has it, escaped).
    pub fn describe(&self) -> String {
        match &self.started_at {
            Some(t) => format!("pid {} started {}", self.pid, crate::safe::escape(t)),
            None => format!("pid {} (start tick {})", self.pid, self.start_ticks),
        }
    }
}

/// The jemalloc inside the process.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jemalloc {
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub lg_prof_sample: Option<u32>,
}

/// One mapped file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Object {
    /// The path in /proc/PID/maps.
    pub path: String,
    /// GNU build-id, lower-case hex.
    #[serde(default)]
    pub build_id: Option<String>,
    /// `major:minor` in hex, as /proc/PID/maps writes it.
    #[serde(default)]
    pub device: Option<String>,
    #[serde(default)]
    pub inode: Option<u64>,
    #[serde(default)]
    pub size: Option<u64>,
}

impl Sidecar {
    /// The memory snapshot: None when there is none; Err with the reason when it cannot
    /// be read (another format version, a damaged file).
    pub fn memory_snapshot(&self) -> Option<Result<crate::memory::Snapshot, String>> {
        let value = self.memory.as_ref()?;
        let version = value.get("version").and_then(|v| v.as_u64());
        if version != Some(u64::from(crate::memory::SNAPSHOT_VERSION)) {
            return Some(Err(format!(
                "its memory snapshot has format version {}, and this jemsafe reads version {}: \
                 read it with the jemsafe that wrote it",
                version.map_or_else(|| "(none)".to_owned(), |v| v.to_string()),
                crate::memory::SNAPSHOT_VERSION
            )));
        }
        let snapshot: crate::memory::Snapshot = match serde_json::from_value(value.clone()) {
            Ok(s) => s,
            Err(e) => return Some(Err(format!("its memory snapshot is damaged ({e})"))),
        };
        // Whoever can write the dump directory can write this file: a page size jemalloc
        // cannot have is damage, not a number to compute with.
        let page = snapshot.jemalloc.page;
        if !(page.is_power_of_two() && (4096..=64 << 10).contains(&page)) {
            return Some(Err(format!(
                "its memory snapshot is damaged (page size {page}; jemalloc's is a power of \
                 two from 4 KiB to 64 KiB)"
            )));
        }
        Some(Ok(snapshot))
    }

    /// Why the dump was taken, for a person: its trigger with the reading that fired it
    /// (`limit90: RSS 691 MiB of 768 MiB`), or the trigger alone when no reading was kept
    /// (`usr1`). Not escaped: the file is mysqld's user's to write.
    pub fn why(&self) -> Option<String> {
        match (&self.trigger, &self.reason) {
            (Some(t), Some(r)) if r.starts_with(t.as_str()) => Some(r.clone()),
            (Some(t), Some(r)) => Some(format!("{t}: {r}")),
            (None, Some(r)) => Some(r.clone()),
            (Some(t), None) => Some(t.clone()),
            (None, None) => None,
        }
    }

    /// Stores `snapshot` as the memory snapshot.
    pub fn set_memory(&mut self, snapshot: &crate::memory::Snapshot) {
        self.memory = serde_json::to_value(snapshot).ok();
    }

    /// A new sidecar of this version.
    pub fn new() -> Sidecar {
        Sidecar {
            version: VERSION,
            ..Default::default()
        }
    }

    /// The object recorded for `path`.
    pub fn object(&self, path: &str) -> Option<&Object> {
        self.objects.iter().find(|o| o.path == path)
    }

    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }

    pub fn from_json(data: &[u8]) -> Result<Sidecar, String> {
        let s: Sidecar = serde_json::from_slice(data).map_err(|e| e.to_string())?;
        if s.version == 0 {
            return Err("its version is 0 (not a jemsafe sidecar)".into());
        }
        Ok(s)
    }
}

/// `<dump>.json`.
pub fn path_for(dump: &Path) -> PathBuf {
    let mut p = dump.as_os_str().to_owned();
    p.push(".json");
    PathBuf::from(p)
}

/// The sidecar of `dump`, if there is one. Ok(None): none (a dump jemsafe did not take,
/// or taken before sidecars); Err: one that cannot be used (the reason, for a warning).
/// `follow`: whether a symbolic link is followed (not for files picked from the dump
/// directory, which mysqld's user can write).
pub fn read_for(dump: &Path, follow: bool) -> Result<Option<Sidecar>, String> {
    read_within(dump, follow, MAX_SIDECAR)
}

/// [`read_for`], refusing a sidecar larger than `max` bytes.
pub fn read_within(dump: &Path, follow: bool, max: u64) -> Result<Option<Sidecar>, String> {
    use std::io::Read;
    let path = path_for(dump);
    let opened = match crate::safe::open_regular(&path, follow) {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", crate::safe::shown(&path))),
    };
    if opened.meta.len() > max {
        return Err(format!(
            "{}: {} bytes, more than a sidecar has (at most {max}); not used",
            crate::safe::shown(&path),
            opened.meta.len()
        ));
    }
    let mut data = Vec::new();
    (&opened.file)
        .take(max.saturating_add(1))
        .read_to_end(&mut data)
        .map_err(|e| format!("{}: {e}", crate::safe::shown(&path)))?;
    Sidecar::from_json(&data).map(Some).map_err(|e| {
        format!(
            "{} is not a usable sidecar ({e})",
            crate::safe::shown(&path)
        )
    })
}

/// The GNU build-id of an ELF file, from its program headers' notes, reading only the
/// headers and the notes (bounded). None: not ELF, or no build-id.
pub fn build_id(file: &std::fs::File) -> Option<Vec<u8>> {
    use object::read::elf::{FileHeader, ProgramHeader};
    use std::os::unix::fs::FileExt;
    let mut head = vec![0u8; 64 * 1024];
    let n = file.read_at(&mut head, 0).ok()?;
    head.truncate(n);
    let header = object::elf::FileHeader64::<object::Endianness>::parse(&head[..]).ok()?;
    let endian = header.endian().ok()?;
    let phdrs = header.program_headers(endian, &head[..]).ok()?;
    for ph in phdrs {
        if ph.p_type(endian) != object::elf::PT_NOTE {
            continue;
        }
        let (off, size) = (ph.p_offset(endian), ph.p_filesz(endian));
        if size > 64 * 1024 {
            continue;
        }
        let mut notes = vec![0u8; size as usize];
        file.read_exact_at(&mut notes, off).ok()?;
        let align = ph.p_align(endian).max(4);
        let Ok(mut it) = object::read::elf::NoteIterator::<
            object::elf::FileHeader64<object::Endianness>,
        >::new(endian, align, &notes[..]) else {
            continue;
        };
        while let Ok(Some(note)) = it.next() {
            if note.name() == object::elf::ELF_NOTE_GNU
                && note.n_type(endian) == object::elf::NT_GNU_BUILD_ID
            {
                return Some(note.desc().to_vec());
            }
        }
    }
    None
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_with_a_page_size_jemalloc_cannot_have_is_damaged() {
        let jemalloc = crate::memory::JemallocMemory {
            page: 4096,
            ..Default::default()
        };
        let good = crate::memory::Snapshot::new(Default::default(), jemalloc.clone());
        let mut s = Sidecar::new();
        s.set_memory(&good);
        assert!(s.memory_snapshot().is_some_and(|r| r.is_ok()));
        for page in [0, 5000, 1 << 62] {
            let bad = crate::memory::JemallocMemory {
                page,
                ..jemalloc.clone()
            };
            s.set_memory(&crate::memory::Snapshot::new(Default::default(), bad));
            let e = s.memory_snapshot().unwrap().unwrap_err();
            assert!(e.contains("page size"), "{e}");
        }
    }

    #[test]
    fn round_trips_and_reads_what_it_does_not_know() {
        let mut s = Sidecar::new();
        s.trigger = Some("usr1".into());
        s.objects.push(Object {
            path: "/usr/sbin/mariadbd".into(),
            build_id: Some("abcd".into()),
            device: Some("fe:01".into()),
            inode: Some(42),
            size: Some(1000),
        });
        let back = Sidecar::from_json(&s.to_json()).unwrap();
        assert_eq!(back, s);
        // A later version with a field this one does not know still reads.
        let newer = br#"{"version": 2, "memory": {"rss": 1}, "future": [1], "objects": []}"#;
        let s = Sidecar::from_json(newer).unwrap();
        assert_eq!(s.version, 2);
        // ...and a memory snapshot of another shape is refused with the reason.
        let e = s.memory_snapshot().unwrap().unwrap_err();
        assert!(e.contains("format version (none)"), "{e}");
        assert!(Sidecar::from_json(b"{}").is_err());
    }

    #[test]
    fn why_names_the_trigger_once_with_its_reading() {
        let mut s = Sidecar::new();
        assert_eq!(s.why(), None);
        s.trigger = Some("usr1".into());
        assert_eq!(s.why().as_deref(), Some("usr1"));
        s.trigger = Some("limit90".into());
        s.reason = Some("limit90: RSS 691 MiB of 768 MiB".into());
        assert_eq!(s.why().as_deref(), Some("limit90: RSS 691 MiB of 768 MiB"));
        s.trigger = Some("pressure".into());
        s.reason = Some("some avg10=31.5 > 20".into());
        assert_eq!(s.why().as_deref(), Some("pressure: some avg10=31.5 > 20"));
        // An older jemsafe's sidecar (no reason) and a newer one's both read.
        let old = Sidecar::from_json(br#"{"version": 1, "trigger": "cli"}"#).unwrap();
        assert_eq!(
            (old.reason.as_deref(), old.why()),
            (None, Some("cli".into()))
        );
        let back = Sidecar::from_json(&s.to_json()).unwrap();
        assert_eq!(back.reason.as_deref(), Some("some avg10=31.5 > 20"));
    }

    #[test]
    fn the_test_binary_has_the_build_id_object_finds() {
        use object::Object as _;
        let exe = std::env::current_exe().unwrap();
        let data = std::fs::read(&exe).unwrap();
        let parsed = object::File::parse(&data[..]).unwrap();
        let want = parsed.build_id().unwrap().map(<[u8]>::to_vec);
        let f = std::fs::File::open(&exe).unwrap();
        assert_eq!(build_id(&f), want);
    }

    #[test]
    fn processes_with_one_pid_are_told_apart_by_start_time() {
        let a = Process {
            pid: 1,
            start_ticks: 100,
            boot_id: Some("b".into()),
            ..Default::default()
        };
        let b = Process {
            start_ticks: 200,
            ..a.clone()
        };
        assert!(a.same_as(&a.clone()));
        assert!(!a.same_as(&b));
        let other_boot = Process {
            boot_id: Some("c".into()),
            ..a.clone()
        };
        assert!(!a.same_as(&other_boot));
        let no_boot = Process {
            boot_id: None,
            ..a.clone()
        };
        assert!(a.same_as(&no_boot));
    }

    #[test]
    fn what_is_unknown_never_tells_two_processes_apart() {
        let a = Process {
            pid: 7,
            start_ticks: 100,
            boot_id: Some("b".into()),
            ..Default::default()
        };
        let dump = Known::of(Some(7), Some(&a));
        assert!(dump.same_as(&Known::record(7, 100)));
        assert!(!dump.same_as(&Known::record(7, 101)));
        assert!(!dump.same_as(&Known::record(8, 100)));
        // A dump without a sidecar: its name's pid alone.
        let named = Known::of(Some(7), None);
        assert!(named.same_as(&Known::record(7, 999)) && named.same_as(&dump));
        assert!(!named.same_as(&Known::of(Some(8), None)));
        // A sidecar without a pid in the name.
        assert_eq!(Known::of(None, Some(&a)).pid, Some(7));
        assert!(Known::default().same_as(&dump));
    }
}
