//! Ours against the reference on the whole corpus: the same config brought up by the reference
//! (on wireguard-go) in one sandbox and by ours (on wg-tunnel) in another.
//!
//! For each case: the start snapshots are equal; after `up` the snapshots are equal; after
//! `down` they are equal and equal to the start (`src_valid_mark` aside, see
//! [`super::sysctl_after_full_tunnel`]); both commands exit 0; the `[#]` traces of `up` and
//! `down` are equal line for line once the reference's trace is turned into upstream HEAD's by
//! [`expected_trace`] (the documented [`super::DELIBERATE_DIFFERENCES`]); with SaveConfig the
//! rewritten files are equal.

use std::thread;

use wg_tests::invocation::line_diff;
use wg_tests::require_root;

use super::configs::{self, Case};
use super::reference::{expected_after_down, neutral_userspace, run_case};
use super::Tool;

/// What the reference's trace becomes under upstream HEAD (which we follow): see
/// [`super::DELIBERATE_DIFFERENCES`]. `pre_up_hooks` is the number of PreUp hooks of the
/// config (Debian runs them before creating the link, HEAD after); `src_valid_mark_was_1`
/// whether the sysctl was already 1 before `up` (HEAD then skips it).
pub(crate) fn expected_trace(
    reference: &str,
    pre_up_hooks: usize,
    src_valid_mark_was_1: bool,
) -> String {
    let neutral = neutral_userspace(reference);
    let mut lines: Vec<String> = neutral.lines().map(str::to_owned).collect();

    // `ip link add IF type wireguard` → `ip link add dev IF type wireguard`.
    for line in &mut lines {
        if let Some(rest) = line.strip_prefix("[#] ip link add ") {
            if let Some(ifname) = rest.strip_suffix(" type wireguard") {
                if !ifname.starts_with("dev ") {
                    *line = format!("[#] ip link add dev {ifname} type wireguard");
                }
            }
        }
        if let Some(rest) = line.strip_prefix("[#] wg setconf ") {
            *line = format!("[#] wg addconf {rest}");
        }
    }

    // PreUp hooks (and whatever they print) move from before `ip link add` to after the link
    // exists (after the userspace implementation's line, or after `ip link add`).
    if pre_up_hooks > 0 {
        if let Some(add) = lines.iter().position(|l| l.starts_with("[#] ip link add ")) {
            let first_hook = lines
                .iter()
                .position(|l| l.starts_with("[#] "))
                .expect("a trace line");
            let hooks: Vec<String> = lines.drain(first_hook..add).collect();
            let add = first_hook; // `ip link add` moved up
            let mut after = add + 1;
            while lines
                .get(after)
                .is_some_and(|l| !l.starts_with("[#] ") || l.starts_with("[#] <userspace> "))
            {
                after += 1;
            }
            for (i, h) in hooks.into_iter().enumerate() {
                lines.insert(after + i, h);
            }
        }
    }

    // Full tunnel: `route add P dev IF table N` before the two rules → after them.
    let mut i = 0;
    while i + 2 < lines.len() {
        let is_default_route = |l: &str| {
            (l.starts_with("[#] ip -4 route add 0.0.0.0/0 dev ")
                || l.starts_with("[#] ip -6 route add ::/0 dev "))
                && l.contains(" table ")
        };
        if is_default_route(&lines[i])
            && lines[i + 1].contains(" rule add not fwmark ")
            && lines[i + 2].contains(" rule add table main suppress_prefixlength 0")
        {
            let route = lines.remove(i);
            lines.insert(i + 2, route);
            i += 3;
        } else {
            i += 1;
        }
    }

    if src_valid_mark_was_1 {
        lines.retain(|l| l != "[#] sysctl -q net.ipv4.conf.all.src_valid_mark=1");
    }
    let mut out = lines.join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    out
}

/// Panics with a line diff unless the expected (reference-derived) trace equals ours.
pub(crate) fn assert_trace(what: &str, expected: &str, ours: &str) {
    let ours = neutral_userspace(ours);
    assert!(
        expected == ours,
        "{what}: traces differ (- reference as HEAD would print it, + ours):\n{}",
        line_diff(expected.as_bytes(), ours.as_bytes())
    );
}

fn pre_up_hooks(config: &str) -> usize {
    config
        .lines()
        .filter(|l| l.trim_start().to_ascii_lowercase().starts_with("preup"))
        .count()
}

