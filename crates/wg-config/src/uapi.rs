//! The cross-platform userspace API (UAPI) text protocol, both ends: what `wg` sends and
//! accepts as a client, and what a userspace daemon (`wg-tunnel`) accepts and answers as a
//! server, mapped to and from the one [`Device`] model.
//!
//! A request is `get=1` or `set=1` then `key=value` lines, ended by a blank line; keys are
//! 64 lower-case hex digits. Client side: [`encode_set`] produces the exact bytes wg-tools
//! sends, [`GetReplyParser`] / [`decode_get`] read a `get` reply with wg-tools' acceptance rules,
//! and [`decode_set_reply`] reads the status of a `set`. Server side: [`RequestParser`] reads
//! requests with wireguard-go's strictness and [`encode_get`] / [`encode_errno`] write replies
//! in wireguard-go's order. All of it is pure text; sockets live in `wg-ipc` and `wg-tunnel`.
//!
//! Errno values are Linux's; [`ReplyError::errno`] and [`RequestError::errno`] give the number
//! that the binaries pass to `strerror` or put on the wire.

use std::fmt::Write as _;
use std::time::Duration;

use crate::cidr::AllowedIp;
use crate::endpoint::Endpoint;
use crate::key::{Key, PresharedKey, PrivateKey, PublicKey};
use crate::model::{Device, Peer};
use crate::value::parse_decimal;

/// Linux `EIO`: wireguard-go's status for a failed read of the request.
pub const EIO: i32 = 5;
/// Linux `EINVAL`: an invalid key or value in a request.
pub const EINVAL: i32 = 22;
/// Linux `EPROTO`: a malformed line or reply ("Protocol error").
pub const EPROTO: i32 = 71;
/// Linux `EADDRINUSE`: the listen port could not be bound.
pub const EADDRINUSE: i32 = 98;

/// The exact bytes of a `get` request.
pub const GET_REQUEST: &str = "get=1\n\n";

// ---------------------------------------------------------------------------------------------
// Client side.

/// A failed reply, as wg-tools judges it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplyError {
    /// The daemon reported a failure. Holds the errno that `wg` reports (pass it to
    /// `strerror`): `N` for a get reply `errno=N`, `-N` for a set reply `errno=N` (so the usual
    /// `errno=-98` is 98, and a positive `errno=22` gives `Unknown error -22` as in the
    /// reference).
    #[error("the daemon reported errno {0}")]
    Errno(i32),
    /// The reply was malformed, cut short, or had no (or a negative) `errno` line: `EPROTO`.
    #[error("Protocol error")]
    Protocol,
}

impl ReplyError {
    /// The errno to report.
    pub fn errno(&self) -> i32 {
        match self {
            ReplyError::Errno(errno) => *errno,
            ReplyError::Protocol => EPROTO,
        }
    }
}

/// Encodes a delta as the `set` request `wg` sends, from `set=1` to the final blank line.
///
/// Order: `private_key`, `listen_port`, `fwmark`, `replace_peers`; per peer `public_key`,
/// `update_only` (never set by `wg` itself), `remove` (then nothing else for that peer),
/// `preshared_key`, `endpoint`, `persistent_keepalive_interval`, `replace_allowed_ips`,
/// `allowed_ip` (with `-` for removals). Endpoints are written as they are: resolve
/// [`Endpoint::Host`] first, as `wg` does, since wireguard-go accepts IP literals only.
pub fn encode_set(device: &Device) -> String {
    let mut out = String::from("set=1\n");
    // Writing to a String cannot fail, so the fmt::Results below are ignored.
    if let Some(key) = &device.private_key {
        let _ = writeln!(out, "private_key={}", key.to_hex());
    }
    if let Some(port) = device.listen_port {
        let _ = writeln!(out, "listen_port={port}");
    }
    if let Some(mark) = device.fwmark {
        let _ = writeln!(out, "fwmark={mark}");
    }
    if device.replace_peers {
        out.push_str("replace_peers=true\n");
    }
    for peer in &device.peers {
        let _ = writeln!(out, "public_key={}", peer.public_key.to_hex());
        if peer.update_only {
            out.push_str("update_only=true\n");
        }
        if peer.remove {
            out.push_str("remove=true\n");
            continue;
        }
        if let Some(psk) = &peer.preshared_key {
            let _ = writeln!(out, "preshared_key={}", psk.to_hex());
        }
        if let Some(endpoint) = &peer.endpoint {
            let _ = writeln!(out, "endpoint={endpoint}");
        }
        if let Some(interval) = peer.persistent_keepalive {
            let _ = writeln!(out, "persistent_keepalive_interval={interval}");
        }
        if peer.replace_allowed_ips {
            out.push_str("replace_allowed_ips=true\n");
        }
        for ip in &peer.allowed_ips {
            let _ = writeln!(out, "allowed_ip={ip}");
        }
    }
    out.push('\n');
    out
}

/// wg-tools' `NUM(max)`: a decimal that starts with a digit, has no junk and is at most `max`.
fn num(value: &str, max: u64) -> Result<u64, ReplyError> {
    parse_decimal(value)
        .filter(|&n| n <= max)
        .ok_or(ReplyError::Protocol)
}

