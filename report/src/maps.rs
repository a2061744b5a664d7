//! Memory mappings as /proc/PID/maps writes them (and heap dumps copy them into their
//! MAPPED_LIBRARIES section): the one parser of a maps line, for the analyzer and for
//! jemsafe's /proc readers alike.

/// One line of the MAPPED_LIBRARIES section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapEntry {
    pub start: u64,
    pub end: u64,
    pub perms: String,
    pub offset: u64,
    /// `major:minor` in hex, as /proc/PID/maps writes it.
    pub dev: (u32, u32),
    pub inode: u64,
    /// The path or pseudo-name (`[vdso]`); None for anonymous memory.
    pub path: Option<String>,
}

impl MapEntry {
    pub fn executable(&self) -> bool {
        self.perms.as_bytes().get(2) == Some(&b'x')
    }
}

/// One /proc/PID/maps line: `start-end perms offset major:minor inode [path]`.
pub fn parse_line(line: &str) -> Option<MapEntry> {
    let mut rest = line.trim_start();
    let mut field = || -> Option<&str> {
        let r = rest.trim_start();
        let end = r.find(char::is_whitespace).unwrap_or(r.len());
        let (f, tail) = r.split_at(end);
        rest = tail;
        (!f.is_empty()).then_some(f)
    };
    let range = field()?;
    let perms = field()?;
    let offset = field()?;
    let dev = field()?;
    let inode = field()?;
    let (start, end) = range.split_once('-')?;
    let (major, minor) = dev.split_once(':')?;
    if perms.len() != 4 {
        return None;
    }
    let path = rest.trim();
    let entry = MapEntry {
        start: parse_hex(start.as_bytes())?,
        end: parse_hex(end.as_bytes())?,
        perms: perms.to_owned(),
        offset: parse_hex(offset.as_bytes())?,
        dev: (
            u32::from_str_radix(major, 16).ok()?,
            u32::from_str_radix(minor, 16).ok()?,
        ),
        inode: inode.parse().ok()?,
        path: (!path.is_empty()).then(|| path.to_owned()),
    };
    (entry.start <= entry.end).then_some(entry)
}

/// A hex number as jemalloc and the kernel write them (`0x` optional), at most 64 bits.
pub(crate) fn parse_hex(s: &[u8]) -> Option<u64> {
    let s = s
        .strip_prefix(b"0x")
        .or_else(|| s.strip_prefix(b"0X"))
        .unwrap_or(s);
    if s.is_empty() || s.len() > 16 {
        return None;
    }
    let mut v: u64 = 0;
    for &b in s {
        let d = (b as char).to_digit(16)?;
        v = (v << 4) | d as u64;
    }
    Some(v)
}
