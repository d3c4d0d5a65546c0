#!/usr/bin/env bash
# Benchmark (not a test): `wg setconf` then `wg showconf` of a large configuration, ours
# against the reference, on the same wireguard-go device, in a private namespace.
#
#   scripts/bench-conf.sh [PEERS] [IPS_PER_PEER] [ROUNDS]     (defaults: 5000 10 5)
#
#   +------------------------------------------------+
#   | private net+mount namespace, tmpfs on /run      |
#   |   wireguard-go wgbench  <-- UAPI -->  wg (ours) |
#   |                                       wg (ref)  |
#   +------------------------------------------------+
#
# Rounds are interleaved (reference, ours, reference, ours, ...) and each prints its time; the
# summary gives the median of each tool and the ratio ours/reference (below 1 means faster).
set -euo pipefail
cd "$(dirname "$0")/.."

peers=${1:-5000} ips=${2:-10} rounds=${3:-5}
[[ $(id -u) -eq 0 ]] || { echo "bench-conf.sh: needs root (namespaces)" >&2; exit 1; }
command -v wireguard-go >/dev/null && [[ -x /usr/bin/wg ]] || {
    echo "bench-conf.sh: needs wireguard-go and wireguard-tools (scripts/test.sh installs them)" >&2
    exit 1
}
cargo build --release --quiet -p wg
ours=$PWD/target/release/wg

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - "$peers" "$ips" > "$work/big.conf" <<'PY'
import base64, os, sys
peers, ips = int(sys.argv[1]), int(sys.argv[2])
key = lambda: base64.b64encode(os.urandom(32)).decode()
print("[Interface]\nPrivateKey = %s\nListenPort = 51820\n" % key())
n = 0
for p in range(peers):
    print("[Peer]\nPublicKey = %s" % key())
    items = []
    for _ in range(ips):
        items.append("10.%d.%d.%d/32" % (n >> 16 & 255, n >> 8 & 255, n & 255))
        n += 1
    print("AllowedIPs = %s\nEndpoint = 192.0.2.%d:%d\n" % (", ".join(items), p % 250 + 1, 1024 + p))
PY

unshare --mount --net --propagation private bash -s "$ours" "$work" "$rounds" <<'INNER'
set -euo pipefail
ours=$1 work=$2 rounds=$3
mount -t tmpfs tmpfs /run
ip link set lo up
wireguard-go wgbench >/dev/null 2>&1
now() { date +%s.%N; }
declare -A times
for ((r = 1; r <= rounds; r++)); do
    for who in reference ours; do
        bin=/usr/bin/wg; [[ $who == ours ]] && bin=$ours
        t0=$(now)
        "$bin" setconf wgbench "$work/big.conf"
        "$bin" showconf wgbench > "$work/out.$who"
        t1=$(now)
        t=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f", b - a }')
        times[$who]+="$t "
        printf 'round %d %-9s %.3f s\n' "$r" "$who" "$t"
    done
done
median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ref=$(echo "${times[reference]}" | median)
our=$(echo "${times[ours]}" | median)
printf 'median reference %.3f s, ours %.3f s, ratio ours/reference %.2f\n' "$ref" "$our" "$(awk -v a="$our" -v b="$ref" 'BEGIN { printf "%.6f", a / b }')"
sort "$work/out.reference" > "$work/a"; sort "$work/out.ours" > "$work/b"; diff "$work/a" "$work/b" | head -5 >&2 || true
cmp -s "$work/a" "$work/b" && echo "showconf outputs agree (as sorted lines)" || echo "WARNING: showconf outputs differ"
INNER
