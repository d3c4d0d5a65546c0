#!/usr/bin/env bash
# The main job on an embedded default, in one command.
#
# It builds the tools and shows:
#   1. key generation:   wg genkey | wg pubkey, and a preshared key;
#   2. a config round-trip: a wg-quick config built from those keys is parsed by our
#      wg-config crate and printed back, and the two are compared;
#   3. as root: two network namespaces joined by a veth pair and by our wg-tunnel, configured
#      with our wg, then a ping through the tunnel and `wg show`:
#
#        ns wgdemo-a                                   ns wgdemo-b
#        wgdemo0 10.200.0.1  <== WireGuard (UDP) ==>   wgdemo1 10.200.0.2
#        veth 192.168.200.1  -------- veth --------    192.168.200.2
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> building (cargo build --release)"
cargo build --release --quiet
wg=target/release/wg

echo "==> key generation"
priv_a=$("$wg" genkey)
pub_a=$(printf '%s\n' "$priv_a" | "$wg" pubkey)
priv_b=$("$wg" genkey)
pub_b=$(printf '%s\n' "$priv_b" | "$wg" pubkey)
psk=$("$wg" genpsk)
echo "host A public key: $pub_a"
echo "host B public key: $pub_b"
echo "preshared key:     (generated, 44 characters)"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
umask 077
cat > "$work/wg0.conf" <<CONF
[Interface]
Address = 10.200.0.1/24, fd00:200::1/64
ListenPort = 51820
PrivateKey = $priv_a
DNS = 10.200.0.53, example.internal
PostUp = echo up %i

[Peer]
PublicKey = $pub_b
PresharedKey = $psk
AllowedIPs = 10.200.0.2/32, fd00:200::2/128
Endpoint = 192.0.2.10:51820
PersistentKeepalive = 25
CONF

echo "==> config round-trip (parse, print, parse again)"
cargo run --release --quiet -p wg-config --example roundtrip -- "$work/wg0.conf" > "$work/once.conf"
cargo run --release --quiet -p wg-config --example roundtrip -- "$work/once.conf" > "$work/twice.conf"
sed "s|$priv_a|(private key hidden)|; s|$psk|(preshared key hidden)|" "$work/once.conf"
if cmp -s "$work/once.conf" "$work/twice.conf"; then
    echo "==> round-trip is stable: printing the parsed config and parsing it again changes nothing"
else
    echo "==> round-trip MISMATCH" >&2
    diff "$work/once.conf" "$work/twice.conf" >&2
    exit 1
fi

if [[ $(id -u) -ne 0 ]]; then
    echo "==> not root: skipping the two-namespace tunnel demo (it needs ip netns)"
    exit 0
fi
echo "==> two namespaces joined by wg-tunnel"
tunnel=$PWD/target/release/wg-tunnel
cleanup() {
    # Deleting the links stops the daemons (their sockets would keep the namespaces alive).
    ip -n wgdemo-a link del wgdemo0 2>/dev/null || true
    ip -n wgdemo-b link del wgdemo1 2>/dev/null || true
    ip netns del wgdemo-a 2>/dev/null || true
    ip netns del wgdemo-b 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
cleanup
mkdir -p "$work"
ip netns add wgdemo-a
ip netns add wgdemo-b
ip link add wgdemo-va netns wgdemo-a type veth peer name wgdemo-vb netns wgdemo-b
ip -n wgdemo-a addr add 192.168.200.1/24 dev wgdemo-va
ip -n wgdemo-b addr add 192.168.200.2/24 dev wgdemo-vb
for ns in wgdemo-a wgdemo-b; do
    ip -n $ns link set lo up
    ip -n $ns link set wgdemo-v${ns#wgdemo-} up
done
printf '%s\n' "$priv_a" > "$work/a.key"
printf '%s\n' "$priv_b" > "$work/b.key"
printf '%s\n' "$psk" > "$work/psk"
ip netns exec wgdemo-a "$tunnel" wgdemo0
ip netns exec wgdemo-b "$tunnel" wgdemo1
ip netns exec wgdemo-a "$wg" set wgdemo0 private-key "$work/a.key" listen-port 51820 \
    peer "$pub_b" preshared-key "$work/psk" allowed-ips 10.200.0.2/32 endpoint 192.168.200.2:51821
ip netns exec wgdemo-b "$wg" set wgdemo1 private-key "$work/b.key" listen-port 51821 \
    peer "$pub_a" preshared-key "$work/psk" allowed-ips 10.200.0.1/32 endpoint 192.168.200.1:51820
ip -n wgdemo-a addr add 10.200.0.1/24 dev wgdemo0
ip -n wgdemo-b addr add 10.200.0.2/24 dev wgdemo1
ip -n wgdemo-a link set wgdemo0 up
ip -n wgdemo-b link set wgdemo1 up
ip netns exec wgdemo-a ping -c 3 -W 2 10.200.0.2
echo "==> wg show wgdemo0 (in namespace wgdemo-a)"
ip netns exec wgdemo-a "$wg" show wgdemo0
