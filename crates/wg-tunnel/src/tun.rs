//! The TUN device: one non-blocking `/dev/net/tun` descriptor attached to the interface,
//! carrying bare IP packets (`IFF_TUN | IFF_NO_PI`).
//!
//! Closing the descriptor (dropping [`Tun`]) deletes the interface, as with wireguard-go.
//! When someone else deletes the interface (`ip link del`), the descriptor reports `POLLERR`
//! and reads fail with `EBADFD`; [`Tun::is_gone`] recognises that.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};

use crate::sys;

/// The MTU wireguard-go gives a new interface: 1500 minus the IPv6, UDP and WireGuard
/// transport overheads (40 + 8 + 32).
pub const DEFAULT_MTU: u32 = 1420;

/// An open TUN interface.
#[derive(Debug)]
pub struct Tun {
    file: File,
    name: String,
}

impl Tun {
    /// Creates the interface `name` (at most 15 bytes) with [`DEFAULT_MTU`].
    pub fn create(name: &str) -> io::Result<Tun> {
        let (file, name) = sys::open_tun(name)?;
        sys::set_mtu(&name, DEFAULT_MTU)?;
        Ok(Tun { file, name })
    }

    /// The interface name the kernel assigned.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reads one IP packet into `buf`; `WouldBlock` when none is waiting.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        (&self.file).read(buf)
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
