#!/usr/bin/env bash
# Soak test (not in CI): iperf3 through a pair of wg-tunnel daemons for a long time with rekeys
# happening, sampling each daemon's RSS and open file descriptors.
#
#   scripts/soak.sh [SECONDS]       # default 1800 (30 minutes); needs root
#   REKEY_EVERY=60 SAMPLE_EVERY=10 scripts/soak.sh 180
#
# Two network namespaces joined by a veth (soakA 10.66.0.1, soakB 10.66.0.2), wg-tunnel in each
# (tunnel addresses 10.99.0.1 / 10.99.0.2), one iperf3 TCP transfer A -> B for the whole run.
# Rekeys: besides the protocol's own (a new handshake every 2 minutes of traffic), every
# REKEY_EVERY seconds B gets a fresh private key and A replaces B's peer entry (remove the old
# public key, add the new one with the same endpoint and allowed IPs), which forces a new
# handshake and exercises peer removal and creation. Every SAMPLE_EVERY seconds one CSV row:
# seconds, RSS (KiB) and fd count of each daemon, handshakes seen so far
# (soak-YYYYmmddTHHMMSS.csv in the current directory, or $SOAK_CSV).
#
# At the end: the handshake count, whether iperf3 completed, and per daemon whether RSS and fds
# are flat: the mean of the last three samples against the mean of the three samples after the
# first minute (warm-up); RSS may grow by at most 10% or 1 MiB, fds by at most 2.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
duration=${1:-1800}
rekey_every=${REKEY_EVERY:-60}
sample_every=${SAMPLE_EVERY:-10}

if [[ -z ${SOAK_INNER:-} ]]; then
	[[ $(id -u) -eq 0 ]] || { echo "soak: needs root" >&2; exit 1; }
	cargo build --release -p wg-tunnel -p wg
	csv=${SOAK_CSV:-$PWD/soak-$(date -u +%Y%m%dT%H%M%S).csv}
	exec unshare -m --propagation private env SOAK_INNER=1 SOAK_CSV="$csv" "$0" "$@"
fi

mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -p /run/netns
repo=$PWD
wg=$repo/target/release/wg
A="ip netns exec soakA"
B="ip netns exec soakB"
tmp=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	ip netns del soakA 2>/dev/null || true
	ip netns del soakB 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT

ip netns add soakA
ip netns add soakB
ip link add vA netns soakA type veth peer name vB netns soakB
$A ip link set lo up
$B ip link set lo up
$A ip addr add 10.66.0.1/24 dev vA
$B ip addr add 10.66.0.2/24 dev vB
$A ip link set vA up
$B ip link set vB up
$A env LOG_LEVEL=error "$repo/target/release/wg-tunnel" -f wgA >"$tmp/wgA.log" 2>&1 &
pid_a=$!
pids+=("$pid_a")
$B env LOG_LEVEL=error "$repo/target/release/wg-tunnel" -f wgB >"$tmp/wgB.log" 2>&1 &
pid_b=$!
pids+=("$pid_b")
for _ in $(seq 100); do
	[[ -S /run/wireguard/wgA.sock && -S /run/wireguard/wgB.sock ]] && break
	sleep 0.1
done
umask 077
"$wg" genkey >"$tmp/a.key"
"$wg" genkey >"$tmp/b.key"
pub_a=$("$wg" pubkey <"$tmp/a.key")
pub_b=$("$wg" pubkey <"$tmp/b.key")
$A "$wg" set wgA private-key "$tmp/a.key" listen-port 51820 \
	peer "$pub_b" endpoint 10.66.0.2:51820 allowed-ips 10.99.0.2/32
$B "$wg" set wgB private-key "$tmp/b.key" listen-port 51820 \
	peer "$pub_a" endpoint 10.66.0.1:51820 allowed-ips 10.99.0.1/32
