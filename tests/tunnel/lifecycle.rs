//! The daemon's lifecycle: it exits and removes its socket on `ip link del`, on SIGTERM and
//! when its socket file is deleted; without `-f` it returns only once the interface and the
//! socket exist. In each case no process is left in the sandbox.

use std::path::Path;

use super::{wait_for, wg, DEADLINE};
use wg_tests::{our_wg_tunnel, require_root, Invocation, Sandbox};

/// Asserts that no process but the sandbox's holder is left in its network namespace (the
/// daemon has exited and been reaped; a daemonised one has no helper left behind).
fn assert_no_process_left(sandbox: &Sandbox) {
    wait_for("the sandbox to hold no process but its holder", || {
        sandbox.processes().is_empty()
    });
}

/// `ip link del` of a configured, up device ends the daemon: exit status 0, the socket
/// removed, no process left, the UDP port released.
#[test]
fn tunnel_exits_when_link_deleted() {
    if !require_root() {
        return;
    }
    let sandbox = Sandbox::new();
    let mut dev = sandbox.start_wg_tunnel("wg0");
    // A configured, running device: a peer and a port, so the exit tears down a live socket.
    let (private, _) = super::keypair();
    let (_, peer) = super::keypair();
    let dir = tempfile::tempdir().expect("temp dir");
    let key = dir.path().join("key");
    std::fs::write(&key, private).expect("write key");
    #[rustfmt::skip]
    wg(&sandbox, &[
        "set", "wg0", "private-key", key.to_str().expect("UTF-8"), "listen-port", "51820",
        "peer", &peer, "allowed-ips", "10.1.0.0/16", "endpoint", "192.0.2.1:51820",
    ]);
    sandbox.ip("link set wg0 up");
    sandbox.ip("link del wg0");
    wait_for("wg-tunnel to exit after ip link del", || {
        dev.try_status().is_some()
    });
    let status = dev.try_status().expect("exited");
    assert!(status.success(), "{status}\nlog:\n{}", dev.log());
    assert!(!dev.socket_host_path().exists(), "socket left behind");
    assert_no_process_left(&sandbox);
    // The UDP port is free again: nothing holds it.
    let udp = sandbox.run("ss", &["-Hunl"]).stdout_str();
    assert!(!udp.contains(":51820"), "UDP port still bound:\n{udp}");
}

#[test]
fn tunnel_exits_on_sigterm() {
    if !require_root() {
        return;
    }
    let sandbox = Sandbox::new();
    let mut dev = sandbox.start_wg_tunnel("wg0");
    let status = dev.terminate(DEADLINE);
    assert!(status.success(), "{status}\nlog:\n{}", dev.log());
    assert!(!dev.socket_host_path().exists(), "socket left behind");
    let links = sandbox.run("ip", &["-o", "link", "show"]).stdout_str();
    assert!(!links.contains("wg0"), "interface left behind:\n{links}");
    assert_no_process_left(&sandbox);
}

/// A SIGTERM at any moment of start-up leaves nothing behind: the daemon either dies before it
/// has created anything, or it has already blocked the signal and shuts down cleanly. The
/// signal is sent at varied points (right after spawn, then after short pauses); whatever the
/// point, no socket file, interface or process may remain.
#[test]
fn sigterm_during_startup_leaves_nothing() {
    if !require_root() {
        return;
    }
    let sandbox = Sandbox::new();
    let socket = sandbox.host_path("/run/wireguard/wg0.sock");
    for round in 0..24u64 {
        let mut child = sandbox
            .command(our_wg_tunnel())
            .args(["-f", "wg0"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn wg-tunnel");
        if round % 2 == 0 {
            // The riskiest moment: just after the socket file appears.
            let start = std::time::Instant::now();
            while !socket_exists(&socket) && start.elapsed() < DEADLINE {
                std::hint::spin_loop();
            }
        } else {
            // Not a timing assertion: only a spread of injection points over start-up.
            std::thread::sleep(std::time::Duration::from_micros(round * round * 20));
        }
        let pid = i32::try_from(child.id()).expect("pid fits");
        // SAFETY: kill takes no pointers; `pid` is our own unreaped child.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let status = child.wait().expect("wait for wg-tunnel");
        use std::os::unix::process::ExitStatusExt;
        assert!(
            status.success() || status.signal() == Some(libc::SIGTERM),
            "round {round}: {status}"
        );
        assert!(!socket_exists(&socket), "round {round}: socket left behind");
        let links = sandbox.run("ip", &["-o", "link", "show"]).stdout_str();
        assert!(
            !links.contains("wg0"),
            "round {round}: interface left:\n{links}"
        );
    }
    assert_no_process_left(&sandbox);
}

/// Deleting the UAPI socket file stops the daemon (wireguard-go watches it with inotify), and
/// the interface goes with it.
#[test]
fn tunnel_exits_when_socket_deleted() {
    if !require_root() {
        return;
    }
    let sandbox = Sandbox::new();
    let mut dev = sandbox.start_wg_tunnel("wg0");
    std::fs::remove_file(dev.socket_host_path()).expect("remove socket");
    wait_for("wg-tunnel to exit after its socket was deleted", || {
        dev.try_status().is_some()
    });
    let status = dev.try_status().expect("exited");
    assert!(status.success(), "{status}\nlog:\n{}", dev.log());
    let links = sandbox.run("ip", &["-o", "link", "show"]).stdout_str();
    assert!(!links.contains("wg0"), "interface left behind:\n{links}");
    assert_no_process_left(&sandbox);
}

/// Without `-f` the command returns once the interface and the socket (mode `srwx------` in a
/// 0755 directory) exist, and the daemon keeps running until the link is deleted; then it
/// removes its socket and no process is left.
#[test]
fn tunnel_daemonizes() {
    if !require_root() {
        return;
    }
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let sandbox = Sandbox::new();
    let out = Invocation::new(["wg1"])
        .arg0("wg-tunnel")
        .in_sandbox(&sandbox)
        .timeout(DEADLINE)
        .run(&our_wg_tunnel());
    out.assert_code(0, "wg-tunnel wg1");
    let socket = sandbox.host_path("/run/wireguard/wg1.sock");
    let meta = std::fs::symlink_metadata(&socket).expect("socket exists on return");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o700);
    let dir = std::fs::metadata(sandbox.host_path("/run/wireguard")).expect("socket dir");
    assert_eq!(dir.permissions().mode() & 0o777, 0o755);
    sandbox.ip("link show wg1");
    assert_eq!(wg(&sandbox, &["show", "interfaces"]), "wg1\n");
    let daemons = sandbox.processes();
    assert_eq!(daemons.len(), 1, "one daemon process: {daemons:?}");
    sandbox.ip("link del wg1");
    wait_for("the daemon to remove its socket", || {
        !socket_exists(&socket)
    });
    assert_no_process_left(&sandbox);
}

fn socket_exists(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}
