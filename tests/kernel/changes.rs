//! The same change through our `wg` and through the reference gives the same kernel state
//! (compat 1.4, 1.5, 4.2).
//!
//! Each case `i` has two fresh kernel devices, `r<i>` and `o<i>`, both set to the same generated
//! initial state by the reference `wg setconf`. Then one change (`set`, `setconf`, `addconf` or
//! `syncconf`, generated from a fixed seed over a small pool of peer keys so changes hit
//! existing peers) is applied to `r<i>` by the reference and to `o<i>` by ours. The two runs must
//! print the same and exit the same, and the two devices must then read back identically by
//! the reference's `showconf` and `show dump` (so peer order, allowed-ip order, keys, endpoint,
//! keepalive, port and fwmark all count).
//!
//! The `big-*` cases carry thousands of allowed IPs over many peers, so both tools must split
//! one change across many netlink messages (8 KiB each), including a peer continued in the
//! next message.
//!
//! Known differences (see `crate::set`): no `+`/`-` allowed-ips items (the Debian 12 kernel has
//! no allowed-ip removal either) and no ports above 65535 are generated; for `syncconf`,
//! HEAD's reset of a preshared key or keepalive missing from the file is applied to the
//! reference's device afterwards (`wg set … preshared-key /dev/null persistent-keepalive 0` on
//! exactly those peers) before comparing.

use std::fmt::Write as _;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use wg_tests::{case_rng, compare, seed};

use super::states::random_key;
use super::vm::{Payload, VmRun};
use crate::set::{pick, random_allowed_ip, random_endpoint};

/// Generated small cases.
const CASES: u64 = 40;
/// Case streams of this module start here.
const STREAM: u64 = 0x6_0000;
/// Peer keys a case draws from.
const POOL: usize = 6;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Set,
    Setconf,
    Addconf,
    Syncconf,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Set => "set",
            Kind::Setconf => "setconf",
            Kind::Addconf => "addconf",
            Kind::Syncconf => "syncconf",
        }
    }
}

/// A peer section of a generated file, for the syncconf reset.
struct FilePeer {
    key: String,
    has_psk: bool,
    has_keepalive: bool,
}

struct Case {
    name: String,
    /// The initial `setconf` file.
    init: String,
    kind: Kind,
    /// `set`: the arguments after `set IF`. Else: the file.
    args: Vec<String>,
    file: String,
    /// `syncconf`: the file's peers.
    file_peers: Vec<FilePeer>,
    /// Extra payload files (key files named in `args`).
    key_files: Vec<(String, String)>,
}

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Writes `[Peer]` sections for `keys` into `out`; returns what each says.
fn peer_sections(
    rng: &mut ChaCha8Rng,
    keys: &[String],
    ips: &mut dyn FnMut(&mut ChaCha8Rng) -> Vec<String>,
    out: &mut String,
) -> Vec<FilePeer> {
    let mut peers = Vec::new();
    for key in keys {
        let _ = write!(out, "\n[Peer]\nPublicKey = {key}\n");
        let has_psk = rng.gen_bool(0.4);
        if has_psk {
            let _ = writeln!(out, "PresharedKey = {}", random_key(rng));
        }
        for chunk in ips(rng).chunks(50) {
            let _ = writeln!(out, "AllowedIPs = {}", chunk.join(", "));
        }
        if rng.gen_bool(0.6) {
            let _ = writeln!(out, "Endpoint = {}", random_endpoint(rng));
        }
        let has_keepalive = rng.gen_bool(0.4);
        if has_keepalive {
            let any = rng.gen_range(1..=65535u32);
            let _ = writeln!(
                out,
                "PersistentKeepalive = {}",
                pick(rng, &[1, 25, 65535, any])
            );
        }
        peers.push(FilePeer {
            key: key.clone(),
            has_psk,
            has_keepalive,
        });
    }
    peers
}

