//! Command-line definitions only (the man page and completions are generated from them).

use crate::config::DEFAULT_CONFIG_PATH;
use crate::log::Level;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "jemsafe",
    version,
    about = "Run MySQL/MariaDB mysqld under jemalloc heap profiling and take heap dumps without gdb",
    long_about = "jemsafe starts mysqld with libjemalloc and a small control shim preloaded, proves \
through /proc/<pid>/maps and a handshake that the profiling allocator is really inside mysqld, \
and takes heap snapshots on SIGUSR1 from a thread of its own inside mysqld: about a \
millisecond, where attaching gdb stalls every query for hundreds of milliseconds.",
    after_help = "Examples:\n  jemsafe check                      validate /etc/jemsafe/jemsafe.toml and this machine\n  jemsafe run -p leak                start mysqld with the `leak` profile\n  kill -USR1 $(cat /run/jemsafe/jemsafe.pid)   take a heap dump\n  jemsafe sandbox                    try it all on a throwaway MariaDB"
)]
pub struct Cli {
    /// How much to log: error, warn, info, debug (or set JEMSAFE_LOG)
    #[arg(long, global = true, value_enum)]
    pub log_level: Option<Level>,

    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// Configuration file
    #[arg(short = 'c', long = "config", value_name = "FILE", default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,

    /// Profile to use instead of the file's `profile` (built-in: off, standby, leak, interval, peak)
    #[arg(short = 'p', long = "profile", value_name = "PROFILE")]
    pub profile: Option<String>,
}

