"""The App keeps its promises when things around it fail: a crash at any
point of a job, GitHub's errors, a broken mirror. Each job ends once, with a
clear comment, and nothing half done.

A crash is a `Killed` (a BaseException, which no handler of the job catches)
raised by the fake GitHub at a chosen call: the run stops there, as under
kill -9, and a new JobQueue on the same data directory recovers it."""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pygit2
import pytest

from bot.queue import JobQueue
from bot.workspace import rejection_kind
from tests.conftest import CALCULATOR
from tests.fakegithub import (
    WEBHOOK_SECRET,
    Harness,
    RemoteRepo,
    delivery_headers,
    issue_comment,
    make_harness,
    memory_clear_rules,
    script_memory_clear,
    seed_remote,
)
from tests.githubserver import GitHubProcess, app_process_env
from tests.modelserver import ScriptedModel, free_port
from tests.processes import stop_gracefully
from tests.test_app_e2e import NEW_SOURCE

BRANCH = "patchling/7-add-a-way-to-clear-the-memory"


class Killed(BaseException):
    """The process died here."""


Action = Callable[[httpx.Request], httpx.Response | None]


def at(method: str, path: str, action: Action, *, nth: int = 1) -> Callable[[httpx.Request], Any]:
    """A fault that does `action` at the nth request matching method and path (a regex)."""
    seen = 0

    def fault(request: httpx.Request) -> httpx.Response | None:
        nonlocal seen
        if request.method != method or not re.search(path, request.url.path):
            return None
        seen += 1
        return action(request) if seen == nth else None

    return fault


def _each(path: str, method: str, action: Action) -> Callable[[httpx.Request], Any]:
    def fault(request: httpx.Request) -> httpx.Response | None:
        if request.method == method and re.search(path, request.url.path):
            return action(request)
        return None

    return fault


def kill(request: httpx.Request) -> None:
    raise Killed(f"{request.method} {request.url.path}")


def harness(tmp_path: Path, model: ScriptedModel, **settings: Any) -> Harness:
    script_memory_clear(model, NEW_SOURCE)
    return make_harness(tmp_path, CALCULATOR, model.url, **settings)


def request(app: Harness) -> dict[str, Any]:
    data = issue_comment(app.repo, "/edit add memory clear")
    assert app.deliver("issue_comment", data).status_code == 202
    return data


def crash_then_restart(app: Harness) -> JobQueue:
    """Run the queued job into the fault, then start afresh as serve does."""
    with pytest.raises(Killed):
        app.run_jobs()
    app.fake.fault = None
    restarted = JobQueue(app.settings, github=app.queue.github)
    assert restarted.recover() == 1
    app.queue = restarted
    assert app.run_jobs() == 1
    return restarted


def commits_over_main(app: Harness, branch: str = BRANCH) -> int:
    tip = app.remote.references[f"refs/heads/{branch}"].target
    main = app.remote.references["refs/heads/main"].target
    ahead, _ = app.remote.ahead_behind(tip, main)
    return int(ahead)


def assert_finished(app: Harness, mark: str) -> dict[str, Any]:
    """One status comment on the issue, finished (nothing left at 'working')."""
    (status,) = app.fake.posted_to(7)
    assert "working…" not in status["body"] and mark in status["body"]
    return status


# -- crashes ---------------------------------------------------------------------------


def test_a_task_taken_by_a_worker_that_died_before_starting_it_runs(
    tmp_path: Path, model_server: ScriptedModel
) -> None:
    app = harness(tmp_path, model_server)
    data = request(app)
    assert app.queue.huey.dequeue() is not None  # taken, and the worker died at once
    assert app.queue.huey.pending_count() == 0

    restarted = JobQueue(app.settings, github=app.queue.github)
    assert restarted.recover() == 1
    assert restarted.recover() == 0  # already back in the queue: not twice
    app.queue = restarted
    assert app.run_jobs() == 1
    assert len(app.fake.created_pulls) == 1
    assert app.fake.reactions_on(data["comment"]["id"]) == ["eyes", "rocket"]


