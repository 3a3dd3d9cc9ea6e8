"""Webhook intake benchmark: signed `/edit` deliveries to Patchling's endpoint
versus a bare Starlette endpoint that only answers 200, under the same uvicorn
settings, in the same run, from concurrent keep-alive clients on loopback.

    .venv/bin/python -m bench.webhooks [--requests 3000] [--clients 64] [--redis]

With --redis, Patchling in Redis mode (ledger and queue in a real
redis-server of the benchmark's own, on loopback) is measured too, in the
same alternating rounds. Every delivery has its own delivery id and comment
id, so none deduplicates: afterwards the number of jobs waiting in each queue
must equal the number of 202 answers. Targets (SQLite mode): throughput at
least 0.65x the bare endpoint's, p99 at most 50 ms, nothing lost; a miss is
reported, and the run still exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import hashlib
import hmac
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.shared import SHARED, need
from bench.targets import report_target

PAYLOAD = SHARED / "github-payloads" / "issue_comment" / "created.with-installation.payload.json"
SECRET = "bench-webhook-secret"
PATH = "/api/github/webhooks"
UVICORN = {"host": "127.0.0.1", "log_level": "warning", "access_log": False, "lifespan": "off"}


# -- servers (each in its own process) -------------------------------------------------


def bare_app() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def ok(request: Request) -> Response:
        await request.body()  # read it, as any webhook endpoint must
        return Response(status_code=200)

    return Starlette(routes=[Route(PATH, ok, methods=["POST"])])


def bench_settings(data_dir: Path, queue_url: str | None = None) -> Any:
    from bot.config import Settings

    return Settings(_env_file=None, data_dir=data_dir, github_webhook_secret=SECRET, queue_url=queue_url)


def patchling_app(data_dir: Path, queue_url: str | None = None) -> Any:
    from bot.queue import JobQueue
    from bot.serve import start_checkpoints
    from bot.web import create_app

    settings = bench_settings(data_dir, queue_url)
    queue = JobQueue(settings)
    # As `patchling serve` runs it, minus the consumer: accepted jobs stay
    # queued so they can be counted.
    start_checkpoints(queue, threading.Event())
    return create_app(settings, queue=queue)


def serve(kind: str, port: int, data_dir: Path, queue_url: str | None) -> None:
    import uvicorn

    from bot.serve import settle_heap

    app = bare_app() if kind == "bare" else patchling_app(data_dir, queue_url)
    settle_heap()  # as `patchling serve` does, for both
    uvicorn.run(app, port=port, **UVICORN)  # type: ignore[arg-type]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(
    kind: str, data_dir: Path, queue_url: str | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    command = [sys.executable, "-m", "bench.webhooks", "--serve", kind, "--port", str(port)]
    command += ["--data-dir", str(data_dir), *(["--queue-url", queue_url] if queue_url else [])]
    proc = subprocess.Popen(command)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.post(url + PATH, content=b"{}", timeout=0.5)
            return proc, url
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"{kind} server did not start")


# -- load ------------------------------------------------------------------------------


def deliveries(count: int, start: int) -> list[tuple[bytes, dict[str, str]]]:
    """`count` signed issue_comment deliveries, each with its own ids."""
    template = json.loads(need(PAYLOAD).read_text())
    out = []
    for n in range(start, start + count):
        data = copy.deepcopy(template)
        data["comment"]["id"] = 10_000_000 + n
        data["comment"]["body"] = "/edit add memory clear"
        body = json.dumps(data).encode()
        signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        headers = {
            "content-type": "application/json",
            "x-github-event": "issue_comment",
            "x-github-delivery": f"bench-{n}",
            "x-hub-signature-256": signature,
        }
        out.append((body, headers))
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process (all its threads) has used, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], p: float) -> float:
    """The nearest-rank `p`th percentile (0-100) of a non-empty list."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


@dataclass
class Result:
    name: str
    requests: int
    seconds: float
    latencies_ms: list[float]
    statuses: dict[int, int]
    server_cpu_s: float = 0.0

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def percentile(self, p: float) -> float:
        return percentile(self.latencies_ms, p)

    def line(self) -> str:
        return (
            f"{self.name:<10} {self.requests:>6} req  {self.rps:>8.0f} req/s  "
            f"p50 {self.percentile(50):6.2f} ms  p99 {self.percentile(99):6.2f} ms  "
            f"mean {statistics.fmean(self.latencies_ms):6.2f} ms  "
            f"server CPU {1e6 * self.server_cpu_s / max(1, self.requests):4.0f} us/req  "
            f"statuses {dict(sorted(self.statuses.items()))}"
        )


