"""Redis mode against a real redis-server: what several web processes and
workers share goes through it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pygit2
import pytest
import redis

from bot.config import Settings
from bot.ledger import JobLedger, JobStatus, Ledger
from bot.queue import JobQueue
from bot.redis_ledger import RedisLedger, default_owner
from bot.web import create_app
from tests.conftest import CALCULATOR
from tests.fakegithub import (
    WEBHOOK_SECRET,
    RemoteRepo,
    delivery_headers,
    issue_comment,
    job_request,
    make_harness,
    memory_clear_rules,
    post,
    seed_remote,
)
from tests.githubserver import GitHubProcess, app_process_env
from tests.modelserver import ScriptedModel
from tests.processes import stop_gracefully
from tests.redisserver import RedisServer
from tests.test_app_e2e import NEW_SOURCE
from tests.test_faults import BRANCH, wait_for
from tests.test_operate import parse, value

REPO = RemoteRepo(owner="acme", name="calculator", clone_url="https://github.test/acme/calculator.git")


def test_redis_server_is_real_and_keeps_nothing_on_disk(redis_server: RedisServer, redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.set("probe", "1", nx=True) is True
        assert client.set("probe", "2", nx=True) is None  # NX: the dedup primitive works
        assert client.config_get("save") == {"save": ""}
        assert client.config_get("appendonly") == {"appendonly": "no"}
        assert client.config_get("bind")["bind"] == "127.0.0.1"
    finally:
        client.close()


def web_process(tmp_path: Path, name: str, url: str) -> tuple[Any, JobQueue]:
    """One web process's app and queue: its own data directory, the shared Redis."""
    settings = Settings(
        _env_file=None, data_dir=tmp_path / name, queue_url=url, github_webhook_secret=WEBHOOK_SECRET
    )
    queue = JobQueue(settings)
    return create_app(settings, queue=queue), queue


def post_to(app: Any, data: dict[str, Any], delivery: str) -> httpx.Response:
    body = json.dumps(data).encode()
    headers = delivery_headers(WEBHOOK_SECRET.encode(), body, "issue_comment", delivery=delivery)
    return asyncio.run(post(app, "/api/github/webhooks", body, headers))


def test_the_same_delivery_to_two_web_processes_makes_one_job(tmp_path: Path, redis_url: str) -> None:
    first, first_queue = web_process(tmp_path, "host-a", redis_url)
    second, second_queue = web_process(tmp_path, "host-b", redis_url)
    data = issue_comment(REPO, "/edit add memory clear")

    assert post_to(first, data, "guid-1").status_code == 202
    assert post_to(second, data, "guid-1").status_code == 200  # GitHub's redelivery, to the other host
    assert post_to(second, data, "guid-2").status_code == 200  # another delivery of the same comment

    assert first_queue.pending_count() == 1  # one queue, shared
    assert second_queue.pending_count() == 1
    # Both see the one job; neither host's SQLite holds it.
    assert first_queue.ledger.count() == second_queue.ledger.count() == 1
    assert second_queue.ledger.count("queued") == 1
    assert not (tmp_path / "host-a" / "jobs.sqlite3").exists()
    assert not (tmp_path / "host-b" / "jobs.sqlite3").exists()


def test_concurrent_claims_of_one_delivery_from_many_processes(tmp_path: Path, redis_url: str) -> None:
    """The claim is atomic in Redis: of many processes, exactly one wins."""
    script = (
        "import sys\n"
        "from bot.redis_ledger import RedisLedger\n"
        "from tests.fakegithub import job_request\n"
        "ledger = RedisLedger(sys.argv[1], owner=sys.argv[2])\n"
        "job = job_request(job_id=sys.argv[2], delivery_id='d-1', comment_id=1)\n"
        "print(ledger.claim_many([job])[0])\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, redis_url, name], stdout=subprocess.PIPE, text=True)
        for name in ("p1", "p2", "p3", "p4", "p5", "p6")
    ]
    answers = [proc.communicate(timeout=60)[0].strip() for proc in procs]
    assert sorted(answers) == ["False"] * 5 + ["True"]
    assert RedisLedger(redis_url, owner="x").count() == 1


