//! Tests of the WireGuard netlink messages without a kernel. `netlink-packet-wireguard` serves
//! as an independent codec: it decodes the set requests we split (to rebuild the delta and
//! check where each attribute went) and encodes the kernel-style dumps we parse.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::time::Duration;

use netlink_packet_core::{Emitable, ParseableParametrized};
use netlink_packet_generic::GenlHeader;
use netlink_packet_wireguard::{
    WireguardAddressFamily, WireguardAllowedIp, WireguardAllowedIpAttr, WireguardAllowedIpFlags,
    WireguardAttribute, WireguardDeviceFlags, WireguardMessage, WireguardPeer,
    WireguardPeerAttribute, WireguardPeerFlags, WireguardTimeSpec,
};
use wg_config::{AllowedIp, Device, Endpoint, Key, Peer, PresharedKey, PrivateKey, PublicKey};

use super::*;

const FAMILY: u16 = 0x1d;
const PAGE: usize = 4096;

/// A small deterministic generator (xorshift64*), so every case is reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn key<K: Key>(&mut self) -> K {
        let mut bytes = [0u8; 32];
        for chunk in bytes.chunks_mut(8) {
            chunk.copy_from_slice(&self.next().to_ne_bytes());
        }
        K::from_bytes(bytes)
    }
}

fn allowed_ip(rng: &mut Rng, remove: bool) -> AllowedIp {
    let addr = if rng.chance(50) {
        IpAddr::V4(Ipv4Addr::from(rng.next() as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(
            u128::from(rng.next()) << 64 | u128::from(rng.next()),
        ))
    };
    let max = if addr.is_ipv4() { 33 } else { 129 };
    AllowedIp {
        addr,
        cidr: rng.below(max) as u8,
        remove,
    }
}

fn endpoint(rng: &mut Rng) -> Endpoint {
    let port = rng.next() as u16;
    Endpoint::Addr(if rng.chance(50) {
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(rng.next() as u32), port))
    } else {
        SocketAddr::V6(SocketAddrV6::new(
            Ipv6Addr::from(u128::from(rng.next())),
            port,
            0,
            rng.below(3) as u32,
        ))
    })
}

/// A random delta with unique peer keys; `ips` bounds the allowed IPs per peer.
fn random_delta(rng: &mut Rng, peers: u64, ips: u64) -> Device {
    let mut device = Device {
        private_key: rng.chance(50).then(|| rng.key()),
        listen_port: rng.chance(50).then(|| rng.next() as u16),
        fwmark: rng.chance(50).then(|| rng.next() as u32),
        replace_peers: rng.chance(30),
        peers: Vec::new(),
    };
    for _ in 0..rng.below(peers + 1) {
        let count = if rng.chance(20) {
            rng.below(ips + 1)
        } else {
            rng.below(4)
        };
        let incremental = rng.chance(20);
        let peer = Peer {
            remove: rng.chance(10),
            update_only: rng.chance(10),
            replace_allowed_ips: rng.chance(50),
            preshared_key: rng.chance(40).then(|| rng.key()),
            endpoint: rng.chance(50).then(|| endpoint(rng)),
            persistent_keepalive: rng.chance(40).then(|| rng.next() as u16),
            allowed_ips: (0..count)
                .map(|_| {
                    let remove = incremental && rng.chance(50);
                    allowed_ip(rng, remove)
                })
                .collect(),
            ..Peer::new(rng.key())
        };
        device.peers.push(peer);
    }
    device
}

/// What one set message says, decoded with netlink-packet-wireguard.
struct Decoded {
    ifname: String,
    device_attrs: usize,
    device: Device,
    /// Per peer: whether it is a continuation-style chunk (no first-chunk attributes).
    peers: Vec<Peer>,
}

