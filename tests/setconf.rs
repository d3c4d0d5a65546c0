//! `wg setconf`, `addconf` and `syncconf` against the reference (compat 1.5, 3, 7.3), on the
//! test bed of [`crate::set`] (one sandbox: `wgr` configured by the reference, `wgo` by ours, a
//! recording fake socket `fake`). Known differences: listed in `crate::set`; the
//! syncconf PSK/keepalive reset is checked by patching the reference's request (or state) with
//! exactly the HEAD reset, never by skipping the case.

use std::collections::HashMap;
use std::fmt::Write as _;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use wg_tests::{
    case_rng, case_selected, compare, diff_wg_all, reference_wg, require_root, seed, Invocation,
    Outcome,
};

use crate::set::{
    assert_same_capture, finish, hex, pick, random_allowed_ip, random_endpoint, random_key,
    show_requests, Bed,
};

/// Generated files per subcommand diffed on request bytes.
const REQUEST_CASES: u64 = 200;
/// Generated files applied to two devices.
const STATE_CASES: u64 = 200;

const SUBCOMMANDS: [&str; 3] = ["setconf", "addconf", "syncconf"];

/// The all-zero key in UAPI form.
fn zero_hex() -> String {
    "0".repeat(64)
}

/// What a generated file says about one `[Peer]`, for computing the syncconf reset.
#[derive(Debug, Clone)]
struct FilePeer {
    key: String,
    has_psk: bool,
    has_keepalive: bool,
}

/// A generated configuration file.
#[derive(Debug, Clone)]
struct ConfFile {
    text: String,
    peers: Vec<FilePeer>,
}

/// Writes `key = value` with random key case and spacing.
fn setting(out: &mut String, key: &str, value: &str, rng: &mut ChaCha8Rng) {
    let key = match rng.gen_range(0..6) {
        0 => key.to_lowercase(),
        1 => key.to_uppercase(),
        _ => key.to_owned(),
    };
    let sep = pick(rng, &[" = ", "=", "\t= ", " =\t"]);
    let tail = pick(rng, &["", "", "", " # comment", "\r", "  "]);
    let _ = writeln!(out, "{key}{sep}{value}{tail}");
}

/// A random file: up to `max_peers` peers from `pool`, no known differences.
fn random_conf(rng: &mut ChaCha8Rng, pool: &[String], max_peers: usize) -> ConfFile {
    let mut text = String::new();
    let mut peers = Vec::new();
    if rng.gen_bool(0.3) {
        text.push_str("# generated\n\n");
    }
    let interfaces = if rng.gen_bool(0.15) {
        2
    } else {
        usize::from(rng.gen_bool(0.8))
    };
    for _ in 0..interfaces {
        text.push_str(pick::<&str>(
            rng,
            &["[Interface]\n", "[interface]\n", " [INTERFACE] \n"],
        ));
        if rng.gen_bool(0.7) {
            setting(&mut text, "PrivateKey", &random_key(rng), rng);
        }
        if rng.gen_bool(0.5) {
            setting(
                &mut text,
                "ListenPort",
                &rng.gen_range(1..=65535u32).to_string(),
                rng,
            );
        }
        if rng.gen_bool(0.3) {
            let mark: u32 = rng.gen();
            let value = match rng.gen_range(0..3) {
                0 => format!("{mark:#x}"),
                1 => "off".into(),
                _ => mark.to_string(),
            };
            setting(&mut text, "FwMark", &value, rng);
        }
        text.push('\n');
    }
    let count = if rng.gen_bool(0.2) {
        rng.gen_range(0..=max_peers)
    } else {
        rng.gen_range(0..=max_peers.min(6))
    };
    for _ in 0..count {
        let key = pick(rng, pool).clone();
        let mut peer = FilePeer {
            key: key.clone(),
            has_psk: false,
            has_keepalive: false,
        };
        text.push_str(pick::<&str>(rng, &["[Peer]\n", "[peer]\n"]));
        setting(&mut text, "PublicKey", &key, rng);
        for _ in 0..rng.gen_range(0..5) {
            match rng.gen_range(0..5) {
                0 => {
                    setting(&mut text, "PresharedKey", &random_key(rng), rng);
                    peer.has_psk = true;
                }
                1 => setting(&mut text, "Endpoint", &random_endpoint(rng), rng),
                2 => {
                    let value = match rng.gen_range(0..3) {
                        0 => "off".to_owned(),
                        1 => "0".to_owned(),
                        _ => rng.gen_range(1..=65535u32).to_string(),
                    };
                    setting(&mut text, "PersistentKeepalive", &value, rng);
                    peer.has_keepalive = true;
                }
                _ => {
                    let items: Vec<String> = (0..rng.gen_range(1..5))
                        .map(|_| random_allowed_ip(rng))
                        .collect();
                    setting(&mut text, "AllowedIPs", &items.join(", "), rng);
                }
            }
        }
        peers.push(peer);
        if rng.gen_bool(0.5) {
            text.push('\n');
        }
    }
    ConfFile { text, peers }
}

