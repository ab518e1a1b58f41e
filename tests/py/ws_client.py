#!/usr/bin/env python3
"""Python's `websockets` client against ustack (run inside the test namespace).

    python3 ws_client.py ADDR

1. /ws/echo: text and binary messages (websockets offers permessage-deflate,
   so this also exercises ustack's RFC 7692 code when it accepts).
2. /ws/chat/<room> with sub-protocol chat.v1: two clients exchange
   messages through the broker; join and leave notices arrive.
Prints "ws_client.py: OK"; exits non-zero on the first failure.
"""
import asyncio
import json
import os
import sys

import websockets

TIMEOUT = 10


def check(cond, what):
    if not cond:
        print("ws_client.py: FAIL:", what, flush=True)
        sys.exit(1)


async def recv(ws):
    return await asyncio.wait_for(ws.recv(), TIMEOUT)


async def echo(base):
    async with websockets.connect(base + "/ws/echo", open_timeout=TIMEOUT, max_size=32 << 20) as ws:
        ext = ws.response.headers.get("Sec-WebSocket-Extensions")
        print("echo: extensions:", ext, flush=True)
        for msg in ["", "hello", "h\u00e9llo \u20ac" * 1000]:
            await ws.send(msg)
            check(await recv(ws) == msg, "text echo of %d chars" % len(msg))
        for n in [0, 1, 125, 126, 65536, 1 << 20]:
            data = os.urandom(n)
            await ws.send(data)
            check(await recv(ws) == data, "binary echo of %d bytes" % n)
        # Compressible: large but repetitive.
        data = b"ustack " * 200_000
        await ws.send(data)
        check(await recv(ws) == data, "compressible binary echo")
        # Fragmented send (an async iterator of fragments).
        async def parts():
            for p in ["frag", "ment", "ed"]:
                yield p
        await ws.send(parts())
        check(await recv(ws) == "fragmented", "fragmented echo")
        pong = await ws.ping(b"abc")
        await asyncio.wait_for(pong, TIMEOUT)
    check(ws.close_code == 1000, "clean close (code %s)" % ws.close_code)


async def chat(base):
    url = base + "/ws/chat/pyroom"
    a = await websockets.connect(url, subprotocols=["chat.v1"], open_timeout=TIMEOUT)
    check(a.subprotocol == "chat.v1", "chat.v1 selected (got %r)" % a.subprotocol)
    ja = json.loads(await recv(a))
    check(ja["type"] == "join" and ja["room"] == "pyroom" and ja["count"] == 1, "A's own join %r" % ja)
    b = await websockets.connect(url, subprotocols=["chat.v1"], open_timeout=TIMEOUT)
    jb = json.loads(await recv(b))
    check(jb["type"] == "join" and jb["count"] == 2, "B's own join %r" % jb)
    check(json.loads(await recv(a)) == jb, "A sees B's join")

    await a.send("hi B, this is A")
    check(await recv(b) == "hi B, this is A", "A -> B")
    await b.send(b"\x00\x01binary from B")
    check(await recv(a) == b"\x00\x01binary from B", "B -> A (binary)")
    await b.send("\u00e7a va?")
    check(await recv(a) == "\u00e7a va?", "B -> A (UTF-8)")

    await b.close()
    lv = json.loads(await recv(a))
    check(lv == {"type": "leave", "room": "pyroom", "id": jb["id"], "count": 1}, "leave notice %r" % lv)
    await a.close()


async def main():
    base = "ws://%s" % sys.argv[1]
    await asyncio.wait_for(echo(base), 60)
    print("echo: ok", flush=True)
    await asyncio.wait_for(chat(base), 60)
    print("chat: ok", flush=True)
    print("ws_client.py: OK", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
