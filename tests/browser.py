"""A headless Chromium driven over the DevTools protocol, for the tests that look at pages.

Chromium's one-shot ``--screenshot`` captures a page at its load event, before
a Bokeh server page (the Dask dashboard) has received its document over its
websocket; here a page is opened, given time to render, then inspected with
JavaScript and captured. Debian's ``chromium`` package is installed with apt
when it is missing and we are root (as ``slurm_setup`` does for SLURM).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from tornado.websocket import websocket_connect


class BrowserUnavailable(RuntimeError):
    """No Chromium here and none can be installed; the message says why (used as skip reason)."""


def chromium_path() -> str:
    """Debian's Chromium, installed with apt-get when missing (root only)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise BrowserUnavailable("chromium is not installed and cannot be installed here (needs root and apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        subprocess.run(["apt-get", "update", "-qq"], check=True, capture_output=True, timeout=600, env=env)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"],
            check=True,
            capture_output=True,
            timeout=1200,
            env=env,
        )
    except (subprocess.SubprocessError, OSError) as exc:
        raise BrowserUnavailable(f"apt-get install chromium failed: {exc}") from None
    found = shutil.which("chromium")
    if not found:
        raise BrowserUnavailable("apt-get installed chromium but there is no chromium command")
    return found


@contextlib.contextmanager
def chromium() -> Iterator[str]:
    """A running headless Chromium; yields its DevTools HTTP endpoint (http://127.0.0.1:PORT)."""
    profile = tempfile.mkdtemp(prefix="kvv-chromium-")
    process = subprocess.Popen(
        [chromium_path(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--remote-debugging-port=0",
         f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stderr is not None
        deadline = time.monotonic() + 60
        endpoint = None
        while endpoint is None and time.monotonic() < deadline:
            line = process.stderr.readline()
            match = re.search(r"DevTools listening on ws://([\d.]+:\d+)/", line)
            endpoint = f"http://{match.group(1)}" if match else None
            if not line and process.poll() is not None:
                raise BrowserUnavailable(f"chromium exited with {process.returncode}")
        if endpoint is None:
            raise BrowserUnavailable("chromium did not open its DevTools port within 60 s")
        yield endpoint
    finally:
        process.kill()
        process.wait()
        shutil.rmtree(profile, ignore_errors=True)


def look_at(endpoint: str, url: str, *, wait_s: float, screenshot: Path | None = None, evaluate: str = "document.title",
            size: tuple[int, int] = (1600, 1000)) -> object:  # fmt: skip
    """Open ``url`` in a new tab, let it render for ``wait_s``, save a PNG screenshot, return the value of ``evaluate``."""
    request = urllib.request.Request(f"{endpoint}/json/new?{url}", method="PUT")
    with urllib.request.urlopen(request, timeout=30) as response:
        target = json.loads(response.read())
    return asyncio.run(_drive(target["webSocketDebuggerUrl"], url, wait_s, screenshot, evaluate, size))


async def _drive(ws_url: str, url: str, wait_s: float, screenshot: Path | None, evaluate: str, size: tuple[int, int]) -> object:
    connection = await websocket_connect(ws_url, max_message_size=256 * 1024 * 1024)
    ids = itertools.count(1)

    async def call(method: str, **params: object) -> dict:
        message_id = next(ids)
        await connection.write_message(json.dumps({"id": message_id, "method": method, "params": params}))
        while True:
            reply = json.loads(await connection.read_message())
            if reply.get("id") == message_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    try:
        await call("Emulation.setDeviceMetricsOverride", width=size[0], height=size[1], deviceScaleFactor=1, mobile=False)
        await call("Page.navigate", url=url)
        await asyncio.sleep(wait_s)
        value = (await call("Runtime.evaluate", expression=evaluate, returnByValue=True))["result"].get("value")
        if screenshot is not None:
            shot = await call("Page.captureScreenshot", format="png")
            screenshot.write_bytes(base64.b64decode(shot["data"]))
        return value
    finally:
        connection.close()
