#!/usr/bin/env python3
"""Mixed, self-checking load for ustack (used by scripts/soak.sh).

  soak_load.py --addr 10.0.0.2 --seconds 60 [--seed 1]

Runs, in threads, until the time is up:
  * http-close: GET /bytes/N on fresh connections (Connection: close), every byte checked;
  * http-keepalive: GET /bytes/N and /api/stats on one kept-alive connection;
  * upload: POST /sha256 of random bodies, digest checked;
  * ws-echo: WebSocket /ws/echo, random text and binary messages, echo checked;
  * ws-chat: two members of /ws/chat/<room> (sub-protocol chat.v1), relay checked;
  * churn: TCP echo (port 7) connect / 100 bytes / close.
Prints one JSON line: operations and errors per workload, and the first errors.
Any error is real: TCP hides loss, so with --impair every check must still pass.
"""
import argparse
import hashlib
import http.client
import json
import os
import random
import socket
import struct
import threading
import time

M = (1 << 64) - 1
GAMMA = 0x9E3779B97F4A7C15


def mix(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M
    return z ^ (z >> 31)


def bytes_body(n):
    """The whole body of /bytes/n (docs/http.md)."""
    words = b"".join(struct.pack("<Q", mix((n + (k + 1) * GAMMA) & M)) for k in range((n + 7) // 8))
    return words[:n]


SIZES = [0, 1, 7, 1000, 1460, 65536, 100000, 300000]
DIGESTS = {n: hashlib.sha256(bytes_body(n)).hexdigest() for n in SIZES}


class Counters:
    def __init__(self):
        self.lock = threading.Lock()
        self.ops = {}
        self.errors = {}
        self.samples = []
        self.start = time.monotonic()

    def ok(self, name):
        with self.lock:
            self.ops[name] = self.ops.get(name, 0) + 1

    def err(self, name, what):
        with self.lock:
            self.errors[name] = self.errors.get(name, 0) + 1
            if len(self.samples) < 10:
                # When (s after the start) tells a global stall from single ones.
                self.samples.append(f"{name} at {time.monotonic() - self.start:.1f}s: {what}")


def http_close(a, c, rnd, stop):
    while not stop.is_set():
        n = rnd.choice(SIZES)
        try:
            h = http.client.HTTPConnection(a.addr, 80, timeout=30)
            h.request("GET", f"/bytes/{n}", headers={"Connection": "close"})
            r = h.getresponse()
            body = r.read()
            h.close()
            if r.status != 200 or hashlib.sha256(body).hexdigest() != DIGESTS[n]:
                c.err("http-close", f"/bytes/{n}: status {r.status}, {len(body)} bytes")
            else:
                c.ok("http-close")
        except Exception as e:  # noqa: BLE001 - every failure counts
            c.err("http-close", repr(e))


def http_keepalive(a, c, rnd, stop):
    h = None
    while not stop.is_set():
        try:
            if h is None:
                h = http.client.HTTPConnection(a.addr, 80, timeout=30)
            if rnd.random() < 0.1:
                h.request("GET", "/api/stats")
                r = h.getresponse()
                json.loads(r.read())
            else:
                n = rnd.choice(SIZES)
                h.request("GET", f"/bytes/{n}")
                r = h.getresponse()
                body = r.read()
                if r.status != 200 or hashlib.sha256(body).hexdigest() != DIGESTS[n]:
                    c.err("http-keepalive", f"/bytes/{n}: status {r.status}")
                    h.close()
                    h = None
                    continue
            c.ok("http-keepalive")
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as e:
            # The server closes idle keep-alive connections; reconnect,
            # but count it (it should not happen while we keep it busy).
            c.err("http-keepalive", repr(e))
            h = None
        except Exception as e:  # noqa: BLE001
            c.err("http-keepalive", repr(e))
            h = None


def upload(a, c, rnd, stop):
    while not stop.is_set():
        body = os.urandom(rnd.choice([1, 1000, 100_000, 1_000_000]))
        try:
            h = http.client.HTTPConnection(a.addr, 80, timeout=60)
            h.request("POST", "/sha256", body=body, headers={"Connection": "close"})
            r = h.getresponse()
            got = r.read().decode().strip()
            h.close()
            if got != hashlib.sha256(body).hexdigest():
                c.err("upload", f"{len(body)} bytes: digest {got[:16]}")
            else:
                c.ok("upload")
        except Exception as e:  # noqa: BLE001
            c.err("upload", repr(e))


def ws_echo(a, c, rnd, stop):
    from websockets.sync.client import connect
    while not stop.is_set():
        try:
            with connect(f"ws://{a.addr}/ws/echo", open_timeout=30, close_timeout=10, max_size=None) as ws:
                for _ in range(100):
                    if stop.is_set():
                        break
                    if rnd.random() < 0.5:
                        msg = "".join(rnd.choice("abcdefgh\u00e9\u4e2d") for _ in range(rnd.randint(0, 2000)))
                    else:
                        msg = os.urandom(rnd.randint(0, 70000))
                    ws.send(msg)
                    back = ws.recv(timeout=30)
                    if back != msg:
                        c.err("ws-echo", f"echo differs ({len(msg)})")
                    else:
                        c.ok("ws-echo")
        except Exception as e:  # noqa: BLE001
            c.err("ws-echo", repr(e))


def ws_chat(a, c, rnd, stop):
    from websockets.sync.client import connect
    room = f"soak{rnd.randint(0, 1 << 30)}"
    url = f"ws://{a.addr}/ws/chat/{room}"
    while not stop.is_set():
        try:
            with connect(url, subprotocols=["chat.v1"], open_timeout=30) as x, \
                    connect(url, subprotocols=["chat.v1"], open_timeout=30) as y:
                time.sleep(0.2)  # both joined
                for i in range(50):
                    if stop.is_set():
                        break
                    msg = f"{room} message {i} " + "x" * rnd.randint(0, 500)
                    x.send(msg)
                    got = y.recv(timeout=30)
                    # The room also announces joins and leaves (JSON notices).
                    while got.startswith('{"type":'):
                        got = y.recv(timeout=30)
                    if got != msg:
                        c.err("ws-chat", f"relayed {got[:40]!r}")
                    else:
                        c.ok("ws-chat")
        except Exception as e:  # noqa: BLE001
            c.err("ws-chat", repr(e))


def churn(a, c, rnd, stop):
    while not stop.is_set():
        data = os.urandom(100)
        try:
            with socket.create_connection((a.addr, 7), timeout=30) as s:
                s.sendall(data)
                s.shutdown(socket.SHUT_WR)
                got = b""
                while True:
                    b = s.recv(4096)
                    if not b:
                        break
                    got += b
            if got != data:
                c.err("churn", f"echo {len(got)} bytes")
            else:
                c.ok("churn")
        except Exception as e:  # noqa: BLE001
            c.err("churn", repr(e))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--addr", required=True)
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    c = Counters()
    stop = threading.Event()
    threads = []
    for i, f in enumerate([http_close, http_close, http_keepalive, upload, ws_echo, ws_chat, churn, churn]):
        t = threading.Thread(target=f, args=(a, c, random.Random(a.seed * 100 + i), stop), daemon=True)
        t.start()
        threads.append(t)
    time.sleep(a.seconds)
    stop.set()
    for t in threads:
        t.join(timeout=90)
    hung = sum(t.is_alive() for t in threads)
    print(json.dumps({"ops": c.ops, "errors": c.errors, "hung_workers": hung, "first_errors": c.samples}), flush=True)


if __name__ == "__main__":
    main()
