//! `wg-tunnel` behaviour that needs the OS, driven through the reference `wg` (root only):
//! runtime listen-port changes (random, conflicting), fwmark on the live socket, the MTU
//! followed from `ip link set … mtu`, and a tunnel that keeps working across a port change.

use std::thread;
use std::time::{Duration, Instant};

use wg_tests::{reference_wg, require_root, Invocation, Sandbox};

const DEADLINE: Duration = Duration::from_secs(10);

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// Runs the reference `wg` in `sandbox` and returns the outcome's (code, stdout, stderr).
fn wg(sandbox: &Sandbox, args: &[&str], stdin: &str) -> (Option<i32>, String, String) {
    let out = Invocation::new(args)
        .stdin(stdin.as_bytes())
        .in_sandbox(sandbox)
        .run(&reference_wg());
    (out.code(), out.stdout_str(), out.stderr_str())
}

fn wg_ok(sandbox: &Sandbox, args: &[&str]) -> String {
    let (code, out, err) = wg(sandbox, args, "");
    assert_eq!(code, Some(0), "wg {}: {err}", args.join(" "));
    out
}

fn listen_port(sandbox: &Sandbox) -> u16 {
    wg_ok(sandbox, &["show", "wg0", "listen-port"])
        .trim()
        .parse()
        .unwrap()
}

/// The UDP ports bound in the sandbox, from `ss`.
fn bound_udp_ports(sandbox: &Sandbox) -> Vec<u16> {
    let out = sandbox.sh("ss -Hlun").stdout_str();
    out.lines()
        .filter_map(|l| l.split_whitespace().nth(3))
        .filter_map(|local| local.rsplit(':').next()?.parse().ok())
        .collect()
}

#[test]
fn test_listen_port_changes_at_runtime() {
    if !require_root() {
        return;
    }
    let sb = Sandbox::new();
    let _dev = sb.start_wg_tunnel("wg0");
    let _other = sb.start_wg_tunnel("wg1");
    let first = listen_port(&sb);
    // Two sockets share the port: data, and handshakes (bind.rs steers them).
    assert_eq!(
        bound_udp_ports(&sb).iter().filter(|&&p| p == first).count(),
        2
    );
    wg_ok(&sb, &["set", "wg0", "listen-port", "51999"]);
    assert_eq!(listen_port(&sb), 51999);
    let ports = bound_udp_ports(&sb);
    assert!(
        ports.contains(&51999) && !ports.contains(&first),
        "{ports:?}"
    );
    // 0 picks a new random port.
    wg_ok(&sb, &["set", "wg0", "listen-port", "0"]);
    let random = listen_port(&sb);
    assert_ne!(random, 51999);
    // A port in use (by wg1) fails with the reference's words; the old port stays bound and
    // the rest of the request is applied.
    let busy = wg_ok(&sb, &["show", "wg1", "listen-port"])
        .trim()
        .to_owned();
    let (code, _, err) = wg(
        &sb,
        &["set", "wg0", "listen-port", &busy, "fwmark", "0x20"],
        "",
    );
    assert_eq!(code, Some(1));
    assert_eq!(err, "Unable to modify interface: Address already in use\n");
    assert_eq!(listen_port(&sb), random);
    assert!(bound_udp_ports(&sb).contains(&random));
    assert_eq!(wg_ok(&sb, &["show", "wg0", "fwmark"]), "0x20\n");
}

#[test]
fn test_fwmark_on_the_socket() {
    if !require_root() {
        return;
    }
    let sb = Sandbox::new();
    let _dev = sb.start_wg_tunnel("wg0");
    wg_ok(
        &sb,
        &["set", "wg0", "listen-port", "51820", "fwmark", "0x1234"],
    );
    assert_eq!(wg_ok(&sb, &["show", "wg0", "fwmark"]), "0x1234\n");
    // ss reports the socket's SO_MARK.
    let marks = || sb.sh("ss -Hluen 'sport = :51820'").stdout_str();
    assert!(marks().contains("fwmark:0x1234"), "{}", marks());
    wg_ok(&sb, &["set", "wg0", "listen-port", "51821"]);
    let moved = sb.sh("ss -Hluen 'sport = :51821'").stdout_str();
    assert!(
        moved.contains("fwmark:0x1234"),
        "a new socket keeps the mark: {moved}"
    );
    wg_ok(&sb, &["set", "wg0", "fwmark", "off"]);
    assert_eq!(wg_ok(&sb, &["show", "wg0", "fwmark"]), "off\n");
    let cleared = sb.sh("ss -Hluen 'sport = :51821'").stdout_str();
    assert!(!cleared.contains("fwmark"), "{cleared}");
}