/// A runtime peer as the fake server reports it.
#[derive(Debug, Clone)]
struct RuntimePeer {
    key: String,
    psk: bool,
    keepalive: u16,
}

/// A random `get=1` reply in wireguard-go's format, with peers from `pool`.
fn random_runtime(rng: &mut ChaCha8Rng, pool: &[String]) -> (String, Vec<RuntimePeer>) {
    let mut reply = String::new();
    let _ = writeln!(reply, "private_key={}", hex(&random_key(rng)));
    let _ = writeln!(reply, "listen_port={}", rng.gen_range(1..=65535u32));
    let mut peers: Vec<RuntimePeer> = Vec::new();
    for _ in 0..rng.gen_range(0..8) {
        let key = pick(rng, pool).clone();
        if peers.iter().any(|p| p.key == key) {
            continue;
        }
        let peer = RuntimePeer {
            key,
            psk: rng.gen_bool(0.5),
            keepalive: if rng.gen_bool(0.5) {
                rng.gen_range(1..=65535)
            } else {
                0
            },
        };
        let psk = if peer.psk {
            hex(&random_key(rng))
        } else {
            zero_hex()
        };
        let _ = write!(
            reply,
            "public_key={}\npreshared_key={psk}\nprotocol_version=1\n\
             last_handshake_time_sec=0\nlast_handshake_time_nsec=0\ntx_bytes=0\nrx_bytes=0\n\
             persistent_keepalive_interval={}\nallowed_ip=10.{}.0.0/16\n",
            hex(&peer.key),
            peer.keepalive,
            peers.len()
        );
        peers.push(peer);
    }
    reply.push_str("errno=0\n\n");
    (reply, peers)
}

/// For `syncconf`: which file keys get the HEAD reset, `(key, psk, keepalive)`.
fn resets(file: &ConfFile, runtime: &[RuntimePeer]) -> Vec<(String, bool, bool)> {
    let mut out = Vec::new();
    for theirs in runtime {
        // The first file entry with the key is the one the reference's sorted walk sees.
        if let Some(ours) = file.peers.iter().find(|p| p.key == theirs.key) {
            let psk = theirs.psk && !ours.has_psk;
            let keepalive = theirs.keepalive != 0 && !ours.has_keepalive;
            if psk || keepalive {
                out.push((theirs.key.clone(), psk, keepalive));
            }
        }
    }
    out
}

/// Applies the HEAD reset to the 2021 reference's syncconf request: in the first non-removal
/// block of each key, `preshared_key=0…` right after `public_key`, and
/// `persistent_keepalive_interval=0` after the public key, PSK and endpoint lines.
fn patch_request(request: &str, resets: &[(String, bool, bool)]) -> String {
    let body = request.strip_suffix("\n\n").unwrap_or(request);
    let mut lines: Vec<String> = body.lines().map(str::to_owned).collect();
    for (key, psk, keepalive) in resets {
        let head = format!("public_key={}", hex(key));
        let start = (0..lines.len())
            .find(|&i| {
                lines[i] == head && lines.get(i + 1).map(String::as_str) != Some("remove=true")
            })
            .expect("the file's peer is in the request");
        if *psk {
            lines.insert(start + 1, format!("preshared_key={}", zero_hex()));
        }
        if *keepalive {
            let mut at = start + 1;
            while lines
                .get(at)
                .is_some_and(|l| l.starts_with("preshared_key=") || l.starts_with("endpoint="))
            {
                at += 1;
            }
            lines.insert(at, "persistent_keepalive_interval=0".to_owned());
        }
    }
    lines.join("\n") + "\n\n"
}

