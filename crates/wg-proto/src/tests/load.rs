//! Handshake floods on the virtual clock: the queue as the load signal, cookie replies while
//! under load (and for a second after), the per-round DH budget and the per-source rate
//! limit on handshakes that do carry a valid cookie.

use std::net::SocketAddr;
use std::time::Duration;

use super::util::{ipv4_packet, Pair, Side};
use crate::messages::MessageType::{CookieReply, HandshakeInitiation};
use crate::timers::{REKEY_TIMEOUT, REKEY_TIMEOUT_JITTER_MAX};
use crate::tunnel::{PeerConfig, Tunnel, UNDER_LOAD_QUEUE_LEN};

fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

/// A handshake initiation to B from a stranger B does not know: a valid MAC1 (it only needs
/// B's public key), so without load B spends a DH on it before dropping it.
fn stranger_initiation(pair: &Pair) -> Vec<u8> {
    let mut c = Tunnel::new(
        [0x0c; 32],
        [3; 32],
        pair.start,
        Duration::from_secs(1_700_000_000),
    );
    c.add_peer(
        pair.start,
        PeerConfig {
            public_key: *pair.b.public_key(),
            endpoint: Some(pair.b_addr),
            allowed_ips: vec![("10.0.0.0".parse().unwrap(), 24)],
            ..Default::default()
        },
    )
    .unwrap();
    c.handle_outgoing(pair.start, &ipv4_packet("10.0.0.3", "10.0.0.2", b"x"));
    let mut buf = [0u8; 256];
    let t = c.poll_transmit(&mut buf).unwrap();
    buf[..t.len].to_vec()
}

fn source(i: usize) -> SocketAddr {
    SocketAddr::from(([203, 0, 113, (i % 250) as u8], 1024 + i as u16))
}

#[test]
fn test_backlog_engages_cookie_replies() {
    let mut pair = Pair::new();
    let init = stranger_initiation(&pair);
    let now = pair.now;
    for i in 0..1000 {
        pair.b.handle_incoming(now, source(i), &init);
    }
    assert_eq!(pair.b.pending_handshakes(), 1000);
    // 1000 ≥ UNDER_LOAD_QUEUE_LEN waiting: every one is answered with a cookie, none costs a
    // DH, so the whole backlog drains within a budget of one.
    assert_eq!(pair.b.process_handshakes(now, 1), 0);
    let c = pair.b.counters();
    assert_eq!(c.rx_cookie_replies_sent, 1000);
    assert_eq!(c.rx_dropped_unknown_peer, 0, "no initiation was decrypted");
    let mut buf = [0u8; 256];
    let mut replies = 0;
    while let Some(t) = pair.b.poll_transmit(&mut buf) {
        assert_eq!(t.len, 64, "cookie replies");
        replies += 1;
    }
    assert_eq!(replies, 1000);
}

#[test]
fn test_small_backlog_is_processed_within_budget() {
    let mut pair = Pair::new();
    let init = stranger_initiation(&pair);
    let now = pair.now;
    let n = UNDER_LOAD_QUEUE_LEN / 4;
    for i in 0..n {
        pair.b.handle_incoming(now, source(i), &init);
    }
    // Not under load: each message is decrypted (and dropped: unknown peer), 16 per round.
    assert_eq!(pair.b.process_handshakes(now, 16), n - 16);
    assert_eq!(pair.b.counters().rx_dropped_unknown_peer, 16);
    assert_eq!(pair.b.process_handshakes(now, usize::MAX), 0);
    assert_eq!(pair.b.counters().rx_dropped_unknown_peer, n as u64);
    assert_eq!(pair.b.counters().rx_cookie_replies_sent, 0);
}

#[test]
fn test_queue_is_bounded() {
    let mut pair = Pair::new();
    let init = stranger_initiation(&pair);
    let now = pair.now;
    for i in 0..5000 {
        pair.b.handle_incoming(now, source(i), &init);
    }
    assert_eq!(
        pair.b.pending_handshakes(),
        crate::tunnel::MAX_QUEUED_HANDSHAKES
    );
    assert_eq!(pair.b.counters().rx_dropped_handshake_queue_full, 904);
}

