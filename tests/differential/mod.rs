//! Differential tests: our `wg` against the installed reference `wg` (Debian wireguard-tools
//! 1.0.20210914), same argv (argv\[0\] = `wg`), stdin and environment; stdout, stderr and exit
//! status must be byte-identical (see `wg_tests::diff_wg`).
//!
//! # KNOWN_DIFFERENCES
//!
//! Every deliberate difference from the installed reference is listed here, with the test that
//! checks our side instead of diffing (compat.md: "differential tests against the installed
//! Debian version must list each such known difference explicitly").
//!
//! 1. **Version string** (`wg -v`, `wg --version`, `wg version`): the reference prints
//!    `wireguard-tools v1.0.20210914 - https://git.zx2c4.com/wireguard-tools/\n`; ours prints
//!    our own version. Only a single stdout line starting with `wireguard-tools v`, empty stderr
//!    and exit 0 are checked: `dispatch::version_has_reference_form`.
//! 2. **`wg show all endpoints` names the interface on every line** (compat 2.3 and 8, fixed
//!    upstream in 2023). 1.0.20210914 prints `IF\t` once per interface, before its first peer
//!    line only, and with no peers a bare `IF\t` with no newline at all; HEAD (and ours) print
//!    `IF\t` before every peer line and nothing for an interface without peers. The `show`
//!    tests compare ours against the reference's output with the prefix re-applied to every
//!    peer line (`show::head_all_endpoints`, using each interface's known peer count), in every
//!    test that runs `wg show all endpoints`.
//! 3. **Interface names of 16 bytes or more on the kernel path** (compat 1.7 and 8, 2023): HEAD
//!    fails with ENAMETOOLONG before asking the kernel, so `wg show <16+ byte name>` and
//!    `wg showconf …` print `Unable to access interface: File name too long`; 1.0.20210914
//!    passes the name on and (without the kernel module) prints `Protocol not supported`.
//!    Expected = the reference's outcome with that strerror text replaced:
//!    `show::show_error_forms`.
//!
//! 4. **`set`, `setconf`, `addconf`, `syncconf`**: HEAD's `wg set` usage line, `+`/`-`
//!    allowed-ips prefixes, syncconf's reset of a preshared key or keepalive missing from the
//!    file, and this project's refusal of ports above 65535 and of service-name ports. Listed
//!    one by one, with the tests that pin each, in the module docs of `tests/set.rs`.
//!
//! (Later issues append the other HEAD-vs-1.0.20210914 differences of compat.md section 8 as
//! they reach them.)

mod dispatch;
mod keys;