@pytest.fixture(params=["sqlite", "redis"])
def any_ledger(request: pytest.FixtureRequest, tmp_path: Path) -> JobLedger:
    """Each ledger the queue can use, to hold both to one set of rules."""
    if request.param == "sqlite":
        return Ledger(tmp_path / "jobs.sqlite3")
    return RedisLedger(request.getfixturevalue("redis_url"), owner="host-a")


def test_both_ledgers_keep_the_same_rules(any_ledger: JobLedger) -> None:
    ledger = any_ledger
    first = job_request(job_id="a", delivery_id="d1", comment_id=1)
    review = first.model_copy(
        update={"job_id": "d", "delivery_id": "d3", "event": "pull_request_review_comment"}
    )
    assert ledger.claim_many(
        [
            first,
            first.model_copy(update={"job_id": "b"}),  # same delivery
            first.model_copy(update={"job_id": "c", "delivery_id": "d2"}),  # same comment
            review,  # review comment ids are another space
        ]
    ) == [True, False, False, True]
    assert ledger.count() == 2 and ledger.status("a") == JobStatus.RECEIVED
    ledger.enqueued(["a"])
    ledger.enqueued(["a"])
    assert ledger.status("a") == JobStatus.QUEUED and ledger.count("queued") == 1
    ledger.started(first)
    ledger.locked("a", "acme/calculator:main")
    assert ledger.runs("a") == 1 and ledger.count("running") == 1 and ledger.count("queued") == 0
    ledger.note("a", comment_id=9)
    ledger.note("a", pushed="abc")
    assert ledger.progress("a") == {"comment_id": 9, "pushed": "abc"}
    assert ledger.interrupted() == [(first, 1, "acme/calculator:main")]
    with pytest.raises(ValueError):
        ledger.set_status("a", "finished")
    ledger.set_status("a", JobStatus.DONE)
    assert ledger.status("a") == JobStatus.DONE and ledger.count("running") == 0
    assert ledger.unfinished() == []
    rows = {row.job_id: row for row in ledger.recent()}
    assert set(rows) == {"a", "d"} and rows["a"].status == JobStatus.DONE and rows["a"].request == first
    assert rows["a"].progress == {"comment_id": 9, "pushed": "abc"}
    # A job the process recorded but died before enqueueing: forgotten, so the redelivery is new.
    assert ledger.forget_unqueued() == 1 and ledger.status("d") is None
    assert ledger.claim_many([review]) == [True]
    ledger.set_status("missing", JobStatus.DONE)  # no such job: nothing is created
    assert ledger.status("missing") is None

    ledger.add_repositories(7, ["acme/a", "acme/b"])
    ledger.add_repositories(8, ["acme/c"])
    ledger.remove_repositories(7, ["acme/a"])
    ledger.remove_repositories(8, ["acme/b"])  # not installation 8's: kept
    assert ledger.installation_for("acme/a") is None and ledger.installation_for("acme/b") == 7
    ledger.remove_repositories(7)
    assert ledger.installation_for("acme/b") is None and ledger.installation_for("acme/c") == 8


def test_recovery_takes_back_only_its_own_hosts_jobs(tmp_path: Path, redis_url: str) -> None:
    """Another host's running job may be alive: a restart here must not run it again."""
    mine = RedisLedger(redis_url, owner="host-a")
    theirs = RedisLedger(redis_url, owner="host-b")
    a = job_request(job_id="a", delivery_id="d1", comment_id=1)
    b = job_request(job_id="b", delivery_id="d2", comment_id=2)
    mine.claim_many([a, b])
    mine.enqueued(["a", "b"])
    mine.started(a)
    theirs.started(b)  # host-b's worker took b
    assert [job.job_id for job, _, _ in mine.interrupted()] == ["a"]
    assert [job.job_id for job, _, _ in theirs.interrupted()] == ["b"]
    theirs.claim_many([job_request(job_id="c", delivery_id="d3", comment_id=3)])
    assert mine.forget_unqueued() == 0 and theirs.status("c") == JobStatus.RECEIVED


