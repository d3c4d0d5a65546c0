//! The kernel backend's generic-netlink codec, compiled from `wg-ipc`'s own source files:
//! `DumpParser` (the `WG_CMD_GET_DEVICE` dump reader) and `set_messages` are crate-private and
//! pure, so they are included here by path rather than exported for the fuzzer.

#![allow(dead_code, unreachable_pub, clippy::all)]

#[path = "../../crates/wg-ipc/src/kernel/nla.rs"]
mod nla;

#[path = "../../crates/wg-ipc/src/kernel/device.rs"]
mod device;

use wg_config::Device;

/// The generic netlink family id used for the set messages (any value works: it is only
/// copied into the header).
const FAMILY: u16 = 0x1c;
/// `nlmsghdr` (16 bytes) + `genlmsghdr` (4 bytes): the attributes start here.
const HEADERS: usize = 20;

/// See [`crate::netlink`].
pub(crate) fn fuzz(data: &[u8]) {
    let mut parser = device::DumpParser::new();
    let mut rest = data;
    while rest.len() >= 2 {
        let len = usize::from(u16::from_le_bytes([rest[0], rest[1]]));
        let body = &rest[2..];
        let (message, tail) = body.split_at(len.min(body.len()));
        rest = tail;
        if parser.message(message).is_err() {
            return;
        }
    }
    let state = parser.finish();
    round_trip(&state);
}

/// What a set message can carry: the configuration without the counters and handshake time.
fn config_only(device: &Device) -> Device {
    let mut device = device.clone();
    for peer in &mut device.peers {
        peer.rx_bytes = 0;
        peer.tx_bytes = 0;
        peer.last_handshake = None;
    }
    device
}

/// Splits the state into set messages and reads them back.
fn round_trip(state: &Device) {
    let expected = config_only(state);
    for budget in [1024, 4096, 8192] {
        let Ok(messages) = device::set_messages(FAMILY, b"wg0", &expected, budget) else {
            continue;
        };
        let mut parser = device::DumpParser::new();
        for message in &messages {
            assert!(message.len() <= budget, "set message over budget");
            parser
                .message(&message[HEADERS..])
                .expect("our own set message does not parse");
        }
        let back = parser.finish();
        assert_eq!(back.private_key, expected.private_key);
        assert_eq!(back.listen_port, expected.listen_port);
        assert_eq!(back.fwmark, expected.fwmark);
        let keys = |d: &Device| {
            d.peers
                .iter()
                .map(|p| p.public_key.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(keys(&back), keys(&expected));
    }
}
