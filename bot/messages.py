"""What is posted: Markdown for status comments, reports, PR bodies and
commit messages. Pure functions of their arguments; they import nothing of
the bot's at run time but the plain progress events and evidence levels, so
any module may use them."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Protocol, assert_never

from bot.evidence import Proof, not_exercised
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

if TYPE_CHECKING:
    from bot.engine import EditResult
    from bot.verify import TestRun

# GitHub refuses a comment or PR body over 65,536 characters.
MAX_BODY = 65_000


def clip(text: str, limit: int = MAX_BODY) -> str:
    if len(text) <= limit:
        return text
    return text[: limit - 40] + "\n\n… (cut to fit GitHub's limit)"


def fenced(text: str, lang: str = "") -> str:
    """A code block whose fence cannot be closed by the text inside."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{lang}\n{text.rstrip()}\n{fence}"


def details(summary: str, body: str) -> str:
    return f"<details><summary>{summary}</summary>\n\n{body}\n\n</details>"


def quote(text: str) -> str:
    return "\n".join(f"> {line}" for line in text.strip().splitlines())


class Request(Protocol):
    """What the messages need of a job's request (a ledger.JobRequest)."""

    job_id: str
    number: int
    instruction: str
    comment_url: str
    requester_login: str


def pr_title(instruction: str, limit: int = 72) -> str:
    first = next((line.strip() for line in instruction.splitlines() if line.strip()), "Patchling edit")
    first = first[0].upper() + first[1:]
    return first if len(first) <= limit else first[: limit - 1].rstrip() + "…"


def paths_line(paths: list[str]) -> str:
    shown = ", ".join(f"`{p}`" for p in paths[:8])
    return (shown + (f" and {len(paths) - 8} more" if len(paths) > 8 else "")) or "nothing"


def summarize_tests(run: TestRun) -> str:
    """A test run on one line, for the status comment and the CLI's progress."""
    if run.could_not_run:
        return f"could not run: {run.could_not_run}"
    text = f"{run.passed} passed, {run.failed} failed, {run.errors} errors in {run.duration_s:.1f}s"
    text += " (timed out)" if run.timed_out else ""
    return text + ("" if run.sandboxed else " (ran unsandboxed)")


def progress_line(event: Progress) -> str:
    """An engine event as a line of the status comment."""
    tier = f" (tier `{event.tier}`)" if event.tier else ""
    match event:
        case Routed():
            return f"🧭 {event.line}"
        case ContextChosen():
            return f"✅ context chosen: {len(event.files)} files, {event.tokens:,} tokens{tier}"
        case Planned():
            return f"✅ plan: {paths_line(event.files)}{tier}"
        case Generated():
            return f"✅ edits generated{tier}"
        case Verified():
            return f"✅ applied: {paths_line(event.files)}{tier}"
        case Refused():
            why = (event.detail.strip().splitlines() or [""])[0]
            why = why if len(why) <= 200 else why[:199] + "…"
            return f"↪️ tier `{event.tier}` failed ({event.outcome}): {why}"
        case EnvironmentReady():
            return f"✅ {event.summary}{tier}"
        case TestWritten() if event.kept:
            return f"✅ new test `{event.path}` fails before the change, as it must{tier}"
        case TestWritten():
            return f"↪️ new test `{event.path}` discarded: {event.detail}{tier}"
        case TestsRan():
            return f"✅ tests {event.when}: {summarize_tests(event.run)}{tier}"
        case _:
            assert_never(event)


def status_comment(job: Request, lines: list[str], report: str | None = None, *, finished: bool) -> str:
    """The job's status comment: the request quoted, a line per finished stage."""
    doing = "worked" if finished else "is working"
    head = f"**Patchling** {doing} on @{job.requester_login}'s request (job `{job.job_id}`):"
    shown = lines if finished else [*lines, "⏳ working…"]
    body = "\n".join(f"- {line}" for line in shown)
    text = f"{head}\n\n{quote(job.instruction)}\n\n{body}"
    return f"{text}\n\n{report}" if report else text


def review_reply(sha: str, branch: str, result: EditResult, diff: str) -> str:
    """The answer in a review thread: what was pushed, and its diff."""
    return f"Pushed {sha} to `{branch}`. {verdict(result)}\n\n" + fenced(clip(diff, 50_000), "diff")


def commit_message(job: Request, result: EditResult) -> str:
    lines = [pr_title(job.instruction), ""]
    if result.notes:
        lines += [result.notes.strip(), ""]
    if job.comment_url:
        lines.append(f"Requested in {job.comment_url}")
    lines.append(f"Patchling job {job.job_id}, tier {result.tier}.")
    return "\n".join(lines)


