//! The Noise_IKpsk2 handshake of WireGuard (whitepaper §5.4) and its cookie layer.
//!
//! [`kdf`] holds the primitives (HASH, MAC, HMAC, KDF, AEAD, XAEAD) and the protocol
//! constants; [`handshake`] the initiator and responder state machines; [`cookie`] the MAC1 /
//! MAC2 / cookie-reply denial-of-service layer that wraps handshake messages.

pub mod cookie;
pub mod handshake;
pub mod kdf;
