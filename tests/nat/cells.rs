//! The outcome matrix (shared/spec/nat-traversal.md): two peers behind simulated NATs, brought
//! up with our `wg-quick up` (our wg-tunnel), a `wg-relay` on the public side, and no Endpoint
//! for each other: they find each other through the relay.
//!
//! ```text
//!   relay 203.0.113.20:3478 (wg-relay)        srv … (none needed: the relay answers discovery)
//!        │
//!   ─────┴──────────── Internet 203.0.113.0/24 ─────────────
//!        │                                   │
//!   router A (.1) NAT kind                router B (.2) NAT kind   (or CGN .3 + home NAT)
//!        │ 10.1.0.0/24                       │ 10.2.0.0/24
//!   host A: wg0 10.77.0.1 ◄── tunnel ──► host B: wg0 10.77.0.2
//! ```
//!
//! Each cell asserts the path both sides report (`wg show wg0 paths`), a checksummed TCP
//! stream through the tunnel that runs from the first (relayed) packet across any switch to the
//! final path, that a relayed path really went through the relay (its byte counters) and a
//! direct one did not, and recovery after `conntrack -F` on a router (a fresh checksummed
//! transfer, the same path again).

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use wg_tests::bins::cargo_bin;
use wg_tests::invocation::Invocation;
use wg_tests::nat_topology::{nat_tool, Internet, Nat, Router};
use wg_tests::{reference_wg, require_root, xfer, Background, Sandbox};

/// How long a path may take to settle (probing runs for several seconds; 2 busy cores).
pub(super) const PATH_DEADLINE: Duration = Duration::from_secs(40);

/// How long a transfer or a ping may take.
pub(super) const TRANSFER_DEADLINE: Duration = Duration::from_secs(120);

/// The relay's address.
pub(super) const RELAY: &str = "203.0.113.20:3478";

/// A path as `wg show IF paths` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Path {
    Direct,
    Lan,
    Relay,
}

/// Where a peer sits.
#[derive(Clone, Debug)]
pub(super) enum Site {
    /// Behind its own router with this NAT behaviour.
    Behind(Nat),
    /// Behind a home NAT (port-restricted) behind a carrier-grade NAT (port-restricted).
    DoubleNat,
    /// On the same LAN as the other peer (which must be `Behind`).
    SameLan,
}

/// A key pair from the reference `wg`: (private base64, public base64).
pub(super) fn keypair() -> (String, String) {
    let wg = reference_wg();
    let private = Invocation::new(["genkey"]).run(&wg).stdout_str();
    let public = Invocation::new(["pubkey"])
        .stdin(private.as_bytes())
        .run(&wg)
        .stdout_str();
    (private.trim().to_owned(), public.trim().to_owned())
}

