#!/usr/bin/env bash
# THE test command: installs what the tests need, builds every binary, runs every test.
#
#   scripts/test.sh            # as root on Debian 12: full run, including the netns tests
#   scripts/test.sh ARGS       # extra arguments for `cargo test`, e.g. `-- --include-ignored`
#
# Root is needed for apt and for the tests that create network namespaces; as non-root, apt is
# skipped and those tests print "SKIPPED … needs root" instead of running.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

section() {
	printf '\n==> %s\n' "$*"
}

# Debian packages the tests use, and a command each one provides (for a fast "present?" check).
PACKAGES=(
	wireguard-tools:/usr/bin/wg
	wireguard-go:/usr/bin/wireguard-go
	iproute2:/usr/sbin/ip
	iperf3:/usr/bin/iperf3
	util-linux:/usr/bin/unshare
	iputils-ping:/usr/bin/ping
	nftables:/usr/sbin/nft
	iptables:/usr/sbin/iptables
	procps:/usr/sbin/sysctl
	# The fuzz smoke stage (scripts/fuzz.sh --smoke): libFuzzer is C++.
	g++:/usr/bin/g++
	# The NAT-traversal tests (tests/nat): flushing a simulated NAT's mappings.
	conntrack:/usr/sbin/conntrack
	# The kernel WireGuard tests' VM (scripts/vm/run.sh; it fetches the kernel itself).
	qemu-system-x86:/usr/bin/qemu-system-x86_64
	busybox-static:/bin/busybox
	# ... which also carries perl for its UDP bursts (tests/kernel/udp.pl; Essential in
	# Debian, listed so that a stripped-down image is caught).
	perl-base:/usr/bin/perl
	# The docs tests (tests/docs.rs): man pages, the completions in each shell, systemd units.
	groff-base:/usr/bin/groff
	man-db:/usr/bin/man
	zsh:/usr/bin/zsh
	fish:/usr/bin/fish
	systemd:/usr/bin/systemd-analyze
	# tests/bench_script.rs runs the benchmark's report (scripts/bench/report.py).
	python3:/usr/bin/python3
	# The fast-path guard (tests/tunnel/fastpath.rs): the TUN device's offloads, and system
	# calls per MB counted by the kernel's tracepoints (also tests/tunnel/gso_fallback.rs and
	# tso_refused.rs).
	ethtool:/usr/sbin/ethtool
	linux-perf:/usr/bin/perf
)

missing=()
for entry in "${PACKAGES[@]}"; do
	pkg=${entry%%:*} cmd=${entry#*:}
	if [[ ! -x $cmd ]] || ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed'; then
		missing+=("$pkg")
	fi
done

section "System packages"
if ((${#missing[@]} == 0)); then
	echo "all present: ${PACKAGES[*]%%:*}"
elif [[ $(id -u) -ne 0 ]]; then
	echo "WARNING: missing ${missing[*]} and not root: not installing; tests needing them will fail" >&2
else
	echo "installing: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update
	apt-get install -y --no-install-recommends "${missing[@]}"
fi

# The wg-quick tests drive a real resolvconf (openresolv) inside sandboxes. It is unpacked, not
# installed: installing it would add dhclient/ifupdown hooks that rewrite the host's
# /etc/resolv.conf. The tests overlay this tree onto /usr/sbin, /usr/lib (/lib) and a private
# /etc inside their own mount namespaces only (tests/util/resolvconf.rs).
section "openresolv (unpacked for the wg-quick tests, not installed)"
openresolv_dir=${CARGO_TARGET_DIR:-target}/openresolv
if [[ -x $openresolv_dir/sbin/resolvconf ]]; then
	echo "present: $openresolv_dir"
elif [[ $(id -u) -ne 0 ]]; then
	echo "WARNING: not root: not fetching openresolv; the wg-quick tests skip as non-root anyway" >&2
else
	tmp=$(mktemp -d)
	chmod 755 "$tmp" # apt-get download fetches as the _apt user
	if ! (cd "$tmp" && apt-get download openresolv); then
		apt-get update
		(cd "$tmp" && apt-get download openresolv)
	fi
	mkdir -p "$openresolv_dir.new"
	dpkg-deb -x "$tmp"/openresolv_*.deb "$openresolv_dir.new"
	rm -rf "$tmp" "$openresolv_dir"
	mv "$openresolv_dir.new" "$openresolv_dir"
	echo "unpacked into $openresolv_dir"
fi

section "Toolchain"
if ! command -v cargo >/dev/null && [[ -x ${CARGO_HOME:-$HOME/.cargo}/bin/cargo ]]; then
	PATH=${CARGO_HOME:-$HOME/.cargo}/bin:$PATH
fi
if ! command -v cargo >/dev/null; then
	echo "ERROR: cargo not found: install Rust >= 1.80 (https://rustup.rs) and rerun" >&2
	exit 1
fi
cargo --version
rustc --version

# boringtun, a third userspace implementation the tunnel tests interoperate with
# (tests/tunnel/pairs.rs). From crates.io into the target dir, once per fresh checkout (about
# a minute on 2 cores); tests/util/bins.rs finds it there.
section "boringtun (cargo install, for the tunnel interop tests)"
tools_dir=${CARGO_TARGET_DIR:-target}/tools
if [[ -x $tools_dir/bin/boringtun-cli ]]; then
	echo "present: $tools_dir/bin/boringtun-cli"
else
	start=$SECONDS
	cargo install --locked --quiet --version 0.7.1 --root "$tools_dir" boringtun-cli
	echo "installed into $tools_dir in $((SECONDS - start))s"
fi

section "Build: cargo build --workspace --bins"
start=$SECONDS
cargo build --workspace --bins
echo "built in $((SECONDS - start))s"

section "Test: cargo test --workspace"
start=$SECONDS
# The integration tests run the binaries built above (they locate target/debug/<bin>).
cargo test --workspace "$@"
echo "tested in $((SECONDS - start))s"

# Every fuzz target (fuzz/, excluded from the workspace) over its committed seeds, then a few
# seconds of coverage-guided fuzzing each; instrumented through RUSTFLAGS, no cargo-fuzz. About
# a minute on 2 cores, mostly building. Long runs: scripts/fuzz.sh SECONDS.
section "Fuzz smoke: scripts/fuzz.sh --smoke 3"
start=$SECONDS
scripts/fuzz.sh --smoke 3
echo "fuzzed in $((SECONDS - start))s"

# The Debian package needs a release build (about 2 more minutes on 2 cores, plus building
# cargo-deb once), so CI checks its metadata (tests/docs.rs) and builds it only on request.
if [[ ${WG_RS_DEB:-1} == 1 ]]; then  # WG_RS_DEB=0 skips the package
	section "Debian package: scripts/deb.sh (build, dpkg -c, install and remove in an overlay)"
	start=$SECONDS
	scripts/deb.sh
	echo "packaged and checked in $((SECONDS - start))s"
fi

section "OK: all tests passed"
