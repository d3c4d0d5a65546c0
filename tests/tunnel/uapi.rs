//! The UAPI server against wireguard-go's: the same `wg setconf`/`set` give the same
//! `showconf`, and the same bad input gets the same reply (an errno, or a closed connection)
//! except for the deliberate differences listed with the cases; bad input leaves our state
//! unchanged (our sets are atomic); after every bad request both daemons keep serving; and
//! clients that stall do not block others.
//!
//! ```text
//!   Sandbox "ours": wg-tunnel -f wg0       Sandbox "theirs": wireguard-go -f wg0
//!        ▲ raw bytes over /proc/PID/root/run/wireguard/wg0.sock (no `wg` in between)
//!        └──────────── the same request to both; replies and showconf compared
//! ```

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use super::{keypair, wg, DEADLINE};
use wg_tests::{require_root, Sandbox, UserspaceDevice};

/// `wg setconf` then `wg showconf` give the same text against wg-tunnel as against
/// wireguard-go, and `set` lines that change an existing configuration too.
#[test]
fn tunnel_uapi_setconf_showconf_matches_wireguard_go() {
    if !require_root() {
        return;
    }
    let (ours, theirs) = (Sandbox::new(), Sandbox::new());
    let _dev_ours = ours.start_wg_tunnel("wg0");
    let _dev_theirs = theirs.start_wireguard_go("wg0");
    let conf = Conf::new();
    let conf_file = conf.path();
    let (_, peer3) = keypair();
    #[rustfmt::skip]
    let steps: Vec<Vec<&str>> = vec![
        vec!["setconf", "wg0", &conf_file],
        // Moves a prefix between peers, drops a PSK, changes the port, adds and removes peers.
        vec!["set", "wg0", "listen-port", "51822", "peer", &conf.peer2, "allowed-ips",
             "10.2.0.1/32,10.1.0.0/16", "peer", &conf.peer1, "preshared-key", "/dev/null",
             "persistent-keepalive", "off", "peer", &peer3, "allowed-ips", "10.3.0.0/24"],
        vec!["set", "wg0", "fwmark", "0", "peer", &conf.peer2, "remove"],
    ];
    for step in &steps {
        wg(&ours, step);
        wg(&theirs, step);
        let (a, b) = (showconf(&ours), showconf(&theirs));
        assert_eq!(
            a,
            b,
            "after wg {}: ours (left) vs wireguard-go",
            step.join(" ")
        );
    }
}

/// A configuration with two peers, written to a temporary file.
struct Conf {
    dir: tempfile::TempDir,
    peer1: String,
    peer2: String,
}

impl Conf {
    fn new() -> Conf {
        let (private, _) = keypair();
        let (_, peer1) = keypair();
        let (_, peer2) = keypair();
        let (psk, _) = keypair();
        let text = format!(
            "[Interface]\nPrivateKey = {private}\nListenPort = 51821\nFwMark = 0x1234\n\n\
             [Peer]\nPublicKey = {peer1}\nPresharedKey = {psk}\n\
             AllowedIPs = 10.1.0.0/16, fd00:1::/64\n\
             Endpoint = 192.0.2.1:51820\nPersistentKeepalive = 25\n\n\
             [Peer]\nPublicKey = {peer2}\nAllowedIPs = 10.2.0.1/32\n\
             Endpoint = [2001:db8::1]:1234\n"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("wg0.conf"), text).expect("write config");
        Conf { dir, peer1, peer2 }
    }

    fn path(&self) -> String {
        self.dir
            .path()
            .join("wg0.conf")
            .to_str()
            .expect("UTF-8")
            .to_owned()
    }
}

/// `wg showconf wg0` with the `[Peer]` sections sorted: wireguard-go lists peers in Go map
/// order, which is random.
fn showconf(sandbox: &Sandbox) -> String {
    let conf = wg(sandbox, &["showconf", "wg0"]);
    let mut sections: Vec<&str> = conf.trim_end().split("\n\n").collect();
    sections[1..].sort_unstable();
    sections.join("\n\n")
}

