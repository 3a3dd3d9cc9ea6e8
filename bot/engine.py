"""The edit engine: tiers smallest first until one produces a change that
applies, parses, and leaves the tests no worse than before.

    context -> plan -> generate (concurrently per file) -> apply in memory
    -> syntax -> write -> tests -> accept, or restore and escalate

This is the API the GitHub side uses (`run_edit`). It imports only the stages
below it; nothing about webhooks, jobs or workspaces lives here.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from bot import models
from bot.apply import write_changes
from bot.config import ChangeCaps, Tier
from bot.context import Context, Focus, select_context
from bot.deps import ensure_test_env
from bot.edit import EditError, Plan, generate, make_plan, plan_context_budget
from bot.files import PathRefused, check_path, is_protected
from bot.guards import binary_problems, cap_problems, shrink_problems
from bot.index import RepoIndex, build_index
from bot.pyenv import EnvError, default_envs_dir
from bot.records import RecordStore
from bot.redact import redact, secret_parts
from bot.sandbox import Network, Sandbox
from bot.tokens import truncate_to_tokens
from bot.verify import Environment, TestRun, check_syntax, default_test_command, run_tests, worse_than

__all__ = ["Attempt", "EditResult", "Focus", "TestRun", "run_edit", "unified_diff"]

log = logging.getLogger(__name__)

Status = Literal["verified", "unverified", "failed"]
ProgressFn = Callable[[str, dict[str, Any]], None]
# How an attempt ended: an EditResult status, or why the tier failed.
Outcome = Literal[
    "verified",
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
        }


# -- diff and restore ---------------------------------------------------------


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


@dataclass
class _Snapshot:
    """What the work tree held before a tier wrote, per changed path: the file's
    bytes and mode, or None when it did not exist; plus the directories the
    write will create. Paths write_changes refuses (symlinks, escapes) are left
    out: nothing is written there."""

    files: dict[Path, tuple[bytes, int] | None]
    created_dirs: list[Path]


def _snapshot(root: Path, paths: Sequence[str]) -> _Snapshot:
    files: dict[Path, tuple[bytes, int] | None] = {}
    created: list[Path] = []
    for path in paths:
        try:
            target = root / check_path(root, path)
        except PathRefused:
            continue  # write_changes refuses it; nothing of ours to restore there
        if target.is_file():
            files[target] = (target.read_bytes(), target.stat().st_mode)
            continue
        files[target] = None
        parent = target.parent
        while parent != root and parent.is_relative_to(root) and not parent.exists():
            if parent not in created:
                created.append(parent)
            parent = parent.parent
    return _Snapshot(files, created)


def _restore(root: Path, snapshot: _Snapshot) -> None:
    """Put every file back as it was; remove the files and directories we made."""
    for target, saved in snapshot.files.items():
        if saved is None:
            target.unlink(missing_ok=True)
            continue
        data, mode = saved
        target.write_bytes(data)
        os.chmod(target, mode & 0o7777)
    # Deepest first, and only if empty: never remove anything we did not make.
    for directory in sorted(snapshot.created_dirs, key=lambda d: len(d.parts), reverse=True):
        with contextlib.suppress(OSError):
            directory.rmdir()


# -- the run --------------------------------------------------------------------


def _validate(root: Path, instruction: str, tiers: Sequence[Tier]) -> tuple[Path, str]:
    root = Path(root)
    if not root.exists():
        raise ValueError(f"no such directory: {root}")
    if not root.is_dir():
        raise ValueError(f"not a directory: {root}")
    text = (instruction or "").strip()
    if not text:
        raise ValueError("the instruction is empty")
    if not tiers:
        raise ValueError("no model tiers are configured")
    return root.resolve(), text


def _emit(on_progress: ProgressFn | None, stage: str, data: dict[str, Any]) -> None:
    if on_progress is None:
        return
    try:
        on_progress(stage, data)
    except Exception:  # a display problem must not break an edit
        log.exception("progress callback failed at %s", stage)


def _tests_data(run: TestRun | None) -> dict[str, Any]:
    if run is None:
        return {"ran": False}
    return {
        "ran": True,
        "passed": run.passed,
        "failed": run.failed,
        "errors": run.errors,
        "skipped": run.skipped,
        "duration_s": run.duration_s,
        "timed_out": run.timed_out,
        "could_not_run": run.could_not_run,
        "sandboxed": run.sandboxed,
        "summary": run.summary(),
    }


def _env_data(env: Environment) -> dict[str, Any]:
    return {**env.to_json(), "summary": env.describe()}


@dataclass(frozen=True)
class TestPlace:
    """Where and how the repository's code runs: its sandbox, the network it
    gets, the scope (repository) its environment and uv cache belong to."""

    __test__ = False  # not a pytest test class, whatever its name says

    envs_dir: Path
    sandbox: Sandbox = field(default_factory=Sandbox)
    network: Network = "setup"
    scope: str = ""


def _tests_in_env(
    root: Path, command: str, setup_command: str | None, timeout_s: float, place: TestPlace
) -> tuple[TestRun, Environment | None]:
    """Run the tests, in the repository's environment when they need one
    (built or reused first: its key follows the dependency files, so a change
    to them gets an environment of its own)."""
    sandbox, network = place.sandbox, place.network
    try:
        env = ensure_test_env(
            root, command, setup_command, place.envs_dir, scope=place.scope, sandbox=sandbox, network=network
        )
    except EnvError as exc:
        return TestRun.not_run(command, str(exc)), None
    return run_tests(root, command, timeout_s, setup_command, env, sandbox=sandbox, network=network), env


def _test_feedback(reason: str, run: TestRun, secrets: Sequence[str]) -> str:
    tail = truncate_to_tokens(redact(run.output_tail[-3000:], secrets), FEEDBACK_TOKENS)
    return redact(f"{reason}\nTest output (end):\n{tail}", secrets)


async def _reachability(tiers: Sequence[Tier]) -> list[str | None]:
    return list(await asyncio.gather(*(models.reachable(t) for t in tiers)))


async def run_edit(
    root: Path,
    instruction: str,
    *,
    tiers: Sequence[Tier],
    test_command: str | None = None,
    setup_command: str | None = None,
    test_timeout_s: float = 600.0,
    focus: Focus | None = None,
    protected_paths: Sequence[str] = (),
    allow_workflows: bool = False,
    caps: ChangeCaps | None = None,
    secrets: Sequence[str | None] = (),
    dry_run: bool = False,
    records: RecordStore | None = None,
    job_id: str | None = None,
    repo: str | None = None,
    data_dir: Path | None = None,
    on_progress: ProgressFn | None = None,
    sandbox: Sandbox | None = None,
    network: Network = "setup",
) -> EditResult:
    """Carry out `instruction` in the work tree at `root`, trying `tiers` in
    order. Raises ValueError for bad input; every model or test problem ends
    in an EditResult instead. A failed run leaves the work tree as it found it.

    `repo` labels the run in `records` (e.g. "owner/name"); by default the
    name of the root directory. `allow_workflows` lets the change touch
    `.github/workflows/` (bot.files); `caps` bound its size (default ChangeCaps()).
    `secrets` are masked in what the next tier is told (bot.redact): test
    output is the repository's to write, and a hostile test may print one."""
    root, instruction = _validate(root, instruction, tiers)
    repo_label = repo or root.name
    attempts: list[Attempt] = []
    tokens = {"in": 0, "out": 0}

    def record(tier: Tier, outcome: Any, detail: str, usage: models.Usage, latency_s: float) -> None:
        attempt = Attempt(
            tier=tier.name,
            model=tier.model,
            edit_format=tier.edit_format,
            tokens_in=usage.tokens_in,
            tokens_out=usage.tokens_out,
            latency_s=latency_s,
            outcome=outcome,
            detail=detail,
        )
        attempts.append(attempt)
        tokens["in"] += usage.tokens_in
        tokens["out"] += usage.tokens_out
        if records is not None:
            fields = {k: v for k, v in asdict(attempt).items() if k != "detail"}
            records.add(job_id=job_id, repo=repo_label, instruction=instruction, **fields)

    def failed(message: str, **extra: Any) -> EditResult:
        return EditResult(
            status="failed",
            tier=None,
            attempts=attempts,
            diff="",
            files_changed=[],
            tests_before=extra.get("tests_before"),
            tests_after=None,
            tokens_in=tokens["in"],
            tokens_out=tokens["out"],
            notes=extra.get("notes", ""),
            message=message,
            last_output=extra.get("last_output", ""),
            context=extra.get("context", {}),
            environment=extra.get("environment"),
        )

    # Tiers that need a key nobody set are skipped; unreachable ones recorded.
    usable = [t for t in tiers if t.available()]
    skipped = [f"{t.name} ({t.api_key_env} is not set)" for t in tiers if not t.available()]
    if not usable:
        return failed(f"no model tier is usable: {', '.join(skipped)}; {models.next_steps(tiers)}")
    reasons = await _reachability(usable)
    live: list[Tier] = []
    down: list[str] = []
    for tier, reason in zip(usable, reasons, strict=True):
        if reason is None:
            live.append(tier)
        else:
            down.append(f"{tier.name} ({models.base_url(tier)}: {reason})")
            record(tier, "unreachable", f"{models.base_url(tier)}: {reason}", models.Usage(), 0.0)
    if not live:
        return failed(
            "no model tier is reachable: " + ", ".join(down + skipped) + "; " + models.next_steps(tiers)
        )

    command = test_command or default_test_command(root)
    envs_dir = Path(data_dir) / "envs" if data_dir is not None else default_envs_dir()
    place = TestPlace(envs_dir, sandbox or Sandbox(), network, repo_label)
    baseline = _Baseline(
        root, command if not dry_run else None, setup_command, test_timeout_s, place, on_progress
    )
    cache_dir = Path(data_dir) / "index" if data_dir is not None else None
    try:
        index = await asyncio.to_thread(build_index, root, cache_dir)
    except BaseException:
        baseline.abandon()
        raise

    state = _RunState()
    failures: list[str] = []
    try:
        for tier in live:
            run = _TierRun(tier=tier, started=time.perf_counter())
            try:
                result = await _attempt_tier(
                    run,
                    state,
                    root=root,
                    instruction=instruction,
                    index=index,
                    focus=focus,
                    rules=_Rules(
                        protected_paths, allow_workflows, caps or ChangeCaps(), secret_parts(secrets)
                    ),
                    command=command,
                    baseline=baseline,
                    test_timeout_s=test_timeout_s,
                    dry_run=dry_run,
                    cache_dir=cache_dir,
                    on_progress=on_progress,
                )
            except _TierFailed as exc:
                record(tier, exc.outcome, exc.detail, run.usage, run.latency())
                failures.append(f"{tier.name}: {exc.detail}")
                state.feedback = f"An earlier attempt failed: {exc.feedback or exc.detail}"
                continue
            record(tier, result.status, result.message, run.usage, run.latency())
            result.attempts = attempts
            result.tokens_in, result.tokens_out = tokens["in"], tokens["out"]
            result.environment = _environment(baseline, state)
            return result
    except BaseException:
        baseline.abandon()  # a bug or a cancellation: do not leave the task dangling
        raise

    message = "every tier failed: " + " | ".join(failures)
    if down:
        message += " | unreachable: " + ", ".join(down)
    if skipped:
        message += " | skipped: " + ", ".join(skipped)
    return failed(
        message,
        # Waited for even now: no test process may outlive the run.
        tests_before=await baseline.result(),
        last_output=state.last_output,
        context=state.context,
        notes=state.notes,
        environment=_environment(baseline, state),
    )


