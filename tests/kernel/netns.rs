//! The configuration behaviours of the kernel's self-test `netns.sh` (compat 6.2 rows 16, 18,
//! 19, 20 and the configuration half of 21), run in the VM with our `wg` against the kernel;
//! `netns.sh` (the guest script) says what each step checks. The listings it checks are also
//! compared with the reference's output.

use std::fmt::Write as _;

use wg_tests::{case_rng, seed};

use super::states::random_key;
use super::vm::{Payload, VmRun};

/// Case stream of this module.
const STREAM: u64 = 0x7_0000;

/// Row 16a's file: one peer with `AllowedIPs=$a.$b.0.0/16,$a::$b/128` for a in 1..=255 and b
/// in 0..=255 (130,560 allowed IPs).
fn big_conf() -> String {
    let mut rng = case_rng(seed(), STREAM);
    let mut s = format!(
        "[Interface]\nPrivateKey={}\n[Peer]\nPublicKey={}\n",
        random_key(&mut rng),
        random_key(&mut rng)
    );
    for a in 1..=255 {
        for b in 0..=255 {
            let _ = writeln!(s, "AllowedIPs={a}.{b}.0.0/16,{a}::{b}/128");
        }
    }
    s
}

pub(crate) fn sections(p: &mut Payload) {
    p.file("netns/big.conf", big_conf());
    p.section("netns", include_str!("netns.sh"));
}

pub(crate) fn netns_selftest_configuration_checks_pass_with_our_wg(run: &VmRun) {
    let log = run.section("netns").log();
    assert!(
        log.contains("all netns.sh configuration checks passed"),
        "the netns section ended early; its log:\n{log}"
    );
}
