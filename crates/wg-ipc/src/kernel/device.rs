//! The WireGuard generic netlink messages, without I/O (wireguard-tools `src/ipc-linux.h`,
//! kernel `include/uapi/linux/wireguard.h`): the `WG_CMD_GET_DEVICE` request and the parser of
//! its multipart dump, and the `WG_CMD_SET_DEVICE` requests a delta is split into.
//!
//! Both ends map to and from the one [`Device`] model. A state read from the kernel uses the
//! model's normal form as the UAPI client does: an all-zero preshared key, zero listen port,
//! fwmark and keepalive, and a handshake at second 0 read as `None`; the private key is present
//! exactly when the kernel sends one.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::time::Duration;

use wg_config::{AllowedIp, Device, Endpoint, Key, Peer, PresharedKey, PrivateKey, PublicKey};

use super::nla::{Attr, Attrs, Message};

/// The generic netlink family version.
pub(crate) const WG_GENL_VERSION: u8 = 1;

/// `WG_CMD_GET_DEVICE`.
pub(crate) const WG_CMD_GET_DEVICE: u8 = 0;
/// `WG_CMD_SET_DEVICE`.
pub(crate) const WG_CMD_SET_DEVICE: u8 = 1;

const WGDEVICE_A_IFNAME: u16 = 2;
const WGDEVICE_A_PRIVATE_KEY: u16 = 3;
const WGDEVICE_A_FLAGS: u16 = 5;
const WGDEVICE_A_LISTEN_PORT: u16 = 6;
const WGDEVICE_A_FWMARK: u16 = 7;
const WGDEVICE_A_PEERS: u16 = 8;

const WGPEER_A_PUBLIC_KEY: u16 = 1;
const WGPEER_A_PRESHARED_KEY: u16 = 2;
const WGPEER_A_FLAGS: u16 = 3;
const WGPEER_A_ENDPOINT: u16 = 4;
const WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL: u16 = 5;
const WGPEER_A_LAST_HANDSHAKE_TIME: u16 = 6;
const WGPEER_A_RX_BYTES: u16 = 7;
const WGPEER_A_TX_BYTES: u16 = 8;
const WGPEER_A_ALLOWEDIPS: u16 = 9;

const WGALLOWEDIP_A_FAMILY: u16 = 1;
const WGALLOWEDIP_A_IPADDR: u16 = 2;
const WGALLOWEDIP_A_CIDR_MASK: u16 = 3;
/// Linux 6.16 and later; older kernels reject the request with `EINVAL`.
const WGALLOWEDIP_A_FLAGS: u16 = 4;

const WGDEVICE_F_REPLACE_PEERS: u32 = 1;
const WGPEER_F_REMOVE_ME: u32 = 1;
const WGPEER_F_REPLACE_ALLOWEDIPS: u32 = 2;
const WGPEER_F_UPDATE_ONLY: u32 = 4;
const WGALLOWEDIP_F_REMOVE_ME: u32 = 1;

const AF_INET: u16 = libc::AF_INET as u16;
const AF_INET6: u16 = libc::AF_INET6 as u16;
const SOCKADDR_IN_LEN: usize = 16;
const SOCKADDR_IN6_LEN: usize = 28;

const NLM_F_REQUEST: u16 = libc::NLM_F_REQUEST as u16;
const NLM_F_ACK: u16 = libc::NLM_F_ACK as u16;
const NLM_F_DUMP: u16 = libc::NLM_F_DUMP as u16;

/// The `WG_CMD_GET_DEVICE` dump request for `ifname` (which must be shorter than `IFNAMSIZ`
/// and hold no NUL; the caller checks).
pub(crate) fn get_request(family: u16, ifname: &[u8]) -> Vec<u8> {
    let flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_DUMP;
    let mut message = Message::new(
        family,
        flags,
        WG_CMD_GET_DEVICE,
        WG_GENL_VERSION,
        usize::MAX,
    );
    message.put_strz(WGDEVICE_A_IFNAME, ifname);
    message.into_bytes()
}

/// Reads the messages of a `WG_CMD_GET_DEVICE` dump into a [`Device`], as the reference does:
/// every message's attributes apply to the one device, each nested peer is appended, and at
/// the end adjacent entries with the same public key are merged (a peer whose allowed IPs
/// did not fit continues in the next message with only its key and the rest of its list).
#[derive(Debug, Default)]
pub(crate) struct DumpParser {
    device: Device,
}

