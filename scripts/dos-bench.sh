#!/usr/bin/env bash
# Denial-of-service benchmark (not a CI test): a wg-tunnel under a handshake-initiation flood
# while a legitimate peer keeps a ping and an iperf3 TCP transfer going.
#
#   scripts/dos-bench.sh [SECONDS]     # per flood mode, default 20; needs root
#   MODES="valid random valid:20000" scripts/dos-bench.sh   # MODE[:PPS], PPS caps the flood
#   IPERF_BITRATE=0 scripts/dos-bench.sh    # iperf3 -b: 50M by default, 0 = as fast as TCP can
#   MODES=fresh scripts/dos-bench.sh 60     # fresh handshakes under a full-rate valid flood
#
# Topology, all in private namespaces (the script re-executes itself in its own mount
# namespace with a tmpfs /run, so nothing it creates is visible on the host):
#
#   netns dosA: wg-tunnel wgA (10.88.0.1) on veth 10.77.0.1/16, port 51820
#   netns dosB: wireguard-go wgB (10.88.0.2), the legitimate peer, on veth 10.77.0.2/16;
#               the flooder (tools/flood, one thread) sends from 254 more addresses
#               10.77.1.1-254 on the same veth (spoofed sources that can still read replies)
#
# Two modes, one after the other: `valid` (random initiations with a correct MAC1 for wgA's
# public key: they pass the cheap check, so wgA goes under load and must answer with cookie
# replies instead of doing Diffie-Hellman) and `random` (random MAC1: dropped after one MAC).
# The default MODES are a baseline without flood (`none`), both modes at full rate, then both
# capped at 20000 datagrams/s, then `fresh`: under a full-rate valid flood, the legitimate
# peer is removed and added again (a new handshake from nothing, cookie round trip included)
# as many times as fit, each time timing how long until a ping gets through (no transfer
# then; it fails if none does). The transfer is paced (iperf3 -b 50M) so that the ping
# measures the flood, not a TCP transfer filling the daemon's UDP receive queue by itself.
# Printed per mode: flood rate, replies and cookie replies the flooder received, ping loss
# (must be < 1%), whether the iperf3 transfer completed and its throughput, wgA's RSS
# before / peak during / after, and the datagrams the kernel dropped because wgA's UDP receive
# queue was full (RcvbufErrors in dosA: loss that happens before wg-tunnel sees a packet),
# and the same per socket of the port (wg-tunnel holds it with a data socket and a handshake
# socket; listed in order of creation).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
secs=${1:-20}
modes=${MODES:-none valid random valid:20000 random:20000 fresh}
bitrate=${IPERF_BITRATE:-50M}

if [[ -z ${DOS_BENCH_INNER:-} ]]; then
	[[ $(id -u) -eq 0 ]] || { echo "dos-bench: needs root" >&2; exit 1; }
	cargo build --release -p wg-tunnel -p wg
	cargo build --release --manifest-path tools/flood/Cargo.toml
	exec unshare -m --propagation private env DOS_BENCH_INNER=1 "$0" "$@"
fi

mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -p /run/netns
repo=$PWD
wg_tunnel=$repo/target/release/wg-tunnel
wg=$repo/target/release/wg
flood=$repo/tools/flood/target/release/wg-flood
A="ip netns exec dosA"
B="ip netns exec dosB"
tmp=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	ip netns del dosA 2>/dev/null || true
	ip netns del dosB 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT

ip netns add dosA
ip netns add dosB
ip link add vA netns dosA type veth peer name vB netns dosB
$A ip link set lo up
$B ip link set lo up
$A ip addr add 10.77.0.1/16 dev vA
$B ip addr add 10.77.0.2/16 dev vB
for i in $(seq 1 254); do $B ip addr add "10.77.1.$i/16" dev vB; done
$A ip link set vA up
$B ip link set vB up

$A env LOG_LEVEL=error "$wg_tunnel" -f wgA >"$tmp/wgA.log" 2>&1 &
tunnel_pid=$!
pids+=("$tunnel_pid")
$B env LOG_LEVEL=error wireguard-go -f wgB >"$tmp/wgB.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
	[[ -S /run/wireguard/wgA.sock && -S /run/wireguard/wgB.sock ]] && break
	sleep 0.1
