//! Our userspace daemon `wg-tunnel` end to end: real TUN devices, real encryption, two network
//! namespaces joined by veth, against itself, the reference `wireguard-go` and boringtun,
//! configured with the reference `/usr/bin/wg` and with ours (root only; each test prints a
//! skip message otherwise).
//!
//! ```text
//!   +----------- Sandbox A ------------+      +----------- Sandbox B ------------+
//!   | wg0 <- IMPL_A (the initiator)    |      | wg0 <- IMPL_B (the responder)    |
//!   |   10.9.0.1/24  fd00:9::1/64      |      |   10.9.0.2/24  fd00:9::2/64      |
//!   |   listen 51820, endpoint of B    |      |   listen 51820, learns A's       |
//!   | veth-a 10.0.0.1/24  fd00::1/64 --+------+-- veth-b 10.0.0.2/24  fd00::2/64 |
//!   +----------------------------------+      +----------------------------------+
//!   wg-tests-xfer send 10.9.0.2:5001  ──TCP in the tunnel──►  wg-tests-xfer recv [::]:5001
//! ```
//!
//! * `pairs`: every pair pings both ways (IPv4 and IPv6 inside), then moves 100 MB over TCP,
//!   compared by BLAKE2s digest; outer IPv4 or IPv6; configured by either `wg`.
//! * `roaming`: A's outer address changes mid-transfer; the transfer completes and B's
//!   `wg show` endpoint follows.
//! * `allowed_ips`: cryptokey routing both ways, proven by what arrives and by counters.
//! * `keys`: a private key change drops the old identity's sessions; keepalive turned on at
//!   runtime reaches the peer.
//! * `fastpath`: the fast path is taken: TSO/USO/checksum offloads on the TUN device
//!   (`ethtool -k`), and under 250 system calls per MB moved per daemon (`perf stat`).
//! * `lifecycle`: `ip link del`, SIGTERM, socket deletion, daemonising; no process left.
//! * `gso_fallback`: a path narrower than wg0's datagrams makes the kernel refuse every UDP GSO
//!   message (`EMSGSIZE`); the daemons resend singly: pings and 20 MB each way per underlay
//!   family arrive, the refusals and resends counted by `perf stat`.
//! * `tso_refused`: A's wg-tunnel under a seccomp filter that refuses `TUNSETOFFLOAD` (then
//!   `TUNSETVNETHDRSZ`) falls back to plain packets (logged; `ethtool -k` shows TSO off):
//!   pings, 20 MB each way, an MTU change, against wg-tunnel and wireguard-go.
//! * `mangled`: through a seeded proxy that reorders, delays, duplicates and replays (never
//!   alters): pings, odd-sized datagrams exactly once, 20 MB each way at odd MSSes.
//! * `privileges`: after setup only `CAP_NET_ADMIN` and `CAP_NET_BIND_SERVICE` are left, in
//!   every thread; ports below 1024, fwmark and traffic still work; started with less, it
//!   keeps what it has.
//! * `transfer`: `wg show` rx/tx byte counters after a handshake and known pings, exact, the
//!   same for every pair of wg-tunnel and wireguard-go; a spoofed inner source is not counted
//!   (the kernel's rule; wireguard-go counts it).
//! * `uapi`: `setconf`/`showconf` against wireguard-go's; bad UAPI input (errno replies or a
//!   closed connection, the daemon keeps serving, the state is unchanged).

mod allowed_ips;
mod fastpath;
mod gso_fallback;
mod keys;
mod lifecycle;
mod mangled;
mod pairs;
mod privileges;
mod roaming;
mod transfer;
mod tso_refused;
mod uapi;

use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use wg_tests::{our_wg, reference_wg, xfer, Background, Invocation, Sandbox, UserspaceDevice};

/// How long a condition polled for may take.
const DEADLINE: Duration = Duration::from_secs(10);

