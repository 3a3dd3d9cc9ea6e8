"""Load benchmark: signed deliveries at a steady rate against one real
`patchling serve`, then a drain, counting what went where and watching memory.

    .venv/bin/python -m bench.load [--rate 200] [--seconds 60] [--drain 300]

The server runs as `patchling serve` does in production (its own process, two
worker threads, SQLite queue and ledger in a throwaway data directory), with a
throwaway App id and private key. Its GitHub is a loopback fake that answers
404 to everything, so each job fails at its first call (minting the
installation token) and ends as `no_token`; its model tier points at a closed
loopback port. Nothing leaves 127.0.0.1.

Deliveries are `/edit` issue comments by the repository's owner, each with its
own delivery and comment id, sent open-loop (on schedule, whatever the
answers) on keep-alive loopback connections; every `--bad-every`th one is unsigned or
signed with a wrong secret and must be refused. Afterwards the ledger says
how many jobs were enqueued and how many finished.

Targets: nothing lost (accepted == enqueued), everything processed once
drained, every bad delivery refused and no 5xx or transport error, memory
flat (see FLAT_RSS_GROWTH). A miss is reported; the run still exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.shared import need
from bench.targets import report_target
from bench.webhooks import PAYLOAD, SECRET, deliveries, free_port, percentile, raw_request, read_response

Delivery = tuple[bytes, dict[str, str]]

# "Flat": RSS after the drain at most this much above RSS after the warm-up.
# Not zero: CPython and glibc keep freed memory for reuse rather than handing it
# back, so a backlog of thousands of queued deliveries leaves a high-water mark.
# A leak would scale with the deliveries: 12,000 bodies of 14.5 kB each kept
# are 170 MB, several times this margin on a server of about 100 MB.
FLAT_RSS_GROWTH = 0.20
# Ledger states a job passes through before it has finished.
UNFINISHED = ("queued", "running")


# -- the client side: paced deliveries and what came back --------------------------------


def spoil(body: bytes, headers: dict[str, str], n: int) -> dict[str, str]:
    """The `n`th bad delivery: unsigned (odd n) or signed with a wrong secret (even n)."""
    bad = {k: v for k, v in headers.items() if k != "x-hub-signature-256"}
    if n % 2 == 0:
        bad["x-hub-signature-256"] = "sha256=" + hmac.new(b"not-the-secret", body, hashlib.sha256).hexdigest()
    return bad


def workload(count: int, start: int, bad_every: int) -> list[Delivery]:
    """`count` deliveries with ids from `start` on; every `bad_every`th is spoiled (0: none)."""
    out = []
    for offset, (body, headers) in enumerate(deliveries(count, start)):
        n = start + offset
        spoiled = bad_every > 0 and n % bad_every == bad_every - 1
        out.append((body, spoil(body, headers, n // bad_every) if spoiled else headers))
    return out


def bad_count(work: list[Delivery]) -> int:
    """How many deliveries of `work` carry no valid signature (the ones a server must refuse)."""
    return sum(1 for body, headers in work if not _signed(body, headers))


def _signed(body: bytes, headers: dict[str, str]) -> bool:
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(headers.get("x-hub-signature-256", ""), expected)


@dataclass
class Tally:
    """Answers to one stretch of load."""

    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)  # transport errors, by kind
    latencies_ms: list[float] = field(default_factory=list)
    max_lag_ms: float = 0.0  # how far the client fell behind its schedule

    @property
    def sent(self) -> int:
        return sum(self.statuses.values()) + sum(self.errors.values())

    @property
    def accepted(self) -> int:
        return self.statuses[202]

    @property
    def rejected(self) -> int:
        return sum(n for status, n in self.statuses.items() if 400 <= status < 500)

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)

    def add(self, other: Tally) -> None:
        self.statuses += other.statuses
        self.errors += other.errors
        self.latencies_ms += other.latencies_ms
        self.max_lag_ms = max(self.max_lag_ms, other.max_lag_ms)

    def line(self) -> str:
        p50, p99 = (percentile(self.latencies_ms, p) for p in (50, 99)) if self.latencies_ms else (0, 0)
        return (
            f"sent {self.sent}: accepted {self.accepted}, rejected {self.rejected}, "
            f"5xx {self.server_errors}, "
            f"transport errors {sum(self.errors.values())} {dict(self.errors) or ''}; "
            f"intake p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {max(self.latencies_ms, default=0):.1f} ms; "
            f"client behind schedule by at most {self.max_lag_ms:.1f} ms"
        )


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def paced(url: str, work: list[Delivery], rate: float) -> Tally:
    """Send `work` open-loop at `rate` a second: each delivery leaves on its
    schedule, whether or not earlier ones were answered, so a slow server
    meets more concurrent requests instead of a politely slower client. On
    keep-alive connections, one per request in flight, with bench.webhooks'
    minimal HTTP/1.1 client: httpx's own cost (a few ms a request) kept the
    client from holding 200/s on a busy 2-core machine."""
    host, port = url.removeprefix("http://").split(":")
    tally = Tally()
    idle: list[Connection] = []

    async def exchange(request: bytes, reuse: bool) -> tuple[int, Connection]:
        reader, writer = idle.pop() if reuse and idle else await asyncio.open_connection(host, int(port))
        try:
            writer.write(request)
            return await asyncio.wait_for(read_response(reader), timeout=30), (reader, writer)
        except BaseException:
            writer.close()
            raise

    async def send(request: bytes) -> None:
        started = time.perf_counter()
        try:
            try:
                status, connection = await exchange(request, reuse=True)
            except (ConnectionResetError, asyncio.IncompleteReadError):
                # The server closed an idle keep-alive connection (uvicorn: after
                # 5 s) as it was reused: unanswered, so sent again, as any client does.
                status, connection = await exchange(request, reuse=False)
        except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
            tally.errors[type(exc).__name__] += 1
            return
        tally.latencies_ms.append((time.perf_counter() - started) * 1000)
        tally.statuses[status] += 1
        idle.append(connection)

    requests = [raw_request(f"{host}:{port}", body, headers) for body, headers in work]
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    tasks = []
    for i, request in enumerate(requests):
        due = t0 + i / rate
        # Always a turn of the loop, even when behind: a client that only
        # queued tasks while late would send its backlog in one burst.
        await asyncio.sleep(max(0.0, due - loop.time()))
        tally.max_lag_ms = max(tally.max_lag_ms, (loop.time() - due) * 1000)
        tasks.append(asyncio.create_task(send(request)))
    await asyncio.gather(*tasks)
    for _, writer in idle:
        writer.close()
    return tally


# -- the server side: ledger, memory ----------------------------------------------------


@dataclass(frozen=True)
class LedgerCounts:
    """Jobs in the ledger by status."""

    by_status: dict[str, int]

    @property
    def recorded(self) -> int:
        return sum(self.by_status.values())

    @property
    def enqueued(self) -> int:
        # Every status but `received` comes after the enqueue.
        return self.recorded - self.by_status.get("received", 0)

    @property
    def waiting(self) -> int:
        return sum(self.by_status.get(status, 0) for status in UNFINISHED)

    @property
    def processed(self) -> int:
        return self.enqueued - self.waiting


def ledger_counts(path: Path) -> LedgerCounts:
    """Read-only, beside the running server (WAL lets a reader in while it writes)."""
    if not path.exists():
        return LedgerCounts({})
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        rows = db.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall()
    finally:
        db.close()
    return LedgerCounts({str(status): int(n) for status, n in rows})


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (git and test runs a job starts count too)."""
    found = [pid]
    for tid in _listdir(Path(f"/proc/{pid}/task")):
        try:
            children = Path(f"/proc/{pid}/task/{tid}/children").read_text().split()
        except OSError:
            continue  # the thread or process ended meanwhile
        for child in children:
            found += process_tree(int(child))
    return found


