//! Shared harness for the integration tests (`tests/tests.rs`).
//!
//! It owns everything a test needs that is not the code under test:
//!
//! * [`bins`]: where our freshly built binaries and the reference tools are;
//! * [`invocation`]: running a program with exact argv\[0\], args, stdin and environment,
//!   and the differential runner that asserts the reference `wg` and ours agree byte for byte;
//! * [`sandbox`]: private network + mount namespaces (root only), veth pairs between them, and
//!   userspace WireGuard daemons (`wireguard-go`, later our `wg-tunnel`) running inside them;
//! * [`rng`]: deterministic, seeded case generation, and the random addresses, CIDRs and
//!   endpoints the generated device states share.
//! * [`background`]: programs running inside a sandbox while the test goes on.
//! * [`fake_uapi`]: a scripted fake UAPI server (exact `get` replies, recorded requests).
//! * [`netstate`]: a normalised snapshot of a sandbox's links, addresses, routes, rules, nft
//!   ruleset, sysctls, WireGuard devices and resolvconf state (the wg-quick tests).
//! * [`nat_topology`]: a simulated Internet with NAT routers (nftables) and hosts behind them.
//! * [`resolvconf`]: a private `/etc` and a real resolvconf (unpacked openresolv) in a sandbox.
//!
//! Contract: a helper either does what it says or panics with a message that says what to do
//! (build the binaries, install a package). Only [`require_root`] skips, and it says so.

pub mod background;
pub mod bins;
pub mod fake_uapi;
pub mod invocation;
pub mod nat_topology;
pub mod netstate;
pub mod resolvconf;
pub mod rng;
pub mod sandbox;

use std::io::Write;

pub use background::{Background, Finished};
pub use bins::{
    boringtun, cargo_bin, deny_ioctl, our_wg, our_wg_tunnel, reference_wg, repo_root,
    try_cargo_bin, wireguard_go, xfer,
};
pub use fake_uapi::FakeUapi;
pub use invocation::{assert_same, compare, diff_wg, diff_wg_all, Invocation, Outcome};
pub use netstate::Snapshot;
pub use resolvconf::PrivateEtc;
pub use rng::{case_rng, case_selected, seed};
pub use sandbox::{Sandbox, UserspaceDevice};

/// Whether this process runs with effective uid 0.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Returns `true` when running as root. Otherwise prints a clear skip message and returns
/// `false`, and the caller returns early:
///
/// ```ignore
/// if !wg_tests::require_root() { return; }
/// ```
///
/// The message goes straight to the process's stderr (not through the test harness's output
/// capture), so a skipped test is visible in a normal `cargo test` run. Tests skip only for
/// this reason; as root (CI, `scripts/test.sh`) they always run.
pub fn require_root() -> bool {
    if is_root() {
        return true;
    }
    let thread = std::thread::current();
    let name = thread.name().unwrap_or("<unnamed test>");
    // Ignoring a failed write is fine: the skip message is advisory.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {name}: needs root (network/mount namespaces); run scripts/test.sh as root"
    );
    false
}
