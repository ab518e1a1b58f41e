#!/usr/bin/env bash
# scripts/bench.sh — ustack, smoltcp 0.14 and the Linux kernel side by side.
#
#   sudo scripts/bench.sh [--quick] [--rounds N] [--size BYTES] [--duration SECS]
#                         [--systems "ustack ustack-nooff smoltcp kernel floor"] [--workloads "down up updis upcubic upbbr ws wrk ab"]
#                         [--ustack-args "ARGS"] [--mtu N] [--no-build] [--out FILE]
#
# What it does (everything it creates is removed on exit, via trap):
#   * builds target/release/ustack and the examples smoltcp_server,
#     kernel_server and tun_floor (unless --no-build);
#   * a client namespace "ubc<id>" holding three TUN devices: ustack
#     (10.231.1.1 kernel side, ustack 10.231.1.2), ustack with --no-offload
#     (10.231.4.1 / .2), smoltcp (10.231.2.1 / .2), the floor (10.231.5.1 /
#     .2); and a veth pair to a
#     server namespace "ubk<id>" where the kernel reference server listens
#     (10.231.3.2);
#   * starts the three servers once, then runs each workload from the client
#     namespace, ALTERNATING the systems (A B C A B C ...) for --rounds rounds:
#       down  curl GET /bytes/SIZE                 (one connection, Gbit/s)
#       up    curl POST /sha256 of SIZE zero bytes (one connection, Gbit/s; hash checked)
#       updis curl POST /discard of SIZE zero bytes (one connection, Gbit/s; count checked):
#             the upload without the cost of SHA-256 (~0.6 s/GB here, for every server)
#       upcubic, upbbr  the same upload by examples/upload, which sets the sending
#             (client) socket's congestion control: CUBIC (Linux's default) or BBR.
#             curl gets the namespace default, inherited from the host (bbr on
#             these machines) and not changeable inside a namespace; in an
#             upload it is the client's kernel TCP that sends, so its congestion
#             control decides how it paces its data (see docs/benchmarks.md)
#       wrk   wrk -t1 -c32 -dD GET /bytes/100      (keep-alive requests/s)
#       ab    ab -c4 -t D GET /bytes/100           (HTTP/1.0, one connection per request: conn/s)
#       ws    examples/ws_rtt: 5000 sequential 64-byte WebSocket echoes, client and server
#             pinned to one core (taskset -c 1) for the run: p50 and p99 RTT, us;
#             ustack /ws/echo on port 80, the comparison servers on port 81 (tungstenite).
#             By default it runs before ab: ab leaves ~200,000 connections in
#             TIME-WAIT per server, and ending them 60 s later is work on the
#             pinned core (see docs/benchmarks.md, "WebSocket p99")
#   * reports medians, ratios ustack/smoltcp and ustack/kernel, and the
#     server process's CPU time (utime+stime from /proc/PID/stat) per GB
#     moved or per request, as a Markdown table (stdout and --out FILE).
#
# Systems: ustack (default options: TUN offload on), ustack-nooff (same with
# --no-offload: one packet per read/write, like smoltcp), smoltcp, kernel,
# and floor (examples/tun_floor.rs --busy 1000: a stateless responder that
# answers each packet by rewriting its headers, one read and one write per
# packet, no TCP, spinning on read for 1 ms after a packet instead of
# sleeping; wrk and ab only; its CPU column includes the spinning). The floor is the most requests/s the
# kernel, the TUN device and the client leave for any server on the device:
# a ratio to smoltcp it does not reach is not reachable by a server.
# Environment: USTACK_ARGS (same as --ustack-args) is appended to both
# `ustack serve` command lines; the table header names it.
#
# Time: default 3 rounds, 1 GB transfers, 5 s wrk/ab runs (~5 min);
# --quick: 1 round, 300 MB, 2 s (~1 min). Numbers are only comparable
# within one run: never use them as pass/fail thresholds.
set -euo pipefail

ROUNDS=3
SIZE=1000000000
DURATION=5
SYSTEMS="ustack ustack-nooff smoltcp kernel floor"
WORKLOADS="down up updis upcubic upbbr ws wrk ab"
USTACK_ARGS=${USTACK_ARGS:-}
MTU=""
BUILD=1
OUT=""