/// A config file: maybe an interface part, then some of `pool` as peers (no duplicates).
fn random_file(
    rng: &mut ChaCha8Rng,
    pool: &[String],
    ips: &mut dyn FnMut(&mut ChaCha8Rng) -> Vec<String>,
) -> (String, Vec<FilePeer>) {
    let mut text = String::from("[Interface]\n");
    if rng.gen_bool(0.6) {
        let _ = writeln!(text, "PrivateKey = {}", random_key(rng));
    }
    if rng.gen_bool(0.6) {
        let _ = writeln!(text, "ListenPort = {}", rng.gen_range(0..=65535u32));
    }
    if rng.gen_bool(0.4) {
        let mark: u32 = rng.gen();
        let _ = writeln!(
            text,
            "FwMark = {}",
            pick(rng, &[format!("{mark:#x}"), "off".into()])
        );
    }
    let mut keys: Vec<String> = pool.to_vec();
    rand::seq::SliceRandom::shuffle(&mut keys[..], rng);
    keys.truncate(rng.gen_range(0..=pool.len()));
    let peers = peer_sections(rng, &keys, ips, &mut text);
    (text, peers)
}

fn few_ips(rng: &mut ChaCha8Rng) -> Vec<String> {
    (0..rng.gen_range(0..5))
        .map(|_| random_allowed_ip(rng))
        .collect()
}

/// A random `wg set` change (the words after `set IF`), naming key files it adds.
fn random_set(
    rng: &mut ChaCha8Rng,
    pool: &[String],
    case: &str,
    key_files: &mut Vec<(String, String)>,
) -> Vec<String> {
    let mut args: Vec<String> = Vec::new();
    let key_file = |rng: &mut ChaCha8Rng, key_files: &mut Vec<(String, String)>| {
        if rng.gen_bool(0.15) {
            return "/dev/null".to_owned();
        }
        let path = format!("changes/{case}-k{}", key_files.len());
        key_files.push((path.clone(), random_key(rng) + "\n"));
        format!("/payload/{path}")
    };
    if rng.gen_bool(0.3) {
        args.extend([
            "listen-port".into(),
            rng.gen_range(0..=65535u32).to_string(),
        ]);
    }
    if rng.gen_bool(0.3) {
        let mark: u32 = rng.gen();
        args.extend([
            "fwmark".into(),
            pick(rng, &[format!("{mark:#x}"), "off".into(), mark.to_string()]).clone(),
        ]);
    }
    if rng.gen_bool(0.3) {
        args.extend(["private-key".into(), key_file(rng, key_files)]);
    }
    for _ in 0..rng.gen_range(1..=4) {
        args.extend(["peer".into(), pick(rng, pool).clone()]);
        if rng.gen_bool(0.15) {
            args.push("remove".into());
            continue;
        }
        if rng.gen_bool(0.3) {
            args.extend(["preshared-key".into(), key_file(rng, key_files)]);
        }
        if rng.gen_bool(0.4) {
            args.extend(["endpoint".into(), random_endpoint(rng)]);
        }
        if rng.gen_bool(0.3) {
            let any = rng.gen_range(1..=65535u32).to_string();
            let interval = pick(rng, &["off".into(), "0".into(), any]).clone();
            args.extend(["persistent-keepalive".into(), interval]);
        }
        if rng.gen_bool(0.6) {
            args.extend(["allowed-ips".into(), few_ips(rng).join(",")]);
        }
    }
    args
}

fn small_case(n: u64) -> Case {
    let mut rng = case_rng(seed(), STREAM + n);
    let pool: Vec<String> = (0..POOL).map(|_| random_key(&mut rng)).collect();
    let name = format!("c{n}");
    let (init, _) = random_file(&mut rng, &pool, &mut few_ips);
    let kind = *pick(
        &mut rng,
        &[
            Kind::Set,
            Kind::Set,
            Kind::Setconf,
            Kind::Addconf,
            Kind::Syncconf,
        ],
    );
    let mut key_files = Vec::new();
    let (args, file, file_peers) = if kind == Kind::Set {
        (
            random_set(&mut rng, &pool, &name, &mut key_files),
            String::new(),
            vec![],
        )
    } else {
        let (file, peers) = random_file(&mut rng, &pool, &mut few_ips);
        (vec![], file, peers)
    };
    Case {
        name,
        init,
        kind,
        args,
        file,
        file_peers,
        key_files,
    }
}

