//! Floods a WireGuard endpoint with handshake initiations from many source addresses, as fast
//! as one thread can send, and counts what comes back.
//!
//! ```text
//! wg-flood TARGET:PORT PUBKEY_BASE64 valid|random SECONDS SRC_IP...
//! ```
//!
//! `valid`: random bodies with a correct MAC1 for the target's public key (they pass the cheap
//! check; under load the target answers with cookie replies, otherwise it spends a
//! Diffie-Hellman on each). `random`: random MAC1 too (dropped after one MAC). One UDP socket
//! per source address (which must be assigned locally), used round-robin; replies are read
//! between sends. `FLOOD_PPS=N` in the environment caps the rate at N datagrams per second
//! (default: no cap). Prints one line: `sent=N seconds=S rate=R replies=M cookie_replies=C`.

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use wg_proto::messages::HANDSHAKE_INITIATION_LEN;
use wg_proto::noise::cookie::CookieState;

fn usage() -> ! {
    eprintln!("usage: wg-flood TARGET:PORT PUBKEY_BASE64 valid|random SECONDS SRC_IP...");
    std::process::exit(2)
}

/// Standard base64 (with padding) of exactly 32 bytes.
fn base64_key(text: &str) -> Option<[u8; 32]> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let text = text.as_bytes();
    if text.len() != 44 || text[43] != b'=' {
        return None;
    }
    let mut bits: u64 = 0;
    let mut nbits = 0;
    let mut out = Vec::with_capacity(33);
    for &c in &text[..43] {
        let v = ALPHABET.iter().position(|&a| a == c)? as u64;
        bits = (bits << 6) | v;
        nbits += 6;
        if nbits >= 8 {
            nbits -= 8;
            out.push((bits >> nbits) as u8);
        }
    }
    out.try_into().ok()
}

/// xorshift64*: plenty for junk bytes.
struct Junk(u64);

impl Junk {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 5 {
        usage();
    }
    let target: SocketAddr = args[0].parse().unwrap_or_else(|_| usage());
    let public = base64_key(&args[1]).unwrap_or_else(|| usage());
    let valid = match args[2].as_str() {
        "valid" => true,
        "random" => false,
        _ => usage(),
    };
    let seconds: f64 = args[3].parse().unwrap_or_else(|_| usage());
    let sockets: Vec<UdpSocket> = args[4..]
        .iter()
        .map(|ip| {
            let s = UdpSocket::bind((
                ip.parse::<std::net::IpAddr>().unwrap_or_else(|_| usage()),
                0,
            ))
            .unwrap_or_else(|e| panic!("bind {ip}: {e}"));
            s.set_nonblocking(true).unwrap();
            s
        })
        .collect();

    let mut macs = CookieState::new(&public);
    let mut junk = Junk(0x9e37_79b9_7f4a_7c15 ^ u64::from(std::process::id()));
    let mut msg = [0u8; HANDSHAKE_INITIATION_LEN];
    let mut reply = [0u8; 256];
    let (mut sent, mut replies, mut cookies, mut send_errors) = (0u64, 0u64, 0u64, 0u64);
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(seconds);
    let mut now = start;
    let pps: f64 = std::env::var("FLOOD_PPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    'outer: loop {
        for socket in &sockets {
            junk.fill(&mut msg);
            msg[..4].copy_from_slice(&1u32.to_le_bytes());
            if valid {
                macs.add_macs(now, &mut msg);
            }
            match socket.send_to(&msg, target) {
                Ok(_) => sent += 1,
                // A full socket buffer (or ENOBUFS) under flood: count and go on.
                Err(e) if e.kind() == ErrorKind::WouldBlock => send_errors += 1,
                Err(_) => send_errors += 1,
            }
            while let Ok((n, _)) = socket.recv_from(&mut reply) {
                replies += 1;
                if n == 64 && reply[..4] == 3u32.to_le_bytes() {
                    cookies += 1;
                }
            }
        }
        now = Instant::now();
        if now >= deadline {
            break 'outer;
        }
        if pps > 0.0 {
            let due = start + Duration::from_secs_f64(sent as f64 / pps);
            if due > now {
                std::thread::sleep(due - now);
            }
        }
    }
    let took = start.elapsed().as_secs_f64();
    println!(
        "sent={sent} seconds={took:.1} rate={:.0} replies={replies} cookie_replies={cookies} send_errors={send_errors}",
        sent as f64 / took
    );
}
