//! Our userspace daemon `wg-tunnel` against the reference `wireguard-go` and against itself,
//! configured with the reference `/usr/bin/wg` (root only; each test prints a skip message
//! otherwise).
//!
//! ```text
//!   +----------- Sandbox A ------------+      +----------- Sandbox B ------------+
//!   | wg0 <- wg-tunnel -f wg0          |      | wg0 <- wireguard-go or wg-tunnel |
//!   |   10.9.0.1/24  fd00:9::1/64      |      |   10.9.0.2/24  fd00:9::2/64      |
//!   |   listen 51820                   |      |   listen 51820                   |
//!   | veth-a 10.0.0.1/24 --------------+------+-------------- veth-b 10.0.0.2/24 |
//!   +----------------------------------+      +----------------------------------+
//!   ping both ways inside the tunnel, IPv4 and IPv6; then `wg show` counters and handshake.
//! ```
//!
//! Lifecycle tests check that the daemon exits and removes its socket on `ip link del` and on
//! SIGTERM, that it exits when its socket file is deleted, and that without `-f` it returns only once the interface and socket exist. The
//! UAPI conformance test replays one `wg setconf` against both daemons and compares
//! `wg showconf`.

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use wg_tests::{our_wg_tunnel, reference_wg, require_root, Invocation, Sandbox, UserspaceDevice};

/// How long a condition polled for may take.
const DEADLINE: Duration = Duration::from_secs(10);

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

/// Runs the reference `wg` inside `sandbox`; panics unless it exits 0.
fn wg(sandbox: &Sandbox, args: &[&str]) -> String {
    let out = Invocation::new(args)
        .in_sandbox(sandbox)
        .run(&reference_wg());
    out.assert_code(0, &format!("wg {}", args.join(" ")));
    out.stdout_str()
}

/// One side of a tunnel: which address it has and how its peer is reached.
struct Side<'a> {
    sandbox: &'a Sandbox,
    private: String,
    public: String,
    v4: &'a str,
    v6: &'a str,
    underlay: &'a str,
}

/// Two sandboxes joined by veth, `wg0` started in each by `start_a` / `start_b`, configured
/// as peers of each other with the reference `wg`, addressed and up.
fn tunnel_pair(
    a: &Sandbox,
    b: &Sandbox,
    start_a: impl Fn(&Sandbox) -> UserspaceDevice,
    start_b: impl Fn(&Sandbox) -> UserspaceDevice,
) -> (UserspaceDevice, UserspaceDevice) {
    a.veth("veth-a", b, "veth-b");
    a.ip("addr add 10.0.0.1/24 dev veth-a");
    b.ip("addr add 10.0.0.2/24 dev veth-b");
    let (dev_a, dev_b) = (start_a(a), start_b(b));
    let ((priv_a, pub_a), (priv_b, pub_b)) = (keypair(), keypair());
    let side_a = Side {
        sandbox: a,
        private: priv_a,
        public: pub_a,
        v4: "10.9.0.1",
        v6: "fd00:9::1",
        underlay: "10.0.0.1",
    };
    let side_b = Side {
        sandbox: b,
        private: priv_b,
        public: pub_b,
        v4: "10.9.0.2",
        v6: "fd00:9::2",
        underlay: "10.0.0.2",
    };
    let dir = tempfile::tempdir().expect("temp dir");
    for (me, peer) in [(&side_a, &side_b), (&side_b, &side_a)] {
        let key_file = dir.path().join(format!("key-{}", me.sandbox.pid()));
        std::fs::write(&key_file, &me.private).expect("write key");
        let key_file = key_file.to_str().expect("UTF-8 path");
        let endpoint = format!("{}:51820", peer.underlay);
        let allowed = format!("{}/32,{}/128", peer.v4, peer.v6);
        #[rustfmt::skip]
        wg(me.sandbox, &[
            "set", "wg0", "private-key", key_file, "listen-port", "51820",
            "peer", &peer.public, "endpoint", &endpoint, "allowed-ips", &allowed,
        ]);
        me.sandbox.ip(&format!("addr add {}/24 dev wg0", me.v4));
        me.sandbox
            .ip(&format!("addr add {}/64 dev wg0 nodad", me.v6));
        me.sandbox.ip("link set wg0 up");
    }
    (dev_a, dev_b)
}

