//! The few libc calls wg-quick needs: the user id, the umask, and noting SIGINT/SIGTERM so
//! that an interrupted `up` still rolls back. The only unsafe code of the crate.

use std::sync::atomic::{AtomicI32, Ordering};

/// The signal that interrupted us, or 0.
static INTERRUPTED: AtomicI32 = AtomicI32::new(0);

extern "C" fn note_signal(signal: libc::c_int) {
    INTERRUPTED.store(signal, Ordering::SeqCst);
}

/// The real user id (bash's `$UID`).
pub(crate) fn uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// Sets the umask; returns the previous one.
pub(crate) fn umask(mask: u32) -> u32 {
    // SAFETY: umask has no preconditions and cannot fail.
    unsafe { libc::umask(mask as libc::mode_t) as u32 }
}

/// From now on SIGINT and SIGTERM are noted (see [`interrupted`]) instead of killing us, as
/// the reference's `trap … INT TERM` does. Children started afterwards get the default
/// dispositions back on exec.
pub(crate) fn catch_interrupts() {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores into an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(signal, note_signal as *const () as libc::sighandler_t);
        }
    }
}

/// The signal noted since [`catch_interrupts`], if any.
pub(crate) fn interrupted() -> Option<i32> {
    match INTERRUPTED.load(Ordering::SeqCst) {
        0 => None,
        signal => Some(signal),
    }
}
