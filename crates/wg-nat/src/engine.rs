//! The traversal state machine of one interface: registration and discovery at the relay,
//! candidate exchange, simultaneous probing, path selection, keepalives. Sans-IO: it takes
//! `now`, the wall-clock time and datagrams, and queues datagrams to send from the tunnel's
//! own socket plus path changes for the tunnel's peers.
//!
//! Per peer (only the peers handed to [`Nat::set_peers`]: those without a configured
//! endpoint), the path is:
//! * `Direct(addr)` / `Lan(addr)` while a probe to `addr` was answered within
//!   [`DIRECT_TIMEOUT`] (pings every [`KEEPALIVE`] hold the NAT mappings), `Lan` when `addr`
//!   is one of the peer's host candidates;
//! * otherwise `Relay` while the relay reports a session with the peer (both registered and
//!   named each other): WireGuard messages go through the relay from the first packet;
//! * otherwise `None`.
//!
//! When a session appears, and every [`RETRY`] while not direct, and when our reflexive
//! address changes (NAT rebinding), we send our candidates through the relay ("punch now",
//! asking for the peer's) and probe the peer's candidates every [`PROBE_INTERVAL`] for
//! [`PROBE_DURATION`]; the peer, receiving ours, does the same at the same time. A ping from
//! an address we did not know (a symmetric NAT's new mapping) is answered and probed back.
//!
//! Security: only a pong to one of our own pings (a random transaction id, sent to that
//! address) makes an address a path; everything is sealed and replay-checked
//! ([`crate::wire`]), so a forged or replayed message changes no path.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use zeroize::Zeroizing;

use crate::msg::{CandidateKind, FromRelay, PeerMsg, ToRelay, MAX_LIST};
use crate::wire::{self, Counter, ReplayWindow, SealKey};

/// Probes are sent this often while probing.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// A probing burst lasts this long.
pub const PROBE_DURATION: Duration = Duration::from_secs(10);
/// While not direct, candidates are exchanged and probing restarts this often.
pub const RETRY: Duration = Duration::from_secs(15);
/// A direct path is pinged this often (holds the NAT mappings).
pub const KEEPALIVE: Duration = Duration::from_secs(5);
/// A direct path with no pong for this long is dead.
pub const DIRECT_TIMEOUT: Duration = Duration::from_secs(16);
/// Registration at the relay is refreshed this often once acknowledged.
pub const REGISTER_INTERVAL: Duration = Duration::from_secs(5);
/// Until the relay answers, registration is retried this often.
pub const REGISTER_RETRY: Duration = Duration::from_secs(1);
/// Outstanding pings are forgotten after this long.
const PING_TTL: Duration = Duration::from_secs(20);

/// The path to a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// No path known (no relay session and no direct path).
    None,
    /// Through the relay.
    Relay,
    /// Directly to this address.
    Direct(SocketAddr),
    /// Directly to this address, one of the peer's local-interface addresses.
    Lan(SocketAddr),
}

impl std::fmt::Display for Path {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Path::None => f.write_str("none"),
            Path::Relay => f.write_str("relay"),
            Path::Direct(a) => write!(f, "direct {a}"),
            Path::Lan(a) => write!(f, "lan {a}"),
        }
    }
}

/// What became of a received control datagram.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming<'a> {
    /// A control message, handled.
    Consumed,
    /// Not ours, unauthenticated, replayed or malformed: dropped.
    Dropped,
    /// Relayed WireGuard ciphertext from `peer`: hand it to the protocol.
    Deliver {
        /// The peer's public key.
        peer: [u8; 32],
        /// The WireGuard message.
        packet: &'a [u8],
    },
}

/// Something the caller acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatEvent {
    /// Send the peer's WireGuard messages along `path` from now on: to the address for
    /// `Direct`/`Lan`, to [`Nat::virtual_endpoint`] (wrapped by [`Nat::relay_header`]) for
    /// `Relay`.
    PathChanged {
        /// The peer's public key.
        peer: [u8; 32],
        /// The new path.
        path: Path,
    },
}

