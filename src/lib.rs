//! jemsafe: a mysqld_safe-style launcher that runs mysqld under jemalloc heap profiling.
//!
//! The data path, in module order: [`config`] (TOML, profiles, MALLOC_CONF) ->
//! [`locate`] (mysqld, libjemalloc, shim) -> [`check`] and [`probe`] (prove it can work)
//! -> [`supervisor`] (spawn, signals, restart) -> [`verify`] (maps + handshake) ->
//! [`shim_link`] (requests to the shim) -> [`dumps`] (file names and directory).

pub mod capabilities;
pub mod check;
pub mod cli;
pub mod commands;
pub mod config;
pub mod control;
pub mod dumps;
pub mod error;
pub mod http;
pub mod launch;
pub mod locate;

pub mod log;
pub mod memlimit;
pub mod metrics;
pub mod oom;
pub mod page;
pub mod probe;
pub mod procfs;
pub mod report;
pub mod sandbox;
pub mod shim_link;
pub mod socket_activation;
pub mod sql;
pub mod supervisor;
pub mod timeline;
pub mod triggers;
pub mod trust;
pub mod verify;
pub mod watch;
