//! Fuzz target `config`: see [`wg_fuzz::config`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wg_fuzz::config(data));
