//! Fuzz target `uapi_request`: see [`wg_fuzz::uapi_request`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wg_fuzz::uapi_request(data));
