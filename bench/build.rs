//! Builds the C floor of the restart benchmark (floor.c) with musl-gcc when there is one,
//! else gcc against glibc, static and -O2 either way; the bench prints which.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=floor.c");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("floor");
    let (compiler, libc) = match Command::new("musl-gcc").arg("--version").output() {
        Ok(o) if o.status.success() => ("musl-gcc", "musl"),
        _ => ("gcc", "glibc"),
    };
    let status = Command::new(compiler)
        .args(["-O2", "-static", "-Wall", "-Werror", "-o"])
        .arg(&out)
        .arg("floor.c")
        .status()
        .unwrap_or_else(|e| panic!("{compiler}: {e}"));
    assert!(status.success(), "{compiler} could not build floor.c");
    println!("cargo:rustc-env=FLOOR_PATH={}", out.display());
    println!("cargo:rustc-env=FLOOR_BUILD={compiler} -O2 -static ({libc})");
}
