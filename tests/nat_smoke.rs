//! NAT traversal end to end, the smallest case (root only): a `wg-relay` and two wg-tunnel
//! peers on the simulated Internet, neither with an endpoint for the other. A is configured
//! with the reference `wg` plus our relay extension keys over UAPI, B by our `wg-quick up` with
//! `Relay`/`RelayPublicKey`. With direct UDP between the peers blocked, they reach each other
//! through the relay (and the relay reports the session and its bytes); once unblocked, they
//! switch to the direct path. The reference `wg show` keeps working throughout and never sees
//! a relay placeholder endpoint; our `wg show wg0 paths` reports each path.
//!
//! Two cells of the NAT matrix through real nftables NATs (`wg_tests::nat_topology`), as a smoke
//! check of the daemon (the full matrix is `nat::`): port-restricted on both sides goes direct;
//! symmetric on both sides stays relayed; pings pass either way, and again after `conntrack -F`
//! on one router (NAT rebinding), with the same kind of path; two peers on one LAN behind a
//! symmetric NAT take the LAN path.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Child, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine;
use wg_tests::nat_topology::{Internet, INTERNET};
use wg_tests::{cargo_bin, our_wg, reference_wg, require_root, Invocation, Sandbox};

const KEYS: [&str; 3] = [
    "wFVYGu2Jx0gdjm3nXwSd5+jNiR9r4jRhpKoYGm0i0lI=",
    "4Lhj6vh2v0mRGJ4CNmRBWYLZfdQsGk8GtH4UvIk0BHE=",
    "UDuzd1GhVyB+qv0EpgeCfNqnLjFtQ8KQGiZD6n03gEc=",
];

fn public_key(private: &str) -> String {
    let out = Invocation::new(["pubkey"])
        .stdin(format!("{private}\n"))
        .run(&reference_wg());
    out.assert_code(0, "wg pubkey");
    out.stdout_str().trim().to_owned()
}

