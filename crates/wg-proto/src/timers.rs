//! The protocol's timer constants (whitepaper §6.1) and a per-peer table of absolute deadlines.
//!
//! Each peer has the kernel's five timers, indexed by [`Timer`]. A timer is armed with the
//! absolute `Instant` it fires at, never a `Duration` since some start, so there is no drift
//! and no shared epoch; [`TimerTable::next_timeout`] is the minimum over armed timers, and
//! [`TimerTable::expire`] disarms and reports one timer that is due. What each expiry *does*
//! lives in [`crate::peer`].

use std::time::{Duration, Instant};

use rand_core::RngCore;

/// Initiate a new handshake after this many messages on one keypair (2^60).
pub const REKEY_AFTER_MESSAGES: u64 = 1 << 60;
/// Refuse to send or accept transport messages at or beyond this counter (2^64 − 2^13 − 1).
pub const REJECT_AFTER_MESSAGES: u64 = u64::MAX - (1 << 13);
/// The initiator of a keypair starts a new handshake when sending on a keypair this old.
pub const REKEY_AFTER_TIME: Duration = Duration::from_secs(120);
/// A keypair is not used for sending or receiving once it is this old.
pub const REJECT_AFTER_TIME: Duration = Duration::from_secs(180);
/// Give up retrying a handshake after about this long.
pub const REKEY_ATTEMPT_TIME: Duration = Duration::from_secs(90);
/// Retry an unanswered handshake initiation after this long (plus jitter).
pub const REKEY_TIMEOUT: Duration = Duration::from_secs(5);
/// The jitter added to handshake timers is uniform below this (a third of a second).
pub const REKEY_TIMEOUT_JITTER_MAX: Duration = Duration::from_millis(333);
/// Send a keepalive if we received data but sent nothing for this long.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Cookie secrets are rotated, and received cookies expire, after this long.
pub const COOKIE_REFRESH_TIME: Duration = Duration::from_secs(120);
/// Erase all of a peer's key material after this long without a new session (3 × 180 s).
pub const ZERO_KEYS_AFTER: Duration = Duration::from_secs(3 * 180);
/// Retransmissions before giving up: `REKEY_ATTEMPT_TIME / REKEY_TIMEOUT` = 18.
pub const MAX_TIMER_HANDSHAKES: u32 =
    (REKEY_ATTEMPT_TIME.as_secs() / REKEY_TIMEOUT.as_secs()) as u32;
/// A responder accepts at most one initiation per peer per this interval (50 per second).
pub const INITIATION_FLOOD_INTERVAL: Duration = Duration::from_millis(20);

/// The timers of one peer (the kernel's `timer_*` fields of `struct wg_peer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// An initiation went unanswered for `REKEY_TIMEOUT` + jitter: retry it, or give up.
    RetransmitHandshake,
    /// We received data and sent nothing back for `KEEPALIVE_TIMEOUT`: send a keepalive.
    SendKeepalive,
    /// We sent data and heard nothing back for `KEEPALIVE_TIMEOUT + REKEY_TIMEOUT` + jitter:
    /// start a new handshake.
    NewHandshake,
    /// No new session for `3 × REJECT_AFTER_TIME`: erase all key material.
    ZeroKeyMaterial,
    /// The configured persistent-keepalive interval passed without traffic: send a keepalive.
    PersistentKeepalive,
}

impl Timer {
    /// Every timer, in table order.
    pub const ALL: [Timer; 5] = [
        Timer::RetransmitHandshake,
        Timer::SendKeepalive,
        Timer::NewHandshake,
        Timer::ZeroKeyMaterial,
        Timer::PersistentKeepalive,
    ];
}

/// Absolute deadlines, one slot per [`Timer`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimerTable {
    deadlines: [Option<Instant>; Timer::ALL.len()],
}

impl TimerTable {
    /// Arms (or re-arms) `timer` to fire at `at`.
    pub fn set(&mut self, timer: Timer, at: Instant) {
        self.deadlines[timer as usize] = Some(at);
    }

    /// Disarms `timer`.
    pub fn stop(&mut self, timer: Timer) {
        self.deadlines[timer as usize] = None;
    }

    /// When `timer` fires, if armed.
    pub fn get(&self, timer: Timer) -> Option<Instant> {
        self.deadlines[timer as usize]
    }

    /// Whether `timer` is armed (the kernel's `timer_pending`).
    pub fn is_armed(&self, timer: Timer) -> bool {
        self.get(timer).is_some()
    }

    /// The earliest armed deadline.
    pub fn next_timeout(&self) -> Option<Instant> {
        self.deadlines.iter().flatten().min().copied()
    }

    /// Disarms and returns the earliest timer due at `now`, if any.
    pub fn expire(&mut self, now: Instant) -> Option<Timer> {
        let timer = Timer::ALL
            .into_iter()
            .filter(|t| self.get(*t).is_some_and(|at| at <= now))
            .min_by_key(|t| self.get(*t))?;
        self.stop(timer);
        Some(timer)
    }

    /// Disarms everything.
    pub fn clear(&mut self) {
        self.deadlines = Default::default();
    }
}

/// A uniformly random jitter below [`REKEY_TIMEOUT_JITTER_MAX`], in whole milliseconds.
pub fn jitter<R: RngCore>(rng: &mut R) -> Duration {
    let max = REKEY_TIMEOUT_JITTER_MAX.as_millis() as u32;
    Duration::from_millis(u64::from(rng.next_u32() % max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_constants() {
        assert_eq!(
            REJECT_AFTER_MESSAGES,
            (u128::from(u64::MAX) + 1 - (1 << 13) - 1) as u64
        );
        assert_eq!(MAX_TIMER_HANDSHAKES, 18);
        assert_eq!(ZERO_KEYS_AFTER, REJECT_AFTER_TIME * 3);
    }

    #[test]
    fn test_next_timeout_is_min_and_expire_in_order() {
        let t0 = crate::tests::epoch();
        let mut table = TimerTable::default();
        assert_eq!(table.next_timeout(), None);
        table.set(Timer::ZeroKeyMaterial, t0 + ZERO_KEYS_AFTER);
        table.set(Timer::SendKeepalive, t0 + KEEPALIVE_TIMEOUT);
        table.set(Timer::RetransmitHandshake, t0 + REKEY_TIMEOUT);
        assert_eq!(table.next_timeout(), Some(t0 + REKEY_TIMEOUT));
        assert_eq!(table.expire(t0), None);
        let late = t0 + Duration::from_secs(60);
        assert_eq!(table.expire(late), Some(Timer::RetransmitHandshake));
        assert_eq!(table.expire(late), Some(Timer::SendKeepalive));
        assert_eq!(table.expire(late), None);
        assert_eq!(table.next_timeout(), Some(t0 + ZERO_KEYS_AFTER));
        table.stop(Timer::ZeroKeyMaterial);
        assert!(!table.is_armed(Timer::ZeroKeyMaterial));
    }

    #[test]
    fn test_jitter_bounds() {
        let mut rng = crate::tests::fixed_rng(9);
        for _ in 0..1000 {
            assert!(jitter(&mut rng) < REKEY_TIMEOUT_JITTER_MAX);
        }
    }
}
