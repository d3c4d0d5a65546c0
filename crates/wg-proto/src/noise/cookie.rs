//! The MAC1 / MAC2 / cookie-reply layer around handshake messages (whitepaper §5.3, §5.4.4,
//! §5.4.7).
//!
//! Every handshake message ends in `mac1 || mac2`. MAC1 is keyed with
//! `HASH(LABEL_MAC1 || S_receiver^pub)` and covers the message up to `mac1`, so only someone
//! who knows the receiver's public key can make the receiver do any Diffie-Hellman work. MAC2
//! is keyed with a cookie and covers the message up to `mac2` (MAC1 included); it is all zero
//! when the sender has no fresh cookie. A responder that is under load answers a message
//! without a valid MAC2 with a `CookieReply` instead of processing it; the cookie is
//! `MAC(R_m, source IP || source port)` for a secret `R_m` that is rotated every two minutes,
//! and travels encrypted under `HASH(LABEL_COOKIE || S_responder^pub)` with the message's
//! MAC1 as associated data. Whether the responder is under load is the caller's decision,
//! passed in as a flag. [`CookieChecker`] is the receiving side (one per device);
//! [`CookieState`] the sending side (one per peer).

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use zeroize::{Zeroize, Zeroizing};

use super::kdf::{hash, mac, xaead_open, xaead_seal, HASH_LEN, LABEL_COOKIE, LABEL_MAC1, MAC_LEN};
use crate::messages::{CookieReply, COOKIE_LEN, COOKIE_NONCE_LEN, KEY_LEN};
use crate::ratelimiter::Ratelimiter;
use crate::timers::COOKIE_REFRESH_TIME;

/// How long a received cookie is used for MAC2: the secret's lifetime minus a latency margin,
/// so that we never send a MAC2 under a secret the responder has already rotated away
/// (`COOKIE_SECRET_MAX_AGE - COOKIE_SECRET_LATENCY` in the kernel).
const COOKIE_USE_TIME: Duration = Duration::from_secs(120 - 5);

/// What the receiver of a handshake message should do with it, after the MAC checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// MAC1 is wrong: drop the message without any further work.
    Drop,
    /// MAC1 (and MAC2, if we are under load) verify: process the message.
    Process,
    /// We are under load and MAC2 is missing or stale: answer with a cookie reply only.
    ReplyWithCookie,
    /// We are under load, MAC2 is missing or stale, and the source has had its share of
    /// cookie replies ([`crate::ratelimiter`]'s rate, per source): drop the message.
    RateLimited,
}

/// A cookie reply that could not be consumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CookieError {
    /// We have no handshake message in flight whose MAC1 the reply could answer.
    #[error("unexpected cookie reply")]
    Unexpected,
    /// The encrypted cookie did not decrypt.
    #[error("cookie reply failed to decrypt")]
    Decrypt,
}

/// Splits a handshake message (either type) into the part MAC1 covers, and the MAC1 field.
/// Both handshake messages end in `mac1 (16) || mac2 (16)`.
fn mac1_split(msg: &[u8]) -> (&[u8], &[u8]) {
    let at = msg.len() - 2 * MAC_LEN;
    (&msg[..at], &msg[at..at + MAC_LEN])
}

/// Splits a handshake message into the part MAC2 covers, and the MAC2 field.
fn mac2_split(msg: &[u8]) -> (&[u8], &[u8]) {
    let at = msg.len() - MAC_LEN;
    (&msg[..at], &msg[at..])
}

/// Constant-time equality of two MACs.
fn mac_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `HASH(label || public)`: the MAC1 key or the cookie encryption key for a static key.
fn labelled_key(label: &[u8], public: &[u8; KEY_LEN]) -> [u8; HASH_LEN] {
    hash(&[label, public])
}

