//! Link settings of this package's own programs (the examples, and the
//! tests that run them).
//!
//! On x86-64 Linux with glibc 2.36 or later, where they are built and run,
//! they are linked with packed relative relocations
//! (`-z pack-relative-relocs`, DT_RELR): the table the dynamic loader
//! applies at every start shrinks from about 150 kB to a few kB, and with
//! it the servers' resident memory (`scripts/bench-fastcgi-memory.sh`).
//! A program linked so needs glibc 2.36 or later to start, so nothing is
//! added when cross-compiling, nor when the glibc here is older.
//! `GATEWAY_PACK_RELOCS=0` leaves the flag out.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=GATEWAY_PACK_RELOCS");
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let wanted = var("GATEWAY_PACK_RELOCS") != "0";
    let native = var("TARGET") == var("HOST");
    let glibc_x86_64 = var("CARGO_CFG_TARGET_OS") == "linux"
        && var("CARGO_CFG_TARGET_ENV") == "gnu"
        && var("CARGO_CFG_TARGET_ARCH") == "x86_64";
    if wanted && native && glibc_x86_64 && glibc_at_least(2, 36) {
        println!("cargo:rustc-link-arg=-Wl,-z,pack-relative-relocs");
    }
}

/// Whether the glibc of this machine is `major.minor` or later, from
/// `getconf GNU_LIBC_VERSION` ("glibc 2.36"); false when that cannot tell.
fn glibc_at_least(major: u32, minor: u32) -> bool {
    let Ok(out) = Command::new("getconf").arg("GNU_LIBC_VERSION").output() else {
        return false;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let Some(version) = text.trim().strip_prefix("glibc ") else {
        return false;
    };
    let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(a), Some(b)) => (a, b) >= (major, minor),
        _ => false,
    }
}
