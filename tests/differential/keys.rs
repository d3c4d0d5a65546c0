//! `wg genkey`, `wg genpsk`, `wg pubkey` (compat 1.6).
//!
//! `pubkey` is diffed against the reference on thousands of generated inputs; genkey/genpsk
//! output is random, so it is checked for form (and clamping), and diffed where deterministic:
//! the world-accessible-file warning, and `pubkey` of a generated key.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rand::{Rng, RngCore};
use rand_chacha::ChaCha8Rng;
use wg_tests::invocation::create_file_with_mode;
use wg_tests::{
    assert_same, case_rng, case_selected, compare, diff_wg, diff_wg_all, our_wg, reference_wg,
    seed, Invocation,
};

/// Number of generated `pubkey` cases (each spawns the reference and ours).
const PUBKEY_CASES: u64 = 4000;

/// The exact warning for a world-accessible stdout file.
const WORLD_WARNING: &[u8] =
    b"Warning: writing to world accessible file.\nConsider setting the umask to 077 and trying again.\n";

const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
/// What the reference treats as trailing whitespace, plus NUL, which it also skips.
const SKIPPABLE: &[u8] = b" \t\n\r\x0b\x0c\0";

fn random_key(rng: &mut ChaCha8Rng) -> [u8; 32] {
    let mut k = [0u8; 32];
    rng.fill_bytes(&mut k);
    k
}

fn clamp(mut k: [u8; 32]) -> [u8; 32] {
    k[0] &= 248;
    k[31] = (k[31] & 127) | 64;
    k
}

fn is_clamped(k: &[u8; 32]) -> bool {
    k[0] & 7 == 0 && k[31] & 0x80 == 0 && k[31] & 0x40 != 0
}

fn b64(k: &[u8; 32]) -> Vec<u8> {
    STANDARD.encode(k).into_bytes()
}

fn pick<'a, T>(rng: &mut ChaCha8Rng, items: &'a [T]) -> &'a T {
    &items[rng.gen_range(0..items.len())]
}

fn bytes_from(rng: &mut ChaCha8Rng, alphabet: &[u8], len: usize) -> Vec<u8> {
    (0..len).map(|_| *pick(rng, alphabet)).collect()
}

