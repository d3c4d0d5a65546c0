//! Running a program exactly as a user would, and comparing two runs byte for byte.
//!
//! An [`Invocation`] is everything observable that goes into a run: argv\[0\], the arguments,
//! stdin bytes, the environment, where stdout goes, and optionally the [`Sandbox`] to run in.
//! Running it yields an [`Outcome`]: stdout, stderr and how the process ended.
//!
//! The differential runner [`diff_wg`] runs the same invocation against the reference
//! `/usr/bin/wg` and against ours and panics with a readable diff unless all three of stdout,
//! stderr and exit status are identical.
//!
//! Contract:
//! * argv\[0\] defaults to `"wg"` for both programs: the reference prints argv\[0\] verbatim in
//!   usage lines and error prefixes (`Usage: wg <cmd>`, `wg: Key is not ...`).
//! * The environment is cleared, then `PATH` and the invocation's variables are set, so a
//!   developer's `WG_COLOR_MODE` or `WG_HIDE_KEYS` cannot change a result.
//! * Inside a sandbox the working directory is `/`, so pass absolute paths.
//! * Stdin is written from a separate thread and a closed pipe (the program stopped reading)
//!   is not an error. A run that outlives its timeout is killed and fails the test.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::bins::{our_wg, reference_wg};
use crate::sandbox::Sandbox;

/// The `PATH` every invocation gets.
pub const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Default limit on one run's wall time.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// What goes into one run of a program. Built with chained setters; cheap to clone.
#[derive(Clone, Debug)]
pub struct Invocation<'a> {
    arg0: OsString,
    args: Vec<OsString>,
    stdin: Vec<u8>,
    env: Vec<(OsString, OsString)>,
    stdout_file: Option<PathBuf>,
    sandbox: Option<&'a Sandbox>,
    timeout: Duration,
}

impl<'a> Invocation<'a> {
    /// `wg <args...>` with empty stdin, argv\[0\] `"wg"`, clean environment, on the host.
    pub fn new<I, S>(args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Invocation {
            arg0: "wg".into(),
            args: args.into_iter().map(|a| a.as_ref().to_owned()).collect(),
            stdin: Vec::new(),
            env: Vec::new(),
            stdout_file: None,
            sandbox: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Sets argv\[0\] (default `"wg"`).
    pub fn arg0(mut self, arg0: impl AsRef<OsStr>) -> Self {
        self.arg0 = arg0.as_ref().to_owned();
        self
    }

    /// Sets the bytes fed to stdin (default: none, i.e. immediate EOF).
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = bytes.into();
        self
    }

    /// Adds an environment variable (on top of `PATH`).
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Sends stdout to this existing file (opened write + truncate for each run) instead of a
    /// pipe; [`Outcome::stdout`] is then empty. The file's mode is left as it is.
    pub fn stdout_file(mut self, path: impl AsRef<Path>) -> Self {
        self.stdout_file = Some(path.as_ref().to_owned());
        self
    }

    /// Runs inside `sandbox` (its network and mount namespaces).
    pub fn in_sandbox(mut self, sandbox: &'a Sandbox) -> Self {
        self.sandbox = Some(sandbox);
        self
    }

    /// Sets the wall-time limit of one run (default [`DEFAULT_TIMEOUT`]).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// A one-line, shell-like description for failure messages.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        for (k, v) in &self.env {
            s += &format!("{}={} ", k.to_string_lossy(), v.to_string_lossy());
        }
        s += &self.arg0.to_string_lossy();
        for a in &self.args {
            s += &format!(" {:?}", a.to_string_lossy());
        }
        if !self.stdin.is_empty() {
            s += &format!(" <<< {}", escape_short(&self.stdin, 120));
        }
        if let Some(f) = &self.stdout_file {
            s += &format!(" > {}", f.display());
        }
        if let Some(sb) = self.sandbox {
            s += &format!("  (in sandbox {})", sb.pid());
        }
        s
    }

    /// Runs `program` with this invocation and waits for it.
    pub fn run(&self, program: &Path) -> Outcome {
        let mut cmd = Command::new(program);
        cmd.arg0(&self.arg0)
            .args(&self.args)
            .env_clear()
            .env("PATH", PATH)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stderr(Stdio::piped());
        match &self.stdout_file {
            Some(path) => {
                let file = OpenOptions::new()
                    .write(true)
                    .truncate(true)
                    .open(path)
                    .unwrap_or_else(|e| panic!("open {} for stdout: {e}", path.display()));
                cmd.stdout(file);
            }
            None => {
                cmd.stdout(Stdio::piped());
            }
        }
        if let Some(sandbox) = self.sandbox {
            sandbox.enter(&mut cmd);
        }
        run_command(cmd, &self.stdin, self.timeout, &|| {
            format!("{} (program {})", self.describe(), program.display())
        })
    }
}

