"""GET /dashboard: the aggregation on seeded records, access control, and the
page in a real headless Chromium (the system's, driven by Playwright)."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from bot.config import Settings
from bot.dashboard import COOKIE, daily, job_views, session_value
from bot.evaluation.scores import EvalRun, TaskResult, TierInfo
from bot.features import kind_from_words
from bot.ledger import JobRequest, Ledger
from bot.records import RecordStore
from bot.routing import coverage
from bot.web import create_app
from tests.conftest import CALCULATOR
from tests.fakegithub import WEBHOOK_SECRET, issue_comment, job_request, make_harness, script_memory_clear
from tests.modelserver import ScriptedModel
from tests.test_app_e2e import NEW_SOURCE

TOKEN = "dashboard-token-for-tests"
DAY = 86400.0
# Noon UTC, 2025-03-10: each seeded day well away from midnight.
T0 = datetime(2025, 3, 10, 12, tzinfo=UTC).timestamp()
TIERS = ["qwen-1.5b", "qwen-7b", "gpt-4o-mini"]


def attempt(
    records: RecordStore, job: str | None, tier: str, outcome: str, at: float, tokens: int = 100, **kw: Any
) -> None:
    records.add(
        job_id=job,
        repo="acme/calculator",
        instruction="add memory clear",
        tier=tier,
        model=tier,
        edit_format="whole",
        tokens_in=tokens,
        tokens_out=tokens // 10,
        latency_s=1.0,
        outcome=outcome,
        created_at=at,
        **kw,
    )


# -- aggregation ----------------------------------------------------------------------


def test_share_solved_per_tier_per_day_and_tokens(tmp_path: Path) -> None:
    records = RecordStore(tmp_path / "records.sqlite3")
    # Day 1: four jobs, three that a model answered.
    attempt(records, "a", "qwen-1.5b", "apply_failed", T0, 1000)
    attempt(records, "a", "qwen-7b", "verified", T0 + 60, 2000)  # solved by the 7b
    attempt(records, "b", "qwen-1.5b", "verified", T0 + 120, 1000)  # solved by the 1.5b
    attempt(records, "c", "qwen-1.5b", "timeout", T0 + 180, 0)  # no model answered: not a job here
    attempt(records, "d", "qwen-1.5b", "syntax_error", T0 + 240, 1000)
    attempt(records, "d", "gpt-4o-mini", "unverified", T0 + 300, 3000)  # a change, not solved
    # Day 2: nothing. Day 3: one job, solved by the smallest tier; a dry run and a CLI run.
    attempt(records, "e", "qwen-1.5b", "verified", T0 + 2 * DAY, 500)
    attempt(records, "f", "qwen-1.5b", "verified", T0 + 2 * DAY, 500, dry_run=True)
    attempt(records, None, "claude", "verified", T0 + 2 * DAY, 5000)

    result = daily(records.attempts(since=T0 - DAY), TIERS)

    assert result.days == ["2025-03-10", "2025-03-11", "2025-03-12"]
    assert result.tiers == ["qwen-1.5b", "qwen-7b", "gpt-4o-mini", "claude"]
    assert result.jobs == [3, 0, 1]
    assert result.solved_share == {
        "qwen-1.5b": [1 / 3, 0.0, 1.0],
        "qwen-7b": [1 / 3, 0.0, 0.0],
        "gpt-4o-mini": [0.0, 0.0, 0.0],
        "claude": [0.0, 0.0, 0.0],
    }
    # Every attempt's tokens, in and out, dry runs and failures included.
    assert result.tokens == {
        "qwen-1.5b": [1100 + 1100 + 0 + 1100, 0, 550 + 550],
        "qwen-7b": [2200, 0, 0],
        "gpt-4o-mini": [3300, 0, 0],
        "claude": [0, 0, 5500],
    }


def test_a_job_counts_on_the_day_it_started(tmp_path: Path) -> None:
    records = RecordStore(tmp_path / "records.sqlite3")
    midnight = datetime(2025, 3, 11, tzinfo=UTC).timestamp()
    attempt(records, "late", "qwen-1.5b", "apply_failed", midnight - 30)
    attempt(records, "late", "qwen-7b", "verified", midnight + 30)

    result = daily(records.attempts(), TIERS)

    assert result.days == ["2025-03-10", "2025-03-11"]
    assert result.jobs == [1, 0]
    assert result.solved_share["qwen-7b"] == [1.0, 0.0]
    assert result.tokens["qwen-7b"] == [0, 110]


def test_no_attempts_no_days() -> None:
    result = daily([], TIERS)
    assert (result.days, result.tiers, result.jobs) == ([], [], [])


def test_records_since_leaves_older_attempts_out(tmp_path: Path) -> None:
    records = RecordStore(tmp_path / "records.sqlite3")
    attempt(records, "old", "qwen-1.5b", "verified", T0 - 40 * DAY)
    attempt(records, "new", "qwen-1.5b", "verified", T0)
    assert [a["job_id"] for a in records.attempts(since=T0 - DAY)] == ["new"]
    assert [a["job_id"] for a in records.attempts("old", since=T0 - DAY)] == []


def seed_job(
    ledger: Ledger, job: JobRequest, status: str, created: float, ended: float, **progress: Any
) -> None:
    """A job as the queue would leave it: claimed, worked on, ended; then dated."""
    ledger.claim_many([job])
    if progress:
        ledger.note(job.job_id, **progress)
    ledger.set_status(job.job_id, status)
    with ledger._db() as db:  # the ledger dates rows by the clock: seeded jobs need their own dates
        db.execute(
            "UPDATE jobs SET created_at = ?, updated_at = ? WHERE job_id = ?", (created, ended, job.job_id)
        )


def request(n: int, **overrides: Any) -> JobRequest:
    values: dict[str, Any] = {
        "job_id": f"job{n}",
        "delivery_id": f"delivery{n}",
        "comment_id": n,
        "clone_url": "https://github.com/acme/calculator.git",
        "instruction": "add memory clear",
        "comment_url": f"https://github.com/acme/calculator/issues/1#issuecomment-{n}",
    }
    return job_request(**{**values, **overrides})


def test_job_rows_show_tier_pull_request_duration_and_tests(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "jobs.sqlite3")
    records = RecordStore(tmp_path / "records.sqlite3")
    seed_job(
        ledger,
        request(1),
        "done",
        T0,
        T0 + 95,
        pull=7,
        tests_before={"ran": True, "passed": 4, "failed": 1, "errors": 0},
        tests_after={"ran": True, "passed": 5, "failed": 0, "errors": 0},
    )
    enterprise = "https://git.example.com/acme/calculator.git"
    seed_job(ledger, request(2, target="review", number=12, clone_url=enterprise), "failed", T0 + 10, T0 + 40)
    seed_job(ledger, request(3, requester_login="octo"), "running", T0 + 20, T0 + 30)
    attempt(records, "job1", "qwen-1.5b", "apply_failed", T0)
    attempt(records, "job1", "qwen-7b", "verified", T0 + 50)
    attempt(records, "job2", "qwen-1.5b", "syntax_error", T0 + 20)
    attempt(records, "job2", "qwen-7b", "apply_failed", T0 + 30)

    views = {v.job_id: v for v in job_views(ledger.recent(), records.attempts())}

    assert [v.job_id for v in job_views(ledger.recent(), [])] == ["job3", "job2", "job1"]  # newest first
    one = views["job1"]
    assert (one.tier, one.solved, one.status) == ("qwen-7b", True, "done")
    assert one.pr_url == "https://github.com/acme/calculator/pull/7"
    assert one.duration_s == 95
    assert (one.tests_before, one.tests_after) == ("4 passed, 1 failed", "5 passed, 0 failed")
    # A review comment's PR is the one it was made on, on the repository's own host.
    two = views["job2"]
    assert (two.tier, two.solved) == ("qwen-7b", False)
    assert two.pr_url == "https://git.example.com/acme/calculator/pull/12"
    three = views["job3"]
    assert (three.requester, three.duration_s, three.pr_url, three.tier) == ("octo", None, None, None)


def test_a_real_job_shows_its_tier_tests_and_pull_request(
    tmp_path: Path, model_server: ScriptedModel
) -> None:
    """What a job run leaves in the ledger and the records is what the table shows."""
    script_memory_clear(model_server, NEW_SOURCE)
    app = make_harness(tmp_path, CALCULATOR, model_server.url)
    data = issue_comment(app.repo, "/edit add memory clear", number=7)
    assert app.deliver("issue_comment", data).status_code == 202
    assert app.run_jobs() == 1

    records = RecordStore(app.settings.data_dir / "records.sqlite3")
    (view,) = job_views(app.queue.ledger.recent(), records.attempts())
    (pull,) = app.fake.created_pulls
    number = next(n for n, p in app.fake.pulls.items() if p.head_ref == pull["head"])
    assert (view.status, view.tier, view.solved, view.command) == ("done", "tiny", True, "edit")
    assert view.pr_url == f"{app.repo.clone_url.removesuffix('.git')}/pull/{number}"
    assert view.tests_before and view.tests_before == view.tests_after  # `true`: ran, no test counted
    assert view.duration_s is not None and view.requester == data["comment"]["user"]["login"]

    # A second request on the issue pushes to the same branch: its row links the PR it commented on.
    script_memory_clear(model_server, NEW_SOURCE.replace("memory_clear", "memory_reset"))
    again = issue_comment(app.repo, "/edit rename it memory_reset", number=7)
    assert app.deliver("issue_comment", again).status_code == 202
    assert app.run_jobs() == 1
    second, first = job_views(app.queue.ledger.recent(), records.attempts())
    assert first == view and len(app.fake.created_pulls) == 1
    assert (second.status, second.pr_url) == ("done", view.pr_url)


# -- access ---------------------------------------------------------------------------


class LedgerOnly:
    """What create_app needs of a queue, for pages that read the ledger only."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def submit_many(self, jobs: list[JobRequest]) -> list[bool]:
        raise AssertionError("the dashboard submits nothing")


