//! The netlink traffic between `wg` and a kernel device, byte for byte against the reference,
//! without a kernel: `netlink_wire/nlshim.c`, loaded with `LD_PRELOAD` into both tools, stands
//! in for the generic netlink "wireguard" family.
//!
//! * Set: the shim acknowledges every `WG_CMD_SET_DEVICE` and records it, so the split of a
//!   large configuration into messages (compat.md §4.2: the page-size budget, a peer continued
//!   with only its key, replace and the other first-chunk attributes only in a peer's first
//!   chunk) is compared exactly, sequence numbers and port ids aside, as is a kernel refusing
//!   a message mid-way.
//! * Get: the shim serves kernel-style dumps (random devices split over messages, a peer's
//!   allowed IPs continued in the next message; malformed ones), and every `show` form and
//!   `showconf` of both tools are compared.
//!
//! Whether the kernel then holds or reports the same state is the VM suite's business. Runs
//! unprivileged: the shim never touches real netlink. Known differences: none in what is
//! generated here. `-` allowed IPs (HEAD only) and `syncconf` (it reads the device first) are
//! left to the VM suite.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use wg_tests::{
    case_rng, case_selected, compare, our_wg, reference_wg, repo_root, require_root, seed,
    Invocation, Outcome, Sandbox,
};

use crate::set::{pick, random_allowed_ip, random_key};

/// Generated configuration files, each applied with `setconf` and with `addconf`.
const CONF_CASES: u64 = 60;
/// Generated `wg set` command lines.
const SET_CASES: u64 = 60;
/// Generated dumps shown in every form.
const GET_CASES: u64 = 30;

/// The interface name: no UAPI socket of that name exists, so both tools go to "the kernel".
const IFACE: &str = "wgshim0";

/// Builds the shim once per test run and returns its path.
fn shim() -> &'static Path {
    static SHIM: OnceLock<PathBuf> = OnceLock::new();
    SHIM.get_or_init(|| {
        let source = repo_root().join("tests/netlink_wire/nlshim.c");
        // Next to our binaries, in `target/<profile>/`.
        let out = our_wg().with_file_name(format!("nlshim-{}.so", std::process::id()));
        let status = Command::new("cc")
            .args(["-shared", "-fPIC", "-O1", "-Wall", "-Werror", "-o"])
            .arg(&out)
            .arg(&source)
            .arg("-ldl")
            .status()
            .expect("run cc to build the netlink shim");
        assert!(status.success(), "building {} failed", source.display());
        out
    })
}

/// What one tool did: its output and the messages the fake kernel received.
struct Run {
    outcome: Outcome,
    messages: Vec<Vec<u8>>,
}

/// Runs `wg` with `args` against the fake kernel, recording into a fresh file in `dir`.
fn run(wg: &Path, dir: &Path, args: &[String], fail_at: Option<usize>) -> Run {
    let record = dir.join("record.bin");
    let _ = std::fs::remove_file(&record);
    let mut inv = Invocation::new(args)
        .env("LD_PRELOAD", shim())
        .env("NLSHIM_OUT", &record);
    if let Some(n) = fail_at {
        inv = inv.env("NLSHIM_FAIL_AT", n.to_string());
    }
    let outcome = inv.run(wg);
    let bytes = std::fs::read(&record).unwrap_or_default();
    Run {
        outcome,
        messages: split_messages(&bytes),
    }
}

/// Splits a recording into its netlink messages, with the sequence number and port id (which
/// the reference takes from the clock and the socket) zeroed.
fn split_messages(mut bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut messages = Vec::new();
    while bytes.len() >= 16 {
        let len = u32::from_ne_bytes(bytes[..4].try_into().unwrap()) as usize;
        assert!((16..=bytes.len()).contains(&len), "corrupt recording");
        let mut message = bytes[..len].to_vec();
        message[8..16].fill(0);
        messages.push(message);
        bytes = &bytes[len..];
    }
    assert!(bytes.is_empty(), "trailing bytes in the recording");
    messages
}

