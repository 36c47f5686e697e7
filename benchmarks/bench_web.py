"""The web app under load, and one large upload, against a live server (uvicorn, as `gradcam serve`).

- queued: --queued explain requests sent at once to a server that admits them all, while /healthz and
  /api/models are polled: their latency (p50, p99, max) and the deepest queue seen;
- load: --requests explain requests from --clients concurrent clients on a default server (a full queue
  answers 503 and the clients wait Retry-After), /healthz polled: wall time, 503s, /healthz p99, the
  server's RSS after --clients requests and at the end;
- photo: one --photo upload (a photo-like JPEG): the request's time, the server's peak RSS growth and
  the size of the response.

Run (--src runs the server from another checkout's src/, e.g. to compare with the previous version):
    python benchmarks/bench_web.py [--threads 1] [--queued 200] [--requests 300] [--clients 50]
        [--photo 2000x1500] [--src PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import skimage.data
from PIL import Image

SERVER = """
import inspect, sys, torch, uvicorn
from gradcam.web import create_app
torch.set_num_threads({threads})
accepts = "max_queue" in inspect.signature(create_app).parameters  # not before the bounded queue
options = {{"max_queue": {max_queue}}} if {max_queue} and accepts else {{}}
uvicorn.run(create_app(**options), host="127.0.0.1", port={port}, log_level="warning")
"""


def jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


class Server:
    """A server in its own process; ``max_queue`` 0 for the app's default."""

    def __init__(self, src: str, threads: int, max_queue: int = 0):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = dict(os.environ, PYTHONPATH=src)
        code = SERVER.format(threads=threads, max_queue=max_queue, port=port)
        self.process = subprocess.Popen([sys.executable, "-c", code], env=env)
        self.url = f"http://127.0.0.1:{port}"
        for _ in range(600):
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise SystemExit("the server did not start")

    def memory(self, field: str = "VmRSS") -> float:
        with open(f"/proc/{self.process.pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(field)) / 1024

    def explain(self, data: bytes) -> httpx.Response:
        return httpx.post(self.url + "/api/explain", files={"image": ("photo.jpg", data, "image/jpeg")}, timeout=300)

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


class Poller(threading.Thread):
    """GETs ``routes`` in turn until stopped; their latencies and the deepest queue /healthz reports."""

    def __init__(self, url: str, routes: tuple[str, ...]):
        super().__init__(daemon=True)
        self.url, self.routes, self.latencies, self.deepest = url, routes, [], 0
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as http:
            while not self.stop.is_set():
                for route in self.routes:
                    start = time.perf_counter()
                    body = http.get(route).json()
                    self.latencies.append(time.perf_counter() - start)
                    self.deepest = max(self.deepest, body.get("queue", {}).get("jobs", 0) if route == "/healthz" else 0)
                time.sleep(0.01)

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.join()

    def __enter__(self) -> "Poller":
        self.start()
        return self

    def summary(self) -> str:
        ms = sorted(1000 * t for t in self.latencies)
        p99 = ms[min(len(ms) - 1, int(0.99 * len(ms)))]
        return f"{len(ms)} reads: p50 {statistics.median(ms):.1f} ms, p99 {p99:.1f} ms, max {ms[-1]:.1f} ms"


async def send(url: str, data: bytes, count: int, clients: int, warm=lambda: None) -> tuple[list[int], int]:
    """``count`` requests from ``clients`` concurrent clients, each honouring Retry-After; (statuses, 503s).
    ``warm()`` is called once ``clients`` requests are done."""
    statuses, busy, todo = [], [0], list(range(count))
    limits = httpx.Limits(max_connections=clients + 10, max_keepalive_connections=clients + 10)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as http:
        async def client() -> None:
            while todo:
                todo.pop()
                while (response := await http.post("/api/explain", files={"image": ("c.jpg", data, "image/jpeg")})
                       ).status_code == 503:
                    busy[0] += 1
                    await asyncio.sleep(int(response.headers.get("retry-after", 1)))
                statuses.append(response.status_code)
                if len(statuses) == clients:
                    warm()

        await asyncio.gather(*[client() for _ in range(clients)])
    return statuses, busy[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", default=str(Path(__file__).resolve().parents[1] / "src"))
    parser.add_argument("--threads", type=int, default=1, help="torch threads in the server")
    parser.add_argument("--queued", type=int, default=200)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--photo", default="2000x1500")
    args = parser.parse_args()
    cat = Image.fromarray(skimage.data.chelsea())
    small = jpeg(cat.resize((150, 100)))

    server = Server(args.src, args.threads, max_queue=args.queued + 56)
    try:
        server.explain(small)
        with Poller(server.url, ("/healthz", "/api/models")) as poller:
            start = time.perf_counter()
            statuses, _ = asyncio.run(send(server.url, small, args.queued, args.queued))
        print(f"queued: {args.queued} requests at once in {time.perf_counter() - start:.1f} s "
              f"({statuses.count(200)} × 200), deepest queue {poller.deepest}; {poller.summary()}")
    finally:
        server.close()

    server = Server(args.src, args.threads)
    try:
        server.explain(small)
        rss = []
        with Poller(server.url, ("/healthz",)) as poller:
            start = time.perf_counter()
            statuses, busy = asyncio.run(send(server.url, small, args.requests, args.clients,
                                              warm=lambda: rss.append(server.memory())))
            seconds = time.perf_counter() - start
        print(f"load: {args.requests} requests from {args.clients} clients in {seconds:.1f} s, "
              f"{statuses.count(200)} × 200, {busy} × 503 (retried); /healthz {poller.summary()}; "
              f"RSS {rss[0]:.0f} MiB after {args.clients} requests, {server.memory():.0f} MiB at the end")
    finally:
        server.close()

    width, height = map(int, args.photo.split("x"))
    server = Server(args.src, args.threads)
    try:
        server.explain(small)
        before = server.memory("VmHWM")
        photo = jpeg(cat.resize((width, height), Image.Resampling.BICUBIC))
        start = time.perf_counter()
        response = server.explain(photo)
        seconds = time.perf_counter() - start
        timings = response.json()["timings_ms"]
        print(f"photo: {width}×{height} ({len(photo) / 1e6:.1f} MB JPEG) in {seconds:.2f} s (server: {timings}), "
              f"peak RSS +{server.memory('VmHWM') - before:.0f} MiB, response {len(response.content) / 2**20:.1f} MiB")
    finally:
        server.close()


if __name__ == "__main__":
    main()
