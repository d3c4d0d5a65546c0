//! `wg show` (upstream `src/show.c`).

use crate::Invocation;

/// Entry point for `show`.
pub(crate) fn main(inv: &Invocation<'_>) -> u8 {
    crate::unimplemented::main(inv)
}