/// A push parser of a `get` reply with wg-tools' acceptance rules (`ipc-uapi.h`).
///
/// Feed each line without its `\n` to [`GetReplyParser::line`] until it returns the device.
/// If the input ends first (or a last line lacks its `\n`), the reply is
/// [`ReplyError::Protocol`]. Rules: every line needs a `=`; an `errno=<decimal>` line must come
/// before the blank line (`0` is success); device keys count only before the first
/// `public_key`, peer keys apply to the latest one; unknown keys are ignored; keys are 64 hex
/// digits; numbers are range-checked; `allowed_ip` needs `/cidr`.
///
/// Decoding normalises as the reference's display does: an all-zero preshared key, and zero
/// port, fwmark, keepalive and handshake second all read as `None`. An all-zero private key is
/// kept (the reference shows it).
#[derive(Debug, Clone, Default)]
pub struct GetReplyParser {
    device: Device,
    in_peer: bool,
    /// The current peer's `last_handshake_time_{sec,nsec}`, combined when the peer ends.
    handshake: (u64, u64),
    status: Option<i32>,
}

impl GetReplyParser {
    /// A parser at the start of a reply.
    pub fn new() -> GetReplyParser {
        GetReplyParser::default()
    }

    /// Feeds one line, without its `\n`. Returns the device state at the blank line that ends
    /// a successful reply.
    pub fn line(&mut self, line: &str) -> Result<Option<Device>, ReplyError> {
        // The reference reads lines as C strings: a NUL cuts the line before its `\n`, which
        // makes it malformed.
        if line.contains('\0') {
            return Err(ReplyError::Protocol);
        }
        if line.is_empty() {
            self.end_peer();
            return match self.status {
                Some(0) => Ok(Some(std::mem::take(&mut self.device))),
                Some(errno) => Err(ReplyError::Errno(errno)),
                None => Err(ReplyError::Protocol),
            };
        }
        let (key, value) = line.split_once('=').ok_or(ReplyError::Protocol)?;
        let hex_err = |_| ReplyError::Protocol;
        match (key, self.in_peer) {
            ("private_key", false) => {
                self.device.private_key = Some(PrivateKey::from_hex(value).map_err(hex_err)?);
            }
            ("listen_port", false) => {
                self.device.listen_port = Some(num(value, 0xffff)? as u16).filter(|&p| p != 0);
            }
            ("fwmark", false) => {
                self.device.fwmark = Some(num(value, 0xffff_ffff)? as u32).filter(|&m| m != 0);
            }
            ("public_key", _) => {
                self.end_peer();
                let key = PublicKey::from_hex(value).map_err(hex_err)?;
                self.device.peers.push(Peer::new(key));
                self.in_peer = true;
            }
            ("preshared_key", true) => {
                let psk = PresharedKey::from_hex(value).map_err(hex_err)?;
                self.peer().preshared_key = (!psk.is_zero()).then_some(psk);
            }
            ("endpoint", true) => {
                let endpoint = value
                    .parse::<Endpoint>()
                    .map_err(|_| ReplyError::Protocol)?;
                self.peer().endpoint = Some(endpoint);
            }
            ("persistent_keepalive_interval", true) => {
                let interval = num(value, 0xffff)? as u16;
                self.peer().persistent_keepalive = (interval != 0).then_some(interval);
            }
            ("allowed_ip", true) => {
                // The prefix length is mandatory here, and no `+`/`-` is allowed.
                let (_, mask) = value.split_once('/').ok_or(ReplyError::Protocol)?;
                if !mask.starts_with(|c: char| c.is_ascii_digit()) {
                    return Err(ReplyError::Protocol);
                }
                let ip = value
                    .parse::<AllowedIp>()
                    .map_err(|_| ReplyError::Protocol)?;
                if ip.remove || value.starts_with('+') {
                    return Err(ReplyError::Protocol);
                }
                self.peer().allowed_ips.push(ip);
            }
            ("last_handshake_time_sec", true) => self.handshake.0 = num(value, i64::MAX as u64)?,
            ("last_handshake_time_nsec", true) => self.handshake.1 = num(value, i64::MAX as u64)?,
            ("rx_bytes", true) => self.peer().rx_bytes = num(value, u64::MAX)?,
            ("tx_bytes", true) => self.peer().tx_bytes = num(value, u64::MAX)?,
            ("errno", _) => self.status = Some(num(value, 0x7fff_ffff)? as i32),
            _ => {}
        }
        Ok(None)
    }

    fn peer(&mut self) -> &mut Peer {
        // Only called while `in_peer`, which is set right after pushing a peer.
        self.device.peers.last_mut().expect("in a peer section")
    }

    /// Stores the current peer's handshake time: second 0 means never.
    fn end_peer(&mut self) {
        let (secs, nanos) = std::mem::take(&mut self.handshake);
        if let Some(peer) = self.device.peers.last_mut().filter(|_| self.in_peer) {
            peer.last_handshake = (secs != 0)
                .then(|| Duration::from_secs(secs).saturating_add(Duration::from_nanos(nanos)));
        }
    }
}

/// Decodes a complete `get` reply held in memory (see [`GetReplyParser`]). Text after the
/// blank line is ignored, as `wg` stops reading there.
pub fn decode_get(text: &str) -> Result<Device, ReplyError> {
    let mut parser = GetReplyParser::new();
    for raw in text.split_inclusive('\n') {
        let line = raw.strip_suffix('\n').ok_or(ReplyError::Protocol)?;
        if let Some(device) = parser.line(line)? {
            return Ok(device);
        }
    }
    Err(ReplyError::Protocol)
}