/// How the client ends its side of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    /// Shut down writing and read the reply to the end.
    Read,
    /// Close at once without reading anything (an abrupt disconnect).
    Abort,
}

/// Sends `input` on a fresh connection to `socket` and ends it as `end` says; returns the
/// reply (empty for [`End::Abort`]). A server that closes early (a reset, a refused write)
/// gives whatever it replied before.
fn exchange(socket: &Path, input: &[u8], end: End) -> Vec<u8> {
    let mut conn =
        UnixStream::connect(socket).unwrap_or_else(|e| panic!("connect {}: {e}", socket.display()));
    conn.set_read_timeout(Some(DEADLINE)).expect("timeout");
    conn.set_write_timeout(Some(DEADLINE)).expect("timeout");
    let mut reply = Vec::new();
    // Read while writing: the server may answer (and close) before taking all of a big input.
    std::thread::scope(|s| {
        let mut writer = conn.try_clone().expect("clone stream");
        let write = s.spawn(move || {
            let _ = writer.write_all(input);
            let _ = writer.shutdown(std::net::Shutdown::Write);
        });
        if end == End::Read {
            let mut chunk = [0u8; 4096];
            loop {
                match conn.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => reply.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                    Err(e) => panic!("reading the reply to {}: {e}", escape(input)),
                }
            }
        }
        write.join().expect("writer");
    });
    reply
}

fn escape(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
    if bytes.len() > 200 {
        format!("{text:?}… ({} bytes)", bytes.len())
    } else {
        format!("{text:?}")
    }
}

/// One bad (or cut-short) request.
struct Case {
    name: &'static str,
    input: Vec<u8>,
    end: End,
    /// Where our reply deliberately differs from wireguard-go's: (ours, why).
    known: Option<(&'static [u8], &'static str)>,
}

/// Our sets are atomic; wireguard-go applies a `set` line by line, so the lines before a bad
/// one, or before a disconnect, stay applied there (and an unterminated last line is applied
/// at end of stream). The state checks below hold ours to "unchanged".
const ATOMIC: &str = "a set is atomic: nothing of a failed request is applied";

/// wireguard-go reads lines with a 64 KiB `bufio.Scanner`; a longer line fails it with EIO.
const OVERLONG: &str = "an over-long line in a request is EINVAL (wireguard-go: EIO)";

/// wireguard-go applies an unterminated last line at end of stream and answers it.
const UNTERMINATED: &str = "an unterminated line at end of stream is a cut-short request";

