"""The edit engine: tiers smallest first until one produces a change that
applies, parses, and leaves the tests no worse than before. With routing on,
the records decide where on the ladder a request starts (bot.routing).

    context -> plan -> generate (concurrently per file) -> apply in memory
    -> syntax -> write -> tests -> accept, or restore and escalate

The edit prompts carry the repository's guidance for contributors (AGENTS.md
and the like, bot.conventions), trimmed to a small share of each tier's budget.

This is the API the GitHub side uses (`run_edit`). It imports only the stages
below it; nothing about webhooks, jobs or workspaces lives here.
"""

from __future__ import annotations

import asyncio
import difflib
import logging
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from bot import features, models
from bot.apply import write_changes
from bot.config import ChangeCaps, Routing, Tier
from bot.context import Context, ContextMemo, select_context
from bot.conventions import fit_conventions, read_conventions
from bot.deps import ensure_test_env
from bot.edit import EditError, Plan, generate, make_plan, plan_context_budget
from bot.evidence import (
    GO,
    PYTHON,
    Evidence,
    FileLines,
    Proof,
    changed_lines,
    not_exercised,
    read_coverage,
    unexercised,
    unmeasured_languages,
)
from bot.files import is_protected
from bot.guards import binary_problems, cap_problems, shrink_problems
from bot.index import KeptIndexes, RepoIndex, build_index
from bot.progress import (
    ContextChosen,
    EnvironmentReady,
    Generated,
    Planned,
    Progress,
    ProgressFn,
    Refused,
    Routed,
    TestsRan,
    TestWritten,
    Verified,
)
from bot.pyenv import EnvError, PyEnv, default_envs_dir, envs_dir_in
from bot.query import Query, parse_query
from bot.ranking import Focus
from bot.records import RecordStore
from bot.redact import redact, secret_parts
from bot.rollback import rollback_on_error
from bot.routing import Router
from bot.sandbox import Network, Sandbox
from bot.testfirst import DraftTest, fails_before, passes_after
from bot.testfirst import draft as draft_test
from bot.tokens import truncate_to_tokens
from bot.verify import (
    Environment,
    TestRun,
    check_syntax,
    default_test_command,
    measure_of,
    pytest_args,
    run_tests,
    worse_than,
)

__all__ = ["Attempt", "EditRequest", "EditResult", "Focus", "TestRun", "run_edit", "unified_diff"]

log = logging.getLogger(__name__)

# "unexercised": the tests pass and none got worse, but some changed lines ran in no test.
Status = Literal["verified", "unexercised", "unverified", "failed"]
# How an attempt ended: an EditResult status, or why the tier failed.
Outcome = Literal[
    "verified",
    "unexercised",
    "unverified",
    "apply_failed",
    "syntax_error",
    "shrunk",
    # Refused before writing: binary content, or over a cap (bot.guards).
    "binary",
    "over_cap",
    "tests_worse",
    "model_error",
    "no_change",
    "too_large",
    # No model answered (models.NO_ANSWER_KINDS): not counted as attempts in stats.
    "unreachable",
    "connection_refused",
    "model_not_found",
    "auth_failed",
    "timeout",
    "server_error",
    # A model answered with something unparseable.
    "bad_reply",
]
# How much of a failure (test output included) the next tier is told.
FEEDBACK_TOKENS = 500


@dataclass
class Attempt:
    tier: str
    model: str
    edit_format: str
    tokens_in: int
    tokens_out: int
    latency_s: float
    outcome: Outcome
    detail: str

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["latency_s"] = round(self.latency_s, 3)
        return data


@dataclass
class EditResult:
    status: Status
    tier: str | None
    attempts: list[Attempt]
    diff: str
    files_changed: list[str]
    tests_before: TestRun | None
    tests_after: TestRun | None
    tokens_in: int
    tokens_out: int
    notes: str
    message: str
    last_output: str = ""
    context: dict[str, Any] = field(default_factory=dict)
    # The repository's test environment: what was installed, how long it took, whether reused.
    environment: dict[str, Any] | None = None
    route: str = ""  # where the router started the request (bot.routing), when it routed
    # What the verdict rests on (bot.evidence); None when no change was made.
    evidence: Proof | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "tier": self.tier,
            "message": self.message,
            "attempts": [a.to_json() for a in self.attempts],
            "diff": self.diff,
            "files_changed": self.files_changed,
            "tests": {
                "before": self.tests_before.to_json() if self.tests_before else None,
                "after": self.tests_after.to_json() if self.tests_after else None,
            },
            "tokens": {"in": self.tokens_in, "out": self.tokens_out},
            "notes": self.notes,
            "last_output": self.last_output,
            "context": self.context,
            "environment": self.environment,
            "route": self.route,
            "evidence": self.evidence.to_json() if self.evidence is not None else None,
        }


