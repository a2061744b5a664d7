//! How the supervisor reports a panic (see the containment rule in [`super`]'s module
//! doc), and the debug builds' fault points that tests use to cause one.

use super::Supervisor;
use crate::{error, warn};
use std::time::Instant;

/// Panics are logged as jemsafe's other errors are (one line, error priority, with where
/// in the code), on every thread of `run` (the HTTP server's too), not as Rust's default
/// unprioritised lines.
pub(super) fn log_panics() {
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|m| (*m).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".to_owned());
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let thread = std::thread::current();
        error!(
            "internal error (a bug in jemsafe) in thread {}{place}: {}",
            thread.name().unwrap_or("unnamed"),
            message.replace('\n', " ")
        );
    }));
}

/// A test's way to make a helper panic (`JEMSAFE_FAULT=<point>`, see
/// tests/supervision.rs): compiled into debug builds only, so that no release binary can
/// be made to panic through its environment.
#[cfg(debug_assertions)]
#[track_caller]
pub(super) fn fault_point(point: &str) {
    if std::env::var("JEMSAFE_FAULT").is_ok_and(|v| v == point) {
        panic!("fault injected at {point} (JEMSAFE_FAULT)");
    }
}

#[cfg(not(debug_assertions))]
pub(super) fn fault_point(_point: &str) {}

impl Supervisor<'_> {
    /// Runs `handler` for one event (`what`, for the log); a panic in it is contained
    /// (see [`super`]'s module doc): logged, counted, the event abandoned, None returned.
    pub(super) fn contained<T>(
        &mut self,
        what: &str,
        handler: impl FnOnce(&mut Self) -> T,
    ) -> Option<T> {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler(self))) {
            Ok(value) => Some(value),
            Err(_) => {
                // The panic hook logged the message and where; this says what it cost.
                self.metrics.panic_contained();
                error!(
                    "jemsafe abandoned {what} after that internal error and carries on; \
                     mysqld keeps running (please report the error above)"
                );
                None
            }
        }
    }

    /// Only a contained panic between mysqld's exit and the decision about it leaves no
    /// mysqld and no restart scheduled: the decision is made again, as for a crash
    /// (Some(status): jemsafe exits, as it would have).
    pub(super) fn unsupervised(&mut self) -> Option<i32> {
        if self.child.is_some() || self.restart_at.is_some() {
            return None;
        }
        let status = self.last_exit_status.unwrap_or(crate::error::EX_SOFTWARE);
        if self.stopping || self.plan.restart.mode == crate::config::RestartMode::Never {
            error!("mysqld's exit was not fully handled (internal error above): jemsafe exits with status {status}");
            return Some(status);
        }
        warn!(
            "mysqld's exit was not fully handled (internal error above): restarting it in {} ms",
            self.plan.restart.delay.as_millis()
        );
        self.restart_at = Some(Instant::now() + self.plan.restart.delay);
        None
    }
}
