//! From SQL: requests the shim sends on its own (issue 26).
//!
//! jemsafe_udf.so, called on one of mysqld's connection threads, asks the shim in the same
//! process, which sends an [`Ask`] to jemsafe over the existing channel; jemsafe carries it
//! out as it would a `jemsafe dump` or `jemsafe prof` and sends back an [`Answer`] with
//! the same id. Asks have their own ids (the shim's), and their packets say what they are
//! in their second word, so neither side takes one for a request or a reply.
//!
//! ```text
//! ask:     <id> ask <op>                       e.g. "3 ask dump"
//! answer:  <id> answer ok|err                  then `value=…` or `error=…`
//! ```

use crate::{DecodeError, MAX_PACKET};

/// Environment variable with how long a call from SQL waits for jemsafe's answer, in
/// milliseconds (`[sql] timeout_ms`); the shim reads and removes it at load time.
pub const ENV_SQL_TIMEOUT_MS: &str = "JEMSAFE_SQL_TIMEOUT_MS";

/// How long a call from SQL waits for jemsafe's answer when nothing says otherwise.
pub const DEFAULT_SQL_TIMEOUT_MS: u64 = 10_000;

/// What a loadable function asks jemsafe for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlOp {
    /// A dump through jemsafe's pipeline (trigger `sql`); the answer is its full path.
    Dump,
    /// `jemsafe prof on`; the answer is the new `prof.active` (`true`).
    ProfOn,
    /// `jemsafe prof off`; the answer is the new `prof.active` (`false`).
    ProfOff,
    /// `jemsafe_status()`'s JSON.
    Status,
    /// `jemsafe memory --json`'s JSON.
    Memory,
}

impl SqlOp {
    pub const ALL: [SqlOp; 5] = [
        SqlOp::Dump,
        SqlOp::ProfOn,
        SqlOp::ProfOff,
        SqlOp::Status,
        SqlOp::Memory,
    ];

    /// The op as the packet spells it.
    pub fn word(self) -> &'static str {
        match self {
            SqlOp::Dump => "dump",
            SqlOp::ProfOn => "prof-on",
            SqlOp::ProfOff => "prof-off",
            SqlOp::Status => "status",
            SqlOp::Memory => "memory",
        }
    }

    pub fn parse(word: &str) -> Option<SqlOp> {
        SqlOp::ALL.into_iter().find(|op| op.word() == word)
    }

    /// The `[sql] allow` entry that permits it.
    pub fn permission(self) -> &'static str {
        match self {
            SqlOp::Dump => "dump",
            SqlOp::ProfOn | SqlOp::ProfOff => "prof",
            SqlOp::Status => "status",
            SqlOp::Memory => "memory",
        }
    }
}

/// The shim's request to jemsafe on behalf of a loadable function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ask {
    pub id: u64,
    pub op: SqlOp,
}

const ASK: &str = "ask";
const ANSWER: &str = "answer";

/// The second word of a packet: what it is.
fn kind_of(packet: &[u8]) -> Option<&str> {
    let head = packet.split(|&b| b == b'\n').next()?;
    let text = std::str::from_utf8(head).ok()?;
    text.split(' ').nth(1)
}

impl Ask {
    pub fn encode(&self) -> Vec<u8> {
        format!("{} {ASK} {}", self.id, self.op.word()).into_bytes()
    }

    /// None when the packet is not an ask at all; an error when it is a malformed one.
    pub fn decode(packet: &[u8]) -> Option<Result<Ask, DecodeError>> {
        if kind_of(packet) != Some(ASK) {
            return None;
        }
        Some((|| {
            let text = std::str::from_utf8(packet).map_err(|_| DecodeError("not UTF-8".into()))?;
            let mut words = text.split(' ');
            let id = words.next().unwrap_or_default();
            let id = id
                .parse()
                .map_err(|_| DecodeError(format!("bad ask id {id:?}")))?;
            let word = words.nth(1).unwrap_or_default();
            let op =
                SqlOp::parse(word).ok_or_else(|| DecodeError(format!("unknown ask {word:?}")))?;
            if words.next().is_some() {
                return Err(DecodeError(format!("trailing words in ask {text:?}")));
            }
            Ok(Ask { id, op })
        })())
    }
}

