#!/usr/bin/env bash
# Autobahn|Testsuite (fuzzingclient) against ustack's /ws/echo over a real
# TUN device: the WebSocket conformance suite with ustack's own TCP below.
#
#   sudo scripts/autobahn-e2e.sh [--quick] [--bin PATH] [-- extra ustack serve args]
#
#   --quick   sections 1-11 only (301 cases, no permessage-deflate 12/13);
#             default: all 517 cases
#   --bin     the ustack binary (default: target/release/ustack, built if missing)
#
# Steps: install the suite if needed (outside the namespace: it needs the
# package registry), create a namespace with a unique name (netns-setup.sh
# up), start `ustack serve` in it, run wstest in the namespace against
# ws://ADDR/ws/echo, summarise with the case-count check, clean up (also on
# failure or Ctrl-C). Reports: $OUTDIR (default target/autobahn-e2e[-quick]).
# Uses scripts/autobahn.sh and scripts/autobahn-summary.py when present;
# otherwise a minimal built-in runner with the same install location.
# Exit status: 0 only if no case FAILED/UNIMPLEMENTED and the count matches.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
cache="${USTACK_CACHE:-$HOME/.cache/ustack}"
quick=0
bin="$root/target/release/ustack"
extra=()
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) quick=1; shift ;;
        --bin) bin=${2:?--bin needs a path}; shift 2 ;;
        --) shift; extra=("$@"); break ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "autobahn-e2e.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" -eq 0 ] || { echo "autobahn-e2e.sh: needs root (network namespace, TUN)" >&2; exit 2; }
if [ "$quick" = 1 ]; then
    cases='1.*,2.*,3.*,4.*,5.*,6.*,7.*,9.*,10.*'; expected=301
    outdir="${OUTDIR:-$root/target/autobahn-e2e-quick}"
else
    cases='*'; expected=517
    outdir="${OUTDIR:-$root/target/autobahn-e2e}"
fi

# --- the suite (Python 2.7 only): one installer, in scripts/autobahn.sh ---
[ -x "$cache/AB/bin/wstest" ] || USTACK_CACHE="$cache" "$root/scripts/autobahn.sh" --install-only >&2 || exit 2

if [ ! -x "$bin" ]; then
    echo "autobahn-e2e.sh: building $bin" >&2
    (cd "$root" && cargo build --release --bin ustack)
fi

# --- namespace + ustack ------------------------------------------------------
n=$(( $$ % 200 ))
ns="ab$$"; ns=${ns:0:12}
tun="tab$$"; tun=${tun:0:15}
subnet="10.250.$n.0/24"
addr="10.250.$n.2"
mkdir -p "$outdir"
pid=""
cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    bash "$root/netns-setup.sh" down --netns "$ns" >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bash "$root/netns-setup.sh" up --netns "$ns" --tun "$tun" --subnet "$subnet" >/dev/null
ip netns exec "$ns" "$bin" serve --tun "$tun" --addr "$addr" --seed 1 "${extra[@]}" \
    >"$outdir/ustack.stdout" 2>"$outdir/ustack.stderr" &
pid=$!
for _ in $(seq 150); do
    grep -q " listening on " "$outdir/ustack.stdout" 2>/dev/null && break
    kill -0 "$pid" 2>/dev/null || { echo "autobahn-e2e.sh: ustack exited:" >&2; cat "$outdir/ustack.stderr" >&2; exit 2; }
    sleep 0.1
done
grep -q " listening on " "$outdir/ustack.stdout" || { echo "autobahn-e2e.sh: ustack did not start" >&2; exit 2; }

url="ws://$addr/ws/echo"
echo "autobahn-e2e.sh: $url in namespace $ns, $expected cases" >&2
t0=$(date +%s)
rc=0
if [ -x "$here/autobahn.sh" ]; then
    qa=(); [ "$quick" = 1 ] && qa=(--quick)
    ip netns exec "$ns" env OUTDIR="$outdir" USTACK_CACHE="$cache" bash "$here/autobahn.sh" "${qa[@]}" "$url" || rc=$?
else
    # Minimal runner (until scripts/autobahn.sh is available).
    spec="$outdir/fuzzingclient.json"
    cat >"$spec" <<EOF
{"outdir": "$outdir/reports/servers", "servers": [{"agent": "ustack", "url": "$url"}],
 "cases": ["$(echo "$cases" | sed 's/,/", "/g')"], "exclude-cases": [], "exclude-agent-cases": {}}
EOF
    rm -rf "$outdir/reports/servers"
    (cd "$outdir" && ip netns exec "$ns" "$cache/AB/bin/wstest" -m fuzzingclient -s "$spec") >"$outdir/wstest.log" 2>&1 || {
        echo "autobahn-e2e.sh: wstest failed, see $outdir/wstest.log" >&2; tail -20 "$outdir/wstest.log" >&2; exit 2; }
    python3 - "$outdir/reports/servers/index.json" "$expected" <<'PY' || rc=$?
import collections, json, sys
index = json.load(open(sys.argv[1])); expected = int(sys.argv[2])
cases = {k: v for cs in index.values() for k, v in cs.items()}
b = collections.Counter(c["behavior"] for c in cases.values())
cb = collections.Counter(c["behaviorClose"] for c in cases.values())
print("behavior:       " + ", ".join("%s %d" % kv for kv in sorted(b.items())))
print("close behavior: " + ", ".join("%s %d" % kv for kv in sorted(cb.items())))
bad = [k for k, c in cases.items() if c["behavior"] in ("FAILED", "UNIMPLEMENTED") or c["behaviorClose"] in ("FAILED", "UNIMPLEMENTED")]
for k in sorted(bad): print("  not passed:", k, cases[k]["behavior"], cases[k]["behaviorClose"])
print("autobahn: %d passed, %d failed" % (len(cases) - len(bad), len(bad)))
if len(cases) != expected: print("expected %d cases, report has %d" % (expected, len(cases)))
sys.exit(1 if bad or len(cases) != expected else 0)
PY
fi
echo "autobahn-e2e.sh: $(( $(date +%s) - t0 )) s; ustack: $(grep -c . "$outdir/ustack.stderr") stderr lines; reports in $outdir" >&2
if ! kill -0 "$pid" 2>/dev/null; then
    echo "autobahn-e2e.sh: ustack died during the run:" >&2; tail -20 "$outdir/ustack.stderr" >&2; rc=1
fi
exit "$rc"
