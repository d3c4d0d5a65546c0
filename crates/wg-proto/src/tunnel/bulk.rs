//! The bulk data path: each direction split into *plan* → *crypto* → *complete*, so the
//! caller can run the AEAD of a whole batch on several threads while this state machine stays
//! single-owner.
//!
//! * Send: [`Tunnel::plan_seal`] routes one IP packet (lying in a caller buffer with at least
//!   [`TRANSPORT_HEADER_LEN`] bytes of headroom before it and room for padding and the tag
//!   after it), takes the next counter of the peer's current keypair, writes the transport
//!   header into the headroom and the zero padding after the packet, updates statistics and
//!   timers, and returns a [`SealJob`]. A packet that cannot take this path (no usable
//!   keypair, packets already staged behind a handshake, no room) goes through
//!   [`Tunnel::handle_outgoing`] instead, whose datagrams come out of `poll_transmit`: send
//!   those before the sealed ones, so each keypair's counters leave in increasing order.
//! * Receive: [`Tunnel::plan_open`] looks up a transport message's keypair, rejects expired,
//!   exhausted and already-seen counters (reading the replay window, not updating it) and
//!   returns an [`OpenJob`]; any other WireGuard message goes to
//!   [`Tunnel::handle_incoming`]. After decryption, [`Tunnel::complete_open`], called in
//!   batch order, makes the authoritative replay check (a duplicate within one batch is
//!   dropped here), confirms sessions, roams the endpoint, runs timers, checks the inner
//!   packet's source against the allowed IPs, counts bytes (a keepalive's, or a packet's that
//!   passed that check, as the kernel does) and returns the packet's length without padding.
//!   The plaintext lies [`TRANSPORT_HEADER_LEN`] bytes after the datagram's start, so that
//!   much headroom is free before a delivered packet.
//!
//! The jobs' crypto is [`SealJob::seal`] / [`OpenJob::open`], pure functions of the job and
//! the buffer, safe to run on any thread. Statistics and timers are the same as the one-packet
//! path's, packet for packet.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::messages::{MessageType, TransportData, TAG_LEN, TRANSPORT_HEADER_LEN};
use crate::peer::PeerId;
use crate::session::{open_in_place, padded_len, seal_in_place, SessionError, TransportKey};

use super::{parse_inner, Tunnel};

/// A data message planned by [`Tunnel::plan_seal`], to seal and then send.
#[derive(Debug, Clone)]
pub struct SealJob {
    /// The peer it goes to.
    pub peer: PeerId,
    /// Where to send it.
    pub dst: SocketAddr,
    /// The message's start in the buffer given to `plan_seal` (its header is written).
    pub start: usize,
    /// The message's length: header, padded packet and tag.
    pub len: usize,
    key: Arc<TransportKey>,
    counter: u64,
}

impl SealJob {
    /// The message's byte range in the buffer.
    pub fn range(&self) -> std::ops::Range<usize> {
        self.start..self.start + self.len
    }

    /// The send counter (the AEAD nonce) the message carries.
    pub fn counter(&self) -> u64 {
        self.counter
    }

    /// Encrypts the message in place: `message` is the buffer's [`range`](Self::range).
    pub fn seal(&self, message: &mut [u8]) -> Result<(), SessionError> {
        let body = message
            .get_mut(TRANSPORT_HEADER_LEN..)
            .ok_or(SessionError::BufferTooSmall)?;
        seal_in_place(&self.key, self.counter, body)
    }

    /// The key and counter, for callers that run the AEAD themselves (on `message[16..]`,
    /// with [`seal_in_place`]).
    pub fn key(&self) -> (&TransportKey, u64) {
        (&self.key, self.counter)
    }
}

/// A transport message planned by [`Tunnel::plan_open`], to decrypt and then complete.
#[derive(Debug, Clone)]
pub struct OpenJob {
    /// The peer it claims to come from.
    pub peer: PeerId,
    index: u32,
    counter: u64,
    key: Arc<TransportKey>,
}

impl OpenJob {
    /// Authenticates and decrypts the datagram in place; on success the padded plaintext is
    /// `datagram[16..16 + len]` with the returned `len`.
    pub fn open(&self, datagram: &mut [u8]) -> Result<usize, SessionError> {
        let body = datagram
            .get_mut(TRANSPORT_HEADER_LEN..)
            .ok_or(SessionError::Decrypt)?;
        open_in_place(&self.key, self.counter, body)
    }

    /// The key and counter, for callers that run the AEAD themselves (on `datagram[16..]`,
    /// with [`open_in_place`]).
    pub fn key(&self) -> (&TransportKey, u64) {
        (&self.key, self.counter)
    }
}

