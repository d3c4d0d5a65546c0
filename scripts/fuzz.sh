#!/bin/sh
# Runs every fuzz target (or the ones named) for SECONDS each, one after another, single
# process, at low priority: scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Uses cargo-fuzz (installed into $WG_CACHE/cargo-fuzz if missing) on the stable toolchain
# through RUSTC_BOOTSTRAP=1. New corpus entries go to fuzz/work/<target> (not committed; the
# committed seeds in fuzz/corpus/<target> are only read), crashes to fuzz/artifacts/<target>.
# Each run's log is fuzz/work/<target>.log; a summary line per run (execs, seconds, corpus
# size, crashes) is printed and appended to fuzz/work/summary.txt.
set -eu
cd "$(dirname "$0")/.."
secs=${1:-60}
[ $# -gt 0 ] && shift
targets=${*:-"config quick uapi_request uapi_reply netlink wire handshake"}

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
