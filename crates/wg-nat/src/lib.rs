//! Sans-IO NAT traversal for wg-tunnel and the `wg-relay` server.
//!
//! * [`wire`]: the control-message envelope (magic that never looks like WireGuard, sealing
//!   with keys derived from the static-static DH, replay protection);
//! * [`msg`]: the payloads (registration, discovery answer, signals, pings, pongs,
//!   candidates);
//! * [`engine`]: a tunnel's traversal state machine ([`Nat`]): registration and discovery,
//!   candidate exchange through the relay, simultaneous probing, path selection and
//!   keepalives;
//! * [`relay`]: the relay's state machine ([`Relay`]): discovery answers, sessions between
//!   peers that named each other, signalling and forwarding of ciphertext, limits.
//!
//! Like wg-proto, nothing here reads the clock, draws randomness or does I/O: callers pass
//! `now`, the wall-clock time, seeds and datagrams, and poll for datagrams to send.

pub mod engine;
pub mod msg;
pub mod relay;
pub mod wire;

pub use engine::{Incoming, Nat, NatEvent, Path, PathStatus};
pub use relay::{Relay, RelayConfig, RelayCounters, RelayEvent};

#[cfg(test)]
mod natlab;
