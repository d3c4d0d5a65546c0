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
//!
//! (Later issues append the HEAD-vs-1.0.20210914 differences of compat.md section 8 as they
//! reach them, e.g. `wg show all endpoints` naming the interface on every line.)

mod dispatch;
mod keys;
