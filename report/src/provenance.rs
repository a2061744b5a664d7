//! Where a report's names came from: frames named from DWARF, from symbol tables, left
//! unnamed (`object+0xaddress`), and how much memory lies under unnamed frames. Where
//! unnamed frames of one object hold more than 1% of the total, a hint names the object,
//! its build-id and how to get its debug information.

use crate::aggregate::{shown_frames, without_allocator_frames, AddrProfile, Metric};
use crate::symbolize::{NameMode, ObjectInfo, Source, Symbols};
use std::collections::{HashMap, HashSet};

/// Counts of shown frames by where their names came from, and the memory under unnamed ones.
#[derive(Debug, Default, Clone)]
pub struct Provenance {
    pub dwarf: usize,
    pub symtab: usize,
    /// `--names jeprof` only: closest-symbol names outside the symbol's extent.
    pub guess: usize,
    pub unnamed: usize,
    /// Sum of |value| of the stacks with at least one unnamed frame.
    pub unnamed_value: f64,
    /// Sum of |value| of all stacks.
    pub total_value: f64,
    /// Per object label: sum of |value| of the stacks with an unnamed frame in it,
    /// largest first.
    pub per_object: Vec<(String, f64)>,
}

/// Above this share of the total under an object's unnamed frames, a hint is given.
pub const HINT_SHARE: f64 = 0.01;

impl Provenance {
    /// `objects`: pc -> object label (from symbolization).
    pub fn of(
        profile: &AddrProfile,
        symbols: &Symbols,
        objects: &HashMap<u64, String>,
        m: Metric,
    ) -> Provenance {
        let mut p = Provenance::default();
        let mut counted: HashSet<u64> = HashSet::new();
        let mut per_object: HashMap<&str, f64> = HashMap::new();
        let mut in_stack: Vec<&str> = Vec::new();
        for (addrs, v) in &profile.stacks {
            let value = v[m as usize].abs();
            p.total_value += value;
            in_stack.clear();
            let mut unnamed = false;
            for pc in without_allocator_frames(addrs, symbols) {
                if pc > 0x7fff_ffff_ffff_ffff {
                    continue;
                }
                let frames = symbols.get(&pc).map(|f| shown_frames(f)).unwrap_or(&[]);
                let first = counted.insert(pc);
                for f in frames {
                    if first {
                        match f.source {
                            Source::Dwarf => p.dwarf += 1,
                            Source::Symtab => p.symtab += 1,
                            Source::Guess => p.guess += 1,
                            Source::Unnamed => p.unnamed += 1,
                        }
                    }
                    if f.source == Source::Unnamed {
                        unnamed = true;
                        if let Some(o) = objects.get(&pc) {
                            if !in_stack.contains(&o.as_str()) {
                                in_stack.push(o);
                            }
                        }
                    }
                }
            }
            if unnamed {
                p.unnamed_value += value;
            }
            for o in &in_stack {
                *per_object.entry(o).or_default() += value;
            }
        }
        let mut per: Vec<(String, f64)> = per_object
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        per.sort_by(|a, b| {
            b.1.partial_cmp(&a.1)
                .unwrap_or(std::cmp::Ordering::Equal)
                .then_with(|| a.0.cmp(&b.0))
        });
        p.per_object = per;
        p
    }

    fn share(&self, v: f64) -> f64 {
        if self.total_value > 0.0 {
            v / self.total_value
        } else {
            0.0
        }
    }

