//! `wg-tests-mangle`: hostile delivery for the tunnel tests, run inside sandboxes.
//!
//! ```text
//! wg-tests-mangle proxy [OPTIONS] LISTEN_A PEER_A LISTEN_B PEER_B
//!     A UDP relay between two WireGuard peers: what arrives on LISTEN_A goes out of LISTEN_B
//!     to PEER_B, and the other way round. PEER_x `learn` means the last source seen on
//!     LISTEN_x. Each packet's fate is drawn from a seeded RNG (one stream per direction, by
//!     arrival index), so a seed gives the same decisions for the same packet sequence:
//!       --seed N          the seed (default 1)
//!       --reorder F       share held back until DEPTH later packets of its direction have
//!       --depth K           arrived (default 3; at most 20 ms, so a lone packet still goes)
//!       --delay F         share sent after a random delay of up to DELAY_MS (default 5)
//!       --delay-ms D
//!       --dup F           share sent twice at once
//!       --replay F        share sent once more later. Half of them "near": after up to
//!       --replay-ms T       2048 later packets or up to REPLAY_MS (default 1000), whichever
//!       --replay-after N    comes first; half "far": only after 8192 to N (default 16384)
//!                           later packets, outside every implementation's replay window
//!       --stats PATH      counters as `name value` lines, rewritten while they change
//!     Bytes are never invented or altered, and nothing is dropped (other than what the
//!     kernel drops): every datagram is forwarded as received, at least once.
//! wg-tests-mangle dgram-recv LISTEN
//!     UDP: count datagrams from dgram-send; after an `end` datagram (which says how many to
//!     expect) wait until all have come (or 5 s), then print
//!     `received N duplicates D corrupt C missing M`.
//! wg-tests-mangle dgram-send DEST FIRST COUNT [end TOTAL]
//!     UDP: datagrams FIRST..FIRST+COUNT of odd, varied sizes (1 to 3999 bytes: the larger
//!     ones are fragmented inside the tunnel), contents derived from the index; in bursts of
//!     8 of one size but a shorter last one, 2 ms apart; then, with `end TOTAL`, the end
//!     marker.
//! ```
//!
//! `proxy` and `dgram-recv` print `listening` once bound. Failures go to stderr, exit 1.

use std::collections::{BTreeMap, HashSet};
use std::io::{ErrorKind, Write};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["proxy", rest @ ..] => Options::parse(rest).and_then(proxy),
        ["dgram-recv", listen] => dgram_recv(listen),
        ["dgram-send", dest, first, count] => dgram_send(dest, first, count, None),
        ["dgram-send", dest, first, count, "end", total] => {
            dgram_send(dest, first, count, Some(total))
        }
        _ => Err(
            "usage: wg-tests-mangle proxy [OPTIONS] LISTEN_A PEER_A LISTEN_B PEER_B | \
                  dgram-recv LISTEN | dgram-send DEST FIRST COUNT [end TOTAL]"
                .to_owned(),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wg-tests-mangle: {e}");
            ExitCode::FAILURE
        }
    }
}

fn addr(s: &str) -> Result<SocketAddr, String> {
    s.parse().map_err(|e| format!("bad address `{s}': {e}"))
}

fn number<T: std::str::FromStr>(what: &str, s: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    s.parse().map_err(|e| format!("bad {what} `{s}': {e}"))
}

fn listening() -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening")
        .and_then(|()| out.flush())
        .map_err(|e| format!("stdout: {e}"))
}

