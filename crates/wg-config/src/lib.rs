//! The one data model for everything that describes a WireGuard device: keys, endpoints,
//! CIDRs, firewall marks and keepalives, the wg(8) and wg-quick configuration formats, and the
//! UAPI text codec shared by the client (`wg`) and the server (`wg-tunnel`).
//!
//! This crate is pure: it does no I/O, reads no clock and resolves no hostnames. Parsers are
//! push-based (`Parser::new()`, `.line(s)?`, `.finish()`); reading files and resolving
//! endpoints is the caller's job, at the edge.
#![forbid(unsafe_code)]

pub mod key;

pub use key::{KeyError, PresharedKey, PrivateKey, PublicKey};
