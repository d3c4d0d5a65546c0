//! Bad input everywhere, ours against the reference byte for byte (stdout, stderr, exit
//! status), as the hardening issue asks: each gets the reference's error, nothing crashes.
//!
//! * wg(8) config files (`setconf`, `addconf`) with NUL bytes, multi-megabyte lines, invalid
//!   UTF-8, Latin-1, UTF-8 and UTF-16 byte-order marks, CR-only line ends, and invalid keys,
//!   endpoints, CIDRs, ports, fwmarks and keepalives, against a recording fake UAPI socket.
//! * key files (`wg set … private-key FILE`, `preshared-key FILE`) and `wg pubkey` stdin with
//!   the same kinds of damage.
//! * the client side of UAPI: `wg show` / `showconf` against a fake daemon whose `get` reply is
//!   truncated, huge, has NUL bytes or invalid UTF-8, or garbage values; and `wg set` against a
//!   fake daemon whose `set` reply is garbage.
//! * `wg-quick strip` on damaged files.
//!
//! Root only (sandboxes); each test prints SKIPPED otherwise.

use std::fs;
use std::path::Path;

use wg_tests::invocation::compare;
use wg_tests::{diff_wg_all, require_root, FakeUapi, Invocation, Sandbox};

/// A valid base64 key (32 bytes of 0x01… from `wg genkey`-like output).
const KEY: &str = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=";
const PUB: &str = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";
/// A valid hex key, for UAPI replies.
const HEX: &str = "c809f3e5317e9575c9b5ed78b638b7dcc3536abe85dab6142202418076df0669";

/// A sandbox with a fake daemon `fake` (its default replies: an empty device, set succeeds)
/// and a host temp dir for files (visible inside the sandbox at the same path).
struct Bed {
    sandbox: Sandbox,
    fake: FakeUapi,
    dir: tempfile::TempDir,
}

impl Bed {
    fn new() -> Bed {
        let sandbox = Sandbox::new();
        let fake = FakeUapi::bind(sandbox.host_path("/run/wireguard/fake.sock"));
        // Every reply ends the connection, so a truncated reply cannot leave a client waiting.
        fake.set_close_after_reply(true);
        let dir = tempfile::tempdir().expect("temp dir");
        Bed { sandbox, fake, dir }
    }

    /// Writes a file (mode 0600) and returns its path.
    fn file(&self, name: &str, bytes: &[u8]) -> String {
        let path = self.dir.path().join(name);
        fs::write(&path, bytes).expect("write file");
        fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .expect("chmod");
        path.to_str().expect("utf-8 temp path").to_owned()
    }

    /// `wg ARGS` in the sandbox. Endpoints that look like host names are resolved once, not
    /// retried for 15 s (the sandbox has no network: resolution fails at once).
    fn wg<'a>(&'a self, args: &[&str]) -> Invocation<'a> {
        Invocation::new(args)
            .in_sandbox(&self.sandbox)
            .env("WG_ENDPOINT_RESOLUTION_RETRIES", "0")
    }
}

/// `bytes` as UTF-16LE with a byte-order mark, as Windows editors save "Unicode" text.
fn utf16le_bom(text: &str) -> Vec<u8> {
    let mut out = vec![0xff, 0xfe];
    for unit in text.encode_utf16() {
        out.extend_from_slice(&unit.to_le_bytes());
    }
    out
}

/// A line of `n` bytes of `c`.
fn long(c: char, n: usize) -> String {
    std::iter::repeat(c).take(n).collect()
}

/// `bytes` with every line longer than `max` cut to `max` bytes.
fn shrink(bytes: &[u8], max: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        if line.len() > max {
            out.extend_from_slice(&line[..max]);
            out.push(b'\n');
        } else {
            out.extend_from_slice(line);
        }
    }
    out
}

