//! Profiles: named sets of jemalloc profiling options, their inheritance, and the
//! MALLOC_CONF string they become.

use super::jemalloc_options::{self, OptionKind};
use super::{Config, ConfigError};
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::path::Path;
use toml::Spanned;

/// A profile as written in `[profiles.NAME]`: every field optional, so that a profile
/// only states what it changes from the one it inherits.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileDef {
    pub inherits: Option<Spanned<String>>,
    pub prof: Option<bool>,
    pub prof_active: Option<bool>,
    pub lg_prof_sample: Option<LgSample>,
    pub lg_prof_interval: Option<LgInterval>,
    pub prof_gdump: Option<bool>,
    pub prof_final: Option<bool>,
    pub prof_leak: Option<bool>,
    pub extra: Option<Extra>,
}

/// `lg_prof_sample`: one sample per 2^N bytes allocated, N in 0..=63. The one check of
/// the range, for the config, `jemsafe prof reset --lg-sample` and the control socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LgSample(pub u8);

/// An lg_prof_sample value outside 0..=63 (or not a number), as given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "lg_prof_sample = {0} is out of range: allowed 0..={max} \
     (one sample per 2^N bytes; jemalloc's default 19 = one per 512 KiB)",
    max = jemalloc_options::LG_PROF_SAMPLE_MAX
)]
pub struct LgSampleError(String);

impl LgSample {
    pub fn new(v: i64) -> Result<LgSample, LgSampleError> {
        u8::try_from(v)
            .ok()
            .filter(|n| u64::from(*n) <= jemalloc_options::LG_PROF_SAMPLE_MAX)
            .map(LgSample)
            .ok_or_else(|| LgSampleError(v.to_string()))
    }

    /// A value from the command line or the control socket.
    pub fn parse(text: &str) -> Result<LgSample, LgSampleError> {
        let text = text.trim();
        text.parse::<i64>()
            .map_err(|_| LgSampleError(format!("{text:?}")))
            .and_then(LgSample::new)
    }
}

impl<'de> Deserialize<'de> for LgSample {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        LgSample::new(i64::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// `lg_prof_interval`: a dump every 2^N bytes allocated, -1 = off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LgInterval(pub i8);

impl<'de> Deserialize<'de> for LgInterval {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = i64::deserialize(d)?;
        match i8::try_from(v) {
            Ok(n @ -1..=63) => Ok(LgInterval(n)),
            _ => Err(serde::de::Error::custom(format!(
                "lg_prof_interval = {v} is out of range: allowed -1 (off) or 0..=63 \
                 (a dump every 2^N bytes allocated; 30 = every GiB)"
            ))),
        }
    }
}

/// Options a profile sets through its own keys, or that jemsafe owns.
const NOT_IN_EXTRA: &[(&str, &str)] = &[
    ("prof", "use the profile key `prof`"),
    ("prof_active", "use the profile key `prof_active`"),
    ("lg_prof_sample", "use the profile key `lg_prof_sample`"),
    ("lg_prof_interval", "use the profile key `lg_prof_interval`"),
    ("prof_gdump", "use the profile key `prof_gdump`"),
    ("prof_final", "use the profile key `prof_final`"),
    ("prof_leak", "use the profile key `prof_leak`"),
    ("prof_prefix", "jemsafe sets it from [dumps] dir and prefix"),
];

/// `extra = { ... }`: other jemalloc options, each checked against jemalloc 5.3's table.
/// Stored already rendered as MALLOC_CONF values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extra(pub BTreeMap<String, String>);

impl<'de> Deserialize<'de> for Extra {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = BTreeMap::<String, toml::Value>::deserialize(d)?;
        let mut out = BTreeMap::new();
        for (key, value) in raw {
            let rendered = extra_value(&key, &value).map_err(serde::de::Error::custom)?;
            out.insert(key, rendered);
        }
        Ok(Extra(out))
    }
}