/// How long a 100 MB transfer may take (a generous bound on 2 busy cores, not a measure).
const TRANSFER_DEADLINE: Duration = Duration::from_secs(240);

/// The size of the bulk transfers.
const TRANSFER_BYTES: u64 = 100_000_000;

/// Polls `cond` every few milliseconds until it holds; panics with `what` after [`DEADLINE`].
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// A key pair from the reference `wg`: (private base64, public base64), both trimmed.
fn keypair() -> (String, String) {
    let wg = reference_wg();
    let private = Invocation::new(["genkey"]).run(&wg).stdout_str();
    let public = Invocation::new(["pubkey"])
        .stdin(private.as_bytes())
        .run(&wg)
        .stdout_str();
    (private.trim().to_owned(), public.trim().to_owned())
}

/// Runs `wg` (the program at `tool`) inside `sandbox`; panics unless it exits 0.
fn wg_with(tool: &std::path::Path, sandbox: &Sandbox, args: &[&str]) -> String {
    let out = Invocation::new(args).in_sandbox(sandbox).run(tool);
    out.assert_code(0, &format!("{} {}", tool.display(), args.join(" ")));
    out.stdout_str()
}

/// Runs the reference `wg` inside `sandbox`; panics unless it exits 0.
fn wg(sandbox: &Sandbox, args: &[&str]) -> String {
    wg_with(&reference_wg(), sandbox, args)
}

/// A userspace WireGuard implementation under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Impl {
    /// Ours.
    WgTunnel,
    /// Debian's wireguard-go.
    WireguardGo,
    /// boringtun-cli from crates.io.
    Boringtun,
}

impl Impl {
    fn start(self, sandbox: &Sandbox) -> UserspaceDevice {
        match self {
            Impl::WgTunnel => sandbox.start_wg_tunnel("wg0"),
            Impl::WireguardGo => sandbox.start_wireguard_go("wg0"),
            Impl::Boringtun => sandbox.start_boringtun("wg0"),
        }
    }
}

/// Which `wg` configures the devices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tool {
    /// `/usr/bin/wg`.
    Reference,
    /// `target/<profile>/wg`.
    Ours,
}

impl Tool {
    fn path(self) -> PathBuf {
        match self {
            Tool::Reference => reference_wg(),
            Tool::Ours => our_wg(),
        }
    }
}

/// Address family of the underlay (outer) or of the tunnelled (inner) traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

/// Addresses of one side.
struct Addrs {
    outer4: &'static str,
    outer6: &'static str,
    inner4: &'static str,
    inner6: &'static str,
}

const A: Addrs = Addrs {
    outer4: "10.0.0.1",
    outer6: "fd00::1",
    inner4: "10.9.0.1",
    inner6: "fd00:9::1",
};

const B: Addrs = Addrs {
    outer4: "10.0.0.2",
    outer6: "fd00::2",
    inner4: "10.9.0.2",
    inner6: "fd00:9::2",
};

impl Addrs {
    fn outer(&self, family: Family) -> &'static str {
        match family {
            Family::V4 => self.outer4,
            Family::V6 => self.outer6,
        }
    }
    fn inner(&self, family: Family) -> &'static str {
        match family {
            Family::V4 => self.inner4,
            Family::V6 => self.inner6,
        }
    }
}

/// Waits until no IPv6 address in `sandbox` is tentative. Even `nodad` addresses stay
/// tentative until the kernel's address-configuration work runs, which lags on a loaded
/// machine; until then they can be neither a source nor a destination.
fn ipv6_settled(sandbox: &Sandbox) {
    wait_for("IPv6 addresses to leave the tentative state", || {
        let out = sandbox.run("ip", &["-6", "-o", "addr", "show", "tentative"]);
        out.code() == Some(0) && out.stdout.is_empty()
    });
}