# -- diff ---------------------------------------------------------


def unified_diff(originals: Mapping[str, str | None], changes: Mapping[str, str]) -> str:
    """A git-style unified diff (a/ b/ prefixes, /dev/null for new files)."""
    chunks: list[str] = []
    for path in sorted(changes):
        before = originals.get(path)
        old_lines = (before or "").splitlines(keepends=True)
        new_lines = changes[path].splitlines(keepends=True)
        lines = list(
            difflib.unified_diff(
                old_lines,
                new_lines,
                fromfile="/dev/null" if before is None else f"a/{path}",
                tofile=f"b/{path}",
            )
        )
        if not lines:
            continue
        chunks.append(f"diff --git a/{path} b/{path}\n")
        if before is None:
            chunks.append("new file mode 100644\n")
        for line in lines:
            if line.endswith("\n"):
                chunks.append(line)
            else:
                chunks.append(line + "\n\\ No newline at end of file\n")
    return "".join(chunks)


# -- the request ----------------------------------------------------------------


@dataclass(frozen=True)
class EditRequest:
    """One edit: what to change and where, under which rules, how the tests
    run, and what the run is recorded under."""

    root: Path
    instruction: str
    focus: Focus | None = None
    # Where the change may go (bot.files) and how large it may be (bot.guards);
    # `allow_workflows` lets it touch `.github/workflows/`.
    protected_paths: Sequence[str] = ()
    allow_workflows: bool = False
    caps: ChangeCaps = field(default_factory=ChangeCaps)
    # Masked in what the next tier is told (bot.redact): test output is the
    # repository's to write, and a hostile test may print one.
    secrets: Sequence[str | None] = ()
    # The repository's tests; without a command, bot.verify looks for one.
    test_command: str | None = None
    setup_command: str | None = None
    test_timeout_s: float = 600.0
    sandbox: Sandbox = field(default_factory=Sandbox)
    network: Network = "setup"
    dry_run: bool = False  # produce and check the change; write nothing, run no tests
    # Test-first (bot.testfirst): each tier writes a test that must fail before its change.
    write_test: bool = False
    # The records' labels ("owner/name"; by default the root's name), and where
    # caches and test environments live (None: the defaults).
    repo: str | None = None
    job_id: str | None = None
    data_dir: Path | None = None

    def validated(self, tiers: Sequence[Tier]) -> EditRequest:
        """This request with its root resolved and its instruction stripped;
        ValueError for bad input."""
        root = Path(self.root)
        if not root.exists():
            raise ValueError(f"no such directory: {root}")
        if not root.is_dir():
            raise ValueError(f"not a directory: {root}")
        text = (self.instruction or "").strip()
        if not text:
            raise ValueError("the instruction is empty")
        if not tiers:
            raise ValueError("no model tiers are configured")
        return replace(self, root=root.resolve(), instruction=text)

    @property
    def label(self) -> str:
        return self.repo or self.root.name

    def cache_dir(self) -> Path | None:
        return Path(self.data_dir) / "index" if self.data_dir is not None else None

    def place(self) -> TestPlace:
        envs = envs_dir_in(self.data_dir) if self.data_dir is not None else default_envs_dir()
        return TestPlace(envs, self.sandbox, self.network, self.label)


@dataclass(frozen=True)
class TestPlace:
    """Where and how the repository's code runs: its sandbox, the network it
    gets, the scope (repository) its environment and uv cache belong to."""

    __test__ = False  # not a pytest test class, whatever its name says

    envs_dir: Path
    sandbox: Sandbox = field(default_factory=Sandbox)
    network: Network = "setup"
    scope: str = ""


# -- the run --------------------------------------------------------------------


