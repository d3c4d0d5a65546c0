//! Differential `wg show` / `wg showconf` on kernel devices (compat 1.2, 1.3, 2, 4.2).
//!
//! [`BATCHES`] batches of [`DEVICES`] kernel devices `wg0..wg4`, each set from a generated
//! state ([`super::states`]) with the reference `wg setconf`, links down (so no handshake or
//! counter can move). Every batch runs both tools on every kind of form: `show` and `show IF`
//! (in sampled `WG_COLOR_MODE` × `WG_HIDE_KEYS` environments, all of them in the first
//! batch), `show all`, `show interfaces`, `show all <param>` for all twelve params, sampled
//! `show IF <param>`, and `showconf IF`; stdout, stderr and exit status must be identical. Every other batch has a device with one or two peers
//! holding thousands of allowed IPs (multipart dumps, a peer split across messages).
//!
//! Known difference 2 (`differential` KNOWN_DIFFERENCES): `show all endpoints` is compared
//! against the reference's output with HEAD's per-line interface prefix re-applied.
//!
//! Also here: errors for a missing interface and a non-WireGuard interface, and, after the
//! module is unloaded (the last section of the VM run), for a missing module.

use std::fmt::Write as _;

use rand::seq::SliceRandom;
use rand::Rng;
use wg_tests::{case_rng, compare, seed, Outcome};

use super::states::{random_device, Device};
use super::vm::{Payload, Section, VmRun};
use crate::show::PARAMS;

/// Batches of devices in the show section. Under TCG one run of a `wg` costs 50-150 ms, so
/// the forms are sampled (see [`batch_cases`]); the section takes about 50 s of CPU.
const BATCHES: u64 = 6;
/// Kernel devices per batch.
const DEVICES: usize = 5;
/// Per-interface `show IF <param>` forms per device (of twelve; `show all <param>` covers
/// every param on every device of every batch).
const PARAMS_PER_DEVICE: usize = 3;
/// Case streams of this module start here (other modules use other streams).
const STREAM: u64 = 0x5_0000;

/// `WG_COLOR_MODE` × `WG_HIDE_KEYS` environments for the pretty forms (`None` = unset).
const PRETTY_ENVS: [(Option<&str>, Option<&str>); 8] = [
    (None, None),
    (Some("always"), None),
    (Some("never"), None),
    (None, Some("never")),
    (Some("always"), Some("never")),
    (Some("never"), Some("never")),
    (Some("auto"), Some("Never")),
    (Some("ALWAYS"), Some("")),
];

/// One command run with both tools.
struct Case {
    name: String,
    env: Vec<String>,
    args: Vec<String>,
    /// `show all endpoints`: the peer count of each device, in listing order.
    all_endpoints: Option<Vec<(String, usize)>>,
}

impl Case {
    fn describe(&self) -> String {
        format!("{} wg {}", self.env.join(" "), self.args.join(" "))
    }

    /// The guest line running it with both tools.
    fn script(&self) -> String {
        format!(
            "both {} {} -- {}\n",
            self.name,
            self.env.join(" "),
            self.args.join(" ")
        )
    }
}

fn device_name(i: usize) -> String {
    format!("wg{i}")
}

fn batch_states(batch: u64) -> Vec<Device> {
    let mut rng = case_rng(seed(), STREAM + batch);
    (0..DEVICES)
        .map(|i| random_device(&mut rng, i == 0 && batch % 2 == 0))
        .collect()
}

fn batch_cases(batch: u64, states: &[Device]) -> Vec<Case> {
    let mut rng = case_rng(seed(), STREAM + 0x1000 + batch);
    let names: Vec<String> = (0..DEVICES).map(device_name).collect();
    let mut cases = Vec::new();
    let mut add = |env: Vec<String>, args: Vec<&str>, all_endpoints| {
        cases.push(Case {
            name: format!("b{batch}-{}", cases.len()),
            env,
            args: args.into_iter().map(str::to_owned).collect(),
            all_endpoints,
        });
    };
    // The first batch runs the pretty forms in every environment, the others in two.
    let envs: Vec<(Option<&str>, Option<&str>)> = if batch == 0 {
        PRETTY_ENVS.to_vec()
    } else {
        PRETTY_ENVS.choose_multiple(&mut rng, 2).copied().collect()
    };
    let mut pretty: Vec<Vec<&str>> = vec![vec!["show"]];
    pretty.extend(names.iter().map(|n| vec!["show", n.as_str()]));
    for args in &pretty {
        for (color, hide) in &envs {
            let mut env = Vec::new();
            if let Some(c) = color {
                env.push(format!("WG_COLOR_MODE={c}"));
            }
            if let Some(h) = hide {
                env.push(format!("WG_HIDE_KEYS={h}"));
            }
            add(env, args.clone(), None);
        }
    }
    add(vec![], vec!["show", "all"], None);
    add(vec![], vec!["show", "interfaces"], None);
    let counts: Vec<(String, usize)> = names
        .iter()
        .zip(states)
        .map(|(n, s)| (n.clone(), s.peers.len()))
        .collect();
    for param in PARAMS {
        let fix = (param == "endpoints").then(|| counts.clone());
        add(vec![], vec!["show", "all", param], fix);
    }
    for name in &names {
        let params: Vec<&str> = PARAMS
            .choose_multiple(&mut rng, PARAMS_PER_DEVICE)
            .copied()
            .collect();
        for param in params {
            // The script forms do not depend on the environment; vary it a little anyway.
            let env = if rng.gen_bool(0.2) {
                vec!["WG_HIDE_KEYS=never".to_owned()]
            } else {
                vec![]
            };
            add(env, vec!["show", name, param], None);
        }
        add(vec![], vec!["showconf", name], None);
    }
    cases
}

