#!/usr/bin/env bash
# scripts/idle-ws.sh — hold N idle WebSocket connections to ustack and
# measure ustack's memory per connection (issue 6: 100,000 idle connections
# with <= 4 KiB of ustack memory each).
#
#   sudo scripts/idle-ws.sh [--count N] [--sources K] [--hold SECS] [--parallel P]
#                           [--sample S] [--deflate] [--budget BYTES]
#                           [--ustack-args "ARGS"] [--no-build] [--out FILE]
#
# What it does (everything it creates is removed on exit, via trap):
#   * builds target/release/ustack and the example ws_idle (unless --no-build);
#   * a namespace "uiw<id>" with a TUN device (netns-setup.sh up; kernel side
#     A.B.C.1, ustack A.B.C.2) plus K extra kernel-side source addresses
#     A.B.C.10 .. A.B.C.(9+K) on the TUN; inside the namespace only:
#     net.ipv4.ip_local_port_range = "1024 65535" (64,512 ports per source)
#     and the TUN's txqueuelen = 10000 (the connection burst is not dropped
#     in the kernel's queue to ustack);
#   * starts `ustack serve --max-connections N+1000 ...` in the namespace and
#     measures its VmRSS (/proc/PID/status) after a warm-up request;
#   * runs ws_idle: N connections to ws://A.B.C.2/ws/echo, spread over the K
#     sources, each upgrade checked (101 + Sec-WebSocket-Accept), then held
#     idle (the client answers ustack's 30 s keepalive pings);
#   * once all are open: VmRSS again, ustack's own counters (SIGUSR1 stats
#     line: connections, ESTABLISHED; /api/stats: buffer_memory, states),
#     the kernel side's socket counts (/proc/net/sockstat in the namespace);
#   * holds them --hold seconds (default 40: past one keepalive ping round,
#     so every connection has sent and received data since the upgrade) and
#     measures again; then checks a sample (a text message and a ping on S
#     connections spread over all: each must come back), closes everything
#     and reports a Markdown table (stdout and --out FILE).
#
# Memory per connection = (VmRSS after - VmRSS before) / connections open.
# It includes everything ustack allocated for them (TCB slab, demux and
# service hash maps, WebSocket state, ring buffers, timer heaps, malloc
# overhead and fragmentation), and also fixed costs first touched during the
# run, so it is an upper bound. --budget (default 4096) is the target; the
# script exits 2 if the figure is over it, 1 if connections were not held.
set -euo pipefail

COUNT=100000
SOURCES=5
HOLD=40
PARALLEL=256
SAMPLE=200
DEFLATE=0
BUDGET=4096
USTACK_ARGS=""
BUILD=1
OUT=""

die() { echo "idle-ws.sh: $*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

while [ $# -gt 0 ]; do
    case "$1" in
        --count) COUNT=${2:?}; shift 2 ;;
        --sources) SOURCES=${2:?}; shift 2 ;;
        --hold) HOLD=${2:?}; shift 2 ;;
        --parallel) PARALLEL=${2:?}; shift 2 ;;
        --sample) SAMPLE=${2:?}; shift 2 ;;
        --deflate) DEFLATE=1; shift ;;
        --budget) BUDGET=${2:?}; shift 2 ;;
        --ustack-args) USTACK_ARGS=${2?}; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --out) OUT=${2:?}; shift 2 ;;
        -h|--help) usage 0 ;;
        *) die "unknown option '$1' (see --help)" ;;
    esac
done
for v in COUNT SOURCES HOLD PARALLEL SAMPLE BUDGET; do
    [[ "${!v}" =~ ^[0-9]+$ ]] || die "--${v,,} takes an integer"
done
[ "$COUNT" -ge 1 ] || die "--count must be at least 1"
[ "$SOURCES" -ge 1 ] && [ "$SOURCES" -le 200 ] || die "--sources must be 1..200"
PORTS_LO=1024; PORTS_HI=65535
PER_SOURCE=$(( (COUNT + SOURCES - 1) / SOURCES ))
[ "$PER_SOURCE" -le $(( PORTS_HI - PORTS_LO + 1 )) ] || die "$COUNT connections need more than $SOURCES sources (at most $(( PORTS_HI - PORTS_LO + 1 )) ports per source): use --sources $(( (COUNT + 64511) / 64512 ))"

[ "$(id -u)" -eq 0 ] || die "must run as root (namespaces, TUN devices): sudo $0"
for t in ip curl python3; do command -v $t >/dev/null || die "'$t' not found"; done