// ---------------------------------------------------------------------------------------------

#[test]
fn usage_and_open_errors_match_reference() {
    let cases: &[&[&str]] = &[
        &["setconf"],
        &["addconf", "wg0"],
        &["syncconf", "wg0", "a", "b"],
        &["setconf", "--help"],
        &["setconf", "wg0", "/nonexistent/file"],
        &["addconf", "wg0", "/root/../nonexistent"],
        &["syncconf", "wg0", "/nonexistent"],
        &["setconf", "nosuchwg", "/dev/null"],
        &["syncconf", "nosuchwg", "/dev/null"],
        &["addconf", "a/b", "/dev/null"],
    ];
    let mut invs: Vec<Invocation<'_>> = cases.iter().map(|c| Invocation::new(*c)).collect();
    invs.push(Invocation::new(["setconf", "wg0"]).arg0("/usr/bin/wg-custom"));
    diff_wg_all(invs);
}

/// Every parse error: the specific message then `Configuration parsing error` (or `Invalid
/// configuration`), for all three subcommands, with the device untouched.
#[test]
fn parse_errors_match_reference_and_leave_device_unchanged() {
    if !require_root() {
        return;
    }
    let bed = Bed::new();
    let key = "JIu8MrLtS2H2A0g7JpdOXlDNI8E6WAXYvsKnEJL+aks=";
    let peer = format!("[Peer]\nPublicKey = {key}\n");
    let init = bed.file(
        "init",
        format!("[Interface]\nListenPort = 4242\n{peer}AllowedIPs = 10.0.0.0/8\n").as_bytes(),
    );
    for interface in ["wgr", "wgo"] {
        let out = Invocation::new(["setconf", interface, &init])
            .in_sandbox(bed.sandbox_of(interface))
            .run(&reference_wg());
        out.assert_code(0, "init");
    }
    let before = (bed.dump("wgr"), bed.dump("wgo"));
    let files: Vec<(String, &[(&str, &str)])> = vec![
        ("[Interface]\nBogus = 1\n".into(), &[]),
        ("[Interface]\n;semicolon\n".into(), &[]),
        ("ListenPort = 1\n".into(), &[]),
        ("[Interface]\nAddress = 10.0.0.1/24\n".into(), &[]),
        ("[Interface]\nListenPort =\n".into(), &[]),
        ("[Interface]\nListenPort = \n".into(), &[]),
        ("[Interface]\nListenPort = -1\n".into(), &[]),
        ("[Interface]\nFwMark = 0X10\n".into(), &[]),
        ("[Interface]\nPrivateKey = abc\n".into(), &[]),
        (format!("[Interface]\nPublicKey = {key}\n"), &[]),
        ("[Interfaces]\n".into(), &[]),
        ("[Peer]\nAllowedIPs = 10.0.0.0/8\n".into(), &[]),
        (format!("{peer}[Peer]\n"), &[]),
        ("[Peer]\nPublicKey = a b c\n".into(), &[]),
        (format!("{peer}PresharedKey = {key}A\n"), &[]),
        (format!("{peer}ListenPort = 1\n"), &[]),
        (format!("{peer}AllowedIPs = \n"), &[]),
        (format!("{peer}AllowedIPs = 10.0.0.1/8, 10.0.0.0/33\n"), &[]),
        (format!("{peer}AllowedIPs = 10.0.0.1/8,,\n"), &[]),
        (format!("{peer}AllowedIPs = 10.0.0/24\n"), &[]),
        (format!("{peer}AllowedIPs = fe80::/129\n"), &[]),
        (format!("{peer}AllowedIPs = 10.0.0.1/8\nBogus\n"), &[]),
        (format!("{peer}Endpoint = 1.2.3.4\n"), &[]),
        (format!("{peer}Endpoint = [::1\n"), &[]),
        (format!("{peer}Endpoint = [::1]:\n"), &[]),
        (
            format!("{peer}Endpoint = 1.2.3.4:abc\n"),
            &[("WG_ENDPOINT_RESOLUTION_RETRIES", "0")],
        ),
        (
            format!("{peer}Endpoint = nonexistent.invalid:5\n"),
            &[("WG_ENDPOINT_RESOLUTION_RETRIES", "0")],
        ),
        (
            format!("{peer}Endpoint = 1.2.3.4:5\n"),
            &[("WG_ENDPOINT_RESOLUTION_RETRIES", "x")],
        ),
        (
            format!("{peer}Endpoint = [::1\n"),
            &[("WG_ENDPOINT_RESOLUTION_RETRIES", "-1")],
        ),
        (format!("{peer}PersistentKeepalive = 65536\n"), &[]),
        (format!("{peer}PersistentKeepalive = on\n"), &[]),
        ("[Interface]\nFwMark = 1\nListen\0Port = 5\n".into(), &[]),
        ("[Interface]\nPrivateKey = \u{e9}\u{e9}\n".into(), &[]),
        (
            format!("{peer}AllowedIPs = 10.0.0.1/8\r\n[Peer]\r\nEndpoint = 1.2.3.4:5\r\n"),
            &[],
        ),
    ];
    let mut failures = Vec::new();
    let mut total = 0;
    for (i, (text, env)) in files.iter().enumerate() {
        let path = bed.file(&format!("bad{i}"), text.as_bytes());
        for sub in SUBCOMMANDS {
            total += 1;
            let args = [sub.to_owned(), "IF".to_owned(), path.clone()];
            let (reference, ours) = bed.both(&args, env);
            let what = format!("{sub} {text:?} {env:?}");
            if let Some(report) = compare(&reference, &ours) {
                failures.push(format!("=== {what}\n{report}"));
            }
            if reference.code() != Some(1) {
                failures.push(format!("=== {what}\nexpected a failure: {reference:?}"));
            }
            let after = (bed.dump("wgr"), bed.dump("wgo"));
            if after != before {
                failures.push(format!(
                    "=== {what}\ndevice changed:\n{before:?}\n{after:?}"
                ));
            }
        }
    }
    finish(failures, total);
}