async def run_edit(
    request: EditRequest,
    *,
    tiers: Sequence[Tier],
    records: RecordStore | None = None,
    on_progress: ProgressFn | None = None,
    routing: Routing | None = None,
) -> EditResult:
    """Carry out `request`, trying `tiers` in order, or in the order `routing`
    learns from `records` (bot.routing). Raises ValueError for bad
    input; every model or test problem ends in an EditResult instead. A failed
    run leaves the work tree as it found it. Each attempt is added to `records`;
    `on_progress` hears of each finished stage (bot.progress)."""
    request = request.validated(tiers)
    tally = _Tally(request, records)
    roster = await _roster(tiers, tally)
    if not roster.live:
        return _result(tally, _Ending("failed", roster.why_none(tiers)))
    run = await _start(request, tally, _safe(on_progress))
    try:
        for tier in _route(run, roster.live, routing):
            result = await _attempt(run, tier)
            if result is not None:
                return result
        return await _all_failed(run, roster)
    except BaseException:
        run.baseline.abandon()  # a bug or a cancellation: do not leave the task dangling
        raise


class _Tally:
    """The attempts so far, each recorded as it ends."""

    def __init__(self, request: EditRequest, records: RecordStore | None) -> None:
        self.request = request
        self.records = records
        self.attempts: list[Attempt] = []
        self.request_id = uuid.uuid4().hex  # groups this run's attempts in the records
        self.features: features.Features | None = None  # once the repository is indexed

    def add(self, clock: _TierRun, outcome: str, detail: str) -> None:
        tier, usage = clock.tier, clock.usage
        attempt = Attempt(
            tier.name,
            tier.model,
            tier.edit_format,
            usage.tokens_in,
            usage.tokens_out,
            clock.latency(),
            outcome,  # type: ignore[arg-type]  # an Outcome, from a _TierFailed or a status
            detail,
        )
        self.attempts.append(attempt)
        if self.records is not None:
            fields = {k: v for k, v in asdict(attempt).items() if k != "detail"}
            request = self.request
            known = clock.features or self.features
            self.records.add(
                job_id=request.job_id,
                repo=request.label,
                instruction=request.instruction,
                request_id=self.request_id,
                features=known.to_json() if known is not None else None,
                **fields,
            )

    def tokens(self) -> tuple[int, int]:
        return sum(a.tokens_in for a in self.attempts), sum(a.tokens_out for a in self.attempts)


@dataclass
class _Roster:
    """The tiers that answer; those that do not, and those without their key."""

    live: list[Tier]
    down: list[str]
    skipped: list[str]

    def why_none(self, tiers: Sequence[Tier]) -> str:
        if not self.down:
            return f"no model tier is usable: {', '.join(self.skipped)}; {models.next_steps(tiers)}"
        missing = ", ".join(self.down + self.skipped)
        return f"no model tier is reachable: {missing}; {models.next_steps(tiers)}"

    def note(self) -> str:
        down = " | unreachable: " + ", ".join(self.down) if self.down else ""
        return down + (" | skipped: " + ", ".join(self.skipped) if self.skipped else "")


async def _roster(tiers: Sequence[Tier], tally: _Tally) -> _Roster:
    """Tiers that need a key nobody set are skipped; unreachable ones recorded."""
    usable = [t for t in tiers if t.available()]
    roster = _Roster([], [], [f"{t.name} ({t.api_key_env} is not set)" for t in tiers if not t.available()])
    reasons = await asyncio.gather(*(models.reachable(t) for t in usable))
    for tier, reason in zip(usable, reasons, strict=True):
        if reason is None:
            roster.live.append(tier)
            continue
        where = f"{models.base_url(tier)}: {reason}"
        roster.down.append(f"{tier.name} ({where})")
        tally.add(_TierRun(tier, time.perf_counter(), model_s=0.0), "unreachable", where)
    return roster


def _safe(on_progress: ProgressFn | None) -> ProgressFn:
    def emit(event: Progress) -> None:
        if on_progress is None:
            return
        try:
            on_progress(event)
        except Exception:  # a display problem must not break an edit
            log.exception("progress callback failed at %s", event.stage)

    return emit


@dataclass(frozen=True)
class _Rules:
    """Where a change may go and how large it may be."""

    protected: Sequence[str]
    allow_workflows: bool
    caps: ChangeCaps
    secrets: Sequence[str]  # bot.redact.secret_parts

    @classmethod
    def of(cls, request: EditRequest) -> _Rules:
        secrets = secret_parts(request.secrets)
        return cls(request.protected_paths, request.allow_workflows, request.caps, secrets)