done
umask 077
"$wg" genkey >"$tmp/a.key"
"$wg" genkey >"$tmp/b.key"
pub_a=$("$wg" pubkey <"$tmp/a.key")
pub_b=$("$wg" pubkey <"$tmp/b.key")
$A "$wg" set wgA private-key "$tmp/a.key" listen-port 51820 peer "$pub_b" allowed-ips 10.88.0.2/32
$B "$wg" set wgB private-key "$tmp/b.key" peer "$pub_a" endpoint 10.77.0.1:51820 allowed-ips 10.88.0.1/32
$A ip addr add 10.88.0.1/24 dev wgA
$B ip addr add 10.88.0.2/24 dev wgB
$A ip link set wgA up
$B ip link set wgB up
$B ping -c 3 -W 2 -q 10.88.0.1 >/dev/null || { echo "dos-bench: tunnel does not come up" >&2; cat "$tmp"/*.log >&2; exit 1; }

rss() { awk '/^VmRSS/ { print $2 }' "/proc/$tunnel_pid/status"; }
# The Udp RcvbufErrors counter of netns dosA.
rcvbuf_errors() {
	$A awk '/^Udp:/ { if (!n) { for (i = 1; i <= NF; i++) col[$i] = i; n = 1 } else print $col["RcvbufErrors"] }' /proc/net/snmp
}
# The drops counter of each socket bound to port 51820 in dosA, in order of creation (inode).
socket_drops() {
	$A awk '$2 ~ /:CA6C$/ { print $10, $NF }' /proc/net/udp /proc/net/udp6 | sort -n | awk '{ print $2 }' | paste -sd' '
}
# Per-socket differences between two socket_drops outputs.
drops_delta() {
	paste -d' ' <(tr ' ' '\n' <<<"$1") <(tr ' ' '\n' <<<"$2") | awk '{ printf "%s%d", (NR > 1 ? ", " : ""), $2 - $1 }'
}
sources=()
for i in $(seq 1 254); do sources+=("10.77.1.$i"); done

$A iperf3 -s -D -I "$tmp/iperf.pid" >/dev/null
sleep 0.5
pids+=("$(cat "$tmp/iperf.pid")")

echo "dos-bench: ${secs}s per mode; wg-tunnel pid $tunnel_pid; $(nproc) cores"
failed=0
run=0
for spec in $modes; do
	run=$((run + 1))
	mode=${spec%%:*}
	pps=0
	[[ $spec == *:* ]] && pps=${spec#*:}
	before=$(rss)
	drops_before=$(rcvbuf_errors)
	per_socket_before=$(socket_drops)
	if [[ $mode == fresh ]]; then
		$B "$flood" 10.77.0.1:51820 "$pub_a" valid "$secs" "${sources[@]}" >"$tmp/flood.$run" &
		flood_pid=$!
		sleep 2
		times=()
		end=$((SECONDS + secs - 3))
		while ((SECONDS < end)); do
			$B "$wg" set wgB peer "$pub_a" remove
			$B "$wg" set wgB peer "$pub_a" endpoint 10.77.0.1:51820 allowed-ips 10.88.0.1/32
			start=$(date +%s.%N)
			ok=no
			while ((SECONDS < end)); do
				if $B ping -c 1 -W 1 -q 10.88.0.1 >/dev/null 2>&1; then ok=yes; break; fi
			done
			took=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
			# An attempt cut short by the end of the run is shown as such, not as a failure.
			[[ $ok == yes ]] && times+=("${took}s") || times+=("(unfinished at the end: ${took}s)")
		done
		wait "$flood_pid" || true
		echo "mode=fresh $(cat "$tmp/flood.$run")"
		echo "mode=fresh handshake from nothing to first ping under the flood: ${times[*]}"
		echo "mode=fresh wg-tunnel RSS KiB: before $before, after $(rss)"
		echo "mode=fresh datagrams dropped at full queues: $(($(rcvbuf_errors) - drops_before)) (per socket: $(drops_delta "$per_socket_before" "$(socket_drops)"))"
		if [[ " ${times[*]} " != *[0-9]s\ * ]]; then
			echo "mode=fresh FAIL: no handshake completed"
			failed=1
		fi
		continue
	fi
	pings=$((secs * 50))
	$B ping -i 0.02 -c "$pings" -q 10.88.0.1 >"$tmp/ping.$run" 2>&1 &
	ping_pid=$!
	$B iperf3 -c 10.88.0.1 -t "$secs" -b "$bitrate" >"$tmp/iperf.$run" 2>&1 &
	iperf_pid=$!
	sleep 1
	if [[ $mode == none ]]; then
		sleep "$((secs - 2))" && echo "no flood" >"$tmp/flood.$run" &
	else
		$B env FLOOD_PPS="$pps" "$flood" 10.77.0.1:51820 "$pub_a" "$mode" "$((secs - 2))" "${sources[@]}" >"$tmp/flood.$run" &
	fi
	flood_pid=$!
	peak=$before
	while kill -0 "$flood_pid" 2>/dev/null; do
		r=$(rss)
		((r > peak)) && peak=$r
		sleep 1
	done
	wait "$flood_pid" || true
	iperf_ok=yes
	wait "$iperf_pid" || iperf_ok=no
	wait "$ping_pid" || true
	sleep 3
	after=$(rss)
	drops=$(($(rcvbuf_errors) - drops_before))
	per_socket=$(drops_delta "$per_socket_before" "$(socket_drops)")
	label=$mode
	[[ $pps == 0 ]] || label="$mode(cap $pps/s)"
	loss=$(sed -n 's/.* \([0-9.]*\)% packet loss.*/\1/p' "$tmp/ping.$run")
	rate=$(awk '/receiver$/ { print $7, $8 }' "$tmp/iperf.$run")
	[[ -n $rate ]] || iperf_ok=no
	echo "mode=$label $(cat "$tmp/flood.$run")"
	echo "mode=$label ping: $(grep -o '[0-9]* packets transmitted, [0-9]* received' "$tmp/ping.$run"), loss ${loss:-?}%"
	echo "mode=$label iperf3 TCP transfer completed: $iperf_ok (${rate:-no result})"
	echo "mode=$label wg-tunnel RSS KiB: before $before, peak during $peak, after $after"
	echo "mode=$label datagrams dropped at wgA's full UDP receive queue: $drops (per socket: $per_socket)"
	if [[ -z $loss ]] || awk -v l="$loss" 'BEGIN { exit !(l >= 1) }'; then
		echo "mode=$label FAIL: ping loss not under 1%"
		failed=1
	fi
	[[ $iperf_ok == yes ]] || { echo "mode=$label FAIL: transfer did not complete"; failed=1; }
	if [[ $spec == valid* ]] && ! grep -q 'cookie_replies=[1-9]' "$tmp/flood.$run"; then
		echo "mode=$label FAIL: no cookie replies"
		failed=1
	fi
done
kill -0 "$tunnel_pid" 2>/dev/null || { echo "FAIL: wg-tunnel died"; cat "$tmp/wgA.log"; failed=1; }
exit $failed
