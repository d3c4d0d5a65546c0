#!/usr/bin/env bash
# Builds the Debian package wg-rs (target/debian/wg-rs_<version>-1_<arch>.deb) with cargo-deb from
# the [package.metadata.deb] section of crates/wg/Cargo.toml, then checks it: `dpkg -c` must list
# exactly the expected files and, as root, it must install over wireguard-tools and remove
# cleanly (in an overlay inside a private mount namespace: the host's packages stay as they are).
#
#   scripts/deb.sh                 # build and check
#   scripts/deb.sh --no-check      # build only
#   sudo dpkg -i target/debian/wg-rs_*.deb   # then install it for real (replaces wireguard-tools)
#
# cargo-deb is installed with `cargo install --locked` into $CARGO_DEB_ROOT (default
# target/tools) when it is not on PATH. Cost: a release build of the workspace (about 1.5-2 min
# on 2 cores) plus, the first time, building cargo-deb (about 1 min).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

CARGO_DEB_VERSION=3.8.0
CARGO_DEB_ROOT=${CARGO_DEB_ROOT:-target/tools}

check=yes
deb_args=()
for arg in "$@"; do
	case $arg in
	--no-check) check=no ;;
	*) deb_args+=("$arg") ;;
	esac
done

if ! command -v cargo-deb >/dev/null; then
	if [[ ! -x $CARGO_DEB_ROOT/bin/cargo-deb ]]; then
		echo "==> installing cargo-deb $CARGO_DEB_VERSION into $CARGO_DEB_ROOT"
		cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked --root "$CARGO_DEB_ROOT"
	fi
	PATH=$(cd "$CARGO_DEB_ROOT/bin" && pwd):$PATH
fi

# cargo-deb builds only the selected package, and the package holds the binaries of four crates.
echo "==> cargo build --release --workspace --bins"
cargo build --release --workspace --bins
echo "==> cargo deb -p wg --no-build --strip"
deb=$(cargo deb -p wg --no-build --strip "${deb_args[@]}" | tail -n 1)
echo "$deb"

if [[ $check == yes ]]; then
	echo "==> checking $deb"
	WG_RS_DEB_FILE=$deb cargo test -p wg-tests -- --exact docs::built_deb_has_the_files_and_installs_and_removes_cleanly
fi
