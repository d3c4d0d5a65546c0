//! An in-process simulated network (natlab-style) on a virtual clock: hosts behind NATs of
//! several behaviours, a relay on the public side, and the traversal engines of two peers.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use crate::engine::{Incoming, Nat, NatEvent, Path, REGISTER_INTERVAL};
use crate::relay::{Relay, RelayConfig};
use crate::wire;

const STEP: Duration = Duration::from_millis(50);
const LATENCY: Duration = Duration::from_millis(20);
const EPOCH: Duration = Duration::from_secs(1_800_000_000);

/// NAT behaviours (RFC 4787).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// No NAT: the host's address is public.
    Public,
    /// Endpoint-independent mapping and filtering.
    FullCone,
    /// Endpoint-independent mapping, address-and-port-dependent filtering (Linux default).
    PortRestricted,
    /// Address-and-port-dependent mapping (a new port per destination) and filtering.
    Symmetric,
}

#[derive(Debug)]
struct NatBox {
    kind: Kind,
    public: IpAddr,
    next_port: u16,
    /// (internal, destination or None for EIM) → external port.
    out: HashMap<(SocketAddr, Option<SocketAddr>), u16>,
    /// external port → (internal, destinations it sent to).
    back: HashMap<u16, (SocketAddr, Vec<SocketAddr>)>,
    /// Drop everything (a dead path).
    blackhole: bool,
}

impl NatBox {
    fn new(kind: Kind, public: IpAddr) -> Self {
        NatBox {
            kind,
            public,
            next_port: 40000,
            out: HashMap::new(),
            back: HashMap::new(),
            blackhole: false,
        }
    }

    fn outbound(&mut self, src: SocketAddr, dst: SocketAddr) -> Option<SocketAddr> {
        if self.blackhole {
            return None;
        }
        if self.kind == Kind::Public {
            return Some(src);
        }
        let key = (src, (self.kind == Kind::Symmetric).then_some(dst));
        let port = match self.out.get(&key) {
            Some(p) => *p,
            None => {
                let p = self.next_port;
                // Symmetric NATs pick unpredictable ports.
                self.next_port += if self.kind == Kind::Symmetric { 7 } else { 1 };
                self.out.insert(key, p);
                p
            }
        };
        let entry = self.back.entry(port).or_insert((src, Vec::new()));
        if !entry.1.contains(&dst) {
            entry.1.push(dst);
        }
        Some(SocketAddr::new(self.public, port))
    }

    fn inbound(&mut self, from: SocketAddr, dst: SocketAddr) -> Option<SocketAddr> {
        if self.blackhole {
            return None;
        }
        if self.kind == Kind::Public {
            return Some(dst);
        }
        let (internal, sent_to) = self.back.get(&dst.port())?;
        match self.kind {
            Kind::FullCone => Some(*internal),
            _ => sent_to.contains(&from).then_some(*internal),
        }
    }

    /// Conntrack flush: every mapping forgotten, new ports from now on.
    fn flush(&mut self) {
        self.out.clear();
        self.back.clear();
        self.next_port += 1000;
    }
}

struct Host {
    nat: Nat,
    addr: SocketAddr,
    router: usize,
    paths: Vec<Path>,
    delivered: Vec<Vec<u8>>,
}

struct Lab {
    now: Instant,
    wall: Duration,
    relay: Relay,
    relay_addr: SocketAddr,
    routers: Vec<NatBox>,
    hosts: Vec<Host>,
    /// (deliver at, from (public), to (public), bytes)
    wire: Vec<(Instant, SocketAddr, SocketAddr, Vec<u8>)>,
    /// Packets the relay forwarded to each public address.
    relay_sent: Vec<(SocketAddr, Vec<u8>)>,
}

fn key(n: u8) -> [u8; 32] {
    [n; 32]
}

impl Lab {
    fn new(a: Kind, b: Kind) -> Lab {
        Self::with_config(a, b, RelayConfig::default())
    }