/// Damaged and invalid wg(8) config files: (name, bytes).
fn bad_configs() -> Vec<(String, Vec<u8>)> {
    let good = format!("[Interface]\nPrivateKey = {KEY}\n[Peer]\nPublicKey = {PUB}\n");
    let mut v: Vec<(String, Vec<u8>)> = vec![
        (
            "nul in key".into(),
            format!("[Interface]\nPrivateKey = {KEY}\0x\n").into_bytes(),
        ),
        (
            "nul line".into(),
            b"[Interface]\n\0\nListenPort = 1\n".to_vec(),
        ),
        (
            "nul in section".into(),
            b"[Inter\0face]\nListenPort = 1\n".to_vec(),
        ),
        (
            "nul after value".into(),
            b"[Interface]\nListenPort = 1\0 2\n".to_vec(),
        ),
        (
            "utf-8 bom".into(),
            [&b"\xef\xbb\xbf"[..], good.as_bytes()].concat(),
        ),
        ("utf-16 bom".into(), utf16le_bom(&good)),
        (
            "latin-1 value".into(),
            b"[Interface]\nListenPort = 5\xe9\n".to_vec(),
        ),
        (
            "latin-1 comment".into(),
            format!("[Interface]\n# caf\u{e9}\nPrivateKey = {KEY}\n").into_bytes(),
        ),
        (
            "latin-1 key name".into(),
            b"[Interface]\nPriv\xe9teKey = x\n".to_vec(),
        ),
        ("invalid utf-8 section".into(), b"[\xff\xfe]\n".to_vec()),
        ("cr only".into(), good.replace('\n', "\r").into_bytes()),
        (
            "no final newline".into(),
            good.trim_end().as_bytes().to_vec(),
        ),
        (
            "huge comment line".into(),
            format!("[Interface]\n#{}\nPrivateKey = {KEY}\n", long('c', 3 << 20)).into_bytes(),
        ),
        (
            "huge value".into(),
            format!("[Interface]\nPrivateKey = {}\n", long('A', 3 << 20)).into_bytes(),
        ),
        (
            "huge unknown line".into(),
            format!("[Interface]\n{}\n", long('x', 2 << 20)).into_bytes(),
        ),
        (
            "huge allowed ips".into(),
            format!(
                "[Peer]\nPublicKey = {PUB}\nAllowedIPs = {}10.0.0.0/33\n",
                "10.0.0.0/8,".repeat(100_000)
            )
            .into_bytes(),
        ),
    ];
    let iface = |line: &str| format!("[Interface]\n{line}\n").into_bytes();
    let peer = |line: &str| format!("[Peer]\nPublicKey = {PUB}\n{line}\n").into_bytes();
    for key in [
        "",
        "x",
        &KEY[..43],
        &format!("{KEY}="),
        &KEY.replace('+', "-"),
        &KEY.replace('=', "A"),
        "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmn=", // non-zero padding bits
        &long('A', 200),
    ] {
        v.push((
            format!("PrivateKey {key:.20}"),
            iface(&format!("PrivateKey = {key}")),
        ));
        v.push((
            format!("PublicKey {key:.20}"),
            format!("[Peer]\nPublicKey = {key}\n").into_bytes(),
        ));
        v.push((
            format!("PresharedKey {key:.20}"),
            peer(&format!("PresharedKey = {key}")),
        ));
    }
    // Ports above 65535 are a known difference (`crate::set`, item 4).
    for port in [
        "-1", "-0", "abc", "1x", "0x10", "65535", "+1", "++1", "+", " ",
    ] {
        v.push((
            format!("ListenPort {port}"),
            iface(&format!("ListenPort = {port}")),
        ));
    }
    for mark in [
        "-1",
        "0x",
        "0xfffffffff",
        "4294967296",
        "off",
        "0b1",
        "1e3",
        "0x1g",
    ] {
        v.push((format!("FwMark {mark}"), iface(&format!("FwMark = {mark}"))));
    }
    for ka in ["-1", "65536", "off", "0", "x", "1.5"] {
        v.push((
            format!("PersistentKeepalive {ka}"),
            peer(&format!("PersistentKeepalive = {ka}")),
        ));
    }
    for endpoint in [
        "1.2.3.4",
        "1.2.3.4:",
        ":51820",
        "[::1",
        "[::1]",
        "::1:51820",
        "[fe80::1%]:1",
        "1.2.3.4:-1",
        "1.2.3.4:abc",
        "[1.2.3.4]:5",
        "1.2.3.4:5:6",
        "[]:1",
    ] {
        v.push((
            format!("Endpoint {endpoint}"),
            peer(&format!("Endpoint = {endpoint}")),
        ));
    }
    for cidr in [
        "10.0.0.0/33",
        "::/129",
        "10.0.0.0/-1",
        "10.0.0.0/",
        "/24",
        "1.2.3/24",
        "10.0.0.0/24/1",
        "10.0.0.0/0x8",
        "10.0.0.256/32",
        ",",
        "10.0.0.0/8,,10.1.0.0/16",
        "fe80::1%eth0/64",
        "1.2.3.4/4294967328",
    ] {
        v.push((
            format!("AllowedIPs {cidr}"),
            peer(&format!("AllowedIPs = {cidr}")),
        ));
    }
    v
}

