//! The crate's only `unsafe` code: thin, safe wrappers over the Linux system calls that std
//! does not offer (TUN `ioctl`s, `poll`, `signalfd`, `fork`, `umask`, `SO_MARK`).
//!
//! Each wrapper validates its inputs, passes only pointers to live, correctly sized values,
//! and turns a `-1` return into [`io::Error::last_os_error`]. Nothing here keeps state.

use std::fs::{File, OpenOptions};
use std::io;
use std::mem;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

pub(crate) mod udp;

/// Whether the tests run as root; if not, says which test is skipped and why (tests that need
/// root run in CI, which is root, and skip elsewhere only with this line).
#[cfg(test)]
pub(crate) fn is_root_or_skip(why: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("SKIPPED: {why}");
    }
    root
}

/// `IFNAMSIZ`: interface names are at most 15 bytes plus the terminating NUL.
pub(crate) const IFNAMSIZ: usize = 16;
/// `_IOW('T', 202, int)` from `<linux/if_tun.h>`.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
/// `SIOCSIFMTU` from `<linux/sockios.h>`.
const SIOCSIFMTU: libc::c_ulong = 0x8922;
/// `SIOCGIFFLAGS` from `<linux/sockios.h>`.
const SIOCGIFFLAGS: libc::c_ulong = 0x8913;
/// `SIOCGIFMTU` from `<linux/sockios.h>`.
const SIOCGIFMTU: libc::c_ulong = 0x8921;
/// `RTMGRP_LINK` from `<linux/rtnetlink.h>`: link (interface) change notifications.
const RTMGRP_LINK: u32 = 1;
/// `IFF_TUN` from `<linux/if_tun.h>`: layer-3 packets.
const IFF_TUN: libc::c_short = 0x0001;
/// `IFF_NO_PI`: no 4-byte packet-information header before each packet.
const IFF_NO_PI: libc::c_short = 0x1000;
/// `IFF_VNET_HDR`: a `struct virtio_net_hdr` before each packet.
const IFF_VNET_HDR: libc::c_short = 0x4000;
/// `_IOW('T', 208, unsigned int)`: which offloads the reader of the device accepts.
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
/// `_IOW('T', 216, int)`: the size of the virtio-net header.
const TUNSETVNETHDRSZ: libc::c_ulong = 0x4004_54d8;
/// `TUN_F_*` from `<linux/if_tun.h>`, for [`tun_set_offload`].
pub(crate) const TUN_F_CSUM: u32 = 0x01;
pub(crate) const TUN_F_TSO4: u32 = 0x02;
pub(crate) const TUN_F_TSO6: u32 = 0x04;
pub(crate) const TUN_F_USO4: u32 = 0x20;
pub(crate) const TUN_F_USO6: u32 = 0x40;

/// `struct ifreq`: the name, then a 24-byte union of which we use `ifr_flags` (a `short`) and
/// `ifr_mtu` (an `int`), both at offset 0 of the union.
#[repr(C)]
struct IfReq {
    name: [libc::c_char; IFNAMSIZ],
    data: [u8; 24],
}

impl IfReq {
    /// An `ifreq` naming `name`, which must be shorter than [`IFNAMSIZ`] and contain no NUL.
    fn new(name: &str) -> io::Result<IfReq> {
        if name.is_empty() || name.len() >= IFNAMSIZ || name.contains('\0') {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let mut req = IfReq {
            name: [0; IFNAMSIZ],
            data: [0; 24],
        };
        for (dst, src) in req.name.iter_mut().zip(name.bytes()) {
            *dst = src as libc::c_char;
        }
        Ok(req)
    }

    fn name(&self) -> String {
        let bytes: Vec<u8> = self
            .name
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Opens `/dev/net/tun` and attaches it to a new (or existing, unused) TUN interface `name`
/// with `IFF_TUN | IFF_NO_PI`. Returns the non-blocking, close-on-exec file and the name the
/// kernel chose.
pub(crate) fn open_tun(name: &str) -> io::Result<(File, String)> {
    open_tun_with(name, false)
}

/// [`open_tun`], with `IFF_VNET_HDR` when `vnet_hdr`.
pub(crate) fn open_tun_with(name: &str, vnet_hdr: bool) -> io::Result<(File, String)> {
    let mut req = IfReq::new(name)?;
    let flags = IFF_TUN | IFF_NO_PI | if vnet_hdr { IFF_VNET_HDR } else { 0 };
    req.data[..2].copy_from_slice(&flags.to_ne_bytes());
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open("/dev/net/tun")?;
    // SAFETY: TUNSETIFF reads and writes one `struct ifreq`, and `req` is one, alive and
    // exclusively borrowed for the duration of the call.
    cvt(unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF, &mut req as *mut IfReq) })?;
    Ok((file, req.name()))
}

/// Sets the virtio-net header size (`TUNSETVNETHDRSZ`) of a TUN descriptor.
pub(crate) fn tun_set_vnet_hdr_size(fd: BorrowedFd<'_>, size: u32) -> io::Result<()> {
    let size =
        libc::c_int::try_from(size).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: TUNSETVNETHDRSZ reads one `int` from the pointer, a live local.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETVNETHDRSZ, &size as *const libc::c_int) })?;
    Ok(())
}