    fn with_config(a: Kind, b: Kind, config: RelayConfig) -> Lab {
        let now = Instant::now();
        let relay_addr: SocketAddr = "203.0.113.10:3478".parse().unwrap();
        let relay = Relay::new(key(9), config, [7; 32], now, EPOCH);
        let relay_pub = *relay.public_key();
        let routers = vec![
            NatBox::new(a, IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1))),
            NatBox::new(b, IpAddr::V4(Ipv4Addr::new(203, 0, 113, 2))),
        ];
        let pubs = [wire::public_key(&key(1)), wire::public_key(&key(2))];
        let mut hosts = Vec::new();
        for (i, kind) in [a, b].into_iter().enumerate() {
            let addr = if kind == Kind::Public {
                SocketAddr::new(routers[i].public, 51820)
            } else {
                SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, i as u8 + 1, 0, 2)), 51820)
            };
            let mut nat = Nat::new(key(i as u8 + 1), [i as u8; 32], EPOCH);
            nat.set_relay(now, Some((relay_addr, relay_pub)));
            nat.set_peers(now, &[pubs[1 - i]]);
            nat.set_local_addresses(vec![addr]);
            hosts.push(Host {
                nat,
                addr,
                router: i,
                paths: Vec::new(),
                delivered: Vec::new(),
            });
        }
        Lab {
            now,
            wall: EPOCH,
            relay,
            relay_addr,
            routers,
            hosts,
            wire: Vec::new(),
            relay_sent: Vec::new(),
        }
    }

    fn public_key(&self, host: usize) -> [u8; 32] {
        *self.hosts[host].nat.public_key()
    }

    fn path(&self, host: usize) -> Path {
        let other = self.public_key(1 - host);
        self.hosts[host].nat.status(&other).unwrap().path
    }

    /// Sends from host `h` to `dst` (through its NAT).
    fn send_from_host(&mut self, h: usize, dst: SocketAddr, bytes: Vec<u8>) {
        let src = self.hosts[h].addr;
        let router = self.hosts[h].router;
        if let IpAddr::V4(ip) = dst.ip() {
            if ip.is_private() {
                // Only reachable on the same LAN, without NAT.
                if self
                    .hosts
                    .iter()
                    .any(|o| o.addr == dst && o.router == router)
                {
                    self.wire.push((self.now + LATENCY, src, dst, bytes));
                }
                return;
            }
        }
        if let Some(public_src) = self.routers[router].outbound(src, dst) {
            self.wire.push((self.now + LATENCY, public_src, dst, bytes));
        }
    }

    /// Injects a datagram as if from `from` (an attacker on the public side).
    fn inject(&mut self, from: SocketAddr, to: SocketAddr, bytes: Vec<u8>) {
        self.wire.push((self.now, from, to, bytes));
    }

    fn flush_outputs(&mut self) {
        for h in 0..self.hosts.len() {
            while let Some((dst, bytes)) = self.hosts[h].nat.poll_transmit() {
                self.send_from_host(h, dst, bytes);
            }
            while let Some(NatEvent::PathChanged { path, .. }) = self.hosts[h].nat.poll_event() {
                self.hosts[h].paths.push(path);
            }
        }
        while let Some((dst, bytes)) = self.relay.poll_transmit() {
            self.wire
                .push((self.now + LATENCY, self.relay_addr, dst, bytes));
        }
    }

    fn deliver(&mut self) {
        let due: Vec<_>;
        (due, self.wire) = std::mem::take(&mut self.wire)
            .into_iter()
            .partition(|(at, ..)| *at <= self.now);
        for (_, from, to, bytes) in due {
            if to == self.relay_addr {
                if let Some(dst) = self.relay.handle_datagram(self.now, from, &bytes) {
                    self.relay_sent.push((dst, bytes.clone()));
                    self.wire
                        .push((self.now + LATENCY, self.relay_addr, dst, bytes));
                }
                continue;
            }
            // On a LAN: straight to the host. Else through the NAT owning the address.
            let internal = match self.hosts.iter().position(|h| h.addr == to) {
                Some(_) => to,
                None => {
                    let Some(router) = self.routers.iter().position(|r| r.public == to.ip()) else {
                        continue;
                    };
                    let Some(internal) = self.routers[router].inbound(from, to) else {
                        continue;
                    };
                    internal
                }
            };
            let Some(h) = self.hosts.iter().position(|h| h.addr == internal) else {
                continue;
            };
            let now = self.now;
            if let Incoming::Deliver { packet, .. } =
                self.hosts[h].nat.handle_datagram(now, from, &bytes)
            {
                let packet = packet.to_vec();
                self.hosts[h].delivered.push(packet);
            }
        }
    }

    fn run(&mut self, duration: Duration) {
        let end = self.now + duration;
        while self.now < end {
            self.now += STEP;
            self.wall += STEP;
            self.relay.set_wall_clock(self.wall);
            if self.relay.poll_timeout().is_some_and(|t| t <= self.now) {
                self.relay.handle_timeout(self.now);
            }
            for host in &mut self.hosts {
                host.nat.set_wall_clock(self.wall);
                if host.nat.poll_timeout().is_some_and(|t| t <= self.now) {
                    host.nat.handle_timeout(self.now);
                }
            }
            self.flush_outputs();
            self.deliver();
            self.flush_outputs();
        }
    }

    /// Sends a WireGuard-like packet from host `h` to the other one through the relay.
    fn send_relayed(&mut self, h: usize, payload: &[u8]) -> bool {
        let other = self.public_key(1 - h);
        let Some((relay, header)) = self.hosts[h].nat.relay_header(&other) else {
            return false;
        };
        let mut bytes = header.to_vec();
        bytes.extend_from_slice(payload);
        self.send_from_host(h, relay, bytes);
        true
    }
}

