#!/usr/bin/env bash
# soak.sh — run ustack under mixed traffic on an impaired link for a while,
# then check that it is still healthy. Run as root.
#
#   sudo scripts/soak.sh [--minutes 30] [--impair SPEC] [--seed N] [--bin PATH]
#
# Traffic (tools/soak_load.py, every response checked): HTTP keep-alive and
# Connection: close, uploads to /sha256, downloads of /bytes/N, WebSocket
# echo and chat (Python websockets), TCP echo connection churn; plus wrk
# (keep-alive, 16 connections) on /bytes/1000.
#
# Checks after the load stops:
#   1. ustack is alive and its stderr has no "panicked";
#   2. the load saw no errors (TCP hides the injected faults: every check
#      must pass) and wrk had no socket errors;
#   3. VmRSS is back within 10 % of its value after warm-up;
#   4. no connection is left once the idle timeouts (HTTP 30 s, TIME-WAIT
#      2 MSL = 60 s) have passed.
# The short version runs in the test suite (tests/soak.rs):
#   sudo scripts/soak.sh --minutes 1 --seed 2
set -euo pipefail
MINUTES=30
IMPAIR="loss=1%,reorder=1%,dup=0.5%,delay=2ms,jitter=1ms"
SEED=1
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="$ROOT/target/release/ustack"
while [ $# -gt 0 ]; do
    case "$1" in
        --minutes) MINUTES="$2"; shift 2 ;;
        --impair) IMPAIR="$2"; shift 2 ;;
        --seed) SEED="$2"; shift 2 ;;
        --bin) BIN="$2"; shift 2 ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "soak.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" = 0 ] || { echo "soak.sh: needs root" >&2; exit 2; }
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release --bin ustack)
command -v python3 >/dev/null || { echo "soak.sh: needs python3" >&2; exit 2; }
python3 -c "import websockets.sync.client" 2>/dev/null || { echo "soak.sh: needs python3 websockets (pip install websockets)" >&2; exit 2; }

