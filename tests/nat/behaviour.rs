//! The simulated NATs themselves, before anything relies on them: small UDP probes from a host
//! behind each router to mapping reflectors on two public addresses show the mapping and
//! filtering behaviour the spec's recipe table promises (RFC 4787 terms), and what
//! `conntrack -F` does to it. Drops are proven by the router's nftables drop counters, never by
//! waiting for something not to arrive.
//!
//! ```text
//!   srv 203.0.113.10:3478, .11:3478, .10:3479 (reflectors)   stranger 203.0.113.30:5000
//!                  │                                                │
//!   ───────────────┴──────────── Internet 203.0.113.0/24 ──────────┴─────
//!                  │
//!   router (.1, .2 or .3) ── NAT under test ── host 10.x.0.2, agent on :4000
//! ```

use std::time::Duration;

use wg_tests::nat_topology::{Agent, Internet, Nat, Router};
use wg_tests::{require_root, Sandbox};

use super::{wait_for, DEADLINE};

const R1: &str = "203.0.113.10:3478";
const R2: &str = "203.0.113.11:3478";
const R3: &str = "203.0.113.10:3479";
const STRANGER: &str = "203.0.113.30:5000";

/// The Internet with the reflectors (`srv`, holding `R1`, `R2`, `R3`) and a stranger.
struct Public {
    // Agents before their sandboxes.
    r1: Agent,
    r2: Agent,
    r3: Agent,
    stranger: Agent,
    _srv: Sandbox,
    _stranger_ns: Sandbox,
    internet: Internet,
}

impl Public {
    fn new() -> Public {
        let internet = Internet::new();
        let srv = internet.public_host(&[10, 11]);
        let stranger_ns = internet.public_host(&[30]);
        Public {
            r1: Agent::start(&srv, R1, true),
            r2: Agent::start(&srv, R2, true),
            r3: Agent::start(&srv, R3, true),
            stranger: Agent::start(&stranger_ns, STRANGER, false),
            _srv: srv,
            _stranger_ns: stranger_ns,
            internet,
        }
    }
}

/// Sends `text` from `agent` to `dest` and waits until `router` has counted it in its counter
/// `counter` (so it was dropped there).
fn send_dropped(agent: &mut Agent, dest: &str, text: &str, router: &Router, counter: &str) {
    let before = router.counter(counter);
    agent.send(dest, text);
    wait_for(&format!("{counter} drop of `{text}' to {dest}"), || {
        router.counter(counter) > before
    });
}

/// Asserts that the host's agent gets `text` next, from `from`, and nothing before it.
fn expect_only(host: &Agent, from: &str, text: &str) {
    let got = host.recv_until(text, DEADLINE);
    assert_eq!(
        got,
        vec![(from.to_owned(), text.to_owned())],
        "the host received something it should not have"
    );
}

fn port(mapping: &str) -> u16 {
    mapping
        .rsplit_once(':')
        .expect("ip:port")
        .1
        .parse()
        .expect("port")
}

#[test]
fn port_restricted_cone_maps_independently_and_filters_by_address_and_port() {
    if !require_root() {
        return;
    }
    let mut public = Public::new();
    let router = public.internet.router(1, "10.1.0", Nat::PortRestricted);
    let (host_ns, _) = router.host();
    let mut host = Agent::start(&host_ns, "0.0.0.0:4000", false);

    // Endpoint-independent and port-preserving: one mapping for every destination.
    let (m1, _) = host.mapping(R1);
    let (m2, _) = host.mapping(R2);
    assert_eq!(m1, "203.0.113.1:4000");
    assert_eq!(m2, m1, "same mapping for another destination address");

    // Filtering: only the exact address and port the host sent to may answer.
    send_dropped(
        &mut public.stranger,
        &m1,
        "stranger",
        &router,
        "unsolicited",
    );
    send_dropped(&mut public.r3, &m1, "other-port", &router, "unsolicited");
    public.r1.send(&m1, "solicited");
    expect_only(&host, R1, "solicited");

    // conntrack -F forgets the mapping: the reflector's answer to it is now unsolicited.
    router.flush_conntrack();
    send_dropped(&mut public.r1, &m1, "stale", &router, "unsolicited");
    // The host's next datagram makes the mapping again, port-preserving, so the same one.
    let (again, other) = host.mapping(R1);
    assert_eq!(again, m1);
    assert!(other.is_empty(), "{other:?}");
}

