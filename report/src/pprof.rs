//! pprof's profile.proto (gzipped), for `go tool pprof`, Grafana Pyroscope and speedscope.
//!
//! Sample types `inuse_objects`/`inuse_space` (or `alloc_*`); one location per address,
//! with its mapping and its inlined frames as lines (innermost first, as pprof wants);
//! one function per name. The messages are written by hand with prost's derive (no protoc).

use super::aggregate::{AddrProfile, Metric};
use super::maps::MapEntry;
use super::symbolize::Symbols;
use std::collections::HashMap;

#[derive(Clone, PartialEq, prost::Message)]
pub struct Profile {
    #[prost(message, repeated, tag = "1")]
    pub sample_type: Vec<ValueType>,
    #[prost(message, repeated, tag = "2")]
    pub sample: Vec<Sample>,
    #[prost(message, repeated, tag = "3")]
    pub mapping: Vec<Mapping>,
    #[prost(message, repeated, tag = "4")]
    pub location: Vec<Location>,
    #[prost(message, repeated, tag = "5")]
    pub function: Vec<Function>,
    #[prost(string, repeated, tag = "6")]
    pub string_table: Vec<String>,
    #[prost(int64, tag = "9")]
    pub time_nanos: i64,
    #[prost(message, optional, tag = "11")]
    pub period_type: Option<ValueType>,
    #[prost(int64, tag = "12")]
    pub period: i64,
    #[prost(int64, repeated, tag = "13")]
    pub comment: Vec<i64>,
    #[prost(int64, tag = "14")]
    pub default_sample_type: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ValueType {
    #[prost(int64, tag = "1")]
    pub r#type: i64,
    #[prost(int64, tag = "2")]
    pub unit: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    #[prost(uint64, repeated, tag = "1")]
    pub location_id: Vec<u64>,
    #[prost(int64, repeated, tag = "2")]
    pub value: Vec<i64>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Mapping {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(uint64, tag = "2")]
    pub memory_start: u64,
    #[prost(uint64, tag = "3")]
    pub memory_limit: u64,
    #[prost(uint64, tag = "4")]
    pub file_offset: u64,
    #[prost(int64, tag = "5")]
    pub filename: i64,
    #[prost(int64, tag = "6")]
    pub build_id: i64,
    #[prost(bool, tag = "7")]
    pub has_functions: bool,
    #[prost(bool, tag = "8")]
    pub has_filenames: bool,
    #[prost(bool, tag = "9")]
    pub has_line_numbers: bool,
    #[prost(bool, tag = "10")]
    pub has_inline_frames: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Location {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(uint64, tag = "2")]
    pub mapping_id: u64,
    #[prost(uint64, tag = "3")]
    pub address: u64,
    #[prost(message, repeated, tag = "4")]
    pub line: Vec<Line>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Line {
    #[prost(uint64, tag = "1")]
    pub function_id: u64,
    #[prost(int64, tag = "2")]
    pub line: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Function {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(int64, tag = "2")]
    pub name: i64,
    #[prost(int64, tag = "3")]
    pub system_name: i64,
    #[prost(int64, tag = "4")]
    pub filename: i64,
    #[prost(int64, tag = "5")]
    pub start_line: i64,
}

#[derive(Default)]
struct Strings {
    table: Vec<String>,
    index: HashMap<String, i64>,
}

impl Strings {
    fn new() -> Strings {
        let mut s = Strings::default();
        s.id(""); // string_table[0] must be ""
        s
    }
    fn id(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.table.len() as i64;
        self.table.push(s.to_owned());
        self.index.insert(s.to_owned(), i);
        i
    }
}

/// What the profile says of one mapped object beyond its maps line, so that Parca and
/// Pyroscope can symbolize by build-id what jemsafe could not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ObjectFacts {
    /// GNU build-id, hex.
    pub build_id: Option<String>,
    /// Whether jemsafe named the addresses in it (false: the object could not be read,
    /// and a server should symbolize them by build-id).
    pub has_functions: bool,
    /// Whether DWARF gave the names (and so inlined frames).
    pub has_inline_frames: bool,
}

/// The facts by object path: what symbolization found for the objects holding sampled
/// addresses, and the build-ids a sidecar recorded for the rest.
pub(crate) fn object_facts(
    objects: &[crate::symbolize::ObjectInfo],
    recorded: &[crate::sidecar::Object],
) -> HashMap<String, ObjectFacts> {
    let mut facts: HashMap<String, ObjectFacts> = recorded
        .iter()
        .map(|o| {
            let f = ObjectFacts {
                build_id: o.build_id.clone(),
                ..Default::default()
            };
            (o.path.clone(), f)
        })
        .collect();
    for o in objects {
        let f = facts.entry(o.path.clone()).or_default();
        if o.build_id.is_some() {
            f.build_id = o.build_id.clone();
        }
        f.has_functions = o.error.is_none();
        f.has_inline_frames = o.error.is_none() && o.dwarf;
    }
    facts
}

/// Builds the profile: `metric` picks space vs objects of in-use vs allocated; both the
/// objects and the space type are written, the space type is the default. `objects`:
/// build-ids and symbolization by path (see [`object_facts`]).
pub(crate) fn build(
    profile: &AddrProfile,
    symbols: &Symbols,
    maps: &[MapEntry],
    objects: &HashMap<String, ObjectFacts>,
    metric: Metric,
    time: Option<std::time::SystemTime>,
    comment: &str,
) -> Profile {
    let alloc = matches!(metric, Metric::AllocObjects | Metric::AllocSpace);
    let (objects_idx, space_idx) = if alloc { (2, 3) } else { (0, 1) };
    let mut strings = Strings::new();
    let prefix = if alloc { "alloc" } else { "inuse" };
    let sample_type = vec![
        ValueType {
            r#type: strings.id(&format!("{prefix}_objects")),
            unit: strings.id("count"),
        },
        ValueType {
            r#type: strings.id(&format!("{prefix}_space")),
            unit: strings.id("bytes"),
        },
    ];
    let default_sample_type = if metric.is_bytes() {
        sample_type[1].r#type
    } else {
        sample_type[0].r#type
    };
    // Mappings: executable file mappings, in address order.
    let mut mapping = Vec::new();
    let mut exec: Vec<&MapEntry> = maps.iter().filter(|m| m.executable()).collect();
    exec.sort_by_key(|m| m.start);
    for (i, m) in exec.iter().enumerate() {
        let path = m.path.as_deref().unwrap_or("");
        let facts = objects.get(path).cloned().unwrap_or_default();
        let build_id = facts
            .build_id
            .as_deref()
            .filter(|id| id.bytes().all(|b| b.is_ascii_hexdigit()))
            .map_or(0, |id| strings.id(id));
        mapping.push(Mapping {
            id: i as u64 + 1,
            memory_start: m.start,
            memory_limit: m.end,
            file_offset: m.offset,
            filename: strings.id(&super::safe::escape(path)),
            build_id,
            has_functions: facts.has_functions,
            // Names only: no source files or lines are written.
            has_filenames: false,
            has_line_numbers: false,
            has_inline_frames: facts.has_inline_frames,
        });
    }
    let mapping_of = |pc: u64| -> u64 {
        let idx = exec.partition_point(|m| m.start <= pc);
        if idx > 0 && pc < exec[idx - 1].end {
            idx as u64
        } else {
            0
        }
    };
    let mut functions: Vec<Function> = Vec::new();
    let mut function_ids: HashMap<String, u64> = HashMap::new();
    let mut locations: Vec<Location> = Vec::new();
    let mut location_ids: HashMap<u64, u64> = HashMap::new();
    let mut samples = Vec::with_capacity(profile.stacks.len());
    let mut stacks: Vec<(&Vec<u64>, &[f64; 4])> = profile.stacks.iter().collect();
    stacks.sort_by(|a, b| a.0.cmp(b.0));
    for (addrs, v) in stacks {
        // Drop allocator frames as the text report does.
        let kept = super::aggregate::without_allocator_frames(addrs, symbols);
        let objects = v[objects_idx].round() as i64;
        let space = v[space_idx].round() as i64;
        if kept.is_empty() || (objects == 0 && space == 0) {
            continue;
        }
        let mut ids = Vec::with_capacity(kept.len());
        for pc in kept {
            let id = *location_ids.entry(pc).or_insert_with(|| {
                let id = locations.len() as u64 + 1;
                let frames = symbols
                    .get(&pc)
                    .map(|f| super::aggregate::shown_frames(f).to_vec())
                    .unwrap_or_default();
                let mut line = Vec::new();
                // Symbols are caller first; pprof wants the innermost line first.
                for f in frames.iter().rev() {
                    let fid = *function_ids.entry(f.func.clone()).or_insert_with(|| {
                        let fid = functions.len() as u64 + 1;
                        functions.push(Function {
                            id: fid,
                            name: strings.id(&f.func),
                            system_name: strings.id(&f.full),
                            filename: 0,
                            start_line: 0,
                        });
                        fid
                    });
                    line.push(Line {
                        function_id: fid,
                        line: 0,
                    });
                }
                locations.push(Location {
                    id,
                    mapping_id: mapping_of(pc),
                    address: pc,
                    line,
                });
                id
            });
            ids.push(id);
        }
        samples.push(Sample {
            location_id: ids,
            value: vec![objects, space],
        });
    }
    // pprof's i64 nanoseconds end in 2262: a later (planted) mtime is shown as that end.
    let time_nanos = time.map_or(0, |t| {
        i64::try_from(crate::clock::nanos(t)).unwrap_or(i64::MAX)
    });
    let comment = vec![strings.id(comment)];
    let period_type = Some(ValueType {
        r#type: strings.id("space"),
        unit: strings.id("bytes"),
    });
    Profile {
        sample_type,
        sample: samples,
        mapping,
        location: locations,
        function: functions,
        string_table: strings.table,
        time_nanos,
        period_type,
        period: 0,
        comment,
        default_sample_type,
    }
}

/// The profile, encoded and gzipped.
pub(crate) fn encode(p: &Profile) -> std::io::Result<Vec<u8>> {
    use prost::Message;
    use std::io::Write;
    let raw = p.encode_to_vec();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&raw)?;
    gz.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::symbolize::Frame;
    use prost::Message;

