//! jemsafe: a mysqld_safe-style launcher that runs mysqld under jemalloc heap profiling.
//!
//! The data path, in module order: [`config`] (TOML, profiles, MALLOC_CONF, typed
//! settings) -> [`locate`] (mysqld, libjemalloc, shim) -> [`check`] and [`probe`] (prove it
//! can work) -> [`launch`] -> [`supervisor`] (the loop: signals, restarts, carrying
//! decisions out) -> [`verify`] (maps + handshake) -> [`shim_link`] (requests to the shim)
//! -> [`watch`] (memory readings in, actions out) -> [`dumpdir`] (the dump directory's one
//! owner) -> [`timeline`] -> [`read`] (report, leaks, page) and [`http`].

pub mod capabilities;
pub mod check;
pub mod cli;
pub mod commands;
pub mod config;
pub mod control;
pub mod dumpdir;
pub mod error;
pub mod http;
pub mod launch;
pub mod locate;

pub mod log;
pub mod metrics;
pub mod probe;
pub mod procfs;
pub mod read;
pub mod sandbox;
pub mod shim_link;
pub mod socket_activation;
pub mod sql;
pub mod supervisor;
pub mod timeline;
pub mod trust;
pub mod verify;
pub mod watch;
