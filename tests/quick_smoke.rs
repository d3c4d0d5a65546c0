//! Our `wg-quick` on its own, on the userspace path (root only): `up` a config with our
//! `wg-tunnel` as the implementation, check the link, addresses, routes, rules and firewall it
//! creates, `down`, check they are gone; and a failing PostUp rolls everything back. The
//! differential suite against the reference is `quick`.
//!
//! ```text
//!   +------------------ Sandbox ------------------+
//!   | lo                                          |
//!   | wgs0 <- `wg-tunnel wgs0` (started by        |
//!   |         wg-quick's kernel-module fallback)  |
//!   |   10.77.0.2/24, fd77::2/64, routes, rules   |
//!   +---------------------------------------------+
//! ```

use std::fs;
use std::os::unix::fs::PermissionsExt;

use wg_tests::bins::cargo_bin;
use wg_tests::invocation::{Invocation, Outcome};
use wg_tests::require_root;
use wg_tests::sandbox::Sandbox;

const SITE: &str = "\
[Interface]
PrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=
Address = 10.77.0.2/24, fd77::2/64
ListenPort = 51820
PostUp = echo up %i > /run/wgq/hook

[Peer]
PublicKey = xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=
AllowedIPs = 10.77.0.0/24, 10.78.0.0/16, fd78::/64
Endpoint = 127.0.0.1:51821
";

const FULL_TUNNEL: &str = "\
[Interface]
PrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=
Address = 10.77.0.2/24
MTU = 1380

[Peer]
PublicKey = xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=
AllowedIPs = 0.0.0.0/0, ::/0
Endpoint = 127.0.0.1:51821
";

/// Writes `/run/wgq/NAME.conf` inside the sandbox, mode 0600.
fn write_config(sandbox: &Sandbox, name: &str, text: &str) -> String {
    let dir = sandbox.host_path("/run/wgq");
    fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("{name}.conf"));
    fs::write(&file, text).unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
    format!("/run/wgq/{name}.conf")
}

fn wg_quick(sandbox: &Sandbox, command: &str, config: &str) -> Outcome {
    Invocation::new([command, config])
        .arg0("wg-quick")
        .in_sandbox(sandbox)
        .run(&cargo_bin("wg-quick"))
}

fn show(sandbox: &Sandbox, script: &str) -> String {
    sandbox.sh(script).stdout_str()
}

#[test]
fn up_down_userspace() {
    if !require_root() {
        return;
    }
    let sandbox = Sandbox::new();
    let config = write_config(&sandbox, "wgs0", SITE);
    let up = wg_quick(&sandbox, "up", &config);
    up.assert_code(0, "wg-quick up");
    let trace: Vec<&str> = std::str::from_utf8(&up.stderr)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("[#]"))
        .collect();
    assert_eq!(
        trace,
        [
            "[#] ip link add dev wgs0 type wireguard",
            "[#] wg-tunnel wgs0",
            "[#] wg addconf wgs0 /dev/fd/63",
            "[#] ip -4 address add 10.77.0.2/24 dev wgs0",
            "[#] ip -6 address add fd77::2/64 dev wgs0",
            // The endpoint is reached over lo (MTU 65536).
            "[#] ip link set mtu 65456 up dev wgs0",
            "[#] ip -6 route add fd78::/64 dev wgs0",
            "[#] ip -4 route add 10.78.0.0/16 dev wgs0",
            "[#] echo up wgs0 > /run/wgq/hook",
        ],
        "{up:?}"
    );
    assert_eq!(
        fs::read_to_string(sandbox.host_path("/run/wgq/hook")).unwrap(),
        "up wgs0\n"
    );
    let link = show(&sandbox, "ip -o link show dev wgs0");
    assert!(
        link.contains("mtu 65456") && link.contains(",UP,"),
        "{link}"
    );
    let addresses = show(&sandbox, "ip -o addr show dev wgs0");
    assert!(addresses.contains("inet 10.77.0.2/24"), "{addresses}");
    assert!(addresses.contains("inet6 fd77::2/64"), "{addresses}");
    assert_eq!(
        show(&sandbox, "ip -4 route show dev wgs0"),
        "10.77.0.0/24 proto kernel scope link src 10.77.0.2 \n10.78.0.0/16 scope link \n"
    );
    assert!(show(&sandbox, "ip -6 route show dev wgs0").contains("fd78::/64 metric 1024"));
    assert!(show(&sandbox, "wg show wgs0 peers").starts_with("xTIBA5rb"));

    let down = wg_quick(&sandbox, "down", &config);
    down.assert_code(0, "wg-quick down");
    assert_eq!(down.stderr_str(), "[#] ip link delete dev wgs0\n");
    assert_eq!(
        show(&sandbox, "ip -o link show dev wgs0 2>/dev/null || true"),
        ""
    );
    assert_eq!(show(&sandbox, "ip route; ip -6 route"), "");

    // `down` of something that is not up.
    let again = wg_quick(&sandbox, "down", &config);
    again.assert_code(1, "second down");
    assert_eq!(
        again.stderr_str(),
        "wg-quick: `wgs0' is not a WireGuard interface\n"
    );
}

