//! The driving type: one WireGuard interface's protocol state, fed bytes and time.
//!
//! [`Tunnel`] holds the static identity, the cookie checker, the peers (by id, by public key
//! and by session index), the cryptokey routing table and the output queues. It demultiplexes
//! incoming datagrams by message type and receiver index, routes outgoing IP packets by
//! destination through [`AllowedIps`], and checks the source of every decrypted packet
//! against the sending peer's allowed IPs. A bad, unauthenticated or unroutable packet is
//! dropped and counted in [`Counters`], never returned as an error. Buffers for queued
//! datagrams and decrypted packets are recycled, so steady-state traffic does not allocate.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use crate::allowed_ips::AllowedIps;
use crate::messages::{
    CookieReply, HandshakeInitiation, HandshakeResponse, MessageType, TransportData,
    COOKIE_REPLY_LEN,
};
use crate::noise::cookie::{Admission, CookieChecker};
use crate::noise::handshake::{consume_initiation_precomputed, HandshakeError, StaticIdentity};
use crate::peer::{Ctx, Peer, PeerId, Received};
use crate::ratelimiter::Ratelimiter;

mod bulk;
pub use bulk::{OpenJob, SealJob};

/// Recycled buffers kept for reuse; more are freed.
const POOL_MAX: usize = 1024;
/// The least capacity of a pooled buffer: a 1500-byte packet plus the transport overhead.
const MIN_BUFFER: usize = 1600;

/// At most this many handshake messages wait to be processed; more are dropped (the kernel's
/// `MAX_QUEUED_INCOMING_HANDSHAKES`).
pub const MAX_QUEUED_HANDSHAKES: usize = 4096;
/// The interface is under load while at least this many handshake messages wait (the
/// kernel's threshold, an eighth of the queue)...
pub const UNDER_LOAD_QUEUE_LEN: usize = MAX_QUEUED_HANDSHAKES / 8;
/// ...and for this long after the queue was last that long.
pub const UNDER_LOAD_AFTER: Duration = Duration::from_secs(1);

/// How a peer is configured when added.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerConfig {
    /// The peer's static public key.
    pub public_key: [u8; 32],
    /// The preshared key `Q`, if any (`None` is the all-zero key).
    pub preshared_key: Option<[u8; 32]>,
    /// The initial endpoint, if known.
    pub endpoint: Option<SocketAddr>,
    /// Persistent keepalive interval in seconds (`None` or 0: off).
    pub persistent_keepalive: Option<u16>,
    /// The peer's allowed IPs as `(address, cidr)`.
    pub allowed_ips: Vec<(IpAddr, u8)>,
}

/// Adding a peer failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeerError {
    /// A peer with this public key already exists.
    #[error("duplicate peer public key")]
    Duplicate,
    /// The peer's public key is our own.
    #[error("peer public key is the interface's own")]
    OwnKey,
}

/// A datagram ready to send: `len` bytes at the start of the buffer given to `poll_transmit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send it.
    pub dst: SocketAddr,
    /// How many bytes of the buffer to send.
    pub len: usize,
}

/// Something the caller should act on, from [`Tunnel::poll_event`].
#[derive(Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event<'a> {
    /// Write this decrypted, source-checked IP packet to the TUN device.
    Deliver {
        /// The peer it came from.
        peer: PeerId,
        /// The inner IP packet, padding removed.
        packet: &'a [u8],
    },
    /// A handshake with this peer completed and a new session is in use.
    HandshakeComplete {
        /// The peer.
        peer: PeerId,
    },
}

/// Queued events, owned.
pub(crate) enum Pending {
    Deliver(PeerId, Vec<u8>),
    HandshakeComplete(PeerId),
}

