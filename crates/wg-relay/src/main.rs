//! The `wg-relay` binary.
fn main() {}
