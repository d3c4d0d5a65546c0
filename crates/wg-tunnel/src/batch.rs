//! Batches of packets in reusable buffers: the unit the I/O shell moves data in.
//!
//! A [`Batch`] is one arena of `capacity` fixed-size *slots* plus a list of *entries*. An
//! entry is one packet or datagram: a byte range (`offset`, `len`) inside one slot, and its
//! peer address (the UDP source or destination; unused for TUN packets). Usually a slot
//! holds one entry at offset 0, but:
//! * an entry may start at an offset, leaving *headroom* before it (room to write a
//!   WireGuard transport header or a virtio-net header in place) and *tailroom* after it
//!   (padding and the AEAD tag), so packets are encrypted and decrypted in place;
//! * one slot may hold several entries (a UDP GRO receive puts several datagrams of one
//!   source into one buffer; each becomes its own entry).
//!
//! Entries are kept in order, and their slots never decrease. The batch is allocated once
//! when the loop starts and reused for every round, so the data path allocates nothing per
//! packet. The arena is zero-initialised by the allocator lazily (fresh pages are mapped on
//! first write), so slots sized for the largest packet cost resident memory only for the
//! bytes actually used.

use std::net::{Ipv4Addr, SocketAddr};

/// Packets handled per batch.
pub const BATCH: usize = 64;
/// A slot holds any IP packet (up to the largest MTU) or any datagram, with room around it.
pub const SLOT_LEN: usize = 65_536 + 64;

/// One packet of a batch: `len` bytes at `offset` in slot `slot`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// The slot holding the bytes.
    pub slot: u32,
    /// Where the bytes start in the slot.
    pub offset: u32,
    /// How many bytes.
    pub len: u32,
    /// The UDP peer ([`NO_ADDR`] for TUN packets).
    pub addr: SocketAddr,
}

impl Entry {
    /// The entry's byte range within its slot.
    pub fn range(&self) -> std::ops::Range<usize> {
        self.offset as usize..(self.offset + self.len) as usize
    }
}

/// Up to `capacity` slots of `slot_len` bytes, and the entries in them.
#[derive(Debug)]
pub struct Batch {
    arena: Vec<u8>,
    slot_len: usize,
    capacity: usize,
    /// Slots `0..used` hold entries (or were handed out and committed); the rest are free.
    used: usize,
    entries: Vec<Entry>,
}

/// The address recorded for packets that have none (TUN packets).
pub const NO_ADDR: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);

impl Batch {
    /// An empty batch of `capacity` slots of `slot_len` bytes.
    pub fn new(capacity: usize, slot_len: usize) -> Batch {
        Batch {
            arena: vec![0; capacity * slot_len],
            slot_len,
            capacity,
            used: 0,
            entries: Vec::with_capacity(capacity),
        }
    }

    /// The default size for the data path: [`BATCH`] slots of [`SLOT_LEN`].
    pub fn for_data_path() -> Batch {
        Batch::new(BATCH, SLOT_LEN)
    }

    /// The size of every slot.
    pub fn slot_len(&self) -> usize {
        self.slot_len
    }

    /// How many slots the batch has.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// How many packets (entries) the batch holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the batch holds no packet.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether every slot is used.
    pub fn is_full(&self) -> bool {
        self.used == self.capacity
    }

    /// How many slots are still free.
    pub fn free_slots(&self) -> usize {
        self.capacity - self.used
    }

    /// The index of the first free slot (equal to the capacity when full).
    pub fn first_free_slot(&self) -> usize {
        self.used
    }

    /// Empties the batch (the arena is kept).
    pub fn clear(&mut self) {
        self.entries.clear();
        self.used = 0;
    }

    /// The next free slot, whole, to receive into; `None` when full. Commit what was
    /// written with [`commit`](Self::commit) or [`commit_at`](Self::commit_at).
    pub fn free_slot(&mut self) -> Option<&mut [u8]> {
        if self.is_full() {
            return None;
        }
        let i = self.used;
        Some(self.slot_mut(i))
    }