#[derive(Debug, Args)]
pub struct ConfigOnly {
    /// Configuration file of the jemsafe to talk to
    #[arg(short = 'c', long = "config", value_name = "FILE", default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Validate the config, find mysqld, libjemalloc and the shim, and prove that profiling works
    #[command(
        after_help = "Example:\n  jemsafe check -c /etc/jemsafe/jemsafe.toml -p leak\n\n\
Exit status 0 only when every check passed; every problem found is listed."
    )]
    Check(ConfigArgs),

    /// Print LD_PRELOAD and MALLOC_CONF for a profile, for use with other launchers
    #[command(
        after_help = "Example:\n  jemsafe env -p standby >> /etc/sysconfig/mysql\n\n\
LD_PRELOAD names libjemalloc only: the shim works only under `jemsafe run`, so without \
jemsafe there is nothing for it to do. Values are single-quoted for sh and systemd's EnvironmentFile."
    )]
    Env(ConfigArgs),

    /// Start mysqld under the profiling allocator and supervise it in the foreground
    #[command(
        after_help = "Example:\n  jemsafe run -c /etc/jemsafe/jemsafe.toml -p standby -- --skip-grant-tables\n\n\
Signals to jemsafe:\n  USR1, USR2      run the actions in [signals] (default: dump, toggle prof.active);\n                  never forwarded (MariaDB uses SIGUSR1 internally)\n  TERM, QUIT, HUP forwarded to mysqld; INT is sent on as TERM (mysqld ignores INT)\n\n\
Exit status: mysqld's (128+N if it died of signal N); jemsafe's own failures use \
sysexits.h codes that mysqld never exits with: 64 usage, 69 something missing or busy, \
70 verify = \"require\" stopped mysqld, 74 I/O, 77 untrusted or not permitted, 78 config."
    )]
    Run {
        #[command(flatten)]
        config: ConfigArgs,
        /// Extra arguments for mysqld, after `--`
        #[arg(last = true, value_name = "MYSQLD ARGS")]
        mysqld_args: Vec<String>,
    },

    /// Create a throwaway MariaDB/MySQL datadir and run it under jemsafe
    #[command(
        after_help = "Example:\n  jemsafe sandbox                       # in a new /tmp/jemsafe-sandbox.XXXXXX\n  jemsafe sandbox /srv/try -p standby --port 3307\n  jemsafe sandbox -- --innodb-buffer-pool-size=256M\n\n\
It writes DIR/jemsafe.toml and runs exactly what `jemsafe run -c DIR/jemsafe.toml` runs; \
the directory is kept after exit (reused by the next run with the same DIR)."
    )]
    Sandbox {
        /// Directory for datadir, socket, dumps and config (default: a new temporary one)
        dir: Option<PathBuf>,
        /// Profile to run with
        #[arg(short = 'p', long = "profile", default_value = "leak")]
        profile: String,
        /// Also listen on 127.0.0.1:PORT (default: Unix socket only)
        #[arg(long)]
        port: Option<u16>,
        /// mysqld or mariadbd binary (default: searched like [mysqld] path)
        #[arg(long, value_name = "PATH")]
        mysqld: Option<PathBuf>,
        /// Allocator: the system's libjemalloc ("auto") or jemsafe's own profiling
        /// jemalloc ("bundled"), as [jemalloc] library
        #[arg(long, value_name = "KIND", default_value = "auto", value_parser = ["auto", "bundled"])]
        library: String,
        /// Extra arguments for mysqld, after `--` (they come last, so they win), e.g.
        /// `-- --innodb-buffer-pool-size=256M`
        #[arg(last = true, value_name = "MYSQLD ARGS")]
        mysqld_args: Vec<String>,
    },

    /// Take a heap dump now, through the running jemsafe; prints the new file's path
    #[command(
        after_help = "Example:\n  jemsafe dump -c /etc/jemsafe/jemsafe.toml\n\n\
Requests closer together than [dumps] min_interval_ms are coalesced into one dump; \
below [dumps] min_free_mb free space the dump is refused with the reason."
    )]
    Dump {
        #[command(flatten)]
        config: ConfigOnly,
    },

    /// Show the running supervisor: mysqld, profiling state, memory, dumps
    #[command(
        after_help = "Example:\n  jemsafe status\n  jemsafe status --json | jq .stats.allocated"
    )]
    Status {
        #[command(flatten)]
        config: ConfigOnly,
        /// Machine-readable output (stable field names)
        #[arg(long)]
        json: bool,
    },

    /// Where mysqld's memory is: RSS broken down into heap in use, fragmentation, freed
    /// pages not yet returned, jemalloc metadata, memory outside jemalloc, files, shmem
    #[command(
        after_help = "Examples:\n  jemsafe memory                 the running mysqld, now\n  jemsafe memory DUMP            when DUMP was taken (from its sidecar)\n  jemsafe memory --json | jq .outside_jemalloc\n\n\
Every line is in bytes and % of RSS; the lines add up to RSS, and what does not fit is shown \
as the residual. \"outside jemalloc\" is anonymous memory mysqld maps without malloc (InnoDB's \
buffer pool, thread stacks): a heap profile cannot show it. Advice appears only when a \
threshold is crossed, with the jemsafe profile setting to change."
    )]
    Memory {
        #[command(flatten)]
        config: ConfigOnly,
        /// A heap dump taken by jemsafe: the breakdown recorded in its sidecar when it was
        /// taken (default: the running mysqld, now)
        #[arg(value_name = "DUMP", conflicts_with = "live")]
        dump: Option<PathBuf>,
        /// The running mysqld, now (the default without DUMP)
        #[arg(long)]
        live: bool,
        /// Machine-readable output: integer fields in bytes (rss, heap_in_use, fragmentation,
        /// dirty_pages, metadata, outside_jemalloc, file_backed, shmem, swap, residual) and
        /// size_classes
        #[arg(long)]
        json: bool,
    },

    /// Switch sampling on or off, or reset the samples, in the running mysqld
    #[command(after_help = "Examples:\n  jemsafe prof on\n  jemsafe prof reset --lg-sample 17")]
    Prof {
        #[command(flatten)]
        config: ConfigOnly,
        /// on: prof.active = true; off: prof.active = false; reset: prof.reset
        #[arg(value_enum)]
        op: crate::control::ProfOp,
        /// With reset: the new lg_prof_sample (0..=63)
        #[arg(long, value_parser = crate::config::profile::LgSample::parse)]
        lg_sample: Option<crate::config::profile::LgSample>,
    },

    /// List the heap files in the dump directory, oldest first
    #[command(
        after_help = "Example:\n  jemsafe dumps -c /etc/jemsafe/jemsafe.toml\n\n\
Works whether or not jemsafe is running; lists only files named like this config's dumps."
    )]
    Dumps {
        #[command(flatten)]
        config: ConfigOnly,
    },

    /// Read a heap dump: what holds memory (or what grew since --base), as text, folded
    /// stacks, a flame graph, a call graph or a pprof profile
    #[command(
        after_help = "Examples:\n  jemsafe report                                  the newest dump in the dump directory\n  jemsafe report --base previous                  what grew since the dump before it (same pid)\n  jemsafe report DUMP --base OLDER --format svg -o growth.svg\n  jemsafe report DUMP --format pprof -o heap.pb.gz  for go tool pprof, Pyroscope, speedscope\n  jemsafe report --base previous --format callgraph -o growth.svg\n                                                  jeprof's call graph of the growth (needs graphviz)\n  jemsafe report DUMP --format dot --node-count 30 > heap.dot\n\n\
Works on any jemalloc heap_v2 dump (gzip too), also from processes jemsafe did not start. \
Numbers are jeprof's (same un-sampling, same allocator frames dropped); names come from the \
objects recorded in the dump, with DWARF and separate debug files (/usr/lib/debug/.build-id) when present.\n\n\
The call graph (dot, callgraph) is jeprof's: a box per function, its flat value (allocated in it) \
and, below, \"of\" its cumulative value (in it and everything it calls); an arrow's label is what \
flows through that call. A leak is the chain of thick arrows from main to the function that allocates. \
Small functions and arrows are left out (see Call graph options); with --base the values are the growth."
    )]
    Report(ReportArgs),

    /// Rank call stacks and functions by steady growth across a series of dumps: the likely leak first
    #[command(
        after_help = "Examples:\n  jemsafe leaks                       all dumps of the newest pid in the dump directory\n  jemsafe leaks A.heap B.heap C.heap  these dumps of one process\n\n\
For each stack: bytes gained from the first dump to the last, growth per hour, and in how many \
intervals it grew. Score = gained x (share of intervals that grew)^2, so steady growth outranks a single jump."
    )]
    Leaks(LeaksArgs),

    /// Pack dumps with their sidecars, mapped objects and debug files (by build-id) into one
    /// .tar.gz that `jemsafe report --archive` reads on any machine
    #[command(
        after_help = "Examples:\n  jemsafe archive -o heap.tar.gz                  the newest process's dumps in the dump directory\n  jemsafe archive A.heap B.heap -o heap.tar.gz\n  jemsafe report --archive heap.tar.gz            (on another machine) the newest dump in it\n\n\
Like `perf archive`: the report of an archive names functions as it would here, with none of \
the binaries or debug packages installed there."
    )]
    Archive(ArchiveArgs),

    /// mysqld's memory over time, from the timeline jemsafe records: RSS and its parts,
    /// dumps, restarts and OOM kills, the peak marked
    #[command(
        after_help = "Examples:\n  jemsafe timeline                              the whole timeline, one row per interval that fits the terminal\n  jemsafe timeline --since 6h --step 10m\n  jemsafe timeline --since 2026-12-05T03:00:00Z --pid 4242\n  jemsafe timeline --format svg -o oom.svg      a chart for an incident report\n  jemsafe timeline --format csv > memory.csv    one row per sample, bytes\n\n\
jemsafe records it in <[dumps] dir>/<prefix>.timeline every [timeline] interval_s seconds (default 10). \
A damaged or truncated file is read around the damage, with one warning."
    )]
    Timeline(TimelineArgs),

    /// One self-contained HTML page of a mysqld's memory: who and what, the timeline, the
    /// selected dump (breakdown, flame graph, top functions), what grew (leak suspects)
    #[command(
        after_help = "Examples:\n  jemsafe page -o incident.html                  the newest process's dumps and its timeline\n  jemsafe page --since 24h -o today.html\n  jemsafe page A.heap B.heap C.heap -o leak.html\n\n\
The file needs nothing else: CSS, script and pictures are inside, and it fetches nothing \
(a Content-Security-Policy forbids it). Attach it to the incident; it opens offline in any \
browser, and reads as a document with JavaScript off. What is missing (a sidecar, a damaged \
timeline, a dump of another process) is said on the page."
    )]
    Page(PageArgs),

    /// Print the SQL that loads jemsafe_udf.so's functions (SELECT jeprof_dump() ...) into the server
    #[command(
        after_help = "Examples:\n  jemsafe sql | mariadb              create them (needs INSERT on the mysql schema)\n  jemsafe sql --drop | mariadb       drop them again\n\n\
The library must first be in the server's plugin directory (SELECT @@plugin_dir; \
/usr/lib/mysql/plugin/ on Debian and Ubuntu), named exactly jemsafe_udf.so. The functions \
are kept in mysql.func and survive restarts.\n\n\
Functions (none takes arguments):\n  \
jeprof_dump()            INTEGER  heap dump by jemalloc at its prof_prefix; 0 done, 1 failed\n  \
jeprof_enable()          INTEGER  prof.active on; 0 done, 1 failed\n  \
jeprof_disable()         INTEGER  prof.active off; 0 done, 1 failed\n  \
jeprof_prof_status()     INTEGER  1 if jemalloc profiles (opt.prof), else 0\n  \
jeprof_active_status()   INTEGER  1 if sampling is on (prof.active), else 0\n  \
jemsafe_dump()           STRING   the new dump's full path (trigger sql), or NULL\n  \
jemsafe_status()         STRING   JSON: opt_prof, prof_active, lg_prof_sample, jemalloc_version, last_dump, supervisor_pid\n  \
jemsafe_memory()         STRING   JSON: the breakdown of `jemsafe memory --json`\n\n\
Under `jemsafe run`, dumps and prof on/off go through jemsafe (named, sidecar, storm control, \
status, log, metrics) and [sql] allow says which operations SQL may ask for (default: dump, \
status, memory; \"prof\" is opt-in); a refusal is the failure value (1 or NULL) with the reason \
in the server's error log. Preloaded by hand (`jemsafe env`), the jeprof_* functions call \
jemalloc directly and the jemsafe_* ones return NULL. Without a profiling jemalloc each \
call fails with the reason. Any account that can connect can call them."
    )]
    Sql {
        /// Print DROP FUNCTION IF EXISTS for each function instead
        #[arg(long)]
        drop: bool,
        /// Write the statements for the server this config runs (its version decides the syntax)
        #[arg(short = 'c', long = "config", value_name = "FILE")]
        config: Option<PathBuf>,
    },

    /// (internal) the probe process started by `check` and `run`
    #[command(name = "__probe", hide = true)]
    Probe,

    /// (internal) renders a dump for [http]'s /debug/pprof/heap, in a child of `run`
    #[command(name = "__pprof", hide = true)]
    Pprof { dump: PathBuf },

    /// (internal) renders the page for [http]'s /, in a child of `run`
    #[command(name = "__page", hide = true)]
    PageChild {
        #[arg(long)]
        prefix: String,
        #[arg(long)]
        timeline_max_mb: u64,
        dir: PathBuf,
    },
}

