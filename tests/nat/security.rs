//! Security in the namespace topology: forged and replayed control messages (from a stranger
//! on the Internet, at the relay and straight at a peer behind a full-cone NAT) change no
//! endpoint; an unauthenticated flood at the relay is dropped and a relayed stream survives
//! it; a peer that did not ask for a session gets no relayed data.
//!
//! ```text
//!   stranger 203.0.113.30:51820 ──forged / replayed──► relay .20:3478, B's mapping .2:51820
//! ```

use wg_tests::nat_topology::{nat_tool, Nat};
use wg_tests::{require_root, Background, Sandbox};

use super::cells::{
    capture_saving, end_capture, hex, keypair, Path, Site, World, RELAY, TRANSFER_DEADLINE,
};

const STRANGER: &str = "203.0.113.30:51820";

/// Runs `wg-tests-nat ARGS…` in `ns` to its end; panics unless it succeeds.
fn tool(ns: &Sandbox, args: &[&str], world: &World) {
    let run: Background = ns.spawn(&nat_tool(), args);
    let done = run.wait(TRANSFER_DEADLINE, || world.report());
    assert!(done.status.success(), "wg-tests-nat {args:?}: {done:?}");
}

/// The value of `key=` in the relay's status (after it has been rewritten).
fn relay_counter(world: &World, key: &str) -> u64 {
    let _ = world.relay_forwarded(); // waits for a fresh status file
    world
        .relay_status()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")).map(str::to_owned))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in the relay status:\n{}", world.relay_status()))
}

/// The kernel's count of UDP datagrams dropped for a full receive buffer in `ns`
/// (`RcvbufErrors` in `/proc/net/snmp`): a flood faster than the relay reads is dropped there.
fn rcvbuf_errors(ns: &Sandbox) -> u64 {
    let snmp = ns.run("/bin/cat", &["/proc/net/snmp"]).stdout_str();
    let udp: Vec<Vec<&str>> = snmp
        .lines()
        .filter(|l| l.starts_with("Udp: "))
        .map(|l| l.split_whitespace().collect())
        .collect();
    let i = udp[0]
        .iter()
        .position(|w| *w == "RcvbufErrors")
        .expect("RcvbufErrors");
    udp[1][i].parse().expect("number")
}

/// Everything dropped at the relay: its own counters and the kernel's full-buffer drops.
fn relay_dropped(world: &World) -> u64 {
    relay_counter(world, "dropped_unauthenticated")
        + relay_counter(world, "dropped_bad_auth")
        + relay_counter(world, "dropped_rate")
        + rcvbuf_errors(&world.relay_ns)
}

/// The relay's registration line for `public` (`peer=KEY endpoint=ADDR`).
fn registration(world: &World, public: &str) -> String {
    let _ = world.relay_forwarded();
    world
        .relay_status()
        .lines()
        .find(|l| l.starts_with(&format!("peer={public} ")))
        .unwrap_or_else(|| panic!("{public} not registered:\n{}", world.relay_status()))
        .to_owned()
}

/// `of`'s path to `peer`: `wg show wg0 paths` without the since-when field.
fn path_line(world: &World, of: usize, peer: &str) -> [String; 2] {
    world.peers[of]
        .paths_line(peer)
        .unwrap_or_else(|| panic!("no path line for {peer}\n{}", world.report()))
}

fn wg_endpoints(world: &World, of: usize) -> String {
    world.peers[of]
        .ns
        .run("/usr/bin/wg", &["show", "wg0", "endpoints"])
        .stdout_str()
}

