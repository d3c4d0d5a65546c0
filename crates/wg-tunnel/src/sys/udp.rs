//! Batched UDP I/O: `recvmmsg`/`sendmmsg` over caller-owned buffers, with the UDP GSO
//! (`UDP_SEGMENT`) and GRO (`UDP_GRO`) control messages, and the socket options behind them.
//!
//! [`Mmsg`] owns every array the kernel reads or writes besides the data itself (message
//! headers, iovecs, addresses, control buffers), allocated once, so a call allocates nothing.
//! Data buffers are only ever borrowed for the duration of one call: [`Mmsg::recv`] takes
//! them as an iterator of `&mut [u8]` and [`Sender`] holds a borrow of every buffer added to
//! it, so no pointer into caller memory is used after its borrow ends.

// `msghdr` field types differ between libcs (`size_t` with glibc, `socklen_t`/`int` with
// musl), so casts that are no-ops here are not elsewhere.
#![allow(clippy::unnecessary_cast)]

use std::io;
use std::marker::PhantomData;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::cvt;

/// Messages per `recvmmsg`/`sendmmsg` call.
pub(crate) const MAX_MSGS: usize = 256;
/// iovecs per `sendmmsg` call (all messages together).
pub(crate) const MAX_IOVS: usize = 1024;
/// Segments the kernel accepts in one GSO message (`UDP_MAX_SEGMENTS` before Linux 6.11).
pub(crate) const MAX_SEGMENTS: usize = 64;
/// Control buffer per message: room for a few `int`-sized control messages.
const CONTROL_WORDS: usize = 8;

/// A socket address the kernel can read or fill in: either family.
#[repr(C)]
#[derive(Clone, Copy)]
union SockAddr {
    v4: libc::sockaddr_in,
    v6: libc::sockaddr_in6,
}

impl SockAddr {
    fn zeroed() -> SockAddr {
        SockAddr {
            v6: libc::sockaddr_in6 {
                sin6_family: 0,
                sin6_port: 0,
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr { s6_addr: [0; 16] },
                sin6_scope_id: 0,
            },
        }
    }

    /// Stores `addr`; returns its length.
    fn set(&mut self, addr: SocketAddr) -> libc::socklen_t {
        match addr {
            SocketAddr::V4(a) => {
                self.v4 = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: a.port().to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from(*a.ip()).to_be(),
                    },
                    sin_zero: [0; 8],
                };
                mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
            }
            SocketAddr::V6(a) => {
                self.v6 = libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as libc::sa_family_t,
                    sin6_port: a.port().to_be(),
                    sin6_flowinfo: a.flowinfo(),
                    sin6_addr: libc::in6_addr {
                        s6_addr: a.ip().octets(),
                    },
                    sin6_scope_id: a.scope_id(),
                };
                mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
            }
        }
    }

    /// The address the kernel wrote, `len` bytes of it.
    fn get(&self, len: libc::socklen_t) -> Option<SocketAddr> {
        let len = len as usize;
        // SAFETY: both variants are plain data starting with `sa_family_t`; every bit
        // pattern is valid for either, and the storage is always fully initialised.
        let (family, v4, v6) = unsafe { (self.v4.sin_family, self.v4, self.v6) };
        match i32::from(family) {
            libc::AF_INET if len >= mem::size_of::<libc::sockaddr_in>() => {
                Some(SocketAddr::V4(SocketAddrV4::new(
                    Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr)),
                    u16::from_be(v4.sin_port),
                )))
            }
            libc::AF_INET6 if len >= mem::size_of::<libc::sockaddr_in6>() => {
                Some(SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::from(v6.sin6_addr.s6_addr),
                    u16::from_be(v6.sin6_port),
                    v6.sin6_flowinfo,
                    v6.sin6_scope_id,
                )))
            }
            _ => None,
        }
    }
}

/// What one message of a [`Mmsg::recv`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Received {
    /// Bytes written into the buffer.
    pub(crate) len: usize,
    /// The source.
    pub(crate) from: Option<SocketAddr>,
    /// The segment size when the kernel coalesced several datagrams (UDP GRO): the buffer
    /// then holds datagrams of this size, the last possibly shorter.
    pub(crate) gro_size: Option<usize>,
    /// The datagram did not fit the buffer (`MSG_TRUNC`): the bytes are incomplete.
    pub(crate) truncated: bool,
}