fn differential_case(case: Case) {
    if !require_root() {
        return;
    }
    let name = case.name;
    let ((r, r_saved), (o, o_saved)) = thread::scope(|s| {
        let case = &case;
        let r = s.spawn(move || {
            let qb = case.quickbox();
            let run = run_case(&qb, &Tool::Reference, case);
            (run, qb.read_config(case.ifname))
        });
        let qb = case.quickbox();
        let o = run_case(&qb, &Tool::Ours, case);
        (
            r.join().expect("reference run"),
            (o, qb.read_config(case.ifname)),
        )
    });
    r.start.assert_eq(
        &o.start,
        &format!("{name}: start"),
        "reference box",
        "our box",
    );
    r.up.assert_eq(&o.up, &format!("{name}: after up"), "reference", "ours");
    r.down
        .assert_eq(&o.down, &format!("{name}: after down"), "reference", "ours");
    expected_after_down(&case, &o.start).assert_eq(
        &o.down,
        &format!("{name}: ours up+down"),
        "start",
        "after down",
    );
    let hooks = pre_up_hooks(&case.config);
    assert_trace(
        &format!("{name}: up"),
        &expected_trace(&r.up_trace, hooks, false),
        &o.up_trace,
    );
    assert_trace(
        &format!("{name}: down"),
        &expected_trace(&r.down_trace, hooks, false),
        &o.down_trace,
    );
    // Link-local addresses masked, peers sorted, the file's own ending kept.
    let normalise = |s: &str| {
        let ending = &s[s.trim_end().len()..];
        wg_tests::netstate::sort_peer_blocks(&(wg_tests::netstate::normalise(s) + ending))
    };
    assert!(
        normalise(&r_saved) == normalise(&o_saved),
        "{name}: config files after down differ (- reference, + ours):\n{}",
        line_diff(
            normalise(&r_saved).as_bytes(),
            normalise(&o_saved).as_bytes()
        )
    );
}

macro_rules! differential_cases {
    ($($name:ident),* $(,)?) => {$(
        #[test]
        fn $name() {
            differential_case(configs::$name());
        }
    )*};
}

mod up_down {
    use super::*;
    differential_cases!(
        nat_server,
        road_warrior,
        site_to_site,
        table_off,
        table_1234,
        multi_address,
        ipv6_only,
        save_config,
        dns_prefix,
        road_warrior_iptables,
        table_busy,
        fwmark_full_tunnel,
        hostname_endpoint,
        dns_search_only,
        table_main,
        default_route_mtu,
        split_overlap
    );
}

#[cfg(test)]
mod trace_tests {
    use super::expected_trace;

    #[test]
    fn debian_trace_becomes_head_trace() {
        let debian = "[#] true\n\
                      [#] ip link add wg0 type wireguard\n\
                      Error: Unknown device type.\n\
                      [!] Missing WireGuard kernel module. Falling back to slow userspace implementation.\n\
                      [#] wireguard-go wg0\n\
                      ┌────┐\n\
                      └────┘\n\
                      [#] wg setconf wg0 /dev/fd/63\n\
                      [#] ip -4 route add 0.0.0.0/0 dev wg0 table 51820\n\
                      [#] ip -4 rule add not fwmark 51820 table 51820\n\
                      [#] ip -4 rule add table main suppress_prefixlength 0\n\
                      [#] sysctl -q net.ipv4.conf.all.src_valid_mark=1\n";
        let head = "[#] ip link add dev wg0 type wireguard\n\
                    Error: Unknown device type.\n\
                    [!] Missing WireGuard kernel module. Falling back to slow userspace implementation.\n\
                    [#] <userspace> wg0\n\
                    [#] true\n\
                    [#] wg addconf wg0 /dev/fd/63\n\
                    [#] ip -4 rule add not fwmark 51820 table 51820\n\
                    [#] ip -4 rule add table main suppress_prefixlength 0\n\
                    [#] ip -4 route add 0.0.0.0/0 dev wg0 table 51820\n";
        assert_eq!(expected_trace(debian, 1, true), head);
    }
}

/// `up` with `tool`, then `tweak` (a `sh` script; `{conf}` stands for the config path), then
/// `down`: returns (snapshot before down, the down outcome, snapshot after down).
fn down_after(
    tool: &Tool,
    case: &Case,
    tweak: &str,
) -> (wg_tests::Snapshot, wg_tests::Outcome, wg_tests::Snapshot) {
    let qb = case.quickbox();
    if !case.setup.is_empty() {
        qb.sh(case.setup);
    }
    let path = qb.write_config(case.ifname, &case.config);
    let path = path.to_str().expect("utf-8 path");
    super::assert_ok(&qb.wg_quick(tool, &["up", path]), "up");
    qb.sh(&tweak.replace("{conf}", path));
    let mask = |s: wg_tests::Snapshot| {
        if case.random_port {
            s.mask_listen_port()
        } else {
            s
        }
    };
    let before = mask(qb.snapshot());
    let down = qb.wg_quick(tool, &["down", path]);
    (before, down, mask(qb.snapshot()))
}

