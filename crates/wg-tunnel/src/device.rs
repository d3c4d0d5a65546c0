//! One interface's configuration and protocol state: the wg-config [`Device`] model (what
//! `get` reports and `set` changes), the wg-proto [`Tunnel`] that does the work, and the UDP
//! [`Bind`]. This module keeps the two in step; it never reads the clock (every entry point
//! takes `now` and the Unix time from the event loop).
//!
//! A `set` delta is folded into the model with [`wg_config::apply`] (the kernel's semantics),
//! then the tunnel is reconciled with the new model:
//! * a new or removed private key rebuilds the tunnel (sessions end, as in wireguard-go);
//! * removed peers are removed; new peers are added;
//! * a changed preshared key or keepalive re-creates that peer in the tunnel (wg-proto has no
//!   setter for them), carrying its byte counters and handshake time over;
//! * a changed endpoint is set on the peer;
//! * if any allowed IP changed, the routing table is rebuilt from the model.
//!
//! Statistics and learned (roaming) endpoints flow the other way: [`Interface::refresh`]
//! copies them from the tunnel into the model before every `get` and `set`.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use wg_config::key::Key;
use wg_config::{apply, Device, Endpoint, Peer, PublicKey};
use wg_proto::{AllowedIps, Event, PeerConfig, Tunnel};

use crate::bind::Bind;
use crate::log::{debug, error, info};
use crate::tun::Tun;

/// Statistics of a peer whose tunnel-side state was re-created.
#[derive(Debug, Clone, Copy, Default)]
struct Carried {
    rx_bytes: u64,
    tx_bytes: u64,
    last_handshake: Option<Duration>,
}

/// An interface: model, protocol state and UDP socket.
#[derive(Debug)]
pub struct Interface {
    ifname: String,
    model: Device,
    /// `None` while there is no private key: nothing can be sent or received.
    tunnel: Option<Tunnel>,
    bind: Bind,
    carried: HashMap<PublicKey, Carried>,
}

impl Interface {
    /// A fresh interface without keys or peers, listening on a random port.
    pub fn new(ifname: &str) -> std::io::Result<Interface> {
        let bind = Bind::new(0, 0)?;
        let model = Device {
            listen_port: Some(bind.port()),
            ..Device::default()
        };
        Ok(Interface {
            ifname: ifname.to_owned(),
            model,
            tunnel: None,
            bind,
            carried: HashMap::new(),
        })
    }

    /// The UDP socket.
    pub fn bind(&self) -> &Bind {
        &self.bind
    }

