"""Load generators: a closed-loop aiohttp poster, and a wrapper around ``wrk`` when it is installed.

``python -m bench.load post URL --seconds 10 --concurrency 32 [--size 1024]`` prints one JSON line:
``{"sent": N, "accepted": N, "failed": N, "seconds": S}``. Each event is binary mode with a unique id.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import tempfile
import time

import aiohttp

LUA = """
wrk.method = "POST"
wrk.body = string.rep("x", {size})
wrk.headers["content-type"] = "text/plain"
wrk.headers["ce-specversion"] = "1.0"
wrk.headers["ce-type"] = "dev.weir.bench"
wrk.headers["ce-source"] = "/bench"
counter = 0
request = function()
  counter = counter + 1
  wrk.headers["ce-id"] = tostring(counter) .. "-" .. tostring(math.random(1, 1000000000))
  return wrk.format(nil)
end
"""


async def post(url: str, seconds: float, concurrency: int, size: int) -> dict[str, float]:
    body = b"x" * size
    counts = {"sent": 0, "accepted": 0, "failed": 0}
    deadline = time.monotonic() + seconds
    prefix = f"{os.getpid()}-"

    async def worker(session: aiohttp.ClientSession, n: int) -> None:
        i = 0
        while time.monotonic() < deadline:
            i += 1
            headers = {
                "ce-specversion": "1.0",
                "ce-type": "dev.weir.bench",
                "ce-source": "/bench",
                "ce-id": f"{prefix}{n}-{i}",
                "content-type": "text/plain",
            }
            counts["sent"] += 1
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    counts["accepted" if response.status == 202 else "failed"] += 1
            except aiohttp.ClientError:
                counts["failed"] += 1

    start = time.monotonic()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        await asyncio.gather(*(worker(session, n) for n in range(concurrency)))
    return {**counts, "seconds": time.monotonic() - start}


def wrk(url: str, seconds: int, connections: int, size: int, cpu: str | None) -> float | None:
    """Requests/s from ``wrk -t1``; ``None`` when wrk is not installed."""
    exe = shutil.which("wrk")
    if exe is None:
        return None
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(LUA.replace("{size}", str(size)))
    cmd = [exe, "-t1", f"-c{connections}", f"-d{seconds}s", "-s", script.name, url]
    if cpu is not None and shutil.which("taskset"):
        cmd = ["taskset", "-c", cpu, *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    os.unlink(script.name)
    non2xx = 0
    for line in out.splitlines():
        if "Non-2xx" in line:
            non2xx = int(line.split(":")[1])
        if line.startswith("Requests/sec:"):
            rate = float(line.split(":")[1])
    if non2xx:
        raise RuntimeError(f"wrk saw {non2xx} non-2xx answers from {url}:\n{out}")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["post"])
    parser.add_argument("url")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--size", type=int, default=1024)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(post(args.url, args.seconds, args.concurrency, args.size))))


if __name__ == "__main__":
    main()
