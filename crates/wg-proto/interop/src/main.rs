//! Interop probe: drives a wg-proto `Tunnel` over a real UDP socket against wireguard-go.
//!
//! This is the I/O shell in miniature (it alone reads the clock). Modes: `active` (we initiate
//! and ping 10.99.0.1 through wireguard-go, expecting the kernel's echo replies), `passive`
//! (wireguard-go initiates and pings us; we answer), `passiveload` (as passive, but we claim to
//! be under load so wireguard-go must consume our cookie reply and retry with MAC2). Exits 0
//! after three ICMP exchanges. Run through `run.sh`, which sets up wireguard-go.
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant, SystemTime};
use wg_proto::{Event, PeerConfig, Tunnel};

fn csum(data: &[u8]) -> u16 {
    let mut s: u32 = 0;
    for c in data.chunks(2) {
        s += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

fn ping(seq: u16) -> Vec<u8> {
    let mut icmp = vec![8, 0, 0, 0, 0x12, 0x34, (seq >> 8) as u8, seq as u8];
    icmp.extend_from_slice(b"wg-proto interop probe payload!!");
    let c = csum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let len = 20 + icmp.len();
    let mut ip = vec![
        0x45,
        0,
        (len >> 8) as u8,
        len as u8,
        0,
        1,
        0,
        0,
        64,
        1,
        0,
        0,
        10,
        99,
        0,
        2,
        10,
        99,
        0,
        1,
    ];
    let c = csum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip.extend_from_slice(&icmp);
    ip
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let their_pub: [u8; 32] = hex(&args[1]);
    let port: u16 = args[2].parse().unwrap();
    let mode = args.get(3).cloned().unwrap_or_default();
    let sock = UdpSocket::bind("127.0.0.1:51998").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let now = Instant::now();
    let wall = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap();
    let mut t = Tunnel::new([0x42; 32], [7; 32], now, wall);
    if mode.contains("load") {
        t.set_under_load(true);
    }
    let ep: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    t.add_peer(
        now,
        PeerConfig {
            public_key: their_pub,
            preshared_key: Some([0x99; 32]),
            endpoint: if mode.starts_with("passive") {
                None
            } else {
                Some(ep)
            },
            persistent_keepalive: None,
            allowed_ips: vec![("10.99.0.0".parse().unwrap(), 24)],
        },
    )
    .unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 2048];
    let mut replies = 0;
    let mut seq = 0u16;
    let mut handshakes = 0;
    while start.elapsed() < Duration::from_secs(15) && replies < 3 {
        if !mode.starts_with("passive")
            && seq < 3
            && start.elapsed() > Duration::from_millis(300 * u64::from(seq))
        {
            t.handle_outgoing(Instant::now(), &ping(seq));
            seq += 1;
        }
        while let Some(tx) = t.poll_transmit(&mut buf) {
            eprintln!("-> {} bytes type {}", tx.len, buf[0]);
            sock.send_to(&buf[..tx.len], tx.dst).unwrap();
        }
        if let Ok((n, from)) = sock.recv_from(&mut buf) {
            eprintln!("<- {n} bytes type {} from {from}", buf[0]);
            let d = buf[..n].to_vec();
            t.handle_incoming(Instant::now(), from, &d);
            t.process_handshakes(Instant::now(), usize::MAX);
        }
        if t.poll_timeout().is_some_and(|d| d <= Instant::now()) {
            t.handle_timeout(Instant::now());
        }
        while let Some(ev) = t.poll_event() {
            match ev {
                Event::Deliver { packet, .. } => {
                    eprintln!(
                        "delivered {} bytes: proto {} icmp type {}",
                        packet.len(),
                        packet[9],
                        packet[20]
                    );
                    if packet[9] == 1 && packet[20] == 0 {
                        replies += 1;
                    }
                    if packet[9] == 1 && packet[20] == 8 {
                        // Echo their ping back as a reply.
                        let mut r = packet.to_vec();
                        r.swap(12, 16);
                        r.swap(13, 17);
                        r.swap(14, 18);
                        r.swap(15, 19);
                        r[20] = 0;
                        r[22] = 0;
                        r[23] = 0;
                        let c = csum(&r[20..]);
                        r[22..24].copy_from_slice(&c.to_be_bytes());
                        t.handle_outgoing(Instant::now(), &r);
                        replies += 1;
                    }
                }
                Event::HandshakeComplete { .. } => {
                    handshakes += 1;
                    eprintln!("handshake complete");
                }
                _ => {}
            }
        }
    }
    println!(
        "replies={replies} handshakes={handshakes} counters={:?}",
        t.counters()
    );
    std::process::exit(if replies >= 3 { 0 } else { 1 });
}

fn hex(s: &str) -> [u8; 32] {
    let mut o = [0u8; 32];
    for i in 0..32 {
        o[i] = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
    }
    o
}