/// Two sandboxes joined by veth (underlay addresses `a_under`/`b_under` with `/prefix`), a
/// wg-tunnel `wg0` in each, peers of each other through `[underlay]:51820`, inner addresses
/// 10.9.0.1 and 10.9.0.2. Returns the daemons.
fn tunnel_pair(
    a: &Sandbox,
    b: &Sandbox,
    (a_under, b_under, prefix): (&str, &str, u8),
) -> (wg_tests::UserspaceDevice, wg_tests::UserspaceDevice) {
    a.veth("veth-a", b, "veth-b");
    a.ip(&format!("addr add {a_under}/{prefix} dev veth-a nodad"));
    b.ip(&format!("addr add {b_under}/{prefix} dev veth-b nodad"));
    let dev_a = a.start_wg_tunnel("wg0");
    let dev_b = b.start_wg_tunnel("wg0");
    let key = |sb: &Sandbox| {
        let private = wg_ok(sb, &["genkey"]);
        let (_, public, _) = wg(sb, &["pubkey"], &private);
        (private, public.trim().to_owned())
    };
    let ((priv_a, pub_a), (priv_b, pub_b)) = (key(a), key(b));
    let endpoint = |ip: &str| {
        if ip.contains(':') {
            format!("[{ip}]:51820")
        } else {
            format!("{ip}:51820")
        }
    };
    for (sb, private, peer, under, inner) in [
        (a, &priv_a, &pub_b, b_under, "10.9.0.1/24"),
        (b, &priv_b, &pub_a, a_under, "10.9.0.2/24"),
    ] {
        let path = sb.host_path("/run/key");
        std::fs::write(&path, private).unwrap();
        wg_ok(
            sb,
            &[
                "set",
                "wg0",
                "private-key",
                "/run/key",
                "listen-port",
                "51820",
            ],
        );
        let endpoint = endpoint(under);
        wg_ok(
            sb,
            &[
                "set",
                "wg0",
                "peer",
                peer,
                "endpoint",
                &endpoint,
                "allowed-ips",
                "10.9.0.0/24",
            ],
        );
        sb.ip(&format!("addr add {inner} dev wg0"));
        sb.ip("link set wg0 up");
    }
    (dev_a, dev_b)
}

#[test]
fn test_mtu_followed_and_tunnel_survives_port_change() {
    if !require_root() {
        return;
    }
    let (a, b) = (Sandbox::new(), Sandbox::new());
    let (dev_a, _dev_b) = tunnel_pair(&a, &b, ("10.0.0.1", "10.0.0.2", 24));
    a.sh("ping -c 1 -W 5 10.9.0.2");
    // wg-quick sets the MTU after creating the interface; the daemon follows.
    a.ip("link set wg0 mtu 1380");
    wait_for("the MTU change to be logged", || {
        dev_a.log().contains("MTU is now 1380")
    });
    a.sh("ping -c 1 -W 5 -s 1352 -M do 10.9.0.2");
    // B moves to another port; A learns it from B's next authenticated packet (roaming),
    // so traffic started by B gets through, then traffic started by A.
    wg_ok(&b, &["set", "wg0", "listen-port", "52000"]);
    b.sh("ping -c 1 -W 5 10.9.0.1");
    let endpoints = wg_ok(&a, &["show", "wg0", "endpoints"]);
    assert!(endpoints.contains("10.0.0.2:52000"), "{endpoints}");
    a.sh("ping -c 1 -W 5 10.9.0.2");
    // Down and up again (sessions end, as in the kernel): the tunnel comes back.
    a.ip("link set wg0 down");
    wait_for("the link going down to be logged", || {
        dev_a.log().contains("interface is down")
    });
    a.ip("link set wg0 up");
    a.ip("addr replace 10.9.0.1/24 dev wg0");
    a.sh("ping -c 1 -W 5 10.9.0.2");
}

#[test]
fn test_ipv6_underlay() {
    if !require_root() {
        return;
    }
    let (a, b) = (Sandbox::new(), Sandbox::new());
    let _devs = tunnel_pair(&a, &b, ("fd00:99::1", "fd00:99::2", 64));
    a.sh("ping -c 1 -W 5 10.9.0.2");
    b.sh("ping -c 1 -W 5 10.9.0.1");
    let endpoints = wg_ok(&b, &["show", "wg0", "endpoints"]);
    assert!(endpoints.contains("[fd00:99::1]:51820"), "{endpoints}");
}

