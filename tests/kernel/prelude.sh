#!/bin/sh
# The guest side of the kernel tests: /payload/run in the VM (scripts/vm/init runs it as
# `./run /out`). Runs every section named in ./sections, in order, each in its own subshell
# with the helpers below, and records in /out/<section>/: `log` (its stdout and stderr),
# `status` (its exit status) and whatever files it writes into $D. The host reads them back.
#
# A section script is plain busybox sh. Helpers:
#   must CMD...                runs CMD; on failure prints it and ends the section (exit 1)
#   ref NAME [VAR=VAL]... -- ARGS...   runs the reference `wg ARGS` (argv[0] "wg", clean env
#                              plus VAR=VAL) and saves $D/NAME.ref.{out,err,rc}
#   ours NAME [VAR=VAL]... -- ARGS...  the same with our wg: $D/NAME.ours.{out,err,rc}
#   both NAME [VAR=VAL]... -- ARGS...  ref then ours, same arguments
#   ip ARGS...                 iproute2's ip (busybox's own applet would win otherwise)
# Start from a clean environment; each run below then exports only its own variables.
if [ -z "$WG_VM_CLEAN" ]; then
	exec env -i WG_VM_CLEAN=1 PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root sh "$0" "$@"
fi
unset WG_VM_CLEAN
out=$1
SYS_PATH=/usr/sbin:/usr/bin:/sbin:/bin
ip() { /usr/sbin/ip "$@"; }
umask 077

must() {
	"$@" || {
		status=$?
		echo "FAILED (exit $status): $*"
		exit 1
	}
}

# _wg KIND PATH NAME [VAR=VAL]... -- ARGS...
# (A subshell that exports and execs: much cheaper under TCG than `env -i`.)
_wg() {
	kind=$1 path=$2 name=$3
	shift 3
	(
		while [ "$1" != -- ]; do
			export "${1?}"
			shift
		done
		shift
		export PATH="$path"
		exec wg "$@"
	) >"$D/$name.$kind.out" 2>"$D/$name.$kind.err"
	echo $? >"$D/$name.$kind.rc"
}
ref() { _wg ref "$SYS_PATH" "$@"; }
ours() { _wg ours "/ours:$SYS_PATH" "$@"; }
both() {
	ref "$@"
	ours "$@"
}

for section in $(cat sections); do
	D=$out/$section
	mkdir -p "$D"
	start=$(date +%s)
	(
		set +e
		. "./$section.sh"
	) >"$D/log" 2>&1
	status=$?
	echo "$status" >"$D/status"
	echo "@@SECTION@@ $section status $status in $(($(date +%s) - start))s"
	[ "$status" = 0 ] || tail -n 30 "$D/log"
done
exit 0
