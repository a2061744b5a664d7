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
    /// Everything jemalloc knows about where its memory is ([`Memory`]), in one request.
    Memory,
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
            Command::Memory => "memory",
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
            ("memory", None) => Command::Memory,
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

    /// A failure with just a sentence; see [`Reply::failed`] for a failed mallctl.
    pub fn err(id: u64, message: impl Into<String>) -> Reply {
        Reply::failed(id, &Failure::new(message))
    }

    pub fn failed(id: u64, failure: &Failure) -> Reply {
        failure.write(Reply {
            id,
            ok: false,
            fields: Vec::new(),
        })
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

    /// The failure as one sentence: "prof.dump: ENOENT (errno 2): ...".
    pub fn error_text(&self) -> String {
        Failure::read(self)
            .map(|f| f.to_string())
            .unwrap_or_else(|e| format!("malformed failure: {e}"))
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

    /// The length of [`Reply::encode`]'s bytes, without making them.
    pub fn encoded_len(&self) -> usize {
        let id_digits = self.id.checked_ilog10().map_or(1, |d| d as usize + 1);
        let head = id_digits + 1 + if self.ok { 2 } else { 3 };
        head + self
            .fields
            .iter()
            .map(|(k, v)| 2 + k.len() + v.len())
            .sum::<usize>()
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

/// A reply's body: its field names on the wire, written down once for both sides, so a
/// key misspelled on one side is a compile error on the other.
pub trait Body: Sized {
    /// Adds this body's fields to `reply`.
    fn write(&self, reply: Reply) -> Reply;
    /// Reads this body back from `reply`'s fields, naming the field that is missing or bad.
    fn read(reply: &Reply) -> Result<Self, DecodeError>;
}

impl Reply {
    /// A success carrying `body`.
    pub fn ok_with(id: u64, body: &impl Body) -> Reply {
        body.write(Reply::ok(id))
    }

    /// The body of a successful reply; a failure comes back as its [`Failure`].
    pub fn body<B: Body>(&self) -> Result<B, Failure> {
        if !self.ok {
            return Err(Failure::read(self).unwrap_or_else(|e| Failure::new(e.0)));
        }
        B::read(self).map_err(|e| Failure::new(format!("malformed reply from the shim: {e}")))
    }

    fn field<T: std::str::FromStr>(&self, key: &str) -> Result<T, DecodeError> {
        let text = self
            .get(key)
            .ok_or_else(|| DecodeError(format!("no field {key:?}")))?;
        text.parse()
            .map_err(|_| DecodeError(format!("bad value for {key:?}: {text:?}")))
    }

    fn optional<T: std::str::FromStr>(&self, key: &str) -> Result<Option<T>, DecodeError> {
        match self.get(key) {
            None => Ok(None),
            Some(_) => self.field(key).map(Some),
        }
    }

    /// The capabilities' fields, after a `capabilities` marker that says they were read
    /// (an older shim sends neither).
    fn with_capabilities(self, c: Option<&Capabilities>) -> Reply {
        let Some(c) = c else {
            return self;
        };
        self.with("capabilities", 1)
            .with_some("prof_stats", c.prof_stats)
            .with_some("prof_recent_alloc_max", c.prof_recent_alloc_max)
            .with_some("prof_sys_thread_name", c.prof_sys_thread_name)
            .with_some("prof_bt_max", c.prof_bt_max)
            .with_some("background_thread", c.background_thread)
    }

    fn with_some(self, key: &str, value: Option<impl fmt::Display>) -> Reply {
        match value {
            Some(v) => self.with(key, v),
            None => self,
        }
    }
}

/// `hello`: the shim, the jemalloc it is bound to, and the profiling state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub protocol: u32,
    pub shim_version: String,
    pub pid: i32,
    pub jemalloc: Binding,
}

/// Whether the shim found a jemalloc that serves this process's malloc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binding {
    Missing { reason: String },
    Bound(Bound),
}

/// The jemalloc the shim is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bound {
    /// The object `mallctl` comes from (dladdr).
    pub path: String,
    /// `version`.
    pub version: String,
    /// `config.prof`: profiling compiled in.
    pub config_prof: bool,
    /// `opt.prof`: profiling switched on at start (false without config.prof).
    pub opt_prof: bool,
    /// `prof.active`.
    pub prof_active: bool,
    /// `opt.prof_prefix`, when profiling is compiled in.
    pub prof_prefix: Option<String>,
    /// `opt.lg_prof_interval`, when profiling is compiled in.
    pub lg_prof_interval: Option<i64>,
    /// `prof.lg_sample` (or `opt.lg_prof_sample` with profiling off).
    pub lg_prof_sample: Option<u32>,
    /// `prof.gdump`, with profiling on.
    pub prof_gdump: Option<bool>,
    /// What this jemalloc can do beyond profiling itself; None from older shims.
    pub capabilities: Option<Capabilities>,
}

