# Guest section (see prelude.sh): kernel WireGuard against our wg-tunnel on the wire.
# Sourced with INITIATOR (kernel|tunnel), OUTER (4|6) and N (a small number naming the
# namespaces k$N and t$N and the addresses) set by the host; udp.pl is in the payload too.
#
#   ns k$N                                         ns t$N
#   wgk$N (kernel) 10.24$N.0.1  <== WireGuard ==>  wgt$N (/ours/wg-tunnel) 10.24$N.0.2
#   vk 192.168.24$N.1, fd00:24$N::1  --- veth ---  vt 192.168.24$N.2, fd00:24$N::2
#
# Only the initiator knows its peer's endpoint, so the responder's `wg show … endpoints`
# naming the initiator's address proves who started the handshake. Then pings both ways
# (v4 and v6 inside), a TCP transfer each way through the tunnel, checked with sha256sum, and
# a burst of UDP datagrams each way over v4 and v6 inside, each checked whole (udp.pl).
# wg-tunnel logs at debug level into $D/wg-tunnel.log: the host checks the TUN offloads it
# negotiated with this kernel (the kernel's release is in the section log).
echo "kernel $(uname -r)"
k=k$N t=t$N
kin=10.24$N.0.1 tin=10.24$N.0.2
kin6=fd24:$N::1 tin6=fd24:$N::2
if [ "$OUTER" = 4 ]; then
	kout=192.168.24$N.1:51820 tout=192.168.24$N.2:51821
else
	kout=[fd00:24$N::1]:51820 tout=[fd00:24$N::2]:51821
fi
kx() { ip netns exec "$k" "$@"; }
tx() { ip netns exec "$t" "$@"; }

must ip netns add "$k"
must ip netns add "$t"
must ip link add vk netns "$k" type veth peer name vt netns "$t"
for side in "$k vk 1" "$t vt 2"; do
	set -- $side
	must ip -n "$1" link set lo up
	must ip -n "$1" addr add "192.168.24$N.$3/24" dev "$2"
	must ip -n "$1" addr add "fd00:24$N::$3/64" dev "$2" nodad
	must ip -n "$1" link set "$2" up
done

must wg genkey >"/tmp/$k.key"
must wg pubkey <"/tmp/$k.key" >"/tmp/$k.pub"
must wg genkey >"/tmp/$t.key"
must wg pubkey <"/tmp/$t.key" >"/tmp/$t.pub"
must wg genpsk >"/tmp/psk$N"

# Kernel side, configured with the reference wg.
kend= tend=
[ "$INITIATOR" = kernel ] && kend="endpoint $tout"
[ "$INITIATOR" = tunnel ] && tend="endpoint $kout"
must ip -n "$k" link add "wgk$N" type wireguard
# shellcheck disable=SC2086 # $kend is empty or two words
must kx wg set "wgk$N" private-key "/tmp/$k.key" listen-port 51820 \
	peer "$(cat "/tmp/$t.pub")" preshared-key "/tmp/psk$N" allowed-ips "$tin/32,$tin6/128" $kend
must ip -n "$k" addr add "$kin/24" dev "wgk$N"
must ip -n "$k" addr add "$kin6/64" dev "wgk$N" nodad
must ip -n "$k" link set "wgk$N" up

# Userspace side: our wg-tunnel (daemonises once its TUN device and UAPI socket exist; with
# LOG_LEVEL set, the daemon keeps its stderr).
must tx env LOG_LEVEL=debug /ours/wg-tunnel "wgt$N" 2>"$D/wg-tunnel.log"
must test -S "/var/run/wireguard/wgt$N.sock"
# shellcheck disable=SC2086
must tx wg set "wgt$N" private-key "/tmp/$t.key" listen-port 51821 \
	peer "$(cat "/tmp/$k.pub")" preshared-key "/tmp/psk$N" allowed-ips "$kin/32,$kin6/128" $tend
must ip -n "$t" addr add "$tin/24" dev "wgt$N"
must ip -n "$t" addr add "$tin6/64" dev "wgt$N" nodad
must ip -n "$t" link set "wgt$N" up

# The handshake: the initiator pings until the first reply (packets wait for the session).
if [ "$INITIATOR" = kernel ]; then
	must kx ping -c 1 -w 30 "$tin"
	echo "tunnel learned endpoint: $(tx wg show "wgt$N" endpoints)"
	must tx sh -c "wg show wgt$N endpoints | grep -qF '$kout'"
