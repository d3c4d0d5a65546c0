//! Fuzz target `uapi_reply`: see [`wg_fuzz::uapi_reply`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wg_fuzz::uapi_reply(data));