/// Where two lists of messages first differ, described for a failure message.
fn first_difference(reference: &[Vec<u8>], ours: &[Vec<u8>]) -> Option<String> {
    let sizes = |m: &[Vec<u8>]| m.iter().map(Vec::len).collect::<Vec<_>>();
    for (i, (r, o)) in reference.iter().zip(ours).enumerate() {
        if r != o {
            let at = r
                .iter()
                .zip(o)
                .position(|(a, b)| a != b)
                .unwrap_or(r.len().min(o.len()));
            return Some(format!(
                "message {i} differs at byte {at} (reference {} bytes, ours {}); sizes: \
                 reference {:?}, ours {:?}",
                r.len(),
                o.len(),
                sizes(reference),
                sizes(ours)
            ));
        }
    }
    (reference.len() != ours.len()).then(|| {
        format!(
            "reference sent {} messages, ours {}; sizes: reference {:?}, ours {:?}",
            reference.len(),
            ours.len(),
            sizes(reference),
            sizes(ours)
        )
    })
}

/// Runs both tools and panics with a description of any difference.
fn diff(case: &str, dir: &Path, args: &[String], fail_at: Option<usize>) -> usize {
    let mut command = args.join(" ");
    if command.chars().count() > 300 {
        command = command.chars().take(300).chain(['…']).collect();
    }
    let reference = run(&reference_wg(), dir, args, fail_at);
    let ours = run(&our_wg(), dir, args, fail_at);
    if let Some(d) = compare(&reference.outcome, &ours.outcome) {
        panic!("{case}: wg {command}: outputs differ:\n{d}");
    }
    if let Some(d) = first_difference(&reference.messages, &ours.messages) {
        panic!("{case}: wg {command}: {d}");
    }
    reference.messages.len()
}

/// A numeric endpoint (no name resolution).
fn endpoint(rng: &mut ChaCha8Rng) -> String {
    let port: u16 = rng.gen_range(1..=65535);
    match rng.gen_range(0..3) {
        0 => format!("{}:{port}", std::net::Ipv4Addr::from(rng.gen::<u32>())),
        1 => format!("[{}]:{port}", std::net::Ipv6Addr::from(rng.gen::<u128>())),
        _ => format!("[fe80::{:x}%lo]:{port}", rng.gen::<u16>()),
    }
}

/// How many allowed IPs a peer gets: mostly a few, sometimes hundreds or thousands.
fn ip_count(rng: &mut ChaCha8Rng) -> usize {
    match rng.gen_range(0..20) {
        0 => rng.gen_range(500..3000),
        1..=3 => rng.gen_range(20..300),
        _ => rng.gen_range(0..5),
    }
}

/// A random configuration file; large ones need many messages.
fn random_conf(rng: &mut ChaCha8Rng) -> String {
    let mut text = String::from("[Interface]\n");
    if rng.gen_bool(0.7) {
        let _ = writeln!(text, "PrivateKey = {}", random_key(rng));
    }
    if rng.gen_bool(0.7) {
        let _ = writeln!(text, "ListenPort = {}", rng.gen::<u16>());
    }
    if rng.gen_bool(0.3) {
        let _ = writeln!(text, "FwMark = {:#x}", rng.gen::<u32>());
    }
    let peers = match rng.gen_range(0..10) {
        0 => rng.gen_range(100..400),
        1..=3 => rng.gen_range(10..60),
        _ => rng.gen_range(0..6),
    };
    for _ in 0..peers {
        let _ = writeln!(text, "\n[Peer]\nPublicKey = {}", random_key(rng));
        if rng.gen_bool(0.4) {
            let _ = writeln!(text, "PresharedKey = {}", random_key(rng));
        }
        if rng.gen_bool(0.5) {
            let _ = writeln!(text, "Endpoint = {}", endpoint(rng));
        }
        if rng.gen_bool(0.4) {
            let _ = writeln!(text, "PersistentKeepalive = {}", rng.gen_range(0..=65535));
        }
        let count = ip_count(rng);
        let mut left = count;
        while left > 0 {
            let line = rng.gen_range(1..=left.min(40));
            let items: Vec<String> = (0..line).map(|_| random_allowed_ip(rng)).collect();
            let _ = writeln!(text, "AllowedIPs = {}", items.join(", "));
            left -= line;
        }
    }
    text
}