/// Checks one `extra` entry as jemalloc's conf parser would and renders its value.
fn extra_value(key: &str, value: &toml::Value) -> Result<String, String> {
    if let Some((_, instead)) = NOT_IN_EXTRA.iter().find(|(k, _)| *k == key) {
        return Err(format!("extra.{key} is not allowed here: {instead}"));
    }
    let Some(spec) = jemalloc_options::lookup(key) else {
        let close: Vec<&str> = jemalloc_options::OPTIONS
            .iter()
            .map(|o| o.name)
            .filter(|name| similar(name, key))
            .collect();
        let hint = if close.is_empty() {
            "see `man jemalloc`, section TUNING / MALLCTL NAMESPACE (opt.*)".to_owned()
        } else {
            format!("did you mean {}?", close.join(" or "))
        };
        return Err(format!(
            "extra.{key}: jemalloc 5.3 has no option {key:?}; {hint}"
        ));
    };
    let wrong = |want: String| {
        format!(
            "extra.{key} = {value}: jemalloc's {key} ({}) takes {want}",
            spec.about
        )
    };
    match (spec.kind, value) {
        (OptionKind::Bool, toml::Value::Boolean(b)) => Ok(b.to_string()),
        (OptionKind::Bool, _) => Err(wrong("true or false".into())),
        (OptionKind::Unsigned { min, max }, toml::Value::Integer(i))
            if u64::try_from(*i).is_ok_and(|u| (min..=max).contains(&u)) =>
        {
            Ok(i.to_string())
        }
        (OptionKind::Unsigned { min, max }, _) => {
            Err(wrong(format!("an integer from {min} to {max}")))
        }
        (OptionKind::Signed { min, max }, toml::Value::Integer(i)) if (min..=max).contains(i) => {
            Ok(i.to_string())
        }
        (OptionKind::Signed { min, max }, _) => {
            Err(wrong(format!("an integer from {min} to {max}")))
        }
        (OptionKind::Choice(words), toml::Value::String(s)) if words.contains(&s.as_str()) => {
            Ok(s.clone())
        }
        (OptionKind::Choice(words), _) => Err(wrong(format!("one of {}", quote_all(words)))),
        (OptionKind::Text, toml::Value::String(s)) if !s.contains([',', '\n', '\0']) => {
            Ok(s.clone())
        }
        (OptionKind::Text, _) => Err(wrong("a string without commas or newlines".into())),
    }
}

