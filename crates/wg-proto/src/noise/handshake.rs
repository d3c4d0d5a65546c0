//! The Noise_IKpsk2 handshake (whitepaper §5.4.2–§5.4.5) as states consumed by value.
//!
//! Initiator: [`initiate`] writes a `HandshakeInitiation` and returns [`AwaitingResponse`];
//! [`AwaitingResponse::handle_response`] consumes it and yields [`TransportKeys`], or hands the
//! state back inside [`Rejected`] when the response does not authenticate, so that a forged
//! response cannot cancel a handshake in flight. Responder: [`consume_initiation`] decrypts an
//! initiation with the local static key alone and returns [`InitiationReceived`], which names
//! the initiator's static key and timestamp so the caller can find the peer, check the
//! timestamp replay rule and look up its preshared key; [`InitiationReceived::respond`] then
//! writes the `HandshakeResponse` and yields the responder's [`TransportKeys`].
//!
//! This module writes only the Noise fields of a message. MAC1 and MAC2 are the cookie layer's
//! job ([`super::cookie`]) and are left zero here. Each step below quotes the whitepaper line
//! it implements; `C` is the chaining key, `H` the transcript hash. Any Diffie-Hellman result
//! that is all zero (a low-order or identity public key) aborts the handshake.

use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::kdf::{
    aead_open, aead_seal, hash, kdf1, kdf2, kdf3, AeadError, CONSTRUCTION, HASH_LEN, IDENTIFIER,
};
use crate::messages::{HandshakeInitiation, HandshakeResponse, KEY_LEN, TIMESTAMP_LEN};
use crate::tai64n::Tai64N;

type Key = [u8; KEY_LEN];

/// Why a handshake message was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// An AEAD field did not decrypt: wrong keys, or a forged or corrupted message.
    #[error("handshake message failed to decrypt")]
    Decrypt,
    /// A Diffie-Hellman result was all zero: a low-order public key.
    #[error("low-order public key")]
    LowOrderPoint,
    /// A response's receiver index does not name the initiation in flight.
    #[error("response does not match the initiation in flight")]
    WrongIndex,
    /// An initiation decrypted to a static key that is not a configured peer's (or that
    /// peer has no usable precomputed static-static secret).
    #[error("initiation from an unknown peer")]
    UnknownPeer,
}

impl From<AeadError> for HandshakeError {
    fn from(_: AeadError) -> Self {
        HandshakeError::Decrypt
    }
}

/// A handshake step that failed, with the state it was given, unchanged.
#[derive(Debug)]
pub struct Rejected<S> {
    /// The state, still usable for the next message.
    pub state: S,
    /// Why the message was rejected.
    pub error: HandshakeError,
}

/// The local static identity: `S^priv` and `S^pub`, plus the precomputed initial transcript
/// hash for messages addressed to it.
pub struct StaticIdentity {
    private: StaticSecret,
    public: Key,
    /// `HASH(HASH(HASH(CONSTRUCTION) || IDENTIFIER) || S^pub)`: the responder's starting `H`.
    initial_hash: [u8; HASH_LEN],
}

impl StaticIdentity {
    /// Builds the identity from a private key (clamped internally by X25519).
    pub fn new(private: Key) -> StaticIdentity {
        let private = StaticSecret::from(private);
        let public = PublicKey::from(&private).to_bytes();
        StaticIdentity {
            initial_hash: initial_hash(&public),
            private,
            public,
        }
    }

    /// `DH(S^priv, S_remote^pub)`, the static-static secret a peer precomputes once per key
    /// pair (the kernel's `precomputed_static_static`); fails for a low-order `remote`.
    pub fn static_static(&self, remote: &Key) -> Result<Zeroizing<Key>, HandshakeError> {
        dh(&self.private, remote)
    }

    /// `S^pub`.
    pub fn public_key(&self) -> &Key {
        &self.public
    }
}

