//! The cryptographic primitives of whitepaper §5.4, under the names the paper uses.
//!
//! `HASH` is BLAKE2s-256, `MAC` is keyed BLAKE2s with a 16-byte output (the digest length is
//! part of the BLAKE2s parameter block, so this is *not* a truncated 32-byte MAC), `HMAC` is
//! HMAC-BLAKE2s (RFC 2104 with a 64-byte block), `KDF_n` is HKDF's expand-after-extract chain
//! over that HMAC, `AEAD` is ChaCha20-Poly1305 (RFC 8439) with a 64-bit little-endian counter
//! nonce and `XAEAD` is XChaCha20-Poly1305 for cookie replies. Intermediate keying material is
//! zeroized before returning. Every function is deterministic and allocation-free.

use blake2::digest::{Digest, Mac};
use blake2::{Blake2s256, Blake2sMac};
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, XChaCha20Poly1305};
use zeroize::Zeroizing;

use crate::messages::TAG_LEN;

/// The Noise protocol name, hashed into the initial chaining key.
pub const CONSTRUCTION: &[u8] = b"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s";
/// WireGuard's Noise prologue.
pub const IDENTIFIER: &[u8] = b"WireGuard v1 zx2c4 Jason@zx2c4.com";
/// Label hashed with a static public key to make the MAC1 key.
pub const LABEL_MAC1: &[u8] = b"mac1----";
/// Label hashed with a static public key to make the cookie-reply encryption key.
pub const LABEL_COOKIE: &[u8] = b"cookie--";

/// Output size of `HASH`, `HMAC` and every `KDF` output.
pub const HASH_LEN: usize = 32;
/// Output size of `MAC`.
pub const MAC_LEN: usize = 16;

/// An AEAD tag did not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AeadError {
    /// Decryption failed: wrong key, nonce, associated data or a corrupted ciphertext.
    #[error("authentication tag mismatch")]
    Tag,
    /// The output buffer does not have the size the input implies.
    #[error("buffer length mismatch")]
    Length,
}

/// `HASH(input)` where `input` is the concatenation of `parts`.
pub fn hash(parts: &[&[u8]]) -> [u8; HASH_LEN] {
    let mut h = Blake2s256::new();
    for part in parts {
        h.update(part);
    }
    h.finalize().into()
}

/// `MAC(key, input)`: keyed BLAKE2s-128 over the concatenation of `parts`.
pub fn mac(key: &[u8], parts: &[&[u8]]) -> [u8; MAC_LEN] {
    // All MAC keys in WireGuard are 32 bytes (a hash or a cookie secret) or 16 (a cookie);
    // BLAKE2s accepts keys up to 32 bytes.
    let mut m = <Blake2sMac<blake2::digest::consts::U16> as KeyInit>::new_from_slice(key)
        .expect("MAC key is at most 32 bytes");
    for part in parts {
        Mac::update(&mut m, part);
    }
    m.finalize().into_bytes().into()
}

/// `HMAC(key, input)`: HMAC-BLAKE2s (RFC 2104, 64-byte block) over the concatenation of `parts`.
///
/// Written out rather than through the `hmac` crate so that the pad blocks can be zeroized.
pub fn hmac(key: &[u8; HASH_LEN], parts: &[&[u8]]) -> [u8; HASH_LEN] {
    const BLOCK: usize = 64;
    let mut ipad = Zeroizing::new([0x36u8; BLOCK]);
    let mut opad = Zeroizing::new([0x5cu8; BLOCK]);
    for (i, k) in key.iter().enumerate() {
        ipad[i] ^= k;
        opad[i] ^= k;
    }
    let mut inner = Blake2s256::new();
    inner.update(&ipad[..]);
    for part in parts {
        inner.update(part);
    }
    let inner = Zeroizing::new(<[u8; HASH_LEN]>::from(inner.finalize()));
    let mut outer = Blake2s256::new();
    outer.update(&opad[..]);
    outer.update(&inner[..]);
    outer.finalize().into()
}

/// `KDF_1(key, input) = τ1` where `τ0 = HMAC(key, input)`, `τ1 = HMAC(τ0, 0x1)`.
pub fn kdf1(key: &[u8; HASH_LEN], input: &[u8]) -> [u8; HASH_LEN] {
    let t0 = Zeroizing::new(hmac(key, &[input]));
    hmac(&t0, &[&[0x1]])
}

/// `KDF_2(key, input) = (τ1, τ2)` with `τ2 = HMAC(τ0, τ1 || 0x2)`.
pub fn kdf2(key: &[u8; HASH_LEN], input: &[u8]) -> ([u8; HASH_LEN], [u8; HASH_LEN]) {
    let t0 = Zeroizing::new(hmac(key, &[input]));
    let t1 = hmac(&t0, &[&[0x1]]);
    let t2 = hmac(&t0, &[&t1, &[0x2]]);
    (t1, t2)
}

