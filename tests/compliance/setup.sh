#!/usr/bin/env bash
# Create the Python 2.7 virtualenv that runs Autobahn|Testsuite (`wstest`).
#
# Usage: bash tests/compliance/setup.sh [--force]
#
# Idempotent: a stamp file records the interpreter and the hash of
# requirements-py27.txt; when both are unchanged a re-run exits at once.
#
# Environment overrides:
#   WSKIT_PY27            path to a CPython 2.7 interpreter (default: pyenv's
#                         2.7.x, then python2.7 / python2 on PATH)
#   WSKIT_AUTOBAHN_VENV   where to create the venv (default: <repo>/.autobahn)
#   WSKIT_PROJECT_PYTHON  Python 3 that provides `virtualenv` (default:
#                         <repo>/.venv/bin/python, then python3)
#
# Nothing is ever installed into the 2.7 base interpreter: only `virtualenv`
# (<20.22, the last series that can create 2.7 environments) goes into the
# project's Python 3 venv, and everything else into the new venv.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${WSKIT_AUTOBAHN_VENV:-$root/.autobahn}"
req="$here/requirements-py27.txt"
stamp="$venv/.wskit-setup-stamp"
force=0
[[ "${1:-}" == "--force" ]] && force=1

die() { echo "compliance/setup.sh: error: $*" >&2; exit 1; }

is_py27() { [[ -x "$1" ]] && "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (2, 7))' 2>/dev/null; }

find_py27() {
    local cand
    if [[ -n "${WSKIT_PY27:-}" ]]; then
        is_py27 "$WSKIT_PY27" || die "WSKIT_PY27=$WSKIT_PY27 is not a CPython 2.7 interpreter"
        echo "$WSKIT_PY27"; return
    fi
    if command -v pyenv >/dev/null 2>&1; then
        for v in $(pyenv versions --bare 2>/dev/null | grep -E '^2\.7(\.[0-9]+)?$' | sort -t. -k3 -n -r); do
            cand="$(pyenv prefix "$v" 2>/dev/null)/bin/python"
            if is_py27 "$cand"; then echo "$cand"; return; fi
        done
    fi
    for cand in "$HOME"/.pyenv/versions/2.7*/bin/python; do
        if is_py27 "$cand"; then echo "$cand"; return; fi
    done
    for name in python2.7 python2; do
        cand="$(command -v "$name" 2>/dev/null || true)"
        if [[ -n "$cand" ]] && is_py27 "$cand"; then echo "$cand"; return; fi
    done
    die "CPython 2.7 not found. Autobahn|Testsuite (wstest) runs only on Python 2.7.
  Install it (e.g. 'pyenv install 2.7.18') or point WSKIT_PY27 at a 2.7 interpreter."
}

py27="$(find_py27)"
want="py27=$py27 req=$(sha256sum "$req" | cut -d' ' -f1)"

if [[ $force -eq 0 && -f "$stamp" && -x "$venv/bin/wstest" && "$(cat "$stamp")" == "$want" ]]; then
    echo "compliance: $venv is up to date (wstest $("$venv/bin/python" -c 'import autobahntestsuite; print(autobahntestsuite.version)'))"
    exit 0
fi

project_python="${WSKIT_PROJECT_PYTHON:-}"
if [[ -z "$project_python" ]]; then
    if [[ -x "$root/.venv/bin/python" ]]; then project_python="$root/.venv/bin/python"
    else project_python="$(command -v python3 || true)"; fi
fi
[[ -n "$project_python" && -x "$project_python" ]] || die "no Python 3 found to run virtualenv (set WSKIT_PROJECT_PYTHON)"

if ! "$project_python" -c 'import virtualenv, sys; sys.exit(tuple(map(int, virtualenv.__version__.split(".")[:2])) >= (20, 22))' 2>/dev/null; then
    echo "compliance: installing 'virtualenv<20.22' into $project_python's environment"
    "$project_python" -m pip install --quiet 'virtualenv<20.22' \
        || die "could not install 'virtualenv<20.22' with $project_python -m pip"
fi

echo "compliance: creating $venv with $py27"
rm -rf "$venv"
"$project_python" -m virtualenv --quiet -p "$py27" "$venv" \
    || die "virtualenv failed to create $venv from $py27"

echo "compliance: installing pinned wstest environment from $req"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONWARNINGS=ignore
log="$(mktemp)"
if ! "$venv/bin/python" -m pip install --no-deps -r "$req" >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    rm -f "$log"
    die "pip could not install $req into $venv (a C compiler and the 2.7 headers are needed for wsaccel)"
fi
rm -f "$log"
"$venv/bin/python" -m pip check >/dev/null \
    || die "inconsistent wstest environment: run '$venv/bin/python -m pip check'"
"$venv/bin/wstest" --autobahnversion >/dev/null 2>&1 \
    || die "wstest does not start: try '$venv/bin/wstest --autobahnversion'"

echo "$want" > "$stamp"
echo "compliance: ready: $venv/bin/wstest"
