//! Hostile delivery: every pair talks through `wg-tests-mangle proxy`, a seeded UDP relay in a
//! third namespace that reorders (holds packets back past the next few), delays, duplicates
//! at once and replays later (some within the replay window, some thousands of packets later,
//! outside it), never altering or inventing a byte and never dropping one.
//!
//! ```text
//!  +------ A ------+            +---------- M ----------+            +------ B ------+
//!  | wg0 (IMPL_A)  |            | wg-tests-mangle proxy |            | wg0 (IMPL_B)  |
//!  | endpoint of B |  veth-a    |  m-a :51820   m-b :51820  veth-b   | learns A's    |
//!  |  = M's m-a    +------------+ 10.0.1.254    10.0.2.254 +---------+ endpoint: m-b |
//!  | 10.0.1.1      | fd00:1::1  | fd00:1::fe    fd00:2::fe | fd00:2::2  10.0.2.2     |
//!  +---------------+            +-----------------------+            +---------------+
//! ```
//!
//! Through it, each pair must deliver what it is given exactly once and intact:
//! * pings of odd sizes (1 byte up to fragmented), both ways, IPv4 and IPv6 inside: every
//!   request answered, no duplicate replies (so no replayed packet was accepted);
//! * odd-sized UDP datagrams (1 to 3999 bytes, many fragmented; in bursts of 8 of one size
//!   but a shorter last one, which a coalescing path may merge) both ways over both families,
//!   each arriving exactly once with its contents, checked after the bulk transfers so that
//!   late replays of them had every chance to be (wrongly) accepted;
//! * 20 MB over TCP each way, one over IPv4 and one over IPv6, with odd MSSes (routes with
//!   `advmss 997` and `advmss 1151`), so segments never line up with anything a coalescing
//!   receive path might assume; compared by digest.
//!
//! The proxy's counters show that it really reordered, delayed, duplicated and replayed,
//! including replays beyond the replay window.

use std::time::Duration;

use super::{ipv6_settled, keypair, sockaddr, Family, Impl, Net, Setup, Tool, A, B, DEADLINE};
use wg_tests::{cargo_bin, require_root, Background, Sandbox};

/// Bytes moved over TCP in each direction.
const BYTES: u64 = 20_000_000;

/// Datagrams sent each way (half over IPv4, half over IPv6).
const DATAGRAMS: u64 = 300;

/// The proxy's address on the A side and on the B side.
struct Middle {
    a4: &'static str,
    a6: &'static str,
    b4: &'static str,
    b6: &'static str,
}

const M: Middle = Middle {
    a4: "10.0.1.254",
    a6: "fd00:1::fe",
    b4: "10.0.2.254",
    b6: "fd00:2::fe",
};

/// A's and B's outer addresses here (A and B in `super` describe the inner ones).
const A_OUTER: (&str, &str) = ("10.0.1.1", "fd00:1::1");
const B_OUTER: (&str, &str) = ("10.0.2.2", "fd00:2::2");

fn pick(pair: (&'static str, &'static str), family: Family) -> &'static str {
    match family {
        Family::V4 => pair.0,
        Family::V6 => pair.1,
    }
}

/// A pair whose every outer packet crosses the mangling proxy.
struct Mangled {
    // Dropped in this order: daemons and their sandboxes, then the proxy, then its sandbox.
    net: Net,
    _proxy: Background,
    m: Sandbox,
}