/// What came out of one run.
#[derive(Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Everything written to stdout (empty if stdout went to a file).
    pub stdout: Vec<u8>,
    /// Everything written to stderr.
    pub stderr: Vec<u8>,
    /// How the process ended.
    pub status: ExitStatus,
}

impl Outcome {
    /// The exit code, or `None` if killed by a signal.
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Stdout as UTF-8 (lossy), for assertions on text.
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Stderr as UTF-8 (lossy), for assertions on text.
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// Panics with the full outcome unless the process exited with `code`.
    pub fn assert_code(&self, code: i32, what: &str) -> &Self {
        assert_eq!(
            self.code(),
            Some(code),
            "{what}: unexpected status\n{self:?}"
        );
        self
    }
}

impl fmt::Debug for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "status: {}", status_str(self.status))?;
        writeln!(f, "stdout: {}", escape_short(&self.stdout, 2000))?;
        write!(f, "stderr: {}", escape_short(&self.stderr, 2000))
    }
}

/// Spawns `cmd` (whose stdin and stderr are pipes; stdout a pipe or a file), feeds `stdin`,
/// collects output, and enforces `timeout`. `what` describes the run for panics.
pub fn run_command(
    mut cmd: Command,
    stdin: &[u8],
    timeout: Duration,
    what: &dyn Fn() -> String,
) -> Outcome {
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", what()));
    let mut child_stdin = child.stdin.take().expect("stdin is piped");
    let stdout = child.stdout.take();
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let outcome = thread::scope(|s| {
        s.spawn(move || {
            // The program may exit without reading everything: EPIPE is expected, not a failure.
            let _ = child_stdin.write_all(stdin);
        });
        let out = s.spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut stdout) = stdout {
                stdout.read_to_end(&mut buf).expect("read child stdout");
            }
            buf
        });
        let err = s.spawn(move || {
            let mut buf = Vec::new();
            stderr.read_to_end(&mut buf).expect("read child stderr");
            buf
        });
        let status = wait_timeout(&mut child, timeout).unwrap_or_else(|| {
            let _ = child.kill();
            let _ = child.wait();
            panic!("timed out after {timeout:?}: {}", what());
        });
        Outcome {
            stdout: out.join().expect("stdout reader"),
            stderr: err.join().expect("stderr reader"),
            status,
        }
    });
    outcome
}

/// Waits for `child` up to `timeout`, polling its state with a short back-off.
fn wait_timeout(child: &mut std::process::Child, timeout: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    let mut pause = Duration::from_micros(50);
    loop {
        if let Some(status) = child.try_wait().expect("waitpid") {
            return Some(status);
        }
        if start.elapsed() >= timeout {
            return None;
        }
        thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(5));
    }
}

/// Runs `inv` against the reference `wg` and against ours; panics with a readable diff unless
/// stdout, stderr and exit status are identical. Returns the (shared) outcome.
pub fn diff_wg(inv: &Invocation<'_>) -> Outcome {
    let reference = inv.run(&reference_wg());
    let ours = inv.run(&our_wg());
    assert_same(&inv.describe(), &reference, &ours);
    ours
}

/// [`diff_wg`] for many invocations: runs them all, then panics listing every mismatch (not just
/// the first), so one run shows the whole picture.
pub fn diff_wg_all<'a>(invs: impl IntoIterator<Item = Invocation<'a>>) {
    let (reference, ours) = (reference_wg(), our_wg());
    let mut failures = Vec::new();
    let mut total = 0;
    for inv in invs {
        total += 1;
        if let Some(report) = compare(&inv.run(&reference), &inv.run(&ours)) {
            failures.push(format!("=== {}\n{report}", inv.describe()));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {total} invocations differ from the reference:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Panics with a readable diff unless the two outcomes are identical.
pub fn assert_same(what: &str, reference: &Outcome, ours: &Outcome) {
    if let Some(report) = compare(reference, ours) {
        panic!("reference and ours differ for: {what}\n{report}");
    }
}

/// `None` if identical, else a human-readable report of every difference.
pub fn compare(reference: &Outcome, ours: &Outcome) -> Option<String> {
    let mut report = String::new();
    if reference.status != ours.status {
        report += &format!(
            "status: reference {}, ours {}\n",
            status_str(reference.status),
            status_str(ours.status)
        );
    }
    for (name, r, o) in [
        ("stdout", &reference.stdout, &ours.stdout),
        ("stderr", &reference.stderr, &ours.stderr),
    ] {
        if r != o {
            report += &format!("{name} differs (- reference, + ours):\n{}", line_diff(r, o));
        }
    }
    (!report.is_empty()).then_some(report)
}

fn status_str(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => format!("{status}"),
    }
}

/// Escapes bytes for display: printable ASCII as is, everything else as `\n`, `\xNN`, etc.
pub fn escape(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'\n' => s += "\\n",
            b'\r' => s += "\\r",
            b'\t' => s += "\\t",
            b'\0' => s += "\\0",
            b'\\' => s += "\\\\",
            b'"' => s += "\\\"",
            0x20..=0x7e => s.push(b as char),
            _ => s += &format!("\\x{b:02x}"),
        }
    }
    s
}

