"""An eval run for people: a progress bar while it runs, a table afterwards."""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from bot.evaluation.scores import EvalRun, LadderScore, TaskResult, TierScore

COLUMNS = ("solved", "1st", "fail", "refused", "no ans", "err", "in", "out", "latency")


class EvalProgress:
    """An `on_result` callback: one bar over every task × tier pair."""

    def __init__(self, console: Console, total: int) -> None:
        self.progress = Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        )
        self.bar = self.progress.add_task("eval", total=total)

    def __enter__(self) -> EvalProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def __call__(self, result: TaskResult) -> None:
        self.progress.update(
            self.bar, advance=1, description=f"{result.tier}: {result.task} {result.outcome}"
        )


def _solved(solved: int, tasks: int, share: float | None) -> str:
    return "not run" if share is None else f"{solved}/{tasks} {share:.0%}"


def _tier_row(score: TierScore) -> list[str]:
    if score.not_run is not None:
        return [score.tier, "not run", *([""] * (len(COLUMNS) - 1))]
    counts = score.counts
    return [
        score.tier,
        _solved(counts["solved"], score.tasks, score.share),
        str(score.solved_first_try),
        str(counts["failing"]),
        str(counts["refused"]),
        str(counts["no_answer"]),
        str(counts["error"]),
        f"{score.mean_tokens_in:.0f}",
        f"{score.mean_tokens_out:.0f}",
        f"{score.mean_latency_s:.1f}s",
    ]


def _ladder_row(ladder: LadderScore) -> list[str]:
    costs = [f"{ladder.mean_tokens_in:.0f}", f"{ladder.mean_tokens_out:.0f}", f"{ladder.mean_latency_s:.1f}s"]
    solved = _solved(ladder.solved, ladder.tasks, ladder.share)
    return ["ladder", solved, *([""] * 5), *(costs if ladder.tiers else [""] * 3)]


def render_eval(run: EvalRun, console: Console) -> None:
    table = Table(
        title=f"eval: suite {run.suite}, {len(run.tasks)} tasks",
        title_justify="left",
        caption=(
            "solved: the hidden tests pass (1st: without the retry); fail: a change applied, the hidden"
            " tests fail; refused: malformed or refused answers; no ans: no model answered; err: the run"
            " broke; in, out, latency: means per task"
        ),
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    table.add_column("tier", overflow="fold", min_width=8)
    for column in COLUMNS:
        table.add_column(column, justify="right", no_wrap=True)
    for score in run.scores():
        table.add_row(*_tier_row(score))
    table.add_section()
    table.add_row(*_ladder_row(run.ladder()))
    console.print(table)
    ladder = run.ladder()
    if ladder.tiers:
        console.print(f"ladder: {' → '.join(ladder.tiers)}", highlight=False, soft_wrap=True)
    for score in run.scores():
        if score.not_run is not None:
            console.print(f"{score.tier}: not run ({score.not_run})", highlight=False, soft_wrap=True)