    /// The `Names:` line and the hints, for a text report.
    pub fn text(&self, objects: &[ObjectInfo], m: Metric, mode: NameMode) -> String {
        let amount = |v: f64| {
            if m.is_bytes() {
                crate::human_bytes(v)
            } else {
                format!("{} objects", v.trunc() as i64)
            }
        };
        let mut s = format!(
            "Names: {} frames from DWARF, {} from symbol tables, ",
            self.dwarf, self.symtab
        );
        if mode == NameMode::Jeprof {
            s.push_str(&format!(
                "{} closest-symbol guesses (--names jeprof: possibly another function's name), ",
                self.guess
            ));
        }
        s.push_str(&format!(
            "{} unnamed ({} under them, {:.1}% of the total)\n",
            self.unnamed,
            amount(self.unnamed_value),
            100.0 * self.share(self.unnamed_value)
        ));
        for (label, v) in &self.per_object {
            if self.share(*v) <= HINT_SHARE {
                continue;
            }
            let info = objects.iter().find(|o| &o.label == label);
            s.push_str(&format!(
                "Hint: {:.1}% under unnamed frames of {}",
                100.0 * self.share(*v),
                info.map_or(label.as_str(), |o| o.path.as_str())
            ));
            match info {
                Some(o) => {
                    match &o.build_id {
                        Some(id) => s.push_str(&format!(" (build-id {id})")),
                        None => s.push_str(" (no build-id known)"),
                    }
                    s.push_str(&remedy(o));
                }
                None => {
                    s.push_str(": not a file the dump's maps name; no debug information applies")
                }
            }
            s.push('\n');
        }
        s
    }
}

/// What would name an object's addresses.
fn remedy(o: &ObjectInfo) -> String {
    if let Some(why) = &o.error {
        return format!(
            ": it could not be read ({why}); run the report where that build is installed, \
             or with its debug information fetched by build-id (DEBUGINFOD_URLS=URL or \
             --debuginfod URL)"
        );
    }
    if let Some(d) = &o.debug_file {
        return format!(
            ": its debug file {} does not cover these addresses",
            super::safe::shown(d)
        );
    }
    let mut s = format!(
        ": install its debug symbols (Debian/Ubuntu: the -dbgsym or -dbg package of the \
         package that ships it, `dpkg -S {}`; Fedora: `dnf debuginfo-install`)",
        o.path
    );
    if o.build_id.is_some() {
        s.push_str(
            ", or fetch them by build-id from debuginfod: DEBUGINFOD_URLS=https://debuginfod.debian.net \
             (Ubuntu: https://debuginfod.ubuntu.com, Fedora: https://debuginfod.fedoraproject.org)",
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::symbolize::Frame;

    fn f(name: &str, source: Source) -> Frame {
        Frame {
            func: name.into(),
            full: name.into(),
            source,
            allocator: false,
        }
    }

    #[test]
    fn counts_frames_and_the_memory_under_unnamed_ones() {
        let mut p = AddrProfile::default();
        p.stacks
            .insert(vec![0x1, 0x10, 0x30], [1.0, 90.0, 0.0, 0.0]);
        p.stacks.insert(vec![0x20, 0x30], [1.0, 10.0, 0.0, 0.0]);
        let mut s = Symbols::new();
        s.insert(0x1, vec![f("malloc", Source::Symtab)]);
        s.insert(0x10, vec![f("mariadbd+0x10", Source::Unnamed)]);
        s.insert(0x20, vec![f("g", Source::Symtab), f("h", Source::Dwarf)]);
        s.insert(0x30, vec![f("main", Source::Dwarf)]);
        let objects: HashMap<u64, String> = [0x1, 0x10, 0x20, 0x30]
            .into_iter()
            .map(|pc| (pc, if pc == 0x1 { "libc" } else { "mariadbd" }.to_owned()))
            .collect();
        let prov = Provenance::of(&p, &s, &objects, Metric::InuseSpace);
        assert_eq!((prov.dwarf, prov.symtab, prov.unnamed), (2, 1, 1));
        assert_eq!(prov.unnamed_value, 90.0);
        assert_eq!(prov.per_object, vec![("mariadbd".to_owned(), 90.0)]);
        let info = ObjectInfo {
            path: "/usr/sbin/mariadbd".into(),
            label: "mariadbd".into(),
            build_id: Some("abcd".into()),
            debug_file: None,
            dwarf: false,
            error: None,
        };
        let t = prov.text(&[info], Metric::InuseSpace, NameMode::Exact);
        assert!(t.starts_with("Names: 2 frames from DWARF, 1 from symbol tables, 1 unnamed (90 B under them, 90.0% of the total)\n"), "{t}");
        assert!(t.contains("Hint: 90.0% under unnamed frames of /usr/sbin/mariadbd (build-id abcd): install its debug symbols"), "{t}");
        assert!(t.contains("DEBUGINFOD_URLS="), "{t}");
    }
}