impl Mangled {
    fn new(a_impl: Impl, b_impl: Impl, outer: Family, seed: u64) -> Mangled {
        let (a, m, b) = (Sandbox::new(), Sandbox::new(), Sandbox::new());
        a.veth("veth-a", &m, "m-a");
        b.veth("veth-b", &m, "m-b");
        a.ip(&format!("addr add {}/24 dev veth-a", A_OUTER.0));
        a.ip(&format!("addr add {}/64 dev veth-a nodad", A_OUTER.1));
        b.ip(&format!("addr add {}/24 dev veth-b", B_OUTER.0));
        b.ip(&format!("addr add {}/64 dev veth-b nodad", B_OUTER.1));
        m.ip(&format!("addr add {}/24 dev m-a", M.a4));
        m.ip(&format!("addr add {}/64 dev m-a nodad", M.a6));
        m.ip(&format!("addr add {}/24 dev m-b", M.b4));
        m.ip(&format!("addr add {}/64 dev m-b nodad", M.b6));
        for sandbox in [&a, &m, &b] {
            ipv6_settled(sandbox);
        }
        let (m_a, m_b) = match outer {
            Family::V4 => (M.a4, M.b4),
            Family::V6 => (M.a6, M.b6),
        };
        let seed = seed.to_string();
        let listen_a = sockaddr(m_a, 51820);
        let listen_b = sockaddr(m_b, 51820);
        let peer_b = sockaddr(pick(B_OUTER, outer), 51820);
        #[rustfmt::skip]
        let args = [
            "proxy", "--seed", &seed, "--stats", "/run/mangle.stats",
            "--reorder", "0.05", "--depth", "3",
            "--delay", "0.03", "--delay-ms", "5",
            "--dup", "0.03",
            "--replay", "0.03", "--replay-ms", "1000", "--replay-after", "16384",
            // A's side is learnt from A's first packet; B's is given.
            &listen_a, "learn", &listen_b, &peer_b,
        ];
        let mut proxy = m.spawn(&cargo_bin("wg-tests-mangle"), &args);
        assert_eq!(proxy.expect_line(DEADLINE), "listening");

        let mut setup = Setup::new(a_impl, b_impl, Tool::Reference);
        setup.underlay = outer;
        let (dev_a, dev_b) = (a_impl.start(&a), b_impl.start(&b));
        let ((priv_a, pub_a), (priv_b, pub_b)) = (keypair(), keypair());
        let net = Net {
            dev_a,
            dev_b,
            a,
            b,
            pub_a,
            pub_b,
            setup,
        };
        let dir = tempfile::tempdir().expect("temp dir");
        // A knows B's endpoint (the proxy); B learns A's (the proxy's other side).
        let sides = [
            (&net.a, &A, &priv_a, &net.pub_b, &B, Some(&listen_a), 1151),
            (&net.b, &B, &priv_b, &net.pub_a, &A, None, 997),
        ];
        for (sandbox, me, private, peer_pub, peer, endpoint, advmss) in sides {
            let key_file = dir.path().join(format!("key-{}", sandbox.pid()));
            std::fs::write(&key_file, private).expect("write key");
            let key_file = key_file.to_str().expect("UTF-8 path");
            let allowed = format!("{}/32,{}/128", peer.inner4, peer.inner6);
            #[rustfmt::skip]
            let mut args = vec![
                "set", "wg0", "private-key", key_file, "listen-port", "51820",
                "peer", peer_pub, "allowed-ips", &allowed,
            ];
            if let Some(endpoint) = endpoint {
                args.extend(["endpoint", endpoint]);
            }
            net.wg(sandbox, &args);
            sandbox.ip(&format!("addr add {}/24 dev wg0", me.inner4));
            sandbox.ip(&format!("addr add {}/64 dev wg0 nodad", me.inner6));
            sandbox.ip("link set wg0 up");
            // The MSS this side advertises to the other: odd, and different each way.
            sandbox.ip(&format!(
                "route add {}/32 dev wg0 advmss {advmss}",
                peer.inner4
            ));
            sandbox.ip(&format!(
                "-6 route add {}/128 dev wg0 advmss {advmss}",
                peer.inner6
            ));
        }
        for sandbox in [&net.a, &net.b] {
            ipv6_settled(sandbox);
        }
        Mangled {
            net,
            _proxy: proxy,
            m,
        }
    }

    /// The proxy's counters (`name value` lines of its stats file).
    fn stats(&self) -> Vec<(String, u64)> {
        let path = self.m.host_path("/run/mangle.stats");
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        text.lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(' ')?;
                Some((k.to_owned(), v.parse().ok()?))
            })
            .collect()
    }

    fn stat(&self, name: &str) -> u64 {
        self.stats()
            .into_iter()
            .find(|(k, _)| k == name)
            .map_or(0, |(_, v)| v)
    }

    /// Pings `dst` from `sandbox` with payloads of `size` bytes: all answered, none twice.
    fn ping(&self, sandbox: &Sandbox, dst: &str, size: usize) {
        let size = size.to_string();
        let out = sandbox.run(
            "ping",
            &["-n", "-c", "3", "-i", "0.02", "-w", "10", "-s", &size, dst],
        );
        // With -w, ping sends until it has 3 replies, so a reply still held back by the proxy
        // when the others are in is not missed: another request goes out, and the late reply
        // and the new one may both be counted. (Loss is judged by the datagrams, which must
        // all arrive.)
        let text = out.stdout_str();
        let received = text
            .lines()
            .find_map(|l| {
                let (_, rest) = l.split_once(" packets transmitted, ")?;
                rest.split(' ').next()?.parse::<u32>().ok()
            })
            .unwrap_or(0);
        let ok = out.code() == Some(0)
            && received >= 3
            && !text.contains("duplicates")
            && !text.contains("DUP!");
        if !ok {
            panic!(
                "ping -s {size} {dst}: want 3 replies, no duplicates:\n{out:?}\nproxy: {:?}\n{}",
                self.stats(),
                self.net.logs()
            );
        }
    }
}

