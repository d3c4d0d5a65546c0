//! `wg set` (upstream `src/set.c`).

use crate::Invocation;

/// Entry point for `set`.
pub(crate) fn main(inv: &Invocation<'_>) -> u8 {
    crate::unimplemented::main(inv)
}