fn decode_set(bytes: &[u8]) -> Decoded {
    assert_eq!(
        u32::from_ne_bytes(bytes[..4].try_into().unwrap()) as usize,
        bytes.len()
    );
    assert_eq!(u16::from_ne_bytes([bytes[4], bytes[5]]), FAMILY);
    let flags = u16::from_ne_bytes([bytes[6], bytes[7]]);
    assert_eq!(flags, (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16);
    assert_eq!(&bytes[16..18], &[WG_CMD_SET_DEVICE, WG_GENL_VERSION]);
    let message = WireguardMessage::parse_with_param(
        &bytes[20..],
        GenlHeader {
            cmd: WG_CMD_SET_DEVICE,
            version: 1,
        },
    )
    .expect("the crate decodes our message");
    let mut decoded = Decoded {
        ifname: String::new(),
        device_attrs: 0,
        device: Device::default(),
        peers: Vec::new(),
    };
    for attr in message.attributes {
        match attr {
            WireguardAttribute::IfName(name) => decoded.ifname = name,
            WireguardAttribute::PrivateKey(k) => {
                decoded.device_attrs += 1;
                decoded.device.private_key = Some(PrivateKey::from_bytes(k));
            }
            WireguardAttribute::ListenPort(p) => {
                decoded.device_attrs += 1;
                decoded.device.listen_port = Some(p);
            }
            WireguardAttribute::Fwmark(m) => {
                decoded.device_attrs += 1;
                decoded.device.fwmark = Some(m);
            }
            WireguardAttribute::Flags(f) => {
                decoded.device_attrs += 1;
                assert_eq!(f, WireguardDeviceFlags::ReplacePeers);
                decoded.device.replace_peers = true;
            }
            WireguardAttribute::Peers(peers) => {
                decoded.peers = peers.iter().map(decode_peer).collect();
            }
            other => panic!("unexpected device attribute {other:?}"),
        }
    }
    decoded
}

fn decode_peer(peer: &WireguardPeer) -> Peer {
    let mut out = Peer::new(PublicKey::from_bytes([0; 32]));
    let mut kinds = Vec::new();
    for attr in &peer.0 {
        match attr {
            WireguardPeerAttribute::PublicKey(k) => {
                kinds.push(1);
                out.public_key = PublicKey::from_bytes(*k);
            }
            WireguardPeerAttribute::PresharedKey(k) => {
                kinds.push(2);
                out.preshared_key = Some(PresharedKey::from_bytes(*k));
            }
            WireguardPeerAttribute::Endpoint(e) => {
                kinds.push(4);
                out.endpoint = Some(Endpoint::Addr(*e));
            }
            WireguardPeerAttribute::PersistentKeepalive(k) => {
                kinds.push(5);
                out.persistent_keepalive = Some(*k);
            }
            WireguardPeerAttribute::Flags(f) => {
                kinds.push(6); // after the first-chunk attributes, before ALLOWEDIPS
                assert!(!f.is_empty(), "FLAGS is sent only when non-zero");
                out.remove = f.contains(WireguardPeerFlags::RemoveMe);
                out.replace_allowed_ips = f.contains(WireguardPeerFlags::ReplaceAllowedIps);
                out.update_only = f.contains(WireguardPeerFlags::UpdateOnly);
                assert_eq!(f.bits() & !7, 0);
            }
            WireguardPeerAttribute::AllowedIps(ips) => {
                kinds.push(9);
                out.allowed_ips = ips.iter().map(decode_allowed_ip).collect();
            }
            other => panic!("unexpected peer attribute {other:?}"),
        }
    }
    assert!(kinds.windows(2).all(|w| w[0] < w[1]), "order {kinds:?}");
    assert_eq!(kinds.first(), Some(&1), "the public key comes first");
    out
}

fn decode_allowed_ip(ip: &WireguardAllowedIp) -> AllowedIp {
    let mut family = None;
    let mut addr = None;
    let mut cidr = None;
    let mut remove = false;
    for attr in &ip.0 {
        match attr {
            WireguardAllowedIpAttr::Family(f) => family = Some(*f),
            WireguardAllowedIpAttr::IpAddr(a) => addr = Some(*a),
            WireguardAllowedIpAttr::Cidr(c) => cidr = Some(*c),
            WireguardAllowedIpAttr::Flags(f) => {
                assert_eq!(
                    *f,
                    WireguardAllowedIpFlags::RemoveMe,
                    "flags only for removals"
                );
                remove = true;
            }
            other => panic!("unexpected allowed-ip attribute {other:?}"),
        }
    }
    let addr = addr.unwrap();
    let expected = if addr.is_ipv4() {
        WireguardAddressFamily::Ipv4
    } else {
        WireguardAddressFamily::Ipv6
    };
    assert_eq!(family, Some(expected));
    AllowedIp {
        addr,
        cidr: cidr.unwrap(),
        remove,
    }
}

/// The bytes an allowed-IP entry takes.
fn allowed_ip_size(ip: &AllowedIp) -> usize {
    let addr = if ip.addr.is_ipv4() { 8 } else { 20 };
    4 + 8 + addr + 8 + if ip.remove { 8 } else { 0 }
}

/// The bytes of a peer's first chunk before its allowed IPs.
fn peer_head_size(peer: &Peer) -> usize {
    let endpoint = match peer.endpoint {
        Some(Endpoint::Addr(SocketAddr::V4(_))) => 20,
        Some(_) => 32,
        None => 0,
    };
    let flags = peer.remove || peer.update_only || peer.replace_allowed_ips;
    4 + 36
        + if peer.preshared_key.is_some() { 36 } else { 0 }
        + endpoint
        + if peer.persistent_keepalive.is_some() {
            8
        } else {
            0
        }
        + if flags { 8 } else { 0 }
}

/// Splits `delta`, checks every invariant of the reference's splitting, and returns the
/// messages' lengths.
fn check_split(delta: &Device, budget: usize) -> Vec<usize> {
    let messages = set_messages(FAMILY, b"wg0", delta, budget).unwrap();
    let mut rebuilt = Device::default();
    // Whether the previous message ended inside a peer's allowed IPs (or before its list).
    let mut previous_cut: Option<PublicKey> = None;
    let mut consumed = 0; // peers of the delta fully rebuilt so far
    for (n, bytes) in messages.iter().enumerate() {
        assert!(
            bytes.len() <= budget,
            "message {n} is {} bytes",
            bytes.len()
        );
        let decoded = decode_set(bytes);
        assert_eq!(decoded.ifname, "wg0");
        if n == 0 {
            rebuilt.private_key = decoded.device.private_key.clone();
            rebuilt.listen_port = decoded.device.listen_port;
            rebuilt.fwmark = decoded.device.fwmark;
            rebuilt.replace_peers = decoded.device.replace_peers;
        } else {
            assert_eq!(
                decoded.device_attrs, 0,
                "device attributes only in message 0"
            );
            assert!(
                !decoded.peers.is_empty(),
                "a later message always carries peers"
            );
        }
        for (i, chunk) in decoded.peers.into_iter().enumerate() {
            let continued = i == 0 && previous_cut == Some(chunk.public_key);
            if continued {
                let original = &delta.peers[consumed];
                assert_eq!(chunk.public_key, original.public_key);
                assert!(
                    !chunk.replace_allowed_ips,
                    "replace only in the first chunk"
                );
                assert!(chunk.preshared_key.is_none() && chunk.endpoint.is_none());
                assert!(chunk.persistent_keepalive.is_none());
                assert_eq!(chunk.remove, original.remove, "REMOVE_ME in every chunk");
                assert_eq!(chunk.update_only, original.update_only);
                let last: &mut Peer = rebuilt.peers.last_mut().unwrap();
                last.allowed_ips.extend(chunk.allowed_ips);
            } else {
                rebuilt.peers.push(chunk);
            }
            let last = rebuilt.peers.last().unwrap();
            consumed = rebuilt.peers.len() - 1;
            if last.allowed_ips.len() == delta.peers[consumed].allowed_ips.len() {
                consumed += 1;
            }
        }
        previous_cut = match rebuilt.peers.last() {
            Some(last) if consumed < rebuilt.peers.len() => Some(last.public_key),
            _ => None,
        };
        if n + 1 < messages.len() {
            // Greedy: the message was closed only because the next item did not fit: the
            // rest of a cut peer's allowed IPs, or the next peer's first-chunk attributes.
            let next = match previous_cut {
                Some(_) => {
                    let done = rebuilt.peers.last().unwrap().allowed_ips.len();
                    allowed_ip_size(&delta.peers[consumed].allowed_ips[done])
                }
                None => peer_head_size(&delta.peers[rebuilt.peers.len()]),
            };
            assert!(
                bytes.len() + next > budget,
                "message {n} closed early at {}",
                bytes.len()
            );
        }
    }
    assert_eq!(&rebuilt, delta);
    messages.iter().map(Vec::len).collect()
}

#[test]
fn test_split_exact_sizes_one_big_peer() {
    // 20 header + 8 IFNAME + 4 PEERS + 4 peer + 36 key + 8 FLAGS + 4 ALLOWEDIPS = 84; each IPv4
    // entry is 28 bytes: 143 fit (4088), and the 144th fails at its FAMILY check.
    // Continuations have no FLAGS: 76 + 143 × 28 = 4080; the next fails at IPADDR.
    let ips: Vec<AllowedIp> = (0..1000u32)
        .map(|i| AllowedIp::new(IpAddr::V4(Ipv4Addr::from(i << 8)), 24).unwrap())
        .collect();
    let delta = Device {
        peers: vec![Peer {
            replace_allowed_ips: true,
            allowed_ips: ips,
            ..Peer::new(PublicKey::from_bytes([1; 32]))
        }],
        ..Device::default()
    };
    let sizes = check_split(&delta, PAGE);
    assert_eq!(sizes.len(), 7);
    assert_eq!(sizes[0], 4088);
    assert_eq!(&sizes[1..6], &[4080; 5]);
    assert_eq!(sizes[6], 76 + (1000 - 143 * 6) * 28);
}

#[test]
fn test_split_many_peers_and_device_attributes() {
    // 300 peers with a preshared key, an endpoint, a keepalive and 3 IPv6 prefixes each.
    let mut rng = Rng(7);
    let peers = (0..300)
        .map(|_| Peer {
            preshared_key: Some(rng.key()),
            endpoint: Some(endpoint(&mut rng)),
            persistent_keepalive: Some(25),
            allowed_ips: (0..3).map(|_| allowed_ip(&mut rng, false)).collect(),
            ..Peer::new(rng.key())
        })
        .collect();
    let delta = Device {
        private_key: Some(rng.key()),
        listen_port: Some(51820),
        fwmark: Some(0x10),
        replace_peers: true,
        peers,
    };
    let sizes = check_split(&delta, PAGE);
    assert!(sizes.len() > 10, "{sizes:?}");
}

#[test]
fn test_split_without_peers_and_removals() {
    let delta = Device {
        listen_port: Some(0),
        ..Device::default()
    };
    let messages = set_messages(FAMILY, b"wg0", &delta, PAGE).unwrap();
    assert_eq!(messages.len(), 1);
    // No PEERS nest at all when there are no peers.
    assert_eq!(messages[0].len(), 20 + 8 + 8);

    let mut rng = Rng(3);
    let delta = Device {
        peers: vec![Peer {
            remove: true,
            allowed_ips: (0..500).map(|_| allowed_ip(&mut rng, true)).collect(),
            ..Peer::new(rng.key())
        }],
        ..Device::default()
    };
    check_split(&delta, PAGE);
}

#[test]
fn test_split_random_deltas() {
    for seed in 1..=300u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let delta = random_delta(&mut rng, 40, 400);
        for budget in [PAGE, 8192, 1024] {
            check_split(&delta, budget);
        }
    }
}