fn cases(peer1_hex: &str) -> Vec<Case> {
    let case = |name, input: &[u8], end| Case {
        name,
        input: input.to_vec(),
        end,
        known: None,
    };
    let known = |name, input: &[u8], ours: &'static [u8], why: &'static str| Case {
        name,
        input: input.to_vec(),
        end: End::Read,
        known: Some((ours, why)),
    };
    let peer_line = format!("set=1\npublic_key={peer1_hex}\n");
    let peer = |rest: &str| format!("{peer_line}{rest}").into_bytes();
    let mut huge_value = b"set=1\nprivate_key=".to_vec();
    huge_value.extend(std::iter::repeat(b'a').take(1 << 20));
    huge_value.extend_from_slice(b"\n\n");
    let mut huge_no_newline = b"set=1\nlisten_port=".to_vec();
    huge_no_newline.extend(std::iter::repeat(b'1').take(1 << 20));
    let mut huge_op = vec![b'x'; 1 << 20];
    huge_op.push(b'\n');
    let bad_hex = [b"set=1\nprivate_key=".as_slice(), &[b'z'; 64], b"\n\n"].concat();
    use End::{Abort, Read};
    vec![
        case("line without =", b"set=1\nbogus\n\n", Read),
        case(
            "line without =, then get",
            b"set=1\nbogus\n\nget=1\n\n",
            Read,
        ),
        case("unknown device key", b"set=1\nfrobnicate=1\n\n", Read),
        case("empty key", b"set=1\n=1\n\n", Read),
        case("port out of range", b"set=1\nlisten_port=70000\n\n", Read),
        case("negative port", b"set=1\nlisten_port=-1\n\n", Read),
        case("short private key", b"set=1\nprivate_key=abcd\n\n", Read),
        case("non-hex private key", &bad_hex, Read),
        case("fwmark not a number", b"set=1\nfwmark=0x\n\n", Read),
        case(
            "replace_peers=false",
            b"set=1\nreplace_peers=false\n\n",
            Read,
        ),
        case("non-UTF-8 value", b"set=1\nlisten_port=\xff\xfe\n\n", Read),
        case("NUL in a line", b"set=1\nlisten_port=1\x002\n\n", Read),
        case("CRLF line ends", b"set=1\r\nlisten_port=1\r\n\r\n", Read),
        case("unknown peer key", &peer("frobnicate=1\n\n"), Read),
        case("device key after a peer", &peer("listen_port=1\n\n"), Read),
        case("bad allowed ip", &peer("allowed_ip=10.0.0.0/33\n\n"), Read),
        case("bad endpoint", &peer("endpoint=nowhere\n\n"), Read),
        case(
            "keepalive out of range",
            &peer("persistent_keepalive_interval=65536\n\n"),
            Read,
        ),
        known(
            "huge value (1 MiB line)",
            &huge_value,
            b"errno=-22\n\n",
            OVERLONG,
        ),
        known(
            "huge line, no newline",
            &huge_no_newline,
            b"errno=-22\n\n",
            OVERLONG,
        ),
        case("huge operation line", &huge_op, Read),
        case("get with a trailing byte", b"get=1\nx\n", Read),
        case("unknown operation", b"frob=1\n\n", Read),
        case("nothing", b"", Read),
        case("disconnect mid-operation", b"se", Abort),
        case("disconnect mid-line", b"set=1\nlisten_po", Abort),
        case("disconnect before get's blank line", b"get=1\n", Abort),
        case("get, gone before the reply", b"get=1\n\n", Abort),
        known(
            "half-closed mid-line",
            b"set=1\nfwmark=12",
            b"",
            UNTERMINATED,
        ),
        known(
            "partial set, then a bad line",
            b"set=1\nfwmark=7\nbogus\n\n",
            b"errno=-71\n\n",
            ATOMIC,
        ),
        case("partial set, then disconnect", b"set=1\nfwmark=9\n", Abort),
        known(
            "partial peer set, then a bad line",
            &peer("persistent_keepalive_interval=7\nallowed_ip=300.0.0.0/8\n\n"),
            b"errno=-22\n\n",
            ATOMIC,
        ),
    ]
}

/// Waits until a `get` on `socket` answers (the server has processed what came before).
fn get(socket: &Path) -> Vec<u8> {
    exchange(socket, b"get=1\n\n", End::Read)
}

fn alive(dev: &mut UserspaceDevice) {
    if let Some(status) = dev.try_status() {
        panic!("daemon exited: {status}\nlog:\n{}", dev.log());
    }
}

