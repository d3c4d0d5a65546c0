//! The TUN device: one non-blocking `/dev/net/tun` descriptor attached to the interface,
//! carrying IP packets (`IFF_TUN | IFF_NO_PI`), with the kernel's segmentation offloads where
//! it has them.
//!
//! [`Tun::create`] asks for `IFF_VNET_HDR` and `TUNSETOFFLOAD` with checksum offload, TSO
//! (IPv4 and IPv6) and USO (IPv4 and IPv6, Linux 6.2+), as wireguard-go does. The kernel then
//! hands over TCP and UDP *super-packets* of up to 64 KiB with a partial checksum, and takes
//! them: [`TunRx`] cuts what it reads into MSS-sized packets ([`offload::Gso`]), and [`TunTx`]
//! coalesces the consecutive segments of a flow it writes ([`offload::Gro`]), so the kernel's
//! stack handles one packet where it would handle forty. Each step falls back (logged at
//! debug level): no USO means TSO only (UDP packets are then segmented by the kernel, and not
//! coalesced); no TSO means no virtio-net header at all (plain packets, as before).
//! [`Tun::offloads`] says what was negotiated.
//!
//! Closing the descriptor (dropping [`Tun`]) deletes the interface, as with wireguard-go.
//! When someone else deletes the interface (`ip link del`), the descriptor reports `POLLERR`
//! and reads fail with `EBADFD`; [`Tun::is_gone`] recognises that.

use std::fs::File;
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsFd, AsRawFd, RawFd};

use crate::batch::Batch;
use crate::log::debug;
use crate::offload::{self, Gro, Gso, VnetHdr, F_NEEDS_CSUM, MAX_HEAD, MAX_SEGMENTS};
use crate::sys;

pub use crate::offload::VNET_HDR_LEN;

/// The MTU wireguard-go gives a new interface: 1500 minus the IPv6, UDP and WireGuard
/// transport overheads (40 + 8 + 32).
pub const DEFAULT_MTU: u32 = 1420;

/// Bytes [`TunRx::recv_batch`] leaves free after every packet (padding and the AEAD tag).
pub const TAILROOM: usize = 32;

/// The most one read returns with offloads: the virtio-net header and a super-packet of
/// the device's GSO limit (64 KiB).
const MAX_READ: usize = VNET_HDR_LEN + 65_536;

/// The offloads negotiated with the kernel for a [`Tun`] (for logs and tests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Offloads {
    /// Every packet carries a virtio-net header (`IFF_VNET_HDR`).
    pub vnet_hdr: bool,
    /// TCP segmentation offload (`TUN_F_TSO4 | TUN_F_TSO6`, with `TUN_F_CSUM`).
    pub tso: bool,
    /// UDP segmentation offload (`TUN_F_USO4 | TUN_F_USO6`).
    pub uso: bool,
}

impl Offloads {
    /// Everything this module can use.
    pub const ALL: Offloads = Offloads {
        vnet_hdr: true,
        tso: true,
        uso: true,
    };
}

/// An open TUN interface.
#[derive(Debug)]
pub struct Tun {
    file: File,
    name: String,
    index: u32,
    offloads: Offloads,
}

impl Tun {
    /// Creates the interface `name` (at most 15 bytes) with [`DEFAULT_MTU`] and every offload
    /// the kernel accepts.
    pub fn create(name: &str) -> io::Result<Tun> {
        Tun::create_with(name, Offloads::ALL)
    }

    /// Creates the interface `name` with at most the offloads in `wanted` (TSO and USO need
    /// the virtio-net header; USO needs TSO). Tests use it to run each fallback.
    pub fn create_with(name: &str, wanted: Offloads) -> io::Result<Tun> {
        let (file, name, offloads) = open(name, wanted)?;
        sys::set_mtu(&name, DEFAULT_MTU)?;
        let index = sys::if_index(&name)?;
        Ok(Tun {
            file,
            name,
            index,
            offloads,
        })
    }

    /// The offloads negotiated with the kernel.
    pub fn offloads(&self) -> Offloads {
        self.offloads
    }

    /// The interface's current MTU (looked up by index, so a renamed interface still
    /// answers).
    pub fn mtu(&self) -> io::Result<u32> {
        sys::get_mtu(&sys::if_name(self.index)?)
    }

