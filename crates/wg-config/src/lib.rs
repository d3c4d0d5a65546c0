//! The one data model for everything that describes a WireGuard device: keys, endpoints,
//! CIDRs, firewall marks and keepalives, the wg(8) and wg-quick configuration formats, and the
//! UAPI text codec shared by the client (`wg`) and the server (`wg-tunnel`).
//!
//! This crate is pure: it does no I/O, reads no clock and resolves no hostnames. Parsers are
//! push-based (`Parser::new()`, `.line(s)?`, `.finish()`); reading files and resolving
//! endpoints is the caller's job, at the edge.
//!
//! Code map:
//! * [`key`]: typed Curve25519 keys, base64 and hex codecs, key-file contents.
//! * [`value`]: listen port, fwmark and keepalive values.
//! * [`endpoint`]: peer endpoints, resolved or still to resolve.
//! * [`cidr`]: allowed IPs and the `+`/`-` list parser, with warnings as values.
//! * [`model`]: [`Device`] / [`Peer`] as state and as delta, and [`apply`].
//! * [`config`]: the wg(8) file format, parser and `showconf` printer.
//! * [`quick`]: the wg-quick(8) file format.
//! * [`uapi`]: the UAPI text protocol, client and server ends.
//!
//! Every error enum's `Display` is the reference tool's message, with values in `` `…' ``.
#![forbid(unsafe_code)]

pub mod cidr;
pub mod config;
pub mod endpoint;
pub mod key;
pub mod model;
pub mod ntop;
pub mod quick;
pub mod uapi;
pub mod value;

pub use cidr::{
    parse_allowed_ips, parse_allowed_ips_arg, AllowedIp, AllowedIpError, AllowedIpList, Warning,
};
pub use config::{for_setconf, showconf, ConfigError, Parser};
pub use endpoint::{Endpoint, EndpointError};
pub use key::{from_key_file, Key, KeyError, KeyFileError, PresharedKey, PrivateKey, PublicKey};
pub use model::{apply, zero_key, Device, Peer};
pub use quick::{QuickConfig, QuickError, QuickParser};
pub use uapi::{ReplyError, Request, RequestError, RequestParser};
pub use value::{Fwmark, FwmarkError, Keepalive, KeepaliveError, ListenPort, PortError};
