#!/usr/bin/env bash
# Benchmark (not a test): throughput, latency, start-up, CPU and memory of the userspace
# WireGuard implementations, side by side in one run (issue 7):
#   wg-tunnel (ours, target/release), wireguard-go (Debian, /usr/bin/wireguard-go),
#   boringtun-cli (target/tools/bin, as scripts/test.sh installs it) and the bare veth
#   without a tunnel as the ceiling, interleaved over ROUNDS rounds (the order rotates).
#
#   +--- ns A (wgbench-PID-a) ---+  veth 10.77.0.1/24 -- 10.77.0.2/24  +--- ns B ---------+
#   | daemon wga 10.78.0.1/24    | <--------------------------------> | daemon wgb .2/24 |
#   | ping, iperf3 client        |   WireGuard UDP port 51820         | iperf3 -s        |
#   +----------------------------+                                    +------------------+
#
# Everything runs in a private mount namespace (tmpfs on /run, so the UAPI sockets and
# /run/netns are private) and in two network namespaces of its own; no host interface is
# touched. Run as root.
set -euo pipefail

usage() {
	cat <<'USAGE'
usage: scripts/bench.sh [-h|--help]

Benchmarks wg-tunnel, wireguard-go, boringtun-cli and the bare veth (root; two private
network namespaces joined by veth). Environment:
  ROUNDS=3        rounds; each runs every implementation once, the order rotating
  DURATION=10     seconds per iperf3 TCP test (1 stream, -P 4, -R)
  UDP_DURATION=   seconds of the iperf3 UDP test (default: DURATION)
  UDP_LEN=1400    iperf3 UDP payload bytes (-u -l UDP_LEN -b UDP_RATE)
  UDP_RATE=0      iperf3 UDP target rate (0: as fast as the sender goes; e.g. 2G)
  UDP_WINDOW=4M   socket buffer of both iperf3 ends in the UDP test (iperf3 -w; empty: the
                  system default, 208 KiB). 4M is net.core.rmem_max here, the most an
                  application may ask for unprivileged. The UDP test also runs once with the
                  default buffer, reported on its own rows: there the receiving iperf3, not
                  the tunnel, is what drops (see README)
  MTU=1440        tunnel MTU of every implementation (1440 so that 1400-byte UDP payloads
                  travel unfragmented; the veth keeps 1500)
  PINGS=200       pings at 10 ms intervals for RTT mean and p99
  IMPLS="raw wg-tunnel wireguard-go boringtun"   what to run
  OUT=            also write the Markdown table to this file, and OUT.csv (every sample)
                  and OUT.json (the summary) next to it (default: target/bench/bench.md)
Measures, per implementation and round: TCP Gbit/s (1 stream, 4 streams, reverse), UDP
received kpps, loss % and the % of the sent datagrams dropped for want of room at the
receiving iperf3's socket and at the receiving daemon's (with UDP_WINDOW and with the
default buffer), ping RTT mean and p99, time from starting the daemons to the
first ping reply (daemons + wg setconf + addresses + link up + handshake), daemon CPU
(utime+stime of both daemons over the 1-stream TCP run), RSS idle (configured, before any
traffic) and peak RSS during the TCP runs (the larger of the two daemons). Reports medians
and min-max, and each as a ratio against wireguard-go from the same round, then checks
issue 7's targets. The load average is recorded: other work on the machine distorts this.
USAGE
}
case ${1:-} in
-h | --help) usage; exit 0 ;;
"") ;;
*) usage >&2; exit 2 ;;
esac

cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3} DURATION=${DURATION:-10} UDP_DURATION=${UDP_DURATION:-${DURATION:-10}}
UDP_LEN=${UDP_LEN:-1400} UDP_RATE=${UDP_RATE:-0} MTU=${MTU:-1440} PINGS=${PINGS:-200}
UDP_WINDOW=${UDP_WINDOW-4M}
IMPLS=${IMPLS:-raw wg-tunnel wireguard-go boringtun}
export ROUNDS DURATION UDP_DURATION UDP_LEN UDP_RATE UDP_WINDOW MTU PINGS IMPLS

