//! The reference wg-quick alone, on the whole corpus:
//!
//! * with wireguard-go (its default userspace implementation): `up` succeeds, and `down`
//!   returns the sandbox to its starting snapshot (apart from `src_valid_mark`, which the
//!   reference never resets);
//! * with `WG_QUICK_USERSPACE_IMPLEMENTATION=<our wg-tunnel>`: the same trace (apart from the
//!   implementation's name and wireguard-go's banner), the same state after `up` and after
//!   `down` as with wireguard-go. Our daemon is a drop-in for wireguard-go.
//! * the reference driving wg-tunnel carries a ping to a wireguard-go peer in another sandbox.

use std::thread;
use std::time::{Duration, Instant};

use wg_tests::{require_root, Invocation, Sandbox, Snapshot};

use super::configs::{self, Case};
use super::{assert_ok, pubkey, sysctl_after_full_tunnel, Keys, QuickBox, Tool};

/// The snapshots of one run of a case: before `up`, after `up`, after `down`; and the traces.
pub(crate) struct Run {
    pub(crate) start: Snapshot,
    pub(crate) up: Snapshot,
    pub(crate) down: Snapshot,
    pub(crate) up_trace: String,
    pub(crate) down_trace: String,
}

/// Sets `case` up in `qb`, brings it up and down with `tool`, and returns the snapshots.
/// Asserts that both commands exit 0.
pub(crate) fn run_case(qb: &QuickBox, tool: &Tool, case: &Case) -> Run {
    if !case.setup.is_empty() {
        qb.sh(case.setup);
    }
    let path = qb.write_config(case.ifname, &case.config);
    let path = path.to_str().expect("utf-8 temp path");
    let mask = |s: Snapshot| {
        if case.random_port {
            s.mask_listen_port()
        } else {
            s
        }
    };
    let start = qb.snapshot();
    let up = qb.wg_quick(tool, &["up", path]);
    assert_ok(&up, &format!("{}: {tool:?} up", case.name));
    let up_snap = mask(qb.snapshot());
    if std::env::var_os("WG_TESTS_SHOW_SNAPSHOTS").is_some() {
        eprintln!(
            "=== {} {tool:?} up trace:\n{}=== snapshot after up:\n{up_snap:?}",
            case.name,
            up.stderr_str()
        );
    }
    let down = qb.wg_quick(tool, &["down", path]);
    assert_ok(&down, &format!("{}: {tool:?} down", case.name));
    let down_snap = qb.snapshot();
    Run {
        start,
        up: up_snap,
        down: down_snap,
        up_trace: up.stderr_str(),
        down_trace: down.stderr_str(),
    }
}

/// What the sandbox must look like after `down`: the start, except `src_valid_mark` after an
/// IPv4 full tunnel.
pub(crate) fn expected_after_down(case: &Case, start: &Snapshot) -> Snapshot {
    if case.full_tunnel_v4 {
        start
            .clone()
            .with_section("sysctl", sysctl_after_full_tunnel())
    } else {
        start.clone()
    }
}

/// A trace with the userspace implementation's name replaced by `<userspace>` and
/// wireguard-go's banner (box-drawing lines) dropped.
pub(crate) fn neutral_userspace(trace: &str) -> String {
    let mut out = String::new();
    for line in trace.lines() {
        if line.starts_with(['┌', '│', '└']) {
            continue;
        }
        if let Some(rest) = line.strip_prefix("[#] ") {
            if let Some((program, args)) = rest.split_once(' ') {
                if program == "wireguard-go" || program.rsplit('/').next() == Some("wg-tunnel") {
                    out += &format!("[#] <userspace> {args}\n");
                    continue;
                }
            }
        }
        out += line;
        out.push('\n');
    }
    out
}

