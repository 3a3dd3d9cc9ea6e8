"""The queue and the job flow. The engine is a stand-in here (the real one runs
in test_app_e2e); GitHub is the respx fake; git is real."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pygit2
import pytest
from huey import RedisHuey

from bot.config import Settings
from bot.engine import Attempt, EditResult, TestRun
from bot.jobs import MAX_RUNS, JobQueue, JobRequest, Ledger, issue_branch, make_huey, pr_title, slug
from tests.conftest import CALCULATOR
from tests.fakegithub import WEBHOOK_SECRET, FakePull, Harness, issue_comment, make_harness, review_comment
from tests.modelserver import free_port

BRANCH = "patchling/7-add-a-way-to-clear-the-memory"


class FakeEngine:
    """Writes `files` into the work tree and reports `status`, like run_edit."""

    def __init__(
        self, status: str = "verified", files: dict[str, str] | None = None, tests: bool = True
    ) -> None:
        self.status = status
        self.files = {"calculator/memory.py": "MEMORY = None\n"} if files is None else files
        self.tests = tests
        self.calls: list[dict[str, Any]] = []

    async def __call__(self, root: Path, instruction: str, **kwargs: Any) -> EditResult:
        self.calls.append({"root": root, "instruction": instruction, **kwargs})
        progress = kwargs["on_progress"]
        run = TestRun(command="pytest", passed=15, failed=0, errors=0, skipped=0, duration_s=1.0, exit_code=0)
        if self.tests:
            progress("tests_before", {"ran": True, "passed": 15, "failed": 0, "errors": 0})
        progress("context", {"tier": "tiny", "files": ["calculator/calculator.py"], "tokens": 900})
        changed = self.status != "failed"
        if changed:
            for path, text in self.files.items():
                (root / path).parent.mkdir(parents=True, exist_ok=True)
                (root / path).write_text(text)
            progress("applied", {"tier": "tiny", "files": sorted(self.files)})
        attempt = Attempt("tiny", "tiny", "whole", 100, 50, 0.5, self.status, "detail")
        return EditResult(
            status=self.status,  # type: ignore[arg-type]
            tier="tiny" if changed else None,
            attempts=[attempt],
            diff="",
            files_changed=sorted(self.files) if changed else [],
            tests_before=run if self.tests else None,
            tests_after=run if self.tests and changed else None,
            tokens_in=100,
            tokens_out=50,
            notes="Adds a memory module.",
            message="every tier failed: tiny: no usable reply"
            if not changed
            else f"{self.status}: tier tiny",
            last_output="I am not sure what to change <b>here</b>." if not changed else "",
        )


def harness(tmp_path: Path, engine: FakeEngine, source: Path = CALCULATOR) -> Harness:
    return make_harness(tmp_path, source, edit=engine)


def request(app: Harness, body: str = "/edit add memory clear", **kwargs: Any) -> dict[str, Any]:
    data = issue_comment(app.repo, body, **kwargs)
    assert app.deliver("issue_comment", data).status_code == 202
    return data


# -- names -------------------------------------------------------------------------


def test_names() -> None:
    assert slug("Add a way to clear the memory!") == "add-a-way-to-clear-the-memory"
    assert slug("Ünïcode ☃ only") == "n-code-only"
    assert slug("☃") == "edit"
    assert len(slug("word " * 40)) <= 40
    assert issue_branch("patchling/", 7, "Add memory clear") == "patchling/7-add-memory-clear"
    assert pr_title("add memory clear\nmore") == "Add memory clear"
    assert len(pr_title("x" * 200)) == 72


# -- the queue ---------------------------------------------------------------------


def test_ledger_deduplicates_deliveries_and_comments(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "jobs.sqlite3")
    base = {
        "event": "issue_comment",
        "target": "issue",
        "command": "edit",
        "owner": "acme",
        "repo": "calculator",
        "clone_url": "x",
        "default_branch": "main",
        "number": 1,
        "requester_login": "m",
        "requester_id": 1,
    }
    first = JobRequest(job_id="a", delivery_id="d1", comment_id=1, **base)
    assert ledger.claim(first)
    assert not ledger.claim(first.model_copy(update={"job_id": "b"}))  # same delivery
    assert not ledger.claim(first.model_copy(update={"job_id": "c", "delivery_id": "d2"}))  # same comment
    review = first.model_copy(
        update={"job_id": "d", "delivery_id": "d3", "event": "pull_request_review_comment"}
    )
    assert ledger.claim(review)  # review comment ids are another space
    assert ledger.count() == 2 and ledger.status("a") == "received"
    ledger.enqueued(["a"])
    assert ledger.status("a") == "queued"


def test_a_delivery_recorded_but_never_enqueued_is_taken_again(tmp_path: Path) -> None:
    app = harness(tmp_path, FakeEngine())
    data = issue_comment(app.repo, "/edit add memory clear")
    job = JobRequest(
        job_id="lost",
        delivery_id="guid-lost",
        event="issue_comment",
        target="issue",
        command="edit",
        owner="acme",
        repo="calculator",
        clone_url=app.repo.clone_url,
        default_branch="main",
        number=7,
        comment_id=data["comment"]["id"],
        requester_login="maintainer",
        requester_id=5150,
    )
    assert app.queue.ledger.claim(job)  # ... and the process died before enqueueing it
    assert app.deliver("issue_comment", data, delivery="guid-lost").status_code == 200  # duplicate
    app.queue.recover()
    assert app.queue.ledger.status("lost") is None
    assert app.deliver("issue_comment", data, delivery="guid-lost").status_code == 202
    assert app.queue.huey.pending_count() == 1


def test_queue_backends(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path / "d")  # type: ignore[call-arg]
    assert type(make_huey(settings)).__name__ == "SqliteHuey"
    assert (tmp_path / "d" / "queue.sqlite3").exists()
    redis = make_huey(settings.model_copy(update={"queue_url": "redis://localhost:6379/3"}))
    assert isinstance(redis, RedisHuey)
    with pytest.raises(ValueError, match="unsupported queue_url"):
        make_huey(settings.model_copy(update={"queue_url": "amqp://x"}))


def test_jobs_survive_a_restart(tmp_path: Path) -> None:
    """Enqueued by one queue object, run by a new one on the same SQLite file."""
    app = harness(tmp_path, FakeEngine())
    data = request(app, "/edit help")
    assert app.queue.huey.pending_count() == 1
    assert app.queue.ledger.interrupted() == []  # nothing is running yet

    restarted = JobQueue(app.settings, github=app.queue.github, edit=app.queue.edit)
    assert restarted.huey is not app.queue.huey
    assert restarted.huey.pending_count() == 1
    app.queue = restarted
    assert app.run_jobs() == 1
    (reply,) = app.fake.comments.values()
    assert "/edit <instruction>" in reply["body"] and reply["number"] == data["issue"]["number"]
    assert restarted.ledger.count("help") == 1


def test_interrupted_jobs_run_again_once(tmp_path: Path) -> None:
    engine = FakeEngine()
    app = harness(tmp_path, engine)
    request(app)
    task = app.queue.huey.dequeue()  # taken by a worker ...
    job = JobRequest.model_validate(task.args[0])
    lock = f"acme/calculator@{BRANCH}"
    app.queue.ledger.started(job)
    app.queue.ledger.set_status(job.job_id, "running", lock_name=lock)
    app.queue.huey.lock_task(lock).acquire()  # ... which died holding the branch

    restarted = JobQueue(app.settings, github=app.queue.github, edit=engine)
    assert restarted.recover() == 1
    assert not restarted.huey.is_locked(lock)
    app.queue = restarted
    assert app.run_jobs() == 1
    assert restarted.ledger.status(job.job_id) == "done" and len(engine.calls) == 1

    # A job that keeps dying is given up on.
    restarted.ledger.started(job)
    assert MAX_RUNS == 2 and restarted.recover() == 0
    assert restarted.ledger.status(job.job_id) == "interrupted"


def test_one_job_at_a_time_per_branch(tmp_path: Path) -> None:
    engine = FakeEngine()
    app = harness(tmp_path, engine)
    data = request(app)
    lock = app.queue.huey.lock_task(f"acme/calculator@{BRANCH}")
    lock.acquire()  # another job is working on this branch
    assert app.run_jobs() == 1
    assert engine.calls == [] and app.fake.comments == {}  # no status comment yet
    assert app.queue.huey.scheduled_count() == 1  # tried again later, durably
    lock.release()

    # Fast-forward the clock: the retry comes due.
    for task in app.queue.huey.read_schedule(app.queue.huey._get_timestamp().replace(year=2100)):
        task.eta = None
        app.queue.huey.enqueue(task)
    assert app.run_jobs() == 1
    assert len(engine.calls) == 1
    assert app.fake.reactions_on(data["comment"]["id"]) == ["eyes", "rocket"]


# -- the flow ----------------------------------------------------------------------


def test_unverified_change_opens_a_draft_that_says_so(tmp_path: Path) -> None:
    app = harness(tmp_path, FakeEngine(status="unverified", tests=False))
    data = request(app)
    assert app.run_jobs() == 1
    (pr,) = app.fake.created_pulls
    assert pr["draft"] is True
    assert pr["body"].startswith("Refs #7")
    assert "Not verified: no tests ran" in pr["body"]
    assert "| before | not run |" in pr["body"]
    assert app.fake.reactions_on(data["comment"]["id"]) == ["eyes", "rocket"]
    (status,) = app.fake.comments.values()
    assert "draft pull request opened" in status["body"]


def test_no_change_explains_and_opens_nothing(tmp_path: Path) -> None:
    app = harness(tmp_path, FakeEngine(status="failed"))
    data = request(app)
    assert app.run_jobs() == 1
    assert app.fake.created_pulls == []
    assert list(app.remote.branches.local) == ["main"]
    status, explanation = app.fake.comments.values()
    assert "no change made" in status["body"] and "😕" in status["body"]
    assert "every tier failed" in explanation["body"]
    assert "<details><summary>Last model output</summary>" in explanation["body"]
    assert "I am not sure what to change <b>here</b>." in explanation["body"]
    assert app.fake.reactions_on(data["comment"]["id"]) == ["eyes", "confused"]


def test_second_edit_on_the_issue_continues_its_pull_request(tmp_path: Path) -> None:
    engine = FakeEngine()
    app = harness(tmp_path, engine)
    request(app)
    assert app.run_jobs() == 1
    (pr,) = app.fake.created_pulls
    first = app.remote.references[f"refs/heads/{BRANCH}"].target

    engine.files = {"calculator/memory.py": "MEMORY = 0\n"}
    request(app, "/edit start the memory at zero")
    assert app.run_jobs() == 1
    assert len(app.fake.created_pulls) == 1  # no second PR
    head = app.remote.references[f"refs/heads/{BRANCH}"].peel(pygit2.Commit)
    assert head.parents[0].id == first
    (number,) = [n for n in app.fake.pulls]
    (update,) = app.fake.posted_to(number)
    assert str(head.id) in update["body"]
    assert pr["title"] == "Add memory clear"


def test_protected_paths_are_never_committed(tmp_path: Path) -> None:
    app = harness(tmp_path, FakeEngine(files={".github/workflows/ci.yml": "on: push\n"}))
    data = request(app)
    assert app.run_jobs() == 1
    assert list(app.remote.branches.local) == ["main"]
    (status,) = app.fake.comments.values()
    assert "protected" in status["body"]
    assert app.fake.reactions_on(data["comment"]["id"]) == ["eyes", "confused"]


def test_engine_crash_is_reported(tmp_path: Path) -> None:
    async def broken(root: Path, instruction: str, **kwargs: Any) -> EditResult:
        raise RuntimeError("boom")

    app = make_harness(tmp_path, CALCULATOR, edit=broken)
    data = request(app)
    assert app.run_jobs() == 1
    (status,) = app.fake.comments.values()
    assert "stopped: an internal error (RuntimeError)" in status["body"]
    assert app.fake.reactions_on(data["comment"]["id"]) == ["eyes", "confused"]
    assert app.fake.revoked == app.fake.tokens


def configured_source(tmp_path: Path, text: str) -> Path:
    source = tmp_path / "source"
    shutil.copytree(CALCULATOR, source, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    (source / ".github").mkdir()
    (source / ".github" / "patchling.yml").write_text(text)
    return source


def test_repository_settings_reach_the_engine(tmp_path: Path) -> None:
    engine = FakeEngine()
    text = (
        "test: python -m pytest -q\nsetup: make deps\nprotected: [docs/**]\n"
        "branch_prefix: bot/\ntiers: [tiny]\n"
    )
    app = harness(tmp_path, engine, configured_source(tmp_path, text))
    request(app)
    assert app.run_jobs() == 1
    (call,) = engine.calls
    assert call["test_command"] == "python -m pytest -q" and call["setup_command"] == "make deps"
    assert call["protected_paths"] == [".github/**", "docs/**"]
    assert [t.name for t in call["tiers"]] == ["tiny"]
    assert call["focus"] is None and call["instruction"] == "add memory clear"
    assert app.fake.created_pulls[0]["head"] == "bot/7-add-a-way-to-clear-the-memory"


def test_bad_settings_file_stops_with_a_clear_comment(tmp_path: Path) -> None:
    engine = FakeEngine()
    app = harness(tmp_path, engine, configured_source(tmp_path, "tests: pytest\n"))
    data = request(app)
    assert app.run_jobs() == 1
    assert engine.calls == []
    (reply,) = app.fake.comments.values()
    assert ".github/patchling.yml" in reply["body"] and "`tests`" in reply["body"]
    assert app.fake.reactions_on(data["comment"]["id"]) == ["eyes", "confused"]


def test_review_comment_focus_reaches_the_engine(tmp_path: Path) -> None:
    engine = FakeEngine()
    app = harness(tmp_path, engine)
    main = app.remote.references["refs/heads/main"].target
    app.remote.references.create("refs/heads/feature", main)
    pull = FakePull(number=12, head_ref="feature", head_repo=app.repo.full_name)
    app.fake.pulls[12] = pull
    data = review_comment(
        app.repo,
        "/edit add memory clear",
        pull=pull,
        path="calculator/calculator.py",
        line=46,
        diff_hunk="@@ x",
    )
    assert app.deliver("pull_request_review_comment", data).status_code == 202
    assert app.run_jobs() == 1
    focus = engine.calls[0]["focus"]
    assert (focus.path, focus.start_line, focus.end_line, focus.hunk) == (
        "calculator/calculator.py",
        46,
        46,
        "@@ x",
    )


def test_closed_pull_request_is_declined(tmp_path: Path) -> None:
    engine = FakeEngine()
    app = harness(tmp_path, engine)
    app.fake.pulls[12] = FakePull(number=12, head_ref="feature", head_repo=app.repo.full_name, state="closed")
    request(app, number=12, on_pull=True)
    assert app.run_jobs() == 1
    (reply,) = app.fake.comments.values()
    assert "closed" in reply["body"] and engine.calls == []


# -- serve ---------------------------------------------------------------------------


def test_serve_answers_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "PATCHLING_DATA_DIR": str(tmp_path / "data"),
        "GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "PATCHLING_WORKERS": "2",
    }
    code = (
        f"from bot.config import Settings\nimport bot.serve\nbot.serve.serve(Settings(), '127.0.0.1', {port})"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5).status_code == 200:
                    break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "serve did not start"
                time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = output.decode()
    assert proc.returncode == 0, text
    assert "consumer started with 2 worker thread(s)" in text
    assert "stopped (SIGTERM)" in text
    assert WEBHOOK_SECRET not in text
    assert (tmp_path / "data" / "queue.sqlite3").exists()