def test_the_branch_lock_is_shared_through_redis(tmp_path: Path, redis_url: str) -> None:
    _, first = web_process(tmp_path, "host-a", redis_url)
    _, second = web_process(tmp_path, "host-b", redis_url)
    name = "acme/calculator:patchling/7-x"
    assert first.branch_locks is not None and second.branch_locks is not None
    assert first.branch_locks.acquire(name, "job-a")
    assert not second.branch_locks.acquire(name, "job-b")
    # Job a taken up again on another host after its worker died: its lock, it goes on.
    assert second.branch_locks.acquire(name, "job-a")
    second.branch_locks.release(name, "job-b")  # not b's: kept
    assert not first.branch_locks.acquire(name, "job-b")
    first.branch_locks.release(name, "job-a")
    assert second.branch_locks.acquire(name, "job-b")


def test_a_job_taken_on_one_host_runs_on_another_and_both_see_its_state(
    tmp_path: Path, redis_url: str
) -> None:
    app = make_harness(tmp_path, CALCULATOR, queue_url=redis_url)
    web_queue = app.queue
    data = issue_comment(app.repo, "/edit help")
    assert app.deliver("issue_comment", data).status_code == 202

    worker_settings = app.settings.model_copy(update={"data_dir": tmp_path / "worker-host"})
    app.queue = JobQueue(worker_settings, github=web_queue.github)
    assert app.run_jobs() == 1
    (reply,) = app.fake.comments.values()
    assert "/edit <instruction>" in reply["body"]
    assert web_queue.ledger.count("help") == 1  # the web host sees what the worker host recorded
    assert web_queue.pending_count() == 0
    # Delivered once more (a worker died after the end, before acknowledging): nothing is redone.
    job = web_queue.ledger.recent()[0].request
    assert job is not None
    app.queue._send(job.model_dump(mode="json"))
    assert app.run_jobs() == 1
    assert len(app.fake.comments) == 1


# -- `patchling worker` processes ----------------------------------------------------------


class WorkerProcess:
    """`patchling worker` as its own process, with a data directory of its own."""

    def __init__(
        self,
        tmp_path: Path,
        name: str,
        redis_url: str,
        github: GitHubProcess,
        model: ScriptedModel,
        **settings: str,
    ):
        self.data_dir = tmp_path / name
        self.data_dir.mkdir()
        self.log = self.data_dir / "worker.log"
        self.env = app_process_env(
            self.data_dir,
            model.url,
            github.url,
            PATCHLING_QUEUE_URL=redis_url,
            PATCHLING_LEASE_S=str(LEASE_S),
            PATCHLING_BUSY_RETRY_S=str(BUSY_RETRY_S),
            **settings,
        )
        self.owner = default_owner(self.data_dir)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bot.cli", "worker"], env=self.env, stdout=log, stderr=log
            )
        wait_for(lambda: "worker started" in self.log.read_text(errors="replace"), "the worker to start")
        return self

    def stop(self) -> None:
        stop_gracefully(self.proc)


LEASE_S = 3
BUSY_RETRY_S = 1