def test_killed_between_push_and_pull_request_opens_it_after_the_restart(
    tmp_path: Path, model_server: ScriptedModel
) -> None:
    app = harness(tmp_path, model_server)
    data = request(app)
    app.fake.fault = at("POST", r"/pulls$", kill)
    restarted = crash_then_restart(app)

    assert len(app.fake.created_pulls) == 1 and commits_over_main(app) == 1
    assert restarted.ledger.count("done") == 1
    status = assert_finished(app, "🚀 pull request opened")
    assert "resumed" in status["body"]
    assert app.fake.reactions_on(data["comment"]["id"]) == ["eyes", "rocket"]
    # The pushed commit was delivered as it was: the model was not asked again.
    assert sum("decide which files" in str(c) for c in model_server.calls()) == 1


def test_killed_after_the_status_comment_edits_the_same_comment(
    tmp_path: Path, model_server: ScriptedModel
) -> None:
    app = harness(tmp_path, model_server)
    request(app)
    app.fake.fault = at("PATCH", r"/issues/comments/\d+$", kill)  # the first stage line
    crash_then_restart(app)
    status = assert_finished(app, "🚀 pull request opened")
    assert "resumed after an interruption" in status["body"]
    assert len(app.fake.created_pulls) == 1 and commits_over_main(app) == 1


def test_killed_after_the_pull_request_opened_opens_no_second_one(
    tmp_path: Path, model_server: ScriptedModel
) -> None:
    app = harness(tmp_path, model_server)
    request(app)
    # The status comment's last edit comes right after the pull request: die there.
    created = len(app.fake.created_pulls)

    def kill_after_pull(request: httpx.Request) -> None:
        if len(app.fake.created_pulls) > created:
            kill(request)

    app.fake.fault = _each(r"/issues/comments/\d+$", "PATCH", kill_after_pull)
    crash_then_restart(app)
    assert len(app.fake.created_pulls) == 1
    (number,) = app.fake.pulls
    assert app.fake.posted_to(number) == []  # no report posted to its own PR as if it were another's
    assert_finished(app, "🚀 pushed `")


def test_start_up_removes_the_work_trees_of_dead_runs(tmp_path: Path) -> None:
    app = make_harness(tmp_path, CALCULATOR)
    left = app.settings.data_dir / "work" / "job-0123456789abcdef-x1y2" / "tree"
    left.mkdir(parents=True)
    (left / "calculator.py").write_text("half an edit\n")
    JobQueue(app.settings, github=app.queue.github).recover()
    assert list((app.settings.data_dir / "work").iterdir()) == []


# -- GitHub's errors -------------------------------------------------------------------


def test_a_token_that_expires_mid_job_is_renewed_once(tmp_path: Path, model_server: ScriptedModel) -> None:
    app = harness(tmp_path, model_server)
    data = request(app)

    def expire(request: httpx.Request) -> None:
        app.fake.revoked.extend(app.fake.tokens)  # GitHub now answers 401 to it

    app.fake.fault = at("PATCH", r"/issues/comments/\d+$", expire)
    assert app.run_jobs() == 1
    assert len(app.fake.tokens) == 2
    assert len(app.fake.created_pulls) == 1
    assert_finished(app, "🚀 pull request opened")
    assert app.fake.reactions_on(data["comment"]["id"]) == ["eyes", "rocket"]


# -- pushes ----------------------------------------------------------------------------


def push_to_remote(app: Harness, branch: str, path: str, text: str) -> None:
    """Someone else's commit on `branch` of the remote (created from main if need be)."""
    ref = app.remote.references.get(f"refs/heads/{branch}")
    parent = (ref or app.remote.references["refs/heads/main"]).peel(pygit2.Commit)
    index = pygit2.Index()
    index.read_tree(parent.tree)
    blob = app.remote.create_blob(text.encode())
    index.add(pygit2.IndexEntry(path, blob, pygit2.enums.FileMode.BLOB))
    tree = index.write_tree(app.remote)
    who = pygit2.Signature("Someone", "someone@example.com")
    oid = app.remote.create_commit(None, who, who, "Someone else's change", tree, [parent.id])
    app.remote.references.create(f"refs/heads/{branch}", oid, force=True)


def test_a_branch_that_moved_on_during_the_job_gets_the_commit_on_top(
    tmp_path: Path, model_server: ScriptedModel
) -> None:
    app = harness(tmp_path, model_server)
    request(app)

    def someone_pushes(request: httpx.Request) -> None:
        push_to_remote(app, BRANCH, "NOTES.md", "pushed while the job ran\n")

    app.fake.fault = at("PATCH", r"/issues/comments/\d+$", someone_pushes)  # after the checkout
    assert app.run_jobs() == 1
    assert_finished(app, "🚀 pull request opened")
    head = app.remote.references[f"refs/heads/{BRANCH}"].peel(pygit2.Commit)
    assert "memory_clear" in (head.tree / "calculator" / "calculator.py").data.decode()
    assert head.parents[0].message == "Someone else's change"
    assert str(head.id) in app.fake.created_pulls[0]["body"]  # the report names the commit pushed


