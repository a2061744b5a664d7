//! What the running jemalloc can do for jemsafe, as `check` and `status` show it: a table
//! from the shim's `hello` (its version, profiling compiled in and on, and the options of
//! jemalloc 5.3/5.3.1 that matter to a heap profile), and, for 5.3.0, what 5.3.1 changes
//! for profiling and how to get it (`library = "bundled"`).

use jemsafe_proto::Bound;
use serde::{Deserialize, Serialize};

/// The table; option fields are None when this jemalloc does not have the option (or an
/// older shim did not say). Field names are stable (`status --json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Table {
    pub version: String,
    /// `config.prof`: profiling compiled in.
    pub prof: bool,
    /// `opt.prof`: on in this process.
    pub prof_on: bool,
    pub prof_stats: Option<bool>,
    pub prof_recent_alloc_max: Option<i64>,
    pub prof_sys_thread_name: Option<bool>,
    pub prof_bt_max: Option<u32>,
    pub background_thread: Option<bool>,
    /// Whether the shim said which options exist (older shims do not).
    pub known: bool,
}

impl Table {
    pub fn of(b: &Bound) -> Table {
        let c = b.capabilities.unwrap_or_default();
        Table {
            version: b.version.clone(),
            prof: b.config_prof,
            prof_on: b.opt_prof,
            prof_stats: c.prof_stats,
            prof_recent_alloc_max: c.prof_recent_alloc_max,
            prof_sys_thread_name: c.prof_sys_thread_name,
            prof_bt_max: c.prof_bt_max,
            background_thread: c.background_thread,
            known: b.capabilities.is_some(),
        }
    }

    /// One line per capability: name, state here, what it gives and how to switch it on.
    pub fn lines(&self) -> Vec<String> {
        let absent = if self.known {
            "-    not in this jemalloc"
        } else {
            "?    (the shim did not say)"
        };
        let on_off = |v: Option<bool>, what: &str, how: &str| match v {
            Some(true) => format!("on   {what}"),
            Some(false) => format!("off  {what}; {how}"),
            None => format!("{absent} ({what})"),
        };
        let mut out = vec![format!(
            "{:<21} {}",
            "version",
            if self.version.is_empty() {
                "?"
            } else {
                &self.version
            }
        )];
        out.push(format!(
            "{:<21} {}",
            "prof",
            match (self.prof, self.prof_on) {
                (true, true) => "on   heap profiles (compiled in, opt.prof)",
                (true, false) => "off  compiled in, switched off (a profile with prof = true)",
                (false, _) => "-    NOT compiled in: no heap profiles (library = \"bundled\")",
            }
        ));
        out.push(format!(
            "{:<21} {}",
            "prof_stats",
            on_off(
                self.prof_stats,
                "requested vs usable bytes per size class (report --fragmentation)",
                "extra = { prof_stats = true }"
            )
        ));
        out.push(format!(
            "{:<21} {}",
            "prof_recent",
            match self.prof_recent_alloc_max {
                Some(0) => "off  the last sampled allocations with their stacks; \
                            extra = { prof_recent_alloc_max = N }"
                    .to_owned(),
                Some(-1) => "on   the last sampled allocations with their stacks (no limit)".into(),
                Some(n) => format!("on   the last {n} sampled allocations with their stacks"),
                None => format!("{absent} (the last sampled allocations with their stacks)"),
            }
        ));
        out.push(format!(
            "{:<21} {}",
            "prof_sys_thread_name",
            on_off(
                self.prof_sys_thread_name,
                "threads named in dumps",
                "extra = { prof_sys_thread_name = true }"
            )
        ));
        out.push(format!(
            "{:<21} {}",
            "prof_bt_max",
            match self.prof_bt_max {
                Some(n) => format!("{n:<4} frames at most per recorded stack"),
                None => format!("{absent} (stack depth; jemalloc 5.3.1 has it)"),
            }
        ));
        out.push(format!(
            "{:<21} {}",
            "background_thread",
            on_off(
                self.background_thread,
                "freed pages purged on jemalloc's own threads",
                "extra = { background_thread = true }"
            )
        ));
        out
    }

