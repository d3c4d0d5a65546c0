//! The UDP side of the data path allocates nothing per call once warm: `Bind::send_batch`
//! and `Bind::recv_batch` reuse the message arrays kept in the `Bind`, with the offloads on
//! and off. Measured with the counting allocator of `tests/alloc/main.rs`.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Instant;

use super::allocations;
use wg_tunnel::batch::{Batch, SLOT_LEN};
use wg_tunnel::bind::Bind;

/// Sends 64 datagrams of 1400 bytes (and a short one) and receives them all, `rounds` times.
fn rounds(tx: &Bind, rx: &Bind, out: &Batch, inbound: &mut Batch, rounds: usize) {
    for _ in 0..rounds {
        assert!(tx.send_batch(out).is_none());
        inbound.clear();
        let start = Instant::now();
        while inbound.len() < out.len() {
            assert!(start.elapsed().as_secs() < 5, "lost datagrams");
            assert!(rx.recv_batch(inbound).is_none());
        }
        assert_eq!(inbound.len(), out.len());
    }
}

#[test]
fn test_no_allocation_per_call() {
    for offloads in [true, false] {
        let (tx, rx) = (Bind::new(0, 0).unwrap(), Bind::new(0, 0).unwrap());
        tx.set_offloads(offloads, offloads);
        rx.set_offloads(offloads, offloads);
        let dst = SocketAddr::from((Ipv4Addr::LOCALHOST, rx.port()));
        let mut out = Batch::new(65, 2048);
        for i in 0..65 {
            let len = if i == 64 { 100 } else { 1400 };
            out.free_slot().unwrap()[16..16 + len].fill(i as u8);
            out.commit_at(16, len, Some(dst));
        }
        let mut inbound = Batch::new(65, SLOT_LEN);
        // Warm: the receive batch's entry list grows to what coalesced slots need.
        rounds(&tx, &rx, &out, &mut inbound, 3);
        let before = allocations();
        rounds(&tx, &rx, &out, &mut inbound, 50);
        assert_eq!(allocations() - before, 0, "offloads {offloads}");
        assert_eq!(tx.gso(), offloads);
        assert_eq!(rx.gro(), offloads);
    }
}