/// Output format of `jemsafe timeline`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TimelineFormat {
    /// One row per interval with RSS and its parts, the events between, the peak marked
    Text,
    /// A header row, then one row per sample: time (RFC 3339) and each part in bytes
    Csv,
    /// {"samples": [...], "events": [...], "peak": {...}}
    Json,
    /// A stacked area chart of the parts, the limit, dumps and OOM kills
    Svg,
}

#[derive(Debug, Args)]
pub struct TimelineArgs {
    /// Configuration file, for the dump directory that holds the timeline
    #[arg(short = 'c', long = "config", value_name = "FILE", default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
    /// Read this timeline file instead of the config's
    #[arg(long, value_name = "TIMELINE")]
    pub file: Option<PathBuf>,
    /// Only the last DURATION (90m, 6h, 3d) or from TIME on (RFC 3339, UTC)
    #[arg(long, value_name = "DURATION|TIME")]
    pub since: Option<String>,
    /// Only this mysqld process
    #[arg(long)]
    pub pid: Option<u32>,
    #[arg(long, value_enum, default_value = "text")]
    pub format: TimelineFormat,
    /// One text row per DURATION (default: as many as fit the terminal)
    #[arg(long, value_name = "DURATION")]
    pub step: Option<String>,
    /// Write the output to this file instead of standard output
    #[arg(short = 'o', long = "output", value_name = "OUT")]
    pub output: Option<PathBuf>,
}

