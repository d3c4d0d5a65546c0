//! Wire interop in the VM: kernel WireGuard in one namespace, our `wg-tunnel` in another,
//! joined by veth (`interop.sh` draws it). For each side as the initiator: the handshake (the
//! responder learns the initiator's endpoint, which only the initiator was given), pings both
//! ways over v4 and v6 inside the tunnel, and a TCP transfer each way checked by sha256. The
//! outer transport is IPv4 when the kernel initiates and IPv6 when the tunnel does.

use super::vm::{Payload, VmRun};

/// Random bytes sent each way per scenario (about 230 KiB/s through a debug-built wg-tunnel
/// under TCG).
const DATA_KIB: u32 = 1024;

/// `(section, initiator, outer family, namespace number)`.
const SCENARIOS: [(&str, &str, u8, u8); 2] = [
    ("interop-kernel-initiates", "kernel", 4, 1),
    ("interop-tunnel-initiates", "tunnel", 6, 2),
];

pub(crate) fn sections(p: &mut Payload) {
    p.file("interop.sh", include_str!("interop.sh"));
    for (name, initiator, outer, n) in SCENARIOS {
        p.section(
            name,
            format!(
                "INITIATOR={initiator} OUTER={outer} N={n} DATA_KIB={DATA_KIB}\n. ./interop.sh\n"
            ),
        );
    }
}

fn check(run: &VmRun, section: &str) {
    let log = run.section(section).log();
    // The section already failed on any mismatch; show what it measured.
    let transfers: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("transfer to"))
        .collect();
    assert_eq!(transfers.len(), 2, "two transfers expected; log:\n{log}");
}

pub(crate) fn kernel_initiates_to_wg_tunnel(run: &VmRun) {
    check(run, SCENARIOS[0].0);
}

pub(crate) fn wg_tunnel_initiates_to_kernel(run: &VmRun) {
    check(run, SCENARIOS[1].0);
}