/// Packets dropped, by reason. Drops are normal on the Internet; these are for diagnostics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counters {
    /// Datagrams with an unknown type, wrong length or bad reserved bytes.
    pub rx_dropped_malformed: u64,
    /// Handshake messages with a wrong MAC1.
    pub rx_dropped_mac: u64,
    /// Handshake messages answered with a cookie reply because we are under load.
    pub rx_cookie_replies_sent: u64,
    /// Handshake messages dropped because [`MAX_QUEUED_HANDSHAKES`] were already waiting.
    pub rx_dropped_handshake_queue_full: u64,
    /// Handshake messages dropped by a per-source rate limit while under load: with a valid
    /// cookie (before any DH), or without one (no cookie reply).
    pub rx_dropped_ratelimited: u64,
    /// Messages that failed to authenticate or decrypt.
    pub rx_dropped_invalid: u64,
    /// Initiations from an unknown static key.
    pub rx_dropped_unknown_peer: u64,
    /// Messages for a session index we do not have.
    pub rx_dropped_unknown_index: u64,
    /// Initiations whose timestamp was not newer than the last.
    pub rx_dropped_replayed_initiation: u64,
    /// Initiations arriving faster than 50 per second from one peer.
    pub rx_dropped_flood: u64,
    /// Transport messages with a replayed or too-old counter.
    pub rx_dropped_replay: u64,
    /// Transport messages for an expired keypair.
    pub rx_dropped_expired: u64,
    /// Decrypted packets that are not well-formed IPv4/IPv6.
    pub rx_dropped_inner_malformed: u64,
    /// Decrypted packets whose source is not in the sending peer's allowed IPs.
    pub rx_dropped_source: u64,
    /// Outgoing packets with no peer for their destination.
    pub tx_dropped_no_route: u64,
    /// Datagrams for a peer without a known endpoint.
    pub tx_dropped_no_endpoint: u64,
    /// Staged packets dropped because the queue was full.
    pub tx_dropped_staged_overflow: u64,
    /// Staged packets dropped when a handshake was given up.
    pub tx_dropped_handshake_gave_up: u64,
    /// Datagrams dropped because the `poll_transmit` buffer was too small.
    pub tx_dropped_buffer_too_small: u64,
    /// Datagrams received while the interface was down.
    pub rx_dropped_down: u64,
    /// Packets to send while the interface was down.
    pub tx_dropped_down: u64,
}

/// Queued datagrams and a pool of reusable buffers.
#[derive(Default)]
pub(crate) struct Outbox {
    queue: VecDeque<(SocketAddr, Vec<u8>)>,
    pool: Vec<Vec<u8>>,
}

impl Outbox {
    /// A zero-filled buffer of `len` bytes, reusing a recycled one when possible. Every
    /// buffer has room for at least [`MIN_BUFFER`] bytes, so a recycled one fits any usual
    /// packet and steady traffic never reallocates.
    pub(crate) fn take_buffer(&mut self, len: usize) -> Vec<u8> {
        let mut buf = self
            .pool
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(MIN_BUFFER));
        buf.clear();
        buf.reserve(len.max(MIN_BUFFER));
        buf.resize(len, 0);
        buf
    }

    pub(crate) fn recycle(&mut self, buf: Vec<u8>) {
        if self.pool.len() < POOL_MAX {
            self.pool.push(buf);
        }
    }

    pub(crate) fn push(&mut self, dst: SocketAddr, buf: Vec<u8>) {
        self.queue.push_back((dst, buf));
    }
}

/// A peer's timer deadlines after [`Tunnel::run_on_peer`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct PeerDeadlines {
    /// Its next deadline.
    pub(crate) next: Option<Instant>,
    /// Its earliest entry in the schedule.
    pub(crate) scheduled: Option<Instant>,
}

/// The set of the peers' current endpoint addresses, rebuilt from the peers at most once per
/// [`EndpointIps::REFRESH`] and only when asked (under a flood, by messages over their
/// source's cookie-reply limit), so keeping it costs nothing per packet and O(peers) per
/// second at most.
#[derive(Debug, Default)]
struct EndpointIps {
    built: Option<Instant>,
    ips: HashSet<IpAddr>,
}

impl EndpointIps {
    const REFRESH: Duration = Duration::from_secs(1);

    fn contains(&mut self, now: Instant, peers: &HashMap<PeerId, Peer>, ip: IpAddr) -> bool {
        let stale = self.built.map_or(true, |at| {
            now.saturating_duration_since(at) >= Self::REFRESH
        });
        if stale {
            self.ips.clear();
            self.ips
                .extend(peers.values().filter_map(|p| p.endpoint()).map(|e| e.ip()));
            self.built = Some(now);
        }
        self.ips.contains(&ip)
    }
}

/// Maps `Instant`s to wall-clock time from one reading supplied by the caller.
#[derive(Debug, Clone, Copy)]
struct WallClock {
    at: Instant,
    since_epoch: Duration,
}

impl WallClock {
    fn at(&self, now: Instant) -> Duration {
        match now.checked_duration_since(self.at) {
            Some(later) => self.since_epoch + later,
            None => self.since_epoch.saturating_sub(self.at - now),
        }
    }
}