/// `n` distinct host or subnet routes from a per-call base.
fn many_ips(rng: &mut ChaCha8Rng, n: usize) -> Vec<String> {
    let base4: u32 = (rng.gen::<u32>() & 0x00ff_0000) | 0x0a00_0000;
    let base6: u128 = (rng.gen::<u128>() & !0xffff_ffff) | (0xfd << 120);
    (0..n as u32)
        .map(|i| {
            if i % 4 == 3 {
                format!("{}/128", std::net::Ipv6Addr::from(base6 | u128::from(i)))
            } else {
                format!("{}/32", std::net::Ipv4Addr::from(base4 | i))
            }
        })
        .collect()
}

/// The big cases: many peers with many allowed IPs each, and one peer with thousands.
fn big_cases() -> Vec<Case> {
    let mut rng = case_rng(seed(), STREAM + 0x1000);
    let pool: Vec<String> = (0..60).map(|_| random_key(&mut rng)).collect();
    let big_file = |rng: &mut ChaCha8Rng, keys: &[String]| {
        let mut text = format!(
            "[Interface]\nPrivateKey = {}\nListenPort = 51820\n",
            random_key(rng)
        );
        let mut first = true;
        let peers = peer_sections(
            rng,
            keys,
            &mut |rng| {
                let n = if std::mem::take(&mut first) {
                    3000
                } else {
                    rng.gen_range(20..=120)
                };
                many_ips(rng, n)
            },
            &mut text,
        );
        (text, peers)
    };
    let (a, _) = big_file(&mut rng, &pool[..45]);
    let (b, b_peers) = big_file(&mut rng, &pool[15..]);
    let (c, c_peers) = big_file(&mut rng, &pool[30..]);
    let big_set: Vec<String> = {
        let mut args = vec!["peer".to_owned(), pool[0].clone(), "allowed-ips".into()];
        args.push(many_ips(&mut rng, 2500).join(","));
        for key in &pool[40..50] {
            args.extend(["peer".into(), key.clone(), "allowed-ips".into()]);
            args.push(many_ips(&mut rng, 150).join(","));
        }
        args
    };
    let case = |name: &str, init: &str, kind, args: Vec<String>, file: &str, file_peers| Case {
        name: name.into(),
        init: init.into(),
        kind,
        args,
        file: file.into(),
        file_peers,
        key_files: vec![],
    };
    vec![
        case(
            "big-setconf",
            "[Interface]\n",
            Kind::Setconf,
            vec![],
            &a,
            vec![],
        ),
        case("big-addconf", &a, Kind::Addconf, vec![], &b, vec![]),
        case("big-syncconf", &a, Kind::Syncconf, vec![], &c, c_peers),
        case("big-set", &a, Kind::Set, big_set, "", vec![]),
        case("big-setconf-over", &a, Kind::Setconf, vec![], &b, b_peers),
    ]
}

fn all_cases() -> Vec<Case> {
    let mut cases: Vec<Case> = (0..CASES).map(small_case).collect();
    cases.extend(big_cases());
    cases
}

