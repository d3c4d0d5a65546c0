//! wg-relay: the I/O shell around [`wg_nat::Relay`]: configuration (flags and a small config
//! file), one UDP socket, the clock, log lines and a status file.
//!
//! ```text
//! wg-relay [--config FILE] [--listen ADDR:PORT] [--private-key FILE] [--allow PUBKEY]...
//!          [--max-sessions N] [--rate BYTES_PER_SECOND] [--status-file FILE]
//! ```
//!
//! The config file has `Key = Value` lines (`#` comments) under an optional `[Relay]` header:
//! `ListenAddress`, `PrivateKey` (base64), `PrivateKeyFile`, `AllowedPublicKey` (repeatable,
//! base64), `MaxSessions`, `RateLimit`, `StatusFile`. Flags override the file.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fmt;
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use wg_config::key::{from_key_file, Key};
use wg_config::{PrivateKey, PublicKey};
use wg_nat::{Relay, RelayConfig, RelayEvent};

/// The default UDP listen address.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:3478";

/// The usage line.
pub const USAGE: &str =
    "Usage: wg-relay [--config FILE] [--listen ADDR:PORT] [--private-key FILE] \
[--allow PUBKEY]... [--max-sessions N] [--rate BYTES_PER_SECOND] [--status-file FILE]";

/// What the relay runs with.
#[derive(Debug, Clone)]
pub struct Options {
    /// UDP listen address.
    pub listen: SocketAddr,
    /// The private key.
    pub private_key: PrivateKey,
    /// Limits and the allow-list.
    pub relay: RelayConfig,
    /// Where to write the status every second, if anywhere.
    pub status_file: Option<PathBuf>,
}

/// A configuration error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

fn err(msg: impl Into<String>) -> ConfigError {
    ConfigError(msg.into())
}

#[derive(Debug, Default)]
struct Raw {
    listen: Option<String>,
    private_key: Option<PrivateKey>,
    allow: Vec<PublicKey>,
    max_sessions: Option<usize>,
    rate: Option<u64>,
    status_file: Option<PathBuf>,
}

fn parse_key<K: Key>(what: &str, value: &str) -> Result<K, ConfigError> {
    K::from_base64(value.trim()).map_err(|_| err(format!("{what}: invalid key `{value}'")))
}

fn read_key_file(path: &str) -> Result<PrivateKey, ConfigError> {
    let bytes = std::fs::read(path).map_err(|e| err(format!("{path}: {e}")))?;
    from_key_file(&bytes).map_err(|e| err(format!("{path}: {e}")))
}

fn number<T: std::str::FromStr>(what: &str, value: &str) -> Result<T, ConfigError> {
    value
        .trim()
        .parse()
        .map_err(|_| err(format!("{what}: invalid number `{value}'")))
}

impl Raw {
    fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        match key.to_ascii_lowercase().as_str() {
            "listenaddress" => self.listen = Some(value.to_owned()),
            "privatekey" => self.private_key = Some(parse_key("PrivateKey", value)?),
            "privatekeyfile" => self.private_key = Some(read_key_file(value)?),
            "allowedpublickey" => self.allow.push(parse_key("AllowedPublicKey", value)?),
            "maxsessions" => self.max_sessions = Some(number("MaxSessions", value)?),
            "ratelimit" => self.rate = Some(number("RateLimit", value)?),
            "statusfile" => self.status_file = Some(PathBuf::from(value)),
            _ => return Err(err(format!("unknown key `{key}'"))),
        }
        Ok(())
    }

    fn file(&mut self, text: &str) -> Result<(), ConfigError> {
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() || line.eq_ignore_ascii_case("[relay]") {
                continue;
            }
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| err(format!("line {}: expected `Key = Value'", n + 1)))?;
            self.set(key.trim(), value.trim())
                .map_err(|e| err(format!("line {}: {e}", n + 1)))?;
        }
        Ok(())
    }
}