def _listdir(path: Path) -> list[str]:
    try:
        return [entry.name for entry in path.iterdir()]
    except OSError:
        return []


def rss_mb(pid: int) -> float:
    """Resident memory of the process tree, in MB (VmRSS from /proc)."""
    total_kb = 0
    for member in process_tree(pid):
        try:
            status = Path(f"/proc/{member}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total_kb += int(line.split()[1])
    return total_kb / 1024


# -- processes ---------------------------------------------------------------------------


def fake_github_app() -> object:
    """GitHub as a job finds it here: 404 to every call (so `no_token`), counting calls."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    calls = Counter[str]()

    async def count(request: Request) -> Response:
        return JSONResponse(dict(calls))

    async def answer(request: Request) -> Response:
        calls[request.method + " " + request.url.path.split("/", 2)[1]] += 1
        return JSONResponse({"message": "Not Found"}, status_code=404)

    every = ["GET", "POST", "PATCH", "PUT", "DELETE"]
    return Starlette(routes=[Route("/_bench/calls", count), Route("/{path:path}", answer, methods=every)])


def private_key_pem() -> str:
    """A throwaway App key, made fresh for the run and never written to disk."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


def server_env(github_url: str, data_dir: Path) -> dict[str, str]:
    """The inherited environment minus any real App or Patchling settings, plus the bench's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "PATCHLING_"))}
    refused = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    env.update(
        GITHUB_APP_ID="1",
        GITHUB_PRIVATE_KEY=private_key_pem(),
        GITHUB_WEBHOOK_SECRET=SECRET,
        GITHUB_API_URL=github_url,
        PATCHLING_DATA_DIR=str(data_dir),
        PATCHLING_TIERS=json.dumps([{"name": "refused", "model": "none", "base_url": refused}]),
    )
    return env


def wait_ready(url: str, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode} before it was ready")
        try:
            httpx.get(url, timeout=0.5)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not start within 60 s")


@contextmanager
def running(args: list[str], what: str, ready_url: str, **popen: object) -> Iterator[subprocess.Popen[bytes]]:
    """A child process, stopped with SIGTERM (then killed) however the run ends."""
    proc = subprocess.Popen(args, **popen)  # type: ignore[call-overload]
    try:
        wait_ready(ready_url, proc, what)
        yield proc
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def serve_fake_github(port: int) -> None:
    import uvicorn

    uvicorn.run(fake_github_app(), host="127.0.0.1", port=port, log_level="warning", access_log=False)  # type: ignore[arg-type]


# -- the run -----------------------------------------------------------------------------


def drain(ledger: Path, timeout_s: float) -> tuple[LedgerCounts, float]:
    """Wait until no job is queued or running (or `timeout_s`); the counts then and the wait."""
    started = time.monotonic()
    while True:
        counts = ledger_counts(ledger)
        waited = time.monotonic() - started
        if counts.waiting == 0 or waited >= timeout_s:
            return counts, waited
        time.sleep(0.5)


async def load_with_rss(url: str, work: list[Delivery], rate: float, pid: int) -> tuple[Tally, list[float]]:
    """`paced` load, sampling the server's RSS once a second meanwhile."""
    samples: list[float] = []

    async def sample() -> None:
        while True:
            samples.append(rss_mb(pid))
            await asyncio.sleep(1.0)

    sampler = asyncio.create_task(sample())
    try:
        tally = await paced(url, work, rate)
    finally:
        sampler.cancel()
    return tally, samples


def log_problems(log_path: Path) -> list[str]:
    """Server log lines at ERROR or worse, or tracebacks, other than the jobs' expected `no_token`."""
    expected = "no installation token"
    lines = log_path.read_text(errors="replace").splitlines()
    return [
        line
        for line in lines
        if ("ERROR" in line or "CRITICAL" in line or line.startswith("Traceback")) and expected not in line
    ]


def run(rate: float, seconds: float, drain_s: float, bad_every: int) -> None:
    warm = workload(int(rate), 0, bad_every)  # a second's worth, before the baseline
    work = workload(int(rate * seconds), len(warm), bad_every)
    bad = bad_count(warm) + bad_count(work)
    with tempfile.TemporaryDirectory(prefix="patchling-load-") as tmp:
        root = Path(tmp)
        data_dir, log_path = root / "data", root / "serve.log"
        github_port, port = free_port(), free_port()
        github = f"http://127.0.0.1:{github_port}"
        url = f"http://127.0.0.1:{port}"
        me = [sys.executable, "-m", "bench.load"]
        with (
            running([*me, "--fake-github", str(github_port)], "fake GitHub", github + "/_bench/calls"),
            log_path.open("wb") as log_file,
            running(
                [sys.executable, "-m", "bot.cli", "serve", "--port", str(port)],
                "patchling serve",
                url + "/healthz",
                cwd=root,  # no .env or patchling.toml of the caller's
                env=server_env(github, data_dir),
                stdout=log_file,
                stderr=subprocess.STDOUT,
            ) as server,
        ):
            ledger = data_dir / "jobs.sqlite3"
            rss_start = rss_mb(server.pid)
            tally, _ = asyncio.run(load_with_rss(url, warm, rate, server.pid))
            drain(ledger, drain_s)
            rss_warm = rss_mb(server.pid)
            measured, samples = asyncio.run(load_with_rss(url, work, rate, server.pid))
            rss_end = rss_mb(server.pid)
            at_end = ledger_counts(ledger)
            counts, drained_s = drain(ledger, drain_s)
            rss_drained = rss_mb(server.pid)
            github_calls = httpx.get(github + "/_bench/calls").json()
        tally.add(measured)
        problems = log_problems(log_path)

    growth = rss_drained / rss_warm - 1
    print(f"{len(work)} deliveries at {rate:g}/s for {seconds:g} s after {len(warm)} warm-up ones,")
    print(f"1 in {bad_every} unsigned or badly signed ({bad} in all); one `patchling serve`, loopback")
    print("measured stretch: " + measured.line())
    print("all, warm-up too: " + tally.line())
    print(f"ledger at the end of the load: {at_end.by_status}")
    print(
        f"ledger after {drained_s:.1f} s of drain: {counts.by_status} "
        f"(enqueued {counts.enqueued}, processed {counts.processed}, waiting {counts.waiting})"
    )
    finished = counts.processed - at_end.processed
    print(f"jobs finished during the drain: {finished}, {finished / max(drained_s, 1e-9):.1f} a second")
    print(f"GitHub calls by jobs: {github_calls}")
    print(
        f"server RSS: start {rss_start:.1f} MB, after warm-up {rss_warm:.1f} MB, peak during load "
        f"{max(samples, default=rss_end):.1f} MB, end of load {rss_end:.1f} MB, after drain "
        f"{rss_drained:.1f} MB ({growth:+.1%} against the warm-up)"
    )
    print(f"unexpected ERROR lines or tracebacks in the server log: {len(problems)}")
    for line in problems[:5]:
        print("  " + line[:200])
    lost = tally.accepted - counts.enqueued
    report_target(
        f"nothing lost (accepted {tally.accepted} - enqueued {counts.enqueued} = {lost})", lost == 0
    )
    report_target("everything processed after the drain (processed == enqueued)", counts.waiting == 0)
    report_target(
        f"every bad delivery refused, nothing else ({tally.rejected} refused of {bad} bad)",
        tally.rejected == bad and tally.accepted == tally.sent - bad,
    )
    report_target("no 5xx, no transport error, no unexpected error logged", not problems and not tally.errors)
    report_target(
        f"memory flat (RSS after drain <= +{FLAT_RSS_GROWTH:.0%} of after warm-up)", growth <= FLAT_RSS_GROWTH
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=200.0, help="deliveries a second")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the load lasts")
    # Long: each job costs the server some 50-100 ms of CPU (see the README), so
    # a minute at 200/s leaves a backlog of minutes.
    parser.add_argument("--drain", type=float, default=1200.0, help="most seconds to wait for the queue")
    parser.add_argument("--bad-every", type=int, default=20, help="every Nth delivery is badly signed")
    parser.add_argument("--fake-github", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.fake_github:
        serve_fake_github(args.fake_github)
        return
    if args.rate <= 0 or args.seconds <= 0 or args.bad_every < 0:
        parser.error("--rate and --seconds must be positive, --bad-every zero or more")
    need(PAYLOAD)  # before any server starts
    run(args.rate, args.seconds, args.drain, args.bad_every)


if __name__ == "__main__":
    main()