#[test]
fn setconf_and_addconf_messages_match_reference() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("wg.conf");
    let mut multi = 0;
    for case in 0..CONF_CASES {
        if !case_selected(case) {
            continue;
        }
        let mut rng = case_rng(seed(), case);
        std::fs::write(&conf, random_conf(&mut rng)).unwrap();
        for sub in ["setconf", "addconf"] {
            let args = vec![sub.to_owned(), IFACE.to_owned(), conf.display().to_string()];
            let sent = diff(&format!("case {case}"), dir.path(), &args, None);
            multi += usize::from(sent > 1);
        }
    }
    // The generator must exercise the splitting (guards against a silently trivial suite).
    assert!(multi >= 10, "only {multi} runs needed several messages");
}

#[test]
fn set_messages_match_reference() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("key");
    let psk_file = dir.path().join("psk");
    for case in 0..SET_CASES {
        if !case_selected(case) {
            continue;
        }
        let mut rng = case_rng(seed(), 1_000 + case);
        std::fs::write(&key_file, random_key(&mut rng)).unwrap();
        let psk = if rng.gen_bool(0.2) {
            String::new()
        } else {
            random_key(&mut rng)
        };
        std::fs::write(&psk_file, psk).unwrap();
        let mut args = vec!["set".to_owned(), IFACE.to_owned()];
        if rng.gen_bool(0.4) {
            args.extend(["listen-port".into(), rng.gen::<u16>().to_string()]);
        }
        if rng.gen_bool(0.3) {
            args.extend([
                "fwmark".into(),
                pick(&mut rng, &["0", "off", "0x42"]).to_string(),
            ]);
        }
        if rng.gen_bool(0.3) {
            args.extend(["private-key".into(), key_file.display().to_string()]);
        }
        for _ in 0..rng.gen_range(0..8) {
            args.extend(["peer".into(), random_key(&mut rng)]);
            if rng.gen_bool(0.2) {
                args.push("remove".into());
            }
            if rng.gen_bool(0.3) {
                args.extend(["preshared-key".into(), psk_file.display().to_string()]);
            }
            if rng.gen_bool(0.3) {
                args.extend(["endpoint".into(), endpoint(&mut rng)]);
            }
            if rng.gen_bool(0.3) {
                let interval = pick(&mut rng, &["off", "0", "25", "65535"]).to_string();
                args.extend(["persistent-keepalive".into(), interval]);
            }
            if rng.gen_bool(0.6) {
                let items: Vec<String> = (0..ip_count(&mut rng))
                    .map(|_| random_allowed_ip(&mut rng))
                    .collect();
                args.extend(["allowed-ips".into(), items.join(",")]);
            }
        }
        if args.len() == 2 {
            // A bare `wg set IFACE` prints the usage, which differs from HEAD's.
            args.extend(["listen-port".into(), "0".into()]);
        }
        diff(&format!("case {case}"), dir.path(), &args, None);
    }
}

#[test]
fn failure_mid_request_matches_reference() {
    // The kernel refuses the second or third message of a split request: both tools stop
    // there, having sent the same messages, and report the same error.
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("wg.conf");
    let mut rng = case_rng(seed(), 2_000);
    let mut text = format!("[Interface]\nPrivateKey = {}\n", random_key(&mut rng));
    for _ in 0..3 {
        let _ = writeln!(text, "[Peer]\nPublicKey = {}", random_key(&mut rng));
        let items: Vec<String> = (0..400).map(|_| random_allowed_ip(&mut rng)).collect();
        let _ = writeln!(text, "AllowedIPs = {}", items.join(","));
    }
    std::fs::write(&conf, text).unwrap();
    let args = vec![
        "setconf".to_owned(),
        IFACE.to_owned(),
        conf.display().to_string(),
    ];
    for fail_at in [1, 2, 3] {
        let sent = diff(
            &format!("fail at {fail_at}"),
            dir.path(),
            &args,
            Some(fail_at),
        );
        assert_eq!(sent, fail_at);
    }
}

// -------------------------------------------------------------------------------------------
// Get: `WG_CMD_GET_DEVICE` dumps served by the shim, shown by both tools.

