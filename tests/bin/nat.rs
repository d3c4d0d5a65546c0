//! `wg-tests-nat`: the probe tool of the NAT-traversal tests, run inside sandboxes.
//!
//! ```text
//! wg-tests-nat agent BIND [--reflect]    UDP endpoint driven by stdin
//! wg-tests-nat capture IFACE MARKER END  AF_PACKET reader: look for MARKER until END is seen
//! wg-tests-nat tcp-send DEST SEED STOP   TCP: paced seeded stream to DEST until file STOP exists
//! wg-tests-nat flood BIND DEST COUNT KIND [KEY]  UDP: COUNT forged datagrams to DEST
//! wg-tests-nat replay BIND DEST FILE     UDP: send each hex line of FILE to DEST once
//! ```
//!
//! * `agent` binds one UDP socket to BIND, prints `listening`, then prints `FROM TEXT` for every
//!   datagram it receives (FROM = `ip:port` as the socket sees it: after any NAT). It reads
//!   commands from stdin, one a line: `send DEST TEXT` sends TEXT to DEST from the socket.
//!   With `--reflect` it also answers every datagram with `seen FROM` (a STUN-like mapping
//!   reflector). It exits when stdin closes.
//! * `capture` opens an `AF_PACKET` socket on IFACE (every protocol, both directions), prints
//!   `listening`, and reads frames until one contains END; it then prints
//!   `frames N bytes B udp U foreign F marker M`: frames and bytes seen, IPv4 UDP frames among
//!   them, UDP datagrams that are not shaped like WireGuard messages, and frames containing
//!   MARKER (END's frame not counted), then `drops D`: frames the kernel could not queue for
//!   the capture (its buffer is forced to 64 MiB, so normally none).
//! * `tcp-send` connects to DEST and streams ChaCha8(SEED) bytes in 16 KiB writes with a short
//!   pause between them (so a transfer spans events the test causes meanwhile) until the file
//!   STOP exists, then ends like `wg-tests-xfer send`: `BYTES BLAKE2S-HEX`.
//!
//! * `flood` sends COUNT datagrams from BIND to DEST, then prints `sent COUNT`. KIND: `random`
//!   (random bytes), `to-relay` / `peer` (the control envelope of wg-nat: magic, kind, sender
//!   public key KEY (hex; random without), a current counter, and a garbage "sealed" payload:
//!   forged, they fail authentication), `data` (relayed-data envelope with random session ids).
//! * `capture … --save FILE` also writes every UDP payload that starts with the control magic
//!   (hex, one a line) to FILE, for `replay`.
//!
//! Failures go to stderr, exit 1.

use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use blake2::{Blake2s256, Digest};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["agent", bind] => agent(bind, false),
        ["agent", bind, "--reflect"] => agent(bind, true),
        ["capture", iface, marker, end] => capture(iface, marker.as_bytes(), end.as_bytes(), None),
        ["capture", iface, marker, end, "--save", file] => capture(
            iface,
            marker.as_bytes(),
            end.as_bytes(),
            Some(Path::new(file)),
        ),
        ["flood", bind, dest, count, kind] => flood(bind, dest, count, kind, None),
        ["flood", bind, dest, count, kind, key] => flood(bind, dest, count, kind, Some(key)),
        ["replay", bind, dest, file] => replay(bind, dest, Path::new(file)),
        ["tcp-send", dest, seed, stop] => tcp_send(dest, seed, Path::new(stop)),
        _ => Err(
            "usage: wg-tests-nat agent BIND [--reflect] | capture IFACE MARKER END | \
                  tcp-send DEST SEED STOPFILE"
                .to_owned(),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wg-tests-nat: {e}");
            ExitCode::FAILURE
        }
    }
}

fn addr(s: &str) -> Result<SocketAddr, String> {
    s.parse().map_err(|e| format!("bad address `{s}': {e}"))
}

fn say(line: &str) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(|e| format!("stdout: {e}"))
}

