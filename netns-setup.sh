#!/usr/bin/env bash
# netns-setup.sh — plumbing for ustack: a network namespace holding a TUN
# device, so ustack can run against the Linux kernel without touching the
# host's own network.
#
#   sudo ./netns-setup.sh up     [--netns NAME] [--tun NAME] [--subnet A.B.C.0/24] [--host-link] [--link-subnet A.B.C.D/30]
#   sudo ./netns-setup.sh down   [--netns NAME]
#   sudo ./netns-setup.sh status [--netns NAME]
#   sudo ./netns-setup.sh run    [same options as up] [-- extra arguments for `ustack serve`]
#
# What `up` creates (and `down` removes, nothing else):
#   * network namespace NAME (default "ustack") with `lo` up;
#   * a persistent TUN device (default "tun0") inside it, address A.B.C.1/24, up.
#     ustack attaches to the TUN and answers as A.B.C.2;
#   * with --host-link: a veth pair "<ns>-h" (host) / "<ns>-n" (namespace) on a
#     /30 link subnet (default 172.31.255.0/30: host .1, namespace .2), a host
#     route to A.B.C.0/24 via the namespace, and IPv4 forwarding enabled
#     INSIDE the namespace only. Nothing else on the host changes (the host
#     does not forward; it only sends to its own route).
set -euo pipefail

NETNS=ustack
TUN=tun0
SUBNET=10.0.0.0/24
HOST_LINK=0
LINK_SUBNET=172.31.255.0/30
EXTRA=()

die() { echo "netns-setup.sh: $*" >&2; exit 1; }

usage() {
    sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}

[ $# -ge 1 ] || usage 1
CMD=$1; shift
case "$CMD" in up|down|status|run) ;; -h|--help|help) usage 0 ;; *) die "unknown command '$CMD' (up, down, status, run)";; esac

while [ $# -gt 0 ]; do
    case "$1" in
        --netns) NETNS=${2:?--netns needs a name}; shift 2 ;;
        --tun) TUN=${2:?--tun needs a name}; shift 2 ;;
        --subnet) SUBNET=${2:?--subnet needs A.B.C.0/24}; shift 2 ;;
        --host-link) HOST_LINK=1; shift ;;
        --link-subnet) LINK_SUBNET=${2:?--link-subnet needs A.B.C.D/30}; shift 2 ;;
        --) shift; EXTRA=("$@"); break ;;
        -h|--help) usage 0 ;;
        *) die "unknown option '$1' (see --help)" ;;
    esac
done

[ "$(id -u)" -eq 0 ] || die "must run as root (network namespaces and TUN devices need CAP_NET_ADMIN): sudo $0 $CMD ..."
command -v ip >/dev/null || die "'ip' not found: install iproute2 (apt-get install iproute2)"

# --- names and addresses --------------------------------------------------
[[ "$NETNS" =~ ^[A-Za-z0-9_.-]{1,12}$ ]] || die "invalid --netns '$NETNS' (1-12 characters: letters, digits, . _ -)"
[[ "$TUN" =~ ^[A-Za-z0-9_.-]{1,15}$ ]] || die "invalid --tun '$TUN' (1-15 characters)"
[[ "$SUBNET" =~ ^([0-9]+)\.([0-9]+)\.([0-9]+)\.0/24$ ]] || die "invalid --subnet '$SUBNET' (expected A.B.C.0/24)"
PREFIX="${BASH_REMATCH[1]}.${BASH_REMATCH[2]}.${BASH_REMATCH[3]}"
KERNEL_ADDR=$PREFIX.1
USTACK_ADDR=$PREFIX.2
[[ "$LINK_SUBNET" =~ ^([0-9]+)\.([0-9]+)\.([0-9]+)\.([0-9]+)/30$ ]] || die "invalid --link-subnet '$LINK_SUBNET' (expected A.B.C.D/30)"
LBASE="${BASH_REMATCH[1]}.${BASH_REMATCH[2]}.${BASH_REMATCH[3]}"
LLAST=$(( BASH_REMATCH[4] & ~3 ))
HOST_LINK_ADDR=$LBASE.$((LLAST + 1))
NS_LINK_ADDR=$LBASE.$((LLAST + 2))
VETH_HOST=$NETNS-h
VETH_NS=$NETNS-n

nsexec() { ip netns exec "$NETNS" "$@"; }
ns_exists() { ip netns list | awk '{print $1}' | grep -qx "$NETNS"; }
host_veth_exists() { ip link show "$VETH_HOST" >/dev/null 2>&1; }