impl Options {
    /// Parses argv (without the program name).
    pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Options, ConfigError> {
        let args: Vec<String> = args
            .into_iter()
            .map(|a| a.into_string().map_err(|_| err("arguments must be UTF-8")))
            .collect::<Result<_, _>>()?;
        let mut file = Raw::default();
        let mut flags = Raw::default();
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let (name, inline) = match arg.split_once('=') {
                Some((n, v)) if n.starts_with("--") => (n, Some(v.to_owned())),
                _ => (arg.as_str(), None),
            };
            if matches!(name, "-h" | "--help") {
                return Err(err(USAGE));
            }
            let mut value = || {
                inline
                    .clone()
                    .or_else(|| it.next().cloned())
                    .ok_or_else(|| err(format!("{name} needs a value\n{USAGE}")))
            };
            match name {
                "--config" => {
                    let path = value()?;
                    let text =
                        std::fs::read_to_string(&path).map_err(|e| err(format!("{path}: {e}")))?;
                    file.file(&text).map_err(|e| err(format!("{path}: {e}")))?;
                }
                "--listen" => flags.listen = Some(value()?),
                "--private-key" => flags.private_key = Some(read_key_file(&value()?)?),
                "--allow" => flags.allow.push(parse_key("--allow", &value()?)?),
                "--max-sessions" => flags.max_sessions = Some(number(name, &value()?)?),
                "--rate" => flags.rate = Some(number(name, &value()?)?),
                "--status-file" => flags.status_file = Some(PathBuf::from(value()?)),
                _ => return Err(err(format!("unknown option `{arg}'\n{USAGE}"))),
            }
        }
        let listen = flags
            .listen
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let listen: SocketAddr = listen
            .parse()
            .map_err(|_| err(format!("invalid listen address `{listen}'")))?;
        let private_key = flags
            .private_key
            .or(file.private_key)
            .filter(|k| !k.is_zero())
            .ok_or_else(|| err(format!("a private key is required\n{USAGE}")))?;
        let mut allow: Vec<PublicKey> = file.allow;
        allow.extend(flags.allow);
        let defaults = RelayConfig::default();
        let relay = RelayConfig {
            allow: (!allow.is_empty()).then(|| allow.iter().map(|k| *k.as_bytes()).collect()),
            max_sessions: flags
                .max_sessions
                .or(file.max_sessions)
                .unwrap_or(defaults.max_sessions),
            rate: flags.rate.or(file.rate).unwrap_or(defaults.rate),
        };
        Ok(Options {
            listen,
            private_key,
            relay,
            status_file: flags.status_file.or(file.status_file),
        })
    }
}

fn b64(key: &[u8; 32]) -> String {
    PublicKey::from_bytes(*key).to_base64()
}

/// v4-mapped addresses (a dual-stack socket) as plain IPv4, so peers learn what they use.
fn unmap(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), addr.port()),
            None => addr,
        },
        IpAddr::V4(_) => addr,
    }
}

fn to_socket(addr: SocketAddr, v6_socket: bool) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if v6_socket => {
            SocketAddr::new(IpAddr::V6(ip.to_ipv6_mapped()), addr.port())
        }
        _ => addr,
    }
}

fn log(line: fmt::Arguments<'_>) {
    let _ = writeln!(io::stderr(), "wg-relay: {line}");
}

/// The status report: registered peers, sessions with their bytes, counters.
pub fn status(relay: &Relay, listen: SocketAddr, now: Instant) -> String {
    let mut out = String::new();
    out.push_str(&format!("public_key={}\n", b64(relay.public_key())));
    out.push_str(&format!("listen={listen}\n"));
    let mut peers: Vec<_> = relay.registered().collect();
    peers.sort();
    for (key, addr) in peers {
        out.push_str(&format!("peer={} endpoint={addr}\n", b64(&key)));
    }
    let mut sessions: Vec<_> = relay.sessions().collect();
    sessions.sort_by_key(|s| s.ends);
    for s in sessions {
        out.push_str(&format!(
            "session={} {} age={} bytes={} {} packets={} {}\n",
            b64(&s.ends[0]),
            b64(&s.ends[1]),
            now.duration_since(s.since).as_secs(),
            s.bytes[0],
            s.bytes[1],
            s.packets[0],
            s.packets[1],
        ));
    }
    let c = relay.counters();
    out.push_str(&format!(
        "forwarded_packets={}\nforwarded_bytes={}\ndropped_unauthenticated={}\ndropped_bad_auth={}\ndropped_rate={}\n",
        c.forwarded_packets, c.forwarded_bytes, c.dropped_cheap, c.dropped_auth, c.dropped_rate
    ));
    out
}

fn wall() -> Duration {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
}