@dataclass
class _RunState:
    """What carries over from one tier to the next."""

    feedback: str = ""
    last_output: str = ""
    context: dict[str, Any] = field(default_factory=dict)
    notes: str = ""
    environment: dict[str, Any] | None = None  # of the latest "after" run
    failures: list[str] = field(default_factory=list)
    route: str = ""


@dataclass
class _Run:
    """One run_edit, once the tiers are known to answer."""

    request: EditRequest
    tally: _Tally
    emit: ProgressFn
    rules: _Rules
    command: str | None
    baseline: _Baseline
    index: RepoIndex
    conventions: str  # the repository's guidance for contributors, untrimmed (bot.conventions)
    # The instruction read once, for the ranker and the planner alike (the review hunk ranks only),
    # and what ranking derives from the index, kept for every tier of this run.
    query: Query
    memo: ContextMemo
    features: features.Features  # what the request is like, before any plan (bot.features)
    state: _RunState = field(default_factory=_RunState)


# The App's worker keeps its last repositories' indexes: a second command on one re-reads only what changed.
KEPT_INDEXES = KeptIndexes()


def _index(request: EditRequest) -> RepoIndex:
    if request.repo is None:
        return build_index(request.root, request.cache_dir())
    return KEPT_INDEXES.build(request.repo, request.root, request.cache_dir())


async def _start(request: EditRequest, tally: _Tally, emit: ProgressFn) -> _Run:
    """Start the tests before any change, and index the repository meanwhile."""
    command = request.test_command or default_test_command(request.root)
    baseline = _Baseline(request, None if request.dry_run else command, emit)
    try:
        index = await asyncio.to_thread(_index, request)
    except BaseException:
        baseline.abandon()
        raise
    conventions = read_conventions(request.root)
    focus = request.focus
    query = parse_query(request.instruction, (focus.hunk or "") if focus else "")
    memo = ContextMemo(index)
    language = features.likely_language(index, query, focus, memo)
    tally.features = features.of_request(request.instruction, language)
    return _Run(
        request,
        tally,
        emit,
        _Rules.of(request),
        command,
        baseline,
        index,
        conventions,
        query,
        memo,
        tally.features,
    )


def _route(run: _Run, live: list[Tier], routing: Routing | None) -> list[Tier]:
    """The order to try the tiers in: the router's, when routing is on."""
    records = run.tally.records
    if routing is None or not routing.enabled or records is None or not live:
        return live
    tiers, route = Router(routing, records).order(live, run.features.kind, run.features.language)
    run.state.route = route.line()
    run.emit(Routed(tiers[0].name, [t.name for t in tiers], run.state.route))
    return tiers


async def _all_failed(run: _Run, roster: _Roster) -> EditResult:
    message = "every tier failed: " + " | ".join(run.state.failures) + roster.note()
    # Waited for even now: no test process may outlive the run.
    return _run_result(run, _Ending("failed", message, await run.baseline.result()))


# -- the result, built once ------------------------------------------------------


@dataclass(frozen=True)
class _Change:
    """A tier's change, in memory."""

    tier: Tier
    plan: Plan
    changes: dict[str, str]
    originals: dict[str, str | None]

    @property
    def files(self) -> list[str]:
        return sorted(self.changes)

    def with_test(self, test: DraftTest) -> _Change:
        """This change and the new test written first, committed together."""
        return replace(
            self,
            changes={**self.changes, test.path: test.text},
            originals={**self.originals, test.path: None},
        )


@dataclass(frozen=True)
class _Ending:
    status: Status
    message: str
    tests_before: TestRun | None = None
    tests_after: TestRun | None = None
    change: _Change | None = None
    proof: Proof | None = None


def _result(
    tally: _Tally, ending: _Ending, state: _RunState | None = None, environment: dict[str, Any] | None = None
) -> EditResult:
    state = state or _RunState()
    change = ending.change
    tokens_in, tokens_out = tally.tokens()
    return EditResult(
        status=ending.status,
        tier=change.tier.name if change else None,
        attempts=tally.attempts,
        diff=unified_diff(change.originals, change.changes) if change else "",
        files_changed=change.files if change else [],
        tests_before=ending.tests_before,
        tests_after=ending.tests_after,
        tokens_in=tokens_in,
        tokens_out=tokens_out,
        notes=state.notes,
        message=ending.message,
        last_output=state.last_output,
        context=state.context,
        environment=environment,
        route=state.route,
        evidence=ending.proof,
    )


