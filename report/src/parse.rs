//! jemalloc's `heap_v2` text dump: header, stacks with their `t*:` (and per-thread `tN:`)
//! counts, and the `MAPPED_LIBRARIES:` copy of /proc/PID/maps. gzip-compressed files are
//! recognised by their magic bytes.
//!
//! ```text
//! heap_v2/524288
//!   t*: 28106: 56637512 [0: 0]
//!   t0: 28106: 56637512 [0: 0]
//! @ 0x7f3a5c1b2e4f 0x55d1c3a4b5c6 ...
//!   t*: 1: 4096 [0: 0]
//!   t0: 1: 4096 [0: 0]
//!
//! MAPPED_LIBRARIES:
//! 55d1c3800000-55d1c3a00000 r-xp 00000000 fe:00 247030   /usr/sbin/mariadbd
//! ```
//!
//! Counts are kept as written (sampled); [`crate::aggregate`] un-samples them
//! ([`crate::counts`]).

use std::fmt;

pub use crate::counts::Counts;

/// One `@ ...` record: the return addresses as written (innermost first) and its `t*:` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackRecord {
    pub addrs: Vec<u64>,
    pub counts: Counts,
    /// 1-based line of the `@` line, for messages.
    pub line: usize,
}

use crate::maps::parse_hex;
pub use crate::maps::MapEntry;

/// A parsed dump.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Dump {
    /// Mean bytes between samples (`2^lg_prof_sample`), from `heap_v2/<rate>`.
    pub rate: u64,
    /// The header's `t*:` line: the sampled totals as jemalloc counted them.
    pub header_counts: Counts,
    pub stacks: Vec<StackRecord>,
    /// Distinct thread ids seen on `tN:` lines.
    pub threads: usize,
    pub maps: Vec<MapEntry>,
}

impl Dump {
    /// The main program: the first mapping with an absolute path (the kernel lists the
    /// executable first), if any.
    pub fn program(&self) -> Option<&str> {
        self.maps
            .iter()
            .filter_map(|m| m.path.as_deref())
            .find(|p| p.starts_with('/'))
    }
}

/// What is wrong with the input, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line number (0: not about one line, e.g. an empty file).
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.message)
        } else {
            write!(f, "line {}: {}", self.line, self.message)
        }
    }
}

impl std::error::Error for ParseError {}

fn err<T>(line: usize, message: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError {
        line,
        message: message.into(),
    })
}

/// True when `data` starts with the gzip magic bytes.
pub fn is_gzip(data: &[u8]) -> bool {
    data.starts_with(&[0x1f, 0x8b])
}

/// Decompresses gzip (all members) or returns the data unchanged; at most
/// `DEFAULT_MAX_DUMP_MB` MiB (see [`decompress_limited`]).
pub fn decompress(data: Vec<u8>) -> Result<Vec<u8>, ParseError> {
    decompress_limited(data, super::DEFAULT_MAX_DUMP_MB << 20)
}

/// Decompresses gzip (all members) or returns the data unchanged; more than `max` bytes
/// of output is an error (a small file can hold a gzip bomb).
pub fn decompress_limited(data: Vec<u8>, max: u64) -> Result<Vec<u8>, ParseError> {
    if !is_gzip(&data) {
        return Ok(data);
    }
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(&data[..])
        .take(max.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| ParseError {
            line: 0,
            message: format!("gzip data is damaged or truncated: {e}"),
        })?;
    if out.len() as u64 > max {
        return err(
            0,
            format!("the gzip data decompresses to more than {} MiB", max >> 20),
        );
    }
    Ok(out)
}

fn trim(line: &[u8]) -> &[u8] {
    let start = line
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(line.len());
    let end = line
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &line[start..end.max(start)]
}

fn parse_dec(s: &[u8]) -> Option<u64> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

