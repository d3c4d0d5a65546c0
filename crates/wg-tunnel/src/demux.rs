//! Sharing the tunnel's UDP socket: datagrams that are not WireGuard messages go to another
//! consumer.
//!
//! WireGuard messages are recognised by [`wg_proto::messages::MessageType::classify`]: a type
//! byte of 1 to 4, three zero reserved bytes, and the exact length of that type (or at least
//! the transport header and tag for data). Everything else is *foreign* and is handed, with
//! its source, to a [`ForeignDatagrams`] consumer instead of the protocol; the consumer may in
//! turn queue datagrams to send from the same socket (so its packets leave from the port the
//! peer's NAT has mapped). NAT traversal's control messages will use this: they are built so
//! that `classify` can never mistake them for WireGuard messages, and a stock peer never sees
//! them. Until then the consumer is [`DropForeign`], which drops and counts.

use std::fmt::Debug;
use std::net::SocketAddr;
use std::time::Instant;

use wg_proto::messages::MessageType;
use wg_proto::Transmit;

/// Whether `datagram` has the shape of a WireGuard message (type, reserved bytes, length).
pub fn is_wireguard(datagram: &[u8]) -> bool {
    MessageType::classify(datagram).is_some()
}

/// The consumer of non-WireGuard datagrams received on the tunnel's UDP socket.
pub trait ForeignDatagrams: Debug {
    /// One datagram that is not a WireGuard message, received at `now` from `from`.
    fn on_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]);

    /// Copies the next datagram the consumer wants sent from the tunnel's socket into `buf`;
    /// `None` when there is none. Called whenever the shell flushes its outputs.
    fn poll_transmit(&mut self, buf: &mut [u8]) -> Option<Transmit> {
        let _ = buf;
        None
    }
}

/// The default consumer: drops every foreign datagram and counts it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DropForeign {
    /// Datagrams dropped so far.
    pub dropped: u64,
}

impl ForeignDatagrams for DropForeign {
    fn on_datagram(&mut self, _now: Instant, _from: SocketAddr, _datagram: &[u8]) {
        self.dropped += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_is_wireguard() {
        let mut init = vec![0u8; 148];
        init[0] = 1;
        assert!(is_wireguard(&init));
        init.push(0);
        assert!(!is_wireguard(&init), "wrong length");
        let mut data = vec![0u8; 32];
        data[0] = 4;
        assert!(is_wireguard(&data), "a keepalive");
        data[1] = 1;
        assert!(!is_wireguard(&data), "reserved bytes must be zero");
        for garbage in [&b""[..], b"\x00", b"hello", &[5, 0, 0, 0, 0, 0, 0, 0]] {
            assert!(!is_wireguard(garbage));
        }
    }
}
