//! Typed Curve25519 keys: private, public and preshared, each 32 bytes.
//!
//! The text form is standard base64 of exactly 44 characters ending in `=`, decoded strictly
//! (canonical trailing bits, no whitespace, no URL-safe alphabet) like wireguard-tools. The
//! UAPI form is 64 lower-case hex digits. Encoding and decoding of both forms run in constant
//! time with respect to the key bytes, because private and preshared keys pass through them.
//!
//! Secrets (`PrivateKey`, `PresharedKey`) are zeroized on drop and never printed by `Debug`.

use std::fmt;
use std::str::FromStr;

use zeroize::{Zeroize, ZeroizeOnDrop};

/// Length in bytes of every WireGuard key.
pub const KEY_LEN: usize = 32;
/// Length of a key in base64 text form.
pub const KEY_B64_LEN: usize = 44;
/// Length of a key in UAPI hex form.
pub const KEY_HEX_LEN: usize = 64;

/// A key string that is not 44 characters of canonical base64 (or 64 hex digits for UAPI).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The base64 text was not a valid 32-byte key; holds the offending text.
    #[error("Key is not the correct length or format: `{0}'")]
    Format(String),
    /// The hex text was not a valid 32-byte key.
    #[error("invalid hex key")]
    Hex,
}

/// A Curve25519 private key. May be all zero, which in a configuration delta means "remove".
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct PrivateKey([u8; KEY_LEN]);

/// A Curve25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey([u8; KEY_LEN]);

/// A symmetric preshared key. All zero means "none" (and "remove" in a delta).
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct PresharedKey([u8; KEY_LEN]);

/// The operations every key type shares, so the codecs are written once.
pub trait Key: Sized {
    /// Wraps raw bytes, unchanged (no clamping).
    fn from_bytes(bytes: [u8; KEY_LEN]) -> Self;
    /// The raw bytes.
    fn as_bytes(&self) -> &[u8; KEY_LEN];

    /// Whether every byte is zero, in constant time.
    fn is_zero(&self) -> bool {
        self.as_bytes().iter().fold(0u8, |acc, b| acc | b) == 0
    }

    /// The key as 44 characters of standard base64.
    fn to_base64(&self) -> String {
        encode_base64(self.as_bytes())
    }

    /// Parses 44 characters of strict base64.
    fn from_base64(s: &str) -> Result<Self, KeyError> {
        decode_base64(s)
            .map(Self::from_bytes)
            .ok_or_else(|| KeyError::Format(s.to_owned()))
    }

    /// The key as 64 lower-case hex digits (the UAPI form).
    fn to_hex(&self) -> String {
        encode_hex(self.as_bytes())
    }

    /// Parses exactly 64 hex digits (either case) as the UAPI does.
    fn from_hex(s: &str) -> Result<Self, KeyError> {
        decode_hex(s).map(Self::from_bytes).ok_or(KeyError::Hex)
    }
}

macro_rules! impl_key {
    ($ty:ident, debug = $debug:expr) => {
        impl Key for $ty {
            fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
                $ty(bytes)
            }
            fn as_bytes(&self) -> &[u8; KEY_LEN] {
                &self.0
            }
        }

        impl FromStr for $ty {
            type Err = KeyError;
            fn from_str(s: &str) -> Result<Self, KeyError> {
                Self::from_base64(s)
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_base64())
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let debug: fn(&$ty, &mut fmt::Formatter<'_>) -> fmt::Result = $debug;
                debug(self, f)
            }
        }
    };
}

impl_key!(
    PrivateKey,
    debug = |_, f| f.write_str("PrivateKey(<redacted>)")
);
impl_key!(
    PresharedKey,
    debug = |_, f| f.write_str("PresharedKey(<redacted>)")
);
impl_key!(PublicKey, debug = |k, f| write!(f, "PublicKey({k})"));