/// `t*: 1: 4096 [0: 0]` or `t12: ...` (already trimmed). Returns (thread, counts), thread
/// None for `*`.
fn parse_counts(line: &[u8]) -> Option<(Option<u64>, Counts)> {
    let rest = line.strip_prefix(b"t")?;
    let colon = rest.iter().position(|&b| b == b':')?;
    let thread = match &rest[..colon] {
        b"*" => None,
        digits => Some(parse_dec(digits)?),
    };
    let rest = &rest[colon + 1..];
    // `<n1>: <s1> [<n2>: <s2>]`
    let open = rest.iter().position(|&b| b == b'[')?;
    let close = rest.iter().rposition(|&b| b == b']')?;
    if close + 1 != rest.len() || close < open {
        return None;
    }
    let pair = |s: &[u8]| -> Option<(u64, u64)> {
        let c = s.iter().position(|&b| b == b':')?;
        Some((parse_dec(trim(&s[..c]))?, parse_dec(trim(&s[c + 1..]))?))
    };
    let (n1, s1) = pair(&rest[..open])?;
    let (n2, s2) = pair(&rest[open + 1..close])?;
    Some((
        thread,
        Counts {
            inuse_objects: n1,
            inuse_bytes: s1,
            alloc_objects: n2,
            alloc_bytes: s2,
        },
    ))
}

/// The longest line a dump may have, newline included. jemalloc writes at most 128
/// frames per stack (about 2.5 KiB) and maps lines hold one path (at most 4 KiB); a
/// longer line is not a heap dump's, and reading it whole could take any amount of memory.
pub const MAX_LINE: usize = 1 << 20;

/// Lines of a reader, numbered from 1; the last one may lack its newline.
struct LineReader<R> {
    reader: R,
    buf: Vec<u8>,
    number: usize,
}

impl<R: std::io::BufRead> LineReader<R> {
    /// The next line (without `\n`, `\r`) and whether it was terminated by a newline.
    fn next(&mut self) -> Result<Option<(usize, bool)>, ParseError> {
        self.buf.clear();
        let line = self.number + 1;
        loop {
            let available = match self.reader.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return err(line, format!("cannot read the dump: {e}"));
                }
            };
            if available.is_empty() {
                break;
            }
            let (used, done) = match available.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (available.len(), false),
            };
            if self.buf.len() + used > MAX_LINE {
                return err(
                    line,
                    format!(
                        "the line is longer than {} KiB (no heap dump line is): not a \
                         jemalloc heap dump, or a damaged one",
                        MAX_LINE >> 10
                    ),
                );
            }
            self.buf.extend_from_slice(&available[..used]);
            self.reader.consume(used);
            if done {
                break;
            }
        }
        if self.buf.is_empty() {
            return Ok(None);
        }
        self.number = line;
        let terminated = self.buf.last() == Some(&b'\n');
        while matches!(self.buf.last(), Some(b'\n' | b'\r')) {
            self.buf.pop();
        }
        Ok(Some((self.number, terminated)))
    }
}

/// What the `t*:` lines of the stacks add up to, raw and un-sampled, so that counts
/// whose sums do not fit in 64 bits are refused with the line where they overflow
/// (rather than shown as "16384.0 PiB").
#[derive(Default)]
struct Sums {
    raw: [u64; 4],
    unsampled: [f64; 4],
}

const COUNT_NAMES: [&str; 4] = [
    "in-use objects",
    "in-use bytes",
    "allocated objects",
    "allocated bytes",
];

/// 2^64: the first value that does not fit in a u64.
const TWO_POW_64: f64 = 18_446_744_073_709_551_616.0;

impl Sums {
    fn add(&mut self, n: usize, rate: u64, c: Counts) -> Result<(), ParseError> {
        let raw = [
            c.inuse_objects,
            c.inuse_bytes,
            c.alloc_objects,
            c.alloc_bytes,
        ];
        let unsampled = crate::counts::unsample(rate, c);
        for i in 0..4 {
            let total = self.raw[i].checked_add(raw[i]);
            let scaled = self.unsampled[i] + unsampled[i];
            match total {
                Some(t) if unsampled[i] < TWO_POW_64 && scaled < TWO_POW_64 => {
                    self.raw[i] = t;
                    self.unsampled[i] = scaled;
                }
                _ => {
                    return err(
                        n,
                        format!(
                            "the {} of the stacks up to this line add up to more than \
                             2^64 - 1 (after un-sampling at 1 in {rate}): the counts are \
                             corrupt",
                            COUNT_NAMES[i]
                        ),
                    )
                }
            }
        }
        Ok(())
    }
}

