//! `wg-quick` on the kernel path (issue 6), in the VM: our `wg-quick` and the reference's bring
//! the same configs up and down on kernel WireGuard, each in its own namespace (`quick.sh`).
//! Our `up` must create a kernel link (no userspace fallback), leave the same addresses, routes
//! and device configuration as the reference, print the reference's `[#]` trace as upstream
//! HEAD prints it (`quick::differential::expected_trace`), and `down`, or a failing `PostUp`,
//! must leave no link behind.

use super::vm::{Payload, VmRun};
use crate::quick::differential::expected_trace;

/// Debian's wg-quick, run in the guest by the bash shipped there.
const REFERENCE: &str = "/usr/bin/wg-quick";

pub(crate) fn sections(p: &mut Payload) {
    let script = std::fs::read(REFERENCE).expect("read the reference wg-quick");
    p.file("ref-wg-quick", script);
    p.section("quick", include_str!("quick.sh"));
}

/// Ours and the reference agree on `file` of the section.
fn same(run: &VmRun, file: &str) -> String {
    let section = run.section("quick");
    let ours = section.read_string(&format!("ours.{file}"));
    let reference = section.read_string(&format!("ref.{file}"));
    assert_eq!(
        ours, reference,
        "{file}: ours (left) and the reference (right) differ"
    );
    ours
}

/// The trace (stderr) of `ours.CASE.COMMAND` equals the reference's as HEAD prints it.
fn same_trace(run: &VmRun, case: &str, command: &str) -> String {
    let section = run.section("quick");
    let ours = section.read_string(&format!("ours.{case}.{command}.err"));
    let reference = section.read_string(&format!("ref.{case}.{command}.err"));
    assert_eq!(
        ours,
        expected_trace(&reference, 0, false),
        "{case} {command}: our trace (left) against the reference's as HEAD prints it (right)"
    );
    ours
}

pub(crate) fn wg_quick_on_the_kernel_path_matches_reference(run: &VmRun) {
    // `up`: a kernel link, the same state and trace.
    assert_eq!(same(run, "main.up.rc").trim(), "0", "up failed");
    let trace = same_trace(run, "main", "up");
    assert!(
        !trace.contains("Missing WireGuard kernel module"),
        "ours fell back to userspace:\n{trace}"
    );
    assert!(
        trace.contains("[#] ip link add dev wgq0 type wireguard"),
        "{trace}"
    );
    let out = same(run, "main.up.out");
    assert_eq!(out, "post-up wgq0\n", "the PostUp hook's output");
    let link = same(run, "main.up.link");
    assert!(
        link.contains("wireguard"),
        "not a kernel WireGuard link:\n{link}"
    );
    assert!(
        link.contains("mtu 1420"),
        "automatic MTU (1500 - 80) expected:\n{link}"
    );
    same(run, "main.up.addr");
    let routes = same(run, "main.up.route4") + &same(run, "main.up.route6");
    for route in ["10.78.0.0/16", "10.79.1.0/24", "fd78::/48"] {
        assert!(routes.contains(route), "no route {route}:\n{routes}");
    }
    let showconf = same(run, "main.up.showconf");
    assert!(showconf.contains("PersistentKeepalive = 25"), "{showconf}");
    // `down`: the same trace, and nothing left.
    assert_eq!(same(run, "main.down.rc").trim(), "0", "down failed");
    let trace = same_trace(run, "main", "down");
    assert!(trace.contains("[#] ip link delete dev wgq0"), "{trace}");
    let out = same(run, "main.down.out");
    assert_eq!(out, "pre-down wgq0\n", "the PreDown hook's output");
    let link = same(run, "main.down.link");
    assert!(
        link.contains("does not exist"),
        "link left after down:\n{link}"
    );
}

pub(crate) fn failing_post_up_on_the_kernel_path_undoes_everything(run: &VmRun) {
    let rc = same(run, "fail.up.rc");
    assert_ne!(rc.trim(), "0", "up with a failing PostUp succeeded");
    same_trace(run, "fail", "up");
    let link = same(run, "fail.up.link");
    assert!(
        link.contains("does not exist"),
        "link left after a failed up:\n{link}"
    );
}