/// One generated `pubkey` stdin, with the name of its category (for failure reports).
fn pubkey_input(rng: &mut ChaCha8Rng) -> (&'static str, Vec<u8>) {
    let key = if rng.gen_bool(0.5) {
        clamp(random_key(rng))
    } else {
        random_key(rng)
    };
    let mut k = b64(&key);
    let whitespace = |rng: &mut ChaCha8Rng, max: usize| {
        let n = rng.gen_range(1..=max);
        bytes_from(rng, &SKIPPABLE[..6], n)
    };
    match rng.gen_range(0..17) {
        0 => {
            k.push(b'\n');
            ("valid key + \\n", k)
        }
        1 => ("valid key, no newline", k),
        2 => {
            let n = rng.gen_range(0..=50);
            let mut v = bytes_from(rng, B64, n);
            if rng.gen_bool(0.5) && !v.is_empty() {
                *v.last_mut().expect("non-empty") = b'=';
            }
            if rng.gen_bool(0.5) {
                v.push(b'\n');
            }
            ("wrong length (0..=50 base64 chars)", v)
        }
        3 => {
            let at = rng.gen_range(0..44);
            k[at] = *pick(
                rng,
                b"-_.*!@#$%^&()[]{}~`'\" \t\n\0\x01\x7f\x80\xc3\xff=,;:?",
            );
            ("non-base64 byte inside the key", k)
        }
        4 => {
            // Char 42 carries 4 data bits and 2 padding bits; nonzero padding is noncanonical.
            let v = loop {
                let v = rng.gen_range(0..64);
                if v & 3 != 0 {
                    break v;
                }
            };
            k[42] = B64[v];
            k.push(b'\n');
            ("noncanonical last char", k)
        }
        5 => {
            k.extend(whitespace(rng, 12));
            ("trailing whitespace", k)
        }
        6 => {
            let n = rng.gen_range(1..=12);
            k.extend(bytes_from(rng, SKIPPABLE, n));
            ("trailing NULs and whitespace", k)
        }
        7 => {
            let n = rng.gen_range(0..=4);
            k.extend(bytes_from(rng, SKIPPABLE, n));
            k.push(*pick(rng, b"xA=+/-_#;\x01\x7f\x80\xff\x1f\x0e"));
            let n = rng.gen_range(0..=4);
            k.extend(bytes_from(rng, b"xy \n\0", n));
            ("trailing junk", k)
        }
        8 => {
            let mut v = whitespace(rng, 3);
            v.extend(k);
            if rng.gen_bool(0.5) {
                v.push(b'\n');
            }
            ("leading whitespace", v)
        }
        9 => {
            // Force at least one '+' or '/' so the URL-safe variant really differs.
            k[rng.gen_range(0..42)] = *pick(rng, b"+/");
            for c in &mut k {
                *c = match *c {
                    b'+' => b'-',
                    b'/' => b'_',
                    c => c,
                };
            }
            k.push(b'\n');
            ("URL-safe alphabet", k)
        }
        10 => match rng.gen_range(0..4) {
            0 => {
                k[43] = *pick(rng, B64);
                k.push(b'\n');
                ("'=' replaced by a base64 char", k)
            }
            1 => {
                k.pop();
                k.push(b'\n');
                ("'=' removed, newline in its place", k)
            }
            2 => {
                k.pop();
                ("'=' removed (43 bytes)", k)
            }
            _ => {
                k.push(b'=');
                ("'==' at the end", k)
            }
        },
        11 => {
            let n = rng.gen_range(0..200);
            let mut v = vec![0u8; n];
            rng.fill_bytes(&mut v);
            ("binary garbage", v)
        }
        12 => {
            let n = rng.gen_range(1_000..200_000);
            k.extend(bytes_from(rng, SKIPPABLE, n));
            if rng.gen_bool(0.5) {
                k.push(b'x');
                ("very long: whitespace/NULs then junk", k)
            } else {
                ("very long: whitespace/NULs", k)
            }
        }
        13 => {
            let n = rng.gen_range(1_000..100_000);
            ("very long: base64 chars", bytes_from(rng, B64, n))
        }
        14 => {
            let at = rng.gen_range(0..44);
            k.insert(at, *pick(rng, SKIPPABLE));
            k.push(b'\n');
            ("whitespace/NUL inside the key", k)
        }
        15 => {
            let n = rng.gen_range(30..44);
            k.truncate(n);
            if rng.gen_bool(0.5) {
                k.push(b'\n');
            }
            ("truncated key", k)
        }
        _ => {
            let at = rng.gen_range(0..43);
            k[at] = b'=';
            ("'=' inside the key", k)
        }
    }
}

/// `wg pubkey` is byte-identical to the reference (stdout, stderr, exit status) on
/// [`PUBKEY_CASES`] generated inputs. A failure report names the seed and case numbers; rerun
/// one case alone with `WG_TESTS_CASE=<n>` (and `WG_TESTS_SEED=<seed>` if it was not the default).
#[test]
fn pubkey_matches_reference_on_generated_inputs() {
    let seed = seed();
    let (reference, ours) = (reference_wg(), our_wg());
    let next = AtomicU64::new(0);
    let failures = Mutex::new(Vec::new());
    // Reference outcome classes seen: accepted, wrong length/format, trailing characters.
    let seen = Mutex::new([0u32; 3]);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()) * 2;
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let case = next.fetch_add(1, Ordering::Relaxed);
                if case >= PUBKEY_CASES {
                    break;
                }
                if !case_selected(case) {
                    continue;
                }
                let (kind, input) = pubkey_input(&mut case_rng(seed, case));
                let inv = Invocation::new(["pubkey"]).stdin(input);
                let expected = inv.run(&reference);
                let class = match &expected.stderr[..] {
                    b"" => 0,
                    b"wg: Key is not the correct length or format\n" => 1,
                    _ => 2,
                };
                seen.lock().expect("no poisoning")[class] += 1;
                if let Some(report) = compare(&expected, &inv.run(&ours)) {
                    let msg = format!("=== case {case} ({kind}): {}\n{report}", inv.describe());
                    failures.lock().expect("no poisoning").push((case, msg));
                }
            });
        }
    });
    let mut failures = failures.into_inner().expect("no poisoning");
    failures.sort();
    assert!(
        failures.is_empty(),
        "{} of {PUBKEY_CASES} pubkey cases differ from the reference (seed {seed:#x}); first 10:\n{}",
        failures.len(),
        failures.iter().take(10).map(|(_, m)| m.as_str()).collect::<Vec<_>>().join("\n")
    );
    // The generator must keep exercising every outcome, or this test proves little.
    let seen = seen.into_inner().expect("no poisoning");
    println!("{PUBKEY_CASES} cases, seed {seed:#x}; reference: ok/bad format/trailing = {seen:?}");
    assert!(
        std::env::var_os(wg_tests::rng::CASE_ENV).is_some()
            || seen.iter().all(|&n| n as u64 >= PUBKEY_CASES / 10),
        "generated cases are lopsided (accepted, bad format, trailing): {seen:?}"
    );
}