fn agent(bind: &str, reflect: bool) -> Result<(), String> {
    let socket = UdpSocket::bind(addr(bind)?).map_err(|e| format!("bind {bind}: {e}"))?;
    let receiver = socket.try_clone().map_err(|e| format!("dup socket: {e}"))?;
    say("listening")?;
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        loop {
            let Ok((n, from)) = receiver.recv_from(&mut buf) else {
                // ICMP errors (port unreachable) may surface on some kernels; keep going.
                continue;
            };
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if say(&format!("{from} {text}")).is_err() {
                std::process::exit(1);
            }
            if reflect {
                let _ = receiver.send_to(format!("seen {from}").as_bytes(), from);
            }
        }
    });
    for line in std::io::stdin().lock().lines() {
        let line = line.map_err(|e| format!("stdin: {e}"))?;
        let mut words = line.splitn(3, ' ');
        match (words.next(), words.next(), words.next()) {
            (Some("send"), Some(dest), Some(text)) => {
                socket
                    .send_to(text.as_bytes(), addr(dest)?)
                    .map_err(|e| format!("send to {dest}: {e}"))?;
            }
            _ => return Err(format!("bad command `{line}'")),
        }
    }
    Ok(())
}

fn capture(iface: &str, marker: &[u8], end: &[u8], save: Option<&Path>) -> Result<(), String> {
    let mut saved = match save {
        Some(path) => {
            Some(std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?)
        }
        None => None,
    };
    let os = |what: &str| format!("{what}: {}", std::io::Error::last_os_error());
    let proto = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain socket(2) call; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto)) };
    if fd < 0 {
        return Err(os("socket(AF_PACKET)"));
    }
    let name = std::ffi::CString::new(iface).map_err(|_| "bad IFACE".to_owned())?;
    // SAFETY: a NUL-terminated name.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(os(&format!("interface {iface}")));
    }
    // SAFETY: sockaddr_ll is plain data; zeroed is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = index as i32;
    // SAFETY: binds fd to a valid sockaddr_ll of the given size.
    let rc = unsafe {
        libc::bind(
            fd,
            std::ptr::addr_of!(sll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if rc != 0 {
        return Err(os("bind(AF_PACKET)"));
    }
    // A large buffer (root may force it past rmem_max): a capture that falls behind a fast
    // transfer must not lose frames; the drops it still has are reported.
    let size: libc::c_int = 64 << 20;
    // SAFETY: setsockopt with a valid int option value of the given size.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            std::ptr::addr_of!(size).cast(),
            std::mem::size_of::<libc::c_int>() as u32,
        );
    }
    say("listening")?;
    let (mut frames, mut bytes, mut udp, mut foreign, mut marked) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut buf = vec![0u8; 65536];
    loop {
        // SAFETY: reads into a buffer of the given length.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(os("recv"));
        }
        let frame = &buf[..n as usize];
        if contains(frame, end) {
            break;
        }
        frames += 1;
        bytes += frame.len() as u64;
        // Ethernet, IPv4 (0x0800), protocol UDP (17).
        if frame.len() > 23 && frame[12..14] == [0x08, 0x00] && frame[23] == 17 {
            udp += 1;
            let ihl = usize::from(frame[14] & 0x0f) * 4;
            let payload = frame.get(14 + ihl + 8..).unwrap_or(&[]);
            if !is_wireguard(payload) {
                foreign += 1;
            }
            if let (Some(file), true) = (&mut saved, wg_nat::wire::is_control(payload)) {
                writeln!(file, "{}", hex(payload)).map_err(|e| format!("save: {e}"))?;
            }
        }
        if contains(frame, marker) {
            marked += 1;
        }
    }
    // SAFETY: tpacket_stats is plain data; getsockopt fills at most `len` bytes of it.
    let mut stats: libc::tpacket_stats = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tpacket_stats>() as libc::socklen_t;
    // SAFETY: as above, with a valid pointer and length.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            std::ptr::addr_of_mut!(stats).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(os("getsockopt(PACKET_STATISTICS)"));
    }
    say(&format!(
        "frames {frames} bytes {bytes} udp {udp} foreign {foreign} marker {marked} drops {}",
        stats.tp_drops
    ))
}

