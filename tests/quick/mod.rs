//! `wg-quick`: ours against the reference `/usr/bin/wg-quick` (Debian wireguard-tools
//! 1.0.20210914), in sandboxes with a real resolvconf (root only; each test prints a skip
//! message otherwise).
//!
//! ```text
//!   +------------- QuickBox R ------------------+   +------------- QuickBox O ------------------+
//!   | Sandbox: own netns + mount ns, tmpfs /run |   | Sandbox: own netns + mount ns, tmpfs /run |
//!   | private /etc (overlay), /etc/wireguard    |   | private /etc (overlay), /etc/wireguard    |
//!   | openresolv as resolvconf (unpacked)       |   | openresolv as resolvconf (unpacked)       |
//!   | case setup (veth uplinks, routes)         |   | case setup (veth uplinks, routes)         |
//!   |                                           |   |                                           |
//!   | /usr/bin/wg-quick up /tmp/…/wg0.conf      |   | target/debug/wg-quick up /tmp/…/wg0.conf  |
//!   |   └ wireguard-go wg0 (userspace fallback) |   |   └ wg-tunnel wg0 (userspace fallback)    |
//!   +-------------------------------------------+   +-------------------------------------------+
//!   Snapshot (tests/util/netstate.rs) of each before up, after up, after down; compared.
//! ```
//!
//! * [`reference`]: the reference alone: `up` then `down` leaves the starting state; the
//!   reference wg-quick driving our `wg-tunnel` as its userspace implementation gives the same
//!   state as with wireguard-go, and carries pings to a wireguard-go peer (as does ours).
//! * [`differential`]: ours against the reference on the corpus ([`configs`]): equal
//!   snapshots after `up` and after `down` (= the start), equal `[#]` traces once the
//!   reference's is turned into HEAD's, equal SaveConfig files.
//! * [`failures`]: failure injection (failing PostUp, missing resolvconf, bad key, existing
//!   interface, second `up`): the reference's exit status and message, nothing left behind;
//!   for the reference and for ours.
//! * [`head`]: each deliberate difference (HEAD behaviour) on a case of its own; the
//!   `up NAME` form.
//! * [`strip_save`]: `strip`, argument and config-file errors, `sudo` re-execution, and
//!   `save` of a live device changed after `up`, byte for byte.
//! * [`random`]: seeded random files for `strip` and random configs for `up`/`down`.
//!
//! Debugging: `WG_TESTS_SHOW_SNAPSHOTS=1 cargo test -p wg-tests -- quick::… --nocapture`
//! prints each run's trace and snapshot after `up`.
//!
//! Configs live in host temporary directories (mode 0700) passed as paths, or in the sandbox's
//! private `/etc/wireguard` for the `wg-quick up NAME` form; never in the host's /etc.
//!
//! The host has no WireGuard kernel module, so every `up` takes the userspace fallback. That is
//! deliberate here: the kernel path is tested in the VM harness.

mod configs;
pub(crate) mod differential;
mod failures;
mod head;
mod random;
mod reference;
mod strip_save;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use rand::RngCore;
use wg_tests::{Invocation, Outcome, PrivateEtc, Sandbox, Snapshot};

/// The reference wg-quick (Debian wireguard-tools 1.0.20210914).
pub(crate) const REFERENCE_WG_QUICK: &str = "/usr/bin/wg-quick";

/// Every place where our wg-quick deliberately differs from the installed reference, as the
/// tests tolerate them: (what, why). Mirrored in README ("Deliberate differences from the
/// reference `wg-quick`"); [`deliberate_differences_are_in_the_readme`] checks that the first
/// code span of each `what` is there. The trace normaliser
/// [`differential::expected_trace`] applies the trace ones; [`head`] shows each on a case.
pub(crate) const DELIBERATE_DIFFERENCES: &[(&str, &str)] = &[
    (
        "`[#] wg-tunnel wg0` instead of `[#] wireguard-go wg0` (and no wireguard-go banner)",
        "the reference defaults to wireguard-go, ours to our bundled wg-tunnel; traces compare \
         the line as `[#] <userspace> wg0` and drop the banner (box-drawing lines)",
    ),
    (
        "`[#] ip link add dev wg0 type wireguard` instead of `[#] ip link add wg0 type wireguard`",
        "upstream HEAD spells `dev`; Debian's 1.0.20210914 does not",
    ),
    (
        "`[#] wg addconf wg0 /dev/fd/63` instead of `[#] wg setconf wg0 /dev/fd/63`",
        "HEAD uses addconf so that a private key set by a PreUp hook survives",
    ),
    (
        "`PreUp` hooks run after the interface is created, not before",
        "HEAD moved them after add_if (so `PreUp = wg set %i private-key FILE` works)",
    ),
    (
        "`ip rule add not fwmark` and `ip rule add table main suppress_prefixlength 0` come \
         before `ip route add 0.0.0.0/0 dev wg0 table N` (and the same for `::/0`)",
        "HEAD adds the rules first to avoid a leak; Debian adds the route first",
    ),
    (
        "`sysctl -q net.ipv4.conf.all.src_valid_mark=1` only when it is not already 1",
        "HEAD skips the write when the value is already set",
    ),
    (
        "`resolvconf -a wg0` instead of `resolvconf -a tun.wg0` when `resolvconf` is a symlink",
        "HEAD ignores /etc/resolvconf/interface-order when resolvconf is a symlink (resolvectl)",
    ),
    (
        "`MTU` (automatic): the smallest endpoint route MTU minus 80, not the largest",
        "HEAD takes the smallest; the corpus gives all endpoints one MTU, head.rs checks this",
    ),
    (
        "`PostUp = cmd # text`: hooks keep the text after `#` (traced, run, saved)",
        "HEAD keeps the unstripped value of PreUp/PostUp/PreDown/PostDown; Debian cuts it",
    ),
    (
        "`sudo -p PROMPT -- /path/to/wg-quick ARGS` instead of `sudo -p PROMPT -- /bin/bash -- \
         /usr/bin/wg-quick ARGS` when not root",
        "ours is a binary, not a bash script: it re-executes itself (same prompt)",
    ),
    (
        "`wg-quick: resolvconf: command not found` instead of bash's \
         `/usr/bin/wg-quick: line 32: resolvconf: command not found`",
        "bash names the script's path and line; ours names the program, as its other errors \
         do (the exit status is the same, 127)",
    ),
];

