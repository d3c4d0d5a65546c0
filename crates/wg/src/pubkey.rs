//! `wg pubkey` (upstream `src/pubkey.c`): private key on stdin, public key on stdout.
//!
//! Exactly 44 bytes are read as the key. After them, NUL bytes and whitespace may follow until
//! end of input; anything else is an error, and that check comes before the key itself is
//! decoded, as in the reference.

use std::io::{self, Read};

use wg_config::key::{Key, PrivateKey, KEY_B64_LEN};
use zeroize::Zeroize;

use crate::output;
use crate::Invocation;

/// Entry point for `pubkey`.
pub(crate) fn main(inv: &Invocation<'_>) -> u8 {
    use std::os::unix::ffi::OsStrExt;

    if inv.args.len() != 1 {
        return output::usage_error(inv.prog, inv.args[0].as_bytes());
    }
    let fail = |what: &str| {
        let mut text = inv.prog.to_vec();
        text.extend_from_slice(format!(": {what}\n").as_bytes());
        output::stderr(&text);
        1
    };
    let mut stdin = io::stdin().lock();
    let mut text = [0u8; KEY_B64_LEN];
    if read_full(&mut stdin, &mut text) != KEY_B64_LEN {
        text.zeroize();
        return fail("Key is not the correct length or format");
    }
    if !only_blank_remains(&mut stdin) {
        text.zeroize();
        return fail("Trailing characters found after key");
    }
    let key = std::str::from_utf8(&text)
        .ok()
        // A NUL byte ends the C string early, so the reference sees a short key.
        .filter(|s| !s.contains('\0'))
        .and_then(|s| PrivateKey::from_base64(s).ok());
    text.zeroize();
    let Some(key) = key else {
        return fail("Key is not the correct length or format");
    };
    let mut line = key.public_key().to_base64();
    line.push('\n');
    output::stdout(line.as_bytes())
}

/// Reads until `buf` is full or input ends (or fails); returns how many bytes were read.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> usize {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    filled
}

/// Consumes the rest of the input; true if it held only NUL bytes and C whitespace.
fn only_blank_remains(input: &mut impl Read) -> bool {
    let mut chunk = [0u8; 4096];
    loop {
        match input.read(&mut chunk) {
            Ok(0) => return true,
            Ok(n) => {
                if !chunk[..n]
                    .iter()
                    .all(|&c| matches!(c, 0 | b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r'))
                {
                    return false;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // A read error ends the input for getc() too.
            Err(_) => return true,
        }
    }
}