fn reference_case(case: Case) {
    if !require_root() {
        return;
    }
    let (r, t) = thread::scope(|s| {
        let case = &case;
        let r = s.spawn(move || {
            let qb = case.quickbox();
            run_case(&qb, &Tool::Reference, case)
        });
        let qb = case.quickbox();
        let t = run_case(&qb, &Tool::ReferenceOnWgTunnel, case);
        (r.join().expect("reference run"), t)
    });
    let name = case.name;
    // The reference leaves nothing behind.
    assert!(
        r.up.section("wireguard")
            .contains(&format!("--- {}", case.ifname)),
        "{name}: no {} after up:\n{:?}",
        case.ifname,
        r.up
    );
    expected_after_down(&case, &r.start).assert_eq(
        &r.down,
        &format!("{name}: reference up+down"),
        "start",
        "after down",
    );
    // Driving wg-tunnel instead of wireguard-go changes nothing observable.
    r.start.assert_eq(
        &t.start,
        &format!("{name}: start"),
        "wireguard-go box",
        "wg-tunnel box",
    );
    r.up.assert_eq(
        &t.up,
        &format!("{name}: after up"),
        "reference + wireguard-go",
        "reference + wg-tunnel",
    );
    r.down.assert_eq(
        &t.down,
        &format!("{name}: after down"),
        "reference + wireguard-go",
        "reference + wg-tunnel",
    );
    for (what, a, b) in [
        ("up", &r.up_trace, &t.up_trace),
        ("down", &r.down_trace, &t.down_trace),
    ] {
        let (a, b) = (neutral_userspace(a), neutral_userspace(b));
        assert!(
            a == b,
            "{name}: {what} traces differ (- wireguard-go, + wg-tunnel):\n{}",
            wg_tests::invocation::line_diff(a.as_bytes(), b.as_bytes())
        );
    }
}

macro_rules! reference_cases {
    ($($name:ident),* $(,)?) => {$(
        #[test]
        fn $name() {
            reference_case(configs::$name());
        }
    )*};
}

mod up_down {
    use super::*;
    reference_cases!(
        nat_server,
        road_warrior,
        site_to_site,
        table_off,
        table_1234,
        multi_address,
        ipv6_only,
        save_config,
        dns_prefix,
        road_warrior_iptables
    );
}

/// The name form: `wg-quick up wg0` reads the sandbox's private `/etc/wireguard/wg0.conf`.
#[test]
fn reference_name_form_reads_private_etc_wireguard() {
    if !require_root() {
        return;
    }
    let case = configs::multi_address();
    let qb = QuickBox::new();
    qb.write_etc_config(case.ifname, &case.config);
    let start = qb.snapshot();
    assert_ok(
        &qb.wg_quick(&Tool::Reference, &["up", case.ifname]),
        "up NAME",
    );
    let up = qb.snapshot();
    assert!(up
        .section("addresses")
        .contains("inet 192.168.77.1/32 scope global wg7"));
    assert_ok(
        &qb.wg_quick(&Tool::Reference, &["down", case.ifname]),
        "down NAME",
    );
    start.assert_eq(&qb.snapshot(), "name form", "start", "after down");
}

/// How long the tunnel may take to carry the first ping (handshake included).
const PING_DEADLINE: Duration = Duration::from_secs(15);

/// The reference wg-quick with `WG_QUICK_USERSPACE_IMPLEMENTATION=<our wg-tunnel>` brings up a
/// tunnel to a wireguard-go peer (set up with the reference `wg`), which carries IPv4 and IPv6
/// pings both ways; `down` removes the link and ends the daemon.
///
/// ```text
///   QuickBox A: wg-quick up wgq.conf -> wg-tunnel wgq   Sandbox B: wireguard-go -f wgp
///     10.9.0.1/24 fd09::1/64, port 51820                  10.9.0.2/24 fd09::2/64, port 51821
///     veth-a 10.0.0.1/24 ------------------------------ veth-b 10.0.0.2/24
/// ```
#[test]
fn reference_drives_wg_tunnel_to_a_wireguard_go_peer() {
    tunnel_to_a_wireguard_go_peer(&Tool::ReferenceOnWgTunnel);
}

/// The same with our wg-quick (and its default, wg-tunnel).
#[test]
fn ours_tunnel_to_a_wireguard_go_peer() {
    tunnel_to_a_wireguard_go_peer(&Tool::Ours);
}