/// One WireGuard interface's protocol state machine.
///
/// # Call order
///
/// The I/O shell owns the socket, the TUN device and the clock, and loops:
///
/// 1. Feed inputs as they arrive, each with the current time:
///    [`handle_incoming`](Self::handle_incoming) for every UDP datagram,
///    [`handle_outgoing`](Self::handle_outgoing) for every IP packet read from the TUN device.
/// 2. When the deadline from [`poll_timeout`](Self::poll_timeout) passes, call
///    [`handle_timeout`](Self::handle_timeout).
/// 3. After any `handle_*` call, drain the outputs: [`poll_transmit`](Self::poll_transmit)
///    until `None` (send each datagram), and [`poll_event`](Self::poll_event) until `None`
///    (write each delivered packet to the TUN device).
/// 4. Re-read [`poll_timeout`](Self::poll_timeout): any call above may have moved it.
///
/// Periodically, and after the system clock steps, refresh the wall-clock reading used for
/// handshake timestamps with [`set_wall_clock`](Self::set_wall_clock).
///
/// # Handshakes and load
///
/// Handshake messages are not processed by `handle_incoming`, which only queues them (as the
/// kernel queues them for its handshake workers): the caller runs
/// [`process_handshakes`](Self::process_handshakes) with a budget of Diffie-Hellman-costly
/// messages per round of its loop, and calls it again soon while it returns a non-zero
/// backlog. The backlog is the load signal, as in the kernel and wireguard-go: while at least
/// [`UNDER_LOAD_QUEUE_LEN`] messages wait, and for [`UNDER_LOAD_AFTER`] after, the interface is
/// under load and processes only handshakes with a valid cookie MAC2, at most 20 per second
/// per source address ([`crate::ratelimiter`]); others get a cheap cookie reply.
/// [`set_under_load`](Self::set_under_load) forces that mode.
pub struct Tunnel {
    identity: StaticIdentity,
    checker: CookieChecker,
    rng: ChaCha20Rng,
    peers: HashMap<PeerId, Peer>,
    /// Timer deadlines by peer, earliest first (see [`Tunnel::reschedule`]).
    schedule: BinaryHeap<Reverse<(Instant, PeerId)>>,
    by_key: HashMap<[u8; 32], PeerId>,
    indices: HashMap<u32, PeerId>,
    allowed_ips: AllowedIps<PeerId>,
    next_peer: u32,
    wall: WallClock,
    /// Whether the interface is up: while down nothing is sent or received.
    up: bool,
    forced_under_load: bool,
    last_under_load: Option<Instant>,
    handshakes: VecDeque<(SocketAddr, Vec<u8>)>,
    ratelimiter: Ratelimiter,
    /// The peers' endpoint addresses, exempt from the cookie-reply rate limit.
    endpoint_ips: EndpointIps,
    mtu: Option<usize>,
    outbox: Outbox,
    events: VecDeque<Pending>,
    /// The buffer of the last delivered event, returned to the pool at the next poll.
    delivered: Option<Vec<u8>>,
    counters: Counters,
}

impl core::fmt::Debug for Tunnel {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Tunnel")
            .field("identity", &self.identity)
            .field("peers", &self.peers.len())
            .finish_non_exhaustive()
    }
}

impl Tunnel {
    /// A tunnel with the given private key, a 32-byte seed for all of its randomness (draw it
    /// from the OS RNG in production; fix it in tests to replay handshakes), and a wall-clock
    /// reading: `since_epoch` is the Unix time at `now`.
    pub fn new(
        private_key: [u8; 32],
        rng_seed: [u8; 32],
        now: Instant,
        since_epoch: Duration,
    ) -> Tunnel {
        let identity = StaticIdentity::new(private_key);
        Tunnel {
            checker: CookieChecker::new(identity.public_key()),
            identity,
            rng: ChaCha20Rng::from_seed(rng_seed),
            peers: HashMap::new(),
            schedule: BinaryHeap::new(),
            by_key: HashMap::new(),
            indices: HashMap::new(),
            allowed_ips: AllowedIps::new(),
            next_peer: 0,
            wall: WallClock {
                at: now,
                since_epoch,
            },
            up: true,
            forced_under_load: false,
            last_under_load: None,
            handshakes: VecDeque::new(),
            ratelimiter: Ratelimiter::new(),
            endpoint_ips: EndpointIps::default(),
            mtu: None,
            outbox: Outbox::default(),
            events: VecDeque::new(),
            delivered: None,
            counters: Counters::default(),
        }
    }

    /// Our static public key.
    pub fn public_key(&self) -> &[u8; 32] {
        self.identity.public_key()
    }

    /// Refreshes the wall-clock reading: `since_epoch` is the Unix time at `now`.
    pub fn set_wall_clock(&mut self, now: Instant, since_epoch: Duration) {
        self.wall = WallClock {
            at: now,
            since_epoch,
        };
    }

    /// Forces (or stops forcing) the under-load mode, whatever the handshake backlog.
    pub fn set_under_load(&mut self, under_load: bool) {
        self.forced_under_load = under_load;
    }

    /// Whether handshakes at `now` need a cookie: forced, or the backlog is at least
    /// [`UNDER_LOAD_QUEUE_LEN`], or it was within the last [`UNDER_LOAD_AFTER`].
    fn under_load(&mut self, now: Instant) -> bool {
        if self.forced_under_load || self.handshakes.len() >= UNDER_LOAD_QUEUE_LEN {
            self.last_under_load = Some(now);
            return true;
        }
        match self.last_under_load {
            Some(t) if now < t + UNDER_LOAD_AFTER => true,
            Some(_) => {
                self.last_under_load = None;
                false
            }
            None => false,
        }
    }

