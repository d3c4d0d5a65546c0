//! Locating the binaries under test and the reference tools.
//!
//! Our binaries belong to other workspace packages, so Cargo does not set `CARGO_BIN_EXE_*`
//! for this crate. Like assert_cmd's `cargo_bin`, we find them next to the test executable:
//! `target/<profile>/deps/tests-<hash>` → `target/<profile>/<name>`. They must have been built
//! first (`cargo build --workspace --bins`, which `scripts/test.sh` does).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The installed reference `wg` (Debian wireguard-tools 1.0.20210914).
pub const REFERENCE_WG: &str = "/usr/bin/wg";

/// The installed reference userspace implementation (Debian wireguard-go 0.0.20220316).
pub const WIREGUARD_GO: &str = "/usr/bin/wireguard-go";

/// `target/<profile>/`: the directory Cargo puts workspace binaries in for this build.
pub fn target_dir() -> PathBuf {
    // The test binary always has a path; failing here means /proc is missing.
    let exe = std::env::current_exe().expect("current_exe() (is /proc mounted?)");
    let mut dir = exe
        .parent()
        .expect("test executable has a parent directory")
        .to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

/// Path of workspace binary `name` if it has been built, else `None`. For binaries that may
/// legitimately not exist yet (e.g. `wg-tunnel`).
pub fn try_cargo_bin(name: &str) -> Option<PathBuf> {
    let path = target_dir().join(name);
    path.is_file().then_some(path)
}

/// Path of workspace binary `name`. Panics, saying how to build it, when it is missing; warns
/// (once, on stderr) when it is older than some source file under `crates/`, since
/// `cargo test -p wg-tests` alone does not rebuild other packages' binaries.
pub fn cargo_bin(name: &str) -> PathBuf {
    let path = try_cargo_bin(name).unwrap_or_else(|| {
        panic!(
            "binary `{name}` not found in {}: run `cargo build --workspace --bins` first \
             (scripts/test.sh does this)",
            target_dir().display()
        )
    });
    warn_if_stale(name, &path);
    path
}

fn warn_if_stale(name: &str, bin: &Path) {
    static WARNED: std::sync::Once = std::sync::Once::new();
    let Ok(built) = bin.metadata().and_then(|m| m.modified()) else {
        return;
    };
    let newest = newest_mtime(&repo_root().join("crates"));
    if newest.is_some_and(|n| n > built) {
        WARNED.call_once(|| {
            // Straight to stderr (not captured by the test harness); advisory only.
            let _ = writeln!(
                std::io::stderr(),
                "WARNING: {} is older than sources under crates/: results may be stale; \
                 run `cargo build --workspace --bins` (scripts/test.sh does)",
                target_dir().join(name).display()
            );
        });
    }
}

/// Newest modification time of any file below `dir` (skipping `target` directories).
fn newest_mtime(dir: &Path) -> Option<SystemTime> {
    let mut newest = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let Ok(meta) = entry.metadata() else { continue };
        let t = if meta.is_dir() {
            if path.ends_with("target") {
                continue;
            }
            newest_mtime(&path)
        } else {
            meta.modified().ok()
        };
        newest = newest.max(t);
    }
    newest
}

/// Our `wg` (crates/wg).
pub fn our_wg() -> PathBuf {
    cargo_bin("wg")
}

/// Our userspace daemon (crates/wg-tunnel), same command line as `wireguard-go`.
pub fn our_wg_tunnel() -> PathBuf {
    cargo_bin("wg-tunnel")
}

fn installed(path: &str, package: &str) -> PathBuf {
    let p = Path::new(path);
    assert!(
        p.is_file(),
        "{path} not found: install the `{package}` package (scripts/test.sh does this: \
         apt-get install {package})"
    );
    p.to_path_buf()
}

/// The reference `wg`, `/usr/bin/wg`. Panics if wireguard-tools is not installed.
pub fn reference_wg() -> PathBuf {
    installed(REFERENCE_WG, "wireguard-tools")
}

/// The reference userspace daemon, `/usr/bin/wireguard-go`.
pub fn wireguard_go() -> PathBuf {
    installed(WIREGUARD_GO, "wireguard-go")
}

/// Where `scripts/test.sh` installs boringtun: `cargo install boringtun-cli --root
/// target/tools` puts it in `target/tools/bin/`.
pub fn boringtun() -> PathBuf {
    let path = target_dir()
        .parent()
        .expect("target/<profile> has a parent")
        .join("tools/bin/boringtun-cli");
    assert!(
        path.is_file(),
        "{} not found: install it with `cargo install boringtun-cli --locked --root {}` \
         (scripts/test.sh does this)",
        path.display(),
        path.parent()
            .and_then(Path::parent)
            .unwrap_or(&path)
            .display()
    );
    path
}

/// The tunnel tests' traffic tool (`tests/bin/xfer.rs`, built by `cargo build --workspace
/// --bins`).
pub fn xfer() -> PathBuf {
    cargo_bin("wg-tests-xfer")
}

/// The failure-injection wrapper (`tests/bin/deny_ioctl.rs`: `REQUEST ERRNO -- PROGRAM
/// ARGS…` under a seccomp filter refusing that ioctl), built with the other test tools.
pub fn deny_ioctl() -> PathBuf {
    cargo_bin("wg-tests-deny-ioctl")
}

/// The workspace root (the directory holding the root `Cargo.toml`, `scripts/`, `.ci/`).
pub fn repo_root() -> PathBuf {
    // This crate lives in `<root>/tests`.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent directory")
        .to_path_buf()
}
