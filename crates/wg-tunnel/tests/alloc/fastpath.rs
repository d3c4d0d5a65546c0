//! The device's fast path allocates nothing per packet once warm: `Interface::send_packets`
//! (plan, seal on the crypto pool, send) and `Interface::receive_datagrams` (receive, plan,
//! open on the pool, complete) between two interfaces on loopback. Measured with the
//! counting allocator of `tests/alloc/main.rs` on the event-loop thread; the pool's workers only
//! run AEAD over borrowed buffers.

use std::time::{Duration, Instant};

use super::allocations;
use wg_config::key::Key as _;
use wg_config::PrivateKey;
use wg_testkit::{ipv4_packet as ipv4, uapi_set as delta};
use wg_tunnel::batch::{Batch, SLOT_LEN};
use wg_tunnel::crypto::Pool;
use wg_tunnel::device::{Interface, HEADROOM};

/// The buffers of one side, allocated once.
struct Side {
    iface: Interface,
    rx: Batch,
    out: Batch,
}

impl Side {
    /// One receive round: returns how many packets the bulk path delivered.
    fn pass(&mut self, pool: &mut Pool) -> usize {
        self.rx.clear();
        self.iface.bind().recv_batch(&mut self.rx);
        let now = Instant::now();
        self.iface.receive_datagrams(now, &mut self.rx, pool);
        self.iface.process_handshakes(now, usize::MAX);
        self.iface.handle_timeout(now);
        self.iface.flush_datagrams(&mut self.out);
        self.rx.len()
    }
}

#[test]
fn test_no_allocation_per_packet() {
    let (ka, kb) = ("a0".repeat(32), "b0".repeat(32));
    let public = |k: &str| PrivateKey::from_hex(k).unwrap().public_key().to_hex();
    let side = |name| Side {
        iface: Interface::new(name).unwrap(),
        rx: Batch::for_data_path(),
        out: Batch::for_data_path(),
    };
    let (mut a, mut b) = (side("a0"), side("b0"));
    let (port_a, port_b) = (a.iface.bind().port(), b.iface.bind().port());
    let epoch = Duration::from_secs(1_700_000_000);
    for (s, key, peer, port, ip) in [
        (&mut a, &ka, public(&kb), port_b, "10.0.0.2"),
        (&mut b, &kb, public(&ka), port_a, "10.0.0.1"),
    ] {
        s.iface.set_link_up(Instant::now(), true);
        let body = format!(
            "private_key={key}\npublic_key={peer}\nendpoint=127.0.0.1:{port}\nallowed_ip={ip}/32"
        );
        s.iface.set(Instant::now(), epoch, &delta(&body)).unwrap();
    }
    let mut pool = Pool::new(1);
    let mut tx = Batch::new(128, SLOT_LEN);
    let packet = ipv4([10, 0, 0, 1], [10, 0, 0, 2], &[0x55; 1380]);
    const N: usize = 64;
    // Sends N packets from A and receives them on B; returns how many arrived.
    let mut round = |a: &mut Side, b: &mut Side, pool: &mut Pool, n: usize| -> usize {
        tx.clear();
        for _ in 0..n {
            let slot = tx.free_slot().unwrap();
            slot[HEADROOM..HEADROOM + packet.len()].copy_from_slice(&packet);
            tx.commit_at(HEADROOM, packet.len(), None);
        }
        a.iface
            .send_packets(Instant::now(), &mut tx, pool, &mut a.out);
        let mut got = 0;
        let start = Instant::now();
        while got < n && start.elapsed() < Duration::from_secs(5) {
            got += b.pass(pool);
            a.pass(pool);
        }
        got
    };
    // The handshake (the first packet is staged), then warm-up rounds.
    let start = Instant::now();
    let mut first = round(&mut a, &mut b, &mut pool, 1);
    while first == 0 && start.elapsed() < Duration::from_secs(5) {
        first += b.pass(&mut pool);
        a.pass(&mut pool);
    }
    assert_eq!(first, 1, "no session");
    for _ in 0..10 {
        assert_eq!(round(&mut a, &mut b, &mut pool, N), N);
    }
    let before = allocations();
    let mut delivered = 0;
    for _ in 0..100 {
        delivered += round(&mut a, &mut b, &mut pool, N);
    }
    assert_eq!(delivered, 100 * N);
    let allocated = allocations() - before;
    // A handful may remain, not per packet (timer heap growth to a new record, as in
    // wg-proto's own test).
    assert!(
        allocated <= 16,
        "{allocated} allocations for {delivered} packets"
    );
}