pub(crate) fn sections(p: &mut Payload) {
    let mut script = String::new();
    for batch in 0..BATCHES {
        let states = batch_states(batch);
        for (i, state) in states.iter().enumerate() {
            let path = format!("show/{batch}-{i}.conf");
            p.file(&path, state.conf());
            let _ = writeln!(
                script,
                "must ip link add {0} type wireguard\nmust wg setconf {0} /payload/{path}",
                device_name(i)
            );
        }
        for case in batch_cases(batch, &states) {
            script += &case.script();
        }
        for i in 0..DEVICES {
            let _ = writeln!(script, "must ip link del {}", device_name(i));
        }
    }
    p.section("show", script);
    p.section("show-errors", ERRORS_SCRIPT);
}

/// Errors for interfaces that are missing or not WireGuard (the module is loaded).
const ERRORS_SCRIPT: &str = "\
must ip link add dummy0 type veth peer name dummy1
must ip link add wgx type wireguard
echo '[Interface]' >/tmp/empty.conf
n=0
for args in 'show nosuchif' 'show nosuchif dump' 'show nosuchif peers' 'showconf nosuchif' \\
	'show lo' 'show dummy0 dump' 'showconf dummy0' 'show lo private-key' \\
	'set nosuchif listen-port 1' 'set dummy0 fwmark 1' 'set lo peer AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=' \\
	'setconf nosuchif /tmp/empty.conf' 'addconf dummy0 /tmp/empty.conf' 'syncconf lo /tmp/empty.conf' \\
	'syncconf nosuchif /tmp/empty.conf' 'show interfaces' 'show all' 'show all dump'; do
	n=$((n + 1))
	echo \"$n $args\" >>$D/cases
	# shellcheck disable=SC2086 # $args is a word list
	both e$n -- $args
done
must ip link del dummy0
must ip link del wgx
";

/// The last section: unloads the module (every earlier section deleted its devices).
pub(crate) const NO_MODULE_SCRIPT: &str = "\
must rmmod wireguard
echo '[Interface]' >/tmp/empty.conf
n=0
for args in 'show' 'show all' 'show interfaces' 'show wg0' 'show wg0 dump' 'showconf wg0' \\
	'show all public-key' 'set wg0 listen-port 1' 'setconf wg0 /tmp/empty.conf' \\
	'addconf wg0 /tmp/empty.conf' 'syncconf wg0 /tmp/empty.conf'; do
	n=$((n + 1))
	echo \"$n $args\" >>$D/cases
	# shellcheck disable=SC2086 # $args is a word list
	both e$n -- $args
done
";

/// KNOWN_DIFFERENCES 2: HEAD's `wg show all endpoints` from the reference's (which prints
/// `IF\t` only before an interface's first peer line, and a bare `IF\t` for one without peers).
fn head_all_endpoints(reference: Outcome, interfaces: &[(String, usize)]) -> Outcome {
    let mut rest: &[u8] = &reference.stdout;
    let mut head = Vec::new();
    for (name, peers) in interfaces {
        let prefix = format!("{name}\t");
        rest = rest.strip_prefix(prefix.as_bytes()).unwrap_or_else(|| {
            panic!(
                "reference `show all endpoints` lacks the 1.0.20210914 shape at {name}: {:?}",
                String::from_utf8_lossy(rest)
            )
        });
        for _ in 0..*peers {
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

/// Compares every `both` case of `section` listed in `cases`; panics with the failures.
fn check_cases(section: &Section, what: &str, cases: &[Case], must_succeed: bool) {
    let mut failures = Vec::new();
    for case in cases {
        let mut reference = section.outcome(&case.name, "ref");
        if must_succeed && reference.code() != Some(0) {
            failures.push(format!(
                "=== [{}] {}: the reference failed, so the case proves nothing:\n{reference:?}",
                case.name,
                case.describe()
            ));
            continue;
        }
        let ours = section.outcome(&case.name, "ours");
        if let Some(counts) = &case.all_endpoints {
            reference = head_all_endpoints(reference, counts);
        }
        if let Some(report) = compare(&reference, &ours) {
            failures.push(format!("=== [{}] {}\n{report}", case.name, case.describe()));
        }
    }
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!("{what}: {} cases compared in the VM\n", cases.len()).as_bytes(),
    );
    if !failures.is_empty() {
        let total = failures.len();
        failures.truncate(20);
        panic!(
            "{what}: {total} of {} cases differ from the reference (first {} shown):\n{}",
            cases.len(),
            failures.len(),
            failures.join("\n")
        );
    }
}

/// The cases an error section listed (`N ARGS` per line).
fn listed_cases(section: &Section) -> Vec<Case> {
    section
        .read_string("cases")
        .lines()
        .map(|line| {
            let (n, args) = line.split_once(' ').expect("`N ARGS` line");
            Case {
                name: format!("e{n}"),
                env: vec![],
                args: args.split(' ').map(str::to_owned).collect(),
                all_endpoints: None,
            }
        })
        .collect()
}

pub(crate) fn show_forms_match_reference_on_kernel_devices(run: &VmRun) {
    let section = run.section("show");
    let cases: Vec<Case> = (0..BATCHES)
        .flat_map(|b| batch_cases(b, &batch_states(b)))
        .collect();
    check_cases(&section, "kernel show", &cases, true);
}

pub(crate) fn errors_for_missing_and_foreign_interfaces_match_reference(run: &VmRun) {
    let section = run.section("show-errors");
    check_cases(&section, "kernel errors", &listed_cases(&section), false);
}

pub(crate) fn errors_without_the_module_match_reference(run: &VmRun) {
    let section = run.section("no-module");
    check_cases(&section, "no module", &listed_cases(&section), false);
}