/// README's wg-quick section lists every deliberate difference.
#[test]
fn deliberate_differences_are_in_the_readme() {
    let readme =
        fs::read_to_string(wg_tests::repo_root().join("README.md")).expect("read README.md");
    for (what, _) in DELIBERATE_DIFFERENCES {
        let span = what.split('`').nth(1).expect("a code span in each entry");
        assert!(
            readme.contains(&format!("`{span}`")),
            "README.md does not list the wg-quick difference `{span}` ({what})"
        );
    }
}

/// A sandbox prepared for wg-quick: a private /etc (with or without openresolv) and a host
/// temporary directory for config files. On drop it kills every process still in its network
/// namespace (a daemonised wireguard-go or wg-tunnel from an `up` without `down`), by pid.
pub(crate) struct QuickBox {
    // Declared first: dropped (killed) after Drop::drop has killed the daemons.
    sandbox: Sandbox,
    dir: tempfile::TempDir,
}

impl QuickBox {
    /// A fresh sandbox with openresolv.
    pub(crate) fn new() -> QuickBox {
        QuickBox::with_etc(PrivateEtc::with_resolvconf())
    }

    /// A fresh sandbox with `etc` applied.
    pub(crate) fn with_etc(etc: PrivateEtc) -> QuickBox {
        let sandbox = Sandbox::new();
        // No IPv6 duplicate address detection on links created from now on: otherwise an
        // address is `tentative` for a while and snapshots would depend on timing.
        sandbox.sh("sysctl -qw net.ipv6.conf.default.accept_dad=0 net.ipv6.conf.all.accept_dad=0");
        etc.apply(&sandbox);
        let dir = tempfile::Builder::new()
            .prefix("wg-quick-test.")
            .tempdir()
            .expect("create config dir");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).expect("chmod 700");
        QuickBox { sandbox, dir }
    }

    /// The sandbox.
    pub(crate) fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    /// Runs a `sh -c` script in the sandbox (panics unless it exits 0).
    pub(crate) fn sh(&self, script: &str) -> Outcome {
        self.sandbox.sh(script)
    }

    /// Writes `text` to `<dir>/<name>.conf` (mode 0600) and returns the path (the same path
    /// inside the sandbox: the host's /tmp is visible there).
    pub(crate) fn write_config(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(format!("{name}.conf"));
        fs::write(&path, text).expect("write config");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod 600");
        path
    }

    /// The current content of `<dir>/<name>.conf` (as rewritten by SaveConfig).
    pub(crate) fn read_config(&self, name: &str) -> String {
        let path = self.dir.path().join(format!("{name}.conf"));
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
    }

    /// Writes `text` to the sandbox's private `/etc/wireguard/<name>.conf` (mode 0600).
    pub(crate) fn write_etc_config(&self, name: &str, text: &str) {
        let path = self
            .sandbox
            .host_path(format!("/etc/wireguard/{name}.conf"));
        fs::write(&path, text).expect("write /etc/wireguard config");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod 600");
    }

    /// A normalised snapshot of the sandbox's state.
    pub(crate) fn snapshot(&self) -> Snapshot {
        Snapshot::take(&self.sandbox)
    }

    /// Runs `tool` with `args` inside the sandbox.
    pub(crate) fn wg_quick(&self, tool: &Tool, args: &[&str]) -> Outcome {
        self.wg_quick_env(tool, args, &[])
    }

    /// [`QuickBox::wg_quick`] with extra environment variables.
    pub(crate) fn wg_quick_env(&self, tool: &Tool, args: &[&str], env: &[(&str, &str)]) -> Outcome {
        let mut inv = Invocation::new(args)
            .arg0("wg-quick")
            .in_sandbox(&self.sandbox);
        if let Some(implementation) = tool.userspace() {
            inv = inv.env("WG_QUICK_USERSPACE_IMPLEMENTATION", implementation);
        }
        for (k, v) in env {
            inv = inv.env(k, v);
        }
        inv.run(&tool.program())
    }

    /// Pids of every process in this sandbox's network namespace except the holder.
    fn stragglers(&self) -> Vec<i32> {
        let holder = self.sandbox.pid();
        let Ok(ns) = fs::metadata(format!("/proc/{holder}/ns/net")) else {
            return Vec::new();
        };
        let mut pids = Vec::new();
        for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<i32>().ok())
            else {
                continue;
            };
            if pid as u32 == holder {
                continue;
            }
            if let Ok(m) = fs::metadata(format!("/proc/{pid}/ns/net")) {
                if m.ino() == ns.ino() && m.dev() == ns.dev() {
                    pids.push(pid);
                }
            }
        }
        pids
    }
}