    /// Handshake messages waiting for [`process_handshakes`](Self::process_handshakes).
    pub fn pending_handshakes(&self) -> usize {
        self.handshakes.len()
    }

    /// Processes queued handshake messages in arrival order until `budget` of them needed
    /// Diffie-Hellman work (dropped or cookie-answered ones cost nothing) or none is left.
    /// Returns how many still wait: call again soon if any.
    pub fn process_handshakes(&mut self, now: Instant, budget: usize) -> usize {
        let mut spent = 0;
        while spent < budget {
            let under_load = self.under_load(now);
            let Some((from, datagram)) = self.handshakes.pop_front() else {
                break;
            };
            let costly = match MessageType::classify(&datagram) {
                Some(MessageType::HandshakeInitiation) => {
                    self.handle_initiation(now, from, &datagram, under_load)
                }
                Some(MessageType::HandshakeResponse) => {
                    self.handle_response(now, from, &datagram, under_load)
                }
                _ => false,
            };
            spent += usize::from(costly);
            self.outbox.recycle(datagram);
        }
        self.handshakes.len()
    }

    /// The TUN MTU, used to cap padding. `None` pads to 16 bytes unconditionally.
    pub fn set_mtu(&mut self, mtu: Option<usize>) {
        self.mtu = mtu;
    }

    /// The MTU given to [`set_mtu`](Self::set_mtu).
    pub fn mtu(&self) -> Option<usize> {
        self.mtu
    }

    /// How many session indices are registered (tests check none leak).
    #[cfg(test)]
    pub(crate) fn index_count(&self) -> usize {
        self.indices.len()
    }

    /// Drop counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Adds a peer. If it has a persistent keepalive and an endpoint, a keepalive (and so a
    /// handshake) is started at once, as the kernel does when the interface is up.
    pub fn add_peer(&mut self, now: Instant, config: PeerConfig) -> Result<PeerId, PeerError> {
        if self.by_key.contains_key(&config.public_key) {
            return Err(PeerError::Duplicate);
        }
        if &config.public_key == self.identity.public_key() {
            return Err(PeerError::OwnKey);
        }
        let id = PeerId(self.next_peer);
        self.next_peer += 1;
        let peer = Peer::new(
            &self.identity,
            id,
            config.public_key,
            config.preshared_key,
            config.endpoint,
            config.persistent_keepalive,
        );
        let keepalive = peer.persistent_keepalive().is_some() && peer.endpoint().is_some();
        self.peers.insert(id, peer);
        self.by_key.insert(config.public_key, id);
        for (addr, cidr) in config.allowed_ips {
            self.allowed_ips.insert(addr, cidr, id);
        }
        if keepalive && self.up {
            self.with_peer(now, id, |peer, ctx| peer.send_keepalive(ctx, now));
        }
        self.reschedule(id);
        Ok(id)
    }

    /// Changes the interface's private key, as the kernel's `set_device` does: nothing happens
    /// if it is the current key. Otherwise the peer whose public key is the new identity's is
    /// removed, the cookie MAC keys and every peer's precomputed static-static secret are
    /// recomputed, and every peer's handshake in flight is abandoned and its current and next
    /// keypairs stop sending (they still decrypt packets in flight), so the next packet to each
    /// peer starts a handshake under the new identity. Staged packets, endpoints and statistics
    /// are kept. Returns whether the key changed.
    pub fn set_private_key(&mut self, private_key: [u8; 32]) -> bool {
        let identity = StaticIdentity::new(private_key);
        if identity.public_key() == self.identity.public_key() {
            // The same key up to clamping, which X25519 applies anyway.
            return false;
        }
        let own = *identity.public_key();
        self.remove_peer(&own);
        self.identity = identity;
        self.checker = CookieChecker::new(self.identity.public_key());
        let now = self.wall.at;
        let ids: Vec<PeerId> = self.peers.keys().copied().collect();
        for id in ids {
            self.with_peer(now, id, |peer, ctx| peer.identity_changed(ctx));
        }
        true
    }

    /// Sets a peer's preshared key (`None`: none). Its sessions are kept; the next handshake
    /// uses the new key (as in the kernel and wireguard-go). Returns whether the peer exists.
    pub fn set_preshared_key(&mut self, id: PeerId, psk: Option<[u8; 32]>) -> bool {
        self.peers
            .get_mut(&id)
            .map(|peer| peer.set_preshared_key(psk))
            .is_some()
    }

