//! Batches of packets in reusable buffers: the unit the I/O shell moves data in.
//!
//! A [`Batch`] is one arena of `capacity` fixed-size slots plus, per filled slot, its length
//! and its peer address (the UDP source or destination; unused for TUN packets). It is
//! allocated once, when the loop starts, and reused for every round, so the data path
//! allocates nothing per packet. The arena is zero-initialised by the allocator lazily
//! (fresh pages are mapped on first write), so slots sized for the largest packet cost
//! resident memory only for the bytes actually received.
//!
//! Today the fill and drain functions ([`crate::bind::Bind::recv_batch`],
//! [`crate::bind::Bind::send_batch`], [`crate::tun::Tun::recv_batch`]) loop over one
//! system call per packet; they are the places where `recvmmsg`/`sendmmsg`, UDP GSO/GRO and
//! TUN offloads slot in, without changing the loop or the protocol side.

use std::net::{Ipv4Addr, SocketAddr};

/// Packets handled per batch.
pub const BATCH: usize = 64;
/// A slot holds any IP packet (up to the largest MTU) or any datagram.
pub const SLOT_LEN: usize = 65_536 + 64;

/// Up to `capacity` packets, each in its own slot of one arena.
#[derive(Debug)]
pub struct Batch {
    arena: Vec<u8>,
    slot_len: usize,
    capacity: usize,
    meta: Vec<(usize, SocketAddr)>,
}

/// The address recorded for packets that have none (TUN packets).
const NO_ADDR: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);

impl Batch {
    /// An empty batch of `capacity` slots of `slot_len` bytes.
    pub fn new(capacity: usize, slot_len: usize) -> Batch {
        Batch {
            arena: vec![0; capacity * slot_len],
            slot_len,
            capacity,
            meta: Vec::with_capacity(capacity),
        }
    }

    /// The default size for the data path: [`BATCH`] slots of [`SLOT_LEN`].
    pub fn for_data_path() -> Batch {
        Batch::new(BATCH, SLOT_LEN)
    }

    /// How many packets the batch holds.
    pub fn len(&self) -> usize {
        self.meta.len()
    }

    /// Whether the batch holds no packet.
    pub fn is_empty(&self) -> bool {
        self.meta.is_empty()
    }

    /// Whether every slot is filled.
    pub fn is_full(&self) -> bool {
        self.meta.len() == self.capacity
    }

    /// Empties the batch (the arena is kept).
    pub fn clear(&mut self) {
        self.meta.clear();
    }

    /// The next free slot, whole, to receive into; `None` when full. Commit what was
    /// written with [`commit`](Self::commit).
    pub fn free_slot(&mut self) -> Option<&mut [u8]> {
        let i = self.meta.len();
        if i == self.capacity {
            return None;
        }
        Some(&mut self.arena[i * self.slot_len..(i + 1) * self.slot_len])
    }

    /// Records that the free slot now holds `len` bytes from or for `addr`.
    pub fn commit(&mut self, len: usize, addr: Option<SocketAddr>) {
        debug_assert!(len <= self.slot_len && !self.is_full());
        self.meta
            .push((len.min(self.slot_len), addr.unwrap_or(NO_ADDR)));
    }

    /// The packets, in order, with their addresses.
    pub fn iter(&self) -> impl Iterator<Item = (SocketAddr, &[u8])> + '_ {
        self.meta.iter().enumerate().map(|(i, &(len, addr))| {
            let start = i * self.slot_len;
            (addr, &self.arena[start..start + len])
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_fill_iterate_clear() {
        let mut b = Batch::new(3, 8);
        let from: SocketAddr = "192.0.2.1:5".parse().unwrap();
        for (i, text) in [&b"ab"[..], b"", b"12345678"].into_iter().enumerate() {
            let slot = b.free_slot().unwrap();
            assert_eq!(slot.len(), 8);
            slot[..text.len()].copy_from_slice(text);
            b.commit(text.len(), (i == 0).then_some(from));
        }
        assert!(b.is_full() && b.free_slot().is_none());
        let got: Vec<_> = b.iter().map(|(a, p)| (a, p.to_vec())).collect();
        assert_eq!(
            got,
            vec![
                (from, b"ab".to_vec()),
                (NO_ADDR, vec![]),
                (NO_ADDR, b"12345678".to_vec())
            ]
        );
        b.clear();
        assert!(b.is_empty());
        assert_eq!(
            b.free_slot().unwrap()[..2],
            *b"ab",
            "the arena is reused as is"
        );
    }
}
