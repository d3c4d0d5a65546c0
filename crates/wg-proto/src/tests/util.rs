//! A virtual-time pair of tunnels wired back to back (after quinn-proto's `tests/util.rs`).
//!
//! [`Pair`] owns two [`Tunnel`]s, `a` (10.0.0.1, at 192.0.2.1:51820) and `b` (10.0.0.2, at
//! 198.51.100.2:51820), and a virtual clock. Datagrams are exchanged instantly (zero
//! latency) until both sides are quiet; [`Pair::advance`] jumps the clock straight to the
//! earliest `poll_timeout()`, so minutes of protocol time run in microseconds and nothing
//! sleeps. Every datagram is logged, and an optional seeded loss rate drops some of them.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rand_chacha::ChaCha20Rng;
use rand_core::RngCore;

use crate::messages::MessageType;
use crate::tunnel::{Event, PeerConfig, Tunnel};
use crate::PeerId;

pub(crate) const A_KEY: [u8; 32] = [0x0a; 32];
pub(crate) const B_KEY: [u8; 32] = [0x0b; 32];

/// Which tunnel of the pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    A,
    B,
}

/// One datagram put on the wire.
#[derive(Debug, Clone)]
pub(crate) struct Sent {
    /// Virtual time since the start of the test.
    pub(crate) at: Duration,
    pub(crate) from: Side,
    pub(crate) ty: Option<MessageType>,
    pub(crate) bytes: Vec<u8>,
    pub(crate) lost: bool,
}

pub(crate) struct Pair {
    pub(crate) a: Tunnel,
    pub(crate) b: Tunnel,
    pub(crate) a_addr: SocketAddr,
    pub(crate) b_addr: SocketAddr,
    /// B as seen by A, and A as seen by B.
    pub(crate) a_peer: PeerId,
    pub(crate) b_peer: PeerId,
    pub(crate) start: Instant,
    pub(crate) now: Instant,
    pub(crate) log: Vec<Sent>,
    /// Packets delivered to each side's TUN device, with their arrival time.
    pub(crate) a_delivered: Vec<(Duration, Vec<u8>)>,
    pub(crate) b_delivered: Vec<(Duration, Vec<u8>)>,
    pub(crate) a_handshakes: Vec<Duration>,
    pub(crate) b_handshakes: Vec<Duration>,
    /// Drop datagrams from this side entirely (a black hole).
    pub(crate) blackhole: Option<Side>,
    /// Seeded loss: each datagram is dropped with probability `percent`/100.
    pub(crate) loss: Option<(ChaCha20Rng, u32)>,
}

/// Unix time at the start of every test: 2023-11-14T22:13:20Z.
const WALL_START: Duration = Duration::from_secs(1_700_000_000);

pub(crate) struct PairConfig {
    pub(crate) seed: u64,
    pub(crate) a_keepalive: Option<u16>,
    pub(crate) b_knows_a_endpoint: bool,
    pub(crate) psk: Option<[u8; 32]>,
}

impl Default for PairConfig {
    fn default() -> Self {
        PairConfig {
            seed: 1,
            a_keepalive: None,
            b_knows_a_endpoint: false,
            psk: Some([0x77; 32]),
        }
    }
}

impl Pair {
    pub(crate) fn new() -> Pair {
        Pair::with(PairConfig::default())
    }

