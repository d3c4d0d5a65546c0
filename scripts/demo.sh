#!/usr/bin/env bash
# The main job on an embedded default, in one command.
#
# Today (before the bundled tunnel lands) it builds the tools and shows:
#   1. key generation:   wg genkey | wg pubkey, and a preshared key;
#   2. a config round-trip: a wg-quick config built from those keys is parsed by our
#      wg-config crate and printed back, and the two are compared.
# Once wg-tunnel exists this script brings up two network namespaces joined by it and shows a
# ping and `wg show` instead.
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