#[test]
fn test_relay_first_then_direct_between_eim_nats() {
    let mut lab = Lab::new(Kind::PortRestricted, Kind::PortRestricted);
    lab.run(Duration::from_millis(200));
    // The relay session exists after one round trip: relayed at once.
    assert_eq!(lab.hosts[0].paths.first(), Some(&Path::Relay));
    assert!(lab.send_relayed(0, b"\x01\x00\x00\x00first packet"));
    lab.run(Duration::from_millis(100));
    assert_eq!(
        lab.hosts[1].delivered,
        vec![b"\x01\x00\x00\x00first packet".to_vec()]
    );
    lab.run(Duration::from_secs(3));
    assert!(matches!(lab.path(0), Path::Direct(a) if a.ip() == lab.routers[1].public));
    assert!(matches!(lab.path(1), Path::Direct(a) if a.ip() == lab.routers[0].public));
    // Keepalives hold it.
    lab.run(Duration::from_secs(120));
    assert!(matches!(lab.path(0), Path::Direct(_)));
    assert_eq!(lab.hosts[0].paths.len(), 2, "{:?}", lab.hosts[0].paths);
}

#[test]
fn test_same_lan_is_a_lan_path() {
    // Both behind one NAT without hairpinning: only the host candidates work.
    let mut lab = Lab::new(Kind::Symmetric, Kind::Symmetric);
    lab.hosts[1].router = 0;
    lab.hosts[1].addr = "10.1.0.3:51820".parse().unwrap();
    lab.hosts[1]
        .nat
        .set_local_addresses(vec!["10.1.0.3:51820".parse().unwrap()]);
    lab.run(Duration::from_secs(5));
    assert_eq!(lab.path(0), Path::Lan("10.1.0.3:51820".parse().unwrap()));
    assert_eq!(lab.path(1), Path::Lan("10.1.0.2:51820".parse().unwrap()));
}

#[test]
fn test_full_cone_and_symmetric_go_direct() {
    let mut lab = Lab::new(Kind::FullCone, Kind::Symmetric);
    lab.run(Duration::from_secs(5));
    assert!(
        matches!(lab.path(0), Path::Direct(_)),
        "{:?}",
        lab.hosts[0].paths
    );
    assert!(
        matches!(lab.path(1), Path::Direct(_)),
        "{:?}",
        lab.hosts[1].paths
    );
}

#[test]
fn test_public_and_port_restricted_go_direct() {
    let mut lab = Lab::new(Kind::Public, Kind::PortRestricted);
    lab.run(Duration::from_secs(5));
    assert!(matches!(lab.path(0), Path::Direct(_)));
    assert!(matches!(lab.path(1), Path::Direct(_)));
}

#[test]
fn test_symmetric_pairs_stay_relayed() {
    for (a, b) in [
        (Kind::Symmetric, Kind::Symmetric),
        (Kind::PortRestricted, Kind::Symmetric),
    ] {
        let mut lab = Lab::new(a, b);
        lab.run(Duration::from_secs(60));
        assert_eq!(lab.path(0), Path::Relay, "{a:?} x {b:?}");
        assert_eq!(lab.path(1), Path::Relay, "{a:?} x {b:?}");
        assert_eq!(lab.hosts[0].paths, vec![Path::Relay]);
        // Data flows through the relay both ways.
        assert!(lab.send_relayed(0, b"ab") && lab.send_relayed(1, b"ba"));
        lab.run(Duration::from_millis(100));
        assert_eq!(lab.hosts[1].delivered, vec![b"ab".to_vec()]);
        assert_eq!(lab.hosts[0].delivered, vec![b"ba".to_vec()]);
    }
}

