//! One peer: its keypair slots, handshake in flight, timers, staged packets and endpoint.
//!
//! This is the per-peer half of the kernel's `send.c`, `receive.c` and `timers.c`. Keypairs
//! live in three slots (whitepaper §6.3 and the kernel's `noise_keypairs`): `current` sends,
//! `previous` still receives packets in flight from before a rekey, and `next` holds a
//! responder's new keypair until the initiator confirms it with the first transport message.
//! Packets sent while no usable keypair exists are staged (at most [`MAX_STAGED_PACKETS`],
//! oldest dropped first) and a handshake is started. The endpoint follows the source address
//! of the latest authenticated packet (roaming, §2.1). All timer behaviour of §6 is here, as
//! reactions to the protocol events named like the kernel's `wg_timers_*` hooks.
//!
//! A peer never reads the clock or the OS RNG: everything shared with the device (identity,
//! RNG, index table, output queues, wall clock) arrives in a [`Ctx`] borrowed from the
//! [`crate::Tunnel`] for the duration of one call.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand_chacha::ChaCha20Rng;
use rand_core::RngCore;
use zeroize::Zeroizing;

use crate::messages::{
    CookieReply, HandshakeResponse, TransportData, HANDSHAKE_INITIATION_LEN, HANDSHAKE_RESPONSE_LEN,
};
use crate::noise::cookie::CookieState;
use crate::noise::handshake::{
    initiate_precomputed, AwaitingResponse, InitiationReceived, StaticIdentity,
};
use crate::session::{message_len, Keypair, SessionError, TransportKey};
use crate::tai64n::{Tai64N, TimestampFilter};
use crate::timers::{
    jitter, Timer, TimerTable, INITIATION_FLOOD_INTERVAL, KEEPALIVE_TIMEOUT, MAX_TIMER_HANDSHAKES,
    REJECT_AFTER_TIME, REKEY_TIMEOUT, ZERO_KEYS_AFTER,
};
use crate::tunnel::{Counters, Outbox, Pending};

/// At most this many packets wait for a handshake; older ones are dropped first.
pub const MAX_STAGED_PACKETS: usize = 128;

/// A peer's handle within one [`crate::Tunnel`]. Never reused for another peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub(crate) u32);

/// What a peer borrows from its device for one call.
pub(crate) struct Ctx<'a> {
    pub(crate) identity: &'a StaticIdentity,
    pub(crate) rng: &'a mut ChaCha20Rng,
    pub(crate) indices: &'a mut HashMap<u32, PeerId>,
    pub(crate) outbox: &'a mut Outbox,
    pub(crate) events: &'a mut VecDeque<Pending>,
    pub(crate) counters: &'a mut Counters,
    /// Wall-clock time since the Unix epoch at `now`.
    pub(crate) wall: Duration,
    pub(crate) mtu: Option<usize>,
}

impl Ctx<'_> {
    /// A fresh random local index, registered to `peer`.
    fn allocate_index(&mut self, peer: PeerId) -> u32 {
        loop {
            let index = self.rng.next_u32();
            if let std::collections::hash_map::Entry::Vacant(e) = self.indices.entry(index) {
                e.insert(peer);
                return index;
            }
        }
    }

    fn release_index(&mut self, index: u32) {
        self.indices.remove(&index);
    }

    fn drop_keypair(&mut self, keypair: Option<Keypair>) {
        if let Some(k) = keypair {
            self.release_index(k.local_index);
        }
    }
}

/// Which slot a receiving keypair was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Current,
    Previous,
    Next,
}

/// The outcome of authenticating a transport message.
pub(crate) enum Received {
    /// A keepalive, or a message that was dropped (and counted).
    Nothing,
    /// A decrypted, still padded inner packet in a pooled buffer.
    Packet(Vec<u8>),
}

/// One configured peer and its protocol state.
pub struct Peer {
    id: PeerId,
    public_key: [u8; 32],
    psk: Zeroizing<[u8; 32]>,
    /// `DH(S_local^priv, S_peer^pub)`, recomputed when the local key changes; `None` for a
    /// low-order peer key, with which no handshake is possible.
    static_static: Option<Zeroizing<[u8; 32]>>,
    endpoint: Option<SocketAddr>,
    persistent_keepalive: Option<Duration>,