impl core::fmt::Debug for StaticIdentity {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("StaticIdentity")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

/// The session keys a completed handshake yields, for [`crate::session::Keypair`].
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct TransportKeys {
    /// `T^send`.
    pub send: Key,
    /// `T^recv`.
    pub recv: Key,
    /// Our index: the receiver index peers put on transport messages to us.
    #[zeroize(skip)]
    pub local_index: u32,
    /// The peer's index: the receiver index we put on transport messages.
    #[zeroize(skip)]
    pub remote_index: u32,
    /// Whether we initiated this handshake (only the initiator rekeys after time).
    #[zeroize(skip)]
    pub initiator: bool,
}

impl core::fmt::Debug for TransportKeys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TransportKeys")
            .field("local_index", &self.local_index)
            .field("remote_index", &self.remote_index)
            .field("initiator", &self.initiator)
            .finish_non_exhaustive()
    }
}

/// Initiator state after sending a `HandshakeInitiation`, waiting for the response.
pub struct AwaitingResponse {
    ck: Zeroizing<Key>,
    h: [u8; HASH_LEN],
    ephemeral: StaticSecret,
    remote_static: Key,
    psk: Zeroizing<Key>,
    sender_index: u32,
}

impl core::fmt::Debug for AwaitingResponse {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("AwaitingResponse")
            .field("sender_index", &self.sender_index)
            .finish_non_exhaustive()
    }
}

/// Responder state after authenticating a `HandshakeInitiation`, before responding.
pub struct InitiationReceived {
    ck: Zeroizing<Key>,
    h: [u8; HASH_LEN],
    remote_ephemeral: Key,
    remote_static: Key,
    remote_index: u32,
    timestamp: Tai64N,
}

impl core::fmt::Debug for InitiationReceived {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("InitiationReceived")
            .field("remote_index", &self.remote_index)
            .field("timestamp", &self.timestamp)
            .finish_non_exhaustive()
    }
}

/// `HASH(HASH(HASH(CONSTRUCTION) || IDENTIFIER) || responder_static)`.
fn initial_hash(responder_static: &Key) -> [u8; HASH_LEN] {
    let ck = hash(&[CONSTRUCTION]);
    let h = hash(&[&ck, IDENTIFIER]);
    hash(&[&h, responder_static])
}

/// `DH(private, public)`, rejecting the all-zero result of a low-order point.
fn dh(private: &StaticSecret, public: &Key) -> Result<Zeroizing<Key>, HandshakeError> {
    let shared = private.diffie_hellman(&PublicKey::from(*public));
    if !shared.was_contributory() {
        return Err(HandshakeError::LowOrderPoint);
    }
    Ok(Zeroizing::new(*shared.as_bytes()))
}

/// Writes a `HandshakeInitiation` (all but MAC1/MAC2, which are zeroed) into `out` and returns
/// the state that awaits the response.
///
/// `sender_index` is the fresh local index `I_i`; `timestamp` the TAI64N wall-clock stamp;
/// `psk` the preshared key `Q` (all zero when none is configured).
pub fn initiate<R: rand_core::RngCore + rand_core::CryptoRng>(
    local: &StaticIdentity,
    remote_static: &Key,
    psk: &Key,
    sender_index: u32,
    timestamp: Tai64N,
    rng: &mut R,
    out: &mut [u8],
) -> Result<AwaitingResponse, HandshakeError> {
    let static_static = local.static_static(remote_static)?;
    initiate_precomputed(
        local,
        remote_static,
        &static_static,
        psk,
        sender_index,
        timestamp,
        rng,
        out,
    )
}