cmd_up() {
    if ns_exists; then echo "namespace $NETNS: exists"; else
        ip netns add "$NETNS"; echo "namespace $NETNS: created"; fi
    nsexec ip link set lo up
    if nsexec ip link show "$TUN" >/dev/null 2>&1; then echo "TUN $TUN: exists"; else
        nsexec ip tuntap add dev "$TUN" mode tun; echo "TUN $TUN: created (persistent)"; fi
    if ! nsexec ip -4 addr show dev "$TUN" | grep -q "inet $KERNEL_ADDR/24"; then
        nsexec ip addr add "$KERNEL_ADDR/24" dev "$TUN"
    fi
    # IPv4 only: keeps the kernel's IPv6 router solicitations out of captures.
    nsexec sysctl -qw "net.ipv6.conf.$TUN.disable_ipv6=1" 2>/dev/null || true
    nsexec ip link set "$TUN" up
    echo "kernel side: $KERNEL_ADDR/24 on $TUN; ustack answers as $USTACK_ADDR"
    if [ "$HOST_LINK" -eq 1 ]; then
        if host_veth_exists; then echo "veth $VETH_HOST: exists"; else
            ip link add "$VETH_HOST" type veth peer name "$VETH_NS"
            ip link set "$VETH_NS" netns "$NETNS"
            echo "veth $VETH_HOST <-> $NETNS:$VETH_NS: created"
        fi
        ip -4 addr show dev "$VETH_HOST" | grep -q "inet $HOST_LINK_ADDR/30" || ip addr add "$HOST_LINK_ADDR/30" dev "$VETH_HOST"
        ip link set "$VETH_HOST" up
        nsexec ip -4 addr show dev "$VETH_NS" | grep -q "inet $NS_LINK_ADDR/30" || nsexec ip addr add "$NS_LINK_ADDR/30" dev "$VETH_NS"
        nsexec ip link set "$VETH_NS" up
        nsexec sysctl -qw net.ipv4.ip_forward=1
        ip route replace "$SUBNET" via "$NS_LINK_ADDR" dev "$VETH_HOST"
        echo "host link: $HOST_LINK_ADDR (host) <-> $NS_LINK_ADDR ($NETNS), route $SUBNET via $NS_LINK_ADDR; forwarding on inside $NETNS only"
    fi
}

print_next() {
    local pre="sudo ip netns exec $NETNS "
    [ "$HOST_LINK" -eq 1 ] && pre=""
    cat <<EOF

Next:
  run ustack:   sudo ip netns exec $NETNS target/release/ustack serve --tun $TUN --addr $USTACK_ADDR
  then try:     ${pre}ping -c 3 $USTACK_ADDR
                ${pre}nc $USTACK_ADDR 7
                ${pre}curl http://$USTACK_ADDR/
  tear down:    sudo $0 down --netns $NETNS
EOF
}

cmd_down() {
    # The host end of the veth and its route go with the pair; remove them
    # explicitly first in case the namespace is already gone.
    if host_veth_exists; then
        ip route del "$SUBNET" dev "$VETH_HOST" 2>/dev/null || true
        ip link del "$VETH_HOST"; echo "veth $VETH_HOST: removed"
    fi
    if ns_exists; then
        # Deleting the namespace deletes the TUN device and veth end inside it.
        ip netns pids "$NETNS" 2>/dev/null | grep -q . && echo "warning: processes still run in $NETNS: $(ip netns pids "$NETNS" | tr '\n' ' ')" >&2
        nsexec ip link del "$TUN" 2>/dev/null || true
        ip netns del "$NETNS"; echo "namespace $NETNS: removed"
    else
        echo "namespace $NETNS: does not exist"
    fi
}

cmd_status() {
    if ! ns_exists; then echo "namespace $NETNS: does not exist"; else
        echo "namespace $NETNS: exists"
        nsexec ip -br addr
        local pids; pids=$(ip netns pids "$NETNS" | tr '\n' ' ')
        echo "processes in $NETNS: ${pids:-none}"
    fi
    if host_veth_exists; then
        echo "host link:"; ip -br addr show dev "$VETH_HOST"; ip route show dev "$VETH_HOST"
    fi
}

find_cargo() {
    if command -v cargo >/dev/null; then echo cargo; return; fi
    if [ -n "${SUDO_USER:-}" ]; then
        local home; home=$(getent passwd "$SUDO_USER" | cut -d: -f6)
        [ -x "$home/.cargo/bin/cargo" ] && { echo "sudo -u $SUDO_USER $home/.cargo/bin/cargo"; return; }
    fi
    die "cargo not found (install Rust from https://rustup.rs)"
}

cmd_run() {
    cd "$(dirname "$0")"
    local cargo; cargo=$(find_cargo)
    echo "building: $cargo build --release"
    $cargo build --release
    trap 'echo; cmd_down' EXIT
    trap 'exit 130' INT TERM
    cmd_up
    local pre="sudo ip netns exec $NETNS "
    [ "$HOST_LINK" -eq 1 ] && pre=""
    cat <<EOF

ustack will answer at http://$USTACK_ADDR/ — from another terminal try:
  ${pre}ping -c 3 $USTACK_ADDR
  ${pre}nc $USTACK_ADDR 7
  ${pre}curl http://$USTACK_ADDR/
Ctrl-C stops ustack and removes the namespace.

EOF
    local rc=0
    nsexec target/release/ustack serve --tun "$TUN" --addr "$USTACK_ADDR" "${EXTRA[@]}" || rc=$?
    exit "$rc"
}

case "$CMD" in
    up) cmd_up; print_next ;;
    down) cmd_down ;;
    status) cmd_status ;;
    run) cmd_run ;;
esac