def _environment(baseline: _Baseline, state: _RunState) -> dict[str, Any] | None:
    """The environment to report: the baseline's (which built it), unless the
    change got one of its own (it touched the dependency files)."""
    before, after = baseline.environment, state.environment
    if after is not None and (before is None or after["key"] != before["key"]):
        return after
    return before


class _Baseline:
    """The tests before any change. They start at once, in a thread, and run
    while the models think: nothing is written until `result()` has returned,
    so they see the work tree exactly as it was."""

    def __init__(
        self,
        root: Path,
        command: str | None,
        setup_command: str | None,
        timeout_s: float,
        place: TestPlace,
        on_progress: ProgressFn | None,
    ) -> None:
        self.command = command
        self.setup_command = setup_command  # the "after" runs use it too: like for like
        self.place = place
        self.environment: dict[str, Any] | None = None
        self._on_progress = on_progress
        self._task: asyncio.Task[tuple[TestRun, Environment | None]] | None = None
        self._run: TestRun | None = None
        if command:
            self._task = asyncio.create_task(
                asyncio.to_thread(_tests_in_env, root, command, setup_command, timeout_s, place)
            )

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
            _emit(self._on_progress, "environment", _env_data(env))
        _emit(self._on_progress, "tests_before", {"command": self.command, **_tests_data(self._run)})
        return self._run


