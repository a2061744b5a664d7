//! The conversation between jemsafe and its shim inside mysqld.
//!
//! One definition for both sides. The transport is one end of a `SOCK_SEQPACKET`
//! socketpair that jemsafe passes to mysqld by file descriptor number in
//! [`ENV_SHIM_FD`]: every request and every reply is exactly one packet, so no framing
//! is needed, and the shim sees end-of-file when jemsafe goes away.
//!
//! A packet is UTF-8 text, lines separated by `\n`:
//!
//! ```text
//! request:  <id> <command> [<argument>]        e.g. "7 dump /var/lib/jemsafe/x.heap"
//! reply:    <id> ok|err                         then one `key=value` line per field
//! ```
//!
//! Values never contain a newline (jemsafe refuses such paths before they get here).

use std::fmt;

/// Environment variable naming the inherited socket fd. The shim removes it at load
/// time so that mysqld's own children never see it.
pub const ENV_SHIM_FD: &str = "JEMSAFE_SHIM_FD";

/// Name of the shim's control thread, as `ps -L` / `/proc/<pid>/task/*/comm` show it.
pub const THREAD_NAME: &str = "jemsafe-shim";

/// Largest packet either side sends or accepts.
pub const MAX_PACKET: usize = 8192;

/// Protocol revision, reported by `hello` so that a mismatched shim is recognised.
pub const PROTOCOL_VERSION: u32 = 1;

/// What jemsafe asks the shim to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Report the shim, the jemalloc it is bound to and its profiling state.
    Hello,
    /// `prof.dump`, to the given path or (None) to jemalloc's own file name.
    Dump(Option<String>),
    /// `prof.active = true`.
    Activate,
    /// `prof.active = false`.
    Deactivate,
    /// Flip `prof.active`; the reply says the new state.
    Toggle,
    /// `prof.reset`, optionally with a new lg_prof_sample.
    Reset(Option<u32>),
    /// `stats.allocated/active/resident/mapped/retained` after an `epoch` bump.
    Stats,
}

impl Command {
    fn word(&self) -> &'static str {
        match self {
            Command::Hello => "hello",
            Command::Dump(_) => "dump",
            Command::Activate => "activate",
            Command::Deactivate => "deactivate",
            Command::Toggle => "toggle",
            Command::Reset(_) => "reset",
            Command::Stats => "stats",
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.word())?;
        match self {
            Command::Dump(Some(path)) => write!(f, " {path}"),
            Command::Reset(Some(lg)) => write!(f, " {lg}"),
            _ => Ok(()),
        }
    }
}

/// A numbered command; the id pairs it with its reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub id: u64,
    pub command: Command,
}

/// Why a packet could not be understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DecodeError {}

impl Request {
    pub fn encode(&self) -> Vec<u8> {
        format!("{} {}", self.id, self.command).into_bytes()
    }

    pub fn decode(packet: &[u8]) -> Result<Request, DecodeError> {
        let text = std::str::from_utf8(packet).map_err(|_| DecodeError("not UTF-8".into()))?;
        if text.contains('\n') {
            return Err(DecodeError("request spans several lines".into()));
        }
        let (id, rest) = text
            .split_once(' ')
            .ok_or_else(|| DecodeError(format!("no command in {text:?}")))?;
        let id = id
            .parse::<u64>()
            .map_err(|_| DecodeError(format!("bad request id {id:?}")))?;
        let (word, arg) = match rest.split_once(' ') {
            Some((w, a)) => (w, Some(a)),
            None => (rest, None),
        };
        let command = match (word, arg) {
            ("hello", None) => Command::Hello,
            ("dump", path) => Command::Dump(path.map(str::to_owned)),
            ("activate", None) => Command::Activate,
            ("deactivate", None) => Command::Deactivate,
            ("toggle", None) => Command::Toggle,
            ("reset", None) => Command::Reset(None),
            ("reset", Some(lg)) => Command::Reset(Some(
                lg.parse()
                    .map_err(|_| DecodeError(format!("bad lg_sample {lg:?}")))?,
            )),
            ("stats", None) => Command::Stats,
            _ => return Err(DecodeError(format!("unknown command {rest:?}"))),
        };
        Ok(Request { id, command })
    }
}

