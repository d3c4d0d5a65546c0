//! Privileges: after setup wg-tunnel keeps only `CAP_NET_ADMIN` and `CAP_NET_BIND_SERVICE`
//! (effective and permitted; nothing inheritable or ambient, an empty bounding set where it
//! could clear it, no_new_privs), in every thread, read from `/proc/PID/task/*/status`; and
//! what needs those two still works with the daemon running: listen ports below 1024, fwmark
//! set and cleared (checked by `wg show`, by the kernel's socket diagnostics and by nftables
//! counting marked packets), traffic between two wg-tunnel peers, and the socket file removed
//! on SIGTERM. Started with less (the systemd unit's bounding set; an unprivileged user with
//! ambient `CAP_NET_ADMIN`), it keeps what it has of the two and does not fail.

use std::fs;
use std::path::Path;

use super::{wait_for, wg, Impl, Net, Setup, Tool, A, B, DEADLINE};
use wg_tests::{our_wg_tunnel, reference_wg, require_root, Invocation, Sandbox, UserspaceDevice};

/// `CAP_NET_BIND_SERVICE` (10) and `CAP_NET_ADMIN` (12).
const RUNTIME: u64 = (1 << 10) | (1 << 12);
/// `CAP_SETPCAP`: without it the bounding set cannot be cleared.
const CAP_SETPCAP: u64 = 1 << 8;

/// The capability lines and no_new_privs of one `/proc/.../status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Creds {
    uid: u32,
    inh: u64,
    prm: u64,
    eff: u64,
    bnd: u64,
    amb: u64,
    no_new_privs: u32,
}

impl Creds {
    fn parse(status: &str) -> Creds {
        let field = |name: &str| -> &str {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .unwrap_or_else(|| panic!("no {name} in:\n{status}"))
                .trim()
        };
        let caps = |name: &str| u64::from_str_radix(field(name), 16).expect("hex capability set");
        Creds {
            uid: field("Uid")
                .split_whitespace()
                .next()
                .and_then(|u| u.parse().ok())
                .expect("real uid"),
            inh: caps("CapInh"),
            prm: caps("CapPrm"),
            eff: caps("CapEff"),
            bnd: caps("CapBnd"),
            amb: caps("CapAmb"),
            no_new_privs: field("NoNewPrivs").parse().expect("NoNewPrivs"),
        }
    }

    /// This test process's own.
    fn own() -> Creds {
        Creds::parse(&fs::read_to_string("/proc/self/status").expect("own status"))
    }
}

/// The credentials of the process `pid` and of each of its threads, once it has dropped its
/// privileges (the drop follows the socket's creation, which is what the start waits for).
fn creds_after_drop(dev: &UserspaceDevice) -> Vec<(String, Creds)> {
    let pid = dev.pid();
    let read = |path: String| fs::read_to_string(&path).map(|s| (path, Creds::parse(&s)));
    wait_for(
        "wg-tunnel to set no_new_privs",
        || matches!(read(format!("/proc/{pid}/status")), Ok((_, c)) if c.no_new_privs == 1),
    );
    let mut all = vec![read(format!("/proc/{pid}/status")).expect("process status")];
    let tasks = fs::read_dir(format!("/proc/{pid}/task")).expect("task dir");
    for task in tasks {
        let task = task.expect("task entry").file_name();
        let task = task.to_str().expect("numeric task id");
        all.push(read(format!("/proc/{pid}/task/{task}/status")).expect("thread status"));
    }
    assert!(all.len() >= 2, "the process and at least its main thread");
    all
}

/// Asserts that every thread of `dev` has exactly `expected`.
fn assert_creds(dev: &UserspaceDevice, expected: Creds) {
    for (path, creds) in creds_after_drop(dev) {
        assert_eq!(creds, expected, "{path}\nlog:\n{}", dev.log());
    }
}

/// What a daemon started by this (root) test process keeps: the two it needs, where this
/// process has them; the bounding set emptied if it holds CAP_SETPCAP.
fn expected_from_root() -> Creds {
    let own = Creds::own();
    Creds {
        uid: 0,
        inh: 0,
        prm: own.prm & RUNTIME,
        eff: own.prm & RUNTIME,
        bnd: if own.eff & CAP_SETPCAP != 0 {
            0
        } else {
            own.bnd
        },
        amb: 0,
        no_new_privs: 1,
    }
}

/// Runs the reference `wg` in `sandbox` and returns its outcome, whatever the exit status.
fn try_wg(sandbox: &Sandbox, args: &[&str]) -> wg_tests::Outcome {
    Invocation::new(args)
        .in_sandbox(sandbox)
        .run(&reference_wg())
}

/// The UDP sockets of `sandbox` in `ss -Huanpe` form (kernel socket diagnostics, with the
/// owning process and `fwmark:0x…` when a mark is set).
fn udp_sockets(sandbox: &Sandbox) -> String {
    let out = sandbox.run("ss", &["-Huanpe"]);
    out.assert_code(0, "ss -Huanpe");
    out.stdout_str()
}