/// Pings `dst` once from `sandbox`; panics with both daemons' logs on failure.
fn ping(sandbox: &Sandbox, dst: &str, devs: &[&UserspaceDevice]) {
    let out = sandbox.run("ping", &["-c", "1", "-W", "5", dst]);
    if out.code() != Some(0) {
        let logs: Vec<String> = devs.iter().map(|d| d.log()).collect();
        panic!(
            "ping {dst} failed:\n{out:?}\nlogs:\n{}",
            logs.join("\n---\n")
        );
    }
}

/// The one peer line of `wg show wg0 dump`, split on tabs.
fn dump_peer(sandbox: &Sandbox) -> Vec<String> {
    let dump = wg(sandbox, &["show", "wg0", "dump"]);
    let lines: Vec<&str> = dump.lines().collect();
    assert_eq!(lines.len(), 2, "one interface and one peer line:\n{dump}");
    lines[1].split('\t').map(str::to_owned).collect()
}

/// Pings all four ways and checks `wg show` on both sides.
fn exercise(a: &Sandbox, b: &Sandbox, devs: &[&UserspaceDevice]) {
    ping(a, "10.9.0.2", devs);
    ping(b, "10.9.0.1", devs);
    ping(a, "fd00:9::2", devs);
    ping(b, "fd00:9::1", devs);
    for sandbox in [a, b] {
        // public-key psk endpoint allowed-ips latest-handshake rx tx keepalive
        let peer = dump_peer(sandbox);
        assert_ne!(peer[4], "0", "no handshake recorded: {peer:?}");
        let rx: u64 = peer[5].parse().expect("rx bytes");
        let tx: u64 = peer[6].parse().expect("tx bytes");
        // Four echo exchanges of at least 32 bytes of transport data each, plus a handshake.
        assert!(rx > 4 * 32 && tx > 4 * 32, "counters too small: {peer:?}");
    }
}

#[test]
fn tunnel_against_wireguard_go() {
    if !require_root() {
        return;
    }
    let (a, b) = (Sandbox::new(), Sandbox::new());
    let (dev_a, dev_b) = tunnel_pair(
        &a,
        &b,
        |s| s.start_wg_tunnel("wg0"),
        |s| s.start_wireguard_go("wg0"),
    );
    exercise(&a, &b, &[&dev_a, &dev_b]);
}

#[test]
fn tunnel_against_itself() {
    if !require_root() {
        return;
    }
    let (a, b) = (Sandbox::new(), Sandbox::new());
    let (dev_a, dev_b) = tunnel_pair(
        &a,
        &b,
        |s| s.start_wg_tunnel("wg0"),
        |s| s.start_wg_tunnel("wg0"),
    );
    exercise(&a, &b, &[&dev_a, &dev_b]);
}

#[test]
fn tunnel_exits_when_link_deleted() {
    if !require_root() {
        return;
    }
    let sandbox = Sandbox::new();
    let mut dev = sandbox.start_wg_tunnel("wg0");
    sandbox.ip("link del wg0");
    wait_for("wg-tunnel to exit after ip link del", || {
        dev.try_status().is_some()
    });
    let status = dev.try_status().expect("exited");
    assert!(status.success(), "{status}\nlog:\n{}", dev.log());
    assert!(!dev.socket_host_path().exists(), "socket left behind");
}

#[test]
fn tunnel_exits_on_sigterm() {
    if !require_root() {
        return;
    }
    let sandbox = Sandbox::new();
    let mut dev = sandbox.start_wg_tunnel("wg0");
    let status = dev.terminate(DEADLINE);
    assert!(status.success(), "{status}\nlog:\n{}", dev.log());
    assert!(!dev.socket_host_path().exists(), "socket left behind");
    let links = sandbox.run("ip", &["-o", "link", "show"]).stdout_str();
    assert!(!links.contains("wg0"), "interface left behind:\n{links}");
}

/// Deleting the UAPI socket file stops the daemon (wireguard-go watches it with inotify), and
/// the interface goes with it.
#[test]
fn tunnel_exits_when_socket_deleted() {
    if !require_root() {
        return;
    }
    let sandbox = Sandbox::new();
    let mut dev = sandbox.start_wg_tunnel("wg0");
    std::fs::remove_file(dev.socket_host_path()).expect("remove socket");
    wait_for("wg-tunnel to exit after its socket was deleted", || {
        dev.try_status().is_some()
    });
    let status = dev.try_status().expect("exited");
    assert!(status.success(), "{status}\nlog:\n{}", dev.log());
    let links = sandbox.run("ip", &["-o", "link", "show"]).stdout_str();
    assert!(!links.contains("wg0"), "interface left behind:\n{links}");
}