#[test]
fn test_back_to_relay_when_direct_dies_and_recovery_after_flush() {
    let mut lab = Lab::new(Kind::PortRestricted, Kind::PortRestricted);
    lab.run(Duration::from_secs(4));
    assert!(matches!(lab.path(0), Path::Direct(_)));
    // The direct path dies (UDP between the NATs blocked), the relay still works.
    let relay = lab.relay_addr;
    lab.routers[1].blackhole = true;
    lab.run(Duration::from_secs(1));
    lab.routers[1].blackhole = false;
    // Block only direct traffic: forget B's mappings toward A so A's packets are filtered, and
    // keep B from sending anywhere but the relay by flushing A's side.
    let direct_b = match lab.path(0) {
        Path::Direct(a) => a,
        other => panic!("{other:?}"),
    };
    let _ = (relay, direct_b);
    lab.routers[0].flush();
    lab.routers[1].flush();
    // Until they re-probe, the old direct addresses are dead: both fall back to the relay
    // within the direct timeout, then find the new mappings and go direct again.
    lab.run(Duration::from_secs(20));
    assert!(
        lab.hosts[0].paths.contains(&Path::Relay),
        "{:?}",
        lab.hosts[0].paths
    );
    lab.run(Duration::from_secs(40));
    assert!(
        matches!(lab.path(0), Path::Direct(a) if a.port() >= 41000),
        "{:?}",
        lab.hosts[0].paths
    );
    assert!(
        matches!(lab.path(1), Path::Direct(a) if a.port() >= 41000),
        "{:?}",
        lab.hosts[1].paths
    );
}

#[test]
fn test_direct_dies_for_good_falls_back_to_relay() {
    let mut lab = Lab::new(Kind::PortRestricted, Kind::PortRestricted);
    lab.run(Duration::from_secs(4));
    assert!(matches!(lab.path(0), Path::Direct(_)));
    // From now on the NATs filter each other out: only the relay passes.
    let relay = lab.relay_addr;
    for r in &mut lab.routers {
        for (_, sent) in r.back.values_mut() {
            sent.retain(|d| *d == relay);
        }
        r.kind = Kind::Symmetric;
    }
    lab.run(Duration::from_secs(60));
    assert_eq!(lab.path(0), Path::Relay, "{:?}", lab.hosts[0].paths);
    assert_eq!(lab.path(1), Path::Relay);
    assert!(lab.send_relayed(0, b"still"));
    lab.run(Duration::from_millis(100));
    assert_eq!(lab.hosts[1].delivered, vec![b"still".to_vec()]);
}

#[test]
fn test_forged_and_replayed_messages_change_nothing() {
    let mut lab = Lab::new(Kind::Symmetric, Kind::Symmetric);
    lab.run(Duration::from_secs(2));
    assert_eq!(lab.path(0), Path::Relay);
    let attacker: SocketAddr = "198.51.100.66:666".parse().unwrap();
    let victim = SocketAddr::new(lab.routers[0].public, 40000);
    let b = lab.public_key(1);
    let a = lab.public_key(0);
    // Forged pongs and candidates claiming to be B, sealed with a wrong key.
    let wrong = wire::SealKey::peer(&[1; 32], &b, &a);
    for payload in [
        crate::msg::PeerMsg::Pong {
            txid: 1,
            observed: attacker,
        },
        crate::msg::PeerMsg::Candidates {
            reply: false,
            candidates: vec![(crate::msg::CandidateKind::Reflexive, attacker)],
        },
        crate::msg::PeerMsg::Ping { txid: 5 },
    ] {
        let c = wire::Counter::default().next(lab.wall);
        let forged = wire::seal_from(wire::KIND_PEER, &wrong, &b, c, &payload.encode());
        lab.inject(attacker, victim, forged);
    }
    // Replays: capture what B sent to A's public address (pings, pongs) and the relay's
    // messages, and send them again from the attacker and from the original sources.
    let captured: Vec<_> = lab.wire.clone();
    lab.run(Duration::from_millis(100));
    for (_, from, to, bytes) in captured {
        lab.inject(attacker, to, bytes.clone());
        lab.inject(from, to, bytes);
    }
    let before = lab.hosts[0].paths.clone();
    lab.run(Duration::from_secs(30));
    assert_eq!(lab.hosts[0].paths, before);
    assert_eq!(lab.path(0), Path::Relay);
    assert_eq!(lab.path(1), Path::Relay);
    // Nothing was ever sent to the attacker.
    assert!(lab.relay_sent.iter().all(|(d, _)| *d != attacker));
}

