//! Deterministic randomness for generated test cases.
//!
//! Every generated case gets its own RNG derived from `(seed, case index)`, so a failure report
//! ("seed 0x…, case 1234") reproduces that one case regardless of thread scheduling or of how
//! many cases ran before it. ChaCha8 is used (not `StdRng`) because its stream is portable and
//! fixed across `rand` versions.

use std::net::{Ipv4Addr, Ipv6Addr};

use rand::seq::SliceRandom;
use rand::{Rng, RngCore, SeedableRng};
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

// Random values for the generated device states (`show`, `kernel`).

/// A random IPv4 address.
pub fn random_v4(rng: &mut ChaCha8Rng) -> Ipv4Addr {
    Ipv4Addr::from(rng.next_u32())
}

/// A v6 address with runs of zero groups, so `::` compression is exercised.
pub fn random_v6(rng: &mut ChaCha8Rng) -> Ipv6Addr {
    let mut g = [0u16; 8];
    for x in &mut g {
        if rng.gen_bool(0.6) {
            *x = rng.gen();
        }
    }
    match rng.gen_range(0..10) {
        0 => random_v4(rng).to_ipv6_mapped(),
        1 => Ipv6Addr::new(0xfe80, 0, 0, 0, g[4], g[5], g[6], g[7]),
        _ => Ipv6Addr::from(g),
    }
}

/// A random allowed-IP text: the catch-alls, common and random prefix lengths, v4 and v6.
pub fn random_cidr(rng: &mut ChaCha8Rng) -> String {
    match rng.gen_range(0..20) {
        0 => "0.0.0.0/0".into(),
        1 => "::/0".into(),
        2..=10 => {
            let cidr = *[32, 32, 24, 16, 8, 0, rng.gen_range(0..=32)]
                .choose(rng)
                .expect("non-empty");
            format!("{}/{cidr}", random_v4(rng))
        }
        _ => {
            let cidr = *[128, 128, 64, 48, 0, rng.gen_range(0..=128)]
                .choose(rng)
                .expect("non-empty");
            format!("{}/{cidr}", random_v6(rng))
        }
    }
}

/// A random endpoint text (`None` a third of the time), v4 or bracketed v6, edge ports too.
pub fn random_endpoint(rng: &mut ChaCha8Rng) -> Option<String> {
    let port = *[1, 51820, 65535, rng.gen_range(1..=65535)]
        .choose(rng)
        .expect("non-empty");
    match rng.gen_range(0..6) {
        0 | 1 => None,
        2 | 3 => Some(format!("{}:{port}", random_v4(rng))),
        _ => Some(format!("[{}]:{port}", random_v6(rng))),
    }
}
