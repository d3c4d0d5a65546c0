# A burst of UDP datagrams of several sizes, and its receiver that checks every one arrived
# intact and whole (`interop.sh` runs it through the tunnel). Plain perl builtins only: the
# VM has the perl binary but no modules, so the socket constants and addresses are spelled out.
#
#   perl udp.pl recv ADDR PORT MAX   bind ADDR:PORT, print "bound", then take the whole burst
#                                    (60 s at most) and print a summary; exit 1 on any loss,
#                                    change, split or merge
#   perl udp.pl send ADDR PORT MAX   send the burst to ADDR:PORT as fast as it goes
#
# MAX is the largest payload that fits the tunnel MTU. The burst is ROUNDS rounds of the sizes
# below, then one datagram larger than the MTU (sent as IP fragments). The bytes of datagram i
# are (i + j) mod 256 for j = 0, 1, ...: each one differs from the others.

my ($mode, $addr, $port, $max) = @ARGV;
die "usage: udp.pl send|recv ADDR PORT MAX\n" unless defined $max && $mode =~ /^(send|recv)$/;

my $ROUNDS = 8;
my @sizes;
for (1 .. $ROUNDS) {
    push @sizes, 1, 28, 100, 512, 1000, $max - 1, $max;
}
push @sizes, $max + 600;

my $pattern = join '', map { chr } 0 .. 255;
$pattern x= int(($max + 600) / 256) + 2;
sub payload { my ($i, $size) = @_; substr $pattern, $i % 256, $size }

# struct sockaddr_in / sockaddr_in6 (AF_INET 2, AF_INET6 10; family in host order).
my ($family, $sockaddr);
if ($addr =~ /:/) {
    my ($left, $right) = split /::/, $addr, 2;
    my @l = length($left // '') ? split(/:/, $left) : ();
    my @r = length($right // '') ? split(/:/, $right) : ();
    my @groups = (@l, (0) x (8 - @l - @r), @r);
    $family = 10;
    $sockaddr = pack 'S n N n8 N', 10, $port, 0, (map { hex } @groups), 0;
} else {
    $family = 2;
    $sockaddr = pack 'S n C4 x8', 2, $port, split /\./, $addr;
}
socket(my $sock, $family, 2, 0) or die "socket: $!\n"; # SOCK_DGRAM

if ($mode eq 'send') {
    connect($sock, $sockaddr) or die "connect $addr:$port: $!\n";
    for my $i (0 .. $#sizes) {
        my $sent = send($sock, payload($i, $sizes[$i]), 0);
        defined $sent && $sent == $sizes[$i] or die "send of datagram $i ($sizes[$i] bytes): $!\n";
    }
    exit 0;
}

# SOL_SOCKET 1, SO_RCVBUFFORCE 33: room for the whole burst whatever rmem_max says.
setsockopt($sock, 1, 33, pack 'i', 4 << 20) or die "SO_RCVBUFFORCE: $!\n";
bind($sock, $sockaddr) or die "bind $addr:$port: $!\n";
$| = 1;
print "bound\n";

my %want; # payload => [index, ...] still expected
push @{ $want{ payload($_, $sizes[$_]) } }, $_ for 0 .. $#sizes;
my ($left, $in_order, $next, @bad) = (scalar @sizes, 1, 0);
local $SIG{ALRM} = sub {
    my @missing = sort { $a <=> $b } map { @$_ } values %want;
    print "FAILED: $left of ", scalar @sizes, " datagrams missing after 60 s: ",
        join(', ', map { "#$_ ($sizes[$_] bytes)" } @missing), "\n";
    print "$_\n" for @bad;
    exit 1;
};
alarm 60;
while ($left) {
    defined recv($sock, my $data, 65536, 0) or die "recv: $!\n";
    my $indices = $want{$data};
    if ($indices && @$indices) {
        my $i = shift @$indices;
        delete $want{$data} unless @$indices;
        $in_order = 0 if $i != $next;
        $next = $i + 1;
        $left--;
    } else {
        push @bad, 'unexpected datagram of ' . length($data) . ' bytes';
    }
}
alarm 0;
if (@bad) {
    print "FAILED: $_\n" for @bad;
    exit 1;
}
my %distinct = map { $_ => 1 } @sizes;
print 'received ', scalar @sizes, ' datagrams intact', ($in_order ? ', in order' : ', reordered'),
    '; sizes ', join(' ', sort { $a <=> $b } keys %distinct), "\n";