/// Options that say what a jemalloc can do for jemsafe; each None when this jemalloc does
/// not have the option (an older release, or built without profiling).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Capabilities {
    /// `opt.prof_stats` (5.3): requested bytes per size class of sampled objects.
    pub prof_stats: Option<bool>,
    /// `opt.prof_recent_alloc_max` (5.3): the last N sampled allocations kept with their
    /// stacks; 0 off, -1 unlimited.
    pub prof_recent_alloc_max: Option<i64>,
    /// `opt.prof_sys_thread_name` (5.3): threads named from the system in dumps.
    pub prof_sys_thread_name: Option<bool>,
    /// `opt.prof_bt_max` (5.3.1): the deepest stack recorded.
    pub prof_bt_max: Option<u32>,
    /// `background_thread`: purging on jemalloc's own threads, now.
    pub background_thread: Option<bool>,
}

impl Hello {
    /// The jemalloc it is bound to, if any.
    pub fn bound(&self) -> Option<&Bound> {
        match &self.jemalloc {
            Binding::Bound(b) => Some(b),
            Binding::Missing { .. } => None,
        }
    }
}

impl Body for Hello {
    fn write(&self, reply: Reply) -> Reply {
        let reply = reply
            .with("protocol", self.protocol)
            .with("shim_version", &self.shim_version)
            .with("pid", self.pid);
        match &self.jemalloc {
            Binding::Missing { reason } => reply.with("jemalloc", "missing").with("reason", reason),
            Binding::Bound(b) => reply
                .with("jemalloc", "bound")
                .with("jemalloc_path", &b.path)
                .with("version", &b.version)
                .with("config_prof", b.config_prof)
                .with("opt_prof", b.opt_prof)
                .with("prof_active", b.prof_active)
                .with_some("prof_prefix", b.prof_prefix.as_ref())
                .with_some("lg_prof_interval", b.lg_prof_interval)
                .with_some("lg_prof_sample", b.lg_prof_sample)
                .with_some("prof_gdump", b.prof_gdump)
                .with_capabilities(b.capabilities.as_ref()),
        }
    }

    fn read(r: &Reply) -> Result<Hello, DecodeError> {
        let jemalloc = match r.get("jemalloc") {
            Some("bound") => Binding::Bound(Bound {
                path: r.field("jemalloc_path")?,
                version: r.field("version")?,
                config_prof: r.field("config_prof")?,
                opt_prof: r.field("opt_prof")?,
                prof_active: r.field("prof_active")?,
                prof_prefix: r.optional("prof_prefix")?,
                lg_prof_interval: r.optional("lg_prof_interval")?,
                lg_prof_sample: r.optional("lg_prof_sample")?,
                prof_gdump: r.optional("prof_gdump")?,
                capabilities: match r.get("capabilities") {
                    Some(_) => Some(Capabilities {
                        prof_stats: r.optional("prof_stats")?,
                        prof_recent_alloc_max: r.optional("prof_recent_alloc_max")?,
                        prof_sys_thread_name: r.optional("prof_sys_thread_name")?,
                        prof_bt_max: r.optional("prof_bt_max")?,
                        background_thread: r.optional("background_thread")?,
                    }),
                    None => None,
                },
            }),
            _ => Binding::Missing {
                reason: r.field("reason")?,
            },
        };
        Ok(Hello {
            protocol: r.field("protocol")?,
            shim_version: r.field("shim_version")?,
            pid: r.field("pid")?,
            jemalloc,
        })
    }
}

