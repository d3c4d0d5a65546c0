//! Giving up the privileges the daemon no longer needs once it is set up.
//!
//! Setup (the TUN device, the UAPI socket, the first UDP socket, the link monitor, the signal
//! and inotify watches) may need anything the process was started with. Afterwards the event
//! loop needs only:
//!
//! * `CAP_NET_BIND_SERVICE`: a new `listen_port` below 1024 (below
//!   `net.ipv4.ip_unprivileged_port_start`);
//! * `CAP_NET_ADMIN`: `SO_MARK` for `fwmark`, and `SO_RCVBUFFORCE`/`SO_SNDBUFFORCE` on the
//!   socket of a new listen port.
//!
//! Reading the interface's MTU and flags, reading and writing the open TUN and socket
//! descriptors, and closing the TUN device (which deletes a non-persistent interface) need no
//! capability. Removing the socket file at exit needs write access to its directory, which
//! the process keeps by staying the same user (see below).
//!
//! [`drop_to_runtime`] therefore, in the calling thread, which must be the only one
//! (capabilities are per thread and a new thread copies its creator's):
//!
//! 1. clears the ambient set;
//! 2. clears the bounding set, where the process holds `CAP_SETPCAP` to do so (only an
//!    `execve` consults it, and the daemon never executes anything);
//! 3. sets the permitted and effective sets to [`RUNTIME`] ∩ the permitted set it had, and the
//!    inheritable set to empty, and reads them back;
//! 4. sets `PR_SET_NO_NEW_PRIVS`, so no `execve` can ever grant anything again (last, so that
//!    `NoNewPrivs: 1` in `/proc/PID/status` also says the drop is complete).
//!
//! A capability the process was started without is simply not there to drop: started from a
//! systemd unit with `CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_BIND_SERVICE`, or by an
//! unprivileged user with ambient `CAP_NET_ADMIN`, it keeps what it has of [`RUNTIME`] and
//! works as far as those allow. Only a failure to lower the sets (which the kernel never
//! refuses, short of a seccomp filter or LSM forbidding `capset`) stops the daemon.
//!
//! The user id is deliberately not changed. A daemon started by root stays uid 0 with only
//! [`RUNTIME`]; changing to an unprivileged uid would break what wireguard-go users rely on:
//! the socket file in the root-owned `/var/run/wireguard` could no longer be removed at exit,
//! a shared uid such as `nobody` could be signalled by every other process running as it, and
//! a drop-in for wireguard-go has no user of its own to change to nor a way to be told one
//! (wg-quick passes only the interface name). What uid 0 without capabilities still has is
//! the owner's access to root-owned files; the `wg-tunnel@` unit takes that away with
//! `ProtectSystem=strict`.

use std::fmt;
use std::io;

use crate::log::debug;

/// A set of capabilities: bit `n` is capability number `n` (`CAP_CHOWN` is 0).
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct CapSet(pub u64);

/// `CAP_SETPCAP`: needed to drop from the bounding set.
pub const CAP_SETPCAP: u32 = 8;
/// `CAP_NET_BIND_SERVICE`: binding UDP ports below 1024.
pub const CAP_NET_BIND_SERVICE: u32 = 10;
/// `CAP_NET_ADMIN`: `SO_MARK`, `SO_RCVBUFFORCE`, `SO_SNDBUFFORCE`.
pub const CAP_NET_ADMIN: u32 = 12;

/// What the event loop keeps: everything it may still need after setup.
pub const RUNTIME: CapSet = CapSet((1 << CAP_NET_BIND_SERVICE) | (1 << CAP_NET_ADMIN));

/// Capability names as in capabilities(7), by number.
const NAMES: [&str; 41] = [
    "cap_chown",
    "cap_dac_override",
    "cap_dac_read_search",
    "cap_fowner",
    "cap_fsetid",
    "cap_kill",
    "cap_setgid",
    "cap_setuid",
    "cap_setpcap",
    "cap_linux_immutable",
    "cap_net_bind_service",
    "cap_net_broadcast",
    "cap_net_admin",
    "cap_net_raw",
    "cap_ipc_lock",
    "cap_ipc_owner",
    "cap_sys_module",
    "cap_sys_rawio",
    "cap_sys_chroot",
    "cap_sys_ptrace",
    "cap_sys_pacct",
    "cap_sys_admin",
    "cap_sys_boot",
    "cap_sys_nice",
    "cap_sys_resource",
    "cap_sys_time",
    "cap_sys_tty_config",
    "cap_mknod",
    "cap_lease",
    "cap_audit_write",
    "cap_audit_control",
    "cap_setfcap",
    "cap_mac_override",
    "cap_mac_admin",
    "cap_syslog",
    "cap_wake_alarm",
    "cap_block_suspend",
    "cap_audit_read",
    "cap_perfmon",
    "cap_bpf",
    "cap_checkpoint_restore",
];