cd "$(dirname "$0")/.."
ROOT=$(pwd)
find_cargo() {
    if command -v cargo >/dev/null; then echo cargo; return; fi
    if [ -n "${SUDO_USER:-}" ]; then
        local home; home=$(getent passwd "$SUDO_USER" | cut -d: -f6)
        [ -x "$home/.cargo/bin/cargo" ] && { echo "sudo -u $SUDO_USER $home/.cargo/bin/cargo"; return; }
    fi
    die "cargo not found"
}
if [ "$BUILD" -eq 1 ]; then
    cargo=$(find_cargo)
    echo "# building (release): ustack, example ws_idle" >&2
    $cargo build --release --bin ustack --example ws_idle >&2
fi
USTACK_BIN=$ROOT/target/release/ustack
CLIENT_BIN=$ROOT/target/release/examples/ws_idle
for b in "$USTACK_BIN" "$CLIENT_BIN"; do [ -x "$b" ] || die "missing $b (build first)"; done

# ---------------------------------------------------------------- plumbing
ID=$(( $$ % 100000 ))
NS=uiw$ID
TUN=tiw$ID
C=$(( ID % 250 ))
PREFIX=10.232.$C
ADDR=$PREFIX.2
TMP=$(mktemp -d /tmp/ustack-idle.XXXXXX)
USTACK_PID=""
CLIENT_PID=""

