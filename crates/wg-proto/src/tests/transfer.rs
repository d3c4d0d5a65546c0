//! Peers' byte counters (`wg show transfer`) on the virtual clock, as the kernel counts them:
//! whole messages (the UDP payload) sent to a peer, and received from it once consumed:
//! handshake initiations and responses, keepalives, and data messages whose packet passed
//! the inner checks. Cookie replies, replays, forgeries and packets from a source outside
//! the peer's allowed IPs are not counted; both data paths count alike.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::util::{ipv4_packet, Pair, Side};
use crate::messages::MessageType::{
    CookieReply, HandshakeInitiation, HandshakeResponse, TransportData,
};
use crate::messages::{COOKIE_REPLY_LEN, HANDSHAKE_INITIATION_LEN, HANDSHAKE_RESPONSE_LEN};
use crate::timers::KEEPALIVE_TIMEOUT;
use crate::tunnel::Tunnel;

const INIT: u64 = HANDSHAKE_INITIATION_LEN as u64;
const RESP: u64 = HANDSHAKE_RESPONSE_LEN as u64;
const KEEPALIVE: u64 = 32;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// A transport message's length for an inner packet of `inner` bytes: header, padding to 16,
/// tag.
fn wire(inner: usize) -> u64 {
    (16 + inner.div_ceil(16) * 16 + 16) as u64
}

/// (rx, tx) of A's peer and of B's peer.
fn counters(pair: &Pair) -> ((u64, u64), (u64, u64)) {
    let a = pair.a.peer(pair.a_peer).unwrap();
    let b = pair.b.peer(pair.b_peer).unwrap();
    ((a.rx_bytes(), a.tx_bytes()), (b.rx_bytes(), b.tx_bytes()))
}

#[test]
fn test_transfer_counts_handshake_data_and_keepalive_both_ends() {
    let mut pair = Pair::new();
    pair.send_a(&[1; 100]); // 120-byte packet, 160 on the wire
    pair.send_b(&[2; 3]); // 23-byte packet, 64 on the wire
    let (a_data, b_data) = (wire(120), wire(23));
    assert_eq!(
        counters(&pair),
        (
            (RESP + b_data, INIT + a_data),
            (INIT + a_data, RESP + b_data)
        ),
        "the responder counts the initiation it consumed, the initiator the response"
    );
    // A heard B last: its passive keepalive, 10 s later, is counted on both ends.
    pair.advance_to(secs(15));
    let keepalives = pair.sent(Side::A, TransportData);
    assert_eq!(keepalives.last().unwrap().bytes.len() as u64, KEEPALIVE);
    assert_eq!(
        counters(&pair),
        (
            (RESP + b_data, INIT + a_data + KEEPALIVE),
            (INIT + a_data + KEEPALIVE, RESP + b_data)
        )
    );
}

#[test]
fn test_transfer_counts_every_retried_initiation_and_response() {
    let mut pair = Pair::new();
    pair.blackhole = Some(Side::B); // B's responses are lost
    pair.send_a(b"hello?");
    pair.advance();
    pair.advance();
    let k = pair.sent(Side::A, HandshakeInitiation).len() as u64;
    assert_eq!(k, 3);
    assert_eq!(counters(&pair), ((0, k * INIT), (k * INIT, k * RESP)));
    // The next retry gets through: only its response is consumed by A.
    pair.blackhole = None;
    pair.advance();
    let k = pair.sent(Side::A, HandshakeInitiation).len() as u64;
    assert_eq!(k, 4);
    let data = wire(20 + 6);
    assert_eq!(pair.b_delivered.len(), 1);
    assert_eq!(
        counters(&pair),
        ((RESP, k * INIT + data), (k * INIT + data, k * RESP))
    );
}

#[test]
fn test_transfer_ignores_cookie_replies_and_the_message_answered_with_one() {
    let mut pair = Pair::new();
    pair.b.set_under_load(true);
    pair.send_a(b"busy?");
    assert_eq!(pair.sent(Side::B, CookieReply).len(), 1);
    assert_eq!(
        pair.sent(Side::B, CookieReply)[0].bytes.len(),
        COOKIE_REPLY_LEN
    );
    // A sent its initiation (counted); B answered it with a cookie, not counted either way.
    assert_eq!(counters(&pair), ((0, INIT), (0, 0)));
    pair.advance(); // the retry, with MAC2
    let data = wire(20 + 5);
    assert_eq!(pair.b_delivered.len(), 1);
    assert_eq!(
        counters(&pair),
        ((RESP, 2 * INIT + data), (INIT + data, RESP))
    );
}