def _run_result(run: _Run, ending: _Ending) -> EditResult:
    return _result(run.tally, ending, run.state, _environment(run.baseline, run.state))


def _environment(baseline: _Baseline, state: _RunState) -> dict[str, Any] | None:
    """The environment to report: the baseline's (which built it), unless the
    change got one of its own (it touched the dependency files)."""
    before, after = baseline.environment, state.environment
    if after is not None and (before is None or after["key"] != before["key"]):
        return after
    return before


# -- the tests --------------------------------------------------------------------


def tests_in_env(
    root: Path,
    command: str,
    setup_command: str | None,
    timeout_s: float,
    place: TestPlace,
    coverage_to: Path | None = None,
) -> tuple[TestRun, Environment | None]:
    """Run the tests, in the repository's environment when they need one
    (built or reused first: its key follows the dependency files, so a change
    to them gets an environment of its own). With `coverage_to`, pytest in a
    Python environment (which has coverage.py), or plain `go test`, writes its
    coverage report there."""
    sandbox, network = place.sandbox, place.network
    with ExitStack() as hold:  # the environment stays until the tests are done with it
        try:
            env = ensure_test_env(
                root,
                command,
                setup_command,
                place.envs_dir,
                scope=place.scope,
                sandbox=sandbox,
                network=network,
                hold=hold,
            )
        except EnvError as exc:
            return TestRun.not_run(command, str(exc)), None
        # coverage.py comes with a Python environment; go test measures itself.
        own = measure_of(command) is not PYTHON
        measure = coverage_to if isinstance(env, PyEnv) or own else None
        run = run_tests(
            root,
            command,
            timeout_s,
            setup_command,
            env,
            sandbox=sandbox,
            network=network,
            coverage_to=measure,
        )
    return run, env


class _Baseline:
    """The tests before any change. They start at once, in a thread, and run
    while the models think: nothing is written until `result()` has returned,
    so they see the work tree exactly as it was."""

    def __init__(self, request: EditRequest, command: str | None, emit: ProgressFn) -> None:
        self.place = request.place()
        self.environment: dict[str, Any] | None = None
        self._emit = emit
        self._task: asyncio.Task[tuple[TestRun, Environment | None]] | None = None
        self._run: TestRun | None = None
        if command:
            args = (request.root, command, request.setup_command, request.test_timeout_s, self.place)
            self._task = asyncio.create_task(asyncio.to_thread(tests_in_env, *args))

    def abandon(self) -> None:
        """On an error: stop waiting (the test process ends at its timeout)."""
        if self._task is not None:
            self._task.cancel()

    async def result(self) -> TestRun | None:
        if self._task is None or self._run is not None:
            return self._run
        self._run, env = await self._task
        if env is not None:
            self.environment = env.to_json()
            self._emit(EnvironmentReady(env.describe()))
        self._emit(TestsRan("before", self._run))
        return self._run


def _test_feedback(reason: str, run: TestRun, secrets: Sequence[str]) -> str:
    tail = truncate_to_tokens(redact(run.output_tail[-3000:], secrets), FEEDBACK_TOKENS)
    return redact(f"{reason}\nTest output (end):\n{tail}", secrets)


# -- one tier: propose, check, try -------------------------------------------------


class _TierFailed(Exception):
    def __init__(self, outcome: str, detail: str, feedback: str = "") -> None:
        super().__init__(detail)
        self.outcome = outcome
        self.detail = detail
        self.feedback = feedback


@dataclass
class _TierRun:
    tier: Tier
    started: float
    usage: models.Usage = field(default_factory=models.Usage)
    model_s: float | None = None  # wall time of the model calls, once done
    features: features.Features | None = None  # the request's, with what the plan and change showed

    def latency(self) -> float:
        return self.model_s if self.model_s is not None else time.perf_counter() - self.started


