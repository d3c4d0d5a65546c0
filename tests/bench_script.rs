//! `scripts/bench.sh`, the performance benchmark of issue 7: not run here (it takes minutes and
//! measures time); checked that it parses, that `--help` documents its settings, that a bad
//! argument is refused, and that its report (`scripts/bench/report.py`) turns samples into the
//! tables, ratios against wireguard-go from the same round, and the targets' verdicts.

use std::process::Command;

use wg_tests::repo_root;

fn bench_sh() -> std::path::PathBuf {
    repo_root().join("scripts/bench.sh")
}

#[test]
fn bench_script_parses() {
    let out = Command::new("bash")
        .arg("-n")
        .arg(bench_sh())
        .output()
        .expect("run bash -n");
    assert!(
        out.status.success(),
        "bash -n scripts/bench.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn bench_script_help_documents_its_settings() {
    for flag in ["--help", "-h"] {
        let out = Command::new(bench_sh())
            .arg(flag)
            .output()
            .expect("run scripts/bench.sh --help");
        assert!(out.status.success(), "bench.sh {flag}: {:?}", out.status);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.starts_with("usage: scripts/bench.sh"), "{text}");
        for setting in [
            "ROUNDS=",
            "DURATION=",
            "OUT=",
            "MTU=",
            "UDP_LEN=",
            "UDP_WINDOW=",
            "IMPLS=",
        ] {
            assert!(
                text.contains(setting),
                "--help does not mention {setting}:\n{text}"
            );
        }
    }
    let out = Command::new(bench_sh())
        .arg("--bogus")
        .output()
        .expect("run scripts/bench.sh --bogus");
    assert_eq!(out.status.code(), Some(2), "a bad argument is refused");
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage:"));
}

/// Two rounds of made-up samples: medians, min–max, same-round ratios, and verdicts.
#[test]
fn bench_report_computes_medians_ratios_and_targets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let samples = dir.path().join("s.csv");
    let summary = dir.path().join("s.json");
    let mut csv = String::from("round,impl,metric,value\n");
    for (round, wgo, ours, bt) in [(1, 0.5, 2.5, 0.6), (2, 1.0, 3.0, 0.4)] {
        csv += &format!("{round},wireguard-go,tcp1_gbps,{wgo}\n");
        csv += &format!("{round},wg-tunnel,tcp1_gbps,{ours}\n");
        csv += &format!("{round},boringtun,tcp1_gbps,{bt}\n");
        csv += &format!("{round},wg-tunnel,rss_load_mib,40\n");
        // The default-buffer UDP run is reported, never judged: 2× and 2.5×.
        csv += &format!("{round},wireguard-go,udp_defbuf_kpps,{}\n", wgo * 100.0);
        let udp_ratio = if round == 1 { 2.0 } else { 2.5 };
        csv += &format!(
            "{round},wg-tunnel,udp_defbuf_kpps,{}\n",
            wgo * 100.0 * udp_ratio
        );
    }
    std::fs::write(&samples, csv).expect("write samples");
    let out = Command::new("python3")
        .arg(repo_root().join("scripts/bench/report.py"))
        .args([&samples, &summary])
        .output()
        .expect("run python3 scripts/bench/report.py");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "report.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Medians with min–max: ours 2.75 (2.50–3.00); wireguard-go 0.750 (0.500–1.00).
    assert!(
        text.contains("| TCP 1 stream (Gbit/s) | 2.75 (2.50–3.00) | 0.750 (0.500–1.00) | 0.500 (0.400–0.600) |"),
        "{text}"
    );
    // Same-round ratios 5× and 3× (median 4×), not the ratio of medians (3.67×).
    assert!(text.contains("| 4.00× (3.00–5.00) |"), "{text}");
    assert!(
        text.contains("TCP 1 stream ≥ 4× wireguard-go: met (4.00×)"),
        "{text}"
    );
    // Against boringtun: 2.5/0.6 = 4.17, 3.0/0.4 = 7.5.
    assert!(
        text.contains("TCP 1 stream ≥ 3× boringtun: met (5.83×)"),
        "{text}"
    );
    assert!(
        text.contains("RSS under load ≤ 32 MiB: NOT met (40.0 MiB)"),
        "{text}"
    );
    assert!(
        text.contains("UDP received pps ≥ 3× wireguard-go: not measured"),
        "{text}"
    );
    assert!(
        text.contains("| UDP received, default socket buffer (kpps) |"),
        "{text}"
    );
    assert!(
        text.contains("for reference, UDP received pps with the default socket buffer: 2.25×"),
        "{text}"
    );
    let json = std::fs::read_to_string(&summary).expect("summary JSON written");
    assert!(json.contains("\"tcp1_gbps\""), "{json}");
}