else
	must tx ping -c 1 -w 30 "$kin"
	echo "kernel learned endpoint: $(kx wg show "wgk$N" endpoints)"
	must kx sh -c "wg show wgk$N endpoints | grep -qF '$tout'"
fi
for side in kx tx; do
	must $side sh -c "wg show | grep -q 'latest handshake'"
done

# Pings both ways, v4 and v6 inside the tunnel: every one must come back.
must kx sh -c "ping -c 3 -w 20 $tin | grep -q '3 packets received'"
must tx sh -c "ping -c 3 -w 20 $kin | grep -q '3 packets received'"
must kx sh -c "ping -c 3 -w 20 $tin6 | grep -q '3 packets received'"
must tx sh -c "ping -c 3 -w 20 $kin6 | grep -q '3 packets received'"

# TCP through the tunnel, each way: DATA_KIB of random bytes, compared by sha256.
must dd if=/dev/urandom of="/tmp/data$N" bs=1024 count="$DATA_KIB" 2>/dev/null
want=$(sha256sum <"/tmp/data$N")
transfer() { # $1 = receiving side (kx|tx), $2 = sending side, $3 = receiver's inner address
	rm -f "/tmp/recv$N" "/tmp/fifo$N"
	must mkfifo "/tmp/fifo$N"
	# The listener's stdin is a FIFO it holds open itself: busybox nc stops at EOF on stdin.
	$1 sh -c "exec 3<>/tmp/fifo$N; nc -l -p 7000 <&3 >/tmp/recv$N" &
	listener=$!
	i=0
	until $1 netstat -ltn | grep -q ':7000 '; do
		i=$((i + 1))
		[ $i -lt 300 ] || {
			echo "FAILED: no listener on :7000"
			exit 1
		}
		sleep 0.1
	done
	tstart=$(date +%s)
	must $2 timeout 120 sh -c "nc $3 7000 </tmp/data$N"
	must wait "$listener"
	got=$(sha256sum <"/tmp/recv$N")
	echo "transfer to $3: $(wc -c <"/tmp/recv$N") bytes in $(($(date +%s) - tstart))s"
	[ "$got" = "$want" ] || {
		echo "FAILED: sha256 of the received data differs ($got, want $want)"
		exit 1
	}
}
transfer tx kx "$tin"
transfer kx tx "$kin"

# UDP through the tunnel, each way, v4 and v6 inside: a burst of datagrams of several sizes up
# to the largest that fits the tunnel MTU (and one sent as fragments), each checked whole.
mtu=$(kx cat "/sys/class/net/wgk$N/mtu")
tmtu=$(tx cat "/sys/class/net/wgt$N/mtu")
[ "$tmtu" -lt "$mtu" ] && mtu=$tmtu
# udp RECEIVER SENDER ADDR MAX: sides as for transfer; MAX = the largest payload that fits.
udp() {
	: >"/tmp/udp$N"
	$1 /ours/perl ./udp.pl recv "$3" 7001 "$4" >"/tmp/udp$N" 2>&1 &
	receiver=$!
	i=0
	until grep -q '^bound' "/tmp/udp$N"; do
		i=$((i + 1))
		[ $i -lt 300 ] && kill -0 "$receiver" 2>/dev/null || {
			echo "FAILED: no UDP receiver on $3: $(cat "/tmp/udp$N")"
			exit 1
		}
		sleep 0.1
	done
	must $2 /ours/perl ./udp.pl send "$3" 7001 "$4"
	wait "$receiver"
	status=$?
	echo "udp to $3: $(grep -v '^bound' "/tmp/udp$N")"
	[ "$status" = 0 ] || exit 1
}
udp tx kx "$tin" $((mtu - 28))
udp kx tx "$kin" $((mtu - 28))
udp tx kx "$tin6" $((mtu - 48))
udp kx tx "$kin6" $((mtu - 48))

kx wg show
tx wg show
# Deleting the interface ends the daemon, which removes its UAPI socket on the way out.
must ip -n "$t" link del "wgt$N"
i=0
while [ -S "/var/run/wireguard/wgt$N.sock" ]; do
	i=$((i + 1))
	[ $i -lt 300 ] || {
		echo "FAILED: wg-tunnel still running 30 s after its interface was deleted"
		exit 1
	}
	sleep 0.1
done
must ip netns del "$t"
must ip netns del "$k"
