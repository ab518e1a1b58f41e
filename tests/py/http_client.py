#!/usr/bin/env python3
"""Python's http.client against ustack (run inside the test namespace).

    python3 http_client.py ADDR

Several requests on ONE kept-alive connection (GET, HEAD, POST, a 206
range), each answer checked against the documented /bytes algorithm
(docs/http.md), then an HTTP/1.0 request. Prints "http_client.py: OK".
"""
import hashlib
import http.client
import struct
import sys

M = (1 << 64) - 1
GAMMA = 0x9E3779B97F4A7C15


def mix(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M
    return z ^ (z >> 31)


def bytes_body(n, offset, length):
    first, last = offset // 8, (offset + length + 7) // 8
    words = b"".join(struct.pack("<Q", mix((n + (k + 1) * GAMMA) & M)) for k in range(first, last))
    start = offset - first * 8
    return words[start:start + length]


def check(cond, what):
    if not cond:
        print("http_client.py: FAIL:", what)
        sys.exit(1)


def main():
    addr = sys.argv[1]
    assert bytes_body(0, 0, 8) == struct.pack("<Q", 0xE220A8397B1DCDAF)
    c = http.client.HTTPConnection(addr, 80, timeout=20)

    c.request("GET", "/")
    r = c.getresponse()
    body = r.read()
    check(r.status == 200, "GET / status %d" % r.status)
    check(r.getheader("Content-Type") == "text/html; charset=utf-8", "Content-Type")
    check(b"<h1>ustack</h1>" in body, "front page heading")
    sock = c.sock

    c.request("GET", "/bytes/100000")
    r = c.getresponse()
    check(r.status == 200 and r.read() == bytes_body(100000, 0, 100000), "/bytes/100000")

    c.request("HEAD", "/bytes/100000")
    r = c.getresponse()
    check(r.status == 200 and r.getheader("Content-Length") == "100000" and r.read() == b"", "HEAD")

    c.request("GET", "/bytes/100000", headers={"Range": "bytes=1000-1999"})
    r = c.getresponse()
    check(r.status == 206, "range status %d" % r.status)
    check(r.getheader("Content-Range") == "bytes 1000-1999/100000", "Content-Range")
    check(r.read() == bytes_body(100000, 1000, 1000), "range body")

    data = bytes(range(256)) * 4096
    c.request("POST", "/sha256", body=data)
    r = c.getresponse()
    check(r.read().decode() == hashlib.sha256(data).hexdigest() + "\n", "POST /sha256")

    c.request("GET", "/api/stats")
    r = c.getresponse()
    import json
    stats = json.loads(r.read())
    check(r.getheader("Content-Type").startswith("application/json"), "stats Content-Type")
    check(stats["packets_in"] > 0 and "tcp" in stats, "stats document")

    check(c.sock is sock, "all requests used one connection")
    c.close()

    # HTTP/1.0
    c = http.client.HTTPConnection(addr, 80, timeout=20)
    c._http_vsn = 10
    c._http_vsn_str = "HTTP/1.0"
    c.request("GET", "/bytes/64")
    r = c.getresponse()
    check(r.status == 200 and r.read() == bytes_body(64, 0, 64), "HTTP/1.0 GET")
    c.close()
    print("http_client.py: OK")


if __name__ == "__main__":
    main()