#[test]
fn damaged_config_files_match_reference() {
    if !require_root() {
        return;
    }
    let bed = Bed::new();
    let mut invs = Vec::new();
    for (i, (_name, bytes)) in bad_configs().iter().enumerate() {
        let path = bed.file(&format!("c{i}.conf"), bytes);
        for sub in ["setconf", "addconf"] {
            invs.push(bed.wg(&[sub, "fake", &path]));
        }
    }
    diff_wg_all(invs);
}

/// Key files and `wg pubkey` input with the same damage.
#[test]
fn damaged_keys_match_reference() {
    if !require_root() {
        return;
    }
    let bed = Bed::new();
    let keys: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"\n".to_vec(),
        format!("{KEY}\0").into_bytes(),
        format!("\0{KEY}").into_bytes(),
        format!("{KEY}\n\n").into_bytes(),
        format!("{KEY} trailing").into_bytes(),
        format!(" {KEY}").into_bytes(),
        format!("{KEY}\r\n").into_bytes(),
        KEY.as_bytes()[..43].to_vec(),
        long('A', 4 << 20).into_bytes(),
        utf16le_bom(KEY),
        [&b"\xef\xbb\xbf"[..], KEY.as_bytes()].concat(),
        b"\xff\xfe\xfd".to_vec(),
        KEY.replace('y', "\u{e9}").into_bytes(),
    ];
    let mut invs = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let path = bed.file(&format!("k{i}.key"), key);
        invs.push(bed.wg(&["set", "fake", "private-key", &path]));
        invs.push(bed.wg(&["set", "fake", "peer", PUB, "preshared-key", &path]));
        invs.push(Invocation::new(["pubkey"]).stdin(key.clone()));
    }
    // Arguments: invalid keys, endpoints, CIDRs and ports in every place `wg set` takes them.
    for key in [
        "",
        "x",
        &KEY[..43],
        &format!("{KEY}="),
        "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmn=",
    ] {
        invs.push(bed.wg(&["set", "fake", "peer", key]));
        invs.push(bed.wg(&["set", "fake", "peer", key, "remove"]));
    }
    for port in [
        "-1", "-0", "abc", "", "0x10", "+1", " 1", "\t+2", "+ 1", "1 ", "-",
    ] {
        invs.push(bed.wg(&["set", "fake", "listen-port", port]));
    }
    for mark in ["-1", "0x", "0xfffffffff", "off", "x"] {
        invs.push(bed.wg(&["set", "fake", "fwmark", mark]));
    }
    for endpoint in [
        "1.2.3.4",
        ":1",
        "[::1",
        "1.2.3.4:-1",
        "[]:1",
        "1.2.3.4:x",
        "1.2.3.4:+1",
        "1.2.3.4: 1",
        "[::1]:-0",
    ] {
        invs.push(bed.wg(&["set", "fake", "peer", PUB, "endpoint", endpoint]));
    }
    for cidr in [
        "10.0.0.0/33",
        "::/129",
        "/24",
        "1.2.3/24",
        ",",
        "10.0.0.0/24/1",
        "x",
    ] {
        invs.push(bed.wg(&["set", "fake", "peer", PUB, "allowed-ips", cidr]));
    }
    for ka in ["-1", "65536", "x", ""] {
        invs.push(bed.wg(&["set", "fake", "peer", PUB, "persistent-keepalive", ka]));
    }
    diff_wg_all(invs);
}

