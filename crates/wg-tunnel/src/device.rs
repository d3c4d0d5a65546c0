//! One interface's configuration and protocol state: the wg-config [`Device`] model (what
//! `get` reports and `set` changes), the wg-proto [`Tunnel`] that does the work, and the UDP
//! [`Bind`]. This module keeps the two in step; it never reads the clock (every entry point
//! takes `now` and the Unix time from the event loop).
//!
//! A `set` delta is folded into the model with [`wg_config::apply`] (the kernel's semantics),
//! then the tunnel is reconciled with the new model:
//! * a changed private key goes to [`Tunnel::set_private_key`], which stops sending on every
//!   session made under the old identity (as the kernel does); the first key creates the
//!   tunnel and removing the key drops it (carrying statistics over);
//! * removed peers are removed; new peers are added;
//! * a changed endpoint, preshared key or persistent keepalive is set on the live peer, which
//!   keeps its sessions (a new PSK applies from the next handshake; a keepalive turned on is
//!   sent at once);
//! * if any allowed IP changed, the routing table is rebuilt from the model.
//!
//! Statistics and learned (roaming) endpoints flow the other way: [`Interface::refresh`]
//! copies them from the tunnel into the model before every `get` and `set`.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use wg_config::key::Key;
use wg_config::{apply, Device, Endpoint, Peer, PublicKey};
use wg_proto::{AllowedIps, Event, OpenJob, PeerConfig, SealJob, Transmit, Tunnel};

use crate::batch::Batch;
use crate::bind::Bind;
use crate::crypto::Pool;
use crate::demux::{is_wireguard, DropForeign, ForeignDatagrams};
use crate::log::{debug, error, info};
use crate::tun::{Tun, TunTx};