/// `KDF_3(key, input) = (τ1, τ2, τ3)` with `τ3 = HMAC(τ0, τ2 || 0x3)`.
pub fn kdf3(
    key: &[u8; HASH_LEN],
    input: &[u8],
) -> ([u8; HASH_LEN], [u8; HASH_LEN], [u8; HASH_LEN]) {
    let t0 = Zeroizing::new(hmac(key, &[input]));
    let t1 = hmac(&t0, &[&[0x1]]);
    let t2 = hmac(&t0, &[&t1, &[0x2]]);
    let t3 = hmac(&t0, &[&t2, &[0x3]]);
    (t1, t2, t3)
}

/// The 96-bit ChaCha20-Poly1305 nonce for a 64-bit counter: 32 bits of zeros followed by the
/// counter in little-endian (whitepaper §5.4.6).
pub fn counter_nonce(counter: u64) -> [u8; 12] {
    let mut nonce = [0u8; 12];
    nonce[4..].copy_from_slice(&counter.to_le_bytes());
    nonce
}

/// `AEAD(key, counter, plaintext, aad)` written to `out`, which must be exactly
/// `plaintext.len() + 16` bytes: ciphertext followed by the tag.
pub fn aead_seal(
    key: &[u8; HASH_LEN],
    counter: u64,
    plaintext: &[u8],
    aad: &[u8],
    out: &mut [u8],
) -> Result<(), AeadError> {
    let cipher = ChaCha20Poly1305::new(key.into());
    seal_with(&cipher, &counter_nonce(counter), plaintext, aad, out)
}

/// Inverse of [`aead_seal`]: `out` must be exactly `ciphertext.len() - 16` bytes.
pub fn aead_open(
    key: &[u8; HASH_LEN],
    counter: u64,
    ciphertext: &[u8],
    aad: &[u8],
    out: &mut [u8],
) -> Result<(), AeadError> {
    let cipher = ChaCha20Poly1305::new(key.into());
    open_with(&cipher, &counter_nonce(counter), ciphertext, aad, out)
}

/// `XAEAD(key, nonce, plaintext, aad)` with a 24-byte random nonce, for cookie replies.
pub fn xaead_seal(
    key: &[u8; HASH_LEN],
    nonce: &[u8; 24],
    plaintext: &[u8],
    aad: &[u8],
    out: &mut [u8],
) -> Result<(), AeadError> {
    let cipher = XChaCha20Poly1305::new(key.into());
    seal_with(&cipher, nonce, plaintext, aad, out)
}

/// Inverse of [`xaead_seal`].
pub fn xaead_open(
    key: &[u8; HASH_LEN],
    nonce: &[u8; 24],
    ciphertext: &[u8],
    aad: &[u8],
    out: &mut [u8],
) -> Result<(), AeadError> {
    let cipher = XChaCha20Poly1305::new(key.into());
    open_with(&cipher, nonce, ciphertext, aad, out)
}

/// Seals with an already keyed cipher (the transport path keeps its ciphers keyed).
pub(crate) fn seal_with<A: AeadInPlace>(
    cipher: &A,
    nonce: &[u8],
    plaintext: &[u8],
    aad: &[u8],
    out: &mut [u8],
) -> Result<(), AeadError> {
    if out.len() != plaintext.len() + TAG_LEN {
        return Err(AeadError::Length);
    }
    let (body, tag_out) = out.split_at_mut(plaintext.len());
    body.copy_from_slice(plaintext);
    let tag = cipher
        .encrypt_in_place_detached(nonce.into(), aad, body)
        .map_err(|_| AeadError::Length)?;
    tag_out.copy_from_slice(&tag);
    Ok(())
}