#[test]
fn test_split_thousands_of_allowed_ips() {
    let mut rng = Rng(99);
    let mut delta = random_delta(&mut rng, 0, 0);
    for _ in 0..200 {
        delta.peers.push(Peer {
            replace_allowed_ips: true,
            allowed_ips: (0..rng.below(3000))
                .map(|_| allowed_ip(&mut rng, false))
                .collect(),
            ..Peer::new(rng.key())
        });
    }
    let sizes = check_split(&delta, PAGE);
    assert!(sizes.len() > 100);
}

#[test]
fn test_unresolved_endpoint_and_tiny_budget() {
    let delta = Device {
        peers: vec![Peer {
            endpoint: Some(Endpoint::new("example.com", 1)),
            ..Peer::new(PublicKey::from_bytes([1; 32]))
        }],
        ..Device::default()
    };
    assert_eq!(
        set_messages(FAMILY, b"wg0", &delta, PAGE),
        Err(SetError::UnresolvedEndpoint)
    );
    let delta = Device {
        peers: vec![Peer::new(PublicKey::from_bytes([1; 32]))],
        ..Device::default()
    };
    assert_eq!(
        set_messages(FAMILY, b"wg0", &delta, 60),
        Err(SetError::TooBig)
    );
}

// -------------------------------------------------------------------------------------------
// Get: kernel-style dumps built with netlink-packet-wireguard.

