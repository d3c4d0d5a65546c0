//! TUN offloads refused, end to end (issue 7: "fall back cleanly where the kernel lacks an
//! offload"): the last step of wg-tunnel's fallback, from TSO to plain packets.
//!
//! Every kernel that can run here has TUN TSO (Linux 2.6 onwards), so the refusal is
//! injected: A's wg-tunnel runs under `wg-tests-deny-ioctl` (`tests/bin/deny_ioctl.rs`), a
//! seccomp filter, the mechanism a restrictive container runtime uses, that makes one ioctl
//! request fail with `EINVAL` in the daemon and everything else pass. B runs unfiltered.
//!
//! * `TUNSETOFFLOAD` refused: the daemon logs (debug level) the USO refusal, then `TUN
//!   offloads refused (…); plain packets`, and reopens the device without `IFF_VNET_HDR`.
//!   The kernel's side shows it: `ethtool -k wg0` says `tcp-segmentation-offload: off` on A
//!   and `on` on B. Pings both ways over IPv4 and IPv6 inside, 20 MB of TCP each way
//!   compared by digest against an unfiltered wg-tunnel, then, still filtered, `ip link set
//!   wg0 mtu 1380` and full-size (1380-byte, don't-fragment) pings both ways per family.
//! * `TUNSETVNETHDRSZ` refused (`negotiate` fails at its first call, before any
//!   `TUNSETOFFLOAD`): the same plain path, against wireguard-go: one ping each way per
//!   family and 20 MB each way.

use super::{Impl, Net, Setup, Tool, A, B};
use wg_tests::{deny_ioctl, our_wg_tunnel, require_root, Invocation, Sandbox, UserspaceDevice};

/// Bytes moved over TCP in each direction.
const BYTES: u64 = 20_000_000;

/// The MTU A's `wg0` is changed to on the plain path.
const NEW_MTU: u32 = 1380;

/// Starts wg-tunnel (`-f wg0`, debug log) in `sandbox` with ioctl `request` refused with
/// `EINVAL`.
fn start_denying(sandbox: &Sandbox, request: &str) -> UserspaceDevice {
    let tunnel = our_wg_tunnel();
    let tunnel = tunnel.to_str().expect("UTF-8 path");
    sandbox.start_userspace_with(
        &deny_ioctl(),
        &[request, "EINVAL", "--", tunnel, "-f"],
        "wg0",
    )
}

/// `ethtool -k wg0` in `sandbox`: the value (`on`/`off`) of `tcp-segmentation-offload`.
fn tso(sandbox: &Sandbox) -> String {
    let out = sandbox.run("ethtool", &["-k", "wg0"]);
    out.assert_code(0, "ethtool -k wg0 (install ethtool; scripts/test.sh does)");
    let text = out.stdout_str();
    text.lines()
        .find_map(|l| l.strip_prefix("tcp-segmentation-offload: "))
        .and_then(|v| v.split_whitespace().next())
        .unwrap_or_else(|| panic!("no tcp-segmentation-offload in ethtool -k:\n{text}"))
        .to_owned()
}

/// Where `needle` first occurs in `log`; panics with the log when it does not.
fn position(log: &str, needle: &str) -> usize {
    log.find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in the daemon's log:\n{log}"))
}

/// The refusal of `EINVAL`, as the daemon prints an `io::Error`.
const EINVAL_TEXT: &str = "Invalid argument (os error 22)";

/// Checks A's log for the fallback to plain packets (after the USO refusal when
/// `uso_first`), and the kernel's view of both devices.
fn assert_plain(net: &Net, uso_first: bool, b_has_tso: bool) {
    let log = net.dev_a.log();
    for line in log.lines().filter(|l| l.contains("refused")) {
        eprintln!("tso_refused: A's log: {line}");
    }
    let plain = position(
        &log,
        &format!("(wg0) TUN offloads refused ({EINVAL_TEXT}); plain packets"),
    );
    let uso = log.find(&format!(
        "TUN USO refused ({EINVAL_TEXT}), trying TSO alone"
    ));
    if uso_first {
        let uso = uso.unwrap_or_else(|| panic!("no USO refusal in A's log:\n{log}"));
        assert!(uso < plain, "the USO refusal comes first:\n{log}");
    } else {
        assert!(uso.is_none(), "nothing asked for USO:\n{log}");
    }
    assert!(
        !log.contains("TUN offloads: "),
        "A's daemon negotiated offloads after all:\n{log}"
    );
    assert_eq!(tso(&net.a), "off", "A's TUN device (plain packets)");
    if b_has_tso {
        assert_eq!(tso(&net.b), "on", "B's TUN device (unfiltered)");
    }
}