/// The arrays `recvmmsg`/`sendmmsg` use, allocated once.
pub(crate) struct Mmsg {
    hdrs: Box<[libc::mmsghdr]>,
    iovs: Box<[libc::iovec]>,
    names: Box<[SockAddr]>,
    controls: Box<[[u64; CONTROL_WORDS]]>,
}

// SAFETY: the raw pointers inside point into `Mmsg`'s own heap arrays or into buffers
// borrowed for the duration of one call; they are never dereferenced outside such a call, so
// moving the whole to another thread is harmless.
unsafe impl Send for Mmsg {}

impl std::fmt::Debug for Mmsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mmsg").finish_non_exhaustive()
    }
}

impl Default for Mmsg {
    fn default() -> Self {
        Mmsg::new()
    }
}

fn empty_hdr() -> libc::mmsghdr {
    // SAFETY: mmsghdr is plain data (integers and raw pointers); all-zero is valid (null
    // pointers, zero lengths), and some libcs have private padding fields.
    unsafe { mem::zeroed() }
}

impl Mmsg {
    /// Arrays for [`MAX_MSGS`] messages and [`MAX_IOVS`] iovecs.
    pub(crate) fn new() -> Mmsg {
        Mmsg::with_capacity(MAX_MSGS, MAX_IOVS)
    }

    /// Arrays for `msgs` messages (at most [`MAX_MSGS`]) and `iovs` iovecs.
    pub(crate) fn with_capacity(msgs: usize, iovs: usize) -> Mmsg {
        let msgs = msgs.min(MAX_MSGS);
        Mmsg {
            hdrs: (0..msgs).map(|_| empty_hdr()).collect(),
            iovs: (0..iovs)
                .map(|_| libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                })
                .collect(),
            names: vec![SockAddr::zeroed(); msgs].into_boxed_slice(),
            controls: vec![[0; CONTROL_WORDS]; msgs].into_boxed_slice(),
        }
    }

    /// Receives one datagram (or, with UDP GRO, one run of coalesced datagrams) into each of
    /// up to [`MAX_MSGS`] (the capacity) of `bufs`, without blocking. Returns how many buffers
    /// were filled (read each with [`received`](Self::received)); `WouldBlock` when nothing
    /// is waiting.
    pub(crate) fn recv<'a>(
        &mut self,
        fd: BorrowedFd<'_>,
        bufs: impl Iterator<Item = &'a mut [u8]>,
    ) -> io::Result<usize> {
        let mut n = 0;
        for buf in bufs.take(self.hdrs.len().min(self.iovs.len())) {
            self.iovs[n] = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            };
            n += 1;
        }
        // Pointers into our own arrays are taken after the last write to them.
        let (iovs, names, controls) = self.bases();
        for (i, hdr) in self.hdrs[..n].iter_mut().enumerate() {
            hdr.msg_len = 0;
            hdr.msg_hdr.msg_name = names.wrapping_add(i).cast();
            hdr.msg_hdr.msg_namelen = mem::size_of::<SockAddr>() as libc::socklen_t;
            hdr.msg_hdr.msg_iov = iovs.wrapping_add(i);
            hdr.msg_hdr.msg_iovlen = 1;
            hdr.msg_hdr.msg_control = controls.wrapping_add(i).cast();
            hdr.msg_hdr.msg_controllen = mem::size_of::<[u64; CONTROL_WORDS]>() as _;
            hdr.msg_hdr.msg_flags = 0;
        }
        if n == 0 {
            return Ok(0);
        }
        // SAFETY: the first `n` headers point at their own name and control storage (owned
        // by `self`, sized as declared) and at one iovec each, which describes a buffer
        // exclusively borrowed by the caller for longer than this call.
        let rc = unsafe {
            libc::recvmmsg(
                fd.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT as _,
                std::ptr::null_mut(),
            )
        };
        Ok(cvt(rc)? as usize)
    }

    /// The start of the iovec, address and control arrays, for the headers to point into.
    fn bases(&mut self) -> (*mut libc::iovec, *mut SockAddr, *mut [u64; CONTROL_WORDS]) {
        (
            self.iovs.as_mut_ptr(),
            self.names.as_mut_ptr(),
            self.controls.as_mut_ptr(),
        )
    }

    /// What message `i` of the last [`recv`](Self::recv) holds.
    pub(crate) fn received(&self, i: usize) -> Received {
        let hdr = &self.hdrs[i];
        let mut gro_size = None;
        let controllen =
            (hdr.msg_hdr.msg_controllen as usize).min(mem::size_of::<[u64; CONTROL_WORDS]>());
        if controllen > 0 && !hdr.msg_hdr.msg_control.is_null() {
            // A header describing only our own control storage, with the length the kernel
            // wrote, for the CMSG_* walk.
            let mut walk: libc::msghdr = empty_hdr().msg_hdr;
            walk.msg_control = self.controls[i].as_ptr() as *mut libc::c_void;
            walk.msg_controllen = controllen as _;
            // SAFETY: the walk stays within `controllen` bytes of our own control buffer
            // (CMSG_NXTHDR checks each header against the end); data is read unaligned.
            unsafe {
                let mut c = libc::CMSG_FIRSTHDR(&walk);
                while !c.is_null() {
                    let cmsg = c.read_unaligned();
                    let want = libc::CMSG_LEN(mem::size_of::<libc::c_int>() as u32) as usize;
                    let at = c as usize - walk.msg_control as usize;
                    if cmsg.cmsg_level == libc::SOL_UDP
                        && cmsg.cmsg_type == libc::UDP_GRO
                        && cmsg.cmsg_len as usize >= want
                        && at + want <= controllen
                    {
                        let size = libc::CMSG_DATA(c).cast::<libc::c_int>().read_unaligned();
                        gro_size = usize::try_from(size).ok().filter(|&s| s > 0);
                    }
                    c = libc::CMSG_NXTHDR(&walk, c);
                }
            }
        }
        Received {
            len: hdr.msg_len as usize,
            from: self.names[i].get(hdr.msg_hdr.msg_namelen),
            gro_size,
            truncated: hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
        }
    }

    /// A new, empty set of messages to send, borrowing the buffers added to it.
    pub(crate) fn sender<'m, 'a>(&'m mut self) -> Sender<'m, 'a> {
        Sender {
            mmsg: self,
            msgs: 0,
            iovs: 0,
            data: PhantomData,
        }
    }
}

