//! The UDP side: one socket that carries both IPv4 and IPv6 WireGuard datagrams.
//!
//! The socket is bound to `[::]:port` without `IPV6_V6ONLY`, so IPv4 peers appear as
//! v4-mapped addresses (`::ffff:a.b.c.d`); [`Bind`] translates them to and from plain IPv4
//! [`SocketAddr`]s, so the protocol core only ever sees canonical addresses. Where IPv6 is
//! unavailable it falls back to an IPv4-only socket.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, RawFd};

use crate::batch::Batch;
use crate::sys;

/// A bound, non-blocking UDP socket.
#[derive(Debug)]
pub struct Bind {
    socket: UdpSocket,
    dual_stack: bool,
    port: u16,
    mark: u32,
}

/// The receive and send buffer asked for (wireguard-go's size): a burst, or a handshake flood,
/// queues in the kernel instead of being dropped while the loop is busy.
pub const SOCKET_BUFFER_BYTES: u32 = 7 << 20;

impl Bind {
    /// Binds to `port` on all addresses (`0`: a random port), with firewall mark `fwmark`
    /// (`0`: none).
    pub fn new(port: u16, fwmark: u32) -> io::Result<Bind> {
        match UdpSocket::bind((Ipv6Addr::UNSPECIFIED, port)) {
            Ok(socket) => Bind::from_socket(socket, true, fwmark),
            // No IPv6 in this kernel (ipv6.disable=1) or namespace.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL)
                ) =>
            {
                Bind::new_ipv4_only(port, fwmark)
            }
            Err(e) => Err(e),
        }
    }

    /// The fallback where IPv6 does not exist: an IPv4-only socket.
    pub fn new_ipv4_only(port: u16, fwmark: u32) -> io::Result<Bind> {
        Bind::from_socket(
            UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port))?,
            false,
            fwmark,
        )
    }

    fn from_socket(socket: UdpSocket, dual_stack: bool, fwmark: u32) -> io::Result<Bind> {
        socket.set_nonblocking(true)?;
        sys::set_buffers(socket.as_fd(), SOCKET_BUFFER_BYTES);
        if fwmark != 0 {
            sys::set_mark(socket.as_fd(), fwmark)?;
        }
        let port = socket.local_addr()?.port();
        Ok(Bind {
            socket,
            dual_stack,
            port,
            mark: fwmark,
        })
    }

    /// The port actually bound.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the socket carries IPv6 as well as (v4-mapped) IPv4.
    pub fn is_dual_stack(&self) -> bool {
        self.dual_stack
    }

    /// The firewall mark set on the socket (`0`: none).
    pub fn mark(&self) -> u32 {
        self.mark
    }

    /// Sets the firewall mark (`0` clears it).
    pub fn set_mark(&mut self, fwmark: u32) -> io::Result<()> {
        sys::set_mark(self.socket.as_fd(), fwmark)?;
        self.mark = fwmark;
        Ok(())
    }

    /// The firewall mark as the kernel reports it (`getsockopt(SO_MARK)`).
    pub fn kernel_mark(&self) -> io::Result<u32> {
        sys::get_mark(self.socket.as_fd())
    }

    /// Receives one datagram; `WouldBlock` when none is waiting.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let (len, from) = self.socket.recv_from(buf)?;
        Ok((len, canonical(from)))
    }

    /// Receives datagrams into the free slots of `batch` until none is waiting or the batch
    /// is full. Returns the error that stopped it early, if it was not `WouldBlock` (ICMP
    /// errors such as `ECONNREFUSED` surface here; they are not fatal).
    pub fn recv_batch(&self, batch: &mut Batch) -> Option<io::Error> {
        while let Some(slot) = batch.free_slot() {
            match self.recv_from(slot) {
                Ok((len, from)) => batch.commit(len, Some(from)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(e) => return Some(e),
            }
        }
        None
    }

    /// Sends every datagram of `batch` to its address. Returns the last failure, if any
    /// (a failed datagram is dropped, as UDP may).
    pub fn send_batch(&self, batch: &Batch) -> Option<(SocketAddr, io::Error)> {
        let mut failed = None;
        for (dst, datagram) in batch.iter() {
            if let Err(e) = self.send_to(datagram, dst) {
                failed = Some((dst, e));
            }
        }
        failed
    }

    /// Sends one datagram.
    pub fn send_to(&self, datagram: &[u8], dst: SocketAddr) -> io::Result<()> {
        let dst = match dst {
            SocketAddr::V4(v4) if self.dual_stack => {
                SocketAddrV6::new(v4.ip().to_ipv6_mapped(), v4.port(), 0, 0).into()
            }
            other => other,
        };
        self.socket.send_to(datagram, dst).map(drop)
    }
}