/// [`initiate`] with `DH(S_i^priv, S_r^pub)` precomputed by
/// [`StaticIdentity::static_static`].
#[allow(clippy::too_many_arguments)]
pub fn initiate_precomputed<R: rand_core::RngCore + rand_core::CryptoRng>(
    local: &StaticIdentity,
    remote_static: &Key,
    static_static: &Key,
    psk: &Key,
    sender_index: u32,
    timestamp: Tai64N,
    rng: &mut R,
    out: &mut [u8],
) -> Result<AwaitingResponse, HandshakeError> {
    let mut msg = HandshakeInitiation::new_unchecked(out);
    msg.set_message_type();
    // msg.sender := I_i
    msg.set_sender_index(sender_index);

    // C_i := HASH(CONSTRUCTION)
    let ck = hash(&[CONSTRUCTION]);
    // H_i := HASH(C_i || IDENTIFIER)
    let h = hash(&[&ck, IDENTIFIER]);
    // H_i := HASH(H_i || S_r^pub)
    let h = hash(&[&h, remote_static]);
    // (E_i^priv, E_i^pub) := DH-GENERATE()
    let ephemeral = StaticSecret::random_from_rng(&mut *rng);
    let ephemeral_pub = PublicKey::from(&ephemeral).to_bytes();
    // C_i := KDF_1(C_i, E_i^pub)
    let ck = Zeroizing::new(kdf1(&ck, &ephemeral_pub));
    // msg.ephemeral := E_i^pub
    msg.ephemeral_mut().copy_from_slice(&ephemeral_pub);
    // H_i := HASH(H_i || msg.ephemeral)
    let h = hash(&[&h, &ephemeral_pub]);
    // (C_i, κ) := KDF_2(C_i, DH(E_i^priv, S_r^pub))
    let (ck, k) = kdf2(&ck, &dh(&ephemeral, remote_static)?[..]);
    let (ck, k) = (Zeroizing::new(ck), Zeroizing::new(k));
    // msg.static := AEAD(κ, 0, S_i^pub, H_i)
    aead_seal(&k, 0, local.public_key(), &h, msg.encrypted_static_mut())?;
    // H_i := HASH(H_i || msg.static)
    let h = hash(&[&h, msg.encrypted_static()]);
    // (C_i, κ) := KDF_2(C_i, DH(S_i^priv, S_r^pub)), precomputed
    let (ck, k) = kdf2(&ck, static_static);
    let (ck, k) = (Zeroizing::new(ck), Zeroizing::new(k));
    // msg.timestamp := AEAD(κ, 0, TIMESTAMP(), H_i)
    aead_seal(
        &k,
        0,
        timestamp.as_bytes(),
        &h,
        msg.encrypted_timestamp_mut(),
    )?;
    // H_i := HASH(H_i || msg.timestamp)
    let h = hash(&[&h, msg.encrypted_timestamp()]);

    msg.mac1_mut().fill(0);
    msg.mac2_mut().fill(0);
    Ok(AwaitingResponse {
        ck,
        h,
        ephemeral,
        remote_static: *remote_static,
        psk: Zeroizing::new(*psk),
        sender_index,
    })
}

impl AwaitingResponse {
    /// `I_i`, the index the response must name as its receiver.
    pub fn sender_index(&self) -> u32 {
        self.sender_index
    }

    /// Consumes a `HandshakeResponse` (whose MAC1 the caller has already verified) and derives
    /// the transport keys. On failure the state comes back unchanged inside [`Rejected`].
    // Returning the state by value on error is the point; this runs once per handshake.
    #[allow(clippy::result_large_err)]
    pub fn handle_response(
        self,
        local: &StaticIdentity,
        msg: &HandshakeResponse<&[u8]>,
    ) -> Result<TransportKeys, Rejected<Self>> {
        match self.derive(local, msg) {
            Ok(keys) => Ok(keys),
            Err(error) => Err(Rejected { state: self, error }),
        }
    }

