//! NAT traversal in the daemon: the I/O glue between the [`wg_nat::Nat`] engine, the
//! protocol and the tunnel's own UDP socket.
//!
//! * Configuration: the extension keys `relay=IP:PORT` and `relay_public_key=HEX` of a UAPI
//!   `set` (see [`crate::uapi_server`]); with a relay and a private key, every peer without a
//!   configured endpoint is traversed. Peers with a configured endpoint are left alone: they
//!   never receive a control message.
//! * Receive: control datagrams (our magic; the demux checked the WireGuard header first) go
//!   to the engine; relayed WireGuard messages come back out and are handed to the protocol
//!   as if from the peer's *virtual endpoint* (an address of 100::/64), or from the direct
//!   address while the path is direct, so the protocol's roaming does not undo the choice.
//! * Send: the protocol sends a relayed peer's messages to its virtual endpoint; before they
//!   leave, [`NatLink::wrap`] puts the relay header in front and sends them to the relay.
//! * Path changes set the peer's endpoint in the protocol: the direct address, or the
//!   virtual endpoint (relay).
//! * Status: [`NatLink::report`] answers the `get=nat` extension operation (`wg show wg0
//!   paths`).

use std::collections::HashSet;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use wg_config::key::Key;
use wg_config::{Device, Endpoint};
use wg_nat::{Incoming, Nat, NatEvent, Path};
use wg_proto::{Transmit, Tunnel};

use crate::log::{debug, info};

/// The relay of an interface: where it is and its public key.
pub type RelayConfig = (SocketAddr, [u8; 32]);

/// How often the local (host-candidate) address is looked up again.
const LOCAL_SCAN: Duration = Duration::from_secs(30);

/// The traversal state of an interface.
#[derive(Debug, Default)]
pub struct NatLink {
    relay: Option<RelayConfig>,
    engine: Option<Nat>,
    /// The private key the engine was made with.
    key: Option<[u8; 32]>,
    port: u16,
    next_scan: Option<Instant>,
    /// Peers added without an endpoint and not given one since.
    traversed: HashSet<[u8; 32]>,
}

impl NatLink {
    /// The configured relay.
    pub fn relay(&self) -> Option<RelayConfig> {
        self.relay
    }

    /// Sets the relay (extension configuration).
    pub fn set_relay(&mut self, relay: Option<RelayConfig>) {
        // The next reconcile hands a changed relay to the engine, which keeps its peers.
        self.relay = relay;
    }

    /// Whether `peer` is traversed now (a relay, a key, and no configured endpoint).
    pub fn traverses(&self, peer: &[u8; 32]) -> bool {
        self.engine.is_some() && self.traversed.contains(peer)
    }

    /// Notes which peers a `set` delta configured an endpoint for (those are never
    /// traversed) and which it added without one (those are); `old` is the model before it.
    pub fn note_delta(&mut self, old: &Device, delta: &Device) {
        for peer in &delta.peers {
            let key = *peer.public_key.as_bytes();
            if peer.remove || peer.endpoint.is_some() {
                self.traversed.remove(&key);
            } else if !old.peers.iter().any(|p| p.public_key == peer.public_key) {
                self.traversed.insert(key);
            }
        }
    }

