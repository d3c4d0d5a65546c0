//! Fuzz target `offload`: see [`wg_fuzz::offload`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wg_fuzz::offload(data));
