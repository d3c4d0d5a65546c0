//! Per-source-address rate limiting of handshake messages while under load.
//!
//! The behaviour of the kernel's `ratelimiter.c` (and wireguard-go's `ratelimiter`): a token
//! bucket per source, refilled at 20 messages per second with a burst of 5; IPv4 sources are
//! keyed by the whole address and IPv6 sources by their /64, since one host can own a whole
//! /64. A source idle for a second is forgotten (a sweep runs at most once a second), and the
//! table is bounded: when it is full, new sources are refused until the sweep frees room.
//! Time is injected like everywhere in this crate.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Messages per second a source may send once its burst is spent.
pub const PACKETS_PER_SECOND: u64 = 20;
/// Messages a fresh or rested source may send at once.
pub const PACKETS_BURSTABLE: u64 = 5;
/// The cost of one message, in nanoseconds of refill.
const PACKET_COST: u64 = 1_000_000_000 / PACKETS_PER_SECOND;
/// The bucket's capacity, in nanoseconds.
const TOKEN_MAX: u64 = PACKET_COST * PACKETS_BURSTABLE;
/// Sources idle this long are forgotten, and the sweep runs at most this often.
const IDLE: Duration = Duration::from_secs(1);
/// At most this many sources are tracked at once.
pub const MAX_ENTRIES: usize = 65_536;

#[derive(Debug, Clone, Copy)]
struct Entry {
    last: Instant,
    /// Nanoseconds of credit, at most `TOKEN_MAX`.
    tokens: u64,
}

/// The per-source token buckets.
#[derive(Debug, Default)]
pub struct Ratelimiter {
    entries: HashMap<Key, Entry>,
    next_sweep: Option<Instant>,
}

/// The bucket key: IPv4 addresses whole (v4-mapped ones too), IPv6 addresses by /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    V4(u32),
    V6(u64),
}

fn key(ip: IpAddr) -> Key {
    match ip {
        IpAddr::V4(v4) => Key::V4(v4.into()),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => Key::V4(v4.into()),
            None => Key::V6((u128::from(v6) >> 64) as u64),
        },
    }
}

impl Ratelimiter {
    /// An empty limiter.
    pub fn new() -> Ratelimiter {
        Ratelimiter::default()
    }

    /// Whether a message from `ip` at `now` may be processed; spends a token if so.
    pub fn allow(&mut self, now: Instant, ip: IpAddr) -> bool {
        self.sweep(now);
        let key = key(ip);
        if let Some(entry) = self.entries.get_mut(&key) {
            let elapsed = now.saturating_duration_since(entry.last).as_nanos();
            let refill = u64::try_from(elapsed).unwrap_or(u64::MAX);
            let tokens = entry.tokens.saturating_add(refill).min(TOKEN_MAX);
            entry.last = now;
            let allowed = tokens >= PACKET_COST;
            entry.tokens = if allowed {
                tokens - PACKET_COST
            } else {
                tokens
            };
            return allowed;
        }
        if self.entries.len() >= MAX_ENTRIES {
            return false;
        }
        self.entries.insert(
            key,
            Entry {
                last: now,
                tokens: TOKEN_MAX - PACKET_COST,
            },
        );
        true
    }

    /// How many sources are tracked.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no source is tracked.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Forgets sources idle for [`IDLE`], at most once per [`IDLE`].
    fn sweep(&mut self, now: Instant) {
        if self.next_sweep.is_some_and(|t| now < t) {
            return;
        }
        self.next_sweep = Some(now + IDLE);
        self.entries
            .retain(|_, e| now.saturating_duration_since(e.last) <= IDLE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn test_burst_then_steady_rate() {
        let t0 = crate::tests::epoch();
        let mut r = Ratelimiter::new();
        let a = ip("192.0.2.1");
        let allowed = (0..10).filter(|_| r.allow(t0, a)).count();
        assert_eq!(allowed, PACKETS_BURSTABLE as usize);
        // Then one per 50 ms.
        assert!(!r.allow(t0 + Duration::from_millis(49), a));
        assert!(r.allow(t0 + Duration::from_millis(50), a));
        assert!(!r.allow(t0 + Duration::from_millis(99), a));
        assert!(r.allow(t0 + Duration::from_millis(100), a));
        assert!(!r.allow(t0 + Duration::from_millis(100), a));
        // Over a second at a flood, about 20 pass.
        let mut passed = 0;
        for ms in 100..1100 {
            passed += usize::from(r.allow(t0 + Duration::from_millis(ms), a));
        }
        assert!((19..=21).contains(&passed), "{passed}");
        // Another source is independent.
        assert!(r.allow(t0 + Duration::from_millis(100), ip("192.0.2.2")));
    }

    #[test]
    fn test_rested_source_gets_its_burst_back() {
        let t0 = crate::tests::epoch();
        let mut r = Ratelimiter::new();
        let a = ip("192.0.2.1");
        while r.allow(t0, a) {}
        let later = t0 + Duration::from_millis(250);
        let allowed = (0..10).filter(|_| r.allow(later, a)).count();
        assert_eq!(allowed, 5, "5 × 50 ms refilled, capped at the burst");
    }

    #[test]
    fn test_ipv6_keyed_by_slash_64_and_mapped_v4_as_v4() {
        let t0 = crate::tests::epoch();
        let mut r = Ratelimiter::new();
        for i in 0..10 {
            r.allow(t0, ip(&format!("2001:db8:1:2::{i}")));
        }
        assert!(!r.allow(t0, ip("2001:db8:1:2:ffff::1")), "same /64");
        assert!(r.allow(t0, ip("2001:db8:1:3::1")), "another /64");
        while r.allow(t0, ip("198.51.100.7")) {}
        assert!(!r.allow(t0, ip("::ffff:198.51.100.7")));
        assert_eq!(r.len(), 3);
    }

    #[test]
    fn test_idle_sources_forgotten_and_table_bounded() {
        let t0 = crate::tests::epoch();
        let mut r = Ratelimiter::new();
        for i in 0..MAX_ENTRIES as u32 {
            assert!(r.allow(t0, IpAddr::V4(i.into())));
        }
        assert!(
            !r.allow(t0, ip("255.255.255.255")),
            "full: new sources refused"
        );
        assert_eq!(r.len(), MAX_ENTRIES);
        let later = t0 + Duration::from_millis(1001);
        assert!(r.allow(later, ip("255.255.255.255")), "the sweep made room");
        assert_eq!(r.len(), 1);
    }
}