/// The `ss` line of the UDP socket on `port`.
fn socket_on(sandbox: &Sandbox, port: u16) -> String {
    let all = udp_sockets(sandbox);
    all.lines()
        .find(|l| l.contains(&format!(":{port} ")))
        .unwrap_or_else(|| panic!("no UDP socket on port {port}:\n{all}"))
        .to_owned()
}

/// SIGTERM ends the daemon with status 0 and it removes its socket file, with the
/// privileges it kept.
fn terminate_removes_socket(dev: &mut UserspaceDevice) {
    let status = dev.terminate(DEADLINE);
    assert!(status.success(), "{status}\nlog:\n{}", dev.log());
    assert!(
        !dev.socket_host_path().exists(),
        "socket left behind\nlog:\n{}",
        dev.log()
    );
}

/// Started by root with three crypto workers: exactly the two capabilities in every thread
/// (the workers start after the drop and inherit it), nothing inheritable, ambient or
/// bounding, no_new_privs, and the drop logged at debug level.
#[test]
fn tunnel_keeps_only_runtime_capabilities() {
    if !require_root() {
        return;
    }
    let sandbox = Sandbox::new();
    let tunnel = our_wg_tunnel();
    let options = [
        "WG_TUNNEL_THREADS=3",
        tunnel.to_str().expect("UTF-8 path"),
        "-f",
    ];
    let mut dev = sandbox.start_userspace_with(Path::new("/usr/bin/env"), &options, "wg0");
    let expected = expected_from_root();
    let tasks = format!("/proc/{}/task", dev.pid());
    wait_for("the main thread and 3 crypto workers", || {
        fs::read_dir(&tasks).map_or(0, Iterator::count) >= 4
    });
    assert_creds(&dev, expected);
    if expected.prm == RUNTIME {
        wait_for("the drop in the debug log", || {
            dev.log().contains("ambient set cleared, no_new_privs set")
        });
        let log = dev.log();
        assert!(
            log.contains("privileges: kept capabilities: cap_net_bind_service cap_net_admin\n"),
            "{log}"
        );
        assert!(log.contains("privileges: dropped "), "{log}");
    }
    terminate_removes_socket(&mut dev);
}

/// Started as `wg-tunnel@.service` starts it (root, bounding set of the two, as
/// `CapabilityBoundingSet=` does): nothing more to drop, the bounding set cannot be cleared
/// (no CAP_SETPCAP) but holds only the two; nothing fails.
#[test]
fn tunnel_started_with_the_units_bounding_set() {
    if !require_root() {
        return;
    }
    let sandbox = Sandbox::new();
    let tunnel = our_wg_tunnel();
    let options = [
        "--bounding-set=-all,+net_admin,+net_bind_service",
        "--",
        tunnel.to_str().expect("UTF-8 path"),
        "-f",
    ];
    let mut dev = sandbox.start_userspace_with(Path::new("/usr/bin/setpriv"), &options, "wg0");
    let own = Creds::own();
    let kept = own.prm & RUNTIME;
    let expected = Creds {
        uid: 0,
        inh: 0,
        prm: kept,
        eff: kept,
        bnd: own.bnd & RUNTIME,
        amb: 0,
        no_new_privs: 1,
    };
    assert_creds(&dev, expected);
    wg(
        &sandbox,
        &["set", "wg0", "listen-port", "443", "fwmark", "0x51"],
    );
    assert!(socket_on(&sandbox, 443).contains("fwmark:0x51"));
    terminate_removes_socket(&mut dev);
}

/// Started by an unprivileged user (nobody) holding only ambient `CAP_NET_ADMIN`, with a TUN
/// device node and a socket directory it may use: it keeps `CAP_NET_ADMIN` (the ambient and
/// inheritable copies go), cannot touch the bounding set, still sets a fwmark, is refused a
/// port below 1024 (it never had `CAP_NET_BIND_SERVICE`) but keeps serving, and removes its
/// socket on SIGTERM.
#[test]
fn tunnel_started_unprivileged_with_ambient_net_admin() {
    if !require_root() {
        return;
    }
    let sandbox = Sandbox::new();
    // Only inside the sandbox's own mount namespace: a world-usable TUN node over
    // /dev/net/tun (the host's may be 0600) and a socket directory owned by nobody.
    sandbox.sh(
        "mknod -m 0666 /run/tun c 10 200 && mount --bind /run/tun /dev/net/tun \
         && mkdir -m 0755 /run/wireguard && chown 65534:65534 /run/wireguard",
    );
    let tunnel = our_wg_tunnel();
    let options = [
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=-all,+net_admin",
        "--ambient-caps=-all,+net_admin",
        "--",
        tunnel.to_str().expect("UTF-8 path"),
        "-f",
    ];
    let mut dev = sandbox.start_userspace_with(Path::new("/usr/bin/setpriv"), &options, "wg0");
    let expected = Creds {
        uid: 65534,
        inh: 0,
        prm: 1 << 12,
        eff: 1 << 12,
        bnd: Creds::own().bnd,
        amb: 0,
        no_new_privs: 1,
    };
    assert_creds(&dev, expected);
    let refused = try_wg(&sandbox, &["set", "wg0", "listen-port", "443"]);
    assert_eq!(refused.code(), Some(1), "{refused:?}");
    wg(
        &sandbox,
        &["set", "wg0", "listen-port", "5555", "fwmark", "0x52"],
    );
    assert_eq!(wg(&sandbox, &["show", "wg0", "listen-port"]), "5555\n");
    assert!(socket_on(&sandbox, 5555).contains("fwmark:0x52"));
    terminate_removes_socket(&mut dev);
}