die() { echo "bench.sh: $*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

while [ $# -gt 0 ]; do
    case "$1" in
        --quick) ROUNDS=1; SIZE=300000000; DURATION=2; shift ;;
        --rounds) ROUNDS=${2:?}; shift 2 ;;
        --size) SIZE=${2:?}; shift 2 ;;
        --duration) DURATION=${2:?}; shift 2 ;;
        --systems) SYSTEMS=${2:?}; shift 2 ;;
        --workloads) WORKLOADS=${2:?}; shift 2 ;;
        --ustack-args) USTACK_ARGS=${2?}; shift 2 ;;
        --mtu) MTU=${2:?}; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --out) OUT=${2:?}; shift 2 ;;
        -h|--help) usage 0 ;;
        *) die "unknown option '$1' (see --help)" ;;
    esac
done
[[ "$ROUNDS" =~ ^[0-9]+$ && "$SIZE" =~ ^[0-9]+$ && "$DURATION" =~ ^[0-9]+$ ]] || die "--rounds, --size, --duration take integers"

[ "$(id -u)" -eq 0 ] || die "must run as root (namespaces, TUN devices): sudo $0"
for t in ip curl python3 sha256sum; do command -v $t >/dev/null || die "'$t' not found"; done
case " $WORKLOADS " in *" wrk "*) command -v wrk >/dev/null || die "wrk not found (apt-get install wrk)";; esac
case " $WORKLOADS " in *" ab "*) command -v ab >/dev/null || die "ab not found (apt-get install apache2-utils)";; esac

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
    echo "# building (release): ustack, examples smoltcp_server, kernel_server, ws_rtt, upload, tun_floor" >&2
    $cargo build --release --bin ustack --example smoltcp_server --example kernel_server --example ws_rtt --example upload --example tun_floor >&2
fi
USTACK_BIN=$ROOT/target/release/ustack
SMOLTCP_BIN=$ROOT/target/release/examples/smoltcp_server
KERNEL_BIN=$ROOT/target/release/examples/kernel_server
WSRTT_BIN=$ROOT/target/release/examples/ws_rtt
UPLOAD_BIN=$ROOT/target/release/examples/upload
FLOOR_BIN=$ROOT/target/release/examples/tun_floor
for b in "$USTACK_BIN" "$SMOLTCP_BIN" "$KERNEL_BIN" "$WSRTT_BIN" "$UPLOAD_BIN" "$FLOOR_BIN"; do [ -x "$b" ] || die "missing $b (build first)"; done

# ---------------------------------------------------------------- plumbing
ID=$(( $$ % 100000 ))
NS_C=ubc$ID
NS_K=ubk$ID
TUN_U=ubu$ID
TUN_S=ubs$ID
TUN_N=ubn$ID
TUN_F=ubf$ID
VETH_C=ubvc$ID
VETH_K=ubvk$ID
ADDR_U=10.231.1.2
ADDR_S=10.231.2.2
ADDR_N=10.231.4.2
ADDR_K=10.231.3.2
ADDR_F=10.231.5.2
TMP=$(mktemp -d /tmp/ustack-bench.XXXXXX)
UPFILE=/dev/shm/ustack-bench-$ID.bin
declare -A PID=()

cleanup() {
    set +e
    for s in "${!PID[@]}"; do
        kill -TERM "${PID[$s]}" 2>/dev/null
    done
    sleep 0.5
    for s in "${!PID[@]}"; do
        kill -KILL "${PID[$s]}" 2>/dev/null
        wait "${PID[$s]}" 2>/dev/null
    done
    ip netns del "$NS_C" 2>/dev/null
    ip netns del "$NS_K" 2>/dev/null
    rm -f "$UPFILE"
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip netns add "$NS_C"
ip netns add "$NS_K"
ip -n "$NS_C" link set lo up
ip -n "$NS_K" link set lo up
for pair in "$TUN_U:10.231.1.1" "$TUN_S:10.231.2.1" "$TUN_N:10.231.4.1" "$TUN_F:10.231.5.1"; do
    dev=${pair%%:*}; a=${pair#*:}
    ip netns exec "$NS_C" ip tuntap add dev "$dev" mode tun
    ip -n "$NS_C" addr add "$a/24" dev "$dev"
    [ -n "$MTU" ] && ip -n "$NS_C" link set "$dev" mtu "$MTU"
    ip netns exec "$NS_C" sysctl -qw "net.ipv6.conf.$dev.disable_ipv6=1" 2>/dev/null || true
    ip -n "$NS_C" link set "$dev" up
done
ip link add "$VETH_C" netns "$NS_C" type veth peer name "$VETH_K" netns "$NS_K"
ip -n "$NS_C" addr add 10.231.3.1/24 dev "$VETH_C"
ip -n "$NS_K" addr add "$ADDR_K/24" dev "$VETH_K"
if [ -n "$MTU" ]; then ip -n "$NS_C" link set "$VETH_C" mtu "$MTU"; ip -n "$NS_K" link set "$VETH_K" mtu "$MTU"; fi
ip -n "$NS_C" link set "$VETH_C" up
ip -n "$NS_K" link set "$VETH_K" up

# --------------------------------------------------------------- servers
addr_of() { case $1 in ustack) echo $ADDR_U;; ustack-nooff) echo $ADDR_N;; smoltcp) echo $ADDR_S;; kernel) echo $ADDR_K;; floor) echo $ADDR_F;; esac; }

