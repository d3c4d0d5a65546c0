//! Wire formats and sealing of the control messages.
//!
//! Every control datagram starts with [`MAGIC`], whose first byte (`0xEE`) is never a
//! WireGuard message type (1 to 4), so no control message classifies as WireGuard, and a
//! receiver checks the WireGuard header first anyway. The fifth byte is the kind:
//!
//! | kind | direction | layout after magic and kind |
//! |---|---|---|
//! | [`KIND_TO_RELAY`] `0x01` | peer → relay | sender public key (32), counter (8), sealed payload |
//! | [`KIND_FROM_RELAY`] `0x02` | relay → peer | counter (8), sealed payload |
//! | [`KIND_DATA`] `0x03` | peer ↔ relay | session id (8), WireGuard message (not re-sealed) |
//! | [`KIND_PEER`] `0x10` | peer → peer | sender public key (32), counter (8), sealed payload |
//!
//! Sealing is ChaCha20-Poly1305 with the header as associated data and the counter (little
//! endian, after four zero bytes) as nonce. Keys are derived, never equal to a WireGuard key:
//! `BLAKE2s-256(label ‖ DH(static, static) ‖ sender public ‖ receiver public)`, with one label
//! for peer-to-peer messages and one per direction for relay messages, so each direction of
//! each pair has its own key. Counters are nanoseconds of Unix time (kept strictly
//! increasing by the sender); a receiver accepts a counter only inside a replay window of the
//! highest one seen from that sender, and only within [`MAX_CLOCK_SKEW`] of its own clock, so
//! a message replayed after the receiver forgot its window (a restart) is stale too.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use blake2::{Blake2s256, Digest};
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce, Tag};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// The first four bytes of every control datagram.
pub const MAGIC: [u8; 4] = [0xEE, b'W', b'N', b'T'];
/// Peer → relay, sealed.
pub const KIND_TO_RELAY: u8 = 0x01;
/// Relay → peer, sealed.
pub const KIND_FROM_RELAY: u8 = 0x02;
/// Relayed WireGuard ciphertext, either direction.
pub const KIND_DATA: u8 = 0x03;
/// Peer → peer, sealed.
pub const KIND_PEER: u8 = 0x10;

/// Header length of [`KIND_TO_RELAY`] and [`KIND_PEER`] messages.
pub const SENDER_HEADER: usize = 4 + 1 + 32 + 8;
/// Header length of [`KIND_FROM_RELAY`] messages.
pub const RELAY_HEADER: usize = 4 + 1 + 8;
/// Header length of [`KIND_DATA`] messages.
pub const DATA_HEADER: usize = 4 + 1 + 8;
/// The AEAD tag.
pub const TAG_LEN: usize = 16;
/// How far a counter (a timestamp) may be from the receiver's clock.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(120);
/// Replay window, in counters below the highest accepted.
const WINDOW: u64 = 128;

const LABEL_PEER: &[u8] = b"wg-rs nat v1 peer";
const LABEL_TO_RELAY: &[u8] = b"wg-rs nat v1 peer->relay";
const LABEL_FROM_RELAY: &[u8] = b"wg-rs nat v1 relay->peer";

/// Whether `datagram` starts with the control magic.
pub fn is_control(datagram: &[u8]) -> bool {
    datagram.len() > MAGIC.len() && datagram[..4] == MAGIC
}

/// A message kind of ours, if `datagram` is a control message.
pub fn kind(datagram: &[u8]) -> Option<u8> {
    is_control(datagram).then(|| datagram[4])
}

/// An X25519 public key from its bytes.
pub fn public_key(private: &[u8; 32]) -> [u8; 32] {
    let secret = x25519_dalek::StaticSecret::from(*private);
    *x25519_dalek::PublicKey::from(&secret).as_bytes()
}

