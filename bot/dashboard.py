"""`GET /dashboard`: the latest jobs, and how much of the work each model tier
carries, day by day: the record of small models taking over; the latest
`patchling eval` runs, and the coverage the router reads (the rows `patchling
stats` prints, from bot.routing.coverage).

Server-rendered (Jinja2 templates in bot/templates); the charts are drawn in
the browser by Chart.js, served from bot/static like everything the page
loads (no CDN; the Content-Security-Policy allows only this server). The page
is off (404) unless `dashboard_token` is set; a viewer sends the token as a
bearer token or signs in with it once, which sets a cookie derived from it.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cache
from typing import Any
from urllib.parse import parse_qs

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from bot.config import Settings
from bot.evaluation.scores import EvalRun, LadderScore, TierScore
from bot.ledger import JobLedger, JobRow, JobStatus
from bot.records import NO_ANSWER_OUTCOMES, RecordStore
from bot.routing import coverage, coverage_caption

PATH = "/dashboard"
COOKIE = "patchling_dashboard"
COOKIE_MAX_AGE_S = 7 * 24 * 3600
RECENT_JOBS = 50
CHART_DAYS = 30
EVAL_RUNS = 3  # the latest eval runs shown
# Attempts that produced the change a job delivered: the tier that did the work.
CHANGED = ("verified", "unexercised", "unverified")
# Still in the queue or at work: no duration yet.
UNFINISHED = (JobStatus.RECEIVED, JobStatus.QUEUED, JobStatus.RUNNING)
# A login form is a few dozen bytes; anything much larger is not one.
MAX_FORM = 4096
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self';"
        " form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


# -- what the page shows ------------------------------------------------------------


@dataclass(frozen=True)
class JobView:
    """One row of the jobs table."""

    job_id: str
    repo: str
    command: str
    instruction: str
    comment_url: str
    requester: str
    status: str
    tier: str | None  # the tier whose change was delivered, else the last one tried
    solved: bool
    created_at: float
    duration_s: float | None
    pr_url: str | None
    tests_before: str
    tests_after: str


def day_of(timestamp: float) -> str:
    """The UTC day of a Unix time, as YYYY-MM-DD."""
    return datetime.fromtimestamp(timestamp, UTC).date().isoformat()


def tests_text(run: dict[str, Any] | None) -> str:
    """A test run's counts, short; empty when the job never got that far."""
    if not run:
        return ""
    if not run.get("ran", True):
        return "not run"
    if run.get("could_not_run"):
        return "could not run"
    text = f"{run.get('passed', 0)} passed, {run.get('failed', 0)} failed"
    if run.get("errors"):
        text += f", {run['errors']} errors"
    return text + (" (timed out)" if run.get("timed_out") else "")


def pr_url(row: JobRow) -> str | None:
    """The pull request the job worked on or opened, on the repository's own host
    (GitHub Enterprise Server included): from the clone URL, not a fixed host."""
    job = row.request
    if job is None:
        return None
    number = job.number if job.target in ("pull", "review") else row.progress.get("pull")
    if not isinstance(number, int):
        return None
    return f"{job.clone_url.removesuffix('.git')}/pull/{number}"


def job_tier(attempts: Sequence[dict[str, Any]]) -> tuple[str | None, bool]:
    """(tier, solved): the tier whose attempt made the change, else the last tried."""
    for attempt in attempts:
        if attempt["outcome"] in CHANGED:
            return str(attempt["tier"]), True
    return (str(attempts[-1]["tier"]) if attempts else None), False


def job_views(rows: Iterable[JobRow], attempts: Iterable[dict[str, Any]]) -> list[JobView]:
    by_job: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for attempt in attempts:
        if attempt.get("job_id"):
            by_job[attempt["job_id"]].append(attempt)
    views = []
    for row in rows:
        job = row.request
        tier, solved = job_tier(by_job.get(row.job_id, []))
        views.append(
            JobView(
                job_id=row.job_id,
                repo=row.repo,
                command=job.command if job else "",
                instruction=job.instruction if job else "",
                comment_url=job.comment_url if job else "",
                requester=job.requester_login if job else "",
                status=row.status,
                tier=tier,
                solved=solved,
                created_at=row.created_at,
                duration_s=None if row.status in UNFINISHED else max(0.0, row.updated_at - row.created_at),
                pr_url=pr_url(row),
                tests_before=tests_text(row.progress.get("tests_before")),
                tests_after=tests_text(row.progress.get("tests_after")),
            )
        )
    return views


@dataclass
class Daily:
    """Per day (UTC) and tier: the share of that day's jobs each tier solved,
    and the tokens each tier used. Lists run along `days`."""

    days: list[str]
    tiers: list[str]
    jobs: list[int]  # jobs some model answered, by the day of their first attempt
    solved_share: dict[str, list[float]] = field(default_factory=dict)
    tokens: dict[str, list[int]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "days": self.days,
            "tiers": self.tiers,
            "jobs": self.jobs,
            "solved_share": self.solved_share,
            "tokens": self.tokens,
        }


def _day_range(first: str, last: str) -> list[str]:
    """Every day from first to last: a day without jobs is a gap, not skipped."""
    start, end = date.fromisoformat(first), date.fromisoformat(last)
    return [(start + timedelta(days=n)).isoformat() for n in range((end - start).days + 1)]