/// A dump that the reference refuses: `EINVAL`, as `wg` reports a parse callback failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BadDump;

impl DumpParser {
    pub(crate) fn new() -> DumpParser {
        DumpParser::default()
    }

    /// Feeds the attributes of one dump message (the bytes after the generic netlink header).
    pub(crate) fn message(&mut self, attrs: &[u8]) -> Result<(), BadDump> {
        for attr in Attrs::new(attrs) {
            match attr.kind {
                WGDEVICE_A_PRIVATE_KEY => {
                    if let Some(key) = attr.key() {
                        self.device.private_key = Some(PrivateKey::from_bytes(key));
                    }
                }
                WGDEVICE_A_LISTEN_PORT => {
                    if let Some(port) = attr.u16() {
                        self.device.listen_port = (port != 0).then_some(port);
                    }
                }
                WGDEVICE_A_FWMARK => {
                    if let Some(mark) = attr.u32() {
                        self.device.fwmark = (mark != 0).then_some(mark);
                    }
                }
                WGDEVICE_A_PEERS => {
                    for entry in attr.nested() {
                        self.device.peers.push(parse_peer(entry)?);
                    }
                }
                // IFINDEX, IFNAME and PUBLIC_KEY (derived from the private key) are not part of
                // the model; unknown attributes are ignored.
                _ => {}
            }
        }
        Ok(())
    }

    /// The device, with continued peers merged.
    pub(crate) fn finish(self) -> Device {
        let mut device = self.device;
        let mut merged: Vec<Peer> = Vec::with_capacity(device.peers.len());
        for peer in device.peers.drain(..) {
            match merged.last_mut() {
                Some(last) if last.public_key == peer.public_key => {
                    last.allowed_ips.extend(peer.allowed_ips);
                }
                _ => merged.push(peer),
            }
        }
        device.peers = merged;
        device
    }
}

/// One nested peer of a dump. A peer without a public key fails the dump. An allowed IP with
/// an unknown family or an over-long prefix ends the reading of that peer, as in the reference
/// (whose callback error stops the peer's attribute walk but not the dump); the entry itself
/// is dropped, since the model cannot hold it.
fn parse_peer(entry: Attr<'_>) -> Result<Peer, BadDump> {
    let mut public_key = None;
    let mut peer = Peer::new(PublicKey::from_bytes([0; 32]));
    'attrs: for attr in entry.nested() {
        match attr.kind {
            WGPEER_A_PUBLIC_KEY => {
                if let Some(key) = attr.key() {
                    public_key = Some(PublicKey::from_bytes(key));
                }
            }
            WGPEER_A_PRESHARED_KEY => {
                if let Some(key) = attr.key() {
                    let psk = PresharedKey::from_bytes(key);
                    peer.preshared_key = (!psk.is_zero()).then_some(psk);
                }
            }
            WGPEER_A_ENDPOINT => {
                if let Some(addr) = parse_sockaddr(attr.payload) {
                    peer.endpoint = Some(Endpoint::Addr(addr));
                }
            }
            WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL => {
                if let Some(interval) = attr.u16() {
                    peer.persistent_keepalive = (interval != 0).then_some(interval);
                }
            }
            WGPEER_A_LAST_HANDSHAKE_TIME => {
                if let Some(time) = parse_timespec(attr.payload) {
                    peer.last_handshake = time;
                }
            }
            WGPEER_A_RX_BYTES => {
                if let Some(bytes) = attr.u64() {
                    peer.rx_bytes = bytes;
                }
            }
            WGPEER_A_TX_BYTES => {
                if let Some(bytes) = attr.u64() {
                    peer.tx_bytes = bytes;
                }
            }
            WGPEER_A_ALLOWEDIPS => {
                for item in attr.nested() {
                    match parse_allowed_ip(item) {
                        Some(ip) => peer.allowed_ips.push(ip),
                        None => break 'attrs,
                    }
                }
            }
            _ => {}
        }
    }
    let public_key = public_key.ok_or(BadDump)?;
    peer.public_key = public_key;
    Ok(peer)
}

