//! Writing to stdout and stderr the way the reference does, with Rust's error handling.
//!
//! Output is raw bytes, because program names and interface names need not be UTF-8. A closed
//! pipe on stdout (`wg genkey | head -c0`) is not an error: the process exits 0, as `puts` in
//! the reference would. Any other write error is reported and turns the exit status to 1, so a
//! full disk can never leave a silently truncated key file behind.

use std::io::{self, Write};

/// Writes `bytes` to stdout; returns the exit status to use (0 or 1).
pub(crate) fn stdout(bytes: &[u8]) -> u8 {
    match io::stdout().lock().write_all(bytes) {
        Ok(()) => 0,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => 0,
        Err(e) => {
            stderr(format!("Unable to write output: {e}\n").as_bytes());
            1
        }
    }
}

/// Writes `bytes` to stderr, ignoring failure (there is nowhere left to report it).
pub(crate) fn stderr(bytes: &[u8]) {
    let _ = io::stderr().lock().write_all(bytes);
}

/// Prints `Usage: <prog> <subcommand>` to stderr, the usage of the argument-less commands.
pub(crate) fn usage_error(prog: &[u8], subcommand: &[u8]) -> u8 {
    let mut text = b"Usage: ".to_vec();
    text.extend_from_slice(prog);
    text.push(b' ');
    text.extend_from_slice(subcommand);
    text.push(b'\n');
    stderr(&text);
    1
}

/// The C library's `strerror` text for an errno value, without Rust's ` (os error N)` suffix,
/// so messages read exactly like the reference's `perror` output.
pub(crate) fn strerror(errno: i32) -> String {
    let text = io::Error::from_raw_os_error(errno).to_string();
    match text.rfind(" (os error ") {
        Some(cut) => text[..cut].to_owned(),
        None => text,
    }
}
