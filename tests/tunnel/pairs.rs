//! Interoperability pairs: A initiates (B has no endpoint for A and learns it), pings both
//! ways inside the tunnel over IPv4 and IPv6, then sends 100 MB over TCP to B, compared by
//! digest. Each pair is configured once with the reference `wg` and once with ours; the
//! outer and inner address families vary between the two so both are covered.

use super::{Family, Impl, Net, Setup, Tool, A, B, TRANSFER_BYTES};
use wg_tests::require_root;

/// Runs the whole scenario for `setup`, with the bulk transfer over `inner`.
fn scenario(setup: Setup, inner: Family) {
    let net = Net::new(setup);
    // A speaks first: it is the only side that knows where the other is.
    net.ping(&net.a, B.inner4);
    net.ping(&net.b, A.inner4);
    net.ping(&net.a, B.inner6);
    net.ping(&net.b, A.inner6);
    let peer_b = net.dump_peer(&net.b);
    let a_outer = super::sockaddr(A.outer(setup.underlay), 51820);
    assert_eq!(peer_b[2], a_outer, "B learnt A's endpoint: {peer_b:?}");
    for (sandbox, implementation) in [(&net.a, setup.a), (&net.b, setup.b)] {
        // boringtun 0.7 answers `last_handshake_time_sec` with the seconds *since* the
        // handshake instead of a time stamp, so right after one it says 0 ("never").
        if implementation != Impl::Boringtun {
            let peer = net.dump_peer(sandbox);
            assert_ne!(peer[4], "0", "no handshake recorded: {peer:?}");
        }
    }
    let (rx_before, _) = net.transfer_counters(&net.b);
    let (_, tx_before) = net.transfer_counters(&net.a);
    net.start_transfer(&net.a, &net.b, B.inner(inner), TRANSFER_BYTES)
        .finish(&net);
    // Every byte crossed the tunnel, encrypted, and each side counted it.
    let (rx_after, _) = net.transfer_counters(&net.b);
    let (_, tx_after) = net.transfer_counters(&net.a);
    assert!(
        rx_after - rx_before > TRANSFER_BYTES,
        "B rx {rx_before} -> {rx_after}"
    );
    assert!(
        tx_after - tx_before > TRANSFER_BYTES,
        "A tx {tx_before} -> {tx_after}"
    );
}

macro_rules! pair_tests {
    ($($name:ident: $a:ident -> $b:ident, $tool:ident, outer $outer:ident, inner $inner:ident;)*) => {
        $(
            #[test]
            fn $name() {
                if !require_root() {
                    return;
                }
                let mut setup = Setup::new(Impl::$a, Impl::$b, Tool::$tool);
                setup.underlay = Family::$outer;
                scenario(setup, Family::$inner);
            }
        )*
    };
}

pair_tests! {
    tunnel_to_tunnel_reference_wg: WgTunnel -> WgTunnel, Reference, outer V4, inner V4;
    tunnel_to_tunnel_our_wg: WgTunnel -> WgTunnel, Ours, outer V6, inner V6;
    tunnel_to_wireguard_go_reference_wg: WgTunnel -> WireguardGo, Reference, outer V4, inner V6;
    tunnel_to_wireguard_go_our_wg: WgTunnel -> WireguardGo, Ours, outer V6, inner V4;
    wireguard_go_to_tunnel_reference_wg: WireguardGo -> WgTunnel, Reference, outer V6, inner V4;
    wireguard_go_to_tunnel_our_wg: WireguardGo -> WgTunnel, Ours, outer V4, inner V6;
    tunnel_to_boringtun_reference_wg: WgTunnel -> Boringtun, Reference, outer V4, inner V4;
    tunnel_to_boringtun_our_wg: WgTunnel -> Boringtun, Ours, outer V6, inner V6;
    boringtun_to_tunnel_reference_wg: Boringtun -> WgTunnel, Reference, outer V4, inner V6;
}
