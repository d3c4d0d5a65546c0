//! Wire interop in the VM: kernel WireGuard in one namespace, our `wg-tunnel` in another,
//! joined by veth (`interop.sh` draws it). For each side as the initiator: the handshake (the
//! responder learns the initiator's endpoint, which only the initiator was given), pings both
//! ways over v4 and v6 inside the tunnel, a TCP transfer each way checked by sha256, and a burst
//! of UDP datagrams of several sizes (up to the MTU, and one in fragments) each way over v4 and
//! v6 inside, every datagram checked whole (`udp.pl`, run by the VM's perl). The outer transport
//! is IPv4 when the kernel initiates and IPv6 when the tunnel does.
//!
//! The VM's kernel (Debian 12: 6.1) predates TUN UDP segmentation offload (6.2), so `wg-tunnel`,
//! logging at debug level into the section, must show the fallback: USO refused, TSO alone
//! negotiated. Its write side then coalesces TCP only and writes each UDP packet as it is: the
//! UDP bursts prove that path against a real kernel. (A kernel with USO must show it accepted.)

use super::vm::{Payload, VmRun};

/// Random bytes sent each way per scenario (a second or so through a debug-built wg-tunnel
/// under TCG).
const DATA_KIB: u32 = 1024;

/// `(section, initiator, outer family, namespace number)`.
const SCENARIOS: [(&str, &str, u8, u8); 2] = [
    ("interop-kernel-initiates", "kernel", 4, 1),
    ("interop-tunnel-initiates", "tunnel", 6, 2),
];

pub(crate) fn sections(p: &mut Payload) {
    p.file("interop.sh", include_str!("interop.sh"));
    p.file("udp.pl", include_str!("udp.pl"));
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
    let udp: Vec<&str> = log.lines().filter(|l| l.starts_with("udp to")).collect();
    assert!(
        udp.len() == 4 && udp.iter().all(|l| l.contains("intact")),
        "four intact UDP bursts expected; log:\n{log}"
    );

    let tunnel_log = run.section(section).read_string("wg-tunnel.log");
    let release = log
        .lines()
        .find_map(|l| l.strip_prefix("kernel "))
        .unwrap_or_else(|| panic!("no kernel release in the log:\n{log}"));
    let offloads = tunnel_log
        .lines()
        .find(|l| l.contains("TUN offloads: "))
        .unwrap_or_else(|| panic!("no TUN offloads in wg-tunnel's log:\n{tunnel_log}"));
    if has_tun_uso(release) {
        assert!(
            offloads.contains("tso: true, uso: true"),
            "kernel {release} has USO, yet wg-tunnel negotiated {offloads:?}"
        );
    } else {
        assert!(
            tunnel_log.contains("TUN USO refused (") && tunnel_log.contains("trying TSO alone"),
            "kernel {release} lacks USO, yet wg-tunnel's log shows no refusal:\n{tunnel_log}"
        );
        assert!(
            offloads.contains("tso: true, uso: false"),
            "kernel {release}: TSO alone expected, wg-tunnel negotiated {offloads:?}"
        );
    }
    assert!(
        !tunnel_log.contains("failed to write to TUN device"),
        "kernel {release}: wg-tunnel could not write to the TUN device:\n{tunnel_log}"
    );
}

/// Whether kernel `release` (`uname -r`) has TUN UDP segmentation offload: 6.2 and later.
fn has_tun_uso(release: &str) -> bool {
    let mut numbers = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let major = numbers.next().unwrap_or(0);
    let minor = numbers.next().unwrap_or(0);
    (major, minor) >= (6, 2)
}

pub(crate) fn kernel_initiates_to_wg_tunnel(run: &VmRun) {
    check(run, SCENARIOS[0].0);
}

pub(crate) fn wg_tunnel_initiates_to_kernel(run: &VmRun) {
    check(run, SCENARIOS[1].0);
}

#[test]
fn tun_uso_arrived_in_6_2() {
    for (release, uso) in [
        ("6.1.0-56-amd64", false),
        ("5.10.0-30-amd64", false),
        ("6.2.0", true),
        ("6.12.48+deb13-amd64", true),
        ("7.0", true),
    ] {
        assert_eq!(has_tun_uso(release), uso, "{release}");
    }
}