    /// Sets a peer's persistent keepalive interval in seconds (`None` or 0: off). It takes
    /// effect at once; turning it on sends a keepalive now (starting a handshake if there is no
    /// session) when the endpoint is known, as the kernel does. Returns whether the peer exists.
    pub fn set_persistent_keepalive(
        &mut self,
        now: Instant,
        id: PeerId,
        seconds: Option<u16>,
    ) -> bool {
        let up = self.up;
        self.with_peer(now, id, |peer, ctx| {
            peer.set_persistent_keepalive(ctx, now, seconds, up)
        })
        .is_some()
    }

    /// Whether the interface is up.
    pub fn is_up(&self) -> bool {
        self.up
    }

    /// The interface went up or down (a new tunnel is up). As the kernel's `wg_stop`, going
    /// down forgets every peer's sessions, handshake in flight, staged packets and timers, and
    /// while down nothing is sent, received or scheduled. As its `wg_open`, going up sends a
    /// keepalive (so a handshake) to every peer with a persistent keepalive and an endpoint.
    pub fn set_up(&mut self, now: Instant, up: bool) {
        if up == self.up {
            return;
        }
        self.up = up;
        let ids: Vec<PeerId> = self.peers.keys().copied().collect();
        for id in ids {
            self.with_peer(now, id, |peer, ctx| {
                if up {
                    if peer.persistent_keepalive().is_some() && peer.endpoint().is_some() {
                        peer.send_keepalive(ctx, now);
                    }
                } else {
                    peer.stop(ctx);
                }
            });
        }
        if !up {
            for (_, buf) in self.handshakes.drain(..) {
                self.outbox.recycle(buf);
            }
            while let Some((_, buf)) = self.outbox.queue.pop_front() {
                self.outbox.recycle(buf);
            }
        }
    }

    /// Removes a peer and all of its allowed IPs and state. Returns whether it existed.
    pub fn remove_peer(&mut self, public_key: &[u8; 32]) -> bool {
        let Some(id) = self.by_key.remove(public_key) else {
            return false;
        };
        self.allowed_ips.remove_value(id);
        if let Some(peer) = self.peers.remove(&id) {
            let now = self.wall.at;
            let mut ctx = Ctx {
                identity: &self.identity,
                rng: &mut self.rng,
                indices: &mut self.indices,
                outbox: &mut self.outbox,
                events: &mut self.events,
                counters: &mut self.counters,
                wall: self.wall.at(now),
                mtu: self.mtu,
            };
            peer.release(&mut ctx);
        }
        self.settle_schedule();
        true
    }

    /// The peer with this public key.
    pub fn peer_id(&self, public_key: &[u8; 32]) -> Option<PeerId> {
        self.by_key.get(public_key).copied()
    }

    /// A peer's state.
    pub fn peer(&self, id: PeerId) -> Option<&Peer> {
        self.peers.get(&id)
    }

    /// A peer's state, for configuration changes such as the endpoint.
    pub fn peer_mut(&mut self, id: PeerId) -> Option<&mut Peer> {
        self.peers.get_mut(&id)
    }

    /// The cryptokey routing table.
    pub fn allowed_ips(&self) -> &AllowedIps<PeerId> {
        &self.allowed_ips
    }

    /// The cryptokey routing table, for configuration changes.
    pub fn allowed_ips_mut(&mut self) -> &mut AllowedIps<PeerId> {
        &mut self.allowed_ips
    }