    pub(crate) cookie: CookieState,
    timestamps: TimestampFilter,
    last_initiation_consumed: Option<Instant>,
    handshake: Option<AwaitingResponse>,
    last_sent_handshake: Option<Instant>,
    handshake_attempts: u32,
    sent_lastminute_handshake: bool,
    need_another_keepalive: bool,

    current: Option<Keypair>,
    previous: Option<Keypair>,
    next: Option<Keypair>,
    pub(crate) timers: TimerTable,
    /// The earliest deadline this peer has in the tunnel's timer schedule.
    pub(crate) scheduled: Option<Instant>,
    staged: VecDeque<Vec<u8>>,

    rx_bytes: u64,
    tx_bytes: u64,
    last_handshake: Option<Duration>,
}

impl core::fmt::Debug for Peer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Peer")
            .field("id", &self.id)
            .field("endpoint", &self.endpoint)
            .field("current", &self.current)
            .finish_non_exhaustive()
    }
}

impl Peer {
    pub(crate) fn new(
        identity: &StaticIdentity,
        id: PeerId,
        public_key: [u8; 32],
        psk: Option<[u8; 32]>,
        endpoint: Option<SocketAddr>,
        persistent_keepalive: Option<u16>,
    ) -> Peer {
        Peer {
            id,
            public_key,
            psk: Zeroizing::new(psk.unwrap_or([0; 32])),
            static_static: identity.static_static(&public_key).ok(),
            endpoint,
            persistent_keepalive: persistent_keepalive
                .filter(|&s| s > 0)
                .map(|s| Duration::from_secs(u64::from(s))),
            cookie: CookieState::new(&public_key),
            timestamps: TimestampFilter::default(),
            last_initiation_consumed: None,
            handshake: None,
            last_sent_handshake: None,
            handshake_attempts: 0,
            sent_lastminute_handshake: false,
            need_another_keepalive: false,
            current: None,
            previous: None,
            next: None,
            timers: TimerTable::default(),
            scheduled: None,
            staged: VecDeque::new(),
            rx_bytes: 0,
            tx_bytes: 0,
            last_handshake: None,
        }
    }

    /// This peer's handle.
    pub fn id(&self) -> PeerId {
        self.id
    }
    /// The peer's static public key.
    pub fn public_key(&self) -> &[u8; 32] {
        &self.public_key
    }
    /// Where packets to the peer go: configured, or learned from its latest authenticated
    /// packet.
    pub fn endpoint(&self) -> Option<SocketAddr> {
        self.endpoint
    }
    /// Sets the endpoint (configuration).
    pub fn set_endpoint(&mut self, endpoint: Option<SocketAddr>) {
        self.endpoint = endpoint;
    }
    /// The persistent keepalive interval, if enabled.
    pub fn persistent_keepalive(&self) -> Option<Duration> {
        self.persistent_keepalive
    }
    /// The precomputed static-static secret, for an initiation from this peer.
    pub(crate) fn static_static(&self) -> Option<Zeroizing<[u8; 32]>> {
        self.static_static.clone()
    }

    /// Sets the preshared key (`None`: none). As in the kernel, sessions and a handshake in
    /// flight keep the key they were made with; the next handshake uses the new one.
    pub(crate) fn set_preshared_key(&mut self, psk: Option<[u8; 32]>) {
        *self.psk = psk.unwrap_or([0; 32]);
    }

    /// Sets the persistent keepalive interval (`None` or 0: off). Turning it on sends a
    /// keepalive at once, as the kernel does when the interface is up and the endpoint known;
    /// turning it off disarms the timer.
    pub(crate) fn set_persistent_keepalive(
        &mut self,
        ctx: &mut Ctx<'_>,
        now: Instant,
        seconds: Option<u16>,
        up: bool,
    ) {
        let interval = seconds
            .filter(|&s| s > 0)
            .map(|s| Duration::from_secs(u64::from(s)));
        let turned_on = self.persistent_keepalive.is_none() && interval.is_some();
        self.persistent_keepalive = interval;
        if interval.is_none() {
            self.timers.stop(Timer::PersistentKeepalive);
        }
        if turned_on && up && self.endpoint.is_some() {
            self.send_keepalive(ctx, now);
        }
    }

