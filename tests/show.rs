//! `wg show` and `wg showconf` (compat 1.2, 1.3, 2, 4.1) against the reference `wg`.
//!
//! ```text
//!   +------------ live sandbox -------------+     +----------- replay sandbox ------------+
//!   | wg0..wg3 <- wireguard-go -f wgN       |     | wg0..wg3 <- FakeUapi (this process)    |
//!   |  state applied with reference         |     |  serving the exact `get` reply read    |
//!   |  `wg setconf wgN /run/state-wgN.conf` |     |  from wireguard-go's wgN socket        |
//!   |                                       |     |                                        |
//!   | both tools, peer order normalised     | --> | both tools, byte for byte              |
//!   +---------------------------------------+     +----------------------------------------+
//!
//!   +-- sandbox A --+  veth  +-- sandbox B --+     +-- replay sandbox --+
//!   | wireguard-go  |--------| wireguard-go  |     | FakeUapi wg0 with  |
//!   | wg0 (ping ->) |        | wg0           |     | A's reply after    |
//!   +---------------+        +---------------+     | the handshake      |
//!                                                  +--------------------+
//! ```
//!
//! Why replay: wireguard-go returns peers in Go map order, different on every `get`, and the
//! script formats keep backend order, so two runs against a live daemon can differ by peer
//! order alone. Replaying one recorded reply to both tools makes every form comparable byte
//! for byte; the live runs (with peer blocks/lines sorted) prove the real socket path too.
//! Replies are also handcrafted to inject what a live daemon cannot show on demand: handshake
//! times in the past and future, counters at every unit boundary, failing interfaces.
//!
//! Time: the pretty form prints handshake ages relative to the current second, which each
//! process reads separately. A case whose reply has a non-zero handshake time is retried (up
//! to [`TIME_ATTEMPTS`] runs of both tools) when it mismatches, because the reference and ours
//! may run on either side of a second boundary; a real formatting bug fails every attempt.
//!
//! Known differences from the installed 1.0.20210914 (see `differential` KNOWN_DIFFERENCES 2
//! and 3) are compared against the reference output with HEAD's behaviour re-applied.
//!
//! All cases come from the fixed seed ([`wg_tests::seed`]); each failure names its state
//! number, which `WG_TESTS_CASE=N` reruns alone (for the generated states).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rand::seq::SliceRandom;
use rand::{Rng, RngCore};
use rand_chacha::ChaCha8Rng;
use wg_tests::rng::{random_cidr, random_endpoint};
use wg_tests::{
    case_rng, case_selected, compare, our_wg, reference_wg, require_root, seed, FakeUapi,
    Invocation, Outcome, Sandbox,
};

/// Every `<param>` of `wg show <if> <param>` (the kernel suite uses it too).
pub(crate) const PARAMS: [&str; 12] = [
    "public-key",
    "private-key",
    "listen-port",
    "fwmark",
    "peers",
    "preshared-keys",
    "endpoints",
    "allowed-ips",
    "latest-handshakes",
    "transfer",
    "persistent-keepalive",
    "dump",
];

/// `(WG_COLOR_MODE, WG_HIDE_KEYS)`, `None` = unset.
type Env = (Option<&'static str>, Option<&'static str>);

/// Environments for the pretty form: `WG_COLOR_MODE` × `WG_HIDE_KEYS` (`None` = unset). Stdout
/// is a pipe in tests, so unset colour means none. Other values must behave like unset.
const PRETTY_ENVS: [Env; 8] = [
    (None, None),
    (Some("always"), None),
    (Some("never"), None),
    (None, Some("never")),
    (Some("always"), Some("never")),
    (Some("never"), Some("never")),
    (Some("auto"), Some("Never")),
    (Some("ALWAYS"), Some("")),
];

/// Generated states in [`show_random_states_live_and_replayed`].
const STATES: u64 = 2500;

/// wireguard-go devices (and replayed fake sockets) the states rotate through.
const DEVICES: usize = 4;

/// Every this many batches of [`DEVICES`] states, every form is run in every environment;
/// other batches run a seeded sample of the forms.
const FULL_MATRIX_EVERY: u64 = 25;

/// Runs of both tools allowed for a time-dependent case (see the module docs).
const TIME_ATTEMPTS: usize = 3;

/// Failures reported in full; the rest are counted.
const MAX_REPORTS: usize = 25;

// ---------------------------------------------------------------------------------------------
// The device model: rendered as a `wg setconf` file and as a UAPI `get` reply.

type Key = [u8; 32];

#[derive(Clone, Debug, Default)]
struct Peer {
    public_key: Key,
    preshared_key: Option<Key>,
    /// As in a config file and a UAPI reply: `a.b.c.d:port` or `[v6]:port`.
    endpoint: Option<String>,
    /// `ip/cidr`, as written (host bits may be set).
    allowed_ips: Vec<String>,
    persistent_keepalive: u16,
    handshake: (u64, u64),
    rx_bytes: u64,
    tx_bytes: u64,
}

#[derive(Clone, Debug, Default)]
struct Device {
    private_key: Option<Key>,
    listen_port: u16,
    fwmark: u32,
    peers: Vec<Peer>,
}

fn hex(key: &Key) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}

fn b64(key: &Key) -> String {
    STANDARD.encode(key)
}

impl Device {
    /// The `wg setconf` file for this state (handshakes and counters are not configurable).
    fn conf(&self) -> String {
        let mut s = String::from("[Interface]\n");
        if let Some(k) = &self.private_key {
            s += &format!("PrivateKey = {}\n", b64(k));
        }
        s += &format!("ListenPort = {}\n", self.listen_port);
        match self.fwmark {
            0 => s += "FwMark = off\n",
            m => s += &format!("FwMark = {m:#x}\n"),
        }
        for p in &self.peers {
            s += &format!("\n[Peer]\nPublicKey = {}\n", b64(&p.public_key));
            if let Some(k) = &p.preshared_key {
                s += &format!("PresharedKey = {}\n", b64(k));
            }
            if !p.allowed_ips.is_empty() {
                s += &format!("AllowedIPs = {}\n", p.allowed_ips.join(", "));
            }
            if let Some(e) = &p.endpoint {
                s += &format!("Endpoint = {e}\n");
            }
            if p.persistent_keepalive != 0 {
                s += &format!("PersistentKeepalive = {}\n", p.persistent_keepalive);
            }
        }
        s
    }

