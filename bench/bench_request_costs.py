"""What one HTTP request costs before alphawatch does anything with it (issues 2 and 5).

    .venv/bin/python bench/bench_request_costs.py            # about 25 seconds
    .venv/bin/python bench/bench_request_costs.py -n 5000    # more requests per measure

Four measures, each in a process of its own, one after the other, over 127.0.0.1:

  asgi       Hypercorn's trio worker serving a bare ASGI app that reads the body and answers ``{}``
  starlette  the same with a Starlette app and one ``POST`` route answering a ``JSONResponse``
  trio       what the machine charges for trio's own steps, in a process of its own: a checkpoint (one pass
             of the scheduler) and a hop to a worker thread and back (``trio.to_thread.run_sync`` of nothing),
             the hop every store call makes; both are syscall- and wake-up-bound, so a VM shows them first
  httpx      the channels' HTTP client (``channels/_transport.http_client``) POSTing a 36 KB document (a group
             notification of 100 alerts) to bench_groups.py's receiver: through the client (``http.post``) and
             as notifications go (``exchange``, straight to the transport), alternately, best of three each

For the two servers a stdlib ``http.client`` posts ``-n`` small bodies on one keep-alive connection; the figure
is wall time per request and the server's CPU time per request (from /proc). For httpx, the client's own CPU time
per request. Batch-100 ingest cannot beat 100 samples per server request time; a group flush cannot beat the
httpx time. Every process started here is stopped by PID; every loop is bounded by ``-n``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV_PY = os.path.join(ROOT, ".venv", "bin", "python")

SERVER = """
import sys, trio
from hypercorn.config import Config
from hypercorn.trio import serve

async def bare(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"{}"})

def starlette_app():
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def endpoint(request):
        await request.body()
        return JSONResponse({"accepted": 1})

    return Starlette(routes=[Route("/x", endpoint, methods=["POST"])])

config = Config()
config.bind = [f"127.0.0.1:{sys.argv[2]}"]
config.accesslog = None
trio.run(serve, bare if sys.argv[1] == "asgi" else starlette_app(), config)
"""

CLIENT = """
import json, sys, time, trio, httpx
from alphawatch.channels._transport import exchange, http_client

n, port = int(sys.argv[1]), int(sys.argv[2])
alert = {"status": "firing", "annotations": {}, "startsAt": "2026-11-26T09:00:00.000Z", "fingerprint": "0" * 16,
         "generatorURL": "http://127.0.0.1:9464/#rule=burst", "details": {"note": "x" * 80}}
alerts = [{**alert, "labels": {"alertname": "burst", "group": "g", "id": f"a-{i}", "severity": "warning"}}
          for i in range(100)]
body = json.dumps({"version": "4", "groupKey": '{}:{group="g"}', "alerts": alerts}).encode()
assert 30_000 < len(body) < 40_000, len(body)
headers = {"Content-Type": "application/json", "Idempotency-Key": "k" * 32, "User-Agent": "alphawatch"}

