"""Scores of an eval run: per tier, and for the ladder of all the tiers that ran.

Pure data (no model runtime loaded), so a dashboard can rebuild a stored run
from its rows (`EvalRun.from_rows`, rows from `RecordStore.eval_results`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from statistics import fmean
from typing import Any, Literal

# How a task ended for a tier, after at most one retry:
# solved: the hidden tests pass; failing: a change was applied, the hidden tests fail;
# refused: every answer was malformed or refused by the checks (nothing applied);
# no_answer: no model answered; error: the run itself broke (a bug, said in `detail`).
Outcome = Literal["solved", "failing", "refused", "no_answer", "error"]
OUTCOMES: tuple[Outcome, ...] = ("solved", "failing", "refused", "no_answer", "error")
NOT_RUN = "not_run"
# A try whose change applied but whose hidden tests fail: a failure to the router.
HIDDEN_FAILED = "hidden_tests_failed"


@dataclass(frozen=True)
class Try:
    """One try of a task on a tier, as the router's attempt records take it
    (bot.evaluation.feed): the hidden tests' verdict is its outcome."""

    outcome: str  # "verified" (the hidden tests pass), HIDDEN_FAILED, or the engine's refusal
    edit_format: str
    tokens_in: int
    tokens_out: int
    latency_s: float
    created_at: float


@dataclass
class TaskResult:
    task: str
    tier: str
    model: str
    outcome: Outcome = "error"
    tries: int = 0
    solved_on: int | None = None  # 1: first try, 2: after the retry
    tokens_in: int = 0
    tokens_out: int = 0
    latency_s: float = 0.0  # the model calls' time, both tries together
    detail: str = ""
    # Each try, for the attempt records; kept out of the JSON and the stored rows.
    attempts: list[Try] = field(default_factory=list, compare=False)

    def fields(self) -> dict[str, Any]:
        """What is stored of it (an eval_results row's own columns)."""
        data = asdict(self)
        del data["attempts"]
        return data

    def to_json(self) -> dict[str, Any]:
        return {**self.fields(), "latency_s": round(self.latency_s, 3)}


@dataclass(frozen=True)
class TierInfo:
    name: str
    model: str
    not_run: str | None = None  # why the tier could not run; None when it ran


@dataclass(frozen=True)
class TierScore:
    tier: str
    model: str
    not_run: str | None
    tasks: int
    counts: dict[str, int]  # per Outcome
    solved_first_try: int
    mean_tokens_in: float
    mean_tokens_out: float
    mean_latency_s: float

    @property
    def share(self) -> float | None:
        """Solved over the suite's tasks; None for a tier that did not run (never estimated)."""
        if self.not_run is not None or not self.tasks:
            return None
        return self.counts["solved"] / self.tasks

    def to_json(self) -> dict[str, Any]:
        return {
            "tier": self.tier,
            "model": self.model,
            "status": "not run" if self.not_run is not None else "ran",
            "not_run_reason": self.not_run,
            "tasks": self.tasks,
            **self.counts,
            "solved_first_try": self.solved_first_try,
            "solved_share": None if self.share is None else round(self.share, 4),
            "mean_tokens_in": round(self.mean_tokens_in, 1),
            "mean_tokens_out": round(self.mean_tokens_out, 1),
            "mean_latency_s": round(self.mean_latency_s, 3),
        }


@dataclass(frozen=True)
class LadderScore:
    """The tiers that ran, in order, each task escalating to the next tier when
    one fails: solved when any of them solves it, paying for every tier tried."""

    tiers: list[str]
    tasks: int
    solved: int
    solved_by: dict[str, int]
    mean_tokens_in: float
    mean_tokens_out: float
    mean_latency_s: float

    @property
    def share(self) -> float | None:
        return self.solved / self.tasks if self.tiers and self.tasks else None

    def to_json(self) -> dict[str, Any]:
        return {
            "tiers": self.tiers,
            "tasks": self.tasks,
            "solved": self.solved,
            "solved_share": None if self.share is None else round(self.share, 4),
            "solved_by": self.solved_by,
            "mean_tokens_in": round(self.mean_tokens_in, 1),
            "mean_tokens_out": round(self.mean_tokens_out, 1),
            "mean_latency_s": round(self.mean_latency_s, 3),
        }


def _mean(values: Sequence[float]) -> float:
    return fmean(values) if values else 0.0