def test_a_conflicting_push_in_between_ends_with_a_clear_comment(
    tmp_path: Path, model_server: ScriptedModel
) -> None:
    app = harness(tmp_path, model_server)
    data = request(app)

    def someone_pushes(request: httpx.Request) -> None:
        push_to_remote(app, BRANCH, "calculator/calculator.py", "# rewritten meanwhile\n")

    app.fake.fault = at("PATCH", r"/issues/comments/\d+$", someone_pushes)
    assert app.run_jobs() == 1
    status = assert_finished(app, "😕 stopped")
    assert "changed while the edit was made" in status["body"]
    assert app.fake.created_pulls == []
    assert app.fake.reactions_on(data["comment"]["id"]) == ["eyes", "confused"]


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        # GitHub's report-status texts, and libgit2's own check before a push.
        ("refs/heads/main: protected branch hook declined", "protected"),
        ("GH006: Protected branch update failed for refs/heads/main.", "protected"),
        ("GH013: Repository rule violations found for refs/heads/main.", "protected"),
        (
            "cannot push because a reference that you are trying to update on the remote contains "
            "commits that are not present locally.",
            "behind",
        ),
        ("refs/heads/x: non-fast-forward", "behind"),
        ("refs/heads/x: pre-receive hook declined", "other"),
    ],
)
def test_push_refusals_are_told_apart(message: str, kind: str) -> None:
    assert rejection_kind(message) == kind


# -- GitHub failing --------------------------------------------------------------------


def retrying(app: Harness, **retry: Any) -> None:
    """The production retry policy, with short waits."""
    from githubkit.cache import MemCacheStrategy

    from bot.github import Retry, app_client

    policy = Retry(backoff_s=0.01, **retry)
    app.queue.github = lambda: app_client(app.settings, auto_retry=policy, cache_strategy=MemCacheStrategy())


def answer(status: int, message: str, **headers: str) -> Action:
    return lambda request: httpx.Response(status, json={"message": message}, headers=headers)


def test_a_5xx_is_tried_again_and_opens_one_pull_request(tmp_path: Path, model_server: ScriptedModel) -> None:
    app = harness(tmp_path, model_server)
    retrying(app)
    request(app)
    outage = answer(502, "Server Error")
    app.fake.fault = _each(r"/pulls$", "POST", lambda r: outage(r) if len(app.fake.requests) % 2 else None)
    assert app.run_jobs() == 1
    assert len(app.fake.pulls) == 1
    assert_finished(app, "🚀 pull request opened")


def test_a_create_that_succeeded_behind_a_5xx_finds_its_pull_request(
    tmp_path: Path, model_server: ScriptedModel
) -> None:
    app = harness(tmp_path, model_server)
    retrying(app)
    request(app)

    def made_then_lost(request: httpx.Request) -> httpx.Response | None:
        if app.fake.created_pulls:  # GitHub refuses a second PR from the same head
            return answer(422, "A pull request already exists for acme:" + BRANCH)(request)
        app.fake._create_pull(request)  # made, but the answer is lost
        return answer(502, "Server Error")(request)

    app.fake.fault = _each(r"/pulls$", "POST", made_then_lost)
    assert app.run_jobs() == 1
    assert len(app.fake.pulls) == 1
    assert_finished(app, "🚀 pull request opened")


def test_github_down_ends_with_a_clear_comment(tmp_path: Path, model_server: ScriptedModel) -> None:
    app = harness(tmp_path, model_server)
    retrying(app, server_retries=2)
    data = request(app)
    app.fake.fault = _each(r"/pulls$", "POST", answer(503, "Service Unavailable"))
    assert app.run_jobs() == 1
    status = assert_finished(app, "😕 stopped: GitHub answered 503 (trouble on GitHub's side")
    assert app.fake.reactions_on(data["comment"]["id"]) == ["eyes", "confused"]
    creates = [r for r in app.fake.requests if r.method == "POST" and r.url.path.endswith("/pulls")]
    assert len(creates) == 3  # the first call and two more
    assert "internal error" not in status["body"]