/// Every bad request gets wireguard-go's reply (an errno block, or nothing and a closed
/// connection) unless the case lists a deliberate difference, and leaves our state exactly
/// as it was. Both daemons keep serving.
#[test]
fn tunnel_uapi_bad_input_like_wireguard_go() {
    if !require_root() {
        return;
    }
    let (ours, theirs) = (Sandbox::new(), Sandbox::new());
    let mut dev_ours = ours.start_wg_tunnel("wg0");
    let mut dev_theirs = theirs.start_wireguard_go("wg0");
    let conf = Conf::new();
    let peer1_hex = hex_key(&conf.peer1);
    let mut failures = Vec::new();
    for case in cases(&peer1_hex) {
        // Each case starts from the same state.
        wg(&ours, &["setconf", "wg0", &conf.path()]);
        wg(&theirs, &["setconf", "wg0", &conf.path()]);
        let before = showconf(&ours);
        assert_eq!(
            before,
            showconf(&theirs),
            "states differ before {}",
            case.name
        );
        let reply_theirs = exchange(dev_theirs.socket_host_path(), &case.input, case.end);
        let reply_ours = exchange(dev_ours.socket_host_path(), &case.input, case.end);
        // Both still serve, and have finished with the request.
        for (dev, what) in [(&mut dev_ours, "ours"), (&mut dev_theirs, "wireguard-go")] {
            let reply = get(dev.socket_host_path());
            alive(dev);
            assert!(
                reply.ends_with(b"errno=0\n\n"),
                "{}: {what}: get after: {}",
                case.name,
                escape(&reply)
            );
        }
        let expected: &[&[u8]] = match case.known {
            Some((ours, _)) => &[&reply_theirs, ours],
            None => &[&reply_theirs],
        };
        if !expected.contains(&reply_ours.as_slice()) {
            failures.push(format!(
                "{}: input {}\n  reply ours {}\n  wireguard-go {}{}",
                case.name,
                escape(&case.input),
                escape(&reply_ours),
                escape(&reply_theirs),
                case.known
                    .map(|(r, why)| format!("\n  known difference {} ({why})", escape(r)))
                    .unwrap_or_default()
            ));
        }
        let after = showconf(&ours);
        if after != before {
            failures.push(format!(
                "{}: state changed:\n{before}\n  ->\n{after}",
                case.name
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{}\nlog:\n{}",
        failures.join("\n"),
        dev_ours.log()
    );
}

/// Clients that stall (a request never finished, a big reply never read) do not stop the
/// daemon from serving others.
#[test]
fn tunnel_uapi_stalled_clients_do_not_block_others() {
    if !require_root() {
        return;
    }
    let sandbox = Sandbox::new();
    let mut dev = sandbox.start_wg_tunnel("wg0");
    // Enough peers that a `get` reply (about 250 bytes a peer) overfills a socket buffer.
    let mut set = String::from("set=1\n");
    for i in 0..4000u32 {
        let key: String = (0..32)
            .map(|j| {
                format!(
                    "{:02x}",
                    (i.wrapping_mul(2654435761) >> (j % 4 * 8)) as u8 ^ j as u8
                )
            })
            .collect();
        set += &format!(
            "public_key={key}\nendpoint=192.0.2.{}:{}\nallowed_ip=10.{}.{}.0/24\n",
            i % 250 + 1,
            1024 + i,
            i >> 8,
            i & 255
        );
    }
    set += "\n";
    let reply = exchange(dev.socket_host_path(), set.as_bytes(), End::Read);
    assert_eq!(reply, b"errno=0\n\n", "{}", dev.log());
    let mut stalled = Vec::new();
    for i in 0..20 {
        let mut conn = UnixStream::connect(dev.socket_host_path()).expect("connect");
        let request: &[u8] = match i % 3 {
            0 => b"get=1\n\n",            // never reads the (large) reply
            1 => b"set=1\nlisten_port=5", // never finishes the line
            _ => b"get=1\n",              // never sends the blank line
        };
        conn.write_all(request).expect("write");
        stalled.push(conn);
    }
    for _ in 0..3 {
        let reply = get(dev.socket_host_path());
        assert!(reply.ends_with(b"errno=0\n\n"), "{}", dev.log());
        assert_eq!(
            reply.windows(11).filter(|w| w == b"public_key=").count(),
            4000
        );
        alive(&mut dev);
    }
    let peers = wg(&sandbox, &["show", "wg0", "peers"]);
    assert_eq!(peers.lines().count(), 4000);
    drop(stalled);
    alive(&mut dev);
    assert!(get(dev.socket_host_path()).ends_with(b"errno=0\n\n"));
}

/// The lower-case hex form of a base64 key, as UAPI wants it.
fn hex_key(base64_key: &str) -> String {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(base64_key)
        .expect("base64 key");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