/// `stats`: jemalloc's global statistics after an `epoch` bump, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    pub allocated: u64,
    pub active: u64,
    pub resident: u64,
    pub mapped: u64,
    pub retained: u64,
}

impl Body for Stats {
    fn write(&self, reply: Reply) -> Reply {
        reply
            .with("allocated", self.allocated)
            .with("active", self.active)
            .with("resident", self.resident)
            .with("mapped", self.mapped)
            .with("retained", self.retained)
    }

    fn read(r: &Reply) -> Result<Stats, DecodeError> {
        Ok(Stats {
            allocated: r.field("allocated")?,
            active: r.field("active")?,
            resident: r.field("resident")?,
            mapped: r.field("mapped")?,
            retained: r.field("retained")?,
        })
    }
}

/// `memory`: jemalloc's accounting of its memory, read with mallctl after an `epoch`
/// bump (never by parsing malloc_stats_print inside mysqld). Bytes unless named.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Memory {
    /// `stats.allocated`: live allocations.
    pub allocated: u64,
    /// `stats.active`: pages of active extents (allocated plus waste inside them).
    pub active: u64,
    /// `stats.metadata`: jemalloc's own bookkeeping.
    pub metadata: u64,
    pub resident: u64,
    pub mapped: u64,
    pub retained: u64,
    /// `stats.arenas.<all>.pdirty` × page: freed, not yet purged.
    pub dirty: u64,
    /// `stats.arenas.<all>.pmuzzy` × page: purged lazily (MADV_FREE), maybe still resident.
    pub muzzy: u64,
    /// `arenas.page`.
    pub page: u64,
    /// `opt.narenas`.
    pub narenas: u64,
    /// `opt.dirty_decay_ms`, `opt.muzzy_decay_ms` (-1: never purge).
    pub dirty_decay_ms: i64,
    pub muzzy_decay_ms: i64,
    /// `background_thread`: purging on threads of jemalloc's own.
    pub background_thread: bool,
    /// `opt.thp`.
    pub thp: String,
    /// Small size classes, all arenas merged.
    pub bins: Vec<Bin>,
    /// `prof.stats.bins.<i>.live` per small size class in use, when jemalloc keeps
    /// them (`opt.prof_stats`, 5.3); None when it does not (and from older shims, and
    /// snapshots taken without it).
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub prof_stats: Option<Vec<ClassRequests>>,
}

/// Requested bytes of the live sampled objects of one size class (`prof.stats.*.live`):
/// internal fragmentation is `1 - req_sum / (count * size)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ClassRequests {
    /// The size class (usable size) in bytes.
    pub size: u64,
    /// Sum of the sizes asked for.
    pub req_sum: u64,
    /// Live sampled objects.
    pub count: u64,
}

/// Largest `prof_stats` field a shim sends: the whole reply must fit in [`MAX_PACKET`].
pub const MAX_PROF_STATS_FIELD: usize = 4096;

impl ClassRequests {
    /// Internal fragmentation: the share of the class's usable bytes not asked for.
    pub fn internal(&self) -> f64 {
        let usable = self.count.saturating_mul(self.size);
        if usable == 0 {
            return 0.0;
        }
        (1.0 - self.req_sum as f64 / usable as f64).max(0.0)
    }

    /// `size:req_sum:count` entries separated by spaces, at most `max` bytes (classes
    /// beyond are left out: the caller lists the most used first).
    pub fn encode_list(list: &[ClassRequests], max: usize) -> String {
        let mut out = String::new();
        for c in list {
            let item = format!("{}:{}:{}", c.size, c.req_sum, c.count);
            if out.len() + 1 + item.len() > max {
                break;
            }
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(&item);
        }
        out
    }

    pub fn decode_list(text: &str) -> Result<Vec<ClassRequests>, DecodeError> {
        text.split_whitespace()
            .map(|c| {
                let n: Vec<u64> = c
                    .split(':')
                    .map(|x| {
                        x.parse()
                            .map_err(|_| DecodeError(format!("bad class {c:?}")))
                    })
                    .collect::<Result<_, _>>()?;
                let [size, req_sum, count] = n[..] else {
                    return Err(DecodeError(format!("bad class {c:?}")));
                };
                Ok(ClassRequests {
                    size,
                    req_sum,
                    count,
                })
            })
            .collect()
    }
}