    /// The interface name the kernel assigned.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reads one IP packet into `buf`; `WouldBlock` when none is waiting. With offloads,
    /// a partial checksum is completed; a super-packet, which one buffer cannot return as
    /// packets, is an `InvalidData` error (the data path reads with [`TunRx`]).
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.offloads.vnet_hdr {
            return (&self.file).read(buf);
        }
        let mut hdr = [0; VNET_HDR_LEN];
        let n =
            (&self.file).read_vectored(&mut [IoSliceMut::new(&mut hdr), IoSliceMut::new(buf)])?;
        let len = n.saturating_sub(VNET_HDR_LEN);
        let invalid = |e: offload::OffloadError| io::Error::new(io::ErrorKind::InvalidData, e);
        let hdr = VnetHdr::parse(&hdr[..n.min(VNET_HDR_LEN)]).map_err(invalid)?;
        if Gso::new(&hdr, &buf[..len]).map_err(invalid)?.is_some() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "GSO super-packet",
            ));
        }
        finish_plain(&hdr, &mut buf[..len]).map_err(invalid)?;
        Ok(len)
    }

    /// Whether the interface is administratively up (`IFF_UP`).
    pub fn is_up(&self) -> io::Result<bool> {
        let flags = sys::get_flags(&sys::if_name(self.index)?)?;
        Ok(flags & libc::IFF_UP as libc::c_short != 0)
    }

    /// Writes one IP packet.
    pub fn send(&self, packet: &[u8]) -> io::Result<()> {
        if self.offloads.vnet_hdr {
            let hdr = VnetHdr::default().to_bytes();
            // A TUN write takes the whole packet or fails.
            let n = (&self.file).write_vectored(&[IoSlice::new(&hdr), IoSlice::new(packet)])?;
            debug_assert_eq!(n, VNET_HDR_LEN + packet.len());
            return Ok(());
        }
        (&self.file).write(packet).map(drop)
    }

    /// Whether `err`, from [`recv`](Self::recv) or [`send`](Self::send), means the interface
    /// no longer exists.
    pub fn is_gone(err: &io::Error) -> bool {
        matches!(
            err.raw_os_error(),
            Some(libc::EBADFD | libc::ENODEV | libc::ENXIO)
        )
    }
}

impl AsRawFd for Tun {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

/// Opens the device with the offloads of `wanted` the kernel accepts, falling back step by
/// step: without USO, then without the virtio-net header at all (a descriptor's flags cannot
/// change, so that means opening it again).
fn open(name: &str, wanted: Offloads) -> io::Result<(File, String, Offloads)> {
    if wanted.vnet_hdr && wanted.tso {
        // Any failure here is retried without the header: a real one (permissions, a name
        // in use) fails again below with its own error.
        match sys::open_tun_with(name, true) {
            Ok((file, actual)) => match negotiate(&file, &actual, wanted.uso) {
                Ok(offloads) => {
                    debug!(&actual, "TUN offloads: {offloads:?}");
                    return Ok((file, actual, offloads));
                }
                Err(e) => {
                    debug!(&actual, "TUN offloads refused ({e}); plain packets");
                    // Closing deletes the interface; it is created again below.
                    drop(file);
                }
            },
            Err(e) => debug!(name, "IFF_VNET_HDR refused ({e}); plain packets"),
        }
    }
    let (file, actual) = sys::open_tun(name)?;
    Ok((file, actual, Offloads::default()))
}

/// Sets the header size and asks for checksum offload and TSO, and USO if `uso`, on the
/// device `name`; returns what was accepted, or why TSO was not.
fn negotiate(file: &File, name: &str, uso: bool) -> io::Result<Offloads> {
    sys::tun_set_vnet_hdr_size(file.as_fd(), VNET_HDR_LEN as u32)?;
    let tso = sys::TUN_F_CSUM | sys::TUN_F_TSO4 | sys::TUN_F_TSO6;
    if uso {
        match sys::tun_set_offload(file.as_fd(), tso | sys::TUN_F_USO4 | sys::TUN_F_USO6) {
            Ok(()) => return Ok(Offloads::ALL),
            // EINVAL: a kernel before 6.2, which does not know USO.
            Err(e) => debug!(name, "TUN USO refused ({e}), trying TSO alone"),
        }
    }
    sys::tun_set_offload(file.as_fd(), tso)?;
    Ok(Offloads {
        vnet_hdr: true,
        tso: true,
        uso: false,
    })
}

/// Completes the partial checksum of a packet read without segmentation.
fn finish_plain(hdr: &VnetHdr, packet: &mut [u8]) -> Result<(), offload::OffloadError> {
    if hdr.flags & F_NEEDS_CSUM != 0 {
        offload::complete_checksum(
            packet,
            usize::from(hdr.csum_start),
            usize::from(hdr.csum_offset),
        )?;
    }
    Ok(())
}

/// A super-packet in [`TunRx`]'s scratch buffer whose segments did not all fit the batch.
#[derive(Debug, Clone, Copy)]
struct Pending {
    gso: Gso,
    /// The next segment to hand out.
    next: usize,
    /// Where the super-packet is in the scratch buffer.
    start: usize,
    len: usize,
}

/// Per-loop receive state for [`Tun`]: reads plain IP packets into a [`Batch`], cutting
/// super-packets into segments. Allocated once.
#[derive(Debug)]
pub struct TunRx {
    /// One super-packet: read into when a slot cannot take one, or kept when its segments
    /// did not all fit the batch.
    scratch: Box<[u8]>,
    pending: Option<Pending>,
    /// How many slots the last read filled (the segments of a super-packet, or 1).
    last_count: usize,
    dropped: u64,
    super_packets: u64,
}

impl Default for TunRx {
    fn default() -> TunRx {
        TunRx::new()
    }
}

impl TunRx {
    /// Receive state with its buffers allocated.
    pub fn new() -> TunRx {
        TunRx {
            scratch: vec![0; MAX_READ].into_boxed_slice(),
            pending: None,
            last_count: 1,
            dropped: 0,
            super_packets: 0,
        }
    }

