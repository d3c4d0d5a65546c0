//! The relay's sans-IO core (the `wg-relay` binary is its I/O shell).
//!
//! A peer registers with a sealed [`ToRelay::Register`] naming the peers it wants; the
//! relay records the datagram's source as the peer's address and answers with
//! [`FromRelay::Registered`]: that address (discovery) and the relay sessions of the peer.
//! A session exists between A and B only while both are registered and each named the other;
//! it has one random 64-bit id, known only to A and B (sent sealed). Relayed data
//! ([`crate::wire::KIND_DATA`]) is forwarded only when it carries a live session id and
//! comes from the registered address of one of its two ends, to the other end; signals are
//! passed only along sessions. Nothing else is ever sent to anyone: not an open relay.
//!
//! Cheap drops first: the magic and kind, then the allow-list, then a DH budget (a sender's
//! keys are derived once and cached), then the AEAD and the replay window. Each peer has a
//! token bucket for control messages and one for relayed bytes, and at most
//! [`RelayConfig::max_sessions`] sessions.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use zeroize::Zeroizing;

use crate::msg::{FromRelay, ToRelay, MAX_LIST};
use crate::wire::{self, Counter, ReplayWindow, SealKey};

/// A registration not refreshed for this long expires, with its sessions.
pub const REGISTRATION_TTL: Duration = Duration::from_secs(45);
/// Key derivations (a DH each) allowed per second for senders not yet cached.
const DH_PER_SECOND: f64 = 200.0;
/// Control messages per second per peer (burst: twice that).
const CONTROL_PER_SECOND: f64 = 50.0;
/// Cached sender keys, at most.
const KEY_CACHE: usize = 4096;

/// The relay's settings.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Only these public keys may register (`None`: anyone holding a key).
    pub allow: Option<HashSet<[u8; 32]>>,
    /// Sessions per peer.
    pub max_sessions: usize,
    /// Relayed bytes per second per peer (burst: one second's worth).
    pub rate: u64,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            allow: None,
            max_sessions: 16,
            rate: 100_000_000,
        }
    }
}

/// Counters, for the status report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayCounters {
    /// Datagrams dropped before any crypto (bad magic or kind, unknown session, wrong source,
    /// not allowed).
    pub dropped_cheap: u64,
    /// Datagrams that failed authentication or the replay check.
    pub dropped_auth: u64,
    /// Datagrams dropped by a rate limit or the DH budget.
    pub dropped_rate: u64,
    /// Datagrams forwarded.
    pub forwarded_packets: u64,
    /// Bytes forwarded.
    pub forwarded_bytes: u64,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(now: Instant, tokens: f64) -> Self {
        Bucket { tokens, at: now }
    }
    fn take(&mut self, now: Instant, rate: f64, burst: f64, cost: f64) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        if self.tokens >= cost {
            self.tokens -= cost;
            true
        } else {
            false
        }
    }
}

#[derive(Debug)]
struct Keys {
    to_relay: SealKey,
    from_relay: SealKey,
}

#[derive(Debug)]
struct Client {
    addr: SocketAddr,
    wants: Vec<[u8; 32]>,
    last_seen: Instant,
    replay: ReplayWindow,
    control: Bucket,
    data: Bucket,
}

/// One relay session between two peers.
#[derive(Debug, Clone)]
pub struct Session {
    /// The two ends, in key order.
    pub ends: [[u8; 32]; 2],
    /// The session id.
    pub id: u64,
    /// When it was formed.
    pub since: Instant,
    /// Bytes forwarded from `ends[0]` to `ends[1]` and back.
    pub bytes: [u64; 2],
    /// Packets forwarded, likewise.
    pub packets: [u64; 2],
}

/// Something worth a log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayEvent {
    /// A peer registered for the first time or from a new address.
    Registered {
        /// Its public key.
        peer: [u8; 32],
        /// Its address.
        addr: SocketAddr,
    },
    /// A session was formed.
    SessionUp {
        /// The ends.
        ends: [[u8; 32]; 2],
        /// The id.
        id: u64,
    },
    /// A session ended.
    SessionDown {
        /// The ends.
        ends: [[u8; 32]; 2],
        /// Bytes forwarded each way.
        bytes: [u64; 2],
    },
    /// A registration expired.
    Expired {
        /// The peer.
        peer: [u8; 32],
    },
}