/// Bytes the bulk data path needs before a packet read from the TUN device (the transport
/// header is written there); decrypted packets have as much free before them.
pub const HEADROOM: usize = wg_proto::messages::TRANSPORT_HEADER_LEN;

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
    /// The TUN device's MTU, which caps padding.
    mtu: usize,
    /// Where non-WireGuard datagrams go.
    foreign: Box<dyn ForeignDatagrams>,
    /// Whether the interface is up; a fresh TUN device is down.
    up: bool,
    /// NAT traversal (extension configuration; off without a relay).
    nat: crate::nat::NatLink,
    /// The latest wall-clock reading, for NAT traversal's counters.
    since_epoch: Duration,
    /// Per batch entry: its slot and the bulk send path's job (reused every round).
    seal_jobs: Vec<(u32, Option<SealJob>)>,
    /// Per batch entry: the entry as received and the bulk receive path's job (reused every
    /// round).
    open_jobs: Vec<(crate::batch::Entry, Option<OpenJob>)>,
    /// Per batch entry: its job's index in the crypto pool's run (`u32::MAX`: none).
    pool_index: Vec<u32>,
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
            mtu: crate::tun::DEFAULT_MTU as usize,
            foreign: Box::new(DropForeign::default()),
            up: false,
            nat: crate::nat::NatLink::default(),
            since_epoch: Duration::ZERO,
            seal_jobs: Vec::new(),
            open_jobs: Vec::new(),
            pool_index: Vec::new(),
        })
    }

    /// The protocol state, while there is a private key.
    pub fn tunnel(&self) -> Option<&Tunnel> {
        self.tunnel.as_ref()
    }

    /// The UDP socket.
    pub fn bind(&self) -> &Bind {
        &self.bind
    }

    /// The earliest protocol deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let protocol = self.tunnel.as_ref().and_then(Tunnel::poll_timeout);
        match (protocol, self.nat.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Refreshes the wall-clock reading used for handshake timestamps.
    pub fn set_wall_clock(&mut self, now: Instant, since_epoch: Duration) {
        self.since_epoch = since_epoch;
        if let Some(tunnel) = &mut self.tunnel {
            tunnel.set_wall_clock(now, since_epoch);
        }
    }

    /// IP packets read from the TUN device.
    pub fn handle_outgoing(&mut self, now: Instant, packets: &Batch) {
        if let Some(tunnel) = &mut self.tunnel {
            for (_, packet) in packets.iter() {
                tunnel.handle_outgoing(now, packet);
            }
        }
    }

    /// UDP datagrams received: WireGuard messages go to the protocol, anything else to the
    /// foreign-datagram consumer ([`crate::demux`]).
    pub fn handle_incoming(&mut self, now: Instant, datagrams: &Batch) {
        for (from, datagram) in datagrams.iter() {
            if !is_wireguard(datagram) {
                if !self
                    .nat
                    .on_datagram(&self.ifname, now, from, datagram, self.tunnel.as_mut())
                {
                    self.foreign.on_datagram(now, from, datagram);
                }
            } else if let Some(tunnel) = &mut self.tunnel {
                tunnel.handle_incoming(now, from, datagram);
            }
        }
    }

    /// The bulk send path: IP packets read from the TUN device into `batch`, each at
    /// [`HEADROOM`] bytes into its slot with room for padding and the tag after it, are
    /// encrypted in place (spread over `pool`) and sent with one [`Bind::send_batch`].
    /// Packets the bulk path does not take (no session yet, packets staged behind a
    /// handshake) go the one-packet way; the datagrams that produces are sent first (through
    /// `out`), so each keypair's counters leave in increasing order. Empties `batch` of what
    /// was not sent.
    pub fn send_packets(
        &mut self,
        now: Instant,
        batch: &mut Batch,
        pool: &mut Pool,
        out: &mut Batch,
    ) {
        let Some(tunnel) = &mut self.tunnel else {
            return;
        };
        self.seal_jobs.clear();
        for i in 0..batch.len() {
            let e = batch.entries()[i];
            let slot = batch.slot_mut(e.slot as usize);
            let job = tunnel.plan_seal(now, slot, e.offset as usize, e.len as usize);
            self.seal_jobs.push((e.slot, job));
        }
        self.flush_datagrams(out);
        if self.seal_jobs.iter().all(|(_, job)| job.is_none()) {
            batch.clear();
            return;
        }
        let ranges = self.seal_jobs.iter().map(|(slot, job)| {
            job.as_ref().map(|j| {
                let body = j.start + HEADROOM..j.start + j.len;
                (*slot as usize, body)
            })
        });
        let mut jobs = pool.jobs();
        let pool_index = &mut self.pool_index;
        pool_index.clear();
        pool_index.resize(self.seal_jobs.len(), u32::MAX);
        let seal_jobs = &self.seal_jobs;
        for_each_range(batch, ranges, |i, bytes| {
            if let Some(job) = &seal_jobs[i].1 {
                let (key, counter) = job.key();
                pool_index[i] = jobs.len() as u32;
                jobs.seal(bytes, key, counter);
            }
        });
        jobs.run();
        for (i, (slot, job)) in self.seal_jobs.iter().enumerate() {
            let sealed = job
                .as_ref()
                .filter(|_| pool.result(self.pool_index[i] as usize).is_some());
            let Some(job) = sealed else {
                batch.entries_mut()[i].len = 0;
                continue;
            };
            let transmit = Transmit {
                dst: job.dst,
                len: job.len,
            };
            // A relayed peer's message goes to the relay, wrapped (in place).
            let wrapped = self
                .nat
                .wrap(&mut batch.slot_mut(*slot as usize)[job.start..], transmit);
            let e = &mut batch.entries_mut()[i];
            match wrapped {
                Some(t) => {
                    e.offset = job.start as u32;
                    e.len = t.len as u32;
                    e.addr = t.dst;
                }
                None => e.len = 0,
            }
        }
        self.seal_jobs.clear();
        batch.retain_entries(|e| e.len > 0);
        if !batch.is_empty() {
            self.send(batch);
        }
    }

    /// The bulk receive path: the datagrams of `batch` (from `Bind::recv_batch`) are
    /// demultiplexed (non-WireGuard ones to NAT traversal or the foreign consumer, handshake
    /// messages queued), transport messages are decrypted in place (spread over `pool`) and
    /// completed in order; `batch` is left holding the packets to write to the TUN device,
    /// each [`HEADROOM`] bytes after its datagram's start.
    pub fn receive_datagrams(&mut self, now: Instant, batch: &mut Batch, pool: &mut Pool) {
        self.open_jobs.clear();
        for i in 0..batch.len() {
            let e = batch.entries()[i];
            let datagram = &batch.slot(e.slot as usize)[e.range()];
            let job = if !is_wireguard(datagram) {
                if !self
                    .nat
                    .on_datagram(&self.ifname, now, e.addr, datagram, self.tunnel.as_mut())
                {
                    self.foreign.on_datagram(now, e.addr, datagram);
                }
                None
            } else if let Some(tunnel) = &mut self.tunnel {
                tunnel.plan_open(now, e.addr, datagram)
            } else {
                None
            };
            self.open_jobs.push((e, job));
        }
        let Some(tunnel) = self.tunnel.as_mut() else {
            batch.clear();
            return;
        };
        if self.open_jobs.iter().all(|(_, job)| job.is_none()) {
            self.open_jobs.clear();
            batch.clear();
            return;
        }
        let ranges = self.open_jobs.iter().map(|(e, job)| {
            job.as_ref().map(|_| {
                let body = e.offset as usize + HEADROOM..(e.offset + e.len) as usize;
                (e.slot as usize, body)
            })
        });
        let mut jobs = pool.jobs();
        let pool_index = &mut self.pool_index;
        pool_index.clear();
        pool_index.resize(self.open_jobs.len(), u32::MAX);
        let open_jobs = &self.open_jobs;
        for_each_range(batch, ranges, |i, bytes| {
            if let Some(job) = &open_jobs[i].1 {
                let (key, counter) = job.key();
                pool_index[i] = jobs.len() as u32;
                jobs.open(bytes, key, counter);
            }
        });
        jobs.run();
        // Completion in batch order: replay window, sessions, timers, source check.
        for (i, (e, job)) in self.open_jobs.iter().enumerate() {
            let Some(job) = job else {
                batch.entries_mut()[i].len = 0;
                continue;
            };
            let start = e.offset as usize + HEADROOM;
            let slot = batch.slot(e.slot as usize);
            let plaintext = pool
                .result(self.pool_index[i] as usize)
                .map(|len| &slot[start..start + len]);
            let deliver = tunnel.complete_open(now, e.addr, job, plaintext);
            let entry = &mut batch.entries_mut()[i];
            match deliver {
                Some(len) => {
                    entry.offset = start as u32;
                    entry.len = len as u32;
                }
                None => entry.len = 0,
            }
        }
        self.open_jobs.clear();
        batch.retain_entries(|e| e.len > 0);
    }

    /// Replaces the consumer of non-WireGuard datagrams.
    pub fn set_foreign(&mut self, consumer: Box<dyn ForeignDatagrams>) {
        self.foreign = consumer;
    }

    /// Processes queued handshake messages, at most `budget` of them costing a DH; returns
    /// the backlog left (the load signal: see [`Tunnel::process_handshakes`]).
    pub fn process_handshakes(&mut self, now: Instant, budget: usize) -> usize {
        self.tunnel
            .as_mut()
            .map_or(0, |t| t.process_handshakes(now, budget))
    }

    /// Runs due timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.nat.poll_timeout().is_some_and(|t| t <= now) {
            let since_epoch = self.since_epoch;
            self.nat
                .handle_timeout(&self.ifname, now, since_epoch, self.tunnel.as_mut());
        }
        if let Some(tunnel) = &mut self.tunnel {
            if tunnel.poll_timeout().is_some_and(|t| t <= now) {
                tunnel.handle_timeout(now);
            }
        }
    }

    /// Sends every queued datagram (the protocol's, then the foreign consumer's) and writes
    /// every delivered packet to `tun`, a batch at a time through `out`.
    pub fn flush(&mut self, tun: &Tun, tun_tx: &mut TunTx, out: &mut Batch) {
        self.flush_datagrams(out);
        self.flush_packets(tun, tun_tx, out);
    }

    /// Sends every queued datagram, the protocol's then the foreign consumer's.
    pub fn flush_datagrams(&mut self, out: &mut Batch) {
        out.clear();
        loop {
            let Some(slot) = out.free_slot() else {
                self.send(out);
                continue;
            };
            let transmit = match self.tunnel.as_mut().and_then(|t| t.poll_transmit(slot)) {
                // A relayed peer's message goes to the relay, wrapped.
                Some(t) => Some(self.nat.wrap(slot, t)),
                None => self
                    .nat
                    .poll_transmit(slot)
                    .or_else(|| self.foreign.poll_transmit(slot))
                    .map(Some),
            };
            let Some(transmit) = transmit else { break };
            let Some(transmit) = transmit else { continue };
            out.commit(transmit.len, Some(transmit.dst));
        }
        self.send(out);
    }

    /// Writes every delivered packet to `tun` (each at [`HEADROOM`] in its slot, the room
    /// [`TunTx`] wants before a packet).
    fn flush_packets(&mut self, tun: &Tun, tun_tx: &mut TunTx, out: &mut Batch) {
        out.clear();
        let Some(tunnel) = &mut self.tunnel else {
            return;
        };
        loop {
            let event = tunnel.poll_event();
            let full = out.is_full();
            if full || event.is_none() {
                if !out.is_empty() {
                    if let Some(e) = tun_tx.send_batch(tun, out) {
                        debug!(&self.ifname, "failed to write to TUN device: {e}");
                    }
                }
                out.clear();
            }
            match event {
                None => break,
                Some(Event::Deliver { packet, .. }) => {
                    // The batch was emptied above if it was full.
                    if let Some(slot) = out.free_slot() {
                        if let Some(room) = slot.get_mut(HEADROOM..HEADROOM + packet.len()) {
                            room.copy_from_slice(packet);
                            out.commit_at(HEADROOM, packet.len(), None);
                        }
                    }
                }
                Some(Event::HandshakeComplete { peer }) => {
                    debug!(&self.ifname, "handshake complete with peer {peer:?}");
                }
                Some(_) => {}
            }
        }
    }

    /// Sends the datagrams of `out` and empties it.
    fn send(&self, out: &mut Batch) {
        if let Some((dst, e)) = self.bind.send_batch(out) {
            debug!(&self.ifname, "failed to send to {dst}: {e}");
        }
        out.clear();
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
            // A traversed peer's endpoint is the traversal's business (a relay placeholder, or
            // a path that changes): not shown, so `wg showconf` and `wg-quick save` do not
            // turn it into a configured endpoint (which would end traversal).
            if let Some(endpoint) = live
                .and_then(|p| p.endpoint())
                .filter(|e| !wg_nat::Nat::is_virtual(e))
                .filter(|_| !self.nat.traverses(peer.public_key.as_bytes()))
            {
                peer.endpoint = Some(Endpoint::from(endpoint));
            }
        }
    }

    /// The model with fresh statistics (the `get` reply's content).
    pub fn get(&mut self) -> &Device {
        self.refresh();
        &self.model
    }

    /// The TUN device's MTU changed (`ip link set wg0 mtu N`): cap padding at it, as
    /// wireguard-go and the kernel follow the interface's MTU.
    pub fn set_mtu(&mut self, mtu: u32) {
        if mtu as usize != self.mtu {
            info!(&self.ifname, "MTU is now {mtu}");
        }
        self.mtu = mtu as usize;
        if let Some(tunnel) = &mut self.tunnel {
            tunnel.set_mtu(Some(self.mtu));
        }
    }

    /// The interface went up or down (`ip link set wg0 up`): as the kernel, sessions end when
    /// it goes down, and peers with a persistent keepalive handshake when it comes up.
    pub fn set_link_up(&mut self, now: Instant, up: bool) {
        if up != self.up {
            info!(
                &self.ifname,
                "interface is {}",
                if up { "up" } else { "down" }
            );
        }
        self.up = up;
        if let Some(tunnel) = &mut self.tunnel {
            tunnel.set_up(now, up);
        }
    }

    /// Applies a `set` delta (already fully parsed and validated by the UAPI server).
    ///
    /// A new listen port (`0`: a random one) is bound before the old socket is closed, so a
    /// port that cannot be bound leaves the old socket serving; the rest of the delta is still
    /// applied and the request fails with `EADDRINUSE`, as does a firewall mark that cannot be
    /// set. `EIO` means there was no OS randomness for a new tunnel.
    pub fn set(&mut self, now: Instant, since_epoch: Duration, delta: &Device) -> Result<(), i32> {
        self.refresh();
        let mut result = Ok(());
        let mut delta = std::borrow::Cow::Borrowed(delta);
        let fwmark = delta.fwmark.or(self.model.fwmark).unwrap_or(0);
        if let Some(port) = delta.listen_port {
            if port != self.bind.port() {
                match Bind::new(port, fwmark) {
                    Ok(bind) => {
                        self.bind = bind;
                        info!(&self.ifname, "listening on UDP port {}", self.bind.port());
                    }
                    Err(e) => {
                        error!(&self.ifname, "failed to bind UDP port {port}: {e}");
                        result = Err(libc::EADDRINUSE);
                    }
                }
            }
        }
        if delta.fwmark.is_some() && self.bind.mark() != fwmark {
            if let Err(e) = self.bind.set_mark(fwmark) {
                error!(&self.ifname, "failed to set fwmark {fwmark}: {e}");
                delta.to_mut().fwmark = None;
                result = Err(libc::EADDRINUSE);
            }
        }
        let old = self.model.clone();
        apply(&mut self.model, &delta);
        self.model.listen_port = Some(self.bind.port());
        self.nat.note_delta(&old, &delta);
        self.reconcile(now, since_epoch, &old)?;
        self.reconcile_nat(now, since_epoch);
        result
    }

    /// Sets the NAT-traversal relay (the `relay` / `relay_public_key` extension keys);
    /// `None` turns traversal off.
    pub fn set_relay(
        &mut self,
        now: Instant,
        since_epoch: Duration,
        relay: Option<crate::nat::RelayConfig>,
    ) {
        self.nat.set_relay(relay);
        self.reconcile_nat(now, since_epoch);
    }

    fn reconcile_nat(&mut self, now: Instant, since_epoch: Duration) {
        self.since_epoch = since_epoch;
        self.nat.reconcile(
            &self.ifname,
            now,
            since_epoch,
            &self.model,
            self.tunnel.as_mut(),
        );
    }

    /// The NAT-traversal status (the `get=nat` extension operation's reply, without errno).
    pub fn nat_report(&mut self, now: Instant) -> String {
        self.refresh();
        self.nat.report(now, &self.model)
    }

    /// Brings the tunnel in line with the model after a change from `old`.
    fn reconcile(&mut self, now: Instant, since_epoch: Duration, old: &Device) -> Result<(), i32> {
        let live: HashSet<PublicKey> = self.model.peers.iter().map(|p| p.public_key).collect();
        self.carried.retain(|key, _| live.contains(key));

        match (&self.model.private_key, self.tunnel.as_mut()) {
            (None, _) | (Some(_), None) => return self.rebuild(now, since_epoch, old),
            (Some(key), Some(tunnel)) => {
                if old.private_key.as_ref() != Some(key) && tunnel.set_private_key(*key.as_bytes())
                {
                    info!(&self.ifname, "private key changed: sessions renegotiate");
                }
            }
        }
        // Matched just above: the tunnel exists.
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
            let Some(prev) = before.get(&peer.public_key) else {
                add_peer(&self.ifname, tunnel, now, peer);
                routes_changed = true;
                continue;
            };
            let Some(id) = tunnel.peer_id(peer.public_key.as_bytes()) else {
                continue;
            };
            // The endpoint first: a keepalive turned on in the same request goes there.
            if prev.endpoint != peer.endpoint {
                let endpoint = peer.endpoint.as_ref().and_then(Endpoint::socket_addr);
                if let Some(p) = tunnel.peer_mut(id) {
                    p.set_endpoint(endpoint);
                }
            }
            if prev.preshared_key != peer.preshared_key {
                let psk = peer.preshared_key.as_ref().map(|k| *k.as_bytes());
                tunnel.set_preshared_key(id, psk);
            }
            if prev.persistent_keepalive != peer.persistent_keepalive {
                tunnel.set_persistent_keepalive(now, id, peer.persistent_keepalive);
            }
            routes_changed |= prev.allowed_ips != peer.allowed_ips;
        }
        if routes_changed {
            rebuild_routes(tunnel, &self.model);
        }
        Ok(())
    }

    /// Creates the tunnel when a private key is first set, or drops it when the key is
    /// removed (no handshake is possible without one; statistics are carried over).
    fn rebuild(&mut self, now: Instant, since_epoch: Duration, old: &Device) -> Result<(), i32> {
        if let Some(tunnel) = self.tunnel.take() {
            for peer in &old.peers {
                carry(&mut self.carried, &tunnel, &peer.public_key);
            }
        }
        let Some(key) = &self.model.private_key else {
            info!(&self.ifname, "no private key: interface inactive");
            return Ok(());
        };
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed).map_err(|e| {
            error!(&self.ifname, "no OS randomness: {e}");
            libc::EIO
        })?;
        let mut tunnel = Tunnel::new(*key.as_bytes(), seed, now, since_epoch);
        tunnel.set_mtu(Some(self.mtu));
        tunnel.set_up(now, self.up);
        for peer in &self.model.peers {
            add_peer(&self.ifname, &mut tunnel, now, peer);
        }
        self.tunnel = Some(tunnel);
        Ok(())
    }
}

