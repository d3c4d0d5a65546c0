//! The device model: [`Device`] and [`Peer`], used both as a **state** (what a device holds, as
//! read back by `wg show`) and as a **delta** (a set request: a config file, `wg set` argv, a
//! UAPI `set=1` or a netlink `SET_DEVICE`), like wireguard-tools `containers.h`. Also the pure
//! state machine [`apply`] that folds a delta into a state with the kernel's semantics.
//!
//! Reading the same struct two ways:
//!
//! | field | in a delta | in a state (normal form) |
//! |---|---|---|
//! | `Option` scalar | `None`: not mentioned; `Some(v)`: set to `v` | `None`: unset / zero / off |
//! | `private_key`, `preshared_key` | `Some(all-zero)`: remove | never all-zero |
//! | `listen_port`, `fwmark`, `persistent_keepalive` | `Some(0)`: random port / off | never `Some(0)` |
//! | `replace_peers`, `remove`, `update_only`, `replace_allowed_ips` | the request flags | `false` |
//! | `peers` | entries in order; a key may repeat, each entry applies in turn | unique keys |
//! | `AllowedIp::remove` | remove this prefix from this peer | `false`, prefixes masked |
//! | stats (`last_handshake`, bytes) | ignored | as reported |
//!
//! The interface *name* is not part of the model: it is an address, passed to backends
//! separately. The device public key is not stored either; it is derived from the private key
//! ([`Device::public_key`]), as the UAPI does.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::Duration;

use crate::cidr::AllowedIp;
use crate::endpoint::Endpoint;
use crate::key::{Key, PresharedKey, PrivateKey, PublicKey, KEY_LEN};

/// A WireGuard device: its interface-level settings and its peers. See the module docs for
/// the state and delta readings of each field.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Device {
    /// The static private key. In a delta `Some(all-zero)` removes it.
    pub private_key: Option<PrivateKey>,
    /// The UDP listen port. In a delta `Some(0)` asks for a random port.
    pub listen_port: Option<u16>,
    /// The firewall mark of the UDP socket. In a delta `Some(0)` turns it off.
    pub fwmark: Option<u32>,
    /// Delta only: remove every existing peer before applying `peers`.
    pub replace_peers: bool,
    /// The peers, in order.
    pub peers: Vec<Peer>,
}

/// One peer of a [`Device`], or one peer entry of a delta.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// The peer's static public key; identifies the peer.
    pub public_key: PublicKey,
    /// Delta only: remove the peer; every other field of the entry is ignored.
    pub remove: bool,
    /// Delta only: apply the entry only if the peer already exists, never create it.
    pub update_only: bool,
    /// Delta only: clear the peer's allowed IPs before adding `allowed_ips`.
    pub replace_allowed_ips: bool,
    /// The preshared key. In a delta `Some(all-zero)` removes it.
    pub preshared_key: Option<PresharedKey>,
    /// The endpoint, if known. A delta cannot remove one.
    pub endpoint: Option<Endpoint>,
    /// The persistent-keepalive interval in seconds. In a delta `Some(0)` turns it off.
    pub persistent_keepalive: Option<u16>,
    /// The allowed IPs: in a state, masked prefixes; in a delta, prefixes to add (or remove,
    /// when [`AllowedIp::remove`] is set), in order.
    pub allowed_ips: Vec<AllowedIp>,
    /// State only: time of the latest handshake since the Unix epoch; `None` means never.
    pub last_handshake: Option<Duration>,
    /// State only: bytes received from the peer.
    pub rx_bytes: u64,
    /// State only: bytes sent to the peer.
    pub tx_bytes: u64,
}

impl Peer {
    /// A peer entry that mentions nothing but its public key.
    pub fn new(public_key: PublicKey) -> Peer {
        Peer {
            public_key,
            remove: false,
            update_only: false,
            replace_allowed_ips: false,
            preshared_key: None,
            endpoint: None,
            persistent_keepalive: None,
            allowed_ips: Vec::new(),
            last_handshake: None,
            rx_bytes: 0,
            tx_bytes: 0,
        }
    }
}

impl Device {
    /// The device's public key, derived from the private key. `None` without a private key.
    ///
    /// An all-zero private key (which a misbehaving UAPI server may report) still derives a
    /// key, `L+V9o0…O3Q=`, exactly as `wg show` prints it in that case.
    pub fn public_key(&self) -> Option<PublicKey> {
        self.private_key.as_ref().map(PrivateKey::public_key)
    }