/// jemsafe's answer to an [`Ask`]: the value (a path, a state, a JSON text) or why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub id: u64,
    pub result: Result<String, String>,
}

impl Answer {
    /// The packet; newlines in the text become spaces so that it stays one field. A text
    /// too long for a packet is replaced by an error that says so.
    pub fn encode(&self) -> Vec<u8> {
        let (status, key, text) = match &self.result {
            Ok(value) => ("ok", "value", value),
            Err(error) => ("err", "error", error),
        };
        let packet = format!(
            "{} {ANSWER} {status}\n{key}={}",
            self.id,
            text.replace('\n', " ")
        );
        if packet.len() <= MAX_PACKET {
            return packet.into_bytes();
        }
        format!(
            "{} {ANSWER} err\nerror=the answer ({} bytes) does not fit in one packet of {MAX_PACKET}",
            self.id,
            text.len()
        )
        .into_bytes()
    }

    /// None when the packet is not an answer at all; an error when it is a malformed one.
    pub fn decode(packet: &[u8]) -> Option<Result<Answer, DecodeError>> {
        if kind_of(packet) != Some(ANSWER) {
            return None;
        }
        Some((|| {
            let text = std::str::from_utf8(packet).map_err(|_| DecodeError("not UTF-8".into()))?;
            let (head, field) = text
                .split_once('\n')
                .ok_or_else(|| DecodeError(format!("answer without a field: {text:?}")))?;
            let mut words = head.split(' ');
            let id = words.next().unwrap_or_default();
            let id = id
                .parse()
                .map_err(|_| DecodeError(format!("bad answer id {id:?}")))?;
            let status = words.nth(1).unwrap_or_default();
            let result = match (status, field.split_once('=')) {
                ("ok", Some(("value", v))) => Ok(v.to_owned()),
                ("err", Some(("error", e))) => Err(e.to_owned()),
                _ => return Err(DecodeError(format!("bad answer {text:?}"))),
            };
            Ok(Answer { id, result })
        })())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Command, Reply, Request};

    #[test]
    fn asks_and_answers_round_trip_and_are_told_from_requests_and_replies() {
        for op in SqlOp::ALL {
            let ask = Ask { id: 42, op };
            assert_eq!(Ask::decode(&ask.encode()), Some(Ok(ask)));
            assert!(Answer::decode(&ask.encode()).is_none());
        }
        for result in [Ok("/d/x.heap".to_owned()), Err("refused: a=b".to_owned())] {
            let answer = Answer { id: 7, result };
            assert_eq!(Answer::decode(&answer.encode()), Some(Ok(answer.clone())));
            assert!(Ask::decode(&answer.encode()).is_none());
        }
        // Requests and replies are neither.
        let request = Request {
            id: 3,
            command: Command::Dump(None),
        };
        assert!(Ask::decode(&request.encode()).is_none());
        assert!(Answer::decode(&Reply::ok(3).encode()).is_none());
        assert!(Ask::decode(b"3 ask frobnicate").is_some_and(|r| r.is_err()));
        assert!(Answer::decode(b"3 answer ok").is_some_and(|r| r.is_err()));
    }

    #[test]
    fn an_answer_too_long_for_a_packet_becomes_an_error_that_says_so() {
        let answer = Answer {
            id: 1,
            result: Ok("x".repeat(MAX_PACKET)),
        };
        let back = Answer::decode(&answer.encode()).unwrap().unwrap();
        assert!(back.result.unwrap_err().contains("does not fit"));
    }

    #[test]
    fn prof_on_and_off_need_the_prof_permission() {
        assert_eq!(SqlOp::ProfOn.permission(), "prof");
        assert_eq!(SqlOp::ProfOff.permission(), "prof");
        assert_eq!(SqlOp::Dump.permission(), "dump");
    }
}