    /// The local private key changed (`wg_noise_precompute_static_static` and
    /// `wg_noise_expire_current_peer_keypairs`): recompute the static-static secret, abandon
    /// the handshake in flight and stop sending on the current and next keypairs, which the
    /// peer knows under the old identity. They still decrypt what is in flight; the next
    /// packet to send starts a handshake with the new identity.
    pub(crate) fn identity_changed(&mut self, ctx: &mut Ctx<'_>) {
        self.static_static = ctx.identity.static_static(&self.public_key).ok();
        if let Some(h) = self.handshake.take() {
            ctx.release_index(h.sender_index());
        }
        self.last_sent_handshake = None;
        for keypair in [self.current.as_mut(), self.next.as_mut()]
            .into_iter()
            .flatten()
        {
            keypair.invalidate_sending();
        }
    }
    /// Bytes received from the peer, counted as the kernel does (whole UDP payloads): each
    /// handshake initiation and response it consumed, each keepalive, and each data message
    /// whose packet passed the inner checks (well-formed, source in the peer's allowed IPs).
    /// Cookie replies, and messages that fail authentication or a replay check, are not
    /// counted.
    pub fn rx_bytes(&self) -> u64 {
        self.rx_bytes
    }
    /// Bytes sent to the peer (whole UDP payloads): initiations, responses, keepalives and
    /// data messages handed out for sending; not cookie replies, which go to an address,
    /// not a peer.
    pub fn tx_bytes(&self) -> u64 {
        self.tx_bytes
    }
    /// Wall-clock time (since the Unix epoch) of the latest completed handshake.
    pub fn last_handshake(&self) -> Option<Duration> {
        self.last_handshake
    }
    /// The keypair currently used for sending, if any.
    pub fn current_keypair(&self) -> Option<&Keypair> {
        self.current.as_ref()
    }
    /// Whether any key material (keypairs or a handshake in flight) is held.
    pub fn has_key_material(&self) -> bool {
        self.current.is_some()
            || self.previous.is_some()
            || self.next.is_some()
            || self.handshake.is_some()
    }
    /// Packets waiting for a handshake.
    pub fn staged_len(&self) -> usize {
        self.staged.len()
    }
    /// How many retransmissions of the current initiation have been made.
    pub fn handshake_attempts(&self) -> u32 {
        self.handshake_attempts
    }

    /// The earliest timer deadline.
    pub(crate) fn next_timeout(&self) -> Option<Instant> {
        self.timers.next_timeout()
    }

    // ---- Timer hooks, named after the kernel's `wg_timers_*`. --------------------------

    /// `wg_timers_any_authenticated_packet_traversal`: (re)arm the persistent keepalive.
    fn on_authenticated_traversal(&mut self, now: Instant) {
        if let Some(interval) = self.persistent_keepalive {
            self.timers.set(Timer::PersistentKeepalive, now + interval);
        }
    }

    /// `wg_timers_any_authenticated_packet_sent`: anything we send doubles as a keepalive.
    fn on_authenticated_sent(&mut self) {
        self.timers.stop(Timer::SendKeepalive);
    }

    /// `wg_timers_any_authenticated_packet_received`: the peer is alive, no need to rekey.
    fn on_authenticated_received(&mut self) {
        self.timers.stop(Timer::NewHandshake);
    }

    /// `wg_timers_data_sent`: expect to hear back within `KEEPALIVE_TIMEOUT + REKEY_TIMEOUT`.
    fn on_data_sent(&mut self, now: Instant, rng: &mut ChaCha20Rng) {
        if !self.timers.is_armed(Timer::NewHandshake) {
            let at = now + KEEPALIVE_TIMEOUT + REKEY_TIMEOUT + jitter(rng);
            self.timers.set(Timer::NewHandshake, at);
        }
    }

    /// `wg_timers_data_received`: answer within `KEEPALIVE_TIMEOUT`, with data or a keepalive.
    fn on_data_received(&mut self, now: Instant) {
        if !self.timers.is_armed(Timer::SendKeepalive) {
            self.timers
                .set(Timer::SendKeepalive, now + KEEPALIVE_TIMEOUT);
        } else {
            self.need_another_keepalive = true;
        }
    }

    /// `wg_timers_handshake_initiated`: retry after `REKEY_TIMEOUT` plus jitter.
    fn on_handshake_initiated(&mut self, now: Instant, rng: &mut ChaCha20Rng) {
        self.timers.set(
            Timer::RetransmitHandshake,
            now + REKEY_TIMEOUT + jitter(rng),
        );
    }

