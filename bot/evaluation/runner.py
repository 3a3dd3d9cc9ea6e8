"""One task on one tier, and a suite over the tiers.

A task runs in a scratch work tree holding only what the model may see
(`Task.files()`), through the engine's `run_edit` with that one tier, so the
whole pipeline (context, plan, edit, checks, the project's own tests) is what
is measured. The hidden tests are then written into a *copy* of the work
tree and run in the sandbox; the model's work tree never holds them. On a
failure the tier gets one retry, told the end of the hidden tests' output
(or why its answer was refused).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bot import models
from bot.config import ChangeCaps, Tier
from bot.engine import EditRequest, EditResult, TestPlace, run_edit, tests_in_env
from bot.evaluation.scores import HIDDEN_FAILED, EvalRun, TaskResult, TierInfo, Try
from bot.evaluation.suites import Task, write_tree
from bot.sandbox import Sandbox
from bot.tokens import truncate_to_tokens
from bot.verify import TestRun, default_test_command

log = logging.getLogger(__name__)

# How much of the hidden tests' output the retry is told.
FEEDBACK_TOKENS = 800
# The scope (bot.pyenv) of every eval environment: one uv cache for the whole suite.
ENV_SCOPE = "patchling-eval"
# Engine outcomes after which the change had been applied (and then tested).
APPLIED_OUTCOMES = frozenset({"verified", "unexercised", "unverified", "tests_worse"})

OnResult = Callable[[TaskResult], None]


@dataclass(frozen=True)
class EvalOptions:
    data_dir: Path  # the engine's caches and the test environments (envs/)
    sandbox: Sandbox = field(default_factory=Sandbox)
    caps: ChangeCaps = field(default_factory=ChangeCaps)
    test_timeout_s: float = 60.0
    jobs: int = 1
    retry: bool = True


# -- the hidden tests -------------------------------------------------------------


def run_check(root: Path, command: str | None, options: EvalOptions) -> TestRun:
    """The tests at `root`, in the sandbox, in an environment of their own when they
    need one: the engine's way (bot.engine.tests_in_env), so a task is judged as a job is."""
    command = command or default_test_command(root)
    if command is None:
        return TestRun.not_run("", "the task has no tests to run")
    place = TestPlace(options.data_dir / "envs", options.sandbox, scope=ENV_SCOPE)
    return tests_in_env(root, command, None, options.test_timeout_s, place)[0]


def check_hidden(work: Path, task: Task, options: EvalOptions) -> TestRun:
    """The hidden tests over a copy of `work`."""
    with tempfile.TemporaryDirectory(prefix="patchling-eval-check-") as tmp:
        check = Path(tmp) / "check"
        shutil.copytree(work, check, symlinks=True)
        write_tree(check, task.hidden)
        return run_check(check, task.test_command, options)


def passed(run: TestRun) -> bool:
    return run.ok and run.passed > 0 and run.failed == 0 and run.errors == 0


# -- one task ---------------------------------------------------------------------


def with_feedback(instruction: str, feedback: str) -> str:
    return f"{instruction}\n\nA previous attempt failed. {feedback}" if feedback else instruction


def failure_feedback(run: TestRun) -> str:
    tail = truncate_to_tokens(run.output_tail[-6000:], FEEDBACK_TOKENS)
    return f"The tests failed ({run.summary()}). The end of their output:\n{tail}"


def _last_outcome(edit: EditResult) -> str:
    return edit.attempts[-1].outcome if edit.attempts else "unreachable"


def _count(result: TaskResult, edit: EditResult) -> None:
    result.tries += 1
    result.tokens_in += edit.tokens_in
    result.tokens_out += edit.tokens_out
    result.latency_s += sum(a.latency_s for a in edit.attempts)


