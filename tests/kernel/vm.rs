//! One boot of the test VM for all kernel cases, shared by every test of this module.
//!
//! [`results`] builds the payload (every section of every submodule), runs `scripts/vm/run.sh`
//! once, and keeps the VM's `/out`; each check reads its own sections. A section is a guest shell script run by `prelude.sh`; its
//! directory `/out/<section>/` holds `log`, `status` and the files the section wrote.
//!
//! For development: `WG_TESTS_VM_SECTIONS=show,netns` runs only those sections (and their
//! checks), and `WG_TESTS_VM_OUT=/tmp/vm-out` keeps a copy of the VM's `/out`.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::Instant;

use wg_tests::{cargo_bin, our_wg, our_wg_tunnel, repo_root, Outcome};

/// qemu is killed after this long (the run needs about 130 s of CPU; a busy host stretches it).
const TIMEOUT_SECS: u64 = 900;

/// The guest runner, `/payload/run`.
const PRELUDE: &str = include_str!("prelude.sh");

/// Files and sections shipped to the VM as `/payload`.
#[derive(Default)]
pub(crate) struct Payload {
    files: BTreeMap<String, Vec<u8>>,
    sections: Vec<String>,
}

impl Payload {
    /// Adds `/payload/<path>` (a relative path; directories are created).
    pub(crate) fn file(&mut self, path: &str, contents: impl Into<Vec<u8>>) {
        assert!(
            self.files
                .insert(path.to_owned(), contents.into())
                .is_none(),
            "payload file {path} added twice"
        );
    }

    /// Adds a section: `script` runs in the guest (after the earlier sections) with `$D` =
    /// `/out/<name>`.
    pub(crate) fn section(&mut self, name: &str, script: impl Into<String>) {
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "section name {name:?}"
        );
        self.file(&format!("{name}.sh"), script.into());
        self.sections.push(name.to_owned());
    }

    fn write(&self, dir: &Path) {
        let mut all = self.files.clone();
        all.insert("run".into(), PRELUDE.into());
        let sections: Vec<&str> = self
            .sections
            .iter()
            .map(String::as_str)
            .filter(|s| selected(s))
            .collect();
        all.insert("sections".into(), (sections.join("\n") + "\n").into());
        for (path, contents) in &all {
            let path = dir.join(path);
            std::fs::create_dir_all(path.parent().expect("payload path has a parent"))
                .expect("create payload dir");
            std::fs::write(&path, contents)
                .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        }
        std::fs::set_permissions(dir.join("run"), std::fs::Permissions::from_mode(0o755))
            .expect("chmod run");
    }
}

/// What one VM run left behind.
pub(crate) struct VmRun {
    /// The VM's `/out`, unpacked.
    out: tempfile::TempDir,
    /// The serial console (kernel and payload output).
    console: String,
}

impl VmRun {
    /// The kernel log at the end of the run (`dmesg`, every level).
    pub(crate) fn dmesg(&self) -> String {
        let path = self.out.path().join("dmesg");
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
    }

    /// The directory of `section`, after checking that the section ran and exited 0 (else
    /// panics with its log).
    pub(crate) fn section(&self, name: &str) -> Section {
        let section = self.section_unchecked(name);
        let status = section.read_string("status");
        assert_eq!(
            status.trim(),
            "0",
            "VM section {name} failed (exit {}); its log:\n{}",
            status.trim(),
            section.read_string("log")
        );
        section
    }

    /// The directory of `section`, whatever its status.
    pub(crate) fn section_unchecked(&self, name: &str) -> Section {
        let dir = self.out.path().join(name);
        assert!(
            dir.join("status").is_file(),
            "VM section {name} did not run; console:\n{}",
            self.console
        );
        Section { dir }
    }
}

/// A section's output directory.
pub(crate) struct Section {
    dir: PathBuf,
}

impl Section {
    pub(crate) fn read(&self, file: &str) -> Vec<u8> {
        let path = self.dir.join(file);
        std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
    }

    pub(crate) fn read_string(&self, file: &str) -> String {
        String::from_utf8_lossy(&self.read(file)).into_owned()
    }

