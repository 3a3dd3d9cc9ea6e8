"""What an eval run teaches the router: each try of a task on a tier becomes
an attempt record (source "eval") with the task's features, so the router
(bot.routing) has a record for a tier before any job has tried it.

A task's kind comes from its instruction's words, as a request's does
(bot.features); its language is the one most of its code files are in. A
try's outcome is the hidden tests' verdict: "verified" when they pass, a
failure when its change applied and they fail, the engine's refusal when
nothing applied. The router weighs these like any other attempt.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from typing import Any

from bot import features
from bot.evaluation.scores import EvalRun
from bot.evaluation.suites import Task
from bot.evidence import NOT_CODE
from bot.index import language_of


def task_language(paths: Iterable[str]) -> str:
    """The language most of `paths` are in, files without code left out."""
    counts = Counter(language for language in map(language_of, paths) if language not in NOT_CODE)
    return counts.most_common(1)[0][0] if counts else features.UNKNOWN_LANGUAGE


def task_features(task: Task) -> features.Features:
    return features.of_request(task.instruction, task_language(task.files()))


def attempt_records(run: EvalRun, tasks: Sequence[Task]) -> list[dict[str, Any]]:
    """Every try in `run`, oldest first, as RecordStore.add_eval_results takes
    them; one request per task and tier (its tries share a request id)."""
    by_name = {task.name: task for task in tasks}
    known: dict[str, dict[str, Any]] = {}
    records: list[dict[str, Any]] = []
    for result in run.results:
        task = by_name[result.task]
        if task.name not in known:
            known[task.name] = task_features(task).to_json()
        records += [
            {
                "repo": f"eval:{run.suite}",
                "instruction": task.instruction,
                "tier": result.tier,
                "model": result.model,
                "request_id": f"eval-{run.run_id}-{result.tier}-{task.name}",
                "features": known[task.name],
                **asdict(one),
            }
            for one in result.attempts
        ]
    return sorted(records, key=lambda record: record["created_at"])