/// `/usr/bin/perf` (linux-perf, which `scripts/test.sh` installs), for the tests that count
/// a daemon's system calls; fails the test when it is missing.
fn perf() -> &'static std::path::Path {
    let perf = std::path::Path::new("/usr/bin/perf");
    assert!(
        perf.is_file(),
        "{} not found: install linux-perf (scripts/test.sh does)",
        perf.display()
    );
    perf
}

/// `ip:port`, bracketing IPv6.
fn sockaddr(ip: &str, port: u16) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

/// How to build a [`Net`].
#[derive(Clone, Copy, Debug)]
struct Setup {
    a: Impl,
    b: Impl,
    tool: Tool,
    underlay: Family,
    /// Whether B is configured with A's endpoint. Without it only A can start a handshake:
    /// A is the initiator and B learns A's endpoint from it.
    b_knows_a: bool,
}

impl Setup {
    fn new(a: Impl, b: Impl, tool: Tool) -> Setup {
        Setup {
            a,
            b,
            tool,
            underlay: Family::V4,
            b_knows_a: false,
        }
    }
}

/// Two sandboxes joined by veth (`veth-a` 10.0.0.1/24 fd00::1/64, `veth-b` .2), a `wg0` in
/// each, peers of each other, addressed and up. See the module diagram.
struct Net {
    // Devices first: they are killed before their sandboxes go.
    dev_a: UserspaceDevice,
    dev_b: UserspaceDevice,
    a: Sandbox,
    b: Sandbox,
    pub_a: String,
    pub_b: String,
    setup: Setup,
}

impl Net {
    fn new(setup: Setup) -> Net {
        Net::new_starting_a(setup, |sandbox| setup.a.start(sandbox))
    }