    /// `wg_timers_handshake_complete`.
    fn on_handshake_complete(&mut self, ctx: &mut Ctx<'_>) {
        self.timers.stop(Timer::RetransmitHandshake);
        self.handshake_attempts = 0;
        self.sent_lastminute_handshake = false;
        self.last_handshake = Some(ctx.wall);
        ctx.events.push_back(Pending::HandshakeComplete(self.id));
    }

    /// `wg_timers_session_derived`: erase everything if no newer session follows in time.
    fn on_session_derived(&mut self, now: Instant) {
        self.timers
            .set(Timer::ZeroKeyMaterial, now + ZERO_KEYS_AFTER);
    }

    /// Runs every timer that is due at `now`.
    pub(crate) fn handle_timeout(&mut self, ctx: &mut Ctx<'_>, now: Instant) {
        while let Some(timer) = self.timers.expire(now) {
            match timer {
                Timer::RetransmitHandshake => {
                    if self.handshake_attempts > MAX_TIMER_HANDSHAKES {
                        // Give up: drop what waited for this handshake, and schedule erasure
                        // of any residue of the partial exchange.
                        self.timers.stop(Timer::SendKeepalive);
                        ctx.counters.tx_dropped_handshake_gave_up += self.staged.len() as u64;
                        self.purge_staged(ctx);
                        if !self.timers.is_armed(Timer::ZeroKeyMaterial) {
                            self.timers
                                .set(Timer::ZeroKeyMaterial, now + ZERO_KEYS_AFTER);
                        }
                    } else {
                        self.handshake_attempts += 1;
                        self.send_initiation(ctx, now, true);
                    }
                }
                Timer::SendKeepalive => {
                    self.send_keepalive(ctx, now);
                    if self.need_another_keepalive {
                        self.need_another_keepalive = false;
                        self.timers
                            .set(Timer::SendKeepalive, now + KEEPALIVE_TIMEOUT);
                    }
                }
                Timer::NewHandshake => self.send_initiation(ctx, now, false),
                Timer::ZeroKeyMaterial => {
                    let (c, p, n) = (self.current.take(), self.previous.take(), self.next.take());
                    ctx.drop_keypair(c);
                    ctx.drop_keypair(p);
                    ctx.drop_keypair(n);
                    if let Some(h) = self.handshake.take() {
                        ctx.release_index(h.sender_index());
                    }
                }
                Timer::PersistentKeepalive => {
                    if self.persistent_keepalive.is_some() {
                        self.send_keepalive(ctx, now);
                    }
                }
            }
        }
    }

    // ---- Sending. ------------------------------------------------------------------

    fn transmit(&mut self, ctx: &mut Ctx<'_>, buf: Vec<u8>) {
        match self.endpoint {
            Some(dst) => {
                self.tx_bytes += buf.len() as u64;
                ctx.outbox.push(dst, buf);
            }
            None => {
                ctx.counters.tx_dropped_no_endpoint += 1;
                ctx.outbox.recycle(buf);
            }
        }
    }

    fn purge_staged(&mut self, ctx: &mut Ctx<'_>) {
        for buf in self.staged.drain(..) {
            ctx.outbox.recycle(buf);
        }
    }

    /// Sends a handshake initiation, unless one went out less than `REKEY_TIMEOUT` ago
    /// (`wg_packet_send_queued_handshake_initiation`). `retry` keeps the attempt count.
    pub(crate) fn send_initiation(&mut self, ctx: &mut Ctx<'_>, now: Instant, retry: bool) {
        if !retry {
            self.handshake_attempts = 0;
        }
        if self
            .last_sent_handshake
            .is_some_and(|t| now < t + REKEY_TIMEOUT)
        {
            return;
        }
        let Some(static_static) = self.static_static.as_ref() else {
            // A low-order configured public key: no handshake is possible.
            return;
        };
        let index = ctx.allocate_index(self.id);
        let mut buf = ctx.outbox.take_buffer(HANDSHAKE_INITIATION_LEN);
        let stamp = Tai64N::for_initiation(ctx.wall);
        let state = initiate_precomputed(
            ctx.identity,
            &self.public_key,
            static_static,
            &self.psk,
            index,
            stamp,
            ctx.rng,
            &mut buf,
        );
        let Ok(state) = state else {
            // Only a low-order configured public key can fail here; nothing to send.
            ctx.release_index(index);
            ctx.outbox.recycle(buf);
            return;
        };
        if let Some(old) = self.handshake.replace(state) {
            ctx.release_index(old.sender_index());
        }
        self.last_sent_handshake = Some(now);
        self.cookie.add_macs(now, &mut buf);
        self.on_authenticated_traversal(now);
        self.on_authenticated_sent();
        self.transmit(ctx, buf);
        self.on_handshake_initiated(now, ctx.rng);
    }