/// Decodes the status reply to a `set`: `errno=0` is success, `errno=-N` is failure `N`, a
/// positive `errno=N` is failure `-N` (printed as `Unknown error -N`, as the reference does).
///
/// Read as the reference reads it, line by line up to the blank line that ends the reply: every
/// line must end in `\n` and hold a `=` (and no NUL); an `errno` value must be a decimal that
/// starts with `-` or a digit and fits `i32`; the last `errno` line decides; other keys are
/// ignored. A reply that ends before its blank line, or has no `errno`, is
/// [`ReplyError::Protocol`].
pub fn decode_set_reply(text: &str) -> Result<(), ReplyError> {
    let mut status = None;
    for raw in text.split_inclusive('\n') {
        let line = raw.strip_suffix('\n').ok_or(ReplyError::Protocol)?;
        if line.is_empty() {
            return match status.ok_or(ReplyError::Protocol)? {
                0 => Ok(()),
                // `-i32::MIN` overflows; the reference's `errno = -ret` wraps the same way.
                status => Err(ReplyError::Errno(i32::wrapping_neg(status))),
            };
        }
        if line.contains('\0') {
            return Err(ReplyError::Protocol);
        }
        let (key, value) = line.split_once('=').ok_or(ReplyError::Protocol)?;
        if key == "errno" {
            if !value.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
                return Err(ReplyError::Protocol);
            }
            status = Some(value.parse::<i32>().map_err(|_| ReplyError::Protocol)?);
        }
    }
    Err(ReplyError::Protocol)
}

// ---------------------------------------------------------------------------------------------
// Server side.

/// One complete request read by a [`RequestParser`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `get=1`: reply with [`encode_get`].
    Get,
    /// `set=1`: apply the delta (see [`crate::apply`]) and reply with [`encode_errno`].
    Set(Device),
}

/// A request the server refuses, with wireguard-go's classification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The first line was neither `get=1` nor `set=1`: wireguard-go closes the connection
    /// without replying.
    #[error("invalid UAPI operation: `{0}'")]
    UnknownOperation(String),
    /// A line without `=` (`EPROTO`).
    #[error("failed to parse line: `{0}'")]
    Malformed(String),
    /// `get=1` was not followed by a blank line (`EINVAL`).
    #[error("trailing line in UAPI get: `{0}'")]
    TrailingGet(String),
    /// An unknown device key, or a device key after the first `public_key` (`EINVAL`).
    #[error("invalid UAPI device key: `{0}'")]
    DeviceKey(String),
    /// An unknown peer key (`EINVAL`).
    #[error("invalid UAPI peer key: `{0}'")]
    PeerKey(String),
    /// A known key with a value it does not accept (`EINVAL`); holds the whole line.
    #[error("invalid value: `{0}'")]
    Value(String),
}

impl RequestError {
    /// The positive errno to report with [`encode_errno`], or `None` when the connection
    /// should be closed without a reply.
    pub fn errno(&self) -> Option<i32> {
        match self {
            RequestError::UnknownOperation(_) => None,
            RequestError::Malformed(_) => Some(EPROTO),
            _ => Some(EINVAL),
        }
    }
}

/// Where the server parser is within a connection.
#[derive(Debug, Clone, Default)]
enum ServerState {
    /// Expecting an operation line.
    #[default]
    Idle,
    /// After `get=1`, expecting the blank line.
    Get,
    /// Inside `set=1`; `in_peer` once a `public_key` line was seen.
    Set { delta: Device, in_peer: bool },
}

/// A push parser of UAPI requests on one connection, with wireguard-go's strictness.
///
/// Feed each line without its `\n`; a [`Request`] comes out at each request's blank line, and
/// the parser is then ready for the next request on the same connection. Rules: a line without
/// `=` is `EPROTO`; an unknown device or peer key, a device key after `public_key`, a bad hex
/// key, a number that does not fit, an endpoint that is not an IP literal, an `allowed_ip`
/// without `/cidr`, `protocol_version` other than `1` and `update_only` / `remove` /
/// `replace_peers` / `replace_allowed_ips` other than `true` are `EINVAL`.
///
/// The delta keeps line order where it matters: a `remove` or `replace_allowed_ips` line after
/// `allowed_ip` lines of the same entry starts a new entry for the same key, so that
/// [`crate::apply`] gives wireguard-go's line-by-line result (prefixes moved by the earlier
/// lines stay moved). One difference remains: wireguard-go undoes a peer *created* by the same
/// entry when `update_only` comes late; here a late `update_only` acts as if it came first.
///
/// wireguard-go applies a `set` line by line, so lines before a failing one take effect. To
/// match it, take the lines accepted so far with [`RequestParser::abort`] and apply them before
/// replying with the error.
#[derive(Debug, Clone, Default)]
pub struct RequestParser {
    state: ServerState,
}

impl RequestParser {
    /// A parser at the start of a connection.
    pub fn new() -> RequestParser {
        RequestParser::default()
    }

    /// Feeds one line, without its `\n`. On error the parser keeps the partial delta for
    /// [`RequestParser::abort`]; feed no further lines before calling it.
    pub fn line(&mut self, line: &str) -> Result<Option<Request>, RequestError> {
        match &mut self.state {
            ServerState::Idle => {
                self.state = match line {
                    "get=1" => ServerState::Get,
                    "set=1" => ServerState::Set {
                        delta: Device::default(),
                        in_peer: false,
                    },
                    _ => return Err(RequestError::UnknownOperation(line.to_owned())),
                };
                Ok(None)
            }
            ServerState::Get => {
                self.state = ServerState::Idle;
                if line.is_empty() {
                    Ok(Some(Request::Get))
                } else {
                    Err(RequestError::TrailingGet(line.to_owned()))
                }
            }
            ServerState::Set { delta, in_peer } => {
                if line.is_empty() {
                    let delta = std::mem::take(delta);
                    self.state = ServerState::Idle;
                    return Ok(Some(Request::Set(delta)));
                }
                set_line(delta, in_peer, line)?;
                Ok(None)
            }
        }
    }