/// The whole scenario through the proxy.
fn scenario(a_impl: Impl, b_impl: Impl, outer: Family, seed: u64) {
    let t = Mangled::new(a_impl, b_impl, outer, seed);
    let net = &t.net;
    let mangle = cargo_bin("wg-tests-mangle");

    // Datagram receivers first: they stay up through everything else, so a replay accepted
    // at any point would show up as a duplicate.
    let mut recv_b = net.b.spawn(&mangle, &["dgram-recv", "[::]:6001"]);
    let mut recv_a = net.a.spawn(&mangle, &["dgram-recv", "[::]:6001"]);
    assert_eq!(recv_b.expect_line(DEADLINE), "listening");
    assert_eq!(recv_a.expect_line(DEADLINE), "listening");

    // Pings: A first, since B does not know where A is until A has spoken.
    let sizes = [1, 333, 1371, 1391, 2999];
    for &size in &sizes {
        t.ping(&net.a, B.inner4, size);
        t.ping(&net.b, A.inner4, size);
        t.ping(&net.a, B.inner6, size);
        t.ping(&net.b, A.inner6, size);
    }

    let half = (DATAGRAMS / 2).to_string();
    for (from, to) in [(&net.a, &B), (&net.b, &A)] {
        let v4 = sockaddr(to.inner4, 6001);
        let v6 = sockaddr(to.inner6, 6001);
        for (dest, first) in [(&v4, "0"), (&v6, half.as_str())] {
            let out = from.run(
                mangle.to_str().expect("UTF-8 path"),
                &["dgram-send", dest, first, &half],
            );
            out.assert_code(0, &format!("dgram-send {dest}"));
        }
    }

    // Bulk both ways, over both families, with odd MSSes.
    net.start_transfer(&net.a, &net.b, B.inner4, BYTES)
        .finish(net);
    net.start_transfer(&net.b, &net.a, A.inner6, BYTES)
        .finish(net);

    let total = DATAGRAMS.to_string();
    for (from, to, receiver) in [(&net.a, &B, recv_b), (&net.b, &A, recv_a)] {
        let dest = sockaddr(to.inner4, 6001);
        let out = from.run(
            mangle.to_str().expect("UTF-8 path"),
            &["dgram-send", &dest, "0", "0", "end", &total],
        );
        out.assert_code(0, "dgram-send end");
        let done = receiver.wait(Duration::from_secs(20), || net.logs());
        assert!(done.status.success(), "dgram-recv: {done:?}");
        let line = done.lines.first().map_or("", String::as_str);
        let received = line
            .strip_prefix("received ")
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        assert!(
            line.ends_with(" duplicates 0 corrupt 0 missing 0") && received > DATAGRAMS * 9 / 10,
            "datagrams to {}: {line:?} (every one exactly once, intact)\n{done:?}\nproxy: {:?}",
            to.inner4,
            t.stats()
        );
    }

    // The proxy did what it is for.
    let stats = t.stats();
    eprintln!("mangling proxy ({a_impl:?} <-> {b_impl:?}, outer {outer:?}): {stats:?}");
    for name in [
        "reordered",
        "delayed",
        "duplicated",
        "replayed",
        "replayed_far",
    ] {
        assert!(
            t.stat(name) > 0,
            "the proxy never {name} a packet: {stats:?}"
        );
    }
    // And afterwards the tunnel still works both ways.
    net.ping(&net.a, B.inner4);
    net.ping(&net.b, A.inner6);
}

#[test]
fn mangled_tunnel_to_tunnel() {
    if !require_root() {
        return;
    }
    scenario(Impl::WgTunnel, Impl::WgTunnel, Family::V4, 1);
}

#[test]
fn mangled_tunnel_to_wireguard_go() {
    if !require_root() {
        return;
    }
    scenario(Impl::WgTunnel, Impl::WireguardGo, Family::V6, 2);
}

#[test]
fn mangled_boringtun_to_tunnel() {
    if !require_root() {
        return;
    }
    scenario(Impl::Boringtun, Impl::WgTunnel, Family::V4, 3);
}