#[test]
fn test_under_load_lingers_for_a_second() {
    let mut pair = Pair::new();
    let init = stranger_initiation(&pair);
    let now = pair.now;
    for i in 0..UNDER_LOAD_QUEUE_LEN {
        pair.b.handle_incoming(now, source(i), &init);
    }
    pair.b.process_handshakes(now, usize::MAX);
    while pair.b.poll_transmit(&mut [0u8; 256]).is_some() {}
    // Half a second later the queue is empty, but B still demands cookies: A's first
    // initiation gets a cookie reply, and its retry, carrying MAC2, succeeds.
    pair.advance_to(millis(500));
    pair.send_a(b"during");
    assert_eq!(pair.sent(Side::B, CookieReply).len(), 1);
    assert!(pair.a_handshakes.is_empty());
    pair.advance();
    let done = pair.a_handshakes[0];
    assert!(done >= millis(500) + REKEY_TIMEOUT);
    assert!(done < millis(500) + REKEY_TIMEOUT + REKEY_TIMEOUT_JITTER_MAX);
}

#[test]
fn test_load_ends_after_a_second() {
    let mut pair = Pair::new();
    let init = stranger_initiation(&pair);
    let now = pair.now;
    for i in 0..UNDER_LOAD_QUEUE_LEN {
        pair.b.handle_incoming(now, source(i), &init);
    }
    pair.b.process_handshakes(now, usize::MAX);
    while pair.b.poll_transmit(&mut [0u8; 256]).is_some() {}
    pair.advance_to(millis(1001));
    pair.send_a(b"after");
    assert!(pair.sent(Side::B, CookieReply).is_empty());
    assert_eq!(pair.a_handshakes, vec![millis(1001)]);
    assert_eq!(pair.b_delivered.len(), 1);
}

#[test]
fn test_valid_cookies_are_rate_limited_per_source() {
    let mut pair = Pair::new();
    pair.b.set_under_load(true);
    pair.send_a(b"busy?");
    pair.advance();
    assert_eq!(
        pair.a_handshakes.len(),
        1,
        "the retry with a cookie went through"
    );
    // Replaying that retry (valid MAC1 and MAC2 from A's address) floods B: after the
    // source's burst (5, one already spent) every copy is dropped by the rate limit before
    // any DH.
    let retry = pair.sent(Side::A, HandshakeInitiation)[1].bytes.clone();
    let (now, from) = (pair.now, pair.a_addr);
    for _ in 0..100 {
        pair.b.handle_incoming(now, from, &retry);
    }
    pair.b.process_handshakes(now, usize::MAX);
    let c = pair.b.counters().clone();
    assert_eq!(c.rx_dropped_ratelimited, 96);
    assert_eq!(
        c.rx_dropped_replayed_initiation, 4,
        "the burst got to the replay check"
    );
    // A second later the source has its burst back (5), and no more.
    let later = now + Duration::from_secs(1);
    for _ in 0..100 {
        pair.b.handle_incoming(later, from, &retry);
    }
    pair.b.process_handshakes(later, usize::MAX);
    assert_eq!(pair.b.counters().rx_dropped_replayed_initiation, 4 + 5);
    // From another address the cookie (bound to the source address) is not valid: B answers
    // with a fresh cookie instead.
    let replies = pair.b.counters().rx_cookie_replies_sent;
    pair.b.handle_incoming(later, source(1), &retry);
    pair.b.process_handshakes(later, usize::MAX);
    assert_eq!(pair.b.counters().rx_cookie_replies_sent, replies + 1);
}

#[test]
fn test_cookie_replies_to_a_peer_endpoint_are_not_limited() {
    let mut pair = Pair::new();
    // B knows A's endpoint once A has sent to it.
    pair.send_a(b"hello");
    pair.advance();
    pair.b.set_under_load(true);
    let init = stranger_initiation(&pair);
    let now = pair.now;
    // A flood spoofing A's address (another port, as NAT may give): each message is answered,
    // as the kernel answers every one, so the flood cannot starve A of cookies.
    let spoofed = SocketAddr::new(pair.a_addr.ip(), 40_000);
    let before = pair.b.counters().rx_cookie_replies_sent;
    for _ in 0..100 {
        pair.b.handle_incoming(now, spoofed, &init);
    }
    pair.b.process_handshakes(now, usize::MAX);
    assert_eq!(pair.b.counters().rx_cookie_replies_sent, before + 100);
    // From any other address only the burst is answered.
    for _ in 0..100 {
        pair.b.handle_incoming(now, source(7), &init);
    }
    pair.b.process_handshakes(now, usize::MAX);
    let c = pair.b.counters();
    assert_eq!(c.rx_cookie_replies_sent, before + 100 + 5);
    assert_eq!(c.rx_dropped_ratelimited, 95);
}