    /// Ends the current request early (after an error, or when the connection closes mid-set)
    /// and returns the `set` lines accepted so far, if a `set` was in progress. The parser is
    /// ready for a new request afterwards.
    pub fn abort(&mut self) -> Option<Device> {
        match std::mem::take(&mut self.state) {
            ServerState::Set { delta, .. } => Some(delta),
            _ => None,
        }
    }
}

/// Handles one `key=value` line of a `set` request.
fn set_line(delta: &mut Device, in_peer: &mut bool, line: &str) -> Result<(), RequestError> {
    let (key, value) = line
        .split_once('=')
        .ok_or_else(|| RequestError::Malformed(line.to_owned()))?;
    let invalid = || RequestError::Value(line.to_owned());
    let uint = |max: u64| {
        parse_decimal(value)
            .filter(|&n| n <= max)
            .ok_or_else(invalid)
    };
    let flag = || {
        if value == "true" {
            Ok(())
        } else {
            Err(invalid())
        }
    };

    if key == "public_key" {
        let key = PublicKey::from_hex(value).map_err(|_| invalid())?;
        delta.peers.push(Peer::new(key));
        *in_peer = true;
        return Ok(());
    }
    if !*in_peer {
        match key {
            "private_key" => {
                delta.private_key = Some(PrivateKey::from_hex(value).map_err(|_| invalid())?)
            }
            "listen_port" => delta.listen_port = Some(uint(0xffff)? as u16),
            "fwmark" => delta.fwmark = Some(uint(0xffff_ffff)? as u32),
            "replace_peers" => {
                flag()?;
                delta.replace_peers = true;
            }
            _ => return Err(RequestError::DeviceKey(key.to_owned())),
        }
        return Ok(());
    }
    // `in_peer` is only set right after pushing a peer.
    let peer = delta.peers.last_mut().expect("in a peer section");
    match key {
        "update_only" => {
            flag()?;
            peer.update_only = true;
        }
        "remove" => {
            flag()?;
            let peer = split_after_allowed_ips(delta);
            peer.remove = true;
        }
        "preshared_key" => {
            peer.preshared_key = Some(PresharedKey::from_hex(value).map_err(|_| invalid())?)
        }
        "endpoint" => {
            let endpoint = value.parse::<Endpoint>().map_err(|_| invalid())?;
            // wireguard-go's netip.ParseAddrPort wants plain digits (getaddrinfo, which the
            // endpoint parser follows, also takes ` 1`, `+1` and `-0`).
            let digits = value
                .rsplit_once(':')
                .is_some_and(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()));
            // A control character (a NUL in an IPv6 scope) would be echoed in `get` replies,
            // which clients then refuse as malformed (found by fuzz/uapi_request).
            let control = value.bytes().any(|b| b.is_ascii_control());
            if !endpoint.is_ip_literal() || !digits || control {
                return Err(invalid());
            }
            peer.endpoint = Some(endpoint);
        }
        "persistent_keepalive_interval" => peer.persistent_keepalive = Some(uint(0xffff)? as u16),
        "replace_allowed_ips" => {
            flag()?;
            let peer = split_after_allowed_ips(delta);
            peer.replace_allowed_ips = true;
        }
        "allowed_ip" => {
            let (remove, prefix) = match value.strip_prefix('-') {
                Some(rest) => (true, rest),
                None => (false, value),
            };
            if !prefix.contains('/') || prefix.starts_with('+') {
                return Err(invalid());
            }
            let ip = prefix.parse::<AllowedIp>().map_err(|_| invalid())?;
            peer.allowed_ips.push(AllowedIp { remove, ..ip });
        }
        "protocol_version" => {
            if value != "1" {
                return Err(invalid());
            }
        }
        _ => return Err(RequestError::PeerKey(key.to_owned())),
    }
    Ok(())
}

/// Returns the entry that a `remove` or `replace_allowed_ips` line applies to: the current
/// one, or (if it already added or removed allowed IPs and is not a removal) a fresh entry for
/// the same key, so the flag does not act before those lines.
fn split_after_allowed_ips(delta: &mut Device) -> &mut Peer {
    // Callers hold a peer section, so there is a last entry.
    let current = delta.peers.last().expect("in a peer section");
    if !current.allowed_ips.is_empty() && !current.remove {
        let next = Peer {
            update_only: current.update_only,
            ..Peer::new(current.public_key)
        };
        delta.peers.push(next);
    }
    delta.peers.last_mut().expect("in a peer section")
}