#[test]
fn test_ipv4_underlay_with_ipv6_disabled() {
    if !require_root() {
        return;
    }
    let (a, b) = (Sandbox::new(), Sandbox::new());
    for sb in [&a, &b] {
        sb.sh("echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6; echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6");
    }
    let _devs = tunnel_pair(&a, &b, ("10.0.0.1", "10.0.0.2", 24));
    a.sh("ping -c 1 -W 5 10.9.0.2");
    let endpoints = wg_ok(&b, &["show", "wg0", "endpoints"]);
    assert!(
        endpoints.contains("10.0.0.1:51820"),
        "v4, not v4-mapped: {endpoints}"
    );
}

/// Runs `f` on a thread that has joined `sandbox`'s network namespace (a thread's network
/// namespace is its own), so sockets it opens live in the sandbox.
fn in_netns<T: Send + 'static>(sandbox: &Sandbox, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/proc/{}/ns/net\0", sandbox.pid());
    thread::spawn(move || {
        // SAFETY: `path` is NUL-terminated; the descriptor is checked and closed below.
        let fd = unsafe { libc::open(path.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC) };
        assert!(fd >= 0, "open {path}: {}", std::io::Error::last_os_error());
        // SAFETY: setns on a namespace descriptor we own affects only this thread.
        let rc = unsafe { libc::setns(fd, libc::CLONE_NEWNET) };
        // SAFETY: closing the descriptor we opened.
        unsafe { libc::close(fd) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .unwrap()
}

/// A handshake initiation with random content but a valid MAC1 for `responder`: it passes the
/// MAC gate, so the daemon spends a Diffie-Hellman on it before finding it undecryptable.
fn bogus_initiation(responder: &[u8; 32], seed: u64) -> [u8; 148] {
    use blake2::digest::{Digest, KeyInit, Mac};
    let mut msg = [0u8; 148];
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for b in &mut msg[4..116] {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        *b = state as u8;
    }
    msg[0] = 1;
    let key = blake2::Blake2s256::new()
        .chain_update(b"mac1----")
        .chain_update(responder)
        .finalize();
    let mut mac =
        <blake2::Blake2sMac<blake2::digest::consts::U16> as KeyInit>::new_from_slice(&key).unwrap();
    mac.update(&msg[..116]);
    msg[116..132].copy_from_slice(&mac.finalize().into_bytes());
    msg
}

#[test]
fn test_handshake_flood_engages_cookie_replies() {
    if !require_root() {
        return;
    }
    use base64::Engine;
    let sb = Sandbox::new();
    let _dev = sb.start_wg_tunnel("wg0");
    let private = wg_ok(&sb, &["genkey"]);
    std::fs::write(sb.host_path("/run/key"), &private).unwrap();
    wg_ok(
        &sb,
        &[
            "set",
            "wg0",
            "private-key",
            "/run/key",
            "listen-port",
            "51820",
        ],
    );
    sb.ip("link set wg0 up");
    let public = wg_ok(&sb, &["show", "wg0", "public-key"]);
    let public: [u8; 32] = base64::engine::general_purpose::STANDARD
        .decode(public.trim())
        .unwrap()
        .try_into()
        .unwrap();
    // Flood the daemon with initiations that cost it a DH each until it answers with cookie
    // replies, which it does only once its handshake backlog says it is under load.
    let (sent, cookies) = in_netns(&sb, move || {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_nonblocking(true).unwrap();
        let (mut sent, mut cookies) = (0u64, 0u64);
        let start = Instant::now();
        let mut buf = [0u8; 256];
        while cookies < 10 && start.elapsed() < DEADLINE {
            for _ in 0..64 {
                let msg = bogus_initiation(&public, sent);
                if sock.send_to(&msg, "127.0.0.1:51820").is_ok() {
                    sent += 1;
                }
            }
            while let Ok((len, _)) = sock.recv_from(&mut buf) {
                if len == 64 && buf[..4] == [3, 0, 0, 0] {
                    cookies += 1;
                }
            }
        }
        (sent, cookies)
    });
    assert!(
        cookies >= 10,
        "{cookies} cookie replies to {sent} initiations"
    );
    // The daemon still serves.
    assert!(wg_ok(&sb, &["show", "wg0"]).contains("listening port: 51820"));
}
