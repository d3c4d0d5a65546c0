//! The UDP side: the listen port, carrying both IPv4 and IPv6 WireGuard datagrams, moved in
//! batches.
//!
//! The port is bound on `[::]` without `IPV6_V6ONLY`, so IPv4 peers appear as v4-mapped
//! addresses (`::ffff:a.b.c.d`); [`Bind`] translates them to and from plain IPv4
//! [`SocketAddr`]s, so the protocol core only ever sees canonical addresses. Where IPv6 is
//! unavailable it falls back to IPv4 only.
//!
//! Two sockets share the port, so that a flood of handshake messages cannot crowd transport
//! data out of the kernel's receive queue (issue 10: with one socket, a flood of valid-MAC1
//! initiations filled its queue and the tunnel lost a third of its packets). They form a
//! `SO_REUSEPORT` group with a classic BPF program (`SO_ATTACH_REUSEPORT_CBPF`, no capability
//! needed) that puts transport data (message type 4) in the *data socket* and everything else
//! (handshakes, cookie replies, NAT-traversal and relay datagrams) in the *handshake
//! socket*. [`Bind::as_raw_fd`] is an epoll descriptor readable when either is;
//! [`Bind::recv_batch`] reads the data socket first and about
//! [`HANDSHAKE_READS_PER_ROUND`] datagrams of the handshake socket, so a flood costs the data
//! path a bounded share of each round, and waits in (or is dropped from) its own queue.
//! Everything is sent through the data socket.
//!
//! The first socket is bound without `SO_REUSEPORT`, exactly as a lone socket would be (a
//! port someone else holds fails with `EADDRINUSE`, whatever options they used), and gets
//! it only once bound, for the second socket to join. Trade-off: from then on another process
//! **of the same user** that asks for `SO_REUSEPORT` can also bind the port (a lone socket
//! refuses it; the kernel refuses other users). It receives nothing as long as our program is attached (the program only
//! ever chooses our two sockets), but it could attach a program of its own; a process of the
//! same user can interfere with the daemon in worse ways anyway. Another daemon, or any
//! program binding the port without `SO_REUSEPORT`, still gets `EADDRINUSE`. Where the
//! kernel refuses any step (no `SO_REUSEPORT` group, no BPF), the first socket stays alone,
//! with `SO_REUSEPORT` off again: the single-socket behaviour of before.
//!
//! The data path goes through [`Bind::recv_batch`] and [`Bind::send_batch`]:
//! * receive: one `recvmmsg` fills many free slots of a [`Batch`]; with UDP GRO (turned on
//!   when the socket is made, where the kernel has it) one slot may hold several datagrams
//!   of one source, all of the size the control message gives except perhaps the last, and
//!   each becomes its own entry. A datagram larger than its slot (`MSG_TRUNC`) is dropped
//!   and counted ([`Bind::truncated`]).
//! * send: one `sendmmsg` carries many messages; a run of entries with the same destination
//!   and length (the last may be shorter) goes as one UDP GSO message (`UDP_SEGMENT`, one
//!   iovec per entry, at most 64 segments and 64 KiB), which the kernel (or the NIC) cuts
//!   into datagrams. A kernel without GSO is found out when the socket is made. A refused
//!   message goes again as single datagrams (in one more `sendmmsg`, not one call per
//!   datagram), so nothing is lost: when the refusal is the offload's own (`EIO`/`EINVAL`,
//!   for instance a device without checksum offload on kernels before 6.11) GSO is turned
//!   off for that address family of the socket (logged at debug level); when the segments
//!   are larger than the path MTU (`EMSGSIZE`; the single datagrams are fragmented) it
//!   stays on. A full socket buffer waits once, briefly, for room.
//!
//! The message headers, iovecs, addresses and control buffers live in the `Bind`
//! (`sys::udp::Mmsg`), so neither call allocates. GRO is on for both sockets: the kernel
//! decides whether to coalesce a flow from the socket it finds by hash (its GRO lookup does not
//! run the steering program), so a data flow would lose GRO whenever its hash fell on a
//! socket without it. A coalesced run goes where its first datagram is steered.

use std::cell::{Cell, RefCell};
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use crate::batch::Batch;
use crate::log::debug;
use crate::sys;
use crate::sys::udp::{Mmsg, MAX_MSGS, MAX_SEGMENTS};

/// The bound, non-blocking UDP listen port: the data socket, and the handshake socket where
/// steering works.
#[derive(Debug)]
pub struct Bind {
    /// The data socket (the only one without steering); every send goes through it.
    socket: UdpSocket,
    /// The handshake socket and the epoll descriptor over both, where steering works.
    steered: Option<Steered>,
    dual_stack: bool,
    port: u16,
    mark: u32,
    scratch: RefCell<Scratch>,
    /// Whether sends use UDP GSO (supported and not refused so far), for IPv4 (v4-mapped
    /// included) and IPv6 destinations: a kernel may refuse it for one family only.
    gso: [Cell<bool>; 2],
    /// Whether UDP GRO is on for the socket.
    gro: Cell<bool>,
    truncated: Cell<u64>,
}

/// The second socket of a steered port, and the epoll descriptor the event loop polls.
#[derive(Debug)]
struct Steered {
    handshake: UdpSocket,
    epoll: OwnedFd,
}

/// The arrays of one batched call, kept between calls.
#[derive(Debug)]
struct Scratch {
    mmsg: Mmsg,
    /// For each message of a send: its first entry and how many entries it carries.
    runs: Box<[(usize, usize)]>,
    /// For resending a refused GSO message as single datagrams in one `sendmmsg`; made the
    /// first time the kernel refuses one.
    singles: Option<Mmsg>,
}

/// The receive and send buffer asked for (wireguard-go's size): a burst, or a handshake flood,
/// queues in the kernel instead of being dropped while the loop is busy.
pub const SOCKET_BUFFER_BYTES: u32 = 7 << 20;

/// The largest UDP payload of one GSO message to an IPv4 destination (the IPv4 total length
/// limit less the IPv4 and UDP headers).
const MAX_GSO_BYTES_V4: usize = 65_535 - 20 - 8;
/// The same for IPv6 (the payload length field excludes the IPv6 header).
const MAX_GSO_BYTES_V6: usize = 65_535 - 8;