# `ip netns exec` execs the server, so $! is the server's own PID (the one
# whose CPU time we read and which we stop on exit).
start() {
    local s=$1 log=$TMP/$1.log
    case $s in
        # shellcheck disable=SC2086
        ustack) ip netns exec "$NS_C" "$USTACK_BIN" serve --tun "$TUN_U" --addr "$ADDR_U" --seed 1 $USTACK_ARGS >"$log" 2>&1 & ;;
        # shellcheck disable=SC2086
        ustack-nooff) ip netns exec "$NS_C" "$USTACK_BIN" serve --tun "$TUN_N" --addr "$ADDR_N" --seed 1 --no-offload $USTACK_ARGS >"$log" 2>&1 & ;;
        smoltcp) ip netns exec "$NS_C" "$SMOLTCP_BIN" --tun "$TUN_S" --addr "$ADDR_S/24" >"$log" 2>&1 & ;;
        kernel) ip netns exec "$NS_K" "$KERNEL_BIN" 0.0.0.0:80 >"$log" 2>&1 & ;;
        floor) ip netns exec "$NS_C" "$FLOOR_BIN" --tun "$TUN_F" --addr "$ADDR_F" --busy 1000 >"$log" 2>&1 & ;;
        *) die "unknown system '$s' (ustack, ustack-nooff, smoltcp, kernel, floor)" ;;
    esac
    PID[$s]=$!
}

for s in $SYSTEMS; do start "$s"; done
for s in $SYSTEMS; do
    ok=0
    for _ in $(seq 50); do
        if ip netns exec "$NS_C" curl -s --max-time 1 -o /dev/null "http://$(addr_of "$s")/bytes/10"; then ok=1; break; fi
        kill -0 "${PID[$s]}" 2>/dev/null || break
        sleep 0.2
    done
    [ $ok -eq 1 ] || { cat "$TMP/$s.log" >&2; die "$s does not answer HTTP at $(addr_of "$s")"; }
done

# CPU seconds (utime+stime, all threads) of a server process.
cpu_of() {
    local stat; stat=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
    stat=${stat##*) }
    # Fields after the comm: state is field 3 of the full line, utime 14, stime 15.
    awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($12 + $13) / hz }' <<<"$stat"
}

cexec() { ip netns exec "$NS_C" "$@"; }

# The ws workload pins client and server to the last CPU.
ALL_CPUS="0-$(( $(nproc) - 1 ))"
PIN_CPU=$(( $(nproc) - 1 ))

RESULTS=$TMP/results.txt
: >"$RESULTS"
record() { echo "$*" >>"$RESULTS"; }   # system workload value cpu_seconds units(bytes|requests)

if [[ " $WORKLOADS " == *" up "* || " $WORKLOADS " == *" updis "* ]]; then
    rm -f "$UPFILE"; truncate -s "$SIZE" "$UPFILE"
    UPHASH=$(sha256sum "$UPFILE" | cut -d' ' -f1)
fi

# A transfer slower than 0.2 Gbit/s counts as stalled.
XFER_TIMEOUT=$(( SIZE / 25000000 + 10 ))

# Who is the bottleneck of an upload? The client (curl: file read, socket
# writes, the kernel's TCP and the TUN queue) runs on one core; ~1 s of CPU
# per second of transfer means it is saturated.
client_cpu() {
    local w=$1 s=$2 c0=$3 c1=$4
    awk -v w="$w" -v s="$s" -v srv="$(python3 -c "print(round($c1-$c0, 2))")" \
        '/^client-cpu/ {printf "  %s %s: client (curl) CPU %.2f s user + %.2f s sys in %.2f s; server CPU %s s\n", w, s, $2, $3, $4, srv}' \
        "$TMP/client-time" >&2 2>/dev/null || true
}