    /// The `get` reply wireguard-go would send for this state (its key order, compat 7.2).
    fn uapi_get(&self) -> Vec<u8> {
        let mut s = String::new();
        if let Some(k) = &self.private_key {
            s += &format!("private_key={}\n", hex(k));
        }
        if self.listen_port != 0 {
            s += &format!("listen_port={}\n", self.listen_port);
        }
        if self.fwmark != 0 {
            s += &format!("fwmark={}\n", self.fwmark);
        }
        for p in &self.peers {
            s += &format!("public_key={}\n", hex(&p.public_key));
            s += &format!(
                "preshared_key={}\n",
                hex(&p.preshared_key.unwrap_or_default())
            );
            s += "protocol_version=1\n";
            if let Some(e) = &p.endpoint {
                s += &format!("endpoint={e}\n");
            }
            s += &format!(
                "last_handshake_time_sec={}\nlast_handshake_time_nsec={}\n",
                p.handshake.0, p.handshake.1
            );
            s += &format!("tx_bytes={}\nrx_bytes={}\n", p.tx_bytes, p.rx_bytes);
            s += &format!("persistent_keepalive_interval={}\n", p.persistent_keepalive);
            for ip in &p.allowed_ips {
                s += &format!("allowed_ip={ip}\n");
            }
        }
        s += "errno=0\n\n";
        s.into_bytes()
    }
}

// ---------------------------------------------------------------------------------------------
// Random states.

fn random_key(rng: &mut ChaCha8Rng) -> Key {
    let mut k = [0u8; 32];
    rng.fill_bytes(&mut k);
    k
}

/// A random configurable state for device slot `slot` (listen ports are disjoint per slot so
/// the live devices never collide; ports 0 and 65535 are covered too).
fn random_device(rng: &mut ChaCha8Rng, slot: usize) -> Device {
    let peers = match rng.gen_range(0..100) {
        0..=59 => rng.gen_range(0..=3),
        60..=89 => rng.gen_range(4..=20),
        90..=97 => rng.gen_range(21..=60),
        _ => rng.gen_range(100..=300),
    };
    let base = 1000 + 7000 * slot as u16;
    Device {
        private_key: rng.gen_bool(0.8).then(|| random_key(rng)),
        listen_port: match rng.gen_range(0..10) {
            0 => 0,
            1 if slot == 0 => 65535,
            _ => base + rng.gen_range(0..7000),
        },
        fwmark: match rng.gen_range(0..8) {
            0..=3 => 0,
            4 => 0xffff_ffff,
            5 => 1,
            _ => rng.gen(),
        },
        peers: (0..peers)
            .map(|_| Peer {
                public_key: random_key(rng),
                preshared_key: rng.gen_bool(0.4).then(|| random_key(rng)),
                endpoint: random_endpoint(rng),
                allowed_ips: {
                    let n = *[0, 1, 1, 2, 3, rng.gen_range(0..=12)]
                        .choose(rng)
                        .expect("non-empty");
                    (0..n).map(|_| random_cidr(rng)).collect()
                },
                persistent_keepalive: *[0, 0, 0, 1, 25, 65535, rng.gen_range(1..=65535)]
                    .choose(rng)
                    .expect("non-empty"),
                ..Peer::default()
            })
            .collect(),
    }
}

// ---------------------------------------------------------------------------------------------
// Comparing runs.

/// How two outcomes are compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Order {
    /// Byte for byte (replayed replies).
    Exact,
    /// Peer order ignored (live wireguard-go): blank-line-separated blocks are sorted, or, for
    /// output without blank lines (the script forms), lines are sorted.
    Insensitive,
}

fn sort_peer_order(stdout: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(stdout);
    if text.contains("\n\n") {
        let (body, tail) = match text.strip_suffix('\n') {
            Some(body) => (body, "\n"),
            None => (&*text, ""),
        };
        let mut blocks: Vec<&str> = body.split("\n\n").collect();
        blocks.sort_unstable();
        (blocks.join("\n\n") + tail).into_bytes()
    } else {
        let mut lines: Vec<&str> = text.split_inclusive('\n').collect();
        lines.sort_unstable();
        lines.concat().into_bytes()
    }
}

/// Turns the reference outcome into the expected HEAD outcome (a known difference).
type HeadFix<'f> = &'f dyn Fn(Outcome) -> Outcome;

/// Counts cases and collects failure reports; panics at the end if any failed.
struct Tally {
    name: &'static str,
    ours: PathBuf,
    _snapshot: tempfile::TempDir,
    reference: PathBuf,
    /// Retry every mismatching time-dependent case, not only those differing in a `latest
    /// handshake` line (for a live tunnel, whose counters may move between runs).
    retry_any: bool,
    cases: usize,
    runs: usize,
    failures: Vec<String>,
    started: Instant,
}

impl Tally {
    fn new(name: &'static str) -> Tally {
        // A private copy of ours: a rebuild of target/ during a long run (other work in the
        // same tree) cannot swap the binary under some of the cases.
        let snapshot = tempfile::tempdir().expect("temp dir");
        std::fs::copy(our_wg(), snapshot.path().join("wg")).expect("copy our wg");
        Tally {
            name,
            ours: snapshot.path().join("wg"),
            _snapshot: snapshot,
            reference: reference_wg(),
            retry_any: false,
            cases: 0,
            runs: 0,
            failures: Vec::new(),
            started: Instant::now(),
        }
    }

