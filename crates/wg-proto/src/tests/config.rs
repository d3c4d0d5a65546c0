//! Runtime configuration changes on a live [`Pair`]: preshared key, persistent keepalive and
//! private key, each as the kernel applies them (sessions kept or dropped exactly as it does).

use std::time::Duration;

use super::util::{ip, Pair, PairConfig, Side, A_KEY, B_KEY};
use crate::messages::MessageType::{HandshakeInitiation, HandshakeResponse, TransportData};
use crate::noise::handshake::StaticIdentity;
use crate::timers::{REKEY_AFTER_TIME, REKEY_TIMEOUT, REKEY_TIMEOUT_JITTER_MAX};
use crate::tunnel::PeerConfig;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn count(pair: &Pair, side: Side, ty: crate::messages::MessageType) -> usize {
    pair.sent(side, ty).len()
}

#[test]
fn test_psk_change_keeps_session_and_applies_to_next_handshake() {
    let mut pair = Pair::new();
    pair.send_a(b"first");
    assert_eq!(pair.a_handshakes, vec![secs(0)]);
    // Only A changes its PSK: the running session is untouched.
    assert!(pair.a.set_preshared_key(pair.a_peer, Some([0x99; 32])));
    pair.send_a(b"same session");
    assert_eq!(count(&pair, Side::A, HandshakeInitiation), 1);
    assert_eq!(pair.b_delivered.len(), 2);
    // The next handshake uses the new key, which B does not share yet: B cannot tell (the PSK
    // enters after B's checks), but A rejects B's response.
    pair.advance_to(REKEY_AFTER_TIME + secs(1));
    pair.send_a(b"rekey");
    assert_eq!(count(&pair, Side::A, HandshakeInitiation), 2);
    assert_eq!(count(&pair, Side::B, HandshakeResponse), 2);
    assert_eq!(
        pair.a_handshakes.len(),
        1,
        "the response with the old PSK is refused"
    );
    assert_eq!(pair.a.counters().rx_dropped_invalid, 1);
    // Once B has the new key too, the retransmitted initiation completes.
    assert!(pair.b.set_preshared_key(pair.b_peer, Some([0x99; 32])));
    pair.advance();
    assert_eq!(pair.a_handshakes.len(), 2);
    let retry = *pair.a_handshakes.last().unwrap();
    assert!(retry >= REKEY_AFTER_TIME + secs(1) + REKEY_TIMEOUT);
    assert!(retry < REKEY_AFTER_TIME + secs(1) + REKEY_TIMEOUT + REKEY_TIMEOUT_JITTER_MAX);
    // Unknown peers are reported.
    let gone = pair.a_peer;
    pair.a.remove_peer(pair.b.public_key());
    assert!(!pair.a.set_preshared_key(gone, None));
}

#[test]
fn test_persistent_keepalive_turned_on_sends_at_once_then_periodically() {
    let mut pair = Pair::new();
    assert!(pair.log.is_empty());
    pair.advance_to(secs(7));
    let now = pair.now;
    assert!(pair.a.set_persistent_keepalive(now, pair.a_peer, Some(25)));
    pair.drive();
    // No session yet: the keepalive starts a handshake, and is sent once it completes.
    assert_eq!(pair.a_handshakes, vec![secs(7)]);
    pair.advance_to(secs(60));
    let keepalives = |pair: &Pair| -> Vec<Duration> {
        pair.sent(Side::A, TransportData)
            .iter()
            .filter(|s| s.bytes.len() == 32)
            .map(|s| s.at)
            .collect()
    };
    assert_eq!(keepalives(&pair), vec![secs(7), secs(32), secs(57)]);
    // A new interval applies from the next authenticated packet on; setting the same "on"
    // state again does not send an extra keepalive.
    let now = pair.now;
    pair.a.set_persistent_keepalive(now, pair.a_peer, Some(10));
    pair.drive();
    assert_eq!(keepalives(&pair).len(), 3);
    pair.advance_to(secs(90));
    assert_eq!(
        keepalives(&pair),
        vec![secs(7), secs(32), secs(57), secs(82)],
        "the timer armed at 57 s for 82 s still fires, then re-arms with 10 s"
    );
    pair.advance_to(secs(93));
    assert_eq!(keepalives(&pair).last(), Some(&secs(92)));
    // Turning it off stops it at once.
    let now = pair.now;
    pair.a.set_persistent_keepalive(now, pair.a_peer, Some(0));
    pair.advance_to(secs(400));
    assert_eq!(keepalives(&pair).last(), Some(&secs(92)));
}

#[test]
fn test_persistent_keepalive_without_endpoint_sends_nothing() {
    let mut pair = Pair::new();
    let now = pair.now;
    // B does not know A's endpoint.
    assert!(pair.b.set_persistent_keepalive(now, pair.b_peer, Some(5)));
    pair.drive();
    assert!(pair.log.is_empty());
    // Once B learns it (A talks first), keepalives flow every 5 s of silence.
    pair.send_a(b"hi");
    pair.advance_to(secs(21));
    let b_keepalives = pair
        .sent(Side::B, TransportData)
        .iter()
        .filter(|s| s.bytes.len() == 32)
        .count();
    assert_eq!(b_keepalives, 4, "5, 10, 15, 20 s");
}

