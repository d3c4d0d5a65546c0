//! `wg-quick [ up | down | save | strip ] [ CONFIG_FILE | INTERFACE ]`: a drop-in replacement
//! for wireguard-tools' Linux `wg-quick` (upstream HEAD `src/wg-quick/linux.bash`).
//!
//! This file is the script's top level: the usage text, the dispatch on argv, re-execution
//! through sudo when not root, and the environment the reference sets up (`LC_ALL=C`, the
//! program's own directory first in PATH, so a sibling `wg-tunnel` wins). `config` finds and
//! parses the file, `plan` decides what to do, `linux` reads the system, `exec` does it.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

mod config;
mod exec;
mod linux;
mod plan;
mod sys;

use exec::{Failure, Runner};

/// The usage text, with `{PROGRAM}` for the program name.
const USAGE: &str = "\
Usage: {PROGRAM} [ up | down | save | strip ] [ CONFIG_FILE | INTERFACE ]

  CONFIG_FILE is a configuration file, whose filename is the interface name
  followed by `.conf'. Otherwise, INTERFACE is an interface name, with
  configuration found at /etc/wireguard/INTERFACE.conf. It is to be readable
  by wg(8)'s `setconf' sub-command, with the exception of the following additions
  to the [Interface] section, which are handled by {PROGRAM}:

  - Address: may be specified one or more times and contains one or more
    IP addresses (with an optional CIDR mask) to be set for the interface.
  - DNS: an optional DNS server to use while the device is up.
  - MTU: an optional MTU for the interface; if unspecified, auto-calculated.
  - Table: an optional routing table to which routes will be added; if
    unspecified or `auto', the default table is used. If `off', no routes
    are added.
  - PreUp, PostUp, PreDown, PostDown: script snippets which will be executed
    by bash(1) at the corresponding phases of the link, most commonly used
    to configure DNS. The string `%i' is expanded to INTERFACE.
  - SaveConfig: if set to `true', the configuration is saved from the current
    state of the interface upon shutdown.

See wg-quick(8) for more info and examples.
";

fn usage(program: &str) {
    exec::stderr(&config::unlatin1(&USAGE.replace("{PROGRAM}", program)));
}

/// `PATH="${SELF%/*}:$PATH"` and `LC_ALL=C`, inherited by everything we run.
fn set_environment() {
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.canonicalize().ok())
        .and_then(|exe| exe.parent().map(|dir| dir.to_owned()))
    {
        let mut path = dir.into_os_string();
        path.push(":");
        path.push(std::env::var_os("PATH").unwrap_or_default());
        std::env::set_var("PATH", path);
    }
    std::env::set_var("LC_ALL", "C");
}

/// `auto_su`: when not root, become root through sudo, running ourselves with the same
/// arguments. Returns only if that could not be started.
fn auto_su(program: &str, args: &[OsString]) -> Result<(), Failure> {
    if sys::uid() == 0 {
        return Ok(());
    }
    let Some(sudo) = linux::find_program("sudo") else {
        exec::stderr(format!("{program}: exec: sudo: not found\n").as_bytes());
        return Err(Failure(127));
    };
    let exe = std::env::current_exe().unwrap_or_else(|_| "wg-quick".into());
    let prompt =
        format!("{program} must be run as root. Please enter the password for %u to continue: ");
    let error = Command::new(sudo)
        .arg0("sudo")
        .arg("-p")
        .arg(prompt)
        .arg("--")
        .arg(exe)
        .args(args)
        .exec();
    let error = std::io::Error::from_raw_os_error(error.raw_os_error().unwrap_or(libc::EIO));
    exec::stderr(format!("{program}: exec: sudo: {}\n", exec::strerror(&error)).as_bytes());
    Err(Failure(126))
}

fn run(argv: &[OsString]) -> Result<(), Failure> {
    set_environment();
    let argv0 = argv.first().map_or(&b"wg-quick"[..], |a| a.as_bytes());
    let base = &argv0[argv0.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1)..];
    let program = config::latin1(base);
    let args = &argv[argv.len().min(1)..];
    let command = args.first().map(|a| a.as_bytes());
    match (args.len(), command) {
        (1, Some(b"--help" | b"-h" | b"help")) => {
            usage(&program);
            return Ok(());
        }
        (2, Some(b"up" | b"down" | b"save" | b"strip")) => {}
        _ => {
            usage(&program);
            return Err(Failure(1));
        }
    }
    auto_su(&program, args)?;
    let file = config::load(&args[1]).map_err(|message| exec::die(&program, &message))?;
    let context = exec::Invocation {
        script: std::env::current_exe()
            .and_then(|exe| exe.canonicalize())
            .map(|exe| exe.into_os_string())
            .unwrap_or_else(|_| OsString::from(&program)),
    };
    let mut runner = Runner::new(&program, context, &file);
    match command {
        Some(b"up") => runner.up(),
        Some(b"down") => runner.down(),
        Some(b"save") => runner.save(),
        _ => runner.strip(),
    }
}

fn main() -> ExitCode {
    let argv: Vec<OsString> = std::env::args_os().collect();
    match run(&argv) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(status)) => ExitCode::from(status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_usage_mentions_program() {
        let text = USAGE.replace("{PROGRAM}", "wg-quick");
        assert!(text.starts_with("Usage: wg-quick [ up | down | save | strip ]"));
        assert!(text.contains("which are handled by wg-quick:\n"));
        assert!(text.ends_with("more info and examples.\n"));
    }
}
