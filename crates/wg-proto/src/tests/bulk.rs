//! The bulk data path (plan → crypto → complete) against the one-packet path: the same
//! bytes on the wire, the same deliveries, statistics and timers; replays within a batch,
//! forgeries, staging and rekeying.

use std::time::Duration;

use super::util::{ipv4_packet, Pair};
use crate::messages::MessageType;
use crate::timers::{REJECT_AFTER_MESSAGES, REKEY_AFTER_MESSAGES};
use crate::tunnel::{Event, OpenJob, Tunnel};

/// Headroom and tailroom around packets in the test buffers.
const ROOM: usize = 64;

/// An IP packet from A (10.0.0.1) to B with a payload of `n` bytes of `fill`.
fn packet_a(n: usize, fill: u8) -> Vec<u8> {
    ipv4_packet("10.0.0.1", "10.0.0.2", &vec![fill; n])
}

/// Seals `packets` through the bulk path; returns the datagrams (in order) of the packets
/// that took it, and how many did not.
fn bulk_seal(
    t: &mut Tunnel,
    now: std::time::Instant,
    packets: &[Vec<u8>],
) -> (Vec<Vec<u8>>, usize) {
    let mut bufs: Vec<Vec<u8>> = packets
        .iter()
        .map(|p| {
            let mut b = vec![0xee; ROOM + p.len() + ROOM];
            b[ROOM..ROOM + p.len()].copy_from_slice(p);
            b
        })
        .collect();
    let jobs: Vec<_> = bufs
        .iter_mut()
        .zip(packets)
        .map(|(b, p)| t.plan_seal(now, b, ROOM, p.len()))
        .collect();
    let mut out = Vec::new();
    let mut slow = 0;
    for (job, buf) in jobs.iter().zip(&mut bufs) {
        match job {
            Some(job) => {
                assert_eq!(job.start, ROOM - 16);
                job.seal(&mut buf[job.range()]).unwrap();
                out.push(buf[job.range()].to_vec());
            }
            None => slow += 1,
        }
    }
    (out, slow)
}

/// Opens `datagrams` through the bulk path (all planned, then all opened, then all completed
/// in order); returns the delivered packets.
fn bulk_open(
    t: &mut Tunnel,
    now: std::time::Instant,
    from: std::net::SocketAddr,
    datagrams: &[Vec<u8>],
) -> Vec<Vec<u8>> {
    let mut bufs = datagrams.to_vec();
    let jobs: Vec<Option<OpenJob>> = bufs.iter().map(|d| t.plan_open(now, from, d)).collect();
    let opened: Vec<_> = jobs
        .iter()
        .zip(&mut bufs)
        .map(|(job, buf)| job.as_ref().map(|j| j.open(buf)))
        .collect();
    let mut delivered = Vec::new();
    for ((job, result), buf) in jobs.iter().zip(opened).zip(&bufs) {
        let (Some(job), Some(result)) = (job, result) else {
            continue;
        };
        let plain = result.ok().map(|len| &buf[16..16 + len]);
        if let Some(len) = t.complete_open(now, from, job, plain) {
            delivered.push(buf[16..16 + len].to_vec());
        }
    }
    delivered
}

fn drain_transmits(t: &mut Tunnel) -> Vec<Vec<u8>> {
    let mut wire = vec![0u8; 4096];
    let mut out = Vec::new();
    while let Some(tx) = t.poll_transmit(&mut wire) {
        out.push(wire[..tx.len].to_vec());
    }
    out
}

fn drain_delivered(t: &mut Tunnel) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(event) = t.poll_event() {
        if let Event::Deliver { packet, .. } = event {
            out.push(packet.to_vec());
        }
    }
    out
}

/// A pair with a confirmed session both ways.
fn established() -> Pair {
    let mut pair = Pair::new();
    pair.send_a(b"hello");
    pair.send_b(b"back");
    pair
}