/// Whether a UDP payload has the shape of a WireGuard message: type 1–4, three zero bytes, and
/// the type's length (a data message: at least 32 bytes).
fn is_wireguard(p: &[u8]) -> bool {
    if p.len() < 4 || p[1..4] != [0, 0, 0] {
        return false;
    }
    match p[0] {
        1 => p.len() == 148,
        2 => p.len() == 92,
        3 => p.len() == 64,
        // Padding to 16 stops at the MTU, so a full-size packet need not be a multiple of 16.
        4 => p.len() >= 32,
        _ => false,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Result<Vec<u8>, String> {
    let text = text.trim();
    if text.len() % 2 != 0 {
        return Err(format!("odd hex `{text}'"));
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).map_err(|e| format!("hex: {e}")))
        .collect()
}

fn udp(bind: &str) -> Result<UdpSocket, String> {
    UdpSocket::bind(addr(bind)?).map_err(|e| format!("bind {bind}: {e}"))
}

fn flood(bind: &str, dest: &str, count: &str, kind: &str, key: Option<&str>) -> Result<(), String> {
    use wg_nat::wire;
    let count: u64 = count.parse().map_err(|e| format!("bad COUNT: {e}"))?;
    let dest = addr(dest)?;
    let socket = udp(bind)?;
    let key = key.map(unhex).transpose()?;
    let mut rng = ChaCha8Rng::seed_from_u64(count);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_nanos() as u64;
    for i in 0..count {
        let mut garbage = [0u8; 96];
        rng.fill_bytes(&mut garbage);
        let mut msg = Vec::with_capacity(160);
        match kind {
            "random" => msg.extend_from_slice(&garbage),
            "to-relay" | "peer" => {
                msg.extend_from_slice(&wire::MAGIC);
                msg.push(if kind == "peer" {
                    wire::KIND_PEER
                } else {
                    wire::KIND_TO_RELAY
                });
                match &key {
                    Some(k) => msg.extend_from_slice(k),
                    None => msg.extend_from_slice(&garbage[..32]),
                }
                msg.extend_from_slice(&(now + i).to_le_bytes());
                msg.extend_from_slice(&garbage[32..]);
            }
            "data" => {
                msg.extend_from_slice(&wire::MAGIC);
                msg.push(wire::KIND_DATA);
                msg.extend_from_slice(&garbage[..8]);
                // A WireGuard-shaped data message inside.
                msg.extend_from_slice(&[4, 0, 0, 0]);
                msg.extend_from_slice(&garbage[8..72]);
            }
            _ => return Err(format!("bad KIND `{kind}'")),
        }
        socket
            .send_to(&msg, dest)
            .map_err(|e| format!("send to {dest}: {e}"))?;
    }
    say(&format!("sent {count}"))
}

fn replay(bind: &str, dest: &str, file: &Path) -> Result<(), String> {
    let dest = addr(dest)?;
    let socket = udp(bind)?;
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let mut n = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        socket
            .send_to(&unhex(line)?, dest)
            .map_err(|e| format!("send to {dest}: {e}"))?;
        n += 1;
    }
    say(&format!("sent {n}"))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

fn tcp_send(dest: &str, seed: &str, stop: &Path) -> Result<(), String> {
    const CHUNK: usize = 16 * 1024;
    let seed: u64 = seed.parse().map_err(|e| format!("bad SEED: {e}"))?;
    let mut conn = TcpStream::connect(addr(dest)?).map_err(|e| format!("connect {dest}: {e}"))?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut hasher = Blake2s256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    while !stop.exists() {
        rng.fill_bytes(&mut buf);
        hasher.update(&buf);
        conn.write_all(&buf)
            .map_err(|e| format!("write after {total} bytes: {e}"))?;
        total += CHUNK as u64;
        std::thread::sleep(Duration::from_millis(5));
    }
    conn.shutdown(std::net::Shutdown::Write)
        .map_err(|e| format!("shutdown: {e}"))?;
    let _ = conn.read(&mut buf);
    let digest: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    say(&format!("{total} {digest}"))
}