def test_a_secondary_rate_limit_waits_as_told_and_goes_on(
    tmp_path: Path, model_server: ScriptedModel
) -> None:
    app = harness(tmp_path, model_server)
    retrying(app)
    request(app)
    limited = answer(403, "You have exceeded a secondary rate limit.", **{"retry-after": "1"})
    app.fake.fault = at("POST", r"/pulls$", limited)
    assert app.run_jobs() == 1
    assert len(app.fake.pulls) == 1
    assert_finished(app, "🚀 pull request opened")


def test_a_rate_limit_longer_than_the_job_may_wait_says_so(
    tmp_path: Path, model_server: ScriptedModel
) -> None:
    app = harness(tmp_path, model_server)
    retrying(app, max_wait_s=5)
    request(app)
    limited = answer(403, "You have exceeded a secondary rate limit.", **{"retry-after": "3600"})
    app.fake.fault = at("POST", r"/pulls$", limited)
    assert app.run_jobs() == 1
    assert_finished(app, "😕 stopped: GitHub's rate limit held it back (GitHub asked to wait 3600s)")


def test_a_repository_gone_mid_job_stops_it_and_logs_why(
    tmp_path: Path, model_server: ScriptedModel, caplog: pytest.LogCaptureFixture
) -> None:
    app = harness(tmp_path, model_server)
    retrying(app)
    request(app)
    gone = answer(404, "Not Found")

    def deleted_from_the_pull_request_on(request: httpx.Request) -> httpx.Response | None:
        if request.method == "POST" and request.url.path.endswith("/pulls"):
            app.fake.gone = True
        if app.fake.gone and request.url.path.startswith("/repos/"):
            return gone(request)
        return None

    app.fake.fault = deleted_from_the_pull_request_on
    assert app.run_jobs() == 1
    assert app.queue.ledger.count("repo_gone") == 1
    assert "acme/calculator is gone or out of the App's reach" in caplog.text
    assert app.fake.created_pulls == []


# -- the repository's tests ------------------------------------------------------------


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs util-linux's setpriv")
def test_the_test_process_dies_with_a_killed_server(tmp_path: Path) -> None:
    # A stand-in server runs a repository command whose grandchild, in a session
    # of its own, keeps writing a heartbeat; kill -9 of the server must end it all.
    beat = tmp_path / "beat.txt"
    loop = f"import time\nwhile True:\n    open({str(beat)!r}, 'a').write('x')\n    time.sleep(0.05)\n"
    (tmp_path / "loop.py").write_text(loop)
    spawn = (
        "import subprocess, sys, time; "
        f"subprocess.Popen([sys.executable, {str(tmp_path / 'loop.py')!r}], start_new_session=True); "
        "time.sleep(60)"
    )
    code = (
        "from pathlib import Path\nfrom bot.verify import run_tests\n"
        f"run_tests(Path({str(tmp_path)!r}), {('python3 -c ' + shlex.quote(spawn))!r}, 60)\n"
    )
    server = subprocess.Popen([sys.executable, "-c", code])
    try:
        while not beat.exists():
            assert server.poll() is None, "the stand-in server ended early"
            time.sleep(0.05)
        server.send_signal(signal.SIGKILL)
        server.wait()
        # Still beating after the kill means something of the sandbox outlived the server.
        for _ in range(100):
            size = beat.stat().st_size
            time.sleep(0.3)
            if beat.stat().st_size == size:
                break
        assert beat.stat().st_size == size
    finally:
        server.kill()


# -- the model failing -----------------------------------------------------------------

# What each fault makes the tier's server answer to the plan request.
MODEL_FAULTS: dict[str, list[dict[str, Any]]] = {
    "down": [],  # nothing listens at the tier's address
    "500": [{"match": "decide which files", "status": 500, "reply": "upstream overloaded"}],
    "garbage": [{"match": "decide which files", "reply": "<<< %%% not a plan %%% >>>"}],
    "truncated": [
        {
            "match": "decide which files",
            "reply": '{"files": [{"path": "calculator/calc',
            "finish_reason": "length",
        }
    ],
    "too slow": [{"match": "decide which files", "reply": "{}", "delay": 4}],
}
# Words of the prompt that no log may hold: the template's, and the repository's code.
PROMPT_WORDS = ("decide which files", "def memory_recall")


def the_endpoint_is_named(app: Harness, server: ScriptedModel) -> list[str]:
    """The posted texts that give away where the model server is."""
    return [body for body in app.fake.bodies() if server.url in body or f":{server.port}" in body]