/// The shim's family id (`NLSHIM_FAMILY`).
const FAMILY: u16 = 0x25;

/// One netlink attribute (payload padded to 4 bytes).
fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + payload.len() + 3);
    out.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(payload);
    out.resize((out.len() + 3) & !3, 0);
    out
}

/// A nested attribute holding `children` (already encoded attributes).
fn nest(kind: u16, children: &[Vec<u8>]) -> Vec<u8> {
    attr(kind | 1 << 15, &children.concat())
}

/// A complete dump message of the family, with the attributes `attrs`.
fn dump_message(attrs: &[Vec<u8>]) -> Vec<u8> {
    let body = attrs.concat();
    let mut out = Vec::new();
    out.extend_from_slice(&((20 + body.len()) as u32).to_ne_bytes());
    out.extend_from_slice(&FAMILY.to_ne_bytes());
    out.extend_from_slice(&(libc::NLM_F_MULTI as u16).to_ne_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&[0, 1, 0, 0]); // WG_CMD_GET_DEVICE, version 1
    out.extend_from_slice(&body);
    out
}

/// A `sockaddr_in` / `sockaddr_in6`.
fn sockaddr(addr: &std::net::SocketAddr) -> Vec<u8> {
    let mut out = Vec::new();
    match addr {
        std::net::SocketAddr::V4(v4) => {
            out.extend_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
            out.extend_from_slice(&v4.port().to_be_bytes());
            out.extend_from_slice(&v4.ip().octets());
            out.resize(16, 0);
        }
        std::net::SocketAddr::V6(v6) => {
            out.extend_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
            out.extend_from_slice(&v6.port().to_be_bytes());
            out.extend_from_slice(&0u32.to_ne_bytes());
            out.extend_from_slice(&v6.ip().octets());
            out.extend_from_slice(&v6.scope_id().to_ne_bytes());
        }
    }
    out
}

fn key_bytes(rng: &mut ChaCha8Rng) -> [u8; 32] {
    rng.gen()
}

/// The public key of a private key, by the reference `wg pubkey`.
fn public_key(private: &[u8; 32]) -> [u8; 32] {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let out = Invocation::new(["pubkey"])
        .stdin(format!("{}\n", b64.encode(private)))
        .run(&reference_wg());
    let text = out.stdout_str();
    b64.decode(text.trim()).unwrap().try_into().unwrap()
}

/// One allowed IP, in the kernel's attribute order (CIDR_MASK, IPADDR, FAMILY).
fn random_dump_ip(rng: &mut ChaCha8Rng) -> Vec<u8> {
    let (family, addr, cidr) = if rng.gen_bool(0.6) {
        let cidr: u8 = rng.gen_range(0..=32);
        let addr = rng.gen::<u32>() & u32::MAX.checked_shl(32 - u32::from(cidr)).unwrap_or(0);
        (libc::AF_INET, addr.to_be_bytes().to_vec(), cidr)
    } else {
        let cidr: u8 = rng.gen_range(0..=128);
        let addr = rng.gen::<u128>() & u128::MAX.checked_shl(128 - u32::from(cidr)).unwrap_or(0);
        (libc::AF_INET6, addr.to_be_bytes().to_vec(), cidr)
    };
    nest(
        0,
        &[
            attr(3, &[cidr]),
            attr(2, &addr),
            attr(1, &(family as u16).to_ne_bytes()),
        ],
    )
}