/// Exact request bytes for generated files, per subcommand; syncconf against a canned runtime
/// state (so its `get=1` and its removal order are checked too).
#[test]
fn requests_match_reference() {
    if !require_root() {
        return;
    }
    let bed = Bed::new();
    let mut rng = case_rng(seed(), u64::MAX - 2);
    let pool: Vec<String> = (0..12).map(|_| random_key(&mut rng)).collect();
    let mut failures = Vec::new();
    for case in (0..REQUEST_CASES).filter(|&c| case_selected(c)) {
        let mut rng = case_rng(seed(), 2_000_000 + case);
        let conf = random_conf(&mut rng, &pool, 30);
        let (reply, runtime) = random_runtime(&mut rng, &pool);
        bed.fake.set_get_reply(reply.clone());
        let path = bed.file(&format!("conf{case}"), conf.text.as_bytes());
        for sub in SUBCOMMANDS {
            // Sometimes through stdin, as `wg setconf wg0 <(…)` and `/dev/stdin` users do.
            let stdin = rng.gen_bool(0.2);
            let file = if stdin { "/dev/stdin" } else { path.as_str() };
            let args = [sub.to_owned(), "fake".to_owned(), file.to_owned()];
            let run = |wg: &std::path::Path| -> (Outcome, Vec<Vec<u8>>) {
                bed.fake.take_requests();
                let out = Invocation::new(&args)
                    .in_sandbox(&bed.sandbox)
                    .stdin(if stdin {
                        conf.text.as_bytes().to_vec()
                    } else {
                        Vec::new()
                    })
                    .run(wg);
                (out, bed.fake.take_requests())
            };
            let (reference, mut reference_requests) = run(&reference_wg());
            let (ours, our_requests) = run(&wg_tests::our_wg());
            let what = format!("case {case} {sub}:\n{}\nruntime:\n{reply}", conf.text);
            if sub == "syncconf" && !conf.peers.is_empty() && !runtime.is_empty() {
                // Known difference 3: patch in HEAD's resets.
                let resets = resets(&conf, &runtime);
                if let Some(last) = reference_requests.last_mut() {
                    *last = patch_request(&String::from_utf8_lossy(last), &resets).into_bytes();
                }
            }
            let capture = (reference, reference_requests, ours, our_requests);
            if let Err(report) = assert_same_capture(&what, &capture) {
                failures.push(report);
            }
        }
    }
    finish(failures, REQUEST_CASES * 3);
}