/// The receiving side: verifies MACs on handshake messages addressed to us and makes cookies.
pub struct CookieChecker {
    /// `HASH(LABEL_MAC1 || S_local^pub)`.
    mac1_key: [u8; HASH_LEN],
    /// `HASH(LABEL_COOKIE || S_local^pub)`.
    cookie_key: [u8; HASH_LEN],
    /// `R_m`, and when it was drawn. `None` until first needed.
    secret: Option<(Zeroizing<[u8; 32]>, Instant)>,
    /// The last cookie computed, for which source, under the current `R_m`: under a flood
    /// [`admit`](Self::admit) and [`create_reply`](Self::create_reply) want the same cookie
    /// one after the other, and each costs two BLAKE2s compressions. Cleared with `R_m`.
    last_cookie: Option<(SocketAddr, Zeroizing<[u8; COOKIE_LEN]>)>,
    /// Cookie replies per source: a flood from a few addresses gets a few replies each, not
    /// one per message (each costs an XChaCha20-Poly1305 seal and a send).
    replies: Ratelimiter,
}

impl CookieChecker {
    /// A checker for messages addressed to the static public key `local`.
    pub fn new(local: &[u8; KEY_LEN]) -> CookieChecker {
        CookieChecker {
            mac1_key: labelled_key(LABEL_MAC1, local),
            cookie_key: labelled_key(LABEL_COOKIE, local),
            secret: None,
            last_cookie: None,
            replies: Ratelimiter::new(),
        }
    }

    /// Checks MAC1, and MAC2 when `under_load`, of a handshake message from `src`.
    ///
    /// An all-zero MAC2 is what a sender without a cookie sends; it is answered with a cookie
    /// reply without computing MAC2 (a real MAC2 is all zero with probability 2^-128, and
    /// then the sender simply retries with a new cookie). This saves four BLAKE2s
    /// compressions per message of a flood whose sender has no cookie.
    ///
    /// Cookie replies are limited per source address like handshakes with a valid cookie (20
    /// a second after a burst of 5; the kernel and wireguard-go answer every message): a
    /// legitimate sender needs one per retry (every 5 seconds), a flood from a few addresses
    /// no longer costs a seal and a send per message, so more of the port's queue is read
    /// and a legitimate initiation is less likely to be dropped in the kernel before it. The
    /// caller may still answer an [`Admission::RateLimited`] message (the tunnel does for its
    /// peers' endpoint addresses).
    pub fn admit<R: rand_core::RngCore + rand_core::CryptoRng>(
        &mut self,
        now: Instant,
        rng: &mut R,
        msg: &[u8],
        src: SocketAddr,
        under_load: bool,
    ) -> Admission {
        // msg.mac1 := MAC(HASH(LABEL_MAC1 || S_m'^pub), msg_α)
        let (covered, mac1) = mac1_split(msg);
        if !mac_eq(&mac(&self.mac1_key, &[covered]), mac1) {
            return Admission::Drop;
        }
        if !under_load {
            return Admission::Process;
        }
        // msg.mac2 := MAC(L_m, msg_β), with L_m the cookie we would give this source now
        let (covered, mac2) = mac2_split(msg);
        if mac2.iter().any(|&b| b != 0) {
            let cookie = self.cookie(now, rng, src);
            if mac_eq(&mac(&cookie[..], &[covered]), mac2) {
                return Admission::Process;
            }
        }
        if self.replies.allow(now, src.ip()) {
            Admission::ReplyWithCookie
        } else {
            Admission::RateLimited
        }
    }