/// jemalloc writes a count pair as both zero or both non-zero; bytes without objects
/// cannot come from it.
fn check_pairs(n: usize, c: &Counts) -> Result<(), ParseError> {
    for (objects, bytes, what) in [
        (c.inuse_objects, c.inuse_bytes, "in use"),
        (c.alloc_objects, c.alloc_bytes, "allocated"),
    ] {
        if objects == 0 && bytes != 0 {
            return err(
                n,
                format!("0 objects but {bytes} bytes {what}: malformed counts"),
            );
        }
    }
    Ok(())
}

/// Parses a whole dump (already decompressed). Never panics; every error names its line.
#[cfg(test)]
pub fn parse(data: &[u8]) -> Result<Dump, ParseError> {
    parse_reader(data)
}

/// Parses a dump from a reader, line by line (a large dump is never held in memory whole).
pub fn parse_reader(reader: impl std::io::BufRead) -> Result<Dump, ParseError> {
    let mut lines = LineReader {
        reader,
        buf: Vec::with_capacity(256),
        number: 0,
    };
    let mut dump = Dump::default();
    let mut threads = std::collections::HashSet::new();

    // Header, after jeprof's optional `%warn` / `%...` command lines.
    let mut header_seen = false;
    while let Some((n, _)) = lines.next()? {
        let line = trim(&lines.buf);
        if line.starts_with(b"%") {
            continue;
        }
        let Some(rate) = line.strip_prefix(b"heap_v2/") else {
            let shown = String::from_utf8_lossy(&line[..line.len().min(40)]).into_owned();
            return err(
                n,
                format!(
                    "expected the header `heap_v2/<sample rate>`, found {shown:?}: not a jemalloc \
                     heap dump (jemalloc 4 and later write heap_v2; gperftools' format is not supported)"
                ),
            );
        };
        match parse_dec(rate) {
            Some(r) if r > 0 => dump.rate = r,
            _ => {
                return err(
                    n,
                    "the sample rate in `heap_v2/<rate>` is not a positive number",
                )
            }
        }
        header_seen = true;
        break;
    }
    if !header_seen {
        return err(
            0,
            if lines.number == 0 {
                "the file is empty (not a jemalloc heap dump)"
            } else {
                "no `heap_v2/<rate>` header: not a jemalloc heap dump"
            },
        );
    }

    // Stacks until MAPPED_LIBRARIES.
    let mut current: Option<StackRecord> = None;
    let mut sums = Sums::default();
    let mut in_header = true;
    let mut maps_found = false;
    let mut last_line = 1;
    while let Some((n, terminated)) = lines.next()? {
        if !terminated {
            return err(
                n,
                "the file ends in the middle of a line before MAPPED_LIBRARIES: the dump is truncated",
            );
        }
        last_line = n;
        let line = trim(&lines.buf);
        if line.is_empty() {
            continue;
        }
        if line.starts_with(b"MAPPED_LIBRARIES:") {
            if let Some(stack) = &current {
                return err(
                    stack.line,
                    "this stack has no `t*:` line before MAPPED_LIBRARIES",
                );
            }
            maps_found = true;
            break;
        }
        if let Some(rest) = line.strip_prefix(b"@") {
            if let Some(stack) = &current {
                return err(stack.line, "this stack has no `t*:` line");
            }
            let mut addrs = Vec::new();
            for word in rest
                .split(|b| b.is_ascii_whitespace())
                .filter(|w| !w.is_empty())
            {
                match parse_hex(word) {
                    Some(a) => addrs.push(a),
                    None => {
                        return err(
                            n,
                            format!(
                                "{:?} is not a hexadecimal address",
                                String::from_utf8_lossy(&word[..word.len().min(40)])
                            ),
                        )
                    }
                }
            }
            if addrs.is_empty() {
                return err(n, "a stack line `@` without addresses");
            }
            addrs.shrink_to_fit();
            current = Some(StackRecord {
                addrs,
                counts: Counts::default(),
                line: n,
            });
            in_header = false;
            continue;
        }
        if line.starts_with(b"t") {
            let Some((thread, counts)) = parse_counts(line) else {
                return err(
                    n,
                    format!(
                        "malformed count line {:?} (expected `tN: <objects>: <bytes> [<objects>: <bytes>]`)",
                        String::from_utf8_lossy(&line[..line.len().min(60)])
                    ),
                );
            };
            check_pairs(n, &counts)?;
            if let Some(t) = thread {
                threads.insert(t);
            }
            match (thread, in_header) {
                (None, true) => dump.header_counts = counts,
                (Some(_), _) => {}
                (None, false) => match current.take() {
                    Some(mut stack) => {
                        sums.add(n, dump.rate, counts)?;
                        stack.counts = counts;
                        dump.stacks.push(stack);
                    }
                    None => return err(n, "a second `t*:` line for the same stack"),
                },
            }
            continue;
        }
        return err(
            n,
            format!(
                "unexpected line {:?} (expected `@ <addresses>`, `tN: ...` or MAPPED_LIBRARIES:)",
                String::from_utf8_lossy(&line[..line.len().min(60)])
            ),
        );
    }
    if !maps_found {
        if let Some(stack) = &current {
            return err(
                stack.line,
                "the file ends after this stack, without its `t*:` line: the dump is truncated",
            );
        }
        return err(
            last_line,
            "the file ends without a MAPPED_LIBRARIES section: the dump is truncated \
             (was it copied while jemalloc was still writing it?)",
        );
    }
    dump.threads = threads.len();

    while let Some((n, terminated)) = lines.next()? {
        let line = String::from_utf8_lossy(&lines.buf);
        if line.trim().is_empty() {
            continue;
        }
        // jemalloc copies /proc/PID/maps whole; a last line without its newline was cut.
        if !terminated {
            return err(
                n,
                "the last MAPPED_LIBRARIES line is cut short: the dump is truncated \
                 (was it copied while jemalloc was still writing it?)",
            );
        }
        match crate::maps::parse_line(&line) {
            Some(entry) => dump.maps.push(entry),
            None => {
                return err(
                    n,
                    format!(
                        "malformed MAPPED_LIBRARIES line {:?} (expected /proc/PID/maps format)",
                        line.chars().take(80).collect::<String>()
                    ),
                )
            }
        }
    }
    Ok(dump)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const SAMPLE: &str =
        "heap_v2/524288\n  t*: 3: 200 [0: 0]\n  t0: 2: 100 [0: 0]\n  t1: 1: 100 [0: 0]\n\
@ 0x10 0x20 0x30\n  t*: 2: 100 [5: 500]\n  t0: 2: 100 [5: 500]\n\
@ 0x11 0x30\n  t*: 1: 100 [0: 0]\n  t1: 1: 100 [0: 0]\n\
\nMAPPED_LIBRARIES:\n\
55d1c3800000-55d1c3a00000 r-xp 00001000 fe:00 247030                     /usr/sbin/mariadbd\n\
7f0000000000-7f0000001000 rw-p 00000000 00:00 0 \n\
7ffd1000-7ffd3000 r-xp 00000000 00:00 0                          [vdso]\n";

    #[test]
    fn a_maps_line_cut_short_is_a_truncated_dump() {
        // Cut inside the mariadbd line's inode field.
        let cut = &SAMPLE[..SAMPLE.find("247030").unwrap() + 3];
        let e = parse(cut.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("cut short") && e.contains("truncated"), "{e}");
    }

    #[test]
    fn parses_stacks_counts_threads_and_maps() {
        let d = parse(SAMPLE.as_bytes()).unwrap();
        assert_eq!(d.rate, 524288);
        assert_eq!(d.header_counts.inuse_bytes, 200);
        assert_eq!(d.threads, 2);
        assert_eq!(d.stacks.len(), 2);
        assert_eq!(d.stacks[0].addrs, vec![0x10, 0x20, 0x30]);
        assert_eq!(
            d.stacks[0].counts,
            Counts {
                inuse_objects: 2,
                inuse_bytes: 100,
                alloc_objects: 5,
                alloc_bytes: 500
            }
        );
        assert_eq!(d.stacks[1].line, 8);
        assert_eq!(d.maps.len(), 3);
        assert_eq!(d.maps[0].start, 0x55d1c3800000);
        assert_eq!(d.maps[0].offset, 0x1000);
        assert_eq!(d.maps[0].dev, (0xfe, 0));
        assert_eq!(d.maps[0].inode, 247030);
        assert!(d.maps[0].executable());
        assert_eq!(d.maps[1].path, None);
        assert_eq!(d.maps[2].path.as_deref(), Some("[vdso]"));
        assert_eq!(d.program(), Some("/usr/sbin/mariadbd"));
    }

    #[test]
    fn errors_carry_line_numbers() {
        let cases: &[(&str, usize, &str)] = &[
            ("", 0, "empty"),
            ("hello\n", 1, "heap_v2"),
            ("heap_v2/0\n", 1, "positive"),
            ("heap_v2/8\n@ 0x1 zz\n", 2, "hexadecimal"),
            (
                "heap_v2/8\n@ 0x1\n  t*: 1: x [0: 0]\n",
                3,
                "malformed count",
            ),
            ("heap_v2/8\n@ 0x1\n@ 0x2\n", 2, "no `t*:`"),
            ("heap_v2/8\n@ 0x1\n  t*: 1: 8 [0: 0]\n", 3, "truncated"),
            (
                "heap_v2/8\n@ 0x1\n  t*: 1: 8 [0: 0]\n  t*: 1: 8 [0:",
                4,
                "truncated",
            ),
            ("heap_v2/8\n@ 0x1\n", 2, "truncated"),
            ("heap_v2/8\nbogus\n", 2, "unexpected"),
            ("heap_v2/8\n@ 0x1\n  t*: 0: 8 [0: 0]\n", 3, "0 objects but 8 bytes"),
            (
                "heap_v2/8\n  t*: 1: 8 [0: 8]\n",
                2,
                "0 objects but 8 bytes allocated",
            ),
            (
                "heap_v2/8\n@ 0x1\n  t*: 1: 18446744073709551615 [0: 0]\n@ 0x2\n  t*: 1: 1 [0: 0]\n",
                3,
                "2^64",
            ),
            (
                "heap_v2/8\n@ 0x1\n  t*: 1: 8 [0: 0]\nMAPPED_LIBRARIES:\nnot a map line\n",
                5,
                "MAPPED_LIBRARIES",
            ),
        ];
        for (text, line, needle) in cases {
            let e = parse(text.as_bytes()).unwrap_err();
            assert_eq!(e.line, *line, "{text:?}: {e}");
            assert!(e.message.contains(needle), "{text:?}: {e}");
        }
    }

    #[test]
    fn a_line_longer_than_any_dump_line_is_refused_without_reading_it_whole() {
        let mut text = b"heap_v2/8\n@ ".to_vec();
        text.extend(std::iter::repeat(b'1').take(MAX_LINE));
        let e = parse(&text).unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        assert!(e.message.contains("longer than 1024 KiB"), "{e}");
        // A line of exactly the limit (newline included) is read: here a blank one, and
        // then the file ends without its maps.
        let mut ok = b"heap_v2/8\n".to_vec();
        ok.extend(std::iter::repeat(b' ').take(MAX_LINE - 1));
        ok.push(b'\n');
        let e = parse(&ok).unwrap_err();
        assert!(
            e.message.contains("without a MAPPED_LIBRARIES section"),
            "{e}"
        );
    }

    #[test]
    fn gzip_is_transparent() {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(SAMPLE.as_bytes()).unwrap();
        let gz = enc.finish().unwrap();
        assert!(is_gzip(&gz));
        let d = parse(&decompress(gz).unwrap()).unwrap();
        assert_eq!(d.stacks.len(), 2);
        let mut broken = {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(SAMPLE.as_bytes()).unwrap();
            enc.finish().unwrap()
        };
        broken.truncate(broken.len() / 2);
        assert!(decompress(broken).is_err());
    }
}
