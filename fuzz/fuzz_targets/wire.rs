//! Fuzz target `wire`: see [`wg_fuzz::wire`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wg_fuzz::wire(data));
