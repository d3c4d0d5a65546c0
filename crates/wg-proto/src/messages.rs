//! The four WireGuard wire formats (whitepaper §5.4), as zero-copy views over byte buffers.
//!
//! Each message is a `Packet<T: AsRef<[u8]>>` in the style of smoltcp's `wire` module:
//! `new_unchecked` wraps any buffer, `new_checked` also verifies the length and the 4-byte
//! little-endian type word (type byte plus three reserved bytes that must be zero, which is
//! how the kernel and wireguard-go read it), and getters/setters read and write fields at the
//! offsets in the private `field` module. Integers are little-endian on the wire. This module
//! knows nothing about cryptography: the opaque fields are plain byte slices.

use core::fmt;

/// Size of a handshake initiation message (type 1).
pub const HANDSHAKE_INITIATION_LEN: usize = 148;
/// Size of a handshake response message (type 2).
pub const HANDSHAKE_RESPONSE_LEN: usize = 92;
/// Size of a cookie reply message (type 3).
pub const COOKIE_REPLY_LEN: usize = 64;
/// Size of the transport data header (type, reserved, receiver index, counter).
pub const TRANSPORT_HEADER_LEN: usize = 16;
/// Size of a Poly1305 authentication tag.
pub const TAG_LEN: usize = 16;
/// Smallest valid transport data message: a header and the tag of an empty (keepalive) payload.
pub const TRANSPORT_MIN_LEN: usize = TRANSPORT_HEADER_LEN + TAG_LEN;
/// Size of a MAC1 or MAC2 field (keyed BLAKE2s-128).
pub const MAC_LEN: usize = 16;
/// Size of a cookie (and of the plaintext of `encrypted_cookie`).
pub const COOKIE_LEN: usize = 16;
/// Size of the XChaCha20 nonce in a cookie reply.
pub const COOKIE_NONCE_LEN: usize = 24;
/// Size of a TAI64N timestamp.
pub const TIMESTAMP_LEN: usize = 12;
/// Size of a Curve25519 public key on the wire.
pub const KEY_LEN: usize = 32;

/// The message type, the first byte of every message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum MessageType {
    /// `HandshakeInitiation`, type 1.
    HandshakeInitiation = 1,
    /// `HandshakeResponse`, type 2.
    HandshakeResponse = 2,
    /// `CookieReply`, type 3.
    CookieReply = 3,
    /// `TransportData`, type 4.
    TransportData = 4,
}

impl MessageType {
    /// Classifies a datagram by its type word and length, as the receive path does before any
    /// cryptography: handshake messages must have their exact size, transport data at least
    /// [`TRANSPORT_MIN_LEN`]. Returns `None` for anything else (which the caller drops).
    pub fn classify(buf: &[u8]) -> Option<MessageType> {
        let word = u32::from_le_bytes(buf.get(..4)?.try_into().ok()?);
        let (ty, ok) = match word {
            1 => (
                MessageType::HandshakeInitiation,
                buf.len() == HANDSHAKE_INITIATION_LEN,
            ),
            2 => (
                MessageType::HandshakeResponse,
                buf.len() == HANDSHAKE_RESPONSE_LEN,
            ),
            3 => (MessageType::CookieReply, buf.len() == COOKIE_REPLY_LEN),
            4 => (MessageType::TransportData, buf.len() >= TRANSPORT_MIN_LEN),
            _ => return None,
        };
        ok.then_some(ty)
    }
}

/// A buffer that is too short, too long or carries the wrong type word for the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The buffer length does not fit the message.
    #[error("truncated or oversized message")]
    Length,
    /// The type byte is wrong or a reserved byte is not zero.
    #[error("unexpected message type")]
    Type,
}

mod field {
    pub(crate) type Field = core::ops::Range<usize>;

    /// Type byte and three reserved zero bytes, read together as a little-endian u32.
    pub(crate) const TYPE_WORD: Field = 0..4;

    pub(crate) const INIT_SENDER: Field = 4..8;
    pub(crate) const INIT_EPHEMERAL: Field = 8..40;
    pub(crate) const INIT_STATIC: Field = 40..88;
    pub(crate) const INIT_TIMESTAMP: Field = 88..116;
    pub(crate) const INIT_MAC1: Field = 116..132;
    pub(crate) const INIT_MAC2: Field = 132..148;

