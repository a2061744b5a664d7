//! jemsafe's integration tests, one binary (as ripgrep's tests/tests.rs): a module per
//! theme, `common` compiled once. They run the real binary, the real shim and libjemalloc,
//! real MariaDB servers, debuginfod, Prometheus, chromium, as root.

mod common;

mod bundled;
mod capabilities;
mod chart;
mod cli;
mod debuginfod;
mod e2e_mariadb;
mod faults;
mod fleet;
mod fragmentation;
mod hardening_archive;
mod hardening_http;
mod hardening_launch;
mod hardening_page;
mod hardening_supervisor;
mod hardening_times;
mod memory;
mod moment;
mod notify;
mod nspawn;
mod oom_incidents;
mod page;
mod report_callgraph;
mod report_hostile;
mod report_jeprof;
mod report_mariadb;
mod run_workload;
mod series;
mod shim_binding;
mod sidecar;
mod socket_activation;
mod sql_udf;
mod structure;
mod supervision;
mod systemd_units;
mod trust;
