#!/bin/bash
# Opt-in interop check of wg-proto against wireguard-go. Needs root, /dev/net/tun, wireguard-go
# and wg(8). Everything runs in a throwaway network namespace.
#
#   netns wgprobe$$ (loopback only)
#   ┌───────────────────────────────────────────────────────────────────────────┐
#   │ kernel 10.99.0.1/24 ── wgp0 (wireguard-go, 127.0.0.1:51999)               │
#   │                              ▲  UDP, Noise_IKpsk2 + PSK                  │
#   │                              ▼                                            │
#   │                 wg-proto-interop (Tunnel, 127.0.0.1:51998, "10.99.0.2")   │
#   └───────────────────────────────────────────────────────────────────────────┘
#
# Usage: run.sh [active|passive|passiveload]
set -u
MODE=${1:-active}
HERE=$(cd "$(dirname "$0")" && pwd)
(cd "$HERE" && cargo build -q) || exit 1
NS=wgprobe$$
TMP=$(mktemp -d)
ip netns add $NS
cleanup() { kill $WGPID 2>/dev/null; wait $WGPID 2>/dev/null; ip netns del $NS; rm -rf "$TMP"; }
trap cleanup EXIT
ip netns exec $NS ip link set lo up
b64() { python3 -c "import base64,sys; print(base64.b64encode(bytes([int(sys.argv[1],16)]*32)).decode())" "$1"; }
OURPUB=$(b64 42 | wg pubkey)
b64 13 > "$TMP/their.key"
b64 99 > "$TMP/psk.key"
THEIRPUBHEX=$(wg pubkey < "$TMP/their.key" | base64 -d | xxd -p -c 64)
LOG_LEVEL=verbose WG_PROCESS_FOREGROUND=1 ip netns exec $NS wireguard-go wgp0 >"$TMP/wireguard-go.log" 2>&1 &
WGPID=$!
sleep 1
EXTRA=()
[[ "$MODE" == passive* ]] && EXTRA=(endpoint 127.0.0.1:51998 persistent-keepalive 1)
ip netns exec $NS wg set wgp0 private-key "$TMP/their.key" listen-port 51999 \
    peer "$OURPUB" preshared-key "$TMP/psk.key" allowed-ips 10.99.0.2/32 "${EXTRA[@]}"
ip netns exec $NS ip addr add 10.99.0.1/24 dev wgp0
ip netns exec $NS ip link set wgp0 up
if [[ "$MODE" == passive* ]]; then
    (sleep 1.5; for _ in 1 2 3; do ip netns exec $NS ping -c1 -W1 10.99.0.2 >/dev/null; done) &
fi
ip netns exec $NS "$HERE/target/debug/wg-proto-interop" "$THEIRPUBHEX" 51999 "$MODE"
RC=$?
[ $RC -eq 0 ] || cat "$TMP/wireguard-go.log"
echo "interop $MODE: $([ $RC -eq 0 ] && echo ok || echo FAILED)"
exit $RC