    /// Brings the engine in line with the model: our key, the relay, the traversed peers
    /// (added without an endpoint, and still without a configured one).
    pub fn reconcile(
        &mut self,
        ifname: &str,
        now: Instant,
        since_epoch: Duration,
        model: &Device,
        tunnel: Option<&mut Tunnel>,
    ) {
        let live: HashSet<[u8; 32]> = model
            .peers
            .iter()
            .map(|p| *p.public_key.as_bytes())
            .collect();
        self.traversed.retain(|k| live.contains(k));
        let key = model.private_key.as_ref().map(|k| *k.as_bytes());
        let Some(tunnel) = tunnel else {
            self.engine = None;
            self.key = None;
            return;
        };
        let (Some(key), Some(relay)) = (key, self.relay) else {
            if self.engine.take().is_some() {
                info!(ifname, "NAT traversal off");
                clear_virtual(tunnel, model);
            }
            self.key = None;
            return;
        };
        if self.key != Some(key) || self.engine.is_none() {
            let mut seed = [0u8; 32];
            if getrandom::getrandom(&mut seed).is_err() {
                return;
            }
            info!(ifname, "NAT traversal through relay {}", relay.0);
            // Peers of an old engine fall back to whatever the protocol knows.
            clear_virtual(tunnel, model);
            self.engine = Some(Nat::new(key, seed, since_epoch));
            self.key = Some(key);
            self.next_scan = None;
        }
        let engine = self.engine.as_mut().expect("just made");
        engine.set_wall_clock(since_epoch);
        engine.set_relay(now, Some(relay));
        let traversed: Vec<[u8; 32]> = self.traversed.iter().copied().collect();
        engine.set_peers(now, &traversed);
        // A peer no longer traversed keeps no virtual endpoint.
        for peer in &model.peers {
            if !self.traversed.contains(peer.public_key.as_bytes()) {
                if let Some(p) = tunnel
                    .peer_id(peer.public_key.as_bytes())
                    .and_then(|id| tunnel.peer_mut(id))
                {
                    if p.endpoint().is_some_and(|e| Nat::is_virtual(&e)) {
                        p.set_endpoint(peer.endpoint.as_ref().and_then(Endpoint::socket_addr));
                    }
                }
            }
        }
        if let Some(port) = model.listen_port {
            if port != self.port {
                self.port = port;
                self.next_scan = None;
            }
        }
        self.apply_events(ifname, tunnel);
    }

    /// A datagram that is not WireGuard: `false` if it is not ours either (not a control
    /// message), for the next consumer.
    pub fn on_datagram(
        &mut self,
        ifname: &str,
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
        tunnel: Option<&mut Tunnel>,
    ) -> bool {
        if !wg_nat::wire::is_control(datagram) {
            return false;
        }
        let (Some(engine), Some(tunnel)) = (self.engine.as_mut(), tunnel) else {
            return true;
        };
        match engine.handle_datagram(now, from, datagram) {
            Incoming::Deliver { peer, packet } => {
                if let Some(src) = engine.inbound_source(&peer) {
                    tunnel.handle_incoming(now, src, packet);
                }
            }
            Incoming::Consumed => {}
            Incoming::Dropped => debug!(ifname, "dropped a control datagram from {from}"),
        }
        self.apply_events(ifname, tunnel);
        true
    }