/// A random device dumped as the kernel does, in messages of at most about `room` bytes: the
/// device attributes first, each peer's first chunk with all its attributes, and a peer whose
/// allowed IPs overflow continued in the next message with only its public key. Returns the
/// dump and whether it carries handshake times.
fn random_dump(rng: &mut ChaCha8Rng, room: usize) -> (Vec<u8>, bool) {
    let mut head = vec![
        attr(6, &rng.gen::<u16>().to_ne_bytes()),
        attr(
            7,
            &if rng.gen_bool(0.3) {
                rng.gen::<u32>()
            } else {
                0
            }
            .to_ne_bytes(),
        ),
        attr(1, &7u32.to_ne_bytes()),
        attr(2, format!("{IFACE}\0").as_bytes()),
    ];
    if rng.gen_bool(0.8) {
        let private = key_bytes(rng);
        head.push(attr(3, &private));
        head.push(attr(4, &public_key(&private)));
    }
    let mut messages: Vec<Vec<u8>> = Vec::new();
    let mut current = head;
    let mut peers: Vec<Vec<u8>> = Vec::new();
    let mut used = current.iter().map(Vec::len).sum::<usize>() + 24;
    let mut handshakes = false;
    let peer_count = match rng.gen_range(0..10) {
        0 => rng.gen_range(50..200),
        1..=4 => rng.gen_range(2..20),
        _ => rng.gen_range(0..3),
    };
    for _ in 0..peer_count {
        let public = key_bytes(rng);
        let psk = if rng.gen_bool(0.4) {
            key_bytes(rng)
        } else {
            [0; 32]
        };
        let (secs, nanos): (i64, i64) = if rng.gen_bool(0.5) {
            handshakes = true;
            (
                rng.gen_range(1..2_000_000_000),
                rng.gen_range(0..1_000_000_000),
            )
        } else {
            (0, 0)
        };
        let mut time = secs.to_ne_bytes().to_vec();
        time.extend_from_slice(&nanos.to_ne_bytes());
        let mut first = vec![
            attr(1, &public),
            attr(2, &psk),
            attr(6, &time),
            attr(
                5,
                &if rng.gen_bool(0.4) {
                    rng.gen::<u16>()
                } else {
                    0
                }
                .to_ne_bytes(),
            ),
            attr(8, &rng.gen::<u64>().to_ne_bytes()),
            attr(7, &rng.gen::<u64>().to_ne_bytes()),
            attr(10, &1u32.to_ne_bytes()),
        ];
        if rng.gen_bool(0.6) {
            let port = rng.gen::<u16>();
            let addr = match rng.gen_range(0..3) {
                0 => std::net::SocketAddr::from((rng.gen::<[u8; 4]>(), port)),
                1 => std::net::SocketAddr::from((rng.gen::<[u8; 16]>(), port)),
                _ => std::net::SocketAddr::V6(std::net::SocketAddrV6::new(
                    std::net::Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, rng.gen()),
                    port,
                    0,
                    1,
                )),
            };
            first.push(attr(4, &sockaddr(&addr)));
        }
        let ips: Vec<Vec<u8>> = (0..ip_count(rng)).map(|_| random_dump_ip(rng)).collect();
        let mut chunk = first;
        let mut chunk_ips: Vec<Vec<u8>> = Vec::new();
        let mut size = chunk.iter().map(Vec::len).sum::<usize>() + 8;
        if used + size > room {
            current.push(nest(8, &std::mem::take(&mut peers)));
            messages.push(dump_message(&std::mem::take(&mut current)));
            used = 12 + 20 + 20;
            current = vec![attr(2, format!("{IFACE}\0").as_bytes())];
        }
        for ip in ips {
            if used + size + ip.len() > room {
                if !chunk_ips.is_empty() {
                    chunk.push(nest(9, &std::mem::take(&mut chunk_ips)));
                }
                peers.push(nest(0, &chunk));
                current.push(nest(8, &std::mem::take(&mut peers)));
                messages.push(dump_message(&std::mem::take(&mut current)));
                current = vec![attr(2, format!("{IFACE}\0").as_bytes())];
                chunk = vec![attr(1, &public)];
                used = 12 + 20 + 20;
                size = 40 + 8;
            }
            size += ip.len();
            chunk_ips.push(ip);
        }
        if !chunk_ips.is_empty() {
            chunk.push(nest(9, &chunk_ips));
        }
        used += size;
        peers.push(nest(0, &chunk));
    }
    if !peers.is_empty() {
        current.push(nest(8, &peers));
    }
    messages.push(dump_message(&current));
    for message in &messages {
        assert!(
            message.len() <= 4096,
            "a dump message of {} bytes",
            message.len()
        );
    }
    (messages.concat(), handshakes)
}

