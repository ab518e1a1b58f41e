#!/usr/bin/env python3
"""Headless Chromium chats with a Python client through ustack (run inside
the test namespace).

    python3 browser_chat.py ADDR CHROMIUM OUT_DIR

1. A Python `websockets` client P joins /ws/chat/<room> (sub-protocol chat.v1).
2. Chromium (headless, driven over the DevTools protocol on a local port)
   loads http://ADDR/?room=<room>&name=browser&send=<text>: the demo page
   joins the same room and sends <text> as soon as it sees P there.
3. P must receive the browser's message; P answers; the answer must appear
   in the page's DOM (#messages). The live stats panel must show numbers.
4. A screenshot of the page goes to OUT_DIR/chat.png.
Prints "browser_chat.py: OK"; exits non-zero on failure. Chromium is always
killed and its profile directory removed.
"""
import asyncio
import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

import websockets

ROOM = "t1"
FROM_BROWSER = "hello from the browser"
FROM_PYTHON = "hello from python"


def fail(what):
    print("browser_chat.py: FAIL:", what, flush=True)
    sys.exit(1)


class Cdp:
    """The smallest DevTools-protocol client: send a command, await its reply."""

    def __init__(self, ws):
        self.ws, self.next_id = ws, 0

    async def call(self, method, **params):
        self.next_id += 1
        mid = self.next_id
        await self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        while True:
            msg = json.loads(await asyncio.wait_for(self.ws.recv(), 20))
            if msg.get("id") == mid:
                if "error" in msg:
                    fail("%s: %s" % (method, msg["error"]))
                return msg.get("result", {})

    async def eval(self, expr):
        r = await self.call("Runtime.evaluate", expression=expr, returnByValue=True)
        return r.get("result", {}).get("value")

    async def wait_for(self, expr, what, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if await self.eval(expr):
                return
            await asyncio.sleep(0.2)
        dom = await self.eval("document.body ? document.body.innerText : ''")
        fail("timed out waiting for %s; page text:\n%s" % (what, dom))


async def devtools_ws(profile, proc):
    """The page target's WebSocket URL, once Chromium has started."""
    port_file = os.path.join(profile, "DevToolsActivePort")
    deadline = time.monotonic() + 30
    while not os.path.exists(port_file) or not open(port_file).read().strip():
        if proc.poll() is not None:
            fail("chromium exited early (%s)" % proc.returncode)
        if time.monotonic() > deadline:
            fail("chromium did not open its DevTools port")
        await asyncio.sleep(0.1)
    port = int(open(port_file).read().split()[0])
    while True:
        with urllib.request.urlopen("http://127.0.0.1:%d/json/list" % port, timeout=10) as r:
            pages = [t for t in json.load(r) if t.get("type") == "page"]
        if pages:
            return pages[0]["webSocketDebuggerUrl"]
        if time.monotonic() > deadline:
            fail("no page target")
        await asyncio.sleep(0.1)


async def run(addr, chromium, out_dir, profile):
    # 1. The Python member of the room.
    peer = await websockets.connect("ws://%s/ws/chat/%s" % (addr, ROOM), subprotocols=["chat.v1"], open_timeout=10)
    if peer.subprotocol != "chat.v1":
        fail("sub-protocol %r" % peer.subprotocol)
    own = json.loads(await asyncio.wait_for(peer.recv(), 10))
    if own.get("type") != "join":
        fail("own join notice: %r" % own)

    # 2. The browser.
    proc = subprocess.Popen(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--remote-allow-origins=*",
         "--user-data-dir=" + profile, "--remote-debugging-port=0", "--window-size=1100,900",
         "about:blank"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)  # its own process group: its helpers die with it
    try:
        url = await devtools_ws(profile, proc)
        async with websockets.connect(url, max_size=64 << 20, open_timeout=10) as dws:
            cdp = Cdp(dws)
            await cdp.call("Page.enable")
            page = "http://%s/?room=%s&name=browser&send=%s" % (addr, ROOM, FROM_BROWSER.replace(" ", "%20"))
            await cdp.call("Page.navigate", url=page)

            # 3. The browser joins, then sends; P sees both.
            got = None
            deadline = time.monotonic() + 20
            while got is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    fail("no message from the browser reached the Python client")
                m = await asyncio.wait_for(peer.recv(), left)
                try:
                    doc = json.loads(m)
                except ValueError:
                    doc = {"raw": m}
                print("python got:", m, flush=True)
                if doc.get("type") == "msg":
                    got = doc
            if got.get("text") != FROM_BROWSER or got.get("name") != "browser":
                fail("browser's message: %r" % got)

            await peer.send(FROM_PYTHON)
            await cdp.wait_for(
                "document.getElementById('messages').innerText.includes(%s)" % json.dumps(FROM_PYTHON),
                "the Python message in the DOM")
            await cdp.wait_for(
                "/^[0-9]+$/.test(document.getElementById('s-packets-in').textContent)",
                "the live stats panel")
            heading = await cdp.eval("document.querySelector('h1').textContent")
            if heading != "ustack":
                fail("heading %r" % heading)
            text = await cdp.eval("document.getElementById('messages').innerText")
            print("browser messages:\n" + text, flush=True)

            # 4. Screenshot.
            shot = await cdp.call("Page.captureScreenshot", format="png")
            os.makedirs(out_dir, exist_ok=True)
            with open(os.path.join(out_dir, "chat.png"), "wb") as f:
                f.write(base64.b64decode(shot["data"]))
            await cdp.call("Browser.close")
    finally:
        await peer.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the group we created, by id
        except ProcessLookupError:
            pass
        proc.wait()


def main():
    addr, chromium, out_dir = sys.argv[1:4]
    profile = tempfile.mkdtemp(prefix="ustack-chromium-")
    try:
        asyncio.run(asyncio.wait_for(run(addr, chromium, out_dir, profile), 90))
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    print("browser_chat.py: OK", flush=True)


if __name__ == "__main__":
    main()