@pytest.fixture
def cluster(
    tmp_path: Path, redis_url: str, model_server: ScriptedModel
) -> Iterator[tuple[Any, JobQueue, GitHubProcess, list[WorkerProcess], Any]]:
    """A web side in this process, the fake GitHub's process, two worker processes (not started)."""
    remote_path, remote = seed_remote(tmp_path, CALCULATOR)
    github = GitHubProcess(RemoteRepo("acme", "calculator", f"file://{remote_path}")).start()
    app, queue = web_process(tmp_path, "web", redis_url)
    # One metrics directory for the workers, as on one host (prometheus-client's multi-process mode).
    metrics_dir = str(tmp_path / "metrics")
    workers = [
        WorkerProcess(tmp_path, name, redis_url, github, model_server, PROMETHEUS_MULTIPROC_DIR=metrics_dir)
        for name in ("w1", "w2")
    ]
    try:
        yield app, queue, github, workers, remote
    finally:
        for worker in workers:
            worker.stop()
        github.stop()


# `/metrics` as a web process on the workers' host serves it: its own process, in multi-process mode.
SCRAPE = """
import asyncio, sys, httpx
from bot.config import Settings
from bot.queue import JobQueue
from bot.web import create_app
settings = Settings(_env_file=None, data_dir=sys.argv[1], queue_url=sys.argv[2], github_webhook_secret="s")
app = create_app(settings, queue=JobQueue(settings))
async def get():
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://web") as client:
        return (await client.get("/metrics")).text
print(asyncio.run(get()))
"""