/// Runs the relay until killed.
pub fn run(options: &Options) -> io::Result<()> {
    let socket = UdpSocket::bind(options.listen)?;
    let local = socket.local_addr()?;
    let v6 = local.is_ipv6();
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(|e| io::Error::other(e.to_string()))?;
    let now = Instant::now();
    let mut relay = Relay::new(
        *options.private_key.as_bytes(),
        options.relay.clone(),
        seed,
        now,
        wall(),
    );
    log(format_args!(
        "listening on {local}, public key {}",
        b64(relay.public_key())
    ));
    let mut buf = vec![0u8; 65_536];
    let mut next_status = now;
    let mut last_status = String::new();
    loop {
        let now = Instant::now();
        let wait = relay
            .poll_timeout()
            .map_or(Duration::from_secs(1), |t| t.saturating_duration_since(now))
            .clamp(Duration::from_millis(1), Duration::from_secs(1));
        socket.set_read_timeout(Some(wait))?;
        let received = socket.recv_from(&mut buf);
        let now = Instant::now();
        relay.set_wall_clock(wall());
        match received {
            Ok((len, from)) => {
                if let Some(dst) = relay.handle_datagram(now, unmap(from), &buf[..len]) {
                    let _ = socket.send_to(&buf[..len], to_socket(dst, v6));
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => log(format_args!("receive: {e}")),
        }
        if relay.poll_timeout().is_some_and(|t| t <= now) {
            relay.handle_timeout(now);
        }
        while let Some((dst, bytes)) = relay.poll_transmit() {
            let _ = socket.send_to(&bytes, to_socket(dst, v6));
        }
        while let Some(event) = relay.poll_event() {
            match event {
                RelayEvent::Registered { peer, addr } => {
                    log(format_args!("peer {} registered from {addr}", b64(&peer)))
                }
                RelayEvent::SessionUp { ends, .. } => log(format_args!(
                    "session up: {} <-> {}",
                    b64(&ends[0]),
                    b64(&ends[1])
                )),
                RelayEvent::SessionDown { ends, bytes } => log(format_args!(
                    "session down: {} <-> {} ({} and {} bytes relayed)",
                    b64(&ends[0]),
                    b64(&ends[1]),
                    bytes[0],
                    bytes[1]
                )),
                RelayEvent::Expired { peer } => {
                    log(format_args!("peer {} registration expired", b64(&peer)))
                }
            }
        }
        if let Some(path) = &options.status_file {
            if now >= next_status {
                next_status = now + Duration::from_secs(1);
                let text = status(&relay, local, now);
                if text != last_status {
                    let tmp = path.with_extension("tmp");
                    if std::fs::write(&tmp, &text)
                        .and_then(|()| std::fs::rename(&tmp, path))
                        .is_err()
                    {
                        log(format_args!("cannot write {}", path.display()));
                    }
                    last_status = text;
                }
            }
        }
    }
}

/// Allowed keys as a set (for tests and callers building a [`RelayConfig`] by hand).
pub fn allow_set(keys: &[PublicKey]) -> HashSet<[u8; 32]> {
    keys.iter().map(|k| *k.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Options, ConfigError> {
        Options::parse(args.iter().map(OsString::from))
    }

    #[test]
    fn test_options() {
        let dir = std::env::temp_dir().join(format!("wg-relay-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = PrivateKey::from_random([3; 32]);
        let peer = PrivateKey::from_random([4; 32]).public_key();
        let conf = dir.join("relay.conf");
        std::fs::write(
            &conf,
            format!(
                "[Relay]\n# comment\nListenAddress = 127.0.0.1:9000\nPrivateKey = {key}\nAllowedPublicKey = {peer}\nMaxSessions = 3\n"
            ),
        )
        .unwrap();
        let o = parse(&["--config", conf.to_str().unwrap(), "--rate=1000"]).unwrap();
        assert_eq!(o.listen, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(o.relay.max_sessions, 3);
        assert_eq!(o.relay.rate, 1000);
        assert_eq!(o.relay.allow, Some(allow_set(&[peer])));
        let o = parse(&["--config", conf.to_str().unwrap(), "--listen", "[::]:1"]).unwrap();
        assert_eq!(o.listen, "[::]:1".parse().unwrap());
        assert!(parse(&[])
            .unwrap_err()
            .0
            .starts_with("a private key is required"));
        assert!(parse(&["--bogus"])
            .unwrap_err()
            .0
            .starts_with("unknown option `--bogus'"));
        std::fs::write(&conf, "Frobnicate = 1\n").unwrap();
        assert_eq!(
            parse(&["--config", conf.to_str().unwrap()]).unwrap_err().0,
            format!("{}: line 1: unknown key `Frobnicate'", conf.display())
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