/// Hand-picked inputs from compat 1.6, named, so a regression reads clearly.
#[test]
fn pubkey_documented_cases_match_reference() {
    let key = "YAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=";
    let inputs: Vec<Vec<u8>> = vec![
        format!("{key}\n").into(),
        format!("{key}\r\n").into(),
        format!("{key}\t \n\n").into(),
        format!("{key}\0\0").into(),
        format!("{key}   ").into(),
        key.into(),
        format!(" {key}").into(),
        key[..43].into(),
        format!("{}\n", &key[..43]).into(),
        format!("{}A\n", &key[..43]).into(),
        format!("{key}x").into(),
        format!("{key}\n\0x").into(),
        b"".to_vec(),
        b"\n".to_vec(),
        vec![b'A'; 44],
        vec![0; 44],
    ];
    diff_wg_all(
        inputs
            .into_iter()
            .map(|i| Invocation::new(["pubkey"]).stdin(i)),
    );
}

/// RFC 7748 section 6.1: Alice's private key gives Alice's public key, in both.
#[test]
fn pubkey_rfc7748_vector() {
    let hex = |s: &str| -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    };
    let private = hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
    let public = hex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
    let out =
        diff_wg(&Invocation::new(["pubkey"]).stdin(format!("{}\n", STANDARD.encode(private))));
    out.assert_code(0, "pubkey of the RFC 7748 vector");
    assert_eq!(
        out.stdout,
        format!("{}\n", STANDARD.encode(public)).into_bytes()
    );
}

/// Runs `wg <sub>` (ours) `n` times in parallel and returns the decoded keys, checking the
/// output form: 44 base64 chars + `\n`, nothing on stderr, exit 0.
fn generate(sub: &str, n: usize) -> Vec<[u8; 32]> {
    let wg = our_wg();
    let next = AtomicU64::new(0);
    let keys = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                while next.fetch_add(1, Ordering::Relaxed) < n as u64 {
                    let out = Invocation::new([sub]).run(&wg);
                    let what = format!("wg {sub}");
                    out.assert_code(0, &what);
                    assert!(out.stderr.is_empty(), "{what}: stderr\n{out:?}");
                    assert_eq!(out.stdout.len(), 45, "{what}: not 44 chars + \\n\n{out:?}");
                    assert_eq!(out.stdout[44], b'\n', "{what}: no final \\n\n{out:?}");
                    let key: [u8; 32] = STANDARD
                        .decode(&out.stdout[..44])
                        .unwrap_or_else(|e| panic!("{what}: not base64 ({e})\n{out:?}"))
                        .try_into()
                        .unwrap_or_else(|_| panic!("{what}: not 32 bytes\n{out:?}"));
                    // Canonical: re-encoding gives the same text.
                    assert_eq!(b64(&key), &out.stdout[..44], "{what}: noncanonical base64");
                    keys.lock().expect("no poisoning").push(key);
                }
            });
        }
    });
    keys.into_inner().expect("no poisoning")
}