#[test]
fn forged_and_replayed_control_messages_change_no_endpoint() {
    if !require_root() {
        return;
    }
    let world = World::build(
        &Site::Behind(Nat::PortRestricted),
        &Site::Behind(Nat::FullCone),
    );
    let stranger = world._internet.public_host(&[30]);
    // Record real control messages on their way to the relay and to B.
    let at_relay = world.dir.path().join("relay.hex");
    let at_b = world.dir.path().join("b.hex");
    let cap_relay = capture_saving(&world.relay_ns, "eth0", &at_relay);
    let cap_b = capture_saving(&world.routers[1].ns, "wan", &at_b);
    world.up(0, "");
    world.up(1, "");
    world.wait_path(Path::Direct);
    world.transfer(1_000_000);
    end_capture(cap_relay, &stranger, "203.0.113.30", RELAY, &world);
    let b_wan = format!("{}:9", world.routers[1].wan_ip);
    end_capture(cap_b, &stranger, "203.0.113.30", &b_wan, &world);
    let recorded = |f: &std::path::Path| std::fs::read_to_string(f).unwrap_or_default();
    assert!(
        recorded(&at_relay).lines().count() > 0 && recorded(&at_b).lines().count() > 0,
        "control messages were recorded (relay: {}, B: {})",
        recorded(&at_relay).lines().count(),
        recorded(&at_b).lines().count()
    );

    let a_pub = world.peers[0].public.clone();
    let registered = registration(&world, &a_pub);
    let b_path = path_line(&world, 1, &a_pub);
    let b_endpoints = wg_endpoints(&world, 1);
    let rejected_before = relay_dropped(&world);

    // The stranger replays everything it saw, and forges messages in A's name.
    let b_mapping = format!("{}:51820", world.routers[1].wan_ip);
    let a_key = hex(&a_pub);
    for args in [
        vec!["replay", STRANGER, RELAY, at_relay.to_str().expect("UTF-8")],
        vec![
            "replay",
            STRANGER,
            &b_mapping,
            at_b.to_str().expect("UTF-8"),
        ],
        vec!["flood", STRANGER, RELAY, "200", "to-relay", &a_key],
        vec!["flood", STRANGER, &b_mapping, "200", "peer", &a_key],
    ] {
        tool(&stranger, &args, &world);
    }
    // Still the same tunnel, the same registration, the same path and endpoint.
    world.transfer(1_000_000);
    let rejected = relay_dropped(&world);
    assert!(
        rejected >= rejected_before + 200,
        "the relay rejected {} of 200 forged messages\n{}",
        rejected - rejected_before,
        world.report()
    );
    assert_eq!(
        registration(&world, &a_pub),
        registered,
        "A's registration moved"
    );
    assert_eq!(
        path_line(&world, 1, &a_pub),
        b_path,
        "B's path to A changed"
    );
    assert_eq!(
        wg_endpoints(&world, 1),
        b_endpoints,
        "B's endpoint for A changed"
    );
    assert!(
        !world.relay_status().contains("203.0.113.30"),
        "{}",
        world.relay_status()
    );
}

#[test]
fn unauthenticated_flood_at_the_relay_is_dropped() {
    if !require_root() {
        return;
    }
    let world = World::new(&Site::Behind(Nat::Symmetric), &Site::Behind(Nat::Symmetric));
    let stranger = world._internet.public_host(&[30]);
    world.wait_path(Path::Relay);
    let stream = world.stream();
    let before = relay_dropped(&world);
    for kind in ["random", "data", "to-relay"] {
        tool(&stranger, &["flood", STRANGER, RELAY, "5000", kind], &world);
    }
    // The stream went on through the relay: it ends intact, and more goes through after.
    let streamed = stream.finish(&world);
    assert!(streamed > 0);
    world.transfer(2_000_000);
    world.wait_path(Path::Relay);
    let after = relay_dropped(&world);
    assert!(
        after >= before + 15_000,
        "the relay dropped {} of 15000 unauthenticated datagrams\n{}",
        after - before,
        world.report()
    );
    assert!(
        !world.relay_status().contains("203.0.113.30"),
        "{}",
        world.relay_status()
    );
}

#[test]
fn a_peer_that_did_not_ask_gets_nothing_through_the_relay() {
    if !require_root() {
        return;
    }
    let world = World::build(&Site::Behind(Nat::Symmetric), &Site::Behind(Nat::Symmetric));
    // B's only peer is someone else: B never asks for A.
    let (_, other) = keypair();
    let at_b = world.dir.path().join("b.hex");
    let cap = capture_saving(&world.peers[1].ns, "eth0", &at_b);
    world.up(0, "");
    world.up_with(1, &other, "");
    // A keeps trying to reach B for a while (each ping waits for its answer).
    let a = &world.peers[0];
    let ping =
        a.ns.run("ping", &["-c", "5", "-W", "1", &world.peers[1].inner]);
    assert_ne!(ping.code(), Some(0), "B answered A, which it does not know");
    // The capture ends with a datagram from B's router on B's LAN (B is its first host, .2).
    let base = &world.routers[1].lan_base;
    let (gateway, b_lan) = (format!("{base}.1"), format!("{base}.2:9"));
    end_capture(cap, &world.routers[1].ns, &gateway, &b_lan, &world);
    let text = std::fs::read_to_string(&at_b).unwrap_or_default();
    let data: Vec<&str> = text
        .lines()
        .filter(|l| l.get(8..10) == Some("03"))
        .collect();
    assert!(
        data.is_empty(),
        "B received {} relayed data messages from a session it never asked for\n{}",
        data.len(),
        world.report()
    );
    let sessions = world.relay_status();
    assert!(
        !sessions.lines().any(|l| l.starts_with("session=")),
        "a session exists:\n{sessions}"
    );
}
