//! Where upstream HEAD (which we follow) and the installed 1.0.20210914 differ, each
//! deliberate difference of [`super::DELIBERATE_DIFFERENCES`] shown on a case of its own, plus
//! the `wg-quick up NAME` form against the reference.

use std::thread;

use wg_tests::require_root;

use super::configs::{self, Case};
use super::differential::{assert_trace, expected_trace};
use super::reference::{run_case, Run};
use super::{assert_ok, pubkey, Keys, QuickBox, Tool};

/// Runs `case` with the reference and with ours in parallel.
fn both(case: &Case) -> (Run, Run) {
    thread::scope(|s| {
        let r = s.spawn(|| {
            let qb = case.quickbox();
            run_case(&qb, &Tool::Reference, case)
        });
        let qb = case.quickbox();
        let o = run_case(&qb, &Tool::Ours, case);
        (r.join().expect("reference run"), o)
    })
}

/// Endpoints behind routes of different MTUs: 198.51.100.10 via uplink0 (link MTU 1500),
/// 192.0.2.10 via uplink2 (link MTU 1450), 203.0.113.10 via a route with `mtu 1400`; with
/// `unreachable`, also 2001:db8:99::1 with no route at all (`ip route get` fails and prints
/// `RTNETLINK answers: Network is unreachable`, in HEAD as in Debian).
fn mtu_case(unreachable: bool) -> Case {
    let mut k = Keys::new(20);
    let (key, a, b, c, d) = (k.private(), k.public(), k.public(), k.public(), k.public());
    Case {
        name: "mtu_smallest",
        ifname: "wgm",
        config: format!(
            "[Interface]\n\
             PrivateKey = {key}\n\
             ListenPort = 51020\n\
             Address = 10.20.0.1/24\n\
             \n\
             [Peer]\nPublicKey = {a}\nEndpoint = 198.51.100.10:51820\nAllowedIPs = 10.20.1.0/24\n\n\
             [Peer]\nPublicKey = {b}\nEndpoint = 192.0.2.10:51820\nAllowedIPs = 10.20.2.0/24\n\n\
             [Peer]\nPublicKey = {c}\nEndpoint = 203.0.113.10:51820\nAllowedIPs = 10.20.3.0/24\n\n\
             [Peer]\nPublicKey = {d}\n{}AllowedIPs = 10.20.4.0/24\n",
            if unreachable {
                "Endpoint = [2001:db8:99::1]:51820\n"
            } else {
                ""
            }
        ),
        setup: "ip link add uplink0 type veth peer name uplink1
ip link set uplink1 up
ip link set uplink0 up
ip addr add 198.51.100.2/24 dev uplink0
ip route add default via 198.51.100.1 dev uplink0
ip route add 203.0.113.0/24 dev uplink0 mtu 1400
ip link add uplink2 type veth peer name uplink3
ip link set uplink3 up
ip link set uplink2 mtu 1450 up
ip addr add 192.0.2.2/24 dev uplink2",
        random_port: false,
        full_tunnel_v4: false,
        interface_order: None,
        without_nft: false,
    }
}

/// Automatic MTU: HEAD takes the smallest endpoint route MTU (1400 - 80), Debian the largest
/// (1500 - 80). Everything else is the same. (Both stay above IPv6's minimum of 1280, so the
/// link keeps IPv6 either way.)
#[test]
fn automatic_mtu_is_the_smallest_endpoint_route_mtu() {
    automatic_mtu(false);
}

/// The same with an endpoint that has no route: the reference's trace holds `ip route get`'s
/// `RTNETLINK answers: Network is unreachable` (its stderr is not redirected, in HEAD either).
#[test]
fn automatic_mtu_with_an_unreachable_endpoint() {
    automatic_mtu(true);
}

