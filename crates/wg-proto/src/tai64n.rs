//! TAI64N timestamps for handshake initiations, and the per-peer replay rule over them.
//!
//! A stamp is 12 bytes: the big-endian TAI64 label (2^62 + 10 + Unix seconds, the `+10` being
//! the TAI−UTC offset the kernel and wireguard-go both use) followed by big-endian
//! nanoseconds. Because both parts are big-endian, byte order is time order, so stamps compare
//! as byte arrays. The responder accepts an initiation only if its stamp is strictly greater
//! than the greatest one seen from that peer (whitepaper §5.1), which defeats replay of a
//! captured initiation. This crate never reads the clock: the caller passes Unix time in.

use core::time::Duration;

use crate::messages::TIMESTAMP_LEN;

/// The TAI64 label of the Unix epoch: 2^62 plus the 10 s TAI−UTC offset at 1970.
const TAI64_EPOCH: u64 = 0x4000_0000_0000_000a;

/// Nanoseconds are rounded down to a multiple of 2^24 (≈16.8 ms), as the kernel and
/// wireguard-go do, so that a stamp does not leak a precise clock. This is still finer than
/// the 50 initiations per second a responder accepts from one peer.
const WHITENER_MASK: u32 = (1 << 24) - 1;

/// A 12-byte TAI64N timestamp as carried in a handshake initiation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Tai64N([u8; TIMESTAMP_LEN]);

impl Tai64N {
    /// The all-zero stamp, older than any real one: the initial "greatest seen" value.
    pub const ZERO: Tai64N = Tai64N([0; TIMESTAMP_LEN]);

    /// The stamp for a time since the Unix epoch, exactly (no whitening).
    pub fn from_unix(since_epoch: Duration) -> Tai64N {
        let mut out = [0u8; TIMESTAMP_LEN];
        out[..8].copy_from_slice(&(TAI64_EPOCH + since_epoch.as_secs()).to_be_bytes());
        out[8..].copy_from_slice(&since_epoch.subsec_nanos().to_be_bytes());
        Tai64N(out)
    }

    /// The stamp to put on the wire for a time since the Unix epoch: nanoseconds whitened.
    pub fn for_initiation(since_epoch: Duration) -> Tai64N {
        let nanos = since_epoch.subsec_nanos() & !WHITENER_MASK;
        Tai64N::from_unix(Duration::new(since_epoch.as_secs(), nanos))
    }

    /// Wraps 12 received bytes.
    pub fn from_bytes(bytes: [u8; TIMESTAMP_LEN]) -> Tai64N {
        Tai64N(bytes)
    }

    /// The 12 wire bytes.
    pub fn as_bytes(&self) -> &[u8; TIMESTAMP_LEN] {
        &self.0
    }

    /// Time since the Unix epoch, or `None` for a stamp before 1970 (or malformed nanos).
    pub fn to_unix(&self) -> Option<Duration> {
        // Both halves are fixed-width slices of the 12-byte array.
        let label = u64::from_be_bytes(self.0[..8].try_into().expect("8 bytes"));
        let nanos = u32::from_be_bytes(self.0[8..].try_into().expect("4 bytes"));
        let secs = label.checked_sub(TAI64_EPOCH)?;
        (nanos < 1_000_000_000).then(|| Duration::new(secs, nanos))
    }
}

/// The greatest timestamp accepted from one peer, and the replay rule over it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimestampFilter {
    greatest: Tai64N,
}

impl TimestampFilter {
    /// Whether `stamp` is strictly newer than every stamp accepted so far. Does not record it:
    /// the caller commits with [`TimestampFilter::accept`] only once the initiation is fully
    /// processed, so that a forged message cannot advance the filter.
    pub fn is_fresh(&self, stamp: &Tai64N) -> bool {
        *stamp > self.greatest
    }

    /// Records `stamp` as the greatest seen, if it is.
    pub fn accept(&mut self, stamp: Tai64N) {
        if stamp > self.greatest {
            self.greatest = stamp;
        }
    }

    /// The greatest stamp accepted so far.
    pub fn greatest(&self) -> Tai64N {
        self.greatest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2020-01-01T00:00:00.5Z: 1577836800 s = 0x5e0be100.
    static STAMP_2020: [u8; 12] = [
        0x40, 0, 0, 0, 0x5e, 0x0b, 0xe1, 0x0a, 0x1d, 0xcd, 0x65, 0x00,
    ];

    #[test]
    fn test_emit() {
        let t = Tai64N::from_unix(Duration::new(1_577_836_800, 500_000_000));
        assert_eq!(t.as_bytes(), &STAMP_2020);
    }

    #[test]
    fn test_parse() {
        let t = Tai64N::from_bytes(STAMP_2020);
        assert_eq!(t.to_unix(), Some(Duration::new(1_577_836_800, 500_000_000)));
        assert_eq!(Tai64N::ZERO.to_unix(), None);
    }

    #[test]
    fn test_whitening() {
        let t = Tai64N::for_initiation(Duration::new(10, (1 << 24) + 12345));
        assert_eq!(t.to_unix(), Some(Duration::new(10, 1 << 24)));
        // Two initiations within one whitening step get equal stamps, so the second is a
        // replay as far as the responder is concerned.
        let u = Tai64N::for_initiation(Duration::new(10, (1 << 24) + 99999));
        assert_eq!(t, u);
    }

    #[test]
    fn test_order_is_byte_order() {
        let a = Tai64N::from_unix(Duration::new(1, 999_999_999));
        let b = Tai64N::from_unix(Duration::new(2, 0));
        assert!(a < b && Tai64N::ZERO < a);
    }

    #[test]
    fn test_filter_requires_strictly_greater() {
        let mut f = TimestampFilter::default();
        let t1 = Tai64N::from_unix(Duration::from_secs(100));
        let t2 = Tai64N::from_unix(Duration::from_secs(101));
        assert!(f.is_fresh(&t1));
        f.accept(t1);
        assert!(!f.is_fresh(&t1), "equal is a replay");
        assert!(f.is_fresh(&t2));
        f.accept(t2);
        assert!(!f.is_fresh(&t1), "older is a replay");
        f.accept(t1);
        assert_eq!(
            f.greatest(),
            t2,
            "accepting an older stamp never lowers the bar"
        );
    }
}