def _tried(result: TaskResult, edit: EditResult, outcome: str) -> None:
    """Note one try for the attempt records, ended as `outcome`."""
    edit_format = edit.attempts[-1].edit_format if edit.attempts else ""
    latency = sum(a.latency_s for a in edit.attempts)
    result.attempts.append(Try(outcome, edit_format, edit.tokens_in, edit.tokens_out, latency, time.time()))


async def _attempts(task: Task, tier: Tier, options: EvalOptions, work: Path, result: TaskResult) -> None:
    applied = False
    feedback = ""
    for attempt in range(1, 3 if options.retry else 2):
        request = EditRequest(
            work,
            with_feedback(task.instruction, feedback),
            test_timeout_s=options.test_timeout_s,
            caps=options.caps,
            repo=ENV_SCOPE,
            data_dir=options.data_dir,
            sandbox=options.sandbox,
        )
        edit = await run_edit(request, tiers=[tier])
        _count(result, edit)
        outcome = _last_outcome(edit)
        if outcome in models.NO_ANSWER_KINDS:
            _tried(result, edit, outcome)
            result.outcome, result.detail = "no_answer", edit.message
            return
        applied = applied or outcome in APPLIED_OUTCOMES
        if edit.status == "failed":
            _tried(result, edit, outcome)
            feedback, result.detail = f"The answer was refused: {edit.message}", edit.message
            continue
        run = await asyncio.to_thread(check_hidden, work, task, options)
        _tried(result, edit, "verified" if passed(run) else HIDDEN_FAILED)
        if passed(run):
            result.outcome, result.solved_on, result.detail = "solved", attempt, run.summary()
            return
        feedback, result.detail = failure_feedback(run), f"hidden tests: {run.summary()}"
    result.outcome = "failing" if applied else "refused"


async def run_task(task: Task, tier: Tier, options: EvalOptions) -> TaskResult:
    """`task` on `tier`, with one retry. Never raises for the model's or the
    task's problems: a broken run is an "error" result that says why."""
    result = TaskResult(task=task.name, tier=tier.name, model=tier.model)
    try:
        with tempfile.TemporaryDirectory(prefix="patchling-eval-") as tmp:
            work = Path(tmp) / "work"
            write_tree(work, task.files())
            await _attempts(task, tier, options, work, result)
    except Exception as exc:  # one broken task must not end a run of hundreds
        log.exception("eval task %s on tier %s failed", task.name, tier.name)
        result.outcome, result.detail = "error", f"{type(exc).__name__}: {exc}"
    return result


# -- a suite ----------------------------------------------------------------------


async def not_run_reason(tier: Tier) -> str | None:
    """Why `tier` cannot run now (no key, no server), or None."""
    if not tier.available():
        return f"{tier.api_key_env} is not set"
    reason = await models.reachable(tier)
    return f"{models.base_url(tier)}: {reason}" if reason else None


async def run_eval(
    suite: str,
    tasks: Sequence[Task],
    tiers: Sequence[Tier],
    options: EvalOptions,
    on_result: OnResult | None = None,
) -> EvalRun:
    """Every task on every reachable tier, `options.jobs` at a time. A tier that
    cannot be reached is listed as not run, with the reason."""
    reasons = await asyncio.gather(*(not_run_reason(t) for t in tiers))
    infos = [TierInfo(t.name, t.model, reason) for t, reason in zip(tiers, reasons, strict=True)]
    live = [t for t, info in zip(tiers, infos, strict=True) if info.not_run is None]
    limit = asyncio.Semaphore(max(1, options.jobs))

    async def one(task: Task, tier: Tier) -> TaskResult:
        async with limit:
            result = await run_task(task, tier, options)
        if on_result is not None:
            on_result(result)
        return result

    results = await asyncio.gather(*(one(task, tier) for task in tasks for tier in live))
    return EvalRun(
        run_id=uuid.uuid4().hex,
        suite=suite,
        tasks=[t.name for t in tasks],
        tiers=infos,
        results=list(results),
        created_at=time.time(),
    )
