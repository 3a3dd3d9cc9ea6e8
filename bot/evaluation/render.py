"""An eval run for people: a progress bar while it runs, a table afterwards."""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from bot.evaluation.scores import EvalRun, LadderScore, TaskResult, TierScore

COLUMNS = ("solved", "share", "1st try", "failing", "refused", "no answer", "errors", "in", "out", "latency")


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


def _share(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def _tier_row(score: TierScore) -> list[str]:
    if score.not_run is not None:
        return [score.tier, score.model, "not run", *([""] * (len(COLUMNS) - 1))]
    counts = score.counts
    return [
        score.tier,
        score.model,
        f"{counts['solved']}/{score.tasks}",
        _share(score.share),
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
    if not ladder.tiers:
        return ["ladder", "", "not run", *([""] * (len(COLUMNS) - 1))]
    blank = [""] * 5
    costs = [f"{ladder.mean_tokens_in:.0f}", f"{ladder.mean_tokens_out:.0f}", f"{ladder.mean_latency_s:.1f}s"]
    return [
        "ladder",
        " → ".join(ladder.tiers),
        f"{ladder.solved}/{ladder.tasks}",
        _share(ladder.share),
        *blank,
        *costs,
    ]


def render_eval(run: EvalRun, console: Console) -> None:
    table = Table(
        title=f"eval: suite {run.suite}, {len(run.tasks)} tasks",
        title_justify="left",
        caption=(
            "solved: the hidden tests pass (1st try: without the retry); failing: a change applied,"
            " the hidden tests fail; refused: malformed or refused answers; in, out, latency: means per task"
        ),
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    table.add_column("tier", overflow="fold")
    table.add_column("model", overflow="fold")
    for column in COLUMNS:
        table.add_column(column, justify="right", no_wrap=True)
    for score in run.scores():
        table.add_row(*_tier_row(score))
    table.add_section()
    table.add_row(*_ladder_row(run.ladder()))
    console.print(table)
    for score in run.scores():
        if score.not_run is not None:
            console.print(f"{score.tier}: not run ({score.not_run})", highlight=False, soft_wrap=True)
