//! UDP GSO refused by the kernel, end to end (issue 7: "fall back cleanly where the kernel
//! lacks an offload"): two wg-tunnel daemons whose underlay path is narrower than the
//! datagrams they send, so that the kernel refuses every `UDP_SEGMENT` message of full-sized
//! datagrams, and the daemons must resend them one by one.
//!
//! What makes a `UDP_SEGMENT` send fail on this host's kernel (6.18), read in
//! `net/ipv4/udp.c` `udp_send_skb` and `net/ipv6/udp.c` `udp_v6_send_skb` and checked with a
//! probe in a namespace:
//! * a segment larger than the path MTU (link or route MTU, or a learnt PMTU): `EMSGSIZE`.
//!   This is the configuration used here: A's `veth-a` has MTU 1280, B has a route to A
//!   with `mtu 1280`, for both families, while `wg0` keeps its 1420 (1452-byte datagrams).
//!   The single datagrams are then fragmented by the kernel and arrive.
//! * `SO_NO_CHECK` / `UDP_NO_CHECK6_TX` on the socket: `EINVAL`. Only the socket's owner
//!   sets these and wg-tunnel never does; the unit test in `bind.rs` covers that branch.
//! * an xfrm (IPsec) bundle on the route (`dst_xfrm`): `EIO`. Not reachable here: the kernel
//!   has no xfrm type (no ESP, AH, IPComp, MIPv6; `ip xfrm state add` answers "Requested
//!   type not found"), and a policy without a state gives a blackhole route (or, with `level
//!   use`, the plain one), not an xfrm one.
//! * not failures any more: a device without checksum offload (`ethtool -K dev tx off`;
//!   since Linux 6.11 the kernel segments and checksums in software instead of `EIO`) or
//!   without GSO.
//!
//! So the `EMSGSIZE` branch of the fallback runs here: per the design, the run is resent as
//! single datagrams and GSO stays on (runs that fit still use it). Proven by the kernel:
//! `perf stat` counts `sendmmsg` calls of each daemon that returned `-EMSGSIZE` (refused GSO
//! messages), and the IP fragmentation counters show the single datagrams were cut to fit.
//! The resends are batched too: each refused message goes again in one more `sendmmsg`, so
//! the sending daemon stays under the fast path's 250 send calls per MB (one `sendto` per
//! datagram made about 760). Pings both ways, and
//! 20 MB of TCP each way, each compared by digest, first over the IPv4 underlay, then over
//! the IPv6 one.

use super::{sockaddr, Family, Impl, Net, Setup, Tool, Transfer, A, B, DEADLINE};
use std::time::Instant;
use wg_tests::{require_root, xfer, Sandbox};

/// Bytes moved over TCP in each direction, for each underlay family.
const BYTES: u64 = 20_000_000;

/// The narrow path's MTU (the IPv6 minimum, so both families fit it).
const PATH_MTU: u32 = 1280;

/// `EMSGSIZE` from `<asm-generic/errno.h>`.
const EMSGSIZE: i32 = 90;

/// A counter of the kernel's `/proc/net/snmp` (`Ip:` `FragCreates` and the like) or
/// `/proc/net/snmp6` (`Ip6FragCreates`), read inside `sandbox`.
fn snmp(sandbox: &Sandbox, key: &str) -> u64 {
    let (file, group) = match key.strip_prefix("Ip6") {
        Some(_) => ("/proc/net/snmp6", None),
        None => ("/proc/net/snmp", Some("Ip:")),
    };
    let out = sandbox.run("cat", &[file]);
    assert_eq!(out.code(), Some(0), "cat {file}: {out:?}");
    let text = out.stdout_str();
    let value = match group {
        // `Ip6FragCreates   12`
        None => text.lines().find_map(|l| {
            let mut fields = l.split_whitespace();
            (fields.next() == Some(key))
                .then(|| fields.next())
                .flatten()
        }),
        // `Ip: Forwarding … FragCreates` followed by `Ip: 1 … 12`.
        Some(group) => {
            let lines: Vec<&str> = text.lines().filter(|l| l.starts_with(group)).collect();
            let names = lines
                .first()
                .map(|l| l.split_whitespace().collect::<Vec<_>>());
            let values = lines
                .get(1)
                .map(|l| l.split_whitespace().collect::<Vec<_>>());
            names.zip(values).and_then(|(names, values)| {
                let i = names.iter().position(|n| *n == key)?;
                values.get(i).copied()
            })
        }
    };
    value
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no counter {key} in {file}:\n{text}"))
}

/// What the kernel counted of one daemon's sends during a transfer.
#[derive(Debug)]
struct Sends {
    /// `sendmmsg` calls that returned `-EMSGSIZE`: GSO messages refused.
    refused: u64,
    /// All `sendmmsg` calls.
    batches: u64,
    /// `sendto` calls: single datagrams.
    singles: u64,
}