/// [`escape`], quoted and truncated to about `max` input bytes.
pub fn escape_short(bytes: &[u8], max: usize) -> String {
    if bytes.len() <= max {
        format!("\"{}\"", escape(bytes))
    } else {
        format!("\"{}\"... ({} bytes)", escape(&bytes[..max]), bytes.len())
    }
}

/// A line diff of two byte strings (LCS over lines; each line escaped, `⏎` marking a newline).
pub fn line_diff(a: &[u8], b: &[u8]) -> String {
    let split = |x: &[u8]| -> Vec<String> {
        x.split_inclusive(|&c| c == b'\n')
            .map(|l| match l.strip_suffix(b"\n") {
                Some(body) => format!("{}⏎", escape(body)),
                None => escape(l),
            })
            .collect()
    };
    let (la, lb) = (split(a), split(b));
    if la.len() * lb.len() > 4_000_000 {
        let at = a.iter().zip(b).take_while(|(x, y)| x == y).count();
        return format!(
            "  (too long to diff) first difference at byte {at}:\n- {}\n+ {}\n",
            escape_short(&a[at..], 200),
            escape_short(&b[at..], 200)
        );
    }
    // lcs[i][j] = LCS length of la[i..] and lb[j..].
    let mut lcs = vec![vec![0u32; lb.len() + 1]; la.len() + 1];
    for i in (0..la.len()).rev() {
        for j in (0..lb.len()).rev() {
            lcs[i][j] = if la[i] == lb[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < la.len() || j < lb.len() {
        if i < la.len() && j < lb.len() && la[i] == lb[j] {
            out += &format!("  {}\n", la[i]);
            i += 1;
            j += 1;
        } else if i < la.len() && (j == lb.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out += &format!("- {}\n", la[i]);
            i += 1;
        } else {
            out += &format!("+ {}\n", lb[j]);
            j += 1;
        }
    }
    out
}

/// Creates `path` (empty) with exactly `mode`, whatever the umask.
pub fn create_file_with_mode(path: &Path, mode: u32) -> File {
    use std::os::unix::fs::PermissionsExt;
    let file = File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {:o} {}: {e}", mode, path.display()));
    file
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(stdout: &[u8], stderr: &[u8], code: i32) -> Outcome {
        Outcome {
            stdout: stdout.to_vec(),
            stderr: stderr.to_vec(),
            status: ExitStatus::from_raw(code << 8),
        }
    }

    #[test]
    fn test_compare_identical() {
        let a = outcome(b"x\n", b"", 0);
        assert_eq!(compare(&a, &a.clone()), None);
    }

    #[test]
    fn test_compare_reports_each_stream() {
        let reference = outcome(b"same\nold\n", b"wg: err\n", 1);
        let ours = outcome(b"same\nnew\r\n", b"wg: err\n", 0);
        let report = compare(&reference, &ours).expect("they differ");
        assert_eq!(
            report,
            "status: reference exit 1, ours exit 0\n\
             stdout differs (- reference, + ours):\n  same\u{23ce}\n- old\u{23ce}\n+ new\\r\u{23ce}\n"
        );
    }

    #[test]
    fn test_line_diff_missing_final_newline() {
        assert_eq!(line_diff(b"a\n", b"a"), "- a\u{23ce}\n+ a\n");
    }

    #[test]
    fn test_escape() {
        assert_eq!(escape(b"a\0\t\x0b\xff\"\\"), "a\\0\\t\\x0b\\xff\\\"\\\\");
    }
}