/// One ping each way per inner family.
fn pings(net: &Net) {
    for (sandbox, peer) in [(&net.a, &B), (&net.b, &A)] {
        net.ping(sandbox, peer.inner4);
        net.ping(sandbox, peer.inner6);
    }
}

/// [`BYTES`] over TCP A → B (IPv4 inside), then B → A (IPv6 inside), each checked by digest.
fn transfers(net: &Net) {
    net.start_transfer(&net.a, &net.b, B.inner4, BYTES)
        .finish(net);
    net.start_transfer(&net.b, &net.a, A.inner6, BYTES)
        .finish(net);
}

#[test]
fn tso_refused_falls_back_to_plain_packets() {
    if !require_root() {
        return;
    }
    let setup = Setup::new(Impl::WgTunnel, Impl::WgTunnel, Tool::Reference);
    let net = Net::new_starting_a(setup, |sandbox| start_denying(sandbox, "TUNSETOFFLOAD"));
    assert_plain(&net, true, true);
    pings(&net);
    transfers(&net);

    // The MTU follows on the plain path: packets of exactly the new MTU, not fragmented,
    // both ways; one byte more is refused by A's kernel, so the change took.
    net.a.ip(&format!("link set wg0 mtu {NEW_MTU}"));
    for (sandbox, peer) in [(&net.a, &B), (&net.b, &A)] {
        for (dst, headers) in [(peer.inner4, 28), (peer.inner6, 48)] {
            let size = (NEW_MTU - headers).to_string();
            let out = sandbox.run(
                "ping",
                &["-c", "1", "-W", "5", "-M", "do", "-s", &size, dst],
            );
            if out.code() != Some(0) {
                panic!("ping -s {size} {dst} failed:\n{out:?}\n{}", net.logs());
            }
        }
    }
    let too_big = (NEW_MTU - 28 + 1).to_string();
    let out = net.a.run(
        "ping",
        &["-c", "1", "-W", "5", "-M", "do", "-s", &too_big, B.inner4],
    );
    assert_ne!(
        out.code(),
        Some(0),
        "A's wg0 took a packet over its MTU: {out:?}"
    );
    assert_plain(&net, true, true);
}

#[test]
fn vnet_hdr_size_refused_falls_back_to_plain_packets() {
    if !require_root() {
        return;
    }
    let setup = Setup::new(Impl::WgTunnel, Impl::WireguardGo, Tool::Reference);
    let net = Net::new_starting_a(setup, |sandbox| start_denying(sandbox, "TUNSETVNETHDRSZ"));
    // wireguard-go 0.0.20220316 has no TUN offloads of its own.
    assert_plain(&net, false, false);
    pings(&net);
    transfers(&net);
}

#[test]
fn deny_ioctl_bad_arguments_are_a_usage_error() {
    let tool = deny_ioctl();
    for args in [
        &[][..],
        &["TUNSETOFFLOAD", "EINVAL", "/bin/true"][..],
        &["TUNSETNOTHING", "EINVAL", "--", "/bin/true"],
        &["TUNSETOFFLOAD", "0", "--", "/bin/true"],
        &["TUNSETOFFLOAD", "EINVAL", "--"],
    ] {
        let out = Invocation::new(args).run(&tool);
        out.assert_code(2, &format!("wg-tests-deny-ioctl {args:?}"));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("Usage: wg-tests-deny-ioctl REQUEST ERRNO -- PROGRAM"),
            "{args:?}: {err}"
        );
    }
}