/// A random device state in normal form (what the kernel reports).
fn random_state(rng: &mut Rng, peers: u64, ips: u64) -> Device {
    let mut device = Device {
        private_key: rng.chance(70).then(|| rng.key()),
        listen_port: rng.chance(70).then(|| rng.next() as u16 | 1),
        fwmark: rng.chance(30).then(|| rng.next() as u32 | 1),
        ..Device::default()
    };
    for _ in 0..rng.below(peers + 1) {
        let count = if rng.chance(20) {
            rng.below(ips + 1)
        } else {
            rng.below(4)
        };
        device.peers.push(Peer {
            preshared_key: rng.chance(40).then(|| rng.key()),
            endpoint: rng.chance(60).then(|| endpoint(rng)),
            persistent_keepalive: rng.chance(40).then(|| rng.next() as u16 | 1),
            allowed_ips: (0..count)
                .map(|_| allowed_ip(rng, false).masked())
                .collect(),
            last_handshake: rng
                .chance(50)
                .then(|| Duration::new(rng.below(1 << 40) + 1, rng.below(1_000_000_000) as u32)),
            rx_bytes: rng.next(),
            tx_bytes: rng.next(),
            ..Peer::new(rng.key())
        });
    }
    device
}

fn crate_allowed_ip(ip: &AllowedIp) -> WireguardAllowedIp {
    let family = if ip.addr.is_ipv4() {
        WireguardAddressFamily::Ipv4
    } else {
        WireguardAddressFamily::Ipv6
    };
    WireguardAllowedIp(vec![
        WireguardAllowedIpAttr::Family(family),
        WireguardAllowedIpAttr::IpAddr(ip.addr),
        WireguardAllowedIpAttr::Cidr(ip.cidr),
    ])
}

