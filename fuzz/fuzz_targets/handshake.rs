//! Fuzz target `handshake`: see [`wg_fuzz::handshake`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wg_fuzz::handshake(data));