#[test]
fn test_transfer_ignores_replays_and_forgeries() {
    let mut pair = Pair::new();
    pair.send_a(b"once");
    let before = counters(&pair);
    let init = pair.sent(Side::A, HandshakeInitiation)[0].bytes.clone();
    let data = pair.sent(Side::A, TransportData)[0].bytes.clone();
    let mut forged = data.clone();
    *forged.last_mut().unwrap() ^= 1;
    forged[8] ^= 1; // another counter, so the replay window does not reject it first
    let (now, from) = (pair.now + secs(1), pair.a_addr);
    pair.b.handle_incoming(now, from, &data);
    pair.b.handle_incoming(now, from, &forged);
    pair.b.handle_incoming(now, from, &init);
    pair.b.process_handshakes(now, usize::MAX);
    let c = pair.b.counters();
    assert_eq!(
        (
            c.rx_dropped_replay,
            c.rx_dropped_invalid,
            c.rx_dropped_replayed_initiation
        ),
        (1, 1, 1)
    );
    pair.drive();
    assert_eq!(pair.sent(Side::B, HandshakeResponse).len(), 1);
    assert_eq!(counters(&pair), before);
}

/// Opens one datagram through the bulk path (plan, open, complete); returns the length of
/// the packet to deliver.
fn bulk_open_one(t: &mut Tunnel, now: Instant, from: SocketAddr, datagram: &[u8]) -> Option<usize> {
    let job = t.plan_open(now, from, datagram)?;
    let mut buf = datagram.to_vec();
    let plain = job.open(&mut buf).ok().map(|len| &buf[16..16 + len]);
    t.complete_open(now, from, &job, plain)
}

/// The one datagram `t` has to send.
fn take_one(t: &mut Tunnel) -> Vec<u8> {
    let mut buf = vec![0u8; 2048];
    let tx = t.poll_transmit(&mut buf).expect("a datagram");
    assert!(t.poll_transmit(&mut buf).is_none(), "only one");
    buf[..tx.len].to_vec()
}

/// A data message whose packet comes from a source outside the peer's allowed IPs is
/// authenticated (it roams the endpoint, runs timers) but, as in the kernel, not counted in
/// the peer's received bytes; wireguard-go counts it. A keepalive is counted. The one-packet
/// and the bulk receive path agree.
#[test]
fn test_transfer_counts_data_only_once_its_packet_is_accepted() {
    let mut results = Vec::new();
    for bulk in [false, true] {
        let mut pair = Pair::new();
        pair.send_a(b"legit");
        pair.send_b(b"reply"); // A heard B last: it owes B a keepalive
        let base = counters(&pair).1 .0;
        let later = pair.now + KEEPALIVE_TIMEOUT;
        pair.a.handle_timeout(later);
        let keepalive = take_one(&mut pair.a);
        assert_eq!(keepalive.len() as u64, KEEPALIVE);
        // A routes all of 10.0.0.0/24 to B; B allows only 10.0.0.1 from A.
        let spoofed = ipv4_packet("10.0.0.99", "10.0.0.2", &[7; 300]);
        let legit = ipv4_packet("10.0.0.1", "10.0.0.2", &[8; 77]);
        pair.a.handle_outgoing(later, &spoofed);
        let spoofed = take_one(&mut pair.a);
        pair.a.handle_outgoing(later, &legit);
        let legit = take_one(&mut pair.a);
        assert_eq!(spoofed.len() as u64, wire(320));
        let from = pair.a_addr;
        if bulk {
            assert_eq!(bulk_open_one(&mut pair.b, later, from, &keepalive), None);
            assert_eq!(bulk_open_one(&mut pair.b, later, from, &spoofed), None);
            assert_eq!(bulk_open_one(&mut pair.b, later, from, &legit), Some(97));
        } else {
            for d in [&keepalive, &spoofed, &legit] {
                pair.b.handle_incoming(later, from, d);
            }
        }
        assert_eq!(pair.b.counters().rx_dropped_source, 1, "bulk {bulk}");
        let rx = counters(&pair).1 .0;
        assert_eq!(
            rx,
            base + KEEPALIVE + wire(97),
            "bulk {bulk}: the keepalive and the delivered packet, not the spoofed one"
        );
        results.push((rx, pair.b.counters().clone()));
    }
    assert_eq!(results[0], results[1], "one-packet and bulk paths agree");
}
