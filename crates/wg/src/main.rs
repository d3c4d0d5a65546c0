//! The `wg` binary: argv to [`wg::run`], its status to the exit code.

use std::ffi::OsString;
use std::io::{self, Write};
use std::process::ExitCode;

fn main() -> ExitCode {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let status = wg::run(&argv);
    // Flush explicitly so a failed flush is reported the same way as a failed write.
    if let Err(e) = io::stdout().flush() {
        if e.kind() != io::ErrorKind::BrokenPipe {
            return ExitCode::FAILURE;
        }
    }
    ExitCode::from(status)
}