/// The `wg show`/`showconf` forms compared on a served dump.
const SHOW_FORMS: &[&[&str]] = &[
    &["show", IFACE, "dump"],
    &["showconf", IFACE],
    &["show", IFACE, "public-key"],
    &["show", IFACE, "private-key"],
    &["show", IFACE, "listen-port"],
    &["show", IFACE, "fwmark"],
    &["show", IFACE, "peers"],
    &["show", IFACE, "preshared-keys"],
    &["show", IFACE, "endpoints"],
    &["show", IFACE, "allowed-ips"],
    &["show", IFACE, "latest-handshakes"],
    &["show", IFACE, "persistent-keepalive"],
    &["show", IFACE, "transfer"],
];

/// Shows the dump in `dump_file` with both tools in the first two forms, or in `all` of them,
/// and with the pretty form if `pretty`, and compares; returns the
/// reference's output of the first form (`dump`).
fn diff_show(case: &str, dump_file: &Path, done: i32, pretty: bool, all: bool) -> Outcome {
    let pretty_form: &[&str] = &["show", IFACE];
    let forms = SHOW_FORMS
        .iter()
        .take(if all { SHOW_FORMS.len() } else { 2 })
        .copied()
        .chain(pretty.then_some(pretty_form));
    let mut first = None;
    for form in forms {
        let inv = Invocation::new(form)
            .env("LD_PRELOAD", shim())
            .env("NLSHIM_DUMP", dump_file)
            .env("NLSHIM_DONE", done.to_string())
            .env("WG_HIDE_KEYS", "never");
        let reference = inv.run(&reference_wg());
        let ours = inv.run(&our_wg());
        if let Some(d) = compare(&reference, &ours) {
            panic!("{case}: wg {}: outputs differ:\n{d}", form.join(" "));
        }
        first.get_or_insert(reference);
    }
    first.expect("at least one form")
}

#[test]
fn show_of_dumps_matches_reference() {
    let dir = tempfile::tempdir().unwrap();
    let dump_file = dir.path().join("dump.bin");
    let mut lines = 0;
    for case in 0..GET_CASES {
        if !case_selected(case) {
            continue;
        }
        let mut rng = case_rng(seed(), 3_000 + case);
        let room = *pick(&mut rng, &[400, 1000, 4000]);
        let (dump, handshakes) = random_dump(&mut rng, room);
        std::fs::write(&dump_file, dump).unwrap();
        // Pretty output says "N seconds ago": only without handshakes is it timeless.
        // Every form for some cases; `dump` and `showconf` (which print everything) for all.
        let all = case % 5 == 0;
        let shown = diff_show(&format!("case {case}"), &dump_file, 0, !handshakes, all);
        assert_eq!(shown.code(), Some(0), "case {case}: {}", shown.stderr_str());
        lines += shown.stdout.split(|&b| b == b'\n').count();
    }
    // The generator must produce sizeable devices (guards against a trivial suite).
    assert!(lines > 300, "only {lines} dump lines in all");
}