pub(crate) fn sections(p: &mut Payload) {
    let cases = all_cases();
    // Every case's two devices are made (and later deleted) by one `ip -batch`: an `ip` run
    // costs tens of milliseconds under TCG.
    let (mut add, mut del) = (String::new(), String::new());
    for i in 0..cases.len() {
        let _ = writeln!(
            add,
            "link add r{i} type wireguard\nlink add o{i} type wireguard"
        );
        let _ = writeln!(del, "link del r{i}\nlink del o{i}");
    }
    p.file("changes/links-add", add);
    p.file("changes/links-del", del);
    let mut script = String::from("must ip -batch /payload/changes/links-add\n");
    for (i, case) in cases.iter().enumerate() {
        let name = &case.name;
        let (wgr, wgo) = (format!("r{i}"), format!("o{i}"));
        p.file(&format!("changes/{name}.init"), case.init.clone());
        for (path, key) in &case.key_files {
            p.file(path, key.clone());
        }
        let _ = writeln!(
            script,
            "must wg setconf {wgr} /payload/changes/{name}.init\n\
             must wg setconf {wgo} /payload/changes/{name}.init"
        );
        let words = |dev: &str| -> String {
            let mut words = vec![case.kind.name().to_owned(), dev.to_owned()];
            if case.kind == Kind::Set {
                words.extend(case.args.iter().cloned());
            } else {
                words.push(format!("/payload/changes/{name}.conf"));
            }
            words
                .iter()
                .map(|w| sh_quote(w))
                .collect::<Vec<_>>()
                .join(" ")
        };
        if case.kind != Kind::Set {
            p.file(&format!("changes/{name}.conf"), case.file.clone());
        }
        let _ = writeln!(script, "ref {name} -- {}", words(&wgr));
        let _ = writeln!(script, "ours {name} -- {}", words(&wgo));
        if case.kind == Kind::Syncconf {
            // HEAD's syncconf reset (known difference 3), re-applied to the reference's device.
            for peer in &case.file_peers {
                let mut fix = String::new();
                if !peer.has_psk {
                    fix += " preshared-key /dev/null";
                }
                if !peer.has_keepalive {
                    fix += " persistent-keepalive 0";
                }
                if !fix.is_empty() {
                    let _ = writeln!(
                        script,
                        "[ \"$(cat $D/{name}.ref.rc)\" != 0 ] || must wg set {wgr} peer {}{fix}",
                        peer.key
                    );
                }
            }
        }
        for (dev, tag) in [(&wgr, "r"), (&wgo, "o")] {
            let _ = writeln!(
                script,
                "wg showconf {dev} >$D/{name}.{tag}.conf 2>&1\nwg show {dev} dump >$D/{name}.{tag}.dump 2>&1"
            );
        }
    }
    script += "must ip -batch /payload/changes/links-del\n";
    p.section("changes", script);
}

/// At most about 4000 characters of `text`.
fn shorten(text: &str) -> String {
    let count = text.chars().count();
    if count <= 4000 {
        return text.to_owned();
    }
    format!(
        "{}… ({count} characters)",
        text.chars().take(4000).collect::<String>()
    )
}

pub(crate) fn changes_through_ours_and_reference_give_the_same_kernel_state(run: &VmRun) {
    let section = run.section("changes");
    let cases = all_cases();
    let mut failures = Vec::new();
    let mut applied = 0;
    for case in &cases {
        let name = &case.name;
        let reference = section.outcome(name, "ref");
        if reference.code() == Some(0) {
            applied += 1;
        } else if case.name.starts_with("big-") {
            failures.push(format!("=== [{name}] the reference failed:\n{reference:?}"));
        }
        let what = if case.kind == Kind::Set {
            format!("[{name}] wg set IF {}", case.args.join(" "))
        } else {
            format!("[{name}] wg {} IF <file>:\n{}", case.kind.name(), case.file)
        };
        let what = shorten(&what);
        let mut report = String::new();
        if let Some(r) = compare(&reference, &section.outcome(name, "ours")) {
            report += &format!("the runs differ:\n{r}");
        }
        for file in ["conf", "dump"] {
            let r = section.read(&format!("{name}.r.{file}"));
            let o = section.read(&format!("{name}.o.{file}"));
            if r != o {
                report += &format!(
                    "the devices differ ({file}; - reference's, + ours):\n{}",
                    wg_tests::invocation::line_diff(&r, &o)
                );
            }
        }
        if !report.is_empty() {
            failures.push(format!(
                "=== {what}\ninitial state:\n{}\n{}",
                shorten(&case.init),
                shorten(&report)
            ));
        }
    }
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!(
            "kernel changes: {} cases compared in the VM ({applied} applied, the rest refused \
             alike)\n",
            cases.len()
        )
        .as_bytes(),
    );
    // Most generated changes are valid: equal refusals alone would prove little.
    assert!(
        applied * 10 >= cases.len() * 8,
        "only {applied} of {} changes were applied by the reference",
        cases.len()
    );
    if !failures.is_empty() {
        let total = failures.len();
        failures.truncate(10);
        panic!(
            "{total} of {} changes differ between ours and the reference:\n{}",
            cases.len(),
            failures.join("\n")
        );
    }
}