/// A `struct __kernel_timespec` of exactly 16 bytes: `Some(None)` for second 0 ("never").
fn parse_timespec(payload: &[u8]) -> Option<Option<Duration>> {
    let secs = i64::from_ne_bytes(payload.get(..8)?.try_into().ok()?);
    let nanos = i64::from_ne_bytes(payload.get(8..)?.try_into().ok()?);
    Some((secs != 0).then(|| {
        Duration::from_secs(secs.unsigned_abs())
            .saturating_add(Duration::from_nanos(nanos.unsigned_abs()))
    }))
}

/// One allowed IP of a dump, or `None` for an invalid one. As in the reference, the address
/// payload (4 or 16 bytes) fills a zeroed union that the family then reads.
fn parse_allowed_ip(item: Attr<'_>) -> Option<AllowedIp> {
    let mut family = 0;
    let mut addr = [0u8; 16];
    let mut cidr = 0;
    for attr in item.nested() {
        match attr.kind {
            WGALLOWEDIP_A_FAMILY => family = attr.u16().unwrap_or(family),
            WGALLOWEDIP_A_IPADDR => {
                if matches!(attr.payload.len(), 4 | 16) {
                    addr[..attr.payload.len()].copy_from_slice(attr.payload);
                }
            }
            WGALLOWEDIP_A_CIDR_MASK => cidr = attr.u8().unwrap_or(cidr),
            _ => {}
        }
    }
    let ip = match family {
        AF_INET => IpAddr::V4(Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3])),
        AF_INET6 => IpAddr::V6(Ipv6Addr::from(addr)),
        _ => return None,
    };
    AllowedIp::new(ip, cidr)
}

/// A `sockaddr_in` or `sockaddr_in6` of exactly its size, else `None` (the reference leaves
/// the endpoint unset).
fn parse_sockaddr(payload: &[u8]) -> Option<SocketAddr> {
    let family = u16::from_ne_bytes(payload.get(..2)?.try_into().ok()?);
    let port = u16::from_be_bytes(payload.get(2..4)?.try_into().ok()?);
    match (family, payload.len()) {
        (AF_INET, SOCKADDR_IN_LEN) => {
            let ip = Ipv4Addr::new(payload[4], payload[5], payload[6], payload[7]);
            Some(SocketAddr::V4(SocketAddrV4::new(ip, port)))
        }
        (AF_INET6, SOCKADDR_IN6_LEN) => {
            let flowinfo = u32::from_be_bytes(payload[4..8].try_into().ok()?);
            let ip: [u8; 16] = payload[8..24].try_into().ok()?;
            let scope_id = u32::from_ne_bytes(payload[24..28].try_into().ok()?);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip.into(),
                port,
                flowinfo,
                scope_id,
            )))
        }
        _ => None,
    }
}

/// The `sockaddr_in` / `sockaddr_in6` bytes of an address.
pub(crate) fn sockaddr_bytes(addr: &SocketAddr) -> Vec<u8> {
    let mut out = Vec::with_capacity(SOCKADDR_IN6_LEN);
    match addr {
        SocketAddr::V4(v4) => {
            out.extend_from_slice(&AF_INET.to_ne_bytes());
            out.extend_from_slice(&v4.port().to_be_bytes());
            out.extend_from_slice(&v4.ip().octets());
            out.resize(SOCKADDR_IN_LEN, 0);
        }
        SocketAddr::V6(v6) => {
            out.extend_from_slice(&AF_INET6.to_ne_bytes());
            out.extend_from_slice(&v6.port().to_be_bytes());
            out.extend_from_slice(&v6.flowinfo().to_be_bytes());
            out.extend_from_slice(&v6.ip().octets());
            out.extend_from_slice(&v6.scope_id().to_ne_bytes());
        }
    }
    out
}

/// A delta that cannot be put into a set request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SetError {
    /// A peer endpoint was not resolved to an address (`EINVAL`).
    UnresolvedEndpoint,
    /// A single peer does not fit in an empty message of the budget (`EMSGSIZE`); the reference
    /// would loop forever here, which no real budget (a page) can reach.
    TooBig,
}

impl SetError {
    /// The errno reported for this failure.
    pub(crate) fn errno(&self) -> i32 {
        match self {
            SetError::UnresolvedEndpoint => libc::EINVAL,
            SetError::TooBig => libc::EMSGSIZE,
        }
    }
}