impl Tunnel {
    /// [`with_peer`](Tunnel::with_peer) for the per-packet calls of the bulk path, with one
    /// hash lookup instead of three: the timer schedule is updated through the peer already
    /// borrowed, and settled only when its top entry is this peer's. That is enough to keep
    /// the top exact: before the call it was some peer's real next deadline; only this
    /// peer's timers changed, so the top can have become stale only if it is this peer's
    /// entry (a deadline moved later or went away), and an entry pushed here is this peer's
    /// real next deadline.
    fn with_peer_bulk<T>(
        &mut self,
        now: Instant,
        id: PeerId,
        f: impl FnOnce(&mut crate::peer::Peer, &mut crate::peer::Ctx<'_>) -> T,
    ) -> Option<T> {
        let (out, super::PeerDeadlines { next, scheduled }) = self.run_on_peer(now, id, f)?;
        self.compact_schedule();
        let stale_top = match self.schedule.peek() {
            Some(&std::cmp::Reverse((at, top))) if top == id => {
                scheduled != Some(at) || next != Some(at)
            }
            _ => false,
        };
        if stale_top {
            self.settle_schedule();
        }
        Some(out)
    }

    /// Plans the sealing of the IP packet `buf[offset..offset + len]` (the bulk send path:
    /// plan here, seal anywhere with [`SealJob::seal`], send in plan order after the datagrams
    /// of [`poll_transmit`](Self::poll_transmit)). The message will be `buf[offset - 16..]`,
    /// padded and with its tag. Returns `None` when the packet was handled otherwise (staged for a handshake and
    /// perhaps sent through [`poll_transmit`](Self::poll_transmit), or dropped and counted).
    pub fn plan_seal(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        offset: usize,
        len: usize,
    ) -> Option<SealJob> {
        if !self.up {
            self.counters.tx_dropped_down += 1;
            return None;
        }
        let packet = buf.get(offset..offset + len)?;
        let Some((_, _, dst)) = parse_inner(packet) else {
            self.counters.tx_dropped_no_route += 1;
            return None;
        };
        let Some(id) = self.allowed_ips.lookup(dst) else {
            self.counters.tx_dropped_no_route += 1;
            return None;
        };
        let padded = padded_len(len, self.mtu);
        let wire_len = TRANSPORT_HEADER_LEN + padded + TAG_LEN;
        let fits = offset >= TRANSPORT_HEADER_LEN && offset + padded + TAG_LEN <= buf.len();
        let planned = if fits {
            self.with_peer_bulk(now, id, |peer, ctx| peer.plan_send(ctx, now, wire_len))
                .flatten()
        } else {
            None
        };
        let Some((key, remote_index, counter, dst)) = planned else {
            // No route for the fast path: stage it (or drop it) as one packet.
            let packet = &buf[offset..offset + len];
            self.handle_outgoing(now, packet);
            return None;
        };
        let start = offset - TRANSPORT_HEADER_LEN;
        let mut header = TransportData::new_unchecked(&mut buf[start..offset]);
        header.set_message_type();
        header.set_receiver_index(remote_index);
        header.set_counter(counter);
        buf[offset + len..offset + padded].fill(0);
        Some(SealJob {
            peer: id,
            dst,
            start,
            len: wire_len,
            key,
            counter,
        })
    }

    /// Plans the opening of one received WireGuard datagram: an [`OpenJob`] for a transport
    /// message that may be accepted; anything else is handled at once as by
    /// [`handle_incoming`](Self::handle_incoming) (or dropped and counted) and gives `None`.
    pub fn plan_open(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
    ) -> Option<OpenJob> {
        if !self.up || MessageType::classify(datagram) != Some(MessageType::TransportData) {
            self.handle_incoming(now, from, datagram);
            return None;
        }
        let msg = TransportData::new_unchecked(datagram);
        let (index, counter) = (msg.receiver_index(), msg.counter());
        let Some(&id) = self.indices.get(&index) else {
            self.counters.rx_dropped_unknown_index += 1;
            return None;
        };
        let peer = self.peers.get(&id)?;
        let key = peer.plan_receive(&mut self.counters, now, index, counter)?;
        Some(OpenJob {
            peer: id,
            index,
            counter,
            key,
        })
    }

    /// Completes a planned transport message from `from`, in batch order: `plaintext` is what
    /// [`OpenJob::open`] produced (`None` if it failed to authenticate). Returns the length of
    /// the inner packet to deliver (the plaintext's start without padding), or `None` for a
    /// keepalive or a dropped message (counted).
    pub fn complete_open(
        &mut self,
        now: Instant,
        from: SocketAddr,
        job: &OpenJob,
        plaintext: Option<&[u8]>,
    ) -> Option<usize> {
        let Some(plaintext) = plaintext else {
            self.counters.rx_dropped_invalid += 1;
            return None;
        };
        let wire_len = TRANSPORT_HEADER_LEN + plaintext.len() + TAG_LEN;
        let keepalive = plaintext.is_empty();
        // The inner checks read only the packet and the allowed IPs, so their verdict is
        // known before the peer's call, which counts the bytes of a keepalive or of a packet
        // to deliver (as the one-packet path does); a drop is counted after the replay check.
        let verdict = if keepalive {
            Ok(0)
        } else {
            self.inspect_inner(job.peer, plaintext)
        };
        let counted = if verdict.is_ok() { wire_len } else { 0 };
        let deliver = self.with_peer_bulk(now, job.peer, |peer, ctx| {
            peer.complete_receive(ctx, now, from, job.index, job.counter, counted, keepalive)
        });
        match deliver {
            None => {
                // The peer was removed since planning.
                self.counters.rx_dropped_unknown_index += 1;
                return None;
            }
            Some(false) => return None,
            Some(true) => {}
        }
        self.count_inner(verdict)
    }
}
