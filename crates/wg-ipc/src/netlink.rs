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

/// `NLMSG_NOOP`, `NLMSG_ERROR`, `NLMSG_DONE`, and the first data message type.
const NLMSG_ERROR: u16 = libc::NLMSG_ERROR as u16;
const NLMSG_DONE: u16 = libc::NLMSG_DONE as u16;
const NLMSG_MIN_TYPE: u16 = libc::NLMSG_MIN_TYPE as u16;
/// The size of `struct nlmsghdr`.
const NLMSG_HDRLEN: usize = 16;
/// `NLM_F_MULTI` and `NLM_F_DUMP_INTR`.
const NLM_F_MULTI: u16 = libc::NLM_F_MULTI as u16;
const NLM_F_DUMP_INTR: u16 = 0x10;

/// A netlink socket for messages encoded elsewhere (the generic netlink WireGuard codec), whose
/// replies are run the way libmnl's `mnl_cb_run` runs them for wireguard-tools: sequence and
/// port checked, `NLM_F_DUMP_INTR` reported as `EINTR`, the ACK or `NLMSG_DONE` ending a
/// reply, and a negative status in either becoming its errno.
pub(crate) struct RawSocket {
    socket: Socket,
    port: u32,
    seq: u32,
}

impl RawSocket {
    /// Opens and binds a socket of the netlink `protocol`.
    pub(crate) fn open(protocol: isize) -> io::Result<RawSocket> {
        let mut socket = Socket::new(protocol)?;
        let addr = socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        let seq = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs() as u32)
            .max(1);
        Ok(RawSocket {
            socket,
            port: addr.port_number(),
            seq,
        })
    }

    /// Sends one complete netlink `message` (its sequence number is set here) and passes the
    /// payload (the bytes after `struct nlmsghdr`) of every data message of the reply to
    /// `each`, until the ACK or `NLMSG_DONE`. An error from `each` stops the exchange.
    pub(crate) fn transact(
        &mut self,
        message: &mut [u8],
        mut each: impl FnMut(&[u8]) -> io::Result<()>,
    ) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1).max(1);
        if message.len() < NLMSG_HDRLEN {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        message[8..12].copy_from_slice(&self.seq.to_ne_bytes());
        self.socket.send(message, 0)?;
        let mut rx = vec![0u8; 1 << 16];
        loop {
            let len = self.socket.recv(&mut &mut rx[..], 0)?;
            if self.run(&rx[..len.min(rx.len())], &mut each)? {
                return Ok(());
            }
        }
    }

    /// Runs the messages of one datagram; `Ok(true)` once the reply is complete.
    fn run(
        &self,
        mut buf: &[u8],
        each: &mut impl FnMut(&[u8]) -> io::Result<()>,
    ) -> io::Result<bool> {
        let errno = |code: i32| Err(io::Error::from_raw_os_error(code));
        while buf.len() >= NLMSG_HDRLEN {
            let field =
                |at: usize| u32::from_ne_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
            let len = field(0) as usize;
            let kind = u16::from_ne_bytes([buf[4], buf[5]]);
            let flags = u16::from_ne_bytes([buf[6], buf[7]]);
            let (seq, port) = (field(8), field(12));
            if len < NLMSG_HDRLEN || len > buf.len() {
                break;
            }
            if port != 0 && port != self.port {
                return errno(libc::ESRCH);
            }
            if seq != 0 && seq != self.seq {
                return errno(libc::EPROTO);
            }
            if flags & NLM_F_DUMP_INTR != 0 {
                return errno(libc::EINTR);
            }
            let payload = &buf[NLMSG_HDRLEN..len];
            let status = || {
                payload
                    .get(..4)
                    .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
            };
            match kind {
                k if k >= NLMSG_MIN_TYPE => each(payload)?,
                NLMSG_ERROR => match status() {
                    None => return errno(libc::EBADMSG),
                    Some(0) => return Ok(true),
                    Some(code) => return errno(code.wrapping_abs()),
                },
                NLMSG_DONE => match status() {
                    Some(code)
                        if flags & NLM_F_MULTI != 0 && len == NLMSG_HDRLEN + 4 && code != 0 =>
                    {
                        return errno(code.wrapping_abs())
                    }
                    _ => return Ok(true),
                },
                _ => {}
            }
            buf = buf.get((len + 3) & !3..).unwrap_or(&[]);
        }
        Ok(false)
    }
}