async def _attempt(run: _Run, tier: Tier) -> EditResult | None:
    """One tier, start to finish: the accepted result, or None (the attempt
    recorded, the work tree as it was) when the next tier should try."""
    clock = _TierRun(tier, time.perf_counter())
    try:
        change = await _propose(run, clock)
        _check(run, change)
        test = await _draft_test(run, clock) if run.request.write_test and not run.request.dry_run else None
        ending = await _try(run, change, test)
    except _TierFailed as exc:
        run.tally.add(clock, exc.outcome, exc.detail)
        run.state.failures.append(f"{tier.name}: {exc.detail}")
        run.state.feedback = f"An earlier attempt failed: {exc.feedback or exc.detail}"
        run.emit(Refused(tier.name, exc.outcome, exc.detail))
        return None
    run.tally.add(clock, ending.status, ending.message)
    return _run_result(run, ending)


async def _propose(run: _Run, clock: _TierRun) -> _Change:
    """Context, plan and the model's new files, all in memory."""
    tier, request = clock.tier, run.request
    try:
        plan = await _plan(run, tier)
        clock.usage += plan.usage
        asked = _asked(request.instruction, plan)
        clock.features = features.with_plan(run.features, run.index, plan.paths(), asked)
        generated = await generate(
            tier,
            request.root,
            request.instruction,
            plan,
            index=run.index,
            focus=request.focus,
            feedback=run.state.feedback,
            cache_dir=request.cache_dir(),
            conventions=fit_conventions(run.conventions, tier.input_budget),
            query=run.query,
            memo=run.memo,
        )
    except EditError as exc:
        clock.usage += exc.usage
        run.state.last_output = exc.last_output or run.state.last_output
        raise _TierFailed(exc.outcome, exc.message) from None
    clock.usage += generated.usage
    clock.model_s = time.perf_counter() - clock.started
    clock.features = features.with_change(
        clock.features or run.features, request.instruction, generated.originals, generated.changes
    )
    run.state.last_output = "\n\n".join(f.reply for f in generated.files if f.reply)
    run.emit(Generated(tier.name, [f.path for f in generated.files]))
    return _Change(tier, plan, generated.changes, generated.originals)


async def _plan(run: _Run, tier: Tier) -> Plan:
    request, rules = run.request, run.rules
    context = await _plan_context(run, tier)
    plan = await make_plan(
        tier,
        request.root,
        request.instruction,
        index=run.index,
        context=context,
        protected=rules.protected,
        allow_workflows=rules.allow_workflows,
        query=run.query,
    )
    run.state.notes = plan.notes
    run.emit(Planned(tier.name, plan.paths(), plan.source))
    return plan


async def _plan_context(run: _Run, tier: Tier) -> Context | None:
    """The code the plan is made from, within this tier's budget."""
    request = run.request
    budget = plan_context_budget(tier, request.instruction)
    if budget <= 0:
        return None
    context = await asyncio.to_thread(
        select_context,
        request.root,
        run.query,
        budget,
        focus=request.focus,
        index=run.index,
        memo=run.memo,
        cache_dir=request.cache_dir(),
    )
    run.state.context = context.to_json()
    run.emit(ContextChosen(tier.name, context.paths(), context.tokens, budget))
    return context


def _check(run: _Run, change: _Change) -> None:
    """Refuse before anything is written (the next tier is told why): a
    protected path, binary content, a change over the caps, a syntax error,
    a file that lost what the request does not ask to change."""
    _check_confined(change.changes, change.originals, run.rules)
    _check_syntax(change.changes)
    _check_shrink(run.request.instruction, change)
    run.emit(Verified(change.tier.name, change.files))


def _check_confined(changes: Mapping[str, str], originals: Mapping[str, str | None], rules: _Rules) -> None:
    refused = sorted(
        p for p in changes if is_protected(p, rules.protected, allow_workflows=rules.allow_workflows)
    )
    if refused:
        raise _TierFailed("apply_failed", f"the change touches protected paths: {', '.join(refused)}")
    for outcome, problems, advice in (
        ("binary", binary_problems(originals, changes), "Write text files only."),
        ("over_cap", cap_problems(originals, changes, rules.caps), "Make a smaller change."),
    ):
        if problems:
            why = "refused before writing: " + "; ".join(problems[:5])
            raise _TierFailed(outcome, why, f"{why}. {advice}")