#[test]
fn genkey_is_clamped_base64_and_distinct() {
    let keys = generate("genkey", 200);
    for k in &keys {
        assert!(
            is_clamped(k),
            "genkey produced an unclamped key: {}",
            STANDARD.encode(k)
        );
    }
    let distinct: HashSet<_> = keys.iter().collect();
    assert_eq!(distinct.len(), keys.len(), "genkey repeated a key");
}

/// genpsk does not clamp: among 200 keys, some must be unclamped (each random key is clamped
/// with probability 1/32, so all 200 being clamped has probability 2^-1000).
#[test]
fn genpsk_is_base64_distinct_and_not_clamped() {
    let keys = generate("genpsk", 200);
    let distinct: HashSet<_> = keys.iter().collect();
    assert_eq!(distinct.len(), keys.len(), "genpsk repeated a key");
    assert!(
        keys.iter().any(|k| !is_clamped(k)),
        "genpsk output always clamped"
    );
}

/// `wg genkey | wg pubkey` (ours, through a real shell pipe) prints the same public key as
/// the reference's `wg pubkey` of that key (which `tee` copies to stderr).
#[test]
fn genkey_pipe_pubkey_matches_reference() {
    let wg = our_wg();
    let script = r#""$0" genkey | tee /dev/stderr | "$0" pubkey"#;
    for _ in 0..20 {
        let pipeline = Invocation::new(["-c", script, wg.to_str().expect("UTF-8 path")])
            .arg0("sh")
            .run(Path::new("/bin/sh"));
        pipeline.assert_code(0, "wg genkey | wg pubkey");
        let key = pipeline.stderr.clone();
        let reference = Invocation::new(["pubkey"]).stdin(key).run(&reference_wg());
        reference.assert_code(0, "reference wg pubkey of our genkey");
        assert_eq!(
            pipeline.stdout_str(),
            reference.stdout_str(),
            "public key of {:?} differs from the reference's",
            pipeline.stderr_str()
        );
    }
}

/// genkey/genpsk to a regular file with any "other" permission bit: the exact warning on
/// stderr (same bytes as the reference), the key still written, exit 0. No warning for
/// files without "other" bits, nor for non-regular files.
#[test]
fn genkey_world_accessible_file_warning_matches_reference() {
    let dir = tempfile::tempdir().expect("temp dir");
    let wg = our_wg();
    for sub in ["genkey", "genpsk"] {
        for mode in [
            0o644, 0o666, 0o604, 0o602, 0o601, 0o777, 0o600, 0o640, 0o660, 0o700, 0o400,
        ] {
            let path = dir.path().join(format!("{sub}-{mode:o}"));
            create_file_with_mode(&path, mode);
            let inv = Invocation::new([sub]).stdout_file(&path);
            let what = format!("{} (mode {mode:o})", inv.describe());
            let reference = inv.run(&reference_wg());
            assert_key_file(&path, &what);
            let ours = inv.run(&wg);
            assert_same(&what, &reference, &ours);
            ours.assert_code(0, &what);
            let expected: &[u8] = if mode & 0o007 != 0 {
                WORLD_WARNING
            } else {
                b""
            };
            assert_eq!(ours.stderr, expected, "{what}: stderr\n{ours:?}");
            assert_key_file(&path, &what);
        }
        // Not a regular file: no warning even though /dev/null is world-writable.
        let out = diff_wg(&Invocation::new([sub]).stdout_file("/dev/null"));
        assert!(
            out.stderr.is_empty(),
            "wg {sub} > /dev/null warned\n{out:?}"
        );
    }
}

fn assert_key_file(path: &Path, what: &str) {
    let written = std::fs::read(path).expect("read key file");
    assert!(
        written.len() == 45
            && written[44] == b'\n'
            && STANDARD.decode(&written[..44]).is_ok_and(|k| k.len() == 32),
        "{what}: file does not hold one key: {:?}",
        String::from_utf8_lossy(&written)
    );
}