#[test]
fn full_tunnel_and_rollback() {
    if !require_root() {
        return;
    }
    let sandbox = Sandbox::new();
    let rules_before = show(&sandbox, "ip rule; ip -6 rule");
    let config = write_config(&sandbox, "wgs1", FULL_TUNNEL);
    wg_quick(&sandbox, "up", &config).assert_code(0, "full-tunnel up");
    let rules = show(&sandbox, "ip rule");
    assert!(
        rules.contains("not from all fwmark 0xca6c lookup 51820"),
        "{rules}"
    );
    assert!(
        rules.contains("from all lookup main suppress_prefixlength 0"),
        "{rules}"
    );
    assert_eq!(
        show(&sandbox, "ip route show table 51820"),
        "default dev wgs1 scope link \n"
    );
    assert_eq!(show(&sandbox, "wg show wgs1 fwmark"), "0xca6c\n");
    let tables = show(&sandbox, "nft list tables");
    assert_eq!(tables, "table ip6 wg-quick-wgs1\ntable ip wg-quick-wgs1\n");
    wg_quick(&sandbox, "down", &config).assert_code(0, "full-tunnel down");
    assert_eq!(show(&sandbox, "ip rule; ip -6 rule"), rules_before);
    assert_eq!(show(&sandbox, "nft list tables"), "");

    // A failing PostUp after the rules and the firewall exist: everything is rolled back and
    // the hook's status is the exit status.
    let failing = FULL_TUNNEL.replace("MTU = 1380\n", "MTU = 1380\nPostUp = exit 7\n");
    let config = write_config(&sandbox, "wgs2", &failing);
    let up = wg_quick(&sandbox, "up", &config);
    up.assert_code(7, "failing PostUp");
    let stderr = up.stderr_str();
    assert!(
        stderr.ends_with(
            "[#] exit 7\n[#] nft -f /dev/fd/63\n[#] ip -4 rule delete table 51820\n\
             [#] ip -4 rule delete table main suppress_prefixlength 0\n\
             [#] ip -6 rule delete table 51820\n\
             [#] ip -6 rule delete table main suppress_prefixlength 0\n\
             [#] ip link delete dev wgs2\n"
        ),
        "{stderr}"
    );
    assert_eq!(show(&sandbox, "ip rule; ip -6 rule"), rules_before);
    assert_eq!(show(&sandbox, "nft list tables"), "");
    assert_eq!(
        show(&sandbox, "ip -o link show dev wgs2 2>/dev/null || true"),
        ""
    );
}

#[test]
fn interrupted_up_rolls_back() {
    if !require_root() {
        return;
    }
    let sandbox = Sandbox::new();
    // The hook's bash is a child of wg-quick: SIGTERM reaches wg-quick while the hook runs,
    // and `up` stops and rolls back before its next step, as the reference's trap does.
    let interrupting = SITE.replace("echo up %i > /run/wgq/hook", "kill -TERM $PPID");
    let config = write_config(&sandbox, "wgs3", &interrupting);
    let up = wg_quick(&sandbox, "up", &config);
    up.assert_code(143, "interrupted up");
    assert!(
        up.stderr_str()
            .ends_with("[#] kill -TERM $PPID\n[#] ip link delete dev wgs3\n"),
        "{up:?}"
    );
    assert_eq!(
        show(&sandbox, "ip -o link show dev wgs3 2>/dev/null || true"),
        ""
    );
}