impl CapSet {
    /// No capability.
    pub const EMPTY: CapSet = CapSet(0);

    /// Whether capability `cap` is in the set.
    pub fn contains(self, cap: u32) -> bool {
        cap < 64 && self.0 & (1 << cap) != 0
    }

    /// The set with `cap` added.
    pub fn with(self, cap: u32) -> CapSet {
        if cap < 64 {
            CapSet(self.0 | (1 << cap))
        } else {
            self
        }
    }

    /// The capabilities in both sets.
    pub fn intersect(self, other: CapSet) -> CapSet {
        CapSet(self.0 & other.0)
    }

    /// The capabilities in either set.
    pub fn union(self, other: CapSet) -> CapSet {
        CapSet(self.0 | other.0)
    }

    /// The capabilities of `self` that are not in `other`.
    pub fn minus(self, other: CapSet) -> CapSet {
        CapSet(self.0 & !other.0)
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// How many capabilities the set holds.
    pub fn len(self) -> u32 {
        self.0.count_ones()
    }

    /// The capability numbers in the set, ascending.
    pub fn iter(self) -> impl Iterator<Item = u32> {
        (0..64).filter(move |&cap| self.contains(cap))
    }

    /// Splits into the low and high 32 bits, as `capget`/`capset` carry them.
    fn to_words(self) -> [u32; 2] {
        [self.0 as u32, (self.0 >> 32) as u32]
    }

    /// Joins the low and high 32 bits of `capget`.
    fn from_words(words: [u32; 2]) -> CapSet {
        CapSet(u64::from(words[0]) | (u64::from(words[1]) << 32))
    }
}

/// Space-separated names (`cap_net_admin cap_net_bind_service`), `none` when empty.
impl fmt::Display for CapSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("none");
        }
        for (i, cap) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            match NAMES.get(cap as usize) {
                Some(name) => f.write_str(name)?,
                None => write!(f, "cap_{cap}")?,
            }
        }
        Ok(())
    }
}

impl fmt::Debug for CapSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CapSet({:#x}: {self})", self.0)
    }
}

/// A thread's three `capset` sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Caps {
    /// What the thread's permission checks use.
    pub effective: CapSet,
    /// The limit of what it can make effective.
    pub permitted: CapSet,
    /// What it would pass on across `execve` (with file capabilities).
    pub inheritable: CapSet,
}

impl Caps {
    /// The sets to run with after setup: `keep` where it was permitted, all of it effective,
    /// nothing inheritable. Only ever a subset of `self`, which `capset` always allows.
    pub fn reduced_to(self, keep: CapSet) -> Caps {
        let permitted = self.permitted.intersect(keep);
        Caps {
            effective: permitted,
            permitted,
            inheritable: CapSet::EMPTY,
        }
    }

    /// Every capability in any of the three sets.
    pub fn all(self) -> CapSet {
        self.effective.union(self.permitted).union(self.inheritable)
    }
}

/// What [`drop_to_runtime`] did, for the debug log and the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The sets before.
    pub before: Caps,
    /// The sets after.
    pub after: Caps,
    /// Capabilities removed from the bounding set.
    pub bounding_dropped: CapSet,
    /// Capabilities still in the bounding set (the process lacked `CAP_SETPCAP`).
    pub bounding_left: CapSet,
    /// Whether the kernel has ambient capabilities (Linux 4.3); if so, they were cleared.
    pub ambient_cleared: bool,
    /// Whether `PR_SET_NO_NEW_PRIVS` is set (Linux 3.5).
    pub no_new_privs: bool,
}

impl Report {
    /// Writes the report at debug level for interface `ifname`.
    fn log(&self, ifname: &str) {
        let dropped =
            (self.before.permitted.union(self.before.effective)).minus(self.after.permitted);
        debug!(
            ifname,
            "privileges: kept capabilities: {}", self.after.permitted
        );
        debug!(
            ifname,
            "privileges: dropped {} capabilities: {dropped}",
            dropped.len()
        );
        if self.bounding_left.is_empty() {
            debug!(
                ifname,
                "privileges: bounding set cleared ({} dropped)",
                self.bounding_dropped.len()
            );
        } else {
            debug!(
                ifname,
                "privileges: bounding set left as {} (no cap_setpcap to drop it; {} dropped)",
                self.bounding_left,
                self.bounding_dropped.len()
            );
        }
        debug!(
            ifname,
            "privileges: inheritable set cleared (was {}), ambient set {}, no_new_privs {}",
            self.before.inheritable,
            if self.ambient_cleared {
                "cleared"
            } else {
                "not supported by the kernel"
            },
            if self.no_new_privs {
                "set"
            } else {
                "not supported by the kernel"
            }
        );
    }
}

