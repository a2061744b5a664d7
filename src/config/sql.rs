//! `[sql]`: what jemsafe_udf.so's functions may ask of jemsafe.
//!
//! MariaDB and MySQL let every connected account call every loadable function, so what
//! SQL may do is jemsafe's decision: `allow` lists the operations permitted. Dumps (under
//! storm control), the status and the memory breakdown by default; switching profiling
//! on and off (`"prof"`) only when the config says so.

use jemsafe_proto::SqlOp;
use serde::{Deserialize, Deserializer};

/// An operation `[sql] allow` can permit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlPermission {
    Dump,
    Status,
    Memory,
    Prof,
}

impl SqlPermission {
    pub const ALL: [SqlPermission; 4] = [
        SqlPermission::Dump,
        SqlPermission::Status,
        SqlPermission::Memory,
        SqlPermission::Prof,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SqlPermission::Dump => "dump",
            SqlPermission::Status => "status",
            SqlPermission::Memory => "memory",
            SqlPermission::Prof => "prof",
        }
    }

    /// The permission a call from SQL needs.
    pub fn needed_by(op: SqlOp) -> SqlPermission {
        match op {
            SqlOp::Dump => SqlPermission::Dump,
            SqlOp::Status => SqlPermission::Status,
            SqlOp::Memory => SqlPermission::Memory,
            SqlOp::ProfOn | SqlOp::ProfOff => SqlPermission::Prof,
        }
    }

    /// The allowed values, as a config spells them.
    fn listed() -> String {
        SqlPermission::ALL
            .iter()
            .map(|p| format!("\"{}\"", p.name()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl<'de> Deserialize<'de> for SqlPermission {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        SqlPermission::ALL
            .into_iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "{name:?} is not an operation `[sql] allow` knows: allowed values are {}",
                    SqlPermission::listed()
                ))
            })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlSection {
    /// The operations permitted from SQL.
    #[serde(default = "default_allow")]
    pub allow: Vec<SqlPermission>,
    /// How long a call from SQL waits for jemsafe's answer, in milliseconds.
    #[serde(default = "default_timeout_ms", deserialize_with = "timeout_ms")]
    pub timeout_ms: u64,
}

impl Default for SqlSection {
    fn default() -> Self {
        SqlSection {
            allow: default_allow(),
            timeout_ms: default_timeout_ms(),
        }
    }
}

fn default_allow() -> Vec<SqlPermission> {
    vec![
        SqlPermission::Dump,
        SqlPermission::Status,
        SqlPermission::Memory,
    ]
}

fn default_timeout_ms() -> u64 {
    jemsafe_proto::DEFAULT_SQL_TIMEOUT_MS
}

/// The most a connection may be held waiting: a minute and a half (a dump of a large
/// heap takes seconds; jemsafe gives up on one after a minute).
const MAX_TIMEOUT_MS: u64 = 90_000;

fn timeout_ms<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let v = i64::deserialize(d)?;
    match u64::try_from(v) {
        Ok(ms) if (100..=MAX_TIMEOUT_MS).contains(&ms) => Ok(ms),
        _ => Err(serde::de::Error::custom(format!(
            "{v} is out of range: allowed 100..={MAX_TIMEOUT_MS} (milliseconds a call from SQL waits)"
        ))),
    }
}

impl SqlSection {
    /// Why jemsafe refuses `op` from SQL, if it does: the message names `[sql] allow`.
    pub fn refusal(&self, op: SqlOp) -> Option<String> {
        let needed = SqlPermission::needed_by(op);
        if self.allow.contains(&needed) {
            return None;
        }
        let allowed: Vec<String> = self
            .allow
            .iter()
            .map(|p| format!("\"{}\"", p.name()))
            .collect();
        Some(format!(
            "{} from SQL is not permitted by `[sql] allow` (now [{}]); add \"{}\" to it \
             in jemsafe's config to permit it",
            op.word(),
            allowed.join(", "),
            needed.name()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<SqlSection, String> {
        #[derive(Deserialize)]
        struct File {
            #[serde(default)]
            sql: SqlSection,
        }
        toml::from_str::<File>(text)
            .map(|f| f.sql)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn by_default_sql_may_dump_and_read_but_not_switch_profiling() {
        let sql = parse("").unwrap();
        assert_eq!(sql, SqlSection::default());
        assert_eq!(sql.refusal(SqlOp::Dump), None);
        assert_eq!(sql.refusal(SqlOp::Status), None);
        assert_eq!(sql.refusal(SqlOp::Memory), None);
        let off = sql.refusal(SqlOp::ProfOff).unwrap();
        assert!(off.contains("`[sql] allow`"), "{off}");
        assert!(off.contains("add \"prof\""), "{off}");
        assert_eq!(sql.timeout_ms, 10_000);
    }

    #[test]
    fn prof_is_opt_in_and_an_empty_list_refuses_everything() {
        let sql = parse("[sql]\nallow = [\"prof\"]\ntimeout_ms = 2000").unwrap();
        assert_eq!(sql.refusal(SqlOp::ProfOn), None);
        assert!(sql.refusal(SqlOp::Dump).is_some());
        assert_eq!(sql.timeout_ms, 2000);
        let none = parse("[sql]\nallow = []").unwrap();
        for op in SqlOp::ALL {
            assert!(none.refusal(op).is_some(), "{op:?}");
        }
    }

    #[test]
    fn an_unknown_operation_is_an_error_naming_the_key_and_the_allowed_values() {
        let e = parse("[sql]\nallow = [\"dump\", \"shutdown\"]").unwrap_err();
        assert!(e.contains("\"shutdown\""), "{e}");
        assert!(e.contains("`[sql] allow`"), "{e}");
        assert!(
            e.contains("\"dump\", \"status\", \"memory\", \"prof\""),
            "{e}"
        );
        assert!(parse("[sql]\ntimeout_ms = 0").is_err());
        assert!(parse("[sql]\nallowed = []").is_err());
    }
}