/// Calls `f(i, bytes)` for every `Some((slot, range))` item `i` of `ranges`, with `bytes` the
/// range of that slot of `batch`, all as disjoint mutable slices (for crypto jobs that run
/// at the same time). Items must come in slot order and, within a slot, in ascending,
/// non-overlapping ranges (as a batch's entries do); an item breaking that is skipped.
fn for_each_range<'a>(
    batch: &'a mut Batch,
    ranges: impl Iterator<Item = Option<(usize, std::ops::Range<usize>)>>,
    mut f: impl FnMut(usize, &'a mut [u8]),
) {
    let mut slots = batch.slots_mut().enumerate();
    // The current slot, what is left of it, and where that rest starts.
    let mut current: Option<(usize, &'a mut [u8], usize)> = None;
    for (i, item) in ranges.enumerate() {
        let Some((slot, range)) = item else {
            continue;
        };
        while current.as_ref().map_or(true, |(s, _, _)| *s < slot) {
            match slots.next() {
                Some((s, bytes)) => current = Some((s, bytes, 0)),
                None => return,
            }
        }
        let Some((s, rest, at)) = current.take() else {
            return;
        };
        if s != slot || range.start < at || range.end > at + rest.len() || range.start > range.end {
            current = Some((s, rest, at));
            continue;
        }
        let (_, tail) = rest.split_at_mut(range.start - at);
        let (bytes, tail) = tail.split_at_mut(range.end - range.start);
        current = Some((s, tail, range.end));
        f(i, bytes);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, UdpSocket};
    use wg_testkit::{ipv4_packet as ipv4, uapi_set as delta};

    const PEER: &str = "f1f2f3f4f5f6f7f8f9fafbfcfdfeff000102030405060708090a0b0c0d0e0f10";

    fn set(iface: &mut Interface, body: &str) -> Result<(), i32> {
        iface.set(
            Instant::now(),
            Duration::from_secs(1_700_000_000),
            &delta(body),
        )
    }

    fn is_root() -> bool {
        crate::sys::is_root_or_skip("needs root (SO_MARK)")
    }

    #[test]
    fn test_for_each_range_gives_disjoint_slices() {
        let mut batch = Batch::new(4, 16);
        let ranges = [
            Some((0, 2..5)),
            None,
            Some((0, 6..8)),
            Some((0, 7..9)), // overlaps the previous one: skipped
            Some((2, 0..4)),
            Some((1, 0..1)),   // behind the current slot: skipped
            Some((3, 10..17)), // beyond the slot: skipped
            Some((3, 15..16)),
        ];
        let mut seen = Vec::new();
        for_each_range(&mut batch, ranges.into_iter(), |i, bytes| {
            bytes.fill(i as u8 + 1);
            seen.push(i);
        });
        assert_eq!(seen, vec![0, 2, 4, 7]);
        assert_eq!(&batch.slot(0)[..9], &[0, 0, 1, 1, 1, 0, 3, 3, 0]);
        assert_eq!(&batch.slot(2)[..5], &[5, 5, 5, 5, 0]);
        assert_eq!(batch.slot(3)[15], 8);
        assert!(batch.slot(1).iter().all(|&b| b == 0));
    }

    #[test]
    fn test_listen_port_changes_at_runtime() {
        let mut iface = Interface::new("t0").unwrap();
        let first = iface.bind().port();
        assert_eq!(iface.get().listen_port, Some(first));
        // 0 means a new random port, and the old one is released.
        set(&mut iface, "listen_port=0").unwrap();
        let second = iface.bind().port();
        assert_ne!(second, first);
        assert_eq!(iface.get().listen_port, Some(second));
        drop(UdpSocket::bind((Ipv4Addr::LOCALHOST, first)).expect("old port released"));
        // The same port again changes nothing.
        set(&mut iface, &format!("listen_port={second}")).unwrap();
        assert_eq!(iface.bind().port(), second);
    }

    #[test]
    fn test_failed_rebind_keeps_old_socket_and_applies_the_rest() {
        let mut iface = Interface::new("t0").unwrap();
        let old = iface.bind().port();
        let busy = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
        let busy_port = busy.local_addr().unwrap().port();
        let body = format!(
            "private_key={}\nlisten_port={busy_port}\npublic_key={PEER}\nallowed_ip=10.1.0.0/16",
            "a0".repeat(32)
        );
        assert_eq!(set(&mut iface, &body), Err(libc::EADDRINUSE));
        assert_eq!(iface.bind().port(), old);
        let state = iface.get().clone();
        assert_eq!(state.listen_port, Some(old));
        assert!(
            state.private_key.is_some(),
            "the rest of the request applies"
        );
        assert_eq!(state.peers.len(), 1);
        assert_eq!(state.peers[0].allowed_ips.len(), 1);
        // The old socket still receives.
        let client = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        client.send_to(b"x", (Ipv4Addr::LOCALHOST, old)).unwrap();
        let mut buf = [0u8; 8];
        let start = Instant::now();
        loop {
            match iface.bind().recv_from(&mut buf) {
                Ok((1, _)) => break,
                Ok(other) => panic!("{other:?}"),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(start.elapsed() < Duration::from_secs(5));
                    std::thread::yield_now();
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    #[test]
    fn test_peer_settings_change_in_place() {
        let mut iface = Interface::new("t0").unwrap();
        iface.set_link_up(Instant::now(), true);
        let body = format!(
            "private_key={}\npublic_key={PEER}\nendpoint=127.0.0.1:9\nallowed_ip=10.1.0.0/16",
            "a0".repeat(32)
        );
        set(&mut iface, &body).unwrap();
        let key: [u8; 32] = PublicKey::from_hex(PEER).unwrap().as_bytes().to_owned();
        let tunnel = iface.tunnel().unwrap();
        let id = tunnel.peer_id(&key).unwrap();
        set(
            &mut iface,
            &format!(
                "public_key={PEER}\npreshared_key={}\npersistent_keepalive_interval=25",
                "11".repeat(32)
            ),
        )
        .unwrap();
        let tunnel = iface.tunnel().unwrap();
        assert_eq!(
            tunnel.peer_id(&key),
            Some(id),
            "the same peer, not a new one"
        );
        let peer = tunnel.peer(id).unwrap();
        assert_eq!(peer.persistent_keepalive(), Some(Duration::from_secs(25)));
        assert!(
            peer.has_key_material(),
            "the keepalive started a handshake at once"
        );
        assert_eq!(iface.get().peers[0].persistent_keepalive, Some(25));
        // A private key change keeps the tunnel and its peers.
        set(&mut iface, &format!("private_key={}", "b0".repeat(32))).unwrap();
        assert_eq!(iface.tunnel().unwrap().peer_id(&key), Some(id));
        // Removing the key makes the interface inactive; peers stay configured.
        set(&mut iface, &format!("private_key={}", "00".repeat(32))).unwrap();
        assert!(iface.tunnel().is_none());
        assert_eq!(iface.get().peers.len(), 1);
    }

    #[test]
    fn test_mtu_follows_interface() {
        let mut iface = Interface::new("t0").unwrap();
        set(&mut iface, &format!("private_key={}", "a0".repeat(32))).unwrap();
        assert_eq!(iface.tunnel().unwrap().mtu(), Some(1420));
        iface.set_mtu(1380);
        assert_eq!(iface.tunnel().unwrap().mtu(), Some(1380));
        // A tunnel created later starts with the current MTU.
        set(&mut iface, &format!("private_key={}", "00".repeat(32))).unwrap();
        set(&mut iface, &format!("private_key={}", "a0".repeat(32))).unwrap();
        assert_eq!(iface.tunnel().unwrap().mtu(), Some(1380));
    }

    type Datagrams = Vec<(std::net::SocketAddr, Vec<u8>)>;

    /// Records foreign datagrams and echoes each back to its sender.
    #[derive(Debug, Default)]
    struct Echo {
        seen: std::rc::Rc<std::cell::RefCell<Datagrams>>,
        queue: Datagrams,
    }

    impl ForeignDatagrams for Echo {
        fn on_datagram(&mut self, _: Instant, from: std::net::SocketAddr, datagram: &[u8]) {
            self.seen.borrow_mut().push((from, datagram.to_vec()));
            self.queue.push((from, datagram.to_vec()));
        }
        fn poll_transmit(&mut self, buf: &mut [u8]) -> Option<wg_proto::Transmit> {
            let (dst, bytes) = self.queue.pop()?;
            buf[..bytes.len()].copy_from_slice(&bytes);
            Some(wg_proto::Transmit {
                dst,
                len: bytes.len(),
            })
        }
    }

    /// One receive round on `iface`: what the bulk path delivered (handshakes are answered).
    fn pass(iface: &mut Interface, pool: &mut Pool) -> Vec<Vec<u8>> {
        let mut rx = Batch::for_data_path();
        iface.bind().recv_batch(&mut rx);
        let now = Instant::now();
        iface.receive_datagrams(now, &mut rx, pool);
        let got = rx.iter().map(|(_, p)| p.to_vec()).collect();
        iface.process_handshakes(now, usize::MAX);
        iface.handle_timeout(now);
        let mut out = Batch::for_data_path();
        iface.flush_datagrams(&mut out);
        got
    }

    /// Receives on `iface` until `want` packets were delivered by the bulk path (or 5 s).
    fn receive(iface: &mut Interface, pool: &mut Pool, want: usize) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        let start = Instant::now();
        while got.len() < want && start.elapsed() < Duration::from_secs(5) {
            got.extend(pass(iface, pool));
            std::thread::yield_now();
        }
        got
    }

    // Two interfaces on loopback, the crypto pool with workers: after the handshake (the
    // one-packet path), batches of packets of every size cross the bulk path intact and in
    // order, and the sender's byte counter agrees with the receiver's.
    #[test]
    fn test_bulk_path_between_two_interfaces() {
        let (mut a, mut b) = (Interface::new("a0").unwrap(), Interface::new("b0").unwrap());
        let (ka, kb) = ("a0".repeat(32), "b0".repeat(32));
        let pub_of = |k: &str| {
            let key = wg_config::PrivateKey::from_hex(k).unwrap();
            key.public_key().to_hex()
        };
        let (port_a, port_b) = (a.bind().port(), b.bind().port());
        for (iface, key, peer, port, ip) in [
            (&mut a, &ka, pub_of(&kb), port_b, "10.0.0.2"),
            (&mut b, &kb, pub_of(&ka), port_a, "10.0.0.1"),
        ] {
            iface.set_link_up(Instant::now(), true);
            let body = format!(
                "private_key={key}\npublic_key={peer}\nendpoint=127.0.0.1:{port}\nallowed_ip={ip}/32"
            );
            set(iface, &body).unwrap();
        }
        let mut pool = Pool::new(2);
        let mut tx = Batch::new(128, crate::batch::SLOT_LEN);
        let mut out = Batch::for_data_path();
        let mut send = |a: &mut Interface, pool: &mut Pool, packets: &[Vec<u8>]| {
            tx.clear();
            for p in packets {
                let slot = tx.free_slot().unwrap();
                slot[HEADROOM..HEADROOM + p.len()].copy_from_slice(p);
                tx.commit_at(HEADROOM, p.len(), None);
            }
            a.send_packets(Instant::now(), &mut tx, pool, &mut out);
        };
        // The first packet is staged behind the handshake.
        let first = ipv4([10, 0, 0, 1], [10, 0, 0, 2], b"first");
        send(&mut a, &mut pool, std::slice::from_ref(&first));
        let mut got = Vec::new();
        let start = Instant::now();
        while got.is_empty() && start.elapsed() < Duration::from_secs(5) {
            got.extend(pass(&mut b, &mut pool));
            pass(&mut a, &mut pool);
        }
        assert_eq!(got, vec![first]);
        for round in 0..20usize {
            let packets: Vec<Vec<u8>> = (0..100usize)
                .map(|i| {
                    let len = (round * 100 + i) * 37 % 1380;
                    ipv4([10, 0, 0, 1], [10, 0, 0, 2], &vec![(i + round) as u8; len])
                })
                .collect();
            send(&mut a, &mut pool, &packets);
            assert_eq!(
                receive(&mut b, &mut pool, packets.len()),
                packets,
                "round {round}"
            );
        }
        let (sent, received) = (a.get().peers[0].tx_bytes, b.get().peers[0].rx_bytes);
        // Both ends count A's initiation (148 bytes) and every data message, as the kernel
        // and wireguard-go do.
        assert_eq!(sent, received);
        assert!(sent > 20 * 100 * 32);
    }

    #[test]
    fn test_non_wireguard_datagrams_go_to_the_foreign_consumer() {
        let mut iface = Interface::new("t0").unwrap();
        iface.set_link_up(Instant::now(), true);
        let echo = Echo::default();
        let seen = echo.seen.clone();
        iface.set_foreign(Box::new(echo));
        set(&mut iface, &format!("private_key={}", "a0".repeat(32))).unwrap();
        let client = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let from = client.local_addr().unwrap();
        let mut init = vec![0u8; 148];
        init[0] = 1;
        let mut batch = Batch::new(4, 256);
        for datagram in [&b"STUN-ish"[..], &init, &[5, 0, 0, 0, 1]] {
            batch.free_slot().unwrap()[..datagram.len()].copy_from_slice(datagram);
            batch.commit(datagram.len(), Some(from));
        }
        let now = Instant::now();
        iface.handle_incoming(now, &batch);
        assert_eq!(
            *seen.borrow(),
            vec![(from, b"STUN-ish".to_vec()), (from, vec![5, 0, 0, 0, 1])]
        );
        let tunnel = iface.tunnel().unwrap();
        assert_eq!(tunnel.pending_handshakes(), 1, "the WireGuard-shaped one");
        assert_eq!(tunnel.counters().rx_dropped_malformed, 0);
        // The consumer's replies leave from the tunnel's own socket.
        iface.process_handshakes(now, usize::MAX); // a bad MAC: dropped, nothing to send
        let mut out = Batch::new(4, 2048);
        iface.flush_datagrams(&mut out);
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 64];
        let mut got = Vec::new();
        for _ in 0..2 {
            let (len, src) = client.recv_from(&mut buf).unwrap();
            assert_eq!(src.port(), iface.bind().port());
            got.push(buf[..len].to_vec());
        }
        got.sort();
        assert_eq!(got, vec![vec![5, 0, 0, 0, 1], b"STUN-ish".to_vec()]);
    }

    #[test]
    fn test_fwmark_set_changed_and_cleared() {
        if !is_root() {
            return;
        }
        let mut iface = Interface::new("t0").unwrap();
        set(&mut iface, "fwmark=16").unwrap();
        assert_eq!(iface.bind().kernel_mark().unwrap(), 16);
        assert_eq!(iface.get().fwmark, Some(16));
        // A new socket gets the mark too.
        set(&mut iface, "listen_port=0").unwrap();
        assert_eq!(iface.bind().kernel_mark().unwrap(), 16);
        set(&mut iface, "fwmark=0\nlisten_port=0").unwrap();
        assert_eq!(iface.bind().kernel_mark().unwrap(), 0);
        assert_eq!(iface.get().fwmark, None);
    }
}
