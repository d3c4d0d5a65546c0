//! Colour handling for the pretty `wg show` output (upstream `src/terminal.c`).
//!
//! Text is written with ANSI escapes in place. When colour is off, each written piece is
//! filtered: every `ESC [` and everything after it up to and including the next ASCII letter
//! is dropped. The filter works on one piece at a time, like the reference's one
//! `terminal_printf` call, so pieces are kept the same shape as the reference's calls.

use std::io::IsTerminal;

/// Reset all attributes.
pub(crate) const RESET: &str = "\x1b[0m";
/// Bold.
pub(crate) const BOLD: &str = "\x1b[1m";
/// Green foreground.
pub(crate) const GREEN: &str = "\x1b[32m";
/// Yellow foreground.
pub(crate) const YELLOW: &str = "\x1b[33m";
/// Cyan foreground.
pub(crate) const CYAN: &str = "\x1b[36m";
/// Red foreground.
pub(crate) const RED: &str = "\x1b[31m";

/// An output buffer that applies the colour filter to each piece written to it.
pub(crate) struct Terminal {
    colour: bool,
    out: Vec<u8>,
}

impl Terminal {
    /// Colour follows `WG_COLOR_MODE` (`always`, `never`), else whether stdout is a terminal.
    pub(crate) fn from_env() -> Terminal {
        let colour = match std::env::var_os("WG_COLOR_MODE") {
            Some(v) if v == "always" => true,
            Some(v) if v == "never" => false,
            _ => std::io::stdout().is_terminal(),
        };
        Terminal {
            colour,
            out: Vec::new(),
        }
    }

    /// Writes one piece, filtered when colour is off.
    pub(crate) fn print(&mut self, piece: &[u8]) {
        if self.colour {
            self.out.extend_from_slice(piece);
        } else {
            strip_escapes(piece, &mut self.out);
        }
    }

    /// The bytes written so far.
    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.out
    }
}

/// Appends `piece` to `out` without its `ESC [ … letter` sequences. As in the reference, a
/// sequence that starts in the last two bytes of the piece is left alone.
fn strip_escapes(piece: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < piece.len() {
        if i + 2 < piece.len() && piece[i] == 0x1b && piece[i + 1] == b'[' {
            // Skip up to and including the first ASCII letter, or to the end of the piece.
            let end = piece[i + 2..].iter().position(u8::is_ascii_alphabetic);
            i = end.map_or(piece.len(), |e| i + 2 + e + 1);
        } else {
            out.push(piece[i]);
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strip(s: &str) -> String {
        let mut out = Vec::new();
        strip_escapes(s.as_bytes(), &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn test_strip() {
        assert_eq!(
            strip("\x1b[0m\x1b[32m\x1b[1minterface\x1b[0m: wg0\n"),
            "interface: wg0\n"
        );
        assert_eq!(strip("a\x1b[36m/\x1b[0m32"), "a/32");
        // An unterminated sequence swallows the rest of the piece.
        assert_eq!(strip("x\x1b[123"), "x");
        // A sequence starting in the last two bytes is kept.
        assert_eq!(strip("ab\x1b["), "ab\x1b[");
    }
}
