//! Writes jemsafe's man page and shell completions, generated from the clap definitions
//! in src/cli.rs (so they cannot drift from `--help`).
//!
//!   cargo run --example gen-docs -- OUTDIR
//!
//! OUTDIR/man/jemsafe.1 (plus one page per subcommand), OUTDIR/completions/{jemsafe.bash,_jemsafe,jemsafe.fish}

use clap::CommandFactory;
use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "target/docs".into()),
    );
    let man = out.join("man");
    let completions = out.join("completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&completions)?;

    let cmd = jemsafe::cli::Cli::command();
    clap_mangen::generate_to(cmd.clone(), &man)?;
    for shell in [
        clap_complete::Shell::Bash,
        clap_complete::Shell::Zsh,
        clap_complete::Shell::Fish,
    ] {
        clap_complete::generate_to(shell, &mut cmd.clone(), "jemsafe", &completions)?;
    }
    println!("{}", out.display());
    Ok(())
}