    /// The next deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.engine.as_ref().and_then(Nat::poll_timeout)
    }

    /// Runs due timers.
    pub fn handle_timeout(
        &mut self,
        ifname: &str,
        now: Instant,
        since_epoch: Duration,
        tunnel: Option<&mut Tunnel>,
    ) {
        let (Some(engine), Some(tunnel)) = (self.engine.as_mut(), tunnel) else {
            return;
        };
        engine.set_wall_clock(since_epoch);
        if self.next_scan.map_or(true, |t| t <= now) {
            self.next_scan = Some(now + LOCAL_SCAN);
            let local = engine
                .relay_addr()
                .and_then(|relay| local_address(relay, self.port));
            engine.set_local_addresses(local.into_iter().collect());
        }
        if engine.poll_timeout().is_some_and(|t| t <= now) {
            engine.handle_timeout(now);
        }
        self.apply_events(ifname, tunnel);
    }

    fn apply_events(&mut self, ifname: &str, tunnel: &mut Tunnel) {
        let Some(engine) = self.engine.as_mut() else {
            return;
        };
        while let Some(NatEvent::PathChanged { peer, path }) = engine.poll_event() {
            let endpoint = match path {
                Path::Direct(a) | Path::Lan(a) => Some(a),
                Path::Relay => engine.virtual_endpoint(&peer),
                Path::None => None,
            };
            info!(
                ifname,
                "peer {} path: {path}",
                wg_config::PublicKey::from_bytes(peer)
            );
            let Some(id) = tunnel.peer_id(&peer) else {
                continue;
            };
            if let Some(p) = tunnel.peer_mut(id) {
                match endpoint {
                    Some(e) => p.set_endpoint(Some(e)),
                    // No path: forget only a virtual endpoint; a learned one stays.
                    None if p.endpoint().is_some_and(|e| Nat::is_virtual(&e)) => {
                        p.set_endpoint(None)
                    }
                    None => {}
                }
            }
        }
    }

    /// The next control datagram to send, copied into `buf`.
    pub fn poll_transmit(&mut self, buf: &mut [u8]) -> Option<Transmit> {
        let engine = self.engine.as_mut()?;
        loop {
            let (dst, bytes) = engine.poll_transmit()?;
            if bytes.len() <= buf.len() {
                buf[..bytes.len()].copy_from_slice(&bytes);
                return Some(Transmit {
                    dst,
                    len: bytes.len(),
                });
            }
        }
    }

    /// A protocol datagram about to be sent: if it goes to a virtual endpoint, puts the relay
    /// header in front (in place, in `slot`) and returns the relay's address and the new
    /// length; `None` (drop it) when there is no relay session any more.
    pub fn wrap(&self, slot: &mut [u8], transmit: Transmit) -> Option<Transmit> {
        if !Nat::is_virtual(&transmit.dst) {
            return Some(transmit);
        }
        let engine = self.engine.as_ref()?;
        let peer = engine.peer_for_virtual(&transmit.dst)?;
        let (relay, header) = engine.relay_header(&peer)?;
        let len = transmit.len + header.len();
        if len > slot.len() {
            return None;
        }
        slot.copy_within(..transmit.len, header.len());
        slot[..header.len()].copy_from_slice(&header);
        Some(Transmit { dst: relay, len })
    }

    /// The `get=nat` reply body (without `errno`): the relay, our reflexive address, and per
    /// traversed peer its path and since when (seconds ago).
    pub fn report(&self, now: Instant, model: &Device) -> String {
        let mut out = String::new();
        if let Some((addr, key)) = self.relay {
            out.push_str(&format!("relay={}\n", Endpoint::from(addr)));
            out.push_str(&format!(
                "relay_public_key={}\n",
                wg_config::PublicKey::from_bytes(key).to_hex()
            ));
        }
        let Some(engine) = &self.engine else {
            return out;
        };
        if let Some(addr) = engine.reflexive() {
            out.push_str(&format!("reflexive_endpoint={}\n", Endpoint::from(addr)));
        }
        for peer in &model.peers {
            let Some(status) = engine.status(peer.public_key.as_bytes()) else {
                continue;
            };
            out.push_str(&format!("public_key={}\n", peer.public_key.to_hex()));
            let (kind, addr) = match status.path {
                Path::None => ("none", None),
                Path::Relay => ("relay", None),
                Path::Direct(a) => ("direct", Some(a)),
                Path::Lan(a) => ("lan", Some(a)),
            };
            out.push_str(&format!("path={kind}\n"));
            if let Some(a) = addr {
                out.push_str(&format!("path_endpoint={}\n", Endpoint::from(a)));
            }
            out.push_str(&format!(
                "path_age={}\n",
                now.saturating_duration_since(status.since).as_secs()
            ));
        }
        out
    }
}

/// Forgets every virtual endpoint (the relay is gone).
fn clear_virtual(tunnel: &mut Tunnel, model: &Device) {
    for peer in &model.peers {
        if let Some(p) = tunnel
            .peer_id(peer.public_key.as_bytes())
            .and_then(|id| tunnel.peer_mut(id))
        {
            if p.endpoint().is_some_and(|e| Nat::is_virtual(&e)) {
                p.set_endpoint(None);
            }
        }
    }
}

