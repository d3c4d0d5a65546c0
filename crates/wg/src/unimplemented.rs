//! Placeholder for the subcommands that need a backend (show, showconf, set and the *conf
//! family). They arrive with the UAPI backend; until then they say so and exit 1.

use std::os::unix::ffi::OsStrExt;

use crate::output;
use crate::Invocation;

/// Entry point for every subcommand that is not implemented yet.
pub(crate) fn main(inv: &Invocation<'_>) -> u8 {
    let mut text = inv.prog.to_vec();
    text.extend_from_slice(b": `");
    text.extend_from_slice(inv.args[0].as_bytes());
    text.extend_from_slice(b"' is not implemented yet\n");
    output::stderr(&text);
    1
}