/// The shim's answer: success or failure, plus named fields.
///
/// Failures carry `error` (e.g. `ENOENT`), `errno`, `mallctl` (which call failed) and
/// `message` (a sentence for the log).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reply {
    pub id: u64,
    pub ok: bool,
    pub fields: Vec<(String, String)>,
}

impl Reply {
    pub fn ok(id: u64) -> Reply {
        Reply {
            id,
            ok: true,
            fields: Vec::new(),
        }
    }

    pub fn err(id: u64, message: impl Into<String>) -> Reply {
        Reply {
            id,
            ok: false,
            fields: Vec::new(),
        }
        .with("message", message.into())
    }

    /// Adds a field; newlines in the value become spaces so the packet stays parseable.
    pub fn with(mut self, key: &str, value: impl fmt::Display) -> Reply {
        let value = value.to_string().replace('\n', " ");
        self.fields.push((key.to_owned(), value));
        self
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn get_bool(&self, key: &str) -> Option<bool> {
        match self.get(key)? {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        }
    }

    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.get(key)?.parse().ok()
    }

    /// The failure as one sentence: "prof.dump: ENOENT (errno 2): ...".
    pub fn error_text(&self) -> String {
        let mut parts = Vec::new();
        if let Some(call) = self.get("mallctl") {
            parts.push(call.to_owned());
        }
        if let Some(name) = self.get("error") {
            match self.get("errno") {
                Some(n) => parts.push(format!("{name} (errno {n})")),
                None => parts.push(name.to_owned()),
            }
        }
        if let Some(m) = self.get("message") {
            parts.push(m.to_owned());
        }
        if parts.is_empty() {
            "unspecified failure".to_owned()
        } else {
            parts.join(": ")
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = format!("{} {}", self.id, if self.ok { "ok" } else { "err" });
        for (k, v) in &self.fields {
            out.push('\n');
            out.push_str(k);
            out.push('=');
            out.push_str(v);
        }
        out.into_bytes()
    }

    pub fn decode(packet: &[u8]) -> Result<Reply, DecodeError> {
        let text = std::str::from_utf8(packet).map_err(|_| DecodeError("not UTF-8".into()))?;
        let mut lines = text.split('\n');
        let head = lines.next().unwrap_or_default();
        let (id, status) = head
            .split_once(' ')
            .ok_or_else(|| DecodeError(format!("bad reply header {head:?}")))?;
        let id = id
            .parse()
            .map_err(|_| DecodeError(format!("bad reply id {id:?}")))?;
        let ok = match status {
            "ok" => true,
            "err" => false,
            other => return Err(DecodeError(format!("bad reply status {other:?}"))),
        };
        let mut fields = Vec::new();
        for line in lines {
            let (k, v) = line
                .split_once('=')
                .ok_or_else(|| DecodeError(format!("bad reply field {line:?}")))?;
            fields.push((k.to_owned(), v.to_owned()));
        }
        Ok(Reply { id, ok, fields })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        for command in [
            Command::Hello,
            Command::Dump(None),
            Command::Dump(Some("/var/lib/jemsafe/a b.heap".into())),
            Command::Activate,
            Command::Deactivate,
            Command::Toggle,
            Command::Reset(None),
            Command::Reset(Some(17)),
            Command::Stats,
        ] {
            let req = Request { id: 42, command };
            assert_eq!(Request::decode(&req.encode()), Ok(req));
        }
    }

    #[test]
    fn replies_round_trip_and_flatten_newlines() {
        let reply = Reply::err(9, "line one\nline two")
            .with("error", "ENOENT")
            .with("errno", 2);
        let back = Reply::decode(&reply.encode()).unwrap();
        assert_eq!(back, reply);
        assert_eq!(back.get("message"), Some("line one line two"));
        assert_eq!(back.error_text(), "ENOENT (errno 2): line one line two");
    }

    #[test]
    fn garbage_is_rejected_not_panicked_on() {
        for bad in [
            &b""[..],
            b"x",
            b"1",
            b"1 launch",
            b"1 reset many",
            b"\xff\xfe",
        ] {
            assert!(Request::decode(bad).is_err(), "{bad:?}");
        }
        for bad in [&b""[..], b"1", b"1 maybe", b"1 ok\nnofield"] {
            assert!(Reply::decode(bad).is_err(), "{bad:?}");
        }
    }
}