@pytest.mark.parametrize("fault", list(MODEL_FAULTS))
def test_a_failing_model_ends_the_job_naming_the_tier_and_the_next_job_works(
    tmp_path: Path,
    model_server: ScriptedModel,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    fault: str,
) -> None:
    from bot.config import Tier
    from bot.serve import quiet_model_log

    caplog.set_level(logging.INFO)
    # BAML's own default, as a service's environment might leave it: serve quiets it.
    monkeypatch.setenv("BAML_LOG", "warn")
    quiet_model_log(verbose=False)
    server = ScriptedModel() if fault == "down" else model_server  # not started yet: down
    tier = Tier(name="tiny", model="tiny", base_url=server.url, timeout_s=2)
    app = make_harness(tmp_path, CALCULATOR, tiers=[tier])
    if fault != "down":
        model_server.script(*MODEL_FAULTS[fault])
    first = request(app)
    assert app.run_jobs() == 1

    assert app.queue.ledger.count("failed") == 1
    assert app.fake.reactions_on(first["comment"]["id"]) == ["eyes", "confused"]
    (status, reply) = app.fake.posted_to(7)
    assert "working…" not in status["body"] and "😕 no change made:" in status["body"]
    assert "tiny" in reply["body"] and "internal error" not in reply["body"]
    assert the_endpoint_is_named(app, server) == []
    assert app.fake.created_pulls == []
    logged = caplog.text + capfd.readouterr().out
    assert not [word for word in PROMPT_WORDS if word in logged]

    # The model is back: the next request goes through.
    if fault == "down":
        server.start()
    try:
        script_memory_clear(server, NEW_SOURCE)
        request(app)
        assert app.run_jobs() == 1
    finally:
        if fault == "down":
            server.stop()
    assert len(app.fake.created_pulls) == 1
    assert app.queue.ledger.count("done") == 1