    /// The first peer with this public key.
    pub fn peer(&self, public_key: &PublicKey) -> Option<&Peer> {
        self.peers.iter().find(|p| p.public_key == *public_key)
    }

    /// Rewrites a state into normal form: zero values become `None`, the delta flags are
    /// cleared, allowed IPs are masked and deduplicated (first occurrence kept), and a
    /// handshake at second 0 becomes "never". Printers and codecs round-trip normal forms.
    pub fn normalize(&mut self) {
        if self.private_key.as_ref().is_some_and(Key::is_zero) {
            self.private_key = None;
        }
        self.listen_port = self.listen_port.filter(|&p| p != 0);
        self.fwmark = self.fwmark.filter(|&m| m != 0);
        self.replace_peers = false;
        for peer in &mut self.peers {
            peer.remove = false;
            peer.update_only = false;
            peer.replace_allowed_ips = false;
            if peer.preshared_key.as_ref().is_some_and(Key::is_zero) {
                peer.preshared_key = None;
            }
            peer.persistent_keepalive = peer.persistent_keepalive.filter(|&k| k != 0);
            peer.last_handshake = peer.last_handshake.filter(|t| t.as_secs() != 0);
            let mut seen = HashSet::new();
            peer.allowed_ips = peer
                .allowed_ips
                .iter()
                .map(|ip| AllowedIp {
                    remove: false,
                    ..ip.masked()
                })
                .filter(|ip| seen.insert(ip.prefix()))
                .collect();
        }
    }
}

/// Applies a delta to a state, with the semantics of the Linux kernel's `WG_CMD_SET_DEVICE`
/// (and wireguard-go's UAPI `set`, which agrees on everything that matters here). This is the
/// configuration state machine of a UAPI server.
///
/// Order of operations:
/// 1. `fwmark`, then `listen_port` (`0` stores "off" / "random": `None`).
/// 2. `replace_peers` removes every peer.
/// 3. `private_key`: all-zero removes it. Otherwise the key is clamped; if unchanged nothing
///    happens, else the peer whose public key equals the new public key is removed.
/// 4. Each peer entry in order:
///    * an entry for the device's own public key is silently ignored;
///    * `remove` or `update_only` for a peer that does not exist is a no-op;
///    * `remove` removes the peer, ignoring the rest of the entry;
///    * a new peer is appended to the end of `peers`;
///    * `preshared_key` (all-zero removes), `endpoint`, then `replace_allowed_ips` clears the
///      peer's allowed IPs, then each allowed IP is masked and added, **moving** from any
///      other peer that owns it, or for a `-` item removed from this peer only;
///    * `persistent_keepalive` (`0` stores `None`).
///
/// `state` must be in normal form (unique peer keys; see [`Device::normalize`]); it stays so.
/// Allowed IPs keep insertion order per peer, and one added again moves to the end, as in the
/// kernel's per-peer list and wireguard-go's. Statistics are untouched; a new peer starts at zero.
///
/// Runs in time linear in the sizes of the state and the delta.
pub fn apply(state: &mut Device, delta: &Device) {
    if let Some(fwmark) = delta.fwmark {
        state.fwmark = (fwmark != 0).then_some(fwmark);
    }
    if let Some(port) = delta.listen_port {
        state.listen_port = (port != 0).then_some(port);
    }
    if delta.replace_peers {
        state.peers.clear();
    }
    if let Some(key) = &delta.private_key {
        set_private_key(state, key);
    }
    // The kernel compares with the identity only when a (non-zero) private key is set.
    let own_public_key = state.public_key();

    let mut table = PeerTable::new(std::mem::take(&mut state.peers));
    for entry in &delta.peers {
        if Some(entry.public_key) != own_public_key {
            table.apply_entry(entry);
        }
    }
    state.peers = table.finish();
}

fn set_private_key(state: &mut Device, key: &PrivateKey) {
    if key.is_zero() {
        state.private_key = None;
        return;
    }
    let mut key = key.clone();
    key.clamp();
    if state.private_key.as_ref() == Some(&key) {
        return;
    }
    let public_key = key.public_key();
    state.peers.retain(|peer| peer.public_key != public_key);
    state.private_key = Some(key);
}

/// An allowed-IP table key: the masked address and the prefix length.
type Prefix = (IpAddr, u8);

