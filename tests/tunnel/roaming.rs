//! Roaming: A's outer address changes in the middle of a 100 MB transfer (the old address is
//! deleted, a new one added, as a DHCP renewal or a network switch would); the transfer
//! completes and B's `wg show` endpoint follows A to its new address, learnt from
//! authenticated packets.
//!
//! ```text
//!   A veth-a 10.0.0.1/24 ──► 10.0.0.3/24   (while sending)      B veth-b 10.0.0.2/24
//!   B's endpoint for A:  10.0.0.1:51820  ──►  10.0.0.3:51820
//! ```

use std::thread;
use std::time::{Duration, Instant};

use super::{Impl, Net, Setup, Tool, A, B, TRANSFER_BYTES, TRANSFER_DEADLINE};
use wg_tests::require_root;

#[test]
fn tunnel_roams_mid_transfer() {
    if !require_root() {
        return;
    }
    let net = Net::new(Setup::new(Impl::WgTunnel, Impl::WgTunnel, Tool::Reference));
    net.ping(&net.a, B.inner4);
    assert_eq!(net.dump_peer(&net.b)[2], format!("{}:51820", A.outer4));
    let mut transfer = net.start_transfer(&net.a, &net.b, B.inner4, TRANSFER_BYTES);
    // Mid-transfer: once a tenth has arrived.
    let start = Instant::now();
    while net.transfer_counters(&net.b).0 < TRANSFER_BYTES / 10 {
        assert!(
            start.elapsed() < TRANSFER_DEADLINE,
            "transfer stalled before roaming\n{}",
            net.logs()
        );
        thread::sleep(Duration::from_millis(20));
    }
    net.a.sh(
        "ip addr del 10.0.0.1/24 dev veth-a && ip addr add 10.0.0.3/24 dev veth-a \
         && ip -6 addr del fd00::1/64 dev veth-a",
    );
    assert!(
        transfer.sender.try_status().is_none(),
        "the transfer ended before the address changed: make it larger"
    );
    transfer.finish(&net);
    let peer_b = net.dump_peer(&net.b);
    assert_eq!(
        peer_b[2], "10.0.0.3:51820",
        "B's endpoint for A: {peer_b:?}"
    );
    // A's view of B is unchanged.
    assert_eq!(net.dump_peer(&net.a)[2], format!("{}:51820", B.outer4));
    // And the tunnel still works both ways from the new address.
    net.ping(&net.b, A.inner4);
    net.ping(&net.a, B.inner6);
}
