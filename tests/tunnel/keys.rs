//! Key and keepalive changes on a live tunnel, seen from the other side.
//!
//! ```text
//!   A (wg-tunnel) ══ session ══ B (wg-tunnel)
//!   A: wg set private-key NEW      B: replaces peer OLD_A by NEW_A
//!   ping A -> B: A must handshake afresh as NEW_A at once (B no longer knows the old
//!   session; a stale one would only be abandoned after 15 s), and B records NEW_A's handshake.
//! ```

use std::thread;
use std::time::{Duration, Instant};

use super::{keypair, Impl, Net, Setup, Tool, A, B, DEADLINE};
use wg_tests::require_root;

/// A private key change drops the sessions made with the old identity: the next packet
/// starts a handshake as the new one.
#[test]
fn tunnel_private_key_change_drops_old_sessions() {
    if !require_root() {
        return;
    }
    let mut setup = Setup::new(Impl::WgTunnel, Impl::WgTunnel, Tool::Reference);
    setup.b_knows_a = true;
    let net = Net::new(setup);
    net.ping(&net.a, B.inner4);
    let (new_private, new_public) = keypair();
    let dir = tempfile::tempdir().expect("temp dir");
    let key_file = dir.path().join("new-key");
    std::fs::write(&key_file, new_private).expect("write key");
    net.wg(
        &net.a,
        &[
            "set",
            "wg0",
            "private-key",
            key_file.to_str().expect("UTF-8"),
        ],
    );
    let allowed = format!("{}/32,{}/128", A.inner4, A.inner6);
    let endpoint = format!("{}:51820", A.outer4);
    #[rustfmt::skip]
    net.wg(&net.b, &[
        "set", "wg0", "peer", &net.pub_a, "remove",
        "peer", &new_public, "allowed-ips", &allowed, "endpoint", &endpoint,
    ]);
    // One ping, 5 s: only a fresh handshake gets it through in time.
    net.ping(&net.a, B.inner4);
    let peer = net.dump_peer(&net.b);
    assert_eq!(peer[0], new_public, "B's one peer is A's new identity");
    assert_ne!(peer[4], "0", "B has a handshake with A's new key: {peer:?}");
    net.ping(&net.b, A.inner6);
}

/// Turning persistent keepalive on at runtime makes A send keepalives to B with no other
/// traffic; B counts them.
#[test]
fn tunnel_persistent_keepalive_turned_on_at_runtime() {
    if !require_root() {
        return;
    }
    let net = Net::new(Setup::new(Impl::WgTunnel, Impl::WgTunnel, Tool::Ours));
    net.ping(&net.a, B.inner4);
    net.wg(
        &net.a,
        &[
            "set",
            "wg0",
            "peer",
            &net.pub_b,
            "persistent-keepalive",
            "1",
        ],
    );
    assert_eq!(net.dump_peer(&net.a)[7], "1");
    // Three keepalives (32 bytes each) arrive with nothing else sent: polled, not timed.
    let (rx0, _) = net.transfer_counters(&net.b);
    let start = Instant::now();
    while net.transfer_counters(&net.b).0 < rx0 + 3 * 32 {
        assert!(
            start.elapsed() < DEADLINE,
            "no keepalives reached B\n{}",
            net.logs()
        );
        thread::sleep(Duration::from_millis(50));
    }
}