/// The peers being updated, indexed so that each operation of a delta is O(1) amortized.
///
/// Removed peers are left as `None` holes and allowed IPs moved away from a peer are left in
/// its list; `owner` is the truth, and [`PeerTable::finish`] compacts both.
struct PeerTable {
    peers: Vec<Option<Peer>>,
    by_key: HashMap<PublicKey, usize>,
    owner: HashMap<Prefix, usize>,
}

impl PeerTable {
    fn new(peers: Vec<Peer>) -> PeerTable {
        let mut table = PeerTable {
            by_key: HashMap::with_capacity(peers.len()),
            owner: HashMap::new(),
            peers: Vec::with_capacity(peers.len()),
        };
        for peer in peers {
            let index = table.peers.len();
            for ip in &peer.allowed_ips {
                table.owner.insert(ip.prefix(), index);
            }
            table.by_key.insert(peer.public_key, index);
            table.peers.push(Some(peer));
        }
        table
    }

    fn apply_entry(&mut self, entry: &Peer) {
        let index = match self.by_key.get(&entry.public_key) {
            Some(&index) => index,
            None if entry.remove || entry.update_only => return,
            None => {
                let index = self.peers.len();
                self.peers.push(Some(Peer::new(entry.public_key)));
                self.by_key.insert(entry.public_key, index);
                index
            }
        };
        if entry.remove {
            self.remove_peer(index);
            return;
        }
        if entry.replace_allowed_ips {
            self.clear_allowed_ips(index);
        }
        for ip in &entry.allowed_ips {
            let prefix = ip.prefix();
            if ip.remove {
                if self.owner.get(&prefix) == Some(&index) {
                    self.owner.remove(&prefix);
                }
            } else {
                // Always (re)appended: an allowed IP added again, even to the peer that has it,
                // moves to the end of that peer's list, as the kernel (`list_move_tail`) and
                // wireguard-go do. `finish` drops the stale earlier copy.
                self.owner.insert(prefix, index);
                let (addr, cidr) = prefix;
                self.peer_mut(index).allowed_ips.push(AllowedIp {
                    addr,
                    cidr,
                    remove: false,
                });
            }
        }
        let peer = self.peer_mut(index);
        if let Some(psk) = &entry.preshared_key {
            peer.preshared_key = (!psk.is_zero()).then(|| psk.clone());
        }
        if let Some(endpoint) = &entry.endpoint {
            peer.endpoint = Some(endpoint.clone());
        }
        if let Some(interval) = entry.persistent_keepalive {
            peer.persistent_keepalive = (interval != 0).then_some(interval);
        }
    }

    fn peer_mut(&mut self, index: usize) -> &mut Peer {
        // `by_key` and `owner` only ever hold indices of live (`Some`) peers.
        self.peers[index].as_mut().expect("indexed peers are live")
    }

    fn clear_allowed_ips(&mut self, index: usize) {
        let ips = std::mem::take(&mut self.peer_mut(index).allowed_ips);
        for ip in ips {
            if self.owner.get(&ip.prefix()) == Some(&index) {
                self.owner.remove(&ip.prefix());
            }
        }
    }

    fn remove_peer(&mut self, index: usize) {
        self.clear_allowed_ips(index);
        if let Some(peer) = self.peers[index].take() {
            self.by_key.remove(&peer.public_key);
        }
    }

    fn finish(self) -> Vec<Peer> {
        let owner = self.owner;
        self.peers
            .into_iter()
            .enumerate()
            .filter_map(|(index, peer)| {
                let mut peer = peer?;
                // Keep each prefix only where it still belongs, once, at its latest position:
                // a prefix that moved away and back (or was removed and re-added) was pushed
                // again at the end, after its stale copy.
                let mut seen = HashSet::new();
                let mut kept: Vec<AllowedIp> = peer
                    .allowed_ips
                    .iter()
                    .rev()
                    .filter(|ip| {
                        owner.get(&ip.prefix()) == Some(&index) && seen.insert(ip.prefix())
                    })
                    .map(|ip| AllowedIp {
                        remove: false,
                        ..ip.masked()
                    })
                    .collect();
                kept.reverse();
                peer.allowed_ips = kept;
                Some(peer)
            })
            .collect()
    }
}