run_one() {
    local w=$1 s=$2 a; a=$(addr_of "$s")
    local pid=${PID[$s]} c0 c1 out
    # The floor answers GET /bytes/N (N <= 1024) only.
    [ "$s" = floor ] && [ "$w" != wrk ] && [ "$w" != ab ] && return
    kill -0 "$pid" 2>/dev/null || { echo "  $w $s: server died" >&2; record "$s $w fail 0 0"; return; }
    c0=$(cpu_of "$pid")
    case $w in
        down)
            out=$(cexec timeout $((XFER_TIMEOUT + 5)) curl -s -o /dev/null --max-time $XFER_TIMEOUT -w '%{speed_download} %{size_download}' "http://$a/bytes/$SIZE" || true)
            c1=$(cpu_of "$pid")
            read -r sp got <<<"${out:-0 0}"
            if [ "${got%.*}" = "$SIZE" ]; then
                record "$s down $(python3 -c "print($sp*8/1e9)") $(python3 -c "print($c1-$c0)") $SIZE"
            else echo "  down $s: got ${got:-0} of $SIZE bytes" >&2; record "$s down fail 0 0"; fi ;;
        up)
            out=$(cexec timeout $((XFER_TIMEOUT + 5)) /usr/bin/time -o "$TMP/client-time" -f 'client-cpu %U %S %e' \
                    curl -s --max-time $XFER_TIMEOUT -X POST -H 'Expect:' -H 'Content-Type: application/octet-stream' \
                    -T "$UPFILE" -w ' %{speed_upload}' "http://$a/sha256" || true)
            c1=$(cpu_of "$pid")
            client_cpu "$w" "$s" "$c0" "$c1"
            local hash sp; hash=$(awk 'NR==1 {print $1}' <<<"$out"); sp=$(awk 'END {print $NF}' <<<"$out")
            if [ "$hash" = "$UPHASH" ]; then
                record "$s up $(python3 -c "print($sp*8/1e9)") $(python3 -c "print($c1-$c0)") $SIZE"
            else echo "  up $s: bad answer '${out:0:80}'" >&2; record "$s up fail 0 0"; fi ;;
        updis)
            out=$(cexec timeout $((XFER_TIMEOUT + 5)) /usr/bin/time -o "$TMP/client-time" -f 'client-cpu %U %S %e' \
                    curl -s --max-time $XFER_TIMEOUT -X POST -H 'Expect:' -H 'Content-Type: application/octet-stream' \
                    -T "$UPFILE" -w ' %{speed_upload}' "http://$a/discard" || true)
            c1=$(cpu_of "$pid")
            client_cpu "$w" "$s" "$c0" "$c1"
            local count sp; count=$(awk 'NR==1 {print $1}' <<<"$out"); sp=$(awk 'END {print $NF}' <<<"$out")
            if [ "$count" = "$SIZE" ]; then
                record "$s updis $(python3 -c "print($sp*8/1e9)") $(python3 -c "print($c1-$c0)") $SIZE"
            else echo "  updis $s: bad answer '${out:0:80}'" >&2; record "$s updis fail 0 0"; fi ;;
        upcubic|upbbr)
            local cc=${w#up}
            out=$(cexec timeout $((XFER_TIMEOUT + 5)) "$UPLOAD_BIN" "http://$a/discard" "$SIZE" --cc "$cc" 2>&1 || true)
            c1=$(cpu_of "$pid")
            local sp got cu cs used; read -r sp got cu cs used <<<"$out"
            if [ "${got:-}" = "$SIZE" ] && [ "${used:-}" = "$cc" ]; then
                echo "  $w $s: client (examples/upload) CPU $cu s user + $cs s sys; server CPU $(python3 -c "print(round($c1-$c0, 2))") s" >&2
                record "$s $w $sp $(python3 -c "print($c1-$c0)") $SIZE"
            else echo "  $w $s: ${out:0:200}" >&2; record "$s $w fail 0 0"; fi ;;
        wrk)
            out=$(cexec timeout $((DURATION + 30)) /usr/bin/time -f 'client-cpu %U %S' wrk -t1 -c32 -d"${DURATION}s" --timeout 5s "http://$a/bytes/100" 2>&1 || true)
            c1=$(cpu_of "$pid")
            # Is the client the bottleneck? wrk -t1 is one thread: ~1 s of
            # CPU per second of run means it is saturated.
            awk -v s="$s" -v d="$DURATION" '/^client-cpu/ {printf "  wrk %s: client (wrk) CPU %.2f s user + %.2f s sys in %s s\n", s, $2, $3, d}' <<<"$out" >&2
            local rps reqs errs
            rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
            reqs=$(awk '/requests in/ {print $1}' <<<"$out")
            errs=$(awk '/Non-2xx|Socket errors/' <<<"$out")
            [ -n "$errs" ] && echo "  wrk $s: $errs" >&2
            if [ -n "$rps" ] && [ "${reqs:-0}" -gt 0 ]; then
                record "$s wrk $rps $(python3 -c "print($c1-$c0)") $reqs"
            else echo "  wrk $s: ${out:0:200}" >&2; record "$s wrk fail 0 0"; fi ;;
        ab)
            out=$(cexec timeout $((DURATION + 30)) /usr/bin/time -f 'client-cpu %U %S' ab -q -s 10 -c4 -t "$DURATION" -n 100000000 "http://$a/bytes/100" 2>&1 || true)
            c1=$(cpu_of "$pid")
            awk -v s="$s" -v d="$DURATION" '/^client-cpu/ {printf "  ab %s: client (ab) CPU %.2f s user + %.2f s sys in %s s\n", s, $2, $3, d}' <<<"$out" >&2
            local rps ndone failed
            rps=$(awk '/^Requests per second:/ {print $4}' <<<"$out")
            ndone=$(awk '/^Complete requests:/ {print $3}' <<<"$out")
            failed=$(awk '/^Failed requests:/ {print $3}' <<<"$out")
            [ "${failed:-0}" != 0 ] && echo "  ab $s: $failed failed requests" >&2
            if [ -n "$rps" ] && [ "${ndone:-0}" -gt 0 ]; then
                record "$s ab $rps $(python3 -c "print($c1-$c0)") $ndone"
            else echo "  ab $s: ${out:0:300}" >&2; record "$s ab fail 0 0"; fi ;;
        ws)
            local url="ws://$a:81/"
            case $s in ustack*) url="ws://$a/ws/echo";; esac
            # Server (all threads) and client on one core for the run.
            taskset -a -p -c "$PIN_CPU" "$pid" >/dev/null 2>&1 || true
            out=$(cexec timeout 60 taskset -c "$PIN_CPU" "$WSRTT_BIN" "$url" 5000 64 2>&1 || true)
            taskset -a -p -c "$ALL_CPUS" "$pid" >/dev/null 2>&1 || true
            c1=$(cpu_of "$pid")
            local med p99 nmsg; read -r med p99 nmsg <<<"$out"
            if [[ "${nmsg:-}" =~ ^[0-9]+$ ]]; then
                record "$s ws $med $(python3 -c "print($c1-$c0)") $nmsg"
                record "$s ws99 $p99 0 $nmsg"
            else echo "  ws $s: ${out:0:200}" >&2; record "$s ws fail 0 0"; record "$s ws99 fail 0 0"; fi ;;
    esac
    echo "  $w $s: $(tail -n1 "$RESULTS" | cut -d' ' -f3)" >&2
}

