//! Seeded random configs (`wg_tests::case_rng`; `WG_TESTS_SEED` explores others,
//! `WG_TESTS_CASE=N` reruns one):
//!
//! * `strip`: 60 generated files (keys in any case, odd spacing and comments, sections in any
//!   order, hooks with `#`, blank and junk lines), ours against the reference byte for byte;
//! * `up`/`down`: 8 generated configs (addresses, allowed IPs of every length, Table, FwMark,
//!   DNS, MTU, hooks, several peers with routed endpoints), ours against the reference: the
//!   same status, HEAD-normalised traces and snapshots after `up` and after `down`.

use std::fmt::Write as _;
use std::thread;

use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use wg_tests::invocation::compare;
use wg_tests::{case_rng, case_selected, require_root, seed, Invocation, Snapshot};

use super::configs::Case;
use super::differential::{assert_trace, expected_trace};
use super::{Keys, QuickBox, Tool, REFERENCE_WG_QUICK};

/// Random case numbers are offset so they never share a stream with other generators.
const STRIP_BASE: u64 = 0x5157_5000;
const UP_BASE: u64 = 0x5157_6000;

fn key_case(rng: &mut ChaCha8Rng, key: &str) -> String {
    match rng.gen_range(0..4) {
        0 => key.to_ascii_lowercase(),
        1 => key.to_ascii_uppercase(),
        _ => key.to_owned(),
    }
}

fn spaced(rng: &mut ChaCha8Rng, key: &str, value: &str) -> String {
    let sp = ["", " ", "  ", "\t"];
    let mut line = format!(
        "{}{}{}={}{}{}",
        sp.choose(rng).expect("non-empty"),
        key,
        sp.choose(rng).expect("non-empty"),
        sp.choose(rng).expect("non-empty"),
        value,
        sp.choose(rng).expect("non-empty"),
    );
    if rng.gen_bool(0.2) {
        line += "# note";
    }
    line
}

fn strip_file(rng: &mut ChaCha8Rng) -> String {
    let interface_keys = [
        ("Address", "10.0.0.1/24, fd00::1/64"),
        ("DNS", "10.0.0.53, search.example"),
        ("MTU", "1400"),
        ("Table", "off"),
        ("PreUp", "echo 'a # b' %i"),
        ("PostUp", "iptables -A FORWARD -i %i -j ACCEPT # fw"),
        ("PreDown", "true"),
        ("PostDown", "true"),
        ("SaveConfig", "true"),
        ("SaveConfig", "FALSE"),
        ("PrivateKey", "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk="),
        ("ListenPort", "51820"),
        ("FwMark", "0x20"),
    ];
    let peer_keys = [
        ("PublicKey", "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="),
        ("AllowedIPs", "10.0.0.2/32, ::/0"),
        ("Endpoint", "[2001:db8::1]:51820"),
        ("PersistentKeepalive", "25"),
        ("Address", "10.9.9.9/32"),
        ("PostUp", "not a hook in a peer"),
    ];
    let junk = [
        "",
        "# comment",
        "   ",
        "key without value",
        "= value without key",
        "[Unknown]",
        "[Interface] # again",
        "[peer]",
        "[interface]",
    ];
    let mut text = String::new();
    for _ in 0..rng.gen_range(1..4) {
        let peer = rng.gen_bool(0.4);
        text += &key_case(rng, if peer { "[Peer]" } else { "[Interface]" });
        text.push('\n');
        for _ in 0..rng.gen_range(0..7) {
            let line = if rng.gen_bool(0.2) {
                (*junk.choose(rng).expect("non-empty")).to_owned()
            } else {
                let (k, v) = if peer {
                    *peer_keys.choose(rng).expect("non-empty")
                } else {
                    *interface_keys.choose(rng).expect("non-empty")
                };
                let k = key_case(rng, k);
                spaced(rng, &k, v)
            };
            text += &line;
            text += if rng.gen_bool(0.05) { "\r\n" } else { "\n" };
        }
    }
    if rng.gen_bool(0.2) {
        text.pop(); // no final newline
    }
    text
}