/// The X25519 shared secret of `private` and `public`; `None` for a low-order point.
pub fn dh(private: &[u8; 32], public: &[u8; 32]) -> Option<[u8; 32]> {
    let secret = x25519_dalek::StaticSecret::from(*private);
    let shared = secret.diffie_hellman(&x25519_dalek::PublicKey::from(*public));
    shared.was_contributory().then(|| *shared.as_bytes())
}

/// One direction's AEAD key.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SealKey([u8; 32]);

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey(..)")
    }
}

impl SealKey {
    fn derive(label: &[u8], shared: &[u8; 32], sender: &[u8; 32], receiver: &[u8; 32]) -> Self {
        let mut h = Blake2s256::new();
        h.update(label);
        h.update(shared);
        h.update(sender);
        h.update(receiver);
        SealKey(h.finalize().into())
    }

    /// Peer-to-peer key for messages from `sender` to `receiver`.
    pub fn peer(shared: &[u8; 32], sender: &[u8; 32], receiver: &[u8; 32]) -> Self {
        Self::derive(LABEL_PEER, shared, sender, receiver)
    }

    /// Key for messages from `peer` to `relay`.
    pub fn to_relay(shared: &[u8; 32], peer: &[u8; 32], relay: &[u8; 32]) -> Self {
        Self::derive(LABEL_TO_RELAY, shared, peer, relay)
    }

    /// Key for messages from `relay` to `peer`.
    pub fn from_relay(shared: &[u8; 32], peer: &[u8; 32], relay: &[u8; 32]) -> Self {
        Self::derive(LABEL_FROM_RELAY, shared, relay, peer)
    }

    fn cipher(&self) -> ChaCha20Poly1305 {
        ChaCha20Poly1305::new(Key::from_slice(&self.0))
    }
}

fn nonce(counter: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_le_bytes());
    *Nonce::from_slice(&n)
}

/// Seals `payload` into a message `header ‖ ciphertext ‖ tag`; the header's last eight
/// bytes must be the counter.
fn seal_with(key: &SealKey, header: &[u8], counter: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(header.len() + payload.len() + TAG_LEN);
    out.extend_from_slice(header);
    out.extend_from_slice(payload);
    let (head, body) = out.split_at_mut(header.len());
    let tag = key
        .cipher()
        .encrypt_in_place_detached(&nonce(counter), head, body)
        .expect("payloads are far below the AEAD limit");
    out.extend_from_slice(&tag);
    out
}

/// Opens `message` whose header is `header_len` bytes ending with the counter.
fn open_with(key: &SealKey, message: &[u8], header_len: usize) -> Option<(u64, Vec<u8>)> {
    if message.len() < header_len + TAG_LEN {
        return None;
    }
    let (header, rest) = message.split_at(header_len);
    let counter = u64::from_le_bytes(header[header_len - 8..].try_into().ok()?);
    let (body, tag) = rest.split_at(rest.len() - TAG_LEN);
    let mut plain = body.to_vec();
    key.cipher()
        .decrypt_in_place_detached(&nonce(counter), header, &mut plain, Tag::from_slice(tag))
        .ok()?;
    Some((counter, plain))
}

/// Seals a peer → relay or peer → peer message (`kind` is [`KIND_TO_RELAY`] or [`KIND_PEER`]).
pub fn seal_from(
    kind: u8,
    key: &SealKey,
    sender: &[u8; 32],
    counter: u64,
    payload: &[u8],
) -> Vec<u8> {
    let mut header = [0u8; SENDER_HEADER];
    header[..4].copy_from_slice(&MAGIC);
    header[4] = kind;
    header[5..37].copy_from_slice(sender);
    header[37..].copy_from_slice(&counter.to_le_bytes());
    seal_with(key, &header, counter, payload)
}

