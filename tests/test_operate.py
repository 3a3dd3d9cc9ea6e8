"""What an operator reads: /healthz, /readyz, /metrics and the JSON log lines.
GitHub is the respx fake, the model the scripted server, the rest real."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot import logs
from bot.config import Settings, Tier
from bot.health import Readiness
from bot.records import RecordStore
from bot.redact import MASK
from bot.web import create_app
from tests.conftest import CALCULATOR
from tests.fakegithub import (
    WEBHOOK_SECRET,
    Harness,
    issue_comment,
    make_harness,
    private_key_pem,
    script_memory_clear,
)
from tests.modelserver import ScriptedModel, free_port
from tests.test_app_e2e import NEW_SOURCE
from tests.test_web import RecordingQueue


def get(app: Any, path: str) -> httpx.Response:
    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://patchling.test") as client:
            return await client.get(path)

    return asyncio.run(run())


def samples(app: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """/metrics, parsed by prometheus-client's own parser: {(name, labels): value}."""
    response = get(app, "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


def parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def down_url() -> str:
    return f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there


@pytest.fixture
def app(tmp_path: Path, model_server: ScriptedModel) -> Harness:
    script_memory_clear(model_server, NEW_SOURCE)
    return make_harness(tmp_path, CALCULATOR, model_server.url)


# -- /healthz and /readyz ---------------------------------------------------------------


def test_healthz_answers_while_the_model_server_is_down(tmp_path: Path) -> None:
    harness = make_harness(tmp_path, CALCULATOR, down_url())
    assert get(harness.app, "/healthz").json() == {"ok": True}


def test_ready_when_queue_credentials_and_a_tier_answer(app: Harness) -> None:
    response = get(app.app, "/readyz")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ready"] is True
    assert body["queue"]["ok"] and body["credentials"]["ok"]
    assert body["models"] == {"ok": True, "detail": "answering: tiny"}


def test_not_ready_when_no_model_server_answers(tmp_path: Path) -> None:
    harness = make_harness(tmp_path, CALCULATOR, down_url())
    response = get(harness.app, "/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["ready"] is False
    assert body["models"]["ok"] is False and "tiny: connection refused" in body["models"]["detail"]
    assert body["queue"]["ok"] and body["credentials"]["ok"]  # the rest is fine


def test_one_tier_answering_is_enough(tmp_path: Path, model_server: ScriptedModel) -> None:
    tiers = [
        Tier(name="gone", model="m", base_url=down_url()),
        Tier(name="here", model="m", base_url=model_server.url),
    ]
    harness = make_harness(tmp_path, CALCULATOR, tiers=tiers)
    response = get(harness.app, "/readyz")
    assert response.status_code == 200 and response.json()["models"]["detail"] == "answering: here"


def test_not_ready_without_the_app_credentials(tmp_path: Path, model_server: ScriptedModel) -> None:
    settings = Settings(
        _env_file=None,
        data_dir=tmp_path,
        github_webhook_secret=WEBHOOK_SECRET,
        tiers=[Tier(name="tiny", model="tiny", base_url=model_server.url)],
    )
    app = create_app(settings, queue=RecordingQueue(tmp_path / "jobs.sqlite3"))
    response = get(app, "/readyz")
    assert response.status_code == 503
    credentials = response.json()["credentials"]
    assert credentials["ok"] is False and "GITHUB_APP_ID" in credentials["detail"]


def test_not_ready_when_the_queue_cannot_be_read(tmp_path: Path, model_server: ScriptedModel) -> None:
    harness = make_harness(tmp_path, CALCULATOR, model_server.url)
    harness.queue.ledger.path.unlink()
    harness.queue.ledger.path.mkdir()  # a directory where the database was: SQLite cannot open it
    response = get(harness.app, "/readyz")
    assert response.status_code == 503 and response.json()["queue"]["ok"] is False


def test_the_tier_check_is_cached_between_probes(tmp_path: Path, model_server: ScriptedModel) -> None:
    harness = make_harness(tmp_path, CALCULATOR, model_server.url)
    now = [1000.0]
    readiness = Readiness(harness.settings, harness.queue, ttl_s=10.0, clock=lambda: now[0])
    before = model_server.probes()
    for _ in range(3):
        assert asyncio.run(readiness.check())[0] is True
    assert model_server.probes() == before + 1  # three probes, one request to the model server
    now[0] += 10.0
    assert asyncio.run(readiness.check())[0] is True
    assert model_server.probes() == before + 2  # the answer expired: asked again


# -- /metrics -------------------------------------------------------------------------


def test_metrics_parse_and_name_every_family(app: Harness) -> None:
    found = samples(app.app)
    names = {name for name, _ in found}
    assert {"patchling_queue_depth", "patchling_jobs_running"} <= names
    response = get(app.app, "/metrics")
    families = {f.name for f in text_string_to_metric_families(response.text)}
    for family in (
        "patchling_deliveries",
        "patchling_jobs",
        "patchling_stage_duration_seconds",
        "patchling_tier_attempts",
        "patchling_tier_successes",
        "patchling_tier_tokens",
    ):
        assert family in families, family


def test_counters_move_after_a_delivery_and_a_job(app: Harness) -> None:
    before = samples(app.app)
    data = issue_comment(app.repo, "/edit add memory clear", number=7)
    assert app.deliver("issue_comment", data, delivery="d-metrics-1").status_code == 202
    assert app.deliver("issue_comment", data, delivery="d-metrics-1").status_code == 200  # redelivery
    queued = samples(app.app)
    assert value(queued, "patchling_deliveries_total", event="issue_comment", outcome="queued") == (
        value(before, "patchling_deliveries_total", event="issue_comment", outcome="queued") + 1
    )
    assert value(queued, "patchling_deliveries_total", event="issue_comment", outcome="duplicate") == (
        value(before, "patchling_deliveries_total", event="issue_comment", outcome="duplicate") + 1
    )
    assert value(queued, "patchling_queue_depth") == 1

    assert app.run_jobs() == 1
    after = samples(app.app)
    assert value(after, "patchling_queue_depth") == 0
    assert value(after, "patchling_jobs_total", outcome="done") == (
        value(before, "patchling_jobs_total", outcome="done") + 1
    )
    for stage in ("clone", "context", "plan", "generated", "applied", "tests_before", "tests_after", "job"):
        name = "patchling_stage_duration_seconds_count"
        assert value(after, name, stage=stage) >= value(before, name, stage=stage) + 1, stage

    # The tier counters move by what the attempt records hold for this job.
    (attempt,) = RecordStore(app.settings.data_dir / "records.sqlite3").attempts()
    tier, outcome = attempt["tier"], attempt["outcome"]
    assert outcome == "verified"
    moved = {
        ("patchling_tier_attempts_total", (("outcome", outcome), ("tier", tier))): 1,
        ("patchling_tier_successes_total", (("tier", tier),)): 1,
        ("patchling_tier_tokens_total", (("direction", "in"), ("tier", tier))): attempt["tokens_in"],
        ("patchling_tier_tokens_total", (("direction", "out"), ("tier", tier))): attempt["tokens_out"],
    }
    for key, delta in moved.items():
        assert after.get(key, 0.0) == before.get(key, 0.0) + delta, key
    assert attempt["tokens_in"] > 0


def test_bad_signatures_and_unknown_events_are_counted_apart(app: Harness) -> None:
    before = samples(app.app)
    assert app.deliver("issue_comment", {}, signature="sha256=" + "0" * 64).status_code == 401
    assert app.deliver("made_up_event", {"x": 1}).status_code == 204
    after = samples(app.app)
    for event, outcome in (("issue_comment", "bad_signature"), ("other", "ignored")):
        name = "patchling_deliveries_total"
        assert value(after, name, event=event, outcome=outcome) == (
            value(before, name, event=event, outcome=outcome) + 1
        )
    assert not any(dict(labels).get("event") == "made_up_event" for _, labels in after)


# -- structured logs ------------------------------------------------------------------


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """The root logger as `serve` sets it up, into a buffer; pytest's handlers come back after."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    buffer = io.StringIO()
    logs.configure("json", secrets=[WEBHOOK_SECRET, private_key_pem()], stream=buffer)
    try:
        yield buffer
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)


def test_a_job_logs_one_json_line_per_stage_with_its_ids_and_no_secret(
    app: Harness, json_log: io.StringIO
) -> None:
    data = issue_comment(app.repo, "/edit add memory clear", number=7)
    assert app.deliver("issue_comment", data, delivery="d-logs-1").status_code == 202
    assert app.run_jobs() == 1

    text = json_log.getvalue()
    lines = [json.loads(line) for line in text.splitlines()]  # every line is one JSON object
    stages = [line for line in lines if line.get("event") == "stage"]
    names = [line["stage"] for line in stages]
    assert names[0] == "started" and names[-1] == "finished"
    assert {"clone", "context", "plan", "generated", "applied", "tests_after"} <= set(names)
    job_ids = {line["job_id"] for line in stages}
    assert len(job_ids) == 1 and job_ids != {None}
    for line in stages:
        assert line["delivery_id"] == "d-logs-1" and line["repo"] == "acme/calculator"
        assert line["level"] == "info" and line["logger"] == "bot.stages" and "timestamp" in line
    assert stages[-1]["outcome"] == "done"
    # Lines from other loggers during the job carry the ids too.
    during = [line for line in lines if line.get("job_id") and line.get("event") != "stage"]
    assert during and all(line["delivery_id"] == "d-logs-1" for line in during)

    assert app.fake.tokens  # a token was minted, used and revoked while logging
    for secret in [*app.fake.tokens, WEBHOOK_SECRET, *private_key_pem().splitlines()[1:3]]:
        assert secret not in text


def test_secrets_are_masked_whoever_logs_them(json_log: io.StringIO) -> None:
    token = "ghs_" + "a1B2" * 9
    logs.hide("minted-token-value-1234")
    log = logging.getLogger("some.library")
    log.warning("secret %s, token %s, minted %s", WEBHOOK_SECRET, token, "minted-token-value-1234")
    log.info("GET /setup/callback?code=abc123def&state=xyz789 HTTP/1.1")
    logs.get_logger("bot.test").info("fields", authorization="Bearer zzz", nested={"api_key": "k-123"})
    try:
        raise RuntimeError(f"failed with {WEBHOOK_SECRET}")
    except RuntimeError:
        log.exception("it failed")

    text = json_log.getvalue()
    lines = [json.loads(line) for line in text.splitlines()]
    for secret in (WEBHOOK_SECRET, token, "minted-token-value-1234", "abc123def", "xyz789", "zzz", "k-123"):
        assert secret not in text, secret
    assert lines[0]["event"] == f"secret {MASK}, token {MASK}, minted {MASK}"
    assert lines[1]["event"] == f"GET /setup/callback?code={MASK}&state={MASK} HTTP/1.1"
    assert lines[2]["authorization"] == MASK and lines[2]["nested"] == {"api_key": MASK}
    assert "RuntimeError" in lines[3]["exception"]


# -- several processes ------------------------------------------------------------------

COUNT_ONE_JOB = (
    "from bot import metrics; metrics.job_finished('done'); metrics.attempt('tiny', 'verified', 10, 2)"
)
SCRAPE = """
from bot import metrics
class Ledger:
    def count(self, status=None):
        return 0
print(metrics.exposition(metrics.registry(Ledger())).decode())
"""


def test_multiprocess_mode_adds_up_every_process(tmp_path: Path) -> None:
    """With PROMETHEUS_MULTIPROC_DIR, what two processes counted is served by a third."""
    directory = tmp_path / "data" / "metrics"  # created when missing
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    for _ in range(2):
        subprocess.run([sys.executable, "-c", COUNT_ONE_JOB], env=env, check=True)
    assert directory.is_dir() and oct(directory.stat().st_mode & 0o777) == "0o700"
    scraped = subprocess.run(
        [sys.executable, "-c", SCRAPE], env=env, check=True, capture_output=True, text=True
    )
    found = parse(scraped.stdout)
    assert value(found, "patchling_jobs_total", outcome="done") == 2
    assert value(found, "patchling_tier_tokens_total", tier="tiny", direction="in") == 20
    assert value(found, "patchling_stage_duration_seconds_count", stage="job") == 2
    assert value(found, "patchling_queue_depth") == 0


def test_uvicorns_coloured_copy_of_a_message_is_dropped(json_log: io.StringIO) -> None:
    coloured = "Started server process [\x1b[36m%d\x1b[0m]"
    # A logger of our own: uvicorn run in process elsewhere may have configured its own loggers.
    uvicorn_log = logging.getLogger("tests.like_uvicorn")
    uvicorn_log.info("Started server process [%d]", 7, extra={"color_message": coloured})
    line = json.loads(json_log.getvalue().splitlines()[-1])
    assert line["event"] == "Started server process [7]"
    assert "color_message" not in line
