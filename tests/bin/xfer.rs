//! `wg-tests-xfer`: the traffic tool of the tunnel tests, run inside sandboxes.
//!
//! ```text
//! wg-tests-xfer recv LISTEN            TCP: accept one connection, read it to EOF
//! wg-tests-xfer send DEST BYTES SEED   TCP: stream BYTES seeded pseudo-random bytes to DEST
//! wg-tests-xfer udp-recv LISTEN        UDP: print "SOURCE-IP PAYLOAD" per datagram until "end"
//! wg-tests-xfer udp-send SRC DEST TEXT UDP: one datagram TEXT from address SRC (port 0)
//! ```
//!
//! `recv` and `udp-recv` print `listening` once bound, so a test can start the sender then.
//! `recv` and `send` end by printing `BYTES BLAKE2S-HEX`: the count and the BLAKE2s-256 digest
//! of what went over the connection, which the test compares. Failures go to stderr, exit 1.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::ExitCode;

use blake2::{Blake2s256, Digest};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

const CHUNK: usize = 64 * 1024;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["recv", listen] => recv(listen),
        ["send", dest, bytes, seed] => send(dest, bytes, seed),
        ["udp-recv", listen] => udp_recv(listen),
        ["udp-send", src, dest, text] => udp_send(src, dest, text),
        _ => Err("usage: wg-tests-xfer recv LISTEN | send DEST BYTES SEED | \
                  udp-recv LISTEN | udp-send SRC DEST TEXT"
            .to_owned()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wg-tests-xfer: {e}");
            ExitCode::FAILURE
        }
    }
}

fn addr(s: &str) -> Result<SocketAddr, String> {
    s.parse().map_err(|e| format!("bad address `{s}': {e}"))
}

fn listening() -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening")
        .and_then(|()| out.flush())
        .map_err(|e| format!("stdout: {e}"))
}

fn report(bytes: u64, hasher: Blake2s256) {
    let digest: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    println!("{bytes} {digest}");
}

fn recv(listen: &str) -> Result<(), String> {
    let listener = TcpListener::bind(addr(listen)?).map_err(|e| format!("bind {listen}: {e}"))?;
    listening()?;
    let (mut conn, _) = listener.accept().map_err(|e| format!("accept: {e}"))?;
    let mut hasher = Blake2s256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                hasher.update(&buf[..n]);
                total += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("read after {total} bytes: {e}")),
        }
    }
    report(total, hasher);
    Ok(())
}

fn send(dest: &str, bytes: &str, seed: &str) -> Result<(), String> {
    let total: u64 = bytes.parse().map_err(|e| format!("bad BYTES: {e}"))?;
    let seed: u64 = seed.parse().map_err(|e| format!("bad SEED: {e}"))?;
    let mut conn = TcpStream::connect(addr(dest)?).map_err(|e| format!("connect {dest}: {e}"))?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut hasher = Blake2s256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut left = total;
    while left > 0 {
        let n = usize::try_from(left).map_or(CHUNK, |l| l.min(CHUNK));
        rng.fill_bytes(&mut buf[..n]);
        hasher.update(&buf[..n]);
        conn.write_all(&buf[..n])
            .map_err(|e| format!("write after {} bytes: {e}", total - left))?;
        left -= n as u64;
    }
    conn.shutdown(std::net::Shutdown::Write)
        .map_err(|e| format!("shutdown: {e}"))?;
    // Wait for the receiver to close: everything was delivered (or the peer failed).
    let _ = conn.read(&mut buf);
    report(total, hasher);
    Ok(())
}

fn udp_recv(listen: &str) -> Result<(), String> {
    let socket = UdpSocket::bind(addr(listen)?).map_err(|e| format!("bind {listen}: {e}"))?;
    listening()?;
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, from) = socket
            .recv_from(&mut buf)
            .map_err(|e| format!("recv: {e}"))?;
        let text = String::from_utf8_lossy(&buf[..n]);
        println!("{} {text}", from.ip().to_canonical());
        if text == "end" {
            return Ok(());
        }
    }
}

fn udp_send(src: &str, dest: &str, text: &str) -> Result<(), String> {
    let src: std::net::IpAddr = src.parse().map_err(|e| format!("bad SRC `{src}': {e}"))?;
    let socket =
        UdpSocket::bind(SocketAddr::new(src, 0)).map_err(|e| format!("bind {src}: {e}"))?;
    socket
        .send_to(text.as_bytes(), addr(dest)?)
        .map_err(|e| format!("send to {dest}: {e}"))?;
    Ok(())
}