    /// Writes a `CookieReply` answering the handshake message `msg` (whose sender index is
    /// `sender_index`) from `src` into `out`, which must be [`COOKIE_REPLY_LEN`](crate::messages::COOKIE_REPLY_LEN) bytes.
    pub fn create_reply<R: rand_core::RngCore + rand_core::CryptoRng>(
        &mut self,
        now: Instant,
        rng: &mut R,
        msg: &[u8],
        sender_index: u32,
        src: SocketAddr,
        out: &mut [u8],
    ) {
        let cookie = self.cookie(now, rng, src);
        let (_, mac1) = mac1_split(msg);
        let mut reply = CookieReply::new_unchecked(out);
        reply.set_message_type();
        // msg.receiver := I_m' (the sender index of the message being answered)
        reply.set_receiver_index(sender_index);
        // msg.nonce := RAND(24)
        let mut nonce = [0u8; COOKIE_NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        reply.nonce_mut().copy_from_slice(&nonce);
        // msg.cookie := XAEAD(HASH(LABEL_COOKIE || S_m^pub), msg.nonce, τ, M)
        xaead_seal(
            &self.cookie_key,
            &nonce,
            &cookie[..],
            mac1,
            reply.encrypted_cookie_mut(),
        )
        // The output field is exactly COOKIE_LEN + TAG_LEN bytes by construction.
        .expect("cookie reply field size");
    }

    /// `τ := MAC(R_m, A_m)`: the cookie for `src`, rotating `R_m` when it is older than
    /// [`COOKIE_REFRESH_TIME`]. The same source twice in a row under the same `R_m` reuses
    /// the cookie computed the first time.
    fn cookie<R: rand_core::RngCore + rand_core::CryptoRng>(
        &mut self,
        now: Instant,
        rng: &mut R,
        src: SocketAddr,
    ) -> Zeroizing<[u8; COOKIE_LEN]> {
        let fresh = matches!(&self.secret, Some((_, born)) if now.saturating_duration_since(*born) < COOKIE_REFRESH_TIME);
        if !fresh {
            let mut secret = Zeroizing::new([0u8; 32]);
            rng.fill_bytes(&mut secret[..]);
            self.secret = Some((secret, now));
            self.last_cookie = None;
        }
        if let Some((last_src, cookie)) = &self.last_cookie {
            if *last_src == src {
                return cookie.clone();
            }
        }
        let cookie = self.compute_cookie(src);
        self.last_cookie = Some((src, cookie.clone()));
        cookie
    }

    /// `MAC(R_m, A_m)` under the current secret.
    fn compute_cookie(&self, src: SocketAddr) -> Zeroizing<[u8; COOKIE_LEN]> {
        // `cookie` draws the secret before calling this.
        let (secret, _) = self.secret.as_ref().expect("cookie secret");
        // A_m: the source address bytes followed by the port in network order, as the kernel
        // does. Only we ever recompute this cookie, so the encoding is a local choice.
        let port = src.port().to_be_bytes();
        let cookie = match src.ip() {
            IpAddr::V4(ip) => mac(&secret[..], &[&ip.octets(), &port]),
            IpAddr::V6(ip) => mac(&secret[..], &[&ip.octets(), &port]),
        };
        Zeroizing::new(cookie)
    }
}

/// The sending side, per peer: MAC keys for messages to that peer, the last MAC1 sent, and
/// the latest cookie it gave us.
pub struct CookieState {
    /// `HASH(LABEL_MAC1 || S_peer^pub)`.
    mac1_key: [u8; HASH_LEN],
    /// `HASH(LABEL_COOKIE || S_peer^pub)`.
    cookie_key: [u8; HASH_LEN],
    /// MAC1 of the last handshake message we sent: the AAD a cookie reply must carry.
    last_mac1: Option<[u8; MAC_LEN]>,
    /// The latest cookie and when we received it.
    cookie: Option<([u8; COOKIE_LEN], Instant)>,
}

impl Drop for CookieState {
    /// The received cookie is a MAC key: erase it.
    fn drop(&mut self) {
        if let Some((cookie, _)) = &mut self.cookie {
            cookie.zeroize();
        }
    }
}

impl CookieState {
    /// The state for messages to the peer with static public key `remote`.
    pub fn new(remote: &[u8; KEY_LEN]) -> CookieState {
        CookieState {
            mac1_key: labelled_key(LABEL_MAC1, remote),
            cookie_key: labelled_key(LABEL_COOKIE, remote),
            last_mac1: None,
            cookie: None,
        }
    }

    /// Fills in `mac1` and `mac2` of a handshake message about to be sent to the peer.
    pub fn add_macs(&mut self, now: Instant, msg: &mut [u8]) {
        let len = msg.len();
        // msg.mac1 := MAC(HASH(LABEL_MAC1 || S_m'^pub), msg_α)
        let mac1 = mac(&self.mac1_key, &[mac1_split(msg).0]);
        msg[len - 2 * MAC_LEN..len - MAC_LEN].copy_from_slice(&mac1);
        self.last_mac1 = Some(mac1);
        // if L_m = ε or L_m expired: msg.mac2 := 0^16, else msg.mac2 := MAC(L_m, msg_β)
        let mac2 = match &self.cookie {
            Some((cookie, at)) if now.saturating_duration_since(*at) < COOKIE_USE_TIME => {
                mac(cookie, &[mac2_split(msg).0])
            }
            _ => [0u8; MAC_LEN],
        };
        msg[len - MAC_LEN..].copy_from_slice(&mac2);
    }