fn quote_all(words: &[&str]) -> String {
    words
        .iter()
        .map(|w| format!("\"{w}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Cheap "did you mean": same letters modulo one edit, or one contains the other.
fn similar(candidate: &str, typed: &str) -> bool {
    if candidate.contains(typed) || typed.contains(candidate) {
        return typed.len() >= 4;
    }
    let (a, b): (Vec<char>, Vec<char>) = (candidate.chars().collect(), typed.chars().collect());
    if a.len().abs_diff(b.len()) > 1 {
        return false;
    }
    // Levenshtein distance <= 1, by walking both strings once.
    let (mut i, mut j, mut edits) = (0, 0, 0);
    while i < a.len() && j < b.len() {
        if a[i] == b[j] {
            i += 1;
            j += 1;
            continue;
        }
        edits += 1;
        if edits > 1 {
            return false;
        }
        match a.len().cmp(&b.len()) {
            std::cmp::Ordering::Greater => i += 1,
            std::cmp::Ordering::Less => j += 1,
            std::cmp::Ordering::Equal => {
                i += 1;
                j += 1;
            }
        }
    }
    edits + (a.len() - i) + (b.len() - j) <= 1
}

/// A profile with inheritance applied: what MALLOC_CONF will say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub name: String,
    pub prof: bool,
    pub prof_active: bool,
    /// None: jemalloc's default (19).
    pub lg_prof_sample: Option<u8>,
    /// None or -1: no interval dumps.
    pub lg_prof_interval: Option<i8>,
    pub prof_gdump: bool,
    pub prof_final: bool,
    pub prof_leak: bool,
    pub extra: BTreeMap<String, String>,
}

impl Profile {
    fn empty(name: &str) -> Profile {
        Profile {
            name: name.to_owned(),
            prof: false,
            prof_active: false,
            lg_prof_sample: None,
            lg_prof_interval: None,
            prof_gdump: false,
            prof_final: false,
            prof_leak: false,
            extra: BTreeMap::new(),
        }
    }

    fn apply(&mut self, def: &ProfileDef) {
        let set = |slot: &mut bool, v: Option<bool>| {
            if let Some(v) = v {
                *slot = v
            }
        };
        set(&mut self.prof, def.prof);
        set(&mut self.prof_active, def.prof_active);
        set(&mut self.prof_gdump, def.prof_gdump);
        set(&mut self.prof_final, def.prof_final);
        set(&mut self.prof_leak, def.prof_leak);
        if let Some(LgSample(n)) = def.lg_prof_sample {
            self.lg_prof_sample = Some(n);
        }
        if let Some(LgInterval(n)) = def.lg_prof_interval {
            self.lg_prof_interval = Some(n);
        }
        if let Some(Extra(extra)) = &def.extra {
            self.extra
                .extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
    }

    /// Interval dumps are on.
    pub fn interval_dumps(&self) -> bool {
        self.lg_prof_interval.is_some_and(|n| n >= 0)
    }

    /// The MALLOC_CONF value: profiling options first, in a fixed order, then `extra`
    /// sorted by name. `prof_prefix` is `<dumps.dir>/<dumps.prefix>`.
    pub fn malloc_conf(&self, prof_prefix: &Path) -> String {
        let mut pairs: Vec<(String, String)> = vec![("prof".into(), self.prof.to_string())];
        if self.prof {
            pairs.push(("prof_active".into(), self.prof_active.to_string()));
            if let Some(n) = self.lg_prof_sample {
                pairs.push(("lg_prof_sample".into(), n.to_string()));
            }
            if let Some(n) = self.lg_prof_interval.filter(|n| *n >= 0) {
                pairs.push(("lg_prof_interval".into(), n.to_string()));
            }
            for (key, on) in [
                ("prof_gdump", self.prof_gdump),
                ("prof_final", self.prof_final),
                ("prof_leak", self.prof_leak),
            ] {
                if on {
                    pairs.push((key.into(), "true".into()));
                }
            }
            pairs.push(("prof_prefix".into(), prof_prefix.to_string_lossy().into()));
        }
        pairs.extend(self.extra.iter().map(|(k, v)| (k.clone(), v.clone())));
        pairs
            .iter()
            .map(|(k, v)| format!("{k}:{v}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

pub const BUILTIN_NAMES: &[&str] = &["off", "standby", "leak", "interval", "peak"];

/// The built-in profiles, as definitions so that they inherit like user profiles do.
pub fn builtin(name: &str) -> Option<ProfileDef> {
    let inherit = |parent: &str| Some(Spanned::new(0..0, parent.to_owned()));
    let def = match name {
        // jemalloc preloaded, no profiling: the allocator change alone, as a baseline.
        "off" => ProfileDef {
            prof: Some(false),
            ..Default::default()
        },
        // Profiling compiled in and armed, no sampling cost until `activate`.
        "standby" => ProfileDef {
            prof: Some(true),
            prof_active: Some(false),
            ..Default::default()
        },
        "leak" => ProfileDef {
            prof: Some(true),
            prof_active: Some(true),
            ..Default::default()
        },
        "interval" => ProfileDef {
            inherits: inherit("leak"),
            lg_prof_interval: Some(LgInterval(30)),
            ..Default::default()
        },
        "peak" => ProfileDef {
            inherits: inherit("leak"),
            prof_gdump: Some(true),
            ..Default::default()
        },
        _ => return None,
    };
    Some(def)
}

/// Resolves `name` (user profile first, else built-in) with its inheritance chain.
pub(super) fn resolve(config: &Config, name: &str) -> Result<Profile, ConfigError> {
    let mut chain: Vec<String> = Vec::new();
    let mut profile = resolve_in(config, name, false, &mut chain)?;
    profile.name = name.to_owned();
    check_consistent(config, &profile)?;
    Ok(profile)
}

fn resolve_in(
    config: &Config,
    name: &str,
    builtin_only: bool,
    chain: &mut Vec<String>,
) -> Result<Profile, ConfigError> {
    let user = if builtin_only {
        None
    } else {
        config.profiles.get(name)
    };
    let def = match (user, builtin(name)) {
        (Some(def), _) => def.clone(),
        (None, Some(def)) => def,
        (None, None) => {
            let (key, at) = match chain.last() {
                Some(child) => (
                    format!("profiles.{child}.inherits"),
                    config
                        .profiles
                        .get(child)
                        .and_then(|d| d.inherits.as_ref())
                        .map(|s| s.span().start),
                ),
                None => ("profile".to_owned(), None),
            };
            return Err(config.invalid_at(
                &key,
                at,
                format!(
                    "there is no profile {name:?}; available: {}",
                    config.profile_names().join(", ")
                ),
            ));
        }
    };
    let tag = if user.is_some() {
        name.to_owned()
    } else {
        format!("{name} (built-in)")
    };
    if chain.contains(&tag) {
        chain.push(tag);
        let first = chain.first().cloned().unwrap_or_default();
        return Err(config.invalid_at(
            &format!("profiles.{first}.inherits"),
            config
                .profiles
                .get(&first)
                .and_then(|d| d.inherits.as_ref())
                .map(|s| s.span().start),
            format!("inheritance cycle: {}", chain.join(" -> ")),
        ));
    }
    chain.push(tag);
    let mut profile = match &def.inherits {
        // A user profile that inherits its own name extends the built-in one.
        Some(parent) if parent.get_ref() == name && user.is_some() => {
            resolve_in(config, name, true, chain)?
        }
        Some(parent) => resolve_in(config, parent.get_ref(), false, chain)?,
        None => Profile::empty(name),
    };
    chain.pop();
    profile.apply(&def);
    Ok(profile)
}

/// Options that only mean something with `prof = true` are refused without it, since
/// jemalloc would accept them and quietly do nothing.
fn check_consistent(config: &Config, p: &Profile) -> Result<(), ConfigError> {
    if p.prof {
        return Ok(());
    }
    let stray: Vec<&str> = [
        ("prof_active", p.prof_active),
        ("lg_prof_sample", p.lg_prof_sample.is_some()),
        ("lg_prof_interval", p.interval_dumps()),
        ("prof_gdump", p.prof_gdump),
        ("prof_final", p.prof_final),
        ("prof_leak", p.prof_leak),
    ]
    .into_iter()
    .filter_map(|(k, set)| set.then_some(k))
    .collect();
    if stray.is_empty() {
        return Ok(());
    }
    let key = format!("profiles.{}", p.name);
    let at = config.text.find(&format!("[{key}]"));
    Err(config.invalid_at(
        &key,
        at,
        format!(
            "sets {} but not prof = true, so jemalloc would ignore it; \
             add prof = true or inherit from \"leak\" or \"standby\"",
            stray.join(", ")
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/jemsafe/p.toml"))
    }

    fn conf_of(text: &str, name: &str) -> String {
        config(text)
            .unwrap()
            .resolve_profile(name)
            .unwrap()
            .malloc_conf(Path::new("/var/lib/jemsafe/mysqld"))
    }

    #[test]
    fn builtin_profiles_render_as_documented() {
        let p = "prof_prefix:/var/lib/jemsafe/mysqld";
        assert_eq!(conf_of("", "off"), "prof:false");
        assert_eq!(
            conf_of("", "standby"),
            format!("prof:true,prof_active:false,{p}")
        );
        assert_eq!(
            conf_of("", "leak"),
            format!("prof:true,prof_active:true,{p}")
        );
        assert_eq!(
            conf_of("", "interval"),
            format!("prof:true,prof_active:true,lg_prof_interval:30,{p}")
        );
        assert_eq!(
            conf_of("", "peak"),
            format!("prof:true,prof_active:true,prof_gdump:true,{p}")
        );
    }

    #[test]
    fn user_profile_inherits_and_overrides() {
        let text = r#"
[profiles.mine]
inherits = "interval"
lg_prof_sample = 17
lg_prof_interval = -1
prof_final = true
extra = { background_thread = true, narenas = 4, thp = "never" }
"#;
        assert_eq!(
            conf_of(text, "mine"),
            "prof:true,prof_active:true,lg_prof_sample:17,prof_final:true,\
             prof_prefix:/var/lib/jemsafe/mysqld,background_thread:true,narenas:4,thp:never"
        );
    }

    #[test]
    fn user_profile_can_redefine_a_builtin_and_extend_it() {
        let text = "[profiles.leak]\ninherits = \"leak\"\nlg_prof_sample = 21\n";
        assert_eq!(
            conf_of(text, "leak"),
            "prof:true,prof_active:true,lg_prof_sample:21,prof_prefix:/var/lib/jemsafe/mysqld"
        );
        // ... and profiles inheriting from it see the redefinition.
        assert!(conf_of(text, "peak").contains("lg_prof_sample:21"));
    }

    #[test]
    fn out_of_range_values_name_key_line_and_range() {
        for (text, want) in [
            ("[profiles.a]\nprof = true\nlg_prof_sample = 64\n", "0..=63"),
            (
                "[profiles.a]\nprof = true\nlg_prof_interval = -2\n",
                "-1 (off) or 0..=63",
            ),
            ("[profiles.a]\nprof = \"yes\"\n", "boolean"),
        ] {
            let e = config(text).unwrap_err().to_string();
            assert!(e.contains("/etc/jemsafe/p.toml") && e.contains(want), "{e}");
            assert!(e.contains("line 3") || e.contains("line 2"), "{e}");
        }
    }

    #[test]
    fn lg_sample_has_one_range_and_one_message() {
        assert_eq!(LgSample::parse(" 17 "), Ok(LgSample(17)));
        assert_eq!(LgSample::new(63), Ok(LgSample(63)));
        for bad in ["64", "-1", "x", "99999999999999999999"] {
            let e = LgSample::parse(bad).unwrap_err().to_string();
            assert!(e.starts_with("lg_prof_sample = "), "{e}");
            assert!(
                e.contains("is out of range: allowed 0..=63 (one sample"),
                "{e}"
            );
        }
    }

    #[test]
    fn unknown_profile_key_is_refused() {
        let e = config("[profiles.a]\nprof = true\nlg_sample = 3\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("lg_sample") && e.contains("lg_prof_sample"),
            "{e}"
        );
    }

    #[test]
    fn extra_is_checked_against_jemalloc_options() {
        let e = config("[profiles.a]\nextra = { backgroud_thread = true }\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("backgroud_thread") && e.contains("background_thread"),
            "{e}"
        );
        let e = config("[profiles.a]\nextra = { background_thread = 1 }\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("true or false"), "{e}");
        let e = config("[profiles.a]\nextra = { thp = \"sometimes\" }\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"never\""), "{e}");
        let e = config("[profiles.a]\nextra = { narenas = -3 }\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("narenas") && e.contains("integer"), "{e}");
        let e = config("[profiles.a]\nextra = { prof_prefix = \"/tmp/x\" }\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("[dumps]"), "{e}");
        let e = config("[profiles.a]\nextra = { prof = true }\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("use the profile key `prof`"), "{e}");
    }

    #[test]
    fn inheritance_cycle_is_reported_with_the_chain() {
        let text = "[profiles.a]\ninherits = \"b\"\n[profiles.b]\ninherits = \"a\"\n";
        let e = config(text).unwrap_err().to_string();
        assert!(e.contains("inheritance cycle: a -> b -> a"), "{e}");
        assert!(e.contains("line 2"), "{e}");
        let e = config("[profiles.a]\ninherits = \"a\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no profile \"a\""), "{e}");
    }

    #[test]
    fn missing_parent_names_the_inherits_key() {
        let e = config("[profiles.a]\ninherits = \"nope\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("profiles.a.inherits") && e.contains("line 2"),
            "{e}"
        );
        assert!(
            e.contains("available: a, interval, leak, off, peak, standby"),
            "{e}"
        );
    }

    #[test]
    fn profiling_options_without_prof_are_refused() {
        let e = config("[profiles.a]\nprof_active = true\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("prof_active") && e.contains("prof = true"),
            "{e}"
        );
        assert!(e.contains("line 1"), "{e}");
    }

    #[test]
    fn similar_catches_one_edit() {
        assert!(similar("narenas", "narena"));
        assert!(similar("thp", "thq"));
        assert!(!similar("thp", "abc"));
    }
}