/// Gives up every privilege but [`RUNTIME`], as the module documentation describes, and logs
/// what was dropped at debug level for `ifname`. Call it after setup and before any thread is
/// spawned: it fails if the process has more than one thread.
pub fn drop_to_runtime(ifname: &str) -> io::Result<Report> {
    if let Some(threads) = sys::thread_count() {
        if threads > 1 {
            return Err(io::Error::other(format!(
                "the process has {threads} threads; capabilities are per thread, so they must \
                 be dropped before any thread is spawned"
            )));
        }
    }
    let before = sys::capget()?;
    let ambient_cleared = sys::clear_ambient()?;
    // Dropping from the bounding set takes an effective CAP_SETPCAP; raise it if it is only
    // permitted.
    if before.permitted.contains(CAP_SETPCAP) && !before.effective.contains(CAP_SETPCAP) {
        sys::capset(Caps {
            effective: before.effective.with(CAP_SETPCAP),
            ..before
        })?;
    }
    let (bounding_dropped, bounding_left) = sys::clear_bounding()?;
    let wanted = before.reduced_to(RUNTIME);
    sys::capset(wanted)?;
    let after = sys::capget()?;
    if after != wanted {
        return Err(io::Error::other(format!(
            "capabilities are {after:?} after asking for {wanted:?}"
        )));
    }
    // Last, so that it also tells an observer (/proc/PID/status) that the drop is complete.
    let no_new_privs = sys::set_no_new_privs()?;
    let report = Report {
        before,
        after,
        bounding_dropped,
        bounding_left,
        ambient_cleared,
        no_new_privs,
    };
    report.log(ifname);
    Ok(report)
}

/// The system calls, the only `unsafe` of this module: `capget`, `capset` and `prctl`.
mod sys {
    use std::io;

    use super::{CapSet, Caps};

    /// `_LINUX_CAPABILITY_VERSION_3`: 64-bit sets, as two 32-bit words.
    const VERSION_3: u32 = 0x2008_0522;