/// About this many datagrams of the handshake socket are read per
/// [`recv_batch`](Bind::recv_batch): its share of each round of the event loop, where the
/// rest of a batch is for the data socket. Each costs the protocol core a MAC1 check, and
/// under load a cookie reply (a few microseconds, limited per source), or a Diffie-Hellman
/// (bounded per round by the core itself). The count is checked after each `recvmmsg`, whose
/// receives may each hold up to 64 datagrams of one source where the kernel coalesced them
/// (GRO), so a flood from one source can overshoot it within one call.
pub const HANDSHAKE_READS_PER_ROUND: usize = 32;

/// How long a send waits, once per batch, for room in a full socket buffer.
const SEND_WAIT_MS: libc::c_int = 1;

impl Bind {
    /// Binds to `port` on all addresses (`0`: a random port), with firewall mark `fwmark`
    /// (`0`: none).
    pub fn new(port: u16, fwmark: u32) -> io::Result<Bind> {
        Bind::new_with(port, fwmark, &sys::udp::STEERING_PROGRAM)
    }

    /// [`new`](Self::new) with the given steering program (tests give a refused one).
    fn new_with(port: u16, fwmark: u32, program: &[libc::sock_filter]) -> io::Result<Bind> {
        match UdpSocket::bind((Ipv6Addr::UNSPECIFIED, port)) {
            Ok(socket) => Bind::from_socket(socket, true, fwmark, program),
            // No IPv6 in this kernel (ipv6.disable=1) or namespace.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL)
                ) =>
            {
                Bind::new_ipv4_only_with(port, fwmark, program)
            }
            Err(e) => Err(e),
        }
    }

    /// The fallback where IPv6 does not exist: IPv4-only sockets.
    pub fn new_ipv4_only(port: u16, fwmark: u32) -> io::Result<Bind> {
        Bind::new_ipv4_only_with(port, fwmark, &sys::udp::STEERING_PROGRAM)
    }

    fn new_ipv4_only_with(
        port: u16,
        fwmark: u32,
        program: &[libc::sock_filter],
    ) -> io::Result<Bind> {
        Bind::from_socket(
            UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port))?,
            false,
            fwmark,
            program,
        )
    }

    /// Makes the data socket of the bound `socket`, and the handshake socket beside it where
    /// the kernel lets us.
    fn from_socket(
        socket: UdpSocket,
        dual_stack: bool,
        fwmark: u32,
        program: &[libc::sock_filter],
    ) -> io::Result<Bind> {
        prepare(&socket, fwmark)?;
        let steered = match Bind::steer(&socket, fwmark, program) {
            Ok(steered) => Some(steered),
            Err(_) => {
                // Alone after all: nobody may join the port.
                sys::udp::set_reuseport(socket.as_fd(), false)?;
                None
            }
        };
        let port = socket.local_addr()?.port();
        let gso = sys::udp::gso_supported(socket.as_fd());
        let gro = sys::udp::set_gro(socket.as_fd(), true).is_ok();
        Ok(Bind {
            socket,
            steered,
            dual_stack,
            port,
            mark: fwmark,
            scratch: RefCell::new(Scratch {
                mmsg: Mmsg::new(),
                runs: vec![(0, 0); MAX_MSGS].into_boxed_slice(),
                singles: None,
            }),
            gso: [Cell::new(gso), Cell::new(gso)],
            gro: Cell::new(gro),
            truncated: Cell::new(0),
        })
    }

    /// Binds the handshake socket beside the bound data socket `data` and attaches the
    /// steering `program`.
    fn steer(data: &UdpSocket, fwmark: u32, program: &[libc::sock_filter]) -> io::Result<Steered> {
        let addr = data.local_addr()?;
        let v6only = match addr {
            SocketAddr::V6(_) => {
                sys::udp::int_option(data.as_fd(), libc::IPPROTO_IPV6, libc::IPV6_V6ONLY)? != 0
            }
            SocketAddr::V4(_) => false,
        };
        sys::udp::set_reuseport(data.as_fd(), true)?;
        let handshake = sys::udp::bind_reuseport(addr, v6only)?;
        prepare(&handshake, fwmark)?;
        if sys::udp::set_gro(data.as_fd(), true).is_ok() {
            sys::udp::set_gro(handshake.as_fd(), true)?;
        }
        // The group is [data, handshake], in that order: the program's 0 and 1.
        sys::udp::attach_reuseport_program(handshake.as_fd(), program)?;
        let epoll = sys::udp::epoll_readable(&[data.as_fd(), handshake.as_fd()])?;
        Ok(Steered { handshake, epoll })
    }

    /// Whether handshakes and other control datagrams arrive on a socket of their own (the
    /// kernel took the steering program).
    pub fn is_steered(&self) -> bool {
        self.steered.is_some()
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

    /// Sets the firewall mark (`0` clears it) on both sockets. A failure leaves the old mark
    /// on both.
    pub fn set_mark(&mut self, fwmark: u32) -> io::Result<()> {
        sys::set_mark(self.socket.as_fd(), fwmark)?;
        if let Some(steered) = &self.steered {
            if let Err(e) = sys::set_mark(steered.handshake.as_fd(), fwmark) {
                let _ = sys::set_mark(self.socket.as_fd(), self.mark);
                return Err(e);
            }
        }
        self.mark = fwmark;
        Ok(())
    }

    /// The firewall mark as the kernel reports it (`getsockopt(SO_MARK)`), for the data
    /// socket; an error if the handshake socket's differs.
    pub fn kernel_mark(&self) -> io::Result<u32> {
        let mark = sys::get_mark(self.socket.as_fd())?;
        if let Some(steered) = &self.steered {
            let other = sys::get_mark(steered.handshake.as_fd())?;
            if other != mark {
                return Err(io::Error::other(format!(
                    "handshake socket has mark {other}, data socket {mark}"
                )));
            }
        }
        Ok(mark)
    }

    /// Whether sends use UDP GSO for every family the socket carries (the kernel has it and
    /// has not refused it).
    pub fn gso(&self) -> bool {
        self.gso[0].get() && (!self.dual_stack || self.gso[1].get())
    }

    /// Whether sends to `dst` use UDP GSO.
    fn gso_for(&self, dst: SocketAddr) -> &Cell<bool> {
        &self.gso[usize::from(!is_ipv4(dst))]
    }

    /// Whether receives use UDP GRO.
    pub fn gro(&self) -> bool {
        self.gro.get()
    }

    /// Turns the offloads off (`false`) or back on where the kernel has them: for tests and
    /// measurements of the plain `recvmmsg`/`sendmmsg` path. Only before traffic arrives:
    /// the kernel does not split datagrams it already coalesced when GRO goes off, and
    /// without the control message they would read as one.
    pub fn set_offloads(&self, gso: bool, gro: bool) {
        let gso = gso && sys::udp::gso_supported(self.socket.as_fd());
        self.gso.iter().for_each(|cell| cell.set(gso));
        let mut on = gro;
        for socket in self.sockets() {
            on = on && sys::udp::set_gro(socket.as_fd(), true).is_ok();
        }
        if !on {
            // Without GRO the kernel segments anything coalesced before queueing it.
            for socket in self.sockets() {
                let _ = sys::udp::set_gro(socket.as_fd(), false);
            }
        }
        self.gro.set(on);
    }

    /// The data socket, and the handshake socket where there is one.
    fn sockets(&self) -> impl Iterator<Item = &UdpSocket> {
        std::iter::once(&self.socket).chain(self.steered.as_ref().map(|s| &s.handshake))
    }

    /// How many receives were dropped because they did not fit a slot (a datagram, or a run
    /// of coalesced ones).
    pub fn truncated(&self) -> u64 {
        self.truncated.get()
    }

    /// Receives one datagram, from the data socket or else the handshake socket;
    /// `WouldBlock` when none is waiting. (With GRO on, `buf` may receive several coalesced
    /// data datagrams; this is for control traffic and tests, the data path uses
    /// [`recv_batch`](Self::recv_batch).)
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let (len, from) = match (self.socket.recv_from(buf), &self.steered) {
            (Err(e), Some(steered)) if e.kind() == io::ErrorKind::WouldBlock => {
                steered.handshake.recv_from(buf)?
            }
            (result, _) => result?,
        };
        Ok((len, canonical(from)))
    }

    /// Receives datagrams until the batch is full or the sockets have nothing more, with
    /// `recvmmsg` over the batch's free slots: the data socket first, leaving room for
    /// [`HANDSHAKE_READS_PER_ROUND`] slots, then about that many datagrams of the handshake
    /// socket, then the data socket again into what is left if it had more. A slot
    /// coalescing several datagrams (GRO) becomes one entry per datagram; with GRO on, slots
    /// need 64 KiB (a coalesced receive larger than its slot is dropped whole, as
    /// truncated). Sources are canonical. Returns the error that stopped it early, if it was
    /// not `WouldBlock` (ICMP errors such as `ECONNREFUSED` surface here; they are not
    /// fatal).
    pub fn recv_batch(&self, batch: &mut Batch) -> Option<io::Error> {
        let Some(steered) = &self.steered else {
            return self
                .recv_socket(self.socket.as_fd(), batch, usize::MAX)
                .err();
        };
        let free = batch.free_slots();
        let reserve = HANDSHAKE_READS_PER_ROUND.min(free / 2);
        let data_more = match self.recv_socket(self.socket.as_fd(), batch, free - reserve) {
            Ok(more) => more,
            Err(e) => return Some(e),
        };
        let handshake = steered.handshake.as_fd();
        if let Err(e) = self.recv_socket(handshake, batch, HANDSHAKE_READS_PER_ROUND) {
            return Some(e);
        }
        if data_more {
            return self
                .recv_socket(self.socket.as_fd(), batch, usize::MAX)
                .err();
        }
        None
    }

    /// Receives from `fd` into at most `limit` free slots of `batch`, stopping once `limit`
    /// entries (datagrams) are in. Returns whether it stopped at the limit (or a full batch)
    /// with perhaps more waiting, or the error that stopped it, if it was not `WouldBlock`.
    fn recv_socket(&self, fd: BorrowedFd<'_>, batch: &mut Batch, limit: usize) -> io::Result<bool> {
        let mut scratch = self.scratch.borrow_mut();
        let mmsg = &mut scratch.mmsg;
        let mut left = limit;
        while !batch.is_full() && left > 0 {
            let first = batch.first_free_slot();
            let want = batch.free_slots().min(MAX_MSGS).min(left);
            let received = match mmsg.recv(fd, batch.free_slots_mut().take(want)) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let before = batch.len();
            for i in 0..received {
                let r = mmsg.received(i);
                if r.truncated {
                    self.truncated.set(self.truncated.get() + 1);
                    continue;
                }
                let from = r.from.map(canonical);
                match r.gro_size {
                    Some(size) if size < r.len => {
                        for offset in (0..r.len).step_by(size) {
                            batch.push(first + i, offset, size.min(r.len - offset), from);
                        }
                    }
                    _ => batch.push(first + i, 0, r.len, from),
                }
            }
            // At least one per receive, so that truncated ones count too.
            left = left.saturating_sub((batch.len() - before).max(received));
            if received < want {
                // The socket had no more.
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Sends every entry of `batch` to its address with `sendmmsg`; runs of entries to the
    /// same destination with the same length (the last may be shorter) go as one UDP GSO
    /// message. Returns the last failure, if any (a failed datagram is dropped, as UDP may).
    pub fn send_batch(&self, batch: &Batch) -> Option<(SocketAddr, io::Error)> {
        let entries = batch.entries();
        let mut scratch = self.scratch.borrow_mut();
        let Scratch {
            mmsg,
            runs,
            singles,
        } = &mut *scratch;
        let mut failed = None;
        let mut waited = false;
        let mut next = 0;
        while next < entries.len() {
            // Put together as many messages as fit.
            let mut sender = mmsg.sender();
            while next < entries.len() {
                let count = if self.gso_for(entries[next].addr).get() {
                    gso_run(batch, next)
                } else {
                    1
                };
                if !sender.has_room(count) {
                    break;
                }
                let dst = entries[next].addr;
                let gso_size = if count > 1 {
                    entries[next].len as u16
                } else {
                    0
                };
                sender.push_msg(self.to_socket_addr(dst), gso_size);
                for i in next..next + count {
                    sender.push_iov(batch.data(i));
                }
                runs[sender.len() - 1] = (next, count);
                next += count;
            }
            // Send them, from wherever the kernel stopped.
            let mut start = 0;
            while start < sender.len() {
                let error = match sender.send(self.socket.as_fd(), start) {
                    Ok(sent) => {
                        start += sent;
                        continue;
                    }
                    Err(e) => e,
                };
                let (first, count) = runs[start];
                let dst = entries[first].addr;
                match error.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::EAGAIN) if !waited => {
                        // The socket buffer is full: give the kernel a moment, once.
                        waited = true;
                        let mut fds = [sys::poll_fd(self.socket.as_raw_fd(), libc::POLLOUT)];
                        let _ = sys::poll(&mut fds, SEND_WAIT_MS);
                        continue;
                    }
                    Some(libc::EAGAIN) => {
                        // Still full: the rest of this round is dropped.
                        failed = Some((dst, error));
                        start = sender.len();
                    }
                    Some(code @ (libc::EIO | libc::EINVAL | libc::EMSGSIZE)) if count > 1 => {
                        // GSO refused: send that run as single datagrams; for good where
                        // the refusal is the offload's own.
                        if code != libc::EMSGSIZE && self.gso_for(dst).replace(false) {
                            let family = if is_ipv4(dst) { "IPv4" } else { "IPv6" };
                            debug!(
                                "-",
                                "UDP GSO refused ({error}): off for {family} from now on"
                            );
                        }
                        let singles = singles
                            .get_or_insert_with(|| Mmsg::with_capacity(MAX_SEGMENTS, MAX_SEGMENTS));
                        if let Some(e) = self.send_singly(singles, batch, first, count) {
                            failed = Some((dst, e));
                        }
                        start += 1;
                    }
                    _ => {
                        failed = Some((dst, error));
                        start += 1;
                    }
                }
            }
        }
        failed
    }

    /// Sends entries `first..first + count` of `batch` (at most [`MAX_SEGMENTS`], one
    /// destination) as single datagrams, with as few `sendmmsg` calls as the kernel allows,
    /// using `mmsg`. A datagram the kernel refuses is dropped (as UDP may); returns the last
    /// such error.
    fn send_singly(
        &self,
        mmsg: &mut Mmsg,
        batch: &Batch,
        first: usize,
        count: usize,
    ) -> Option<io::Error> {
        let dst = self.to_socket_addr(batch.entries()[first].addr);
        let mut sender = mmsg.sender();
        for i in first..first + count {
            if !sender.has_room(1) {
                break;
            }
            sender.push_msg(dst, 0);
            sender.push_iov(batch.data(i));
        }
        let mut failed = None;
        let mut start = 0;
        while start < sender.len() {
            match sender.send(self.socket.as_fd(), start) {
                Ok(sent) => start += sent,
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) => {
                    failed = Some(e);
                    start += 1;
                }
            }
        }
        failed
    }

    /// Sends one datagram.
    pub fn send_to(&self, datagram: &[u8], dst: SocketAddr) -> io::Result<()> {
        self.socket
            .send_to(datagram, self.to_socket_addr(dst))
            .map(drop)
    }

    /// The address to give the socket for `dst`: v4-mapped on a dual-stack socket.
    fn to_socket_addr(&self, dst: SocketAddr) -> SocketAddr {
        match dst {
            SocketAddr::V4(v4) if self.dual_stack => {
                SocketAddrV6::new(v4.ip().to_ipv6_mapped(), v4.port(), 0, 0).into()
            }
            other => other,
        }
    }
}

