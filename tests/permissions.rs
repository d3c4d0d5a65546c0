//! Non-root users against a root-owned userspace device (compat.md §1.7): the UAPI socket is
//! `srwx------ root`, so connecting fails with `EACCES`, which still counts as "userspace"
//! (the kernel is not asked), while listing works because the socket directory is 0755.
//!
//! ```text
//!   sandbox: wireguard-go wgp (root)  <-- /run/wireguard/wgp.sock (0700) --  wg as `nobody`
//! ```

use std::path::Path;

use wg_tests::{assert_same, our_wg, reference_wg, require_root, Invocation, Outcome, Sandbox};

/// Runs `wg args…` as user and group 65534 (nobody) inside `sandbox`, with argv\[0\] = `wg`.
fn as_nobody(sandbox: &Sandbox, wg: &Path, args: &[&str]) -> Outcome {
    let mut argv = vec![
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--",
        "/bin/bash",
        "-c",
        r#"exec -a wg "$0" "$@""#,
    ];
    let wg = wg.to_str().expect("binary paths are UTF-8");
    argv.push(wg);
    argv.extend_from_slice(args);
    Invocation::new(argv)
        .in_sandbox(sandbox)
        .run(Path::new("/usr/bin/setpriv"))
}

#[test]
fn non_root_gets_the_reference_errors() {
    if !require_root() {
        return;
    }
    let sandbox = Sandbox::new();
    let _device = sandbox.start_wireguard_go("wgp");
    let key = "aGVsbG8gd29ybGQgaGVsbG8gd29ybGQgaGVsbG8gd28=";
    let cases: &[&[&str]] = &[
        &["show", "wgp"],
        &["show"],
        &["show", "all", "dump"],
        &["show", "interfaces"],
        &["showconf", "wgp"],
        &["set", "wgp", "listen-port", "1"],
        &["set", "wgp", "peer", key, "remove"],
    ];
    // Our binary must be reachable by `nobody`; target/ is world-readable on CI checkouts.
    let (ours, reference) = (our_wg(), reference_wg());
    for args in cases {
        let r = as_nobody(&sandbox, &reference, args);
        let o = as_nobody(&sandbox, &ours, args);
        assert_same(&format!("as nobody: wg {}", args.join(" ")), &r, &o);
        if args.first() != Some(&"interfaces") && args.get(1) != Some(&"interfaces") {
            assert!(
                r.stderr_str().contains("Permission denied"),
                "the case must exercise EACCES: {r:?}"
            );
        }
    }
}