$A ip addr add 10.99.0.1/24 dev wgA
$B ip addr add 10.99.0.2/24 dev wgB
$A ip link set wgA up
$B ip link set wgB up
$A ping -c 3 -W 2 -q 10.99.0.2 >/dev/null || { echo "soak: tunnel does not come up" >&2; cat "$tmp"/*.log >&2; exit 1; }

$B iperf3 -s -D -I "$tmp/iperf.pid" >/dev/null
sleep 0.5
pids+=("$(cat "$tmp/iperf.pid")")
$A iperf3 -c 10.99.0.2 -t "$duration" -i 0 >"$tmp/iperf.out" 2>&1 &
iperf_pid=$!

rss() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }
fds() { ls "/proc/$1/fd" | wc -l; }
# Distinct handshake times A has seen for its (current) peer.
last_hs=0
handshakes=0
count_handshake() {
	local t
	t=$($A "$wg" show wgA latest-handshakes | awk '{ print $2 }' | sort -n | tail -n1)
	if [[ -n $t && $t != 0 && $t != "$last_hs" ]]; then
		handshakes=$((handshakes + 1))
		last_hs=$t
	fi
}

csv=$SOAK_CSV
echo "seconds,rss_a_kib,fds_a,rss_b_kib,fds_b,handshakes" >"$csv"
echo "soak: ${duration}s, rekey every ${rekey_every}s, sample every ${sample_every}s -> $csv"
start=$SECONDS
next_rekey=$rekey_every
next_sample=0
while ((SECONDS - start < duration)); do
	now=$((SECONDS - start))
	count_handshake
	if ((now >= next_rekey)); then
		"$wg" genkey >"$tmp/b.key"
		new_b=$("$wg" pubkey <"$tmp/b.key")
		$B "$wg" set wgB private-key "$tmp/b.key"
		$A "$wg" set wgA peer "$pub_b" remove peer "$new_b" endpoint 10.66.0.2:51820 allowed-ips 10.99.0.2/32
		pub_b=$new_b
		next_rekey=$((next_rekey + rekey_every))
	fi
	if ((now >= next_sample)); then
		echo "$now,$(rss "$pid_a"),$(fds "$pid_a"),$(rss "$pid_b"),$(fds "$pid_b"),$handshakes" | tee -a "$csv"
		next_sample=$((next_sample + sample_every))
	fi
	sleep 1
done
iperf_ok=yes
wait "$iperf_pid" || iperf_ok=no
grep -q 'receiver$' "$tmp/iperf.out" || iperf_ok=no
echo "soak: $handshakes handshakes seen; iperf3 completed: $iperf_ok ($(awk '/receiver$/ { print $7, $8 }' "$tmp/iperf.out"))"

# Flatness: mean of the last three samples against the mean of the first three after 60 s.
verdict=0
for col in 2:rss_a 3:fds_a 4:rss_b 5:fds_b; do
	i=${col%%:*} name=${col#*:}
	read -r base tail < <(awk -F, -v c="$i" 'NR > 1 && $1 >= 60 { v[n++] = $c }
		END { if (n < 6) { print "? ?"; exit } printf "%.0f %.0f\n", (v[0]+v[1]+v[2])/3, (v[n-1]+v[n-2]+v[n-3])/3 }' "$csv")
	if [[ $base == "?" ]]; then
		echo "soak: $name: too few samples after the first minute to judge"
		continue
	fi
	if [[ $name == rss* ]]; then
		limit=$((base / 10 > 1024 ? base / 10 : 1024))
	else
		limit=2
	fi
	if ((tail - base > limit)); then
		echo "soak: $name NOT flat: $base -> $tail"
		verdict=1
	else
		echo "soak: $name flat: $base -> $tail"
	fi
done
[[ $iperf_ok == yes ]] || verdict=1
for p in "$pid_a" "$pid_b"; do kill -0 "$p" 2>/dev/null || { echo "soak: a daemon died"; cat "$tmp"/wg*.log; verdict=1; }; done
exit $verdict