/// How many entries from `first` on can go as one GSO message: same destination, same
/// length (the last may be shorter), within the kernel's segment and size limits.
fn gso_run(batch: &Batch, first: usize) -> usize {
    let entries = batch.entries();
    let head = entries[first];
    let size = head.len as usize;
    if size == 0 || size > usize::from(u16::MAX) {
        return 1;
    }
    let limit = if is_ipv4(head.addr) {
        MAX_GSO_BYTES_V4
    } else {
        MAX_GSO_BYTES_V6
    };
    let mut total = size;
    let mut count = 1;
    for e in &entries[first + 1..] {
        let len = e.len as usize;
        if count == MAX_SEGMENTS || e.addr != head.addr || len == 0 || len > size {
            break;
        }
        if total + len > limit {
            break;
        }
        total += len;
        count += 1;
        if len < size {
            break;
        }
    }
    count
}

/// Non-blocking, with the buffers and firewall mark of the port.
fn prepare(socket: &UdpSocket, fwmark: u32) -> io::Result<()> {
    socket.set_nonblocking(true)?;
    sys::set_buffers(socket.as_fd(), SOCKET_BUFFER_BYTES);
    if fwmark != 0 {
        sys::set_mark(socket.as_fd(), fwmark)?;
    }
    Ok(())
}