    fn derive(
        &self,
        local: &StaticIdentity,
        msg: &HandshakeResponse<&[u8]>,
    ) -> Result<TransportKeys, HandshakeError> {
        if msg.receiver_index() != self.sender_index {
            return Err(HandshakeError::WrongIndex);
        }
        // The field is exactly KEY_LEN bytes.
        let ephemeral_r: Key = msg.ephemeral().try_into().expect("32-byte field");
        // C_r := KDF_1(C_r, E_r^pub)
        let ck = Zeroizing::new(kdf1(&self.ck, &ephemeral_r));
        // H_r := HASH(H_r || msg.ephemeral)
        let h = hash(&[&self.h, &ephemeral_r]);
        // C_r := KDF_1(C_r, DH(E_r^priv, E_i^pub)), computed as DH(E_i^priv, E_r^pub)
        let ck = Zeroizing::new(kdf1(&ck, &dh(&self.ephemeral, &ephemeral_r)?[..]));
        // C_r := KDF_1(C_r, DH(E_r^priv, S_i^pub)), computed as DH(S_i^priv, E_r^pub)
        let ck = Zeroizing::new(kdf1(&ck, &dh(&local.private, &ephemeral_r)?[..]));
        // (C_r, τ, κ) := KDF_3(C_r, Q)
        let (ck, tau, k) = kdf3(&ck, &self.psk[..]);
        let (ck, tau, k) = (Zeroizing::new(ck), Zeroizing::new(tau), Zeroizing::new(k));
        // H_r := HASH(H_r || τ)
        let h = hash(&[&h, &tau[..]]);
        // msg.empty := AEAD(κ, 0, ε, H_r), checked by opening it
        aead_open(&k, 0, msg.encrypted_nothing(), &h, &mut [])?;
        // H_r := HASH(H_r || msg.empty); the final transcript hash is not used further.
        let _h = hash(&[&h, msg.encrypted_nothing()]);
        // (T_i^send, T_i^recv) := KDF_2(C_i, ε)
        let (send, recv) = kdf2(&ck, &[]);
        Ok(TransportKeys {
            send,
            recv,
            local_index: self.sender_index,
            remote_index: msg.sender_index(),
            initiator: true,
        })
    }

    /// The responder's static key this handshake is addressed to.
    pub fn remote_static(&self) -> &Key {
        &self.remote_static
    }
}

/// Decrypts a `HandshakeInitiation` (whose MAC1 the caller has already verified) with the local
/// static key. The result names the initiator, whom the caller must recognise as a peer
/// before responding.
pub fn consume_initiation(
    local: &StaticIdentity,
    msg: &HandshakeInitiation<&[u8]>,
) -> Result<InitiationReceived, HandshakeError> {
    consume_initiation_precomputed(local, msg, |remote| local.static_static(remote).ok())
}

/// [`consume_initiation`], with `DH(S_r^priv, S_i^pub)` looked up once the initiator's
/// static key is decrypted: `static_static` returns the precomputed secret of the peer with
/// that key, or `None` for an unknown peer, which fails with
/// [`HandshakeError::UnknownPeer`] before any further work.
pub fn consume_initiation_precomputed(
    local: &StaticIdentity,
    msg: &HandshakeInitiation<&[u8]>,
    static_static: impl FnOnce(&Key) -> Option<Zeroizing<Key>>,
) -> Result<InitiationReceived, HandshakeError> {
    // C_r := HASH(CONSTRUCTION); H_r := HASH(HASH(C_r || IDENTIFIER) || S_r^pub), precomputed
    let ck = hash(&[CONSTRUCTION]);
    let h = local.initial_hash;
    // The field is exactly KEY_LEN bytes.
    let ephemeral_i: Key = msg.ephemeral().try_into().expect("32-byte field");
    // C_r := KDF_1(C_r, msg.ephemeral)
    let ck = Zeroizing::new(kdf1(&ck, &ephemeral_i));
    // H_r := HASH(H_r || msg.ephemeral)
    let h = hash(&[&h, &ephemeral_i]);
    // (C_r, κ) := KDF_2(C_r, DH(S_r^priv, E_i^pub))
    let (ck, k) = kdf2(&ck, &dh(&local.private, &ephemeral_i)?[..]);
    let (ck, k) = (Zeroizing::new(ck), Zeroizing::new(k));
    // S_i^pub := AEAD^-1(κ, 0, msg.static, H_r)
    let mut remote_static = [0u8; KEY_LEN];
    aead_open(&k, 0, msg.encrypted_static(), &h, &mut remote_static)?;
    // H_r := HASH(H_r || msg.static)
    let h = hash(&[&h, msg.encrypted_static()]);
    // (C_r, κ) := KDF_2(C_r, DH(S_r^priv, S_i^pub)), precomputed
    let ss = static_static(&remote_static).ok_or(HandshakeError::UnknownPeer)?;
    let (ck, k) = kdf2(&ck, &ss[..]);
    let (ck, k) = (Zeroizing::new(ck), Zeroizing::new(k));
    // timestamp := AEAD^-1(κ, 0, msg.timestamp, H_r)
    let mut timestamp = [0u8; TIMESTAMP_LEN];
    aead_open(&k, 0, msg.encrypted_timestamp(), &h, &mut timestamp)?;
    // H_r := HASH(H_r || msg.timestamp)
    let h = hash(&[&h, msg.encrypted_timestamp()]);
    Ok(InitiationReceived {
        ck,
        h,
        remote_ephemeral: ephemeral_i,
        remote_static,
        remote_index: msg.sender_index(),
        timestamp: Tai64N::from_bytes(timestamp),
    })
}