/// `down` after the state was changed by hand: the same trace, status and end state as the
/// reference's, whatever it leaves behind.
fn down_after_tweak(case: Case, tweak: &str) {
    if !require_root() {
        return;
    }
    let name = case.name;
    let (r, o) = thread::scope(|s| {
        let case = &case;
        let r = s.spawn(move || down_after(&Tool::Reference, case, tweak));
        let o = down_after(&Tool::Ours, case, tweak);
        (r.join().expect("reference run"), o)
    });
    r.0.assert_eq(&o.0, &format!("{name}: before down"), "reference", "ours");
    assert_eq!(
        o.1.code(),
        r.1.code(),
        "{name}: down status (left ours)\nours: {:?}\nreference: {:?}",
        o.1,
        r.1
    );
    assert_trace(
        &format!("{name}: down after {tweak:?}"),
        &expected_trace(&r.1.stderr_str(), 0, false),
        &o.1.stderr_str(),
    );
    r.2.assert_eq(&o.2, &format!("{name}: after down"), "reference", "ours");
}

mod down_after_changes {
    use super::*;

    /// The fwmark cleared by hand: `down` no longer knows the table, leaves the rules.
    #[test]
    fn fwmark_cleared() {
        down_after_tweak(configs::road_warrior(), "wg set wg0 fwmark 0");
    }

    /// The nft tables deleted by hand: nothing left for `down` to delete there.
    #[test]
    fn nft_tables_deleted() {
        down_after_tweak(
            configs::road_warrior(),
            "nft delete table ip wg-quick-wg0 && nft delete table ip6 wg-quick-wg0",
        );
    }

    /// The rules doubled by hand: `down` deletes while any is left.
    #[test]
    fn rules_doubled() {
        down_after_tweak(
            configs::road_warrior(),
            "ip -4 rule add not fwmark 51820 table 51820 && \
             ip -6 rule add table main suppress_prefixlength 0",
        );
    }

    /// The link set down by hand.
    #[test]
    fn link_down() {
        down_after_tweak(configs::nat_server(), "ip link set wg0 down");
    }

    /// DNS removed from the file while up: `down` no longer unregisters it.
    #[test]
    fn dns_removed_from_the_file() {
        down_after_tweak(configs::dns_prefix(), "sed -i '/^DNS/d' '{conf}'");
    }

    /// The resolvconf entry removed by hand: `resolvconf -d … -f` does not mind.
    #[test]
    fn dns_entry_removed() {
        down_after_tweak(configs::dns_prefix(), "resolvconf -d tun.dnsp -f");
    }
}

/// Brings up (and down) a config whose PostUp hook is `hook`, with both, and compares the
/// traces (which hold what the hook printed on stderr).
fn hook_sees(hook: &str) {
    if !require_root() {
        return;
    }
    let mut case = configs::dns_search_only();
    case.config = case.config.replace(
        "[Peer]",
        &format!("MTU = 1400\nTable = off\nSaveConfig = false\nPostUp = {hook}\n\n[Peer]"),
    );
    let (r, o) = thread::scope(|s| {
        let case = &case;
        let r = s.spawn(move || run_case(&case.quickbox(), &Tool::Reference, case));
        let o = run_case(&case.quickbox(), &Tool::Ours, case);
        (r.join().expect("reference run"), o)
    });
    assert_trace(
        "hook environment",
        &expected_trace(&r.up_trace, 0, false),
        &o.up_trace,
    );
}

/// A hook sees its arguments (the phase's hooks), INTERFACE, CONFIG_FILE (its start and its
/// name: each box has its own temporary directory), PROGRAM, hook, the working directory, the
/// umask and `set -e`, as in the reference's `(eval "$hook")`.
#[test]
fn hooks_see_what_the_reference_hooks_see() {
    hook_sees(
        r#"printf '%s|' "$1" "$INTERFACE" "${CONFIG_FILE:0:5}" "$(basename "$CONFIG_FILE")" "$PROGRAM" "$hook" "$PWD" "$(umask)" "${-//[^e]/}" >&2; echo >&2"#,
    );
}

/// The reference's hooks also see wg-quick's own globals (TABLE, SAVE_CONFIG, ADDRESSES, DNS,
/// MTU, the hook arrays …), since they are eval'd inside the script; ours are given the same.
/// (No `#` in the hook: the installed reference cuts hooks at `#`.)
#[test]
fn hooks_see_the_reference_globals() {
    hook_sees(
        r#"printf '%s|' "$TABLE" "$SAVE_CONFIG" "${ADDRESSES[*]}" "${DNS[*]}" "${DNS_SEARCH[*]}" "$MTU" "${POST_UP[*]:0:6}" "${PRE_UP[*]}" "${PRE_DOWN[*]}" "$*" >&2; echo >&2"#,
    );
}