/// Splits the delta `device` for the interface `ifname` into `WG_CMD_SET_DEVICE` messages of
/// at most `budget` bytes each, exactly as the reference's `kernel_set_device` does (compat.md
/// §4.2), to be sent in order, each after the previous one is acknowledged:
///
/// * Every message starts with `IFNAME`. Only the first carries the device attributes
///   (`PRIVATE_KEY`, `LISTEN_PORT`, `FWMARK`, then `FLAGS` with `REPLACE_PEERS`), unchecked.
/// * Peers follow in one `PEERS` nest. Before each attribute the message is checked to still
///   fit; when a peer does not, the message is closed without it and the next one starts with
///   it. When an allowed IP does not fit, the peer is closed with what fitted and the next
///   message repeats it with its `PUBLIC_KEY`, its `REMOVE_ME` / `UPDATE_ONLY` flags, and the
///   rest of its allowed IPs, but without `REPLACE_ALLOWEDIPS`, the preshared key, the endpoint
///   or the keepalive, which belong to the first chunk only.
/// * Per peer: `PUBLIC_KEY`, then (first chunk) `PRESHARED_KEY`, `ENDPOINT`,
///   `PERSISTENT_KEEPALIVE_INTERVAL`, then `FLAGS` if any, then `ALLOWEDIPS`, each
///   `{FAMILY, IPADDR, CIDR_MASK}` plus `FLAGS` = `REMOVE_ME` for a `-` item only (Linux 6.16+;
///   an older kernel answers `EINVAL`, as it does to the reference).
///
/// The reference never sends `UPDATE_ONLY` (its parsers cannot produce it); the model can, and
/// it goes with every chunk of the peer, like `REMOVE_ME`. Endpoints must be resolved
/// ([`Endpoint::Addr`]).
pub(crate) fn set_messages(
    family: u16,
    ifname: &[u8],
    device: &Device,
    budget: usize,
) -> Result<Vec<Vec<u8>>, SetError> {
    let endpoints = device
        .peers
        .iter()
        .map(|peer| match &peer.endpoint {
            None => Ok(None),
            Some(Endpoint::Addr(addr)) => Ok(Some(sockaddr_bytes(addr))),
            Some(Endpoint::Host { .. }) => Err(SetError::UnresolvedEndpoint),
        })
        .collect::<Result<Vec<_>, _>>()?;

    let mut messages = Vec::new();
    // Where the next message resumes: the peer, and within it the allowed IP (`Some` only for
    // a continued peer), as the reference's `peer` and `allowedip` cursors.
    let mut next_peer: Option<usize> = None;
    let mut next_ip: Option<usize> = None;
    loop {
        let mut m = Message::new(
            family,
            NLM_F_REQUEST | NLM_F_ACK,
            WG_CMD_SET_DEVICE,
            WG_GENL_VERSION,
            budget,
        );
        m.put_strz(WGDEVICE_A_IFNAME, ifname);
        if next_peer.is_none() {
            put_device_attrs(&mut m, device);
        }
        if device.peers.is_empty() {
            messages.push(m.into_bytes());
            return Ok(messages);
        }
        let resumed_at = (next_peer, next_ip);
        let peers_nest = m.nest_start(WGDEVICE_A_PEERS);
        let mut index = next_peer.unwrap_or(0);
        let mut full = false;
        while index < device.peers.len() {
            let peer = &device.peers[index];
            match put_peer(&mut m, peer, endpoints[index].as_deref(), &mut next_ip) {
                PeerFit::Done => index += 1,
                PeerFit::Full => {
                    full = true;
                    break;
                }
            }
        }
        m.nest_end(peers_nest);
        messages.push(m.into_bytes());
        if !full {
            return Ok(messages);
        }
        next_peer = Some(index);
        if resumed_at == (next_peer, next_ip) {
            return Err(SetError::TooBig);
        }
    }
}

