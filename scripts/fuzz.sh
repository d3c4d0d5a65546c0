#!/bin/sh
# Runs every fuzz target (or the ones named) for SECONDS each, one after another, single
# process, at low priority: scripts/fuzz.sh [SECONDS] [TARGET...]
#
# scripts/fuzz.sh --smoke [SECONDS] is the CI stage (scripts/test.sh): no cargo-fuzz; the
# targets are built with the same coverage instrumentation through plain RUSTFLAGS (stable
# flags), then each runs over its committed seeds and fuzzes for SECONDS (default 3) in a
# throw-away corpus. Fails on the first crash.
#
# Uses cargo-fuzz (installed into $WG_CACHE/cargo-fuzz if missing) on the stable toolchain
# through RUSTC_BOOTSTRAP=1. New corpus entries go to fuzz/work/<target> (not committed; the
# committed seeds in fuzz/corpus/<target> are only read), crashes to fuzz/artifacts/<target>.
# Each run's log is fuzz/work/<target>.log; a summary line per run (execs, seconds, corpus
# size, crashes) is printed and appended to fuzz/work/summary.txt.
set -eu
cd "$(dirname "$0")/.."
all_targets="config quick uapi_request uapi_reply netlink wire handshake offload"

if [ "${1:-}" = --smoke ]; then
    secs=${2:-3}
    host=$(rustc -vV | sed -n 's/^host: //p')
    RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks" \
        cargo build --release --quiet --manifest-path fuzz/Cargo.toml --target "$host" \
        --target-dir fuzz/target/smoke --bins
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    for t in $all_targets; do
        mkdir "$tmp/$t"
        if ! "fuzz/target/smoke/$host/release/$t" -max_total_time="$secs" -timeout=10 \
            -print_final_stats=1 -artifact_prefix="$tmp/" "$tmp/$t" "fuzz/corpus/$t" \
            >"$tmp/$t.log" 2>&1; then
            tail -n 60 "$tmp/$t.log"
            echo "fuzz smoke: $t FAILED (reproduce: scripts/fuzz.sh 60 $t)" >&2
            exit 1
        fi
        execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$tmp/$t.log")
        echo "fuzz smoke: $t: $execs execs in ${secs}s, no crash"
    done
    exit 0
fi

secs=${1:-60}
[ $# -gt 0 ] && shift
targets=${*:-$all_targets}

export RUSTC_BOOTSTRAP=1
cache=${WG_CACHE:-$HOME/.cache/wg-rs}
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    if [ ! -x "$cache/cargo-fuzz/bin/cargo-fuzz" ]; then
        cargo install cargo-fuzz --locked --root "$cache/cargo-fuzz"
    fi
    PATH=$cache/cargo-fuzz/bin:$PATH
fi

# No sanitizer by default: the parsers are safe Rust, and the throughput is better spent on
# more inputs. FUZZ_SANITIZER=address for a run under ASan.
san=${FUZZ_SANITIZER:-none}
mkdir -p fuzz/work
for t in $targets; do
    mkdir -p "fuzz/work/$t" "fuzz/artifacts/$t"
    log=fuzz/work/$t.log
    crashes_before=$(ls "fuzz/artifacts/$t" | wc -l)
    status=0
    nice -n 19 cargo fuzz run --fuzz-dir fuzz -s "$san" -a "$t" "fuzz/work/$t" "fuzz/corpus/$t" -- \
        -max_total_time="$secs" -timeout=10 -print_final_stats=1 \
        -artifact_prefix="fuzz/artifacts/$t/" >"$log" 2>&1 || status=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
    took=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -n1)
    corpus=$(ls "fuzz/work/$t" | wc -l)
    crashes=$(( $(ls "fuzz/artifacts/$t" | wc -l) - crashes_before ))
    line="$(date -u +%FT%TZ) $t: ${execs:-?} execs in ${took:-?} s, corpus $corpus (+ $(ls "fuzz/corpus/$t" | wc -l) seeds), $crashes new crashes, exit $status"
    echo "$line" | tee -a fuzz/work/summary.txt
    [ "$status" = 0 ] || tail -n 40 "$log"
done