    pub(crate) fn with(config: PairConfig) -> Pair {
        let start = super::epoch();
        let a_addr: SocketAddr = "192.0.2.1:51820".parse().unwrap();
        let b_addr: SocketAddr = "198.51.100.2:51820".parse().unwrap();
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&config.seed.to_le_bytes());
        let mut a = Tunnel::new(A_KEY, seed, start, WALL_START);
        seed[31] = 1;
        let mut b = Tunnel::new(B_KEY, seed, start, WALL_START);
        let b_peer = b
            .add_peer(
                start,
                PeerConfig {
                    public_key: *a.public_key(),
                    preshared_key: config.psk,
                    endpoint: config.b_knows_a_endpoint.then_some(a_addr),
                    persistent_keepalive: None,
                    allowed_ips: vec![(ip("10.0.0.1"), 32)],
                },
            )
            .unwrap();
        let a_peer = a
            .add_peer(
                start,
                PeerConfig {
                    public_key: *b.public_key(),
                    preshared_key: config.psk,
                    endpoint: Some(b_addr),
                    persistent_keepalive: config.a_keepalive,
                    allowed_ips: vec![(ip("10.0.0.0"), 24)],
                },
            )
            .unwrap();
        let mut pair = Pair {
            a,
            b,
            a_addr,
            b_addr,
            a_peer,
            b_peer,
            start,
            now: start,
            log: Vec::new(),
            a_delivered: Vec::new(),
            b_delivered: Vec::new(),
            a_handshakes: Vec::new(),
            b_handshakes: Vec::new(),
            blackhole: None,
            loss: None,
        };
        pair.drive();
        pair
    }

    /// Virtual time elapsed.
    pub(crate) fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    fn tunnel(&mut self, side: Side) -> &mut Tunnel {
        match side {
            Side::A => &mut self.a,
            Side::B => &mut self.b,
        }
    }

    /// Exchanges datagrams until both sides are quiet, and collects events.
    pub(crate) fn drive(&mut self) {
        let mut buf = vec![0u8; 2048];
        loop {
            let mut moved = false;
            for side in [Side::A, Side::B] {
                while let Some(t) = self.tunnel(side).poll_transmit(&mut buf) {
                    moved = true;
                    let bytes = buf[..t.len].to_vec();
                    let lost = self.blackhole == Some(side)
                        || self
                            .loss
                            .as_mut()
                            .is_some_and(|(rng, p)| rng.next_u32() % 100 < *p);
                    self.log.push(Sent {
                        at: self.elapsed(),
                        from: side,
                        ty: MessageType::classify(&bytes),
                        bytes: bytes.clone(),
                        lost,
                    });
                    let (other, from) = match side {
                        Side::A => (Side::B, self.a_addr),
                        Side::B => (Side::A, self.b_addr),
                    };
                    let expected = match side {
                        Side::A => self.b_addr,
                        Side::B => self.a_addr,
                    };
                    if !lost && t.dst == expected {
                        let now = self.now;
                        let receiver = self.tunnel(other);
                        receiver.handle_incoming(now, from, &bytes);
                        receiver.process_handshakes(now, usize::MAX);
                    }
                }
            }
            self.collect_events();
            if !moved {
                break;
            }
        }
    }

    fn collect_events(&mut self) {
        let at = self.elapsed();
        while let Some(event) = self.a.poll_event() {
            match event {
                Event::Deliver { packet, .. } => self.a_delivered.push((at, packet.to_vec())),
                Event::HandshakeComplete { .. } => self.a_handshakes.push(at),
            }
        }
        while let Some(event) = self.b.poll_event() {
            match event {
                Event::Deliver { packet, .. } => self.b_delivered.push((at, packet.to_vec())),
                Event::HandshakeComplete { .. } => self.b_handshakes.push(at),
            }
        }
    }

    /// The earliest timer of either side.
    pub(crate) fn next_timeout(&self) -> Option<Instant> {
        [self.a.poll_timeout(), self.b.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Jumps to the next timeout, fires it on both sides and drives. Returns false if no
    /// timer is armed.
    pub(crate) fn advance(&mut self) -> bool {
        let Some(t) = self.next_timeout() else {
            return false;
        };
        self.now = self.now.max(t);
        let now = self.now;
        self.a.handle_timeout(now);
        self.b.handle_timeout(now);
        self.drive();
        true
    }

    /// Runs every timer due up to `start + at`, then sets the clock there.
    pub(crate) fn advance_to(&mut self, at: Duration) {
        let target = self.start + at;
        while self.next_timeout().is_some_and(|t| t <= target) {
            self.advance();
        }
        self.now = target;
    }

    /// Sends an IP packet from A's TUN to B (10.0.0.1 → 10.0.0.2) and drives.
    pub(crate) fn send_a(&mut self, payload: &[u8]) -> Vec<u8> {
        let packet = ipv4_packet("10.0.0.1", "10.0.0.2", payload);
        let now = self.now;
        self.a.handle_outgoing(now, &packet);
        self.drive();
        packet
    }

    /// Sends an IP packet from B's TUN to A (10.0.0.2 → 10.0.0.1) and drives.
    pub(crate) fn send_b(&mut self, payload: &[u8]) -> Vec<u8> {
        let packet = ipv4_packet("10.0.0.2", "10.0.0.1", payload);
        let now = self.now;
        self.b.handle_outgoing(now, &packet);
        self.drive();
        packet
    }

    /// Logged datagrams from `side` of type `ty` that happened at or after `since`.
    pub(crate) fn sent(&self, side: Side, ty: MessageType) -> Vec<&Sent> {
        self.log
            .iter()
            .filter(|s| s.from == side && s.ty == Some(ty))
            .collect()
    }
}

pub(crate) fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A minimal IPv4 packet (no options; the checksum is left zero, nothing here checks it).
pub(crate) fn ipv4_packet(src: &str, dst: &str, payload: &[u8]) -> Vec<u8> {
    let (IpAddr::V4(src), IpAddr::V4(dst)) = (ip(src), ip(dst)) else {
        panic!("v4 only")
    };
    wg_testkit::ipv4_packet(src.octets(), dst.octets(), payload)
}
