//! Failure injection: `up` fails part-way and must leave nothing behind.
//!
//! | case                | how it fails                                  | reference result     |
//! |---------------------|-----------------------------------------------|----------------------|
//! | failing PostUp      | road warrior + `PostUp = exit 3`              | exit 3, rolled back  |
//! | missing resolvconf  | road warrior in a sandbox without resolvconf  | exit 127, `/usr/bin/wg-quick: line 32: resolvconf: command not found`, rolled back |
//! | bad key             | `PrivateKey = notakey`                        | exit 1, wg's `Key is not the correct length or format`, rolled back |
//! | interface exists    | a veth already named `wg0`                    | exit 1, `` wg-quick: `wg0' already exists `` |
//! | already up          | `up` twice                                    | exit 1, `` wg-quick: `wg0' already exists `` |
//!
//! More cases compare ours with the reference directly (same status, same stderr as HEAD would
//! print it, nothing left behind by either): a malformed address (iproute2's error, after the
//! link exists), a duplicate address, a route that already exists,
//! an unknown `[Interface]` key, `Table = nosuchtable`, `MTU = 99999`, a failing PreDown (on
//! `down`: no rollback, the interface stays), and a failing PreUp (HEAD: exit 4 after deleting
//! the link; Debian: exit 1).
//!
//! Every documented case runs the reference (on wireguard-go) and checks: the exit status, the
//! message, the last stderr line (`[#] ip link delete dev wg0` after a rollback), and that the
//! snapshot after the failure equals the one before (`src_valid_mark` aside, which the
//! reference sets before a late failure and never resets).

use wg_tests::{require_root, PrivateEtc, Snapshot};

use super::configs;
use super::{QuickBox, Tool};

/// What one failing `up` produced.
pub(crate) struct Failure {
    pub(crate) code: Option<i32>,
    pub(crate) stderr: String,
    pub(crate) before: Snapshot,
    pub(crate) after: Snapshot,
}

/// A failure scenario: how to prepare the box and the config.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Scenario {
    FailingPostUp,
    MissingResolvconf,
    BadKey,
    InterfaceExists,
    AlreadyUp,
    /// `Address = …, 10.7.0.300/24`: `ip address add` fails.
    BadAddress,
    /// The same address twice: the second `ip address add` fails (File exists).
    DuplicateAddress,
    /// A route for an allowed IP already exists in the main table (on the uplink).
    RouteExists,
    /// An unknown key in `[Interface]`: wg's config parser refuses it.
    UnknownKey,
    /// `Table = nosuchtable`: `ip route add … table nosuchtable` fails.
    BadTable,
    /// `MTU = 99999`: `ip link set mtu` fails.
    BadMtu,
    /// `PreUp = exit 4` (HEAD: after the link exists, so it is deleted again).
    FailingPreUp,
    /// `PreDown = exit 5` on `down`: no rollback there; the interface stays up.
    FailingPreDown,
}

impl Scenario {
    /// Runs the scenario with `tool` and returns what happened.
    pub(crate) fn run(self, tool: &Tool) -> Failure {
        let etc = match self {
            Scenario::MissingResolvconf => PrivateEtc::without_resolvconf(),
            _ => PrivateEtc::with_resolvconf(),
        };
        let qb = QuickBox::with_etc(etc);
        let case = configs::road_warrior();
        qb.sh(case.setup);
        let config = match self {
            Scenario::FailingPostUp => case
                .config
                .replace("MTU = 1380\n", "MTU = 1380\nPostUp = exit 3\n"),
            Scenario::BadKey => {
                let key_line = case
                    .config
                    .lines()
                    .find(|l| l.starts_with("PrivateKey = "))
                    .expect("road warrior has a private key")
                    .to_owned();
                case.config.replace(&key_line, "PrivateKey = notakey")
            }
            Scenario::BadAddress => case.config.replace(
                "Address = 10.7.0.2/32, fd07::2/128",
                "Address = 10.7.0.2/32, 10.7.0.300/24",
            ),
            Scenario::DuplicateAddress => case.config.replace(
                "Address = 10.7.0.2/32, fd07::2/128",
                "Address = 10.7.0.2/32, fd07::2/128\nAddress = 10.7.0.2/32",
            ),
            Scenario::RouteExists => case.config.replace(
                "AllowedIPs = 0.0.0.0/0, ::/0",
                "AllowedIPs = 0.0.0.0/0, ::/0, 10.8.0.0/16",
            ),
            Scenario::UnknownKey => case
                .config
                .replace("MTU = 1380\n", "MTU = 1380\nFoo = bar\n"),
            Scenario::BadTable => case
                .config
                .replace("MTU = 1380\n", "MTU = 1380\nTable = nosuchtable\n"),
            Scenario::BadMtu => case.config.replace("MTU = 1380\n", "MTU = 99999\n"),
            Scenario::FailingPreUp => case
                .config
                .replace("MTU = 1380\n", "MTU = 1380\nPreUp = exit 4\n"),
            Scenario::FailingPreDown => case
                .config
                .replace("MTU = 1380\n", "MTU = 1380\nPreDown = exit 5\n"),
            _ => case.config.clone(),
        };
        let path = qb.write_config(case.ifname, &config);
        let path = path.to_str().expect("utf-8 temp path");
        match self {
            Scenario::InterfaceExists => {
                qb.sh("ip link add wg0 type veth peer name wg0peer");
            }
            Scenario::AlreadyUp | Scenario::FailingPreDown => {
                qb.wg_quick(tool, &["up", path]).assert_code(0, "first up");
            }
            Scenario::RouteExists => {
                qb.sh("ip route add 10.8.0.0/16 via 198.51.100.1");
            }
            _ => {}
        }
        let before = qb.snapshot().mask_listen_port();
        let command = if let Scenario::FailingPreDown = self {
            "down"
        } else {
            "up"
        };
        let out = qb.wg_quick(tool, &[command, path]);
        let after = qb.snapshot().mask_listen_port();
        if let Scenario::AlreadyUp = self {
            qb.wg_quick(tool, &["down", path]).assert_code(0, "down");
        }
        Failure {
            code: out.code(),
            stderr: out.stderr_str(),
            before,
            after,
        }
    }