def scrape(tmp_path: Path, redis_url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")}
    args = [sys.executable, "-c", SCRAPE, str(tmp_path / "scrape"), redis_url]
    return parse(subprocess.run(args, env=env, check=True, capture_output=True, text=True).stdout)


def test_two_worker_processes_share_the_jobs_and_do_each_once(
    cluster: Any, tmp_path: Path, redis_url: str
) -> None:
    app, queue, github, workers, _ = cluster
    first, second = workers
    for worker in workers:
        worker.start()
    jobs = 6

    def post(numbers: range) -> None:
        for number in numbers:
            data = issue_comment(github.repo, "/edit help", number=number)
            assert post_to(app, data, f"guid-{number}").status_code == 202

    # Which worker takes a quick job is a race; that each takes some is made
    # certain: one is paused (SIGSTOP) while the other is sent half the jobs.
    def with_paused(paused: WorkerProcess, numbers: range, done: int) -> None:
        assert paused.proc is not None
        paused.proc.send_signal(signal.SIGSTOP)
        try:
            post(numbers)
            wait_for(lambda: queue.ledger.count("help") == done, f"{done} jobs to be done")
        finally:
            paused.proc.send_signal(signal.SIGCONT)

    with_paused(second, range(1, 4), 3)
    with_paused(first, range(4, jobs + 1), jobs)
    replies = [c for c in github.state()["comments"].values() if "/edit <instruction>" in c["body"]]
    assert sorted(int(c["number"]) for c in replies) == list(range(1, jobs + 1))  # each once
    owners = [
        queue.ledger.client.hget(f"patchling:job:{row.job_id}", "owner") for row in queue.ledger.recent()
    ]
    assert sorted(owners) == sorted([first.owner] * 3 + [second.owner] * 3)  # both took jobs
    assert queue.pending_count() == 0
    # Each worker counted its own jobs; /metrics adds them up.
    found = scrape(tmp_path, redis_url)
    assert value(found, "patchling_jobs_total", outcome="help") == jobs
    assert value(found, "patchling_stage_duration_seconds_count", stage="job") == jobs
    assert value(found, "patchling_queue_depth") == 0
    pids = {path.name.rsplit("_", 1)[-1] for path in (tmp_path / "metrics").glob("counter_*.db")}
    assert {f"{worker.proc.pid}.db" for worker in workers if worker.proc} <= pids


def test_kill_9_of_a_worker_mid_job_another_worker_finishes_it_once(
    cluster: Any, model_server: ScriptedModel
) -> None:
    app, queue, github, (first, second), remote = cluster
    edit = "What to change in calculator/calculator.py"
    slow = {"match": edit, "reply": "```python\nslow\n```", "delay": 6, "times": 1}
    plan, fast = memory_clear_rules(NEW_SOURCE)
    model_server.script(plan, slow, fast)
    first.start()
    data = issue_comment(github.repo, "/edit add memory clear")
    assert post_to(app, data, "guid-1").status_code == 202
    wait_for(lambda: any(edit in str(c["messages"]) for c in model_server.calls()), "the model to be asked")
    assert first.proc is not None
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait()
    second.start()

    wait_for(lambda: queue.ledger.count("done") == 1, "another worker to finish the job")
    state = github.state()
    assert len(state["created_pulls"]) == 1
    statuses = [c for c in state["comments"].values() if c["body"].startswith("**Patchling**")]
    assert len(statuses) == 1 and "resumed after an interruption" in statuses[0]["body"]
    (row,) = queue.ledger.recent()
    assert row.status == JobStatus.DONE and queue.ledger.runs(row.job_id) == 2
    tip = remote.references[f"refs/heads/{BRANCH}"].target
    ahead, _ = remote.ahead_behind(tip, remote.references["refs/heads/main"].target)
    assert ahead == 1  # one commit: the dead run's work was not done twice
    assert queue.pending_count() == 0


SECOND_SOURCE = NEW_SOURCE.replace(
    "    def memory_recall(self) -> float:",
    "    def memory_is_empty(self) -> bool:\n        return self.memory is None\n\n"
    "    def memory_recall(self) -> float:",
)


def test_a_branchs_jobs_keep_their_order_across_worker_processes(
    cluster: Any, model_server: ScriptedModel
) -> None:
    """Two edits of one issue share its branch. The second, taken by the other
    worker while the first holds the branch, goes back to the queue and runs
    after it, on top of its commit; waiting is not counted as a run."""
    app, queue, github, workers, remote = cluster
    edit = "What to change in calculator/calculator.py"
    plan, _ = memory_clear_rules(NEW_SOURCE)
    first = {"match": edit, "reply": f"```python\n{NEW_SOURCE}```", "delay": 4, "times": 1}
    second = {"match": edit, "reply": f"```python\n{SECOND_SOURCE}```"}
    model_server.script(plan, first, second)
    for worker in workers:
        worker.start()
    assert post_to(app, issue_comment(github.repo, "/edit add memory clear"), "guid-1").status_code == 202
    wait_for(lambda: any(edit in str(c["messages"]) for c in model_server.calls()), "the first edit to start")
    (job_a,) = [row.job_id for row in queue.ledger.recent()]
    later = issue_comment(github.repo, "/edit add memory_is_empty too")
    assert post_to(app, later, "guid-2").status_code == 202

    wait_for(lambda: queue.ledger.count("done") == 2, "both jobs to be done")
    (job_b,) = [row.job_id for row in queue.ledger.recent() if row.job_id != job_a]
    # The worker that did not run the first job took the second and found the branch busy.
    owner_a = queue.ledger.client.hget(f"patchling:job:{job_a}", "owner")
    (other,) = [worker for worker in workers if worker.owner != owner_a]
    assert f"job {job_b} waits" in other.log.read_text(errors="replace")
    assert queue.ledger.runs(job_a) == queue.ledger.runs(job_b) == 1
    # In order: the second edit's model call began after the first's ended ...
    edits = [c for c in model_server.calls() if edit in str(c["messages"])]
    assert len(edits) == 2 and edits[1]["started"] >= edits[0]["ended"]
    # ... and its commit sits on top of the first's, on the one branch and pull request.
    tip = remote.references[f"refs/heads/{BRANCH}"].peel(pygit2.Commit)
    (parent,) = tip.parents
    (base,) = parent.parents
    assert base.id == remote.references["refs/heads/main"].target
    assert remote[tip.tree["calculator/calculator.py"].id].data.decode() == SECOND_SOURCE
    assert remote[parent.tree["calculator/calculator.py"].id].data.decode() == NEW_SOURCE
    assert len(github.state()["created_pulls"]) == 1
    assert queue.pending_count() == 0
