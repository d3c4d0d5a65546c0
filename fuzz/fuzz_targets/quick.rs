//! Fuzz target `quick`: see [`wg_fuzz::quick`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wg_fuzz::quick(data));
