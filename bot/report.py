"""Human-readable output with rich: progress while an edit runs (stderr), and
summaries of results, context selections and records afterwards."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, assert_never

from rich import box
from rich.console import Console, JustifyMethod
from rich.panel import Panel
from rich.status import Status
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from bot.config import Routing
from bot.context import Context
from bot.engine import EditResult
from bot.evidence import Proof, describe_unexercised
from bot.messages import summarize_tests
from bot.progress import (
    ContextChosen,
    EnvironmentReady,
    Generated,
    Planned,
    Progress,
    Refused,
    Routed,
    TestsRan,
    TestWritten,
    Verified,
)
from bot.records import NO_ANSWER_OUTCOMES, TierSummary
from bot.routing import coverage_caption
from bot.verify import TestRun

STATUS_STYLES = {
    "verified": "bold green",
    "unexercised": "bold yellow",
    "unverified": "bold yellow",
    "failed": "bold red",
}
OUTCOME_STYLES = {"verified": "green", "unexercised": "yellow", "unverified": "yellow"} | {
    outcome: "dim" for outcome in NO_ANSWER_OUTCOMES
}


class ProgressReporter:
    """An `on_progress` callback (bot.progress): a spinner plus one line per finished stage."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._status: Status | None = None

    def __enter__(self) -> ProgressReporter:
        self._status = self.console.status("starting…")
        self._status.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    def __call__(self, event: Progress) -> None:
        tier = f"{event.tier}: " if event.tier and not isinstance(event, Routed) else ""
        self.console.print(
            Text.assemble(("• ", "dim"), (tier, "cyan"), progress_line(event)), highlight=False
        )
        if self._status is not None:
            self._status.update(_NEXT.get(event.stage, "working…"))


# What the spinner says after each stage.
_NEXT = {
    "tests_before": "planning…",
    "context": "planning…",
    "plan": "writing the change…",
    "generated": "checking the change…",
    "applied": "running the tests…",
    "tier_failed": "trying the next tier…",
}


def progress_line(event: Progress) -> str:
    """An engine event as a line of the CLI's progress."""
    match event:
        case Routed():
            return event.line
        case ContextChosen():
            return f"context: {len(event.files)} files, {event.tokens} tokens"
        case Planned():
            return f"plan: {', '.join(event.files) or 'nothing'}"
        case Generated():
            return "model replies received"
        case Verified():
            return f"applied in memory: {', '.join(event.files)}"
        case Refused():
            return f"failed ({event.outcome}): {event.detail[:300]}"
        case EnvironmentReady():
            return event.summary
        case TestWritten() if event.kept:
            return f"new test {event.path} fails before the change, as it must"
        case TestWritten():
            return f"new test {event.path} discarded: {event.detail}"
        case TestsRan():
            return f"tests {event.when}: {summarize_tests(event.run)}"
        case _:
            assert_never(event)


def evidence_line(proof: Proof) -> str:
    """The evidence level and what qualifies it, on one line."""
    extra = [f"new test {proof.new_test}"] if proof.new_test else []
    if proof.unexercised:
        extra.append("not run by any test: " + describe_unexercised(proof.unexercised))
    extra += [f"coverage {proof.coverage}" if proof.coverage != "measured" else "", *proof.notes]
    return "; ".join([proof.level.label, *(e for e in extra if e)])


def _tests_cell(run: TestRun | None) -> str:
    if run is None:
        return "—"
    return run.summary()


def attempts_table(result: EditResult) -> Table:
    table = Table(title="attempts", title_justify="left", expand=True)
    table.add_column("tier", no_wrap=True)
    table.add_column("format", no_wrap=True)
    table.add_column("in", justify="right", no_wrap=True)
    table.add_column("out", justify="right", no_wrap=True)
    table.add_column("time", justify="right", no_wrap=True)
    table.add_column("outcome", no_wrap=True)
    table.add_column("detail", ratio=1, overflow="fold")
    for a in result.attempts:
        table.add_row(
            a.tier,
            a.edit_format,
            str(a.tokens_in),
            str(a.tokens_out),
            f"{a.latency_s:.1f}s",
            Text(a.outcome, style=OUTCOME_STYLES.get(a.outcome, "red")),
            Text(a.detail[:300]),
        )
    return table