    pub(crate) const RESP_SENDER: Field = 4..8;
    pub(crate) const RESP_RECEIVER: Field = 8..12;
    pub(crate) const RESP_EPHEMERAL: Field = 12..44;
    pub(crate) const RESP_EMPTY: Field = 44..60;
    pub(crate) const RESP_MAC1: Field = 60..76;
    pub(crate) const RESP_MAC2: Field = 76..92;

    pub(crate) const COOKIE_RECEIVER: Field = 4..8;
    pub(crate) const COOKIE_NONCE: Field = 8..32;
    pub(crate) const COOKIE_ENCRYPTED: Field = 32..64;

    pub(crate) const DATA_RECEIVER: Field = 4..8;
    pub(crate) const DATA_COUNTER: Field = 8..16;
    pub(crate) const DATA_PAYLOAD: core::ops::RangeFrom<usize> = 16..;
}

fn read_u32(buf: &[u8], f: field::Field) -> u32 {
    // Every `field` range used with this helper is exactly four bytes long.
    u32::from_le_bytes(buf[f].try_into().expect("4-byte field"))
}

fn check(buf: &[u8], ty: MessageType, len_ok: bool) -> Result<(), WireError> {
    if !len_ok {
        return Err(WireError::Length);
    }
    if read_u32(buf, field::TYPE_WORD) != ty as u32 {
        return Err(WireError::Type);
    }
    Ok(())
}

/// Generates the shared parts of a fixed-size message view.
macro_rules! fixed_message {
    ($name:ident, $ty:expr, $len:expr) => {
        impl<T: AsRef<[u8]>> $name<T> {
            /// Wraps a buffer without checking it; accessors panic if it is too short.
            pub const fn new_unchecked(buffer: T) -> Self {
                $name { buffer }
            }

            /// Wraps a buffer after checking its exact length and type word.
            pub fn new_checked(buffer: T) -> Result<Self, WireError> {
                let buf = buffer.as_ref();
                check(buf, $ty, buf.len() == $len)?;
                Ok($name { buffer })
            }

            /// The underlying buffer.
            pub fn into_inner(self) -> T {
                self.buffer
            }

            /// The whole message as bytes.
            pub fn as_bytes(&self) -> &[u8] {
                self.buffer.as_ref()
            }
        }

        impl<T: AsRef<[u8]> + AsMut<[u8]>> $name<T> {
            /// Writes the type byte and zeroes the reserved bytes.
            pub fn set_message_type(&mut self) {
                let word = ($ty as u32).to_le_bytes();
                self.buffer.as_mut()[field::TYPE_WORD].copy_from_slice(&word);
            }
        }

        impl<T: AsRef<[u8]>> fmt::Debug for $name<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(
                    f,
                    "{}({} bytes)",
                    stringify!($name),
                    self.buffer.as_ref().len()
                )
            }
        }
    };
}

/// Generates a getter returning a byte slice and a mutable getter for it.
macro_rules! bytes_field {
    (mut $get_mut:ident, $field:expr, $doc:literal) => {
        #[doc = $doc]
        pub fn $get_mut(&mut self) -> &mut [u8] {
            &mut self.buffer.as_mut()[$field]
        }
    };
    ($get:ident, $field:expr, $doc:literal) => {
        #[doc = $doc]
        pub fn $get(&self) -> &[u8] {
            &self.buffer.as_ref()[$field]
        }
    };
}

/// A handshake initiation: `type=1, reserved, sender, ephemeral, static, timestamp, mac1, mac2`.
pub struct HandshakeInitiation<T: AsRef<[u8]>> {
    buffer: T,
}
fixed_message!(
    HandshakeInitiation,
    MessageType::HandshakeInitiation,
    HANDSHAKE_INITIATION_LEN
);

