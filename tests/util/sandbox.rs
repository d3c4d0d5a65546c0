//! Throw-away network + mount namespaces for root-only tests, and userspace WireGuard daemons
//! running inside them.
//!
//! ```text
//!   host: untouched. Nothing is created, addressed or routed in the host namespaces.
//!
//!   +------------- Sandbox A --------------+      +------------- Sandbox B --------------+
//!   | own netns + own mount ns (private)   |      | own netns + own mount ns (private)   |
//!   | tmpfs on /run (so /var/run too)      |      | tmpfs on /run (so /var/run too)      |
//!   | lo 127.0.0.1/8, ::1 (up)             |      | lo 127.0.0.1/8, ::1 (up)             |
//!   |                                      |      |                                      |
//!   | wg0 <- `wireguard-go -f wg0`         |      | wg0 <- `wg-tunnel -f wg0`            |
//!   |   UAPI /run/wireguard/wg0.sock       |      |   UAPI /run/wireguard/wg0.sock       |
//!   |                                      |      |                                      |
//!   | veth-a 10.0.0.1/24 ------------------+------+------------------ veth-b 10.0.0.2/24 |
//!   +--------------------------------------+      +--------------------------------------+
//! ```
//!
//! (Addresses and names are examples: each test picks its own; a sandbox starts with only `lo`.)
//!
//! A [`Sandbox`] is a holder process, `unshare --mount --net --propagation private sh -c
//! 'mount -t tmpfs tmpfs /run && ip link set lo up && … exec sleep infinity'`. Commands run in
//! it by `setns(2)` into the holder's namespaces between fork and exec (like `nsenter --net
//! --mount`, but keeping argv\[0\] and stdio exactly as given). Dropping the sandbox kills the
//! holder; the namespaces, their interfaces and the tmpfs go away with their last process.
//!
//! Contract:
//! * Needs root. Call [`crate::require_root`] first; `Sandbox::new` panics if it cannot
//!   create the namespaces (as root that is a real failure, not a reason to skip).
//! * The holder and the daemons get `PR_SET_PDEATHSIG(SIGKILL)`: they die with the thread that
//!   created them, so even an aborted test leaves nothing running. Create and use a sandbox in
//!   the same test thread.
//! * Test traffic stays on `lo` and on veth pairs between sandboxes created by the same test.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::invocation::{Invocation, Outcome};

/// How long a userspace daemon may take to create its UAPI socket.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

/// The holder script: runs inside the fresh namespaces, reports readiness on stdout.
const HOLDER_SCRIPT: &str = "mount -t tmpfs -o mode=0755 tmpfs /run \
    && ip link set lo up \
    && echo ready \
    && exec sleep infinity";

/// A private network + mount namespace pair with a tmpfs on `/run` and `lo` up.
#[derive(Debug)]
pub struct Sandbox {
    holder: Child,
    // Kept open so the holder's stdout pipe is not closed under it.
    _holder_stdout: BufReader<ChildStdout>,
    net: File,
    mnt: File,
}

impl Sandbox {
    /// Creates the namespaces and waits until `/run` is mounted and `lo` is up.
    pub fn new() -> Sandbox {
        let mut cmd = Command::new("unshare");
        cmd.args([
            "--mount",
            "--net",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
        ])
        .arg(HOLDER_SCRIPT)
        .env_clear()
        .env("PATH", crate::invocation::PATH)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        die_with_parent(&mut cmd);
        let mut holder = cmd.spawn().unwrap_or_else(|e| {
            panic!("spawn unshare: {e} (install util-linux; scripts/test.sh does this)")
        });
        let mut stdout = BufReader::new(holder.stdout.take().expect("stdout is piped"));
        // Blocks until the script has mounted /run and brought lo up, or has failed (EOF).
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read holder stdout");
        if line != "ready\n" {
            let _ = holder.kill();
            let status = holder.wait();
            let mut err = String::new();
            if let Some(mut e) = holder.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            panic!(
                "could not create sandbox namespaces (root with CAP_SYS_ADMIN needed): \
                 {status:?}, stderr: {err}"
            );
        }
        let pid = holder.id();
        let open = |ns: &str| {
            let path = format!("/proc/{pid}/ns/{ns}");
            File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"))
        };
        let (net, mnt) = (open("net"), open("mnt"));
        Sandbox {
            holder,
            _holder_stdout: stdout,
            net,
            mnt,
        }
    }