#[test]
fn test_bulk_matches_one_packet_path() {
    let mut slow = established();
    let mut bulk = established();
    let packets: Vec<_> = (0..40).map(|i| packet_a(i * 37 % 1400, i as u8)).collect();
    let now = slow.now;
    for p in &packets {
        slow.a.handle_outgoing(now, p);
    }
    let slow_wire = drain_transmits(&mut slow.a);
    let bnow = bulk.now;
    let (bulk_wire, fallbacks) = bulk_seal(&mut bulk.a, bnow, &packets);
    assert_eq!(fallbacks, 0);
    assert_eq!(bulk_wire, slow_wire, "identical datagrams");
    assert!(drain_transmits(&mut bulk.a).is_empty());
    for d in &slow_wire {
        slow.b.handle_incoming(now, slow.a_addr, d);
    }
    let slow_delivered = drain_delivered(&mut slow.b);
    let bulk_delivered = bulk_open(&mut bulk.b, bnow, bulk.a_addr, &bulk_wire);
    assert_eq!(slow_delivered, packets);
    assert_eq!(bulk_delivered, packets);
    for (s, b, sid, bid) in [
        (&slow.a, &bulk.a, slow.a_peer, bulk.a_peer),
        (&slow.b, &bulk.b, slow.b_peer, bulk.b_peer),
    ] {
        let (sp, bp) = (s.peer(sid).unwrap(), b.peer(bid).unwrap());
        assert_eq!(
            (sp.tx_bytes(), sp.rx_bytes()),
            (bp.tx_bytes(), bp.rx_bytes())
        );
        assert_eq!(sp.endpoint(), bp.endpoint());
        assert_eq!(
            s.poll_timeout().map(|t| t - slow.start),
            b.poll_timeout().map(|t| t - bulk.start),
            "same timers"
        );
        assert_eq!(s.counters(), b.counters());
    }
    // And the timers keep running the same: a keepalive from B after 10 s, on both.
    slow.advance_to(Duration::from_secs(30));
    bulk.advance_to(Duration::from_secs(30));
    let kinds = |p: &Pair| -> Vec<_> { p.log.iter().map(|s| (s.at, s.from, s.ty)).collect() };
    assert_eq!(kinds(&slow), kinds(&bulk));
}

#[test]
fn test_duplicates_in_one_batch_and_forgeries_are_dropped() {
    let mut pair = established();
    let now = pair.now;
    let packets = vec![packet_a(100, 1), packet_a(200, 2)];
    let (wire, _) = bulk_seal(&mut pair.a, now, &packets);
    let mut forged = wire[1].clone();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    // A duplicate of the first in the same batch passes planning (the window is only read)
    // but not completion; the forgery fails to open and does not burn its counter.
    let batch = vec![wire[0].clone(), wire[0].clone(), forged];
    let before = pair.b.counters().clone();
    let delivered = bulk_open(&mut pair.b, now, pair.a_addr, &batch);
    assert_eq!(delivered, vec![packets[0].clone()]);
    assert_eq!(
        pair.b.counters().rx_dropped_replay,
        before.rx_dropped_replay + 1
    );
    assert_eq!(
        pair.b.counters().rx_dropped_invalid,
        before.rx_dropped_invalid + 1
    );
    // Planning already rejects what the window has seen.
    let jobs = pair.b.plan_open(now, pair.a_addr, &wire[0]);
    assert!(jobs.is_none());
    assert_eq!(
        pair.b.counters().rx_dropped_replay,
        before.rx_dropped_replay + 2
    );
    // The genuine second message still opens.
    let delivered = bulk_open(&mut pair.b, now, pair.a_addr, &wire[1..]);
    assert_eq!(delivered, vec![packets[1].clone()]);
    // Only authenticated bytes are counted.
    let peer = pair.b.peer(pair.b_peer).unwrap();
    let expected: u64 = [wire[0].len(), wire[1].len()]
        .iter()
        .map(|&l| l as u64)
        .sum();
    let base = established().b.peer(pair.b_peer).unwrap().rx_bytes();
    assert_eq!(peer.rx_bytes(), base + expected);
}

