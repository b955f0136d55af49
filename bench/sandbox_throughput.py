"""Requests per second each sandbox sustains, measured from a separate client process.

    .venv/bin/python bench/sandbox_throughput.py [--seconds 5] [--concurrency 32]

Each simulator is started alone with ``lead2cash sandbox --history --only NAME`` (its own process, uvloop, TLS), then
an aiohttp client with keep-alive sends one simple authenticated read per request for ``--seconds`` at a
fixed concurrency. The figure to meet is 1,000 requests/s per sandbox on a 2-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(name: str, state: Path) -> tuple[subprocess.Popen[str], dict[str, Any], Path, int]:
    port = _free_port()
    cmd = [
        sys.executable,
        "-m",
        "lead2cash.cli",
        "sandbox",
        "--history",  # the SAP read below needs a seeded business partner
        "--only",
        name,
        "--seed-size",
        "50",
        "--state-dir",
        str(state),
        f"--{name}-port",
        str(port),
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1")
    )
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("}"):
            break
    text = "".join(lines)
    config = json.loads(text[text.index("{", text.index("hub config")) :])[name]
    ca = state / "tls" / "ca.pem"
    for _ in range(100):  # wait for the listener
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    return proc, config, ca, port


async def prepare(
    name: str, base: str, cfg: dict[str, Any], ctx: ssl.SSLContext
) -> tuple[str, dict[str, str]]:
    if name == "salesforce":
        auth = cfg["auth"]
        async with aiohttp.ClientSession() as s:
            form = {
                "grant_type": "client_credentials",
                "client_id": auth["client_id"],
                "client_secret": auth["client_secret"],
            }
            async with s.post(cfg["token_url"], data=form, ssl=ctx) as r:
                token = (await r.json())["access_token"]
            async with s.put(f"{base}/__sandbox/salesforce/limits", json={"max": 10**9}, ssl=ctx) as r:
                r.raise_for_status()
        return f"{base}/services/data/v62.0/limits", {"Authorization": f"Bearer {token}"}
    if name == "lago":
        return f"{cfg['base_url']}/plans?per_page=1", {"Authorization": f"Bearer {cfg['api_key']}"}
    basic = base64.b64encode(f"{cfg['auth']['username']}:{cfg['auth']['password']}".encode()).decode()
    url = f"{base}/sap/opu/odata/sap/API_BUSINESS_PARTNER/A_BusinessPartner('1000001')"
    return url, {"Authorization": f"Basic {basic}", "Accept": "application/json"}


async def load(
    url: str, headers: dict[str, str], ctx: ssl.SSLContext, seconds: float, concurrency: int
) -> tuple[int, int]:
    ok = errors = 0
    connector = aiohttp.TCPConnector(limit=concurrency, ssl=ctx)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        end = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal ok, errors
            while time.perf_counter() < end:
                async with session.get(url) as r:
                    await r.read()
                    if r.status == 200:
                        ok += 1
                    else:
                        errors += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return ok, errors


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--systems", default="salesforce,lago,sap")
    args = parser.parse_args()
    print(
        f"sandbox throughput: one simple read, aiohttp client in another process, concurrency {args.concurrency}"
    )
    print(f"{'sandbox':<12}{'req/s':>10}{'errors':>8}  request")
    for name in args.systems.split(","):
        state = Path(tempfile.mkdtemp())
        proc, cfg, ca, port = start(name, state)
        try:
            ctx = ssl.create_default_context(cafile=str(ca))
            base = f"https://127.0.0.1:{port}"
            url, headers = asyncio.run(prepare(name, base, cfg, ctx))
            asyncio.run(load(url, headers, ctx, 1.0, args.concurrency))  # warm-up
            ok, errors = asyncio.run(load(url, headers, ctx, args.seconds, args.concurrency))
            print(f"{name:<12}{ok / args.seconds:>10,.0f}{errors:>8}  GET {url.replace(base, '')}")
        finally:
            proc.terminate()
            proc.wait(timeout=10)


if __name__ == "__main__":
    main()