/// Damaged `get` replies from a daemon: (name, reply bytes). The fake closes the connection
/// after each reply, so a reply without its blank line is a truncated one.
fn bad_get_replies() -> Vec<(String, Vec<u8>)> {
    let mut many_peers = String::new();
    for i in 0..3000u32 {
        many_peers.push_str(&format!(
            "public_key={:064x}\nallowed_ip=10.{}.{}.0/24\n",
            u128::from(i) + 1,
            i / 256,
            i % 256
        ));
    }
    many_peers.push_str("errno=0\n\n");
    vec![
        ("empty".into(), Vec::new()),
        ("no blank line".into(), b"errno=0\n".to_vec()),
        ("no newline".into(), b"errno=0".to_vec()),
        (
            "cut mid key".into(),
            format!("private_key={}", &HEX[..20]).into_bytes(),
        ),
        (
            "cut in peer".into(),
            format!("public_key={HEX}\nallowed_ip=10.0").into_bytes(),
        ),
        ("no errno".into(), b"listen_port=1\n\n".to_vec()),
        ("errno empty".into(), b"errno=\n\n".to_vec()),
        ("errno garbage".into(), b"errno=abc\n\n".to_vec()),
        ("errno negative".into(), b"errno=-1\n\n".to_vec()),
        (
            "errno huge".into(),
            b"errno=99999999999999999999\n\n".to_vec(),
        ),
        ("line without =".into(), b"garbage\nerrno=0\n\n".to_vec()),
        (
            "nul in value".into(),
            b"listen_port=1\0\nerrno=0\n\n".to_vec(),
        ),
        (
            "nul in key".into(),
            b"listen\0_port=1\nerrno=0\n\n".to_vec(),
        ),
        (
            "huge unknown line".into(),
            format!("x={}\nerrno=0\n\n", long('y', 2 << 20)).into_bytes(),
        ),
        (
            "huge number".into(),
            format!("listen_port={}\nerrno=0\n\n", long('1', 1 << 20)).into_bytes(),
        ),
        (
            "huge line without newline".into(),
            long('z', 1 << 20).into_bytes(),
        ),
        (
            "short key".into(),
            format!("private_key={}\nerrno=0\n\n", &HEX[..62]).into_bytes(),
        ),
        (
            "upper-case key".into(),
            format!("private_key={}\nerrno=0\n\n", HEX.to_uppercase()).into_bytes(),
        ),
        (
            "port too big".into(),
            b"listen_port=65536\nerrno=0\n\n".to_vec(),
        ),
        (
            "fwmark too big".into(),
            b"fwmark=4294967296\nerrno=0\n\n".to_vec(),
        ),
        (
            "psk outside peer".into(),
            format!("preshared_key={HEX}\nerrno=0\n\n").into_bytes(),
        ),
        (
            "bad endpoint".into(),
            format!("public_key={HEX}\nendpoint=[::1\nerrno=0\n\n").into_bytes(),
        ),
        (
            "bad cidr".into(),
            format!("public_key={HEX}\nallowed_ip=10.0.0.0/33\nerrno=0\n\n").into_bytes(),
        ),
        (
            "handshake overflow".into(),
            format!("public_key={HEX}\nlast_handshake_time_sec=18446744073709551616\nerrno=0\n\n")
                .into_bytes(),
        ),
        (
            "counter overflow".into(),
            format!("public_key={HEX}\nrx_bytes=18446744073709551616\nerrno=0\n\n").into_bytes(),
        ),
        ("many peers".into(), many_peers.into_bytes()),
    ]
}

