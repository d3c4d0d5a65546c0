//! Programs running in the background inside a [`Sandbox`] while a test does something else
//! (a traffic receiver while the sender runs, a transfer while an address moves).
//!
//! ```text
//!   test thread ──spawn──► program (in the sandbox's net+mount namespaces, PDEATHSIG)
//!        ▲                    │ stdout, line by line
//!        └── expect_line ◄────┘ (reader thread, channel)      stderr → temp file
//! ```
//!
//! Like the daemons, a background program gets SIGKILL when the spawning thread exits, and
//! is killed on drop: an aborted test leaves nothing running.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek};
use std::path::Path;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use crate::sandbox::{die_with_parent, Sandbox};

/// A program started with [`Sandbox::spawn`].
#[derive(Debug)]
pub struct Background {
    child: Child,
    lines: Receiver<String>,
    stderr: File,
    what: String,
}

/// How a background program ended: its status and every stdout line it printed after the
/// ones already taken with [`Background::expect_line`].
#[derive(Debug)]
pub struct Finished {
    /// Exit status.
    pub status: ExitStatus,
    /// The remaining stdout lines (without `\n`).
    pub lines: Vec<String>,
    /// All of stderr.
    pub stderr: String,
}

impl Sandbox {
    /// Starts `program args…` inside the sandbox (clean environment, stdin closed) and returns
    /// at once.
    pub fn spawn(&self, program: &Path, args: &[&str]) -> Background {
        let stderr = tempfile::tempfile().expect("create stderr file");
        let mut cmd = self.command(program);
        cmd.args(args)
            .env_clear()
            .env("PATH", crate::invocation::PATH)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr.try_clone().expect("dup stderr fd"));
        die_with_parent(&mut cmd);
        let what = format!("{} {}", program.display(), args.join(" "));
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Background {
            child,
            lines,
            stderr,
            what: format!("{what}  (in sandbox {})", self.pid()),
        }
    }
}

impl Background {
    /// The next stdout line; panics (with stderr) if the program ends first or prints nothing
    /// within `timeout`.
    pub fn expect_line(&mut self, timeout: Duration) -> String {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => {
                panic!(
                    "{}: no output within {timeout:?}; stderr: {}",
                    self.what,
                    self.stderr()
                )
            }
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.child.wait().expect("waitpid");
                panic!(
                    "{}: ended ({status}) before printing a line; stderr: {}",
                    self.what,
                    self.stderr()
                )
            }
        }
    }

    /// Whether the program has exited, without waiting.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("waitpid")
    }

    /// Waits up to `timeout` for the program to exit; kills it and panics (with `context()`,
    /// e.g. daemon logs) if it does not.
    pub fn wait(mut self, timeout: Duration, context: impl FnOnce() -> String) -> Finished {
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.try_status() {
                break status;
            }
            if start.elapsed() > timeout {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "{}: still running after {timeout:?}; stderr: {}\n{}",
                    self.what,
                    self.stderr(),
                    context()
                );
            }
            thread::sleep(Duration::from_millis(5));
        };
        // The reader thread ends at EOF, which follows the exit (unless a grandchild holds
        // the pipe, which our programs do not have).
        let mut lines = Vec::new();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            lines.push(line);
        }
        Finished {
            status,
            lines,
            stderr: self.stderr(),
        }
    }

    fn stderr(&self) -> String {
        let mut file = &self.stderr;
        let mut text = String::new();
        let _ = file.rewind();
        let _ = file.read_to_string(&mut text);
        text
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sandbox {
    /// Pids of the live processes in this sandbox's network namespace other than its holder
    /// (daemons, including daemonised ones the test never spawned directly). Zombies, which
    /// have no namespaces any more, are not listed.
    pub fn processes(&self) -> Vec<u32> {
        let holder = self.pid();
        let Ok(ours) = std::fs::read_link(format!("/proc/{holder}/ns/net")) else {
            return Vec::new();
        };
        let mut pids = Vec::new();
        for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if pid == holder {
                continue;
            }
            if std::fs::read_link(format!("/proc/{pid}/ns/net")).is_ok_and(|ns| ns == ours) {
                pids.push(pid);
            }
        }
        pids
    }
}
