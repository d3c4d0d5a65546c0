# Guest section (see prelude.sh): wg-quick on the kernel path. The same configs are brought up
# and down by our wg-quick and by the reference's (Debian's bash script, run by a bash shipped
# into the VM), each in its own namespace holding a veth for the endpoint's route. Everything
# each run prints and leaves is saved in $D as TOOL.CASE.*; the host compares them.
#
# Cases: `main` (two addresses, automatic MTU, routes of two peers, hooks printing, down);
# `fail` (a PostUp that fails: up must undo everything).
[ -e /dev/fd ] || ln -s /proc/self/fd /dev/fd
must wg genkey >/tmp/q.key
must wg genkey >/tmp/q.peer1
must wg genkey >/tmp/q.peer2
must wg genpsk >/tmp/q.psk
conf() { # $1 = the PostUp command
	cat <<CONF
[Interface]
PrivateKey = $(cat /tmp/q.key)
ListenPort = 51820
Address = 10.77.0.1/24, fd77::1/64
PostUp = echo post-up %i; $1
PreDown = echo pre-down %i
SaveConfig = false

[Peer]
PublicKey = $(wg pubkey </tmp/q.peer1)
PresharedKey = $(cat /tmp/q.psk)
Endpoint = 192.168.77.2:51820
AllowedIPs = 10.78.0.0/16, fd78::/48
PersistentKeepalive = 25

[Peer]
PublicKey = $(wg pubkey </tmp/q.peer2)
AllowedIPs = 10.79.1.0/24
CONF
}
mkdir -p /tmp/qconf
conf true >/tmp/qconf/main.conf
conf false >/tmp/qconf/fail.conf

# run TOOL NS CASE COMMAND: wg-quick COMMAND for /tmp/qconf/CASE.conf as wgq0, saving its
# stderr, stdout and status as $D/TOOL.CASE.COMMAND.{err,out,rc}.
run() {
	tool=$1 ns=$2 case=$3 command=$4
	cp "/tmp/qconf/$case.conf" "/tmp/$tool/wgq0.conf"
	if [ "$tool" = ours ]; then
		ip netns exec "$ns" env -i PATH="/ours:$SYS_PATH" /ours/wg-quick "$command" "/tmp/$tool/wgq0.conf"
	else
		ip netns exec "$ns" env -i PATH="$SYS_PATH" /ours/bash ./ref-wg-quick "$command" "/tmp/$tool/wgq0.conf"
	fi >"$D/$tool.$case.$command.out" 2>"$D/$tool.$case.$command.err"
	echo $? >"$D/$tool.$case.$command.rc"
}
# state TOOL NS CASE WHEN: what the namespace holds of wgq0.
state() {
	tool=$1 ns=$2 case=$3 when=$4 f="$D/$1.$3.$4"
	ip -n "$ns" -d link show dev wgq0 >"$f.link" 2>&1
	ip -n "$ns" addr show dev wgq0 >"$f.addr" 2>&1
	ip -n "$ns" -4 route show table all dev wgq0 >"$f.route4" 2>&1
	ip -n "$ns" -6 route show table all dev wgq0 >"$f.route6" 2>&1
	ip netns exec "$ns" env -i PATH="$SYS_PATH" wg showconf wgq0 >"$f.showconf" 2>&1
}
for tool in ours ref; do
	ns=q$tool
	mkdir -p "/tmp/$tool"
	chmod 700 "/tmp/$tool"
	must ip netns add "$ns"
	must ip -n "$ns" link set lo up
	must ip -n "$ns" link add vq type veth peer name vq2
	must ip -n "$ns" addr add 192.168.77.1/24 dev vq
	must ip -n "$ns" link set vq up
	must ip -n "$ns" link set vq2 up
	run "$tool" "$ns" main up
	state "$tool" "$ns" main up
	run "$tool" "$ns" main down
	state "$tool" "$ns" main down
	run "$tool" "$ns" fail up
	state "$tool" "$ns" fail up
done
echo done
