//! Whole-protocol tests over the virtual-time [`Pair`]: handshake, transport, timers, cookies,
//! roaming and a seeded-loss soak. No test sleeps; minutes of protocol time take microseconds.

use std::time::Duration;

use super::util::{ip, ipv4_packet, Pair, PairConfig, Side};
use crate::messages::MessageType::{
    CookieReply, HandshakeInitiation, HandshakeResponse, TransportData,
};
use crate::timers::{
    KEEPALIVE_TIMEOUT, MAX_TIMER_HANDSHAKES, REJECT_AFTER_TIME, REKEY_AFTER_MESSAGES,
    REKEY_AFTER_TIME, REKEY_TIMEOUT, REKEY_TIMEOUT_JITTER_MAX, ZERO_KEYS_AFTER,
};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn times(sent: &[&super::util::Sent]) -> Vec<Duration> {
    sent.iter().map(|s| s.at).collect()
}

#[test]
fn test_handshake_then_round_trip() {
    let mut pair = Pair::new();
    let ping = pair.send_a(b"ping");
    let kinds: Vec<_> = pair.log.iter().map(|s| (s.from, s.ty)).collect();
    assert_eq!(
        kinds,
        vec![
            (Side::A, Some(HandshakeInitiation)),
            (Side::B, Some(HandshakeResponse)),
            (Side::A, Some(TransportData)),
        ]
    );
    assert_eq!(pair.b_delivered, vec![(secs(0), ping)]);
    // The initiator completes on the response, the responder on the first data message.
    assert_eq!(pair.a_handshakes, vec![secs(0)]);
    assert_eq!(pair.b_handshakes, vec![secs(0)]);
    let pong = pair.send_b(b"pong");
    assert_eq!(pair.a_delivered, vec![(secs(0), pong)]);
    assert_eq!(pair.log.len(), 4, "no second handshake");
    // The responder learned the initiator's endpoint from the initiation.
    assert_eq!(
        pair.b.peer(pair.b_peer).unwrap().endpoint(),
        Some(pair.a_addr)
    );
    assert_eq!(pair.b.counters(), &Default::default(), "nothing dropped");
}