/// Large socket buffers (forced as root, so above `rmem_max`): a burst the relay has not yet
/// read is not dropped by the kernel.
fn big_buffers(socket: &UdpSocket) {
    let size: libc::c_int = 8 << 20;
    for opt in [libc::SO_RCVBUFFORCE, libc::SO_SNDBUFFORCE] {
        // SAFETY: setsockopt on a socket we own, with a pointer to a live c_int and its size.
        unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// proxy

struct Options {
    seed: u64,
    reorder: f64,
    depth: u64,
    delay: f64,
    delay_ms: u64,
    dup: f64,
    replay: f64,
    replay_after: u64,
    replay_ms: u64,
    stats: Option<String>,
    listen: [SocketAddr; 2],
    peer: [Option<SocketAddr>; 2],
}

impl Options {
    fn parse(args: &[&str]) -> Result<Options, String> {
        let mut o = Options {
            seed: 1,
            reorder: 0.0,
            depth: 3,
            delay: 0.0,
            delay_ms: 5,
            dup: 0.0,
            replay: 0.0,
            replay_after: 16_384,
            replay_ms: 1000,
            stats: None,
            listen: [addr("0.0.0.0:0")?; 2],
            peer: [None; 2],
        };
        let mut positional = Vec::new();
        let mut it = args.iter();
        while let Some(&arg) = it.next() {
            if !arg.starts_with("--") {
                positional.push(arg);
                continue;
            }
            let value = *it.next().ok_or_else(|| format!("{arg} needs a value"))?;
            let share = |v: &str| -> Result<f64, String> {
                let f: f64 = number(arg, v)?;
                if (0.0..=1.0).contains(&f) {
                    Ok(f)
                } else {
                    Err(format!("{arg} {v}: a share between 0 and 1"))
                }
            };
            match arg {
                "--seed" => o.seed = number(arg, value)?,
                "--reorder" => o.reorder = share(value)?,
                "--depth" => o.depth = number(arg, value)?,
                "--delay" => o.delay = share(value)?,
                "--delay-ms" => o.delay_ms = number(arg, value)?,
                "--dup" => o.dup = share(value)?,
                "--replay" => o.replay = share(value)?,
                "--replay-after" => o.replay_after = number(arg, value)?,
                "--replay-ms" => o.replay_ms = number(arg, value)?,
                "--stats" => o.stats = Some(value.to_owned()),
                _ => return Err(format!("unknown option {arg}")),
            }
        }
        if o.reorder + o.delay > 1.0 {
            return Err("--reorder and --delay together exceed 1".to_owned());
        }
        let [la, pa, lb, pb] = positional[..] else {
            return Err("proxy needs LISTEN_A PEER_A LISTEN_B PEER_B".to_owned());
        };
        let peer = |s: &str| -> Result<Option<SocketAddr>, String> {
            if s == "learn" {
                Ok(None)
            } else {
                addr(s).map(Some)
            }
        };
        o.listen = [addr(la)?, addr(lb)?];
        o.peer = [peer(pa)?, peer(pb)?];
        Ok(o)
    }
}

/// A copy waiting to be sent: when `after` packets have arrived in its direction, or at
/// `deadline`, whichever comes first.
struct Deferred {
    /// Towards side `to` (0 = A, 1 = B).
    to: usize,
    after: u64,
    deadline: Instant,
    /// Its arrival index, for the replay distance.
    index: u64,
    replay: bool,
    bytes: Vec<u8>,
}

#[derive(Default)]
struct Stats {
    /// Per direction (0 = A to B, 1 = B to A): datagrams received.
    received: [u64; 2],
    /// Datagrams sent, copies included.
    sent: u64,
    reordered: u64,
    delayed: u64,
    duplicated: u64,
    replayed: u64,
    /// Replays sent at least [`FAR`] packets after the original.
    replayed_far: u64,
    max_replay_distance: u64,
    /// Datagrams for a `learn` side that had not spoken yet, and send errors.
    dropped: u64,
}

impl Stats {
    fn render(&self) -> String {
        format!(
            "received_a_to_b {}\nreceived_b_to_a {}\nsent {}\nreordered {}\ndelayed {}\n\
             duplicated {}\nreplayed {}\nreplayed_far {}\nmax_replay_distance {}\ndropped {}\n",
            self.received[0],
            self.received[1],
            self.sent,
            self.reordered,
            self.delayed,
            self.duplicated,
            self.replayed,
            self.replayed_far,
            self.max_replay_distance,
            self.dropped
        )
    }
}

/// How long a held-back packet waits at most for the later ones to overtake it.
const HOLD_MAX: Duration = Duration::from_millis(20);

/// A "far" replay comes at least this many packets after the original: beyond the replay
/// windows of the kernel and wireguard-go (8128 counters) and of boringtun (fewer).
const FAR: u64 = 8192;

/// A far replay's time limit (it waits for packets, not for time; this only bounds memory).
const FAR_WAIT: Duration = Duration::from_secs(60);

struct Relay {
    o: Options,
    sockets: [UdpSocket; 2],
    peer: [Option<SocketAddr>; 2],
    rng: [ChaCha8Rng; 2],
    pending: Vec<Deferred>,
    stats: Stats,
    stats_written: Option<(Instant, String)>,
}

fn proxy(o: Options) -> Result<(), String> {
    let bind = |a: SocketAddr| {
        let s = UdpSocket::bind(a).map_err(|e| format!("bind {a}: {e}"))?;
        s.set_nonblocking(true)
            .map_err(|e| format!("nonblocking: {e}"))?;
        big_buffers(&s);
        Ok::<_, String>(s)
    };
    let sockets = [bind(o.listen[0])?, bind(o.listen[1])?];
    let rng = [0, 1].map(|dir| {
        let mut r = ChaCha8Rng::seed_from_u64(o.seed);
        r.set_stream(dir);
        r
    });
    let mut relay = Relay {
        peer: o.peer,
        o,
        sockets,
        rng,
        pending: Vec::new(),
        stats: Stats::default(),
        stats_written: None,
    };
    listening()?;
    relay.run()
}

impl Relay {
    fn run(&mut self) -> Result<(), String> {
        let mut buf = vec![0u8; 65536];
        loop {
            let now = Instant::now();
            let next = self.pending.iter().map(|d| d.deadline).min();
            let timeout = match next {
                Some(t) => t
                    .saturating_duration_since(now)
                    .as_micros()
                    .div_ceil(1000)
                    .min(100) as libc::c_int,
                None => 100,
            };
            let mut fds = self.sockets.each_ref().map(|s| libc::pollfd {
                fd: s.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
            // SAFETY: poll on two pollfds we own, with their count.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() != ErrorKind::Interrupted {
                    return Err(format!("poll: {e}"));
                }
            }
            for (from, fd) in fds.iter().enumerate() {
                if fd.revents == 0 {
                    continue;
                }
                // A bounded batch per socket, so neither direction starves the other.
                for _ in 0..64 {
                    match self.sockets[from].recv_from(&mut buf) {
                        Ok((len, src)) => self.arrived(from, src, &buf[..len]),
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        // E.g. an ICMP error reported on the socket: not ours to judge.
                        Err(_) => break,
                    }
                }
            }
            self.release(Instant::now());
            self.write_stats(false);
        }
    }

    /// A datagram from side `from` (sent by `src`): decide its fate.
    fn arrived(&mut self, from: usize, src: SocketAddr, bytes: &[u8]) {
        let to = 1 - from;
        if self.o.peer[from].is_none() {
            self.peer[from] = Some(src);
        }
        let index = self.stats.received[from];
        self.stats.received[from] += 1;
        let now = Instant::now();
        let o = &self.o;
        let (reorder, depth, delay_share, dup_share, replay_share) =
            (o.reorder, o.depth, o.delay, o.dup, o.replay);
        let rng = &mut self.rng[from];
        // Draw every decision for every packet, so one packet's fate does not shift the
        // stream for the next.
        let (fate, dup, replay) = (rng.gen::<f64>(), rng.gen::<f64>(), rng.gen::<f64>());
        let delay = Duration::from_micros(rng.gen_range(0..=o.delay_ms * 1000));
        let (replay_after, replay_wait) = if rng.gen::<bool>() {
            let after = rng.gen_range(1..=2048);
            (
                after,
                Duration::from_millis(rng.gen_range(1..=o.replay_ms.max(1))),
            )
        } else {
            (rng.gen_range(FAR..=o.replay_after.max(FAR)), FAR_WAIT)
        };
        if fate < reorder {
            self.stats.reordered += 1;
            self.defer(to, index + 1 + depth, now + HOLD_MAX, index, false, bytes);
        } else if fate < reorder + delay_share {
            self.stats.delayed += 1;
            self.defer(to, u64::MAX, now + delay, index, false, bytes);
        } else {
            self.send(to, bytes);
        }
        if dup < dup_share {
            self.stats.duplicated += 1;
            self.send(to, bytes);
        }
        if replay < replay_share {
            let after = index + 1 + replay_after;
            self.defer(to, after, now + replay_wait, index, true, bytes);
        }
        self.release(now);
    }

    fn defer(
        &mut self,
        to: usize,
        after: u64,
        deadline: Instant,
        index: u64,
        replay: bool,
        b: &[u8],
    ) {
        self.pending.push(Deferred {
            to,
            after,
            deadline,
            index,
            replay,
            bytes: b.to_vec(),
        });
    }

    /// Sends every deferred copy whose time has come.
    fn release(&mut self, now: Instant) {
        let received = self.stats.received;
        let mut i = 0;
        while i < self.pending.len() {
            let d = &self.pending[i];
            // Packets towards `to` arrived from the other side.
            if d.deadline <= now || received[1 - d.to] >= d.after {
                let d = self.pending.swap_remove(i);
                if d.replay {
                    let distance = received[1 - d.to] - d.index - 1;
                    self.stats.replayed += 1;
                    self.stats.max_replay_distance = self.stats.max_replay_distance.max(distance);
                    if distance >= FAR {
                        self.stats.replayed_far += 1;
                    }
                }
                self.send(d.to, &d.bytes);
            } else {
                i += 1;
            }
        }
    }

    fn send(&mut self, to: usize, bytes: &[u8]) {
        let Some(dest) = self.peer[to] else {
            self.stats.dropped += 1;
            return;
        };
        // The socket facing side `to`.
        let socket = &self.sockets[to];
        loop {
            match socket.send_to(bytes, dest) {
                Ok(_) => {
                    self.stats.sent += 1;
                    return;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    let mut fd = libc::pollfd {
                        fd: socket.as_raw_fd(),
                        events: libc::POLLOUT,
                        revents: 0,
                    };
                    // SAFETY: poll on one pollfd we own.
                    unsafe { libc::poll(&mut fd, 1, 100) };
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    self.stats.dropped += 1;
                    return;
                }
            }
        }
    }

    /// Rewrites the stats file (atomically) when the counters changed, at most every 50 ms.
    fn write_stats(&mut self, force: bool) {
        let Some(path) = &self.o.stats else { return };
        let text = self.stats.render();
        let now = Instant::now();
        if let Some((at, old)) = &self.stats_written {
            if *old == text || (!force && now.duration_since(*at) < Duration::from_millis(50)) {
                return;
            }
        }
        let tmp = format!("{path}.tmp");
        if std::fs::write(&tmp, &text).is_ok() && std::fs::rename(&tmp, path).is_ok() {
            self.stats_written = Some((now, text));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// dgram-send / dgram-recv

/// The size of datagram `id`: odd, spread over 1..4000 by a multiplicative hash.
/// Datagrams go in bursts of [`BURST`] (so a receive path may coalesce a burst): all of one
/// odd size but the last, which is shorter (and odd too). The size is below the tunnel's MTU in
/// even bursts, up to 3999 bytes (fragmented inside the tunnel) in odd ones.
fn dgram_len(id: u64) -> usize {
    let burst = id / BURST;
    let h = burst.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40;
    let max_half = if burst % 2 == 0 { 1364 / 2 } else { 4000 / 2 };
    let len = h % max_half * 2 + 1;
    let len = if id % BURST == BURST - 1 {
        (len / 2) | 1
    } else {
        len
    };
    len as usize
}

/// Datagrams per burst.
const BURST: u64 = 8;

/// The contents of datagram `id`: the id (little-endian, as much of it as fits) then bytes
/// derived from it.
fn dgram_bytes(id: u64) -> Vec<u8> {
    let len = dgram_len(id);
    let mut b: Vec<u8> = (0..len)
        .map(|i| (id as usize).wrapping_mul(31).wrapping_add(i * 7) as u8)
        .collect();
    let head = id.to_le_bytes();
    let n = len.min(8);
    b[..n].copy_from_slice(&head[..n]);
    b
}

/// Datagram ids below 256 fit in one byte, so even 1-byte datagrams say who they are; larger
/// ids only go into datagrams of at least 8 bytes. Returns the id and whether it checks out.
fn dgram_parse(b: &[u8]) -> Option<(u64, bool)> {
    let mut head = [0u8; 8];
    let n = b.len().min(8);
    head[..n].copy_from_slice(&b[..n]);
    let id = u64::from_le_bytes(head);
    (b.len() >= 8 || id < 256).then(|| (id, dgram_bytes(id) == b))
}

const END: &[u8] = b"end of datagrams: ";

fn dgram_send(dest: &str, first: &str, count: &str, total: Option<&str>) -> Result<(), String> {
    let dest = addr(dest)?;
    let first: u64 = number("FIRST", first)?;
    let count: u64 = number("COUNT", count)?;
    let bind = if dest.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let socket = UdpSocket::bind(addr(bind)?).map_err(|e| format!("bind: {e}"))?;
    for id in first..first + count {
        let bytes = dgram_bytes(id);
        if (bytes.len() < 8 && id >= 256) || dgram_parse(&bytes) != Some((id, true)) {
            continue; // Too short to carry this id.
        }
        socket
            .send_to(&bytes, dest)
            .map_err(|e| format!("send {id} to {dest}: {e}"))?;
        if id % BURST == BURST - 1 {
            thread::sleep(Duration::from_millis(2));
        }
    }
    if let Some(total) = total {
        let total: u64 = number("TOTAL", total)?;
        let mut end = END.to_vec();
        end.extend_from_slice(total.to_string().as_bytes());
        socket
            .send_to(&end, dest)
            .map_err(|e| format!("send end to {dest}: {e}"))?;
    }
    Ok(())
}

/// The ids `dgram-send` really sends among 0..total (those too short for their id are
/// skipped).
fn dgram_expected(total: u64) -> HashSet<u64> {
    (0..total)
        .filter(|&id| dgram_parse(&dgram_bytes(id)) == Some((id, true)))
        .collect()
}

fn dgram_recv(listen: &str) -> Result<(), String> {
    let socket = UdpSocket::bind(addr(listen)?).map_err(|e| format!("bind {listen}: {e}"))?;
    big_buffers(&socket);
    listening()?;
    let mut seen: BTreeMap<u64, u64> = BTreeMap::new();
    let mut corrupt = 0u64;
    let mut expected: Option<(HashSet<u64>, Instant)> = None;
    let mut buf = vec![0u8; 65536];
    loop {
        if let Some((want, since)) = &expected {
            if want.iter().all(|id| seen.contains_key(id))
                || since.elapsed() > Duration::from_secs(5)
            {
                break;
            }
            socket
                .set_read_timeout(Some(Duration::from_millis(50)))
                .map_err(|e| format!("timeout: {e}"))?;
        }
        let n = match socket.recv_from(&mut buf) {
            Ok((n, _)) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("recv: {e}")),
        };
        let b = &buf[..n];
        if let Some(total) = b.strip_prefix(END) {
            let total: u64 = number("end marker", &String::from_utf8_lossy(total))?;
            if expected.is_none() {
                expected = Some((dgram_expected(total), Instant::now()));
            }
            continue;
        }
        match dgram_parse(b) {
            Some((id, true)) => *seen.entry(id).or_default() += 1,
            _ => corrupt += 1,
        }
    }
    let (want, _) = expected.expect("loop ends only after the end marker");
    let duplicates: u64 = seen.values().map(|n| n - 1).sum();
    let missing: Vec<u64> = {
        let mut m: Vec<u64> = want
            .iter()
            .filter(|id| !seen.contains_key(id))
            .copied()
            .collect();
        m.sort_unstable();
        m
    };
    let unexpected = seen.keys().filter(|id| !want.contains(id)).count();
    println!(
        "received {} duplicates {duplicates} corrupt {} missing {}",
        seen.len(),
        corrupt + unexpected as u64,
        missing.len()
    );
    if !missing.is_empty() {
        eprintln!("missing ids: {missing:?}");
    }
    Ok(())
}
