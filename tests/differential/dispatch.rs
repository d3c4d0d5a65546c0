//! Top-level dispatch (compat 1.1): help, usage, unknown subcommands, argument-count errors of
//! the key subcommands, and argv\[0\] as `PROG_NAME`.

use wg_tests::{diff_wg, diff_wg_all, our_wg, reference_wg, require_root, Invocation, Sandbox};

/// Argument lists whose result must be byte-identical to the reference (on the host: none of
/// them touches an interface).
const CASES: &[&[&str]] = &[
    &["--help"],
    &["-h"],
    &["help"],
    &["help", "extra"],
    &["-h", "extra"],
    &["--help", "extra"],
    &["bogus"],
    &[""],
    &["-x"],
    &["HELP"],
    &["GENKEY"],
    &["genkey "],
    &["version", "extra"],
    &["--version", "extra"],
    &["-v", "-v"],
    &["genkey", "extra"],
    &["genpsk", "x"],
    &["pubkey", "x"],
    &["genkey", "--help"],
    &["genpsk", "--help"],
    &["pubkey", "--help"],
    &["genkey", "-h"],
    &["pubkey", "a", "b"],
];

#[test]
fn dispatch_matches_reference() {
    diff_wg_all(CASES.iter().map(|args| Invocation::new(*args)));
}

/// The reference uses argv\[0\] verbatim in usage lines and in pubkey's error prefix.
#[test]
fn prog_name_is_argv0_verbatim() {
    diff_wg_all(
        ["/my/wg", "./wg", "foo", "wg-custom name", ""]
            .into_iter()
            .flat_map(|arg0| {
                [
                    Invocation::new(["bogus"]).arg0(arg0),
                    Invocation::new(["--help"]).arg0(arg0),
                    Invocation::new(["genkey", "x"]).arg0(arg0),
                    Invocation::new(["pubkey"]).arg0(arg0).stdin("short\n"),
                    Invocation::new(["pubkey"]).arg0(arg0).stdin("x".repeat(50)),
                ]
            }),
    );
}

/// `wg` with no arguments is `wg show`: with no interfaces at all the reference prints
/// nothing and exits 0.
#[test]
fn no_arguments_is_show_with_no_interfaces() {
    if !require_root() {
        return;
    }
    let sandbox = Sandbox::new();
    let out = diff_wg(&Invocation::new::<_, &str>([]).in_sandbox(&sandbox));
    out.assert_code(0, "wg (no args) in an empty sandbox");
    assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{out:?}");
}

/// KNOWN_DIFFERENCES 1: the version differs; the form must not.
#[test]
fn version_has_reference_form() {
    for arg in ["-v", "--version", "version"] {
        for (who, program) in [("reference", reference_wg()), ("ours", our_wg())] {
            let out = Invocation::new([arg]).run(&program);
            let what = format!("{who}: wg {arg}");
            out.assert_code(0, &what);
            assert!(out.stderr.is_empty(), "{what}: stderr not empty\n{out:?}");
            let stdout = out.stdout_str();
            assert!(
                stdout.starts_with("wireguard-tools v")
                    && stdout.ends_with('\n')
                    && stdout.lines().count() == 1,
                "{what}: not `wireguard-tools v…` on one line\n{out:?}"
            );
        }
    }
}