#[test]
fn bad_dumps_match_reference() {
    let dir = tempfile::tempdir().unwrap();
    let dump_file = dir.path().join("dump.bin");
    let ifname = attr(2, format!("{IFACE}\0").as_bytes());
    let ip = nest(
        0,
        &[
            attr(3, &[8]),
            attr(2, &[10, 0, 0, 0]),
            attr(1, &2u16.to_ne_bytes()),
        ],
    );
    let cases: Vec<(&str, Vec<u8>, i32)> = vec![
        // A peer without a public key fails the whole read.
        (
            "peer without key",
            dump_message(&[
                ifname.clone(),
                nest(8, &[nest(0, &[attr(5, &25u16.to_ne_bytes())])]),
            ]),
            0,
        ),
        // The dump ends with an error in NLMSG_DONE.
        (
            "error in DONE",
            dump_message(std::slice::from_ref(&ifname)),
            -libc::EMSGSIZE,
        ),
        // Attributes of the wrong size are skipped; unknown ones ignored; an empty peer list.
        (
            "odd sizes",
            dump_message(&[
                ifname.clone(),
                attr(3, &[1, 2, 3]),
                attr(6, &[1, 2, 3, 4]),
                attr(99, &[1]),
                nest(
                    8,
                    &[nest(
                        0,
                        &[
                            attr(1, &[7; 32]),
                            attr(2, &[1; 31]),
                            attr(5, &[1]),
                            nest(9, &[ip]),
                        ],
                    )],
                ),
            ]),
            0,
        ),
        // Entries of one peer spread over many messages, and an empty message in between.
        (
            "split peer",
            [
                dump_message(&[
                    ifname.clone(),
                    nest(
                        8,
                        &[nest(
                            0,
                            &[
                                attr(1, &[9; 32]),
                                nest(9, &[random_dump_ip(&mut case_rng(seed(), 1))]),
                            ],
                        )],
                    ),
                ]),
                dump_message(std::slice::from_ref(&ifname)),
                dump_message(&[nest(
                    8,
                    &[nest(
                        0,
                        &[
                            attr(1, &[9; 32]),
                            nest(9, &[random_dump_ip(&mut case_rng(seed(), 2))]),
                        ],
                    )],
                )]),
                dump_message(&[nest(
                    8,
                    &[nest(0, &[attr(1, &[9; 32])]), nest(0, &[attr(1, &[8; 32])])],
                )]),
            ]
            .concat(),
            0,
        ),
    ];
    for (name, dump, done) in cases {
        std::fs::write(&dump_file, dump).unwrap();
        let shown = diff_show(name, &dump_file, done, true, true);
        let expected = match name {
            "peer without key" => "Unable to access interface: Invalid argument\n",
            "error in DONE" => "Unable to access interface: Message too long\n",
            _ => "",
        };
        assert_eq!(shown.stderr_str(), expected, "{name}");
        if name == "split peer" {
            // One peer with both IPs, one without: the continued entries were merged.
            let dump = shown.stdout_str();
            let peers: Vec<&str> = dump.lines().skip(1).collect();
            assert_eq!(peers.len(), 2, "{dump}");
            assert_eq!(
                peers[0].split('\t').nth(3).unwrap().split(',').count(),
                2,
                "{dump}"
            );
        }
    }
}

#[test]
fn listing_survives_links_with_non_utf8_names() {
    // Linux link names are bytes: one in another encoding must not break `wg show` (it did,
    // with "Protocol error", while kernel links were parsed as UTF-8 strings).
    if !require_root() {
        return;
    }
    let sandbox = Sandbox::new();
    sandbox.sh(r#"ip link add "$(printf 'v\377')" type veth peer name "$(printf 'caf\351')""#);
    let _device = sandbox.start_wg_tunnel("wgt0");
    for args in [
        &["show", "interfaces"][..],
        &["show"],
        &["show", "all", "dump"],
    ] {
        let inv = Invocation::new(args).in_sandbox(&sandbox);
        let reference = inv.run(&reference_wg());
        let ours = inv.run(&our_wg());
        if let Some(d) = compare(&reference, &ours) {
            panic!("wg {}: outputs differ:\n{d}", args.join(" "));
        }
        assert_eq!(reference.code(), Some(0), "{}", reference.stderr_str());
    }
}

#[test]
fn interrupted_dump_is_read_again() {
    // A dump flagged NLM_F_DUMP_INTR (the device changed while it was read) is thrown away and
    // the whole get starts over: both tools then show the complete device.
    let dir = tempfile::tempdir().unwrap();
    let dump_file = dir.path().join("dump.bin");
    let mut rng = case_rng(seed(), 4_000);
    let (dump, _) = random_dump(&mut rng, 1000);
    std::fs::write(&dump_file, dump).unwrap();
    let show = |wg: &Path, interrupt: bool| {
        let mut inv = Invocation::new(["show", IFACE, "dump"])
            .env("LD_PRELOAD", shim())
            .env("NLSHIM_DUMP", &dump_file);
        if interrupt {
            inv = inv.env("NLSHIM_INTR_ONCE", "1");
        }
        inv.run(wg)
    };
    let plain = show(&reference_wg(), false);
    assert_eq!(plain.code(), Some(0), "{}", plain.stderr_str());
    for wg in [reference_wg(), our_wg()] {
        let interrupted = show(&wg, true);
        assert!(
            compare(&plain, &interrupted).is_none(),
            "{}: {:?}",
            wg.display(),
            interrupted
        );
    }
}
