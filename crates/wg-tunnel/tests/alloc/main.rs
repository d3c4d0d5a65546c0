//! The data path allocates nothing per packet once warm (issue 7), checked with
//! `wg_testkit`'s counting global allocator (this integration-test binary only) whose counter
//! is per thread, so
//! parallel tests do not disturb each other: [`bind`] for the UDP socket's batches,
//! [`fastpath`] for the whole device path with the crypto pool.

mod bind;
mod fastpath;

use wg_testkit::{allocations, Counting};

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The allocator is installed in this binary (otherwise the zero-allocation checks here
/// would pass vacuously).
#[test]
fn counting_allocator_is_installed() {
    wg_testkit::assert_counting_installed();
}