    /// The reference's exit status, the message line its stderr must hold (bash's
    /// `/usr/bin/wg-quick: line N: ` prefix read as `wg-quick: `, see [`strip_bash_location`]),
    /// and its last stderr line.
    pub(crate) fn expected(self) -> (i32, &'static str, &'static str) {
        const DELETED: &str = "[#] ip link delete dev wg0";
        match self {
            Scenario::FailingPostUp => (3, "[#] exit 3", DELETED),
            Scenario::MissingResolvconf => {
                (127, "wg-quick: resolvconf: command not found", DELETED)
            }
            Scenario::BadKey => (
                1,
                "Key is not the correct length or format: `notakey'",
                DELETED,
            ),
            Scenario::InterfaceExists | Scenario::AlreadyUp => (
                1,
                "wg-quick: `wg0' already exists",
                "wg-quick: `wg0' already exists",
            ),
            s => panic!("{s:?}: no documented expectation; compared with the reference only"),
        }
    }

    /// Whether the reference had set `src_valid_mark` before failing.
    fn sets_src_valid_mark(self) -> bool {
        matches!(self, Scenario::FailingPostUp)
    }
}

/// The last line of a stderr, without bash's `<script>: line N: ` prefix.
pub(crate) fn last_line(stderr: &str) -> String {
    let line = stderr.lines().last().unwrap_or("");
    strip_bash_location(line)
}

/// `/usr/bin/wg-quick: line 32: resolvconf: command not found` → `wg-quick: resolvconf:
/// command not found`: bash names the script's path and line when a command cannot be run;
/// ours names the program (a listed deliberate difference).
pub(crate) fn strip_bash_location(line: &str) -> String {
    if let Some(rest) = line.strip_prefix("/usr/bin/wg-quick: line ") {
        if let Some((num, msg)) = rest.split_once(": ") {
            if num.bytes().all(|b| b.is_ascii_digit()) {
                return format!("wg-quick: {msg}");
            }
        }
    }
    line.to_owned()
}

fn reference_failure(scenario: Scenario) {
    if !require_root() {
        return;
    }
    let f = scenario.run(&Tool::Reference);
    let (code, message, last) = scenario.expected();
    assert_eq!(
        (f.code, last_line(&f.stderr).as_str()),
        (Some(code), last),
        "{scenario:?}: reference exit status / last line:\n{}",
        f.stderr
    );
    assert!(
        f.stderr.lines().any(|l| strip_bash_location(l) == message),
        "{scenario:?}: reference stderr lacks {message:?}:\n{}",
        f.stderr
    );
    let expected = if scenario.sets_src_valid_mark() {
        f.before
            .clone()
            .with_section("sysctl", super::sysctl_after_full_tunnel())
    } else {
        f.before.clone()
    };
    expected.assert_eq(
        &f.after,
        &format!("{scenario:?}: reference left state behind"),
        "before",
        "after failed up",
    );
}

#[test]
fn reference_failing_post_up_rolls_back() {
    reference_failure(Scenario::FailingPostUp);
}

#[test]
fn reference_missing_resolvconf_rolls_back() {
    reference_failure(Scenario::MissingResolvconf);
}

#[test]
fn reference_bad_key_rolls_back() {
    reference_failure(Scenario::BadKey);
}

#[test]
fn reference_existing_interface_is_refused() {
    reference_failure(Scenario::InterfaceExists);
}

#[test]
fn reference_second_up_is_refused() {
    reference_failure(Scenario::AlreadyUp);
}

