//! As root, jemsafe refuses to preload anything that someone other than root could have
//! changed (CVE-2016-6662). CI runs as root; elsewhere these tests have nothing to prove.

use crate::common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// `jemsafe run` must refuse before starting anything, naming `needle`s.
fn refused(config: &Path, needles: &[&str]) {
    let mut js = Running::start(&["run", "-c", config.to_str().unwrap()]);
    let code = js.wait_exit(Duration::from_secs(30));
    let log = js.err.seen.join("\n");
    assert_eq!(code, 77, "{log}");
    assert!(!log.contains("started mysqld"), "{log}");
    for n in needles {
        assert!(log.contains(n), "{n:?} not in: {log}");
    }
    let out = Command::new(jemsafe_bin())
        .args(["check", "-c", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("CVE-2016-6662"));
}

#[test]
fn a_config_in_a_group_writable_directory_is_refused() {
    if !root() {
        return;
    }
    let dir = TempDir::new("trust-dir");
    let config = workload_config(&dir, "standby", &[], "");
    chmod(dir.path(), 0o775);
    let d = dir.path().display().to_string();
    refused(
        &config,
        &[
            &format!("{d} is writable by its group (owner root, mode 0775)"),
            &format!("chmod go-w {d}"),
        ],
    );
}

#[test]
fn a_config_owned_by_another_user_is_refused() {
    if !root() {
        return;
    }
    let dir = TempDir::new("trust-owner");
    let config = workload_config(&dir, "standby", &[], "");
    nix::unistd::chown(&config, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
    refused(
        &config,
        &[
            "is owned by nobody (uid 65534) (mode 0644)",
            "chown root:root",
        ],
    );
}

#[test]
fn a_shim_reached_through_a_world_writable_directory_is_refused() {
    if !root() {
        return;
    }
    let dir = TempDir::new("trust-shim");
    let libs = dir.join("libs");
    std::fs::create_dir(&libs).unwrap();
    let shim_copy = libs.join("libjemsafe_shim.so");
    std::fs::copy(shim(), &shim_copy).unwrap();
    chmod(&libs, 0o777);
    let config = workload_config(&dir, "standby", &[], "");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        &format!("shim = {:?}", shim().display().to_string()),
        &format!("shim = {:?}", shim_copy.display().to_string()),
    );
    std::fs::write(&config, text).unwrap();
    refused(
        &config,
        &[
            "refusing to use shim",
            "is writable by everyone (owner root, mode 0777)",
        ],
    );
}

#[test]
fn a_symlink_into_an_untrusted_directory_is_followed_and_refused() {
    if !root() {
        return;
    }
    let dir = TempDir::new("trust-link");
    let evil = dir.join("evil");
    std::fs::create_dir(&evil).unwrap();
    std::fs::copy(libjemalloc(), evil.join("libjemalloc.so.2")).unwrap();
    nix::unistd::chown(&evil, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
    let link = dir.join("libjemalloc.so.2");
    std::os::unix::fs::symlink(evil.join("libjemalloc.so.2"), &link).unwrap();
    let config = workload_config(&dir, "standby", &[], "");
    add_to_section(
        &config,
        "[jemalloc]",
        &format!("library = {:?}", link.display().to_string()),
    );
    refused(
        &config,
        &[
            "refusing to use libjemalloc",
            &format!("{} is owned by nobody", evil.display()),
        ],
    );
}