fn hex(base64: &str) -> String {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(base64)
        .unwrap();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One UAPI exchange with the sandbox's wg0.
fn uapi(ns: &Sandbox, request: &str) -> String {
    let mut stream = UnixStream::connect(ns.host_path("/run/wireguard/wg0.sock")).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    reply
}

fn wait_for(
    what: &str,
    timeout: Duration,
    mut cond: impl FnMut() -> bool,
    log: impl Fn() -> String,
) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < timeout,
            "timed out waiting for {what}\n{}",
            log()
        );
        thread::sleep(Duration::from_millis(100));
    }
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn relay_first_then_direct() {
    if !require_root() {
        return;
    }
    let internet = Internet::new();
    let relay_ns = internet.public_host(&[10]);
    let hosts = [internet.public_host(&[21]), internet.public_host(&[22])];
    let ips = [format!("{INTERNET}.21"), format!("{INTERNET}.22")];
    let pubs: Vec<String> = KEYS.iter().map(|k| public_key(k)).collect();

    // The relay, key from a file.
    std::fs::write(
        relay_ns.host_path("/run/relay.key"),
        format!("{}\n", KEYS[2]),
    )
    .unwrap();
    let relay_addr = format!("{INTERNET}.10:3478");
    let mut relay_cmd = relay_ns.command(cargo_bin("wg-relay"));
    relay_cmd
        .args(["--listen", &relay_addr, "--private-key", "/run/relay.key"])
        .args(["--status-file", "/run/relay.status"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(relay_ns.host_path("/run/relay.log")).unwrap());
    let _relay = Killed(relay_cmd.spawn().expect("start wg-relay"));
    let relay_log = || {
        let log = std::fs::read_to_string(relay_ns.host_path("/run/relay.log")).unwrap_or_default();
        let status =
            std::fs::read_to_string(relay_ns.host_path("/run/relay.status")).unwrap_or_default();
        format!("relay log:\n{log}\nrelay status:\n{status}")
    };

    // Direct UDP between the two peers is blocked on A to start with.
    hosts[0]
        .sh(&format!(
            "nft add table inet block && \
             nft add chain inet block in '{{ type filter hook input priority 0; }}' && \
             nft add chain inet block out '{{ type filter hook output priority 0; }}' && \
             nft add rule inet block in ip saddr {0} drop && \
             nft add rule inet block out ip daddr {0} drop",
            ips[1]
        ))
        .assert_code(0, "nft block");

    // A: a wg-tunnel configured by hand, with the reference wg and the UAPI extension keys.
    let a = &hosts[0];
    let device_a = a.start_wg_tunnel("wg0");
    std::fs::write(a.host_path("/run/wg.key"), format!("{}\n", KEYS[0])).unwrap();
    let wg = Invocation::new([
        "set",
        "wg0",
        "private-key",
        "/run/wg.key",
        "listen-port",
        "51820",
        "peer",
        &pubs[1],
        "allowed-ips",
        "10.99.0.2/32",
    ])
    .in_sandbox(a)
    .run(&reference_wg());
    wg.assert_code(0, "wg set");
    a.ip("addr add 10.99.0.1/24 dev wg0");
    a.ip("link set wg0 up");
    let reply = uapi(
        a,
        &format!(
            "set=1\nrelay={relay_addr}\nrelay_public_key={}\n\n",
            hex(&pubs[2])
        ),
    );
    assert_eq!(reply, "errno=0\n\n");
    // B: our wg-quick with the Relay keys (no kernel module here: it starts wg-tunnel).
    let b = &hosts[1];
    std::fs::create_dir_all(b.host_path("/run/wgq")).unwrap();
    std::fs::write(
        b.host_path("/run/wgq/wg0.conf"),
        format!(
            "[Interface]\nPrivateKey = {}\nListenPort = 51820\nAddress = 10.99.0.2/24\n\
             Relay = {relay_addr}\nRelayPublicKey = {}\n\n[Peer]\nPublicKey = {}\n\
             AllowedIPs = 10.99.0.1/32\n",
            KEYS[1], pubs[2], pubs[0]
        ),
    )
    .unwrap();
    let quick = |command: &str| {
        Invocation::new([command, "/run/wgq/wg0.conf"])
            .arg0("wg-quick")
            .in_sandbox(b)
            .run(&cargo_bin("wg-quick"))
    };
    let up = quick("up");
    up.assert_code(0, "wg-quick up");
    let trace = up.stderr_str();
    assert!(
        trace.contains(&format!("[#] relay wg0 {relay_addr}\n")),
        "{trace}"
    );
    let logs = || format!("{}\nA:\n{}", relay_log(), device_a.log());
    let path_of = |ns: &Sandbox| uapi(ns, "get=nat\n\n");

    // Relayed at first.
    wait_for(
        "the relay path",
        Duration::from_secs(15),
        || path_of(&hosts[0]).contains("path=relay") && path_of(&hosts[1]).contains("path=relay"),
        logs,
    );
    let ping = |ns: &Sandbox, ip: &str| {
        ns.run("/usr/bin/ping", &["-c", "1", "-W", "1", ip]).code() == Some(0)
    };
    wait_for(
        "a ping through the relay",
        Duration::from_secs(15),
        || ping(&hosts[0], "10.99.0.2"),
        logs,
    );
    // The relay reports the session and the bytes it carried (its status file, each second).
    let status =
        || std::fs::read_to_string(relay_ns.host_path("/run/relay.status")).unwrap_or_default();
    wait_for(
        "the relay's status",
        Duration::from_secs(5),
        || status().contains("session=") && !status().contains("forwarded_bytes=0\n"),
        logs,
    );
    // The reference wg still reads the device; the placeholder endpoint is not shown.
    let show = Invocation::new(["show", "wg0", "endpoints"])
        .in_sandbox(&hosts[0])
        .run(&reference_wg());
    show.assert_code(0, "wg show endpoints");
    assert_eq!(show.stdout_str(), format!("{}\t(none)\n", pubs[1]));
    let nat = path_of(&hosts[0]);
    assert!(
        nat.starts_with(&format!(
            "relay={relay_addr}\nrelay_public_key={}\n",
            hex(&pubs[2])
        )),
        "{nat}"
    );
    assert!(
        nat.contains(&format!("reflexive_endpoint={}:51820\n", ips[0])),
        "{nat}"
    );
    // Our `wg show IF paths`: peer, path, where it leads, since when.
    let paths = |ns: &Sandbox| {
        let out = Invocation::new(["show", "wg0", "paths"])
            .in_sandbox(ns)
            .run(&our_wg());
        out.assert_code(0, "wg show paths");
        out.stdout_str()
    };
    let shown = paths(&hosts[0]);
    assert!(
        shown.starts_with(&format!("{}\trelay\t{relay_addr}\t", pubs[1])),
        "{shown}"
    );

    // Unblocked: the peers find the direct path.
    hosts[0]
        .sh("nft delete table inet block")
        .assert_code(0, "nft unblock");
    let direct = format!("path=direct\npath_endpoint={}:51820\n", ips[1]);
    wait_for(
        "the direct path",
        Duration::from_secs(40),
        || path_of(&hosts[0]).contains(&direct),
        logs,
    );
    wait_for(
        "a ping on the direct path",
        Duration::from_secs(10),
        || ping(&hosts[0], "10.99.0.2") && ping(&hosts[1], "10.99.0.1"),
        logs,
    );
    let show = Invocation::new(["show", "wg0", "endpoints"])
        .in_sandbox(&hosts[0])
        .run(&reference_wg());
    // A traversed peer's endpoint stays the traversal's: not shown, so not saved.
    assert_eq!(show.stdout_str(), format!("{}\t(none)\n", pubs[1]));
    let shown = paths(&hosts[1]);
    assert!(
        shown.starts_with(&format!("{}\tdirect\t{}:51820\t", pubs[0], ips[0])),
        "{shown}"
    );
    quick("down").assert_code(0, "wg-quick down");
}

/// Configures a wg-tunnel `wg0` in `ns` as peer `me` (0 or 1) of the pair, by UAPI: no endpoint
/// for the other peer, the relay given.
fn configure(ns: &Sandbox, me: usize, pubs: &[String], relay_addr: &str) {
    let other = 1 - me;
    let request = format!(
        "set=1\nprivate_key={}\nlisten_port=51820\nrelay={relay_addr}\nrelay_public_key={}\n\
         public_key={}\nallowed_ip=10.99.0.{}/32\n\n",
        hex(KEYS[me]),
        hex(&pubs[2]),
        hex(&pubs[other]),
        other + 1
    );
    assert_eq!(uapi(ns, &request), "errno=0\n\n");
    ns.ip(&format!("addr add 10.99.0.{}/24 dev wg0", me + 1));
    ns.ip("link set wg0 up");
}

/// Both peers behind NATs of the given behaviour: the path each ends on, after a ping.
fn behind_nats(nat: wg_tests::nat_topology::Nat, expected: &str, rebind: bool) {
    behind(nat, false, expected, rebind);
}

/// Both peers behind NATs of behaviour `nat` (one shared NAT, on one LAN, if `same_lan`).
fn behind(nat: wg_tests::nat_topology::Nat, same_lan: bool, expected: &str, rebind: bool) {
    let internet = Internet::new();
    let relay_ns = internet.public_host(&[10]);
    let routers = [
        internet.router(1, "10.1.0", nat.clone()),
        internet.router(2, "10.2.0", nat),
    ];
    let hosts: Vec<Sandbox> = if same_lan {
        vec![routers[0].host().0, routers[0].host().0]
    } else {
        routers.iter().map(|r| r.host().0).collect()
    };
    let pubs: Vec<String> = KEYS.iter().map(|k| public_key(k)).collect();
    std::fs::write(
        relay_ns.host_path("/run/relay.key"),
        format!("{}\n", KEYS[2]),
    )
    .unwrap();
    let relay_addr = format!("{INTERNET}.10:3478");
    let mut relay_cmd = relay_ns.command(cargo_bin("wg-relay"));
    relay_cmd
        .args(["--listen", &relay_addr, "--private-key", "/run/relay.key"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _relay = Killed(relay_cmd.spawn().expect("start wg-relay"));
    let devices: Vec<_> = hosts.iter().map(|ns| ns.start_wg_tunnel("wg0")).collect();
    for (i, ns) in hosts.iter().enumerate() {
        configure(ns, i, &pubs, &relay_addr);
    }
    let logs = || format!("A:\n{}\nB:\n{}", devices[0].log(), devices[1].log());
    let ping = |ns: &Sandbox, ip: &str| {
        ns.run("/usr/bin/ping", &["-c", "1", "-W", "1", ip]).code() == Some(0)
    };
    wait_for(
        "a ping",
        Duration::from_secs(20),
        || ping(&hosts[0], "10.99.0.2"),
        logs,
    );
    let path = |ns: &Sandbox| uapi(ns, "get=nat\n\n");
    wait_for(
        expected,
        Duration::from_secs(20),
        || {
            path(&hosts[0]).contains(&format!("path={expected}\n"))
                && path(&hosts[1]).contains(&format!("path={expected}\n"))
        },
        || format!("{}\n{}\n{}", path(&hosts[0]), path(&hosts[1]), logs()),
    );
    wait_for(
        "a ping on that path",
        Duration::from_secs(10),
        || ping(&hosts[1], "10.99.0.1"),
        logs,
    );
    if rebind {
        // NAT rebinding: A's router forgets every mapping. Traffic recovers, and the path
        // comes back (through the relay meanwhile, if need be).
        routers[0].flush_conntrack();
        let start = Instant::now();
        wait_for(
            "a ping after the conntrack flush",
            Duration::from_secs(40),
            || ping(&hosts[0], "10.99.0.2") && ping(&hosts[1], "10.99.0.1"),
            logs,
        );
        wait_for(
            "the path after the conntrack flush",
            Duration::from_secs(40),
            || {
                path(&hosts[0]).contains(&format!("path={expected}\n"))
                    && path(&hosts[1]).contains(&format!("path={expected}\n"))
            },
            || format!("{}\n{}\n{}", path(&hosts[0]), path(&hosts[1]), logs()),
        );
        eprintln!("recovered from the flush in {:?}", start.elapsed());
    }
}

#[test]
fn port_restricted_nats_go_direct() {
    if !require_root() {
        return;
    }
    behind_nats(wg_tests::nat_topology::Nat::PortRestricted, "direct", true);
}

#[test]
fn symmetric_nats_stay_relayed() {
    if !require_root() {
        return;
    }
    behind_nats(wg_tests::nat_topology::Nat::Symmetric, "relay", true);
}

#[test]
fn same_lan_goes_lan() {
    if !require_root() {
        return;
    }
    behind(wg_tests::nat_topology::Nat::Symmetric, true, "lan", false);
}
