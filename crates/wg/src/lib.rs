//! `wg`: a drop-in replacement for wireguard-tools' wg(8), as a library so that `wg-quick` can
//! run its subcommands in-process (as the reference runs `wg`).
//!
//! This file is the dispatcher of `src/wg.c`: a static table of subcommands, the usage, help
//! and version text, and the exit codes. Each subcommand lives in the module named after its
//! upstream file. Exit codes are only ever 0 and 1, as in the reference.

use std::ffi::OsString;

mod genkey;
mod output;
mod pubkey;
mod set;
mod setconf;
mod show;
mod showconf;
mod terminal;

pub use setconf::addconf_text;

/// What every subcommand receives: the program name and its own argv (argv[0] is the
/// subcommand's name, as in the reference, which passes `argv + 1`).
pub(crate) struct Invocation<'a> {
    /// `argv[0]` exactly as invoked; it appears in usage lines and error prefixes.
    pub(crate) prog: &'a [u8],
    /// The subcommand's arguments, starting with the subcommand name itself.
    pub(crate) args: &'a [OsString],
}

/// A subcommand entry point; returns the process exit status (0 or 1).
type Subcommand = fn(&Invocation<'_>) -> u8;

/// The subcommand table, in the reference's order (`src/wg.c`).
const SUBCOMMANDS: &[(&str, Subcommand, &str)] = &[
    (
        "show",
        show::main,
        "Shows the current configuration and device information",
    ),
    (
        "showconf",
        showconf::main,
        "Shows the current configuration of a given WireGuard interface, for use with `setconf'",
    ),
    (
        "set",
        set::main,
        "Change the current configuration, add peers, remove peers, or change peers",
    ),
    (
        "setconf",
        setconf::main,
        "Applies a configuration file to a WireGuard interface",
    ),
    (
        "addconf",
        setconf::main,
        "Appends a configuration file to a WireGuard interface",
    ),
    (
        "syncconf",
        setconf::main,
        "Synchronizes a configuration file to a WireGuard interface",
    ),
    (
        "genkey",
        genkey::main,
        "Generates a new private key and writes it to stdout",
    ),
    (
        "genpsk",
        genkey::main,
        "Generates a new preshared key and writes it to stdout",
    ),
    (
        "pubkey",
        pubkey::main,
        "Reads a private key from stdin and writes a public key to stdout",
    ),
];

/// The upstream wireguard-tools release whose behaviour this `wg` follows.
const COMPAT_VERSION: &str = "1.0.20260223";

fn usage(prog: &[u8]) -> Vec<u8> {
    let mut text = Vec::new();
    text.extend_from_slice(b"Usage: ");
    text.extend_from_slice(prog);
    text.extend_from_slice(b" <cmd> [<args>]\n\nAvailable subcommands:\n");
    for (name, _, description) in SUBCOMMANDS {
        text.extend_from_slice(format!("  {name}: {description}\n").as_bytes());
    }
    text.extend_from_slice(b"You may pass `--help' to any of these subcommands to view usage.\n");
    text
}

/// Runs `wg` with `argv` (`argv[0]` is the program name); returns the exit status (0 or 1).
/// Output goes to the process's stdout and stderr.
pub fn run(argv: &[OsString]) -> u8 {
    use std::os::unix::ffi::OsStrExt;

    let prog = argv.first().map_or(&b"wg"[..], |a| a.as_bytes());
    let arg1 = argv.get(1).map(|a| a.as_bytes());
    if argv.len() == 2 {
        match arg1 {
            Some(b"-v" | b"--version" | b"version") => {
                let line = format!(
                    "wireguard-tools v{COMPAT_VERSION} (wg-rs {}) - https://git.zx2c4.com/wireguard-tools/\n",
                    env!("CARGO_PKG_VERSION")
                );
                return output::stdout(line.as_bytes());
            }
            Some(b"-h" | b"--help" | b"help") => return output::stdout(&usage(prog)),
            _ => {}
        }
    }
    let show = [OsString::from("show")];
    let (name, args) = match arg1 {
        // No arguments behaves exactly like `wg show`.
        None => ("show".as_bytes(), &show[..]),
        Some(name) => (name, &argv[1..]),
    };
    let Some((_, subcommand, _)) = SUBCOMMANDS.iter().find(|(n, _, _)| n.as_bytes() == name) else {
        let mut text = b"Invalid subcommand: `".to_vec();
        text.extend_from_slice(name);
        text.extend_from_slice(b"'\n");
        text.extend_from_slice(&usage(prog));
        output::stderr(&text);
        return 1;
    };
    subcommand(&Invocation { prog, args })
}
