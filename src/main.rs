use clap::Parser;
use jemsafe::cli::{Cli, Cmd};
use jemsafe::{commands, log};

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version are not errors; a wrong command line is EX_USAGE, never
        // clap's 2, which mysqld itself may exit with.
        Err(e) => {
            let _ = e.print();
            std::process::exit(if e.use_stderr() {
                jemsafe::error::EX_USAGE
            } else {
                0
            });
        }
    };
    log::set_level(
        cli.log_level
            .or_else(log::Level::from_env)
            .unwrap_or(log::Level::Info),
    );
    // The HTTP server's renderer children (`__pprof`, `__page`).
    let renderer = matches!(cli.command, Cmd::Pprof { .. } | Cmd::PageChild { .. });
    let result = match cli.command {
        Cmd::Check(args) => commands::check(&args),
        Cmd::Env(args) => commands::env(&args),
        Cmd::Run {
            config,
            mysqld_args,
        } => {
            // A panic the supervisor did not contain (outside its event handlers) ends in
            // SIGABRT, which the units' Restart=on-abnormal restarts; exit status 101,
            // Rust's default, it would not.
            std::panic::catch_unwind(|| commands::run(&config, &mysqld_args)).unwrap_or_else(|_| {
                jemsafe::error!(
                    "jemsafe stops: that internal error was outside any contained handler; aborting"
                );
                std::process::abort()
            })
        }
        Cmd::Sandbox {
            dir,
            profile,
            port,
            mysqld,
            library,
            mysqld_args,
        } => commands::sandbox(
            jemsafe::sandbox::Options {
                dir,
                profile,
                port,
                mysqld,
                bundled: library == "bundled",
            },
            &mysqld_args,
        ),
        Cmd::Dump { config } => commands::dump(&config.config),
        Cmd::Status { config, json } => commands::status(&config.config, json),
        Cmd::Prof {
            config,
            op,
            lg_sample,
        } => commands::prof(&config.config, op, lg_sample),
        Cmd::Dumps { config } => commands::dumps(&config.config),
        Cmd::Memory {
            config,
            json,
            dump,
            live: _,
        } => commands::memory(&config.config, dump.as_deref(), json),
        Cmd::Report(args) => commands::report(&args),
        Cmd::Leaks(args) => commands::leaks(&args),
        Cmd::Archive(args) => commands::archive(&args),
        Cmd::Timeline(args) => commands::timeline(&args),
        Cmd::Page(args) => jemsafe::read::page_command::command(&args),
        Cmd::Sql { drop, config } => commands::sql(drop, config.as_deref()),
        Cmd::Probe => Ok(jemsafe::probe::child_main()),
        Cmd::Pprof { dump } => jemsafe::http::render_child_main(&dump),
        Cmd::PageChild {
            prefix,
            timeline_max_mb,
            dir,
        } => jemsafe::read::page_command::live_child_main(&dir, &prefix, timeline_max_mb),
    };
    if renderer {
        // Its answer is read; now the error, if any, then wait to be let go.
        if let Err(e) = &result {
            jemsafe::error!("{e}");
        }
        jemsafe::http::release_when_read();
        std::process::exit(match &result {
            Ok(code) => *code,
            Err(e) => e.exit_code(),
        });
    }
    match result {
        Ok(code) => std::process::exit(code),
        // A reader that stopped reading (`jemsafe dumps | head -1`) is not a failure.
        Err(e) if e.is_broken_pipe() => std::process::exit(0),
        Err(e) => {
            jemsafe::error!("{e}");
            std::process::exit(e.exit_code());
        }
    }
}