impl Drop for QuickBox {
    fn drop(&mut self) {
        for pid in self.stragglers() {
            // SAFETY: kill(2) on a pid that lives in the network namespace this test created.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

/// Which wg-quick runs, with which userspace implementation.
#[derive(Clone, Debug)]
pub(crate) enum Tool {
    /// `/usr/bin/wg-quick` with `WG_QUICK_USERSPACE_IMPLEMENTATION=wireguard-go`.
    Reference,
    /// `/usr/bin/wg-quick` with `WG_QUICK_USERSPACE_IMPLEMENTATION=<target/debug/wg-tunnel>`.
    ReferenceOnWgTunnel,
    /// Our `target/debug/wg-quick`, with its default implementation (our `wg-tunnel`).
    Ours,
}

impl Tool {
    fn program(&self) -> PathBuf {
        match self {
            Tool::Reference | Tool::ReferenceOnWgTunnel => {
                let p = Path::new(REFERENCE_WG_QUICK);
                assert!(
                    p.is_file(),
                    "{REFERENCE_WG_QUICK} not found: install wireguard-tools (scripts/test.sh does)"
                );
                p.to_path_buf()
            }
            Tool::Ours => wg_tests::cargo_bin("wg-quick"),
        }
    }

    fn userspace(&self) -> Option<String> {
        match self {
            Tool::Reference => Some("wireguard-go".to_owned()),
            Tool::ReferenceOnWgTunnel => Some(wg_tests::our_wg_tunnel().display().to_string()),
            Tool::Ours => None,
        }
    }
}

/// Deterministic key material for the configs: clamped private keys, public keys from the
/// reference `wg pubkey`, preshared keys.
pub(crate) struct Keys {
    rng: rand_chacha::ChaCha8Rng,
}

impl Keys {
    /// Keys for config case `case` (fixed seed: the same keys every run).
    pub(crate) fn new(case: u64) -> Keys {
        Keys {
            rng: wg_tests::case_rng(wg_tests::rng::DEFAULT_SEED, 0x5157_0000 + case),
        }
    }

    fn bytes(&mut self) -> [u8; 32] {
        let mut b = [0u8; 32];
        self.rng.fill_bytes(&mut b);
        b
    }

    /// A clamped private key, base64.
    pub(crate) fn private(&mut self) -> String {
        let mut b = self.bytes();
        b[0] &= 248;
        b[31] = (b[31] & 127) | 64;
        base64::engine::general_purpose::STANDARD.encode(b)
    }

    /// A key used as a peer's public key (any 32 bytes), base64.
    pub(crate) fn public(&mut self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.bytes())
    }

    /// A preshared key, base64.
    pub(crate) fn psk(&mut self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.bytes())
    }
}

/// The public key of a base64 private key, from the reference `wg pubkey`.
pub(crate) fn pubkey(private: &str) -> String {
    let out = Invocation::new(["pubkey"])
        .stdin(format!("{private}\n"))
        .run(&wg_tests::reference_wg());
    out.assert_code(0, "wg pubkey");
    out.stdout_str().trim().to_owned()
}

/// Panics with the outcome unless it exited 0.
pub(crate) fn assert_ok(out: &Outcome, what: &str) {
    out.assert_code(0, what);
}

/// The reference's `src_valid_mark` after a full-tunnel IPv4 `up`: it sets it to 1 and `down`
/// never resets it (both in 1.0.20210914 and HEAD), so a snapshot after `down` differs from the
/// start there and only there.
pub(crate) fn sysctl_after_full_tunnel() -> &'static str {
    "net.ipv4.conf.all.src_valid_mark = 1"
}