/// Output format of `jemsafe report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    /// jeprof --text's columns: flat, flat%, sum%, cum, cum%, name
    Text,
    /// Folded stacks (`root;...;leaf bytes`) for any flame-graph tool
    Collapsed,
    /// An interactive flame graph (SVG)
    Svg,
    /// A gzipped pprof profile.proto
    Pprof,
    /// jeprof --dot's call graph in Graphviz's DOT language: functions with their flat and
    /// cumulative values, arrows caller -> callee weighted by what flows through them
    Dot,
    /// The same call graph drawn as SVG by Graphviz's `dot` (Debian package graphviz)
    Callgraph,
}

/// The heading of the call graph's flags in `report --help`.
const CALL_GRAPH: &str = "Call graph (--format dot, callgraph)";

/// A fraction of the total, 0 to 1 (`--node-fraction`, `--edge-fraction`).
fn fraction(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        _ => Err(format!(
            "{text:?} is not a fraction of the total: give a number from 0 to 1 (0.005 is 0.5%)"
        )),
    }
}

/// How addresses are named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NamesMode {
    /// Only names that hold the address (DWARF, or a symbol whose extent holds it);
    /// other addresses are shown as OBJECT+0xADDRESS
    Exact,
    /// jeprof's naming: the closest symbol below the address, even outside its extent
    /// (for comparisons with jeprof; such names may be another function's)
    Jeprof,
}