/// Encodes a device state as wireguard-go answers `get`, ending with `errno=0` and the blank
/// line.
///
/// Device: `private_key` if set and non-zero, `listen_port` and `fwmark` if non-zero. Per peer:
/// `public_key`, `preshared_key` (zeros if none), `protocol_version=1`, `endpoint` if known,
/// `last_handshake_time_sec`, `last_handshake_time_nsec`, `tx_bytes`, `rx_bytes`,
/// `persistent_keepalive_interval`, then one `allowed_ip` per prefix.
pub fn encode_get(device: &Device) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail, so the fmt::Results below are ignored.
    if let Some(key) = device.private_key.as_ref().filter(|k| !k.is_zero()) {
        let _ = writeln!(out, "private_key={}", key.to_hex());
    }
    if let Some(port) = device.listen_port.filter(|&p| p != 0) {
        let _ = writeln!(out, "listen_port={port}");
    }
    if let Some(mark) = device.fwmark.filter(|&m| m != 0) {
        let _ = writeln!(out, "fwmark={mark}");
    }
    for peer in &device.peers {
        let _ = writeln!(out, "public_key={}", peer.public_key.to_hex());
        let psk = peer
            .preshared_key
            .as_ref()
            .map_or_else(|| "0".repeat(64), Key::to_hex);
        let _ = writeln!(out, "preshared_key={psk}\nprotocol_version=1");
        if let Some(endpoint) = &peer.endpoint {
            let _ = writeln!(out, "endpoint={endpoint}");
        }
        let handshake = peer.last_handshake.unwrap_or_default();
        let _ = writeln!(out, "last_handshake_time_sec={}", handshake.as_secs());
        let _ = writeln!(out, "last_handshake_time_nsec={}", handshake.subsec_nanos());
        let _ = writeln!(
            out,
            "tx_bytes={}\nrx_bytes={}",
            peer.tx_bytes, peer.rx_bytes
        );
        let interval = peer.persistent_keepalive.unwrap_or(0);
        let _ = writeln!(out, "persistent_keepalive_interval={interval}");
        for ip in &peer.allowed_ips {
            let _ = writeln!(out, "allowed_ip={}/{}", ip.addr, ip.cidr);
        }
    }
    out.push_str("errno=0\n\n");
    out
}

