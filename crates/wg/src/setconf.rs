//! `wg setconf` (upstream `src/setconf.c`).

use crate::Invocation;

/// Entry point for `setconf`.
pub(crate) fn main(inv: &Invocation<'_>) -> u8 {
    crate::unimplemented::main(inv)
}
