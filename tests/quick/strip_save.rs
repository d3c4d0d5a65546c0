//! `strip`, `save`, argument handling and config resolution: ours against the reference, byte
//! for byte (stdout, stderr, exit status), all inside a [`QuickBox`] (its private
//! `/etc/wireguard` for the name form).
//!
//! * `strip` on the corpus and on awkward files: comments, blank lines, odd case and spacing,
//!   CRLF line ends, no final newline, a Latin-1 byte, hooks with `#`, keys that wg-quick
//!   consumes only inside `[Interface]`, an empty file.
//! * parse errors and warnings: missing file, bad names, `SaveConfig = maybe`, the
//!   world-accessible warning, a symlinked config, usage and help.
//! * `down`/`save` of an interface that is not up.
//! * `save` of a live device changed with `wg set` and `ip addr add` after `up`: the rewritten
//!   file (link-local addresses masked by [`wg_tests::netstate::normalise`], peers sorted by
//!   [`wg_tests::netstate::sort_peer_blocks`]), its mode, and the trace.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::thread;

use wg_tests::invocation::{compare, line_diff};
use wg_tests::{require_root, Invocation, Outcome};

use super::configs::{self, Case};
use super::reference::neutral_userspace;
use super::{assert_ok, QuickBox, Tool, REFERENCE_WG_QUICK};

/// Runs `args` with the reference and with ours in `qb` and returns (reference, ours).
fn both(qb: &QuickBox, args: &[&str]) -> (Outcome, Outcome) {
    let inv = Invocation::new(args)
        .arg0("wg-quick")
        .in_sandbox(qb.sandbox());
    let reference = inv.run(std::path::Path::new(REFERENCE_WG_QUICK));
    let ours = inv.run(&wg_tests::cargo_bin("wg-quick"));
    (reference, ours)
}