/// Known difference 3 pinned on exact bytes: removals in reverse sorted key order, then the
/// file's peers, the kept peer getting `preshared_key=0…` and `persistent_keepalive_interval=0`.
#[test]
fn syncconf_resets_psk_and_keepalive() {
    if !require_root() {
        return;
    }
    let bed = Bed::new();
    let keys = [
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".to_owned(),
        "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBA=".to_owned(),
        "CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCA=".to_owned(),
        "DDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDA=".to_owned(),
    ];
    let psk = hex(&keys[3]);
    let mut reply = format!("private_key={}\n", zero_hex());
    for (key, keepalive) in [(&keys[2], 25), (&keys[0], 0), (&keys[1], 0)] {
        let _ = write!(
            reply,
            "public_key={}\npreshared_key={psk}\npersistent_keepalive_interval={keepalive}\n",
            hex(key)
        );
    }
    reply.push_str("errno=0\n\n");
    bed.fake.set_get_reply(reply);
    let conf = bed.file(
        "sync",
        format!("[Peer]\nPublicKey = {}\nEndpoint = 1.2.3.4:5\n", keys[2]).as_bytes(),
    );
    let args = ["syncconf", "IF", &conf].map(str::to_owned);
    let (reference, reference_requests, ours, requests) = bed.capture(&args, &[]);
    assert_eq!(
        (reference.code(), ours.code()),
        (Some(0), Some(0)),
        "{ours:?}"
    );
    let zero = zero_hex();
    let (a, b, c) = (hex(&keys[0]), hex(&keys[1]), hex(&keys[2]));
    let head = format!(
        "set=1\nprivate_key={zero}\nlisten_port=0\nfwmark=0\npublic_key={b}\nremove=true\n\
         public_key={a}\nremove=true\npublic_key={c}\npreshared_key={zero}\nendpoint=1.2.3.4:5\n\
         persistent_keepalive_interval=0\nreplace_allowed_ips=true\n\n"
    );
    assert_eq!(show_requests(&requests), format!("get=1\n\n---\n{head}"));
    let old = head
        .replace(&format!("preshared_key={zero}\n"), "")
        .replace("persistent_keepalive_interval=0\n", "");
    assert_eq!(
        show_requests(&reference_requests),
        format!("get=1\n\n---\n{old}"),
        "the 2021 reference keeps PSK and keepalive"
    );
}

/// Known difference 2 in files: `AllowedIPs = +a, -b` is incremental (HEAD); 2021 refuses it.
#[test]
fn incremental_allowed_ips_in_files() {
    if !require_root() {
        return;
    }
    let bed = Bed::new();
    let key = "JIu8MrLtS2H2A0g7JpdOXlDNI8E6WAXYvsKnEJL+aks=";
    let conf = bed.file(
        "incremental",
        format!("[Peer]\nPublicKey = {key}\nAllowedIPs = +10.0.0.0/8, -fd00::/64\n").as_bytes(),
    );
    let args = ["addconf", "IF", &conf].map(str::to_owned);
    let (reference, _, ours, requests) = bed.capture(&args, &[]);
    assert_eq!(
        reference.stderr_str(),
        "Unable to parse IP address: `+10.0.0.0'\nConfiguration parsing error\n"
    );
    assert_eq!(ours.code(), Some(0), "{ours:?}");
    assert_eq!(
        show_requests(&requests),
        format!(
            "set=1\npublic_key={}\nallowed_ip=10.0.0.0/8\nallowed_ip=-fd00::/64\n\n",
            hex(key)
        )
    );
}