if [[ -z ${WG_BENCH_INNER:-} ]]; then
	[[ $(id -u) -eq 0 ]] || { echo "bench.sh: needs root (namespaces)" >&2; exit 1; }
	for f in iperf3 ping jq python3 ip unshare; do
		command -v "$f" >/dev/null || { echo "bench.sh: $f missing" >&2; exit 1; }
	done
	[[ -x /usr/bin/wireguard-go ]] || { echo "bench.sh: /usr/bin/wireguard-go missing (apt-get install wireguard-go)" >&2; exit 1; }
	target=${CARGO_TARGET_DIR:-target}
	if [[ ! -x $target/tools/bin/boringtun-cli ]]; then # as scripts/test.sh installs it
		cargo install --locked --quiet --version 0.7.1 --root "$target/tools" boringtun-cli
	fi
	cargo build --release --quiet -p wg-tunnel -p wg
	OUT=${OUT:-$target/bench/bench.md}
	mkdir -p "$(dirname "$OUT")"
	export OUT=$(realpath -m "$OUT")
	export WG_BENCH_OURS=$(realpath "$target/release/wg-tunnel")
	export WG_BENCH_WG=$(realpath "$target/release/wg")
	export WG_BENCH_BORINGTUN=$(realpath "$target/tools/bin/boringtun-cli")
	export WG_BENCH_REPORT=$PWD/scripts/bench/report.py
	export WG_BENCH_INNER=1
	exec unshare --mount --propagation private -- bash "$0"
fi