/// Tells the kernel which offloads (`TUN_F_*`) the reader of a TUN descriptor handles
/// (`TUNSETOFFLOAD`); `EINVAL` when it does not know one of them.
pub(crate) fn tun_set_offload(fd: BorrowedFd<'_>, flags: u32) -> io::Result<()> {
    // SAFETY: TUNSETOFFLOAD takes its argument by value (an unsigned long), no pointer.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETOFFLOAD, libc::c_ulong::from(flags)) })?;
    Ok(())
}

/// Moves the calling thread into a new, empty network namespace (tests: real devices
/// without touching the host's network).
#[cfg(test)]
pub(crate) fn unshare_net() -> io::Result<()> {
    // SAFETY: unshare(2) takes no pointers.
    cvt(unsafe { libc::unshare(libc::CLONE_NEWNET) })?;
    Ok(())
}

/// Sets the MTU of interface `name` (in the calling thread's network namespace).
pub(crate) fn set_mtu(name: &str, mtu: u32) -> io::Result<()> {
    let mut req = IfReq::new(name)?;
    let mtu = libc::c_int::try_from(mtu).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    req.data[..4].copy_from_slice(&mtu.to_ne_bytes());
    // SAFETY: socket(2) takes no pointers; the result is checked before being owned.
    let fd = cvt(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `fd` was just returned by socket(2) and is owned by nobody else.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: SIOCSIFMTU reads one `struct ifreq`; `req` is one and outlives the call.
    cvt(unsafe { libc::ioctl(sock.as_raw_fd(), SIOCSIFMTU, &mut req as *mut IfReq) })?;
    Ok(())
}

/// The MTU of interface `name` (in the calling thread's network namespace).
pub(crate) fn get_mtu(name: &str) -> io::Result<u32> {
    let mut req = IfReq::new(name)?;
    // SAFETY: socket(2) takes no pointers; the result is checked before being owned.
    let fd = cvt(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `fd` was just returned by socket(2) and is owned by nobody else.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: SIOCGIFMTU reads the name from and writes `ifr_mtu` into one `struct ifreq`;
    // `req` is one and outlives the call.
    cvt(unsafe { libc::ioctl(sock.as_raw_fd(), SIOCGIFMTU, &mut req as *mut IfReq) })?;
    let mtu = libc::c_int::from_ne_bytes([req.data[0], req.data[1], req.data[2], req.data[3]]);
    u32::try_from(mtu).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// The flags (`IFF_*`) of interface `name`.
pub(crate) fn get_flags(name: &str) -> io::Result<libc::c_short> {
    let mut req = IfReq::new(name)?;
    // SAFETY: socket(2) takes no pointers; the result is checked before being owned.
    let fd = cvt(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `fd` was just returned by socket(2) and is owned by nobody else.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: SIOCGIFFLAGS reads the name from and writes `ifr_flags` into one `struct
    // ifreq`; `req` is one and outlives the call.
    cvt(unsafe { libc::ioctl(sock.as_raw_fd(), SIOCGIFFLAGS, &mut req as *mut IfReq) })?;
    Ok(libc::c_short::from_ne_bytes([req.data[0], req.data[1]]))
}

/// The index of interface `name`.
pub(crate) fn if_index(name: &str) -> io::Result<u32> {
    let c_name =
        std::ffi::CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `c_name` is a live NUL-terminated string for the duration of the call.
    match unsafe { libc::if_nametoindex(c_name.as_ptr()) } {
        0 => Err(io::Error::last_os_error()),
        index => Ok(index),
    }
}

/// The current name of the interface with `index` (interfaces can be renamed).
pub(crate) fn if_name(index: u32) -> io::Result<String> {
    let mut buf = [0 as libc::c_char; IFNAMSIZ];
    // SAFETY: if_indextoname writes at most IFNAMSIZ bytes, NUL included, into `buf`, which
    // has that size.
    let ptr = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if ptr.is_null() {
        return Err(io::Error::last_os_error());
    }
    let bytes: Vec<u8> = buf
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// A non-blocking rtnetlink socket subscribed to link notifications (`RTMGRP_LINK`): it
/// becomes readable whenever an interface of the namespace changes (MTU, state, deletion).
pub(crate) fn link_monitor() -> io::Result<File> {
    // SAFETY: socket(2) takes no pointers; the result is checked before being owned.
    let fd = cvt(unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    })?;
    // SAFETY: `fd` was just returned by socket(2) and is owned by nobody else.
    let file = unsafe { File::from_raw_fd(fd) };
    // SAFETY: sockaddr_nl is plain data; all-zero is a valid value, completed below.
    let mut addr: libc::sockaddr_nl = unsafe { mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    addr.nl_groups = RTMGRP_LINK;
    // SAFETY: bind reads `size_of::<sockaddr_nl>()` bytes from a pointer to the live local.
    cvt(unsafe {
        libc::bind(
            fd,
            &addr as *const libc::sockaddr_nl as *const libc::sockaddr,
            mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    })?;
    Ok(file)
}

/// Asks for `bytes` of receive and send buffer on a socket: `SO_RCVBUFFORCE`/`SO_SNDBUFFORCE`
/// (which pass `net.core.rmem_max`/`wmem_max` with CAP_NET_ADMIN), else the capped plain
/// options. Best effort, as wireguard-go does: a smaller buffer only means earlier drops.
pub(crate) fn set_buffers(fd: BorrowedFd<'_>, bytes: u32) {
    let size = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    for (forced, plain) in [
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
    ] {
        for option in [forced, plain] {
            // SAFETY: these options read a `c_int` of the given length from a live local.
            let status = unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    option,
                    &size as *const libc::c_int as *const libc::c_void,
                    mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if status == 0 {
                break;
            }
        }
    }
}

/// Reads an integer socket option at `SOL_SOCKET` level (for tests and diagnostics).
#[cfg(test)]
pub(crate) fn socket_int_option(fd: BorrowedFd<'_>, option: libc::c_int) -> io::Result<i32> {
    let mut value: libc::c_int = 0;
    let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into the live local `value`.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            &mut value as *mut libc::c_int as *mut libc::c_void,
            &mut len,
        )
    })?;
    Ok(value)
}

/// Sets `SO_MARK` on a socket (`0` clears it).
pub(crate) fn set_mark(fd: BorrowedFd<'_>, mark: u32) -> io::Result<()> {
    // SAFETY: SO_MARK reads a `u32` of the given length from a pointer to a live local.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_MARK,
            &mark as *const u32 as *const libc::c_void,
            mem::size_of::<u32>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// Reads `SO_MARK` of a socket.
pub(crate) fn get_mark(fd: BorrowedFd<'_>) -> io::Result<u32> {
    let mut mark: u32 = 0;
    let mut len = mem::size_of::<u32>() as libc::socklen_t;
    // SAFETY: SO_MARK writes at most `len` bytes (a `u32`) to a pointer to a live local, and
    // `len` points to a live local holding that size.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_MARK,
            &mut mark as *mut u32 as *mut libc::c_void,
            &mut len,
        )
    })?;
    Ok(mark)
}

/// One entry of a [`poll`] set.
pub(crate) type PollFd = libc::pollfd;

/// A `pollfd` waiting for `events` on `fd`.
pub(crate) fn poll_fd(fd: RawFd, events: libc::c_short) -> PollFd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

/// poll(2) over `fds` for at most `timeout_ms` (`-1`: forever). An interrupted wait returns
/// `Ok(0)`, as if it had timed out.
pub(crate) fn poll(fds: &mut [PollFd], timeout_ms: libc::c_int) -> io::Result<usize> {
    // SAFETY: `fds` is a valid, exclusively borrowed array of `fds.len()` pollfds.
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    match cvt(rc) {
        Ok(n) => Ok(n as usize),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
        Err(e) => Err(e),
    }
}

/// Blocks SIGINT and SIGTERM for the process (which must be single-threaded) and returns a
/// non-blocking `signalfd` that becomes readable when one arrives.
pub(crate) fn termination_signalfd() -> io::Result<File> {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it before any other use.
    let mut set: libc::sigset_t = unsafe { mem::zeroed() };
    // SAFETY: every call gets a pointer to the live local `set`; the signal numbers are valid.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        cvt(libc::sigprocmask(
            libc::SIG_BLOCK,
            &set,
            std::ptr::null_mut(),
        ))?;
    }
    // SAFETY: `set` is initialised; -1 asks for a new descriptor.
    let fd = cvt(unsafe { libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) })?;
    // SAFETY: `fd` was just returned by signalfd(2) and is owned by nobody else.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// Runs `f` with the process umask set to `mask`, then restores it. The process must be