#[derive(Debug)]
struct RelayLink {
    addr: SocketAddr,
    public: [u8; 32],
    to_key: SealKey,
    from_key: SealKey,
    replay: ReplayWindow,
    next_register: Instant,
    last_heard: Option<Instant>,
    observed: Option<SocketAddr>,
}

#[derive(Debug, Clone, Copy)]
struct DirectPath {
    addr: SocketAddr,
    lan: bool,
    last_pong: Instant,
}

#[derive(Debug)]
struct PeerNat {
    to_key: SealKey,
    from_key: SealKey,
    replay: ReplayWindow,
    index: u16,
    session: Option<u64>,
    remote: Vec<(CandidateKind, SocketAddr)>,
    /// Addresses pings came from that were not among the candidates.
    reflexive_seen: Vec<SocketAddr>,
    probe_until: Option<Instant>,
    next_probe: Instant,
    pings: HashMap<u64, (SocketAddr, Instant)>,
    direct: Option<DirectPath>,
    next_keepalive: Instant,
    next_retry: Instant,
    path: Path,
    since: Instant,
}

/// Status of one peer's path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathStatus {
    /// The current path.
    pub path: Path,
    /// When it became the path.
    pub since: Instant,
    /// The relay session id, if any.
    pub session: Option<u64>,
}

/// The traversal state of one interface.
#[derive(Debug)]
pub struct Nat {
    private: Zeroizing<[u8; 32]>,
    public: [u8; 32],
    relay: Option<RelayLink>,
    peers: HashMap<[u8; 32], PeerNat>,
    next_index: u16,
    local: Vec<SocketAddr>,
    counter: Counter,
    wall: Duration,
    rng: ChaCha20Rng,
    out: VecDeque<(SocketAddr, Vec<u8>)>,
    events: VecDeque<NatEvent>,
}

/// Virtual endpoints of relayed peers live in the discard-only prefix 100::/64 (RFC 6666):
/// never a real address.
const VIRTUAL_PREFIX: u16 = 0x0100;

