//! Index of the integration tests: the workspace's one integration binary (`autotests = false`).
//!
//! * `bad_input`: damaged config files, key files, UAPI replies and wg-quick configs (NUL
//!   bytes, huge lines, wrong encodings, invalid keys/endpoints/CIDRs/ports): ours against the
//!   reference, byte for byte (root only).
//! * `bench_script`: `scripts/bench.sh` (the performance benchmark) parses, documents its
//!   settings in `--help`, and its report computes medians, same-round ratios and verdicts.
//! * `differential`: our `wg` against the reference `/usr/bin/wg`, byte for byte
//!   (lists the known, deliberate differences).
//! * `docs`: man pages, shell completions (bash, zsh, fish, really driven), systemd units,
//!   `scripts/install.sh` and the Debian package metadata, checked against what the code supports.
//! * `harness`: the sandbox / userspace-daemon harness itself (root only; skips otherwise).
//! * `kernel`: our tools against the real kernel WireGuard module, in one qemu boot of Debian's
//!   kernel (`scripts/vm/`): every show form and every set path against the reference, the
//!   `netns.sh` configuration checks, wire interop with wg-tunnel (root only).
//! * `nat`: NAT traversal in namespaces: a simulated Internet with nftables NAT routers (the
//!   NATs' own behaviour checked with UDP probes), the outcome matrix with `wg-quick` peers and
//!   a `wg-relay`, the relay's wire, forged/replayed/flooding strangers, wireguard-go interop
//!   (root only).
//! * `nat_smoke`: NAT traversal end to end, smallest case: `wg-relay` and two wg-tunnel peers,
//!   relayed while direct UDP is blocked, then direct (root only).
//! * `netlink_wire`: `wg` and a kernel device without a kernel: the set requests, and the show
//!   output of get dumps, byte for byte against the reference, through a fake generic netlink
//!   family loaded with `LD_PRELOAD`.
//! * `quick`: `wg-quick` (ours and the reference driving wg-tunnel) against the reference
//!   `/usr/bin/wg-quick` in sandboxes with a real resolvconf: state snapshots, traces, failure
//!   injection, strip/save (root only).
//! * `quick_smoke`: our `wg-quick` alone on the wg-tunnel path: up, down, full tunnel, rollback
//!   (root only).
//! * `repo`: repository-level promises (scripts the README and CI rely on).
//! * `show`: `wg show` / `wg showconf` on live wireguard-go devices and on replayed UAPI
//!   replies (root only).
//! * `tunnel`: wg-tunnel end to end against itself, wireguard-go and boringtun (100 MB by
//!   digest, roaming, allowed-ips, lifecycle, bad UAPI input; root only).
//!
//! Shared helpers live in the `wg_tests` library (`tests/util/`). Our binaries are found in
//! `target/<profile>/`, so run `cargo build --workspace --bins` first (`scripts/test.sh` does).

mod bad_input;
mod bench_script;
mod differential;
mod docs;
mod harness;
mod kernel;
mod nat;
mod nat_smoke;
mod netlink_wire;
mod permissions;
mod quick;
mod quick_smoke;
mod repo;
mod set;
mod setconf;
mod show;
mod tunnel;
mod tunnel_daemon;
