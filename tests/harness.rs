//! Self-tests of the sandbox harness (root only; each test prints a skip message otherwise).
//!
//! ```text
//!   +----------- Sandbox A ------------+      +----------- Sandbox B ------------+
//!   | lo up, tmpfs /run                |      | lo up, tmpfs /run                |
//!   | wg0 <- wireguard-go -f wg0       |      | wg0 <- wireguard-go -f wg0       |
//!   |   10.9.0.1/24, listen 51820      |      |   10.9.0.2/24, listen 51820      |
//!   | veth-a 10.0.0.1/24 --------------+------+-------------- veth-b 10.0.0.2/24 |
//!   +----------------------------------+      +----------------------------------+
//!   ping 10.9.0.2 from A: ICMP inside wg0 -> UDP 10.0.0.1:51820 -> 10.0.0.2:51820 over veth
//! ```

use wg_tests::{reference_wg, require_root, Invocation, Sandbox};

#[test]
fn sandbox_is_private_and_minimal() {
    if !require_root() {
        return;
    }
    let sandbox = Sandbox::new();
    let links = sandbox.run("ip", &["-o", "link", "show"]);
    links.assert_code(0, "ip link show");
    let links = links.stdout_str();
    assert_eq!(links.lines().count(), 1, "only lo expected:\n{links}");
    assert!(
        links.contains(": lo: <LOOPBACK,UP,LOWER_UP>"),
        "lo not up:\n{links}"
    );
    let run: Vec<_> = std::fs::read_dir(sandbox.host_path("/run"))
        .expect("read /run")
        .collect();
    assert!(
        run.is_empty(),
        "/run in the sandbox is not a fresh tmpfs: {run:?}"
    );
    // Writes to /run stay in the sandbox.
    sandbox.sh("mkdir /run/wireguard && touch /run/wireguard/probe");
    assert!(sandbox.host_path("/run/wireguard/probe").exists());
    assert!(
        !std::path::Path::new("/run/wireguard/probe").exists(),
        "leaked to the host /run"
    );
}

#[test]
fn wireguard_go_starts_and_reference_wg_sees_it() {
    if !require_root() {
        return;
    }
    let sandbox = Sandbox::new();
    let dev = sandbox.start_wireguard_go("wg0");
    assert!(dev.socket_host_path().exists());
    let out = Invocation::new(["show", "interfaces"])
        .in_sandbox(&sandbox)
        .run(&reference_wg());
    out.assert_code(0, "wg show interfaces");
    assert_eq!(out.stdout_str(), "wg0\n", "{out:?}");
}

#[test]
fn veth_pair_connects_two_sandboxes() {
    if !require_root() {
        return;
    }
    let (a, b) = (Sandbox::new(), Sandbox::new());
    a.veth("veth-a", &b, "veth-b");
    a.ip("addr add 10.0.0.1/24 dev veth-a");
    b.ip("addr add 10.0.0.2/24 dev veth-b");
    let ping = a.run("ping", &["-c", "1", "-W", "5", "10.0.0.2"]);
    ping.assert_code(0, "ping over veth");
}

/// Reference against reference: two wireguard-go peers configured with the reference `wg`
/// exchange a ping through the tunnel. Later interop tests swap either side for ours.
#[test]
fn reference_tunnel_over_veth() {
    if !require_root() {
        return;
    }
    let (a, b) = (Sandbox::new(), Sandbox::new());
    a.veth("veth-a", &b, "veth-b");
    a.ip("addr add 10.0.0.1/24 dev veth-a");
    b.ip("addr add 10.0.0.2/24 dev veth-b");
    let _dev_a = a.start_wireguard_go("wg0");
    let _dev_b = b.start_wireguard_go("wg0");
    let wg = reference_wg();
    let genkey = || Invocation::new(["genkey"]).run(&wg).stdout;
    let pubkey = |k: &[u8]| Invocation::new(["pubkey"]).stdin(k).run(&wg).stdout_str();
    let (key_a, key_b) = (genkey(), genkey());
    let (pub_a, pub_b) = (pubkey(&key_a), pubkey(&key_b));
    let dir = tempfile::tempdir().expect("temp dir");
    for (sandbox, key, peer_pub, addr, peer_endpoint, peer_ip) in [
        (
            &a,
            &key_a,
            pub_b.trim(),
            "10.9.0.1/24",
            "10.0.0.2:51820",
            "10.9.0.2/32",
        ),
        (
            &b,
            &key_b,
            pub_a.trim(),
            "10.9.0.2/24",
            "10.0.0.1:51820",
            "10.9.0.1/32",
        ),
    ] {
        let key_file = dir.path().join(format!("key-{}", sandbox.pid()));
        std::fs::write(&key_file, key).expect("write key");
        let key_file = key_file.to_str().expect("UTF-8 path");
        #[rustfmt::skip]
        let set = Invocation::new([
            "set", "wg0", "private-key", key_file, "listen-port", "51820",
            "peer", peer_pub, "endpoint", peer_endpoint, "allowed-ips", peer_ip,
        ]);
        set.in_sandbox(sandbox).run(&wg).assert_code(0, "wg set");
        sandbox.ip(&format!("addr add {addr} dev wg0"));
        sandbox.ip("link set wg0 up");
    }
    let ping = a.run("ping", &["-c", "1", "-W", "5", "10.9.0.2"]);
    ping.assert_code(0, "ping through the tunnel");
    let hs = Invocation::new(["show", "wg0", "latest-handshakes"])
        .in_sandbox(&a)
        .run(&wg);
    assert!(
        !hs.stdout_str().trim_end().ends_with("\t0"),
        "no handshake recorded:\n{hs:?}"
    );
}