#[test]
fn test_replayable_with_fixed_seed() {
    let run = |seed| {
        let mut pair = Pair::with(PairConfig {
            seed,
            ..Default::default()
        });
        pair.send_a(b"x");
        pair.advance_to(secs(200));
        pair.send_b(b"y");
        pair.log
            .iter()
            .map(|s| (s.at, s.bytes.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(run(5), run(5), "same seed, same bytes on the wire");
    assert_ne!(run(5), run(6));
}

#[test]
fn test_passive_keepalive_after_keepalive_timeout() {
    let mut pair = Pair::new();
    pair.send_a(b"one-way");
    // B received data and has nothing to say: exactly KEEPALIVE_TIMEOUT later it sends an
    // empty transport message so that A knows the session works.
    assert!(pair.advance());
    let last = pair.log.last().unwrap();
    assert_eq!(
        (last.from, last.ty, last.bytes.len()),
        (Side::B, Some(TransportData), 32)
    );
    assert_eq!(last.at, KEEPALIVE_TIMEOUT);
    assert!(pair.a_delivered.is_empty(), "keepalives are not delivered");
    // Then nothing but the key-erasure timers remain.
    assert_eq!(pair.next_timeout(), Some(pair.start + ZERO_KEYS_AFTER));
}

#[test]
fn test_no_keepalive_when_replying_with_data() {
    let mut pair = Pair::new();
    pair.send_a(b"request");
    pair.advance_to(secs(5));
    pair.send_b(b"response");
    pair.advance_to(secs(60));
    let keepalives: Vec<_> = pair
        .sent(Side::B, TransportData)
        .into_iter()
        .chain(pair.sent(Side::A, TransportData))
        .filter(|s| s.bytes.len() == 32)
        .map(|s| (s.from, s.at))
        .collect();
    // B answered with data, so only A (who got data and said nothing) sends a keepalive.
    assert_eq!(keepalives, vec![(Side::A, secs(5) + KEEPALIVE_TIMEOUT)]);
}

#[test]
fn test_rekey_after_time() {
    let mut pair = Pair::new();
    let mut sent = Vec::new();
    for i in 0..=30 {
        pair.advance_to(secs(10 * i));
        sent.push(pair.send_a(&i.to_be_bytes()));
    }
    // Only the initiator rekeys on time: on the first send once its keypair is 120 s old.
    assert_eq!(
        times(&pair.sent(Side::A, HandshakeInitiation)),
        vec![secs(0), REKEY_AFTER_TIME, 2 * REKEY_AFTER_TIME]
    );
    assert!(pair.sent(Side::B, HandshakeInitiation).is_empty());
    assert_eq!(pair.a_handshakes, vec![secs(0), secs(120), secs(240)]);
    // Nothing was lost across the key rotations.
    let got: Vec<_> = pair.b_delivered.iter().map(|(_, p)| p.clone()).collect();
    assert_eq!(got, sent);
}

#[test]
fn test_rekey_after_messages() {
    let mut pair = Pair::new();
    pair.send_a(b"first");
    // Handshakes are rate-limited to one per REKEY_TIMEOUT, so wait that long first.
    pair.advance_to(REKEY_TIMEOUT);
    let before = pair.sent(Side::A, HandshakeInitiation).len();
    let peer = pair.a.peer_mut(pair.a_peer).unwrap();
    peer.current_keypair_mut()
        .unwrap()
        .set_send_counter(REKEY_AFTER_MESSAGES + 1);
    pair.send_a(b"second");
    assert_eq!(pair.sent(Side::A, HandshakeInitiation).len(), before + 1);
    assert_eq!(
        pair.b_delivered.len(),
        2,
        "the counter jump is within the replay rules"
    );
}

#[test]
fn test_retransmit_with_jitter_then_give_up() {
    let mut pair = Pair::new();
    pair.blackhole = Some(Side::A);
    pair.send_a(b"lost");
    while pair.advance() {}
    let inits = times(&pair.sent(Side::A, HandshakeInitiation));
    // The first attempt plus MAX_TIMER_HANDSHAKES + 1 retries, as in the kernel.
    assert_eq!(inits.len() as u32, MAX_TIMER_HANDSHAKES + 2);
    for pair_of in inits.windows(2) {
        let gap = pair_of[1] - pair_of[0];
        assert!(
            gap >= REKEY_TIMEOUT && gap < REKEY_TIMEOUT + REKEY_TIMEOUT_JITTER_MAX,
            "{gap:?}"
        );
    }
    let jitters: std::collections::HashSet<_> = inits.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(jitters.len() > 5, "jitter varies between retries");
    // Giving up takes at least REKEY_ATTEMPT_TIME, drops the staged packet, and erases the
    // residue 540 s later; then the peer is idle.
    let last = *inits.last().unwrap();
    assert!(last >= secs(95), "{last:?}");
    let peer = pair.a.peer(pair.a_peer).unwrap();
    assert_eq!(peer.staged_len(), 0);
    assert!(!peer.has_key_material());
    assert_eq!(pair.a.counters().tx_dropped_handshake_gave_up, 1);
    assert!(pair.elapsed() >= last + REKEY_TIMEOUT + ZERO_KEYS_AFTER);
    assert_eq!(pair.a.index_count(), 0, "all session indices released");
    assert_eq!(pair.a.poll_timeout(), None);
}

#[test]
fn test_reject_after_time() {
    let mut pair = Pair::new();
    pair.send_a(b"hello");
    let t = pair.start + REJECT_AFTER_TIME;
    let keypair = pair.b.peer(pair.b_peer).unwrap().current_keypair().unwrap();
    assert!(keypair.can_send(t - Duration::from_nanos(1)));
    assert!(!keypair.can_send(t));
    // The responder never rekeys on time; at 180 s its keypair is dead, so sending stages
    // the packet and starts a handshake of its own.
    pair.advance_to(REJECT_AFTER_TIME);
    let pong = pair.send_b(b"late");
    assert_eq!(
        times(&pair.sent(Side::B, HandshakeInitiation)),
        vec![REJECT_AFTER_TIME]
    );
    assert_eq!(pair.a_delivered, vec![(REJECT_AFTER_TIME, pong)]);
    // A transport message on the expired keypair is refused.
    let old = pair.sent(Side::A, TransportData)[0].bytes.clone();
    let (now, from) = (pair.now, pair.a_addr);
    pair.b.handle_incoming(now, from, &old);
    assert_eq!(pair.b.counters().rx_dropped_expired, 1);
}

#[test]
fn test_keys_zeroed_after_three_reject_after_time() {
    let mut pair = Pair::new();
    pair.send_a(b"hello");
    assert!(pair.advance(), "B's keepalive at 10 s");
    assert!(pair.advance(), "key erasure");
    assert_eq!(pair.elapsed(), ZERO_KEYS_AFTER);
    for (t, id) in [(&pair.a, pair.a_peer), (&pair.b, pair.b_peer)] {
        assert!(!t.peer(id).unwrap().has_key_material());
        assert_eq!(t.index_count(), 0);
    }
    assert_eq!(pair.next_timeout(), None);
    // The peers still know each other: the next packet makes a fresh handshake.
    pair.send_a(b"again");
    assert_eq!(pair.b_delivered.len(), 2);
    assert_eq!(pair.a_handshakes, vec![secs(0), ZERO_KEYS_AFTER]);
}

#[test]
fn test_persistent_keepalive() {
    let mut pair = Pair::with(PairConfig {
        a_keepalive: Some(25),
        ..Default::default()
    });
    // Adding a peer with persistent keepalive starts a session at once.
    assert_eq!(pair.a_handshakes, vec![secs(0)]);
    pair.advance_to(secs(100));
    let keepalives: Vec<_> = pair
        .sent(Side::A, TransportData)
        .iter()
        .filter(|s| s.bytes.len() == 32)
        .map(|s| s.at)
        .collect();
    assert_eq!(
        keepalives,
        vec![secs(0), secs(25), secs(50), secs(75), secs(100)]
    );
}

#[test]
fn test_roaming_endpoint_follows_authenticated_packets() {
    let mut pair = Pair::new();
    pair.send_a(b"from home");
    pair.a_addr = "203.0.113.9:40000".parse().unwrap();
    pair.send_a(b"from the cafe");
    assert_eq!(
        pair.b.peer(pair.b_peer).unwrap().endpoint(),
        Some(pair.a_addr)
    );
    let reply = pair.send_b(b"reply");
    assert_eq!(pair.a_delivered.last().unwrap().1, reply);
    // An unauthenticated packet from elsewhere does not move the endpoint.
    let (now, spoof) = (pair.now, "192.0.2.66:1".parse().unwrap());
    pair.b.handle_incoming(
        now,
        spoof,
        &[
            4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 0,
        ],
    );
    assert_eq!(
        pair.b.peer(pair.b_peer).unwrap().endpoint(),
        Some(pair.a_addr)
    );
}

#[test]
fn test_inner_source_checked_against_allowed_ips() {
    let mut pair = Pair::new();
    pair.send_a(b"legit");
    // A routes 10.0.0.2 to B, but B only allows 10.0.0.1 from A.
    let spoofed = ipv4_packet("10.0.0.99", "10.0.0.2", b"spoofed");
    let now = pair.now;
    pair.a.handle_outgoing(now, &spoofed);
    pair.drive();
    assert_eq!(pair.b_delivered.len(), 1);
    assert_eq!(pair.b.counters().rx_dropped_source, 1);
    // And A has no route for destinations outside its allowed IPs.
    pair.a
        .handle_outgoing(now, &ipv4_packet("10.0.0.1", "192.168.1.1", b"nowhere"));
    assert_eq!(pair.a.counters().tx_dropped_no_route, 1);
    assert_eq!(
        pair.a.allowed_ips().lookup(ip("10.0.0.7")),
        Some(pair.a_peer)
    );
}

#[test]
fn test_padding_removed_on_delivery() {
    let mut pair = Pair::new();
    let packet = pair.send_a(&[0xee; 3]);
    let data = pair.sent(Side::A, TransportData)[0];
    assert_eq!(data.bytes.len(), 16 + 32 + 16, "23 bytes padded to 32");
    assert_eq!(pair.b_delivered[0].1, packet);
}

#[test]
fn test_replayed_transport_and_initiation_dropped() {
    let mut pair = Pair::new();
    pair.send_a(b"once");
    let data = pair.sent(Side::A, TransportData)[0].bytes.clone();
    let init = pair.sent(Side::A, HandshakeInitiation)[0].bytes.clone();
    let (now, from) = (pair.now, pair.a_addr);
    pair.b.handle_incoming(now, from, &data);
    assert_eq!(pair.b.counters().rx_dropped_replay, 1);
    pair.b.handle_incoming(now + secs(1), from, &init);
    pair.b.process_handshakes(now + secs(1), usize::MAX);
    assert_eq!(pair.b.counters().rx_dropped_replayed_initiation, 1);
    pair.drive();
    assert_eq!(pair.b_delivered.len(), 1);
    assert_eq!(
        pair.sent(Side::B, HandshakeResponse).len(),
        1,
        "no response to a replay"
    );
}

#[test]
fn test_garbage_is_counted_not_returned() {
    let mut pair = Pair::new();
    let (now, from) = (pair.now, pair.a_addr);
    pair.b.handle_incoming(now, from, b"hello");
    pair.b.handle_incoming(now, from, &[]);
    let mut fake_init = [0x42u8; 148];
    fake_init[..4].copy_from_slice(&[1, 0, 0, 0]);
    pair.b.handle_incoming(now, from, &fake_init);
    assert_eq!(pair.b.pending_handshakes(), 1, "handshakes are queued");
    assert_eq!(pair.b.process_handshakes(now, usize::MAX), 0);
    let mut fake_data = [0x42u8; 64];
    fake_data[..4].copy_from_slice(&[4, 0, 0, 0]);
    pair.b.handle_incoming(now, from, &fake_data);
    let c = pair.b.counters();
    assert_eq!(
        (
            c.rx_dropped_malformed,
            c.rx_dropped_mac,
            c.rx_dropped_unknown_index
        ),
        (2, 1, 1)
    );
    pair.drive();
    assert!(
        pair.log.is_empty(),
        "nothing is sent in reaction to garbage"
    );
}

#[test]
fn test_cookie_reply_under_load() {
    let mut pair = Pair::new();
    pair.b.set_under_load(true);
    let packet = pair.send_a(b"busy?");
    // The first initiation has no MAC2, so B answers with a cookie and does nothing else.
    assert_eq!(times(&pair.sent(Side::B, CookieReply)), vec![secs(0)]);
    assert!(pair.b_delivered.is_empty());
    // The retry carries MAC2 with the cookie and is processed.
    pair.advance();
    let inits = times(&pair.sent(Side::A, HandshakeInitiation));
    assert_eq!(inits.len(), 2);
    assert!(inits[1] >= REKEY_TIMEOUT && inits[1] < REKEY_TIMEOUT + REKEY_TIMEOUT_JITTER_MAX);
    assert_eq!(pair.b_delivered, vec![(inits[1], packet)]);
    assert_eq!(pair.b.counters().rx_cookie_replies_sent, 1);
    let retry = pair.sent(Side::A, HandshakeInitiation)[1].bytes.clone();
    assert_ne!(&retry[132..], &[0; 16], "MAC2 present");
}

#[test]
fn test_simultaneous_initiation_converges() {
    let mut pair = Pair::with(PairConfig {
        b_knows_a_endpoint: true,
        ..Default::default()
    });
    let (now, a_packet, b_packet) = (
        pair.now,
        ipv4_packet("10.0.0.1", "10.0.0.2", b"a"),
        ipv4_packet("10.0.0.2", "10.0.0.1", b"b"),
    );
    // Both sides start a handshake before seeing the other's initiation.
    pair.a.handle_outgoing(now, &a_packet);
    pair.b.handle_outgoing(now, &b_packet);
    pair.drive();
    for _ in 0..10 {
        pair.advance();
    }
    assert_eq!(pair.b_delivered.first().map(|d| &d.1), Some(&a_packet));
    assert_eq!(pair.a_delivered.first().map(|d| &d.1), Some(&b_packet));
}

// A long run with 25% seeded loss in both directions and traffic both ways. Every delivered
// packet must be delivered once, in order, and most must get through despite the loss.
#[test]
fn test_soak_with_seeded_loss() {
    let mut pair = Pair::with(PairConfig {
        seed: 42,
        ..Default::default()
    });
    pair.loss = Some((super::fixed_rng(4242), 25));
    let mut sent_a = 0u32;
    let mut sent_b = 0u32;
    for step in 0..2000u64 {
        pair.advance_to(Duration::from_millis(700 * step));
        if step % 3 != 2 {
            pair.send_a(&sent_a.to_be_bytes());
            sent_a += 1;
        } else {
            pair.send_b(&sent_b.to_be_bytes());
            sent_b += 1;
        }
    }
    let payloads = |d: &[(Duration, Vec<u8>)]| -> Vec<u32> {
        d.iter()
            .map(|(_, p)| u32::from_be_bytes(p[20..24].try_into().unwrap()))
            .collect()
    };
    for (got, sent) in [
        (payloads(&pair.b_delivered), sent_a),
        (payloads(&pair.a_delivered), sent_b),
    ] {
        assert!(
            got.windows(2).all(|w| w[0] < w[1]),
            "in order, no duplicates"
        );
        assert!(
            got.len() as u32 > sent / 2,
            "{} of {sent} delivered",
            got.len()
        );
    }
    let lost = pair.log.iter().filter(|s| s.lost).count();
    assert!(
        lost > pair.log.len() / 5,
        "the loss model dropped {lost} of {}",
        pair.log.len()
    );
    assert!(
        pair.a_handshakes.len() >= 8,
        "keys kept rotating: {:?}",
        pair.a_handshakes.len()
    );
    // Once the loss stops, traffic flows immediately or after one handshake.
    pair.loss = None;
    let last = pair.send_a(b"final");
    pair.advance();
    assert!(pair.b_delivered.iter().any(|(_, p)| *p == last));
}
