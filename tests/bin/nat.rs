//! `wg-tests-nat`: the probe tool of the NAT-traversal tests, run inside sandboxes.
//!
//! ```text
//! wg-tests-nat agent BIND [--reflect]    UDP endpoint driven by stdin
//! wg-tests-nat capture IFACE MARKER END  AF_PACKET reader: look for MARKER until END is seen
//! wg-tests-nat tcp-send DEST SEED STOP   TCP: paced seeded stream to DEST until file STOP exists
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
//!   MARKER (END's frame not counted).
//! * `tcp-send` connects to DEST and streams ChaCha8(SEED) bytes in 16 KiB writes with a short
//!   pause between them (so a transfer spans events the test causes meanwhile) until the file
//!   STOP exists, then ends like `wg-tests-xfer send`: `BYTES BLAKE2S-HEX`.
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
        ["capture", iface, marker, end] => capture(iface, marker.as_bytes(), end.as_bytes()),
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

fn capture(iface: &str, marker: &[u8], end: &[u8]) -> Result<(), String> {
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
        }
        if contains(frame, marker) {
            marked += 1;
        }
    }
    say(&format!(
        "frames {frames} bytes {bytes} udp {udp} foreign {foreign} marker {marked}"
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
