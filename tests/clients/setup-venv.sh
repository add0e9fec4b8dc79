#!/usr/bin/env bash
# Builds the Python virtual environment of the real-client tests (tests/clients/) and
# caches it outside the checkout:
#
#   ${XDG_CACHE_HOME:-$HOME/.cache}/tandem/clients-venv-<hash>
#
# where <hash> covers requirements.txt and the interpreter's version, so a changed pin
# builds a new venv and an unchanged one is found at once. Prints the venv directory.
#
#   tests/clients/setup-venv.sh     idempotent; ~1-3 min the first time, instant after
#
# Exit 3 means the venv cannot be built here (no Python >= 3.12, or PyPI unreachable):
# the callers skip the client tests with one line, except under CI=true, where they fail.
# Any other non-zero exit is a real failure.
#
# TANDEM_CLIENTS_PYTHON picks the interpreter; otherwise the first Python >= 3.12 among
# python3.12, python3.13, python3 and pyenv's installed versions.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
req=$here/requirements.txt
log() { echo "tests/clients/setup-venv.sh: $*" >&2; }

ok_python() {
	"$1" -c 'import sys, venv; sys.exit(0 if sys.version_info[:2] >= (3, 12) else 1)' \
		>/dev/null 2>&1
}

find_python() {
	local c
	if [ -n "${TANDEM_CLIENTS_PYTHON:-}" ]; then
		ok_python "$TANDEM_CLIENTS_PYTHON" && { echo "$TANDEM_CLIENTS_PYTHON"; return 0; }
		log "TANDEM_CLIENTS_PYTHON=$TANDEM_CLIENTS_PYTHON is not a Python >= 3.12 with venv"
		return 1
	fi
	for c in python3.12 python3.13 python3; do
		c=$(command -v "$c" 2>/dev/null) || continue
		ok_python "$c" && { echo "$c"; return 0; }
	done
	# pyenv's shims refuse versions that are installed but not selected: ask for the
	# interpreters themselves.
	for c in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.1[2-9]*/bin/python3; do
		[ -x "$c" ] && ok_python "$c" && { echo "$c"; return 0; }
	done
	return 1
}

py=$(find_python) || {
	log "no Python >= 3.12 found (inference-perf needs it); set TANDEM_CLIENTS_PYTHON"
	exit 3
}
pyver=$("$py" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')
hash=$({ cat "$req"; echo "python $pyver"; } | sha256sum | cut -c1-16)
root=${XDG_CACHE_HOME:-$HOME/.cache}/tandem
venv=$root/clients-venv-$hash

if [ -f "$venv/.complete" ]; then echo "$venv"; exit 0; fi

mkdir -p "$root"
exec 9>"$root/.clients-venv.lock"
flock 9
if [ -f "$venv/.complete" ]; then echo "$venv"; exit 0; fi

# A venv's scripts carry its absolute path, so it is built in place; a half-built one
# (interrupted, or failed) is removed and built again.
rm -rf "$venv"
log "building $venv with Python $pyver (first run only; ~1-3 min)"
"$py" -m venv "$venv"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
# --no-deps: requirements.txt pins the whole environment, so nothing is resolved and
# every run installs exactly the same set; `pip check` then proves the set consistent.
if ! "$venv/bin/python" -m pip install --disable-pip-version-check --no-input --timeout 30 \
	--retries 2 --no-deps -r "$req" >"$out" 2>&1; then
	rm -rf "$venv"
	if grep -qiE 'NewConnectionError|Failed to establish|name resolution|Network is unreachable|ConnectTimeout|timed out|ProxyError|SSLError|No matching distribution|Could not find a version' "$out"; then
		log "PyPI is unreachable: cannot install the pinned clients ($(grep -iE 'error' "$out" | tail -n 1))"
		exit 3
	fi
	tail -n 20 "$out" >&2
	log "pip install failed"
	exit 1
fi
if ! "$venv/bin/python" -m pip check --disable-pip-version-check >"$out" 2>&1; then
	cat "$out" >&2
	rm -rf "$venv"
	log "the pinned set is inconsistent (pip check above): fix requirements.txt"
	exit 1
fi
touch "$venv/.complete"
echo "$venv"
