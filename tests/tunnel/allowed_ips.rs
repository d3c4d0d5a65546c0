//! Cryptokey routing both ways, on wg-tunnel pairs.
//!
//! ```text
//!   A wg0 10.9.0.1/24 + 10.9.1.1/24 (not in B's allowed-ips for A)       B wg0 10.9.0.2/24
//!     udp 10.9.1.1 -> 10.9.0.2 "spoofed"  ──encrypted──►  decrypted, source checked: dropped
//!     udp 10.9.0.1 -> 10.9.0.2 "legit"    ──encrypted──►  delivered
//!     udp 10.9.0.1 -> 10.9.0.77 (no peer) ──✗ never encrypted, no UDP leaves veth-a
//! ```
//!
//! Drops are proven by what arrives: the receiver on B prints every datagram until "end", and
//! packets sent in order over one tunnel arrive in order, so a spoofed packet sent before the
//! legitimate ones would be printed before them. A control step then allows the spoofed
//! source and sees it arrive, so the check can see a packet when there is one.

use super::{wait_for, Impl, Net, Setup, Tool, A, B, DEADLINE};
use wg_tests::{require_root, xfer, Sandbox};

/// Starts the UDP receiver on B port 5002; returns it once it listens.
fn receiver(net: &Net) -> wg_tests::Background {
    let mut recv = net.b.spawn(&xfer(), &["udp-recv", "[::]:5002"]);
    assert_eq!(recv.expect_line(DEADLINE), "listening");
    recv
}

/// Sends one datagram `text` from `src` to `dst` port 5002, inside A.
fn send(net: &Net, src: &str, dst: &str, text: &str) {
    let dest = super::sockaddr(dst, 5002);
    let out = net.a.run(
        xfer().to_str().expect("UTF-8"),
        &["udp-send", src, &dest, text],
    );
    out.assert_code(0, &format!("udp-send {src} {dest}"));
}

/// The datagrams the receiver printed ("SOURCE TEXT" lines, the last one "… end").
fn received(net: &Net, recv: wg_tests::Background) -> Vec<String> {
    let done = recv.wait(DEADLINE, || net.logs());
    assert!(done.status.success(), "receiver: {done:?}");
    done.lines
}

#[test]
fn tunnel_drops_inner_source_outside_allowed_ips() {
    if !require_root() {
        return;
    }
    let net = Net::new(Setup::new(Impl::WgTunnel, Impl::WgTunnel, Tool::Reference));
    net.ping(&net.a, B.inner4);
    // A second address on A's tunnel interface, outside what B allows for A. B routes it back
    // through wg0, so its kernel (reverse-path filter) would take it if wg-tunnel let it in.
    net.a.ip("addr add 10.9.1.1/24 dev wg0");
    net.b.ip("route add 10.9.1.0/24 dev wg0");
    net.a.ip("-6 addr add fd00:91::1/64 dev wg0 nodad");
    net.b.ip("-6 route add fd00:91::/64 dev wg0");
    super::ipv6_settled(&net.a);

    let recv = receiver(&net);
    let (_, tx0) = net.transfer_counters(&net.a);
    send(&net, "10.9.1.1", B.inner4, "spoofed4");
    send(&net, "fd00:91::1", B.inner6, "spoofed6");
    // Both left A encrypted (two transport messages), so B had them to check.
    wait_for("A to send the spoofed packets", || {
        net.transfer_counters(&net.a).1 >= tx0 + 2 * 32
    });
    send(&net, A.inner4, B.inner4, "legit4");
    send(&net, A.inner6, B.inner6, "legit6");
    send(&net, A.inner4, B.inner4, "end");
    assert_eq!(
        received(&net, recv),
        ["10.9.0.1 legit4", "fd00:9::1 legit6", "10.9.0.1 end"],
        "only the packets from allowed sources arrive\n{}",
        net.logs()
    );

    // Control: once B allows those sources for A, the same packets arrive.
    let allowed = "10.9.0.1/32,fd00:9::1/128,10.9.1.1/32,fd00:91::1/128";
    net.wg(
        &net.b,
        &["set", "wg0", "peer", &net.pub_a, "allowed-ips", allowed],
    );
    let recv = receiver(&net);
    send(&net, "10.9.1.1", B.inner4, "spoofed4");
    send(&net, "fd00:91::1", B.inner6, "spoofed6");
    send(&net, A.inner4, B.inner4, "end");
    assert_eq!(
        received(&net, recv),
        ["10.9.1.1 spoofed4", "fd00:91::1 spoofed6", "10.9.0.1 end"],
        "{}",
        net.logs()
    );
}

/// Bytes sent by `dev` in `sandbox`, from `/proc/net/dev` (read inside the sandbox).
fn link_tx_bytes(sandbox: &Sandbox, dev: &str) -> u64 {
    let table = sandbox.run("cat", &["/proc/net/dev"]).stdout_str();
    let line = table
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{dev}:")))
        .unwrap_or_else(|| panic!("{dev} not in /proc/net/dev:\n{table}"));
    let fields: Vec<&str> = line
        .split(':')
        .nth(1)
        .expect("counters")
        .split_whitespace()
        .collect();
    // receive: bytes packets errs drop fifo frame compressed multicast; transmit: bytes …
    fields[8].parse().expect("tx bytes")
}

#[test]
fn tunnel_sends_nothing_to_addresses_no_peer_covers() {
    if !require_root() {
        return;
    }
    let net = Net::new(Setup::new(Impl::WgTunnel, Impl::WgTunnel, Tool::Reference));
    net.ping(&net.a, B.inner4);
    let recv = receiver(&net);
    let (_, tx0) = net.transfer_counters(&net.a);
    let veth0 = link_tx_bytes(&net.a, "veth-a");
    let wg0 = link_tx_bytes(&net.a, "wg0");
    // Inside wg0's subnets (so the kernel hands them to the tunnel), outside every peer's
    // allowed-ips. 1000-byte payloads: one sent would show in the counters.
    let big = "x".repeat(1000);
    for _ in 0..5 {
        send(&net, A.inner4, "10.9.0.77", &big);
        send(&net, A.inner6, "fd00:9::77", &big);
    }
    send(&net, A.inner4, B.inner4, "end");
    assert_eq!(received(&net, recv), ["10.9.0.1 end"]);
    // The kernel did give them to the tunnel …
    assert!(
        link_tx_bytes(&net.a, "wg0") - wg0 > 10 * 1000,
        "not routed into wg0"
    );
    // … which sent only the last one (and maybe a keepalive), not ten 1 kB packets.
    let (_, tx1) = net.transfer_counters(&net.a);
    let veth1 = link_tx_bytes(&net.a, "veth-a");
    assert!(
        tx1 - tx0 < 1000,
        "peer tx grew by {} bytes\n{}",
        tx1 - tx0,
        net.logs()
    );
    assert!(
        veth1 - veth0 < 1000,
        "veth-a sent {} bytes\n{}",
        veth1 - veth0,
        net.logs()
    );
}