    /// Every free slot, in order, whole (for a `recvmmsg` over many buffers). Record what
    /// was received with [`push`](Self::push).
    pub fn free_slots_mut(&mut self) -> std::slice::ChunksExactMut<'_, u8> {
        let start = self.used * self.slot_len;
        self.arena[start..].chunks_exact_mut(self.slot_len)
    }

    /// Records that the next free slot now holds `len` bytes at offset 0, from or for
    /// `addr`.
    pub fn commit(&mut self, len: usize, addr: Option<SocketAddr>) {
        self.commit_at(0, len, addr);
    }

    /// Records that the next free slot now holds `len` bytes at `offset`, from or for `addr`.
    pub fn commit_at(&mut self, offset: usize, len: usize, addr: Option<SocketAddr>) {
        debug_assert!(!self.is_full());
        self.push(self.used, offset, len, addr);
    }

    /// Records an entry of `len` bytes at `offset` in slot `slot`, which must be the last
    /// used slot (another entry in the same slot) or a free one (free slots before it are
    /// then used, empty). The range is clamped to the slot.
    pub fn push(&mut self, slot: usize, offset: usize, len: usize, addr: Option<SocketAddr>) {
        debug_assert!(slot < self.capacity && slot + 1 >= self.used);
        let slot = slot.min(self.capacity - 1);
        let offset = offset.min(self.slot_len);
        let len = len.min(self.slot_len - offset);
        self.used = self.used.max(slot + 1);
        self.entries.push(Entry {
            slot: slot as u32,
            offset: offset as u32,
            len: len as u32,
            addr: addr.unwrap_or(NO_ADDR),
        });
    }

    /// The entries, in order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The entries, to change in place (for example, an entry's range after decryption, or
    /// its length to 0 to drop it). Keep each range inside its slot.
    pub fn entries_mut(&mut self) -> &mut [Entry] {
        &mut self.entries
    }

    /// Keeps only the entries for which `keep` is true, in order (for example, dropping the
    /// entries whose length was set to 0). Slots stay used.
    pub fn retain_entries(&mut self, keep: impl FnMut(&Entry) -> bool) {
        self.entries.retain(keep);
    }

    /// Slot `i`, whole.
    pub fn slot(&self, i: usize) -> &[u8] {
        &self.arena[i * self.slot_len..(i + 1) * self.slot_len]
    }

    /// Slot `i`, whole, to write.
    pub fn slot_mut(&mut self, i: usize) -> &mut [u8] {
        &mut self.arena[i * self.slot_len..(i + 1) * self.slot_len]
    }

    /// The bytes of entry `i`.
    pub fn data(&self, i: usize) -> &[u8] {
        let e = self.entries[i];
        &self.slot(e.slot as usize)[e.range()]
    }

    /// Every slot, whole and disjoint, in order (for handing slots to worker threads).
    pub fn slots_mut(&mut self) -> std::slice::ChunksExactMut<'_, u8> {
        self.arena.chunks_exact_mut(self.slot_len)
    }

    /// The packets, in order, with their addresses.
    pub fn iter(&self) -> impl Iterator<Item = (SocketAddr, &[u8])> + '_ {
        self.entries.iter().map(|e| {
            (
                e.addr,
                &self.arena[e.slot as usize * self.slot_len..][e.range()],
            )
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

    #[test]
    fn test_offsets_and_several_entries_per_slot() {
        let mut b = Batch::new(4, 16);
        let from: SocketAddr = "[2001:db8::1]:7".parse().unwrap();
        // A headroom entry in slot 0.
        b.free_slot().unwrap()[4..7].copy_from_slice(b"abc");
        b.commit_at(4, 3, None);
        // Two datagrams in slot 2 (slot 1 skipped, as a recvmmsg might leave it).
        let mut free = b.free_slots_mut();
        free.next().unwrap();
        free.next().unwrap()[..6].copy_from_slice(b"xyzuvw");
        b.push(2, 0, 3, Some(from));
        b.push(2, 3, 3, Some(from));
        assert_eq!(b.len(), 3);
        assert_eq!(b.free_slots(), 1);
        assert_eq!(b.first_free_slot(), 3);
        assert_eq!(b.data(0), b"abc");
        let got: Vec<_> = b.iter().map(|(a, p)| (a, p.to_vec())).collect();
        assert_eq!(
            got,
            vec![
                (NO_ADDR, b"abc".to_vec()),
                (from, b"xyz".to_vec()),
                (from, b"uvw".to_vec())
            ]
        );
        // An entry shrunk in place (as decryption does), and one dropped.
        b.entries_mut()[1].offset += 1;
        b.entries_mut()[1].len = 1;
        b.entries_mut()[2].len = 0;
        assert_eq!(b.data(1), b"y");
        assert_eq!(b.data(2), b"");
        // Ranges are clamped to the slot.
        b.push(3, 10, 100, None);
        assert_eq!(b.entries()[3].range(), 10..16);
        assert!(b.is_full());
        assert_eq!(b.slots_mut().count(), 4);
    }
}
