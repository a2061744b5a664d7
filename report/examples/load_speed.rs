//! How fast dumps are read and parsed (no symbolization): `bench/series.sh` runs it.
//!
//!     cargo run --release -p jemsafe-report --example load_speed -- DUMP...
//!
//! Prints, per dump, its size and the best of 5 loads in MB/s.

use std::time::Instant;

fn main() {
    let paths: Vec<String> = std::env::args().skip(1).collect();
    if paths.is_empty() {
        eprintln!("usage: load_speed DUMP...");
        std::process::exit(2);
    }
    let limits = jemsafe_report::DumpLimits::default();
    for p in paths {
        let path = std::path::Path::new(&p);
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let mut best = f64::MAX;
        for _ in 0..5 {
            let t0 = Instant::now();
            match jemsafe_report::load(path, &limits) {
                Ok(d) => drop(d),
                Err(e) => {
                    eprintln!("{e}");
                    std::process::exit(1);
                }
            }
            best = best.min(t0.elapsed().as_secs_f64());
        }
        println!(
            "{p}: {:.1} MB loaded in {:.1} ms: {:.0} MB/s",
            size as f64 / 1e6,
            best * 1e3,
            size as f64 / 1e6 / best
        );
    }
}