    /// Queues an outgoing IP packet and sends what can be sent.
    pub(crate) fn send_packet(&mut self, ctx: &mut Ctx<'_>, now: Instant, packet: &[u8]) {
        let mut buf = ctx.outbox.take_buffer(packet.len());
        buf.copy_from_slice(packet);
        self.stage(ctx, buf);
        self.send_staged(ctx, now);
    }

    fn stage(&mut self, ctx: &mut Ctx<'_>, buf: Vec<u8>) {
        self.staged.push_back(buf);
        while self.staged.len() > MAX_STAGED_PACKETS {
            ctx.counters.tx_dropped_staged_overflow += 1;
            if let Some(old) = self.staged.pop_front() {
                ctx.outbox.recycle(old);
            }
        }
    }

    /// `wg_packet_send_keepalive`: an empty packet, unless real packets are waiting anyway.
    pub(crate) fn send_keepalive(&mut self, ctx: &mut Ctx<'_>, now: Instant) {
        if self.staged.is_empty() {
            let buf = ctx.outbox.take_buffer(0);
            self.stage(ctx, buf);
        }
        self.send_staged(ctx, now);
    }

    /// `wg_packet_send_staged_packets`: encrypts everything staged with the current keypair,
    /// or starts a handshake if there is no usable one.
    fn send_staged(&mut self, ctx: &mut Ctx<'_>, now: Instant) {
        if self.staged.is_empty() {
            return;
        }
        let mut sent_data = false;
        while let Some(packet) = self.staged.pop_front() {
            let mut buf = ctx.outbox.take_buffer(message_len(packet.len(), ctx.mtu));
            let sealed = match self.current.as_mut() {
                Some(keypair) => keypair.encapsulate(now, &packet, ctx.mtu, &mut buf).is_ok(),
                None => false,
            };
            if !sealed {
                // No usable keypair: put the packet back and start a handshake.
                ctx.outbox.recycle(buf);
                self.staged.push_front(packet);
                self.send_initiation(ctx, now, false);
                return;
            }
            sent_data |= !packet.is_empty();
            ctx.outbox.recycle(packet);
            self.transmit(ctx, buf);
        }
        self.on_authenticated_traversal(now);
        self.on_authenticated_sent();
        if sent_data {
            self.on_data_sent(now, ctx.rng);
        }
        // keep_key_fresh (send side): rekey after REKEY_AFTER_MESSAGES, or REKEY_AFTER_TIME
        // if we were the initiator.
        if self
            .current
            .as_ref()
            .is_some_and(|k| k.can_send(now) && k.needs_rekey(now))
        {
            self.send_initiation(ctx, now, false);
        }
    }

    // ---- Receiving. ----------------------------------------------------------------

