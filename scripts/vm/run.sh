#!/usr/bin/env bash
# Boots Debian's kernel under qemu (TCG) with a minimal initramfs and runs a payload in it; the
# VM harness for the kernel WireGuard tests. See scripts/vm/README.md for the whole story.
#
#   scripts/vm/run.sh --payload DIR [--out DIR] [--bin PATH]... [--timeout SECS] [--log FILE]
#
#   --payload DIR   copied to /payload in the VM; DIR/run is executed there as `./run /out`
#   --out DIR       where the VM's /out ends up (needs the guest to write it: a tar on a virtio
#                   disk, unpacked here); default: not collected
#   --bin PATH      an extra host binary (and the shared libraries it needs, by ldd) copied to
#                   /ours/<name> in the VM, without its debug info; repeatable
#   --timeout SECS  qemu is killed after this long (default 600); exit status 124
#   --log FILE      the serial console is also written here (default: only on stdout)
#
# Exit status: the payload's exit status; 124 when qemu timed out; 125 when the VM did not
# report one (harness failure: boot, module load, crash). The console (kernel + payload output)
# goes to stdout.
#
# Needs: apt (for the kernel package), qemu-system-x86, busybox-static, iproute2 and
# wireguard-tools on the host (scripts/test.sh installs them). Root is not needed once the
# kernel is cached, but fetching it on first use runs apt-get download (root not required)
# and, when apt has no package lists yet, apt-get update (root required).
#
# Environment:
#   WG_VM_CACHE   kernel cache directory (default: <repo>/target/vm)
#   WG_VM_MEM     guest memory in MiB (default 1024)
#   WG_VM_CPUS    guest CPUs (default 1; TCG runs each on one host thread)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
vmdir=$repo/scripts/vm
cache=${WG_VM_CACHE:-$repo/target/vm}
mem=${WG_VM_MEM:-1024}
cpus=${WG_VM_CPUS:-1}

payload= out= timeout=600 log=
bins=()
while (($#)); do
	case $1 in
	--payload) payload=$2 && shift 2 ;;
	--out) out=$2 && shift 2 ;;
	--bin) bins+=("$2") && shift 2 ;;
	--timeout) timeout=$2 && shift 2 ;;
	--log) log=$2 && shift 2 ;;
	*)
		echo "run.sh: unknown argument $1 (see the header of $0)" >&2
		exit 2
		;;
	esac
done
[[ -n $payload && -x $payload/run ]] || {
	echo "run.sh: --payload DIR with an executable DIR/run is required" >&2
	exit 2
}

need() {
	command -v "$1" >/dev/null || {
		echo "run.sh: $1 not found: install $2 (scripts/test.sh does: apt-get install $2)" >&2
		exit 2
	}
}
need qemu-system-x86_64 qemu-system-x86
need busybox busybox-static
need ip iproute2
need /usr/bin/wg wireguard-tools
need apt-get apt

# Modules the VM loads (with their dependencies, from modules.dep).
MODULES=(virtio_pci virtio_blk tun veth wireguard)

# --- The kernel: Debian's linux-image-amd64, resolved to its versioned package, downloaded
# (never installed on the host) and unpacked once into $cache/<package>/.

kernel_package() {
	apt-cache depends linux-image-amd64 2>/dev/null |
		sed -n 's/^ *Depends: \(linux-image-[^ ]*-amd64\)$/\1/p' | head -n1
}

resolve_kernel() {
	local pkg
	pkg=$(kernel_package)
	if [[ -z $pkg ]]; then
		if [[ $(id -u) -eq 0 ]]; then
			echo "run.sh: apt knows no linux-image-amd64: running apt-get update" >&2
			apt-get update >&2
			pkg=$(kernel_package)
		fi
	fi
	if [[ -z $pkg ]]; then
		# Offline with a cache: use the newest cached kernel.
		pkg=$(find "$cache" -maxdepth 2 -name complete -path '*/linux-image-*' 2>/dev/null |
			sort | tail -n1 | xargs -r dirname | xargs -r basename)
	fi
	[[ -n $pkg ]] || {
		echo "run.sh: cannot resolve linux-image-amd64 (no apt lists, no cache)" >&2
		exit 2
	}
	echo "$pkg"
}

