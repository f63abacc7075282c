//! The container engine the image tests need: podman with runc, and the images `just image`
//! built. Shared by the container suite and the pod and compose suite.

use std::process::Command;

/// The architecture under test, as podman names it: amd64 unless BUNDLE_INIT_ARCH says
/// otherwise (`just test-containers-arm64` runs the suite on the arm64 images under qemu).
pub fn arch() -> &'static str {
    static ARCH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ARCH.get_or_init(|| std::env::var("BUNDLE_INIT_ARCH").unwrap_or_else(|_| "amd64".into()))
}

/// The demo image of that architecture (`just image` tags each one).
pub fn demo() -> &'static str {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| format!("localhost/bundle-init-demo:{}", arch()))
}

/// The one-file distribution image of that architecture.
pub fn dist() -> &'static str {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| format!("localhost/bundle-init:{}", arch()))
}

/// The flags every `podman run` needs on this kind of machine; see the file for why.
pub fn run_flags() -> Vec<&'static str> {
    include_str!("../containers/podman-run-flags")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .chain(["--arch", arch()])
        .collect()
}

/// True when the tests can run; false (after saying so loudly) when they must skip.
pub fn engine_ready() -> bool {
    let works = Command::new("podman")
        .args(["image", "exists", demo()])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
        && Command::new("podman")
            .args(["image", "exists", dist()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
    if works {
        return true;
    }
    let why = "podman or the images are missing: install podman and runc, then run `just image`";
    if std::env::var_os("BUNDLE_INIT_REQUIRE_ENGINE").is_some() {
        panic!("{why} (BUNDLE_INIT_REQUIRE_ENGINE is set, so this fails instead of skipping)");
    }
    eprintln!("\n*** SKIPPED: container test: {why} ***\n");
    false
}

pub fn podman(args: &[&str]) -> std::process::Output {
    Command::new("podman")
        .args(args)
        .output()
        .expect("podman runs")
}