/// The claimed sender of a [`KIND_TO_RELAY`] or [`KIND_PEER`] message (unauthenticated until
/// [`open_from`] succeeds).
pub fn sender(message: &[u8]) -> Option<[u8; 32]> {
    (message.len() >= SENDER_HEADER + TAG_LEN && is_control(message))
        .then(|| message[5..37].try_into().ok())
        .flatten()
}

/// Opens a message sealed by [`seal_from`]: the counter and the payload.
pub fn open_from(key: &SealKey, message: &[u8]) -> Option<(u64, Vec<u8>)> {
    open_with(key, message, SENDER_HEADER)
}

/// Seals a relay → peer message.
pub fn seal_from_relay(key: &SealKey, counter: u64, payload: &[u8]) -> Vec<u8> {
    let mut header = [0u8; RELAY_HEADER];
    header[..4].copy_from_slice(&MAGIC);
    header[4] = KIND_FROM_RELAY;
    header[5..].copy_from_slice(&counter.to_le_bytes());
    seal_with(key, &header, counter, payload)
}

/// Opens a relay → peer message.
pub fn open_from_relay(key: &SealKey, message: &[u8]) -> Option<(u64, Vec<u8>)> {
    open_with(key, message, RELAY_HEADER)
}

/// The header of a relayed data message for `session`.
pub fn data_header(session: u64) -> [u8; DATA_HEADER] {
    let mut header = [0u8; DATA_HEADER];
    header[..4].copy_from_slice(&MAGIC);
    header[4] = KIND_DATA;
    header[5..].copy_from_slice(&session.to_le_bytes());
    header
}

/// The session id of a relayed data message.
pub fn data_session(message: &[u8]) -> Option<u64> {
    (message.len() > DATA_HEADER && kind(message) == Some(KIND_DATA))
        .then(|| u64::from_le_bytes(message[5..13].try_into().unwrap_or_default()))
}

/// A sender's counter: nanoseconds of Unix time, strictly increasing.
#[derive(Debug, Clone, Default)]
pub struct Counter {
    last: u64,
}

impl Counter {
    /// The next counter at wall-clock time `since_epoch`.
    pub fn next(&mut self, since_epoch: Duration) -> u64 {
        let now = u64::try_from(since_epoch.as_nanos()).unwrap_or(u64::MAX);
        self.last = now.max(self.last + 1);
        self.last
    }
}

/// A receiver's replay protection for one sender: a window below the highest counter seen,
/// and a bound on the distance from the receiver's clock.
#[derive(Debug, Clone, Default)]
pub struct ReplayWindow {
    highest: u64,
    /// Bit `i` set: `highest - i` was seen.
    seen: u128,
}

impl ReplayWindow {
    /// Whether `counter` may be accepted at wall-clock time `since_epoch` (does not record it).
    pub fn check(&self, counter: u64, since_epoch: Duration) -> bool {
        let now = since_epoch.as_nanos();
        let skew = MAX_CLOCK_SKEW.as_nanos();
        if u128::from(counter).abs_diff(now) > skew {
            return false;
        }
        if counter > self.highest || self.highest == 0 {
            return true;
        }
        let age = self.highest - counter;
        age < WINDOW && self.seen & (1u128 << age) == 0
    }

    /// Records an accepted `counter` (after its message authenticated).
    pub fn record(&mut self, counter: u64) {
        if counter > self.highest {
            let shift = counter - self.highest;
            self.seen = if shift >= WINDOW {
                0
            } else {
                self.seen << shift
            };
            self.seen |= 1;
            self.highest = counter;
        } else {
            self.seen |= 1u128 << (self.highest - counter);
        }
    }

    /// Checks and records in one step.
    pub fn accept(&mut self, counter: u64, since_epoch: Duration) -> bool {
        let ok = self.check(counter, since_epoch);
        if ok {
            self.record(counter);
        }
        ok
    }
}

