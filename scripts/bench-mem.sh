#!/usr/bin/env bash
# Benchmark (not a test): idle memory (RSS) of the userspace WireGuard implementations, side by
# side in one run: our wg-tunnel (release build), Debian's wireguard-go and boringtun-cli, each
# with one configured peer, then each with PEERS peers (bytes per peer = the growth / PEERS-1).
#
#   scripts/bench-mem.sh [PEERS]        (default 10000; root; run scripts/test.sh once first,
#                                        it installs wireguard-go, wg and boringtun)
#
#   +---------------- private net+mount namespace, tmpfs on /run ----------------+
#   | wg-tunnel -f wgt0   wireguard-go -f wgg0   boringtun-cli -f ... wgb0        |
#   |   each: private key, listen port, 1 peer (endpoint, allowed-ips), link up    |
#   |   settle, read VmRSS; then `wg setconf` PEERS peers, settle, read VmRSS      |
#   +------------------------------------------------------------------------------+
set -euo pipefail
cd "$(dirname "$0")/.."

peers=${1:-10000}
[[ $(id -u) -eq 0 ]] || { echo "bench-mem.sh: needs root (namespaces)" >&2; exit 1; }
boringtun=${CARGO_TARGET_DIR:-target}/tools/bin/boringtun-cli
for f in /usr/bin/wg /usr/bin/wireguard-go "$boringtun"; do
	[[ -x $f ]] || { echo "bench-mem.sh: $f missing: run scripts/test.sh once (it installs it)" >&2; exit 1; }
done
cargo build --release --quiet -p wg-tunnel
ours=$PWD/${CARGO_TARGET_DIR:-target}/release/wg-tunnel
boringtun=$(realpath "$boringtun")

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# PEERS random public keys (any 32 bytes are a valid X25519 public key), one /32 each.
python3 - "$peers" > "$work/peers.conf" <<'PY'
import base64, os, sys
print("[Interface]")
for n in range(int(sys.argv[1])):
    key = base64.b64encode(os.urandom(32)).decode()
    print("[Peer]\nPublicKey = %s\nAllowedIPs = 10.%d.%d.%d/32\nEndpoint = 192.0.2.%d:%d\n"
          % (key, n >> 16 & 255, n >> 8 & 255, n & 255, n % 250 + 1, 1024 + n % 60000))
PY

unshare --mount --net --propagation private bash -s "$ours" "$boringtun" "$work" "$peers" <<'INNER'
set -euo pipefail
ours=$1 boringtun=$2 work=$3 peers=$4
umask 077
mount -t tmpfs -o mode=0755 tmpfs /run
ip link set lo up
declare -A pid
"$ours" -f wgt0 >"$work/wgt0.log" 2>&1 & pid[wg-tunnel]=$!
/usr/bin/wireguard-go -f wgg0 >"$work/wgg0.log" 2>&1 & pid[wireguard-go]=$!
"$boringtun" -f --disable-drop-privileges wgb0 >"$work/wgb0.log" 2>&1 & pid[boringtun]=$!
declare -A ifname=([wg-tunnel]=wgt0 [wireguard-go]=wgg0 [boringtun]=wgb0)
order=(wg-tunnel wireguard-go boringtun)
for who in "${order[@]}"; do
	for _ in $(seq 100); do [[ -S /run/wireguard/${ifname[$who]}.sock ]] && break; sleep 0.1; done
	[[ -S /run/wireguard/${ifname[$who]}.sock ]] || { echo "$who did not start:" >&2; cat "$work/${ifname[$who]}.log" >&2; exit 1; }
done
rss() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
port=51900
declare -A one many
for who in "${order[@]}"; do
	dev=${ifname[$who]}
	wg genkey > "$work/$dev.key"
	wg set "$dev" private-key "$work/$dev.key" listen-port $((port++)) \
		peer "$(wg genkey | wg pubkey)" endpoint 192.0.2.1:51820 allowed-ips 10.255.0.1/32
	ip link set "$dev" up
done
sleep 2
for who in "${order[@]}"; do one[$who]=$(rss "${pid[$who]}"); done
for who in "${order[@]}"; do
	dev=${ifname[$who]}
	wg addconf "$dev" "$work/peers.conf"
	n=$(wg show "$dev" peers | wc -l)
	[[ $n -eq $((peers + 1)) ]] || { echo "$who: $n peers after addconf" >&2; exit 1; }
done
sleep 2
for who in "${order[@]}"; do many[$who]=$(rss "${pid[$who]}"); done
printf '\nIdle RSS (VmRSS), one run; the right-hand columns after adding %s peers\n\n' "$peers"
row() { printf '| %-14s | %14s | %18s | %14s |\n' "$@"; }
row implementation "1 peer (KiB)" "$((peers + 1)) peers (KiB)" "bytes per peer"
row -------------- -------------: -----------------: -------------:
for who in "${order[@]}"; do
	row "$who" "${one[$who]}" "${many[$who]}" $(( (many[$who] - one[$who]) * 1024 / peers ))
done
for who in "${order[@]}"; do kill "${pid[$who]}" 2>/dev/null || true; done
wait 2>/dev/null || true
INNER