def _check_syntax(changes: Mapping[str, str]) -> None:
    problems = check_syntax(changes)
    if problems:
        raise _TierFailed("syntax_error", "syntax errors: " + "; ".join(problems[:5]))


def _asked(instruction: str, plan: Plan) -> str:
    """What the request and its plan ask for, in words."""
    return " ".join([instruction, plan.notes, *(f.change for f in plan.files)])


def _check_shrink(instruction: str, change: _Change) -> None:
    """A whole file that lost parts (truncated, elided) is refused: the tests
    may not cover what went missing."""
    lost = shrink_problems(change.originals, change.changes, _asked(instruction, change.plan))
    if lost:
        why = "; ".join(lost[:5])
        advice = "Keep every part of the file the request does not ask to change."
        raise _TierFailed("shrunk", f"refused: {why}", f"refused before testing: {why}. {advice}")


@dataclass(frozen=True)
class _FirstTest:
    """The test a tier wrote before its change, or a note on why there is none."""

    draft: DraftTest | None
    note: str = ""


async def _draft_test(run: _Run, clock: _TierRun) -> _FirstTest:
    """The tier's test for the instruction (bot.testfirst), from code chosen
    for it within half the tier's budget. No test is no failure: the change
    is then judged on the repository's own tests."""
    tier, request = clock.tier, run.request
    started = time.perf_counter()
    context = await asyncio.to_thread(
        select_context, request.root, run.query, tier.input_budget // 2, index=run.index, memo=run.memo
    )
    conventions = fit_conventions(run.conventions, tier.input_budget)
    try:
        test, usage, note = await draft_test(
            tier, request.root, run.command, request.instruction, context.render(), conventions
        )
    except models.ModelError as exc:
        clock.usage += exc.usage
        return _FirstTest(None, f"no test written first: {exc.message}")
    clock.usage += usage
    clock.model_s = (clock.model_s or 0.0) + time.perf_counter() - started
    return _FirstTest(test, note)


async def _try(run: _Run, change: _Change, first: _FirstTest | None = None) -> _Ending:
    """Write the change and run the tests; the work tree is restored unless
    the change is accepted. A test written first runs alone before the change
    (it must fail) and after it (it must pass)."""
    tier = change.tier.name
    before = await run.baseline.result()
    if run.request.dry_run:
        why = f"dry run: tier {tier} produced a change that applies and parses"
        why += "; nothing was written and no tests ran"
        return _Ending("unverified", why, before, change=change, proof=Proof(Evidence.NOT_RUN))
    proof = Proof(notes=[first.note] if first is not None and first.note else [])
    test = first.draft if first is not None else None
    with rollback_on_error(run.request.root, change.files + ([test.path] if test else [])):
        if not run.command:
            why = f"unverified: tier {tier} made the change; the repository has no tests to run"
            _write(run.request.root, change.changes)
            return _Ending("unverified", why, before, change=change, proof=Proof(Evidence.NOT_RUN))
        test = await _test_fails_before(run, tier, test, proof) if test is not None else None
        _write(run.request.root, change.changes)
        after, report = await _tests_after(run, change.tier, run.command)
        status, message = _judge(tier, before, after, run.rules.secrets)
        if test is not None:
            await _test_passes_after(run, test, proof)
            change = change.with_test(test)
        status, message = _weigh(change, after, report, (status, message), proof)
    return _Ending(status, message, before, after, change, proof)


async def _run_alone(run: _Run, test: DraftTest) -> TestRun:
    request = run.request
    args = (
        request.root,
        test.alone,
        request.setup_command,
        request.test_timeout_s,
        run.baseline.place,
    )
    alone, _env = await asyncio.to_thread(tests_in_env, *args)
    return alone


async def _test_fails_before(run: _Run, tier: str, test: DraftTest, proof: Proof) -> DraftTest | None:
    """Write the test and run it alone on the unchanged code: kept when it
    fails there; otherwise removed, and the note says why."""
    _write(run.request.root, {test.path: test.text})
    why = fails_before(test.path, await _run_alone(run, test))
    run.emit(TestWritten(tier, test.path, why is None, why or ""))
    if why is None:
        return test
    proof.notes.append(why)
    (run.request.root / test.path).unlink(missing_ok=True)
    return None


