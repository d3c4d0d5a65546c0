//! Our tools against the real kernel WireGuard module, inside a VM (issue 5).
//!
//! This host has no WireGuard module, so `scripts/vm/run.sh` boots Debian's `linux-image-amd64`
//! under qemu (TCG) with a minimal initramfs: busybox, the kernel's `wireguard.ko` and its
//! dependencies, veth and tun, iproute2's `ip`, the reference `/usr/bin/wg`, and our `wg` and
//! `wg-tunnel` under `/ours/`. All cases of this module run in **one** boot ([`vm::results`]):
//! each submodule adds guest sections (busybox sh scripts, with the helpers of `prelude.sh`)
//! and data files to the payload; the VM writes each section's output into `/out/<section>/`,
//! which comes back to the host, where each test checks its sections.
//!
//! * [`show`]: `wg show` / `showconf` in every form on kernel devices in random states, ours
//!   against the reference byte for byte; errors for missing, foreign and module-less
//!   interfaces.
//! * [`changes`]: `set`, `setconf`, `addconf`, `syncconf` through ours and through the reference
//!   give the same kernel state, including changes that need many netlink messages.
//! * [`netns`]: the configuration checks of the kernel's self-test `netns.sh`, with our `wg`.
//! * [`interop`]: kernel WireGuard and our `wg-tunnel` on the wire, each side initiating.
//!
//! Adding cases: write a `sections(&mut Payload)` in a submodule that adds its guest scripts
//! (and generated files) to the payload, call it from `vm::payload`, and read the results in
//! tests with `vm::results().section(NAME)`. Generated cases come from `wg_tests::case_rng`.
//! Run only these tests with `cargo test -p wg-tests -- kernel::` (as root; the first run
//! downloads the kernel package into `target/vm/`).

mod changes;
mod interop;
mod netns;
mod show;
mod states;
mod vm;