def make_app(tmp_path: Path, token: str | None = TOKEN) -> Any:
    settings = Settings(
        _env_file=None, data_dir=tmp_path, github_webhook_secret=WEBHOOK_SECRET, dashboard_token=token
    )
    return create_app(settings, queue=LedgerOnly(Ledger(tmp_path / "jobs.sqlite3")))


def get(app: Any, path: str, method: str = "GET", **kw: Any) -> httpx.Response:
    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://patchling.test") as client:
            return await client.request(method, path, **kw)

    return asyncio.run(call())


@pytest.mark.parametrize("token", [None, ""])
def test_off_without_a_token(tmp_path: Path, token: str | None) -> None:
    app = make_app(tmp_path, token)
    assert get(app, "/dashboard", headers={"Authorization": "Bearer "}).status_code == 404
    assert get(app, "/dashboard/static/chart.umd.min.js").status_code == 404


def test_the_token_opens_the_page(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    refused = get(app, "/dashboard")
    assert refused.status_code == 401
    assert 'name="token"' in refused.text and "Recent jobs" not in refused.text
    assert get(app, "/dashboard", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert (
        get(app, "/dashboard", headers={"Cookie": f"{COOKIE}={TOKEN}"}).status_code == 401
    )  # the cookie is not the token

    page = get(app, "/dashboard", headers={"Authorization": f"Bearer {TOKEN}"})
    assert page.status_code == 200
    assert "Recent jobs" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"


def test_sign_in_sets_a_cookie_derived_from_the_token(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    wrong = get(app, "/dashboard/login", "POST", data={"token": "guess"})
    assert wrong.status_code == 401 and "not the dashboard token" in wrong.text
    assert COOKIE not in wrong.cookies

    signed_in = get(app, "/dashboard/login", "POST", data={"token": TOKEN})
    assert signed_in.status_code == 303 and signed_in.headers["location"] == "/dashboard"
    cookie = signed_in.headers["set-cookie"]
    assert f"{COOKIE}={session_value(TOKEN)}" in cookie and TOKEN not in cookie
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/dashboard" in cookie
    assert get(app, "/dashboard", headers={"Cookie": f"{COOKIE}={session_value(TOKEN)}"}).status_code == 200
    # Another token, another session: changing the token signs everyone out.
    assert (
        get(
            make_app(tmp_path, "new-token"),
            "/dashboard",
            headers={"Cookie": f"{COOKIE}={session_value(TOKEN)}"},
        ).status_code
        == 401
    )


def test_the_chart_library_is_served_with_its_licence(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    library = get(app, "/dashboard/static/chart.umd.min.js")
    assert library.status_code == 200 and "Chart.js" in library.text[:200]
    assert "MIT License" in get(app, "/dashboard/static/chart.js.LICENSE.md").text
    assert get(app, "/dashboard/static/../dashboard.py").status_code == 404


# -- eval runs and routing coverage ----------------------------------------------------


def eval_run(suite: str, at: float, outcomes: dict[str, list[str]], not_run: dict[str, str]) -> EvalRun:
    """A stored-shape eval run: per tier, each task's outcome ("solved2": on the retry)."""
    tasks = [f"task-{n}" for n in range(len(next(iter(outcomes.values()))))]
    results = [
        TaskResult(
            task=task,
            tier=tier,
            model=f"model-{tier}",
            outcome=outcome.removesuffix("2"),  # type: ignore[arg-type]
            tries=1 if outcome == "solved" else 2,
            solved_on={"solved": 1, "solved2": 2}.get(outcome),
            tokens_in=1000 * (1 + TIERS.index(tier)),
            tokens_out=100,
            latency_s=2.0,
        )
        for tier, per_task in outcomes.items()
        for task, outcome in zip(tasks, per_task, strict=True)
    ]
    tiers = [TierInfo(t, f"model-{t}") for t in outcomes] + [
        TierInfo(t, f"model-{t}", r) for t, r in not_run.items()
    ]
    return EvalRun(f"{suite}-{at:.0f}", suite, tasks, tiers, results, at)


def seed_evals(records: RecordStore, now: float) -> EvalRun:
    """Two eval runs; returns the newer."""
    older = eval_run("exercism", now - 3 * DAY, {"qwen-1.5b": ["solved", "failing"]}, {})
    newer = eval_run(
        "examples",
        now - DAY,
        {
            "qwen-1.5b": ["solved", "failing", "refused", "solved2"],
            "qwen-7b": ["solved", "solved", "failing", "solved"],
        },
        {"gpt-4o-mini": "OPENAI_API_KEY is not set"},
    )
    for run in (older, newer):
        records.add_eval_results(run.to_rows())
    return newer


class Tables(HTMLParser):
    """Every table's rows as lists of cell texts, by the table's id (or data-run)."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._rows: list[list[str]] | None = None
        self._cell: list[str] | None = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        if tag == "table":
            self._rows = self.tables.setdefault(str(named.get("id") or named.get("data-run")), [])
        elif tag == "tr" and self._rows is not None:
            self._rows.append([])
        elif tag in ("td", "th") and self._rows is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._rows is not None and self._cell is not None:
            self._rows[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "table":
            self._rows = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def test_eval_runs_and_routing_coverage_render(tmp_path: Path) -> None:
    records = RecordStore(tmp_path / "records.sqlite3")
    app = make_app(tmp_path)
    empty = get(app, "/dashboard", headers={"Authorization": f"Bearer {TOKEN}"}).text
    assert "No eval run stored yet" in empty and "No attempt with a kind and language" in empty

    newer = seed_evals(records, T0)
    for n in range(5):  # qwen-1.5b proven on 'add' in python; qwen-7b failing on it
        features = {"kind": "add", "language": "python", "words": 3, "files": 1, "symbols": 1}
        attempt(records, f"job{n}", "qwen-1.5b", "verified", T0 + n, request_id=f"r{n}", features=features)
    for n in range(3):
        features = {"kind": "add", "language": "python", "words": 3, "files": 1, "symbols": 1}
        attempt(records, f"j7{n}", "qwen-7b", "apply_failed", T0 + n, request_id=f"s{n}", features=features)

    page = get(app, "/dashboard", headers={"Authorization": f"Bearer {TOKEN}"}).text
    tables = Tables(page).tables

    # The newest run first, then the older; per tier its counts, costs and the ladder.
    assert [k for k in tables if k not in ("coverage", "jobs")] == [
        newer.run_id,
        "exercism-" + f"{T0 - 3 * DAY:.0f}",
    ]
    head, small, mid, mini, ladder = tables[newer.run_id]
    assert head[:4] == ["Tier", "Model", "Solved", "1st try"]
    assert small == [
        "qwen-1.5b",
        "model-qwen-1.5b",
        "2/4 (50%)",
        "1",
        "1",
        "1",
        "0",
        "0",
        "1,000",
        "100",
        "2.0s",
    ]
    assert mid[:6] == ["qwen-7b", "model-qwen-7b", "3/4 (75%)", "3", "1", "0"]
    assert mini == ["gpt-4o-mini", "model-gpt-4o-mini", "not run: OPENAI_API_KEY is not set"]
    # The ladder: 1.5b solves tasks 0 and 3, the 7b task 1; task 2 is solved by neither.
    assert ladder[:3] == ["ladder", "qwen-1.5b → qwen-7b", "3/4 (75%)"]
    assert "Suite <strong>examples</strong>, 4 tasks, 2025-03-09 12:00 UTC" in page

    # The coverage table holds the rows `patchling stats --coverage` prints, in their order.
    settings = Settings(_env_file=None)
    rows = coverage(settings.tiers, settings.routing, records)
    shown = tables["coverage"][1:]
    assert [(r[0], r[1], r[2], r[6]) for r in shown] == [
        (r["kind"], r["language"], r["tier"], r["standing"]) for r in rows
    ]
    assert shown[0] == [
        "add",
        "python",
        "qwen-1.5b",
        "5/5",
        "100%",
        "'add' in python",
        "proven",
        "◀ starts here",
    ]
    assert shown[1][2:] == ["qwen-7b", "0/3", "0%", "all", "failing", ""]  # too few on 'add' alone
    assert "proven: at least 60% of at least 5" in page


# -- in a browser ---------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
REPOS = ["acme/calculator", "acme/ledger", "octo/site"]
PEOPLE = ["mona", "hubot", "octocat"]


def seed_history(tmp_path: Path, now: float) -> tuple[Ledger, int]:
    """Two weeks of jobs in which the small tiers solve more as days pass."""
    ledger = Ledger(tmp_path / "jobs.sqlite3")
    records = RecordStore(tmp_path / "records.sqlite3")
    rng = random.Random(8)
    n = 0
    for days_ago in range(13, -1, -1):
        for _ in range(3 + days_ago % 3):
            n += 1
            start = now - days_ago * DAY - rng.uniform(600, 20_000)
            owner, name = REPOS[n % len(REPOS)].split("/")
            job = request(
                n,
                owner=owner,
                repo=name,
                requester_login=PEOPLE[n % len(PEOPLE)],
                clone_url=f"https://github.com/{owner}/{name}.git",
                instruction=rng.choice(
                    ["add memory clear", "fix the rounding in divide", "rename total to sum"]
                ),
            )
            # Later days: the 1.5b model solves more on its own.
            skill = 0.25 + 0.05 * (13 - days_ago)
            at, solved_by = start, None
            for tier in TIERS:
                at += rng.uniform(20, 90)
                tokens = {"qwen-1.5b": 6_000, "qwen-7b": 9_000, "gpt-4o-mini": 14_000}[tier]
                win = rng.random() < (skill if tier == "qwen-1.5b" else 0.6)
                outcome = "verified" if win else "apply_failed"
                features = {"kind": kind_from_words(job.instruction), "language": "python", "words": 4}
                attempt(
                    records, job.job_id, tier, outcome, at, tokens, request_id=job.job_id, features=features
                )
                if win:
                    solved_by = tier
                    break
            before = {"ran": True, "passed": 11, "failed": 1, "errors": 0}
            after = {"ran": True, "passed": 12, "failed": 0, "errors": 0}
            progress: dict[str, Any] = {"tests_before": before}
            if solved_by:
                progress |= {"tests_after": after, "pull": 100 + n}
            seed_job(ledger, job, "done" if solved_by else "failed", start, at + 30, **progress)
    seed_evals(records, now)
    return ledger, n


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """The App on a loopback port, with two weeks of seeded jobs."""
    _, count = seed_history(tmp_path, time.time())
    app = make_app(tmp_path)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started and thread.is_alive():
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}", count
    server.should_exit = True
    thread.join(10)


@pytest.mark.skipif(
    CHROMIUM is None, reason="needs Chromium (Debian package chromium; `make system` installs it)"
)
def test_the_page_renders_and_the_charts_draw_in_chromium(served: tuple[str, int], tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    base, count = served
    screenshot = Path(os.environ.get("DASHBOARD_SCREENSHOT") or tmp_path / "dashboard.png")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            # Tall enough for the charts, the eval run, the routing coverage and the first jobs.
            page = browser.new_page(viewport={"width": 1280, "height": 1700})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{base}/dashboard")
            page.fill("input[name=token]", TOKEN)  # signing in through the form
            page.click("button[type=submit]")
            page.wait_for_selector("body[data-charts-drawn='2']", timeout=5000)

            rows = page.locator("#jobs tbody tr")
            assert rows.count() == min(count, 50)
            newest = rows.first
            job = f"job{count}"
            assert newest.get_attribute("data-job") == job
            cells = newest.locator("td").all_inner_texts()
            assert cells[1] == REPOS[count % len(REPOS)] and cells[3] == PEOPLE[count % len(PEOPLE)]
            assert cells[8] == "11 passed, 1 failed"
            # A solved job links the pull request it opened (seeded as #100 + n).
            solved = page.locator("#jobs tbody tr", has=page.locator("a[href*='/pull/']")).first
            n = int(str(solved.get_attribute("data-job")).removeprefix("job"))
            repo = solved.locator("td").nth(1).inner_text()
            link = solved.locator("a[href*='/pull/']")
            assert link.get_attribute("href") == f"https://github.com/{repo}/pull/{100 + n}"
            assert link.inner_text() == f"#{100 + n}"
            # Both canvases hold drawn pixels, not a blank bitmap.
            for canvas in ("solved-chart", "tokens-chart"):
                painted = page.evaluate(
                    """id => {
                        const c = document.getElementById(id);
                        const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                        let n = 0;
                        for (let i = 3; i < px.length; i += 4) if (px[i]) n++;
                        return n;
                    }""",
                    canvas,
                )
                assert painted > 1000, canvas
            datasets = page.evaluate("Chart.getChart('solved-chart').data.datasets.map(d => d.label)")
            assert datasets == TIERS
            # The eval runs, newest first, and the coverage the router reads, server-rendered.
            assert page.locator("table.eval").count() == 2
            newest = page.locator("table.eval").first
            assert "Suite examples, 4 tasks" in newest.locator("caption").inner_text()
            ladder = newest.locator("tfoot tr td").all_inner_texts()
            assert ladder[:3] == ["ladder", "qwen-1.5b → qwen-7b", "3/4 (75%)"]
            starts = page.locator("#coverage tbody tr", has_text="starts here")
            assert starts.count() == 3  # one tier per kind: add, change, rename
            assert errors == []
            page.screenshot(path=str(screenshot))  # the charts, eval, coverage and the first rows
        finally:
            browser.close()
    assert screenshot.stat().st_size > 10_000