cleanup() {
    set +e
    [ -n "$CLIENT_PID" ] && kill -KILL "$CLIENT_PID" 2>/dev/null && wait "$CLIENT_PID" 2>/dev/null
    if [ -n "$USTACK_PID" ]; then
        kill -TERM "$USTACK_PID" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$USTACK_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$USTACK_PID" 2>/dev/null
        wait "$USTACK_PID" 2>/dev/null
    fi
    bash "$ROOT/netns-setup.sh" down --netns "$NS" >/dev/null 2>&1
    if [ "${KEEP_TMP:-0}" = 1 ]; then echo "idle-ws.sh: logs kept in $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bash "$ROOT/netns-setup.sh" up --netns "$NS" --tun "$TUN" --subnet "$PREFIX.0/24" >/dev/null
SRC_LIST=""
for k in $(seq 0 $(( SOURCES - 1 ))); do
    a=$PREFIX.$(( 10 + k ))
    ip -n "$NS" addr add "$a/24" dev "$TUN"
    SRC_LIST=${SRC_LIST:+$SRC_LIST,}$a
done
ip -n "$NS" link set "$TUN" txqueuelen 10000
ip netns exec "$NS" sysctl -qw net.ipv4.ip_local_port_range="$PORTS_LO $PORTS_HI"

# ---------------------------------------------------------------- ustack
# shellcheck disable=SC2086
ip netns exec "$NS" "$USTACK_BIN" serve --tun "$TUN" --addr "$ADDR" --seed 1 \
    --max-connections $(( COUNT + 1000 )) $USTACK_ARGS >"$TMP/ustack.out" 2>"$TMP/ustack.err" &
USTACK_PID=$!
for _ in $(seq 150); do grep -q " listening on " "$TMP/ustack.out" 2>/dev/null && break; sleep 0.1; done
grep -q " listening on " "$TMP/ustack.out" || { cat "$TMP/ustack.err" >&2; die "ustack did not start"; }

rss_kb() { awk '/^VmRSS:/{print $2}' "/proc/$1/status"; }
api() { ip netns exec "$NS" curl -s --max-time 30 "http://$ADDR/api/stats"; }
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
ustack_stats() {
    local before; before=$(grep -c '^ustack-stats:' "$TMP/ustack.err" || true)
    kill -USR1 "$USTACK_PID"
    for _ in $(seq 100); do
        [ "$(grep -c '^ustack-stats:' "$TMP/ustack.err" || true)" -gt "$before" ] && break; sleep 0.05
    done
    grep '^ustack-stats:' "$TMP/ustack.err" | tail -1
}
stat_field() { tr ' ' '\n' <<<"$1" | awk -F= -v k="$2" '$1==k{print $2}'; }
sockstat() {
    ip netns exec "$NS" cat /proc/net/sockstat | awk '/^TCP:/{printf "%s", $0}'
    echo -n "; ss states:"
    ip netns exec "$NS" ss -tanH | awk '{n[$1]++} END{for (k in n) printf " %s=%d", k, n[k]}'
}

# Warm-up: one HTTP request (touches the web service's scratch buffers).
api >/dev/null
sleep 1
RSS0=$(rss_kb "$USTACK_PID")
echo "# ustack pid $USTACK_PID, VmRSS before: $RSS0 kB" >&2

# ---------------------------------------------------------------- client
DEFLATE_ARG=()
[ "$DEFLATE" -eq 1 ] && DEFLATE_ARG=(--deflate)
T_START=$(date +%s.%N)
ip netns exec "$NS" "$CLIENT_BIN" --target "$ADDR:80" --source "$SRC_LIST" --count "$COUNT" \
    --parallel "$PARALLEL" --sample "$SAMPLE" "${DEFLATE_ARG[@]}" >"$TMP/client.out" 2>&1 &
CLIENT_PID=$!
OPEN_TIMEOUT=$(( 120 + COUNT / 100 ))
last=""
for _ in $(seq $(( OPEN_TIMEOUT * 2 ))); do
    grep -q '^READY' "$TMP/client.out" && break
    kill -0 "$CLIENT_PID" 2>/dev/null || { cat "$TMP/client.out" >&2; die "ws_idle exited early"; }
    p=$(grep '^progress' "$TMP/client.out" | tail -1 || true)
    if [ -n "$p" ] && [ "$p" != "$last" ] && [ $(( SECONDS % 5 )) -eq 0 ]; then echo "#   $p" >&2; last=$p; fi
    sleep 0.5
done
READY=$(grep '^READY' "$TMP/client.out" || true)
[ -n "$READY" ] || { tail -5 "$TMP/client.out" >&2; die "connections not open within ${OPEN_TIMEOUT}s"; }
echo "# $READY" >&2
OPEN=$(sed -n 's/.*open=\([0-9]*\).*/\1/p' <<<"$READY")
OPEN_SECS=$(sed -n 's/.*secs=\([0-9.]*\).*/\1/p' <<<"$READY")
DEFLATE_N=$(sed -n 's/.*deflate=\([0-9]*\).*/\1/p' <<<"$READY")
[ "${OPEN:-0}" -gt 0 ] || die "no connection opened: $(cat "$TMP/client.out")"

measure() {  # $1 = label; sets M_* globals
    M_RSS=$(rss_kb "$USTACK_PID")
    M_LINE=$(ustack_stats)
    M_CONNS=$(stat_field "$M_LINE" connections)
    M_EST=$(stat_field "$M_LINE" established)
    M_HANDLES=$(stat_field "$M_LINE" app_handles)
    local j; j=$(api)
    M_BUF=$(json 'd["tcp"]["buffer_memory"]' <<<"$j")
    M_LIVE=$(json 'd["tcp"]["connections_live"]' <<<"$j")
    M_STATES=$(json '" ".join(f"{k}={v}" for k,v in d["states"].items())' <<<"$j")
    M_SOCK=$(sockstat)
    M_PER=$(( (M_RSS - RSS0) * 1024 / OPEN ))
    echo "# $1: VmRSS $M_RSS kB, $(( M_PER )) B/conn; stack: connections=$M_CONNS established=$M_EST app_handles=$M_HANDLES buffer_memory=$M_BUF; states: $M_STATES; kernel: $M_SOCK" >&2
}

sleep 2
measure "all open"
RSS1=$M_RSS; PER1=$M_PER; EST1=$M_EST; CONNS1=$M_CONNS; HANDLES1=$M_HANDLES; BUF1=$M_BUF; STATES1=$M_STATES; SOCK1=$M_SOCK

echo "# holding ${HOLD}s" >&2
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
CPU_A=$(cpu_ticks "$USTACK_PID")
sleep "$HOLD"
CPU_B=$(cpu_ticks "$USTACK_PID")
HOLD_CPU=$(awk -v a="$CPU_A" -v b="$CPU_B" -v hz="$(getconf CLK_TCK)" -v s="$HOLD" 'BEGIN{printf "%.2f s (%.1f%% of one core)", (b-a)/hz, (s > 0) ? 100*(b-a)/hz/s : 0}')
measure "after ${HOLD}s idle"
RSS2=$M_RSS; PER2=$M_PER; EST2=$M_EST; CONNS2=$M_CONNS; BUF2=$M_BUF; STATES2=$M_STATES; SOCK2=$M_SOCK
HOLD_LINE=$(grep '^hold' "$TMP/client.out" | tail -1 || true)

kill -USR1 "$CLIENT_PID"
for _ in $(seq 120); do grep -q '^CHECK' "$TMP/client.out" && break; sleep 0.25; done
CHECK=$(grep '^CHECK' "$TMP/client.out" | head -1 || true)
echo "# $CHECK" >&2
kill -TERM "$CLIENT_PID"
CLIENT_RC=0
wait "$CLIENT_PID" || CLIENT_RC=$?
CLIENT_PID=""
DONE=$(grep '^DONE' "$TMP/client.out" || true)
ERRORS=$(grep '^error' "$TMP/client.out" | sort | uniq | head -10 || true)
echo "# $DONE (exit $CLIENT_RC)" >&2

# After the close: how long until ustack has let go of every connection,
# and how much memory comes back (informational).
T_CLOSE=$SECONDS
for _ in $(seq 120); do
    LINE3=$(ustack_stats)
    CONNS3=$(stat_field "$LINE3" connections); TW3=$(stat_field "$LINE3" time_wait)
    [ "$(( CONNS3 - TW3 ))" -le 0 ] && break
    sleep 1
done
DRAIN_SECS=$(( SECONDS - T_CLOSE ))
RSS3=$(rss_kb "$USTACK_PID")

kill -TERM "$USTACK_PID"
wait "$USTACK_PID" 2>/dev/null || true
USTACK_PID=""

BUF_PER1=$(( BUF1 / OPEN )); BUF_PER2=$(( BUF2 / OPEN ))
held=yes
[ "$OPEN" -eq "$COUNT" ] && [ "${EST2:-0}" -ge "$COUNT" ] && grep -q 'ok=true' <<<"$CHECK" && [ "$CLIENT_RC" -eq 0 ] || held=no
worst=$(( PER1 > PER2 ? PER1 : PER2 ))
met=yes; [ "$worst" -le "$BUDGET" ] || met=no

REPORT=$(cat <<EOF
$(date -u +%Y-%m-%d) $(nproc) CPUs "$(awk -F: '/model name/{print $2; exit}' /proc/cpuinfo | sed 's/^ *//')", Linux $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg)

\`sudo scripts/idle-ws.sh --count $COUNT --sources $SOURCES --hold $HOLD --parallel $PARALLEL --sample $SAMPLE$([ "$DEFLATE" -eq 1 ] && echo " --deflate")${USTACK_ARGS:+ --ustack-args \"$USTACK_ARGS\"}\`

| | all open | after ${HOLD} s idle |
|---|---|---|
| connections open (client) | $OPEN of $COUNT in ${OPEN_SECS} s | $(sed -n 's/.*open=\([0-9]*\).*/\1/p' <<<"$HOLD_LINE") ($HOLD_LINE) |
| ustack: connections / ESTABLISHED / service handles | $CONNS1 / $EST1 / $HANDLES1 | $CONNS2 / $EST2 / - |
| ustack VmRSS (before: $RSS0 kB) | $RSS1 kB | $RSS2 kB |
| **ustack memory per connection** (VmRSS delta / open) | **$PER1 B** | **$PER2 B** |
| ustack buffer accounting (/api/stats buffer_memory) | $BUF1 B ($BUF_PER1 B/conn) | $BUF2 B ($BUF_PER2 B/conn) |
| ustack states (/api/stats) | $STATES1 | $STATES2 |
| kernel side (/proc/net/sockstat in the namespace: inuse/alloc/tw per namespace, orphan and mem host-wide; ss states) | $SOCK1 | $SOCK2 |

ustack CPU time while holding them ${HOLD} s: $HOLD_CPU (the 30 s WebSocket keepalive pings and their pongs).
The states include the /api/stats request's own connection (+1). permessage-deflate accepted on $DEFLATE_N connections. Check (echo + ping on a sample): $CHECK. Client: $DONE.
After closing all: ustack had $CONNS3 connections left ($TW3 in TIME-WAIT) after ${DRAIN_SECS} s; VmRSS then $RSS3 kB.
Held: **$held**; <= $BUDGET B per connection: **$met**.
EOF
)
[ -n "$ERRORS" ] && REPORT="$REPORT
Client errors:
\`\`\`
$ERRORS
\`\`\`"
echo "$REPORT"
[ -n "$OUT" ] && echo "$REPORT" >"$OUT"
[ "$held" = yes ] || exit 1
[ "$met" = yes ] || exit 2
exit 0