/// Parses `wg show IF dump` peer lines into key → (has PSK, keepalive on).
fn runtime_of(dump: &str) -> HashMap<String, (bool, bool)> {
    dump.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            (f.len() >= 8).then(|| (f[0].to_owned(), (f[1] != "(none)", f[7] != "off")))
        })
        .collect()
}

/// Generated files (up to ~100 peers, v4/v6, PSKs, keepalives, fwmarks) applied by a random
/// subcommand through the reference to `wgr` and through ours to `wgo`: the configurations
/// must match after every step. For syncconf the HEAD reset is applied to `wgr` afterwards with
/// the reference's `wg set` (known difference 3).
#[test]
fn device_states_match_reference() {
    if !require_root() {
        return;
    }
    let bed = Bed::new();
    let mut rng = case_rng(seed(), u64::MAX - 3);
    let pool: Vec<String> = (0..150).map(|_| random_key(&mut rng)).collect();
    let mut failures = Vec::new();
    for case in (0..STATE_CASES).filter(|&c| case_selected(c)) {
        let mut rng = case_rng(seed(), 3_000_000 + case);
        let conf = random_conf(&mut rng, &pool, 100);
        let sub = *pick(&mut rng, &SUBCOMMANDS);
        let path = bed.file(&format!("state{case}"), conf.text.as_bytes());
        let runtime = runtime_of(&bed.dump("wgr"));
        let args = [sub.to_owned(), "IF".to_owned(), path];
        let (reference, ours) = bed.both(&args, &[]);
        if let Some(report) = compare(&reference, &ours) {
            failures.push(format!("=== case {case} {sub}\n{report}"));
        }
        if sub == "syncconf" && !conf.peers.is_empty() {
            let runtime: Vec<RuntimePeer> = runtime
                .iter()
                .map(|(key, &(psk, keepalive))| RuntimePeer {
                    key: key.clone(),
                    psk,
                    keepalive: u16::from(keepalive),
                })
                .collect();
            for (key, psk, keepalive) in resets(&conf, &runtime) {
                let mut fix = vec!["set".to_owned(), "wgr".to_owned(), "peer".to_owned(), key];
                if psk {
                    fix.extend(["preshared-key".to_owned(), "/dev/null".to_owned()]);
                }
                if keepalive {
                    fix.extend(["persistent-keepalive".to_owned(), "0".to_owned()]);
                }
                bed.run(&reference_wg(), &fix, &[])
                    .assert_code(0, "HEAD reset");
            }
        }
        let (r, o) = (bed.conf("wgr"), bed.conf("wgo"));
        if r != o {
            failures.push(format!(
                "=== case {case}: {sub} of\n{}\nstates differ\n- reference:\n{r}\n+ ours:\n{o}",
                conf.text
            ));
            break;
        }
    }
    finish(failures, STATE_CASES);
}

/// syncconf reads the device first: its failures (no such interface, an errno reply, a garbled
/// reply) are reported as `Unable to retrieve current interface configuration: …` and nothing
/// is set.
#[test]
fn syncconf_get_failures_match_reference() {
    if !require_root() {
        return;
    }
    let bed = Bed::new();
    let key = "JIu8MrLtS2H2A0g7JpdOXlDNI8E6WAXYvsKnEJL+aks=";
    let conf = bed.file("peer", format!("[Peer]\nPublicKey = {key}\n").as_bytes());
    let mut failures = Vec::new();
    // (An empty reply would leave the fake's connection open until its idle timeout.)
    let replies: [&[u8]; 3] = [b"errno=5\n\n", b"errno=-5\n\n", b"listen_port=1\n\n"];
    for reply in replies {
        bed.fake.set_get_reply(reply);
        for interface in ["IF", "nosuchwg"] {
            let args = ["syncconf", interface, &conf].map(str::to_owned);
            let capture = bed.capture(&args, &[]);
            let what = format!(
                "{args:?} with get reply {:?}",
                String::from_utf8_lossy(reply)
            );
            if let Err(report) = assert_same_capture(&what, &capture) {
                failures.push(report);
            }
            if !capture
                .0
                .stderr_str()
                .starts_with("Unable to retrieve current interface")
            {
                failures.push(format!("=== {what}\nunexpected: {:?}", capture.0));
            }
        }
    }
    finish(failures, 6);
}
