//! `wg-tunnel [-f|--foreground] IFNAME`: argv and environment to [`wg_tunnel::run`], errors
//! to stderr, result to the exit code.

use std::process::ExitCode;

fn main() -> ExitCode {
    let foreground = std::env::var("WG_PROCESS_FOREGROUND").ok();
    let log_level = std::env::var("LOG_LEVEL").ok();
    let options = match wg_tunnel::Options::parse(
        std::env::args_os(),
        foreground.as_deref(),
        log_level.as_deref(),
    ) {
        Ok(options) => options,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match wg_tunnel::run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e:#}");
            ExitCode::FAILURE
        }
    }
}