/// What the rows of a text report are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportBy {
    /// Functions (jeprof's rows)
    Function,
    /// Whole call stacks
    Stack,
    /// Mapped objects (the program and each library)
    Object,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Configuration file, for its dump directory when no DUMP is given
    #[arg(short = 'c', long = "config", value_name = "FILE", default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
    /// Heap dump (heap_v2, may be gzipped); default: the newest in the dump directory
    #[arg(value_name = "DUMP")]
    pub dump: Option<PathBuf>,
    /// Subtract this dump (show DUMP - BASE); `previous`: the dump before DUMP of the same pid
    #[arg(long, value_name = "DUMP")]
    pub base: Option<PathBuf>,
    /// Read dumps and binaries from this `jemsafe archive` file; DUMP and --base name
    /// dumps in it (default: its newest)
    #[arg(long, value_name = "FILE.tar.gz")]
    pub archive: Option<PathBuf>,
    /// Output format
    #[arg(long, value_enum, default_value = "text")]
    pub format: ReportFormat,
    /// Rows per table in text output; 0 = all
    #[arg(long, value_name = "N", default_value_t = 30)]
    pub top: usize,
    /// Rows of the text output
    #[arg(long, value_enum, default_value = "function")]
    pub by: ReportBy,
    /// Memory in use when the dump was taken (the default)
    #[arg(long, conflicts_with = "alloc")]
    pub inuse: bool,
    /// Everything allocated so far, freed or not (needs MALLOC_CONF prof_accum:true)
    #[arg(long)]
    pub alloc: bool,
    /// Count objects instead of bytes
    #[arg(long)]
    pub objects: bool,
    /// Exact numbers of bytes instead of human units (like jeprof --show_bytes)
    #[arg(long)]
    pub bytes: bool,
    /// At most this many functions, those of largest cumulative value
    /// [jeprof --nodecount; default 80]
    #[arg(long, value_name = "N", alias = "nodecount", help_heading = CALL_GRAPH,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub node_count: Option<u64>,
    /// Leave out functions whose cumulative value is at most this fraction of the total [jeprof --nodefraction; default 0.005]
    #[arg(long, value_name = "FRACTION", alias = "nodefraction", help_heading = CALL_GRAPH,
          value_parser = fraction)]
    pub node_fraction: Option<f64>,
    /// Leave out arrows carrying at most this fraction of the total, unless an arrow is
    /// the only way into its function [jeprof --edgefraction; default 0.001]
    #[arg(long, value_name = "FRACTION", alias = "edgefraction", help_heading = CALL_GRAPH,
          value_parser = fraction)]
    pub edge_fraction: Option<f64>,
    /// At most this many arrows into and out of each function, the largest
    /// [jeprof --maxdegree; default 8]
    #[arg(long, value_name = "N", alias = "maxdegree", help_heading = CALL_GRAPH,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_degree: Option<u64>,
    /// Fragmentation by call stack: the stacks living in the size classes whose slabs
    /// waste most, with the waste attributed to each (an estimate; needs a dump jemsafe
    /// took, whose sidecar holds the memory snapshot)
    #[arg(long, conflicts_with_all = ["base", "alloc", "objects", "by"])]
    pub fragmentation: bool,
    /// Write the output to this file instead of standard output
    #[arg(short = 'o', long = "output", value_name = "OUT")]
    pub output: Option<PathBuf>,
    /// How addresses are named: exact (no guesses) or jeprof (closest symbol below)
    #[arg(long, value_enum, default_value = "exact")]
    pub names: NamesMode,
    #[command(flatten)]
    pub read: ReadArgs,
}