    /// Runs `inv` with both tools and records a failure unless they agree (after `head` is
    /// applied to the reference's outcome, and after normalising for `order`). Time-dependent
    /// cases get up to [`TIME_ATTEMPTS`] runs.
    fn check(
        &mut self,
        context: &str,
        inv: &Invocation<'_>,
        order: Order,
        time_dependent: bool,
        head: Option<HeadFix<'_>>,
    ) {
        self.cases += 1;
        let attempts = if time_dependent { TIME_ATTEMPTS } else { 1 };
        let mut report = String::new();
        for attempt in 0..attempts {
            if attempt > 0 && !self.retry_any && !differs_in_handshake_line(&report) {
                break; // The difference is not in a time-dependent line: retrying cannot help.
            }
            if time_dependent {
                align_to_second(attempt > 0);
            }
            self.runs += 1;
            let mut reference = inv.run(&self.reference);
            let mut ours = inv.run(&self.ours);
            if let Some(head) = head {
                reference = head(reference);
            }
            if order == Order::Insensitive {
                reference.stdout = sort_peer_order(&reference.stdout);
                ours.stdout = sort_peer_order(&ours.stdout);
            }
            match compare(&reference, &ours) {
                None => return,
                Some(r) => report = r,
            }
        }
        let mut entry = format!("=== [{context}] {}", inv.describe());
        if order == Order::Insensitive {
            entry += " (peer order normalised)";
        }
        if head.is_some() {
            entry += " (reference with HEAD's behaviour re-applied)";
        }
        self.failures.push(format!("{entry}\n{report}"));
    }

    fn finish(self) {
        // Straight to stderr so the count shows in a normal run (the harness captures stdout).
        let _ = writeln!(
            std::io::stderr(),
            "{}: {} cases compared ({} runs of each tool) in {:.1?}",
            self.name,
            self.cases,
            self.runs,
            self.started.elapsed()
        );
        if self.failures.is_empty() {
            return;
        }
        let shown: Vec<&str> = self
            .failures
            .iter()
            .take(MAX_REPORTS)
            .map(String::as_str)
            .collect();
        let all: Vec<&str> = self
            .failures
            .iter()
            .filter_map(|f| f.lines().next())
            .collect();
        panic!(
            "{}: {} of {} cases differ from the reference (first {} shown):\n{}\n\
             All failing cases:\n{}",
            self.name,
            self.failures.len(),
            self.cases,
            shown.len(),
            shown.join("\n"),
            all.join("\n")
        );
    }
}

fn show<'s, S: AsRef<OsStr>>(sandbox: &'s Sandbox, args: &[S]) -> Invocation<'s> {
    Invocation::new(args).in_sandbox(sandbox)
}