#[test]
fn full_tunnel_without_nft_uses_iptables() {
    if !require_root() {
        return;
    }
    let sandbox = Sandbox::new();
    // A PATH with the iptables tools and bash but no nft.
    let bin = tempfile::tempdir().unwrap();
    for tool in [
        "iptables",
        "iptables-save",
        "iptables-restore",
        "ip6tables",
        "ip6tables-save",
        "ip6tables-restore",
    ] {
        std::os::unix::fs::symlink(format!("/usr/sbin/{tool}"), bin.path().join(tool)).unwrap();
    }
    std::os::unix::fs::symlink("/bin/bash", bin.path().join("bash")).unwrap();
    let path = bin.path().to_str().unwrap().to_owned();
    let config = write_config(&sandbox, "wgs4", FULL_TUNNEL);
    let run = |command: &str| {
        Invocation::new([command, config.as_str()])
            .arg0("wg-quick")
            .env("PATH", &path)
            .in_sandbox(&sandbox)
            .run(&cargo_bin("wg-quick"))
    };
    let up = run("up");
    up.assert_code(0, "up without nft");
    let stderr = up.stderr_str();
    assert!(stderr.contains("[#] ip6tables-restore -n\n"), "{stderr}");
    assert!(stderr.contains("[#] iptables-restore -n\n"), "{stderr}");
    let marked = "wg-quick(8) rule for wgs4";
    let v4 = show(&sandbox, "iptables-save");
    assert_eq!(v4.matches(marked).count(), 3, "{v4}");
    assert!(v4.contains("-A PREROUTING -d 10.77.0.2/32 ! -i wgs4 -m addrtype ! --src-type LOCAL"));
    let v6 = show(&sandbox, "ip6tables-save");
    assert_eq!(v6.matches(marked).count(), 3, "{v6}"); // the link-local address, CONNMARK x2
    let down = run("down");
    down.assert_code(0, "down without nft");
    assert!(down
        .stderr_str()
        .ends_with("[#] iptables-restore -n\n[#] ip6tables-restore -n\n"));
    assert!(!show(&sandbox, "iptables-save; ip6tables-save").contains(marked));
}

#[test]
fn not_root_reexecutes_through_sudo() {
    use std::os::unix::process::CommandExt;
    use std::process::Command;

    if !require_root() {
        return;
    }
    // A stand-in sudo that prints its arguments; run as nobody, wg-quick must hand itself and
    // its arguments to it (the reference: `exec sudo -p PROMPT -- "$BASH" -- "$SELF" ARGS`).
    let bin = tempfile::tempdir().unwrap();
    fs::set_permissions(bin.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let sudo = bin.path().join("sudo");
    fs::write(
        &sudo,
        "#!/bin/sh\nfor a in \"$@\"; do echo \"[$a]\"; done\n",
    )
    .unwrap();
    fs::set_permissions(&sudo, fs::Permissions::from_mode(0o755)).unwrap();
    let wg_quick = cargo_bin("wg-quick");
    let run = |path: &str| {
        Command::new(&wg_quick)
            .args(["strip", "wg0"])
            .env_clear()
            .env("PATH", path)
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap()
    };
    let out = run(&format!("{}:/usr/bin:/bin", bin.path().display()));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!(
            "[-p]\n[wg-quick must be run as root. Please enter the password for %u to continue: ]\n\
             [--]\n[{}]\n[strip]\n[wg0]\n",
            fs::canonicalize(&wg_quick).unwrap().display()
        )
    );
    let out = run("/nonexistent");
    assert_eq!(out.status.code(), Some(127), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "wg-quick: exec: sudo: not found\n"
    );
}