/// The all-zero key of any type: in a delta, "remove".
pub fn zero_key<K: Key>() -> K {
    K::from_bytes([0; KEY_LEN])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(n: u8) -> PublicKey {
        PublicKey::from_bytes([n; 32])
    }

    fn ips(list: &str) -> Vec<AllowedIp> {
        if list.is_empty() {
            return Vec::new();
        }
        list.split(',').map(|s| s.parse().unwrap()).collect()
    }

    fn peer(n: u8, allowed: &str) -> Peer {
        Peer {
            allowed_ips: ips(allowed),
            ..Peer::new(key(n))
        }
    }

    fn shown(state: &Device) -> Vec<(u8, String)> {
        state
            .peers
            .iter()
            .map(|p| {
                let list: Vec<String> = p.allowed_ips.iter().map(ToString::to_string).collect();
                (p.public_key.as_bytes()[0], list.join(","))
            })
            .collect()
    }

    fn delta(peers: Vec<Peer>) -> Device {
        Device {
            peers,
            ..Device::default()
        }
    }

    #[test]
    fn test_device_fields() {
        let mut state = Device::default();
        apply(
            &mut state,
            &Device {
                listen_port: Some(51820),
                fwmark: Some(0x10),
                ..Device::default()
            },
        );
        assert_eq!((state.listen_port, state.fwmark), (Some(51820), Some(0x10)));
        apply(
            &mut state,
            &Device {
                fwmark: Some(0),
                ..Device::default()
            },
        );
        assert_eq!((state.listen_port, state.fwmark), (Some(51820), None));
        apply(
            &mut state,
            &Device {
                listen_port: Some(0),
                ..Device::default()
            },
        );
        assert_eq!(state.listen_port, None);
    }

    #[test]
    fn test_private_key_clamped_and_removes_matching_peer() {
        let raw = PrivateKey::from_bytes([0xff; 32]);
        let own_public = raw.public_key();
        let mut state = delta(vec![Peer::new(own_public), peer(1, "")]);
        apply(
            &mut state,
            &Device {
                private_key: Some(raw.clone()),
                ..Device::default()
            },
        );
        let mut clamped = raw.clone();
        clamped.clamp();
        assert_eq!(state.private_key, Some(clamped));
        assert_eq!(state.public_key(), Some(own_public));
        assert_eq!(shown(&state), [(1, String::new())]);

        // A peer entry with the device's own key is ignored.
        apply(
            &mut state,
            &delta(vec![Peer::new(own_public), peer(2, "10.0.0.0/8")]),
        );
        assert_eq!(
            shown(&state),
            [(1, String::new()), (2, "10.0.0.0/8".into())]
        );

        // Setting the same key again changes nothing; zero removes it.
        apply(
            &mut state,
            &Device {
                private_key: Some(raw),
                ..Device::default()
            },
        );
        assert_eq!(state.peers.len(), 2);
        apply(
            &mut state,
            &Device {
                private_key: Some(zero_key()),
                ..Device::default()
            },
        );
        assert_eq!(state.private_key, None);
        assert_eq!(state.public_key(), None);
    }

    #[test]
    fn test_private_key_before_peers() {
        // `peer X … private-key K` where K's public key is X: the key is set first, so the
        // new entry for X is ignored, as in the kernel.
        let private = PrivateKey::from_random([7; 32]);
        let public = private.public_key();
        let mut state = Device::default();
        let request = Device {
            private_key: Some(private),
            peers: vec![Peer {
                allowed_ips: ips("10.0.0.0/8"),
                ..Peer::new(public)
            }],
            ..Device::default()
        };
        apply(&mut state, &request);
        assert!(state.peers.is_empty());
    }

    #[test]
    fn test_remove_and_update_only_on_missing_peer() {
        let mut state = delta(vec![peer(1, "10.0.0.0/8")]);
        apply(
            &mut state,
            &delta(vec![
                Peer {
                    remove: true,
                    ..Peer::new(key(2))
                },
                Peer {
                    update_only: true,
                    allowed_ips: ips("10.0.0.0/8"),
                    ..Peer::new(key(3))
                },
            ]),
        );
        assert_eq!(shown(&state), [(1, "10.0.0.0/8".into())]);

        // update_only on an existing peer applies normally.
        apply(
            &mut state,
            &delta(vec![Peer {
                update_only: true,
                persistent_keepalive: Some(25),
                ..Peer::new(key(1))
            }]),
        );
        assert_eq!(state.peers[0].persistent_keepalive, Some(25));

        apply(
            &mut state,
            &delta(vec![Peer {
                remove: true,
                ..peer(1, "10.1.0.0/16")
            }]),
        );
        assert!(state.peers.is_empty());
    }

    #[test]
    fn test_allowed_ip_added_again_moves_to_the_end() {
        // `AllowedIPs = ::/0, 0.0.0.0/0, ::/0` shows as `0.0.0.0/0, ::/0` on the kernel and
        // on wireguard-go; so does adding a prefix the peer already has in a later request.
        let mut state = Device::default();
        apply(&mut state, &delta(vec![peer(1, "::/0,0.0.0.0/0,::/0")]));
        assert_eq!(shown(&state), [(1, "0.0.0.0/0,::/0".into())]);
        apply(&mut state, &delta(vec![peer(1, "0.0.0.0/0")]));
        assert_eq!(shown(&state), [(1, "::/0,0.0.0.0/0".into())]);
    }

    #[test]
    fn test_allowed_ips_move_replace_and_remove() {
        let mut state = delta(vec![
            peer(1, "10.0.0.0/8,fd00::/64"),
            peer(2, "192.168.0.0/16"),
        ]);
        // Adding a prefix owned by peer 1 to peer 2 moves it; host bits are masked.
        apply(&mut state, &delta(vec![peer(2, "10.0.0.5/8")]));
        assert_eq!(
            shown(&state),
            [
                (1, "fd00::/64".into()),
                (2, "192.168.0.0/16,10.0.0.0/8".into())
            ]
        );

        // A `-` removal only touches this peer: peer 1 does not own 10.0.0.0/8 any more.
        apply(&mut state, &delta(vec![peer(1, "-10.0.0.0/8,-fd00::/64")]));
        assert_eq!(
            shown(&state),
            [(1, String::new()), (2, "192.168.0.0/16,10.0.0.0/8".into())]
        );

        // Replace clears first, then adds.
        apply(
            &mut state,
            &delta(vec![Peer {
                replace_allowed_ips: true,
                ..peer(2, "172.16.0.0/12")
            }]),
        );
        assert_eq!(
            shown(&state),
            [(1, String::new()), (2, "172.16.0.0/12".into())]
        );

        // Re-adding an owned prefix keeps a single copy; moving away and back too.
        apply(
            &mut state,
            &delta(vec![
                peer(2, "172.16.0.0/12"),
                peer(1, "172.16.0.0/12"),
                peer(2, "172.16.0.0/12"),
            ]),
        );
        assert_eq!(
            shown(&state),
            [(1, String::new()), (2, "172.16.0.0/12".into())]
        );

        // replace_allowed_ips with nothing removes all.
        apply(
            &mut state,
            &delta(vec![Peer {
                replace_allowed_ips: true,
                ..Peer::new(key(2))
            }]),
        );
        assert_eq!(shown(&state), [(1, String::new()), (2, String::new())]);
    }

    #[test]
    fn test_remove_then_recreate_in_one_request() {
        let mut state = delta(vec![
            Peer {
                persistent_keepalive: Some(5),
                ..peer(1, "10.0.0.0/8")
            },
            peer(2, ""),
        ]);
        state.peers[0].rx_bytes = 99;
        apply(
            &mut state,
            &delta(vec![
                Peer {
                    remove: true,
                    ..Peer::new(key(1))
                },
                peer(1, "10.1.0.0/16"),
            ]),
        );
        assert_eq!(
            shown(&state),
            [(2, String::new()), (1, "10.1.0.0/16".into())]
        );
        assert_eq!(state.peers[1].rx_bytes, 0);
        assert_eq!(state.peers[1].persistent_keepalive, None);
    }

    #[test]
    fn test_replace_peers_and_psk_keepalive() {
        let psk = PresharedKey::from_bytes([9; 32]);
        let mut state = delta(vec![peer(1, "10.0.0.0/8")]);
        apply(
            &mut state,
            &Device {
                replace_peers: true,
                peers: vec![Peer {
                    preshared_key: Some(psk.clone()),
                    persistent_keepalive: Some(25),
                    endpoint: Some("1.2.3.4:5".parse().unwrap()),
                    ..peer(2, "10.0.0.0/8")
                }],
                ..Device::default()
            },
        );
        assert_eq!(shown(&state), [(2, "10.0.0.0/8".into())]);
        assert_eq!(state.peers[0].preshared_key, Some(psk));
        apply(
            &mut state,
            &delta(vec![Peer {
                preshared_key: Some(zero_key()),
                persistent_keepalive: Some(0),
                ..Peer::new(key(2))
            }]),
        );
        assert_eq!(state.peers[0].preshared_key, None);
        assert_eq!(state.peers[0].persistent_keepalive, None);
        assert_eq!(state.peers[0].endpoint, Some("1.2.3.4:5".parse().unwrap()));
    }

    #[test]
    fn test_large_move_is_fast() {
        // 130k prefixes moved from one peer to another: must not be quadratic.
        let all: Vec<AllowedIp> = (0..130_000u32)
            .map(|i| AllowedIp::new(IpAddr::V4((i << 8).into()), 24).unwrap())
            .collect();
        let mut state = delta(vec![Peer {
            allowed_ips: all.clone(),
            ..Peer::new(key(1))
        }]);
        apply(
            &mut state,
            &delta(vec![Peer {
                allowed_ips: all,
                ..Peer::new(key(2))
            }]),
        );
        assert!(state.peers[0].allowed_ips.is_empty());
        assert_eq!(state.peers[1].allowed_ips.len(), 130_000);
    }

    #[test]
    fn test_normalize() {
        let mut state = Device {
            private_key: Some(zero_key()),
            listen_port: Some(0),
            fwmark: Some(0),
            replace_peers: true,
            peers: vec![Peer {
                remove: true,
                preshared_key: Some(zero_key()),
                persistent_keepalive: Some(0),
                last_handshake: Some(Duration::from_nanos(5)),
                ..peer(1, "10.0.0.5/8,10.0.0.0/8,-10.1.0.0/16")
            }],
        };
        state.normalize();
        let mut expected = delta(vec![peer(1, "10.0.0.0/8,10.1.0.0/16")]);
        expected.peers[0].last_handshake = None;
        assert_eq!(state, expected);
    }

    /// A linear-scan reference model of the allowed-IP semantics, for differential testing.
    fn reference_apply(
        state: &mut Vec<(u8, Vec<Prefix>)>,
        entries: &[(u8, bool, bool, Vec<AllowedIp>)],
    ) {
        for (n, remove, replace, list) in entries {
            let pos = match state.iter().position(|(k, _)| k == n) {
                Some(pos) => pos,
                None if *remove => continue,
                None => {
                    state.push((*n, Vec::new()));
                    state.len() - 1
                }
            };
            if *remove {
                state.remove(pos);
                continue;
            }
            if *replace {
                state[pos].1.clear();
            }
            for ip in list {
                let prefix = ip.prefix();
                if ip.remove {
                    state[pos].1.retain(|p| *p != prefix);
                } else {
                    for (_, other) in state.iter_mut() {
                        other.retain(|p| *p != prefix);
                    }
                    state[pos].1.push(prefix);
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { rng_seed: proptest::test_runner::RngSeed::Fixed(0x5eed), cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn prop_apply_matches_linear_model(
            entries in proptest::collection::vec(
                (0u8..5, proptest::bool::weighted(0.1), any::<bool>(),
                 proptest::collection::vec((0u8..6, 6u8..9, any::<bool>()), 0..6)),
                0..12,
            )
        ) {
            let entries: Vec<(u8, bool, bool, Vec<AllowedIp>)> = entries
                .into_iter()
                .map(|(n, remove, replace, list)| {
                    let list = list
                        .into_iter()
                        .map(|(octet, cidr, rm)| AllowedIp { addr: IpAddr::V4([octet, 0, 0, 0].into()), cidr, remove: rm })
                        .collect();
                    (n, remove, replace, list)
                })
                .collect();
            let mut ours = Device::default();
            let mut reference = Vec::new();
            // Apply in two requests to also exercise a non-empty starting state.
            let (first, second) = entries.split_at(entries.len() / 2);
            for part in [first, second] {
                let request = delta(part.iter().map(|(n, remove, replace, list)| Peer {
                    remove: *remove,
                    replace_allowed_ips: *replace,
                    allowed_ips: list.clone(),
                    ..Peer::new(key(*n))
                }).collect());
                apply(&mut ours, &request);
                reference_apply(&mut reference, part);
            }
            let ours: Vec<(u8, Vec<Prefix>)> = ours.peers.iter()
                .map(|p| (p.public_key.as_bytes()[0], p.allowed_ips.iter().map(AllowedIp::prefix).collect()))
                .collect();
            prop_assert_eq!(ours, reference);
        }
    }
}