/// Our address toward the relay (the host candidate): the source address the routing table
/// picks, with the tunnel's port. No packet is sent.
fn local_address(relay: SocketAddr, port: u16) -> Option<SocketAddr> {
    let any: SocketAddr = if relay.is_ipv4() {
        "0.0.0.0:0".parse().ok()?
    } else {
        "[::]:0".parse().ok()?
    };
    let probe = UdpSocket::bind(any).ok()?;
    probe.connect(relay).ok()?;
    let mut local = probe.local_addr().ok()?;
    local.set_port(port);
    Some(local)
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, UdpSocket};
    use std::time::{Duration, Instant};

    use wg_config::key::Key;
    use wg_config::uapi::{Request, RequestParser};
    use wg_config::{Device, PrivateKey};

    use crate::batch::Batch;
    use crate::demux::is_wireguard;
    use crate::device::Interface;

    fn set(iface: &mut Interface, body: &str) {
        let mut parser = RequestParser::new();
        parser.line("set=1").unwrap();
        for line in body.lines() {
            assert_eq!(parser.line(line).unwrap(), None, "{line}");
        }
        let Some(Request::Set(delta)) = parser.line("").unwrap() else {
            panic!("not a set");
        };
        let delta: Device = delta;
        iface
            .set(Instant::now(), Duration::from_secs(1_800_000_000), &delta)
            .unwrap();
    }

    fn drain(socket: &UdpSocket) -> Vec<Vec<u8>> {
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 2048];
        while let Ok((len, _)) = socket.recv_from(&mut buf) {
            got.push(buf[..len].to_vec());
        }
        got
    }

    #[test]
    fn test_only_peers_without_endpoint_are_traversed() {
        let relay = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let stock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let relay_key = PrivateKey::from_random([9; 32]).public_key();
        let stock_key = PrivateKey::from_random([2; 32]).public_key();
        let nat_key = PrivateKey::from_random([3; 32]).public_key();
        let mut iface = Interface::new("t0").unwrap();
        iface.set_link_up(Instant::now(), true);
        set(
            &mut iface,
            &format!(
                "private_key={}\npublic_key={}\nendpoint={}\npersistent_keepalive_interval=1\n\
                 allowed_ip=10.1.0.0/16\npublic_key={}\nallowed_ip=10.2.0.0/16",
                "a0".repeat(32),
                stock_key.to_hex(),
                stock.local_addr().unwrap(),
                nat_key.to_hex()
            ),
        );
        let now = Instant::now();
        iface.set_relay(
            now,
            Duration::from_secs(1_800_000_000),
            Some((relay.local_addr().unwrap(), *relay_key.as_bytes())),
        );
        let report = iface.nat_report(now);
        assert!(
            report.contains(&format!("public_key={}\npath=none\n", nat_key.to_hex())),
            "{report}"
        );
        assert!(!report.contains(&stock_key.to_hex()), "{report}");
        iface.handle_timeout(now);
        let mut out = Batch::new(8, 2048);
        iface.flush_datagrams(&mut out);
        // The relay got a registration (ours: magic first), the stock peer only WireGuard.
        let at_relay = drain(&relay);
        assert!(!at_relay.is_empty());
        assert!(at_relay.iter().all(|d| wg_nat::wire::is_control(d)));
        let at_stock = drain(&stock);
        assert!(!at_stock.is_empty(), "the keepalive's handshake");
        assert!(at_stock.iter().all(|d| is_wireguard(d)), "{at_stock:?}");
        // Giving the traversed peer an endpoint takes it out of traversal.
        set(
            &mut iface,
            &format!("public_key={}\nendpoint=127.0.0.1:9", nat_key.to_hex()),
        );
        assert!(!iface.nat_report(now).contains(&nat_key.to_hex()));
        // Without a relay, traversal is off.
        iface.set_relay(now, Duration::from_secs(1_800_000_000), None);
        assert_eq!(iface.nat_report(now), "");
    }
}
