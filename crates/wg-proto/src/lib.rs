//! Sans-IO WireGuard protocol core: no sockets, TUN, threads, clock or OS RNG.
//!
//! Everything here is a pure function of its inputs. Time arrives as `now: Instant` arguments
//! (and the wall clock as an explicit [`Tai64N`] stamp), randomness as an injected
//! `RngCore + CryptoRng` or a seed, and datagrams as byte slices. The I/O shell (`wg-tunnel`)
//! owns the UDP socket, the TUN device and the clock, and drives a [`Tunnel`] with the
//! `handle_*` / `poll_*` vocabulary documented on that type. `clippy.toml` forbids the clock
//! and OS randomness in this crate, and there is no `unsafe`.
//!
//! The protocol follows the WireGuard whitepaper (Donenfeld, "WireGuard: Next Generation Kernel
//! Network Tunnel", section 5 for the Noise_IKpsk2 handshake, cookies and transport messages,
//! section 6 for timers) and the Linux and wireguard-go implementations where the paper
//! leaves details open. One module per mechanism:
//!
//! | module          | owns                                                            |
//! |-----------------|-----------------------------------------------------------------|
//! | [`messages`]    | the four wire formats, as `Packet<T: AsRef<[u8]>>` views        |
//! | [`noise`]       | HASH/MAC/HMAC/KDF/AEAD, the handshake state machine, cookies    |
//! | [`tai64n`]      | handshake timestamps                                            |
//! | [`ratelimiter`] | per-source token buckets for handshakes under load              |
//! | [`replay`]      | the sliding window over transport counters                      |
//! | [`session`]     | a transport keypair: encrypt/decrypt into caller buffers        |
//! | [`timers`]      | the timer constants and the absolute-deadline table             |
//! | [`peer`]        | one peer: keypair slots, handshake, staged packets, endpoint    |
//! | [`allowed_ips`] | the cryptokey routing table (longest-prefix-match trie)         |
//! | [`tunnel`]      | the driving type tying the above together, and its bulk data   |
//! |                 | path (plan → crypto on any thread → complete)                  |
#![forbid(unsafe_code)]

pub mod allowed_ips;
pub mod messages;
pub mod noise;
pub mod peer;
pub mod ratelimiter;
pub mod replay;
pub mod session;
pub mod tai64n;
pub mod timers;
pub mod tunnel;

#[cfg(test)]
mod tests;

pub use allowed_ips::AllowedIps;
pub use peer::PeerId;
pub use tai64n::Tai64N;
pub use tunnel::{Event, OpenJob, PeerConfig, SealJob, Transmit, Tunnel};
