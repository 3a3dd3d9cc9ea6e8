"""What `/metrics` shows, and the one log line per stage of a job.

prometheus-client keeps the counters. With several processes on one host
(web and workers), set PROMETHEUS_MULTIPROC_DIR to an empty directory under
the data directory before they start: each process then writes its samples
there and `/metrics` sums them (prometheus-client's multi-process mode). The
queue depth is read from the shared ledger at each scrape, so it is right in
either mode.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Protocol

# prometheus-client picks its storage when imported: the directory must exist by then.
MULTIPROC_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if MULTIPROC_DIR:
    Path(MULTIPROC_DIR).mkdir(mode=0o700, parents=True, exist_ok=True)

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Histogram  # noqa: E402
from prometheus_client import multiprocess as _multiprocess  # noqa: E402
from prometheus_client.core import GaugeMetricFamily, Metric  # noqa: E402
from prometheus_client.exposition import generate_latest  # noqa: E402
from prometheus_client.registry import Collector  # noqa: E402

from bot import logs  # noqa: E402

__all__ = ["CONTENT_TYPE_LATEST", "exposition"]

log = logs.get_logger("bot.stages")

# Events the webhook routes; any other name counts as "other", so a sender
# cannot grow the label set.
KNOWN_EVENTS = frozenset(
    {"ping", "installation", "installation_repositories", "issue_comment", "pull_request_review_comment"}
)
# A stage lasts from a fraction of a second (a plan) to the test timeout.
STAGE_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800)

DELIVERIES = Counter(
    "patchling_deliveries", "Webhook deliveries, by event and outcome.", ["event", "outcome"]
)
JOBS = Counter("patchling_jobs", "Jobs finished, by outcome.", ["outcome"])
STAGE_SECONDS = Histogram(
    "patchling_stage_duration_seconds", "How long each stage of a job took.", ["stage"], buckets=STAGE_BUCKETS
)
TIER_ATTEMPTS = Counter("patchling_tier_attempts", "Model tier attempts, by outcome.", ["tier", "outcome"])
TIER_SUCCESSES = Counter("patchling_tier_successes", "Attempts whose change passed the tests.", ["tier"])
TIER_TOKENS = Counter(
    "patchling_tier_tokens", "Tokens sent to and received from each tier.", ["tier", "direction"]
)

# -- intake ------------------------------------------------------------------------------

# The webhook's answers, named by what they mean (a duplicate is marked apart: also a 200).
OUTCOME_BY_STATUS = {
    200: "answered",
    202: "queued",
    204: "ignored",
    400: "refused",
    401: "bad_signature",
    413: "too_large",
    500: "error",
}


def delivery(event: str | None, status: int, *, duplicate: bool = False) -> None:
    label = event if event in KNOWN_EVENTS else "other"
    outcome = "duplicate" if duplicate else OUTCOME_BY_STATUS.get(status, str(status))
    _delivery_counter(label, outcome).inc()


@functools.cache
def _delivery_counter(event: str, outcome: str) -> Any:
    """The labelled child, found once: `labels()` takes a lock and builds a key
    on every call, once per delivery. The label sets are bounded (known events,
    statuses the webhook answers), so the cache is too."""
    return DELIVERIES.labels(event, outcome)


# -- jobs --------------------------------------------------------------------------------


class _Clock:
    """When the job started, and when its last stage ended."""

    def __init__(self) -> None:
        self.started = self.last = time.monotonic()

    def lap(self) -> float:
        now = time.monotonic()
        elapsed, self.last = now - self.last, now
        return elapsed


_clock: ContextVar[_Clock | None] = ContextVar("patchling_stage_clock", default=None)


def _elapsed() -> float:
    clock = _clock.get()
    return clock.lap() if clock is not None else 0.0


def job(run: Callable[[Any, dict[str, Any]], None]) -> Callable[[Any, dict[str, Any]], None]:
    """For the queue's task (a method taking the job's payload): its log lines
    name the job, and its stages are timed from its start."""

    @functools.wraps(run)
    def observed(self: Any, payload: dict[str, Any]) -> None:
        owner, name = payload.get("owner"), payload.get("repo")
        repo = f"{owner}/{name}" if owner and name else None
        token = _clock.set(_Clock())
        try:
            with logs.job_context(payload.get("job_id"), payload.get("delivery_id"), repo):
                log.info("stage", stage="started", command=payload.get("command"))
                run(self, payload)
        finally:
            _clock.reset(token)

    return observed


def stage(name: str, data: dict[str, Any] | None = None) -> None:
    """A stage of the running job ended: one histogram sample, one log line.
    Test runs say how long they took (the tests before run alongside other
    stages); any other stage lasted since the one before."""
    data = data or {}
    seconds = data.get("duration_s")
    elapsed = _elapsed()
    duration = float(seconds) if isinstance(seconds, int | float) else elapsed
    STAGE_SECONDS.labels(name).observe(duration)
    log.info("stage", stage=name, duration_s=round(duration, 3), **_summary(data))


def _summary(data: dict[str, Any]) -> dict[str, Any]:
    """The few fields of a progress event worth a log line (never file contents)."""
    kept: dict[str, Any] = {
        k: data[k]
        for k in ("tier", "outcome", "files", "passed", "failed", "errors", "timed_out")
        if k in data
    }
    if isinstance(kept.get("files"), list):
        kept["files"] = len(kept["files"])
    return kept


def job_finished(outcome: str) -> None:
    clock = _clock.get()
    total = time.monotonic() - clock.started if clock is not None else 0.0
    JOBS.labels(outcome).inc()
    STAGE_SECONDS.labels("job").observe(total)
    log.info("stage", stage="finished", outcome=outcome, duration_s=round(total, 3))


# -- model tiers (fed by the attempt records) ------------------------------------------

SUCCESS = "verified"


def attempt(tier: str, outcome: str, tokens_in: int, tokens_out: int) -> None:
    TIER_ATTEMPTS.labels(tier, outcome).inc()
    if outcome == SUCCESS:
        TIER_SUCCESSES.labels(tier).inc()
    TIER_TOKENS.labels(tier, "in").inc(max(0, tokens_in))
    TIER_TOKENS.labels(tier, "out").inc(max(0, tokens_out))


# -- exposition ------------------------------------------------------------------------


class Counts(Protocol):
    def count(self, status: str | None = None) -> int: ...


class LedgerCollector(Collector):
    """Queue depth and running jobs, read from the ledger at each scrape."""

    def __init__(self, ledger: Counts) -> None:
        self.ledger = ledger

    def collect(self) -> Iterable[Metric]:
        # 'received': recorded, its enqueue not yet confirmed; still waiting all the same.
        waiting = self.ledger.count("queued") + self.ledger.count("received")
        yield GaugeMetricFamily("patchling_queue_depth", "Jobs waiting for a worker.", value=waiting)
        yield GaugeMetricFamily(
            "patchling_jobs_running", "Jobs a worker is on.", value=self.ledger.count("running")
        )


class _Forward(Collector):
    """This process's own registry, inside the one `/metrics` serves."""

    def __init__(self, source: CollectorRegistry) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        yield from self.source.collect()


def registry(ledger: Counts) -> CollectorRegistry:
    """What `/metrics` serves: every process's samples in multi-process mode,
    else this process's; and the ledger's gauges."""
    served = CollectorRegistry(auto_describe=True)
    if MULTIPROC_DIR:
        _multiprocess.MultiProcessCollector(served, path=MULTIPROC_DIR)
    else:
        served.register(_Forward(REGISTRY))
    served.register(LedgerCollector(ledger))
    return served


def exposition(served: CollectorRegistry) -> bytes:
    return generate_latest(served)