START=$(date +%s)
for w in $WORKLOADS; do
    for r in $(seq "$ROUNDS"); do
        echo "# $w round $r/$ROUNDS" >&2
        for s in $SYSTEMS; do run_one "$w" "$s"; done
    done
done
ELAPSED=$(( $(date +%s) - START ))

# ---------------------------------------------------------------- report
REPORT=$TMP/report.md
CLIENT_CC=$(ip netns exec "$NS_C" sysctl -n net.ipv4.tcp_congestion_control 2>/dev/null || echo "?")
python3 - "$RESULTS" "$SYSTEMS" "$WORKLOADS" "$ROUNDS" "$SIZE" "$DURATION" "$USTACK_ARGS" "$ELAPSED" "${MTU:-1500}" "$CLIENT_CC" >"$REPORT" <<'EOF'
import sys, statistics
res, systems, workloads, rounds, size, dur, uargs, elapsed, mtu, ccc = sys.argv[1:]
systems = systems.split(); workloads = workloads.split()
data = {}
for line in open(res):
    s, w, v, cpu, units = line.split()
    data.setdefault((s, w), []).append(None if v == "fail" else (float(v), float(cpu), float(units)))
names = {
    "down": ("1 connection download, GET /bytes/%s" % size, "Gbit/s", "CPU s/GB"),
    "up": ("1 connection upload, POST /sha256 (%s B)" % size, "Gbit/s", "CPU s/GB"),
    "wrk": ("keep-alive req/s, wrk -t1 -c32 -d%ss, /bytes/100" % dur, "req/s", "CPU us/req"),
    "ab": ("new connections/s, ab -c4 -t%s (HTTP/1.0, close), /bytes/100" % dur, "conn/s", "CPU us/req"),
    "updis": ("1 connection upload, POST /discard (%s B)" % size, "Gbit/s", "CPU s/GB"),
    "upcubic": ("1 connection upload, POST /discard (%s B), client TCP CUBIC (examples/upload)" % size, "Gbit/s", "CPU s/GB"),
    "upbbr": ("1 connection upload, POST /discard (%s B), client TCP BBR (examples/upload)" % size, "Gbit/s", "CPU s/GB"),
    "ws": ("WebSocket echo RTT p50, 64 B, 5000 messages, pinned to one core (ratio: other RTT / ustack RTT, >1 = ustack faster)", "us", "CPU us/msg"),
    "ws99": ("WebSocket echo RTT p99, same run", "us", "CPU us/msg"),
}
BULK = ("down", "up", "updis", "upcubic", "upbbr")
if "ws" in workloads:
    workloads.insert(workloads.index("ws") + 1, "ws99")