/// single-threaded (the umask is process-wide).
pub(crate) fn with_umask<T>(mask: libc::mode_t, f: impl FnOnce() -> T) -> T {
    // SAFETY: umask(2) cannot fail and takes no pointers.
    let old = unsafe { libc::umask(mask) };
    let out = f();
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    out
}

/// Detaches from the terminal like wireguard-go: forks, and the parent exits 0 at once (its
/// devices and sockets were created before, so they exist when it returns); the child starts
/// a new session and points stdin (and stdout/stderr unless `keep_output`) at `/dev/null`.
///
/// Must be called while the process is single-threaded, which `fork` requires.
pub(crate) fn daemonize(keep_output: bool) -> io::Result<()> {
    let null = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    // SAFETY: the process is single-threaded (caller's contract), so the child's copy of the
    // address space is consistent.
    let pid = cvt(unsafe { libc::fork() })?;
    if pid != 0 {
        // SIGINT/SIGTERM are blocked by now (see `termination_signalfd`): one that was meant for
        // the process while it was still the parent is passed on to the daemon, not lost.
        forward_pending_termination(pid);
        // SAFETY: _exit skips destructors, which must not run twice (the child owns the
        // devices now, and the socket file must outlive the parent).
        unsafe { libc::_exit(0) };
    }
    // SAFETY: setsid takes no arguments; failure (already a leader) is harmless.
    unsafe { libc::setsid() };
    let targets: &[RawFd] = if keep_output { &[0] } else { &[0, 1, 2] };
    for &target in targets {
        // SAFETY: dup2 onto a standard descriptor from a descriptor we own.
        cvt(unsafe { libc::dup2(null.as_raw_fd(), target) })?;
    }
    Ok(())
}

