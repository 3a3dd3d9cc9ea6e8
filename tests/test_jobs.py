"""The queue and the job flow, with the real engine against the scripted model
server (as in test_app_e2e); GitHub is the respx fake; git is real."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pygit2
import pytest
from huey import RedisHuey

from bot.config import Settings, Tier
from bot.ledger import MAX_RUNS, JobRequest
from bot.messages import change_report, pr_title, summarize_tests
from bot.queue import JobQueue, make_huey
from bot.repo_settings import RepoSettingsError
from bot.workflow import Declined, _describe, issue_branch, slug
from tests.conftest import CALCULATOR
from tests.fakegithub import (
    WEBHOOK_SECRET,
    FakePull,
    Harness,
    issue_comment,
    job_request,
    make_harness,
    private_key_pem,
    script_memory_clear,
)
from tests.modelserver import ScriptedModel, free_port
from tests.test_app_e2e import NEW_SOURCE

BRANCH = "patchling/7-add-a-way-to-clear-the-memory"


def harness(tmp_path: Path, model: ScriptedModel, source: Path = CALCULATOR, **settings: Any) -> Harness:
    """Patchling on a copy of `source`, the model scripted to add memory_clear."""
    script_memory_clear(model, NEW_SOURCE)
    return make_harness(tmp_path, source, model.url, **settings)


def request(app: Harness, body: str = "/edit add memory clear", **kwargs: Any) -> dict[str, Any]:
    data = issue_comment(app.repo, body, **kwargs)
    assert app.deliver("issue_comment", data).status_code == 202
    return data


def runs_of(app: Harness, job_id: str) -> int:
    db = sqlite3.connect(app.queue.ledger.path)
    try:
        return int(db.execute("SELECT runs FROM jobs WHERE job_id = ?", (job_id,)).fetchone()[0])
    finally:
        db.close()


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


def test_a_delivery_recorded_but_never_enqueued_is_taken_again(tmp_path: Path) -> None:
    app = make_harness(tmp_path, CALCULATOR)
    data = issue_comment(app.repo, "/edit add memory clear")
    job = job_request(
        job_id="lost",
        delivery_id="guid-lost",
        clone_url=app.repo.clone_url,
        number=7,
        comment_id=data["comment"]["id"],
    )
    assert app.queue.ledger.claim_many([job]) == [True]  # ... and the process died before enqueueing it
    assert app.deliver("issue_comment", data, delivery="guid-lost").status_code == 200  # duplicate
    app.queue.recover()
    assert app.queue.ledger.status("lost") is None
    assert app.deliver("issue_comment", data, delivery="guid-lost").status_code == 202
    assert app.queue.huey.pending_count() == 1


def test_queue_backends(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path / "d")
    assert type(make_huey(settings)).__name__ == "SqliteHuey"
    assert (tmp_path / "d" / "queue.sqlite3").exists()
    redis = make_huey(settings.model_copy(update={"queue_url": "redis://localhost:6379/3"}))
    assert isinstance(redis, RedisHuey)
    with pytest.raises(ValueError, match="unsupported queue_url"):
        make_huey(settings.model_copy(update={"queue_url": "amqp://x"}))


def test_jobs_survive_a_restart(tmp_path: Path) -> None:
    """Enqueued by one queue object, run by a new one on the same SQLite file."""
    app = make_harness(tmp_path, CALCULATOR)
    data = request(app, "/edit help")
    assert app.queue.huey.pending_count() == 1
    assert app.queue.ledger.interrupted() == []  # nothing is running yet

    restarted = JobQueue(app.settings, github=app.queue.github)
    assert restarted.huey is not app.queue.huey
    assert restarted.huey.pending_count() == 1
    app.queue = restarted
    assert app.run_jobs() == 1
    (reply,) = app.fake.comments.values()
    assert "/edit <instruction>" in reply["body"] and reply["number"] == data["issue"]["number"]
    assert restarted.ledger.count("help") == 1


def test_interrupted_jobs_run_again_once(tmp_path: Path, model_server: ScriptedModel) -> None:
    app = harness(tmp_path, model_server)
    request(app)
    task = app.queue.huey.dequeue()  # taken by a worker ...
    job = JobRequest.model_validate(task.args[0])
    lock = f"acme/calculator@{BRANCH}"
    app.queue.ledger.started(job)
    app.queue.ledger.locked(job.job_id, lock)
    app.queue.huey.lock_task(lock).acquire()  # ... which died holding the branch

    restarted = JobQueue(app.settings, github=app.queue.github)
    assert restarted.recover() == 1
    assert not restarted.huey.is_locked(lock)
    app.queue = restarted
    assert app.run_jobs() == 1
    assert restarted.ledger.status(job.job_id) == "done" and runs_of(app, job.job_id) == 2
    assert f"refs/heads/{BRANCH}" in app.remote.references

    # A job that keeps dying is given up on, saying so where it said it was working.
    restarted.ledger.started(job)
    assert MAX_RUNS == 2 and restarted.recover() == 0
    assert app.run_jobs() == 1
    assert restarted.ledger.status(job.job_id) == "interrupted"
    (status,) = app.fake.posted_to(7)
    assert "😕 stopped: the server was interrupted 2 times" in status["body"]
    assert "working…" not in status["body"]
    assert app.fake.reactions_on(job.comment_id)[-1] == "confused"


def test_one_job_at_a_time_per_branch(tmp_path: Path, model_server: ScriptedModel) -> None:
    app = harness(tmp_path, model_server)
    data = request(app)
    lock = app.queue.huey.lock_task(f"acme/calculator@{BRANCH}")
    lock.acquire()  # another job is working on this branch
    for _ in range(MAX_RUNS + 1):
        assert app.run_jobs() == 1
        assert app.queue.huey.scheduled_count() == 1  # tried again later, durably
        (task,) = app.queue.huey.read_schedule(app.queue.huey._get_timestamp().replace(year=2100))
        task.eta = None
        app.queue.huey.enqueue(task)
    assert model_server.calls() == [] and app.fake.comments == {}  # no status comment yet
    (job_id,) = [r[0] for r in sqlite3.connect(app.queue.ledger.path).execute("SELECT job_id FROM jobs")]
    assert runs_of(app, job_id) == 0  # waiting is no run: the crash budget is untouched
    lock.release()

    assert app.run_jobs() == 1
    assert model_server.calls() != [] and runs_of(app, job_id) == 1
    assert app.fake.reactions_on(data["comment"]["id"]) == ["eyes", "rocket"]


# -- the flow ----------------------------------------------------------------------


def test_unverified_change_opens_a_draft_that_says_so(tmp_path: Path, model_server: ScriptedModel) -> None:
    source = tmp_path / "source"
    shutil.copytree(
        CALCULATOR, source, ignore=shutil.ignore_patterns("tests", "__pycache__", ".pytest_cache")
    )
    app = harness(tmp_path, model_server, source, test_command=None)  # no tests, none configured
    data = request(app)
    assert app.run_jobs() == 1
    (pr,) = app.fake.created_pulls
    assert pr["draft"] is True
    assert pr["body"].startswith("Refs #7")
    assert "Not verified" in pr["body"]
    assert app.fake.reactions_on(data["comment"]["id"]) == ["eyes", "rocket"]
    (status,) = app.fake.comments.values()
    assert "draft pull request opened" in status["body"]


def test_no_change_explains_and_opens_nothing(tmp_path: Path, model_server: ScriptedModel) -> None:
    app = make_harness(tmp_path, CALCULATOR, model_server.url)
    model_server.script({"reply": "I am not sure what to change <b>here</b>."})
    data = request(app)
    assert app.run_jobs() == 1
    assert app.fake.created_pulls == []
    assert list(app.remote.branches.local) == ["main"]
    status, explanation = app.fake.comments.values()
    assert "no change made" in status["body"] and "😕" in status["body"]
    assert "Tiers tried: `tiny`" in explanation["body"]
    assert app.fake.reactions_on(data["comment"]["id"]) == ["eyes", "confused"]


def test_second_edit_on_the_issue_continues_its_pull_request(
    tmp_path: Path, model_server: ScriptedModel
) -> None:
    app = harness(tmp_path, model_server)
    request(app)
    assert app.run_jobs() == 1
    (pr,) = app.fake.created_pulls
    first = app.remote.references[f"refs/heads/{BRANCH}"].target

    second = NEW_SOURCE.replace('"""Empty the memory register."""', '"""Forget the stored value."""')
    script_memory_clear(model_server, second)
    request(app, "/edit reword the memory_clear docstring")
    assert app.run_jobs() == 1
    assert len(app.fake.created_pulls) == 1  # no second PR
    head = app.remote.references[f"refs/heads/{BRANCH}"].peel(pygit2.Commit)
    assert head.parents[0].id == first
    (number,) = [n for n in app.fake.pulls]
    (update,) = app.fake.posted_to(number)
    assert str(head.id) in update["body"]
    assert pr["title"] == "Add memory clear"


def configured_source(tmp_path: Path, text: str, source: Path = CALCULATOR) -> Path:
    copy = tmp_path / "source"
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    (copy / ".github").mkdir()
    (copy / ".github" / "patchling.yml").write_text(text)
    return copy


def test_repository_settings_reach_the_engine(tmp_path: Path, model_server: ScriptedModel) -> None:
    text = "test: test -d tests\nbranch_prefix: bot/\ntiers: [tiny]\n"
    app = harness(tmp_path, model_server, configured_source(tmp_path, text))
    request(app)
    assert app.run_jobs() == 1
    (pr,) = app.fake.created_pulls
    assert pr["head"] == "bot/7-add-a-way-to-clear-the-memory"
    assert "`test -d tests`" in pr["body"]


def test_protected_paths_of_the_repository_are_never_committed(
    tmp_path: Path, model_server: ScriptedModel
) -> None:
    app = harness(tmp_path, model_server, configured_source(tmp_path, "protected: [calculator/**]\n"))
    data = request(app)
    assert app.run_jobs() == 1
    assert list(app.remote.branches.local) == ["main"] and app.fake.created_pulls == []
    assert app.fake.reactions_on(data["comment"]["id"]) == ["eyes", "confused"]


def test_bad_settings_file_stops_with_a_clear_comment(tmp_path: Path, model_server: ScriptedModel) -> None:
    app = harness(tmp_path, model_server, configured_source(tmp_path, "tests: pytest\n"))
    data = request(app)
    assert app.run_jobs() == 1
    assert model_server.calls() == []
    (reply,) = app.fake.comments.values()
    assert ".github/patchling.yml" in reply["body"] and "`tests`" in reply["body"]
    assert app.fake.reactions_on(data["comment"]["id"]) == ["eyes", "confused"]


@pytest.mark.parametrize("empty", [True, False])
def test_missing_default_branch_is_declined_clearly(
    tmp_path: Path, model_server: ScriptedModel, empty: bool
) -> None:
    app = harness(tmp_path, model_server)
    if empty:
        shutil.rmtree(app.remote_path)
        pygit2.init_repository(str(app.remote_path), bare=True)
        expected = "the repository is empty"
    else:
        expected = "the repository has no branch `main`"
        app.remote.references.create("refs/heads/trunk", app.remote.references["refs/heads/main"].target)
        app.remote.references.delete("refs/heads/main")
    data = request(app)
    assert app.run_jobs() == 1
    (reply,) = app.fake.comments.values()
    assert expected in reply["body"] and "internal error" not in reply["body"]
    assert app.fake.reactions_on(data["comment"]["id"]) == ["eyes", "confused"]
    assert model_server.calls() == []


def test_review_comment_on_a_closed_pull_request_is_declined(
    tmp_path: Path, model_server: ScriptedModel
) -> None:
    app = harness(tmp_path, model_server)
    app.fake.pulls[12] = FakePull(number=12, head_ref="feature", head_repo=app.repo.full_name, state="closed")
    request(app, number=12, on_pull=True)
    assert app.run_jobs() == 1
    (reply,) = app.fake.comments.values()
    assert "closed" in reply["body"] and model_server.calls() == []


# -- when no reply is possible, or none is safe -----------------------------------------


def test_app_not_installed_fails_the_job_with_a_logged_reason(
    tmp_path: Path, model_server: ScriptedModel, caplog: pytest.LogCaptureFixture
) -> None:
    app = harness(tmp_path, model_server)
    app.fake.installed = False
    request(app)
    assert app.run_jobs() == 1
    assert app.queue.ledger.count("no_token") == 1
    assert "no installation token for acme/calculator" in caplog.text and "GitHub refused" in caplog.text
    assert app.fake.comments == {} and model_server.calls() == []


def test_deleted_repository_is_no_polite_refusal(
    tmp_path: Path, model_server: ScriptedModel, caplog: pytest.LogCaptureFixture
) -> None:
    app = harness(tmp_path, model_server)
    app.fake.gone = True
    request(app)
    assert app.run_jobs() == 1
    assert app.queue.ledger.count("repo_gone") == 1
    assert "acme/calculator is gone" in caplog.text
    assert app.fake.comments == {} and model_server.calls() == []


def test_model_keys_and_webhook_secret_are_never_posted(
    tmp_path: Path, model_server: ScriptedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TINY_KEY", "sk-tiny-secret-1234")
    app = harness(tmp_path, model_server)
    tier = Tier(
        name="tiny", model="tiny", base_url=model_server.url, edit_format="whole", api_key_env="TINY_KEY"
    )
    app.queue.settings = app.settings.model_copy(update={"tiers": [tier]})
    request(app, f"/edit add memory clear sk-tiny-secret-1234 {WEBHOOK_SECRET}")
    assert app.run_jobs() == 1
    texts = app.fake.bodies()
    assert texts and all("sk-tiny-secret-1234" not in t and WEBHOOK_SECRET not in t for t in texts)
    (status,) = app.fake.posted_to(7)
    assert "add memory clear *** ***" in status["body"]


def test_reports_say_when_tests_could_not_run_and_what_was_installed() -> None:
    from bot.engine import EditResult
    from bot.verify import TestRun

    why = "collection errors (ModuleNotFoundError: No module named 'werkzeug')"
    broken = TestRun.not_run("python -m pytest -q", why)
    environment = {"key": "k", "installed": ["pyproject.toml", "pytest"], "seconds": 2.5, "reused": False}
    result = EditResult(
        "unverified", "tiny", [], "", ["a.py"], broken, broken, 1, 1, "", "m", environment=environment
    )
    report = change_report(job_request(), result, "0" * 40)
    assert report.count(f"tests could not run: {why}") == 2
    assert "| 0 | 0 |" not in report  # no counts for runs that never ran
    assert "Test environment built in 2.5s, with `pyproject.toml`, `pytest`." in report
    assert summarize_tests(broken) == f"could not run: {why}"


def test_only_the_projects_own_messages_are_posted() -> None:
    assert _describe(Declined("Pull request #3 is closed")) == "Pull request #3 is closed"
    assert _describe(RepoSettingsError("`tiers` is empty")) == "`tiers` is empty"
    leaked = _describe(ValueError("/srv/patchling/data/work/job-1/tree is not a git work tree"))
    assert "/srv" not in leaked and "internal error (ValueError)" in leaked


# -- serve ---------------------------------------------------------------------------


def test_serve_answers_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "PATCHLING_DATA_DIR": str(tmp_path / "data"),
        "GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "GITHUB_APP_ID": "12345",
        "GITHUB_PRIVATE_KEY": private_key_pem(),
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
    assert "PRIVATE KEY" not in text
    assert (tmp_path / "data" / "queue.sqlite3").exists()


def test_serve_keeps_its_memory_and_environ_from_same_user_processes() -> None:
    # In a child interpreter: the flag is per process and this one stays as it is.
    code = (
        "import ctypes, os\n"
        "from bot.serve import PR_GET_DUMPABLE, scrub_environment\n"
        "os.environ['GITHUB_WEBHOOK_SECRET'] = 'x'\n"
        "scrub_environment()\n"
        "libc = ctypes.CDLL(None)\n"
        "print(libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0), 'GITHUB_WEBHOOK_SECRET' in os.environ)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["0", "False"]