/// The attributes the kernel sends for a peer's first chunk (zeros where unset).
fn crate_peer_head(peer: &Peer) -> Vec<WireguardPeerAttribute> {
    let mut attrs = vec![
        WireguardPeerAttribute::PublicKey(*peer.public_key.as_bytes()),
        WireguardPeerAttribute::PresharedKey(
            peer.preshared_key
                .as_ref()
                .map_or([0; 32], |k| *k.as_bytes()),
        ),
        WireguardPeerAttribute::LastHandshake(peer.last_handshake.map_or(
            WireguardTimeSpec::default(),
            |t| WireguardTimeSpec {
                seconds: t.as_secs() as i64,
                nano_seconds: i64::from(t.subsec_nanos()),
            },
        )),
        WireguardPeerAttribute::PersistentKeepalive(peer.persistent_keepalive.unwrap_or(0)),
        WireguardPeerAttribute::TxBytes(peer.tx_bytes),
        WireguardPeerAttribute::RxBytes(peer.rx_bytes),
        WireguardPeerAttribute::ProtocolVersion(1),
    ];
    if let Some(Endpoint::Addr(addr)) = peer.endpoint {
        attrs.push(WireguardPeerAttribute::Endpoint(addr));
    }
    attrs
}

/// Dumps `state` the way the kernel does, with at most `room` items (peer heads or allowed
/// IPs) per message: the device attributes in the first message only, a peer whose allowed
/// IPs overflow continued in the next message with only its public key and the rest.
fn kernel_dump(state: &Device, room: usize) -> Vec<Vec<u8>> {
    let mut messages = Vec::new();
    let mut attrs = vec![
        WireguardAttribute::ListenPort(state.listen_port.unwrap_or(0)),
        WireguardAttribute::Fwmark(state.fwmark.unwrap_or(0)),
        WireguardAttribute::IfIndex(7),
        WireguardAttribute::IfName("wg0".into()),
    ];
    if let Some(key) = &state.private_key {
        attrs.push(WireguardAttribute::PrivateKey(*key.as_bytes()));
        attrs.push(WireguardAttribute::PublicKey(*key.public_key().as_bytes()));
    }
    let mut peers: Vec<WireguardPeer> = Vec::new();
    let mut used = 0;
    let flush = |attrs: &mut Vec<WireguardAttribute>,
                 peers: &mut Vec<WireguardPeer>,
                 messages: &mut Vec<Vec<u8>>| {
        if !peers.is_empty() {
            attrs.push(WireguardAttribute::Peers(std::mem::take(peers)));
        }
        let mut buf = vec![0; attrs.as_slice().buffer_len()];
        attrs.as_slice().emit(&mut buf);
        messages.push(buf);
        *attrs = vec![
            WireguardAttribute::IfIndex(7),
            WireguardAttribute::IfName("wg0".into()),
        ];
    };
    for peer in &state.peers {
        if used >= room {
            flush(&mut attrs, &mut peers, &mut messages);
            used = 0;
        }
        let mut current = crate_peer_head(peer);
        used += 1;
        let mut ips = Vec::new();
        for ip in &peer.allowed_ips {
            if used >= room {
                if !ips.is_empty() {
                    current.push(WireguardPeerAttribute::AllowedIps(std::mem::take(&mut ips)));
                }
                peers.push(WireguardPeer(current));
                flush(&mut attrs, &mut peers, &mut messages);
                used = 0;
                current = vec![WireguardPeerAttribute::PublicKey(
                    *peer.public_key.as_bytes(),
                )];
            }
            ips.push(crate_allowed_ip(ip));
            used += 1;
        }
        if !ips.is_empty() {
            current.push(WireguardPeerAttribute::AllowedIps(ips));
        }
        peers.push(WireguardPeer(current));
    }
    flush(&mut attrs, &mut peers, &mut messages);
    messages
}

