//! The sliding-window replay filter over transport data counters (whitepaper §5.4.6).
//!
//! A receiver accepts each counter value at most once, and only if it is below
//! [`REJECT_AFTER_MESSAGES`] and not too far behind the greatest counter seen. The window is a
//! ring of 64-bit blocks in the style of RFC 6479, with the kernel's and wireguard-go's sizes:
//! 128 blocks (8192 bits) of which one is always being recycled, so the last
//! [`WINDOW_SIZE`] = 8128 counters behind the greatest are tracked exactly. Advancing the
//! window clears whole blocks instead of shifting bits, so each check is O(1) amortized. The
//! caller must only [`ReplayFilter::check_and_update`] a counter after its packet has
//! authenticated, or a forger could advance the window.

use crate::timers::REJECT_AFTER_MESSAGES;

const BLOCK_BITS_LOG: u32 = 6;
const BLOCK_BITS: u64 = 1 << BLOCK_BITS_LOG;
const RING_BLOCKS: usize = 128;
const BLOCK_MASK: u64 = RING_BLOCKS as u64 - 1;
/// How many counters behind the greatest one are still accepted (if unseen).
pub const WINDOW_SIZE: u64 = (RING_BLOCKS as u64 - 1) * BLOCK_BITS;

/// Tracks which counters have been received on one transport keypair.
#[derive(Clone)]
pub struct ReplayFilter {
    /// The greatest counter accepted so far (0 before any).
    last: u64,
    ring: [u64; RING_BLOCKS],
}

impl Default for ReplayFilter {
    fn default() -> Self {
        ReplayFilter {
            last: 0,
            ring: [0; RING_BLOCKS],
        }
    }
}

impl core::fmt::Debug for ReplayFilter {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ReplayFilter")
            .field("last", &self.last)
            .finish_non_exhaustive()
    }
}

impl ReplayFilter {
    /// Whether `counter` would be accepted now, without recording it (the bulk receive path
    /// checks before decrypting and records after authenticating).
    pub fn check(&self, counter: u64) -> bool {
        if counter >= REJECT_AFTER_MESSAGES {
            return false;
        }
        if counter > self.last {
            return true;
        }
        if self.last - counter > WINDOW_SIZE {
            return false;
        }
        let block = counter >> BLOCK_BITS_LOG;
        let bit = 1u64 << (counter & (BLOCK_BITS - 1));
        self.ring[(block & BLOCK_MASK) as usize] & bit == 0
    }

    /// Returns whether `counter` is acceptable, and if so records it as seen.
    pub fn check_and_update(&mut self, counter: u64) -> bool {
        if counter >= REJECT_AFTER_MESSAGES {
            return false;
        }
        let block = counter >> BLOCK_BITS_LOG;
        if counter > self.last {
            // Move the window forward, clearing the blocks it slides over (at most the ring).
            let current = self.last >> BLOCK_BITS_LOG;
            let diff = (block - current).min(RING_BLOCKS as u64);
            for i in 1..=diff {
                self.ring[((current + i) & BLOCK_MASK) as usize] = 0;
            }
            self.last = counter;
        } else if self.last - counter > WINDOW_SIZE {
            return false;
        }
        let slot = &mut self.ring[(block & BLOCK_MASK) as usize];
        let bit = 1u64 << (counter & (BLOCK_BITS - 1));
        let fresh = *slot & bit == 0;
        *slot |= bit;
        fresh
    }

    /// The greatest counter accepted so far.
    pub fn last(&self) -> u64 {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::RngCore;
    use std::collections::HashSet;

    #[test]
    fn test_in_order_and_duplicates() {
        let mut f = ReplayFilter::default();
        for c in 0..10_000 {
            assert!(f.check_and_update(c), "{c}");
            assert!(!f.check_and_update(c), "{c} twice");
        }
    }

    #[test]
    fn test_window_edges() {
        let mut f = ReplayFilter::default();
        assert!(f.check_and_update(WINDOW_SIZE + 100));
        assert!(
            f.check_and_update(100),
            "exactly WINDOW_SIZE behind is accepted"
        );
        assert!(!f.check_and_update(99), "one more is too old");
        assert!(!f.check_and_update(100));
        // A big jump forgets everything behind the window.
        assert!(f.check_and_update(1 << 40));
        assert!(!f.check_and_update(WINDOW_SIZE + 100));
        assert!(f.check_and_update((1 << 40) - 1));
    }

    #[test]
    fn test_reject_after_messages() {
        let mut f = ReplayFilter::default();
        assert!(f.check_and_update(REJECT_AFTER_MESSAGES - 1));
        assert!(!f.check_and_update(REJECT_AFTER_MESSAGES));
        assert!(!f.check_and_update(u64::MAX));
    }

    /// The obvious model: a set of everything accepted, and the greatest accepted counter.
    struct Model {
        seen: HashSet<u64>,
        last: u64,
    }

    impl Model {
        fn check(&mut self, c: u64) -> bool {
            let ok = c < REJECT_AFTER_MESSAGES
                && !self.seen.contains(&c)
                && (c > self.last || self.last - c <= WINDOW_SIZE);
            if ok {
                self.seen.insert(c);
                self.last = self.last.max(c);
            }
            ok
        }
    }

    // Differential test against the set model over random walks from fixed seeds: mostly
    // in-order traffic with reordering, duplicates and occasional large jumps.
    #[test]
    fn test_differential_against_set() {
        for seed in 0..8 {
            let mut rng = crate::tests::fixed_rng(seed);
            let mut f = ReplayFilter::default();
            let mut model = Model {
                seen: HashSet::new(),
                last: 0,
            };
            let mut next = 0u64;
            for step in 0..50_000 {
                let r = rng.next_u32();
                let c = match r % 16 {
                    0..=9 => {
                        next += 1;
                        next
                    }
                    10 | 11 => next.saturating_sub(u64::from(rng.next_u32() % 9000)),
                    12 => next.saturating_sub(u64::from(rng.next_u32() % 64)),
                    13 => next + u64::from(rng.next_u32() % 200),
                    14 if r % 1024 < 64 => {
                        next += u64::from(rng.next_u32() % 20_000);
                        next
                    }
                    _ => next.saturating_sub(WINDOW_SIZE + 1 - u64::from(r % 3)),
                };
                let peek = f.check(c);
                let accepted = f.check_and_update(c);
                assert_eq!(peek, accepted, "check agrees with check_and_update");
                assert_eq!(accepted, model.check(c), "seed {seed} step {step} c {c}");
                assert_eq!(f.last(), model.last);
            }
        }
    }
}