#[test]
fn test_same_private_key_changes_nothing() {
    let mut pair = Pair::new();
    pair.send_a(b"one");
    let mut clamped = A_KEY;
    clamped[0] &= 248;
    assert!(!pair.a.set_private_key(A_KEY));
    assert!(!pair.a.set_private_key(clamped));
    pair.send_a(b"two");
    assert_eq!(count(&pair, Side::A, HandshakeInitiation), 1);
    assert_eq!(pair.b_delivered.len(), 2);
}

#[test]
fn test_private_key_change_stops_sending_on_old_sessions_only() {
    let mut pair = Pair::new();
    pair.send_a(b"one");
    pair.send_b(b"back");
    let old_public = *pair.a.public_key();
    let new_key = [0x0c; 32];
    assert!(pair.a.set_private_key(new_key));
    let new_public = *StaticIdentity::new(new_key).public_key();
    assert_eq!(pair.a.public_key(), &new_public);
    // Packets B sends on the old session still decrypt at A.
    pair.send_b(b"in flight");
    assert_eq!(pair.a_delivered.len(), 2);
    // But A no longer sends on it: its next packet starts a handshake under the new identity,
    // which B does not know yet.
    pair.send_a(b"new me");
    assert_eq!(count(&pair, Side::A, HandshakeInitiation), 2);
    assert_eq!(pair.b.counters().rx_dropped_unknown_peer, 1);
    assert_eq!(pair.b_delivered.len(), 1);
    // B learns the new key; A's retransmission completes, and the staged packet arrives.
    assert!(pair.b.remove_peer(&old_public));
    let now = pair.now;
    pair.b_peer = pair
        .b
        .add_peer(
            now,
            PeerConfig {
                public_key: new_public,
                preshared_key: Some([0x77; 32]),
                endpoint: None,
                persistent_keepalive: None,
                allowed_ips: vec![(ip("10.0.0.1"), 32)],
            },
        )
        .unwrap();
    pair.advance();
    assert_eq!(pair.b_delivered.len(), 2);
    assert_eq!(pair.b_delivered[1].1[20..], b"new me"[..]);
    assert_eq!(pair.a_handshakes.len(), 2);
}

#[test]
fn test_private_key_of_a_peer_removes_that_peer() {
    let mut pair = Pair::new();
    pair.send_a(b"one");
    let b_public = *pair.b.public_key();
    assert!(pair.a.set_private_key(B_KEY));
    assert_eq!(pair.a.peer_id(&b_public), None);
    assert_eq!(pair.a.allowed_ips().lookup(ip("10.0.0.2")), None);
    assert_eq!(
        pair.a.index_count(),
        0,
        "the removed peer's indices are released"
    );
}

#[test]
fn test_cookie_checker_follows_private_key() {
    // After a key change, MAC1 is checked against the new public key: initiations addressed
    // to the old one are dropped by the MAC gate, not decrypted.
    let mut pair = Pair::with(PairConfig::default());
    assert!(pair.b.set_private_key([0x0d; 32]));
    pair.send_a(b"to the old B");
    assert_eq!(pair.b.counters().rx_dropped_mac, 1);
    assert_eq!(pair.b.counters().rx_dropped_unknown_peer, 0);
}

#[test]
fn test_down_forgets_sessions_and_up_sends_keepalive() {
    let mut pair = Pair::with(PairConfig {
        a_keepalive: Some(25),
        ..Default::default()
    });
    assert_eq!(pair.a_handshakes, vec![secs(0)]);
    let now = pair.now;
    pair.a.set_up(now, false);
    assert!(!pair.a.is_up());
    assert!(!pair.a.peer(pair.a_peer).unwrap().has_key_material());
    assert_eq!(pair.a.index_count(), 0);
    assert_eq!(pair.a.poll_timeout(), None, "no timer runs while down");
    let sent = pair.log.len();
    pair.send_a(b"while down");
    assert_eq!(pair.log.len(), sent, "nothing is sent while down");
    assert_eq!(pair.a.counters().tx_dropped_down, 1);
    // B still has its session and sends; A, down, drops it.
    pair.send_b(b"to a down peer");
    assert!(pair.a_delivered.is_empty());
    assert_eq!(pair.a.counters().rx_dropped_down, 1);
    // Up again: the persistent keepalive starts a handshake at once.
    pair.advance_to(secs(30));
    let now = pair.now;
    pair.a.set_up(now, true);
    pair.drive();
    assert_eq!(pair.a_handshakes, vec![secs(0), secs(30)]);
    pair.send_a(b"up");
    assert_eq!(pair.b_delivered.last().unwrap().1[20..], b"up"[..]);
}

#[test]
fn test_configured_while_down_acts_on_up() {
    let mut pair = Pair::new();
    let now = pair.now;
    pair.a.set_up(now, false);
    // A keepalive turned on while down sends nothing until the interface is up.
    assert!(pair.a.set_persistent_keepalive(now, pair.a_peer, Some(25)));
    pair.drive();
    assert!(pair.log.is_empty());
    pair.advance_to(secs(3));
    let now = pair.now;
    pair.a.set_up(now, true);
    pair.drive();
    assert_eq!(pair.a_handshakes, vec![secs(3)]);
    assert_eq!(count(&pair, Side::A, HandshakeInitiation), 1);
}