/// The relay.
#[derive(Debug)]
pub struct Relay {
    private: Zeroizing<[u8; 32]>,
    public: [u8; 32],
    config: RelayConfig,
    keys: HashMap<[u8; 32], Keys>,
    dh_budget: Bucket,
    clients: HashMap<[u8; 32], Client>,
    sessions: HashMap<u64, Session>,
    by_pair: HashMap<[[u8; 32]; 2], u64>,
    counter: Counter,
    wall: Duration,
    rng: ChaCha20Rng,
    out: VecDeque<(SocketAddr, Vec<u8>)>,
    events: VecDeque<RelayEvent>,
    counters: RelayCounters,
}

fn pair(a: [u8; 32], b: [u8; 32]) -> [[u8; 32]; 2] {
    if a < b {
        [a, b]
    } else {
        [b, a]
    }
}

impl Relay {
    /// A relay with `private_key`; `seed` feeds the session ids.
    pub fn new(
        private_key: [u8; 32],
        config: RelayConfig,
        seed: [u8; 32],
        now: Instant,
        since_epoch: Duration,
    ) -> Relay {
        Relay {
            public: wire::public_key(&private_key),
            private: Zeroizing::new(private_key),
            config,
            keys: HashMap::new(),
            dh_budget: Bucket::new(now, DH_PER_SECOND),
            clients: HashMap::new(),
            sessions: HashMap::new(),
            by_pair: HashMap::new(),
            counter: Counter::default(),
            wall: since_epoch,
            rng: ChaCha20Rng::from_seed(seed),
            out: VecDeque::new(),
            events: VecDeque::new(),
            counters: RelayCounters::default(),
        }
    }

    /// The relay's public key.
    pub fn public_key(&self) -> &[u8; 32] {
        &self.public
    }

    /// The wall-clock time, for counters and replay checks.
    pub fn set_wall_clock(&mut self, since_epoch: Duration) {
        self.wall = since_epoch;
    }

