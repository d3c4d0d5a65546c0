//! Shared test helpers and the whole-protocol tests over a virtual-time [`util::Pair`].

use std::time::Instant;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

mod bulk;
mod config;
mod load;
mod schedule;
mod transfer;
mod tunnel;
mod util;
mod zeroize;

/// A deterministic RNG for tests. ChaCha20Rng's output for a seed is stable across versions.
pub(crate) fn fixed_rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

/// The one place tests read the clock: an arbitrary base `Instant` for virtual time. Only
/// differences from it matter.
#[allow(clippy::disallowed_methods)]
pub(crate) fn epoch() -> Instant {
    Instant::now()
}

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Snapshot of the deterministic handshake in `noise::handshake::tests`: initiation,
/// response, initiator send key, initiator receive key.
pub(crate) const HANDSHAKE_SNAPSHOT: [&str; 4] = [
    "0100000004030201c9561fe32c63944f32911110e14dc210d15c4c3402f82a05f1c5c8334172216b634255a7cd82e3f18659e66d016e2526c4d26b202428d5cdc4517739b67071f0c1c9ee241baebede7dc4804f6d1077eb2bb873d9db4916ff8dd78b7b63d8b45e85ae6adf5bc7a2c1304c92f40000000000000000000000000000000000000000000000000000000000000000",
    "020000000d0c0b0a0403020109a8173423eb0e24e19f4ad87cb92bb008dc99a5d722baa9a3fad3eb08b49f3a83494b1240a011c3952ad2e6f9c1c5000000000000000000000000000000000000000000000000000000000000000000",
    "5bb91ee43f29a211ae2136321b1b6362726d5b95c82f21c715ca2a3ceab0e6c8",
    "9da4601a04f13045670e7df039762c32b63ba2d2b2b44b41f0e34efbd93bd7cb",
];