def test_verbose_serve_logs_the_prompt_of_a_failed_call(
    tmp_path: Path,
    model_server: ScriptedModel,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The other side of the quiet log: asked for, the prompts are there."""
    from bot.serve import quiet_model_log

    monkeypatch.setenv("BAML_LOG", "error")
    quiet_model_log(verbose=True)
    app = make_harness(tmp_path, CALCULATOR, model_server.url)
    model_server.script(*MODEL_FAULTS["500"])
    request(app)
    assert app.run_jobs() == 1
    assert "decide which files" in capfd.readouterr().out


# -- the data directory ----------------------------------------------------------------


def cut_short(git_dir: Path) -> None:
    """Truncate every object file of a bare repository (its packs, its loose
    objects) to half its size, as a crash in the middle of writing would."""
    objects = [p for p in (git_dir / "objects").rglob("*") if p.is_file() and p.suffix != ".idx"]
    objects = [p for p in objects if p.parent.name != "info"]
    assert objects
    for path in objects:
        path.chmod(0o644)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])


def mirror_of(app: Harness) -> Path:
    return app.settings.data_dir / "mirrors" / "acme" / "calculator.git"


def test_a_damaged_mirror_is_cloned_afresh_and_the_job_goes_on(
    tmp_path: Path, model_server: ScriptedModel, caplog: pytest.LogCaptureFixture
) -> None:
    app = harness(tmp_path, model_server)
    request(app)
    assert app.run_jobs() == 1
    cut_short(mirror_of(app))

    script_memory_clear(model_server, NEW_SOURCE.replace("memory_clear", "memory_reset"))
    data = request(app)
    assert app.run_jobs() == 1
    assert app.queue.ledger.count("done") == 2
    assert app.fake.reactions_on(data["comment"]["id"]) == ["eyes", "rocket"]
    assert "the mirror of acme/calculator is damaged" in caplog.text
    assert commits_over_main(app) == 2  # the second job's commit too, on the same branch
    assert pygit2.Repository(str(mirror_of(app))).odb  # the new mirror opens


def test_a_repository_damaged_at_its_source_stops_the_job_with_a_clear_comment(
    tmp_path: Path, model_server: ScriptedModel
) -> None:
    app = harness(tmp_path, model_server)
    # One file's content, damaged where the remote keeps it: every clone of it is damaged.
    main = app.remote.references["refs/heads/main"].peel(pygit2.Commit)
    blob = (main.tree / "calculator" / "calculator.py").id
    loose = app.remote_path / "objects" / str(blob)[:2] / str(blob)[2:]
    loose.chmod(0o644)
    loose.write_bytes(loose.read_bytes()[:20])
    data = request(app)
    assert app.run_jobs() == 1
    assert app.fake.reactions_on(data["comment"]["id"]) == ["eyes", "confused"]
    (reply,) = app.fake.posted_to(7)
    assert "the server's copy of the repository was damaged, and a fresh clone of it failed" in reply["body"]
    assert not mirror_of(app).exists()
    assert model_server.calls() == []


def assert_declined_as_too_large(app: Harness, data: dict[str, Any], model: ScriptedModel) -> str:
    assert app.queue.ledger.count("declined") == 1
    assert app.fake.reactions_on(data["comment"]["id"]) == ["eyes", "confused"]
    (reply,) = app.fake.posted_to(7)
    assert "too large for this Patchling server" in reply["body"] and "`max_repo_mb`" in reply["body"]
    assert not mirror_of(app).exists()
    assert list((app.settings.data_dir / "work").glob("*")) == []
    assert model.calls() == []
    return str(reply["body"])


def test_a_repository_github_counts_over_the_cap_is_refused_before_cloning(
    tmp_path: Path, model_server: ScriptedModel
) -> None:
    app = harness(tmp_path, model_server)
    app.fake.size_kb = 3 * 1024 * 1024  # 3 GB, over the default 2 GB
    data = request(app)
    assert app.run_jobs() == 1
    body = assert_declined_as_too_large(app, data, model_server)
    assert "GitHub counts it at 3,072 MB" in body and "up to 2,048 MB" in body
    assert not (app.settings.data_dir / "mirrors").exists()  # not even begun


def test_a_repository_over_the_cap_on_disk_is_refused_and_its_mirror_removed(
    tmp_path: Path, model_server: ScriptedModel
) -> None:
    app = harness(tmp_path, model_server, max_repo_mb=1)
    # GitHub's count lags behind a push: the repository is small by its word (the example's 108 KB).
    main = app.remote.references["refs/heads/main"].peel(pygit2.Commit)
    index = pygit2.Index()
    index.read_tree(main.tree)
    blob = app.remote.create_blob(os.urandom(1_500_000))  # incompressible
    index.add(pygit2.IndexEntry("data/noise.bin", blob, pygit2.enums.FileMode.BLOB))
    who = pygit2.Signature("Someone", "someone@example.com")
    oid = app.remote.create_commit(None, who, who, "Add noise", index.write_tree(app.remote), [main.id])
    app.remote.references["refs/heads/main"].set_target(oid)

    data = request(app)
    assert app.run_jobs() == 1
    body = assert_declined_as_too_large(app, data, model_server)
    assert "its copy on the server takes 1.4 MB" in body and "up to 1 MB" in body


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MB file system of its own (tmpfs), to fill up."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small file system here (needs root): {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)


def fill(disk: Path) -> Path:
    """Write a file until the disk is full; remove it to make room again."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as out:
        try:
            while True:
                out.write(bytes(64 * 1024))
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


@pytest.mark.parametrize(
    "when",
    [
        ("GET", r"/permission$"),  # before the mirror is cloned
        ("POST", r"/issues/\d+/comments$"),  # before the work tree is written
    ],
    ids=["cloning", "checking out"],
)
def test_a_full_disk_ends_the_job_with_a_clear_comment_and_the_next_job_works(
    tmp_path: Path, model_server: ScriptedModel, small_disk: Path, when: tuple[str, str]
) -> None:
    app = harness(tmp_path, model_server, data_dir=small_disk / "data")
    data = request(app)
    filled: list[Path] = []
    app.fake.fault = at(*when, lambda request: filled.append(fill(small_disk)))

    assert app.run_jobs() == 1  # the worker lives on
    assert filled
    assert app.fake.reactions_on(data["comment"]["id"]) == ["eyes", "confused"]
    said = [c["body"] for c in app.fake.posted_to(7)]
    assert any("the server's disk is full" in body for body in said)
    assert not [body for body in said if "working…" in body]
    assert list((app.settings.data_dir / "work").glob("job-*")) == []
    assert app.fake.created_pulls == []

    filled[0].unlink()  # room again
    app.fake.fault = None
    request(app)
    assert app.run_jobs() == 1
    assert len(app.fake.created_pulls) == 1
    assert commits_over_main(app) == 1


# -- kill -9 of a real server ------------------------------------------------------------


class Server:
    """`patchling serve` as its own process, against the fake GitHub's process."""

    def __init__(self, tmp_path: Path, github: GitHubProcess, model: ScriptedModel) -> None:
        self.cwd = tmp_path
        self.data_dir = tmp_path / "data"
        self.port = free_port()
        self.env = app_process_env(self.data_dir, model.url, github.url)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Server:
        code = (
            "import bot.serve\nfrom bot.config import Settings\n"
            f"bot.serve.serve(Settings(), '127.0.0.1', {self.port})"
        )
        log = (self.cwd / "serve.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code], cwd=self.cwd, env=self.env, stdout=log, stderr=log
        )
        wait_for(lambda: self._healthy(), "serve to start")
        return self

    def _healthy(self) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=0.5).status_code == 200
        except httpx.HTTPError:
            return False

    def deliver(self, event: str, data: dict[str, Any]) -> httpx.Response:
        body = json.dumps(data).encode()
        headers = delivery_headers(WEBHOOK_SECRET.encode(), body, event)
        return httpx.post(f"http://127.0.0.1:{self.port}/api/github/webhooks", content=body, headers=headers)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        stop_gracefully(self.proc)