fn parse_dump(messages: &[Vec<u8>]) -> Result<Device, BadDump> {
    let mut parser = DumpParser::new();
    for message in messages {
        parser.message(message)?;
    }
    Ok(parser.finish())
}

#[test]
fn test_dump_random_states() {
    for seed in 1..=300u64 {
        let mut rng = Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1);
        let state = random_state(&mut rng, 30, 300);
        for room in [1, 2, 7, 150, usize::MAX] {
            let dump = kernel_dump(&state, room);
            assert_eq!(
                parse_dump(&dump),
                Ok(state.clone()),
                "seed {seed} room {room}"
            );
        }
    }
}

#[test]
fn test_dump_large_peer_across_many_messages() {
    let mut rng = Rng(5);
    let mut state = random_state(&mut rng, 3, 0);
    state.peers.push(Peer {
        allowed_ips: (0..5000)
            .map(|_| allowed_ip(&mut rng, false).masked())
            .collect(),
        ..Peer::new(rng.key())
    });
    let dump = kernel_dump(&state, 140);
    assert!(dump.len() > 30);
    assert_eq!(parse_dump(&dump), Ok(state));
}

#[test]
fn test_dump_zero_values_and_oddities() {
    // A zero preshared key, keepalive, handshake, port and fwmark read as unset; attributes
    // of the wrong size are skipped; unknown ones ignored.
    let peer = WireguardPeer(vec![
        WireguardPeerAttribute::PublicKey([3; 32]),
        WireguardPeerAttribute::PresharedKey([0; 32]),
        WireguardPeerAttribute::PersistentKeepalive(0),
        WireguardPeerAttribute::LastHandshake(WireguardTimeSpec {
            seconds: 0,
            nano_seconds: 5,
        }),
        WireguardPeerAttribute::ProtocolVersion(1),
    ]);
    let attrs = vec![
        WireguardAttribute::ListenPort(0),
        WireguardAttribute::Fwmark(0),
        WireguardAttribute::Peers(vec![peer]),
    ];
    let mut buf = vec![0; attrs.as_slice().buffer_len()];
    attrs.as_slice().emit(&mut buf);
    // A 3-byte "private key" and an unknown attribute 99.
    buf.extend_from_slice(&[7, 0, 3, 0, 1, 2, 3, 0]);
    buf.extend_from_slice(&[8, 0, 99, 0, 1, 2, 3, 4]);
    let device = parse_dump(&[buf]).unwrap();
    let expected = Device {
        peers: vec![Peer::new(PublicKey::from_bytes([3; 32]))],
        ..Device::default()
    };
    assert_eq!(device, expected);
}

