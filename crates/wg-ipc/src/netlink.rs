//! A blocking netlink request/response helper shared by the generic-netlink and rtnetlink
//! parts of the kernel backend. The message codecs come from the netlink-packet crates; this
//! module only owns the socket, the sequence of sends and receives, and the error mapping.

use std::io;

use netlink_packet_core::{
    NetlinkDeserializable, NetlinkHeader, NetlinkMessage, NetlinkPayload, NetlinkSerializable,
    NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_sys::{Socket, SocketAddr};

/// Sends one request and collects every inner message of the reply, multipart or not, until
/// `NLMSG_DONE` or the ACK. A netlink error in the reply becomes its errno.
pub(crate) fn request<I>(protocol: isize, payload: I, dump: bool) -> io::Result<Vec<I>>
where
    I: NetlinkSerializable + NetlinkDeserializable,
{
    let mut socket = Socket::new(protocol)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;

    let mut message = NetlinkMessage::new(
        NetlinkHeader::default(),
        NetlinkPayload::InnerMessage(payload),
    );
    message.header.flags = NLM_F_REQUEST | NLM_F_ACK | if dump { NLM_F_DUMP } else { 0 };
    message.header.sequence_number = 1;
    message.finalize();
    let mut tx = vec![0u8; message.buffer_len()];
    message.serialize(&mut tx);
    socket.send(&tx, 0)?;

    let mut replies = Vec::new();
    let mut rx = vec![0u8; 1 << 16];
    loop {
        let len = socket.recv(&mut &mut rx[..], 0)?;
        let mut offset = 0;
        while offset < len {
            let message = NetlinkMessage::<I>::deserialize(&rx[offset..len])
                .map_err(|_| io::Error::from_raw_os_error(libc::EPROTO))?;
            let length = message.header.length as usize;
            match message.payload {
                NetlinkPayload::Done(_) => return Ok(replies),
                NetlinkPayload::Error(e) => match e.code {
                    // An ACK ends a non-dump request; a dump ends with DONE instead.
                    None if !dump => return Ok(replies),
                    None => {}
                    Some(code) => return Err(io::Error::from_raw_os_error(code.get().abs())),
                },
                NetlinkPayload::InnerMessage(inner) => replies.push(inner),
                _ => {}
            }
            if length == 0 {
                break;
            }
            offset += (length + 3) & !3;
        }
    }
}