#[test]
fn damaged_uapi_replies_match_reference() {
    if !require_root() {
        return;
    }
    let bed = Bed::new();
    let mut failures = Vec::new();
    let (reference, ours) = (wg_tests::reference_wg(), wg_tests::our_wg());
    for (name, reply) in bad_get_replies() {
        bed.fake.set_get_reply(reply);
        for args in [
            &["show", "fake"][..],
            &["show", "fake", "dump"],
            &["showconf", "fake"],
        ] {
            let inv = bed.wg(args);
            if let Some(report) = compare(&inv.run(&reference), &inv.run(&ours)) {
                failures.push(format!(
                    "=== get reply {name}: {}\n{report}",
                    inv.describe()
                ));
            }
        }
    }
    bed.fake.set_get_reply(b"errno=0\n\n".to_vec());
    for reply in [
        &b""[..],
        b"errno=0",
        b"errno=0\n",
        b"errno=-98\n",
        b"errno=\n\n",
        b"errno=x\n\n",
        b"errno=+5\n\n",
        b"errno=-0\n\n",
        b"errno=05\n\n",
        b"errno= 1\n\n",
        b"errno=1 \n\n",
        b"errno=0\0\n\n",
        b"errno=5\nerrno=0\n\n",
        b"errno=0\nerrno=x\n\n",
        b"errno=0\nfoo\n\n",
        b"x\nerrno=0\n\n",
        b"=\nerrno=0\n\n",
        b"foo=bar\nerrno=-98\n\n",
        b"\n",
        b"errno=-2147483648\n\n",
        b"errno=2147483648\n\n",
        b"junk\n\n",
    ] {
        bed.fake.set_set_reply(reply.to_vec());
        let inv = bed.wg(&["set", "fake", "listen-port", "1"]);
        if let Some(report) = compare(&inv.run(&reference), &inv.run(&ours)) {
            failures.push(format!(
                "=== set reply {:?}\n{report}",
                String::from_utf8_lossy(reply)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Get replies with bytes that are not UTF-8: the reference ignores an unknown key and calls a
/// bad value a protocol error, and so do we (the UAPI client once failed the whole read).
#[test]
fn non_utf8_uapi_replies_match_reference() {
    if !require_root() {
        return;
    }
    let bed = Bed::new();
    let mut failures = Vec::new();
    let (reference, ours) = (wg_tests::reference_wg(), wg_tests::our_wg());
    for reply in [
        &b"\xff\xfe=1\nerrno=0\n\n"[..],
        b"listen_port=\xff\nerrno=0\n\n",
        b"errno=0\n\xe9\n\n",
    ] {
        bed.fake.set_get_reply(reply.to_vec());
        for args in [&["show", "fake"][..], &["showconf", "fake"]] {
            let inv = bed.wg(args);
            if let Some(report) = compare(&inv.run(&reference), &inv.run(&ours)) {
                failures.push(format!(
                    "=== {:?}: {}\n{report}",
                    String::from_utf8_lossy(reply),
                    inv.describe()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `wg-quick strip` on the damaged files (the bash reference reads a multi-megabyte line too
/// slowly for a test, so huge lines are cut to 4 KiB here).
#[test]
fn damaged_quick_configs_strip_like_reference() {
    if !require_root() {
        return;
    }
    let bed = Bed::new();
    let ours = wg_tests::cargo_bin("wg-quick");
    let mut failures = Vec::new();
    for (i, (name, bytes)) in bad_configs().into_iter().enumerate() {
        let mut text: Vec<u8> = if name.starts_with("huge") {
            shrink(&bytes, 4 << 10)
        } else {
            bytes
        };
        text.extend_from_slice(b"\n[Interface]\nAddress = 10.0.0.1/24\nDNS = 1.1.1.1\n");
        let path = bed.file(&format!("wgb{i}.conf"), &text);
        let inv = Invocation::new(["strip", &path])
            .arg0("wg-quick")
            .in_sandbox(&bed.sandbox);
        let (r, o) = (inv.run(Path::new("/usr/bin/wg-quick")), inv.run(&ours));
        if let Some(report) = compare(&r, &o) {
            failures.push(format!("=== strip {name}\n{report}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