/// Messages being put together for `sendmmsg`; every buffer added stays borrowed until the
/// sender is dropped.
pub(crate) struct Sender<'m, 'a> {
    mmsg: &'m mut Mmsg,
    msgs: usize,
    iovs: usize,
    data: PhantomData<&'a [u8]>,
}

impl<'a> Sender<'_, 'a> {
    /// How many messages have been started.
    pub(crate) fn len(&self) -> usize {
        self.msgs
    }

    /// Whether a message with `iovs` buffers still fits.
    pub(crate) fn has_room(&self, iovs: usize) -> bool {
        self.msgs < self.mmsg.hdrs.len() && self.iovs + iovs <= self.mmsg.iovs.len()
    }

    /// Starts a message to `dst` (its bytes added with [`push_iov`](Self::push_iov)),
    /// segmented by the kernel into datagrams of `gso_size` bytes when that is non-zero.
    /// Check [`has_room`](Self::has_room) first.
    pub(crate) fn push_msg(&mut self, dst: SocketAddr, gso_size: u16) {
        assert!(self.has_room(0), "too many messages");
        let i = self.msgs;
        // The pointers into our arrays are filled in by `send`.
        let mut hdr = empty_hdr();
        hdr.msg_hdr.msg_namelen = self.mmsg.names[i].set(dst);
        if gso_size != 0 {
            let control = &mut self.mmsg.controls[i];
            *control = [0; CONTROL_WORDS];
            let mut layout = empty_hdr().msg_hdr;
            layout.msg_control = control.as_mut_ptr().cast();
            // SAFETY: CMSG_SPACE/CMSG_LEN are arithmetic; the control buffer (64 bytes, 8-byte
            // aligned) holds CMSG_SPACE(2); CMSG_FIRSTHDR of a header whose control length
            // covers a cmsghdr returns the buffer start, and every write stays inside it.
            unsafe {
                let space = libc::CMSG_SPACE(mem::size_of::<u16>() as u32) as usize;
                debug_assert!(space <= mem::size_of::<[u64; CONTROL_WORDS]>());
                layout.msg_controllen = space as _;
                let c = libc::CMSG_FIRSTHDR(&layout);
                (*c).cmsg_level = libc::SOL_UDP;
                (*c).cmsg_type = libc::UDP_SEGMENT;
                (*c).cmsg_len = libc::CMSG_LEN(mem::size_of::<u16>() as u32) as _;
                libc::CMSG_DATA(c).cast::<u16>().write_unaligned(gso_size);
            }
            hdr.msg_hdr.msg_controllen = layout.msg_controllen;
        }
        self.mmsg.hdrs[i] = hdr;
        self.msgs += 1;
    }

    /// Adds `buf` to the message last started.
    pub(crate) fn push_iov(&mut self, buf: &'a [u8]) {
        assert!(
            self.msgs > 0 && self.iovs < self.mmsg.iovs.len(),
            "no room for an iovec"
        );
        self.mmsg.iovs[self.iovs] = libc::iovec {
            // The kernel only reads from a sending iovec.
            iov_base: buf.as_ptr() as *mut libc::c_void,
            iov_len: buf.len(),
        };
        self.iovs += 1;
        self.mmsg.hdrs[self.msgs - 1].msg_hdr.msg_iovlen += 1;
    }

    /// Sends messages `start..` with one `sendmmsg`, without blocking. Returns how many were
    /// sent (at least one); the error is the first message's, none having been sent.
    pub(crate) fn send(&mut self, fd: BorrowedFd<'_>, start: usize) -> io::Result<usize> {
        if start >= self.msgs {
            return Ok(0);
        }
        // Pointers into our own arrays, taken after the last write to them.
        let (iovs, names, controls) = self.mmsg.bases();
        let mut first_iov = 0;
        for (i, hdr) in self.mmsg.hdrs[..self.msgs].iter_mut().enumerate() {
            hdr.msg_hdr.msg_name = names.wrapping_add(i).cast();
            hdr.msg_hdr.msg_iov = iovs.wrapping_add(first_iov);
            first_iov += hdr.msg_hdr.msg_iovlen as usize;
            if hdr.msg_hdr.msg_controllen != 0 {
                hdr.msg_hdr.msg_control = controls.wrapping_add(i).cast();
            }
        }
        // SAFETY: headers `start..msgs` were written by `push_msg` and completed above: each
        // points at its own name and control storage in `self.mmsg` (sized as declared) and
        // at its iovecs (within the `self.iovs` written by `push_iov`), which describe
        // buffers borrowed (`'a`) for at least as long as this sender lives.
        let rc = unsafe {
            libc::sendmmsg(
                fd.as_raw_fd(),
                self.mmsg.hdrs[start..].as_mut_ptr(),
                (self.msgs - start) as libc::c_uint,
                (libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) as _,
            )
        };
        Ok(cvt(rc)? as usize)
    }
}