    /// Runs `f` on a peer with the device context borrowed alongside, then reschedules the
    /// peer's timers.
    fn with_peer<T>(
        &mut self,
        now: Instant,
        id: PeerId,
        f: impl FnOnce(&mut Peer, &mut Ctx<'_>) -> T,
    ) -> Option<T> {
        let (out, _) = self.run_on_peer(now, id, f)?;
        self.compact_schedule();
        self.settle_schedule();
        Some(out)
    }

    /// The common part of [`with_peer`](Self::with_peer) and the bulk path's variant: runs
    /// `f` on the peer with the device context, then enters the peer's next deadline in the
    /// schedule if it moved earlier (as [`reschedule`](Self::reschedule) does), all through one
    /// lookup. Returns `f`'s result and the peer's deadlines after it.
    pub(crate) fn run_on_peer<T>(
        &mut self,
        now: Instant,
        id: PeerId,
        f: impl FnOnce(&mut Peer, &mut Ctx<'_>) -> T,
    ) -> Option<(T, PeerDeadlines)> {
        let peer = self.peers.get_mut(&id)?;
        let mut ctx = Ctx {
            identity: &self.identity,
            rng: &mut self.rng,
            indices: &mut self.indices,
            outbox: &mut self.outbox,
            events: &mut self.events,
            counters: &mut self.counters,
            wall: self.wall.at(now),
            mtu: self.mtu,
        };
        let out = f(peer, &mut ctx);
        let next = peer.next_timeout();
        Self::enter_earlier(&mut self.schedule, peer, id, next);
        let deadlines = PeerDeadlines {
            next,
            scheduled: peer.scheduled,
        };
        Some((out, deadlines))
    }

    /// Pushes `next` as the peer's schedule entry if it is earlier than the one it has.
    fn enter_earlier(
        schedule: &mut BinaryHeap<Reverse<(Instant, PeerId)>>,
        peer: &mut Peer,
        id: PeerId,
        next: Option<Instant>,
    ) {
        if let Some(next) = next {
            if peer.scheduled.map_or(true, |s| next < s) {
                peer.scheduled = Some(next);
                schedule.push(Reverse((next, id)));
            }
        }
    }

    /// Keeps the timer schedule in step with a peer whose timers may have changed.
    ///
    /// The schedule is a min-heap of `(deadline, peer)` with lazy deletion, so
    /// [`poll_timeout`](Self::poll_timeout) is O(1) and a timer change O(log n), whatever the
    /// number of peers. Each peer remembers the earliest deadline it has in the heap
    /// (`scheduled`); an entry is pushed only when its next deadline moves *earlier* than
    /// that. A deadline that moved later (e.g. a keepalive re-armed by every packet) keeps its
    /// early entry until it reaches the top, where [`settle_schedule`](Self::settle_schedule)
    /// replaces it with the real deadline. So traffic does not grow the heap, the top is
    /// always exact, and entries of removed peers or superseded deadlines are dropped when
    /// they surface. If stale entries still pile up below the top, the heap is rebuilt from
    /// the peers.
    fn reschedule(&mut self, id: PeerId) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let next = peer.next_timeout();
        Self::enter_earlier(&mut self.schedule, peer, id, next);
        self.compact_schedule();
    }

    /// Rebuilds the schedule from the peers when stale entries have piled up below the top.
    pub(crate) fn compact_schedule(&mut self) {
        if self.schedule.len() > 2 * self.peers.len() + 64 {
            self.schedule = self
                .peers
                .iter()
                .filter_map(|(&id, p)| p.scheduled.map(|t| Reverse((t, id))))
                .collect();
        }
    }

    /// Pops stale entries off the top of the schedule until the top is some peer's real next
    /// deadline, so that [`poll_timeout`](Self::poll_timeout) is exact.
    fn settle_schedule(&mut self) {
        while let Some(&Reverse((at, id))) = self.schedule.peek() {
            let Some(peer) = self.peers.get_mut(&id) else {
                self.schedule.pop(); // removed
                continue;
            };
            if peer.scheduled == Some(at) && peer.next_timeout() == Some(at) {
                return;
            }
            self.schedule.pop();
            if peer.scheduled == Some(at) {
                // The deadline moved later (or went away): enter the real one.
                peer.scheduled = None;
                self.reschedule(id);
            }
        }
    }

    /// How many entries the timer schedule holds (tests check it stays bounded).
    #[cfg(test)]
    pub(crate) fn schedule_len(&self) -> usize {
        self.schedule.len()
    }

    // ---- Inputs. -------------------------------------------------------------------

    /// Processes one UDP datagram received from `from`.
    pub fn handle_incoming(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        if !self.up {
            self.counters.rx_dropped_down += 1;
            return;
        }
        match MessageType::classify(datagram) {
            Some(MessageType::HandshakeInitiation | MessageType::HandshakeResponse) => {
                self.queue_handshake(from, datagram)
            }
            Some(MessageType::CookieReply) => self.handle_cookie_reply(now, datagram),
            Some(MessageType::TransportData) => self.handle_data(now, from, datagram),
            None => self.counters.rx_dropped_malformed += 1,
        }
    }

    fn queue_handshake(&mut self, from: SocketAddr, datagram: &[u8]) {
        if self.handshakes.len() >= MAX_QUEUED_HANDSHAKES {
            self.counters.rx_dropped_handshake_queue_full += 1;
            return;
        }
        let mut buf = self.outbox.take_buffer(datagram.len());
        buf.copy_from_slice(datagram);
        self.handshakes.push_back((from, buf));
    }

    /// The MAC gate in front of both handshake messages, with the rate limit under load.
    /// Returns whether to go on.
    fn admit(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
        sender_index: u32,
        under_load: bool,
    ) -> bool {
        let admission = match self
            .checker
            .admit(now, &mut self.rng, datagram, from, under_load)
        {
            // The per-source limit on cookie replies must not let an off-path attacker who
            // spoofs a configured peer's address starve that peer of cookies (the kernel
            // answers every message): a peer's current endpoint address is always answered.
            Admission::RateLimited if self.endpoint_ips.contains(now, &self.peers, from.ip()) => {
                Admission::ReplyWithCookie
            }
            admission => admission,
        };
        match admission {
            Admission::Process if under_load && !self.ratelimiter.allow(now, from.ip()) => {
                self.counters.rx_dropped_ratelimited += 1;
                false
            }
            Admission::Process => true,
            Admission::Drop => {
                self.counters.rx_dropped_mac += 1;
                false
            }
            Admission::RateLimited => {
                self.counters.rx_dropped_ratelimited += 1;
                false
            }
            Admission::ReplyWithCookie => {
                let mut buf = self.outbox.take_buffer(COOKIE_REPLY_LEN);
                self.checker.create_reply(
                    now,
                    &mut self.rng,
                    datagram,
                    sender_index,
                    from,
                    &mut buf,
                );
                self.outbox.push(from, buf);
                self.counters.rx_cookie_replies_sent += 1;
                false
            }
        }
    }

    /// Returns whether the message got past the MAC gate (and so cost a DH).
    fn handle_initiation(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
        under_load: bool,
    ) -> bool {
        // classify() checked type and length.
        let msg = HandshakeInitiation::new_unchecked(datagram);
        if !self.admit(now, from, datagram, msg.sender_index(), under_load) {
            return false;
        }
        let (by_key, peers) = (&self.by_key, &self.peers);
        let received = consume_initiation_precomputed(&self.identity, &msg, |remote| {
            by_key
                .get(remote)
                .and_then(|id| peers.get(id))
                .and_then(Peer::static_static)
        });
        let received = match received {
            Ok(received) => received,
            Err(HandshakeError::UnknownPeer) => {
                self.counters.rx_dropped_unknown_peer += 1;
                return true;
            }
            Err(_) => {
                self.counters.rx_dropped_invalid += 1;
                return true;
            }
        };
        let Some(&id) = self.by_key.get(received.remote_static()) else {
            self.counters.rx_dropped_unknown_peer += 1;
            return true;
        };
        self.with_peer(now, id, |peer, ctx| {
            peer.handle_initiation(ctx, now, from, received)
        });
        true
    }

    /// Returns whether the message got past the MAC gate (and so may have cost DH work).
    fn handle_response(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
        under_load: bool,
    ) -> bool {
        let msg = HandshakeResponse::new_unchecked(datagram);
        if !self.admit(now, from, datagram, msg.sender_index(), under_load) {
            return false;
        }
        let index = msg.receiver_index();
        let Some(&id) = self.indices.get(&index) else {
            self.counters.rx_dropped_unknown_index += 1;
            return false;
        };
        let accepted = self
            .with_peer(now, id, |peer, ctx| {
                peer.is_handshake_index(index) && peer.handle_response(ctx, now, from, &msg)
            })
            .unwrap_or(false);
        if !accepted {
            self.counters.rx_dropped_invalid += 1;
        }
        true
    }

    fn handle_cookie_reply(&mut self, now: Instant, datagram: &[u8]) {
        let msg = CookieReply::new_unchecked(datagram);
        let Some(&id) = self.indices.get(&msg.receiver_index()) else {
            self.counters.rx_dropped_unknown_index += 1;
            return;
        };
        let ok = self
            .peers
            .get_mut(&id)
            .is_some_and(|p| p.handle_cookie_reply(now, &msg));
        if !ok {
            self.counters.rx_dropped_invalid += 1;
        }
    }

    fn handle_data(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        let msg = TransportData::new_unchecked(datagram);
        let Some(&id) = self.indices.get(&msg.receiver_index()) else {
            self.counters.rx_dropped_unknown_index += 1;
            return;
        };
        let Some(Received::Packet(mut packet)) =
            self.with_peer(now, id, |peer, ctx| peer.handle_data(ctx, now, from, &msg))
        else {
            return;
        };
        let Some(len) = self.check_inner(id, &packet) else {
            self.outbox.recycle(packet);
            return;
        };
        // Received bytes of a data message count once its packet passed the inner checks.
        if let Some(peer) = self.peers.get_mut(&id) {
            peer.count_received(datagram.len());
        }
        packet.truncate(len);
        self.events.push_back(Pending::Deliver(id, packet));
    }

    /// The length of a decrypted packet from peer `id` without its padding, read from the
    /// inner header, if the packet is well-formed and its source is routed to that peer
    /// (cryptokey routing, §2); otherwise counted as dropped.
    fn check_inner(&mut self, id: PeerId, packet: &[u8]) -> Option<usize> {
        let verdict = self.inspect_inner(id, packet);
        self.count_inner(verdict)
    }

    /// [`check_inner`](Self::check_inner) without counting a drop: the packet's length
    /// without padding, or why it is dropped.
    fn inspect_inner(&self, id: PeerId, packet: &[u8]) -> Result<usize, InnerDrop> {
        let (len, src, _) = parse_inner(packet).ok_or(InnerDrop::Malformed)?;
        if self.allowed_ips.lookup(src) != Some(id) {
            return Err(InnerDrop::Source);
        }
        Ok(len)
    }

    /// Counts the drop of an [`inspect_inner`](Self::inspect_inner) verdict; the length to
    /// deliver otherwise.
    fn count_inner(&mut self, verdict: Result<usize, InnerDrop>) -> Option<usize> {
        match verdict {
            Ok(len) => Some(len),
            Err(InnerDrop::Malformed) => {
                self.counters.rx_dropped_inner_malformed += 1;
                None
            }
            Err(InnerDrop::Source) => {
                self.counters.rx_dropped_source += 1;
                None
            }
        }
    }

    /// Processes one IP packet read from the TUN device: routes it by destination to a peer
    /// and encrypts it, or stages it and starts a handshake.
    pub fn handle_outgoing(&mut self, now: Instant, packet: &[u8]) {
        if !self.up {
            self.counters.tx_dropped_down += 1;
            return;
        }
        let Some((_, _, dst)) = parse_inner(packet) else {
            self.counters.tx_dropped_no_route += 1;
            return;
        };
        let Some(id) = self.allowed_ips.lookup(dst) else {
            self.counters.tx_dropped_no_route += 1;
            return;
        };
        if self.peers.get(&id).is_some_and(|p| p.endpoint().is_none()) {
            self.counters.tx_dropped_no_endpoint += 1;
            return;
        }
        self.with_peer(now, id, |peer, ctx| peer.send_packet(ctx, now, packet));
    }

    /// Runs every timer due at `now`: only the peers that have one, in deadline order.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&Reverse((at, id))) = self.schedule.peek() {
            if at > now {
                break;
            }
            self.schedule.pop();
            let Some(peer) = self.peers.get_mut(&id) else {
                continue; // removed
            };
            if peer.scheduled != Some(at) {
                continue; // superseded by an earlier entry, already handled
            }
            peer.scheduled = None;
            // Runs the due timers and reschedules.
            self.with_peer(now, id, |peer, ctx| peer.handle_timeout(ctx, now));
        }
        self.settle_schedule();
    }

    // ---- Outputs. ------------------------------------------------------------------

    /// Copies the next datagram to send into `buf` (which should hold at least the largest
    /// datagram: MTU + 32 bytes). A datagram that does not fit is dropped and counted.
    pub fn poll_transmit(&mut self, buf: &mut [u8]) -> Option<Transmit> {
        loop {
            let (dst, datagram) = self.outbox.queue.pop_front()?;
            let len = datagram.len();
            let fits = len <= buf.len();
            if fits {
                buf[..len].copy_from_slice(&datagram);
            } else {
                self.counters.tx_dropped_buffer_too_small += 1;
            }
            self.outbox.recycle(datagram);
            if fits {
                return Some(Transmit { dst, len });
            }
        }
    }

    /// The earliest instant at which [`handle_timeout`](Self::handle_timeout) has work. O(1).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.schedule.peek().map(|Reverse((at, _))| *at)
    }

    /// The next event. A delivered packet borrows the tunnel until the next call.
    pub fn poll_event(&mut self) -> Option<Event<'_>> {
        if let Some(buf) = self.delivered.take() {
            self.outbox.recycle(buf);
        }
        match self.events.pop_front()? {
            Pending::HandshakeComplete(peer) => Some(Event::HandshakeComplete { peer }),
            Pending::Deliver(peer, buf) => {
                let packet = &self.delivered.insert(buf)[..];
                Some(Event::Deliver { peer, packet })
            }
        }
    }
}

