"""The webhook endpoint on its own: signatures, routing, what reaches the queue.
Real deliveries from shared/github-payloads, signed like GitHub signs them."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot import web
from bot.commands import MAX_INSTRUCTION
from bot.config import Settings
from bot.ledger import JobRequest, Ledger
from bot.queue import Intake
from bot.web import MAX_BODY, create_app, sign, verify_signature
from tests.fakegithub import (
    WEBHOOK_SECRET,
    FakePull,
    RemoteRepo,
    delivery_headers,
    issue_comment,
    job_request,
    payload,
    post,
    review_comment,
)

REPO = RemoteRepo(owner="acme", name="calculator", clone_url="https://github.test/acme/calculator.git")
JOB = job_request()


class RecordingQueue:
    """Stands in for JobQueue: the real ledger, no huey."""

    def __init__(self, path: Path) -> None:
        self.ledger = Ledger(path)
        self.jobs: list[JobRequest] = []

    def submit_many(self, jobs: list[JobRequest]) -> list[bool]:
        claimed = self.ledger.claim_many(jobs)
        self.jobs += [job for job, new in zip(jobs, claimed, strict=True) if new]
        return claimed


@pytest.fixture
def queue(tmp_path: Path) -> RecordingQueue:
    return RecordingQueue(tmp_path / "jobs.sqlite3")


@pytest.fixture
def app(tmp_path: Path, queue: RecordingQueue) -> Any:
    settings = Settings(_env_file=None, data_dir=tmp_path, github_webhook_secret=WEBHOOK_SECRET)
    return create_app(settings, queue=queue)


def deliver(app: Any, event: str, data: Any, **headers: str) -> httpx.Response:
    body = json.dumps(data).encode()
    all_headers = delivery_headers(WEBHOOK_SECRET.encode(), body, event)
    all_headers.update(headers)
    return asyncio.run(post(app, "/api/github/webhooks", body, all_headers))


def test_signature_is_hmac_sha256_of_the_raw_body() -> None:
    secret, body = b"It's a Secret to Everybody", b"Hello, World!"
    # GitHub's documented example of X-Hub-Signature-256.
    expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert sign(secret, body) == expected
    assert verify_signature(secret, body, expected)
    assert verify_signature(secret, body, expected.upper().replace("SHA256=", "sha256="))
    assert not verify_signature(secret, body + b" ", expected)
    assert not verify_signature(b"other", body, expected)
    assert not verify_signature(secret, body, expected.replace("sha256=", "sha1="))
    assert not verify_signature(secret, body, expected + "00")
    assert not verify_signature(secret, body, "sha256=ü" + expected[8:])
    assert not verify_signature(secret, body, None)


def test_the_app_refuses_to_start_without_a_secret(tmp_path: Path, queue: RecordingQueue) -> None:
    with pytest.raises(ValueError, match="GITHUB_WEBHOOK_SECRET"):
        create_app(Settings(_env_file=None, data_dir=tmp_path), queue=queue)


def test_healthz(app: Any) -> None:
    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.get("/healthz")

    assert asyncio.run(get()).json() == {"ok": True}


def test_oversized_body_is_refused_with_or_without_a_length(app: Any, queue: RecordingQueue) -> None:
    chunk = b" " * (1024 * 1024)
    count = MAX_BODY // len(chunk) + 2
    headers = delivery_headers(WEBHOOK_SECRET.encode(), b"", "issue_comment")

    async def send(chunked: bool) -> httpx.Response:
        async def stream() -> Any:
            for _ in range(count):
                yield chunk

        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            content = stream() if chunked else chunk * count
            response = await client.post("/api/github/webhooks", content=content, headers=headers)
            assert ("content-length" in response.request.headers) is not chunked
            return response

    assert asyncio.run(send(chunked=False)).status_code == 413
    assert asyncio.run(send(chunked=True)).status_code == 413  # no Content-Length to go by
    assert queue.jobs == []


def test_ping_answers_pong(app: Any) -> None:
    response = deliver(app, "ping", payload("ping/with-app_id"))
    assert response.status_code == 200 and response.json()["pong"] is True


def test_missing_delivery_id_is_a_bad_request(app: Any, queue: RecordingQueue) -> None:
    data = issue_comment(REPO, "/edit add memory clear")
    body = json.dumps(data).encode()
    headers = delivery_headers(WEBHOOK_SECRET.encode(), body, "issue_comment")
    del headers["x-github-delivery"]
    assert asyncio.run(post(app, "/api/github/webhooks", body, headers)).status_code == 400
    assert queue.jobs == []


def test_installations_are_recorded_and_forgotten(app: Any, queue: RecordingQueue) -> None:
    created = payload("installation/created")
    installation_id = created["installation"]["id"]
    names = [r["full_name"] for r in created["repositories"]]
    assert deliver(app, "installation", created).status_code == 200
    assert all(queue.ledger.installation_for(name) == installation_id for name in names)

    added = payload("installation_repositories/added")
    added["installation"]["id"] = installation_id
    assert deliver(app, "installation_repositories", added).status_code == 200
    for repo in added["repositories_added"]:
        assert queue.ledger.installation_for(repo["full_name"]) == installation_id

    removed = payload("installation_repositories/removed")
    removed["installation"]["id"] = installation_id
    assert deliver(app, "installation_repositories", removed).status_code == 200
    for repo in removed["repositories_removed"]:
        assert queue.ledger.installation_for(repo["full_name"]) is None

    deleted = payload("installation/deleted")
    deleted["installation"]["id"] = installation_id
    assert deliver(app, "installation", deleted).status_code == 200
    assert all(queue.ledger.installation_for(name) is None for name in names)


def test_issue_comment_becomes_a_job(app: Any, queue: RecordingQueue) -> None:
    data = issue_comment(REPO, "> /edit quoted\n\n/edit add memory clear\nand say so in the help", number=7)
    response = deliver(app, "issue_comment", data, **{"x-github-delivery": "d-1"})
    assert response.status_code == 202
    (job,) = queue.jobs
    assert response.headers["x-patchling-job"] == job.job_id and response.content == b""
    assert job.target == "issue" and job.command == "edit"
    assert job.instruction == "add memory clear\nand say so in the help"
    assert (job.owner, job.repo, job.number, job.default_branch) == ("acme", "calculator", 7, "main")
    assert job.installation_id == data["installation"]["id"]
    assert (job.requester_login, job.requester_id, job.delivery_id) == ("maintainer", 5150, "d-1")
    assert job.clone_url == REPO.clone_url


def test_bare_edit_on_an_issue_takes_the_issue_as_instruction(app: Any, queue: RecordingQueue) -> None:
    data = issue_comment(REPO, "/edit", title="Add memory clear", issue_body="An `mc` command too.")
    assert deliver(app, "issue_comment", data).status_code == 202
    assert queue.jobs[0].instruction == "Add memory clear\n\nAn `mc` command too."


def test_an_overlong_issue_is_answered_not_run(app: Any, queue: RecordingQueue) -> None:
    data = issue_comment(REPO, "/edit", title="Add memory clear", issue_body="x" * MAX_INSTRUCTION)
    assert deliver(app, "issue_comment", data).status_code == 202
    (job,) = queue.jobs
    assert job.command == "help" and job.instruction == "" and "shorten" in job.reply


def test_comment_on_a_pull_request_targets_the_pull(app: Any, queue: RecordingQueue) -> None:
    data = issue_comment(REPO, "/edit add memory clear", number=12, on_pull=True)
    assert deliver(app, "issue_comment", data).status_code == 202
    assert queue.jobs[0].target == "pull" and queue.jobs[0].number == 12
    bare = issue_comment(REPO, "/edit", number=12, on_pull=True)
    assert deliver(app, "issue_comment", bare).status_code == 202
    assert queue.jobs[1].command == "help"  # a PR asks for nothing by itself


def test_review_comment_carries_its_place(app: Any, queue: RecordingQueue) -> None:
    pull = FakePull(number=12, head_ref="feature", head_repo=REPO.full_name)
    data = review_comment(
        REPO, "/edit use a dict", pull=pull, path="calculator/cli.py", start_line=20, line=24
    )
    data["comment"]["diff_hunk"] = "@@ -18,7 +18,7 @@ def handle"
    assert deliver(app, "pull_request_review_comment", data).status_code == 202
    (job,) = queue.jobs
    assert job.target == "review" and job.event == "pull_request_review_comment"
    assert (job.path, job.start_line, job.end_line) == ("calculator/cli.py", 20, 24)
    assert job.diff_hunk == "@@ -18,7 +18,7 @@ def handle"
    assert job.comment_key == f"review:{data['comment']['id']}"


def test_outdated_review_comment_falls_back_to_original_lines(app: Any, queue: RecordingQueue) -> None:
    pull = FakePull(number=12, head_ref="feature", head_repo=REPO.full_name)
    data = review_comment(REPO, "/edit use a dict", pull=pull, path="calculator/cli.py", line=24)
    data["comment"].update(line=None, start_line=None, original_line=30, original_start_line=28)
    assert deliver(app, "pull_request_review_comment", data).status_code == 202
    assert (queue.jobs[0].start_line, queue.jobs[0].end_line) == (28, 30)


def test_delivery_without_installation_uses_the_recorded_one(app: Any, queue: RecordingQueue) -> None:
    queue.ledger.add_repositories(31337, [REPO.full_name])
    data = issue_comment(REPO, "/edit add memory clear")
    del data["installation"]
    assert deliver(app, "issue_comment", data).status_code == 202
    assert queue.jobs[0].installation_id == 31337


@pytest.mark.parametrize(
    "body",
    [
        "Looks good to me",
        "/editor add memory clear",
        "/retest",
        "> /edit add memory clear",
        "```\n/edit add memory clear\n```",
        "    /edit add memory clear",
    ],
)
def test_comments_without_a_command_are_ignored(app: Any, queue: RecordingQueue, body: str) -> None:
    assert deliver(app, "issue_comment", issue_comment(REPO, body)).status_code == 204
    assert queue.jobs == []


@pytest.mark.parametrize("action", ["edited", "deleted"])
def test_only_new_comments_start_work(app: Any, queue: RecordingQueue, action: str) -> None:
    data = issue_comment(REPO, "/edit add memory clear", action=action)
    assert deliver(app, "issue_comment", data).status_code == 204
    assert queue.jobs == []


def test_payload_of_the_wrong_shape_is_a_bad_request(app: Any, queue: RecordingQueue) -> None:
    data = issue_comment(REPO, "/edit add memory clear")
    del data["repository"]
    assert deliver(app, "issue_comment", data).status_code == 400
    assert queue.jobs == []


def test_parts_of_a_delivery_no_job_reads_are_not_checked(app: Any, queue: RecordingQueue) -> None:
    # Only the fields a job is made of are read on the request path; the rest of
    # the delivery (most of it) is neither parsed into objects nor validated.
    data = issue_comment(REPO, "/edit add memory clear", number=7)
    del data["sender"]
    data["issue"]["labels"] = "not a list"
    data["repository"]["topics"] = 7
    data["comment"]["reactions"] = None
    assert deliver(app, "issue_comment", data).status_code == 202
    (job,) = queue.jobs
    assert (job.full_name, job.number, job.requester_login) == ("acme/calculator", 7, "maintainer")


def _drop(data: dict[str, Any], dotted: str) -> None:
    *parents, last = dotted.split(".")
    for key in parents:
        data = data[key]
    del data[last]


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ("issue_comment", "comment.id"),
        ("issue_comment", "comment.user.id"),
        ("issue_comment", "repository.clone_url"),
        ("issue_comment", "repository.owner.login"),
        ("issue_comment", "issue.number"),
        ("pull_request_review_comment", "comment.path"),
        ("pull_request_review_comment", "pull_request.number"),
    ],
)
def test_a_command_without_a_field_its_job_needs_is_a_bad_request(
    app: Any, queue: RecordingQueue, event: str, field: str
) -> None:
    if event == "issue_comment":
        data = issue_comment(REPO, "/edit add memory clear")
    else:
        pull = FakePull(number=12, head_ref="feature", head_repo=REPO.full_name)
        data = review_comment(REPO, "/edit add memory clear", pull=pull, path="calculator/cli.py", line=24)
    _drop(data, field)
    assert deliver(app, event, data).status_code == 400
    assert queue.jobs == []


def test_a_field_of_the_wrong_type_is_a_bad_request(app: Any, queue: RecordingQueue) -> None:
    data = issue_comment(REPO, "/edit add memory clear")
    data["comment"]["id"] = "seven"
    assert deliver(app, "issue_comment", data).status_code == 400
    data = issue_comment(REPO, "/edit add memory clear")
    data["installation"]["id"] = -1
    assert deliver(app, "issue_comment", data).status_code == 400
    assert queue.jobs == []


def test_a_failing_handler_is_a_server_error_github_retries(
    app: Any, queue: RecordingQueue, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(delivery: str, event: Any, ledger: Ledger) -> Any:
        raise KeyError("a bug in the handler")  # the kind of bug once taken for a bad payload

    monkeypatch.setitem(web.TYPED_HANDLERS, "issue_comment", broken)
    data = issue_comment(REPO, "/edit add memory clear")
    body = json.dumps(data).encode()
    headers = delivery_headers(WEBHOOK_SECRET.encode(), body, "issue_comment", delivery="delivery-broken")
    with caplog.at_level(logging.ERROR, logger="bot.web"):
        response = asyncio.run(post(app, "/api/github/webhooks", body, headers))
    # 4xx would tell GitHub never to redeliver; 5xx lets it (or a person) retry.
    assert response.status_code == 500
    assert queue.jobs == []
    assert "delivery-broken" in caplog.text and "the handler failed" in caplog.text
    assert WEBHOOK_SECRET not in caplog.text and "add memory clear" not in caplog.text


def test_an_installation_payload_without_its_id_is_a_bad_request(app: Any, queue: RecordingQueue) -> None:
    data = payload("installation/created")
    del data["installation"]["id"]
    assert deliver(app, "installation", data).status_code == 400
    data = payload("installation/created")
    data["repositories"] = 7
    assert deliver(app, "installation", data).status_code == 400


def test_intake_records_concurrent_deliveries_in_one_transaction(tmp_path: Path) -> None:
    class Counting(RecordingQueue):
        def __init__(self, path: Path) -> None:
            super().__init__(path)
            self.batches: list[int] = []

        def submit_many(self, jobs: list[JobRequest]) -> list[bool]:
            self.batches.append(len(jobs))
            return super().submit_many(jobs)

    queue = Counting(tmp_path / "jobs.sqlite3")
    intake = Intake(queue)
    base = JOB
    jobs = [
        base.model_copy(update={"job_id": f"j{n}", "delivery_id": f"d{n}", "comment_id": n})
        for n in range(20)
    ]
    jobs.append(base.model_copy(update={"job_id": "again", "delivery_id": "d-again"}))  # comment 1 again

    async def deliver_all() -> list[bool]:
        return await asyncio.gather(*(intake.submit(job) for job in jobs))

    assert asyncio.run(deliver_all()) == [True] * 20 + [False]
    assert queue.batches == [21]
    assert [job.job_id for job in queue.jobs] == [f"j{n}" for n in range(20)]


def test_intake_failure_reaches_every_waiting_request(tmp_path: Path) -> None:
    class Broken(RecordingQueue):
        def submit_many(self, jobs: list[JobRequest]) -> list[bool]:
            raise OSError("disk full")

    intake = Intake(Broken(tmp_path / "jobs.sqlite3"))

    async def one() -> bool:
        return await intake.submit(JOB)

    with pytest.raises(OSError, match="disk full"):
        asyncio.run(one())


def test_app_manifest() -> None:
    import yaml

    manifest = yaml.safe_load((Path(__file__).resolve().parents[1] / "app.yml").read_text())
    assert manifest["hook_attributes"]["url"].endswith("/api/github/webhooks")
    assert set(manifest["default_events"]) == {"issue_comment", "pull_request_review_comment"}
    assert manifest["default_permissions"] == {
        "contents": "write",
        "pull_requests": "write",
        "issues": "write",
        "metadata": "read",
    }
    assert manifest["public"] is False and manifest["name"] and manifest["url"]


def test_bad_signature_is_logged_with_a_hint(
    app: Any, queue: RecordingQueue, caplog: pytest.LogCaptureFixture
) -> None:
    body = json.dumps(payload("ping/with-app_id")).encode()
    headers = delivery_headers(b"another-secret", body, "ping")
    with caplog.at_level("INFO", logger="bot.web"):
        response = asyncio.run(post(app, "/api/github/webhooks", body, headers))
    assert response.status_code == 401
    (record,) = [r for r in caplog.records if "bad signature" in r.getMessage()]
    assert record.levelname == "WARNING" and "GITHUB_WEBHOOK_SECRET" in record.getMessage()
    assert WEBHOOK_SECRET not in caplog.text and "another-secret" not in caplog.text


def test_ping_is_logged(app: Any, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("INFO", logger="bot.web"):
        assert deliver(app, "ping", payload("ping/with-app_id")).status_code == 200
    assert any("ping" in r.getMessage() and r.levelname == "INFO" for r in caplog.records)