def score_tier(info: TierInfo, tasks: Sequence[str], results: Sequence[TaskResult]) -> TierScore:
    mine = [r for r in results if r.tier == info.name]
    counts: dict[str, int] = {o: sum(r.outcome == o for r in mine) for o in OUTCOMES}
    return TierScore(
        tier=info.name,
        model=info.model,
        not_run=info.not_run,
        tasks=len(tasks),
        counts=counts,
        solved_first_try=sum(r.solved_on == 1 for r in mine),
        mean_tokens_in=_mean([r.tokens_in for r in mine]),
        mean_tokens_out=_mean([r.tokens_out for r in mine]),
        mean_latency_s=_mean([r.latency_s for r in mine]),
    )


def score_ladder(
    tiers: Sequence[TierInfo], tasks: Sequence[str], results: Sequence[TaskResult]
) -> LadderScore:
    ran = [t.name for t in tiers if t.not_run is None]
    by_key = {(r.task, r.tier): r for r in results}
    solved_by = {name: 0 for name in ran}
    costs: list[tuple[int, int, float]] = []
    for task in tasks:
        tried = [by_key[(task, name)] for name in ran if (task, name) in by_key]
        climbed = next((i for i, r in enumerate(tried) if r.outcome == "solved"), None)
        if climbed is not None:
            solved_by[tried[climbed].tier] += 1
            tried = tried[: climbed + 1]
        costs.append(
            (
                sum(r.tokens_in for r in tried),
                sum(r.tokens_out for r in tried),
                sum(r.latency_s for r in tried),
            )
        )
    return LadderScore(
        tiers=ran,
        tasks=len(tasks),
        solved=sum(solved_by.values()),
        solved_by=solved_by,
        mean_tokens_in=_mean([c[0] for c in costs]) if ran else 0.0,
        mean_tokens_out=_mean([c[1] for c in costs]) if ran else 0.0,
        mean_latency_s=_mean([c[2] for c in costs]) if ran else 0.0,
    )


@dataclass
class EvalRun:
    run_id: str
    suite: str
    tasks: list[str]
    tiers: list[TierInfo]
    results: list[TaskResult] = field(default_factory=list)
    created_at: float = 0.0

    def scores(self) -> list[TierScore]:
        return [score_tier(info, self.tasks, self.results) for info in self.tiers]

    def ladder(self) -> LadderScore:
        return score_ladder(self.tiers, self.tasks, self.results)

    def to_json(self, *, with_results: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "run_id": self.run_id,
            "suite": self.suite,
            "tasks": len(self.tasks),
            "tiers": [s.to_json() for s in self.scores()],
            "ladder": self.ladder().to_json(),
        }
        if with_results:
            data["results"] = [r.to_json() for r in self.results]
        return data

    def to_rows(self) -> list[dict[str, Any]]:
        """Rows for RecordStore.add_eval_results: tiers in order (so from_rows
        keeps it), a tier that did not run as one row, tasks sorted."""
        base = {"run_id": self.run_id, "suite": self.suite, "created_at": self.created_at}
        rows: list[dict[str, Any]] = []
        for info in self.tiers:
            if info.not_run is not None:
                empty = TaskResult(task="", tier=info.name, model=info.model, detail=info.not_run)
                rows.append({**base, **empty.fields(), "task": None, "outcome": NOT_RUN})
            mine = sorted((r for r in self.results if r.tier == info.name), key=lambda r: r.task)
            rows += [{**base, **result.fields()} for result in mine]
        return rows

    @classmethod
    def from_rows(cls, rows: Sequence[dict[str, Any]]) -> EvalRun | None:
        """A stored run back from its rows (None for no rows)."""
        if not rows:
            return None
        tiers: dict[str, TierInfo] = {}
        results: list[TaskResult] = []
        fields = set(TaskResult.__dataclass_fields__)
        for row in rows:
            not_run = row["detail"] if row["outcome"] == NOT_RUN else None
            tiers.setdefault(row["tier"], TierInfo(row["tier"], row["model"], not_run))
            if row["outcome"] != NOT_RUN:
                results.append(TaskResult(**{k: v for k, v in row.items() if k in fields}))
        tasks = sorted({r.task for r in results})
        first = rows[0]
        return cls(first["run_id"], first["suite"], tasks, list(tiers.values()), results, first["created_at"])