/// The status block that ends a reply: `errno=0\n\n` for `0`, else `errno=-N\n\n` for the
/// positive errno `N`, as wireguard-go writes it.
pub fn encode_errno(errno: i32) -> String {
    format!("errno={}\n\n", errno.wrapping_neg())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::arb_state;
    use proptest::prelude::*;

    const P1: &str = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";
    const P2: &str = "TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=";
    const P3: &str = "gN65BkIKy1eCE9pP1wdc8ROUtkHLF2PfAqYdyYBz6EA=";
    const PRIVATE: &str = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=";

    fn hex(b64: &str) -> String {
        b64.parse::<PublicKey>().unwrap().to_hex()
    }

    /// The request of compat.md §7.3, byte for byte.
    #[test]
    fn test_encode_set_reference_example() {
        let delta = Device {
            private_key: Some(PRIVATE.parse().unwrap()),
            listen_port: Some(1234),
            fwmark: Some(0x10),
            replace_peers: false,
            peers: vec![
                Peer {
                    preshared_key: Some(P3.parse().unwrap()),
                    endpoint: Some("[::1]:5".parse().unwrap()),
                    persistent_keepalive: Some(0),
                    replace_allowed_ips: true,
                    allowed_ips: vec!["10.0.0.0/8".parse().unwrap(), "fd00::/64".parse().unwrap()],
                    ..Peer::new(P1.parse().unwrap())
                },
                Peer {
                    remove: true,
                    ..Peer::new(P2.parse().unwrap())
                },
                Peer {
                    replace_allowed_ips: true,
                    ..Peer::new(P3.parse().unwrap())
                },
            ],
        };
        let expected = format!(
            "set=1\nprivate_key={}\nlisten_port=1234\nfwmark=16\npublic_key={}\npreshared_key={}\n\
             endpoint=[::1]:5\npersistent_keepalive_interval=0\nreplace_allowed_ips=true\n\
             allowed_ip=10.0.0.0/8\nallowed_ip=fd00::/64\npublic_key={}\nremove=true\n\
             public_key={}\nreplace_allowed_ips=true\n\n",
            hex(PRIVATE),
            hex(P1),
            hex(P3),
            hex(P2),
            hex(P3)
        );
        assert_eq!(encode_set(&delta), expected);
    }

    #[test]
    fn test_encode_set_setconf_and_removal_items() {
        let delta = crate::config::for_setconf(Device {
            peers: vec![Peer {
                replace_allowed_ips: false,
                allowed_ips: vec![
                    "-10.0.0.0/8".parse().unwrap(),
                    "1.2.3.4/32".parse().unwrap(),
                ],
                ..Peer::new(P1.parse().unwrap())
            }],
            ..Device::default()
        });
        assert_eq!(
            encode_set(&delta),
            format!(
                "set=1\nprivate_key={}\nlisten_port=0\nfwmark=0\nreplace_peers=true\npublic_key={}\n\
                 allowed_ip=-10.0.0.0/8\nallowed_ip=1.2.3.4/32\n\n",
                "0".repeat(64),
                hex(P1)
            )
        );
    }

    #[test]
    fn test_decode_get() {
        let reply = format!(
            "private_key={}\nlisten_port=10001\nfwmark=4660\npublic_key={}\npreshared_key={}\n\
             protocol_version=1\nendpoint=127.0.0.1:10002\nlast_handshake_time_sec=1700000000\n\
             last_handshake_time_nsec=5\ntx_bytes=148\nrx_bytes=92\npersistent_keepalive_interval=25\n\
             allowed_ip=10.9.0.2/32\nallowed_ip=fd00::2/128\nlisten_port=9\nunknown_key=x\n\
             public_key={}\npreshared_key={}\nlast_handshake_time_sec=0\nlast_handshake_time_nsec=7\n\
             errno=0\n\ntrailing garbage",
            hex(PRIVATE),
            hex(P1),
            hex(P3),
            hex(P2),
            "0".repeat(64)
        );
        let device = decode_get(&reply).unwrap();
        assert_eq!(device.private_key, Some(PRIVATE.parse().unwrap()));
        assert_eq!(
            device.public_key(),
            Some(
                "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw="
                    .parse()
                    .unwrap()
            )
        );
        assert_eq!(
            device.listen_port,
            Some(10001),
            "device keys after public_key are ignored"
        );
        assert_eq!(device.fwmark, Some(0x1234));
        let first = &device.peers[0];
        assert_eq!(first.preshared_key, Some(P3.parse().unwrap()));
        assert_eq!(first.endpoint, Some("127.0.0.1:10002".parse().unwrap()));
        assert_eq!(first.last_handshake, Some(Duration::new(1_700_000_000, 5)));
        assert_eq!((first.rx_bytes, first.tx_bytes), (92, 148));
        assert_eq!(first.persistent_keepalive, Some(25));
        assert_eq!(first.allowed_ips.len(), 2);
        let second = &device.peers[1];
        assert_eq!(
            (second.preshared_key.clone(), second.last_handshake),
            (None, None)
        );
    }

    #[test]
    fn test_decode_get_errors() {
        let pk = format!("public_key={}\n", hex(P1));
        for (reply, expected) in [
            ("errno=0\n\n".to_owned(), Ok(Device::default())),
            ("errno=22\n\n".to_owned(), Err(ReplyError::Errno(22))),
            ("errno=-22\n\n".to_owned(), Err(ReplyError::Protocol)),
            ("\n".to_owned(), Err(ReplyError::Protocol)),
            ("listen_port=1\n\n".to_owned(), Err(ReplyError::Protocol)),
            ("errno=0\n".to_owned(), Err(ReplyError::Protocol)),
            (
                "errno=0\n\n".to_owned().replace("\n\n", "\n"),
                Err(ReplyError::Protocol),
            ),
            ("errno=0".to_owned(), Err(ReplyError::Protocol)),
            (
                "listen_port=abc\nerrno=0\n\n".to_owned(),
                Err(ReplyError::Protocol),
            ),
            (
                "listen_port=65536\nerrno=0\n\n".to_owned(),
                Err(ReplyError::Protocol),
            ),
            (
                "fwmark=4294967296\nerrno=0\n\n".to_owned(),
                Err(ReplyError::Protocol),
            ),
            (
                "public_key=zz\nerrno=0\n\n".to_owned(),
                Err(ReplyError::Protocol),
            ),
            ("garbage\nerrno=0\n\n".to_owned(), Err(ReplyError::Protocol)),
            (
                format!("{pk}allowed_ip=10.0.0.0\nerrno=0\n\n"),
                Err(ReplyError::Protocol),
            ),
            (
                format!("{pk}allowed_ip=10.0.0.0/+8\nerrno=0\n\n"),
                Err(ReplyError::Protocol),
            ),
            (
                format!("{pk}allowed_ip=-10.0.0.0/8\nerrno=0\n\n"),
                Err(ReplyError::Protocol),
            ),
            (
                format!("{pk}allowed_ip=10.0.0.0/33\nerrno=0\n\n"),
                Err(ReplyError::Protocol),
            ),
            (
                format!("{pk}persistent_keepalive_interval=65536\nerrno=0\n\n"),
                Err(ReplyError::Protocol),
            ),
            (
                format!("{pk}endpoint=1.2.3.4\nerrno=0\n\n"),
                Err(ReplyError::Protocol),
            ),
            (
                format!("{pk}rx_bytes=-1\nerrno=0\n\n"),
                Err(ReplyError::Protocol),
            ),
        ] {
            assert_eq!(decode_get(&reply), expected, "{reply:?}");
        }
        assert_eq!(ReplyError::Protocol.errno(), EPROTO);
        assert_eq!(ReplyError::Protocol.to_string(), "Protocol error");
    }

    #[test]
    fn test_decode_set_reply() {
        assert_eq!(decode_set_reply("errno=0\n\n"), Ok(()));
        assert_eq!(
            decode_set_reply("errno=-98\n\n"),
            Err(ReplyError::Errno(98))
        );
        assert_eq!(
            decode_set_reply("errno=22\n\n"),
            Err(ReplyError::Errno(-22))
        );
        assert_eq!(
            decode_set_reply("foo=bar\nerrno=-22\n\n"),
            Err(ReplyError::Errno(22))
        );
        assert_eq!(decode_set_reply(""), Err(ReplyError::Protocol));
        assert_eq!(decode_set_reply("\nerrno=0\n"), Err(ReplyError::Protocol));
        assert_eq!(decode_set_reply("errno=x\n\n"), Err(ReplyError::Protocol));
        assert_eq!(
            decode_set_reply("errno=99999999999\n\n"),
            Err(ReplyError::Protocol)
        );
        // As the reference (tests/bad_input.rs checks these against it): the blank line is
        // required, every line needs `=`, the last errno wins, no `+`, no NUL.
        for bad in [
            "errno=0",
            "errno=0\n",
            "errno=-98\n",
            "x\nerrno=0\n\n",
            "errno=0\nfoo\n\n",
            "errno=0\nerrno=x\n\n",
            "errno=+5\n\n",
            "errno=0\0\n\n",
            "errno= 1\n\n",
            "\n",
        ] {
            assert_eq!(decode_set_reply(bad), Err(ReplyError::Protocol), "{bad:?}");
        }
        assert_eq!(decode_set_reply("errno=5\nerrno=0\n\n"), Ok(()));
        assert_eq!(decode_set_reply("=\nerrno=-0\n\n"), Ok(()));
        assert_eq!(
            decode_set_reply("errno=-2147483648\n\n"),
            Err(ReplyError::Errno(i32::MIN))
        );
    }

    #[test]
    fn test_server_refuses_control_characters_in_endpoints() {
        // Regression (fuzz/uapi_request): the scope was accepted, echoed by `get`, and the
        // reply was then refused by every client.
        let key = "5a".repeat(32);
        let line = "endpoint=[fe80::1%\0\0\0f1]:51820";
        assert_eq!(
            set(&format!("public_key={key}\n{line}\n")),
            Err(RequestError::Value(line.to_owned()))
        );
        assert!(set(&format!(
            "public_key={key}\nendpoint=[fe80::1%eth0]:51820\n"
        ))
        .is_ok());
    }

    #[test]
    fn test_get_reply_nul_is_protocol_error() {
        // An unknown key is ignored, but not with a NUL in it (the reference's C strings).
        assert_eq!(
            decode_get("listen\0_port=1\nerrno=0\n\n"),
            Err(ReplyError::Protocol)
        );
        assert!(decode_get("listen_xport=1\nerrno=0\n\n").is_ok());
    }

    fn feed(text: &str) -> Vec<Result<Option<Request>, RequestError>> {
        let mut parser = RequestParser::new();
        text.split('\n').map(|line| parser.line(line)).collect()
    }

    fn set(body: &str) -> Result<Device, RequestError> {
        let mut parser = RequestParser::new();
        parser.line("set=1")?;
        for line in body.lines() {
            parser.line(line)?;
        }
        match parser.line("")? {
            Some(Request::Set(delta)) => Ok(delta),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn test_server_get_and_operations() {
        let results = feed("get=1\n\nget=1\n");
        assert_eq!(results[1], Ok(Some(Request::Get)));
        assert_eq!(results[3], Ok(Some(Request::Get)));
        let mut parser = RequestParser::new();
        parser.line("get=1").unwrap();
        let err = parser.line("x").unwrap_err();
        assert_eq!(err.errno(), Some(EINVAL));
        let err = RequestParser::new().line("bogus=1").unwrap_err();
        assert_eq!(err.errno(), None);
        assert_eq!(encode_errno(EINVAL), "errno=-22\n\n");
        assert_eq!(encode_errno(0), "errno=0\n\n");
    }

    #[test]
    fn test_server_set_strictness() {
        let pk = format!("public_key={}\n", hex(P1));
        let einval = |body: &str| {
            let err = set(body).unwrap_err();
            assert_eq!(err.errno(), Some(EINVAL), "{body:?}: {err}");
        };
        assert_eq!(set("listen_port").unwrap_err().errno(), Some(EPROTO));
        einval("bogus=1");
        einval("protocol_version=1");
        einval(&format!("{pk}listen_port=1"));
        einval(&format!("{pk}bogus=1"));
        einval("private_key=zz");
        einval(&format!("private_key={}", "0".repeat(63)));
        einval("listen_port=65536");
        einval("listen_port=+1");
        einval("listen_port=");
        einval("fwmark=-1");
        einval("replace_peers=false");
        einval(&format!("{pk}remove=1"));
        einval(&format!("{pk}update_only=True"));
        einval(&format!("{pk}replace_allowed_ips=yes"));
        einval(&format!("{pk}protocol_version=2"));
        einval(&format!("{pk}endpoint=localhost:5"));
        einval(&format!("{pk}endpoint=1.2.3.4"));
        einval(&format!("{pk}allowed_ip=10.0.0.0"));
        einval(&format!("{pk}allowed_ip=+10.0.0.0/8"));
        einval(&format!("{pk}allowed_ip=10.0.0.0/33"));
        einval(&format!("{pk}persistent_keepalive_interval=65536"));
        einval("public_key=AAAA");

        let delta = set(&format!(
            "private_key={}\nreplace_peers=true\n{pk}protocol_version=1\nendpoint=[fe80::1%lo]:5\n\
             allowed_ip=-10.0.0.0/8\nallowed_ip=fd00::/64\n",
            "0".repeat(64)
        ))
        .unwrap();
        assert!(delta.private_key.as_ref().is_some_and(Key::is_zero));
        assert!(delta.replace_peers);
        assert_eq!(
            delta.peers[0].endpoint,
            Some("[fe80::1%lo]:5".parse().unwrap())
        );
        assert!(delta.peers[0].allowed_ips[0].remove);
    }

    #[test]
    fn test_server_set_line_order() {
        let pk = format!("public_key={}\n", hex(P1));
        // A late replace_allowed_ips starts a new entry, so the first add still takes effect
        // (moving the prefix away from its owner) before the clear.
        let delta = set(&format!(
            "{pk}allowed_ip=10.0.0.0/8\nreplace_allowed_ips=true\nallowed_ip=10.1.0.0/16\n"
        ))
        .unwrap();
        assert_eq!(delta.peers.len(), 2);
        assert!(!delta.peers[0].replace_allowed_ips && delta.peers[1].replace_allowed_ips);
        assert_eq!(
            delta.peers[1].allowed_ips,
            vec!["10.1.0.0/16".parse().unwrap()]
        );

        let owner = Peer {
            allowed_ips: vec!["10.0.0.0/8".parse().unwrap()],
            ..Peer::new(P2.parse().unwrap())
        };
        let mut state = Device {
            peers: vec![owner],
            ..Device::default()
        };
        crate::apply(&mut state, &delta);
        assert!(
            state.peers[0].allowed_ips.is_empty(),
            "moved, as wireguard-go does line by line"
        );
        assert_eq!(
            state.peers[1].allowed_ips,
            vec!["10.1.0.0/16".parse().unwrap()]
        );

        // A late remove after allowed IPs: the add happened, then the removal.
        let delta = set(&format!(
            "{pk}allowed_ip=10.0.0.0/8\nremove=true\nallowed_ip=10.2.0.0/16\n"
        ))
        .unwrap();
        assert_eq!(delta.peers.len(), 2);
        assert!(delta.peers[1].remove);
        // A remove up front needs no split.
        let delta = set(&format!(
            "{pk}remove=true\nallowed_ip=10.0.0.0/8\nreplace_allowed_ips=true\n"
        ))
        .unwrap();
        assert_eq!(delta.peers.len(), 1);
    }

    #[test]
    fn test_abort_keeps_partial_set() {
        let mut parser = RequestParser::new();
        parser.line("set=1").unwrap();
        parser.line("listen_port=5").unwrap();
        assert!(parser.line("fwmark=x").is_err());
        let partial = parser.abort().unwrap();
        assert_eq!(partial.listen_port, Some(5));
        assert_eq!(parser.line("get=1"), Ok(None));
    }

    #[test]
    fn test_encode_get_reference_order() {
        let device = Device {
            private_key: Some(PRIVATE.parse().unwrap()),
            listen_port: Some(10001),
            fwmark: None,
            replace_peers: false,
            peers: vec![Peer {
                endpoint: Some("[::1]:10003".parse().unwrap()),
                allowed_ips: vec!["10.9.0.3/32".parse().unwrap()],
                tx_bytes: 148,
                ..Peer::new(P1.parse().unwrap())
            }],
        };
        assert_eq!(
            encode_get(&device),
            format!(
                "private_key={}\nlisten_port=10001\npublic_key={}\npreshared_key={}\nprotocol_version=1\n\
                 endpoint=[::1]:10003\nlast_handshake_time_sec=0\nlast_handshake_time_nsec=0\n\
                 tx_bytes=148\nrx_bytes=0\npersistent_keepalive_interval=0\nallowed_ip=10.9.0.3/32\n\
                 errno=0\n\n",
                hex(PRIVATE),
                hex(P1),
                "0".repeat(64)
            )
        );
        assert_eq!(encode_get(&Device::default()), "errno=0\n\n");
        let zero = Device {
            private_key: Some(crate::model::zero_key()),
            ..Device::default()
        };
        assert_eq!(
            encode_get(&zero),
            "errno=0\n\n",
            "a server omits a missing key"
        );
    }

    /// A random delta as `wg` (or another client) may send it: flags, removals, zero values,
    /// `-` items, repeated keys, IP-literal endpoints only.
    fn arb_delta() -> impl Strategy<Value = Device> {
        (
            arb_state(),
            proptest::collection::vec(any::<[bool; 6]>(), 40),
            any::<[bool; 4]>(),
        )
            .prop_map(|(mut delta, flags, device_flags)| {
                delta.replace_peers = device_flags[0];
                if device_flags[1] {
                    delta.private_key = Some(crate::model::zero_key());
                }
                if device_flags[2] {
                    delta.listen_port = Some(0);
                }
                for (peer, flags) in delta.peers.iter_mut().zip(flags) {
                    peer.last_handshake = None;
                    peer.rx_bytes = 0;
                    peer.tx_bytes = 0;
                    if !peer.endpoint.as_ref().is_some_and(Endpoint::is_ip_literal) {
                        peer.endpoint = None;
                    }
                    peer.update_only = flags[0];
                    peer.replace_allowed_ips = flags[1];
                    if flags[2] {
                        peer.persistent_keepalive = Some(0);
                    }
                    if flags[3] {
                        peer.preshared_key = Some(crate::model::zero_key());
                    }
                    if flags[4] {
                        if let Some(ip) = peer.allowed_ips.first_mut() {
                            ip.remove = true;
                        }
                    }
                    if flags[5] {
                        *peer = Peer {
                            remove: true,
                            update_only: peer.update_only,
                            ..Peer::new(peer.public_key)
                        };
                    }
                }
                if device_flags[3] {
                    // The same key twice: two entries, kept apart.
                    if let Some(first) = delta.peers.first().cloned() {
                        delta.peers.push(first);
                    }
                }
                delta
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { rng_seed: proptest::test_runner::RngSeed::Fixed(0x5eed), cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn prop_encode_get_then_decode_is_identity(state in arb_state()) {
            prop_assert_eq!(decode_get(&encode_get(&state)), Ok(state));
        }

        #[test]
        fn prop_encode_set_then_server_parse_is_identity(delta in arb_delta()) {
            let text = encode_set(&delta);
            let mut parser = RequestParser::new();
            let mut requests = Vec::new();
            for line in text.strip_suffix('\n').unwrap_or(&text).split('\n') {
                if let Some(request) = parser.line(line).unwrap() {
                    requests.push(request);
                }
            }
            prop_assert_eq!(requests, vec![Request::Set(delta)]);
        }
    }
}