def wait_for(ready: Callable[[], Any], what: str, timeout_s: float = 90) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (found := ready()):
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.1)
    return found


@pytest.fixture
def live(tmp_path: Path, model_server: ScriptedModel) -> Iterator[tuple[Server, GitHubProcess, Any]]:
    remote_path, remote = seed_remote(tmp_path, CALCULATOR)
    github = GitHubProcess(RemoteRepo("acme", "calculator", f"file://{remote_path}")).start()
    server = Server(tmp_path, github, model_server)
    try:
        yield server, github, remote
    finally:
        server.stop()
        github.stop()


def finished_status(github: GitHubProcess) -> dict[str, Any] | None:
    """The job's status comment once it is finished (one 🚀 or 😕 line)."""
    state = github.state()
    statuses = [c for c in state["comments"].values() if c["body"].startswith("**Patchling**")]
    done = [c for c in statuses if "working…" not in c["body"]]
    return done[0] if done and state["created_pulls"] else None


def assert_delivered_once(server: Server, github: GitHubProcess, remote: Any) -> dict[str, Any]:
    status = wait_for(lambda: finished_status(github), "the job to finish")
    state = github.state()
    assert len(state["created_pulls"]) == 1
    statuses = [c for c in state["comments"].values() if c["body"].startswith("**Patchling**")]
    assert len(statuses) == 1 and "🚀 pull request opened" in status["body"]
    tip = remote.references[f"refs/heads/{BRANCH}"].target
    ahead, _ = remote.ahead_behind(tip, remote.references["refs/heads/main"].target)
    assert ahead == 1
    # The status comment is posted before the job's `finally` removes its work tree.
    wait_for(lambda: not list((server.data_dir / "work").glob("job-*")), "the work trees to be removed", 30)
    return status


def test_kill_9_right_after_the_202_runs_the_job_once_after_the_restart(
    live: tuple[Server, GitHubProcess, Any], model_server: ScriptedModel
) -> None:
    server, github, remote = live
    script_memory_clear(model_server, NEW_SOURCE)
    server.start()
    data = issue_comment(github.repo, "/edit add memory clear")
    assert server.deliver("issue_comment", data).status_code == 202
    server.kill()
    server.start()
    assert_delivered_once(server, github, remote)


def test_kill_9_in_the_middle_of_a_job_resumes_it_after_the_restart(
    live: tuple[Server, GitHubProcess, Any], model_server: ScriptedModel
) -> None:
    server, github, remote = live
    edit = "What to change in calculator/calculator.py"
    # Slow enough to be killed in; short enough for the model server to stop after.
    slow = {"match": edit, "reply": "```python\nslow\n```", "delay": 6, "times": 1}
    plan, fast = memory_clear_rules(NEW_SOURCE)
    model_server.script(plan, slow, fast)
    server.start()
    data = issue_comment(github.repo, "/edit add memory clear")
    assert server.deliver("issue_comment", data).status_code == 202
    wait_for(lambda: any(edit in str(c["messages"]) for c in model_server.calls()), "the model to be asked")
    server.kill()
    server.start()
    status = assert_delivered_once(server, github, remote)
    assert "resumed after an interruption" in status["body"]