async def main():
    async with http_client(httpx.Limits(max_connections=4)) as http:
        url = f"http://127.0.0.1:{port}/hook"
        await http.post(url, content=body, headers=headers)
        timings = {"client": [], "exchange": []}
        for _ in range(3):  # alternately, so that both see the same machine
            for way in timings:
                cpu, wall = time.process_time(), time.perf_counter()
                for _ in range(n // 3):
                    if way == "client":
                        response = await http.post(url, content=body, headers=headers, timeout=10)
                    else:
                        request = httpx.Request("POST", url, content=body, headers=headers,
                                                extensions={"timeout": httpx.Timeout(10).as_dict()})
                        response = await exchange(http, request)
                    assert response.status_code == 200, response.status_code
                timings[way].append(((time.process_time() - cpu) / (n // 3) * 1e6,
                                     (time.perf_counter() - wall) / (n // 3) * 1e6))
        print(json.dumps({way: min(runs) for way, runs in timings.items()}))

trio.run(main)
"""


TRIO_STEPS = """
import json, sys, time, trio

async def main(n):
    ways = {"checkpoint": trio.lowlevel.checkpoint, "thread_hop": lambda: trio.to_thread.run_sync(int)}
    best = {}
    for _ in range(3):  # alternately, best of three
        for way, step in ways.items():
            cpu, wall = time.process_time(), time.perf_counter()
            for _ in range(n):
                await step()
            runs = best.setdefault(way, [])
            runs.append(((time.process_time() - cpu) / n * 1e6, (time.perf_counter() - wall) / n * 1e6))
    print(json.dumps({way: min(runs) for way, runs in best.items()}))

trio.run(main, int(sys.argv[1]))
"""


def trio_cost(n: int) -> dict[str, dict[str, float]]:
    out = subprocess.run([VENV_PY, "-c", TRIO_STEPS, str(n)], capture_output=True, text=True, check=True)
    return {way: {"cpu_us": round(cpu, 1), "wall_us_per_request": round(wall, 1)}
            for way, (cpu, wall) in json.loads(out.stdout).items()}  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} (exit code {proc.poll()})")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def server_cost(kind: str, n: int) -> dict[str, float]:
    port = free_port()
    proc = subprocess.Popen([VENV_PY, "-c", SERVER, kind, str(port)], stderr=subprocess.DEVNULL)
    try:
        wait_listening(port, proc)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        headers = {"Content-Type": "application/json"}

        def post() -> None:
            conn.request("POST", "/x", body=b"[]", headers=headers)
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"{kind} answered {response.status}")

        for _ in range(min(200, n)):  # warm up
            post()
        cpu, wall = cpu_seconds(proc.pid), time.perf_counter()
        for _ in range(n):
            post()
        wall_us = (time.perf_counter() - wall) / n * 1e6
        cpu_us = (cpu_seconds(proc.pid) - cpu) / n * 1e6
        conn.close()
        return {"wall_us_per_request": round(wall_us, 1), "server_cpu_us_per_request": round(cpu_us, 1)}
    finally:
        stop(proc)


def httpx_cost(n: int) -> dict[str, float]:
    port = free_port()
    receiver = subprocess.Popen(
        [VENV_PY, os.path.join(ROOT, "bench", "bench_groups.py"), "--receiver", "--port", str(port),
         "--out", os.devnull],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_listening(port, receiver)
        out = subprocess.run([VENV_PY, "-c", CLIENT, str(n), str(port)], capture_output=True, text=True)
        if out.returncode:
            raise RuntimeError(f"the httpx client failed:\n{out.stderr}")
        ways = json.loads(out.stdout)
        return {way: {"client_cpu_us_per_request": round(cpu, 1), "wall_us_per_request": round(wall, 1)}
                for way, (cpu, wall) in ways.items()}  # fmt: skip
    finally:
        stop(receiver)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=3000, help="requests per measure")
    a = ap.parse_args()
    results: dict[str, Any] = {
        "asgi": server_cost("asgi", a.n),
        "starlette": server_cost("starlette", a.n),
        **httpx_cost(max(3, a.n // 3)),
        **trio_cost(a.n),
        "loadavg": os.getloadavg(),
    }
    print("| measure | wall µs per request | CPU µs per request |")
    print("|---|---:|---:|")
    labels = {
        "asgi": "Hypercorn, bare ASGI app (server CPU)",
        "starlette": "Hypercorn + Starlette route (server CPU)",
        "client": "httpx client POST of 36 KB (client CPU)",
        "exchange": "the same through exchange(), as notifications go (client CPU)",
        "checkpoint": "trio: a checkpoint, one pass of the scheduler (wall / CPU per step)",
        "thread_hop": "trio: a hop to a worker thread and back, as each store call (wall / CPU per hop)",
    }
    for name, label in labels.items():
        r = results[name]
        cpu = r.get("server_cpu_us_per_request", r.get("client_cpu_us_per_request", r.get("cpu_us")))
        print(f"| {label} | {r['wall_us_per_request']:,.0f} | {cpu:,.0f} |")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