def render_result(result: EditResult, console: Console) -> None:
    style = STATUS_STYLES[result.status]
    # The verdict on one unwrapped line: easy to read, copy and grep.
    console.print(Text.assemble((result.status.upper(), style), "  ", result.message), soft_wrap=True)
    facts = Table.grid(padding=(0, 2))
    facts.add_row("tier", result.tier or "—")
    if result.route:
        facts.add_row("route", result.route.removeprefix("route: "))
    facts.add_row("files", ", ".join(result.files_changed) or "—")
    facts.add_row("tests before", _tests_cell(result.tests_before))
    facts.add_row("tests after", _tests_cell(result.tests_after))
    facts.add_row("tokens", f"{result.tokens_in} in, {result.tokens_out} out")
    if result.evidence is not None:
        facts.add_row("evidence", evidence_line(result.evidence))
    if result.notes:
        facts.add_row("notes", result.notes)
    console.print(Panel(facts, title="patchling edit", title_align="left", border_style=style))
    if result.attempts:
        console.print(attempts_table(result))
    if result.diff:
        console.print(Syntax(result.diff, "diff", theme="ansi_dark", word_wrap=True))
    elif result.status == "failed" and result.last_output:
        console.print(Panel(Text(result.last_output[-2000:]), title="last model output", border_style="dim"))
    if result.tests_after is not None and result.status == "failed":
        console.print(Panel(Text(result.tests_after.output_tail[-2000:]), title="test output"))


def render_context(context: Context, console: Console) -> None:
    table = Table(title=f"context: {context.tokens} of {context.budget} tokens", title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("path")
    table.add_column("mode")
    table.add_column("tokens", justify="right")
    for rank, file in enumerate(context.files, 1):
        table.add_row(str(rank), file.path, file.mode, str(file.tokens))
    console.print(table)


def render_stats(rows: Sequence[TierSummary], console: Console) -> None:
    if not rows:
        console.print("no attempts recorded yet")
        return
    table = Table(
        title="attempts per tier (a model answered)",
        title_justify="left",
        caption="in, out: mean tokens per attempt",
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    # Numbers keep their width; a tier name too long for what is left wraps
    # onto more lines instead of being cut with an ellipsis.
    table.add_column("tier", overflow="fold")
    for column in ("attempts", "verified", "unverified", "success", "in", "out", "latency"):
        table.add_column(column, justify="right", no_wrap=True)
    for row in rows:
        table.add_row(
            row.tier,
            str(row.attempts),
            str(row.verified),
            str(row.unverified),
            f"{row.success_rate:.0%}" if row.attempts else "—",
            f"{row.mean_tokens_in:.0f}",
            f"{row.mean_tokens_out:.0f}",
            f"{row.mean_latency_s:.1f}s",
        )
    console.print(table)
    apart = [row for row in rows if row.no_answer or row.dry_runs]
    if apart:
        console.print("not counted above:")
    for row in apart:
        counts = [
            f"{row.no_answer} call(s) no model answered (unreachable, no such model, refused key, timeout)"
            if row.no_answer
            else "",
            f"{row.dry_runs} dry run(s)" if row.dry_runs else "",
        ]
        console.print(f"  {row.tier}: " + "; ".join(c for c in counts if c), highlight=False, soft_wrap=True)


STANDING_STYLES = {"proven": "green", "weak": "yellow", "failing": "red", "unknown": "dim"}


def render_coverage(rows: Sequence[dict[str, Any]], settings: Routing, console: Console) -> None:
    """What the router reads (bot.routing.coverage): per kind, language and tier."""
    if not rows:
        console.print("routing: no attempt with a kind and language recorded yet")
        return
    table = Table(
        title="routing coverage (per kind and language, tiers cheapest first)",
        title_justify="left",
        caption=coverage_caption(settings),
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    for column in ("kind", "language", "tier", "verified", "rate", "over", "standing", "start"):
        justify: JustifyMethod = "right" if column in ("verified", "rate") else "left"
        table.add_column(column, justify=justify, overflow="fold")
    for row in rows:
        table.add_row(*_coverage_cells(row))
    console.print(table)


def _coverage_cells(row: dict[str, Any]) -> list[str | Text]:
    rate = row["rate"]
    return [
        row["kind"],
        row["language"],
        row["tier"],
        f"{row['verified']}/{row['samples']}",
        "—" if rate is None else f"{rate:.0%}",
        row["scope"],
        Text(row["standing"], style=STANDING_STYLES[row["standing"]]),
        "◀" if row["start"] else "",
    ]