    /// [`Net::new`] with A's daemon started by `start_a` (`setup.a` only names it in logs),
    /// e.g. through a wrapper program.
    fn new_starting_a(setup: Setup, start_a: impl FnOnce(&Sandbox) -> UserspaceDevice) -> Net {
        let (a, b) = (Sandbox::new(), Sandbox::new());
        a.veth("veth-a", &b, "veth-b");
        for (sandbox, me, dev) in [(&a, &A, "veth-a"), (&b, &B, "veth-b")] {
            sandbox.ip(&format!("addr add {}/24 dev {dev}", me.outer4));
            sandbox.ip(&format!("addr add {}/64 dev {dev} nodad", me.outer6));
        }
        let (dev_a, dev_b) = (start_a(&a), setup.b.start(&b));
        let ((priv_a, pub_a), (priv_b, pub_b)) = (keypair(), keypair());
        let net = Net {
            dev_a,
            dev_b,
            a,
            b,
            pub_a,
            pub_b,
            setup,
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let sides = [
            (&net.a, &A, &priv_a, &net.pub_b, &B, true),
            (&net.b, &B, &priv_b, &net.pub_a, &A, setup.b_knows_a),
        ];
        for (sandbox, me, private, peer_pub, peer, with_endpoint) in sides {
            let key_file = dir.path().join(format!("key-{}", sandbox.pid()));
            std::fs::write(&key_file, private).expect("write key");
            let key_file = key_file.to_str().expect("UTF-8 path");
            let allowed = format!("{}/32,{}/128", peer.inner4, peer.inner6);
            let endpoint = sockaddr(peer.outer(setup.underlay), 51820);
            #[rustfmt::skip]
            let mut args = vec![
                "set", "wg0", "private-key", key_file, "listen-port", "51820",
                "peer", peer_pub, "allowed-ips", &allowed,
            ];
            if with_endpoint {
                args.extend(["endpoint", &endpoint]);
            }
            net.wg(sandbox, &args);
            sandbox.ip(&format!("addr add {}/24 dev wg0", me.inner4));
            sandbox.ip(&format!("addr add {}/64 dev wg0 nodad", me.inner6));
            sandbox.ip("link set wg0 up");
        }
        for sandbox in [&net.a, &net.b] {
            ipv6_settled(sandbox);
        }
        net
    }

    /// Runs the configured `wg` in `sandbox`; panics unless it exits 0.
    fn wg(&self, sandbox: &Sandbox, args: &[&str]) -> String {
        wg_with(&self.setup.tool.path(), sandbox, args)
    }

    /// Both daemons' logs, for failure messages.
    fn logs(&self) -> String {
        format!(
            "log A ({:?}):\n{}\n---\nlog B ({:?}):\n{}",
            self.setup.a,
            self.dev_a.log(),
            self.setup.b,
            self.dev_b.log()
        )
    }

    /// Pings `dst` once from `sandbox`; panics with both daemons' logs on failure.
    fn ping(&self, sandbox: &Sandbox, dst: &str) {
        let out = sandbox.run("ping", &["-c", "1", "-W", "5", dst]);
        if out.code() != Some(0) {
            panic!("ping {dst} failed:\n{out:?}\n{}", self.logs());
        }
    }

    /// The one peer line of `wg show wg0 dump` (public-key, psk, endpoint, allowed-ips,
    /// latest-handshake, rx, tx, keepalive).
    fn dump_peer(&self, sandbox: &Sandbox) -> Vec<String> {
        let dump = self.wg(sandbox, &["show", "wg0", "dump"]);
        let lines: Vec<&str> = dump.lines().collect();
        assert_eq!(lines.len(), 2, "one interface and one peer line:\n{dump}");
        lines[1].split('\t').map(str::to_owned).collect()
    }

    /// (rx, tx) bytes of the one peer of `sandbox`.
    fn transfer_counters(&self, sandbox: &Sandbox) -> (u64, u64) {
        let peer = self.dump_peer(sandbox);
        (
            peer[5].parse().expect("rx bytes"),
            peer[6].parse().expect("tx bytes"),
        )
    }

    /// Starts a TCP transfer of `bytes` from `from` to the receiver it starts in `to` on
    /// `dst:5001`. Finish it with [`Transfer::finish`].
    fn start_transfer(&self, from: &Sandbox, to: &Sandbox, dst: &str, bytes: u64) -> Transfer {
        let xfer = xfer();
        let mut receiver = to.spawn(&xfer, &["recv", "[::]:5001"]);
        assert_eq!(receiver.expect_line(DEADLINE), "listening");
        let dest = sockaddr(dst, 5001);
        let sender = from.spawn(&xfer, &["send", &dest, &bytes.to_string(), "7"]);
        Transfer {
            sender,
            receiver,
            bytes,
            started: Instant::now(),
        }
    }
}

/// A TCP transfer in progress.
struct Transfer {
    sender: Background,
    receiver: Background,
    bytes: u64,
    started: Instant,
}

impl Transfer {
    /// Waits for both ends; panics unless both saw `bytes` bytes with the same digest.
    /// Returns how long it took (printed for the record, never asserted).
    fn finish(self, net: &Net) -> Duration {
        let sent = self.sender.wait(TRANSFER_DEADLINE, || net.logs());
        let received = self.receiver.wait(TRANSFER_DEADLINE, || net.logs());
        let elapsed = self.started.elapsed();
        assert!(
            sent.status.success() && received.status.success(),
            "transfer failed:\nsender: {sent:?}\nreceiver: {received:?}\n{}",
            net.logs()
        );
        let expected = self.bytes.to_string();
        assert_eq!(sent.lines.len(), 1, "sender: {sent:?}");
        assert_eq!(received.lines.len(), 1, "receiver: {received:?}");
        assert!(
            sent.lines[0].starts_with(&format!("{expected} ")),
            "sender: {sent:?}"
        );
        assert_eq!(
            received.lines[0], sent.lines[0],
            "bytes and digest received (left) differ from those sent (right)"
        );
        eprintln!(
            "transfer {:?}: {} bytes in {:.1?} ({:.0} Mbit/s)",
            net.setup,
            self.bytes,
            elapsed,
            self.bytes as f64 * 8.0 / elapsed.as_secs_f64() / 1e6
        );
        elapsed
    }
}