/// Appends a socket address: family byte (4 or 6), address, port (big endian).
pub fn put_addr(out: &mut Vec<u8>, addr: SocketAddr) {
    match addr.ip() {
        IpAddr::V4(ip) => {
            out.push(4);
            out.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.push(6);
            out.extend_from_slice(&ip.octets());
        }
    }
    out.extend_from_slice(&addr.port().to_be_bytes());
}

/// A cursor over a decrypted payload.
#[derive(Debug)]
pub struct Reader<'a>(pub &'a [u8]);

impl Reader<'_> {
    /// `n` bytes.
    pub fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    /// One byte.
    pub fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    /// A little-endian u64.
    pub fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()))
    }
    /// A 32-byte key.
    pub fn key(&mut self) -> Option<[u8; 32]> {
        self.take(32).and_then(|b| b.try_into().ok())
    }
    /// A socket address written by [`put_addr`].
    pub fn addr(&mut self) -> Option<SocketAddr> {
        let ip = match self.u8()? {
            4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(self.take(4)?).ok()?)),
            6 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(self.take(16)?).ok()?)),
            _ => return None,
        };
        let port = u16::from_be_bytes(self.take(2)?.try_into().ok()?);
        Some(SocketAddr::new(ip, port))
    }
    /// The rest.
    pub fn rest(&mut self) -> &[u8] {
        std::mem::take(&mut self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(1_800_000_000);

    #[test]
    fn test_never_wireguard_shaped() {
        // A WireGuard message starts with a type 1..4 and three zero bytes.
        assert!(!(1..=4).contains(&MAGIC[0]));
        assert!(!is_control(&[1, 0, 0, 0, 0, 0]));
    }

    #[test]
    fn test_seal_open_and_tamper() {
        let (a, b) = ([1u8; 32], [2u8; 32]);
        let (pa, pb) = (public_key(&a), public_key(&b));
        let shared = dh(&a, &pb).unwrap();
        assert_eq!(Some(shared), dh(&b, &pa));
        let key = SealKey::peer(&shared, &pa, &pb);
        let mut counter = Counter::default();
        let c = counter.next(T);
        let msg = seal_from(KIND_PEER, &key, &pa, c, b"hello");
        assert_eq!(sender(&msg), Some(pa));
        assert_eq!(open_from(&key, &msg), Some((c, b"hello".to_vec())));
        // The reverse direction's key differs.
        assert!(open_from(&SealKey::peer(&shared, &pb, &pa), &msg).is_none());
        for i in 0..msg.len() {
            let mut bad = msg.clone();
            bad[i] ^= 1;
            assert!(open_from(&key, &bad).is_none(), "byte {i}");
        }
        // Different from the raw DH and from the other labels.
        assert_ne!(key.0, shared);
        assert_ne!(key.0, SealKey::to_relay(&shared, &pa, &pb).0);
    }

    #[test]
    fn test_replay_window() {
        let mut w = ReplayWindow::default();
        let base = T.as_nanos() as u64;
        assert!(w.accept(base, T));
        assert!(!w.accept(base, T), "replayed");
        assert!(w.accept(base + 5, T));
        assert!(w.accept(base + 2, T), "late but inside the window");
        assert!(!w.accept(base + 2, T));
        assert!(w.accept(base + 1000, T));
        assert!(!w.accept(base + 5, T), "below the window");
        let stale = base - 3 * MAX_CLOCK_SKEW.as_nanos() as u64;
        assert!(
            !ReplayWindow::default().accept(stale, T),
            "too old for the clock"
        );
    }

    #[test]
    fn test_addr_roundtrip() {
        let mut out = Vec::new();
        let a: SocketAddr = "192.0.2.1:51820".parse().unwrap();
        let b: SocketAddr = "[2001:db8::1]:9".parse().unwrap();
        put_addr(&mut out, a);
        put_addr(&mut out, b);
        let mut r = Reader(&out);
        assert_eq!(r.addr(), Some(a));
        assert_eq!(r.addr(), Some(b));
        assert_eq!(r.addr(), None);
    }
}