    /// Responds to an authenticated initiation from this peer, if its timestamp is fresh and
    /// the peer is not flooding us. Returns whether it was accepted.
    pub(crate) fn handle_initiation(
        &mut self,
        ctx: &mut Ctx<'_>,
        now: Instant,
        from: SocketAddr,
        received: InitiationReceived,
    ) -> bool {
        // Replay protection: the timestamp must be strictly newer than any seen (§5.1).
        let stamp = received.timestamp();
        if !self.timestamps.is_fresh(&stamp) {
            ctx.counters.rx_dropped_replayed_initiation += 1;
            return false;
        }
        // Flood protection: at most one initiation per peer per 20 ms.
        if self
            .last_initiation_consumed
            .is_some_and(|t| now < t + INITIATION_FLOOD_INTERVAL)
        {
            ctx.counters.rx_dropped_flood += 1;
            return false;
        }
        self.timestamps.accept(stamp);
        self.last_initiation_consumed = Some(now);
        self.endpoint = Some(from);
        // A consumed initiation is counted, whether or not a response can be made (as both
        // references do).
        self.rx_bytes += HANDSHAKE_INITIATION_LEN as u64;
        // One handshake per peer: answering abandons our own initiation in flight.
        if let Some(old) = self.handshake.take() {
            ctx.release_index(old.sender_index());
        }
        self.last_sent_handshake = Some(now);
        let index = ctx.allocate_index(self.id);
        let mut buf = ctx.outbox.take_buffer(HANDSHAKE_RESPONSE_LEN);
        let Ok(keys) = received.respond(&self.psk, index, ctx.rng, &mut buf) else {
            ctx.counters.rx_dropped_invalid += 1;
            ctx.release_index(index);
            ctx.outbox.recycle(buf);
            return false;
        };
        self.cookie.add_macs(now, &mut buf);
        // The responder cannot send with the new keypair until the initiator confirms it, so
        // it waits in `next`; the old `previous` is dropped.
        let keypair = Keypair::new(&keys, now);
        let old_next = self.next.replace(keypair);
        ctx.drop_keypair(old_next);
        let old_previous = self.previous.take();
        ctx.drop_keypair(old_previous);
        self.on_session_derived(now);
        self.on_authenticated_traversal(now);
        self.on_authenticated_sent();
        self.transmit(ctx, buf);
        self.on_authenticated_received();
        self.on_authenticated_traversal(now);
        true
    }

    /// Completes our handshake with an authenticated-MAC response. Returns whether the
    /// response was accepted.
    pub(crate) fn handle_response(
        &mut self,
        ctx: &mut Ctx<'_>,
        now: Instant,
        from: SocketAddr,
        msg: &HandshakeResponse<&[u8]>,
    ) -> bool {
        let Some(state) = self.handshake.take() else {
            return false;
        };
        let keys = match state.handle_response(ctx.identity, msg) {
            Ok(keys) => keys,
            Err(rejected) => {
                self.handshake = Some(rejected.state);
                return false;
            }
        };
        self.endpoint = Some(from);
        // The initiator may use the new keypair at once. A pending `next` is demoted to
        // `previous` (the kernel's choice), otherwise `current` is.
        let keypair = Keypair::new(&keys, now);
        let old_current = self.current.replace(keypair);
        let demoted = match self.next.take() {
            Some(next) => {
                ctx.drop_keypair(old_current);
                Some(next)
            }
            None => old_current,
        };
        let old_previous = core::mem::replace(&mut self.previous, demoted);
        ctx.drop_keypair(old_previous);
        self.on_session_derived(now);
        self.on_handshake_complete(ctx);
        // Confirm the session at once: staged packets if there are any, else a keepalive.
        self.send_keepalive(ctx, now);
        self.rx_bytes += HANDSHAKE_RESPONSE_LEN as u64;
        self.on_authenticated_received();
        self.on_authenticated_traversal(now);
        true
    }

    /// Stores the cookie from an authenticated cookie reply.
    pub(crate) fn handle_cookie_reply(&mut self, now: Instant, reply: &CookieReply<&[u8]>) -> bool {
        self.cookie.consume_reply(now, reply).is_ok()
    }

    /// Whether `index` names this peer's in-flight handshake.
    pub(crate) fn is_handshake_index(&self, index: u32) -> bool {
        self.handshake
            .as_ref()
            .is_some_and(|h| h.sender_index() == index)
    }

    fn slot_of(&self, index: u32) -> Option<Slot> {
        let is = |k: &Option<Keypair>| k.as_ref().is_some_and(|k| k.local_index == index);
        if is(&self.current) {
            Some(Slot::Current)
        } else if is(&self.previous) {
            Some(Slot::Previous)
        } else if is(&self.next) {
            Some(Slot::Next)
        } else {
            None
        }
    }

    fn keypair(&self, slot: Slot) -> Option<&Keypair> {
        match slot {
            Slot::Current => self.current.as_ref(),
            Slot::Previous => self.previous.as_ref(),
            Slot::Next => self.next.as_ref(),
        }
    }

