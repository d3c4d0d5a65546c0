//! `wg genkey` and `wg genpsk` (upstream `src/genkey.c`).
//!
//! Both read 32 bytes from the OS random source and print them as base64. `genkey` clamps the
//! result into a valid Curve25519 scalar; `genpsk` does not. Writing a secret to a regular file
//! that others can read earns the reference's warning, but the key is still written.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;

use wg_config::key::{Key, PresharedKey, PrivateKey, KEY_LEN};
use zeroize::Zeroize;

use crate::output;
use crate::Invocation;

const WORLD_ACCESSIBLE_WARNING: &[u8] =
    b"Warning: writing to world accessible file.\nConsider setting the umask to 077 and trying again.\n";

/// Entry point for both `genkey` and `genpsk`; the subcommand name picks the behaviour.
pub(crate) fn main(inv: &Invocation<'_>) -> u8 {
    let name = inv.args[0].as_bytes();
    if inv.args.len() != 1 {
        return output::usage_error(inv.prog, name);
    }
    if stdout_is_world_accessible_file() {
        output::stderr(WORLD_ACCESSIBLE_WARNING);
    }
    let mut bytes = [0u8; KEY_LEN];
    if let Err(e) = getrandom::getrandom(&mut bytes) {
        let errno = e.raw_os_error().unwrap_or(libc::EIO);
        output::stderr(format!("getrandom: {}\n", output::strerror(errno)).as_bytes());
        return 1;
    }
    let mut line = if name == b"genkey" {
        PrivateKey::from_random(bytes).to_base64()
    } else {
        PresharedKey::from_bytes(bytes).to_base64()
    };
    bytes.zeroize();
    line.push('\n');
    let status = output::stdout(line.as_bytes());
    line.zeroize();
    status
}

/// Whether stdout is a regular file with any permission bit for "other" set.
fn stdout_is_world_accessible_file() -> bool {
    let metadata = io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .and_then(|fd| File::from(fd).metadata());
    match metadata {
        Ok(m) => m.file_type().is_file() && m.permissions().mode() & 0o007 != 0,
        Err(_) => false,
    }
}