def raw_request(host: str, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [f"POST {PATH} HTTP/1.1", f"host: {host}", f"content-length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def read_response(reader: asyncio.StreamReader) -> int:
    """One HTTP/1.1 response read off a keep-alive connection; its status."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    if length:
        await reader.readexactly(length)
    return status


async def load(name: str, url: str, work: list[tuple[bytes, dict[str, str]]], clients: int) -> Result:
    """`clients` concurrent clients, each on its own keep-alive connection,
    sending until `work` is used up. A minimal HTTP/1.1 client (requests built
    up front) so that the client's own cost stays small next to the server's."""
    host, port = url.removeprefix("http://").split(":")
    requests = [raw_request(f"{host}:{port}", body, headers) for body, headers in reversed(work)]
    latencies: list[float] = []
    statuses: dict[int, int] = {}

    async def client() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while requests:
                request = requests.pop()
                started = time.perf_counter()
                writer.write(request)
                status = await read_response(reader)
                latencies.append((time.perf_counter() - started) * 1000)
                statuses[status] = statuses.get(status, 0) + 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return Result(name, len(work), time.perf_counter() - started, latencies, statuses)


def run_rounds(
    servers: dict[str, tuple[subprocess.Popen[bytes], str]],
    requests: int,
    warmup: int,
    clients: int,
    rounds: int,
) -> tuple[dict[str, Result], dict[str, int]]:
    """The endpoints in alternating rounds, so that a busy moment on the
    machine weighs on all alike; results add up across rounds. Also the
    deliveries each accepted while warming up."""
    warm = {
        kind: asyncio.run(load("warm-up", url, deliveries(warmup, 0), clients)).statuses.get(202, 0)
        for kind, (_, url) in servers.items()
    }
    work = deliveries(requests, warmup)
    size = -(-requests // rounds)
    totals = {kind: Result(kind, 0, 0.0, [], {}) for kind in servers}
    for start in range(0, requests, size):
        chunk = work[start : start + size]
        for kind, (proc, url) in servers.items():
            cpu_before = cpu_seconds(proc.pid)
            part = asyncio.run(load(kind, url, chunk, clients))
            total = totals[kind]
            total.server_cpu_s += cpu_seconds(proc.pid) - cpu_before
            total.requests += part.requests
            total.seconds += part.seconds
            total.latencies_ms += part.latencies_ms
            for status, count in part.statuses.items():
                total.statuses[status] = total.statuses.get(status, 0) + count
    return totals, warm


def queued_jobs(data_dir: Path, queue_url: str | None = None) -> tuple[int, int]:
    """(jobs waiting in the queue, jobs in the ledger), read as a restarted server would."""
    from bot.queue import JobQueue

    queue = JobQueue(bench_settings(data_dir, queue_url))
    return queue.pending_count(), queue.ledger.count()


def report(results: dict[str, Result], warm: dict[str, int], counted: dict[str, tuple[int, int]]) -> None:
    """Each Patchling mode against the bare endpoint; the targets hold for SQLite mode."""
    bare = results["bare"]
    print(bare.line())
    for kind in counted:
        print(results[kind].line())
    for kind, (waiting, ledger) in counted.items():
        ours = results[kind]
        accepted = ours.statuses.get(202, 0) + warm[kind]
        ratio = ours.rps / bare.rps
        print(f"{kind}: throughput ratio {kind}/bare {ratio:.2f}; p99 {ours.percentile(99):.2f} ms", end="")
        print(f" (bare {bare.percentile(99):.2f} ms); accepted (202, warm-up included) {accepted};", end="")
        print(f" jobs waiting in the queue {waiting}; ledger rows {ledger}")
        if kind == "patchling":
            report_target("throughput >= 0.65x the bare endpoint's", ratio >= 0.65)
            report_target("p99 <= 50 ms", ours.percentile(99) <= 50)
        report_target(f"{kind}: nothing lost (queued == accepted == recorded)", waiting == accepted == ledger)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=3000, help="measured requests per endpoint")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=6, help="alternate the endpoints in this many rounds")
    parser.add_argument("--redis", action="store_true", help="measure Redis mode too (needs redis-server)")
    parser.add_argument("--serve", choices=["bare", "patchling", "redis"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--queue-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.data_dir, args.queue_url)
        return
    need(PAYLOAD)  # before any server starts
    if args.redis and shutil.which("redis-server") is None:
        sys.exit("redis-server is not installed (Debian package redis-server; `make system` installs it)")

    with tempfile.TemporaryDirectory(prefix="patchling-bench-") as tmp, contextlib.ExitStack() as stack:
        queue_urls = {"patchling": None} | ({"redis": own_redis(Path(tmp), stack)} if args.redis else {})
        servers = {"bare": start_server("bare", Path(tmp) / "bare")}
        servers |= {kind: start_server(kind, Path(tmp) / kind, url) for kind, url in queue_urls.items()}
        try:
            results, warm = run_rounds(servers, args.requests, args.warmup, args.clients, args.rounds)
        finally:
            for proc, _ in servers.values():
                proc.terminate()
                proc.wait(timeout=10)
        counted = {kind: queued_jobs(Path(tmp) / kind, url) for kind, url in queue_urls.items()}

    print(f"{args.requests} signed deliveries per endpoint, {args.clients} concurrent keep-alive clients,")
    print(f"loopback, {args.rounds} alternating rounds, after {args.warmup} warm-up deliveries each")
    report(results, warm, counted)


def own_redis(tmp: Path, stack: contextlib.ExitStack) -> str:
    """A redis-server of the benchmark's own (loopback, no persistence), stopped on exit."""
    from tests.redisserver import RedisServer

    (tmp / "redis").mkdir()
    server = RedisServer(tmp / "redis").start()
    stack.callback(server.stop)
    return server.url


if __name__ == "__main__":
    main()