fn with_env(mut inv: Invocation<'_>, (color, hide): Env) -> Invocation<'_> {
    if let Some(c) = color {
        inv = inv.env("WG_COLOR_MODE", c);
    }
    if let Some(h) = hide {
        inv = inv.env("WG_HIDE_KEYS", h);
    }
    inv
}

/// KNOWN_DIFFERENCES 2: HEAD's `wg show all endpoints` from the reference's. The reference
/// prints `IF\t` once per interface, before its first peer line (and with no newline at all
/// when it has no peers); HEAD prefixes every peer line. `interfaces` lists, in output order,
/// each interface's name and peer count (`None` when it could not be read: no output).
fn head_all_endpoints(reference: Outcome, interfaces: &[(String, Option<usize>)]) -> Outcome {
    let mut rest: &[u8] = &reference.stdout;
    let mut head = Vec::new();
    for (name, peers) in interfaces {
        let Some(peers) = *peers else { continue };
        let prefix = format!("{name}\t");
        rest = rest.strip_prefix(prefix.as_bytes()).unwrap_or_else(|| {
            panic!(
                "reference `show all endpoints` does not have the 1.0.20210914 shape at {name}: \
                 {:?}",
                String::from_utf8_lossy(rest)
            )
        });
        for _ in 0..peers {
            let end = rest
                .iter()
                .position(|&b| b == b'\n')
                .map_or(rest.len(), |i| i + 1);
            head.extend_from_slice(prefix.as_bytes());
            head.extend_from_slice(&rest[..end]);
            rest = &rest[end..];
        }
    }
    head.extend_from_slice(rest);
    Outcome {
        stdout: head,
        ..reference
    }
}

// ---------------------------------------------------------------------------------------------
// Talking to sockets.

/// Sends `get=1\n\n` to the UAPI socket at `path` and returns the reply up to and including
/// its terminating blank line.
fn raw_get(path: &Path) -> Vec<u8> {
    let mut conn =
        UnixStream::connect(path).unwrap_or_else(|e| panic!("connect {}: {e}", path.display()));
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set timeout");
    conn.write_all(b"get=1\n\n").expect("send get");
    let mut reply = Vec::new();
    let mut chunk = [0u8; 65536];
    while !reply.ends_with(b"\n\n") {
        let n = conn.read(&mut chunk).expect("read get reply");
        assert!(n > 0, "EOF in get reply from {}", path.display());
        reply.extend_from_slice(&chunk[..n]);
    }
    reply
}

/// The names `wg show interfaces` lists in `sandbox`, per the reference.
fn interface_order(sandbox: &Sandbox) -> Vec<String> {
    let out = show(sandbox, &["show", "interfaces"]).run(&reference_wg());
    out.assert_code(0, "reference wg show interfaces");
    out.stdout_str()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// All forms that read one interface `name` (pretty in every environment, every param,
/// showconf).
fn interface_forms(name: &str) -> Vec<(Vec<String>, Env)> {
    let mut forms = Vec::new();
    for env in PRETTY_ENVS {
        forms.push((vec!["show".into(), name.into()], env));
    }
    for p in PARAMS {
        forms.push((vec!["show".into(), name.into(), p.into()], (None, None)));
    }
    forms.push((vec!["showconf".into(), name.into()], (None, None)));
    forms
}

/// Runs every form over all interfaces of `sandbox` (pretty `wg`, `show`, `show all` in every
/// environment, `show interfaces`, `show all <param>` for every param). `peers` gives each
/// interface's peer count for the endpoints fix-up.
fn all_forms(
    tally: &mut Tally,
    context: &str,
    sandbox: &Sandbox,
    order: Order,
    time_dependent: bool,
    peers: &[(String, Option<usize>)],
) {
    for env in PRETTY_ENVS {
        for args in [&[][..], &["show"], &["show", "all"]] {
            let inv = with_env(show(sandbox, args), env);
            tally.check(context, &inv, order, time_dependent, None);
        }
    }
    tally.check(
        context,
        &show(sandbox, &["show", "interfaces"]),
        order,
        false,
        None,
    );
    for p in PARAMS {
        all_param(tally, context, sandbox, p, order, time_dependent, peers);
    }
}

/// `wg show all <param>`, with KNOWN_DIFFERENCES 2 applied for `endpoints`.
fn all_param(
    tally: &mut Tally,
    context: &str,
    sandbox: &Sandbox,
    param: &str,
    order: Order,
    time_dependent: bool,
    peers: &[(String, Option<usize>)],
) {
    let inv = show(sandbox, &["show", "all", param]);
    if param == "endpoints" {
        let fix = |o: Outcome| head_all_endpoints(o, peers);
        tally.check(
            context,
            &inv,
            order,
            time_dependent,
            Some(&fix as HeadFix<'_>),
        );
    } else {
        tally.check(context, &inv, order, time_dependent, None);
    }
}

/// Whether a [`compare`] report has a changed (`-`/`+`) pretty `latest handshake` line.
fn differs_in_handshake_line(report: &str) -> bool {
    report
        .lines()
        .any(|l| (l.starts_with("- ") || l.starts_with("+ ")) && l.contains("latest handshake"))
}

/// Makes it likely that the next two runs read the same second: if the current second is
/// mostly over (or `always`, for a retry), sleeps until just after the next second starts.
fn align_to_second(always: bool) {
    let subsec = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .subsec_millis();
    if always || subsec > 900 {
        std::thread::sleep(Duration::from_millis(u64::from(1005 - subsec)));
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

// ---------------------------------------------------------------------------------------------
// Tests.

/// [`STATES`] seeded random states, applied to real wireguard-go devices with the reference
/// `wg setconf`, then shown by both tools: live (peer order normalised) and replayed from the
/// recorded `get` reply (byte for byte), over a sample of forms (every form every
/// [`FULL_MATRIX_EVERY`] batches).
#[test]
fn show_random_states_live_and_replayed() {
    if !require_root() {
        return;
    }
    let mut tally = Tally::new("show_random_states_live_and_replayed");
    let (live, replay) = (Sandbox::new(), Sandbox::new());
    let names: Vec<String> = (0..DEVICES).map(|i| format!("wg{i}")).collect();
    let devices: Vec<_> = names.iter().map(|n| live.start_wireguard_go(n)).collect();
    let fakes: Vec<_> = names
        .iter()
        .map(|n| FakeUapi::bind(replay.host_path(format!("/run/wireguard/{n}.sock"))))
        .collect();
    let live_order = interface_order(&live);
    let replay_order = interface_order(&replay);
    let seed = seed();
    let reference = reference_wg();
    let mut has_key = [false; DEVICES];
    for batch in 0..STATES / DEVICES as u64 {
        let cases: Vec<u64> = (0..DEVICES as u64)
            .map(|i| batch * DEVICES as u64 + i)
            .collect();
        if !cases.iter().any(|&c| case_selected(c)) {
            continue;
        }
        let context = format!(
            "seed {seed:#x}, states {}..={}",
            cases[0],
            cases[DEVICES - 1]
        );
        let mut states = Vec::new();
        for (slot, &case) in cases.iter().enumerate() {
            let state = random_device(&mut case_rng(seed, case), slot);
            let name = &names[slot];
            if state.private_key.is_none() && has_key[slot] {
                // A config file cannot remove a private key; an empty key file does.
                show(&live, &["set", name, "private-key", "/dev/null"])
                    .run(&reference)
                    .assert_code(0, "reference wg set private-key /dev/null");
            }
            has_key[slot] = state.private_key.is_some();
            let conf = format!("/run/state-{name}.conf");
            std::fs::write(live.host_path(&conf), state.conf()).expect("write state config");
            let out = show(&live, &["setconf", name, &conf]).run(&reference);
            assert_eq!(
                out.code(),
                Some(0),
                "[{context}] reference setconf failed:\n{out:?}\nconfig:\n{}\nlog:\n{}",
                state.conf(),
                devices[slot].log()
            );
            let reply = raw_get(devices[slot].socket_host_path());
            fakes[slot].set_get_reply(reply);
            states.push(state);
        }
        let count = |order: &[String]| -> Vec<(String, Option<usize>)> {
            order
                .iter()
                .map(|n| {
                    let slot = names.iter().position(|x| x == n).expect("known name");
                    (n.clone(), Some(states[slot].peers.len()))
                })
                .collect()
        };
        let (live_peers, replay_peers) = (count(&live_order), count(&replay_order));
        let mut rng = case_rng(seed ^ 0x5348_4f57, batch); // "SHOW": the form sample
        if batch % FULL_MATRIX_EVERY == 0 {
            all_forms(
                &mut tally,
                &context,
                &replay,
                Order::Exact,
                false,
                &replay_peers,
            );
            for name in &names {
                for (args, env) in interface_forms(name) {
                    let inv = with_env(show(&replay, &args), env);
                    tally.check(&context, &inv, Order::Exact, false, None);
                }
            }
            all_forms(
                &mut tally,
                &context,
                &live,
                Order::Insensitive,
                false,
                &live_peers,
            );
            for name in &names {
                for (args, env) in interface_forms(name) {
                    let inv = with_env(show(&live, &args), env);
                    tally.check(&context, &inv, Order::Insensitive, false, None);
                }
            }
            continue;
        }
        // The sample: replayed exactly…
        all_param(
            &mut tally,
            &context,
            &replay,
            "dump",
            Order::Exact,
            false,
            &replay_peers,
        );
        for p in PARAMS.choose_multiple(&mut rng, 2) {
            all_param(
                &mut tally,
                &context,
                &replay,
                p,
                Order::Exact,
                false,
                &replay_peers,
            );
        }
        let pretty: &[&str] = [&[][..], &["show"], &["show", "all"]]
            .choose(&mut rng)
            .expect("non-empty");
        let env = *PRETTY_ENVS.choose(&mut rng).expect("non-empty");
        tally.check(
            &context,
            &with_env(show(&replay, pretty), env),
            Order::Exact,
            false,
            None,
        );
        for name in &names {
            let forms = interface_forms(name);
            let (args, env) = forms.choose(&mut rng).expect("non-empty");
            let inv = with_env(show(&replay, args), *env);
            tally.check(&context, &inv, Order::Exact, false, None);
            let inv = show(&replay, &["showconf", name]);
            tally.check(&context, &inv, Order::Exact, false, None);
        }
        // …and live, peer order normalised.
        let p = PARAMS.choose(&mut rng).expect("non-empty");
        all_param(
            &mut tally,
            &context,
            &live,
            p,
            Order::Insensitive,
            false,
            &live_peers,
        );
        let name = names.choose(&mut rng).expect("non-empty");
        let forms = interface_forms(name);
        let (args, env) = forms.choose(&mut rng).expect("non-empty");
        let inv = with_env(show(&live, args), *env);
        tally.check(&context, &inv, Order::Insensitive, false, None);
    }
    drop(fakes);
    drop(devices);
    tally.finish();
}

/// A random peer with an injected handshake time (`(sec, nsec)`, `(0, 0)` = never) and
/// counters.
fn injected_peer(rng: &mut ChaCha8Rng, handshake: (u64, u64), rx: u64, tx: u64) -> Peer {
    Peer {
        public_key: random_key(rng),
        preshared_key: rng.gen_bool(0.5).then(|| random_key(rng)),
        endpoint: random_endpoint(rng),
        allowed_ips: (0..rng.gen_range(0..=3))
            .map(|_| random_cidr(rng))
            .collect(),
        persistent_keepalive: *[0, 1, 25, 60, 3600, 3661, 65535]
            .choose(rng)
            .expect("non-empty"),
        handshake,
        rx_bytes: rx,
        tx_bytes: tx,
    }
}

/// Byte counts at and around every unit boundary of the pretty transfer line.
const COUNTERS: [u64; 16] = [
    0,
    1,
    1023,
    1024,
    1025,
    3881,
    1_048_575,
    1_048_576,
    5_000_000,
    1_073_741_823,
    1_073_741_824,
    1_099_511_627_775,
    1_099_511_627_776,
    1 << 50,
    u64::MAX - 1,
    u64::MAX,
];

/// Handshake times relative to now (seconds ago; negative = in the future), plus absolute
/// extremes. `Now` (age 0) is included: it passes whenever both tools read the same second.
fn handshake_times(now: u64) -> Vec<(u64, u64)> {
    let mut t: Vec<(u64, u64)> = [
        0i64,
        1,
        2,
        59,
        60,
        61,
        65,
        3599,
        3600,
        3661,
        86_399,
        86_400,
        90_061,
        31_535_999,
        31_536_000,
        31_626_061,
        -1_000,
        -100_000_000,
    ]
    .iter()
    .map(|&age| (now.checked_add_signed(-age).expect("in range"), 0))
    .collect();
    t.extend([
        (1, 0),
        (1, 999_999_999),
        (0, 5), // sec 0 but nsec set: sorts as "had a handshake", prints no handshake line
        (i64::MAX as u64, 0),
        (now - 10, 1),
        (now - 10, 999_999_999),
    ]);
    t
}

/// Handcrafted replies served by fake sockets: handshake ages and future times, counters at
/// every unit boundary, sort order by handshake, zero and absent private keys, peers without
/// allowed IPs, scoped and v4-mapped endpoints, many interfaces, failing interfaces.
#[test]
fn show_injected_edge_cases() {
    if !require_root() {
        return;
    }
    let mut tally = Tally::new("show_injected_edge_cases");
    let sandbox = Sandbox::new();
    let seed = seed();
    let mut rng = case_rng(seed ^ 0x494e_4a45, 0); // "INJE"
    let now = now_secs();
    let times = handshake_times(now);

    // One interface per theme.
    let mut replies: Vec<(String, Vec<u8>, Option<usize>)> = Vec::new();
    let mut add = |name: &str, reply: Vec<u8>, peers: Option<usize>| {
        replies.push((name.to_owned(), reply, peers));
    };
    let dev = Device {
        private_key: Some(random_key(&mut rng)),
        listen_port: 51820,
        fwmark: 0x1234,
        peers: times
            .iter()
            .map(|&hs| injected_peer(&mut rng, hs, 0, 0))
            .collect(),
    };
    add("times", dev.uapi_get(), Some(dev.peers.len()));
    let mut counters = Vec::new();
    for &rx in &COUNTERS {
        for &tx in COUNTERS.choose_multiple(&mut rng, 3) {
            counters.push(injected_peer(&mut rng, (0, 0), rx, tx));
        }
        counters.push(injected_peer(&mut rng, (0, 0), 0, rx));
    }
    let dev = Device {
        peers: counters,
        ..Device::default()
    };
    add("bytes", dev.uapi_get(), Some(dev.peers.len()));
    // Zero private key (shown as a key, compat 7.2), peers with nothing but a key.
    let mut dev = Device {
        private_key: Some([0; 32]),
        listen_port: 1,
        fwmark: 0xffff_ffff,
        peers: (0..3)
            .map(|_| Peer {
                public_key: random_key(&mut rng),
                ..Peer::default()
            })
            .collect(),
    };
    dev.peers[1].public_key = [0; 32];
    add("zerokey", dev.uapi_get(), Some(dev.peers.len()));
    // Endpoints in every shape the reply can carry.
    let endpoints = [
        "127.0.0.1:51820",
        "0.0.0.0:1",
        "255.255.255.255:65535",
        "[::1]:51820",
        "[::]:2",
        "[fe80::1%lo]:51820",
        "[fe80::1%1]:51820",
        "[::ffff:10.1.2.3]:7",
        "[2001:db8:0:0:1:0:0:1]:443",
        "[2001:db8::ff00:42:8329]:65535",
    ];
    let dev = Device {
        private_key: None,
        listen_port: 0,
        fwmark: 0,
        peers: endpoints
            .iter()
            .map(|e| Peer {
                public_key: random_key(&mut rng),
                endpoint: Some((*e).to_owned()),
                allowed_ips: vec!["10.0.0.0/8".into(), "fd00::/8".into()],
                ..Peer::default()
            })
            .collect(),
    };
    add("endpoints", dev.uapi_get(), Some(dev.peers.len()));
    add("empty", b"errno=0\n\n".to_vec(), Some(0));
    add("failing", b"errno=22\n\n".to_vec(), None);
    // Random injected states: configurable fields plus random handshakes and counters.
    for i in 0..12 {
        let mut dev = random_device(&mut case_rng(seed ^ 0x494e_4a45, 1 + i), 0);
        for p in &mut dev.peers {
            p.handshake = *times.choose(&mut rng).expect("non-empty");
            p.rx_bytes = *COUNTERS.choose(&mut rng).expect("non-empty");
            p.tx_bytes = if rng.gen_bool(0.5) {
                rng.gen()
            } else {
                let bits = rng.gen_range(1..64);
                rng.gen_range(0..1u64 << bits)
            };
        }
        add(&format!("rand{i}"), dev.uapi_get(), Some(dev.peers.len()));
    }

    let fakes: Vec<FakeUapi> = replies
        .iter()
        .map(|(name, reply, _)| {
            let fake = FakeUapi::bind(sandbox.host_path(format!("/run/wireguard/{name}.sock")));
            fake.set_get_reply(reply.clone());
            fake
        })
        .collect();
    let by_name: HashMap<&str, Option<usize>> =
        replies.iter().map(|(n, _, p)| (n.as_str(), *p)).collect();
    let peers: Vec<(String, Option<usize>)> = interface_order(&sandbox)
        .into_iter()
        .map(|n| {
            let p = by_name[n.as_str()];
            (n, p)
        })
        .collect();
    assert_eq!(peers.len(), replies.len(), "every fake socket listed");
    let context = format!("seed {seed:#x}, injected");
    // Many interfaces, one failing among them: exit 0, the failure on stderr.
    all_forms(&mut tally, &context, &sandbox, Order::Exact, true, &peers);
    for (name, _, _) in &replies {
        for (args, env) in interface_forms(name) {
            let inv = with_env(show(&sandbox, &args), env);
            tally.check(&context, &inv, Order::Exact, true, None);
        }
    }

    // Every interface failing (`show all` exits 1), then malformed replies (compat 7.2), one
    // kind at a time on every socket. The server closes after replying, so a truncated reply
    // ends in EOF. `ok`: whether the reference accepts the reply (as an empty device).
    for fake in &fakes {
        fake.set_close_after_reply(true);
    }
    for (reply, what, ok) in [
        (&b"errno=22\n\n"[..], "errno=22", false),
        (b"errno=1\n\n", "errno=1 (EPERM)", false),
        (b"listen_port=1\n\n", "no errno line", false),
        (b"errno=-22\n\n", "negative errno", false),
        (b"listen_port=abc\nerrno=0\n\n", "bad number", false),
        (b"public_key=zz\nerrno=0\n\n", "bad key", false),
        (b"listen_port\nerrno=0\n\n", "line without =", false),
        (
            b"listen_port=65536\nerrno=0\n\n",
            "port out of range",
            false,
        ),
        (
            b"fwmark=4294967296\nerrno=0\n\n",
            "fwmark out of range",
            false,
        ),
        (
            b"protocol_version=1\nbogus_key=1\nerrno=0\n\n",
            "unknown keys",
            true,
        ),
        (b"", "empty reply", false),
        (b"errno=0\n", "unterminated reply", false),
    ] {
        for fake in &fakes {
            fake.set_get_reply(reply.to_vec());
        }
        let context = format!("every interface replies {what}");
        let counts: Vec<(String, Option<usize>)> = peers
            .iter()
            .map(|(n, _)| (n.clone(), ok.then_some(0)))
            .collect();
        for args in [&["show"][..], &["show", "all", "dump"], &["show", "times"]] {
            tally.check(&context, &show(&sandbox, args), Order::Exact, false, None);
        }
        let fix = |o: Outcome| head_all_endpoints(o, &counts);
        let inv = show(&sandbox, &["show", "all", "endpoints"]);
        tally.check(
            &context,
            &inv,
            Order::Exact,
            false,
            Some(&fix as HeadFix<'_>),
        );
        let inv = show(&sandbox, &["showconf", "times"]);
        tally.check(&context, &inv, Order::Exact, false, None);
    }
    drop(fakes);

    // `Now`: a handshake in the current second, injected right after a second starts so both
    // tools most likely read that same second (a retry then sees `1 second ago` on both).
    let fake = FakeUapi::bind(sandbox.host_path("/run/wireguard/now.sock"));
    for env in [(None, None), (Some("always"), None)] {
        align_to_second(true);
        let dev = Device {
            peers: vec![injected_peer(&mut rng, (now_secs(), 0), 1, 1)],
            ..Device::default()
        };
        fake.set_get_reply(dev.uapi_get());
        let inv = with_env(show(&sandbox, &["show", "now"]), env);
        tally.check("handshake now", &inv, Order::Exact, true, None);
    }
    drop(fake);
    tally.finish();
}

/// Argument errors, unknown interfaces and the exit-code rules (compat 1.2, 1.3, 1.7).
#[test]
fn show_error_forms() {
    if !require_root() {
        return;
    }
    let mut tally = Tally::new("show_error_forms");
    let sandbox = Sandbox::new();
    let no_fix: Vec<(String, Option<usize>)> = Vec::new();
    let arg_errors: &[&[&str]] = &[
        &["show", "a", "b", "c"],
        &["show", "all", "dump", "x"],
        &["show", "--help"],
        &["show", "-h"],
        &["show", "help"],
        &["show", "--help", "dump"],
        &["show", "interfaces", "x"],
        &["show", "interfaces", "dump"],
        &["show", "all", "bogus"],
        &["show", "all", ""],
        &["show", "doesnotexist"],
        &["show", "doesnotexist", "dump"],
        &["show", "doesnotexist", "bogus"],
        &["show", "a/b"],
        &["show", ""],
        &["show", "aaaaaaaaaaaaaaa"], // 15 bytes: still passed to the kernel
        &["showconf"],
        &["showconf", "a", "b"],
        &["showconf", "--help"],
        &["showconf", "doesnotexist"],
        &["showconf", "all"],
        &["showconf", "a/b"],
        &["show"],
        &["show", "all"],
        &["show", "interfaces"],
        &[],
    ];
    // No interfaces at all: `show all bogus` exits 0 without a word (the quirk of 1.2).
    for args in arg_errors {
        tally.check(
            "no interfaces",
            &show(&sandbox, args),
            Order::Exact,
            false,
            None,
        );
    }
    for p in PARAMS {
        all_param(
            &mut tally,
            "no interfaces",
            &sandbox,
            p,
            Order::Exact,
            false,
            &no_fix,
        );
    }
    // KNOWN_DIFFERENCES 3: names of 16+ bytes fail with ENAMETOOLONG on HEAD's kernel path.
    let too_long = |o: Outcome| Outcome {
        stderr: o
            .stderr_str()
            .replace("Protocol not supported", "File name too long")
            .into_bytes(),
        ..o
    };
    for args in [
        &["show", "aaaaaaaaaaaaaaaa"][..],
        &["showconf", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"],
        &["show", "aaaaaaaaaaaaaaaa", "dump"],
    ] {
        let inv = show(&sandbox, args);
        tally.check(
            "no interfaces",
            &inv,
            Order::Exact,
            false,
            Some(&too_long as HeadFix<'_>),
        );
    }

    // Two good interfaces and one failing.
    let fake = |name: &str, reply: &[u8]| {
        let f = FakeUapi::bind(sandbox.host_path(format!("/run/wireguard/{name}.sock")));
        f.set_get_reply(reply.to_vec());
        f
    };
    let mut rng = case_rng(seed() ^ 0x4552_5253, 0); // "ERRS"
    let dev = random_device(&mut rng, 0);
    let _good = [
        fake("good0", &dev.uapi_get()),
        fake("good1", b"errno=0\n\n"),
    ];
    let _bad = fake("bad", b"errno=22\n\n");
    let peers: Vec<(String, Option<usize>)> = interface_order(&sandbox)
        .into_iter()
        .map(|n| {
            let p = match n.as_str() {
                "good0" => Some(dev.peers.len()),
                "good1" => Some(0),
                _ => None,
            };
            (n, p)
        })
        .collect();
    for args in arg_errors {
        tally.check(
            "some interfaces",
            &show(&sandbox, args),
            Order::Exact,
            false,
            None,
        );
    }
    for args in [
        &["show", "good0", "bogus"][..],
        &["show", "good0", ""],
        &["show", "good0", "DUMP"],
        &["show", "bad"],
        &["show", "bad", "dump"],
        &["show", "bad", "bogus"],
        &["showconf", "bad"],
        &["show", "all", "bogus"],
        &["show", "interfaces", "bogus"],
    ] {
        tally.check(
            "some interfaces",
            &show(&sandbox, args),
            Order::Exact,
            false,
            None,
        );
    }
    for p in PARAMS {
        all_param(
            &mut tally,
            "some interfaces",
            &sandbox,
            p,
            Order::Exact,
            false,
            &peers,
        );
    }
    tally.finish();
}

/// Interface enumeration: zero, one and many userspace sockets; non-socket `*.sock` files and
/// names that are not interfaces are ignored; a stale socket is unlinked by both tools.
#[test]
fn show_enumerates_sockets() {
    if !require_root() {
        return;
    }
    let mut tally = Tally::new("show_enumerates_sockets");
    let sandbox = Sandbox::new();
    let forms: &[&[&str]] = &[
        &["show", "interfaces"],
        &["show"],
        &["show", "all", "public-key"],
        &[],
    ];
    let run_forms = |tally: &mut Tally, context: &str| {
        for args in forms {
            tally.check(context, &show(&sandbox, args), Order::Exact, false, None);
        }
    };
    run_forms(&mut tally, "no /run/wireguard");
    std::fs::create_dir(sandbox.host_path("/run/wireguard")).expect("mkdir");
    run_forms(&mut tally, "empty /run/wireguard");
    let bind = |name: &str| FakeUapi::bind(sandbox.host_path(format!("/run/wireguard/{name}")));
    let mut fakes = vec![bind("one.sock")];
    run_forms(&mut tally, "one interface");
    // Files that are not interfaces: a regular file, a directory, an empty stem, other
    // suffixes. And a symlink to a socket, which stat(2) follows: an interface.
    let dir = sandbox.host_path("/run/wireguard");
    std::fs::write(dir.join("regular.sock"), "").expect("write");
    std::fs::create_dir(dir.join("directory.sock")).expect("mkdir");
    std::os::unix::fs::symlink("/run/wireguard/one.sock", dir.join("link.sock")).expect("ln");
    fakes.push(bind(".sock"));
    fakes.push(bind("other.socket"));
    fakes.push(bind("sock"));
    run_forms(&mut tally, "non-interface files");
    for i in 0..20 {
        fakes.push(bind(&format!("many{i}.sock")));
    }
    run_forms(&mut tally, "many interfaces");

    // A stale socket (nothing listening: ECONNREFUSED) is unlinked and not listed. Each tool
    // gets a fresh one.
    let stale = dir.join("stale.sock");
    let mut outcomes = Vec::new();
    for program in [tally.reference.clone(), tally.ours.clone()] {
        drop(UnixListener::bind(&stale).expect("bind stale socket"));
        assert!(stale.exists());
        let out = show(&sandbox, &["show", "interfaces"]).run(&program);
        outcomes.push((out, stale.exists()));
        let _ = std::fs::remove_file(&stale);
    }
    tally.cases += 1;
    let (reference, ours) = (&outcomes[0], &outcomes[1]);
    if let Some(report) = compare(&reference.0, &ours.0) {
        tally
            .failures
            .push(format!("=== stale socket: wg show interfaces\n{report}"));
    }
    assert!(
        !reference.1,
        "the reference did not unlink the stale socket"
    );
    if ours.1 {
        tally
            .failures
            .push("=== stale socket: ours did not unlink it".into());
    }
    drop(fakes);
    tally.finish();
}

/// Two wireguard-go devices joined by a veth pair complete a handshake and carry a ping; then
/// every form is compared on the live device (normalised, retried across second boundaries)
/// and on its recorded reply (replayed byte for byte).
#[test]
fn show_live_handshake_and_transfer() {
    if !require_root() {
        return;
    }
    let mut tally = Tally::new("show_live_handshake_and_transfer");
    let (a, b, replay) = (Sandbox::new(), Sandbox::new(), Sandbox::new());
    a.veth("veth-a", &b, "veth-b");
    a.ip("addr add 10.0.0.1/24 dev veth-a");
    b.ip("addr add 10.0.0.2/24 dev veth-b");
    let dev_a = a.start_wireguard_go("wg0");
    let _dev_b = b.start_wireguard_go("wg0");
    let wg = reference_wg();
    let genkey = || Invocation::new(["genkey"]).run(&wg).stdout;
    let pubkey = |k: &[u8]| Invocation::new(["pubkey"]).stdin(k).run(&wg).stdout_str();
    let (key_a, key_b) = (genkey(), genkey());
    let (pub_a, pub_b) = (pubkey(&key_a), pubkey(&key_b));
    let psk = Invocation::new(["genpsk"]).run(&wg).stdout;
    let (extra_a, extra_b) = (pubkey(&genkey()), pubkey(&genkey()));
    for (sandbox, key, peer_pub, addr, peer_endpoint, peer_ip) in [
        (
            &a,
            &key_a,
            pub_b.trim(),
            "10.9.0.1/24",
            "10.0.0.2:51820",
            "10.9.0.2/32",
        ),
        (
            &b,
            &key_b,
            pub_a.trim(),
            "10.9.0.2/24",
            "10.0.0.1:51820",
            "10.9.0.1/32",
        ),
    ] {
        std::fs::write(sandbox.host_path("/run/key"), key).expect("write key");
        std::fs::write(sandbox.host_path("/run/psk"), &psk).expect("write psk");
        #[rustfmt::skip]
        let set = Invocation::new([
            "set", "wg0", "private-key", "/run/key", "listen-port", "51820", "fwmark", "0x51",
            "peer", peer_pub, "preshared-key", "/run/psk", "endpoint", peer_endpoint,
            "allowed-ips", &format!("{peer_ip}, fd00::/64"),
        ]);
        set.in_sandbox(sandbox).run(&wg).assert_code(0, "wg set");
        // Extra peers that never handshake: they sort after the live one.
        #[rustfmt::skip]
        let extra = Invocation::new([
            "set", "wg0",
            "peer", extra_a.trim(), "allowed-ips", "10.8.0.0/16",
            "peer", extra_b.trim(), "persistent-keepalive", "3600",
        ]);
        extra.in_sandbox(sandbox).run(&wg).assert_code(0, "wg set");
        sandbox.ip(&format!("addr add {addr} dev wg0"));
        sandbox.ip("link set wg0 up");
    }
    for size in ["56", "1000", "1400"] {
        let ping = a.run(
            "ping",
            &["-c", "2", "-i", "0.2", "-s", size, "-W", "5", "10.9.0.2"],
        );
        ping.assert_code(0, "ping through the tunnel");
    }
    let reply = raw_get(dev_a.socket_host_path());
    let text = String::from_utf8_lossy(&reply);
    assert!(
        text.lines()
            .any(|l| l.starts_with("last_handshake_time_sec=") && l != "last_handshake_time_sec=0"),
        "no handshake recorded:\n{text}"
    );
    let fake = FakeUapi::bind(replay.host_path("/run/wireguard/wg0.sock"));
    fake.set_get_reply(reply);
    let peers = [("wg0".to_owned(), Some(3))];
    all_forms(&mut tally, "replayed", &replay, Order::Exact, true, &peers);
    for (args, env) in interface_forms("wg0") {
        let inv = with_env(show(&replay, &args), env);
        tally.check("replayed", &inv, Order::Exact, true, None);
    }
    // Live: no traffic is sent now (no keepalive on the live peer), so only the peer order,
    // the second boundary and a late passive keepalive can differ between two runs.
    tally.retry_any = true;
    all_forms(&mut tally, "live", &a, Order::Insensitive, true, &peers);
    for (args, env) in interface_forms("wg0") {
        let inv = with_env(show(&a, &args), env);
        tally.check("live", &inv, Order::Insensitive, true, None);
    }
    drop(fake);
    tally.finish();
}

#[test]
fn test_head_all_endpoints() {
    let reference = Outcome {
        stdout: b"a\tb\tK1\t1.2.3.4:5\nK2\t(none)\nc\tK3\t[::1]:2\n".to_vec(),
        stderr: Vec::new(),
        status: std::os::unix::process::ExitStatusExt::from_raw(0),
    };
    let ifaces = [
        ("a".to_owned(), Some(0)),
        ("x".to_owned(), None),
        ("b".to_owned(), Some(2)),
        ("c".to_owned(), Some(1)),
    ];
    assert_eq!(
        String::from_utf8(head_all_endpoints(reference, &ifaces).stdout).expect("UTF-8"),
        "b\tK1\t1.2.3.4:5\nb\tK2\t(none)\nc\tK3\t[::1]:2\n"
    );
}

#[test]
fn test_sort_peer_order() {
    assert_eq!(sort_peer_order(b"b\na\n"), b"a\nb\n");
    assert_eq!(
        sort_peer_order(b"i\n\np2\nx\n\np1\ny\n"),
        b"i\n\np1\ny\n\np2\nx\n"
    );
}