def daily(attempts: Sequence[dict[str, Any]], tier_order: Sequence[str] = ()) -> Daily:
    """Aggregate attempt records by day and tier.

    A job counts on the day of its first attempt, and only when some model
    answered it in a real run (an unreachable tier says nothing about what the
    models can do; dry runs deliver nothing). It is solved by the tier whose
    attempt ended `verified` (the tests confirmed the change), as in the
    records' success rate. Tokens count every attempt: spent is spent.
    Tiers come in `tier_order` (the configured order, smallest first), then
    any others the records name."""
    if not attempts:
        return Daily(days=[], tiers=[], jobs=[])
    days = _day_range(
        min(day_of(a["created_at"]) for a in attempts), max(day_of(a["created_at"]) for a in attempts)
    )
    seen = {str(a["tier"]) for a in attempts}
    tiers = [t for t in tier_order if t in seen] + sorted(seen - set(tier_order))
    index = {day: n for n, day in enumerate(days)}

    tokens = {tier: [0] * len(days) for tier in tiers}
    by_job: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for attempt in attempts:
        tokens[str(attempt["tier"])][index[day_of(attempt["created_at"])]] += int(attempt["tokens_in"]) + int(
            attempt["tokens_out"]
        )
        if attempt.get("job_id") and not attempt.get("dry_run"):
            by_job[attempt["job_id"]].append(attempt)

    jobs = [0] * len(days)
    solved = {tier: [0] * len(days) for tier in tiers}
    for job_attempts in by_job.values():
        if all(a["outcome"] in NO_ANSWER_OUTCOMES for a in job_attempts):
            continue
        day = index[day_of(min(a["created_at"] for a in job_attempts))]
        jobs[day] += 1
        winner = next((a for a in job_attempts if a["outcome"] == "verified"), None)
        if winner is not None:
            solved[str(winner["tier"])][day] += 1
    share = {
        tier: [n / total if total else 0.0 for n, total in zip(solved[tier], jobs, strict=True)]
        for tier in tiers
    }
    return Daily(days=days, tiers=tiers, jobs=jobs, solved_share=share, tokens=tokens)


@dataclass(frozen=True)
class EvalView:
    """One stored eval run, scored: a table per run."""

    run: EvalRun
    scores: list[TierScore]
    ladder: LadderScore


def eval_views(records: RecordStore, limit: int = EVAL_RUNS) -> list[EvalView]:
    """The latest `limit` eval runs, newest first, rebuilt from their rows."""
    views = []
    for run_id in records.eval_run_ids(limit):
        run = EvalRun.from_rows(records.eval_results(run_id))
        if run is not None:
            views.append(EvalView(run, run.scores(), run.ladder()))
    return views


def share(part: int, whole: int) -> str:
    """`part/whole` and its percentage, as the eval table shows a count."""
    return f"{part}/{whole} ({part / whole:.0%})" if whole else f"{part}/0"


# -- access ---------------------------------------------------------------------------


def session_value(token: str) -> str:
    """What the cookie holds: derived from the token, so the cookie is not the
    token itself, and changing the token signs everyone out."""
    return hmac.new(token.encode(), b"patchling dashboard session", hashlib.sha256).hexdigest()


def authorized(request: Request, token: str) -> bool:
    """A bearer token or the session cookie, each compared in constant time."""
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
        return True
    cookie = request.cookies.get(COOKIE, "")
    return hmac.compare_digest(cookie.encode(), session_value(token).encode())


# -- the routes -----------------------------------------------------------------------


@cache
def templates() -> Environment:
    return Environment(
        loader=PackageLoader("bot", "templates"),
        autoescape=select_autoescape(default=True),
        auto_reload=False,
    )


def _page(name: str, status: int = 200, **context: Any) -> HTMLResponse:
    html = templates().get_template(name).render(path=PATH, **context)
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m {secs:02d}s" if minutes < 60 else f"{minutes // 60}h {minutes % 60:02d}m"


def dashboard_routes(settings: Settings, ledger: JobLedger) -> list[BaseRoute]:
    """The dashboard's routes; none (so a 404) when no access token is set."""
    secret = settings.dashboard_token
    if secret is None or not secret.get_secret_value():
        return []
    token = secret.get_secret_value()
    records = RecordStore(settings.data_dir / "records.sqlite3")
    tier_order = [tier.name for tier in settings.tiers]

    async def dashboard(request: Request) -> Response:
        if not authorized(request, token):
            return _page("login.html", status=401)
        rows = ledger.recent(RECENT_JOBS)
        since = time.time() - CHART_DAYS * 86400
        recent = min((row.created_at for row in rows), default=since)
        attempts = records.attempts(since=min(since, recent))
        chart = daily([a for a in attempts if a["created_at"] >= since], tier_order)
        return _page(
            "dashboard.html",
            jobs=job_views(rows, attempts),
            chart=chart.to_json(),
            evals=eval_views(records),
            coverage=coverage(settings.tiers, settings.routing, records),
            coverage_caption=coverage_caption(settings.routing),
            when=_when,
            duration=_duration,
            share=share,
            chart_days=CHART_DAYS,
        )

    async def login(request: Request) -> Response:
        body = await request.body()
        given = parse_qs(body[:MAX_FORM].decode("utf-8", "replace")).get("token", [""])[0]
        if not hmac.compare_digest(given.encode(), token.encode()):
            return _page("login.html", status=401, failed=True)
        response = RedirectResponse(PATH, status_code=303)
        response.set_cookie(
            COOKIE,
            session_value(token),
            max_age=COOKIE_MAX_AGE_S,
            path=PATH,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    async def logout(request: Request) -> Response:
        response = RedirectResponse(PATH, status_code=303)
        response.delete_cookie(COOKIE, path=PATH)
        return response

    return [
        Route(PATH, dashboard, methods=["GET"]),
        Route(f"{PATH}/login", login, methods=["POST"]),
        Route(f"{PATH}/logout", logout, methods=["POST"]),
        # Only the page's own script, style and the chart library: nothing secret.
        Mount(f"{PATH}/static", StaticFiles(packages=[("bot", "static")]), name="dashboard-static"),
    ]