/// `nft` in `sandbox`; panics unless it exits 0.
fn nft(sandbox: &Sandbox, args: &[&str]) -> String {
    let out = Invocation::new(args)
        .arg0("nft")
        .in_sandbox(sandbox)
        .run(Path::new("/usr/sbin/nft"));
    out.assert_code(0, &format!("nft {}", args.join(" ")));
    out.stdout_str()
}

/// Packets counted by the nftables rule with comment `name` in `sandbox`'s `inet priv out`.
fn counted(sandbox: &Sandbox, name: &str) -> u64 {
    let chain = nft(sandbox, &["list", "chain", "inet", "priv", "out"]);
    let line = chain
        .lines()
        .find(|l| l.contains(&format!("comment \"{name}\"")))
        .unwrap_or_else(|| panic!("no rule {name}:\n{chain}"));
    let after = line.split("counter packets ").nth(1).expect("a counter");
    after
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("packet count")
}

/// Two wg-tunnel peers, both past their drop: A moves to port 443, then 853 (both below
/// 1024), sets a fwmark and clears it; after each change a ping crosses the tunnel, B follows
/// A's endpoint, and the kernel shows the socket's port and mark (socket diagnostics, and
/// nftables counting A's outgoing datagrams by mark). SIGTERM then removes A's socket.
#[test]
fn privileged_changes_work_after_the_drop() {
    if !require_root() {
        return;
    }
    let mut net = Net::new(Setup::new(Impl::WgTunnel, Impl::WgTunnel, Tool::Reference));
    let expected = expected_from_root();
    assert_eq!(
        expected.prm, RUNTIME,
        "this test needs root's full capabilities"
    );
    assert_creds(&net.dev_a, expected);
    assert_creds(&net.dev_b, expected);
    net.ping(&net.a, B.inner4);

    for port in [443u16, 853] {
        wg(&net.a, &["set", "wg0", "listen-port", &port.to_string()]);
        assert_eq!(
            wg(&net.a, &["show", "wg0", "listen-port"]),
            format!("{port}\n")
        );
        let line = socket_on(&net.a, port);
        assert!(line.contains("wg-tunnel"), "{line}");
        net.ping(&net.a, B.inner4);
        assert_eq!(net.dump_peer(&net.b)[2], format!("{}:{port}", A.outer4));
        net.ping(&net.b, A.inner6);
    }

    // Count A's datagrams from port 853 by their mark, as the kernel sends them.
    nft(&net.a, &["add", "table", "inet", "priv"]);
    nft(
        &net.a,
        &[
            "add", "chain", "inet", "priv", "out", "{", "type", "filter", "hook", "output",
            "priority", "0", ";", "}",
        ],
    );
    for (name, mark) in [("marked", "0x1234"), ("unmarked", "0")] {
        nft(
            &net.a,
            &[
                "add", "rule", "inet", "priv", "out", "udp", "sport", "853", "meta", "mark", mark,
                "counter", "comment", name,
            ],
        );
    }

    wg(&net.a, &["set", "wg0", "fwmark", "0x1234"]);
    assert_eq!(wg(&net.a, &["show", "wg0", "fwmark"]), "0x1234\n");
    assert!(socket_on(&net.a, 853).contains("fwmark:0x1234"));
    let before = (counted(&net.a, "marked"), counted(&net.a, "unmarked"));
    net.ping(&net.a, B.inner4);
    let after = (counted(&net.a, "marked"), counted(&net.a, "unmarked"));
    assert!(
        after.0 > before.0,
        "no marked datagram: {before:?} -> {after:?}"
    );
    assert_eq!(after.1, before.1, "unmarked datagrams while marked");

    wg(&net.a, &["set", "wg0", "fwmark", "off"]);
    assert_eq!(wg(&net.a, &["show", "wg0", "fwmark"]), "off\n");
    assert!(!socket_on(&net.a, 853).contains("fwmark"));
    let before = after;
    net.ping(&net.a, B.inner4);
    let after = (counted(&net.a, "marked"), counted(&net.a, "unmarked"));
    assert_eq!(after.0, before.0, "marked datagrams after clearing");
    assert!(
        after.1 > before.1,
        "no unmarked datagram: {before:?} -> {after:?}"
    );

    // The privileges are still exactly those after all of it.
    assert_creds(&net.dev_a, expected);
    terminate_removes_socket(&mut net.dev_a);
}