/// Without `-f` the command returns once the interface and the socket (mode `srwx------` in a
/// 0755 directory) exist, and the daemon keeps running until the link is deleted.
#[test]
fn tunnel_daemonizes() {
    if !require_root() {
        return;
    }
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let sandbox = Sandbox::new();
    let out = Invocation::new(["wg1"])
        .arg0("wg-tunnel")
        .in_sandbox(&sandbox)
        .timeout(DEADLINE)
        .run(&our_wg_tunnel());
    out.assert_code(0, "wg-tunnel wg1");
    let socket = sandbox.host_path("/run/wireguard/wg1.sock");
    let meta = std::fs::symlink_metadata(&socket).expect("socket exists on return");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o700);
    let dir = std::fs::metadata(sandbox.host_path("/run/wireguard")).expect("socket dir");
    assert_eq!(dir.permissions().mode() & 0o777, 0o755);
    sandbox.ip("link show wg1");
    assert_eq!(wg(&sandbox, &["show", "interfaces"]), "wg1\n");
    sandbox.ip("link del wg1");
    wait_for("the daemon to remove its socket", || {
        !socket_exists(&socket)
    });
}

fn socket_exists(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

/// `wg setconf` then `wg showconf` give the same text against wg-tunnel as against
/// wireguard-go, and `set` lines that change an existing configuration too.
#[test]
fn tunnel_uapi_setconf_showconf_matches_wireguard_go() {
    if !require_root() {
        return;
    }
    let (ours, theirs) = (Sandbox::new(), Sandbox::new());
    let _dev_ours = ours.start_wg_tunnel("wg0");
    let _dev_theirs = theirs.start_wireguard_go("wg0");
    let (private, _) = keypair();
    let (_, peer1) = keypair();
    let (_, peer2) = keypair();
    let (psk, _) = keypair();
    let conf = format!(
        "[Interface]\nPrivateKey = {private}\nListenPort = 51821\nFwMark = 0x1234\n\n\
         [Peer]\nPublicKey = {peer1}\nPresharedKey = {psk}\nAllowedIPs = 10.1.0.0/16, fd00:1::/64\n\
         Endpoint = 192.0.2.1:51820\nPersistentKeepalive = 25\n\n\
         [Peer]\nPublicKey = {peer2}\nAllowedIPs = 10.2.0.1/32\nEndpoint = [2001:db8::1]:1234\n"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let conf_file = dir.path().join("wg0.conf");
    std::fs::write(&conf_file, conf).expect("write config");
    let conf_file = conf_file.to_str().expect("UTF-8 path");
    let (_, peer3) = keypair();
    #[rustfmt::skip]
    let steps: Vec<Vec<&str>> = vec![
        vec!["setconf", "wg0", conf_file],
        // Moves a prefix between peers, drops a PSK, changes the port, adds and removes peers.
        vec!["set", "wg0", "listen-port", "51822", "peer", &peer2, "allowed-ips",
             "10.2.0.1/32,10.1.0.0/16", "peer", &peer1, "preshared-key", "/dev/null",
             "persistent-keepalive", "off", "peer", &peer3, "allowed-ips", "10.3.0.0/24"],
        vec!["set", "wg0", "fwmark", "0", "peer", &peer2, "remove"],
    ];
    for step in &steps {
        wg(&ours, step);
        wg(&theirs, step);
        let (a, b) = (
            peers_sorted(&wg(&ours, &["showconf", "wg0"])),
            peers_sorted(&wg(&theirs, &["showconf", "wg0"])),
        );
        assert_eq!(
            a,
            b,
            "after wg {}: ours (left) vs wireguard-go",
            step.join(" ")
        );
    }
}

/// `showconf` output with the `[Peer]` sections sorted: wireguard-go lists peers in Go map
/// order, which is random.
fn peers_sorted(conf: &str) -> String {
    let mut sections: Vec<&str> = conf.trim_end().split("\n\n").collect();
    sections[1..].sort_unstable();
    sections.join("\n\n")
}