# ---- inside the private mount namespace ----
mount -t tmpfs -o mode=0755 tmpfs /run
umask 077
work=$(mktemp -d)
nsa=wgbench-$$-a nsb=wgbench-$$-b
declare -a pids=()
cleanup() {
	local p
	[[ -z ${client:-} ]] || kill "$client" 2>/dev/null || true
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	ip netns del "$nsa" 2>/dev/null || true
	ip netns del "$nsb" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
ina() { ip netns exec "$nsa" "$@"; }
inb() { ip netns exec "$nsb" "$@"; }

ip netns add "$nsa"
ip netns add "$nsb"
ip link add veth-a netns "$nsa" type veth peer name veth-b netns "$nsb"
ina ip link set lo up
inb ip link set lo up
ina ip addr add 10.77.0.1/24 dev veth-a
inb ip addr add 10.77.0.2/24 dev veth-b
ina ip link set veth-a up
inb ip link set veth-b up

wg=$WG_BENCH_WG
keya=$($wg genkey) keyb=$($wg genkey)
puba=$(echo "$keya" | $wg pubkey) pubb=$(echo "$keyb" | $wg pubkey)
printf '[Interface]\nPrivateKey = %s\nListenPort = 51820\n\n[Peer]\nPublicKey = %s\nAllowedIPs = 10.78.0.2/32\nEndpoint = 10.77.0.2:51820\n' \
	"$keya" "$pubb" >"$work/a.conf"
printf '[Interface]\nPrivateKey = %s\nListenPort = 51820\n\n[Peer]\nPublicKey = %s\nAllowedIPs = 10.78.0.1/32\nEndpoint = 10.77.0.1:51820\n' \
	"$keyb" "$puba" >"$work/b.conf"

ip netns exec "$nsb" iperf3 -s >"$work/iperf3-server.log" 2>&1 &
server=$!
pids=("$server")

csv=$work/samples.csv
echo "round,impl,metric,value" >"$csv"
now_ms() { echo $(($(date +%s%N) / 1000000)); }
clk=$(getconf CLK_TCK)
cpu_ticks() { local p s=0; for p in "$@"; do s=$((s + $(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$p/stat"))); done; echo "$s"; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
record() { echo "$round,$impl,$1,$2" >>"$csv"; }

start_daemon() { # NS IFNAME LOG VAR: starts the current $impl, its PID into VAR
	local ns=$1 ifname=$2 log=$3
	local -a cmd
	case $impl in
	wg-tunnel) cmd=("$WG_BENCH_OURS" -f) ;;
	wireguard-go) cmd=(/usr/bin/wireguard-go -f) ;;
	boringtun) cmd=("$WG_BENCH_BORINGTUN" -f --disable-drop-privileges) ;;
	*) echo "bench.sh: unknown implementation $impl" >&2; exit 1 ;;
	esac
	ip netns exec "$ns" "${cmd[@]}" "$ifname" >"$log" 2>&1 &
	printf -v "$4" %s $!
	pids+=($!)
}
wait_socket() { # IFNAME PID LOG
	local i
	for i in $(seq 2000); do
		[[ -S /run/wireguard/$1.sock ]] && return 0
		kill -0 "$2" 2>/dev/null || break
		sleep 0.005
	done
	echo "bench.sh: $impl $1 did not start:" >&2
	cat "$3" >&2
	exit 1
}

iperf() { # NAME ARGS...: one iperf3 client run from A, JSON to $work/NAME.json
	local name=$1
	shift
	# In the background and waited for, so that a signal interrupts the wait at once.
	timeout $((DURATION + UDP_DURATION + 30)) ip netns exec "$nsa" iperf3 -c "$dst" -J "$@" >"$work/$name.json" 2>/dev/null &
	client=$!
	wait "$client" || true
	client=
}
# Datagrams the receiving namespace's UDP sockets dropped for a full receive buffer so far
# (RcvbufErrors of UDP and UDP6; a v4 datagram to a dual-stack socket counts as UDP), and
# the drops so far of the tunnel daemon's own sockets there (port 51820, /proc/net/udp*).
rcvbuf_errors() {
	inb awk '$1 == "Udp:" && $2 ~ /^[0-9]+$/ { s += $6 } $1 == "Udp6RcvbufErrors" { s += $2 }
		END { print s + 0 }' /proc/net/snmp /proc/net/snmp6
}
daemon_drops() {
	inb awk '$2 ~ /:CA6C$/ { s += $13 } END { print s + 0 }' /proc/net/udp /proc/net/udp6
}
udp_test() { # METRIC [IPERF3 ARGS...]: one UDP run, recorded as METRIC_kpps, METRIC_loss_pct,
	# METRIC_appdrop_pct and METRIC_daemondrop_pct (the part of what was sent that the
	# receiving iperf3's socket, or the receiving daemon's, dropped for want of room)
	local metric=$1 v e0 e1 d0 d1 kpps loss sent
	shift
	e0=$(rcvbuf_errors) d0=$(daemon_drops)
	iperf "$metric" -t "$UDP_DURATION" -u -l "$UDP_LEN" -b "$UDP_RATE" "$@"
	e1=$(rcvbuf_errors) d1=$(daemon_drops)
	v=$(jq -r '.end.sum | select(.packets > 0) | "\((.packets - .lost_packets) / .seconds / 1000) \(.lost_percent) \(.packets)"' "$work/$metric.json" 2>/dev/null || true)
	if [[ -n $v ]]; then
		read -r kpps loss sent <<<"$v"
		record "${metric}_kpps" "$kpps"
		record "${metric}_loss_pct" "$loss"
		pct() { awk -v d="$1" -v n="$sent" 'BEGIN { printf "%.2f", (d < 0 ? 0 : 100 * d / n) }'; }
		record "${metric}_appdrop_pct" "$(pct $((e1 - e0 - (d1 - d0))))"
		[[ $impl == raw ]] || record "${metric}_daemondrop_pct" "$(pct $((d1 - d0)))"
	fi
}
tcp_gbps() { jq -r '(.end.sum_received.bits_per_second // empty) / 1e9' "$work/$1.json" 2>/dev/null || true; }

run_one() {
	local pa= pb= dst t0 t1 i ok=
	local rounds_log=$work/$impl-$round
	echo "$(date -u +%T) round $round: $impl (load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
	record load1 "$(cut -d' ' -f1 /proc/loadavg)"
	if [[ $impl == raw ]]; then
		dst=10.77.0.2
	else
		dst=10.78.0.2
		t0=$(now_ms)
		start_daemon "$nsa" wga "$rounds_log-a.log" pa
		start_daemon "$nsb" wgb "$rounds_log-b.log" pb
		wait_socket wga "$pa" "$rounds_log-a.log"
		wait_socket wgb "$pb" "$rounds_log-b.log"
		ina "$wg" setconf wga "$work/a.conf"
		inb "$wg" setconf wgb "$work/b.conf"
		ina ip addr add 10.78.0.1/24 dev wga
		inb ip addr add 10.78.0.2/24 dev wgb
		ina ip link set wga mtu "$MTU" up
		inb ip link set wgb mtu "$MTU" up
		local ra rb
		ra=$(rss_kib "$pa") rb=$(rss_kib "$pb")
		for i in $(seq 30); do
			if ina ping -c 1 -W 1 -q "$dst" >/dev/null 2>&1; then ok=1; break; fi
		done
		t1=$(now_ms)
		[[ -n $ok ]] || { echo "bench.sh: $impl: no ping reply through the tunnel" >&2; exit 1; }
		record first_ping_ms $((t1 - t0))
		record rss_idle_mib "$(awk -v a="$ra" -v b="$rb" 'BEGIN { print (a > b ? a : b) / 1024 }')"
	fi
	ina ping -c 1 -W 2 -q "$dst" >/dev/null 2>&1 || true
	ina ping -c "$PINGS" -i 0.01 -W 1 "$dst" 2>/dev/null |
		sed -n 's/.* time=\([0-9.]*\) ms$/\1/p' | sort -n >"$work/rtt" || true
	if [[ -s $work/rtt ]]; then
		record ping_mean_ms "$(awk '{ s += $1 } END { printf "%.4f", s / NR }' "$work/rtt")"
		local n
		n=$(wc -l <"$work/rtt")
		record ping_p99_ms "$(sed -n "$(((n * 99 + 99) / 100))p" "$work/rtt")"
	fi

	# TCP, with the daemons' peak RSS sampled throughout and their CPU over the 1-stream run.
	local sampler= c0 c1
	if [[ -n $pa ]]; then
		echo 0 >"$work/rss_samples"
		( # one line per sample (appended: a kill mid-write loses at most that sample)
			while kill -0 "$pa" 2>/dev/null && kill -0 "$pb" 2>/dev/null; do
				echo "$(rss_kib "$pa" 2>/dev/null || echo 0) $(rss_kib "$pb" 2>/dev/null || echo 0)" >>"$work/rss_samples"
				sleep 0.2
			done
		) &
		sampler=$!
		c0=$(cpu_ticks "$pa" "$pb")
		t0=$(now_ms)
	fi
	iperf tcp1 -t "$DURATION"
	if [[ -n $pa ]]; then
		c1=$(cpu_ticks "$pa" "$pb")
		t1=$(now_ms)
	fi
	iperf tcp4 -t "$DURATION" -P 4
	iperf tcpr -t "$DURATION" -R
	if [[ -n $sampler ]]; then
		kill "$sampler" 2>/dev/null || true
		wait "$sampler" 2>/dev/null || true
		record rss_load_mib "$(awk '{ for (i = 1; i <= NF; i++) if ($i + 0 > m) m = $i + 0 } END { print m / 1024 }' "$work/rss_samples")"
		record cpu_pct "$(awk -v c=$((c1 - c0)) -v k="$clk" -v ms=$((t1 - t0)) 'BEGIN { printf "%.1f", c / k * 100000 / ms }')"
		local gb
		gb=$(jq -r '(.end.sum_received.bytes // 0) / 1e9' "$work/tcp1.json" 2>/dev/null || echo 0)
		if awk -v g="$gb" 'BEGIN { exit !(g > 0) }'; then
			record cpu_s_per_gb "$(awk -v c=$((c1 - c0)) -v k="$clk" -v g="$gb" 'BEGIN { printf "%.3f", c / k / g }')"
		fi
	fi
	local v
	for t in tcp1 tcp4 tcpr; do
		v=$(tcp_gbps $t)
		if [[ -n $v ]]; then record "${t}_gbps" "$v"; fi
	done
	udp_test udp ${UDP_WINDOW:+-w "$UDP_WINDOW"}
	[[ -z $UDP_WINDOW ]] || udp_test udp_defbuf

	if [[ -n $pa ]]; then
		kill "$pa" "$pb" 2>/dev/null || true
		wait "$pa" "$pb" 2>/dev/null || true
		ina ip link del wga 2>/dev/null || true
		inb ip link del wgb 2>/dev/null || true
		rm -f /run/wireguard/wga.sock /run/wireguard/wgb.sock
		pids=("$server") # only live processes: a reaped PID may be reused
	fi
}

read -ra impls <<<"$IMPLS"
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
started=$(date -u '+%Y-%m-%d %H:%M UTC')
for ((round = 1; round <= ROUNDS; round++)); do
	n=${#impls[@]}
	for ((k = 0; k < n; k++)); do
		impl=${impls[$(((k + round - 1) % n))]}
		run_one
	done
done
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

cp "$csv" "${OUT%.md}.csv"
machine="$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), Linux $(uname -r)"
python3 "$WG_BENCH_REPORT" "${OUT%.md}.csv" "${OUT%.md}.json" \
	--date "$started" --machine "$machine" --load "$load_start -> $load_end" \
	--settings "ROUNDS=$ROUNDS DURATION=$DURATION UDP_DURATION=$UDP_DURATION UDP_LEN=$UDP_LEN UDP_RATE=$UDP_RATE UDP_WINDOW=$UDP_WINDOW MTU=$MTU PINGS=$PINGS" |
	tee "$OUT"
echo "written: $OUT ${OUT%.md}.csv ${OUT%.md}.json" >&2