impl<T: AsRef<[u8]>> HandshakeInitiation<T> {
    /// The initiator's session index `I_i`.
    pub fn sender_index(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::INIT_SENDER)
    }
    bytes_field!(
        ephemeral,
        field::INIT_EPHEMERAL,
        "The unencrypted ephemeral `E_i^pub`."
    );
    bytes_field!(
        encrypted_static,
        field::INIT_STATIC,
        "`AEAD(k, 0, S_i^pub, H_i)`, 48 bytes."
    );
    bytes_field!(
        encrypted_timestamp,
        field::INIT_TIMESTAMP,
        "`AEAD(k, 0, TAI64N, H_i)`."
    );
    bytes_field!(mac1, field::INIT_MAC1, "MAC1 over the bytes before it.");
    bytes_field!(
        mac2,
        field::INIT_MAC2,
        "MAC2 over the bytes before it, or zeros."
    );

    /// The bytes that MAC1 covers: everything before the `mac1` field.
    pub fn mac1_covered(&self) -> &[u8] {
        &self.buffer.as_ref()[..field::INIT_MAC1.start]
    }
    /// The bytes that MAC2 covers: everything before the `mac2` field (including MAC1).
    pub fn mac2_covered(&self) -> &[u8] {
        &self.buffer.as_ref()[..field::INIT_MAC2.start]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> HandshakeInitiation<T> {
    /// Sets the initiator's session index.
    pub fn set_sender_index(&mut self, index: u32) {
        self.buffer.as_mut()[field::INIT_SENDER].copy_from_slice(&index.to_le_bytes());
    }
    bytes_field!(
        mut ephemeral_mut,
        field::INIT_EPHEMERAL,
        "Mutable `ephemeral`."
    );
    bytes_field!(
        mut encrypted_static_mut,
        field::INIT_STATIC,
        "Mutable `static`."
    );
    bytes_field!(
        mut encrypted_timestamp_mut,
        field::INIT_TIMESTAMP,
        "Mutable `timestamp`."
    );
    bytes_field!(mut mac1_mut, field::INIT_MAC1, "Mutable `mac1`.");
    bytes_field!(mut mac2_mut, field::INIT_MAC2, "Mutable `mac2`.");
}

/// A handshake response: `type=2, reserved, sender, receiver, ephemeral, empty, mac1, mac2`.
pub struct HandshakeResponse<T: AsRef<[u8]>> {
    buffer: T,
}
fixed_message!(
    HandshakeResponse,
    MessageType::HandshakeResponse,
    HANDSHAKE_RESPONSE_LEN
);

impl<T: AsRef<[u8]>> HandshakeResponse<T> {
    /// The responder's session index `I_r`.
    pub fn sender_index(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::RESP_SENDER)
    }
    /// The initiator's session index `I_i`, echoed back.
    pub fn receiver_index(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::RESP_RECEIVER)
    }
    bytes_field!(
        ephemeral,
        field::RESP_EPHEMERAL,
        "The unencrypted ephemeral `E_r^pub`."
    );
    bytes_field!(
        encrypted_nothing,
        field::RESP_EMPTY,
        "`AEAD(k, 0, ε, H_r)`: a bare tag."
    );
    bytes_field!(mac1, field::RESP_MAC1, "MAC1 over the bytes before it.");
    bytes_field!(
        mac2,
        field::RESP_MAC2,
        "MAC2 over the bytes before it, or zeros."
    );

    /// The bytes that MAC1 covers: everything before the `mac1` field.
    pub fn mac1_covered(&self) -> &[u8] {
        &self.buffer.as_ref()[..field::RESP_MAC1.start]
    }
    /// The bytes that MAC2 covers: everything before the `mac2` field (including MAC1).
    pub fn mac2_covered(&self) -> &[u8] {
        &self.buffer.as_ref()[..field::RESP_MAC2.start]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> HandshakeResponse<T> {
    /// Sets the responder's session index.
    pub fn set_sender_index(&mut self, index: u32) {
        self.buffer.as_mut()[field::RESP_SENDER].copy_from_slice(&index.to_le_bytes());
    }
    /// Sets the initiator's session index being answered.
    pub fn set_receiver_index(&mut self, index: u32) {
        self.buffer.as_mut()[field::RESP_RECEIVER].copy_from_slice(&index.to_le_bytes());
    }
    bytes_field!(
        mut ephemeral_mut,
        field::RESP_EPHEMERAL,
        "Mutable `ephemeral`."
    );
    bytes_field!(
        mut encrypted_nothing_mut,
        field::RESP_EMPTY,
        "Mutable `empty`."
    );
    bytes_field!(mut mac1_mut, field::RESP_MAC1, "Mutable `mac1`.");
    bytes_field!(mut mac2_mut, field::RESP_MAC2, "Mutable `mac2`.");
}

/// A cookie reply: `type=3, reserved, receiver, nonce, encrypted_cookie`.
pub struct CookieReply<T: AsRef<[u8]>> {
    buffer: T,
}
fixed_message!(CookieReply, MessageType::CookieReply, COOKIE_REPLY_LEN);

impl<T: AsRef<[u8]>> CookieReply<T> {
    /// The sender index of the handshake message this reply answers.
    pub fn receiver_index(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::COOKIE_RECEIVER)
    }
    bytes_field!(
        nonce,
        field::COOKIE_NONCE,
        "The random 24-byte XChaCha20 nonce."
    );
    bytes_field!(
        encrypted_cookie,
        field::COOKIE_ENCRYPTED,
        "`XAEAD(key, nonce, τ, mac1)`."
    );
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> CookieReply<T> {
    /// Sets the receiver index.
    pub fn set_receiver_index(&mut self, index: u32) {
        self.buffer.as_mut()[field::COOKIE_RECEIVER].copy_from_slice(&index.to_le_bytes());
    }
    bytes_field!(mut nonce_mut, field::COOKIE_NONCE, "Mutable `nonce`.");
    bytes_field!(
        mut encrypted_cookie_mut,
        field::COOKIE_ENCRYPTED,
        "Mutable `encrypted_cookie`."
    );
}

/// A transport data message: `type=4, reserved, receiver, counter, encrypted_packet`.
pub struct TransportData<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> fmt::Debug for TransportData<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TransportData({} bytes)", self.buffer.as_ref().len())
    }
}