/// One small size class: `arenas.bin.<j>.size/nregs`, `stats.arenas.<all>.bins.<j>.curregs/curslabs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Bin {
    pub size: u64,
    pub nregs: u64,
    pub curregs: u64,
    pub curslabs: u64,
}

impl Bin {
    /// Bytes in this class's slabs that hold no live region.
    pub fn wasted(&self) -> u64 {
        self.curslabs
            .saturating_mul(self.nregs)
            .saturating_sub(self.curregs)
            .saturating_mul(self.size)
    }
}

impl Body for Memory {
    fn write(&self, reply: Reply) -> Reply {
        // Bins in use only, as size:nregs:curregs:curslabs separated by spaces: one
        // field, well inside a packet (jemalloc 5.3 has 36 small classes with 4 KiB pages).
        let bins: Vec<String> = self
            .bins
            .iter()
            .filter(|b| b.curslabs > 0)
            .map(|b| format!("{}:{}:{}:{}", b.size, b.nregs, b.curregs, b.curslabs))
            .collect();
        reply
            .with("allocated", self.allocated)
            .with("active", self.active)
            .with("metadata", self.metadata)
            .with("resident", self.resident)
            .with("mapped", self.mapped)
            .with("retained", self.retained)
            .with("dirty", self.dirty)
            .with("muzzy", self.muzzy)
            .with("page", self.page)
            .with("narenas", self.narenas)
            .with("dirty_decay_ms", self.dirty_decay_ms)
            .with("muzzy_decay_ms", self.muzzy_decay_ms)
            .with("background_thread", self.background_thread)
            .with("thp", &self.thp)
            .with("bins", bins.join(" "))
            .with_some(
                "prof_stats",
                self.prof_stats
                    .as_ref()
                    .map(|l| ClassRequests::encode_list(l, MAX_PROF_STATS_FIELD)),
            )
    }

    fn read(r: &Reply) -> Result<Memory, DecodeError> {
        let text: String = r.field("bins")?;
        let mut bins = Vec::new();
        for b in text.split_whitespace() {
            let n: Vec<u64> = b
                .split(':')
                .map(|x| x.parse().map_err(|_| DecodeError(format!("bad bin {b:?}"))))
                .collect::<Result<_, _>>()?;
            let [size, nregs, curregs, curslabs] = n[..] else {
                return Err(DecodeError(format!("bad bin {b:?}")));
            };
            bins.push(Bin {
                size,
                nregs,
                curregs,
                curslabs,
            });
        }
        Ok(Memory {
            allocated: r.field("allocated")?,
            active: r.field("active")?,
            metadata: r.field("metadata")?,
            resident: r.field("resident")?,
            mapped: r.field("mapped")?,
            retained: r.field("retained")?,
            dirty: r.field("dirty")?,
            muzzy: r.field("muzzy")?,
            page: r.field("page")?,
            narenas: r.field("narenas")?,
            dirty_decay_ms: r.field("dirty_decay_ms")?,
            muzzy_decay_ms: r.field("muzzy_decay_ms")?,
            background_thread: r.field("background_thread")?,
            thp: r.field("thp")?,
            bins,
            prof_stats: r
                .get("prof_stats")
                .map(ClassRequests::decode_list)
                .transpose()?,
        })
    }
}

/// `activate`, `deactivate`, `toggle`: prof.active before and after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProfState {
    pub was_active: bool,
    pub prof_active: bool,
}

impl Body for ProfState {
    fn write(&self, reply: Reply) -> Reply {
        reply
            .with("was_active", self.was_active)
            .with("prof_active", self.prof_active)
    }

    fn read(r: &Reply) -> Result<ProfState, DecodeError> {
        Ok(ProfState {
            was_active: r.field("was_active")?,
            prof_active: r.field("prof_active")?,
        })
    }
}

/// `reset`: the sample rate in force afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResetDone {
    pub lg_prof_sample: u32,
}

impl Body for ResetDone {
    fn write(&self, reply: Reply) -> Reply {
        reply.with("lg_prof_sample", self.lg_prof_sample)
    }

