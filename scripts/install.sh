#!/usr/bin/env bash
# Installs wg-rs: the binaries wg, wg-quick, wg-tunnel and wg-relay, their manual pages, the
# bash, zsh and fish completions and the systemd units.
#
#   scripts/install.sh                          # into /usr/local (builds a release if needed)
#   sudo scripts/install.sh PREFIX=/usr         # where Debian's wireguard-tools puts things
#   scripts/install.sh DESTDIR=/tmp/stage PREFIX=/usr
#
# Settings, as VAR=value arguments or in the environment (arguments win):
#   PREFIX        /usr/local
#   DESTDIR       (empty) staging directory prepended to every path
#   BINDIR        $PREFIX/bin
#   MANDIR        $PREFIX/share/man
#   BASHCOMPDIR   $PREFIX/share/bash-completion/completions
#   ZSHCOMPDIR    /usr/share/zsh/vendor-completions if PREFIX is /usr, else
#                 $PREFIX/share/zsh/site-functions
#   FISHCOMPDIR   $PREFIX/share/fish/vendor_completions.d
#   SYSTEMDUNITDIR /lib/systemd/system if PREFIX is /usr, else $PREFIX/lib/systemd/system
#   PROFILE       release: install target/$PROFILE/* (built with `cargo build --profile` first
#                 if a binary is missing; CARGO_TARGET_DIR is honoured)
#   WITH_SYSTEMD  yes; "no" skips the units
#
# The units run /usr/bin/wg-quick and friends; with another BINDIR they are rewritten to it.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

for arg in "$@"; do
	case $arg in
	PREFIX=* | DESTDIR=* | BINDIR=* | MANDIR=* | BASHCOMPDIR=* | ZSHCOMPDIR=* | FISHCOMPDIR=* | \
		SYSTEMDUNITDIR=* | PROFILE=* | WITH_SYSTEMD=*)
		declare "$arg"
		;;
	-h | --help)
		sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
		exit 0
		;;
	*)
		echo "install.sh: unknown argument \`$arg' (try --help)" >&2
		exit 1
		;;
	esac
done

PREFIX=${PREFIX:-/usr/local}
PREFIX=${PREFIX%/}
DESTDIR=${DESTDIR:-}
BINDIR=${BINDIR:-$PREFIX/bin}
MANDIR=${MANDIR:-$PREFIX/share/man}
BASHCOMPDIR=${BASHCOMPDIR:-$PREFIX/share/bash-completion/completions}
FISHCOMPDIR=${FISHCOMPDIR:-$PREFIX/share/fish/vendor_completions.d}
if [[ $PREFIX == /usr ]]; then
	ZSHCOMPDIR=${ZSHCOMPDIR:-/usr/share/zsh/vendor-completions}
	SYSTEMDUNITDIR=${SYSTEMDUNITDIR:-/lib/systemd/system}
else
	ZSHCOMPDIR=${ZSHCOMPDIR:-$PREFIX/share/zsh/site-functions}
	SYSTEMDUNITDIR=${SYSTEMDUNITDIR:-$PREFIX/lib/systemd/system}
fi
PROFILE=${PROFILE:-release}
WITH_SYSTEMD=${WITH_SYSTEMD:-yes}

BINARIES=(wg wg-quick wg-tunnel wg-relay)
MANPAGES=(man/wg.8 man/wg-quick.8 man/wg-tunnel.8 man/wg-relay.8)

target_dir=${CARGO_TARGET_DIR:-target}
# Cargo's "dev" profile builds into target/debug.
profile_dir=$PROFILE
[[ $PROFILE == dev ]] && profile_dir=debug
build_dir=$target_dir/$profile_dir

for bin in "${BINARIES[@]}"; do
	if [[ ! -x $build_dir/$bin ]]; then
		echo "==> building: cargo build --profile $PROFILE --workspace --bins"
		cargo build --profile "$PROFILE" --workspace --bins
		break
	fi
done

# install MODE SOURCE DIRECTORY [NAME]
put() {
	local mode=$1 source=$2 dir=$DESTDIR$3 name=${4:-${2##*/}}
	install -d -m 0755 "$dir"
	install -m "$mode" "$source" "$dir/$name"
	echo "$3/$name"
}

for bin in "${BINARIES[@]}"; do
	put 0755 "$build_dir/$bin" "$BINDIR"
done
for page in "${MANPAGES[@]}"; do
	put 0644 "$page" "$MANDIR/man8"
done
put 0644 completions/bash/wg "$BASHCOMPDIR"
put 0644 completions/bash/wg-quick "$BASHCOMPDIR"
put 0644 completions/zsh/_wg "$ZSHCOMPDIR"
put 0644 completions/zsh/_wg-quick "$ZSHCOMPDIR"
put 0644 completions/fish/wg.fish "$FISHCOMPDIR"
put 0644 completions/fish/wg-quick.fish "$FISHCOMPDIR"

# wg-quick's configuration directory, private to root as the files hold private keys.
if [[ ! -d $DESTDIR/etc/wireguard ]]; then
	install -d -m 0700 "$DESTDIR/etc/wireguard"
	echo /etc/wireguard/
fi

if [[ $WITH_SYSTEMD != no ]]; then
	staged=$(mktemp -d)
	trap 'rm -rf "$staged"' EXIT
	for unit in systemd/wg-quick@.service systemd/wg-quick.target systemd/wg-tunnel@.service; do
		# Point the units at the installed binaries.
		sed "s|/usr/bin/|${BINDIR%/}/|g" "$unit" >"$staged/${unit##*/}"
		put 0644 "$staged/${unit##*/}" "$SYSTEMDUNITDIR"
	done
fi
