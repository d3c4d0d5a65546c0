//! Helpers for the workspace crates' own tests (a dev-dependency only, never shipped):
//!
//! * [`Counting`], a global allocator that counts allocations per thread, for the tests that
//!   prove the data path allocates nothing per packet. A test binary installs it with
//!   `#[global_allocator] static GLOBAL: wg_testkit::Counting = wg_testkit::Counting;` and
//!   reads [`allocations`]; the count is per thread, so parallel tests do not disturb it.
//! * [`ipv4_packet`], a minimal IPv4 packet to feed a tunnel.
//! * [`uapi_set`], a UAPI `set` body parsed into the model's delta.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use wg_config::uapi::{Request, RequestParser};
use wg_config::Device;

/// A global allocator that defers to the system's and counts, per thread, every allocation
/// and reallocation.
#[derive(Debug)]
pub struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: defers every operation to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Allocations made so far by the calling thread (with [`Counting`] installed; 0 otherwise).
pub fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// Panics unless [`Counting`] is the calling binary's global allocator: a test of each
/// allocation-counting binary calls it, so that its zero-allocation checks cannot pass
/// vacuously.
pub fn assert_counting_installed() {
    let before = allocations();
    let boxed = std::hint::black_box(Box::new([0u8; 64]));
    assert!(
        allocations() > before,
        "the counting allocator is not installed"
    );
    drop(boxed);
}

/// A minimal IPv4 packet from `src` to `dst` carrying `payload` (protocol UDP, no options,
/// the header checksum left zero: a tunnel does not check it).
pub fn ipv4_packet(src: [u8; 4], dst: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let len = 20 + payload.len();
    let mut p = vec![
        0x45,
        0,
        (len >> 8) as u8,
        len as u8,
        0,
        0,
        0,
        0,
        64,
        17,
        0,
        0,
    ];
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(payload);
    p
}

/// A UAPI `set` body (its lines without `set=1` and the closing blank line), parsed; panics
/// on a line the parser refuses.
pub fn uapi_set(body: &str) -> Device {
    let mut parser = RequestParser::new();
    parser.line("set=1").unwrap();
    for line in body.lines() {
        assert_eq!(parser.line(line).unwrap(), None, "{line}");
    }
    match parser.line("").unwrap() {
        Some(Request::Set(delta)) => delta,
        other => panic!("{other:?}"),
    }
}