/// Why a decrypted packet is not delivered.
#[derive(Debug, Clone, Copy)]
enum InnerDrop {
    /// Neither a well-formed IPv4 nor IPv6 packet.
    Malformed,
    /// Its source is not in the sending peer's allowed IPs.
    Source,
}

/// The total length, source and destination of an IPv4 or IPv6 packet, if its header is
/// well-formed and its length field fits the buffer.
fn parse_inner(packet: &[u8]) -> Option<(usize, IpAddr, IpAddr)> {
    match packet.first()? >> 4 {
        4 if packet.len() >= 20 => {
            let len = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
            let src: [u8; 4] = packet[12..16].try_into().ok()?;
            let dst: [u8; 4] = packet[16..20].try_into().ok()?;
            (20..=packet.len())
                .contains(&len)
                .then(|| (len, Ipv4Addr::from(src).into(), Ipv4Addr::from(dst).into()))
        }
        6 if packet.len() >= 40 => {
            let len = 40 + usize::from(u16::from_be_bytes([packet[4], packet[5]]));
            let src: [u8; 16] = packet[8..24].try_into().ok()?;
            let dst: [u8; 16] = packet[24..40].try_into().ok()?;
            (len <= packet.len())
                .then(|| (len, Ipv6Addr::from(src).into(), Ipv6Addr::from(dst).into()))
        }
        _ => None,
    }
}
