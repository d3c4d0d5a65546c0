//! Deterministic randomness for generated test cases.
//!
//! Every generated case gets its own RNG derived from `(seed, case index)`, so a failure report
//! ("seed 0x…, case 1234") reproduces that one case regardless of thread scheduling or of how
//! many cases ran before it. ChaCha8 is used (not `StdRng`) because its stream is portable and
//! fixed across `rand` versions.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The fixed default seed for generated cases.
pub const DEFAULT_SEED: u64 = 0x5747_5f54_4553_5453; // "WG_TESTS"

/// Environment variable overriding [`DEFAULT_SEED`] (decimal or `0x` hex), to explore more
/// cases locally. CI always uses the default.
pub const SEED_ENV: &str = "WG_TESTS_SEED";

/// The seed in effect: `$WG_TESTS_SEED` if set, else [`DEFAULT_SEED`].
pub fn seed() -> u64 {
    match std::env::var(SEED_ENV) {
        Ok(s) => {
            let s = s.trim();
            let parsed = match s.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => s.parse(),
            };
            parsed.unwrap_or_else(|_| panic!("{SEED_ENV}={s:?} is not a u64"))
        }
        Err(_) => DEFAULT_SEED,
    }
}

/// The RNG for case number `case` under `seed`.
pub fn case_rng(seed: u64, case: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(case);
    rng
}

/// Environment variable restricting a generated-case test to one case number, to rerun a
/// reported failure alone: `WG_TESTS_CASE=1234 cargo test -p wg-tests pubkey_matches`.
pub const CASE_ENV: &str = "WG_TESTS_CASE";

/// Whether case number `case` should run (all do unless `$WG_TESTS_CASE` picks one).
pub fn case_selected(case: u64) -> bool {
    match std::env::var(CASE_ENV) {
        Ok(s) => s.trim().parse::<u64>().map_or_else(
            |_| panic!("{CASE_ENV}={s:?} is not a case number"),
            |only| only == case,
        ),
        Err(_) => true,
    }
}