/// Opens with an already keyed cipher. On failure `out` is zeroed so that no unauthenticated
/// plaintext is left behind.
pub(crate) fn open_with<A: AeadInPlace>(
    cipher: &A,
    nonce: &[u8],
    ciphertext: &[u8],
    aad: &[u8],
    out: &mut [u8],
) -> Result<(), AeadError> {
    let Some(body_len) = ciphertext.len().checked_sub(TAG_LEN) else {
        return Err(AeadError::Length);
    };
    if out.len() != body_len {
        return Err(AeadError::Length);
    }
    let (body, tag) = ciphertext.split_at(body_len);
    out.copy_from_slice(body);
    cipher
        .decrypt_in_place_detached(nonce.into(), aad, out, tag.into())
        .map_err(|_| {
            out.fill(0);
            AeadError::Tag
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    // RFC 7693 Appendix B: BLAKE2s-256("abc").
    #[test]
    fn test_blake2s_rfc7693_abc() {
        let expected = unhex("508C5E8C327C14E2E1A72BA34EEB452F37458B209ED63A294D999B4C86675982");
        assert_eq!(hash(&[b"abc"]).to_vec(), expected);
        // Concatenation of parts is the same as hashing the joined input.
        assert_eq!(hash(&[b"a", b"", b"bc"]), hash(&[b"abc"]));
    }

    // The initial chaining key and hash every handshake starts from. These constants also
    // appear in boringtun (`INITIAL_CHAIN_KEY`, `INITIAL_CHAIN_HASH`).
    #[test]
    fn test_initial_chaining_key_and_hash() {
        let ck = hash(&[CONSTRUCTION]);
        assert_eq!(
            ck.to_vec(),
            unhex("60e26daef327efc02ec335e2a025d2d016eb4206f87277f52d38d1988b78cd36")
        );
        let h = hash(&[&ck, IDENTIFIER]);
        assert_eq!(
            h.to_vec(),
            unhex("2211b361081ac566691243db458ad5322d9c6c662293e8b70ee19c65ba079ef3")
        );
    }

    // RFC 8439 §2.8.2: the ChaCha20-Poly1305 AEAD test vector. Its nonce is not in WireGuard's
    // counter form, so this drives the keyed cipher directly.
    #[test]
    fn test_chacha20poly1305_rfc8439_vector() {
        let key: [u8; 32] =
            unhex("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f")
                .try_into()
                .unwrap();
        let nonce = unhex("070000004041424344454647");
        let aad = unhex("50515253c0c1c2c3c4c5c6c7");
        let plaintext = b"Ladies and Gentlemen of the class of '99: If I could offer you only one \
tip for the future, sunscreen would be it.";
        let expected = unhex(
            "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d6
             3dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b36
             92ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc
             3ff4def08e4b7a9de576d26586cec64b6116
             1ae10b594f09e26a7e902ecbd0600691",
        );
        let cipher = ChaCha20Poly1305::new((&key).into());
        let mut out = vec![0u8; plaintext.len() + TAG_LEN];
        seal_with(&cipher, &nonce, plaintext, &aad, &mut out).unwrap();
        assert_eq!(out, expected);
        let mut back = vec![0u8; plaintext.len()];
        open_with(&cipher, &nonce, &out, &aad, &mut back).unwrap();
        assert_eq!(&back[..], &plaintext[..]);
        out[0] ^= 1;
        assert_eq!(
            open_with(&cipher, &nonce, &out, &aad, &mut back),
            Err(AeadError::Tag)
        );
        assert!(
            back.iter().all(|&b| b == 0),
            "failed open leaves no plaintext behind"
        );
    }

    // draft-irtf-cfrg-xchacha-03 §A.3.1: the XChaCha20-Poly1305 AEAD test vector.
    #[test]
    fn test_xchacha20poly1305_draft_vector() {
        let key: [u8; 32] =
            unhex("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f")
                .try_into()
                .unwrap();
        let nonce: [u8; 24] = unhex("404142434445464748494a4b4c4d4e4f5051525354555657")
            .try_into()
            .unwrap();
        let aad = unhex("50515253c0c1c2c3c4c5c6c7");
        let plaintext = b"Ladies and Gentlemen of the class of '99: If I could offer you only one \
tip for the future, sunscreen would be it.";
        let expected = unhex(
            "bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb
             731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b452
             2f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff9
             21f9664c97637da9768812f615c68b13b52e
             c0875924c1c7987947deafd8780acf49",
        );
        let mut out = vec![0u8; plaintext.len() + TAG_LEN];
        xaead_seal(&key, &nonce, plaintext, &aad, &mut out).unwrap();
        assert_eq!(out, expected);
    }

    #[test]
    fn test_counter_nonce_layout() {
        assert_eq!(
            counter_nonce(0x0102_0304_0506_0708),
            [0, 0, 0, 0, 8, 7, 6, 5, 4, 3, 2, 1]
        );
    }

    // HMAC against RFC 2104 computed by hand over the generic hash, with a key of block size
    // handling checked by the hmac crate's reference construction.
    #[test]
    fn test_hmac_matches_reference_construction() {
        use hmac::{Mac as _, SimpleHmac};
        let key = [0x0bu8; 32];
        let mut reference = <SimpleHmac<Blake2s256> as hmac::Mac>::new_from_slice(&key).unwrap();
        reference.update(b"Hi There");
        let reference: [u8; 32] = reference.finalize().into_bytes().into();
        assert_eq!(hmac(&key, &[b"Hi ", b"There"]), reference);
    }

    #[test]
    fn test_kdf_chain_structure() {
        // KDF outputs are prefixes of each other's chains: KDF1 = KDF2.0 = KDF3.0, KDF2 = KDF3.
        let key = hash(&[b"key"]);
        let (a1, a2) = kdf2(&key, b"input");
        let (b1, b2, b3) = kdf3(&key, b"input");
        assert_eq!(kdf1(&key, b"input"), a1);
        assert_eq!((a1, a2), (b1, b2));
        // And each step is the HMAC chain written out.
        let t0 = hmac(&key, &[b"input"]);
        assert_eq!(b1, hmac(&t0, &[&[1]]));
        assert_eq!(b3, hmac(&t0, &[&b2, &[3]]));
    }

    #[test]
    fn test_mac_is_keyed_blake2s_128() {
        // A 16-byte BLAKE2s output is not a truncated 32-byte one: the length is a parameter.
        let key = [7u8; 32];
        let m = mac(&key, &[b"message"]);
        let mut long =
            <Blake2sMac<blake2::digest::consts::U32> as KeyInit>::new_from_slice(&key).unwrap();
        Mac::update(&mut long, b"message");
        assert_ne!(&long.finalize().into_bytes()[..16], &m[..]);
        assert_eq!(mac(&key, &[b"mess", b"age"]), m);
    }
}
