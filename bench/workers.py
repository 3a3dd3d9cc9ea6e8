"""Redis-mode worker throughput: jobs a minute through one `patchling worker`
process, then through two, against a scripted model whose every answer takes
a fixed time. Everything runs on loopback: a real redis-server, the scripted
model server, and a fake GitHub process serving a local bare repository.

    .venv/bin/python -m bench.workers [--jobs 20] [--delay 1.0]

Each job is a whole `/edit add memory clear` (clone, plan, edit, apply,
verify, push, pull request) on an issue of its own, so no two jobs share a
branch. The clock runs from the first delivery until every job has ended,
with the workers already started. Target: two workers at least 1.8x one; a
miss is reported, and the run still exits 0.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.targets import report_target
from bench.webhooks import cpu_seconds
from bot.ledger import JobStatus
from bot.queue import JobQueue
from bot.redis_ledger import RedisLedger
from tests.conftest import CALCULATOR
from tests.fakegithub import RemoteRepo, issue_comment, memory_clear_rules, seed_remote
from tests.githubserver import GitHubProcess
from tests.modelserver import ScriptedModel
from tests.redisserver import RedisServer
from tests.test_app_e2e import NEW_SOURCE
from tests.test_redis_mode import WorkerProcess, post_to, web_process

# A job still on its way; every other status is how it ended.
UNFINISHED = (JobStatus.RECEIVED, JobStatus.QUEUED, JobStatus.RUNNING)
# Issue numbers of a round start here, so rounds never share a branch.
ROUND_STRIDE = 1000


def outcomes(queue: JobQueue) -> dict[str, int]:
    """How many jobs are in each status (zero counts left out)."""
    counts = {status.value: queue.ledger.count(status.value) for status in JobStatus}
    return {status: n for status, n in counts.items() if n}


def jobs_by_worker(queue: JobQueue, procs: list[WorkerProcess]) -> list[int]:
    """How many of the jobs each worker ran (last), in the workers' order."""
    assert isinstance(queue.ledger, RedisLedger)
    owners = [
        queue.ledger.client.hget(f"patchling:job:{row.job_id}", "owner") for row in queue.ledger.recent()
    ]
    return [owners.count(proc.owner) for proc in procs]


def unfinished(queue: JobQueue) -> int:
    return sum(queue.ledger.count(status.value) for status in UNFINISHED)


def worker_cpu(worker: WorkerProcess) -> float:
    """CPU seconds a worker process and its waited-for children have used."""
    assert worker.proc is not None
    return cpu_seconds(worker.proc.pid) + children_cpu_seconds(worker.proc.pid)


def children_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process's children it has waited for, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")


def run_round(
    tmp: Path,
    redis: RedisServer,
    github: GitHubProcess,
    model: ScriptedModel,
    workers: int,
    jobs: int,
    timeout_s: float,
) -> tuple[float, float, dict[str, int], list[int]]:
    """Seconds from the first delivery until `jobs` jobs have ended through
    `workers` worker processes, the CPU seconds the workers used meanwhile
    (with their children: git, the sandboxed tests), the jobs' outcomes, and
    how many jobs each worker ran."""
    redis.flush()  # each round starts from an empty queue and ledger
    round_dir = tmp / f"round-{workers}"
    round_dir.mkdir()
    app, queue = web_process(round_dir, "web", redis.url)
    procs = [
        WorkerProcess(round_dir, f"w{n}", redis.url, github, model).start() for n in range(1, workers + 1)
    ]
    try:
        first = workers * ROUND_STRIDE
        cpu_before = sum(worker_cpu(proc) for proc in procs)
        started = time.monotonic()
        for number in range(first, first + jobs):
            data = issue_comment(github.repo, "/edit add memory clear", number=number)
            status = post_to(app, data, f"bench-{number}").status_code
            if status != 202:
                raise RuntimeError(f"delivery {number} was answered {status}, not 202")
        deadline = started + timeout_s
        while unfinished(queue) and time.monotonic() < deadline:
            time.sleep(0.1)
        seconds = time.monotonic() - started
        cpu = sum(worker_cpu(proc) for proc in procs) - cpu_before
        return seconds, cpu, outcomes(queue), jobs_by_worker(queue, procs)
    finally:
        for proc in procs:
            proc.stop()


def line(workers: int, jobs: int, seconds: float, cpu: float, ended: dict[str, int], split: list[int]) -> str:
    return (
        f"{workers} worker(s): {jobs} jobs in {seconds:6.1f} s  {60 * jobs / seconds:6.1f} jobs/min  "
        f"worker CPU {cpu / jobs:5.2f} s a job  jobs by worker {split}  outcomes {ended}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=20, help="jobs per round")
    parser.add_argument("--delay", type=float, default=1.0, help="seconds each model answer takes")
    parser.add_argument("--timeout", type=float, default=600, help="give up on a round after this long")
    args = parser.parse_args()
    if shutil.which("redis-server") is None:
        sys.exit("redis-server is not installed (Debian package redis-server; `make system` installs it)")

    with tempfile.TemporaryDirectory(prefix="patchling-bench-workers-") as name:
        tmp = Path(name)
        (tmp / "redis").mkdir()
        redis = RedisServer(tmp / "redis").start()
        model = ScriptedModel().start()
        remote_path, _ = seed_remote(tmp, CALCULATOR)
        github = GitHubProcess(RemoteRepo("acme", "calculator", f"file://{remote_path}")).start()
        try:
            # No `times`: every job gets the same two answers, each after `delay`.
            model.script(*({**rule, "delay": args.delay} for rule in memory_clear_rules(NEW_SOURCE)))
            results: dict[int, tuple[float, float, dict[str, int], list[int]]] = {}
            for workers in (1, 2):
                results[workers] = run_round(tmp, redis, github, model, workers, args.jobs, args.timeout)
            calls = len(model.calls())
        finally:
            github.stop()
            model.stop()
            redis.stop()

    print(f"{args.jobs} jobs a round, scripted model answering after {args.delay:g} s, loopback, Redis mode")
    for workers, result in results.items():
        print(line(workers, args.jobs, *result))
    print(f"model calls: {calls} ({calls / (2 * args.jobs):.1f} a job)")
    one, two = (60 * args.jobs / results[n][0] for n in (1, 2))
    ratio = two / one
    print(f"jobs/min: one worker {one:.1f}, two workers {two:.1f}, ratio {ratio:.2f}")
    every_done = all(ended == {JobStatus.DONE.value: args.jobs} for _, _, ended, _ in results.values())
    report_target("every job done", every_done)
    report_target("two workers >= 1.8x one worker's jobs/min", ratio >= 1.8)


if __name__ == "__main__":
    main()