pub(super) fn hex(base64: &str) -> String {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(base64)
        .expect("base64 key");
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// A peer: a host sandbox running `wg0` (our wg-tunnel, started by our wg-quick).
pub(super) struct Peer {
    pub(super) ns: Sandbox,
    pub(super) inner: String,
    pub(super) private: String,
    pub(super) public: String,
    /// Its address on its LAN.
    pub(super) lan: String,
    /// The public address of its outermost NAT.
    pub(super) public_ip: String,
}

impl Peer {
    /// One UAPI request to this peer's wg0 (through `/proc/<holder>/root`); the reply.
    pub(super) fn uapi(&self, request: &str) -> String {
        let path = self.ns.host_path("/run/wireguard/wg0.sock");
        let mut conn = UnixStream::connect(&path)
            .unwrap_or_else(|e| panic!("connect {}: {e}", path.display()));
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        conn.write_all(request.as_bytes()).expect("write request");
        let mut reply = Vec::new();
        let mut buf = [0u8; 4096];
        while !reply.ends_with(b"\n\n") {
            let n = conn.read(&mut buf).expect("read reply");
            if n == 0 {
                break;
            }
            reply.extend_from_slice(&buf[..n]);
        }
        String::from_utf8(reply).expect("UTF-8 reply")
    }

    /// This peer's `wg show wg0 paths` line for `peer` (by public key), without its last
    /// field (since when): `[path, where it leads]`.
    pub(super) fn paths_line(&self, peer: &str) -> Option<[String; 2]> {
        let out = Invocation::new(["show", "wg0", "paths"])
            .in_sandbox(&self.ns)
            .run(&cargo_bin("wg"));
        out.assert_code(0, "wg show wg0 paths");
        let text = out.stdout_str();
        let line = text.lines().find(|l| l.starts_with(&format!("{peer}\t")))?;
        let fields: Vec<&str> = line.split('\t').collect();
        assert_eq!(fields.len(), 4, "wg show wg0 paths: {line:?}");
        Some([fields[1].to_owned(), fields[2].to_owned()])
    }

    /// The path this peer uses to `peer` (by public key), from `wg show wg0 paths`.
    pub(super) fn path_to(&self, peer: &str) -> Option<Path> {
        match self.paths_line(peer)?[0].as_str() {
            "direct" => Some(Path::Direct),
            "lan" => Some(Path::Lan),
            "relay" => Some(Path::Relay),
            _ => None,
        }
    }

    pub(super) fn nat_report(&self) -> String {
        self.uapi("get=nat\n\n")
    }

    /// Bytes received from the one peer (`wg show wg0 transfer`).
    pub(super) fn rx_bytes(&self) -> u64 {
        let out = self.ns.run("/usr/bin/wg", &["show", "wg0", "transfer"]);
        let text = out.stdout_str();
        text.split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    /// Kills every process left in the sandbox (the daemonised wg-tunnel).
    fn kill_all(&self) {
        for pid in self.ns.processes() {
            // SAFETY: kill(2) on a pid in our own throw-away namespace.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
        }
    }
}

/// A cell: the Internet, the relay, two peers behind their NATs.
pub(super) struct World {
    pub(super) peers: [Peer; 2],
    pub(super) routers: Vec<Router>,
    _relay: Background,
    pub(super) relay_ns: Sandbox,
    pub(super) relay_public: String,
    pub(super) _internet: Internet,
    pub(super) dir: tempfile::TempDir,
}

impl Drop for World {
    fn drop(&mut self) {
        for p in &self.peers {
            p.kill_all();
        }
    }
}

impl World {
    /// Builds the topology: A at `a`, B at `b`; routers get WAN .1, .2 (.3 for a carrier);
    /// the relay runs; the peers are not up yet ([`World::up`]).
    pub(super) fn build(a: &Site, b: &Site) -> World {
        let dir = tempfile::tempdir().expect("temp dir");
        let internet = Internet::new();
        let relay_ns = internet.public_host(&[20]);
        let (relay_private, relay_public) = keypair();
        let key_file = dir.path().join("relay.key");
        std::fs::write(&key_file, &relay_private).expect("write key");
        let relay = relay_ns.spawn(
            &cargo_bin("wg-relay"),
            &[
                "--listen",
                RELAY,
                "--private-key",
                key_file.to_str().expect("UTF-8"),
                "--status-file",
                "/run/relay.status",
            ],
        );
        let mut routers = Vec::new();
        // (sandbox, LAN address, public address of its outermost NAT)
        let mut hosts = Vec::new();
        for (i, site) in [a, b].into_iter().enumerate() {
            let octet = u8::try_from(i + 1).expect("small");
            match site {
                Site::Behind(nat) => {
                    let r = internet.router(octet, &format!("10.{octet}.0"), nat.clone());
                    let (ns, lan) = r.host();
                    hosts.push((ns, lan, r.wan_ip.clone()));
                    routers.push(r);
                }
                Site::DoubleNat => {
                    let isp = internet.carrier(3);
                    let home = isp.router(&format!("10.{octet}.0"), Nat::PortRestricted);
                    let (ns, lan) = home.host();
                    hosts.push((ns, lan, isp.wan_ip.clone()));
                    routers.push(home);
                    routers.push(isp);
                }
                Site::SameLan => {
                    let r = routers.first().expect("SameLan follows a Behind site");
                    let (ns, lan) = r.host();
                    hosts.push((ns, lan, r.wan_ip.clone()));
                }
            }
        }
        let peers = {
            let mut it = hosts.into_iter().zip(["10.77.0.1", "10.77.0.2"]).map(
                |((ns, lan, public_ip), inner)| {
                    let (private, public) = keypair();
                    Peer {
                        ns,
                        inner: inner.to_owned(),
                        private,
                        public,
                        lan,
                        public_ip,
                    }
                },
            );
            [it.next().expect("A"), it.next().expect("B")]
        };
        let world = World {
            peers,
            routers,
            _relay: relay,
            relay_ns,
            relay_public,
            _internet: internet,
            dir,
        };
        world.wait_relay_up();
        world
    }

    /// [`World::build`] and both peers up.
    pub(super) fn new(a: &Site, b: &Site) -> World {
        let world = World::build(a, b);
        world.up(0, "");
        world.up(1, "");
        world
    }

    fn wait_relay_up(&self) {
        let status = self.relay_ns.host_path("/run/relay.status");
        wait_until("wg-relay's status file", Duration::from_secs(10), || {
            status.exists()
        });
    }

    /// The relay's status file.
    pub(super) fn relay_status(&self) -> String {
        std::fs::read_to_string(self.relay_ns.host_path("/run/relay.status")).unwrap_or_default()
    }

    /// The relay's `forwarded_bytes` counter as of now: waits for the status file (rewritten
    /// every second while it changes) to be newer than this call, or up to 5 s if it stays the
    /// same (then nothing moved).
    pub(super) fn relay_forwarded(&self) -> u64 {
        let path = self.relay_ns.host_path("/run/relay.status");
        let called = std::time::SystemTime::now();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5)
            && std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .is_ok_and(|t| t <= called)
        {
            thread::sleep(Duration::from_millis(50));
        }
        self.relay_status()
            .lines()
            .find_map(|l| l.strip_prefix("forwarded_bytes="))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    /// `wg-quick up` of peer `i`'s config (with the `Relay` and `RelayPublicKey` extension keys);
    /// `extra` is appended to the config (more `[Peer]` sections).
    pub(super) fn up(&self, i: usize, extra: &str) {
        self.up_with(i, &self.peers[1 - i].public, extra);
    }

    /// [`World::up`] with `peer` (a public key) in place of the other peer.
    pub(super) fn up_with(&self, i: usize, peer: &str, extra: &str) {
        let me = &self.peers[i];
        let other = &self.peers[1 - i];
        let config = format!(
            "[Interface]\nPrivateKey = {}\nAddress = {}/24\nListenPort = 51820\n\
             Relay = {RELAY}\nRelayPublicKey = {}\n\n\
             [Peer]\nPublicKey = {}\nAllowedIPs = {}/32\n{extra}",
            me.private, me.inner, self.relay_public, peer, other.inner
        );
        let dir = me.ns.host_path("/run/wgq");
        std::fs::create_dir_all(&dir).expect("mkdir");
        let file = dir.join("wg0.conf");
        std::fs::write(&file, config).expect("write config");
        let out = Invocation::new(["up", "/run/wgq/wg0.conf"])
            .arg0("wg-quick")
            .in_sandbox(&me.ns)
            .run(&cargo_bin("wg-quick"));
        out.assert_code(0, "wg-quick up");
    }

    /// Both sides' reports and the relay's status, for failure messages.
    pub(super) fn report(&self) -> String {
        let mut s = String::new();
        for (name, p) in ["A", "B"].iter().zip(&self.peers) {
            let _ = writeln!(
                s,
                "--- {name} get=nat:\n{}--- {name} wg show:\n{}",
                p.nat_report(),
                p.ns.run("/usr/bin/wg", &["show"]).stdout_str()
            );
        }
        for r in &self.routers {
            let _ = writeln!(s, "--- router {} conntrack:\n{}", r.wan_ip, r.conntrack());
        }
        let _ = writeln!(s, "--- relay status:\n{}", self.relay_status());
        s
    }

    /// Waits until both peers report `path` to each other.
    pub(super) fn wait_path(&self, path: Path) {
        let (a, b) = (&self.peers[0], &self.peers[1]);
        let start = Instant::now();
        loop {
            let (pa, pb) = (a.path_to(&b.public), b.path_to(&a.public));
            if pa == Some(path) && pb == Some(path) {
                return;
            }
            assert!(
                start.elapsed() < PATH_DEADLINE,
                "paths never became {path:?} (A: {pa:?}, B: {pb:?})\n{}",
                self.report()
            );
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// Makes peer `i`'s host drop (`on`) or pass again UDP to and from anyone but the relay.
    pub(super) fn block_direct(&self, i: usize, on: bool) {
        let ns = &self.peers[i].ns;
        if on {
            let relay_ip = RELAY.split(':').next().expect("ip");
            let rules = format!(
                "table ip block_direct {{
    chain output {{
        type filter hook output priority filter; policy accept;
        meta l4proto udp ip daddr != {relay_ip} drop
    }}
    chain input {{
        type filter hook input priority filter; policy accept;
        meta l4proto udp ip saddr != {relay_ip} drop
    }}
}}
"
            );
            Invocation::new(["-f", "-"])
                .arg0("nft")
                .stdin(rules)
                .in_sandbox(ns)
                .run(std::path::Path::new("/usr/sbin/nft"))
                .assert_code(0, "nft: block direct UDP");
        } else {
            ns.run("/usr/sbin/nft", &["delete", "table", "ip", "block_direct"])
                .assert_code(0, "nft delete table ip block_direct");
        }
    }

    /// Asserts where each side's path leads: the relay; the other's LAN address; the other's
    /// public (outermost NAT) address, on the other's own port where its NATs preserve ports.
    pub(super) fn assert_path_leads(&self, path: Path) {
        for i in 0..2 {
            let (me, other) = (&self.peers[i], &self.peers[1 - i]);
            let [_, to] = me.paths_line(&other.public).expect("a path line");
            match path {
                Path::Relay => assert_eq!(to, RELAY, "{}", self.report()),
                Path::Lan => assert_eq!(to, format!("{}:51820", other.lan), "{}", self.report()),
                Path::Direct => assert!(
                    to.starts_with(&format!("{}:", other.public_ip)),
                    "path to {} leads to {to}\n{}",
                    other.public_ip,
                    self.report()
                ),
            }
        }
    }

    /// Starts a paced TCP stream A → B through the tunnel that runs until [`Stream::finish`].
    pub(super) fn stream(&self) -> Stream {
        let (a, b) = (&self.peers[0], &self.peers[1]);
        let mut receiver = b.ns.spawn(&xfer(), &["recv", "0.0.0.0:5001"]);
        assert_eq!(receiver.expect_line(Duration::from_secs(10)), "listening");
        let stop = self.dir.path().join("stop");
        let _ = std::fs::remove_file(&stop);
        let dest = format!("{}:5001", b.inner);
        let sender = a.ns.spawn(
            &nat_tool(),
            &["tcp-send", &dest, "11", stop.to_str().expect("UTF-8")],
        );
        Stream {
            sender,
            receiver,
            stop,
        }
    }

    /// A fixed-size checksummed TCP transfer A → B through the tunnel.
    pub(super) fn transfer(&self, bytes: u64) {
        let (a, b) = (&self.peers[0], &self.peers[1]);
        let mut receiver = b.ns.spawn(&xfer(), &["recv", "0.0.0.0:5002"]);
        assert_eq!(receiver.expect_line(Duration::from_secs(10)), "listening");
        let dest = format!("{}:5002", b.inner);
        let sender =
            a.ns.spawn(&xfer(), &["send", &dest, &bytes.to_string(), "5"]);
        let sent = sender.wait(TRANSFER_DEADLINE, || self.report());
        let received = receiver.wait(TRANSFER_DEADLINE, || self.report());
        assert!(
            sent.status.success() && received.status.success(),
            "transfer failed:\nsender: {sent:?}\nreceiver: {received:?}\n{}",
            self.report()
        );
        assert_eq!(sent.lines, received.lines, "digests differ");
        assert!(sent.lines[0].starts_with(&format!("{bytes} ")));
    }
}

/// A paced TCP stream in progress.
pub(super) struct Stream {
    sender: Background,
    receiver: Background,
    stop: PathBuf,
}

impl Stream {
    /// Stops the sender; panics unless both ends saw the same byte count and digest.
    pub(super) fn finish(self, world: &World) -> u64 {
        std::fs::write(&self.stop, b"").expect("create stop file");
        let sent = self.sender.wait(TRANSFER_DEADLINE, || world.report());
        let received = self.receiver.wait(TRANSFER_DEADLINE, || world.report());
        assert!(
            sent.status.success() && received.status.success(),
            "stream failed:\nsender: {sent:?}\nreceiver: {received:?}\n{}",
            world.report()
        );
        assert_eq!(sent.lines.len(), 1, "{sent:?}");
        assert_eq!(sent.lines, received.lines, "digests differ");
        sent.lines[0]
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .expect("byte count")
    }
}

pub(super) fn wait_until(what: &str, deadline: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// Runs one cell: the stream starts relayed (direct held back until it flows), the paths
/// settle on `expect`, the stream ends intact; a direct path carries a further transfer without the
/// relay, a relayed one through it; after `conntrack -F` on A's first router a fresh transfer
/// completes and the paths settle on `expect` again.
fn cell(a: Site, b: Site, expect: Path) {
    let world = World::build(&a, &b);
    // A direct path is held back at first (A's host drops UDP to and from anyone but the
    // relay), so the stream certainly starts relayed and crosses the switch to direct.
    if expect != Path::Relay {
        world.block_direct(0, true);
    }
    world.up(0, "");
    world.up(1, "");
    let stream = world.stream();
    world.wait_path(Path::Relay);
    let relayed = world.relay_forwarded();
    wait_until(
        "the stream to move 500 kB through the relay",
        TRANSFER_DEADLINE,
        || world.relay_forwarded() > relayed + 500_000,
    );
    if expect != Path::Relay {
        world.block_direct(0, false);
    }
    world.wait_path(expect);
    world.assert_path_leads(expect);
    // Let the stream ride the final path for a while (1 MB more arrives at B).
    let settled = world.peers[1].rx_bytes();
    wait_until(
        "the stream to move 1 MB on the final path",
        TRANSFER_DEADLINE,
        || world.peers[1].rx_bytes() > settled + 1_000_000,
    );
    let streamed = stream.finish(&world);
    assert!(streamed > 0);

    let before = world.relay_forwarded();
    world.transfer(4_000_000);
    let through_relay = world.relay_forwarded() - before;
    match expect {
        Path::Relay => assert!(
            through_relay >= 4_000_000,
            "a relayed transfer of 4 MB: the relay forwarded only {through_relay} bytes\n{}",
            world.report()
        ),
        Path::Direct | Path::Lan => assert!(
            through_relay < 1_000_000,
            "a {expect:?} transfer of 4 MB: the relay forwarded {through_relay} bytes\n{}",
            world.report()
        ),
    }

    world.routers[0].flush_conntrack();
    world.transfer(2_000_000);
    world.wait_path(expect);
    world.transfer(2_000_000);
}

#[test]
fn cell_port_restricted_both_direct() {
    if !require_root() {
        return;
    }
    cell(
        Site::Behind(Nat::PortRestricted),
        Site::Behind(Nat::PortRestricted),
        Path::Direct,
    );
}

#[test]
fn cell_full_cone_and_symmetric_direct() {
    if !require_root() {
        return;
    }
    cell(
        Site::Behind(Nat::FullCone),
        Site::Behind(Nat::Symmetric),
        Path::Direct,
    );
}

#[test]
fn cell_symmetric_both_relayed() {
    if !require_root() {
        return;
    }
    cell(
        Site::Behind(Nat::Symmetric),
        Site::Behind(Nat::Symmetric),
        Path::Relay,
    );
}

/// CGNAT(EIM) + home NAT(EIM) against a port-restricted cone: the matrix says direct.
#[test]
fn cell_double_nat_and_port_restricted_direct() {
    if !require_root() {
        return;
    }
    cell(
        Site::DoubleNat,
        Site::Behind(Nat::PortRestricted),
        Path::Direct,
    );
}

/// CGNAT(EIM) + home NAT(EIM) against a symmetric NAT: the matrix says relayed.
#[test]
fn cell_double_nat_and_symmetric_relayed() {
    if !require_root() {
        return;
    }
    cell(Site::DoubleNat, Site::Behind(Nat::Symmetric), Path::Relay);
}

#[test]
fn cell_same_lan() {
    if !require_root() {
        return;
    }
    cell(Site::Behind(Nat::PortRestricted), Site::SameLan, Path::Lan);
}

#[test]
fn cell_udp_blocked_relayed() {
    if !require_root() {
        return;
    }
    cell(
        Site::Behind(Nat::UdpBlockedExcept("203.0.113.20".into())),
        Site::Behind(Nat::PortRestricted),
        Path::Relay,
    );
}

/// Starts `wg-tests-nat capture IFACE MARKER END` in `ns`; returns once it listens.
pub(super) fn capture(ns: &Sandbox, iface: &str) -> Background {
    capture_args(ns, &["capture", iface, MARKER, CAPTURE_END])
}

/// [`capture`] that also saves every control message (hex lines) to `file` (a host path).
pub(super) fn capture_saving(ns: &Sandbox, iface: &str, file: &std::path::Path) -> Background {
    let file = file.to_str().expect("UTF-8");
    capture_args(ns, &["capture", iface, MARKER, CAPTURE_END, "--save", file])
}

fn capture_args(ns: &Sandbox, args: &[&str]) -> Background {
    let mut cap = ns.spawn(&nat_tool(), args);
    assert_eq!(cap.expect_line(Duration::from_secs(10)), "listening");
    cap
}

/// Ends a capture: `from` (a public namespace with address `src`) sends the end datagram to
/// `dst`; returns (udp frames, foreign datagrams, frames with the marker).
pub(super) fn end_capture(
    mut cap: Background,
    from: &Sandbox,
    src: &str,
    dst: &str,
    world: &World,
) -> [u64; 3] {
    // Sent until the capture has seen it (a datagram could meet a full queue on the way).
    let start = Instant::now();
    while cap.try_status().is_none() && start.elapsed() < Duration::from_secs(30) {
        let out = from.run(
            xfer().to_str().expect("UTF-8"),
            &["udp-send", src, dst, CAPTURE_END],
        );
        out.assert_code(0, "udp-send the capture's end");
        thread::sleep(Duration::from_millis(300));
    }
    let done = cap.wait(Duration::from_secs(5), || world.report());
    assert!(done.status.success(), "{done:?}");
    let words: Vec<&str> = done.lines[0].split_whitespace().collect();
    let field = |name: &str| -> u64 {
        let i = words.iter().position(|w| *w == name).expect("field");
        words[i + 1].parse().expect("number")
    };
    assert_eq!(field("drops"), 0, "the capture lost frames: {done:?}");
    [field("udp"), field("foreign"), field("marker")]
}

/// A plaintext marker sent through the tunnel (16 bytes, for `ping -p`).
pub(super) const MARKER: &str = "PLAINTEXT-MARK16";

/// The datagram that ends a capture.
pub(super) const CAPTURE_END: &str = "capture-end-7f3a";

fn marker_hex() -> String {
    MARKER.bytes().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Security: what the relay's interface carries during a relayed exchange is ciphertext. A
/// marker goes through the tunnel many times (pings padded with it, both ways), and once in
/// the clear past the relay (the control: the capture does see plaintext when there is some).
#[test]
fn relay_sees_only_ciphertext() {
    if !require_root() {
        return;
    }
    let world = World::new(&Site::Behind(Nat::Symmetric), &Site::Behind(Nat::Symmetric));
    world.wait_path(Path::Relay);
    let cap = capture(&world.relay_ns, "eth0");
    let (a, b) = (&world.peers[0], &world.peers[1]);
    let pattern = marker_hex();
    let ping = a.ns.run(
        "ping",
        &[
            "-c", "20", "-i", "0.2", "-W", "5", "-s", "1000", "-p", &pattern, &b.inner,
        ],
    );
    assert_eq!(ping.code(), Some(0), "{ping:?}\n{}", world.report());
    world.transfer(1_000_000);
    // The control: the marker in the clear, from router A's public address to the relay's port
    // (which drops it quietly: a closed port's ICMP error would quote it a second time).
    let router_a = &world.routers[0];
    let clear = router_a.ns.run(
        xfer().to_str().expect("UTF-8"),
        &["udp-send", &router_a.wan_ip, RELAY, MARKER],
    );
    clear.assert_code(0, "udp-send the clear marker");
    let [udp, foreign, marker] = end_capture(
        cap,
        &router_a.ns,
        &router_a.wan_ip,
        "203.0.113.20:9",
        &world,
    );
    assert!(udp > 40, "the relay carried the exchange: {udp} UDP frames");
    assert_eq!(
        marker, 1,
        "frames with the plaintext marker on the relay: only the clear control may have it"
    );
    // Relayed WireGuard travels wrapped in our relay header, so it is `foreign` here.
    let _ = foreign;
}

/// Interop: a stock wireguard-go peer P on a public address, with no endpoint for A, and A a
/// traversal-enabled wg-tunnel (relay configured, a traversed peer B) that has P as a static
/// peer: data flows A ↔ P, and P's interface carries nothing but WireGuard messages.
#[test]
fn stock_wireguard_go_peer_with_static_endpoint() {
    if !require_root() {
        return;
    }
    let world = World::build(
        &Site::Behind(Nat::PortRestricted),
        &Site::Behind(Nat::PortRestricted),
    );
    let p_ns = world._internet.public_host(&[40]);
    let _p_dev = p_ns.start_wireguard_go("wg0");
    let (p_private, p_public) = keypair();
    let key_file = world.dir.path().join("p.key");
    std::fs::write(&key_file, &p_private).expect("write key");
    let a = &world.peers[0];
    let allowed = format!("{}/32", a.inner);
    let wg = Invocation::new([
        "set",
        "wg0",
        "private-key",
        key_file.to_str().expect("UTF-8"),
        "listen-port",
        "51820",
        "peer",
        &a.public,
        "allowed-ips",
        &allowed,
    ])
    .in_sandbox(&p_ns)
    .run(&reference_wg());
    wg.assert_code(0, "wg set on P");
    p_ns.ip("addr add 10.77.0.3/24 dev wg0");
    p_ns.ip("link set wg0 up");
    let cap = capture(&p_ns, "eth0");

    world.up(
        0,
        &format!("\n[Peer]\nPublicKey = {p_public}\nAllowedIPs = 10.77.0.3/32\nEndpoint = 203.0.113.40:51820\n"),
    );
    world.up(1, "");
    let start = Instant::now();
    while a
        .ns
        .run("ping", &["-c", "1", "-W", "2", "10.77.0.3"])
        .code()
        != Some(0)
    {
        assert!(
            start.elapsed() < TRANSFER_DEADLINE,
            "A never reached P\n{}",
            world.report()
        );
    }
    // A checksummed transfer A → P.
    let mut receiver = p_ns.spawn(&xfer(), &["recv", "0.0.0.0:5003"]);
    assert_eq!(receiver.expect_line(Duration::from_secs(10)), "listening");
    let sender =
        a.ns.spawn(&xfer(), &["send", "10.77.0.3:5003", "2000000", "3"]);
    let sent = sender.wait(TRANSFER_DEADLINE, || world.report());
    let received = receiver.wait(TRANSFER_DEADLINE, || world.report());
    assert!(
        sent.status.success() && received.status.success(),
        "{sent:?} {received:?}"
    );
    assert_eq!(sent.lines, received.lines, "digests differ");
    // P answers too.
    let back = p_ns.run("ping", &["-c", "1", "-W", "5", &a.inner]);
    assert_eq!(back.code(), Some(0), "P to A: {back:?}");
    // Meanwhile the traversed peer works as ever.
    world.wait_path(Path::Direct);
    world.transfer(1_000_000);
    // P is not traversed and keeps its static endpoint.
    assert!(
        a.nat_report()
            .lines()
            .all(|l| l != format!("public_key={}", hex(&p_public))),
        "P is not traversed:\n{}",
        a.nat_report()
    );
    assert_eq!(
        a.paths_line(&p_public),
        Some(["static".to_owned(), "203.0.113.40:51820".to_owned()]),
        "wg show wg0 paths for P"
    );
    let [udp, foreign, _] = end_capture(
        cap,
        &world.relay_ns,
        "203.0.113.20",
        "203.0.113.40:9",
        &world,
    );
    assert!(
        udp > 10,
        "P's interface carried the exchange: {udp} UDP frames"
    );
    assert_eq!(
        foreign, 0,
        "P received datagrams that are not WireGuard messages"
    );
}

/// The direct path dies (A's host starts dropping non-relay UDP) in the middle of a stream:
/// the peers fall back to the relay and the stream goes on intact; when the direct path comes
/// back they go direct again.
#[test]
fn direct_path_dies_falls_back_to_relay_and_returns() {
    if !require_root() {
        return;
    }
    let world = World::new(
        &Site::Behind(Nat::PortRestricted),
        &Site::Behind(Nat::PortRestricted),
    );
    world.wait_path(Path::Direct);
    let stream = world.stream();
    let start = world.peers[1].rx_bytes();
    wait_until("the stream to flow", TRANSFER_DEADLINE, || {
        world.peers[1].rx_bytes() > start + 500_000
    });
    world.block_direct(0, true);
    world.wait_path(Path::Relay);
    let relayed = world.relay_forwarded();
    wait_until(
        "the stream to move 500 kB through the relay",
        TRANSFER_DEADLINE,
        || world.relay_forwarded() > relayed + 500_000,
    );
    world.block_direct(0, false);
    world.wait_path(Path::Direct);
    world.assert_path_leads(Path::Direct);
    let settled = world.peers[1].rx_bytes();
    wait_until(
        "the stream to move 500 kB direct again",
        TRANSFER_DEADLINE,
        || world.peers[1].rx_bytes() > settled + 500_000,
    );
    assert!(stream.finish(&world) > 0);
}
