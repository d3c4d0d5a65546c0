//! Fuzz target `netlink`: see [`wg_fuzz::netlink`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wg_fuzz::netlink(data));
