# Guest section (see prelude.sh): the configuration checks of the kernel's self-test
# tools/testing/selftests/wireguard/netns.sh (compat 6.2 rows 16, 18, 19, 20), with OUR wg
# as `wg` against the kernel module. Written anew for busybox sh; same behaviours checked.
PATH=/ours:$SYS_PATH
export WG_HIDE_KEYS=never
fail() {
	echo "FAILED: $*"
	exit 1
}
# Our output and the reference's must agree too, for the listings checked here.
same() { # same ARGS...: `wg ARGS` by ours and by the reference print the same
	wg "$@" >/tmp/ours.out 2>&1
	/usr/bin/wg "$@" >/tmp/ref.out 2>&1
	cmp -s /tmp/ours.out /tmp/ref.out || {
		diff /tmp/ref.out /tmp/ours.out | head -n 20
		fail "ours and the reference differ for: wg $*"
	}
}

# Row 16a: one peer with 255*256 v4 /16 and as many v6 /128 allowed IPs (a file from the
# host): replies split across many messages, and the peer continued from one to the next.
must ip link add wg0 type wireguard
must wg setconf wg0 /payload/netns/big.conf
n=$(wg show wg0 allowed-ips | wc -w)
[ "$n" = $((255 * 256 * 2 + 1)) ] || fail "16a: $n words in allowed-ips"
same show wg0 allowed-ips
must ip link del wg0

# Row 16b: 40 peers with 52 allowed IPs each: each line has the key and 52 IPs.
must ip link add wg0 type wireguard
{
	echo "[Interface]"
	echo "PrivateKey=$(wg genkey)"
	for a in $(seq 1 40); do
		echo "[Peer]"
		echo "PublicKey=$(wg genkey)"
		for b in $(seq 1 52); do
			echo "AllowedIPs=$a.$b.0.0/16"
		done
	done
} >/tmp/40.conf
must wg setconf wg0 /tmp/40.conf
wg show wg0 allowed-ips >/tmp/40.out || fail "16b: show"
lines=0
while read -r line; do
	set -- $line
	[ $# = 53 ] || fail "16b: a line with $# words"
	lines=$((lines + 1))
done </tmp/40.out
[ "$lines" = 40 ] || fail "16b: $lines lines"
same showconf wg0
must ip link del wg0

# Row 16c: 29 peers without allowed IPs, then one with two; showconf works.
must ip link add wg0 type wireguard
{
	for i in $(seq 1 29); do
		printf '[Peer]\nPublicKey=%s\n' "$(wg genkey)"
	done
	printf '[Peer]\nPublicKey=%s\nAllowedIPs=255.2.3.4/32,abcd::255/128\n' "$(wg genkey)"
} >/tmp/30.conf
must wg setconf wg0 /tmp/30.conf
must wg showconf wg0 >/dev/null
same showconf wg0
must ip link del wg0

# Row 16d: 197 v6 allowed IPs in one `wg set` argument; the first peer has none.
key1=$(wg genkey) key2=$(wg genkey)
pub1=$(echo "$key1" | wg pubkey) pub2=$(echo "$key2" | wg pubkey)
psk=$(wg genpsk)
ips=$(for i in $(seq 1 197); do printf 'abcd::%s,' "$i"; done)
ips=${ips%,}
must ip link add wg0 type wireguard
must wg set wg0 peer "$pub1"
must wg set wg0 peer "$pub2" allowed-ips "$ips"
wg show wg0 allowed-ips >/tmp/197.out
{
	read -r pub rest
	[ "$pub" = "$pub1" ] && [ "$rest" = "(none)" ] || fail "16d: first line $pub $rest"
	read -r pub rest
	set -- $rest
	[ "$pub" = "$pub2" ] && [ $# = 197 ] || fail "16d: second line has $# IPs"
} </tmp/197.out
same show wg0 allowed-ips
must ip link del wg0

# Row 18: a missing interface fails.
if wg show doesnotexist >/dev/null 2>&1; then fail "18: show doesnotexist succeeded"; fi

# Row 19: key semantics.
must ip link add wg0 type wireguard
echo "$key1" >/tmp/key1
echo "$key2" >/tmp/key2
echo "$psk" >/tmp/psk
must wg set wg0 private-key /tmp/key1 peer "$pub2" preshared-key /tmp/psk
[ "$(wg show wg0 private-key)" = "$key1" ] || fail "19: private key round trip"
[ "$(wg show wg0 preshared-keys)" = "$(printf '%s\t%s' "$pub2" "$psk")" ] || fail "19: psk round trip"
same show wg0
must wg set wg0 private-key /dev/null peer "$pub2" preshared-key /dev/null
[ "$(wg show wg0 private-key)" = "(none)" ] || fail "19: private key not removed"
[ "$(wg show wg0 preshared-keys)" = "$(printf '%s\t(none)' "$pub2")" ] || fail "19: psk not removed"
must wg set wg0 peer "$pub2"
# Taking the private key of an existing peer removes that peer.
must wg set wg0 private-key /tmp/key2
[ "$(wg show wg0 public-key)" = "$pub2" ] || fail "19: public key"
[ -z "$(wg show wg0 peers)" ] || fail "19: the peer with our own key was kept"
# A peer with our own public key is ignored.
must wg set wg0 peer "$pub2"
[ -z "$(wg show wg0 peers)" ] || fail "19: a peer with our own key was added"
must wg set wg0 private-key /tmp/key1
must wg set wg0 peer "$pub2"
[ "$(wg show wg0 peers)" = "$pub2" ] || fail "19: peer not added"
# Clamping: a key with its first character changed from / to + reads back clamped.
echo "/${key1#?}" >/tmp/key3
must wg set wg0 private-key /tmp/key3
[ "$(wg show wg0 private-key)" = "+${key1#?}" ] || fail "19: clamping: $(wg show wg0 private-key)"
same showconf wg0

# Row 20: overlapping allowed-ip sets replaced, then the peer removed.
must wg set wg0 peer "$pub2" allowed-ips 0.0.0.0/0,10.0.0.0/8,100.0.0.0/10,172.16.0.0/12,192.168.0.0/16
same show wg0 allowed-ips
must wg set wg0 peer "$pub2" allowed-ips 0.0.0.0/0
[ "$(wg show wg0 allowed-ips)" = "$(printf '%s\t0.0.0.0/0' "$pub2")" ] || fail "20: v4 replace"
must wg set wg0 peer "$pub2" allowed-ips ::/0,1700::/111,5000::/4,e000::/37,9000::/75
same show wg0 allowed-ips
must wg set wg0 peer "$pub2" allowed-ips ::/0
[ "$(wg show wg0 allowed-ips)" = "$(printf '%s\t::/0' "$pub2")" ] || fail "20: v6 replace"
must wg set wg0 peer "$pub2" remove
[ -z "$(wg show wg0 peers)" ] || fail "20: peer not removed"

# Row 21 (configuration part): low-order public keys are accepted as peers.
for point in AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= \
	4Ot6fDtBuK4WVuP68Z/EatoJjeucMrH9hmIFFl9JuAA= X5yVvKNQjCSx0LFVnIPvWwREXMRYHI6G2CJO3dCfEVc= \
	7P///////////////////////////////////////38= 7f///////////////////////////////////////38= \
	7v///////////////////////////////////////38=; do
	must wg set wg0 peer "$point" persistent-keepalive 1 endpoint 127.0.0.1:1111
done
[ "$(wg show wg0 peers | wc -l)" = 7 ] || fail "21: low-order peers"
same show wg0 dump
must ip link del wg0
echo "all netns.sh configuration checks passed"