@dataclass
class _RunState:
    """What carries over from one tier to the next."""

    feedback: str = ""
    last_output: str = ""
    context: dict[str, Any] = field(default_factory=dict)
    notes: str = ""
    environment: dict[str, Any] | None = None  # of the latest "after" run


@dataclass
class _TierRun:
    tier: Tier
    started: float
    usage: models.Usage = field(default_factory=models.Usage)
    model_s: float | None = None  # wall time of the model calls, once done

    def latency(self) -> float:
        return self.model_s if self.model_s is not None else time.perf_counter() - self.started


@dataclass(frozen=True)
class _Rules:
    """Where a change may go and how large it may be."""

    protected: Sequence[str]
    allow_workflows: bool
    caps: ChangeCaps
    secrets: Sequence[str]  # bot.redact.secret_parts


def _check_confined(changes: Mapping[str, str], originals: Mapping[str, str | None], rules: _Rules) -> None:
    """Refuse, before anything is written, a change to a protected path, binary
    content, or a change over the caps; the next tier is told why."""
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


class _TierFailed(Exception):
    def __init__(self, outcome: str, detail: str, feedback: str = "") -> None:
        super().__init__(detail)
        self.outcome = outcome
        self.detail = detail
        self.feedback = feedback


async def _attempt_tier(
    run: _TierRun,
    state: _RunState,
    *,
    root: Path,
    instruction: str,
    index: RepoIndex,
    focus: Focus | None,
    rules: _Rules,
    command: str | None,
    baseline: _Baseline,
    test_timeout_s: float,
    dry_run: bool,
    cache_dir: Path | None,
    on_progress: ProgressFn | None,
) -> EditResult:
    """One tier, start to finish. Returns the accepted result (attempts and
    token totals filled in by the caller) or raises _TierFailed, in which case
    the work tree is as it was."""
    tier = run.tier
    try:
        # Context for the plan, within this tier's budget.
        context: Context | None = None
        budget = plan_context_budget(tier, instruction)
        if budget > 0:
            context = await asyncio.to_thread(
                select_context, root, instruction, budget, focus=focus, index=index, cache_dir=cache_dir
            )
            state.context = context.to_json()
            _emit(
                on_progress,
                "context",
                {"tier": tier.name, "files": context.paths(), "tokens": context.tokens, "budget": budget},
            )
        plan: Plan = await make_plan(
            tier,
            root,
            instruction,
            index=index,
            context=context,
            protected=rules.protected,
            allow_workflows=rules.allow_workflows,
        )
        run.usage = run.usage + plan.usage
        state.notes = plan.notes
        _emit(on_progress, "plan", {"tier": tier.name, "files": plan.paths(), "source": plan.source})
        generated = await generate(
            tier,
            root,
            instruction,
            plan,
            index=index,
            focus=focus,
            feedback=state.feedback,
            cache_dir=cache_dir,
        )
    except EditError as exc:
        run.usage = run.usage + exc.usage
        state.last_output = exc.last_output or state.last_output
        raise _TierFailed(exc.outcome, exc.message) from None
    run.usage = run.usage + generated.usage
    run.model_s = time.perf_counter() - run.started
    state.last_output = "\n\n".join(f.reply for f in generated.files if f.reply)
    _emit(on_progress, "generated", {"tier": tier.name, "files": [f.path for f in generated.files]})

    changes = generated.changes
    _check_confined(changes, generated.originals, rules)
    problems = check_syntax(changes)
    if problems:
        raise _TierFailed("syntax_error", "syntax errors: " + "; ".join(problems[:5]))
    request = " ".join([instruction, plan.notes, *(f.change for f in plan.files)])
    lost = shrink_problems(generated.originals, changes, request)
    if lost:
        raise _TierFailed(
            "shrunk",
            "refused: " + "; ".join(lost[:5]),
            "refused before testing: "
            + "; ".join(lost[:5])
            + ". Keep every part of the file the request does not ask to change.",
        )
    _emit(on_progress, "applied", {"tier": tier.name, "files": sorted(changes)})
    diff = unified_diff(generated.originals, changes)

    tests_before = await baseline.result()

    def result(status: Status, message: str, tests_after: TestRun | None) -> EditResult:
        return EditResult(
            status=status,
            tier=tier.name,
            attempts=[],
            diff=diff,
            files_changed=sorted(changes),
            tests_before=tests_before,
            tests_after=tests_after,
            tokens_in=0,
            tokens_out=0,
            notes=plan.notes,
            message=message,
            last_output=state.last_output,
            context=state.context,
        )

    if dry_run:
        return result(
            "unverified",
            f"dry run: tier {tier.name} produced a change that applies and parses;"
            " nothing was written and no tests ran",
            None,
        )

    snapshot = _snapshot(root, sorted(changes))
    accepted = False
    try:
        try:
            write_changes(root, changes)
        except Exception as exc:  # a refused path, a full disk, ...
            raise _TierFailed("apply_failed", f"could not write the change: {exc}") from None
        if not command:
            accepted = True
            return result(
                "unverified",
                f"unverified: tier {tier.name} made the change; the repository has no tests to run",
                None,
            )
        tests_after, env = await asyncio.to_thread(
            _tests_in_env, root, command, baseline.setup_command, test_timeout_s, baseline.place
        )
        state.environment = env.to_json() if env is not None else None
        if env is not None and not env.reused:  # the change touched the dependency files
            _emit(on_progress, "environment", {"tier": tier.name, **_env_data(env)})
        _emit(
            on_progress,
            "tests_after",
            {"tier": tier.name, "command": command, **_tests_data(tests_after)},
        )
        if tests_before is not None:
            reason = worse_than(tests_before, tests_after)
            if reason:
                reason = redact(reason, rules.secrets)
                raise _TierFailed("tests_worse", reason, _test_feedback(reason, tests_after, rules.secrets))
        accepted = True
        if tests_after.could_not_run is not None:
            # Only here when the baseline could not run either (else worse_than refused it).
            return result(
                "unverified",
                f"unverified: tier {tier.name} made the change, but {tests_after.summary()}",
                tests_after,
            )
        if tests_before is not None and tests_before.could_not_run is not None and not tests_after.ok:
            return result(
                "unverified",
                f"unverified: tier {tier.name} made the change; the tests did not run before it,"
                f" and now {tests_after.summary()}",
                tests_after,
            )
        if tests_after.passed == 0:
            return result(
                "unverified",
                f"unverified: tier {tier.name} made the change, but no test passed ({tests_after.summary()})",
                tests_after,
            )
        message = f"verified: tier {tier.name}; {tests_after.summary()}"
        if tests_before is not None:
            message += f" (before: {tests_before.summary()})"
        return result("verified", message, tests_after)
    finally:
        if not accepted:
            _restore(root, snapshot)