async def _test_passes_after(run: _Run, test: DraftTest, proof: Proof) -> None:
    """The tier's own test must pass with its change, or the change is refused."""
    alone = await _run_alone(run, test)
    if not passes_after(alone):
        reason = f"the test written first ({test.path}) still fails after the change: {alone.summary()}"
        raise _TierFailed("tests_worse", reason, _test_feedback(reason, alone, run.rules.secrets))
    proof.new_test = test.path


def _write(root: Path, changes: Mapping[str, str]) -> None:
    try:
        write_changes(root, changes)
    except Exception as exc:  # a refused path, a full disk, ...
        raise _TierFailed("apply_failed", f"could not write the change: {exc}") from None


async def _tests_after(run: _Run, tier: Tier, command: str) -> tuple[TestRun, dict[str, FileLines] | None]:
    """The tests after the change, and what coverage.py (or go test) saw them run (None
    when not measured). Its data stay in a directory of their own, never the checkout."""
    request = run.request
    with tempfile.TemporaryDirectory(prefix="patchling-coverage-") as scratch:
        target = Path(scratch) / "coverage.report"
        args = (
            request.root,
            command,
            request.setup_command,
            request.test_timeout_s,
            run.baseline.place,
            target,
        )
        after, env = await asyncio.to_thread(tests_in_env, *args)
        report = read_coverage(measure_of(command), target, request.root)
    run.state.environment = env.to_json() if env is not None else None
    if env is not None and not env.reused:  # the change touched the dependency files
        run.emit(EnvironmentReady(env.describe(), tier.name))
    run.emit(TestsRan("after", after, tier.name))
    return after, report


def _judge(tier: str, before: TestRun | None, after: TestRun, secrets: Sequence[str]) -> tuple[Status, str]:
    """Accept the change (verified, or unverified and why), or refuse it when
    the tests got worse."""
    reason = worse_than(before, after) if before is not None else None
    if reason:
        reason = redact(reason, secrets)
        raise _TierFailed("tests_worse", reason, _test_feedback(reason, after, secrets))
    made = f"unverified: tier {tier} made the change"
    if after.could_not_run is not None:
        # Only here when the baseline could not run either (else worse_than refused it).
        return "unverified", f"{made}, but {after.summary()}"
    if before is not None and before.could_not_run is not None and not after.ok:
        return "unverified", f"{made}; the tests did not run before it, and now {after.summary()}"
    if after.passed == 0:
        return "unverified", f"{made}, but no test passed ({after.summary()})"
    message = f"verified: tier {tier}; {after.summary()}"
    return "verified", message + (f" (before: {before.summary()})" if before is not None else "")


def _weigh(
    change: _Change,
    after: TestRun,
    report: Mapping[str, FileLines] | None,
    verdict: tuple[Status, str],
    proof: Proof,
) -> tuple[Status, str]:
    """The verdict once coverage is known: "verified" also needs every changed
    line (of the files coverage.py or go test measures) to have run in some test."""
    status, message = verdict
    if status != "verified":
        proof.level = Evidence.NOT_RUN if after.could_not_run is not None else Evidence.NO_WORSE
        return verdict
    measure = measure_of(after.command)
    changed = changed_lines(change.originals, change.changes, measure)
    others = unmeasured_languages(change.files, measure)
    if others:
        proof.notes.append(f"coverage not measured for {', '.join(others)}")
    measured = report is not None and bool(changed)
    if changed and report is None:
        proof.coverage = "not measured: " + _why_unmeasured(after.command)
    elif measured:
        proof.coverage = "measured"
        proof.unexercised = unexercised(changed, report or {}, measure)
    proof.level = _level(proof, measured and not others)
    if proof.unexercised:
        return "unexercised", f"unexercised: tier {change.tier.name}; {not_exercised(proof.unexercised)}"
    return status, f"{message}; evidence: {proof.level.label}"


def _why_unmeasured(command: str) -> str:
    if measure_of(command) is GO:
        return "go test wrote no coverage profile"
    if pytest_args(command) is None:
        return "the test command is not plain pytest"
    return "coverage.py wrote no report"


def _level(proof: Proof, all_measured: bool) -> Evidence:
    if proof.new_test is not None:
        return Evidence.NEW_TEST
    if all_measured and not proof.unexercised:
        return Evidence.COVERED
    return Evidence.NO_WORSE
