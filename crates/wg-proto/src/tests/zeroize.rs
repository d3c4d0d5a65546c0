//! Every type holding key material erases it on drop. Checked at compile time: each is
//! `ZeroizeOnDrop` (directly or through the dependency's own `Drop`), and the types that hold them (`Keypair`, `AwaitingResponse`,
//! `InitiationReceived`, `Peer`, `StaticIdentity`, `CookieChecker`) keep secrets only in
//! these.

use x25519_dalek::{EphemeralSecret, StaticSecret};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::noise::handshake::TransportKeys;

fn erased_on_drop<T: ZeroizeOnDrop>() {}

/// x25519-dalek derives `Zeroize` with `#[zeroize(drop)]`: a zeroizing `Drop` without the
/// marker trait.
fn zeroize_with_drop<T: Zeroize>() {
    assert!(std::mem::needs_drop::<T>());
}

#[test]
fn test_secret_holders_are_zeroize_on_drop() {
    // Session keys (`Keypair::send` / `recv`, shared with crypto jobs through an `Arc`).
    erased_on_drop::<crate::session::TransportKey>();
    // Static and ephemeral private keys (`StaticIdentity`, `AwaitingResponse`, responses).
    zeroize_with_drop::<StaticSecret>();
    zeroize_with_drop::<EphemeralSecret>();
    // Derived transport keys before they key the ciphers.
    erased_on_drop::<TransportKeys>();
    // Chaining keys, preshared keys, static-static secrets, cookie secrets.
    erased_on_drop::<Zeroizing<[u8; 32]>>();
}
