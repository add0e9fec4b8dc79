#!/bin/sh
# Build the Go ext_proc test client (tests/extproc/client) into a cache
# directory outside the checkout and print the binary's path on stdout.
#
#   ${XDG_CACHE_HOME:-$HOME/.cache}/tandem/extproc-client/<hash>/extproc-client
#
# <hash> covers go.mod, go.sum and main.go, so an edit gives a new binary and
# an unchanged client is never rebuilt. Concurrent callers serialize on a lock.
#
# Exit status: 0 (path printed), 3 when the client cannot be built on this
# machine (no Go >= 1.26, or its modules cannot be fetched: one line on
# stderr; callers should skip), 1 when the build itself fails.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
src="$here/client"

if ! command -v go >/dev/null 2>&1; then
	echo "extproc-client: go not found (Go >= 1.26 is needed to build the ext_proc test client)" >&2
	exit 3
fi
gover=$(go env GOVERSION 2>/dev/null || true)
case "$gover" in
go1.2[6-9]* | go1.[3-9][0-9]* | go[2-9]*) ;;
*)
	echo "extproc-client: ${gover:-unknown Go version} is too old (Go >= 1.26 is needed to build the ext_proc test client)" >&2
	exit 3
	;;
esac

hash=$(cat "$src/go.mod" "$src/go.sum" "$src/main.go" | sha256sum | cut -c1-16)
root="${XDG_CACHE_HOME:-$HOME/.cache}/tandem/extproc-client"
dir="$root/$hash"
bin="$dir/extproc-client"

if [ -x "$bin" ]; then
	echo "$bin"
	exit 0
fi

mkdir -p "$dir"
build() {
	[ -x "$bin" ] && return 0
	cd "$src"
	if ! out=$(go mod download 2>&1); then
		echo "extproc-client: cannot fetch Go modules: $(printf '%s' "$out" | tail -n 1)" >&2
		return 3
	fi
	tmp="$dir/.extproc-client.$$"
	if ! CGO_ENABLED=0 go build -trimpath -buildvcs=false -o "$tmp" . >&2; then
		rm -f "$tmp"
		echo "extproc-client: go build failed" >&2
		return 1
	fi
	mv -f "$tmp" "$bin"
}

rc=0
if command -v flock >/dev/null 2>&1; then
	exec 9>"$root/.lock"
	flock 9
	build || rc=$?
	exec 9>&-
else
	build || rc=$?
fi
[ "$rc" -eq 0 ] || exit "$rc"
echo "$bin"
