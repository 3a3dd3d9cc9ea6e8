"""Redis mode against a real redis-server: what several web processes and
workers share goes through it."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from huey.exceptions import TaskLockedException

from bot.config import Settings
from bot.ledger import JobStatus
from bot.queue import JobQueue
from bot.redis_ledger import RedisLedger
from bot.web import create_app
from tests.conftest import CALCULATOR
from tests.fakegithub import (
    WEBHOOK_SECRET,
    RemoteRepo,
    delivery_headers,
    issue_comment,
    job_request,
    make_harness,
    post,
)
from tests.redisserver import RedisServer

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

    assert first_queue.huey.pending_count() == 1  # one queue, shared
    assert second_queue.huey.pending_count() == 1
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


def test_redis_ledger_keeps_the_sqlite_ledgers_rules(redis_url: str) -> None:
    ledger = RedisLedger(redis_url, owner="host-a")
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
    first.huey.lock_task(name).acquire()
    with pytest.raises(TaskLockedException):
        second.huey.lock_task(name).acquire()
    first.huey.lock_task(name).clear()
    second.huey.lock_task(name).acquire()


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
    assert web_queue.huey.pending_count() == 0