    fn read(r: &Reply) -> Result<ResetDone, DecodeError> {
        Ok(ResetDone {
            lg_prof_sample: r.field("lg_prof_sample")?,
        })
    }
}

/// `dump`: how long prof.dump took inside mysqld, where it wrote, and where jemalloc's
/// memory was just before it (one request: nothing comes between the two).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dumped {
    pub dump_us: u64,
    pub path: Option<String>,
    /// None when this jemalloc keeps no statistics, when the reading would not fit in a
    /// packet beside the path, and from shims older than this field.
    pub memory: Option<Memory>,
}

impl Body for Dumped {
    fn write(&self, reply: Reply) -> Reply {
        let reply = reply
            .with("dump_us", self.dump_us)
            .with_some("path", self.path.as_ref());
        // Memory's fields beside the dump's: no name is shared.
        match &self.memory {
            Some(memory) => memory.write(reply),
            None => reply,
        }
    }

    fn read(r: &Reply) -> Result<Dumped, DecodeError> {
        Ok(Dumped {
            dump_us: r.field("dump_us")?,
            path: r.optional("path")?,
            memory: match r.get("allocated") {
                Some(_) => Some(Memory::read(r)?),
                None => None,
            },
        })
    }
}

/// A failed request: a sentence, and for a failed mallctl which call and which errno.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub message: String,
    /// The mallctl name that failed.
    pub mallctl: Option<String>,
    /// The errno's name (`ENOENT`), or a word of the shim's own (`NOJEMALLOC`).
    pub error: Option<String>,
    pub errno: Option<i32>,
}

impl Failure {
    pub fn new(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            mallctl: None,
            error: None,
            errno: None,
        }
    }
}

/// "prof.dump: ENOENT (errno 2): profiling is not enabled ..."
impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(call) = &self.mallctl {
            write!(f, "{call}: ")?;
        }
        match (&self.error, self.errno) {
            (Some(name), Some(n)) => write!(f, "{name} (errno {n}): ")?,
            (Some(name), None) => write!(f, "{name}: ")?,
            _ => {}
        }
        f.write_str(&self.message)
    }
}

impl Body for Failure {
    fn write(&self, reply: Reply) -> Reply {
        reply
            .with("message", &self.message)
            .with_some("mallctl", self.mallctl.as_ref())
            .with_some("error", self.error.as_ref())
            .with_some("errno", self.errno)
    }

    fn read(r: &Reply) -> Result<Failure, DecodeError> {
        Ok(Failure {
            message: r
                .optional("message")?
                .unwrap_or_else(|| "unspecified failure".to_owned()),
            mallctl: r.optional("mallctl")?,
            error: r.optional("error")?,
            errno: r.optional("errno")?,
        })
    }
}