/// Sets an integer socket option.
pub(crate) fn set_int_option(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    option: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: setsockopt reads a `c_int` of the given length from a live local.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            option,
            &value as *const libc::c_int as *const libc::c_void,
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// Reads an integer socket option.
pub(crate) fn int_option(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    option: libc::c_int,
) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into the live local `value`.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            option,
            &mut value as *mut libc::c_int as *mut libc::c_void,
            &mut len,
        )
    })?;
    Ok(value)
}

/// Whether the kernel supports UDP GSO on this socket (`UDP_SEGMENT` is a known option;
/// kernels before 4.18 reject it, and would otherwise ignore the control message and send one
/// oversized datagram).
pub(crate) fn gso_supported(fd: BorrowedFd<'_>) -> bool {
    int_option(fd, libc::SOL_UDP, libc::UDP_SEGMENT).is_ok()
}

/// Turns UDP GRO on or off for the socket; an error where the kernel lacks it (before 5.0).
pub(crate) fn set_gro(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    set_int_option(fd, libc::SOL_UDP, libc::UDP_GRO, libc::c_int::from(on))
}

/// `SO_ATTACH_REUSEPORT_CBPF` from `<asm-generic/socket.h>` (Linux 4.5).
const SO_ATTACH_REUSEPORT_CBPF: libc::c_int = 51;

/// Classic BPF instruction codes used by the steering program.
const BPF_LD_B_ABS: u16 = (libc::BPF_LD | libc::BPF_B | libc::BPF_ABS) as u16;
const BPF_JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const BPF_RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