    /// Whether segments of a super-packet are waiting for the next
    /// [`recv_batch`](Self::recv_batch): call it again without waiting for the device.
    pub fn has_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// How many malformed reads were dropped (a virtio-net header that does not match the
    /// packet, a checksum offset outside it).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// How many GSO super-packets were read (and cut into segments).
    pub fn super_packets(&self) -> u64 {
        self.super_packets
    }

    /// Reads until the batch is full or the device has nothing more (`WouldBlock` ends the
    /// call with `Ok`), putting each plain IP packet (the segments of a super-packet each in
    /// its own) in its own slot at `headroom` bytes (the caller encrypts in place: it needs
    /// `headroom` bytes before and [`TAILROOM`] after). It also stops, leaving the device
    /// readable, when fewer slots are free than the last read needed, so a super-packet is
    /// rarely split across calls; segments that do not fit are kept for the next call (see
    /// [`has_pending`](Self::has_pending)). An error other than
    /// `WouldBlock` is returned (packets read before it stay in the batch);
    /// [`Tun::is_gone`] tells whether it is fatal.
    ///
    /// A slot large enough for a super-packet with `headroom` (as [`crate::batch::SLOT_LEN`]
    /// with a headroom of 10 to 22 bytes) is read into directly, and the segments are copied
    /// from it into the next slots; otherwise the read goes through the scratch buffer.
    pub fn recv_batch(&mut self, tun: &Tun, batch: &mut Batch, headroom: usize) -> io::Result<()> {
        let slot_len = batch.slot_len();
        if !tun.offloads.vnet_hdr {
            while let Some(slot) = batch.free_slot() {
                let Some(buf) = slot.get_mut(headroom..slot_len.saturating_sub(TAILROOM)) else {
                    return Err(io::Error::from_raw_os_error(libc::EINVAL));
                };
                match read(&tun.file, buf) {
                    Ok(Some(len)) => batch.commit_at(headroom, len, None),
                    Ok(None) => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
            return Ok(());
        }
        let base = headroom.saturating_sub(VNET_HDR_LEN);
        let direct = headroom >= VNET_HDR_LEN && slot_len >= base + MAX_READ + TAILROOM;
        loop {
            self.drain_pending(batch, headroom);
            if self.pending.is_some() || batch.is_full() {
                return Ok(());
            }
            let free = batch.free_slots();
            if free < self.last_count && free < batch.capacity() {
                return Ok(());
            }
            if direct {
                let s0 = batch.first_free_slot();
                let buf = &mut batch.slot_mut(s0)[base..slot_len - TAILROOM];
                let Some(n) = read(&tun.file, buf)? else {
                    return Ok(());
                };
                self.split_in_slot(batch, s0, headroom, n);
            } else {
                let Some(n) = read(&tun.file, &mut self.scratch)? else {
                    return Ok(());
                };
                self.split_from_scratch(batch, headroom, n);
            }
        }
    }

    /// Handles `n` bytes read into free slot `s0` at `headroom - VNET_HDR_LEN`.
    fn split_in_slot(&mut self, batch: &mut Batch, s0: usize, headroom: usize, n: usize) {
        let slot_len = batch.slot_len();
        let slot = batch.slot_mut(s0);
        let Some(len) = n.checked_sub(VNET_HDR_LEN) else {
            self.dropped += 1;
            return;
        };
        let Ok(hdr) = VnetHdr::parse(&slot[headroom - VNET_HDR_LEN..]) else {
            self.dropped += 1;
            return;
        };
        let gso = match Gso::new(&hdr, &slot[headroom..headroom + len]) {
            Ok(Some(gso)) => gso,
            Ok(None) => {
                self.last_count = 1;
                match finish_plain(&hdr, &mut slot[headroom..headroom + len]) {
                    Ok(()) => batch.commit_at(headroom, len, None),
                    Err(_) => self.dropped += 1,
                }
                return;
            }
            Err(_) => {
                self.dropped += 1;
                return;
            }
        };
        // Segments 1.. into the next free slots, from the untouched super-packet; what does
        // not fit waits in the scratch buffer; segment 0 last, in place.
        self.super_packets += 1;
        let count = gso.count();
        self.last_count = count;
        let now = count.min(batch.free_slots());
        let mut slots = batch.slots_mut().skip(s0);
        let Some(src) = slots.next() else { return };
        let sp = &src[headroom..headroom + len];
        for (i, dst) in (1..now).zip(slots) {
            // Cannot fail: every segment is shorter than the super-packet, which fit.
            let _ = gso.copy_segment(sp, i, &mut dst[headroom..slot_len - TAILROOM]);
        }
        if now < count {
            self.scratch[..len].copy_from_slice(sp);
            self.pending = Some(Pending {
                gso,
                next: now,
                start: 0,
                len,
            });
        }
        let _ = gso.first_in_place(&mut src[headroom..headroom + len]);
        for i in 0..now {
            batch.push(s0 + i, headroom, gso.segment_len(i), None);
        }
    }

    /// Handles `n` bytes read into the scratch buffer.
    fn split_from_scratch(&mut self, batch: &mut Batch, headroom: usize, n: usize) {
        let slot_len = batch.slot_len();
        let Some(len) = n.checked_sub(VNET_HDR_LEN) else {
            self.dropped += 1;
            return;
        };
        let Ok(hdr) = VnetHdr::parse(&self.scratch) else {
            self.dropped += 1;
            return;
        };
        let packet = &mut self.scratch[VNET_HDR_LEN..n];
        match Gso::new(&hdr, packet) {
            Ok(Some(gso)) if headroom + gso.max_segment_len() + TAILROOM <= slot_len => {
                self.super_packets += 1;
                self.last_count = gso.count();
                self.pending = Some(Pending {
                    gso,
                    next: 0,
                    start: VNET_HDR_LEN,
                    len,
                });
            }
            Ok(None) if headroom + len + TAILROOM <= slot_len => {
                self.last_count = 1;
                if finish_plain(&hdr, packet).is_err() {
                    self.dropped += 1;
                    return;
                }
                if let Some(slot) = batch.free_slot() {
                    slot[headroom..headroom + len].copy_from_slice(packet);
                    batch.commit_at(headroom, len, None);
                }
            }
            _ => self.dropped += 1,
        }
    }

    /// Moves waiting segments into the free slots of `batch`.
    fn drain_pending(&mut self, batch: &mut Batch, headroom: usize) {
        let slot_len = batch.slot_len();
        while let Some(p) = &mut self.pending {
            let Some(slot) = batch.free_slot() else {
                return;
            };
            let sp = &self.scratch[p.start..p.start + p.len];
            match p
                .gso
                .copy_segment(sp, p.next, &mut slot[headroom..slot_len - TAILROOM])
            {
                Ok(n) => batch.commit_at(headroom, n, None),
                Err(_) => {
                    self.dropped += 1;
                    self.pending = None;
                    return;
                }
            }
            p.next += 1;
            if p.next == p.gso.count() {
                self.pending = None;
            }
        }
    }
}

/// One read(2): `Ok(None)` when nothing is waiting; interrupted reads are retried.
fn read(file: &File, buf: &mut [u8]) -> io::Result<Option<usize>> {
    loop {
        match (&*file).read(buf) {
            Ok(n) => return Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Per-loop transmit state for [`Tun`]: the GRO coalescer and the buffer for the headers of
/// a super-packet. Allocated once.
#[derive(Debug)]
pub struct TunTx {
    gro: Gro,
    offloads: Offloads,
    head: [u8; MAX_HEAD],
    super_packets: u64,
}

impl Default for TunTx {
    fn default() -> TunTx {
        TunTx::new()
    }
}

impl TunTx {
    /// Transmit state with its buffers allocated.
    pub fn new() -> TunTx {
        TunTx {
            gro: Gro::new(crate::batch::BATCH, false, false),
            offloads: Offloads::default(),
            head: [0; MAX_HEAD],
            super_packets: 0,
        }
    }

    /// How many coalesced super-packets were written.
    pub fn super_packets(&self) -> u64 {
        self.super_packets
    }

    /// Writes every entry of `batch` (plain IP packets; entries of length 0 are skipped) to
    /// the device, coalescing consecutive TCP (and, with USO, UDP) segments of one flow into
    /// super-packets, each written with one `writev(2)` (its headers from here, the payloads
    /// from the batch; the batch is not changed). Order within a flow is kept. Returns the
    /// last write error, if any.
    pub fn send_batch(&mut self, tun: &Tun, batch: &mut Batch) -> Option<io::Error> {
        let mut failed = None;
        if !tun.offloads.vnet_hdr {
            for (_, packet) in batch.iter() {
                if packet.is_empty() {
                    continue;
                }
                if let Err(e) = (&tun.file).write(packet) {
                    failed = Some(e);
                }
            }
            return failed;
        }
        if self.offloads != tun.offloads {
            self.offloads = tun.offloads;
            self.gro.set_protocols(tun.offloads.tso, tun.offloads.uso);
        }
        self.gro.clear();
        for (_, packet) in batch.iter() {
            self.gro.push(packet);
        }
        let batch = &*batch;
        for group in self.gro.groups() {
            let (n, skip) = self.gro.write_head(group, &mut self.head);
            let from = self.gro.payload_offset(group);
            let mut iov = [IoSlice::new(&[]); MAX_SEGMENTS + 1];
            iov[0] = IoSlice::new(&self.head[..n]);
            let mut k = 1;
            for (j, i) in self.gro.members(group).enumerate() {
                let data = batch.data(i);
                iov[k] = IoSlice::new(&data[if j == 0 { skip } else { from }..]);
                k += 1;
            }
            if group.count == 1
                && batch
                    .data(usize::try_from(group.first).unwrap_or(0))
                    .is_empty()
            {
                continue;
            }
            match (&tun.file).write_vectored(&iov[..k]) {
                Ok(_) if group.count > 1 => self.super_packets += 1,
                Ok(_) => {}
                Err(e) => failed = Some(e),
            }
        }
        failed
    }
}

/// Link notifications of the namespace (rtnetlink `RTMGRP_LINK`), so the daemon follows
/// changes to its interface such as `ip link set wg0 mtu 1380`, as wireguard-go does.
#[derive(Debug)]
pub struct LinkMonitor {
    socket: File,
}

impl LinkMonitor {
    /// Subscribes to link notifications.
    pub fn new() -> io::Result<LinkMonitor> {
        Ok(LinkMonitor {
            socket: sys::link_monitor()?,
        })
    }

    /// Reads and discards every pending notification; returns whether there was any (or the
    /// socket overflowed, which also means something changed). What changed is then read
    /// from the interface itself, which is simpler than parsing the messages and exact even
    /// after an overflow.
    pub fn drain(&self) -> bool {
        let mut buf = [0u8; 8192];
        let mut any = false;
        loop {
            match (&self.socket).read(&mut buf) {
                Ok(0) => return any,
                Ok(_) => any = true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return any,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // ENOBUFS: notifications were lost; re-reading the state catches up.
                Err(_) => return true,
            }
        }
    }
}

impl AsRawFd for LinkMonitor {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

#[cfg(test)]
mod tests;