/// Sends `child` every termination signal pending (blocked) in this process.
fn forward_pending_termination(child: libc::pid_t) {
    // SAFETY: sigset_t is plain data; sigpending fills it in before it is read.
    let mut pending: libc::sigset_t = unsafe { mem::zeroed() };
    // SAFETY: `pending` is a live local; sigpending cannot fail with a valid pointer.
    if unsafe { libc::sigpending(&mut pending) } != 0 {
        return;
    }
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: `pending` was filled in by sigpending; kill takes no pointers.
        unsafe {
            if libc::sigismember(&pending, signal) == 1 {
                libc::kill(child, signal);
            }
        }
    }
}

/// A non-blocking inotify descriptor watching `path` for `IN_ATTRIB`, which fires when its
/// link count drops (it was unlinked), as wireguard-go watches its UAPI socket.
pub(crate) fn watch_unlink(path: &std::path::Path) -> io::Result<File> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: inotify_init1 takes no pointers; the result is checked before being owned.
    let fd = cvt(unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) })?;
    // SAFETY: `fd` was just returned by inotify_init1 and is owned by nobody else.
    let file = unsafe { File::from_raw_fd(fd) };
    // SAFETY: `c_path` is a live NUL-terminated string for the duration of the call.
    cvt(unsafe { libc::inotify_add_watch(fd, c_path.as_ptr(), libc::IN_ATTRIB) })?;
    Ok(file)
}
