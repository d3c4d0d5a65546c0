//! Reads a wg-quick configuration file (path in argv, or stdin), parses it with the wg-quick
//! and wg(8) parsers, and prints it back. Errors are reported the reference way: wg-quick
//! errors as `wg-quick: <message>`, wg(8) errors as `<message>` then
//! `Configuration parsing error`; warnings go to stderr. Exit status 1 on error.
//!
//! Usage: `cargo run -p wg-config --example roundtrip -- [CONFIG_FILE]`

use std::io::Read as _;
use std::process::ExitCode;

use wg_config::{QuickParser, Warning};

fn main() -> ExitCode {
    let text = match std::env::args_os().nth(1) {
        Some(path) => std::fs::read(&path).map_err(|err| format!("fopen: {err}")),
        None => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .map(|_| buf)
                .map_err(|err| format!("read: {err}"))
        }
    };
    let text = match text {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::FAILURE;
        }
    };

    let config = match QuickParser::parse_str(&text) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("wg-quick: {err}");
            return ExitCode::FAILURE;
        }
    };
    // Check the wg(8) part too, as `wg addconf` would when the interface comes up.
    match config.wg_device() {
        Ok((_, warnings)) => warnings.iter().for_each(|w: &Warning| eprintln!("{w}")),
        Err(err) => {
            eprintln!("{err}");
            eprintln!("Configuration parsing error");
            return ExitCode::FAILURE;
        }
    }
    print!("{config}");
    ExitCode::SUCCESS
}