fn put_device_attrs(m: &mut Message, device: &Device) {
    if let Some(key) = &device.private_key {
        m.put(WGDEVICE_A_PRIVATE_KEY, key.as_bytes());
    }
    if let Some(port) = device.listen_port {
        m.put(WGDEVICE_A_LISTEN_PORT, &port.to_ne_bytes());
    }
    if let Some(mark) = device.fwmark {
        m.put(WGDEVICE_A_FWMARK, &mark.to_ne_bytes());
    }
    if device.replace_peers {
        m.put(WGDEVICE_A_FLAGS, &WGDEVICE_F_REPLACE_PEERS.to_ne_bytes());
    }
}

/// Whether a peer was written completely, or the message is full.
enum PeerFit {
    Done,
    Full,
}

/// Writes (the rest of) one peer. `next_ip` is the reference's `allowedip` cursor: `None` at
/// the start of a peer, else the allowed IP to continue from; on [`PeerFit::Full`] it says
/// where the next message resumes this peer.
fn put_peer(
    m: &mut Message,
    peer: &Peer,
    endpoint: Option<&[u8]>,
    next_ip: &mut Option<usize>,
) -> PeerFit {
    let Some(peer_nest) = m.nest_start_check(0) else {
        return PeerFit::Full;
    };
    // Everything up to the allowed IPs either fits or the whole peer moves to the next message.
    let fits = (|| {
        if !m.put_check(WGPEER_A_PUBLIC_KEY, peer.public_key.as_bytes()) {
            return false;
        }
        let mut flags = 0;
        if peer.remove {
            flags |= WGPEER_F_REMOVE_ME;
        }
        if peer.update_only {
            flags |= WGPEER_F_UPDATE_ONLY;
        }
        if next_ip.is_none() {
            if peer.replace_allowed_ips {
                flags |= WGPEER_F_REPLACE_ALLOWEDIPS;
            }
            if let Some(psk) = &peer.preshared_key {
                if !m.put_check(WGPEER_A_PRESHARED_KEY, psk.as_bytes()) {
                    return false;
                }
            }
            if let Some(endpoint) = endpoint {
                if !m.put_check(WGPEER_A_ENDPOINT, endpoint) {
                    return false;
                }
            }
            if let Some(interval) = peer.persistent_keepalive {
                if !m.put_check(
                    WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL,
                    &interval.to_ne_bytes(),
                ) {
                    return false;
                }
            }
        }
        flags == 0 || m.put_check(WGPEER_A_FLAGS, &flags.to_ne_bytes())
    })();
    if !fits {
        m.nest_cancel(peer_nest);
        return PeerFit::Full;
    }
    if !peer.allowed_ips.is_empty() {
        let mut i = next_ip.unwrap_or(0);
        *next_ip = Some(i);
        let Some(ips_nest) = m.nest_start_check(WGPEER_A_ALLOWEDIPS) else {
            m.nest_end(peer_nest);
            return PeerFit::Full;
        };
        while i < peer.allowed_ips.len() {
            *next_ip = Some(i);
            if !put_allowed_ip(m, &peer.allowed_ips[i]) {
                m.nest_end(ips_nest);
                m.nest_end(peer_nest);
                return PeerFit::Full;
            }
            i += 1;
        }
        *next_ip = None;
        m.nest_end(ips_nest);
    }
    m.nest_end(peer_nest);
    PeerFit::Done
}

/// Writes one allowed IP, or nothing if it does not fit.
fn put_allowed_ip(m: &mut Message, ip: &AllowedIp) -> bool {
    let Some(nest) = m.nest_start_check(0) else {
        return false;
    };
    let (family, addr) = match ip.addr {
        IpAddr::V4(v4) => (AF_INET, v4.octets().to_vec()),
        IpAddr::V6(v6) => (AF_INET6, v6.octets().to_vec()),
    };
    let fits = m.put_check(WGALLOWEDIP_A_FAMILY, &family.to_ne_bytes())
        && m.put_check(WGALLOWEDIP_A_IPADDR, &addr)
        && m.put_check(WGALLOWEDIP_A_CIDR_MASK, &[ip.cidr])
        && (!ip.remove || m.put_check(WGALLOWEDIP_A_FLAGS, &WGALLOWEDIP_F_REMOVE_ME.to_ne_bytes()));
    if fits {
        m.nest_end(nest);
    } else {
        m.nest_cancel(nest);
    }
    fits
}

#[cfg(test)]
#[path = "device_tests.rs"]
mod tests;
