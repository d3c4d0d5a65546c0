//! `wg-relay`: argv to [`wg_relay::Options`], then [`wg_relay::run`]; errors to stderr.

use std::process::ExitCode;

fn main() -> ExitCode {
    let options = match wg_relay::Options::parse(std::env::args_os().skip(1)) {
        Ok(options) => options,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match wg_relay::run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wg-relay: {e}");
            ExitCode::FAILURE
        }
    }
}