impl InitiationReceived {
    /// `S_i^pub`: who sent the initiation.
    pub fn remote_static(&self) -> &Key {
        &self.remote_static
    }

    /// The decrypted TAI64N stamp, for the replay check.
    pub fn timestamp(&self) -> Tai64N {
        self.timestamp
    }

    /// `I_i`, the initiator's index.
    pub fn remote_index(&self) -> u32 {
        self.remote_index
    }

    /// Writes the `HandshakeResponse` (all but MAC1/MAC2, which are zeroed) into `out` and
    /// derives the responder's transport keys.
    ///
    /// `sender_index` is the fresh local index `I_r`; `psk` the peer's preshared key `Q`.
    pub fn respond<R: rand_core::RngCore + rand_core::CryptoRng>(
        self,
        psk: &Key,
        sender_index: u32,
        rng: &mut R,
        out: &mut [u8],
    ) -> Result<TransportKeys, HandshakeError> {
        let mut msg = HandshakeResponse::new_unchecked(out);
        msg.set_message_type();
        // msg.sender := I_r; msg.receiver := I_i
        msg.set_sender_index(sender_index);
        msg.set_receiver_index(self.remote_index);
        // (E_r^priv, E_r^pub) := DH-GENERATE()
        let ephemeral = StaticSecret::random_from_rng(&mut *rng);
        let ephemeral_pub = PublicKey::from(&ephemeral).to_bytes();
        // C_r := KDF_1(C_r, E_r^pub)
        let ck = Zeroizing::new(kdf1(&self.ck, &ephemeral_pub));
        // msg.ephemeral := E_r^pub
        msg.ephemeral_mut().copy_from_slice(&ephemeral_pub);
        // H_r := HASH(H_r || msg.ephemeral)
        let h = hash(&[&self.h, &ephemeral_pub]);
        // C_r := KDF_1(C_r, DH(E_r^priv, E_i^pub))
        let ck = Zeroizing::new(kdf1(&ck, &dh(&ephemeral, &self.remote_ephemeral)?[..]));
        // C_r := KDF_1(C_r, DH(E_r^priv, S_i^pub))
        let ck = Zeroizing::new(kdf1(&ck, &dh(&ephemeral, &self.remote_static)?[..]));
        // (C_r, τ, κ) := KDF_3(C_r, Q)
        let (ck, tau, k) = kdf3(&ck, psk);
        let (ck, tau, k) = (Zeroizing::new(ck), Zeroizing::new(tau), Zeroizing::new(k));
        // H_r := HASH(H_r || τ)
        let h = hash(&[&h, &tau[..]]);
        // msg.empty := AEAD(κ, 0, ε, H_r)
        aead_seal(&k, 0, &[], &h, msg.encrypted_nothing_mut())?;
        // H_r := HASH(H_r || msg.empty); the final transcript hash is not used further.
        let _h = hash(&[&h, msg.encrypted_nothing()]);
        msg.mac1_mut().fill(0);
        msg.mac2_mut().fill(0);
        // (T_r^recv, T_r^send) := KDF_2(C_r, ε)
        let (recv, send) = kdf2(&ck, &[]);
        Ok(TransportKeys {
            send,
            recv,
            local_index: sender_index,
            remote_index: self.remote_index,
            initiator: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::{HANDSHAKE_INITIATION_LEN, HANDSHAKE_RESPONSE_LEN};
    use crate::tests::{fixed_rng, hex};
    use core::time::Duration;

    const PSK: Key = [0x55; 32];

    fn identities() -> (StaticIdentity, StaticIdentity) {
        (
            StaticIdentity::new([0x11; 32]),
            StaticIdentity::new([0x22; 32]),
        )
    }

    fn stamp() -> Tai64N {
        Tai64N::for_initiation(Duration::from_secs(1_700_000_000))
    }

    /// Runs a handshake with fixed keys and RNG, returning both messages and both key sets.
    fn run() -> ([u8; 148], [u8; 92], TransportKeys, TransportKeys) {
        let (alice, bob) = identities();
        let mut rng = fixed_rng(1);
        let mut init = [0u8; HANDSHAKE_INITIATION_LEN];
        let state = initiate(
            &alice,
            bob.public_key(),
            &PSK,
            0x0102_0304,
            stamp(),
            &mut rng,
            &mut init,
        )
        .unwrap();
        let received =
            consume_initiation(&bob, &HandshakeInitiation::new_checked(&init[..]).unwrap())
                .unwrap();
        assert_eq!(received.remote_static(), alice.public_key());
        assert_eq!(received.timestamp(), stamp());
        assert_eq!(received.remote_index(), 0x0102_0304);
        let mut resp = [0u8; HANDSHAKE_RESPONSE_LEN];
        let bob_keys = received
            .respond(&PSK, 0x0a0b_0c0d, &mut rng, &mut resp)
            .unwrap();
        let alice_keys = state
            .handle_response(&alice, &HandshakeResponse::new_checked(&resp[..]).unwrap())
            .unwrap();
        (init, resp, alice_keys, bob_keys)
    }

    #[test]
    fn test_handshake_derives_matching_keys() {
        let (_, _, a, b) = run();
        assert_eq!(a.send, b.recv);
        assert_eq!(a.recv, b.send);
        assert_ne!(a.send, a.recv);
        assert_eq!((a.local_index, a.remote_index), (0x0102_0304, 0x0a0b_0c0d));
        assert_eq!((b.local_index, b.remote_index), (0x0a0b_0c0d, 0x0102_0304));
        assert!(a.initiator && !b.initiator);
    }

    // Snapshot of the exact bytes produced with fixed static keys, fixed PSK, a fixed
    // timestamp and the fixed RNG. Any change to the Noise steps changes these bytes.
    #[test]
    fn test_handshake_snapshot() {
        let (init, resp, a, _) = run();
        assert_eq!(&init[..8], &[1, 0, 0, 0, 4, 3, 2, 1]);
        assert_eq!(
            &resp[..12],
            &[2, 0, 0, 0, 0x0d, 0x0c, 0x0b, 0x0a, 4, 3, 2, 1]
        );
        assert!(
            init[116..].iter().all(|&b| b == 0),
            "MACs are the cookie layer's job"
        );
        let snapshot = crate::tests::HANDSHAKE_SNAPSHOT;
        assert_eq!(hex(&init), snapshot[0], "initiation");
        assert_eq!(hex(&resp), snapshot[1], "response");
        assert_eq!(hex(&a.send), snapshot[2], "initiator send key");
        assert_eq!(hex(&a.recv), snapshot[3], "initiator recv key");
    }

    #[test]
    fn test_psk_mismatch_fails_response() {
        let (alice, bob) = identities();
        let mut rng = fixed_rng(2);
        let mut init = [0u8; HANDSHAKE_INITIATION_LEN];
        let state = initiate(
            &alice,
            bob.public_key(),
            &PSK,
            1,
            stamp(),
            &mut rng,
            &mut init,
        )
        .unwrap();
        let received =
            consume_initiation(&bob, &HandshakeInitiation::new_checked(&init[..]).unwrap())
                .unwrap();
        let mut resp = [0u8; HANDSHAKE_RESPONSE_LEN];
        received.respond(&[0; 32], 2, &mut rng, &mut resp).unwrap();
        let rejected = state
            .handle_response(&alice, &HandshakeResponse::new_checked(&resp[..]).unwrap())
            .unwrap_err();
        assert_eq!(rejected.error, HandshakeError::Decrypt);
        assert_eq!(
            rejected.state.sender_index(),
            1,
            "state survives a bad response"
        );
    }

    #[test]
    fn test_initiation_to_wrong_responder_fails() {
        let (alice, bob) = identities();
        let carol = StaticIdentity::new([0x33; 32]);
        let mut init = [0u8; HANDSHAKE_INITIATION_LEN];
        initiate(
            &alice,
            bob.public_key(),
            &PSK,
            1,
            stamp(),
            &mut fixed_rng(3),
            &mut init,
        )
        .unwrap();
        let msg = HandshakeInitiation::new_checked(&init[..]).unwrap();
        assert_eq!(
            consume_initiation(&carol, &msg).unwrap_err(),
            HandshakeError::Decrypt
        );
    }

    #[test]
    fn test_tampered_initiation_fails() {
        let (alice, bob) = identities();
        let mut init = [0u8; HANDSHAKE_INITIATION_LEN];
        initiate(
            &alice,
            bob.public_key(),
            &PSK,
            1,
            stamp(),
            &mut fixed_rng(4),
            &mut init,
        )
        .unwrap();
        for byte in [4, 8, 40, 100] {
            let mut bad = init;
            bad[byte] ^= 0x80;
            let msg = HandshakeInitiation::new_checked(&bad[..]).unwrap();
            // The sender index is not authenticated by the Noise layer (MAC1 covers it).
            if byte == 4 {
                assert!(consume_initiation(&bob, &msg).is_ok());
            } else {
                assert!(consume_initiation(&bob, &msg).is_err(), "byte {byte}");
            }
        }
    }

    #[test]
    fn test_wrong_receiver_index_rejected() {
        let (alice, bob) = identities();
        let mut rng = fixed_rng(5);
        let mut init = [0u8; HANDSHAKE_INITIATION_LEN];
        let state = initiate(
            &alice,
            bob.public_key(),
            &PSK,
            1,
            stamp(),
            &mut rng,
            &mut init,
        )
        .unwrap();
        let received =
            consume_initiation(&bob, &HandshakeInitiation::new_checked(&init[..]).unwrap())
                .unwrap();
        let mut resp = [0u8; HANDSHAKE_RESPONSE_LEN];
        received.respond(&PSK, 2, &mut rng, &mut resp).unwrap();
        resp[8] = 9;
        let msg = HandshakeResponse::new_checked(&resp[..]).unwrap();
        assert_eq!(
            state.handle_response(&alice, &msg).unwrap_err().error,
            HandshakeError::WrongIndex
        );
    }

    /// Low-order u-coordinates from the usual blacklist: 0, 1, p-1, p and p+1. Each gives an
    /// all-zero X25519 output with any clamped scalar.
    fn low_order_points() -> Vec<Key> {
        let mut points = vec![[0u8; 32]];
        let mut one = [0u8; 32];
        one[0] = 1;
        points.push(one);
        for low in [0xec, 0xed, 0xee] {
            let mut p = [0xffu8; 32];
            p[0] = low;
            p[31] = 0x7f;
            points.push(p);
        }
        points
    }

    #[test]
    fn test_low_order_points_rejected() {
        let (alice, bob) = identities();
        let mut rng = fixed_rng(6);
        let mut good = [0u8; HANDSHAKE_INITIATION_LEN];
        initiate(
            &alice,
            bob.public_key(),
            &PSK,
            1,
            stamp(),
            &mut rng,
            &mut good,
        )
        .unwrap();
        for point in low_order_points() {
            // An initiator refuses a low-order responder static key.
            let mut init = [0u8; HANDSHAKE_INITIATION_LEN];
            let err = initiate(&alice, &point, &PSK, 1, stamp(), &mut rng, &mut init).unwrap_err();
            assert_eq!(err, HandshakeError::LowOrderPoint);
            // A responder refuses an initiation whose ephemeral is low order.
            let mut bad = good;
            bad[8..40].copy_from_slice(&point);
            let msg = HandshakeInitiation::new_checked(&bad[..]).unwrap();
            assert_eq!(
                consume_initiation(&bob, &msg).unwrap_err(),
                HandshakeError::LowOrderPoint
            );
        }
    }
}