fn automatic_mtu(unreachable: bool) {
    if !require_root() {
        return;
    }
    let case = mtu_case(unreachable);
    let (r, o) = both(&case);
    let (largest, smallest) = ("mtu 1420 ", "mtu 1320 ");
    let set = |m: &str| format!("[#] ip link set {m}up dev wgm");
    assert!(
        r.up_trace.contains(&set(largest)),
        "reference: {}",
        r.up_trace
    );
    let expected = expected_trace(&r.up_trace, 0, false).replace(&set(largest), &set(smallest));
    assert_trace("mtu: up", &expected, &o.up_trace);
    let as_head = |section: &str| r.up.section(section).replace(largest, smallest);
    let expected =
        r.up.clone()
            .with_section("links", &as_head("links"))
            .with_section("addresses", &as_head("addresses"));
    expected.assert_eq(&o.up, "mtu: after up", "reference with HEAD's MTU", "ours");
    o.start
        .assert_eq(&o.down, "mtu: ours up+down", "start", "after down");
}

/// HEAD keeps the text after `#` in hook values: it is traced, run (as a shell comment) and
/// saved. Debian cuts it.
#[test]
fn hooks_keep_the_text_after_a_hash() {
    if !require_root() {
        return;
    }
    let mut k = Keys::new(21);
    let (key, peer) = (k.private(), k.public());
    let qb = QuickBox::new();
    let path = qb.write_config(
        "wgh",
        &format!(
            "[Interface]\n\
             PrivateKey = {key}\n\
             ListenPort = 51021\n\
             PostUp = echo 'up #1' %i # a comment about %i\n\
             PreDown = true # tight\n\
             \n\
             [Peer]\nPublicKey = {peer}\nAllowedIPs = 10.21.0.0/24\n"
        ),
    );
    let path = path.to_str().expect("utf-8 path");
    let up = qb.wg_quick(&Tool::Ours, &["up", path]);
    assert_ok(&up, "up");
    assert!(
        up.stdout_str() == "up #1 wgh\n"
            && up
                .stderr_str()
                .contains("\n[#] echo 'up #1' wgh # a comment about wgh\n"),
        "{up:?}"
    );
    let save = qb.wg_quick(&Tool::Ours, &["save", path]);
    assert_ok(&save, "save");
    let saved = qb.read_config("wgh");
    assert!(
        saved.contains("\nPostUp = echo 'up #1' %i # a comment about %i\nPreDown = true # tight\n"),
        "{saved}"
    );
    let down = qb.wg_quick(&Tool::Ours, &["down", path]);
    assert_ok(&down, "down");
    assert!(
        down.stderr_str().starts_with("[#] true # tight\n"),
        "{down:?}"
    );
}

/// HEAD runs PreUp after creating the link and applies the config with addconf, so
/// `PreUp = wg set %i private-key FILE` with no PrivateKey in the file works (the man page's
/// example). Debian runs it before the link exists, and fails.
#[test]
fn pre_up_can_set_the_private_key() {
    if !require_root() {
        return;
    }
    let mut k = Keys::new(22);
    let (key, peer) = (k.private(), k.public());
    let run = |tool: &Tool| {
        let qb = QuickBox::new();
        let key_path = qb.write_config("key", &format!("{key}\n"));
        let path = qb.write_config(
            "wgk",
            &format!(
                "[Interface]\n\
                 PreUp = wg set %i private-key {}\n\
                 Address = 10.22.0.1/24\n\
                 \n\
                 [Peer]\nPublicKey = {peer}\nAllowedIPs = 10.22.1.0/24\n",
                key_path.display()
            ),
        );
        let path = path.to_str().expect("utf-8 path").to_owned();
        let start = qb.snapshot();
        let up = qb.wg_quick(tool, &["up", &path]);
        let shown = wg_tests::Invocation::new(["show", "wgk", "public-key"])
            .in_sandbox(qb.sandbox())
            .run(&wg_tests::reference_wg())
            .stdout_str();
        if up.code() == Some(0) {
            assert_ok(&qb.wg_quick(tool, &["down", &path]), "down");
        }
        start.assert_eq(&qb.snapshot(), &format!("{tool:?}"), "start", "after");
        (up, shown)
    };
    let (r, _) = run(&Tool::Reference);
    assert_ne!(
        r.code(),
        Some(0),
        "Debian's wg-quick ran PreUp late?\n{r:?}"
    );
    let (o, shown) = run(&Tool::Ours);
    assert_ok(&o, "ours: up with PreUp setting the key");
    assert_eq!(
        shown.trim(),
        pubkey(&key),
        "the key set in PreUp did not survive"
    );
}