def _tests_table(result: EditResult) -> str:
    rows = ["| | command | passed | failed | errors | skipped | duration |", "|---|---|---|---|---|---|---|"]
    for label, run in (("before", result.tests_before), ("after", result.tests_after)):
        if run is None:
            rows.append(f"| {label} | not run | | | | | |")
        elif run.could_not_run is not None:
            rows.append(f"| {label} | `{run.command}` | {run.summary()} | | | | {run.duration_s:.1f}s |")
        else:
            timed_out = " (timed out)" if run.timed_out else ""
            rows.append(
                f"| {label} | `{run.command}` | {run.passed} | {run.failed} | {run.errors} | {run.skipped} "
                f"| {run.duration_s:.1f}s{timed_out} |"
            )
    text = "\n".join(rows)
    if result.environment:
        text += "\n\n" + _environment_line(result.environment)
    for label, run in (("before", result.tests_before), ("after", result.tests_after)):
        if run is not None and run.failing:
            names = "\n".join(f"- `{name}`" for name in run.failing[:30])
            text += f"\n\nFailing {label}:\n{names}"
    return text


def _environment_line(env: dict[str, Any]) -> str:
    installed = ", ".join(f"`{name}`" for name in env.get("installed", []))
    how = "reused" if env.get("reused") else f"built in {float(env.get('seconds', 0)):.1f}s"
    return f"Test environment {how}, with {installed}."


UNSANDBOXED_NOTE = (
    "⚠️ **The repository's code ran unsandboxed**: this server is configured with"
    ' `sandbox = "none"`, so setup and tests ran as the server\'s own user.'
)


def _unsandboxed(result: EditResult) -> bool:
    runs = (result.tests_before, result.tests_after)
    return any(run is not None and not run.sandboxed for run in runs)


def verdict(result: EditResult) -> str:
    if result.status == "verified":
        return "✅ **Verified**: the tests pass with this change and none got worse."
    if result.status == "unexercised" and result.evidence is not None:
        why = not_exercised(result.evidence.unexercised)
        return f"⚠️ **Not verified**: {why}. Review it with care."
    if result.tests_after is None:
        return (
            "⚠️ **Not verified: no tests ran** (no test command was found or configured). Review it with care."
        )
    return f"⚠️ **Not verified**: {result.message}. Review it with care."


def evidence_section(proof: Proof) -> str:
    """The evidence level in words, and what qualifies it."""
    lines = [f"**Evidence: {proof.level.label}**"]
    if proof.new_test:
        lines.append(
            f"- `{proof.new_test}` was written first: it failed before this change and passes with it;"
            " it is committed with the change."
        )
    if proof.unexercised:
        why = not_exercised(proof.unexercised)
        lines.append(f"- {why[0].upper()}{why[1:]}.")
    if proof.coverage and proof.coverage != "measured":
        lines.append(f"- Changed-line coverage {proof.coverage}.")
    lines += [f"- {note[0].upper()}{note[1:]}." for note in proof.notes if note]
    return "\n".join(lines)


def change_report(job: Request, result: EditResult, sha: str) -> str:
    tried = ", ".join(f"`{a.tier}` ({a.outcome})" for a in result.attempts) or "none"
    parts = [
        verdict(result),
        *([evidence_section(result.evidence)] if result.evidence is not None else []),
        *([UNSANDBOXED_NOTE] if _unsandboxed(result) else []),
        f"### Notes\n{result.notes.strip() or '(none)'}",
        "### Files changed\n" + "\n".join(f"- `{p}`" for p in result.files_changed),
        "### Tests\n" + _tests_table(result),
        f"### Models\nSucceeded with tier `{result.tier}`; tiers tried: {tried}.\n"
        f"Tokens: {result.tokens_in:,} in, {result.tokens_out:,} out.",
        f"<sub>Commit {sha} · Patchling job `{job.job_id}` · requested by @{job.requester_login}"
        + (f" in {job.comment_url}" if job.comment_url else "")
        + "</sub>",
    ]
    return "\n\n".join(parts)


def pr_body(job: Request, result: EditResult, sha: str) -> str:
    # Closes only when verified: an unverified change should not close the issue on merge by surprise.
    link = f"Closes #{job.number}" if result.status == "verified" else f"Refs #{job.number}"
    return f"{link}: {quote(job.instruction).removeprefix('> ')}\n\n{change_report(job, result, sha)}"


def no_change_report(job: Request, result: EditResult) -> str:
    text = (
        f"Patchling could not make a change for this request (job `{job.job_id}`), so no pull request "
        f"was opened or commit pushed.\n\n**Why**: {result.message}"
    )
    if result.attempts:
        text += "\n\nTiers tried: " + ", ".join(
            f"`{a.tier}` ({a.outcome}: {a.detail[:200]})" for a in result.attempts
        )
    if result.last_output:
        text += "\n\n" + details("Last model output", fenced(clip(result.last_output, 30_000)))
    return text
