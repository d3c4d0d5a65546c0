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
            if run_reply(&rx[..len.min(rx.len())], self.port, self.seq, &mut each)? {
                return Ok(());
            }
        }
    }
}

/// Runs the messages of one received datagram of a reply to the request numbered `seq` on the
/// socket bound to `port`, as libmnl's `mnl_cb_run2` with wireguard-tools' control callbacks;
/// `Ok(true)` once the reply is complete.
fn run_reply(
    mut buf: &[u8],
    port: u32,
    seq: u32,
    each: &mut impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<bool> {
    let errno = |code: i32| Err(io::Error::from_raw_os_error(code));
    while buf.len() >= NLMSG_HDRLEN {
        let field =
            |at: usize| u32::from_ne_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
        let len = field(0) as usize;
        let kind = u16::from_ne_bytes([buf[4], buf[5]]);
        let flags = u16::from_ne_bytes([buf[6], buf[7]]);
        let (their_seq, their_port) = (field(8), field(12));
        if len < NLMSG_HDRLEN || len > buf.len() {
            break;
        }
        if their_port != 0 && their_port != port {
            return errno(libc::ESRCH);
        }
        if their_seq != 0 && their_seq != seq {
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
                Some(code) if flags & NLM_F_MULTI != 0 && len == NLMSG_HDRLEN + 4 && code != 0 => {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A netlink message: header fields and payload.
    fn message(kind: u16, flags: u16, seq: u32, port: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&((NLMSG_HDRLEN + payload.len()) as u32).to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(&flags.to_ne_bytes());
        out.extend_from_slice(&seq.to_ne_bytes());
        out.extend_from_slice(&port.to_ne_bytes());
        out.extend_from_slice(payload);
        out.resize((out.len() + 3) & !3, 0);
        out
    }

    fn run(buf: &[u8]) -> (io::Result<bool>, Vec<Vec<u8>>) {
        let mut seen = Vec::new();
        let result = run_reply(buf, 77, 5, &mut |payload: &[u8]| {
            seen.push(payload.to_vec());
            Ok(())
        });
        (result, seen)
    }

    fn errno(result: io::Result<bool>) -> Option<i32> {
        result.err().and_then(|e| e.raw_os_error())
    }

    #[test]
    fn test_dump_then_done() {
        let multi = NLM_F_MULTI;
        let mut buf = message(0x1d, multi, 5, 77, &[1, 2, 3]);
        buf.extend(message(0x1d, multi, 5, 77, &[4; 8]));
        let (result, seen) = run(&buf);
        assert!(!result.unwrap(), "no DONE yet: keep reading");
        assert_eq!(seen, vec![vec![1, 2, 3], vec![4; 8]]);
        buf.extend(message(NLMSG_DONE, multi, 5, 77, &0i32.to_ne_bytes()));
        assert!(run(&buf).0.unwrap());
        // A dump that fails at its end carries the error in DONE.
        let done = message(NLMSG_DONE, multi, 5, 77, &(-libc::EMSGSIZE).to_ne_bytes());
        assert_eq!(errno(run(&done).0), Some(libc::EMSGSIZE));
    }

    #[test]
    fn test_ack_and_errors() {
        let ack = message(NLMSG_ERROR, 0, 5, 77, &[0; 20]);
        assert!(run(&ack).0.unwrap());
        let mut nack = (-libc::ENODEV).to_ne_bytes().to_vec();
        nack.extend_from_slice(&[0; 16]);
        assert_eq!(
            errno(run(&message(NLMSG_ERROR, 0, 5, 77, &nack)).0),
            Some(libc::ENODEV)
        );
        assert_eq!(
            errno(run(&message(NLMSG_ERROR, 0, 5, 77, &[0; 2])).0),
            Some(libc::EBADMSG)
        );
        // Interrupted dumps, foreign sequence numbers and ports.
        let intr = message(0x1d, NLM_F_MULTI | NLM_F_DUMP_INTR, 5, 77, &[]);
        assert_eq!(errno(run(&intr).0), Some(libc::EINTR));
        assert_eq!(
            errno(run(&message(0x1d, 0, 6, 77, &[])).0),
            Some(libc::EPROTO)
        );
        assert_eq!(
            errno(run(&message(0x1d, 0, 5, 78, &[])).0),
            Some(libc::ESRCH)
        );
        // Zero sequence and port are accepted, as libmnl does; NOOP is skipped.
        let mut buf = message(1, 0, 0, 0, &[]);
        buf.extend(message(0x1d, 0, 0, 0, &[9]));
        let (result, seen) = run(&buf);
        assert!(!result.unwrap());
        assert_eq!(seen, vec![vec![9]]);
        // A truncated message ends the datagram without an error.
        assert!(!run(&message(0x1d, 0, 5, 77, &[1; 8])[..20]).0.unwrap());
    }
}