#[test]
fn strip_random_files_match_the_reference() {
    if !require_root() {
        return;
    }
    let qb = QuickBox::new();
    let path = qb.write_config("wgr", "");
    let p = path.to_str().expect("utf-8 path");
    let ours = wg_tests::cargo_bin("wg-quick");
    let mut failures = Vec::new();
    for case in 0..60 {
        if !case_selected(case) {
            continue;
        }
        let mut rng = case_rng(seed(), STRIP_BASE + case);
        let text = strip_file(&mut rng);
        std::fs::write(&path, &text).expect("write config");
        let inv = Invocation::new(["strip", p])
            .arg0("wg-quick")
            .in_sandbox(qb.sandbox());
        let (r, o) = (
            inv.run(std::path::Path::new(REFERENCE_WG_QUICK)),
            inv.run(&ours),
        );
        if let Some(report) = compare(&r, &o) {
            failures.push(format!(
                "=== seed {:#x} case {case}: {text:?}\n{report}",
                seed()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn v4(rng: &mut ChaCha8Rng, len: u8) -> String {
    let a: u32 = rng.gen();
    let net = if len == 0 {
        0
    } else {
        a & (u32::MAX << (32 - u32::from(len)))
    };
    let o = net.to_be_bytes();
    format!("{}.{}.{}.{}/{len}", o[0], o[1], o[2], o[3])
}

fn v6(rng: &mut ChaCha8Rng, len: u8) -> String {
    let a: u128 = rng.gen();
    let net = if len == 0 {
        0
    } else {
        a & (u128::MAX << (128 - u32::from(len)))
    };
    format!("{}/{len}", std::net::Ipv6Addr::from(net))
}

fn allowed_ip(rng: &mut ChaCha8Rng) -> String {
    match rng.gen_range(0..10) {
        0 => "0.0.0.0/0".to_owned(),
        1 => "::/0".to_owned(),
        2..=6 => {
            let len = rng.gen_range(1..=32);
            v4(rng, len)
        }
        _ => {
            let len = rng.gen_range(1..=128);
            v6(rng, len)
        }
    }
}

/// A random config for `up`, with the uplink of [`super::configs`] as its setup.
fn up_case(n: u64, rng: &mut ChaCha8Rng) -> Case {
    let mut keys = Keys::new(1000 + n);
    let mut c = String::from("[Interface]\n");
    let _ = writeln!(c, "PrivateKey = {}", keys.private());
    let fixed_port = rng.gen_bool(0.5);
    if fixed_port {
        let _ = writeln!(c, "ListenPort = {}", 40000 + n);
    }
    for _ in 0..rng.gen_range(1..3) {
        let mut items = Vec::new();
        for _ in 0..rng.gen_range(1..3) {
            let host: u8 = rng.gen_range(1..250);
            items.push(if rng.gen_bool(0.6) {
                let len = [8, 16, 24, 30, 32][rng.gen_range(0..5)];
                if rng.gen_bool(0.2) {
                    format!("10.{n}.{}.{host}", rng.gen_range(0..250))
                } else {
                    format!("10.{n}.{}.{host}/{len}", rng.gen_range(0..250))
                }
            } else {
                let len = [48, 64, 112, 128][rng.gen_range(0..4)];
                format!("fd{n:02x}:{:x}::{host:x}/{len}", rng.gen_range(0..0xffff))
            });
        }
        let _ = writeln!(c, "Address = {}", items.join(", "));
    }
    if rng.gen_bool(0.3) {
        let dns = ["10.53.0.1", "fd53::1", "a.example", "b.example"];
        let mut chosen: Vec<&str> = dns.iter().copied().filter(|_| rng.gen_bool(0.5)).collect();
        if chosen.is_empty() {
            chosen.push(dns[0]);
        }
        let _ = writeln!(c, "DNS = {}", chosen.join(", "));
    }
    if rng.gen_bool(0.3) {
        let _ = writeln!(c, "MTU = {}", rng.gen_range(1280..=1500));
    }
    match rng.gen_range(0..8) {
        0 => c += "Table = off\n",
        1 => c += "Table = 1234\n",
        2 => c += "Table = auto\n",
        _ => {}
    }
    if rng.gen_bool(0.15) {
        let _ = writeln!(c, "FwMark = {:#x}", rng.gen_range(1..0xffffu32));
    }
    if rng.gen_bool(0.3) {
        c += "PostUp = echo up %i >/dev/null\nPreDown = true\n";
    }
    for _ in 0..rng.gen_range(1..4) {
        let _ = writeln!(c, "\n[Peer]\nPublicKey = {}", keys.public());
        let ips: Vec<String> = (0..rng.gen_range(1..5)).map(|_| allowed_ip(rng)).collect();
        let _ = writeln!(c, "AllowedIPs = {}", ips.join(", "));
        match rng.gen_range(0..3) {
            0 => {
                let _ = writeln!(c, "Endpoint = 198.51.100.{}:51820", rng.gen_range(3..250));
            }
            1 => {
                let _ = writeln!(
                    c,
                    "Endpoint = [2001:db8:1::{:x}]:51820",
                    rng.gen_range(3..250)
                );
            }
            _ => {}
        }
    }
    Case {
        name: "random",
        ifname: "wgr",
        config: c,
        setup: "ip link add uplink0 type veth peer name uplink1
ip link set uplink1 up
ip link set uplink0 mtu 1460 up
ip addr add 198.51.100.2/24 dev uplink0
ip -6 addr add 2001:db8:1::2/64 dev uplink0 nodad
ip route add default via 198.51.100.1 dev uplink0
ip -6 route add default via 2001:db8:1::1 dev uplink0",
        random_port: !fixed_port,
        full_tunnel_v4: false,
        interface_order: None,
        without_nft: false,
    }
}

/// One run: (start, up outcome, after up, down outcome if up succeeded, after down).
struct RandomRun {
    start: Snapshot,
    up: wg_tests::Outcome,
    after_up: Snapshot,
    down: Option<wg_tests::Outcome>,
    after_down: Snapshot,
}

fn run_random(tool: &Tool, case: &Case) -> RandomRun {
    let qb = case.quickbox();
    qb.sh(case.setup);
    let path = qb.write_config(case.ifname, &case.config);
    let path = path.to_str().expect("utf-8 path");
    let mask = |s: Snapshot| {
        if case.random_port {
            s.mask_listen_port()
        } else {
            s
        }
    };
    let start = qb.snapshot();
    let up = qb.wg_quick(tool, &["up", path]);
    let after_up = mask(qb.snapshot());
    let down = (up.code() == Some(0)).then(|| qb.wg_quick(tool, &["down", path]));
    RandomRun {
        start,
        up,
        after_up,
        down,
        after_down: qb.snapshot(),
    }
}

fn random_up_down(cases: std::ops::Range<u64>) {
    if !require_root() {
        return;
    }
    for n in cases {
        if !case_selected(n) {
            continue;
        }
        let mut rng = case_rng(seed(), UP_BASE + n);
        let case = up_case(n, &mut rng);
        let what = format!("seed {:#x} case {n}:\n{}", seed(), case.config);
        let (r, o) = thread::scope(|s| {
            let r = s.spawn(|| run_random(&Tool::Reference, &case));
            let o = run_random(&Tool::Ours, &case);
            (r.join().expect("reference run"), o)
        });
        assert_eq!(
            o.up.code(),
            r.up.code(),
            "{what}up status (left ours)\nours: {:?}\nreference: {:?}",
            o.up,
            r.up
        );
        let src_valid_mark_was_1 = false;
        assert_trace(
            &format!("{what}up"),
            &expected_trace(&r.up.stderr_str(), 0, src_valid_mark_was_1),
            &o.up.stderr_str(),
        );
        r.after_up
            .assert_eq(&o.after_up, &format!("{what}after up"), "reference", "ours");
        if let (Some(rd), Some(od)) = (&r.down, &o.down) {
            assert_eq!(od.code(), rd.code(), "{what}down status\n{od:?}\n{rd:?}");
            assert_trace(
                &format!("{what}down"),
                &expected_trace(&rd.stderr_str(), 0, false),
                &od.stderr_str(),
            );
        }
        r.after_down.assert_eq(
            &o.after_down,
            &format!("{what}after down"),
            "reference",
            "ours",
        );
        // Ours is back where it started, `src_valid_mark` aside (checked against the reference
        // just above).
        o.start
            .clone()
            .with_section("sysctl", o.after_down.section("sysctl"))
            .assert_eq(
                &o.after_down,
                &format!("{what}ours up+down"),
                "start",
                "after down",
            );
    }
}

#[test]
fn up_down_random_0_to_1() {
    random_up_down(0..2);
}

#[test]
fn up_down_random_2_to_3() {
    random_up_down(2..4);
}

#[test]
fn up_down_random_4_to_5() {
    random_up_down(4..6);
}

#[test]
fn up_down_random_6_to_7() {
    random_up_down(6..8);
}