    /// Decrypts a cookie reply from the peer and stores the cookie for the next MAC2.
    pub fn consume_reply(
        &mut self,
        now: Instant,
        reply: &CookieReply<&[u8]>,
    ) -> Result<(), CookieError> {
        let last_mac1 = self.last_mac1.ok_or(CookieError::Unexpected)?;
        // The nonce field is exactly 24 bytes.
        let nonce: &[u8; COOKIE_NONCE_LEN] = reply.nonce().try_into().expect("24-byte nonce");
        let mut cookie = [0u8; COOKIE_LEN];
        // τ := XAEAD^-1(HASH(LABEL_COOKIE || S_m^pub), msg.nonce, msg.cookie, M)
        xaead_open(
            &self.cookie_key,
            nonce,
            reply.encrypted_cookie(),
            &last_mac1,
            &mut cookie,
        )
        .map_err(|_| CookieError::Decrypt)?;
        self.cookie = Some((cookie, now));
        // A reply answers one message; a second reply for the same MAC1 is unexpected.
        self.last_mac1 = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::{COOKIE_REPLY_LEN, HANDSHAKE_INITIATION_LEN};
    use crate::tests::fixed_rng;

    const RESPONDER: [u8; 32] = [0xaa; 32];

    fn message(fill: u8) -> [u8; HANDSHAKE_INITIATION_LEN] {
        let mut msg = [fill; HANDSHAKE_INITIATION_LEN];
        msg[..4].copy_from_slice(&[1, 0, 0, 0]);
        msg
    }

    fn src() -> SocketAddr {
        "192.0.2.1:51820".parse().unwrap()
    }

    #[test]
    fn test_mac1_covers_bytes_before_it() {
        let now = crate::tests::epoch();
        let mut state = CookieState::new(&RESPONDER);
        let mut msg = message(7);
        state.add_macs(now, &mut msg);
        let key = hash(&[LABEL_MAC1, &RESPONDER]);
        assert_eq!(&msg[116..132], &mac(&key, &[&msg[..116]]));
        assert_eq!(&msg[132..], &[0; 16], "no cookie, no MAC2");
        let mut checker = CookieChecker::new(&RESPONDER);
        let mut rng = fixed_rng(1);
        assert_eq!(
            checker.admit(now, &mut rng, &msg, src(), false),
            Admission::Process
        );
        // MAC2 is not covered by MAC1.
        msg[140] ^= 1;
        assert_eq!(
            checker.admit(now, &mut rng, &msg, src(), false),
            Admission::Process
        );
        msg[3] ^= 1;
        assert_eq!(
            checker.admit(now, &mut rng, &msg, src(), false),
            Admission::Drop
        );
    }

    #[test]
    fn test_cookie_round_trip_under_load() {
        let now = crate::tests::epoch();
        let mut rng = fixed_rng(2);
        let mut state = CookieState::new(&RESPONDER);
        let mut checker = CookieChecker::new(&RESPONDER);
        let mut msg = message(3);
        state.add_macs(now, &mut msg);
        assert_eq!(
            checker.admit(now, &mut rng, &msg, src(), true),
            Admission::ReplyWithCookie
        );
        let mut reply = [0u8; COOKIE_REPLY_LEN];
        checker.create_reply(now, &mut rng, &msg, 0x1234, src(), &mut reply);
        let reply = CookieReply::new_checked(&reply[..]).unwrap();
        assert_eq!(reply.receiver_index(), 0x1234);
        state.consume_reply(now, &reply).unwrap();
        assert_eq!(
            state.consume_reply(now, &reply),
            Err(CookieError::Unexpected)
        );

        // The retried message now carries a MAC2 the checker accepts, from the same source only.
        state.add_macs(now, &mut msg);
        assert_ne!(&msg[132..], &[0; 16]);
        assert_eq!(
            checker.admit(now, &mut rng, &msg, src(), true),
            Admission::Process
        );
        let other: SocketAddr = "192.0.2.1:51821".parse().unwrap();
        assert_eq!(
            checker.admit(now, &mut rng, &msg, other, true),
            Admission::ReplyWithCookie
        );

        // After the sender's cookie lifetime MAC2 goes back to zero.
        state.add_macs(now + COOKIE_USE_TIME, &mut msg);
        assert_eq!(&msg[132..], &[0; 16]);
    }

    #[test]
    fn test_secret_rotates_every_two_minutes() {
        let now = crate::tests::epoch();
        let mut rng = fixed_rng(3);
        let mut checker = CookieChecker::new(&RESPONDER);
        let a = checker.cookie(now, &mut rng, src());
        let b = checker.cookie(now + Duration::from_secs(119), &mut rng, src());
        let c = checker.cookie(now + COOKIE_REFRESH_TIME, &mut rng, src());
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn test_reply_bound_to_mac1() {
        let now = crate::tests::epoch();
        let mut rng = fixed_rng(4);
        let mut state = CookieState::new(&RESPONDER);
        let mut checker = CookieChecker::new(&RESPONDER);
        let mut first = message(1);
        state.add_macs(now, &mut first);
        let mut second = message(2);
        state.add_macs(now, &mut second);
        // A reply to the first message does not decrypt once a second one has been sent.
        let mut reply = [0u8; COOKIE_REPLY_LEN];
        checker.create_reply(now, &mut rng, &first, 1, src(), &mut reply);
        let reply = CookieReply::new_checked(&reply[..]).unwrap();
        assert_eq!(state.consume_reply(now, &reply), Err(CookieError::Decrypt));
        // Nor does a reply from someone with another static key.
        let mut impostor = CookieChecker::new(&[0xbb; 32]);
        let mut reply = [0u8; COOKIE_REPLY_LEN];
        impostor.create_reply(now, &mut rng, &second, 1, src(), &mut reply);
        let reply = CookieReply::new_checked(&reply[..]).unwrap();
        assert_eq!(state.consume_reply(now, &reply), Err(CookieError::Decrypt));
    }

    #[test]
    fn test_zero_mac2_answered_without_computing_it() {
        let now = crate::tests::epoch();
        let mut rng = fixed_rng(5);
        let mut state = CookieState::new(&RESPONDER);
        let mut checker = CookieChecker::new(&RESPONDER);
        let mut msg = message(9);
        state.add_macs(now, &mut msg);
        assert_eq!(&msg[132..], &[0; 16]);
        assert_eq!(
            checker.admit(now, &mut rng, &msg, src(), true),
            Admission::ReplyWithCookie
        );
        assert!(
            checker.secret.is_none() && checker.last_cookie.is_none(),
            "no cookie made"
        );
        // A wrong, non-zero MAC2 is still checked, and its cookie kept for the reply.
        msg[140] = 1;
        assert_eq!(
            checker.admit(now, &mut rng, &msg, src(), true),
            Admission::ReplyWithCookie
        );
        let kept = checker.last_cookie.clone().expect("cookie kept");
        assert_eq!(kept.0, src());
        assert_eq!(kept.1, checker.compute_cookie(src()));
        // Not under load, MAC2 is not looked at.
        assert_eq!(
            checker.admit(now, &mut rng, &msg, src(), false),
            Admission::Process
        );
    }

    #[test]
    fn test_valid_mac2_passes_amid_a_flood_of_other_sources() {
        let now = crate::tests::epoch();
        let mut rng = fixed_rng(6);
        let mut state = CookieState::new(&RESPONDER);
        let mut checker = CookieChecker::new(&RESPONDER);
        let mut msg = message(4);
        state.add_macs(now, &mut msg);
        let mut reply = [0u8; COOKIE_REPLY_LEN];
        checker.create_reply(now, &mut rng, &msg, 7, src(), &mut reply);
        state
            .consume_reply(now, &CookieReply::new_checked(&reply[..]).unwrap())
            .unwrap();
        state.add_macs(now, &mut msg);
        let mut flood = message(8);
        CookieState::new(&RESPONDER).add_macs(now, &mut flood);
        for i in 0..50u16 {
            // Flood messages from other sources, with zero and with random MAC2, each
            // answered with a cookie for its own source.
            let other = SocketAddr::from(([198, 51, 100, i as u8], 1000 + i));
            flood[132..].fill(if i % 2 == 0 { 0 } else { i as u8 });
            let admission = checker.admit(now, &mut rng, &flood, other, true);
            assert_eq!(admission, Admission::ReplyWithCookie);
            let mut out = [0u8; COOKIE_REPLY_LEN];
            checker.create_reply(now, &mut rng, &flood, 1, other, &mut out);
            let mut fresh = CookieState::new(&RESPONDER);
            // Its MAC1 is the flood message's: the reply decrypts.
            fresh.add_macs(now, &mut flood.clone());
            let out = CookieReply::new_checked(&out[..]).unwrap();
            fresh.consume_reply(now, &out).unwrap();
            let (cookie, _) = fresh.cookie.unwrap();
            assert_eq!(cookie, *checker.compute_cookie(other), "cookie for {other}");
            if i % 10 == 0 {
                assert_eq!(
                    checker.admit(now, &mut rng, &msg, src(), true),
                    Admission::Process,
                    "round {i}"
                );
            }
        }
        // The same cookies after the secret rotates: the kept one is not reused.
        let later = now + COOKIE_REFRESH_TIME;
        assert_eq!(
            checker.admit(later, &mut rng, &msg, src(), true),
            Admission::ReplyWithCookie
        );
        assert_eq!(
            checker.last_cookie.as_ref().unwrap().1,
            checker.compute_cookie(src())
        );
    }

    #[test]
    fn test_cookie_replies_limited_per_source() {
        let now = crate::tests::epoch();
        let mut rng = fixed_rng(7);
        let mut checker = CookieChecker::new(&RESPONDER);
        let mut msg = message(5);
        CookieState::new(&RESPONDER).add_macs(now, &mut msg);
        let admit = |checker: &mut CookieChecker, rng: &mut _, at, from| {
            checker.admit(at, rng, &msg, from, true)
        };
        // A burst of five replies, then none until the bucket refills (20 a second).
        for _ in 0..5 {
            assert_eq!(
                admit(&mut checker, &mut rng, now, src()),
                Admission::ReplyWithCookie
            );
        }
        assert_eq!(
            admit(&mut checker, &mut rng, now, src()),
            Admission::RateLimited
        );
        // The same address on another port is the same source; another address is not.
        let port = SocketAddr::new(src().ip(), 1);
        assert_eq!(
            admit(&mut checker, &mut rng, now, port),
            Admission::RateLimited
        );
        let other: SocketAddr = "192.0.2.2:51820".parse().unwrap();
        assert_eq!(
            admit(&mut checker, &mut rng, now, other),
            Admission::ReplyWithCookie
        );
        let later = now + Duration::from_millis(50);
        assert_eq!(
            admit(&mut checker, &mut rng, later, src()),
            Admission::ReplyWithCookie
        );
        assert_eq!(
            admit(&mut checker, &mut rng, later, src()),
            Admission::RateLimited
        );
        // Not under load nothing is limited, and a valid MAC2 is never held back by it.
        assert_eq!(
            checker.admit(later, &mut rng, &msg, src(), false),
            Admission::Process
        );
        let mut state = CookieState::new(&RESPONDER);
        state.add_macs(later, &mut msg);
        let mut reply = [0u8; COOKIE_REPLY_LEN];
        checker.create_reply(later, &mut rng, &msg, 1, src(), &mut reply);
        state
            .consume_reply(later, &CookieReply::new_checked(&reply[..]).unwrap())
            .unwrap();
        state.add_macs(later, &mut msg);
        assert_eq!(
            checker.admit(later, &mut rng, &msg, src(), true),
            Admission::Process
        );
    }
}