impl AsRawFd for Bind {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

/// Turns a v4-mapped IPv6 address into the IPv4 address it stands for.
fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => addr,
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_canonical() {
        let mapped: SocketAddr = "[::ffff:10.0.0.1]:51820".parse().unwrap();
        assert_eq!(canonical(mapped), "10.0.0.1:51820".parse().unwrap());
        let v6: SocketAddr = "[fd00::1]:5".parse().unwrap();
        assert_eq!(canonical(v6), v6);
    }

    #[test]
    fn test_socket_buffers() {
        let bind = Bind::new(0, 0).unwrap();
        let rcv = sys::socket_int_option(bind.socket.as_fd(), libc::SO_RCVBUF).unwrap();
        let snd = sys::socket_int_option(bind.socket.as_fd(), libc::SO_SNDBUF).unwrap();
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            // The forced options pass the sysctl caps (the kernel reports double the request).
            let want = i32::try_from(SOCKET_BUFFER_BYTES).unwrap();
            assert!(rcv >= want && snd >= want, "rcvbuf {rcv}, sndbuf {snd}");
        } else {
            assert!(rcv > 0 && snd > 0);
        }
    }

    #[test]
    fn test_ipv4_only_fallback() {
        let a = Bind::new_ipv4_only(0, 0).unwrap();
        let b = Bind::new(0, 0).unwrap();
        assert!(!a.is_dual_stack());
        a.send_to(b"v4", SocketAddr::from((Ipv4Addr::LOCALHOST, b.port())))
            .unwrap();
        let mut buf = [0u8; 8];
        let start = std::time::Instant::now();
        let (len, from) = loop {
            match b.recv_from(&mut buf) {
                Ok(r) => break r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    assert!(start.elapsed().as_secs() < 5, "no datagram");
                    std::thread::yield_now();
                }
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!((&buf[..len], from.port()), (&b"v4"[..], a.port()));
        // An IPv6 peer is an error for that datagram, not a crash.
        assert!(a
            .send_to(b"v6", SocketAddr::from((Ipv6Addr::LOCALHOST, b.port())))
            .is_err());
    }

    #[test]
    fn test_loopback_both_families() {
        let a = Bind::new(0, 0).unwrap();
        let b = Bind::new(0, 0).unwrap();
        let mut buf = [0u8; 16];
        let mut dsts = vec![SocketAddr::from((Ipv4Addr::LOCALHOST, b.port()))];
        if a.dual_stack && b.dual_stack {
            dsts.push(SocketAddr::from((Ipv6Addr::LOCALHOST, b.port())));
        }
        for dst in dsts {
            a.send_to(b"hi", dst).unwrap();
            let start = std::time::Instant::now();
            let (len, from) = loop {
                match b.recv_from(&mut buf) {
                    Ok(r) => break r,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        assert!(start.elapsed().as_secs() < 5, "no datagram");
                        std::thread::yield_now();
                    }
                    Err(e) => panic!("{e}"),
                }
            };
            assert_eq!(&buf[..len], b"hi");
            assert_eq!(from, SocketAddr::new(dst.ip(), a.port()));
        }
    }
}