impl Nat {
    /// A traversal engine for the interface with `private_key`; `seed` feeds the transaction
    /// ids; `since_epoch` is the wall-clock time (counters are timestamps).
    pub fn new(private_key: [u8; 32], seed: [u8; 32], since_epoch: Duration) -> Nat {
        Nat {
            public: wire::public_key(&private_key),
            private: Zeroizing::new(private_key),
            relay: None,
            peers: HashMap::new(),
            next_index: 1,
            local: Vec::new(),
            counter: Counter::default(),
            wall: since_epoch,
            rng: ChaCha20Rng::from_seed(seed),
            out: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Our public key.
    pub fn public_key(&self) -> &[u8; 32] {
        &self.public
    }

    /// The wall-clock time, for counters and replay checks.
    pub fn set_wall_clock(&mut self, since_epoch: Duration) {
        self.wall = since_epoch;
    }

    /// Sets or removes the relay (address and public key). Registration starts at once.
    pub fn set_relay(&mut self, now: Instant, relay: Option<(SocketAddr, [u8; 32])>) {
        if self.relay.as_ref().map(|r| (r.addr, r.public)) == relay {
            return;
        }
        self.relay = relay.and_then(|(addr, public)| {
            let shared = Zeroizing::new(wire::dh(&self.private, &public)?);
            Some(RelayLink {
                addr,
                public,
                to_key: SealKey::to_relay(&shared, &self.public, &public),
                from_key: SealKey::from_relay(&shared, &self.public, &public),
                replay: ReplayWindow::default(),
                next_register: now,
                last_heard: None,
                observed: None,
            })
        });
        for peer in self.peers.values_mut() {
            peer.session = None;
        }
        self.update_paths(now);
    }

    /// The relay's address, if one is configured.
    pub fn relay_addr(&self) -> Option<SocketAddr> {
        self.relay.as_ref().map(|r| r.addr)
    }

    /// Our address as the relay last saw it.
    pub fn reflexive(&self) -> Option<SocketAddr> {
        self.relay.as_ref().and_then(|r| r.observed)
    }

    /// The peers to traverse to (the others are left alone and never get a control message).
    pub fn set_peers(&mut self, now: Instant, peers: &[[u8; 32]]) {
        self.peers.retain(|k, _| peers.contains(k));
        let mut added = false;
        for key in peers {
            if self.peers.contains_key(key) || *key == self.public {
                continue;
            }
            let Some(shared) = wire::dh(&self.private, key).map(Zeroizing::new) else {
                continue;
            };
            let index = self.next_index;
            self.next_index = self.next_index.wrapping_add(1).max(1);
            self.peers.insert(
                *key,
                PeerNat {
                    to_key: SealKey::peer(&shared, &self.public, key),
                    from_key: SealKey::peer(&shared, key, &self.public),
                    replay: ReplayWindow::default(),
                    index,
                    session: None,
                    remote: Vec::new(),
                    reflexive_seen: Vec::new(),
                    probe_until: None,
                    next_probe: now,
                    pings: HashMap::new(),
                    direct: None,
                    next_keepalive: now,
                    next_retry: now + RETRY,
                    path: Path::None,
                    since: now,
                },
            );
            added = true;
        }
        if added {
            if let Some(relay) = &mut self.relay {
                relay.next_register = now;
            }
        }
    }

    /// Our local-interface addresses (host candidates), with the tunnel's port.
    pub fn set_local_addresses(&mut self, addrs: Vec<SocketAddr>) {
        self.local = addrs;
        self.local.truncate(MAX_LIST / 2);
    }

    /// The path to `peer` and since when.
    pub fn status(&self, peer: &[u8; 32]) -> Option<PathStatus> {
        self.peers.get(peer).map(|p| PathStatus {
            path: p.path,
            since: p.since,
            session: p.session,
        })
    }

    /// The placeholder endpoint the tunnel uses for `peer` while it is relayed: an address
    /// of 100::/64 that [`Nat::peer_for_virtual`] maps back.
    pub fn virtual_endpoint(&self, peer: &[u8; 32]) -> Option<SocketAddr> {
        let index = self.peers.get(peer)?.index;
        let ip = Ipv6Addr::new(VIRTUAL_PREFIX, 0, 0, 0, 0, 0, 0, index);
        Some(SocketAddr::new(IpAddr::V6(ip), 1))
    }

    /// Whether `addr` is a virtual endpoint (of any peer).
    pub fn is_virtual(addr: &SocketAddr) -> bool {
        matches!(addr.ip(), IpAddr::V6(ip) if ip.segments()[..4] == [VIRTUAL_PREFIX, 0, 0, 0])
    }

    /// The peer whose virtual endpoint is `addr`.
    pub fn peer_for_virtual(&self, addr: &SocketAddr) -> Option<[u8; 32]> {
        let IpAddr::V6(ip) = addr.ip() else {
            return None;
        };
        if !Self::is_virtual(addr) {
            return None;
        }
        let index = ip.segments()[7];
        self.peers
            .iter()
            .find(|(_, p)| p.index == index)
            .map(|(k, _)| *k)
    }

    /// For a WireGuard message to `peer` through the relay: where to send it and the header to
    /// put in front of it. `None` without a session.
    pub fn relay_header(&self, peer: &[u8; 32]) -> Option<(SocketAddr, [u8; wire::DATA_HEADER])> {
        let relay = self.relay.as_ref()?;
        let session = self.peers.get(peer)?.session?;
        Some((relay.addr, wire::data_header(session)))
    }

    /// The source to report to the protocol for relayed messages from `peer`: the direct
    /// address while the path is direct (so the protocol's roaming does not undo the path
    /// choice), else the virtual endpoint.
    pub fn inbound_source(&self, peer: &[u8; 32]) -> Option<SocketAddr> {
        match self.peers.get(peer)?.path {
            Path::Direct(a) | Path::Lan(a) => Some(a),
            _ => self.virtual_endpoint(peer),
        }
    }

    /// Handles a datagram that is not a WireGuard message.
    pub fn handle_datagram<'a>(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &'a [u8],
    ) -> Incoming<'a> {
        match wire::kind(datagram) {
            Some(wire::KIND_DATA) => {
                let Some(relay) = &self.relay else {
                    return Incoming::Dropped;
                };
                let Some(session) = wire::data_session(datagram) else {
                    return Incoming::Dropped;
                };
                if from != relay.addr {
                    return Incoming::Dropped;
                }
                match self.peers.iter().find(|(_, p)| p.session == Some(session)) {
                    Some((key, _)) => Incoming::Deliver {
                        peer: *key,
                        packet: &datagram[wire::DATA_HEADER..],
                    },
                    None => Incoming::Dropped,
                }
            }
            Some(wire::KIND_FROM_RELAY) => self.on_relay_message(now, from, datagram),
            Some(wire::KIND_PEER) => {
                let Some(sender) = wire::sender(datagram) else {
                    return Incoming::Dropped;
                };
                if self.peer_message(now, &sender, datagram, Some(from)) {
                    Incoming::Consumed
                } else {
                    Incoming::Dropped
                }
            }
            _ => Incoming::Dropped,
        }
    }

