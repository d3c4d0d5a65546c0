//! `wg showconf` (upstream `src/showconf.c`).

use crate::Invocation;

/// Entry point for `showconf`.
pub(crate) fn main(inv: &Invocation<'_>) -> u8 {
    crate::unimplemented::main(inv)
}