    /// Handles one datagram. Relayed data is rewritten in place (the session header stays
    /// the same; only the destination changes) and its destination returned: send
    /// `datagram` there. Control replies are queued for [`Relay::poll_transmit`].
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
    ) -> Option<SocketAddr> {
        match wire::kind(datagram) {
            Some(wire::KIND_DATA) => self.forward(now, from, datagram),
            Some(wire::KIND_TO_RELAY) => {
                self.control(now, from, datagram);
                None
            }
            _ => {
                self.counters.dropped_cheap += 1;
                None
            }
        }
    }

    fn forward(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) -> Option<SocketAddr> {
        let session = wire::data_session(datagram)
            .and_then(|id| self.sessions.get_mut(&id))
            .filter(|_| true);
        let Some(session) = session else {
            self.counters.dropped_cheap += 1;
            return None;
        };
        let [a, b] = session.ends;
        let (src, dst, dir) = match (self.clients.get(&a), self.clients.get(&b)) {
            (Some(ca), Some(cb)) if ca.addr == from => (a, cb.addr, 0),
            (Some(_), Some(cb)) if cb.addr == from => (b, self.clients[&a].addr, 1),
            _ => {
                self.counters.dropped_cheap += 1;
                return None;
            }
        };
        let rate = self.config.rate as f64;
        let client = self.clients.get_mut(&src)?;
        if !client.data.take(now, rate, rate, datagram.len() as f64) {
            self.counters.dropped_rate += 1;
            return None;
        }
        session.bytes[dir] += datagram.len() as u64;
        session.packets[dir] += 1;
        self.counters.forwarded_packets += 1;
        self.counters.forwarded_bytes += datagram.len() as u64;
        Some(dst)
    }

    fn keys_for(&mut self, now: Instant, peer: &[u8; 32]) -> Option<&Keys> {
        if !self.keys.contains_key(peer) {
            if !self.dh_budget.take(now, DH_PER_SECOND, DH_PER_SECOND, 1.0) {
                self.counters.dropped_rate += 1;
                return None;
            }
            let Some(shared) = wire::dh(&self.private, peer).map(Zeroizing::new) else {
                self.counters.dropped_auth += 1;
                return None;
            };
            if self.keys.len() >= KEY_CACHE {
                let registered: HashSet<_> = self.clients.keys().copied().collect();
                self.keys.retain(|k, _| registered.contains(k));
            }
            self.keys.insert(
                *peer,
                Keys {
                    to_relay: SealKey::to_relay(&shared, peer, &self.public),
                    from_relay: SealKey::from_relay(&shared, peer, &self.public),
                },
            );
        }
        self.keys.get(peer)
    }

    fn control(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        let Some(sender) = wire::sender(datagram) else {
            self.counters.dropped_cheap += 1;
            return;
        };
        if self
            .config
            .allow
            .as_ref()
            .is_some_and(|allow| !allow.contains(&sender))
        {
            self.counters.dropped_cheap += 1;
            return;
        }
        if let Some(client) = self.clients.get_mut(&sender) {
            if !client
                .control
                .take(now, CONTROL_PER_SECOND, CONTROL_PER_SECOND * 2.0, 1.0)
            {
                self.counters.dropped_rate += 1;
                return;
            }
        }
        let wall = self.wall;
        let Some(keys) = self.keys_for(now, &sender) else {
            return;
        };
        let Some((counter, payload)) = wire::open_from(&keys.to_relay, datagram) else {
            self.counters.dropped_auth += 1;
            return;
        };
        let fresh = match self.clients.get(&sender) {
            Some(c) => c.replay.check(counter, wall),
            None => ReplayWindow::default().check(counter, wall),
        };
        if !fresh {
            self.counters.dropped_auth += 1;
            return;
        }
        let Some(msg) = ToRelay::decode(&payload) else {
            self.counters.dropped_auth += 1;
            return;
        };
        match msg {
            ToRelay::Register { wants } => {
                let rate = self.config.rate as f64;
                let client = self.clients.entry(sender).or_insert_with(|| Client {
                    addr: from,
                    wants: Vec::new(),
                    last_seen: now,
                    replay: ReplayWindow::default(),
                    control: Bucket::new(now, CONTROL_PER_SECOND * 2.0),
                    data: Bucket::new(now, rate),
                });
                let new = client.wants.is_empty() && client.last_seen == now || client.addr != from;
                client.replay.record(counter);
                client.addr = from;
                client.last_seen = now;
                client.wants = wants;
                client.wants.truncate(MAX_LIST);
                if new {
                    self.events.push_back(RelayEvent::Registered {
                        peer: sender,
                        addr: from,
                    });
                }
                let touched = self.reconcile_sessions(now);
                self.send_registered(&sender);
                for peer in touched {
                    if peer != sender {
                        self.send_registered(&peer);
                    }
                }
            }
            ToRelay::Signal { to, blob } => {
                let Some(client) = self.clients.get_mut(&sender) else {
                    self.counters.dropped_auth += 1;
                    return;
                };
                if client.addr != from {
                    // Only from the registered address: re-register first.
                    self.counters.dropped_cheap += 1;
                    return;
                }
                client.replay.record(counter);
                client.last_seen = now;
                if !self.by_pair.contains_key(&pair(sender, to)) {
                    self.counters.dropped_cheap += 1;
                    return;
                }
                self.send_to(&to, &FromRelay::Signal { from: sender, blob });
            }
        }
    }

    /// Forms the sessions that both ends want and ends the others; returns the peers whose
    /// session list changed.
    fn reconcile_sessions(&mut self, now: Instant) -> Vec<[u8; 32]> {
        let mut wanted: Vec<[[u8; 32]; 2]> = Vec::new();
        let mut count: HashMap<[u8; 32], usize> = HashMap::new();
        // Existing sessions first, so a new peer cannot push out old ones.
        let mut candidates: Vec<[[u8; 32]; 2]> = self.by_pair.keys().copied().collect();
        for (key, client) in &self.clients {
            for other in &client.wants {
                let p = pair(*key, *other);
                if key < other && !self.by_pair.contains_key(&p) {
                    candidates.push(p);
                }
            }
        }
        for p in candidates {
            let [a, b] = p;
            let mutual = a != b
                && self.clients.get(&a).is_some_and(|c| c.wants.contains(&b))
                && self.clients.get(&b).is_some_and(|c| c.wants.contains(&a));
            let room = |k: &[u8; 32]| count.get(k).copied().unwrap_or(0) < self.config.max_sessions;
            if mutual && room(&a) && room(&b) && !wanted.contains(&p) {
                *count.entry(a).or_default() += 1;
                *count.entry(b).or_default() += 1;
                wanted.push(p);
            }
        }
        let mut touched = Vec::new();
        let gone: Vec<_> = self
            .by_pair
            .keys()
            .filter(|p| !wanted.contains(p))
            .copied()
            .collect();
        for p in gone {
            if let Some(id) = self.by_pair.remove(&p) {
                if let Some(s) = self.sessions.remove(&id) {
                    self.events.push_back(RelayEvent::SessionDown {
                        ends: s.ends,
                        bytes: s.bytes,
                    });
                }
            }
            touched.extend(p);
        }
        for p in wanted {
            if self.by_pair.contains_key(&p) {
                continue;
            }
            let id = loop {
                let id = self.rng.next_u64();
                if id != 0 && !self.sessions.contains_key(&id) {
                    break id;
                }
            };
            self.by_pair.insert(p, id);
            self.sessions.insert(
                id,
                Session {
                    ends: p,
                    id,
                    since: now,
                    bytes: [0; 2],
                    packets: [0; 2],
                },
            );
            self.events.push_back(RelayEvent::SessionUp { ends: p, id });
            touched.extend(p);
        }
        touched.sort();
        touched.dedup();
        touched
    }

    fn send_registered(&mut self, peer: &[u8; 32]) {
        let Some(client) = self.clients.get(peer) else {
            return;
        };
        let sessions = self
            .by_pair
            .iter()
            .filter_map(|(p, id)| {
                if p[0] == *peer {
                    Some((p[1], *id))
                } else if p[1] == *peer {
                    Some((p[0], *id))
                } else {
                    None
                }
            })
            .collect();
        let msg = FromRelay::Registered {
            observed: client.addr,
            sessions,
        };
        self.send_to(peer, &msg);
    }

    fn send_to(&mut self, peer: &[u8; 32], msg: &FromRelay) {
        let counter = self.counter.next(self.wall);
        let (Some(client), Some(keys)) = (self.clients.get(peer), self.keys.get(peer)) else {
            return;
        };
        let bytes = wire::seal_from_relay(&keys.from_relay, counter, &msg.encode());
        self.out.push_back((client.addr, bytes));
    }

    /// Expires registrations (and their sessions).
    pub fn handle_timeout(&mut self, now: Instant) {
        let expired: Vec<[u8; 32]> = self
            .clients
            .iter()
            .filter(|(_, c)| now.duration_since(c.last_seen) >= REGISTRATION_TTL)
            .map(|(k, _)| *k)
            .collect();
        if expired.is_empty() {
            return;
        }
        for key in &expired {
            self.clients.remove(key);
            self.events.push_back(RelayEvent::Expired { peer: *key });
        }
        for peer in self.reconcile_sessions(now) {
            self.send_registered(&peer);
        }
    }

    /// The next expiry.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.clients
            .values()
            .map(|c| c.last_seen + REGISTRATION_TTL)
            .min()
    }

    /// The next control datagram to send.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.out.pop_front()
    }

    /// The next event worth logging.
    pub fn poll_event(&mut self) -> Option<RelayEvent> {
        self.events.pop_front()
    }

    /// The live sessions.
    pub fn sessions(&self) -> impl Iterator<Item = &Session> {
        self.sessions.values()
    }

    /// Registered peers and their addresses.
    pub fn registered(&self) -> impl Iterator<Item = ([u8; 32], SocketAddr)> + '_ {
        self.clients.iter().map(|(k, c)| (*k, c.addr))
    }

    /// The counters.
    pub fn counters(&self) -> &RelayCounters {
        &self.counters
    }
}