#[test]
fn test_relay_forwards_only_between_peers_that_asked() {
    let mut lab = Lab::new(Kind::Symmetric, Kind::Symmetric);
    // A third peer C registers and names A, but A never named C.
    let now = lab.now;
    let c_addr: SocketAddr = "198.51.100.3:5000".parse().unwrap();
    let mut c = Nat::new(key(3), [3; 32], EPOCH);
    c.set_relay(now, Some((lab.relay_addr, *lab.relay.public_key())));
    c.set_peers(now, &[lab.public_key(0)]);
    c.handle_timeout(now);
    while let Some((_, bytes)) = c.poll_transmit() {
        assert!(lab.relay.handle_datagram(now, c_addr, &bytes).is_none());
    }
    lab.run(Duration::from_secs(2));
    assert_eq!(lab.relay.sessions().count(), 1, "only A-B");
    // C's Registered reply names no session.
    let mut reply = None;
    while let Some((dst, bytes)) = lab.relay.poll_transmit() {
        if dst == c_addr {
            reply = Some(bytes);
        }
    }
    let _ = reply;
    assert!(c.relay_header(&lab.public_key(0)).is_none());
    // C guesses session ids and sends from its own address, and from an address it spoofs:
    // nothing reaches A or B.
    let ab = lab.hosts[0].nat.relay_header(&lab.public_key(1)).unwrap().1;
    for (from, header) in [
        (c_addr, wire::data_header(1)),
        (c_addr, ab),
        ("198.51.100.4:1".parse().unwrap(), ab),
    ] {
        let mut bytes = header.to_vec();
        bytes.extend_from_slice(b"evil");
        assert_eq!(lab.relay.handle_datagram(lab.now, from, &bytes), None);
    }
    // Unauthenticated control traffic, also with C's key claimed, is dropped.
    let forged = wire::seal_from(
        wire::KIND_TO_RELAY,
        &wire::SealKey::to_relay(&[0; 32], &key(3), &key(9)),
        &wire::public_key(&key(3)),
        wire::Counter::default().next(lab.wall),
        &crate::msg::ToRelay::Register { wants: vec![] }.encode(),
    );
    let before = *lab.relay.counters();
    lab.relay.handle_datagram(lab.now, c_addr, &forged);
    lab.relay
        .handle_datagram(lab.now, c_addr, b"\xeeWNT\x01garbage");
    assert_eq!(lab.relay.counters().dropped_auth, before.dropped_auth + 1);
    assert_eq!(lab.relay.counters().dropped_cheap, before.dropped_cheap + 1);
    lab.run(Duration::from_millis(200));
    assert!(lab.hosts[0].delivered.is_empty() && lab.hosts[1].delivered.is_empty());
}

#[test]
fn test_allow_list_and_session_limit() {
    let config = RelayConfig {
        allow: Some([wire::public_key(&key(1))].into_iter().collect()),
        ..RelayConfig::default()
    };
    let mut lab = Lab::with_config(Kind::Public, Kind::Public, config);
    lab.run(Duration::from_secs(5));
    // B is not allowed: no session, no relay path, and B hears nothing from the relay.
    assert_eq!(lab.relay.sessions().count(), 0);
    assert_eq!(lab.path(1), Path::None);
    assert_eq!(lab.relay.registered().count(), 1);
}

#[test]
fn test_relayed_path_recovers_after_rebinding() {
    let mut lab = Lab::new(Kind::Symmetric, Kind::Symmetric);
    lab.run(Duration::from_secs(2));
    assert_eq!(lab.path(0), Path::Relay);
    // A's NAT forgets its mappings: the relay still knows the old one until A registers again
    // (at most one registration interval later), then data flows both ways again.
    lab.routers[0].flush();
    lab.run(REGISTER_INTERVAL + Duration::from_secs(1));
    assert!(lab.send_relayed(0, b"ab") && lab.send_relayed(1, b"ba"));
    lab.run(Duration::from_millis(100));
    assert_eq!(lab.hosts[1].delivered, vec![b"ab".to_vec()]);
    assert_eq!(lab.hosts[0].delivered, vec![b"ba".to_vec()]);
    assert_eq!(lab.path(0), Path::Relay);
}