    /// The table on one line, for `status` (which fits one screen); `check` has the whole.
    pub fn summary(&self) -> String {
        let word = |v: Option<bool>| match v {
            Some(true) => "on",
            Some(false) => "off",
            None if self.known => "-",
            None => "?",
        };
        let prof = match (self.prof, self.prof_on) {
            (true, true) => "on",
            (true, false) => "off",
            (false, _) => "NOT compiled in",
        };
        let recent = match self.prof_recent_alloc_max {
            Some(0) => "off".to_owned(),
            Some(-1) => "on".to_owned(),
            Some(n) => format!("{n}"),
            None => word(None).to_owned(),
        };
        let depth = self
            .prof_bt_max
            .map_or_else(|| word(None).to_owned(), |n| n.to_string());
        format!(
            "prof {prof}, prof_stats {}, prof_recent {recent}, prof_sys_thread_name {}, \
             prof_bt_max {depth}, background_thread {} (what they are: jemsafe check)",
            word(self.prof_stats),
            word(self.prof_sys_thread_name),
            word(self.background_thread)
        )
    }

    /// For jemalloc 5.3.0 (Debian's and Ubuntu's libjemalloc2): what 5.3.1 changes for
    /// profiling, and how to get it.
    pub fn upgrade_note(&self) -> Option<String> {
        if !self.version.starts_with("5.3.0") {
            return None;
        }
        Some(
            "this is jemalloc 5.3.0; 5.3.1 changes profiling: opt.prof_bt_max (stack depth), \
             thread names stored inline in the profiling data, sampled allocations demoted \
             properly on arena_reset, less memory for sampling small allocations on large-page \
             systems, and a background-thread start race and several leaks fixed. jemsafe's \
             own jemalloc is 5.3.1: [jemalloc] library = \"bundled\""
                .to_owned(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jemsafe_proto::Capabilities;

    fn bound(version: &str, capabilities: Option<Capabilities>) -> Bound {
        Bound {
            path: "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2".into(),
            version: version.into(),
            config_prof: true,
            opt_prof: true,
            prof_active: true,
            prof_prefix: None,
            lg_prof_interval: None,
            lg_prof_sample: Some(19),
            prof_gdump: None,
            capabilities,
        }
    }

    #[test]
    fn a_5_3_0_library_lacks_prof_bt_max_and_is_pointed_to_the_bundled_one() {
        let t = Table::of(&bound(
            "5.3.0-0-g54eaed1d8b56b1aa528be3bdd1877e59c56fa90c",
            Some(Capabilities {
                prof_stats: Some(false),
                prof_recent_alloc_max: Some(0),
                prof_sys_thread_name: Some(false),
                prof_bt_max: None,
                background_thread: Some(false),
            }),
        ));
        let text = t.lines().join("\n");
        assert!(
            text.contains("prof_bt_max           -    not in this jemalloc"),
            "{text}"
        );
        assert!(
            text.contains("prof_stats            off  ") && text.contains("prof_stats = true"),
            "{text}"
        );
        let note = t.upgrade_note().unwrap();
        assert!(
            note.contains("opt.prof_bt_max") && note.contains("library = \"bundled\""),
            "{note}"
        );
    }

    #[test]
    fn a_5_3_1_library_shows_its_depth_and_needs_no_note() {
        let t = Table::of(&bound(
            "5.3.1-0-g81034ce1f1373e37dc865038e1bc8eeecf559ce8",
            Some(Capabilities {
                prof_stats: Some(true),
                prof_recent_alloc_max: Some(-1),
                prof_sys_thread_name: Some(true),
                prof_bt_max: Some(128),
                background_thread: Some(true),
            }),
        ));
        let text = t.lines().join("\n");
        assert!(text.contains("prof_bt_max           128 "), "{text}");
        assert!(text.contains("prof_stats            on   "), "{text}");
        assert!(text.contains("no limit"), "{text}");
        assert_eq!(t.upgrade_note(), None);
        assert_eq!(
            t.summary(),
            "prof on, prof_stats on, prof_recent on, prof_sys_thread_name on, prof_bt_max 128, \
             background_thread on (what they are: jemsafe check)"
        );
    }

    #[test]
    fn an_older_shim_leaves_the_options_unknown() {
        let t = Table::of(&bound("5.3.0-0-g54", None));
        assert!(!t.known);
        assert!(t.lines().join("\n").contains("(the shim did not say)"));
        assert!(t.summary().contains("prof_stats ?, "), "{}", t.summary());
    }
}