// From SQL (issue 26): the shim's own requests to jemsafe, and jemsafe's answers.
mod sql;
pub use sql::{Answer, Ask, SqlOp, DEFAULT_SQL_TIMEOUT_MS, ENV_SQL_TIMEOUT_MS};

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
            Command::Memory,
        ] {
            let req = Request { id: 42, command };
            assert_eq!(Request::decode(&req.encode()), Ok(req));
        }
    }

    #[test]
    fn replies_round_trip_and_flatten_newlines() {
        let reply = Reply::failed(
            9,
            &Failure {
                message: "line one\nline two".into(),
                mallctl: None,
                error: Some("ENOENT".into()),
                errno: Some(2),
            },
        );
        let back = Reply::decode(&reply.encode()).unwrap();
        assert_eq!(back, reply);
        assert_eq!(back.get("message"), Some("line one line two"));
        assert_eq!(back.error_text(), "ENOENT (errno 2): line one line two");
    }

    #[test]
    fn bodies_round_trip_and_name_what_is_missing() {
        let hello = Hello {
            protocol: PROTOCOL_VERSION,
            shim_version: "0.1.0".into(),
            pid: 7,
            jemalloc: Binding::Bound(Bound {
                path: "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2".into(),
                version: "5.3.0-0-g54eaed1d8b56b1aa528be3bdd1877e59c56fa90c".into(),
                config_prof: true,
                opt_prof: true,
                prof_active: false,
                prof_prefix: Some("/var/lib/jemsafe/mysqld".into()),
                lg_prof_interval: Some(-1),
                lg_prof_sample: Some(19),
                prof_gdump: Some(false),
                capabilities: None,
            }),
        };
        let wire = Reply::decode(&Reply::ok_with(3, &hello).encode()).unwrap();
        assert_eq!(wire.body::<Hello>(), Ok(hello.clone()));
        // With capabilities: some known, some not (None stays None).
        let mut with = hello;
        if let Binding::Bound(b) = &mut with.jemalloc {
            b.capabilities = Some(Capabilities {
                prof_stats: Some(true),
                prof_recent_alloc_max: Some(-1),
                prof_bt_max: None,
                ..Default::default()
            });
        }
        let wire = Reply::decode(&Reply::ok_with(3, &with).encode()).unwrap();
        assert_eq!(wire.body::<Hello>(), Ok(with));
        let stats = Stats {
            allocated: 1,
            active: 2,
            resident: 3,
            mapped: 4,
            retained: 5,
        };
        assert_eq!(Reply::ok_with(1, &stats).body::<Stats>(), Ok(stats));
        let e = Reply::ok(1)
            .with("allocated", 1)
            .body::<Stats>()
            .unwrap_err();
        assert!(e.message.contains("no field \"active\""), "{e}");
        let failed = Reply::err(2, "no jemalloc").body::<Stats>().unwrap_err();
        assert_eq!(failed.to_string(), "no jemalloc");
    }

    #[test]
    fn memory_round_trips_with_its_bins() {
        let m = Memory {
            allocated: 10,
            active: 20,
            page: 4096,
            dirty_decay_ms: -1,
            thp: "default".into(),
            bins: vec![Bin {
                size: 1024,
                nregs: 4,
                curregs: 1,
                curslabs: 2,
            }],
            ..Default::default()
        };
        let wire = Reply::decode(&Reply::ok_with(1, &m).encode()).unwrap();
        assert_eq!(wire.body::<Memory>(), Ok(m.clone()));
        // With prof_stats, including an empty list (on, nothing sampled yet).
        for list in [
            vec![],
            vec![ClassRequests {
                size: 1024,
                req_sum: 1000,
                count: 1,
            }],
        ] {
            let m = Memory {
                prof_stats: Some(list),
                ..m.clone()
            };
            let wire = Reply::decode(&Reply::ok_with(1, &m).encode()).unwrap();
            assert_eq!(wire.body::<Memory>(), Ok(m));
        }
    }

    #[test]
    fn a_dump_reply_carries_its_memory_reading_or_none() {
        let memory = Memory {
            allocated: 10,
            page: 4096,
            thp: "default".into(),
            ..Default::default()
        };
        for memory in [Some(memory), None] {
            let d = Dumped {
                dump_us: 900,
                path: Some("/var/lib/jemsafe/d.heap".into()),
                memory,
            };
            let reply = Reply::ok_with(1, &d);
            assert_eq!(reply.encoded_len(), reply.encode().len());
            let wire = Reply::decode(&reply.encode()).unwrap();
            assert_eq!(wire.body::<Dumped>(), Ok(d));
            for id in [0, 9, 10, 12345] {
                let r = Reply::err(id, "no");
                assert_eq!(r.encoded_len(), r.encode().len());
            }
        }
        // A reading cut short is an error, not a silent None.
        let cut = Reply::ok(1).with("dump_us", 1).with("allocated", 1);
        assert!(cut.body::<Dumped>().is_err());
    }

    #[test]
    fn a_long_prof_stats_list_is_cut_to_its_bound() {
        let list: Vec<ClassRequests> = (1..1000)
            .map(|i| ClassRequests {
                size: i * 4096,
                req_sum: i * 4_000_000,
                count: 1000,
            })
            .collect();
        let text = ClassRequests::encode_list(&list, MAX_PROF_STATS_FIELD);
        assert!(text.len() <= MAX_PROF_STATS_FIELD);
        let back = ClassRequests::decode_list(&text).unwrap();
        assert_eq!(back[..], list[..back.len()]);
        assert!(ClassRequests::decode_list("1:2").is_err());
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