    /// The outcome the guest's `ref`/`ours` helper saved as `<name>.<kind>.*`.
    pub(crate) fn outcome(&self, name: &str, kind: &str) -> Outcome {
        let rc = self.read_string(&format!("{name}.{kind}.rc"));
        let code: i32 = rc
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}.{kind}.rc holds {rc:?}"));
        Outcome {
            stdout: self.read(&format!("{name}.{kind}.out")),
            stderr: self.read(&format!("{name}.{kind}.err")),
            // A shell's `$?` above 128 is a signal.
            status: if code > 128 {
                ExitStatus::from_raw(code - 128)
            } else {
                ExitStatus::from_raw(code << 8)
            },
        }
    }

    pub(crate) fn log(&self) -> String {
        self.read_string("log")
    }
}

/// Whether `section` runs: all do, unless `WG_TESTS_VM_SECTIONS=a,b` names some.
pub(crate) fn selected(section: &str) -> bool {
    match std::env::var("WG_TESTS_VM_SECTIONS") {
        Ok(only) => only.split(',').any(|s| s == section),
        Err(_) => true,
    }
}

/// Every section of the kernel tests, in the order they run.
fn payload() -> Payload {
    let mut p = Payload::default();
    super::show::sections(&mut p);
    super::changes::sections(&mut p);
    super::netns::sections(&mut p);
    super::interop::sections(&mut p);
    super::quick::sections(&mut p);
    p.section("no-module", super::show::NO_MODULE_SCRIPT);
    p
}

/// The shared VM run (booted on first use). Panics with the console when the VM itself
/// failed (no kernel, qemu crash, timeout).
pub(crate) fn results() -> &'static VmRun {
    static RUN: OnceLock<Result<VmRun, String>> = OnceLock::new();
    match RUN.get_or_init(boot) {
        Ok(run) => run,
        Err(e) => panic!("{e}"),
    }
}

fn boot() -> Result<VmRun, String> {
    let started = Instant::now();
    let work = tempfile::tempdir().expect("temp dir");
    let payload_dir = work.path().join("payload");
    payload().write(&payload_dir);
    let out = tempfile::tempdir().expect("temp dir");
    let console_path = work.path().join("console.log");
    let console_file = std::fs::File::create(&console_path).expect("create console log");
    let mut command = Command::new(repo_root().join("scripts/vm/run.sh"));
    // Our wg-quick, and bash for hooks and for the reference wg-quick (the `quick` section).
    command.arg("--bin").arg(cargo_bin("wg-quick"));
    command.arg("--bin").arg("/bin/bash");
    // perl (no modules: its builtins only) for the UDP bursts of the `interop` sections.
    command.arg("--bin").arg("/usr/bin/perl");
    let status = command
        .arg("--payload")
        .arg(&payload_dir)
        .arg("--out")
        .arg(out.path())
        .arg("--bin")
        .arg(our_wg())
        .arg("--bin")
        .arg(our_wg_tunnel())
        .arg("--timeout")
        .arg(TIMEOUT_SECS.to_string())
        .stdin(Stdio::null())
        .stdout(console_file.try_clone().expect("dup console log"))
        .stderr(console_file)
        .status()
        .expect("run scripts/vm/run.sh");
    let console = std::fs::read_to_string(&console_path).unwrap_or_default();
    // Straight to stderr, so the cost shows in a normal run.
    let _ = writeln!(
        std::io::stderr(),
        "kernel VM: {status} after {:.1?} ({}); sections: {}",
        started.elapsed(),
        console
            .lines()
            .find_map(|l| l.strip_prefix("run.sh: qemu ran "))
            .unwrap_or("no qemu timing"),
        console
            .lines()
            .filter_map(|l| l.strip_prefix("@@SECTION@@ "))
            .collect::<Vec<_>>()
            .join("; ")
    );
    if let Ok(keep) = std::env::var("WG_TESTS_VM_OUT") {
        // Keep the VM's /out for a look (a copy: the temp dir goes away with the run).
        let _ = Command::new("cp")
            .arg("-a")
            .arg(out.path())
            .arg(&keep)
            .status();
    }
    if status.success() {
        Ok(VmRun { out, console })
    } else {
        Err(format!(
            "scripts/vm/run.sh failed ({status}); console and harness output:\n{console}"
        ))
    }
}