    /// The earliest protocol deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.tunnel.as_ref().and_then(Tunnel::poll_timeout)
    }

    /// Refreshes the wall-clock reading used for handshake timestamps.
    pub fn set_wall_clock(&mut self, now: Instant, since_epoch: Duration) {
        if let Some(tunnel) = &mut self.tunnel {
            tunnel.set_wall_clock(now, since_epoch);
        }
    }

    /// An IP packet from the TUN device.
    pub fn handle_outgoing(&mut self, now: Instant, packet: &[u8]) {
        if let Some(tunnel) = &mut self.tunnel {
            tunnel.handle_outgoing(now, packet);
        }
    }

    /// A UDP datagram.
    pub fn handle_incoming(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        if let Some(tunnel) = &mut self.tunnel {
            tunnel.handle_incoming(now, from, datagram);
        }
    }

    /// Runs due timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(tunnel) = &mut self.tunnel {
            if tunnel.poll_timeout().is_some_and(|t| t <= now) {
                tunnel.handle_timeout(now);
            }
        }
    }

    /// Sends every queued datagram and writes every delivered packet to `tun`. `buf` must
    /// hold the largest datagram.
    pub fn flush(&mut self, tun: &Tun, buf: &mut [u8]) {
        let Some(tunnel) = &mut self.tunnel else {
            return;
        };
        while let Some(transmit) = tunnel.poll_transmit(buf) {
            if let Err(e) = self.bind.send_to(&buf[..transmit.len], transmit.dst) {
                debug!(&self.ifname, "failed to send to {}: {e}", transmit.dst);
            }
        }
        while let Some(event) = tunnel.poll_event() {
            match event {
                Event::Deliver { packet, .. } => {
                    if let Err(e) = tun.send(packet) {
                        debug!(&self.ifname, "failed to write to TUN device: {e}");
                    }
                }
                Event::HandshakeComplete { peer } => {
                    debug!(&self.ifname, "handshake complete with peer {peer:?}");
                }
                _ => {}
            }
        }
    }

    /// Copies statistics and current endpoints from the tunnel into the model.
    pub fn refresh(&mut self) {
        for peer in &mut self.model.peers {
            let base = self
                .carried
                .get(&peer.public_key)
                .copied()
                .unwrap_or_default();
            let live = self.tunnel.as_ref().and_then(|t| {
                t.peer_id(peer.public_key.as_bytes())
                    .and_then(|id| t.peer(id))
            });
            peer.rx_bytes = base.rx_bytes + live.map_or(0, |p| p.rx_bytes());
            peer.tx_bytes = base.tx_bytes + live.map_or(0, |p| p.tx_bytes());
            peer.last_handshake = live
                .and_then(|p| p.last_handshake())
                .or(base.last_handshake);
            if let Some(endpoint) = live.and_then(|p| p.endpoint()) {
                peer.endpoint = Some(Endpoint::from(endpoint));
            }
        }
    }

    /// The model with fresh statistics (the `get` reply's content).
    pub fn get(&mut self) -> &Device {
        self.refresh();
        &self.model
    }

    /// Applies a `set` delta. Fails with `EADDRINUSE` when the new listen port or firewall
    /// mark cannot be applied (nothing else changes then), or `EIO` without OS randomness.
    pub fn set(&mut self, now: Instant, since_epoch: Duration, delta: &Device) -> Result<(), i32> {
        self.refresh();
        let fwmark = delta.fwmark.or(self.model.fwmark).unwrap_or(0);
        if let Some(port) = delta.listen_port {
            if port != self.bind.port() {
                self.bind = Bind::new(port, fwmark).map_err(|e| {
                    error!(&self.ifname, "failed to bind UDP port {port}: {e}");
                    libc::EADDRINUSE
                })?;
                info!(&self.ifname, "listening on UDP port {}", self.bind.port());
            }
        }
        if delta.fwmark.is_some() {
            self.bind.set_mark(fwmark).map_err(|e| {
                error!(&self.ifname, "failed to set fwmark {fwmark}: {e}");
                libc::EADDRINUSE
            })?;
        }
        let old = self.model.clone();
        apply(&mut self.model, delta);
        self.model.listen_port = Some(self.bind.port());
        self.reconcile(now, since_epoch, &old)
    }

    /// Brings the tunnel in line with the model after a change from `old`.
    fn reconcile(&mut self, now: Instant, since_epoch: Duration, old: &Device) -> Result<(), i32> {
        let live: HashSet<PublicKey> = self.model.peers.iter().map(|p| p.public_key).collect();
        self.carried.retain(|key, _| live.contains(key));

        if self.tunnel.is_none() || old.private_key != self.model.private_key {
            return self.rebuild(now, since_epoch, old);
        }
        // Checked just above: the tunnel exists.
        let Some(tunnel) = self.tunnel.as_mut() else {
            return Ok(());
        };
        let before: HashMap<PublicKey, &Peer> =
            old.peers.iter().map(|p| (p.public_key, p)).collect();
        for peer in &old.peers {
            if !live.contains(&peer.public_key) {
                tunnel.remove_peer(peer.public_key.as_bytes());
            }
        }
        let mut routes_changed = false;
        for peer in &self.model.peers {
            match before.get(&peer.public_key) {
                None => {
                    add_peer(&self.ifname, tunnel, now, peer);
                    routes_changed = true;
                }
                Some(prev)
                    if prev.preshared_key != peer.preshared_key
                        || prev.persistent_keepalive != peer.persistent_keepalive =>
                {
                    carry(&mut self.carried, tunnel, &peer.public_key);
                    tunnel.remove_peer(peer.public_key.as_bytes());
                    add_peer(&self.ifname, tunnel, now, peer);
                    routes_changed = true;
                }
                Some(prev) => {
                    if prev.endpoint != peer.endpoint {
                        let endpoint = peer.endpoint.as_ref().and_then(Endpoint::socket_addr);
                        if let Some(p) = tunnel
                            .peer_id(peer.public_key.as_bytes())
                            .and_then(|id| tunnel.peer_mut(id))
                        {
                            p.set_endpoint(endpoint);
                        }
                    }
                    routes_changed |= prev.allowed_ips != peer.allowed_ips;
                }
            }
        }
        if routes_changed {
            rebuild_routes(tunnel, &self.model);
        }
        Ok(())
    }

    /// Replaces the tunnel after a private key change, re-adding every peer.
    fn rebuild(&mut self, now: Instant, since_epoch: Duration, old: &Device) -> Result<(), i32> {
        if let Some(tunnel) = self.tunnel.take() {
            for peer in &old.peers {
                carry(&mut self.carried, &tunnel, &peer.public_key);
            }
        }
        let Some(key) = &self.model.private_key else {
            info!(&self.ifname, "private key removed: interface inactive");
            return Ok(());
        };
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed).map_err(|e| {
            error!(&self.ifname, "no OS randomness: {e}");
            libc::EIO
        })?;
        let mut tunnel = Tunnel::new(*key.as_bytes(), seed, now, since_epoch);
        tunnel.set_mtu(Some(crate::tun::DEFAULT_MTU as usize));
        for peer in &self.model.peers {
            add_peer(&self.ifname, &mut tunnel, now, peer);
        }
        self.tunnel = Some(tunnel);
        Ok(())
    }
}