#[test]
fn test_dump_peer_without_key_fails() {
    let peer = WireguardPeer(vec![WireguardPeerAttribute::PersistentKeepalive(5)]);
    let attrs = vec![WireguardAttribute::Peers(vec![peer])];
    let mut buf = vec![0; attrs.as_slice().buffer_len()];
    attrs.as_slice().emit(&mut buf);
    assert_eq!(parse_dump(&[buf]), Err(BadDump));
}

#[test]
fn test_dump_bad_allowed_ip_ends_the_peer() {
    let bad = WireguardAllowedIp(vec![
        WireguardAllowedIpAttr::Family(WireguardAddressFamily::Ipv4),
        WireguardAllowedIpAttr::IpAddr(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        WireguardAllowedIpAttr::Cidr(33),
    ]);
    let good = crate_allowed_ip(&"10.0.0.0/8".parse().unwrap());
    let peer = WireguardPeer(vec![
        WireguardPeerAttribute::PublicKey([3; 32]),
        WireguardPeerAttribute::AllowedIps(vec![good.clone(), bad, good]),
        WireguardPeerAttribute::PersistentKeepalive(9),
    ]);
    let attrs = vec![WireguardAttribute::Peers(vec![peer])];
    let mut buf = vec![0; attrs.as_slice().buffer_len()];
    attrs.as_slice().emit(&mut buf);
    let device = parse_dump(&[buf]).unwrap();
    assert_eq!(device.peers.len(), 1);
    assert_eq!(
        device.peers[0].allowed_ips,
        vec!["10.0.0.0/8".parse().unwrap()]
    );
    assert_eq!(device.peers[0].persistent_keepalive, None);
}

#[test]
fn test_sockaddr_round_trip() {
    for addr in [
        "1.2.3.4:51820".parse::<SocketAddr>().unwrap(),
        SocketAddr::V6(SocketAddrV6::new("fe80::1".parse().unwrap(), 5, 0x12345, 3)),
    ] {
        assert_eq!(parse_sockaddr(&sockaddr_bytes(&addr)), Some(addr));
    }
    assert_eq!(parse_sockaddr(&[2, 0, 1]), None);
    // An IPv4 family with the IPv6 size is ignored.
    let mut wrong = sockaddr_bytes(&"[::1]:5".parse().unwrap());
    wrong[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
    assert_eq!(parse_sockaddr(&wrong), None);
}

#[test]
fn test_get_request_bytes() {
    let request = get_request(FAMILY, b"wg0");
    let mut expected = Vec::new();
    expected.extend_from_slice(&28u32.to_ne_bytes());
    expected.extend_from_slice(&FAMILY.to_ne_bytes());
    expected.extend_from_slice(
        &((libc::NLM_F_REQUEST | libc::NLM_F_ACK | libc::NLM_F_DUMP) as u16).to_ne_bytes(),
    );
    expected.extend_from_slice(&[0; 8]);
    expected.extend_from_slice(&[WG_CMD_GET_DEVICE, 1, 0, 0]);
    expected.extend_from_slice(&[8, 0, 2, 0, b'w', b'g', b'0', 0]);
    assert_eq!(request, expected);
}

#[test]
fn test_dump_parser_never_panics_on_garbage() {
    // Valid dumps with bytes flipped, cut short or extended, and plain noise: any result is
    // fine, a panic is not.
    let mut rng = Rng(0xbad);
    for _ in 0..300 {
        let state = random_state(&mut rng, 4, 20);
        for mut message in kernel_dump(&state, 5) {
            match rng.below(3) {
                0 => {
                    for _ in 0..=rng.below(8) {
                        let at = rng.below(message.len() as u64) as usize;
                        message[at] ^= 1 << rng.below(8);
                    }
                }
                1 => message.truncate(rng.below(message.len() as u64 + 1) as usize),
                _ => message.extend((0..rng.below(40)).map(|_| rng.next() as u8)),
            }
            let _ = parse_dump(&[message]);
        }
        let noise: Vec<u8> = (0..rng.below(200)).map(|_| rng.next() as u8).collect();
        let _ = parse_dump(&[noise]);
    }
}
