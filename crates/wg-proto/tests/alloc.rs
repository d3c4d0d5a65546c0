//! The data path allocates nothing per packet once warm: encrypting, sending, receiving,
//! decrypting and delivering reuse pooled buffers. Measured with `wg_testkit`'s counting global
//! allocator (this integration-test binary only: the library itself forbids `unsafe`) whose
//! counter is per thread, so parallel tests do not disturb it.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use wg_proto::{Event, PeerConfig, Tunnel};
use wg_testkit::{allocations, ipv4_packet, Counting};

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The allocator is installed in this binary (otherwise the zero-allocation checks here
/// would pass vacuously).
#[test]
fn counting_allocator_is_installed() {
    wg_testkit::assert_counting_installed();
}

fn peer(tunnel: &Tunnel, endpoint: SocketAddr, ip: [u8; 4]) -> PeerConfig {
    PeerConfig {
        public_key: *tunnel.public_key(),
        endpoint: Some(endpoint),
        allowed_ips: vec![(IpAddr::from(ip), 32)],
        ..Default::default()
    }
}

#[test]
#[allow(clippy::disallowed_methods)] // a base instant for the test's own clock
fn test_no_allocation_per_packet() {
    let now = Instant::now();
    let wall = Duration::from_secs(1_700_000_000);
    let (a_addr, b_addr): (SocketAddr, SocketAddr) = (
        "192.0.2.1:1".parse().unwrap(),
        "192.0.2.2:2".parse().unwrap(),
    );
    let mut a = Tunnel::new([0x0a; 32], [1; 32], now, wall);
    let mut b = Tunnel::new([0x0b; 32], [2; 32], now, wall);
    let (ip_a, ip_b) = ([10, 0, 0, 1], [10, 0, 0, 2]);
    a.add_peer(now, peer(&b, b_addr, ip_b)).unwrap();
    b.add_peer(now, peer(&a, a_addr, ip_a)).unwrap();
    let a_to_b = ipv4_packet(ip_a, ip_b, &[0x55; 1400]);
    let b_to_a = ipv4_packet(ip_b, ip_a, &[0x66; 100]);
    let mut wire = vec![0u8; 2048];
    // Moves datagrams both ways until both sides are quiet.
    let mut pump = |a: &mut Tunnel, b: &mut Tunnel| loop {
        let mut moved = false;
        while let Some(t) = a.poll_transmit(&mut wire) {
            b.handle_incoming(now, a_addr, &wire[..t.len]);
            b.process_handshakes(now, usize::MAX);
            moved = true;
        }
        while let Some(t) = b.poll_transmit(&mut wire) {
            a.handle_incoming(now, b_addr, &wire[..t.len]);
            a.process_handshakes(now, usize::MAX);
            moved = true;
        }
        if !moved {
            break;
        }
    };
    // Delivered packets of `len` bytes.
    let delivered = |t: &mut Tunnel, len: usize| {
        let mut n = 0;
        while let Some(event) = t.poll_event() {
            if let Event::Deliver { packet, .. } = event {
                assert_eq!(packet.len(), len);
                n += 1;
            }
        }
        n
    };
    // Eight packets each way, returning how many arrived.
    let mut round = |a: &mut Tunnel, b: &mut Tunnel| -> usize {
        for _ in 0..8 {
            a.handle_outgoing(now, &a_to_b);
        }
        pump(a, b);
        for _ in 0..8 {
            b.handle_outgoing(now, &b_to_a);
        }
        pump(a, b);
        delivered(b, a_to_b.len()) + delivered(a, b_to_a.len())
    };
    // Warm up (the handshake, the pools and the queues), then count.
    for _ in 0..10 {
        round(&mut a, &mut b);
    }
    let before = allocations();
    let mut delivered = 0;
    for _ in 0..400 {
        delivered += round(&mut a, &mut b);
    }
    assert_eq!(delivered, 6_400);
    // A handful of allocations remain, not per packet: growth of the timer heap (with the
    // clock frozen, a timer re-armed with random jitter now and then sets a record-low
    // deadline, which takes an entry) and of the buffer pool to a rare new peak in flight.
    let allocated = allocations() - before;
    assert!(allocated <= 16, "{allocated} allocations for 6,400 packets");
}

/// The bulk path (plan, seal or open, complete) allocates nothing per packet either.
#[test]
#[allow(clippy::disallowed_methods)] // a base instant for the test's own clock
fn test_bulk_path_no_allocation_per_packet() {
    let now = Instant::now();
    let wall = Duration::from_secs(1_700_000_000);
    let (a_addr, b_addr): (SocketAddr, SocketAddr) = (
        "192.0.2.1:1".parse().unwrap(),
        "192.0.2.2:2".parse().unwrap(),
    );
    let mut a = Tunnel::new([0x0a; 32], [1; 32], now, wall);
    let mut b = Tunnel::new([0x0b; 32], [2; 32], now, wall);
    let (ip_a, ip_b) = ([10, 0, 0, 1], [10, 0, 0, 2]);
    a.add_peer(now, peer(&b, b_addr, ip_b)).unwrap();
    b.add_peer(now, peer(&a, a_addr, ip_a)).unwrap();
    let a_to_b = ipv4_packet(ip_a, ip_b, &[0x55; 1400]);
    // Handshake through the one-packet path.
    let mut wire = vec![0u8; 2048];
    a.handle_outgoing(now, &a_to_b);
    for _ in 0..4 {
        while let Some(t) = a.poll_transmit(&mut wire) {
            b.handle_incoming(now, a_addr, &wire[..t.len]);
            b.process_handshakes(now, usize::MAX);
        }
        while let Some(t) = b.poll_transmit(&mut wire) {
            a.handle_incoming(now, b_addr, &wire[..t.len]);
            a.process_handshakes(now, usize::MAX);
        }
    }
    while b.poll_event().is_some() {}
    const N: usize = 32;
    let mut bufs = vec![vec![0u8; 1600]; N];
    let mut seals = Vec::with_capacity(N);
    let mut opens = Vec::with_capacity(N);
    let mut round = || -> usize {
        seals.clear();
        for buf in bufs.iter_mut() {
            buf[16..16 + a_to_b.len()].copy_from_slice(&a_to_b);
            seals.push(a.plan_seal(now, buf, 16, a_to_b.len()).expect("bulk path"));
        }
        for (job, buf) in seals.iter().zip(bufs.iter_mut()) {
            job.seal(&mut buf[job.range()]).unwrap();
            buf.copy_within(job.range(), 0);
        }
        opens.clear();
        for (job, buf) in seals.iter().zip(&bufs) {
            opens.push(b.plan_open(now, a_addr, &buf[..job.len]).expect("data"));
        }
        let mut delivered = 0;
        for ((job, buf), seal) in opens.iter().zip(bufs.iter_mut()).zip(&seals) {
            let len = job.open(&mut buf[..seal.len]).unwrap();
            if b.complete_open(now, a_addr, job, Some(&buf[16..16 + len])) == Some(a_to_b.len()) {
                delivered += 1;
            }
        }
        delivered
    };
    for _ in 0..10 {
        round();
    }
    let before = allocations();
    let mut delivered = 0;
    for _ in 0..200 {
        delivered += round();
    }
    assert_eq!(delivered, 200 * N);
    let allocated = allocations() - before;
    assert!(allocated <= 16, "{allocated} allocations for 6,400 packets");
}