#[test]
fn symmetric_nat_maps_per_destination() {
    if !require_root() {
        return;
    }
    let mut public = Public::new();
    let router = public.internet.router(2, "10.2.0", Nat::Symmetric);
    let (host_ns, _) = router.host();
    let mut host = Agent::start(&host_ns, "0.0.0.0:4000", false);

    let mappings = [host.mapping(R1).0, host.mapping(R2).0, host.mapping(R3).0];
    for m in &mappings {
        assert!(m.starts_with("203.0.113.2:"), "{mappings:?}");
    }
    let mut ports: Vec<u16> = mappings.iter().map(|m| port(m)).collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 3, "one port per destination: {mappings:?}");
    // A mapping made for one destination answers that destination only.
    send_dropped(
        &mut public.r2,
        &mappings[0],
        "not-mine",
        &router,
        "unsolicited",
    );
    send_dropped(
        &mut public.stranger,
        &mappings[0],
        "stranger",
        &router,
        "unsolicited",
    );
    public.r1.send(&mappings[0], "solicited");
    expect_only(&host, R1, "solicited");

    router.flush_conntrack();
    send_dropped(
        &mut public.r1,
        &mappings[0],
        "stale",
        &router,
        "unsolicited",
    );
    let (fresh, _) = host.mapping(R1);
    assert!(fresh.starts_with("203.0.113.2:"), "{fresh}");
}

#[test]
fn full_cone_accepts_anyone_on_the_mapping() {
    if !require_root() {
        return;
    }
    let mut public = Public::new();
    let router = public.internet.router(4, "10.4.0", Nat::FullCone);
    let (host_ns, _) = router.host();
    let mut host = Agent::start(&host_ns, "0.0.0.0:4000", false);

    let (m1, _) = host.mapping(R1);
    let (m2, _) = host.mapping(R2);
    assert_eq!(m1, "203.0.113.4:4000");
    assert_eq!(m2, m1);
    let before = router.counter("unsolicited");
    public.stranger.send(&m1, "stranger");
    expect_only(&host, STRANGER, "stranger");
    public.r3.send(&m1, "other-port");
    expect_only(&host, R3, "other-port");
    // Even with no state at all.
    router.flush_conntrack();
    public.stranger.send(&m1, "after-flush");
    expect_only(&host, STRANGER, "after-flush");
    assert_eq!(router.counter("unsolicited"), before);
}

#[test]
fn double_nat_behind_a_carrier_grade_nat() {
    if !require_root() {
        return;
    }
    let mut public = Public::new();
    let isp = public.internet.carrier(3);
    let home = isp.router("10.3.0", Nat::PortRestricted);
    assert_eq!(home.wan_ip, "100.64.0.2");
    let (host_ns, _) = home.host();
    let mut host = Agent::start(&host_ns, "0.0.0.0:4000", false);

    // Both NATs map endpoint-independently and preserve the port.
    let (m1, _) = host.mapping(R1);
    let (m2, _) = host.mapping(R2);
    assert_eq!(m1, "203.0.113.3:4000");
    assert_eq!(m2, m1);
    send_dropped(&mut public.stranger, &m1, "stranger", &isp, "unsolicited");
    public.r2.send(&m1, "solicited");
    expect_only(&host, R2, "solicited");

    // Rebinding at the carrier only: its mapping goes, the home router's stays.
    isp.flush_conntrack();
    send_dropped(&mut public.r2, &m1, "stale", &isp, "unsolicited");
    assert_eq!(host.mapping(R2).0, m1);
}

#[test]
fn udp_blocking_router_passes_only_the_relay() {
    if !require_root() {
        return;
    }
    let mut public = Public::new();
    let relay_ns = public.internet.public_host(&[20]);
    let relay = Agent::start(&relay_ns, "203.0.113.20:3478", true);
    let router = public
        .internet
        .router(5, "10.5.0", Nat::UdpBlockedExcept("203.0.113.20".into()));
    let (host_ns, _) = router.host();
    let mut host = Agent::start(&host_ns, "0.0.0.0:4000", false);

    let (m, _) = host.mapping("203.0.113.20:3478");
    assert_eq!(m, "203.0.113.5:4000");
    send_dropped(&mut host, R1, "probe", &router, "udp_blocked");
    send_dropped(&mut public.stranger, &m, "stranger", &router, "unsolicited");
    // The relay still reaches the host, and the reflector R1 never saw the probe.
    relay.recv_until("probe", DEADLINE);
    host.send("203.0.113.20:3478", "again");
    relay.recv_until("again", DEADLINE);
    assert_eq!(public.r1.recv(Duration::ZERO), None);
    drop(relay);
}