fetch_kernel() { # $1 = package; fills $cache/$1
	local pkg=$1 dest=$cache/$1 tmp deb release
	# `complete` names the modules the cache holds: a changed MODULES list fetches again.
	[[ -f $dest/complete && $(<"$dest/complete") == "${MODULES[*]}" ]] && return 0
	echo "run.sh: fetching $pkg into $dest" >&2
	mkdir -p "$cache"
	tmp=$(mktemp -d "$cache/.fetch.XXXXXX")
	chmod 755 "$tmp" # apt-get download runs as _apt when it can read the directory
	if ! (cd "$tmp" && apt-get download "$pkg" >&2); then
		# Stale package lists can name a version the mirror no longer has: refresh and retry
		# (if linux-image-amd64 moved on meanwhile, the next run resolves the new package).
		[[ $(id -u) -eq 0 ]] || exit 2
		echo "run.sh: apt-get download failed: running apt-get update and retrying" >&2
		apt-get update >&2
		(cd "$tmp" && apt-get download "$pkg" >&2)
	fi
	deb=$(echo "$tmp"/*.deb)
	dpkg-deb -x "$deb" "$tmp/root"
	release=$(basename "$(echo "$tmp"/root/lib/modules/*)")
	# modules.dep is generated at install time, so the package has none: make it here.
	busybox depmod -b "$tmp/root" "$release"
	rm -rf "$dest"
	mkdir -p "$dest/modules"
	cp "$tmp/root/boot/vmlinuz-$release" "$dest/vmlinuz"
	echo "$release" >"$dest/release"
	# Load order: for each wanted module, its dependencies (modules.dep lists them so that the
	# last must be loaded first), then itself; each module once.
	local depfile=$tmp/root/lib/modules/$release/modules.dep m line path deps d i
	local -A seen=()
	: >"$dest/load-order"
	for m in "${MODULES[@]}"; do
		line=$(grep -E "/$m\.ko(\.[a-z]+)?:" "$depfile") || {
			echo "run.sh: module $m not in $pkg" >&2
			exit 2
		}
		path=${line%%:*}
		read -r -a deps <<<"${line#*:}"
		for ((i = ${#deps[@]} - 1; i >= -1; i--)); do
			if ((i >= 0)); then d=${deps[i]}; else d=$path; fi
			[[ -n ${seen[$d]:-} ]] && continue
			seen[$d]=1
			local file=$tmp/root/lib/modules/$release/$d name
			name=$(basename "$d")
			case $name in
			*.ko) cp "$file" "$dest/modules/$name" ;;
			*.ko.xz) name=${name%.xz} && xz -dc "$file" >"$dest/modules/$name" ;;
			*.ko.zst) name=${name%.zst} && zstd -dc "$file" >"$dest/modules/$name" ;;
			*) echo "run.sh: unknown module format $name" >&2 && exit 2 ;;
			esac
			echo "$name" >>"$dest/load-order"
		done
	done
	rm -rf "$tmp"
	echo "${MODULES[*]}" >"$dest/complete"
}

# --- The initramfs: busybox, /init, the modules, iproute2's ip, the reference wg, the --bin
# binaries, every shared library they need, and the payload. An uncompressed newc cpio.

copy_with_libs() { # $1 = host binary, $2 = path in the image
	local bin=$1 target=$2 lib
	mkdir -p "$root/$(dirname "$target")"
	cp -L "$bin" "$root/$target"
	for lib in $(ldd "$bin" 2>/dev/null | grep -o '/[^ ]*' || true); do
		[[ -e $root$lib ]] && continue
		mkdir -p "$root/$(dirname "$lib")"
		cp -L "$lib" "$root$lib"
	done
}

build_initramfs() { # $1 = kernel cache dir, $2 = output file
	local kdir=$1 image=$2 b applet
	mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,run,tmp,root,var,ours,lib/modules/vm,payload}
	ln -s ../run "$root/var/run"
	cp "$(command -v busybox)" "$root/bin/busybox"
	cp "$vmdir/init" "$root/init"
	chmod 755 "$root/init"
	cp "$kdir"/modules/*.ko "$root/lib/modules/vm/"
	cp "$kdir/load-order" "$root/etc/vm-modules"
	copy_with_libs "$(command -v ip)" /usr/sbin/ip
	copy_with_libs /usr/bin/wg /usr/bin/wg
	for b in "${bins[@]}"; do
		[[ -x $b ]] || {
			echo "run.sh: --bin $b is not an executable file" >&2
			exit 2
		}
		copy_with_libs "$b" "/ours/$(basename "$b")"
		# Debug info only: the code is the one built (and a debug build shrinks from 25 MB).
		if command -v strip >/dev/null; then strip --strip-debug "$root/ours/$(basename "$b")"; fi
	done
	for applet in $(busybox --list); do
		[[ -e $root/usr/sbin/$applet || -e $root/usr/bin/$applet || -e $root/bin/$applet ]] ||
			ln -s busybox "$root/bin/$applet"
	done
	echo "root:x:0:0:root:/root:/bin/sh" >"$root/etc/passwd"
	echo "root:x:0:" >"$root/etc/group"
	# Names resolve from /etc/hosts only: the VM has no network (and no DNS).
	printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
	printf 'hosts: files\n' >"$root/etc/nsswitch.conf"
	cp -a "$payload/." "$root/payload/"
	(cd "$root" && find . | LC_ALL=C sort | busybox cpio -o -H newc -R 0:0 2>/dev/null) >"$image"
}

# --- Boot.

pkg=$(resolve_kernel)
mkdir -p "$cache"
{
	flock 9 # one fetch at a time per cache
	fetch_kernel "$pkg"
} 9>"$cache/.lock"
kdir=$cache/$pkg

work=$(mktemp -d "${TMPDIR:-/tmp}/wg-vm.XXXXXX")
qemu_pid=
cleanup() {
	[[ -n $qemu_pid ]] && kill "$qemu_pid" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
root=$work/root
build_initramfs "$kdir" "$work/initramfs.cpio"

drive=()
if [[ -n $out ]]; then
	truncate -s 512M "$work/out.img"
	drive=(-drive "file=$work/out.img,format=raw,if=virtio,cache=unsafe")
fi

console=$work/console.log
: >"$console"
qemu-system-x86_64 -accel tcg -cpu max -m "$mem" -smp "$cpus" \
	-nographic -no-reboot -nodefaults -serial stdio -monitor none \
	-kernel "$kdir/vmlinuz" -initrd "$work/initramfs.cpio" \
	-append "console=ttyS0 panic=-1 quiet" \
	"${drive[@]}" </dev/null >"$console" 2>&1 &
qemu_pid=$!
tail -n +1 -f "$console" --pid="$qemu_pid" | tee ${log:+"$log"} &
tail_pid=$!
deadline=$((SECONDS + timeout)) started=$SECONDS cpu_ticks=0
while kill -0 "$qemu_pid" 2>/dev/null && ((SECONDS < deadline)); do
	# qemu's CPU time so far (utime + stime, fields 14 and 15), for the cost report.
	stat=$(cat "/proc/$qemu_pid/stat" 2>/dev/null) && read -r -a fields <<<"${stat##*) }" &&
		cpu_ticks=$((fields[11] + fields[12]))
	sleep 0.2
done
timed_out=0
if kill -0 "$qemu_pid" 2>/dev/null; then
	timed_out=1
	kill "$qemu_pid" 2>/dev/null || true
fi
wait "$qemu_pid" 2>/dev/null || true
qemu_pid=
wait "$tail_pid" 2>/dev/null || true

echo "run.sh: qemu ran $((SECONDS - started))s, using $((cpu_ticks / $(getconf CLK_TCK)))s of CPU" >&2
if ((timed_out)); then
	echo "run.sh: qemu killed after ${timeout}s" >&2
	exit 124
fi
status=$(sed -n 's/^@@VM@@ EXIT \([0-9]*\).*/\1/p' "$console" | tail -n1)
if [[ -z $status ]]; then
	echo "run.sh: the VM did not report an exit status (see the console above)" >&2
	exit 125
fi
if [[ -n $out ]]; then
	mkdir -p "$out"
	tar -xf "$work/out.img" -C "$out"
fi
exit "$status"
