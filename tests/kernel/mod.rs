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
//! * [`interop`]: kernel WireGuard and our `wg-tunnel` on the wire, each side initiating: pings,
//!   TCP, UDP bursts; on this kernel (no TUN USO) `wg-tunnel` must fall back to TSO alone.
//! * [`quick`]: our `wg-quick` and the reference's on the kernel path (state, trace, rollback).
//!
//! There is one `#[test]`, [`kernel_wireguard_in_a_vm`], which boots the VM and then runs every
//! check in [`CHECKS`], reporting each and failing with all that failed. (One test, not one per
//! check: tests waiting for a shared boot would hold every test thread of the harness.)
//!
//! Adding cases: write a `sections(&mut Payload)` in a submodule that adds its guest scripts
//! (and generated files) to the payload, call it from `vm::payload`, and add a check
//! `fn(&VmRun)` reading `run.section(NAME)` to [`CHECKS`]. Generated cases come from
//! `wg_tests::case_rng`. Run with `cargo test -p wg-tests -- kernel::` (as root; the first run
//! downloads the kernel package into `target/vm/`).

mod changes;
mod interop;
mod netns;
mod quick;
mod show;
mod states;
mod vm;

use std::io::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};

use vm::VmRun;

/// A check of the VM's output: its name, the sections it reads, and the check.
type Check = (&'static str, &'static [&'static str], fn(&VmRun));

/// Every check, in report order.
const CHECKS: &[Check] = &[
    (
        "show forms match the reference on kernel devices",
        &["show"],
        show::show_forms_match_reference_on_kernel_devices,
    ),
    (
        "errors for missing and foreign interfaces match the reference",
        &["show-errors"],
        show::errors_for_missing_and_foreign_interfaces_match_reference,
    ),
    (
        "changes through ours and the reference give the same kernel state",
        &["changes"],
        changes::changes_through_ours_and_reference_give_the_same_kernel_state,
    ),
    (
        "netns.sh configuration checks pass with our wg",
        &["netns"],
        netns::netns_selftest_configuration_checks_pass_with_our_wg,
    ),
    (
        "kernel initiates to wg-tunnel",
        &["interop-kernel-initiates"],
        interop::kernel_initiates_to_wg_tunnel,
    ),
    (
        "wg-tunnel initiates to the kernel",
        &["interop-tunnel-initiates"],
        interop::wg_tunnel_initiates_to_kernel,
    ),
    (
        "errors without the module match the reference",
        &["no-module"],
        show::errors_without_the_module_match_reference,
    ),
    (
        "wg-quick up/down on the kernel path matches the reference",
        &["quick"],
        quick::wg_quick_on_the_kernel_path_matches_reference,
    ),
    (
        "a failing PostUp on the kernel path undoes everything",
        &["quick"],
        quick::failing_post_up_on_the_kernel_path_undoes_everything,
    ),
    (
        "the kernel logged no oops, BUG or WARNING",
        &[],
        kernel_stayed_healthy,
    ),
];

/// Nothing we sent made the kernel complain: no splat (oops, BUG, WARN_ON, with its call
/// trace) anywhere in the kernel log of the whole run.
fn kernel_stayed_healthy(run: &VmRun) {
    let dmesg = run.dmesg();
    let bad: Vec<&str> = dmesg
        .lines()
        .filter(|l| {
            [
                "Oops",
                "BUG:",
                "WARNING:",
                "Call Trace",
                "general protection",
                "Kernel panic",
            ]
            .iter()
            .any(|w| l.contains(w))
        })
        .collect();
    assert!(
        bad.is_empty(),
        "the kernel complained:\n{}\nkernel log:\n{dmesg}",
        bad.join("\n")
    );
}

#[test]
fn kernel_wireguard_in_a_vm() {
    if !wg_tests::require_root() {
        return;
    }
    let run = vm::results();
    let mut failed = Vec::new();
    for (name, sections, check) in CHECKS {
        if !sections.iter().all(|s| vm::selected(s)) {
            let _ = writeln!(
                std::io::stderr(),
                "kernel: {name}: not run (WG_TESTS_VM_SECTIONS)"
            );
            continue;
        }
        let result = catch_unwind(AssertUnwindSafe(|| check(run)));
        let verdict = match &result {
            Ok(()) => "ok".to_owned(),
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_else(|| "(no message)".to_owned());
                failed.push(format!("--- {name}:\n{message}"));
                "FAILED".to_owned()
            }
        };
        let _ = writeln!(std::io::stderr(), "kernel: {name}: {verdict}");
    }
    assert!(
        failed.is_empty(),
        "{} of {} kernel checks failed:\n{}",
        failed.len(),
        CHECKS.len(),
        failed.join("\n")
    );
}
