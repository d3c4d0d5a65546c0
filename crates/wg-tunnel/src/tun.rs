//! The TUN device: one non-blocking `/dev/net/tun` descriptor attached to the interface,
//! carrying bare IP packets (`IFF_TUN | IFF_NO_PI`).
//!
//! Closing the descriptor (dropping [`Tun`]) deletes the interface, as with wireguard-go.
//! When someone else deletes the interface (`ip link del`), the descriptor reports `POLLERR`
//! and reads fail with `EBADFD`; [`Tun::is_gone`] recognises that.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};

use crate::batch::Batch;
use crate::sys;

/// The MTU wireguard-go gives a new interface: 1500 minus the IPv6, UDP and WireGuard
/// transport overheads (40 + 8 + 32).
pub const DEFAULT_MTU: u32 = 1420;

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

/// An open TUN interface.
#[derive(Debug)]
pub struct Tun {
    file: File,
    name: String,
    index: u32,
    offloads: Offloads,
}

impl Tun {
    /// Creates the interface `name` (at most 15 bytes) with [`DEFAULT_MTU`].
    pub fn create(name: &str) -> io::Result<Tun> {
        let (file, name) = sys::open_tun(name)?;
        sys::set_mtu(&name, DEFAULT_MTU)?;
        let index = sys::if_index(&name)?;
        Ok(Tun {
            file,
            name,
            index,
            offloads: Offloads::default(),
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

    /// Reads one IP packet into `buf`; `WouldBlock` when none is waiting.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        (&self.file).read(buf)
    }

    /// Whether the interface is administratively up (`IFF_UP`).
    pub fn is_up(&self) -> io::Result<bool> {
        let flags = sys::get_flags(&sys::if_name(self.index)?)?;
        Ok(flags & libc::IFF_UP as libc::c_short != 0)
    }

    /// Reads IP packets into the free slots of `batch` until none is waiting or the batch is
    /// full. An error other than `WouldBlock` is returned (even if some packets were read:
    /// they stay in the batch); [`is_gone`](Self::is_gone) tells whether it is fatal.
    pub fn recv_batch(&self, batch: &mut Batch) -> io::Result<()> {
        while let Some(slot) = batch.free_slot() {
            match self.recv(slot) {
                Ok(len) => batch.commit(len, None),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Writes every packet of `batch`; returns the last failure, if any.
    pub fn send_batch(&self, batch: &Batch) -> Option<io::Error> {
        let mut failed = None;
        for (_, packet) in batch.iter() {
            if let Err(e) = self.send(packet) {
                failed = Some(e);
            }
        }
        failed
    }

    /// Writes one IP packet.
    pub fn send(&self, packet: &[u8]) -> io::Result<()> {
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

/// Per-loop receive state for [`Tun`]: reads plain IP packets into a [`Batch`].
#[derive(Debug, Default)]
pub struct TunRx {}

impl TunRx {
    /// Receive state with its buffers allocated.
    pub fn new() -> TunRx {
        TunRx {}
    }

    /// Reads until the batch is full or the device has nothing more (`WouldBlock` ends the
    /// call with `Ok`), putting each plain IP packet in its own slot at `headroom` bytes (the
    /// caller encrypts in place: it needs `headroom` bytes before and 32 bytes of tailroom
    /// after). An error other than `WouldBlock` is returned (packets read before it stay in
    /// the batch); [`Tun::is_gone`] tells whether it is fatal.
    pub fn recv_batch(&mut self, tun: &Tun, batch: &mut Batch, headroom: usize) -> io::Result<()> {
        while let Some(slot) = batch.free_slot() {
            let end = slot.len().saturating_sub(TAILROOM);
            let Some(buf) = slot.get_mut(headroom..end) else {
                return Err(io::Error::from_raw_os_error(libc::EINVAL));
            };
            match tun.recv(buf) {
                Ok(len) => batch.commit_at(headroom, len, None),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// The virtio-net header's size: [`TunTx::send_batch`] may overwrite this many bytes before
/// each packet.
pub const VNET_HDR_LEN: usize = 10;

/// Bytes [`TunRx::recv_batch`] leaves free after every packet (padding and the AEAD tag).
pub const TAILROOM: usize = 32;

/// Per-loop transmit state for [`Tun`]: writes batches of plain IP packets.
#[derive(Debug, Default)]
pub struct TunTx {}

impl TunTx {
    /// Transmit state with its buffers allocated.
    pub fn new() -> TunTx {
        TunTx {}
    }

    /// Writes every entry of `batch` (plain IP packets) to the device, in order. Returns the
    /// last write error, if any.
    pub fn send_batch(&mut self, tun: &Tun, batch: &mut Batch) -> Option<io::Error> {
        let mut failed = None;
        for (_, packet) in batch.iter() {
            if let Err(e) = tun.send(packet) {
                failed = Some(e);
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