/// Moves [`BYTES`] over TCP from `from` to `to` (at `dst`, inside the tunnel), checked by
/// digest, while `perf stat` counts the system calls of the daemon `daemon` (the sending
/// side's).
fn transfer(net: &Net, from: &Sandbox, to: &Sandbox, daemon: u32, dst: &str) -> Sends {
    let xfer = xfer();
    let mut receiver = to.spawn(&xfer, &["recv", "[::]:5001"]);
    assert_eq!(receiver.expect_line(DEADLINE), "listening");
    let dest = sockaddr(dst, 5001);
    let csv = format!("/run/perf-{daemon}-{}.csv", dst.replace(':', "_"));
    let pid = daemon.to_string();
    #[rustfmt::skip]
    let perf_args = [
        "stat", "-x", ",", "-o", &csv,
        "-e", "syscalls:sys_exit_sendmmsg", "--filter", &format!("ret == -{EMSGSIZE}"),
        "-e", "syscalls:sys_enter_sendmmsg",
        "-e", "syscalls:sys_enter_sendto",
        "-p", &pid,
        "--", xfer.to_str().expect("UTF-8 path"), "send", &dest, &BYTES.to_string(), "7",
    ];
    let sender = from.spawn(super::perf(), &perf_args);
    Transfer {
        sender,
        receiver,
        bytes: BYTES,
        started: Instant::now(),
    }
    .finish(net);
    let csv = std::fs::read_to_string(from.host_path(&csv)).expect("perf output");
    // `count,unit,event,...`, in the order of the events asked for.
    let counts: Vec<(u64, &str)> = csv
        .lines()
        .filter_map(|l| {
            let fields: Vec<&str> = l.split(',').collect();
            Some((fields.first()?.parse().ok()?, *fields.get(2)?))
        })
        .collect();
    let [(refused, "syscalls:sys_exit_sendmmsg"), (batches, "syscalls:sys_enter_sendmmsg"), (singles, "syscalls:sys_enter_sendto")] =
        counts[..]
    else {
        panic!("unexpected perf output:\n{csv}");
    };
    Sends {
        refused,
        batches,
        singles,
    }
}

/// Pings every inner address of the other side, from both sides.
fn pings(net: &Net) {
    for (sandbox, peer) in [(&net.a, &B), (&net.b, &A)] {
        net.ping(sandbox, peer.inner4);
        net.ping(sandbox, peer.inner6);
    }
}

#[test]
fn gso_refused_by_a_narrow_path_falls_back_to_single_datagrams() {
    if !require_root() {
        return;
    }
    let mut setup = Setup::new(Impl::WgTunnel, Impl::WgTunnel, Tool::Reference);
    setup.b_knows_a = true;
    let mut net = Net::new(setup);
    // A: the link itself is narrow. B: its routes to A are.
    net.a.ip(&format!("link set veth-a mtu {PATH_MTU}"));
    net.b.ip(&format!(
        "route add {}/32 dev veth-b mtu {PATH_MTU}",
        A.outer4
    ));
    net.b.ip(&format!(
        "-6 route add {}/128 dev veth-b mtu {PATH_MTU}",
        A.outer6
    ));
    // `N: wg0: <…> mtu 1420 qdisc …`
    let link = net.a.run("ip", &["-o", "link", "show", "wg0"]).stdout_str();
    let wg_mtu: u32 = link
        .split_whitespace()
        .skip_while(|w| *w != "mtu")
        .nth(1)
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("no mtu in {link:?}"));
    assert!(
        wg_mtu + 32 + 28 > PATH_MTU,
        "wg0's MTU {wg_mtu} must make datagrams larger than the path"
    );

    for underlay in [Family::V4, Family::V6] {
        // For the transfers' log lines.
        net.setup.underlay = underlay;
        if underlay == Family::V6 {
            // Both sides move to the IPv6 underlay.
            for (sandbox, peer_pub, peer) in [(&net.a, &net.pub_b, &B), (&net.b, &net.pub_a, &A)] {
                let endpoint = sockaddr(peer.outer6, 51820);
                net.wg(
                    sandbox,
                    &["set", "wg0", "peer", peer_pub, "endpoint", &endpoint],
                );
            }
        }
        let frag_key = match underlay {
            Family::V4 => ("FragCreates", "ReasmOKs"),
            Family::V6 => ("Ip6FragCreates", "Ip6ReasmOKs"),
        };
        pings(&net);
        let directions = [
            (&net.a, &net.b, net.dev_a.pid(), B.inner4, "A -> B"),
            (&net.b, &net.a, net.dev_b.pid(), A.inner6, "B -> A"),
        ];
        for (from, to, daemon, dst, what) in directions {
            let frags_before = (snmp(from, frag_key.0), snmp(to, frag_key.1));
            let sends = transfer(&net, from, to, daemon, dst);
            let frags = (
                snmp(from, frag_key.0) - frags_before.0,
                snmp(to, frag_key.1) - frags_before.1,
            );
            eprintln!(
                "gso_fallback: {underlay:?} underlay, {what}: {sends:?}, fragments created \
                 {}, datagrams reassembled {}",
                frags.0, frags.1
            );
            let context = format!("{underlay:?} underlay, {what}: {sends:?}, {frags:?}");
            // Full-sized datagrams (1452 bytes) carry the data: at least this many.
            let datagrams = BYTES / 1452;
            assert!(
                sends.refused > 0,
                "the kernel refused no GSO message: {context}"
            );
            assert!(
                sends.batches > sends.refused,
                "sendmmsg stopped carrying anything: {context}"
            );
            let per_mb = (sends.batches + sends.singles) as f64 / (BYTES as f64 / 1e6);
            assert!(
                per_mb < 250.0,
                "{per_mb:.0} send calls per MB, the resends are not batched: {context}\n{}",
                net.logs()
            );
            assert!(
                frags.0 >= datagrams && frags.1 >= datagrams / 2,
                "the oversized datagrams were not fragmented and reassembled: {context}"
            );
        }
        // Each side's endpoint for the other is of this family.
        for (sandbox, peer) in [(&net.a, &B), (&net.b, &A)] {
            let endpoint = net.dump_peer(sandbox)[2].clone();
            assert_eq!(endpoint, sockaddr(peer.outer(underlay), 51820));
        }
    }
    pings(&net);
}