    /// Pid of the holder process (usable as `ip … netns PID`).
    pub fn pid(&self) -> u32 {
        self.holder.id()
    }

    /// Makes `cmd` run inside this sandbox: its child joins the sandbox's network and mount
    /// namespaces just before exec, and its working directory becomes `/`. Spawn `cmd` while
    /// this sandbox is alive.
    pub fn enter(&self, cmd: &mut Command) {
        let (net, mnt) = (self.net.as_raw_fd(), self.mnt.as_raw_fd());
        // SAFETY: the closure runs between fork and exec and only makes async-signal-safe
        // system calls (setns) on file descriptors that the sandbox keeps open.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(net, libc::CLONE_NEWNET) != 0
                    || libc::setns(mnt, libc::CLONE_NEWNS) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }

    /// `program` as a [`Command`] that runs inside this sandbox.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        self.enter(&mut cmd);
        cmd
    }

    /// Runs `program args…` inside the sandbox (argv\[0\] = `program`, clean environment).
    pub fn run(&self, program: &str, args: &[&str]) -> Outcome {
        Invocation::new(args)
            .arg0(program)
            .in_sandbox(self)
            .run(Path::new(program))
    }

    /// Runs a `sh -c` script inside the sandbox; panics unless it exits 0.
    pub fn sh(&self, script: &str) -> Outcome {
        let out = self.run("/bin/sh", &["-c", script]);
        assert_eq!(
            out.code(),
            Some(0),
            "sandbox {}: sh -c {script:?} failed:\n{out:?}",
            self.pid()
        );
        out
    }

    /// Runs `ip <args>` (split on whitespace) inside the sandbox; panics unless it exits 0.
    pub fn ip(&self, args: &str) -> Outcome {
        let out = Invocation::new(args.split_whitespace())
            .arg0("ip")
            .in_sandbox(self)
            .run(Path::new("/usr/sbin/ip"));
        assert_eq!(
            out.code(),
            Some(0),
            "sandbox {}: ip {args} failed:\n{out:?}",
            self.pid()
        );
        out
    }

    /// Where a path inside the sandbox's mount namespace is visible from the host
    /// (`/proc/<holder>/root/<path>`). For reading files and polling for sockets.
    pub fn host_path(&self, inside: impl AsRef<Path>) -> PathBuf {
        let inside = inside.as_ref();
        let rel = inside.strip_prefix("/").unwrap_or(inside);
        PathBuf::from(format!("/proc/{}/root", self.pid())).join(rel)
    }

    /// Creates a veth pair, `name` here and `peer_name` in `peer`, both up, without addresses.
    /// The pair is created from inside this sandbox, so it never exists in the host netns.
    pub fn veth(&self, name: &str, peer: &Sandbox, peer_name: &str) {
        self.ip(&format!(
            "link add {name} type veth peer name {peer_name} netns {}",
            peer.pid()
        ));
        self.ip(&format!("link set {name} up"));
        peer.ip(&format!("link set {peer_name} up"));
    }

    /// Starts the userspace implementation `implementation` (same command line as
    /// `wireguard-go`: `IMPL -f IFNAME`) inside the sandbox, and waits until its UAPI socket
    /// `/run/wireguard/IFNAME.sock` exists. Panics (with the daemon's log) if it exits first
    /// or does not get there within [`STARTUP_TIMEOUT`].
    pub fn start_userspace(&self, implementation: &Path, ifname: &str) -> UserspaceDevice {
        self.start_userspace_with(implementation, &["-f"], ifname)
    }

    /// [`Sandbox::start_userspace`] with other options before the interface name
    /// (`IMPL OPTIONS… IFNAME`), for implementations whose command line differs a little
    /// (boringtun wants `--disable-drop-privileges`).
    pub fn start_userspace_with(
        &self,
        implementation: &Path,
        options: &[&str],
        ifname: &str,
    ) -> UserspaceDevice {
        let log = tempfile::tempfile().expect("create daemon log file");
        let mut cmd = self.command(implementation);
        cmd.args(options)
            .arg(ifname)
            .env_clear()
            .env("PATH", crate::invocation::PATH)
            .env("LOG_LEVEL", "verbose")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log fd"))
            .stderr(log.try_clone().expect("dup log fd"));
        die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {} {ifname}: {e}", implementation.display()));
        let mut dev = UserspaceDevice {
            child,
            ifname: ifname.to_owned(),
            implementation: implementation.to_owned(),
            socket: self.host_path(format!("/run/wireguard/{ifname}.sock")),
            log,
        };
        let start = Instant::now();
        while !dev.socket.exists() {
            if let Some(status) = dev.child.try_wait().expect("waitpid") {
                panic!(
                    "{} exited before creating its socket: {status}\nlog:\n{}",
                    dev.what(),
                    dev.log()
                );
            }
            if start.elapsed() > STARTUP_TIMEOUT {
                panic!(
                    "{} created no socket within {STARTUP_TIMEOUT:?}\nlog:\n{}",
                    dev.what(),
                    dev.log()
                );
            }
            thread::sleep(Duration::from_millis(5));
        }
        dev
    }

    /// [`Sandbox::start_userspace`] with our `wg-tunnel` (panics if it is not built).
    pub fn start_wg_tunnel(&self, ifname: &str) -> UserspaceDevice {
        self.start_userspace(&crate::bins::our_wg_tunnel(), ifname)
    }

    /// [`Sandbox::start_userspace`] with the reference `wireguard-go`.
    pub fn start_wireguard_go(&self, ifname: &str) -> UserspaceDevice {
        self.start_userspace(&crate::bins::wireguard_go(), ifname)
    }

    /// [`Sandbox::start_userspace_with`] with boringtun (`boringtun-cli -f
    /// --disable-drop-privileges -v info IFNAME`; `scripts/test.sh` installs it).
    pub fn start_boringtun(&self, ifname: &str) -> UserspaceDevice {
        let options = ["-f", "--disable-drop-privileges", "-v", "info"];
        self.start_userspace_with(&crate::bins::boringtun(), &options, ifname)
    }
}