    fn on_relay_message(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
    ) -> Incoming<'static> {
        let wall = self.wall;
        let Some(relay) = &mut self.relay else {
            return Incoming::Dropped;
        };
        if from != relay.addr {
            return Incoming::Dropped;
        }
        let Some((counter, payload)) = wire::open_from_relay(&relay.from_key, datagram) else {
            return Incoming::Dropped;
        };
        if !relay.replay.accept(counter, wall) {
            return Incoming::Dropped;
        }
        relay.last_heard = Some(now);
        match FromRelay::decode(&payload) {
            Some(FromRelay::Registered { observed, sessions }) => {
                let moved = relay.observed.is_some_and(|o| o != observed);
                relay.observed = Some(observed);
                // Answered: the next refresh in a full interval (unless one is due now).
                if relay.next_register > now {
                    relay.next_register = relay.next_register.max(now + REGISTER_INTERVAL);
                }
                let mut punch = Vec::new();
                for (key, peer) in &mut self.peers {
                    let session = sessions.iter().find(|(k, _)| k == key).map(|(_, s)| *s);
                    if session.is_some() && (peer.session.is_none() || moved) {
                        punch.push(*key);
                    }
                    peer.session = session;
                }
                for key in punch {
                    self.punch(now, &key, true);
                }
                self.update_paths(now);
                Incoming::Consumed
            }
            Some(FromRelay::Signal { from, blob }) => {
                if wire::sender(&blob) == Some(from) && self.peer_message(now, &from, &blob, None) {
                    Incoming::Consumed
                } else {
                    Incoming::Dropped
                }
            }
            None => Incoming::Dropped,
        }
    }

    /// Opens and handles a peer message; `source` is the datagram's source when it came
    /// directly (not through a relay signal). Returns whether it authenticated.
    fn peer_message(
        &mut self,
        now: Instant,
        sender: &[u8; 32],
        message: &[u8],
        source: Option<SocketAddr>,
    ) -> bool {
        let wall = self.wall;
        let Some(peer) = self.peers.get_mut(sender) else {
            return false;
        };
        let Some((counter, payload)) = wire::open_from(&peer.from_key, message) else {
            return false;
        };
        if !peer.replay.accept(counter, wall) {
            return false;
        }
        let Some(msg) = PeerMsg::decode(&payload) else {
            return false;
        };
        match (msg, source) {
            (PeerMsg::Ping { txid }, Some(src)) => {
                self.send_peer(
                    sender,
                    src,
                    &PeerMsg::Pong {
                        txid,
                        observed: src,
                    },
                );
                let Some(peer) = self.peers.get_mut(sender) else {
                    return true;
                };
                let known = peer.remote.iter().any(|(_, a)| *a == src)
                    || peer.reflexive_seen.contains(&src);
                if !known {
                    // A mapping we did not know (a symmetric NAT): probe it back.
                    if peer.reflexive_seen.len() >= MAX_LIST / 2 {
                        peer.reflexive_seen.remove(0);
                    }
                    peer.reflexive_seen.push(src);
                    let txid = self.rng.next_u64();
                    let peer = self.peers.get_mut(sender).expect("present");
                    peer.pings.insert(txid, (src, now));
                    self.send_peer(sender, src, &PeerMsg::Ping { txid });
                    let peer = self.peers.get_mut(sender).expect("present");
                    if peer.probe_until.map_or(true, |t| t <= now) {
                        peer.probe_until = Some(now + PROBE_DURATION);
                        peer.next_probe = now + PROBE_INTERVAL;
                    }
                }
            }
            (PeerMsg::Pong { txid, .. }, Some(src)) => {
                let matches = peer.pings.get(&txid).is_some_and(|(addr, _)| *addr == src);
                if !matches {
                    return true;
                }
                peer.pings.remove(&txid);
                let lan = peer
                    .remote
                    .iter()
                    .any(|(k, a)| *a == src && *k == CandidateKind::Host)
                    && !peer
                        .remote
                        .iter()
                        .any(|(k, a)| *a == src && *k == CandidateKind::Reflexive);
                let take = match peer.direct {
                    None => true,
                    Some(d) if d.addr == src => true,
                    Some(d) => (lan && !d.lan) || now.duration_since(d.last_pong) > KEEPALIVE * 2,
                };
                if take {
                    if peer.direct.map_or(true, |d| d.addr != src) {
                        peer.next_keepalive = now + KEEPALIVE;
                    }
                    peer.direct = Some(DirectPath {
                        addr: src,
                        lan,
                        last_pong: now,
                    });
                }
                self.update_paths(now);
            }
            (PeerMsg::Candidates { reply, candidates }, _) => {
                peer.remote = candidates;
                peer.remote.truncate(MAX_LIST);
                peer.probe_until = Some(now + PROBE_DURATION);
                peer.next_probe = now;
                peer.next_retry = now + RETRY;
                if reply {
                    self.punch(now, sender, false);
                }
                self.probe(now, sender);
            }
            // Pings and pongs only count when they came directly.
            _ => {}
        }
        true
    }

    /// Our candidates: host addresses, then the reflexive one.
    fn candidates(&self) -> Vec<(CandidateKind, SocketAddr)> {
        let mut list: Vec<_> = self
            .local
            .iter()
            .map(|a| (CandidateKind::Host, *a))
            .collect();
        if let Some(observed) = self.reflexive() {
            list.push((CandidateKind::Reflexive, observed));
        }
        list
    }

    /// Sends our candidates to `peer` through the relay and starts probing.
    fn punch(&mut self, now: Instant, peer: &[u8; 32], reply: bool) {
        let msg = PeerMsg::Candidates {
            reply,
            candidates: self.candidates(),
        };
        self.signal(peer, &msg);
        if let Some(p) = self.peers.get_mut(peer) {
            p.next_retry = now + RETRY;
            if p.probe_until.map_or(true, |t| t <= now) {
                p.probe_until = Some(now + PROBE_DURATION);
                p.next_probe = now;
            }
        }
        self.probe(now, peer);
    }

    /// Sends one round of pings to every candidate of `peer` if a round is due.
    fn probe(&mut self, now: Instant, key: &[u8; 32]) {
        let Some(peer) = self.peers.get_mut(key) else {
            return;
        };
        if peer.probe_until.map_or(true, |t| t <= now) || peer.next_probe > now {
            return;
        }
        peer.next_probe = now + PROBE_INTERVAL;
        let mut targets: Vec<SocketAddr> = peer.remote.iter().map(|(_, a)| *a).collect();
        targets.extend(peer.reflexive_seen.iter().copied());
        targets.dedup();
        for addr in targets {
            self.ping(now, key, addr);
        }
    }

    fn ping(&mut self, now: Instant, key: &[u8; 32], addr: SocketAddr) {
        let txid = self.rng.next_u64();
        let Some(peer) = self.peers.get_mut(key) else {
            return;
        };
        peer.pings
            .retain(|_, (_, at)| now.duration_since(*at) < PING_TTL);
        if peer.pings.len() >= 256 {
            return;
        }
        peer.pings.insert(txid, (addr, now));
        self.send_peer(key, addr, &PeerMsg::Ping { txid });
    }

    fn seal_peer(&mut self, key: &[u8; 32], msg: &PeerMsg) -> Option<Vec<u8>> {
        let counter = self.counter.next(self.wall);
        let peer = self.peers.get(key)?;
        Some(wire::seal_from(
            wire::KIND_PEER,
            &peer.to_key,
            &self.public,
            counter,
            &msg.encode(),
        ))
    }

    fn send_peer(&mut self, key: &[u8; 32], addr: SocketAddr, msg: &PeerMsg) {
        if let Some(bytes) = self.seal_peer(key, msg) {
            self.out.push_back((addr, bytes));
        }
    }

    /// Sends a peer message through the relay, if there is a session with the peer.
    fn signal(&mut self, key: &[u8; 32], msg: &PeerMsg) {
        if self.peers.get(key).map_or(true, |p| p.session.is_none()) {
            return;
        }
        let Some(blob) = self.seal_peer(key, msg) else {
            return;
        };
        self.send_to_relay(&ToRelay::Signal { to: *key, blob });
    }

    fn send_to_relay(&mut self, msg: &ToRelay) {
        let counter = self.counter.next(self.wall);
        let Some(relay) = &self.relay else {
            return;
        };
        let bytes = wire::seal_from(
            wire::KIND_TO_RELAY,
            &relay.to_key,
            &self.public,
            counter,
            &msg.encode(),
        );
        self.out.push_back((relay.addr, bytes));
    }

    /// Recomputes each peer's path and queues the changes.
    fn update_paths(&mut self, now: Instant) {
        let mut died = false;
        for (key, peer) in &mut self.peers {
            if peer
                .direct
                .is_some_and(|d| now.duration_since(d.last_pong) >= DIRECT_TIMEOUT)
            {
                peer.direct = None;
                died = true;
            }
            let path = match (peer.direct, peer.session) {
                (Some(d), _) if d.lan => Path::Lan(d.addr),
                (Some(d), _) => Path::Direct(d.addr),
                (None, Some(_)) if self.relay.is_some() => Path::Relay,
                _ => Path::None,
            };
            if path != peer.path {
                peer.path = path;
                peer.since = now;
                self.events
                    .push_back(NatEvent::PathChanged { peer: *key, path });
            }
        }
        // A direct path that died may mean our NAT mapping changed (rebinding): register at
        // once, so the relay learns the new address before relayed traffic needs it.
        if died {
            if let Some(relay) = &mut self.relay {
                relay.next_register = now;
            }
        }
    }

    /// Runs the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let wants: Vec<[u8; 32]> = self.peers.keys().copied().collect();
        if let Some(relay) = &mut self.relay {
            if relay.next_register <= now {
                let acked = relay
                    .last_heard
                    .is_some_and(|t| now.duration_since(t) < REGISTER_INTERVAL * 3);
                relay.next_register = now
                    + if acked {
                        REGISTER_INTERVAL
                    } else {
                        REGISTER_RETRY
                    };
                self.send_to_relay(&ToRelay::Register { wants });
            }
        }
        let keys: Vec<[u8; 32]> = self.peers.keys().copied().collect();
        for key in keys {
            let Some(peer) = self.peers.get_mut(&key) else {
                continue;
            };
            if let Some(d) = peer.direct {
                if peer.next_keepalive <= now {
                    peer.next_keepalive = now + KEEPALIVE;
                    self.ping(now, &key, d.addr);
                }
            }
            let Some(peer) = self.peers.get_mut(&key) else {
                continue;
            };
            if peer.probe_until.is_some_and(|t| t <= now) {
                peer.probe_until = None;
            }
            if peer.direct.is_none() && peer.session.is_some() && peer.next_retry <= now {
                self.punch(now, &key, true);
            } else {
                self.probe(now, &key);
            }
        }
        self.update_paths(now);
    }

    /// The next deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut next = self.relay.as_ref().map(|r| r.next_register);
        let mut consider = |t: Instant| next = Some(next.map_or(t, |n: Instant| n.min(t)));
        for peer in self.peers.values() {
            if let Some(until) = peer.probe_until {
                consider(peer.next_probe.min(until));
            }
            if let Some(d) = peer.direct {
                consider(peer.next_keepalive);
                consider(d.last_pong + DIRECT_TIMEOUT);
            } else if peer.session.is_some() {
                consider(peer.next_retry);
            }
        }
        next
    }

    /// The next datagram to send from the tunnel's socket.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.out.pop_front()
    }

    /// The next path change.
    pub fn poll_event(&mut self) -> Option<NatEvent> {
        self.events.pop_front()
    }
}