/// Awkward config files for `strip` (name, bytes).
fn strip_inputs() -> Vec<(&'static str, Vec<u8>)> {
    let mut v: Vec<(&'static str, Vec<u8>)> = configs::all()
        .into_iter()
        .map(|c| (c.name, c.config.into_bytes()))
        .collect();
    v.push((
        "awkward",
        b"# leading comment\n\
          \n\
          [INTERFACE]\n\
          \tADDRESS=10.0.0.1/24   # trailing comment\n\
          PrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=   \n\
          dns =1.1.1.1,  example.com\n\
          mtu= 1400\n\
          Table=off\n\
          PreUp = echo 'a # b' %i\n\
          SaveConfig = False\n\
          FwMark = 0x1234\n\
          ListenPort = 51820 # port\n\
          \n\
          [Peer] # a peer\n\
          PublicKey = xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=\n\
          Address = 10.9.9.9/32\n\
          DNS = 9.9.9.9\n\
          PostUp = not a hook here\n\
          AllowedIPs = 10.0.0.2/32\n\
          [Interface]\n\
          PostDown = back in the interface\n\
          Junk = kept\n\
          # caf\xe9 (Latin-1)\n\
          last line without newline"
            .to_vec(),
    ));
    v.push((
        "crlf",
        b"[Interface]\r\nAddress = 10.0.0.1/24\r\nPrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\r\n\r\n[Peer]\r\nPublicKey = xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=\r\nAllowedIPs = 0.0.0.0/0\r\n"
            .to_vec(),
    ));
    v.push(("empty", Vec::new()));
    v.push(("only_interface", b"[Interface]\n".to_vec()));
    v.push((
        "no_sections",
        b"Address = 10.0.0.1/24\nPrivateKey = x\n  = value without key\nkey without value\n"
            .to_vec(),
    ));
    v
}

#[test]
fn strip_matches_the_reference() {
    if !require_root() {
        return;
    }
    let qb = QuickBox::new();
    let mut failures = Vec::new();
    for (name, bytes) in strip_inputs() {
        let path = qb.write_config("wgs", "");
        fs::write(&path, &bytes).expect("write config");
        let path = path.to_str().expect("utf-8 path");
        let (r, o) = both(&qb, &["strip", path]);
        if r.code() != Some(0) {
            failures.push(format!("=== {name}: the reference failed: {r:?}"));
        }
        if let Some(report) = compare(&r, &o) {
            failures.push(format!("=== strip {name}\n{report}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn arguments_resolution_and_parse_errors_match_the_reference() {
    if !require_root() {
        return;
    }
    let qb = QuickBox::new();
    let dir = qb.write_config("wg0", "[Interface]\nAddress = 10.0.0.1/24\n");
    let dir = dir.parent().expect("config dir").to_owned();
    let d = dir.to_str().expect("utf-8 path").to_owned();
    let write = |rel: &str, text: &str, mode: u32| {
        let p = dir.join(rel);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).expect("mkdir");
        }
        fs::write(&p, text).expect("write");
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).expect("chmod");
    };
    write("bad name.conf", "[Interface]\n", 0o600);
    write("wg0.cfg", "[Interface]\n", 0o600);
    write("waytoolonginterface.conf", "[Interface]\n", 0o600);
    write("maybe.conf", "[Interface]\nSaveConfig = maybe\n", 0o600);
    write("yes.conf", "[Interface]\nSaveConfig = TRUE\n", 0o600);
    write("open.conf", "[Interface]\n", 0o644);
    write(
        "sub/real.conf",
        "[Interface]\nAddress = 10.0.0.2/24\n",
        0o600,
    );
    fs::set_permissions(dir.join("sub"), fs::Permissions::from_mode(0o755)).expect("chmod");
    std::os::unix::fs::symlink(dir.join("sub/real.conf"), dir.join("lnk.conf")).expect("symlink");
    qb.write_etc_config("named", "[Interface]\nDNS = 10.0.0.53\nListenPort = 1\n");

    let p = |rel: &str| format!("{d}/{rel}");
    let cases: Vec<Vec<String>> = vec![
        vec![],
        vec!["up".into()],
        vec!["help".into()],
        vec!["-h".into()],
        vec!["--help".into()],
        vec!["--help".into(), "x".into()],
        vec!["bogus".into(), p("wg0.conf")],
        vec!["strip".into(), p("wg0.conf"), "extra".into()],
        vec!["strip".into(), p("missing.conf")],
        vec!["strip".into(), p("bad name.conf")],
        vec!["strip".into(), p("wg0.cfg")],
        vec!["strip".into(), p("waytoolonginterface.conf")],
        vec!["strip".into(), p("maybe.conf")],
        vec!["up".into(), p("maybe.conf")],
        vec!["strip".into(), p("yes.conf")],
        vec!["strip".into(), p("open.conf")],
        vec!["strip".into(), p("lnk.conf")],
        vec!["strip".into(), "named".into()],
        vec!["strip".into(), "absent".into()],
        vec!["strip".into(), "waytoolonginterface".into()],
        vec!["down".into(), p("wg0.conf")],
        vec!["save".into(), p("wg0.conf")],
        vec!["down".into(), "named".into()],
    ];
    let mut failures = Vec::new();
    for args in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (r, o) = both(&qb, &args);
        if let Some(report) = compare(&r, &o) {
            failures.push(format!("=== wg-quick {args:?}\n{report}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Brings `case` up with `tool`, changes the live device, runs `save`, and returns the outcome
/// of `save`, the saved file (normalised) and its mode; then brings it down.
fn up_change_save(tool: &Tool, case: &Case) -> (Outcome, String, u32) {
    let qb = case.quickbox();
    if !case.setup.is_empty() {
        qb.sh(case.setup);
    }
    let path = qb.write_config(case.ifname, &case.config);
    let path = path.to_str().expect("utf-8 path");
    assert_ok(&qb.wg_quick(tool, &["up", path]), "up");
    let wg = wg_tests::reference_wg();
    let ifname = case.ifname;
    Invocation::new([
        "set",
        ifname,
        "listen-port",
        "51999",
        "peer",
        "Ekt5B7oAV9cG4zqA3wbmL7vwKrRCBiDAaCCzxBTNWGc=",
        "allowed-ips",
        "10.99.0.0/24,fd99::/64",
        "endpoint",
        "192.0.2.99:1234",
    ])
    .in_sandbox(qb.sandbox())
    .run(&wg)
    .assert_code(0, "wg set");
    qb.sh(&format!("ip addr add 10.123.0.1/16 dev {ifname}"));
    let save = qb.wg_quick(tool, &["save", path]);
    let raw = qb.read_config(ifname);
    // normalise() trims the end: keep the file's own ending, so that is compared too.
    let ending = &raw[raw.trim_end().len()..];
    let saved =
        wg_tests::netstate::sort_peer_blocks(&(wg_tests::netstate::normalise(&raw) + ending));
    if std::env::var_os("WG_TESTS_SHOW_SNAPSHOTS").is_some() {
        eprintln!(
            "=== {} {tool:?} saved:\n{saved}=== save stderr:\n{}",
            case.name,
            save.stderr_str()
        );
    }
    let mode = fs::metadata(path)
        .expect("stat saved config")
        .permissions()
        .mode()
        & 0o7777;
    assert_ok(&qb.wg_quick(tool, &["down", path]), "down");
    (save, saved, mode)
}

fn save_case(case: Case) {
    if !require_root() {
        return;
    }
    let name = case.name;
    let (r, o) = thread::scope(|s| {
        let case = &case;
        let r = s.spawn(move || up_change_save(&Tool::Reference, case));
        let o = up_change_save(&Tool::Ours, case);
        (r.join().expect("reference run"), o)
    });
    assert_eq!(
        o.0.code(),
        r.0.code(),
        "{name}: save exit status (left ours)\n{:?}",
        o.0
    );
    assert_eq!(o.0.stdout, r.0.stdout, "{name}: save stdout");
    let (rt, ot) = (
        neutral_userspace(&r.0.stderr_str()),
        neutral_userspace(&o.0.stderr_str()),
    );
    assert!(
        rt == ot,
        "{name}: save traces differ (- reference, + ours):\n{}",
        line_diff(rt.as_bytes(), ot.as_bytes())
    );
    assert!(
        r.1 == o.1,
        "{name}: saved files differ (- reference, + ours):\n{}",
        line_diff(r.1.as_bytes(), o.1.as_bytes())
    );
    assert_eq!(
        o.2, r.2,
        "{name}: saved file mode (left ours, right reference)"
    );
}

macro_rules! save_cases {
    ($($name:ident),* $(,)?) => {$(
        #[test]
        fn $name() {
            save_case(configs::$name());
        }
    )*};
}

mod save {
    use super::*;
    save_cases!(
        save_config,
        nat_server,
        dns_prefix,
        ipv6_only,
        road_warrior,
        fwmark_full_tunnel
    );
}

/// Not root: both re-execute themselves through `sudo` with the same prompt. `sudo` is replaced
/// by a stub in `PATH` that prints its arguments and exits 42, since a real sudo would need a
/// sudoers entry on the host; without any `sudo` in `PATH` both fail with status 127. The
/// command after `--` differs deliberately: the reference (a bash script) runs
/// `/bin/bash -- /usr/bin/wg-quick ARGS`, ours runs itself, `/path/to/wg-quick ARGS`.
#[test]
fn not_root_reexecutes_through_sudo() {
    if !require_root() {
        return;
    }
    let stub = tempfile::Builder::new()
        .prefix("wg-quick-sudo.")
        .tempdir()
        .expect("temp dir");
    fs::set_permissions(stub.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    let sudo = stub.path().join("sudo");
    fs::write(
        &sudo,
        "#!/bin/sh\nfor a in \"$@\"; do printf '[%s]' \"$a\" >&2; done; echo >&2; exit 42\n",
    )
    .expect("write stub sudo");
    fs::set_permissions(&sudo, fs::Permissions::from_mode(0o755)).expect("chmod");
    let ours = wg_tests::cargo_bin("wg-quick");
    let as_nobody = |program: &std::path::Path, path: &str, args: &[&str]| {
        let mut argv = vec![
            "--reuid=65534".to_owned(),
            "--regid=65534".to_owned(),
            "--clear-groups".to_owned(),
            program.display().to_string(),
        ];
        argv.extend(args.iter().map(|a| (*a).to_owned()));
        Invocation::new(argv)
            .arg0("setpriv")
            .env("PATH", path)
            .run(std::path::Path::new("/usr/bin/setpriv"))
    };
    let with_stub = format!("{}:/usr/bin:/bin", stub.path().display());
    let args = ["strip", "/nonexistent/wg0.conf"];
    let prompt =
        "[-p][wg-quick must be run as root. Please enter the password for %u to continue: ][--]";
    let r = as_nobody(std::path::Path::new(REFERENCE_WG_QUICK), &with_stub, &args);
    let o = as_nobody(&ours, &with_stub, &args);
    assert_eq!(r.code(), Some(42), "{r:?}");
    assert_eq!(
        r.stderr_str(),
        format!("{prompt}[/bin/bash][--][{REFERENCE_WG_QUICK}][strip][/nonexistent/wg0.conf]\n")
    );
    assert_eq!(o.code(), Some(42), "{o:?}");
    assert_eq!(
        o.stderr_str(),
        format!(
            "{prompt}[{}][strip][/nonexistent/wg0.conf]\n",
            ours.display()
        )
    );
    // No sudo at all: bash's "exec: sudo: not found" (status 127), location aside.
    let r = as_nobody(
        std::path::Path::new(REFERENCE_WG_QUICK),
        "/usr/bin:/bin",
        &args,
    );
    let o = as_nobody(&ours, "/usr/bin:/bin", &args);
    assert_eq!((r.code(), o.code()), (Some(127), Some(127)), "{r:?}\n{o:?}");
    assert_eq!(
        super::failures::strip_bash_location(r.stderr_str().trim_end()),
        o.stderr_str().trim_end()
    );
    // Help needs no root.
    for args in [&["--help"][..], &["-h"], &["help"], &[]] {
        let r = as_nobody(std::path::Path::new(REFERENCE_WG_QUICK), &with_stub, args);
        let o = as_nobody(&ours, &with_stub, args);
        if let Some(report) = compare(&r, &o) {
            panic!("wg-quick {args:?} as nobody:\n{report}");
        }
    }
}

/// bash's `read -r line || [[ -n $line ]]` trims blanks, so a last line of only blanks without
/// a newline is no line at all: the reference prints nothing for it.
#[test]
fn strip_last_blank_line_without_newline() {
    if !require_root() {
        return;
    }
    let qb = QuickBox::new();
    let path = qb.write_config("wgs", "");
    let mut failures = Vec::new();
    for text in [
        "[Peer]\n   ",
        "[Interface]\n\t",
        "   ",
        "[Peer]\n \t \nx\n  ",
    ] {
        fs::write(&path, text).expect("write config");
        let (r, o) = both(&qb, &["strip", path.to_str().expect("utf-8 path")]);
        if let Some(report) = compare(&r, &o) {
            failures.push(format!("=== strip {text:?}\n{report}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `save`, and `down` with SaveConfig, when the config's directory is read-only: returns
/// (save, down, snapshot after the failed down) for `tool`.
fn save_read_only(tool: &Tool) -> (Outcome, Outcome, wg_tests::Snapshot) {
    let case = configs::save_config();
    let qb = case.quickbox();
    qb.write_etc_config(case.ifname, &case.config);
    assert_ok(&qb.wg_quick(tool, &["up", case.ifname]), "up");
    qb.sh("mount -o remount,ro /etc/wireguard");
    let save = qb.wg_quick(tool, &["save", case.ifname]);
    let down = qb.wg_quick(tool, &["down", case.ifname]);
    let still_up = qb.snapshot();
    qb.sh("mount -o remount,rw /etc/wireguard");
    assert_ok(&qb.wg_quick(tool, &["down", case.ifname]), "down");
    (save, down, still_up)
}

fn save_read_only_both() -> (
    (Outcome, Outcome, wg_tests::Snapshot),
    (Outcome, Outcome, wg_tests::Snapshot),
) {
    thread::scope(|s| {
        let r = s.spawn(|| save_read_only(&Tool::Reference));
        let o = save_read_only(&Tool::Ours);
        (r.join().expect("reference run"), o)
    })
}

/// The reference: `wg-quick: Could not write configuration file`, exit 1, and `down` stops
/// there, before deleting anything. Ours: the same status, last line and state.
#[test]
fn save_to_a_read_only_directory_fails_as_the_reference() {
    if !require_root() {
        return;
    }
    let (r, o) = save_read_only_both();
    for (what, r, o) in [("save", &r.0, &o.0), ("down", &r.1, &o.1)] {
        assert_eq!(r.code(), Some(1), "reference {what}: {r:?}");
        assert_eq!(o.code(), r.code(), "{what} status (left ours): {o:?}");
        let last = |out: &Outcome| out.stderr_str().lines().last().unwrap_or("").to_owned();
        assert_eq!(last(r), "wg-quick: Could not write configuration file");
        assert_eq!(last(o), last(r), "{what}: last stderr line (left ours)");
    }
    assert!(
        r.2.section("links").contains(" wg0: "),
        "the reference's wg0 went away"
    );
    r.2.assert_eq(&o.2, "after the failed down", "reference", "ours");
}

/// Before that line the reference has bash's own report of the failed redirection,
/// `/usr/bin/wg-quick: line N: /etc/wireguard/wg0.conf.tmp: Read-only file system` (compared
/// as `wg-quick: …`).
#[test]
fn save_to_a_read_only_directory_reports_the_write_error() {
    if !require_root() {
        return;
    }
    let (r, o) = save_read_only_both();
    let lines = |out: &Outcome| -> String {
        neutral_userspace(&out.stderr_str())
            .lines()
            .map(|l| super::failures::strip_bash_location(l) + "\n")
            .collect()
    };
    for (what, r, o) in [("save", &r.0, &o.0), ("down", &r.1, &o.1)] {
        let (rl, ol) = (lines(r), lines(o));
        assert!(
            rl == ol,
            "{what} stderr differs (- reference, + ours):\n{}",
            line_diff(rl.as_bytes(), ol.as_bytes())
        );
    }
}