impl Default for Sandbox {
    fn default() -> Self {
        Sandbox::new()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // Killing an already dead holder fails harmlessly.
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// A running userspace WireGuard daemon (`IMPL -f IFNAME`) inside a [`Sandbox`]. Killed on drop.
#[derive(Debug)]
pub struct UserspaceDevice {
    child: Child,
    ifname: String,
    implementation: PathBuf,
    socket: PathBuf,
    log: File,
}

impl UserspaceDevice {
    /// The interface name.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// The daemon's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The UAPI socket as seen from the host (`/proc/<holder>/root/run/wireguard/IF.sock`).
    pub fn socket_host_path(&self) -> &Path {
        &self.socket
    }

    /// Everything the daemon has written to stdout and stderr so far.
    pub fn log(&self) -> String {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            // pread: does not move the shared file offset the daemon writes at.
            match self.log.read_at(&mut chunk, buf.len() as u64) {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        String::from_utf8_lossy(&buf).into_owned()
    }

    /// Whether the daemon has exited (and how), without waiting.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("waitpid")
    }

    /// Sends SIGTERM and waits up to `timeout` for the daemon to exit; panics if it does not.
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        // SAFETY: kill(2) on our own child's pid, which we have not reaped yet.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let start = Instant::now();
        loop {
            if let Some(status) = self.try_status() {
                return status;
            }
            if start.elapsed() > timeout {
                panic!(
                    "{} ignored SIGTERM for {timeout:?}\nlog:\n{}",
                    self.what(),
                    self.log()
                );
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    fn what(&self) -> String {
        format!("{} -f {}", self.implementation.display(), self.ifname)
    }
}

impl Drop for UserspaceDevice {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Makes the spawned process get SIGKILL when the spawning thread exits.
pub(crate) fn die_with_parent(cmd: &mut Command) {
    // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches only the child.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