/// How dumps are read and named, for `report`, `leaks` and `page`.
#[derive(Debug, Clone, Args)]
pub struct ReadArgs {
    /// Ask this debuginfod server for debug files by build-id (repeatable; default:
    /// DEBUGINFOD_URLS, else the config's [report] debuginfod)
    #[arg(long = "debuginfod", value_name = "URL")]
    pub debuginfod: Vec<String>,
    /// Download nothing: use local debug files and the debuginfod cache only
    #[arg(long)]
    pub offline: bool,
    /// Refuse a dump whose text (after gzip decompression) is larger than this many MiB
    #[arg(long, value_name = "MiB", default_value_t = jemsafe_report::DEFAULT_MAX_DUMP_MB,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_dump_mb: u64,
}

#[derive(Debug, Args)]
pub struct ArchiveArgs {
    /// Configuration file, for its dump directory when no DUMP is given
    #[arg(short = 'c', long = "config", value_name = "FILE", default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
    /// Dumps to pack; default: all dumps of the newest process in the dump directory
    #[arg(value_name = "DUMP")]
    pub dumps: Vec<PathBuf>,
    /// The archive to write (.tar.gz); an existing file or link is replaced, never written
    /// through
    #[arg(
        short = 'o',
        long = "output",
        value_name = "FILE.tar.gz",
        required = true
    )]
    pub output: PathBuf,
    /// Refuse a dump whose text (after gzip decompression) is larger than this many MiB
    #[arg(long, value_name = "MiB", default_value_t = jemsafe_report::DEFAULT_MAX_DUMP_MB,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_dump_mb: u64,
}

#[derive(Debug, Args)]
pub struct LeaksArgs {
    /// Configuration file, for its dump directory when no DUMP is given
    #[arg(short = 'c', long = "config", value_name = "FILE", default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
    /// Dumps of one process, in any order; default: all dumps of the newest pid in the dump directory
    #[arg(value_name = "DUMP")]
    pub dumps: Vec<PathBuf>,
    /// Rows per table; 0 = all
    #[arg(long, value_name = "N", default_value_t = 15)]
    pub top: usize,
    /// How addresses are named: exact (no guesses) or jeprof (closest symbol below)
    #[arg(long, value_enum, default_value = "exact")]
    pub names: NamesMode,
    #[command(flatten)]
    pub read: ReadArgs,
}

#[derive(Debug, Args)]
pub struct PageArgs {
    /// Configuration file, for its dump directory and timeline
    #[arg(short = 'c', long = "config", value_name = "FILE", default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
    /// Dumps of one process; default: all dumps of the newest process in the dump directory
    #[arg(value_name = "DUMP", conflicts_with = "pid")]
    pub dumps: Vec<PathBuf>,
    /// The dumps of this pid in the dump directory
    #[arg(long)]
    pub pid: Option<u32>,
    /// Only dumps and samples of the last DURATION (90m, 6h, 3d) or from TIME on (RFC 3339)
    #[arg(long, value_name = "DURATION|TIME")]
    pub since: Option<String>,
    /// Read this timeline file instead of the config's
    #[arg(long, value_name = "TIMELINE")]
    pub timeline: Option<PathBuf>,
    /// The HTML file to write (`-`: standard output)
    #[arg(
        short = 'o',
        long = "output",
        value_name = "FILE.html",
        required = true
    )]
    pub output: PathBuf,
    /// Stack entries embedded at most over all dumps; older dumps beyond it are summarised
    #[arg(long, value_name = "N", default_value_t = 150_000)]
    pub max_entries: usize,
    #[command(flatten)]
    pub read: ReadArgs,
}