    fn keypair_mut(&mut self, slot: Slot) -> Option<&mut Keypair> {
        match slot {
            Slot::Current => self.current.as_mut(),
            Slot::Previous => self.previous.as_mut(),
            Slot::Next => self.next.as_mut(),
        }
    }

    /// Authenticates and decrypts a transport message addressed to one of our keypairs.
    pub(crate) fn handle_data(
        &mut self,
        ctx: &mut Ctx<'_>,
        now: Instant,
        from: SocketAddr,
        msg: &TransportData<&[u8]>,
    ) -> Received {
        let Some(slot) = self.slot_of(msg.receiver_index()) else {
            ctx.counters.rx_dropped_unknown_index += 1;
            return Received::Nothing;
        };
        // slot_of just found the keypair in this slot.
        let keypair = self.keypair_mut(slot).expect("slot holds a keypair");
        let mut buf = ctx
            .outbox
            .take_buffer(msg.encrypted_packet().len() - crate::messages::TAG_LEN);
        if let Err(e) = keypair.decapsulate(now, msg, &mut buf) {
            count_receive_error(ctx.counters, e);
            ctx.outbox.recycle(buf);
            return Received::Nothing;
        }
        let wire_len = msg.encrypted_packet().len() + crate::messages::TRANSPORT_HEADER_LEN;
        // A data message's bytes are counted by the tunnel once its packet passed the inner
        // checks (`count_received`); a keepalive's here.
        let keepalive = buf.is_empty();
        let counted = if keepalive { wire_len } else { 0 };
        self.authenticated(ctx, now, from, slot, counted, keepalive);
        if buf.is_empty() {
            ctx.outbox.recycle(buf);
            return Received::Nothing;
        }
        Received::Packet(buf)
    }

    /// The bulk receive path, before decryption: the key for a transport message with
    /// `counter` addressed to our keypair `index`, if that keypair may receive it (not
    /// expired, counter not seen). Drops are counted.
    pub(crate) fn plan_receive(
        &self,
        counters: &mut Counters,
        now: Instant,
        index: u32,
        counter: u64,
    ) -> Option<Arc<TransportKey>> {
        let Some(keypair) = self.slot_of(index).and_then(|slot| self.keypair(slot)) else {
            counters.rx_dropped_unknown_index += 1;
            return None;
        };
        if let Err(e) = keypair.may_receive(now, counter) {
            count_receive_error(counters, e);
            return None;
        }
        Some(keypair.recv_key().clone())
    }

    /// The bulk receive path, after a message authenticated: records its counter (the
    /// authoritative replay check, in batch order) and does what [`handle_data`] does after
    /// decryption. `counted` is how many bytes to add to the received count if the message
    /// is accepted: the datagram's length for a keepalive or a packet that will be delivered,
    /// 0 for a packet the inner checks drop. Returns whether the plaintext is a packet to
    /// deliver (`false`: a keepalive, or dropped and counted).
    ///
    /// [`handle_data`]: Self::handle_data
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn complete_receive(
        &mut self,
        ctx: &mut Ctx<'_>,
        now: Instant,
        from: SocketAddr,
        index: u32,
        counter: u64,
        counted: usize,
        keepalive: bool,
    ) -> bool {
        // The keypair may have gone since planning (an earlier message of the batch confirmed
        // a new session and dropped `previous`): the message is then for an unknown index.
        let Some(slot) = self.slot_of(index) else {
            ctx.counters.rx_dropped_unknown_index += 1;
            return false;
        };
        let keypair = self.keypair_mut(slot).expect("slot holds a keypair");
        if !keypair.accept_counter(counter) {
            ctx.counters.rx_dropped_replay += 1;
            return false;
        }
        self.authenticated(ctx, now, from, slot, counted, keepalive);
        !keepalive
    }

    /// Adds `bytes` to the received count: a data message whose packet passed the inner
    /// checks and is delivered. The kernel counts a transport message only then (or when it
    /// is a keepalive); wireguard-go counts every authenticated one.
    pub(crate) fn count_received(&mut self, bytes: usize) {
        self.rx_bytes += bytes as u64;
    }