/// Adds a model peer to the tunnel (logging, not failing: the model already excludes
/// duplicates and our own key).
fn add_peer(ifname: &str, tunnel: &mut Tunnel, now: Instant, peer: &Peer) {
    let config = PeerConfig {
        public_key: *peer.public_key.as_bytes(),
        preshared_key: peer.preshared_key.as_ref().map(|k| *k.as_bytes()),
        endpoint: peer.endpoint.as_ref().and_then(Endpoint::socket_addr),
        persistent_keepalive: peer.persistent_keepalive,
        allowed_ips: peer
            .allowed_ips
            .iter()
            .map(|ip| (ip.addr, ip.cidr))
            .collect(),
    };
    match tunnel.add_peer(now, config) {
        Ok(id) => debug!(ifname, "peer {} added as {id:?}", peer.public_key),
        Err(e) => error!(ifname, "cannot add peer {}: {e}", peer.public_key),
    }
}

/// Adds a tunnel peer's live statistics to its carried ones (before it is re-created).
fn carry(carried: &mut HashMap<PublicKey, Carried>, tunnel: &Tunnel, key: &PublicKey) {
    let Some(peer) = tunnel
        .peer_id(key.as_bytes())
        .and_then(|id| tunnel.peer(id))
    else {
        return;
    };
    let entry = carried.entry(*key).or_default();
    entry.rx_bytes += peer.rx_bytes();
    entry.tx_bytes += peer.tx_bytes();
    entry.last_handshake = peer.last_handshake().or(entry.last_handshake);
}

/// Replaces the tunnel's routing table with the model's allowed IPs.
fn rebuild_routes(tunnel: &mut Tunnel, model: &Device) {
    let mut table = AllowedIps::new();
    for peer in &model.peers {
        if let Some(id) = tunnel.peer_id(peer.public_key.as_bytes()) {
            for ip in &peer.allowed_ips {
                table.insert(ip.addr, ip.cidr, id);
            }
        }
    }
    *tunnel.allowed_ips_mut() = table;
}
