use clap::Parser;
use jemsafe::cli::{Cli, Cmd};
use jemsafe::{commands, log};

fn main() {
    let cli = Cli::parse();
    log::set_level(
        cli.log_level
            .or_else(log::Level::from_env)
            .unwrap_or(log::Level::Info),
    );
    let result = match cli.command {
        Cmd::Check(args) => commands::check(&args),
        Cmd::Env(args) => commands::env(&args),
        Cmd::Run {
            config,
            mysqld_args,
        } => commands::run(&config, &mysqld_args),
        Cmd::Sandbox {
            dir,
            profile,
            port,
            mysqld,
        } => commands::sandbox(jemsafe::sandbox::Options {
            dir,
            profile,
            port,
            mysqld,
        }),
        Cmd::Dump { config } => commands::dump(&config.config),
        Cmd::Status { config, json } => commands::status(&config.config, json),
        Cmd::Prof {
            config,
            op,
            lg_sample,
        } => commands::prof(&config.config, op, lg_sample),
        Cmd::Dumps { config } => commands::dumps(&config.config),
        Cmd::Report(args) => commands::report(&args),
        Cmd::Leaks(args) => commands::leaks(&args),
        Cmd::Probe => Ok(jemsafe::probe::child_main()),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            jemsafe::error!("{e}");
            std::process::exit(e.exit_code());
        }
    }
}