    /// Everything that follows an authenticated transport message from `from`, received on
    /// the keypair in `slot`: roaming, statistics (`counted` bytes received), session
    /// confirmation, the receive side of keep_key_fresh, and timers.
    fn authenticated(
        &mut self,
        ctx: &mut Ctx<'_>,
        now: Instant,
        from: SocketAddr,
        slot: Slot,
        counted: usize,
        keepalive: bool,
    ) {
        self.endpoint = Some(from);
        self.rx_bytes += counted as u64;
        if slot == Slot::Next {
            // The initiator confirmed the responder's new keypair: rotate it in.
            let next = self.next.take();
            let old_current = core::mem::replace(&mut self.current, next);
            let old_previous = core::mem::replace(&mut self.previous, old_current);
            ctx.drop_keypair(old_previous);
            self.on_handshake_complete(ctx);
            self.send_staged(ctx, now);
        }
        // keep_key_fresh (receive side): an initiator whose keypair is about to be rejected
        // and who has not heard a new handshake yet tries once more, 165 s in.
        let stale = REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT - REKEY_TIMEOUT;
        if !self.sent_lastminute_handshake
            && self.current.as_ref().is_some_and(|k| {
                k.initiator && k.can_send(now) && now.saturating_duration_since(k.created) >= stale
            })
        {
            self.sent_lastminute_handshake = true;
            self.send_initiation(ctx, now, false);
        }
        self.on_authenticated_received();
        self.on_authenticated_traversal(now);
        if !keepalive {
            self.on_data_received(now);
        }
    }

    /// The bulk send path: if nothing is staged, the endpoint is known and the current
    /// keypair can send, takes the next counter for a data message of `wire_len` bytes and
    /// does what [`send_staged`](Self::send_staged) does for one sent packet (statistics,
    /// timers, the send side of keep_key_fresh). Returns the key, the peer's index, the
    /// counter and the destination; `None` leaves the packet to the staging path.
    pub(crate) fn plan_send(
        &mut self,
        ctx: &mut Ctx<'_>,
        now: Instant,
        wire_len: usize,
    ) -> Option<(Arc<TransportKey>, u32, u64, SocketAddr)> {
        if !self.staged.is_empty() {
            return None;
        }
        let dst = self.endpoint?;
        let keypair = self.current.as_mut()?;
        let counter = keypair.take_send_counter(now)?;
        let planned = (
            keypair.send_key().clone(),
            keypair.remote_index,
            counter,
            dst,
        );
        self.tx_bytes += wire_len as u64;
        self.on_authenticated_traversal(now);
        self.on_authenticated_sent();
        self.on_data_sent(now, ctx.rng);
        if self
            .current
            .as_ref()
            .is_some_and(|k| k.can_send(now) && k.needs_rekey(now))
        {
            self.send_initiation(ctx, now, false);
        }
        Some(planned)
    }

    /// The interface went down (the kernel's `wg_stop`): forget sessions, the handshake in
    /// flight, staged packets and timers. Configuration, the endpoint and statistics stay.
    pub(crate) fn stop(&mut self, ctx: &mut Ctx<'_>) {
        let (c, p, n) = (self.current.take(), self.previous.take(), self.next.take());
        ctx.drop_keypair(c);
        ctx.drop_keypair(p);
        ctx.drop_keypair(n);
        if let Some(h) = self.handshake.take() {
            ctx.release_index(h.sender_index());
        }
        self.purge_staged(ctx);
        self.timers.clear();
        self.last_sent_handshake = None;
        self.handshake_attempts = 0;
        self.sent_lastminute_handshake = false;
        self.need_another_keepalive = false;
    }

    /// Forgets all state on removal, releasing indices and buffers.
    pub(crate) fn release(mut self, ctx: &mut Ctx<'_>) {
        let (c, p, n) = (self.current.take(), self.previous.take(), self.next.take());
        ctx.drop_keypair(c);
        ctx.drop_keypair(p);
        ctx.drop_keypair(n);
        if let Some(h) = self.handshake.take() {
            ctx.release_index(h.sender_index());
        }
        self.purge_staged(ctx);
    }

    #[cfg(test)]
    pub(crate) fn current_keypair_mut(&mut self) -> Option<&mut Keypair> {
        self.current.as_mut()
    }
}

/// Counts a transport message that could not be received.
fn count_receive_error(counters: &mut Counters, e: SessionError) {
    match e {
        SessionError::Replay => counters.rx_dropped_replay += 1,
        SessionError::Expired => counters.rx_dropped_expired += 1,
        _ => counters.rx_dropped_invalid += 1,
    }
}