NS="soak$$"
TUN="tsoak$$"
SUB=$(( $$ % 200 + 20 ))
ADDR="10.251.$SUB.2"
DIR=$(mktemp -d /tmp/ustack-soak.XXXXXX)
PID=""
cleanup() {
    [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null || true
    bash "$ROOT/netns-setup.sh" down --netns "$NS" >/dev/null 2>&1 || true
}
trap cleanup EXIT
bash "$ROOT/netns-setup.sh" up --netns "$NS" --tun "$TUN" --subnet "10.251.$SUB.0/24" >/dev/null
ip netns exec "$NS" "$BIN" serve --tun "$TUN" --addr "$ADDR" --seed "$SEED" --impair "$IMPAIR" \
    >"$DIR/stdout" 2>"$DIR/stderr" &
PID=$!
for _ in $(seq 50); do grep -q " listening on " "$DIR/stdout" 2>/dev/null && break; sleep 0.1; done
grep -q " listening on " "$DIR/stdout" || { echo "soak: ustack did not start"; cat "$DIR/stderr"; exit 1; }

rss() { awk '/^VmRSS:/ {print $2}' "/proc/$PID/status"; }
hwm() { awk '/^VmHWM:/ {print $2}' "/proc/$PID/status"; }
# RSS split: heap and other anonymous memory, file pages (the binary's code
# and data, paged in as code paths are first used), shared memory.
rss_split() { awk '/^Rss(Anon|File|Shmem):/ {printf "%s %s kB ", $1, $2}' "/proc/$PID/status"; }
stats_line() {
    local before
    before=$(grep -c '^ustack-stats:' "$DIR/stderr" || true)
    kill -USR1 "$PID"
    for _ in $(seq 50); do
        [ "$(grep -c '^ustack-stats:' "$DIR/stderr" || true)" -gt "$before" ] && break
        sleep 0.1
    done
    grep '^ustack-stats:' "$DIR/stderr" | tail -1
}
field() { echo "$1" | tr ' ' '\n' | awk -F= -v k="$2" '$1 == k {print $2}'; }
wait_idle() {
    local line
    for _ in $(seq "$1"); do
        line=$(stats_line)
        [ "$(field "$line" connections)" = 0 ] && { echo "$line"; return 0; }
        sleep 1
    done
    echo "$line"
    return 1
}

echo "soak: ustack pid $PID on $ADDR, impair $IMPAIR, $MINUTES min; logs in $DIR"
# ustack serve switches glibc's per-thread malloc cache off (src/main.rs);
# show the setting it runs with (glibc splits GLIBC_TUNABLES with NULs in
# place, hence the search through the whole environment).
echo "soak: ustack's malloc cache: $(tr '\0' ':' <"/proc/$PID/environ" | grep -o 'glibc\.malloc\.tcache_count=[0-9]*' || echo "glibc's default")"
# Warm-up: every kind of traffic once, then idle, then the baseline RSS.
ip netns exec "$NS" python3 "$ROOT/tools/soak_load.py" --addr "$ADDR" --seconds 10 --seed "$SEED" >"$DIR/warmup.json"
LINE0=$(wait_idle 120) || true
RSS0=$(rss)
echo "soak: baseline RSS after warm-up: $RSS0 kB ($(rss_split)); heap in use $(field "$LINE0" heap_in_use) B, free $(field "$LINE0" heap_free) B"
cp "/proc/$PID/smaps" "$DIR/smaps.baseline" 2>/dev/null || true

SECS=$(( MINUTES * 60 ))
ip netns exec "$NS" wrk -t1 -c16 -d"${SECS}s" --timeout 30s "http://$ADDR/bytes/1000" >"$DIR/wrk.txt" 2>&1 &
WRK=$!
ip netns exec "$NS" python3 "$ROOT/tools/soak_load.py" --addr "$ADDR" --seconds "$SECS" --seed "$SEED" >"$DIR/load.json" &
LOAD=$!
PEAK=0
while kill -0 "$LOAD" 2>/dev/null; do
    r=$(rss); [ "$r" -gt "$PEAK" ] && PEAK=$r
    sleep 5
done
wait "$LOAD" || true
wait "$WRK" || true
RSS_LOADED=$(rss)

FAIL=0
fail() { echo "soak: FAIL: $*"; FAIL=1; }
echo "soak: load: $(cat "$DIR/load.json")"
echo "soak: wrk: $(grep -E 'Requests/sec|requests in|Socket errors|Non-2xx' "$DIR/wrk.txt" | tr -s ' ' | tr '\n' ';')"
python3 - "$DIR/load.json" <<'EOF' || FAIL=1
import json, sys
d = json.load(open(sys.argv[1]))
bad = sum(d["errors"].values())
missing = [k for k in ["http-close", "http-keepalive", "upload", "ws-echo", "ws-chat", "churn"] if d["ops"].get(k, 0) == 0]
if bad or d["hung_workers"] or missing:
    print(f"soak: FAIL: load errors {d['errors']}, hung {d['hung_workers']}, idle workloads {missing}")
    sys.exit(1)
EOF
if grep -q "Socket errors" "$DIR/wrk.txt"; then fail "wrk: $(grep 'Socket errors' "$DIR/wrk.txt")"; fi
if grep -q "Non-2xx" "$DIR/wrk.txt"; then fail "wrk: $(grep 'Non-2xx' "$DIR/wrk.txt")"; fi

echo "soak: waiting for idle timeouts (HTTP 30 s, TIME-WAIT 60 s)..."
if LINE=$(wait_idle 150); then :; else
    fail "connections left after idle timeouts: $LINE"
    ip netns exec "$NS" curl -s -m 10 "http://$ADDR/api/stats" >"$DIR/stats.json" || true
    python3 -c 'import json,sys; [print("soak:   left:", c) for c in json.load(open(sys.argv[1]))["connections"]]' "$DIR/stats.json" || true
fi
RSS1=$(rss)
echo "soak: RSS after idle: $RSS1 kB ($(rss_split)); heap in use $(field "$LINE" heap_in_use) B, free $(field "$LINE" heap_free) B"
cp "/proc/$PID/smaps" "$DIR/smaps.after" 2>/dev/null || true
kill -0 "$PID" 2>/dev/null || fail "ustack is not running"
grep -q "panicked" "$DIR/stderr" && fail "ustack panicked: $(grep -m1 panicked "$DIR/stderr")"
LIMIT=$(( RSS0 + RSS0 / 10 ))
[ "$RSS1" -le "$LIMIT" ] || fail "RSS $RSS1 kB after the load, more than 10 % over the baseline $RSS0 kB"
echo "soak: RSS baseline $RSS0 kB, peak $PEAK kB (VmHWM $(hwm) kB), at end of load $RSS_LOADED kB, after idle $RSS1 kB"
echo "soak: final stats: $LINE"
if [ "$FAIL" = 0 ]; then
    echo "soak: PASS ($MINUTES min)"
    if [ -n "${SOAK_KEEP:-}" ]; then echo "soak: logs kept in $DIR (SOAK_KEEP)"; else rm -rf "$DIR"; fi
else
    echo "soak: logs kept in $DIR"
    exit 1
fi