/// `src_valid_mark` already 1: HEAD does not write it again (no `sysctl` line in the trace).
#[test]
fn src_valid_mark_already_set_is_left_alone() {
    if !require_root() {
        return;
    }
    let mut case = configs::road_warrior();
    case.setup = "sysctl -qw net.ipv4.conf.all.src_valid_mark=1";
    case.full_tunnel_v4 = false; // it was 1 before: `down` returns to the start exactly
    let (r, o) = both(&case);
    assert!(r
        .up_trace
        .contains("[#] sysctl -q net.ipv4.conf.all.src_valid_mark=1\n"));
    assert_trace(
        "src_valid_mark: up",
        &expected_trace(&r.up_trace, 0, true),
        &o.up_trace,
    );
    r.up.assert_eq(&o.up, "src_valid_mark: after up", "reference", "ours");
    o.start.assert_eq(
        &o.down,
        "src_valid_mark: ours up+down",
        "start",
        "after down",
    );
}

/// `wg-quick up NAME` / `down NAME` read `/etc/wireguard/NAME.conf` (the sandbox's private
/// one): same trace and state as the reference.
#[test]
fn name_form_matches_the_reference() {
    if !require_root() {
        return;
    }
    let case = configs::dns_prefix();
    let run = |tool: &Tool| {
        let qb = case.quickbox();
        qb.write_etc_config(case.ifname, &case.config);
        let start = qb.snapshot();
        let up = qb.wg_quick(tool, &["up", case.ifname]);
        assert_ok(&up, "up NAME");
        let snap = qb.snapshot();
        let down = qb.wg_quick(tool, &["down", case.ifname]);
        assert_ok(&down, "down NAME");
        start.assert_eq(
            &qb.snapshot(),
            &format!("{tool:?} NAME"),
            "start",
            "after down",
        );
        (up.stderr_str(), snap, down.stderr_str())
    };
    let (r, o) = thread::scope(|s| {
        let r = s.spawn(|| run(&Tool::Reference));
        let o = run(&Tool::Ours);
        (r.join().expect("reference run"), o)
    });
    assert_trace("name form: up", &expected_trace(&r.0, 0, false), &o.0);
    r.1.assert_eq(&o.1, "name form: after up", "reference", "ours");
    assert_trace("name form: down", &expected_trace(&r.2, 0, false), &o.2);
}

/// `/etc/resolvconf/interface-order` present but `resolvconf` a symlink (as when it is
/// resolvectl): HEAD registers the DNS servers under the bare interface name, Debian still
/// adds the `tun.` prefix.
#[test]
fn interface_order_is_ignored_when_resolvconf_is_a_symlink() {
    if !require_root() {
        return;
    }
    let case = configs::dns_prefix();
    let run = |tool: &Tool| {
        let qb = QuickBox::with_etc(
            wg_tests::PrivateEtc::with_resolvconf()
                .interface_order(case.interface_order.expect("dns_prefix has an order"))
                .resolvconf_symlink(),
        );
        run_case(&qb, tool, &case)
    };
    let (r, o) = thread::scope(|s| {
        let r = s.spawn(|| run(&Tool::Reference));
        let o = run(&Tool::Ours);
        (r.join().expect("reference run"), o)
    });
    assert!(r.up_trace.contains("[#] resolvconf -a tun.dnsp -m 0 -x\n"));
    assert_trace(
        "symlinked resolvconf: up",
        &expected_trace(&r.up_trace, 0, false).replace(" tun.dnsp ", " dnsp "),
        &o.up_trace,
    );
    assert_trace(
        "symlinked resolvconf: down",
        &expected_trace(&r.down_trace, 0, false).replace(" tun.dnsp ", " dnsp "),
        &o.down_trace,
    );
    let as_head = |section: &str| r.up.section(section).replace("tun.dnsp", "dnsp");
    r.up.clone()
        .with_section("resolvconf", &as_head("resolvconf"))
        .assert_eq(
            &o.up,
            "symlinked resolvconf: after up",
            "reference as HEAD",
            "ours",
        );
    o.start.assert_eq(
        &o.down,
        "symlinked resolvconf: ours up+down",
        "start",
        "after down",
    );
}