    /// `struct __user_cap_header_struct`.
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }

    /// `struct __user_cap_data_struct`; version 3 takes an array of two.
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }

    fn header() -> Header {
        // pid 0: the calling thread.
        Header {
            version: VERSION_3,
            pid: 0,
        }
    }

    /// The calling thread's sets.
    pub(super) fn capget() -> io::Result<Caps> {
        let mut header = header();
        let mut data = [Data::default(); 2];
        // SAFETY: capget reads one live header and, for version 3, writes two `Data` into the
        // live array, which has that length.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_capget,
                &mut header as *mut Header,
                data.as_mut_ptr(),
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        let set = |get: fn(&Data) -> u32| CapSet::from_words([get(&data[0]), get(&data[1])]);
        Ok(Caps {
            effective: set(|d| d.effective),
            permitted: set(|d| d.permitted),
            inheritable: set(|d| d.inheritable),
        })
    }

    /// Sets the calling thread's sets.
    pub(super) fn capset(caps: Caps) -> io::Result<()> {
        let mut header = header();
        let (e, p, i) = (
            caps.effective.to_words(),
            caps.permitted.to_words(),
            caps.inheritable.to_words(),
        );
        let data = [0, 1].map(|w| Data {
            effective: e[w],
            permitted: p[w],
            inheritable: i[w],
        });
        // SAFETY: capset reads one live header and, for version 3, two `Data` from the live
        // array, which has that length.
        let rc =
            unsafe { libc::syscall(libc::SYS_capset, &mut header as *mut Header, data.as_ptr()) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// `prctl` with integer arguments.
    fn prctl(option: libc::c_int, a: libc::c_ulong, b: libc::c_ulong) -> io::Result<libc::c_int> {
        // SAFETY: every option used here takes plain integers, no pointers.
        let rc = unsafe { libc::prctl(option, a, b, 0 as libc::c_ulong, 0 as libc::c_ulong) };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(rc)
        }
    }

    /// Sets `PR_SET_NO_NEW_PRIVS`; `Ok(false)` where the kernel predates it.
    pub(super) fn set_no_new_privs() -> io::Result<bool> {
        match prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0) {
            Ok(_) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Clears the ambient set; `Ok(false)` where the kernel predates it.
    pub(super) fn clear_ambient() -> io::Result<bool> {
        let clear_all = libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong;
        match prctl(libc::PR_CAP_AMBIENT, clear_all, 0) {
            Ok(_) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Drops every capability the kernel knows from the bounding set (it answers `EINVAL`
    /// past the last one). Returns (dropped, left): a capability that cannot be dropped for
    /// want of `CAP_SETPCAP` (`EPERM`) is left.
    pub(super) fn clear_bounding() -> io::Result<(CapSet, CapSet)> {
        let (mut dropped, mut left) = (CapSet::EMPTY, CapSet::EMPTY);
        for cap in 0..64u32 {
            let arg = libc::c_ulong::from(cap);
            match prctl(libc::PR_CAPBSET_READ, arg, 0) {
                Ok(0) => continue,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => break,
                Err(e) => return Err(e),
            }
            match prctl(libc::PR_CAPBSET_DROP, arg, 0) {
                Ok(_) => dropped = dropped.with(cap),
                Err(e) if e.raw_os_error() == Some(libc::EPERM) => left = left.with(cap),
                Err(e) => return Err(e),
            }
        }
        Ok((dropped, left))
    }

    /// The number of threads of the process, from `/proc/self/task`; `None` without `/proc`.
    pub(super) fn thread_count() -> Option<usize> {
        Some(std::fs::read_dir("/proc/self/task").ok()?.count())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(caps: &[u32]) -> CapSet {
        caps.iter().fold(CapSet::EMPTY, |s, &c| s.with(c))
    }

    #[test]
    fn test_runtime_set() {
        assert_eq!(RUNTIME.0, 0x1400);
        assert_eq!(RUNTIME.to_string(), "cap_net_bind_service cap_net_admin");
    }

    #[test]
    fn test_reduced_to_full_root() {
        // Root with every capability of a 6.x kernel (0..=40) in all three sets.
        let all = CapSet((1 << 41) - 1);
        let root = Caps {
            effective: all,
            permitted: all,
            inheritable: all,
        };
        let after = root.reduced_to(RUNTIME);
        assert_eq!(after.permitted, RUNTIME);
        assert_eq!(after.effective, RUNTIME);
        assert_eq!(after.inheritable, CapSet::EMPTY);
        assert_eq!(root.all().minus(after.all()).len(), 39);
    }

    #[test]
    fn test_reduced_to_keeps_only_what_was_permitted() {
        // A systemd unit that grants only CAP_NET_ADMIN (plus one it does not need): no
        // CAP_NET_BIND_SERVICE appears from nowhere.
        let unit = Caps {
            effective: set(&[CAP_NET_ADMIN, 21]),
            permitted: set(&[CAP_NET_ADMIN, 21]),
            inheritable: set(&[CAP_NET_ADMIN]),
        };
        let after = unit.reduced_to(RUNTIME);
        assert_eq!(after.permitted, set(&[CAP_NET_ADMIN]));
        assert_eq!(after.effective, set(&[CAP_NET_ADMIN]));
        assert_eq!(after.inheritable, CapSet::EMPTY);
        // Permitted but not effective (file capabilities without +e): made effective, as
        // capset allows within the permitted set.
        let lazy = Caps {
            effective: CapSet::EMPTY,
            permitted: set(&[CAP_NET_BIND_SERVICE]),
            inheritable: CapSet::EMPTY,
        };
        assert_eq!(
            lazy.reduced_to(RUNTIME).effective,
            set(&[CAP_NET_BIND_SERVICE])
        );
        // Nothing at all: nothing to keep, and no error to be had.
        assert_eq!(Caps::default().reduced_to(RUNTIME), Caps::default());
    }

    #[test]
    fn test_words_round_trip() {
        for bits in [0, 1, 0x1400, 1 << 40, u64::MAX, 0x0000_01ff_feff_ffff] {
            let s = CapSet(bits);
            assert_eq!(CapSet::from_words(s.to_words()), s);
        }
        assert_eq!(CapSet(1 << 40).to_words(), [0, 1 << 8]);
    }

    #[test]
    fn test_display() {
        assert_eq!(CapSet::EMPTY.to_string(), "none");
        assert_eq!(
            set(&[0, 40, 63]).to_string(),
            "cap_chown cap_checkpoint_restore cap_63"
        );
        assert_eq!(set(&[0, 12]).minus(set(&[12])), set(&[0]));
    }

    /// With a second thread alive the drop refuses before touching anything: that thread
    /// would keep every capability.
    #[test]
    fn test_refuses_with_threads() {
        let before = sys::capget().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let other = std::thread::spawn(move || rx.recv());
        let err = drop_to_runtime("test").unwrap_err();
        assert!(err.to_string().contains("threads"), "{err}");
        drop(tx);
        let _ = other.join();
        assert_eq!(sys::capget().unwrap(), before);
    }

    /// The calling thread's sets can be read and setting them unchanged is allowed (the drop
    /// itself is not run here: it would strip the test process).
    #[test]
    fn test_capget_capset_identity() {
        let caps = sys::capget().unwrap();
        sys::capset(caps).unwrap();
        assert_eq!(sys::capget().unwrap(), caps);
    }
}
