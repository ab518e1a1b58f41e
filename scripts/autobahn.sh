#!/usr/bin/env bash
# Run the Autobahn|Testsuite fuzzing client against a WebSocket echo endpoint
# and summarise the result.
#
#   scripts/autobahn.sh [--quick] [URL] [CASES]
#
#   URL     default ws://10.0.0.2/ws/echo (ustack in its namespace); for the
#           std-based example server: ws://127.0.0.1:9001/ws/echo
#   CASES   comma-separated case patterns, default "*" (all 517 cases);
#           --quick runs sections 1-11 (301 cases, no compression 12/13).
#
# The suite is Python 2 only. It is installed on first use into
# ${USTACK_CACHE:-$HOME/.cache/ustack}/AB (a Python 2.7 virtualenv made by
# a Python 3 virtualenv "T"), using pyenv's 2.7.18 if present, else a
# python2.7 on PATH. Reports go to $OUTDIR (default target/autobahn).
# Exit status: non-zero if any case FAILED / UNIMPLEMENTED, or if the number
# of cases in the report is not the expected one (wstest exits 0 even when
# the server died half-way).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
cache="${USTACK_CACHE:-$HOME/.cache/ustack}"
outdir="${OUTDIR:-$here/../target/autobahn}"
quick=0
args=()
for a in "$@"; do
    case "$a" in
        --quick) quick=1 ;;
        -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
        *) args+=("$a") ;;
    esac
done
url="${args[0]:-ws://10.0.0.2/ws/echo}"
cases="${args[1]:-}"

install_suite() {
    local py2=""
    if command -v pyenv >/dev/null 2>&1 && [ -x "$(pyenv root)/versions/2.7.18/bin/python2.7" ]; then
        py2="$(pyenv root)/versions/2.7.18/bin/python2.7"
    elif command -v python2.7 >/dev/null 2>&1; then
        py2="$(command -v python2.7)"
    else
        echo "autobahn.sh: no Python 2.7 found (pyenv install 2.7.18)" >&2
        exit 2
    fi
    mkdir -p "$cache"
    echo "autobahn.sh: installing autobahntestsuite into $cache/AB (takes a few minutes)" >&2
    [ -x "$cache/T/bin/virtualenv" ] || {
        python3 -m venv "$cache/T"
        "$cache/T/bin/pip" install -q 'virtualenv<20.22'
    }
    rm -rf "$cache/AB"
    "$cache/T/bin/virtualenv" -q -p "$py2" "$cache/AB"
    "$cache/AB/bin/pip" install -q autobahntestsuite==25.10.1
}

[ -x "$cache/AB/bin/wstest" ] || install_suite

if [ -z "$cases" ]; then
    if [ "$quick" = 1 ]; then
        cases='1.*,2.*,3.*,4.*,5.*,6.*,7.*,9.*,10.*'
        expected=301
    else
        cases='*'
        expected=517
    fi
else
    expected="${EXPECTED_CASES:-}"
fi

mkdir -p "$outdir"
spec="$outdir/fuzzingclient.json"
python3 - "$url" "$cases" "$outdir/reports/servers" > "$spec" <<'PY'
import json, sys
url, cases, out = sys.argv[1], sys.argv[2], sys.argv[3]
print(json.dumps({
    "outdir": out,
    "servers": [{"agent": "ustack", "url": url}],
    "cases": [c.strip() for c in cases.split(",") if c.strip()],
    "exclude-cases": [],
    "exclude-agent-cases": {},
}, indent=2))
PY
rm -rf "$outdir/reports/servers"
echo "autobahn.sh: testing $url (cases: $cases)" >&2
( cd "$outdir" && "$cache/AB/bin/wstest" -m fuzzingclient -s "$spec" ) > "$outdir/wstest.log" 2>&1 || {
    echo "autobahn.sh: wstest failed, see $outdir/wstest.log" >&2
    tail -20 "$outdir/wstest.log" >&2
    exit 2
}
exec python3 "$here/autobahn-summary.py" "$outdir/reports/servers/index.json" ${expected:+--expected "$expected"}