/// Ours against the reference for one scenario: the same exit status, the same stderr (the
/// reference's turned into HEAD's by [`super::differential::expected_trace`], bash's script
/// location left out), and ours leaves the state as it found it.
fn differential_failure(scenario: Scenario) {
    if !require_root() {
        return;
    }
    let (r, o) = std::thread::scope(|s| {
        let r = s.spawn(|| scenario.run(&Tool::Reference));
        let o = scenario.run(&Tool::Ours);
        (r.join().expect("reference run"), o)
    });
    assert_eq!(
        o.code, r.code,
        "{scenario:?}: exit status (left ours, right reference)\nours:\n{}\nreference:\n{}",
        o.stderr, r.stderr
    );
    let unlocate = |s: &str| -> String {
        s.lines()
            .map(|l| strip_bash_location(l) + "\n")
            .collect::<String>()
    };
    let expected = super::differential::expected_trace(&unlocate(&r.stderr), 0, false);
    super::differential::assert_trace(
        &format!("{scenario:?}: stderr"),
        &expected,
        &unlocate(&o.stderr),
    );
    let expected = if scenario.sets_src_valid_mark() {
        o.before
            .clone()
            .with_section("sysctl", super::sysctl_after_full_tunnel())
    } else {
        o.before.clone()
    };
    expected.assert_eq(
        &o.after,
        &format!("{scenario:?}: ours left state behind"),
        "before",
        "after failed up",
    );
    expected.assert_eq(
        &r.after,
        &format!("{scenario:?}: the reference left state behind"),
        "before (ours)",
        "after failed up (reference)",
    );
}

#[test]
fn ours_failing_post_up_rolls_back_as_the_reference() {
    differential_failure(Scenario::FailingPostUp);
}

#[test]
fn ours_missing_resolvconf_rolls_back_as_the_reference() {
    differential_failure(Scenario::MissingResolvconf);
}

#[test]
fn ours_bad_key_rolls_back_as_the_reference() {
    differential_failure(Scenario::BadKey);
}

#[test]
fn ours_refuses_an_existing_interface_as_the_reference() {
    differential_failure(Scenario::InterfaceExists);
}

#[test]
fn ours_refuses_a_second_up_as_the_reference() {
    differential_failure(Scenario::AlreadyUp);
}

#[test]
fn ours_duplicate_address_rolls_back_as_the_reference() {
    differential_failure(Scenario::DuplicateAddress);
}

#[test]
fn ours_existing_route_rolls_back_as_the_reference() {
    differential_failure(Scenario::RouteExists);
}

#[test]
fn ours_unknown_key_rolls_back_as_the_reference() {
    differential_failure(Scenario::UnknownKey);
}

#[test]
fn ours_bad_table_rolls_back_as_the_reference() {
    differential_failure(Scenario::BadTable);
}

#[test]
fn ours_bad_mtu_rolls_back_as_the_reference() {
    differential_failure(Scenario::BadMtu);
}

#[test]
fn ours_failing_pre_down_stops_as_the_reference() {
    differential_failure(Scenario::FailingPreDown);
}

/// A malformed Address (1.0.20210914 and HEAD alike): the link is created, then `ip -4 address
/// add 10.7.0.300/24 dev wg0` fails with iproute2's `Error: inet prefix is expected rather than
/// "10.7.0.300/24".`, and the link is deleted again (exit 1).
#[test]
fn ours_bad_address_fails_as_the_reference() {
    differential_failure(Scenario::BadAddress);
}

/// A failing PreUp. HEAD runs it once the link exists, so the rollback deletes the link and
/// `exit` in the trap keeps the hook's status (4). Debian's runs it before the link exists:
/// its rollback fails to delete a link that is not there and exits 1. Both leave nothing.
#[test]
fn ours_failing_pre_up_rolls_back_as_head() {
    if !require_root() {
        return;
    }
    let (r, o) = std::thread::scope(|s| {
        let r = s.spawn(|| Scenario::FailingPreUp.run(&Tool::Reference));
        let o = Scenario::FailingPreUp.run(&Tool::Ours);
        (r.join().expect("reference run"), o)
    });
    assert_eq!(r.code, Some(1), "Debian: {}", r.stderr);
    r.before
        .assert_eq(&r.after, "FailingPreUp: reference", "before", "after");
    assert_eq!(o.code, Some(4), "ours: {}", o.stderr);
    super::differential::assert_trace(
        "FailingPreUp: ours",
        "[#] ip link add dev wg0 type wireguard\n\
         Error: Unknown device type.\n\
         [!] Missing WireGuard kernel module. Falling back to slow userspace implementation.\n\
         [#] <userspace> wg0\n\
         [#] exit 4\n\
         [#] ip link delete dev wg0\n",
        &o.stderr,
    );
    o.before
        .assert_eq(&o.after, "FailingPreUp: ours", "before", "after");
}