/// The steering program of a two-socket `SO_REUSEPORT` group: the first payload byte (the
/// WireGuard message type; the kernel runs the program with the UDP header pulled) equal to
/// 4, transport data, selects socket 0 of the group, anything else socket 1. A datagram too
/// short to have a first byte ends the program with 0 (socket 0).
pub(crate) const STEERING_PROGRAM: [libc::sock_filter; 4] = [
    bpf(BPF_LD_B_ABS, 0, 0, 0),
    bpf(BPF_JEQ_K, 0, 1, 4),
    bpf(BPF_RET_K, 0, 0, 0),
    bpf(BPF_RET_K, 0, 0, 1),
];

const fn bpf(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// Turns `SO_REUSEPORT` on or off. Set on an already bound socket, it lets sockets of the
/// same user that ask for it at bind time join the port (the kernel makes the group then).
pub(crate) fn set_reuseport(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    set_int_option(
        fd,
        libc::SOL_SOCKET,
        libc::SO_REUSEPORT,
        libc::c_int::from(on),
    )
}

/// A non-blocking UDP socket of `addr`'s family with `SO_REUSEPORT` (and, for IPv6,
/// `IPV6_V6ONLY` as `v6only` says), bound to `addr`.
pub(crate) fn bind_reuseport(addr: SocketAddr, v6only: bool) -> io::Result<std::net::UdpSocket> {
    let family = match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    // SAFETY: socket takes no pointers.
    let fd = cvt(unsafe {
        libc::socket(
            family,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    })?;
    // SAFETY: `fd` was just returned by socket and is owned by nobody else.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    set_reuseport(socket.as_fd(), true)?;
    if family == libc::AF_INET6 {
        set_int_option(
            socket.as_fd(),
            libc::IPPROTO_IPV6,
            libc::IPV6_V6ONLY,
            libc::c_int::from(v6only),
        )?;
    }
    let mut sockaddr = SockAddr::zeroed();
    let len = sockaddr.set(addr);
    // SAFETY: bind reads `len` bytes of the live local `sockaddr`, which `set` filled for
    // that length.
    cvt(unsafe {
        libc::bind(
            socket.as_raw_fd(),
            &sockaddr as *const SockAddr as *const libc::sockaddr,
            len,
        )
    })?;
    Ok(std::net::UdpSocket::from(socket))
}

/// Attaches a classic BPF program choosing the socket of `fd`'s `SO_REUSEPORT` group for
/// each datagram (the index of the socket in the group, in order of joining).
pub(crate) fn attach_reuseport_program(
    fd: BorrowedFd<'_>,
    program: &[libc::sock_filter],
) -> io::Result<()> {
    let fprog = libc::sock_fprog {
        len: u16::try_from(program.len())
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?,
        // The kernel only reads through this pointer (it copies the program).
        filter: program.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: setsockopt reads a `sock_fprog` of the given length from a live local, and
    // `len` instructions from `filter`, which points into the live slice `program`.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_ATTACH_REUSEPORT_CBPF,
            &fprog as *const libc::sock_fprog as *const libc::c_void,
            mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// An epoll instance watching `fds` for input (level-triggered): it polls readable while any
/// of them is. Never waited on itself; the event loop polls it like a socket.
pub(crate) fn epoll_readable(fds: &[BorrowedFd<'_>]) -> io::Result<OwnedFd> {
    // SAFETY: epoll_create1 takes no pointers.
    let epoll = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
    // SAFETY: `epoll` was just returned by epoll_create1 and is owned by nobody else.
    let epoll = unsafe { OwnedFd::from_raw_fd(epoll) };
    for fd in fds {
        let mut event = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: fd.as_raw_fd() as u64,
        };
        // SAFETY: epoll_ctl reads the live local `event`; both descriptors are open.
        cvt(unsafe {
            libc::epoll_ctl(
                epoll.as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                fd.as_raw_fd(),
                &mut event,
            )
        })?;
    }
    Ok(epoll)
}

/// Moves the calling thread (only) into a new, empty network namespace (tests that need a
/// device of their own; root only).
#[cfg(test)]
pub(crate) fn unshare_net_for_thread() -> io::Result<()> {
    // SAFETY: unshare takes no pointers; CLONE_NEWNET changes only the calling thread.
    cvt(unsafe { libc::unshare(libc::CLONE_NEWNET) })?;
    Ok(())
}