impl PrivateKey {
    /// Builds a private key from fresh random bytes, clamped as `wg genkey` does.
    pub fn from_random(bytes: [u8; KEY_LEN]) -> Self {
        let mut key = PrivateKey(bytes);
        key.clamp();
        key
    }

    /// Clamps the scalar in place: `k[0] &= 248; k[31] = (k[31] & 127) | 64` (RFC 7748).
    ///
    /// The kernel and wireguard-go store private keys clamped, so `wg show` reads back the
    /// clamped form of whatever was set.
    pub fn clamp(&mut self) {
        self.0[0] &= 248;
        self.0[31] = (self.0[31] & 127) | 64;
    }

    /// The matching public key. X25519 clamps internally, so a clamped and an unclamped
    /// private key give the same public key, as with `wg pubkey`.
    pub fn public_key(&self) -> PublicKey {
        let secret = x25519_dalek::StaticSecret::from(self.0);
        PublicKey(x25519_dalek::PublicKey::from(&secret).to_bytes())
    }
}

/// A key file (`wg set … private-key <file>` / `preshared-key <file>`) whose contents are not
/// a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// The file was not empty but shorter than 44 bytes.
    #[error("Invalid length key in key file")]
    Length,
    /// Something other than whitespace followed the 44 key characters; holds that byte.
    #[error("Found trailing character in key file: `{0}'")]
    Trailing(char),
    /// The 44 characters were not a base64 key.
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// Parses the contents of a key file as wireguard-tools `parse_keyfile` does: an empty file
/// is the all-zero key (which removes the key in a delta); otherwise exactly 44 base64
/// characters, then only whitespace (`\t \n \v \f \r` or space). Reading the file is the
/// caller's job.
pub fn from_key_file<K: Key>(contents: &[u8]) -> Result<K, KeyFileError> {
    if contents.is_empty() {
        return Ok(K::from_bytes([0; KEY_LEN]));
    }
    if contents.len() < KEY_B64_LEN {
        return Err(KeyFileError::Length);
    }
    let (key, rest) = contents.split_at(KEY_B64_LEN);
    if let Some(&byte) = rest
        .iter()
        .find(|&&b| !matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r'))
    {
        return Err(KeyFileError::Trailing(char::from(byte)));
    }
    let text = String::from_utf8_lossy(key);
    Ok(K::from_base64(&text)?)
}

/// Maps a 6-bit value to its base64 character without branching on the value.
fn encode_sextet(v: u8) -> u8 {
    let v = i16::from(v);
    // Start at 'A' and shift by the distance to each later range once `v` passes its start.
    let c = v + 65 + (((25 - v) >> 8) & 6) - (((51 - v) >> 8) & 75) - (((61 - v) >> 8) & 15)
        + (((62 - v) >> 8) & 3);
    // The arithmetic above keeps `c` within the base64 alphabet for every 6-bit input.
    c as u8
}

/// Maps a base64 character to its 6-bit value, or -1, without branching on the character.
fn decode_sextet(c: u8) -> i16 {
    let c = i16::from(c);
    // All ones when lo <= c <= hi, else zero.
    let within = |lo: i16, hi: i16| ((lo - 1 - c) & (c - hi - 1)) >> 8;
    -1 + (within(65, 90) & (c - 65 + 1))
        + (within(97, 122) & (c - 97 + 27))
        + (within(48, 57) & (c - 48 + 53))
        + (within(43, 43) & 63)
        + (within(47, 47) & 64)
}

fn encode_base64(key: &[u8; KEY_LEN]) -> String {
    let mut out = [0u8; KEY_B64_LEN];
    for i in 0..KEY_LEN / 3 {
        let (a, b, c) = (key[i * 3], key[i * 3 + 1], key[i * 3 + 2]);
        out[i * 4] = encode_sextet(a >> 2);
        out[i * 4 + 1] = encode_sextet(((a << 4) | (b >> 4)) & 63);
        out[i * 4 + 2] = encode_sextet(((b << 2) | (c >> 6)) & 63);
        out[i * 4 + 3] = encode_sextet(c & 63);
    }
    let (a, b) = (key[30], key[31]);
    out[40] = encode_sextet(a >> 2);
    out[41] = encode_sextet(((a << 4) | (b >> 4)) & 63);
    out[42] = encode_sextet((b << 2) & 63);
    out[43] = b'=';
    out.iter().map(|&c| char::from(c)).collect()
}

fn decode_base64(s: &str) -> Option<[u8; KEY_LEN]> {
    let s = s.as_bytes();
    if s.len() != KEY_B64_LEN || s[KEY_B64_LEN - 1] != b'=' {
        return None;
    }
    let mut key = [0u8; KEY_LEN];
    // Accumulates a negative value if any character was invalid; checked once at the end.
    let mut bad: i16 = 0;
    let mut quad = |chars: &[u8]| -> u32 {
        let mut acc = 0u32;
        for &ch in chars {
            let v = decode_sextet(ch);
            bad |= v;
            acc = (acc << 6) | (v as u32 & 63);
        }
        acc
    };
    for i in 0..KEY_LEN / 3 {
        let v = quad(&s[i * 4..i * 4 + 4]);
        key[i * 3] = (v >> 16) as u8;
        key[i * 3 + 1] = (v >> 8) as u8;
        key[i * 3 + 2] = v as u8;
    }
    let v = quad(&s[40..43]);
    key[30] = (v >> 10) as u8;
    key[31] = (v >> 2) as u8;
    // The last character carries two bits that must be zero in canonical base64.
    let noncanonical = (v & 3) != 0;
    if bad < 0 || noncanonical {
        key.zeroize();
        return None;
    }
    Some(key)
}

fn encode_hex(key: &[u8; KEY_LEN]) -> String {
    // Branch-free nibble to lower-case hex digit: '0' + n, plus 39 more when n > 9.
    let nibble = |n: u8| -> char {
        let n = i16::from(n);
        char::from((48 + n + (((9 - n) >> 8) & 39)) as u8)
    };
    key.iter()
        .flat_map(|&b| [nibble(b >> 4), nibble(b & 15)])
        .collect()
}

fn decode_hex(s: &str) -> Option<[u8; KEY_LEN]> {
    let s = s.as_bytes();
    if s.len() != KEY_HEX_LEN {
        return None;
    }
    let digit = |c: u8| -> i16 {
        let c = i16::from(c);
        let within = |lo: i16, hi: i16| ((lo - 1 - c) & (c - hi - 1)) >> 8;
        -1 + (within(48, 57) & (c - 48 + 1))
            + (within(97, 102) & (c - 97 + 11))
            + (within(65, 70) & (c - 65 + 11))
    };
    let mut key = [0u8; KEY_LEN];
    let mut bad: i16 = 0;
    for (i, pair) in s.chunks_exact(2).enumerate() {
        let (hi, lo) = (digit(pair[0]), digit(pair[1]));
        bad |= hi | lo;
        key[i] = (((hi & 15) << 4) | (lo & 15)) as u8;
    }
    if bad < 0 {
        key.zeroize();
        return None;
    }
    Some(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use proptest::prelude::*;

    const RFC7748_PRIVATE: &str = "dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo=";
    const RFC7748_PUBLIC: &str = "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=";
    const ZERO: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

    #[test]
    fn test_rfc7748_vector() {
        let private: PrivateKey = RFC7748_PRIVATE.parse().unwrap();
        assert_eq!(private.public_key().to_string(), RFC7748_PUBLIC);
    }

    #[test]
    fn test_zero_key_public() {
        let private: PrivateKey = ZERO.parse().unwrap();
        assert!(private.is_zero());
        assert_eq!(
            private.public_key().to_string(),
            "L+V9o0fNYkMVKNqsX7spBzD/9oSvxM/C7ZCZX1jLO3Q="
        );
    }

    #[test]
    fn test_clamp() {
        let mut k = PrivateKey::from_bytes([0xff; 32]);
        k.clamp();
        assert_eq!(k.as_bytes()[0], 0xf8);
        assert_eq!(k.as_bytes()[31], 0x7f);
        let unclamped = PrivateKey::from_bytes([0xff; 32]);
        assert_eq!(unclamped.public_key(), k.public_key());
    }

    #[test]
    fn test_reject_noncanonical() {
        // 'A' -> 'B' in the 43rd character sets a trailing bit.
        let mut s = RFC7748_PRIVATE.to_owned();
        s.replace_range(42..43, "B");
        assert!(s.parse::<PrivateKey>().is_err());
        for bad in [
            "",
            &RFC7748_PRIVATE[..43],
            &format!("{RFC7748_PRIVATE}A"),
            &RFC7748_PRIVATE.replace('=', "A"),
            &RFC7748_PUBLIC.replace('/', "_"),
            &format!(" {}", &RFC7748_PRIVATE[1..]),
        ] {
            let err = bad.parse::<PublicKey>().unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("Key is not the correct length or format: `{bad}'")
            );
        }
    }

    #[test]
    fn test_debug_redacts_secrets() {
        let k: PrivateKey = RFC7748_PRIVATE.parse().unwrap();
        assert_eq!(format!("{k:?}"), "PrivateKey(<redacted>)");
        let p: PresharedKey = RFC7748_PRIVATE.parse().unwrap();
        assert_eq!(format!("{p:?}"), "PresharedKey(<redacted>)");
    }

    #[test]
    fn test_hex() {
        let k: PublicKey = RFC7748_PUBLIC.parse().unwrap();
        let hex = k.to_hex();
        assert_eq!(
            hex,
            "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
        );
        assert_eq!(PublicKey::from_hex(&hex).unwrap(), k);
        assert_eq!(PublicKey::from_hex(&hex.to_uppercase()).unwrap(), k);
        assert!(PublicKey::from_hex(&hex[1..]).is_err());
        assert!(PublicKey::from_hex(&hex.replace('8', "g")).is_err());
    }

    #[test]
    fn test_key_file() {
        let zero: PresharedKey = from_key_file(b"").unwrap();
        assert!(zero.is_zero());
        let k: PrivateKey =
            from_key_file(format!("{RFC7748_PRIVATE}\n\t \r\n").as_bytes()).unwrap();
        assert_eq!(k.to_string(), RFC7748_PRIVATE);
        let err = |bytes: &[u8]| from_key_file::<PrivateKey>(bytes).unwrap_err().to_string();
        assert_eq!(err(b"short\n"), "Invalid length key in key file");
        assert_eq!(
            err(format!("{RFC7748_PRIVATE}\nx").as_bytes()),
            "Found trailing character in key file: `x'"
        );
        let bad = RFC7748_PRIVATE.replace('=', "A");
        assert_eq!(
            err(format!("{bad}\n").as_bytes()),
            format!("Key is not the correct length or format: `{bad}'")
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig { rng_seed: proptest::test_runner::RngSeed::Fixed(0x5eed), cases: 2048, ..ProptestConfig::default() })]

        #[test]
        fn prop_base64_matches_reference_codec(bytes in any::<[u8; 32]>()) {
            let k = PublicKey::from_bytes(bytes);
            let ours = k.to_string();
            prop_assert_eq!(&ours, &base64::engine::general_purpose::STANDARD.encode(bytes));
            prop_assert_eq!(ours.parse::<PublicKey>().unwrap(), k);
            prop_assert_eq!(PublicKey::from_hex(&k.to_hex()).unwrap(), k);
        }

        #[test]
        fn prop_decoder_agrees_with_strict_base64(s in "[A-Za-z0-9+/=_ -]{43,45}") {
            let strict = base64::engine::general_purpose::STANDARD.decode(&s).ok().filter(|v| v.len() == 32);
            let ours = s.parse::<PublicKey>().ok().map(|k| k.as_bytes().to_vec());
            prop_assert_eq!(ours, strict);
        }
    }
}