impl AsRawFd for Bind {
    /// What to poll for input: the epoll descriptor over both sockets where steering works,
    /// else the socket.
    fn as_raw_fd(&self) -> RawFd {
        match &self.steered {
            Some(steered) => steered.epoll.as_raw_fd(),
            None => self.socket.as_raw_fd(),
        }
    }
}

/// Whether `addr` is sent over IPv4 (a v4-mapped address is).
fn is_ipv4(addr: SocketAddr) -> bool {
    match addr {
        SocketAddr::V4(_) => true,
        SocketAddr::V6(v6) => v6.ip().to_ipv4_mapped().is_some(),
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
    use crate::batch::SLOT_LEN;

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

    /// The loopback destinations of `b` to test: IPv4, and IPv6 where both are dual-stack.
    fn loopbacks(a: &Bind, b: &Bind) -> Vec<SocketAddr> {
        let mut dsts = vec![SocketAddr::from((Ipv4Addr::LOCALHOST, b.port()))];
        if a.dual_stack && b.dual_stack {
            dsts.push(SocketAddr::from((Ipv6Addr::LOCALHOST, b.port())));
        }
        dsts
    }

    /// Distinct bytes for datagram `n` of length `len`, starting with 4 (transport data:
    /// steered to the data socket, where GRO is).
    fn payload(n: usize, len: usize) -> Vec<u8> {
        let mut d: Vec<u8> = (0..len)
            .map(|i| (n * 131 + i * 7 + i / 251) as u8)
            .collect();
        if let Some(first) = d.first_mut() {
            *first = 4;
        }
        d
    }

    /// A batch holding `datagrams` (destination, bytes), each at `offset` in its own slot.
    fn batch_of(datagrams: &[(SocketAddr, Vec<u8>)], offset: usize) -> Batch {
        let mut batch = Batch::new(datagrams.len().max(1), 2048 + offset);
        for (dst, bytes) in datagrams {
            let slot = batch.free_slot().unwrap();
            slot[offset..offset + bytes.len()].copy_from_slice(bytes);
            batch.commit_at(offset, bytes.len(), Some(*dst));
        }
        batch
    }

    /// Receives into `batch` until it holds `want` entries (or a generous deadline passes).
    fn recv_entries(bind: &Bind, batch: &mut Batch, want: usize) -> Vec<(SocketAddr, Vec<u8>)> {
        let start = std::time::Instant::now();
        while batch.len() < want && !batch.is_full() {
            assert!(
                start.elapsed().as_secs() < 5,
                "got {} of {want}",
                batch.len()
            );
            if let Some(e) = bind.recv_batch(batch) {
                panic!("receive: {e}");
            }
            std::thread::yield_now();
        }
        batch.iter().map(|(a, p)| (a, p.to_vec())).collect()
    }

    /// Sender and receiver with GSO and GRO each on or off.
    fn pair(gso: bool, gro: bool) -> (Bind, Bind) {
        let (a, b) = (Bind::new(0, 0).unwrap(), Bind::new(0, 0).unwrap());
        a.set_offloads(gso, false);
        b.set_offloads(false, gro);
        (a, b)
    }

    #[test]
    fn test_offloads_on_by_default() {
        // CI's kernel (and any since 5.0) has both; older kernels fall back to plain
        // recvmmsg/sendmmsg, which the other tests also cover by turning them off.
        let bind = Bind::new(0, 0).unwrap();
        assert!(bind.gso() && bind.gro());
        let bind = Bind::new_ipv4_only(0, 0).unwrap();
        assert!(bind.gso() && bind.gro());
        bind.set_offloads(false, false);
        assert!(!bind.gso() && !bind.gro());
        bind.set_offloads(true, true);
        assert!(bind.gso() && bind.gro());
        // GRO follows on both sockets.
        let gro_of = |bind: &Bind| -> Vec<i32> {
            bind.sockets()
                .map(|s| sys::udp::int_option(s.as_fd(), libc::SOL_UDP, libc::UDP_GRO).unwrap())
                .collect()
        };
        assert!(bind.is_steered());
        assert_eq!(gro_of(&bind), [1, 1]);
        bind.set_offloads(true, false);
        assert_eq!(gro_of(&bind), [0, 0]);
    }

    #[test]
    fn test_coalesced_handshake_run_is_split() {
        // A GSO run of handshake-type datagrams reaches the handshake socket coalesced (GRO
        // on it too) and comes out as separate entries, as on the data socket.
        let (a, b) = pair(true, true);
        let dst = loopbacks(&a, &b)[0];
        let sent: Vec<_> = (0..40u8)
            .map(|n| (dst, typed(1, n, if n < 39 { 148 } else { 100 })))
            .collect();
        assert!(a.send_batch(&batch_of(&sent, 0)).is_none());
        let mut rx = Batch::new(64, SLOT_LEN);
        let got = recv_entries(&b, &mut rx, sent.len());
        let want: Vec<_> = sent
            .iter()
            .map(|(d, p)| (SocketAddr::new(d.ip(), a.port()), p.clone()))
            .collect();
        assert_eq!(got, want);
        assert!(
            rx.entries().iter().all(|e| e.slot == rx.entries()[0].slot),
            "one receive"
        );
    }

    #[test]
    fn test_gso_send_keeps_datagram_boundaries() {
        for (gso, gro) in [(true, true), (true, false), (false, true), (false, false)] {
            let (a, b) = pair(gso, gro);
            for dst in loopbacks(&a, &b) {
                let mut sent: Vec<_> = (0..40).map(|n| (dst, payload(n, 1200))).collect();
                sent.push((dst, payload(40, 500)));
                assert!(a.send_batch(&batch_of(&sent, 16)).is_none());
                let mut rx = Batch::new(64, SLOT_LEN);
                let got = recv_entries(&b, &mut rx, sent.len());
                let want: Vec<_> = sent
                    .iter()
                    .map(|(_, p)| (SocketAddr::new(dst.ip(), a.port()), p.clone()))
                    .collect();
                assert_eq!(got, want, "gso {gso}, gro {gro}, {dst}");
                let slots = rx.entries().last().unwrap().slot as usize + 1;
                if a.gso() && b.gro() {
                    // GSO on the way out and GRO on the way in: whole runs share a slot.
                    assert!(
                        slots < sent.len(),
                        "{slots} slots for {} datagrams",
                        sent.len()
                    );
                } else if !a.gso() {
                    assert_eq!(slots, sent.len(), "one datagram per slot without offloads");
                }
            }
        }
    }

    #[test]
    fn test_gro_receive_splits_runs() {
        let (a, b) = pair(true, true);
        for dst in loopbacks(&a, &b) {
            // Runs of small datagrams longer than one GSO message, with shorter tails.
            let mut sent = Vec::new();
            for (n, len) in [(150, 100), (1, 37), (70, 64), (3, 1)] {
                for _ in 0..n {
                    let i = sent.len();
                    sent.push((dst, payload(i, len)));
                }
            }
            assert!(a.send_batch(&batch_of(&sent, 0)).is_none());
            let mut rx = Batch::new(256, SLOT_LEN);
            let got = recv_entries(&b, &mut rx, sent.len());
            assert_eq!(got.len(), sent.len());
            for (i, ((from, bytes), (_, want))) in got.iter().zip(&sent).enumerate() {
                assert_eq!((from.port(), bytes), (a.port(), want), "datagram {i}");
            }
            if a.gso() && b.gro() {
                let shared = rx.entries().windows(2).filter(|w| w[0].slot == w[1].slot);
                assert!(shared.count() > 0, "no slot holds several datagrams");
                assert_eq!(b.truncated(), 0);
            }
        }
    }

    #[test]
    fn test_mixed_destinations_and_lengths() {
        for gso in [true, false] {
            let a = Bind::new(0, 0).unwrap();
            a.set_offloads(gso, true);
            let (b, c) = (Bind::new(0, 0).unwrap(), Bind::new(0, 0).unwrap());
            let (to_b, to_c) = (loopbacks(&a, &b), loopbacks(&a, &c));
            let mut sent = Vec::new();
            // Runs broken by a destination change, a longer datagram, an empty one, and
            // lone datagrams of every family.
            let lens = [
                300, 300, 300, 200, 300, 300, 0, 300, 1000, 1000, 999, 1000, 5,
            ];
            for (i, len) in lens.into_iter().enumerate() {
                let dst = if i == 4 || i == 12 { to_c[0] } else { to_b[0] };
                sent.push((dst, payload(i, len)));
            }
            for (k, dst) in to_b.iter().chain(&to_c).enumerate() {
                sent.push((*dst, payload(100 + k, 60)));
                sent.push((*dst, payload(200 + k, 60)));
            }
            assert!(a.send_batch(&batch_of(&sent, 3)).is_none());
            for (bind, dsts) in [(&b, &to_b), (&c, &to_c)] {
                let want: Vec<_> = sent
                    .iter()
                    .filter(|(d, _)| dsts.contains(d))
                    .map(|(d, p)| (SocketAddr::new(d.ip(), a.port()), p.clone()))
                    .collect();
                let mut rx = Batch::new(64, SLOT_LEN);
                assert_eq!(recv_entries(bind, &mut rx, want.len()), want, "gso {gso}");
            }
        }
    }

    #[test]
    fn test_v4_mapped_destinations_on_dual_stack() {
        let (a, b) = pair(true, true);
        if !a.is_dual_stack() {
            return;
        }
        let mapped = SocketAddr::from((Ipv4Addr::LOCALHOST.to_ipv6_mapped(), b.port()));
        let plain = SocketAddr::from((Ipv4Addr::LOCALHOST, b.port()));
        let sent: Vec<_> = (0..10)
            .map(|n| (if n < 5 { mapped } else { plain }, payload(n, 80)))
            .collect();
        assert!(a.send_batch(&batch_of(&sent, 0)).is_none());
        let mut rx = Batch::new(16, SLOT_LEN);
        let got = recv_entries(&b, &mut rx, sent.len());
        for ((from, bytes), (_, want)) in got.iter().zip(&sent) {
            // Sources come back canonical: plain IPv4.
            assert_eq!(*from, SocketAddr::from((Ipv4Addr::LOCALHOST, a.port())));
            assert_eq!(bytes, want);
        }
        assert_eq!(got.len(), sent.len());
    }

    #[test]
    fn test_gso_refused_falls_back_without_loss() {
        let (a, b) = pair(true, false);
        for dst in loopbacks(&a, &b) {
            let (a, b) = pair(true, false);
            let dst = SocketAddr::new(dst.ip(), b.port());
            assert!(a.gso(), "this kernel has UDP GSO");
            // Without UDP checksums the kernel refuses GSO (EINVAL), as it does (EIO) on a
            // device without checksum offload.
            let fd = a.socket.as_fd();
            sys::udp::set_int_option(fd, libc::SOL_SOCKET, libc::SO_NO_CHECK, 1).unwrap();
            if a.is_dual_stack() {
                sys::udp::set_int_option(fd, libc::SOL_UDP, UDP_NO_CHECK6_TX, 1).unwrap();
                let fd = b.socket.as_fd();
                sys::udp::set_int_option(fd, libc::SOL_UDP, UDP_NO_CHECK6_RX, 1).unwrap();
            }
            // Two GSO runs in one sendmmsg: the first refusal turns GSO off, the second run
            // was already built as a GSO message and is refused and resent too.
            let sent: Vec<_> = (0..20)
                .map(|n| (dst, payload(n, if n < 10 { 500 } else { 400 })))
                .collect();
            assert!(a.send_batch(&batch_of(&sent, 0)).is_none());
            assert!(!a.gso_for(dst).get(), "GSO stays off once refused");
            if a.is_dual_stack() {
                let other = SocketAddr::from((Ipv6Addr::LOCALHOST, 1));
                let other = if is_ipv4(dst) { other } else { plain_v4(1) };
                assert!(a.gso_for(other).get(), "the other family keeps GSO");
            }
            let mut rx = Batch::new(32, SLOT_LEN);
            let got = recv_entries(&b, &mut rx, sent.len());
            let want: Vec<_> = sent
                .iter()
                .map(|(d, p)| (SocketAddr::new(d.ip(), a.port()), p.clone()))
                .collect();
            assert_eq!(got, want, "{dst}");
        }
    }

    fn plain_v4(port: u16) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, port))
    }

    /// `UDP_NO_CHECK6_TX` from `<linux/udp.h>`.
    const UDP_NO_CHECK6_TX: libc::c_int = 101;
    /// `UDP_NO_CHECK6_RX`: accept IPv6 datagrams without a checksum.
    const UDP_NO_CHECK6_RX: libc::c_int = 102;

    #[test]
    fn test_oversized_datagram_is_dropped_and_counted() {
        let (a, b) = pair(false, true);
        let dst = loopbacks(&a, &b)[0];
        a.send_to(&payload(0, 1000), dst).unwrap();
        a.send_to(&payload(1, 100), dst).unwrap();
        let mut rx = Batch::new(4, 256);
        let start = std::time::Instant::now();
        while rx.is_empty() {
            assert!(start.elapsed().as_secs() < 5, "no datagram");
            assert!(b.recv_batch(&mut rx).is_none());
        }
        assert_eq!(rx.len(), 1);
        assert_eq!(rx.data(0), payload(1, 100));
        assert_eq!(b.truncated(), 1);
    }

    #[test]
    fn test_failed_message_skips_only_itself() {
        // An IPv4-only socket cannot send to IPv6: sendmmsg stops at that message, which is
        // reported and skipped; the messages after it still go.
        let a = Bind::new_ipv4_only(0, 0).unwrap();
        let b = Bind::new(0, 0).unwrap();
        let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, b.port()));
        let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, b.port()));
        for gso in [true, false] {
            a.set_offloads(gso, false);
            let sent = [
                (v4, payload(0, 90)),
                (v6, payload(1, 90)),
                (v6, payload(2, 90)),
                (v4, payload(3, 90)),
                (v4, payload(4, 90)),
                (v6, payload(5, 90)),
            ];
            let (dst, _) = a.send_batch(&batch_of(&sent, 0)).expect("a failure");
            assert_eq!(dst, v6);
            let want: Vec<_> = [0, 3, 4]
                .map(|i| {
                    (
                        SocketAddr::from((Ipv4Addr::LOCALHOST, a.port())),
                        sent[i].1.clone(),
                    )
                })
                .to_vec();
            let mut rx = Batch::new(8, SLOT_LEN);
            assert_eq!(recv_entries(&b, &mut rx, want.len()), want, "gso {gso}");
            assert!(b.recv_batch(&mut rx).is_none());
            assert_eq!(rx.len(), want.len(), "nothing else arrives");
            assert!(a.gso() == gso, "no reason to turn GSO off");
        }
    }

    #[test]
    fn test_batches_larger_than_one_call() {
        // More messages (without GSO) or iovecs (with it) than one sendmmsg takes, and more
        // slots than one recvmmsg fills.
        for (gso, gro) in [(true, true), (false, false), (true, false)] {
            let (a, b) = pair(gso, gro);
            let rcvbuf = sys::socket_int_option(b.socket.as_fd(), libc::SO_RCVBUF).unwrap();
            if !gro && rcvbuf < 4 << 20 {
                // 1100 separate datagrams overflow the capped buffer of an unprivileged
                // socket; the coalesced case above still ran.
                eprintln!("SKIPPED without GRO: receive buffer {rcvbuf} bytes (not root)");
                continue;
            }
            let dst = loopbacks(&a, &b)[0];
            let sent: Vec<_> = (0..1100).map(|n| (dst, payload(n, 10))).collect();
            assert!(a.send_batch(&batch_of(&sent, 0)).is_none());
            let mut rx = Batch::new(sent.len(), 2048);
            let got = recv_entries(&b, &mut rx, sent.len());
            assert_eq!(got.len(), sent.len());
            for (i, ((_, bytes), (_, want))) in got.iter().zip(&sent).enumerate() {
                assert_eq!(bytes, want, "datagram {i}, gso {gso}, gro {gro}");
            }
        }
    }

    /// Runs `script` with `sh -e`; panics with its output when it fails.
    fn sh(script: &str) {
        let out = std::process::Command::new("sh")
            .args(["-ec", script])
            .output()
            .expect("sh");
        assert!(out.status.success(), "{script}: {out:?}");
    }

    #[test]
    fn test_segments_above_the_path_mtu_go_singly() {
        if !sys::is_root_or_skip("needs root (a network namespace)") {
            return;
        }
        // In a namespace of its own whose loopback has a small MTU, a GSO message whose
        // segments exceed it is refused (EMSGSIZE); sent singly, the datagrams are
        // fragmented and all arrive. Runs that fit still go as GSO, which stays on.
        std::thread::spawn(|| {
            sys::udp::unshare_net_for_thread().unwrap();
            sh("ip link set lo up mtu 1280");
            let (a, b) = pair(true, true);
            for dst in loopbacks(&a, &b) {
                let mut sent = Vec::new();
                for len in [1400, 1000, 1400] {
                    for _ in 0..10 {
                        let i = sent.len();
                        sent.push((dst, payload(i, len)));
                    }
                }
                assert!(a.send_batch(&batch_of(&sent, 0)).is_none());
                assert!(a.gso_for(dst).get(), "GSO stays on for {dst}");
                let mut rx = Batch::new(64, SLOT_LEN);
                let want: Vec<_> = sent
                    .iter()
                    .map(|(d, p)| (SocketAddr::new(d.ip(), a.port()), p.clone()))
                    .collect();
                assert_eq!(recv_entries(&b, &mut rx, sent.len()), want, "{dst}");
                let slots = rx.entries().last().unwrap().slot as usize + 1;
                assert!(slots < sent.len(), "the 1000-byte run was coalesced");
            }
        })
        .join()
        .unwrap();
    }

    #[test]
    fn test_nothing_waiting() {
        let b = Bind::new(0, 0).unwrap();
        let mut rx = Batch::new(8, 2048);
        assert!(b.recv_batch(&mut rx).is_none());
        assert!(rx.is_empty());
        assert!(b.send_batch(&rx).is_none());
    }

    /// Datagrams waiting on `socket`, read without blocking until it has none for a moment.
    fn drain(socket: &UdpSocket) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        let mut buf = [0u8; 2048];
        let mut idle = std::time::Instant::now();
        while idle.elapsed().as_millis() < 200 {
            match socket.recv_from(&mut buf) {
                Ok((len, _)) => {
                    got.push(buf[..len].to_vec());
                    idle = std::time::Instant::now();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
        got
    }

    /// A datagram of WireGuard message type `kind` (the first byte), `n` in its second byte.
    fn typed(kind: u8, n: u8, len: usize) -> Vec<u8> {
        let mut d = vec![0u8; len];
        d[0] = kind;
        d[1] = n;
        d
    }

    #[test]
    fn test_steering_sends_data_and_the_rest_to_separate_sockets() {
        let b = Bind::new(0, 0).unwrap();
        assert!(b.is_steered(), "this kernel takes the steering program");
        let steered = b.steered.as_ref().unwrap();
        assert_eq!(b.as_raw_fd(), steered.epoll.as_raw_fd());
        let tx4 = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let tx6 = UdpSocket::bind((Ipv6Addr::LOCALHOST, 0)).unwrap();
        let mut data = Vec::new();
        let mut other = Vec::new();
        for n in 0..40u8 {
            // Transport data, the three handshake messages, a NAT-traversal-like type, and
            // a byte past WireGuard's types.
            let kind = [4, 1, 2, 3, 0x57, 0x84, 4, 4][usize::from(n % 8)];
            let d = typed(kind, n, 32 + usize::from(n) * 4);
            let tx = if n % 3 == 0 && b.is_dual_stack() {
                &tx6
            } else {
                &tx4
            };
            let ip = tx.local_addr().unwrap().ip();
            tx.send_to(&d, (ip, b.port())).unwrap();
            if kind == 4 { &mut data } else { &mut other }.push(d);
        }
        let mut got_data = drain(&b.socket);
        let mut got_other = drain(&steered.handshake);
        got_data.sort();
        got_other.sort();
        data.sort();
        other.sort();
        assert_eq!(got_data, data, "data socket");
        assert_eq!(got_other, other, "handshake socket");
        // An empty datagram has no type: it goes to the data socket (and is dropped there).
        tx4.send_to(&[], (Ipv4Addr::LOCALHOST, b.port())).unwrap();
        assert_eq!(drain(&b.socket), vec![Vec::<u8>::new()]);
    }

    #[test]
    fn test_handshake_reads_bounded_per_round() {
        let b = Bind::new(0, 0).unwrap();
        assert!(b.is_steered());
        let tx = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let dst = (Ipv4Addr::LOCALHOST, b.port());
        let flood = 3 * HANDSHAKE_READS_PER_ROUND + 5;
        for n in 0..flood {
            tx.send_to(&typed(1, n as u8, 148), dst).unwrap();
        }
        for n in 0..50u8 {
            tx.send_to(&typed(4, n, 100), dst).unwrap();
        }
        let (mut handshakes, mut data, mut rounds) = (0, 0, 0);
        let start = std::time::Instant::now();
        while handshakes < flood || data < 50 {
            assert!(
                start.elapsed().as_secs() < 5,
                "{handshakes} handshakes, {data} data"
            );
            let mut rx = Batch::new(64, 2048);
            assert!(b.recv_batch(&mut rx).is_none());
            let hs = rx.iter().filter(|(_, d)| d[0] == 1).count();
            assert!(
                hs <= HANDSHAKE_READS_PER_ROUND,
                "{hs} handshakes in a round"
            );
            if rounds == 0 {
                // Loopback delivery is done by the time send_to returns: the first round
                // takes all the data there is room for and a full share of handshakes.
                assert_eq!(hs, HANDSHAKE_READS_PER_ROUND);
                assert_eq!(rx.len(), 64, "data fills the rest of the batch");
            }
            handshakes += hs;
            data += rx.len() - hs;
            rounds += 1;
        }
        assert_eq!((handshakes, data), (flood, 50));
        assert!(rounds >= 4);
    }

    #[test]
    fn test_port_stays_exclusive() {
        let b = Bind::new(0, 0).unwrap();
        let port = b.port();
        assert!(b.is_steered());
        // Neither a plain socket nor another Bind gets the port.
        for addr in [
            SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)),
            SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)),
            SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        ] {
            let e = UdpSocket::bind(addr).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EADDRINUSE), "{addr}");
        }
        let e = Bind::new(port, 0).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EADDRINUSE));
        // A port someone else holds with SO_REUSEPORT is refused too: the first socket asks
        // for it only once bound.
        let holder = sys::udp::bind_reuseport((Ipv6Addr::UNSPECIFIED, 0).into(), false).unwrap();
        let held = holder.local_addr().unwrap().port();
        let e = Bind::new(held, 0).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EADDRINUSE));
        // The trade-off: a socket of the same user asking for SO_REUSEPORT joins our port,
        // but the program never gives it anything.
        let joiner = sys::udp::bind_reuseport((Ipv6Addr::UNSPECIFIED, port).into(), false).unwrap();
        let tx = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        for n in 0..20u8 {
            tx.send_to(
                &typed([1, 4][usize::from(n % 2)], n, 64),
                (Ipv4Addr::LOCALHOST, port),
            )
            .unwrap();
        }
        assert!(drain(&joiner).is_empty(), "the joiner got datagrams");
        let mut rx = Batch::new(64, 2048);
        assert!(b.recv_batch(&mut rx).is_none());
        assert_eq!(rx.len(), 20);
    }

    #[test]
    fn test_another_user_cannot_join_the_port() {
        if !sys::is_root_or_skip("needs root (to become another user)") {
            return;
        }
        let b = Bind::new(0, 0).unwrap();
        assert!(b.is_steered());
        let addr = SocketAddr::from((Ipv6Addr::UNSPECIFIED, b.port()));
        // A child process that becomes nobody asks for SO_REUSEPORT on our port: the kernel
        // lets only the same user join a group. The child makes system calls only.
        // SAFETY: the child calls only async-signal-safe functions (setresgid, setresuid,
        // socket, setsockopt, bind, _exit) and never returns into Rust code.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork");
        if pid == 0 {
            // SAFETY: plain system calls on values of the child's own; _exit ends it.
            unsafe {
                let code = if libc::setresgid(65534, 65534, 65534) != 0
                    || libc::setresuid(65534, 65534, 65534) != 0
                {
                    3
                } else {
                    match sys::udp::bind_reuseport(addr, false) {
                        Err(e) if e.raw_os_error() == Some(libc::EADDRINUSE) => 0,
                        Err(_) => 2,
                        Ok(_) => 1,
                    }
                };
                libc::_exit(code);
            }
        }
        let mut status = 0;
        // SAFETY: waits for our own child, writing its status to a live local.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status));
        assert_eq!(
            libc::WEXITSTATUS(status),
            0,
            "1: joined, 2: other error, 3: setuid"
        );
    }

    #[test]
    fn test_rebind_and_marks_cover_both_sockets() {
        let old = Bind::new(0, 0).unwrap();
        let port = old.port();
        drop(old);
        // The port, released by both sockets, binds again, steered.
        let mut b = Bind::new(port, 0).unwrap();
        assert!(b.is_steered() && b.port() == port);
        let handshake = |b: &Bind| sys::get_mark(b.steered.as_ref().unwrap().handshake.as_fd());
        if !sys::is_root_or_skip("marks: need CAP_NET_ADMIN") {
            return;
        }
        b.set_mark(0x51).unwrap();
        assert_eq!(
            (b.kernel_mark().unwrap(), handshake(&b).unwrap()),
            (0x51, 0x51)
        );
        b.set_mark(0).unwrap();
        assert_eq!((b.kernel_mark().unwrap(), handshake(&b).unwrap()), (0, 0));
        let b = Bind::new_ipv4_only(0, 0x77).unwrap();
        assert!(b.is_steered() && !b.is_dual_stack());
        assert_eq!(
            (b.kernel_mark().unwrap(), handshake(&b).unwrap()),
            (0x77, 0x77)
        );
        let rcv = sys::socket_int_option(
            b.steered.as_ref().unwrap().handshake.as_fd(),
            libc::SO_RCVBUF,
        )
        .unwrap();
        assert!(rcv >= i32::try_from(SOCKET_BUFFER_BYTES).unwrap());
    }

    #[test]
    fn test_refused_program_leaves_one_exclusive_socket() {
        // A jump past the end: the kernel refuses the program.
        let bad = [libc::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            jt: 5,
            jf: 5,
            k: 4,
        }];
        for v4 in [false, true] {
            let b = if v4 {
                Bind::new_ipv4_only_with(0, 0, &bad).unwrap()
            } else {
                Bind::new_with(0, 0, &bad).unwrap()
            };
            assert!(!b.is_steered());
            assert_eq!(b.as_raw_fd(), b.socket.as_raw_fd());
            let reuseport =
                sys::udp::int_option(b.socket.as_fd(), libc::SOL_SOCKET, libc::SO_REUSEPORT);
            assert_eq!(reuseport.unwrap(), 0, "SO_REUSEPORT off again");
            let family = if v4 {
                SocketAddr::from((Ipv4Addr::UNSPECIFIED, b.port()))
            } else {
                SocketAddr::from((Ipv6Addr::UNSPECIFIED, b.port()))
            };
            let e = sys::udp::bind_reuseport(family, false).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EADDRINUSE));
            // Everything arrives on the one socket.
            let tx = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
            for n in 0..10u8 {
                tx.send_to(
                    &typed([1, 4][usize::from(n % 2)], n, 64),
                    (Ipv4Addr::LOCALHOST, b.port()),
                )
                .unwrap();
            }
            let mut rx = Batch::new(64, 2048);
            let got = recv_entries(&b, &mut rx, 10);
            assert_eq!(got.len(), 10);
        }
    }
}