impl<T: AsRef<[u8]>> TransportData<T> {
    /// Wraps a buffer without checking it; accessors panic if it is too short.
    pub const fn new_unchecked(buffer: T) -> Self {
        TransportData { buffer }
    }

    /// Wraps a buffer after checking the type word and that it holds at least a header and a
    /// tag.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let buf = buffer.as_ref();
        check(
            buf,
            MessageType::TransportData,
            buf.len() >= TRANSPORT_MIN_LEN,
        )?;
        Ok(TransportData { buffer })
    }

    /// The receiver's session index.
    pub fn receiver_index(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::DATA_RECEIVER)
    }

    /// The 64-bit nonce counter.
    pub fn counter(&self) -> u64 {
        // The counter field is exactly eight bytes.
        u64::from_le_bytes(
            self.buffer.as_ref()[field::DATA_COUNTER]
                .try_into()
                .expect("8 bytes"),
        )
    }

    /// The encrypted, padded inner packet followed by its tag.
    pub fn encrypted_packet(&self) -> &[u8] {
        &self.buffer.as_ref()[field::DATA_PAYLOAD]
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TransportData<T> {
    /// Writes the type byte and zeroes the reserved bytes.
    pub fn set_message_type(&mut self) {
        let word = (MessageType::TransportData as u32).to_le_bytes();
        self.buffer.as_mut()[field::TYPE_WORD].copy_from_slice(&word);
    }
    /// Sets the receiver index.
    pub fn set_receiver_index(&mut self, index: u32) {
        self.buffer.as_mut()[field::DATA_RECEIVER].copy_from_slice(&index.to_le_bytes());
    }
    /// Sets the counter.
    pub fn set_counter(&mut self, counter: u64) {
        self.buffer.as_mut()[field::DATA_COUNTER].copy_from_slice(&counter.to_le_bytes());
    }
    /// Mutable access to the encrypted packet and tag.
    pub fn encrypted_packet_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::DATA_PAYLOAD]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A transport message: receiver 0x04030201, counter 0x0102, 16 bytes of "ciphertext".
    static TRANSPORT_BYTES: [u8; 32] = [
        0x04, 0x00, 0x00, 0x00, 0x01, 0x02, 0x03, 0x04, 0x02, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa,
        0xaa, 0xaa,
    ];

    #[test]
    fn test_sizes_match_field_layout() {
        assert_eq!(field::INIT_MAC2.end, HANDSHAKE_INITIATION_LEN);
        assert_eq!(field::RESP_MAC2.end, HANDSHAKE_RESPONSE_LEN);
        assert_eq!(field::COOKIE_ENCRYPTED.end, COOKIE_REPLY_LEN);
        assert_eq!(field::DATA_PAYLOAD.start, TRANSPORT_HEADER_LEN);
        assert_eq!(field::INIT_STATIC.len(), KEY_LEN + TAG_LEN);
        assert_eq!(field::INIT_TIMESTAMP.len(), TIMESTAMP_LEN + TAG_LEN);
        assert_eq!(field::COOKIE_ENCRYPTED.len(), COOKIE_LEN + TAG_LEN);
    }

    #[test]
    fn test_parse() {
        let packet = TransportData::new_checked(&TRANSPORT_BYTES[..]).unwrap();
        assert_eq!(packet.receiver_index(), 0x0403_0201);
        assert_eq!(packet.counter(), 0x0102);
        assert_eq!(packet.encrypted_packet(), &[0xaa; 16]);
        assert_eq!(
            MessageType::classify(&TRANSPORT_BYTES),
            Some(MessageType::TransportData)
        );
    }

    #[test]
    fn test_emit() {
        let mut bytes = [0xffu8; 32];
        let mut packet = TransportData::new_unchecked(&mut bytes[..]);
        packet.set_message_type();
        packet.set_receiver_index(0x0403_0201);
        packet.set_counter(0x0102);
        packet.encrypted_packet_mut().fill(0xaa);
        assert_eq!(bytes, TRANSPORT_BYTES);
    }

    #[test]
    fn test_reserved_bytes_must_be_zero() {
        let mut bytes = TRANSPORT_BYTES;
        bytes[2] = 1;
        assert_eq!(
            TransportData::new_checked(&bytes[..]).unwrap_err(),
            WireError::Type
        );
        assert_eq!(MessageType::classify(&bytes), None);
    }

    #[test]
    fn test_lengths() {
        assert_eq!(
            TransportData::new_checked(&TRANSPORT_BYTES[..31]).unwrap_err(),
            WireError::Length
        );
        let mut init = [0u8; HANDSHAKE_INITIATION_LEN + 1];
        init[0] = 1;
        assert!(HandshakeInitiation::new_checked(&init[..]).is_err());
        assert!(HandshakeInitiation::new_checked(&init[..HANDSHAKE_INITIATION_LEN]).is_ok());
        assert_eq!(MessageType::classify(&init), None);
        assert_eq!(
            MessageType::classify(&init[..HANDSHAKE_INITIATION_LEN]),
            Some(MessageType::HandshakeInitiation)
        );
        assert_eq!(MessageType::classify(&[]), None);
        assert_eq!(MessageType::classify(&[5, 0, 0, 0]), None);
    }

    #[test]
    fn test_mac_coverage() {
        let mut init = [0u8; HANDSHAKE_INITIATION_LEN];
        let msg = HandshakeInitiation::new_unchecked(&mut init[..]);
        assert_eq!(msg.mac1_covered().len(), 116);
        assert_eq!(msg.mac2_covered().len(), 132);
        let mut resp = [0u8; HANDSHAKE_RESPONSE_LEN];
        let msg = HandshakeResponse::new_unchecked(&mut resp[..]);
        assert_eq!(msg.mac1_covered().len(), 60);
        assert_eq!(msg.mac2_covered().len(), 76);
    }

    #[test]
    fn test_deconstruct_response() {
        let mut bytes = [0u8; HANDSHAKE_RESPONSE_LEN];
        let mut msg = HandshakeResponse::new_unchecked(&mut bytes[..]);
        msg.set_message_type();
        msg.set_sender_index(7);
        msg.set_receiver_index(9);
        msg.ephemeral_mut().fill(1);
        msg.encrypted_nothing_mut().fill(2);
        msg.mac1_mut().fill(3);
        msg.mac2_mut().fill(4);
        let msg = HandshakeResponse::new_checked(&bytes[..]).unwrap();
        assert_eq!((msg.sender_index(), msg.receiver_index()), (7, 9));
        assert_eq!(&bytes[..12], &[2, 0, 0, 0, 7, 0, 0, 0, 9, 0, 0, 0]);
        assert_eq!(msg.ephemeral(), &[1; 32]);
        assert_eq!(msg.encrypted_nothing(), &[2; 16]);
        assert_eq!(msg.mac1(), &[3; 16]);
        assert_eq!(msg.mac2(), &[4; 16]);
    }
}