fn tunnel_to_a_wireguard_go_peer(tool: &Tool) {
    if !require_root() {
        return;
    }
    let a = QuickBox::new();
    let b = Sandbox::new();
    a.sandbox().veth("veth-a", &b, "veth-b");
    a.sandbox().ip("addr add 10.0.0.1/24 dev veth-a");
    b.ip("addr add 10.0.0.2/24 dev veth-b");

    let mut k = Keys::new(100);
    let (key_a, key_b) = (k.private(), k.private());
    let (pub_a, pub_b) = (pubkey(&key_a), pubkey(&key_b));
    let _peer = b.start_wireguard_go("wgp");
    let peer_conf = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(
        peer_conf.path(),
        format!(
            "[Interface]\nPrivateKey = {key_b}\nListenPort = 51821\n\n\
             [Peer]\nPublicKey = {pub_a}\nEndpoint = 10.0.0.1:51820\nAllowedIPs = 10.9.0.1/32, fd09::1/128\n"
        ),
    )
    .expect("write peer config");
    Invocation::new(["setconf", "wgp", peer_conf.path().to_str().expect("utf-8")])
        .in_sandbox(&b)
        .run(&wg_tests::reference_wg())
        .assert_code(0, "wg setconf wgp");
    b.ip("addr add 10.9.0.2/24 dev wgp");
    b.ip("-6 addr add fd09::2/64 dev wgp nodad");
    b.ip("link set wgp up");

    let conf = a.write_config(
        "wgq",
        &format!(
            "[Interface]\nPrivateKey = {key_a}\nListenPort = 51820\nAddress = 10.9.0.1/24, fd09::1/64\n\n\
             [Peer]\nPublicKey = {pub_b}\nEndpoint = 10.0.0.2:51821\nAllowedIPs = 10.9.0.0/24, fd09::/64\n"
        ),
    );
    let conf = conf.to_str().expect("utf-8 temp path");
    let start = a.snapshot();
    let up = a.wg_quick(tool, &["up", conf]);
    assert_ok(&up, &format!("{tool:?}: up"));
    let started = match tool {
        Tool::ReferenceOnWgTunnel => format!("[#] {} wgq\n", wg_tests::our_wg_tunnel().display()),
        _ => "[#] wg-tunnel wgq\n".to_owned(),
    };
    assert!(
        up.stderr_str().contains(&started),
        "{tool:?} did not start wg-tunnel:\n{up:?}"
    );

    for (from, to) in [
        (a.sandbox(), "10.9.0.2"),
        (&b, "10.9.0.1"),
        (a.sandbox(), "fd09::2"),
    ] {
        let start = Instant::now();
        loop {
            let out = from.run("ping", &["-c", "1", "-W", "1", to]);
            if out.code() == Some(0) {
                break;
            }
            assert!(
                start.elapsed() < PING_DEADLINE,
                "no ping reply from {to} within {PING_DEADLINE:?}:\n{out:?}"
            );
        }
    }

    assert_ok(
        &a.wg_quick(tool, &["down", conf]),
        &format!("{tool:?}: down"),
    );
    start.assert_eq(&a.snapshot(), "wg-tunnel tunnel", "start", "after down");
    // `ip link delete` ends the daemon (it watches its TUN device).
    let since = Instant::now();
    while !a.stragglers().is_empty() {
        assert!(
            since.elapsed() < Duration::from_secs(10),
            "wg-tunnel still running after down: pids {:?}",
            a.stragglers()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// An allowed IP listed twice for one peer (`::/0, 0.0.0.0/0, ::/0`): wireguard-go and
/// wg-tunnel both move the re-added `::/0` to the end of the peer's list (`wg showconf`:
/// `0.0.0.0/0, ::/0`).
#[test]
fn repeated_allowed_ip_order_as_wireguard_go() {
    let mut case = configs::table_off();
    case.config = case.config.replace(
        "AllowedIPs = 0.0.0.0/0, 10.31.0.0/16",
        "AllowedIPs = ::/0, 0.0.0.0/0, ::/0",
    );
    reference_case(case);
}