    #[test]
    fn round_trips_with_inlined_lines_innermost_first() {
        let mut p = AddrProfile::default();
        p.stacks
            .insert(vec![0x1010, 0x1020], [2.0, 4096.0, 0.0, 0.0]);
        let mut s = Symbols::new();
        s.insert(
            0x1010,
            vec![
                Frame {
                    func: "outer".into(),
                    full: "outer()".into(),
                    source: Default::default(),
                    allocator: false,
                },
                Frame {
                    func: "inner".into(),
                    full: "inner()".into(),
                    source: Default::default(),
                    allocator: false,
                },
            ],
        );
        s.insert(
            0x1020,
            vec![Frame {
                func: "main".into(),
                full: "main".into(),
                source: Default::default(),
                allocator: false,
            }],
        );
        let maps = vec![MapEntry {
            start: 0x1000,
            end: 0x2000,
            perms: "r-xp".into(),
            offset: 0,
            dev: (0, 0),
            inode: 0,
            path: Some("/bin/x".into()),
        }];
        let facts = object_facts(
            &[crate::symbolize::ObjectInfo {
                path: "/bin/x".into(),
                label: "x".into(),
                build_id: Some("abcd01".into()),
                debug_file: None,
                dwarf: false,
                error: None,
            }],
            &[],
        );
        let prof = build(&p, &s, &maps, &facts, Metric::InuseSpace, None, "test");
        let gz = encode(&prof).unwrap();
        let raw = crate::parse::decompress(gz).unwrap();
        let back = Profile::decode(&raw[..]).unwrap();
        assert_eq!(back, prof);
        assert_eq!(back.string_table[0], "");
        assert_eq!(back.sample[0].value, vec![2, 4096]);
        let loc = &back.location[0];
        assert_eq!(loc.mapping_id, 1);
        let m = &back.mapping[0];
        assert_eq!(back.string_table[m.build_id as usize], "abcd01");
        assert!(m.has_functions && !m.has_inline_frames && !m.has_line_numbers);
        let first_fn = &back.function[(loc.line[0].function_id - 1) as usize];
        assert_eq!(back.string_table[first_fn.name as usize], "inner");
        assert_eq!(
            back.string_table[back.sample_type[1].r#type as usize],
            "inuse_space"
        );
    }
}