def med(s, w):
    runs = data.get((s, w), [])
    ok = [r for r in runs if r]
    if not runs:
        return None, None, 0, 0
    if not ok:
        return None, None, len(runs), 0
    v = statistics.median(r[0] for r in ok)
    tot_cpu = sum(r[1] for r in ok); tot_units = sum(r[2] for r in ok)
    if w in BULK:
        c = tot_cpu / (tot_units / 1e9) if tot_units else None
    else:
        c = tot_cpu / tot_units * 1e6 if tot_units else None
    return v, c, len(runs), len(ok)
def fmt(x, w, n=1):
    if x is None: return "fail" if n else "-"
    return "%.2f" % x if w in BULK else "%.1f" % x if w in ("ws", "ws99") else "%.0f" % x
print("ustack `serve %s` (ustack-nooff: plus `--no-offload`) vs smoltcp 0.14 (examples/smoltcp_server.rs) vs Linux kernel over veth (examples/kernel_server.rs) vs floor (examples/tun_floor.rs, stateless, wrk/ab only); "
      "TUN MTU %s; client (curl, wrk, ab) kernel congestion control %s; medians of %s alternating rounds; run took %s s." % (uargs or "(default)", mtu, ccc, rounds, elapsed))
print()
ours = [s for s in systems if s.startswith("ustack")]
pairs = [(u, o) for u in ours for o in ("smoltcp", "kernel") if o in systems]
# The floor: what no server on the device can beat (wrk and ab only).
if "floor" in systems:
    pairs += [(f, o) for f in ("floor",) for o in ("smoltcp",) if o in systems]
    pairs += [(u, "floor") for u in ours]
hdr = ["workload", "unit"] + systems + ["%s/%s" % p for p in pairs]
hdr += ["CPU " + s for s in systems]
print("| " + " | ".join(hdr) + " |")
print("|" + "---|" * len(hdr))
for w in workloads:
    title, unit, cunit = names[w]
    m = {s: med(s, w) for s in systems}
    row = [title, unit]
    for s in systems:
        v, c, n, ok = m[s]
        row.append(fmt(v, w, n) + ("" if ok == n else " (%d/%d ok)" % (ok, n)))
    for u, other in pairs:
        a, b = m[u][0], m[other][0]
        if w in ("ws", "ws99"):
            a, b = b, a
        row.append("%.2fx" % (a / b) if a and b else "-")
    for s in systems:
        c = m[s][1]
        if w == "ws99":
            row.append("-")
            continue
        row.append(("%.2f" % c if w in BULK else "%.1f" % c) + " " + cunit.split()[1] if c is not None else "-")
    print("| " + " | ".join(row) + " |")
print()
print("CPU = utime+stime of the server process (all threads) over the runs, per GB moved or per request; "
      "kernel softirq work done on behalf of a socket is partly charged to whichever process is running, so the kernel column is a lower bound.")
EOF
cat "$REPORT"
[ -n "$OUT" ] && cp "$REPORT" "$OUT"
echo "# raw results (system workload value cpu_s units):" >&2
cat "$RESULTS" >&2