#[test]
fn test_without_session_packets_are_staged_and_a_handshake_starts() {
    let mut pair = Pair::new();
    let now = pair.now;
    let packets = vec![packet_a(10, 1), packet_a(20, 2)];
    let (wire, fallbacks) = bulk_seal(&mut pair.a, now, &packets);
    assert!(wire.is_empty());
    assert_eq!(fallbacks, 2);
    assert_eq!(pair.a.peer(pair.a_peer).unwrap().staged_len(), 2);
    // The initiation is queued; the exchange then sends the staged packets.
    pair.drive();
    assert_eq!(
        pair.sent(super::util::Side::A, MessageType::HandshakeInitiation)
            .len(),
        1
    );
    let got: Vec<_> = pair.b_delivered.iter().map(|(_, p)| p.clone()).collect();
    assert_eq!(got, packets);
    // Now the bulk path is open.
    let (wire, fallbacks) = bulk_seal(&mut pair.a, now, &packets);
    assert_eq!((wire.len(), fallbacks), (2, 0));
    // No route, or no room for the header: counted or staged as one packet.
    let stray = ipv4_packet("10.0.0.1", "10.9.9.9", b"x");
    let mut buf = vec![0; 200];
    buf[16..16 + stray.len()].copy_from_slice(&stray);
    assert!(pair.a.plan_seal(now, &mut buf, 16, stray.len()).is_none());
    assert_eq!(pair.a.counters().tx_dropped_no_route, 1);
    let p = packet_a(30, 3);
    let mut tight = p.clone();
    assert!(pair.a.plan_seal(now, &mut tight, 0, p.len()).is_none());
    assert_eq!(
        drain_transmits(&mut pair.a).len(),
        1,
        "sent by the one-packet path"
    );
}

#[test]
fn test_bulk_confirms_the_responders_session_and_rekeys_after_messages() {
    let mut pair = Pair::new();
    let now = pair.now;
    // A initiates; deliver initiation and response by hand so that A's first data message
    // reaches B through the bulk path, with B's keypair still unconfirmed.
    pair.a.handle_outgoing(now, &packet_a(1, 0));
    let init = drain_transmits(&mut pair.a);
    pair.b.handle_incoming(now, pair.a_addr, &init[0]);
    pair.b.process_handshakes(now, usize::MAX);
    let resp = drain_transmits(&mut pair.b);
    pair.a.handle_incoming(now, pair.b_addr, &resp[0]);
    pair.a.process_handshakes(now, usize::MAX);
    let first = drain_transmits(&mut pair.a);
    assert_eq!(first.len(), 1);
    assert!(pair
        .b
        .peer(pair.b_peer)
        .unwrap()
        .current_keypair()
        .is_none());
    let delivered = bulk_open(&mut pair.b, now, pair.a_addr, &first);
    assert_eq!(delivered, vec![packet_a(1, 0)]);
    assert!(pair
        .b
        .peer(pair.b_peer)
        .unwrap()
        .current_keypair()
        .is_some());
    assert!(matches!(
        pair.b.poll_event(),
        Some(Event::HandshakeComplete { .. })
    ));
    // B now sends on the bulk path at once.
    let back = ipv4_packet("10.0.0.2", "10.0.0.1", b"pong");
    let (wire, fallbacks) = bulk_seal(&mut pair.b, now, &[back]);
    assert_eq!((wire.len(), fallbacks), (1, 0));
    // Past REKEY_AFTER_MESSAGES, sending on the bulk path starts a new handshake.
    let later = now + Duration::from_secs(6);
    pair.a
        .peer_mut(pair.a_peer)
        .unwrap()
        .current_keypair_mut()
        .unwrap()
        .set_send_counter(REKEY_AFTER_MESSAGES + 1);
    let (wire, _) = bulk_seal(&mut pair.a, later, &[packet_a(5, 5)]);
    assert_eq!(&wire[0][8..16], &(REKEY_AFTER_MESSAGES + 1).to_le_bytes());
    let queued = drain_transmits(&mut pair.a);
    assert_eq!(queued.len(), 1);
    assert_eq!(
        MessageType::classify(&queued[0]),
        Some(MessageType::HandshakeInitiation)
    );
    // The last counter below REJECT_AFTER_MESSAGES is used; after it the keypair no longer
    // sends and packets wait for the new session.
    pair.a
        .peer_mut(pair.a_peer)
        .unwrap()
        .current_keypair_mut()
        .unwrap()
        .set_send_counter(REJECT_AFTER_MESSAGES - 1);
    let (wire, fallbacks) = bulk_seal(&mut pair.a, later, &[packet_a(6, 6), packet_a(7, 7)]);
    assert_eq!((wire.len(), fallbacks), (1, 1));
    assert_eq!(&wire[0][8..16], &(REJECT_AFTER_MESSAGES - 1).to_le_bytes());
    assert_eq!(pair.a.peer(pair.a_peer).unwrap().staged_len(), 1);
}
