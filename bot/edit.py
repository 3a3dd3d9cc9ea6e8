"""Plan, generate and apply one tier's edit, all in memory.

Plan: without a model when the instruction names files or unambiguous symbols,
else one PlanEdit call. Generate: one model call per planned file, all files at
once (N files cost about one round-trip). Apply: each reply through bot.apply;
a reply that does not apply is retried once with the error and the nearest
match as feedback. The result is all-or-nothing and nothing is written here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bot import models
from bot.apply import ApplyError, compute_changes
from bot.config import Tier
from bot.context import Context, ContextMemo, select_context
from bot.conventions import prompt_tokens
from bot.files import PathRefused, check_path, is_protected, read_bytes
from bot.index import RepoIndex
from bot.models import ModelError, Usage
from bot.query import Query, parse_query
from bot.ranking import Focus
from bot.tokens import count_tokens, truncate_to_tokens

log = logging.getLogger(__name__)

MAX_PLAN_FILES = 5
# Tokens of the fixed prompt text around the fields (measured: PlanEdit 123,
# edit functions up to 101 with a feedback section), with headroom for chat
# framing and tokenizer differences at field boundaries.
PLAN_OVERHEAD_TOKENS = 180
EDIT_OVERHEAD_TOKENS = 160
# Below this many tokens neighbour context is not worth sending.
MIN_CONTEXT_TOKENS = 48
# Lines kept above and below a relevant span as a floor for small budgets.
SPAN_MIN_LINES = 20
FEEDBACK_MAX_TOKENS = 600


class EditError(Exception):
    """A tier's edit failed. `outcome` is an Attempt outcome (apply_failed,
    too_large, no_change, or a ModelError's kind)."""

    def __init__(self, outcome: str, message: str, *, last_output: str = "", usage: Usage | None = None):
        super().__init__(message)
        self.outcome = outcome
        self.message = message
        self.last_output = last_output
        self.usage = usage or Usage()


@dataclass
class PlannedFile:
    path: str
    change: str
    exists: bool


@dataclass
class Plan:
    files: list[PlannedFile]
    notes: str
    source: str  # "path", "symbol" or "model"
    usage: Usage = field(default_factory=Usage)
    dropped: list[str] = field(default_factory=list)  # paths refused, with the reason

    def paths(self) -> list[str]:
        return [f.path for f in self.files]


@dataclass
class FileResult:
    path: str
    original: str | None  # None: a new file
    new: str | None  # None: failed
    reply: str = ""
    usage: Usage = field(default_factory=Usage)
    outcome: str | None = None  # set on failure, as in EditError
    error: str = ""
    retried: bool = False


@dataclass
class Generated:
    files: list[FileResult]
    changes: dict[str, str]  # only files whose content changed
    originals: dict[str, str | None]
    usage: Usage


# -- paths ------------------------------------------------------------------


def normalise_path(root: Path, raw: str) -> str:
    """A repository-relative posix path, or ValueError saying why not."""
    path = raw.strip().strip("`'\"").replace("\\", "/")
    for prefix in ("./", "a/", "b/"):
        if path.startswith(prefix) and not (root / path).exists():
            path = path[len(prefix) :]
    if not path:
        raise ValueError("empty path")
    try:
        path = check_path(root, path)
    except PathRefused as exc:
        raise ValueError(str(exc)) from None
    if (root / path).exists() and not (root / path).is_file():
        raise ValueError(f"{raw}: not a file")
    return path


def validate_plan(
    root: Path,
    changes: Sequence[tuple[str, str]],
    protected: Sequence[str],
    *,
    allow_workflows: bool = False,
) -> tuple[list[PlannedFile], list[str]]:
    """Keep usable paths (inside the repository, not protected, once each, at
    most MAX_PLAN_FILES); return (kept, dropped-with-reason)."""
    kept: list[PlannedFile] = []
    dropped: list[str] = []
    for raw, change in changes:
        try:
            path = normalise_path(root, raw)
        except ValueError as exc:
            dropped.append(str(exc))
            continue
        if is_protected(path, protected, allow_workflows=allow_workflows):
            dropped.append(f"{path}: protected")
            continue
        if any(f.path == path for f in kept):
            continue
        if len(kept) >= MAX_PLAN_FILES:
            dropped.append(f"{path}: more than {MAX_PLAN_FILES} files")
            continue
        kept.append(PlannedFile(path=path, change=change.strip(), exists=(root / path).is_file()))
    return kept, dropped


# -- planning ---------------------------------------------------------------


def _named_paths(index: RepoIndex, query: Query) -> list[str]:
    """Files the instruction names: by path, or by a file name only one file has."""
    by_name: dict[str, list[str]] = {}
    for path in index.files:
        by_name.setdefault(path.rsplit("/", 1)[-1], []).append(path)
    found: list[str] = []
    for raw in query.paths:
        if raw in index.files:
            hit = raw
        elif "/" not in raw and len(by_name.get(raw, [])) == 1:
            hit = by_name[raw][0]
        else:
            continue
        if hit not in found:
            found.append(hit)
    return found


def _symbol_files(index: RepoIndex, query: Query) -> list[str] | None:
    """Files defining the instruction's code words, when every one of them is
    defined in exactly one file; None otherwise."""
    if not query.code_words:
        return None
    files: list[str] = []
    for ident in query.code_words:
        defining = {
            info.path
            for info in index.files.values()
            for symbol in info.symbols
            if symbol.kind != "section" and ident in (symbol.name, symbol.qualname)
        }
        if len(defining) != 1:
            return None
        path = defining.pop()
        if path not in files:
            files.append(path)
    return files


def deterministic_plan(
    root: Path, index: RepoIndex, query: Query, protected: Sequence[str], *, allow_workflows: bool = False
) -> Plan | None:
    """A plan without a model call when the instruction itself says where."""
    for source, paths in (
        ("path", _named_paths(index, query)),
        ("symbol", _symbol_files(index, query) or []),
    ):
        if not paths:
            continue
        kept, dropped = validate_plan(
            root, [(p, query.text) for p in paths], protected, allow_workflows=allow_workflows
        )
        if kept:
            note = f"planned without a model: the instruction names {', '.join(f.path for f in kept)}"
            return Plan(files=kept, notes=note, source=source, dropped=dropped)
    return None


def plan_context_budget(tier: Tier, instruction: str) -> int:
    return max(0, tier.input_budget - PLAN_OVERHEAD_TOKENS - count_tokens(instruction))


async def make_plan(
    tier: Tier,
    root: Path,
    instruction: str,
    *,
    index: RepoIndex,
    context: Context | None,
    protected: Sequence[str] = (),
    allow_workflows: bool = False,
    query: Query | None = None,
) -> Plan:
    """Which files to change. Raises EditError when nothing usable comes back.
    `query` is the instruction as the engine parsed it (parsed here when absent)."""
    query = query if query is not None else parse_query(instruction)
    plan = deterministic_plan(root, index, query, protected, allow_workflows=allow_workflows)
    if plan is not None:
        return plan
    budget = plan_context_budget(tier, instruction)
    if budget <= 0:
        raise EditError("too_large", f"the instruction is too large for tier {tier.name}")
    rendered = context.render() if context is not None else ""
    if count_tokens(rendered) > budget:
        rendered = truncate_to_tokens(rendered, budget)
    try:
        result, usage = await models.plan(tier, instruction, rendered)
    except ModelError as exc:
        raise EditError(exc.kind, exc.message, last_output=exc.raw_output, usage=exc.usage) from None
    kept, dropped = validate_plan(
        root, [(f.path, f.change) for f in result.files], protected, allow_workflows=allow_workflows
    )
    if not kept:
        why = f" (refused: {'; '.join(dropped)})" if dropped else ""
        raise EditError(
            "model_error",
            f"tier {tier.name}: the plan names no file that can be changed{why}",
            last_output=result.model_dump_json(),
            usage=usage,
        )
    return Plan(files=kept, notes=result.notes.strip(), source="model", usage=usage, dropped=dropped)


# -- generating -------------------------------------------------------------


def relevant_span(
    content: str, query: str, budget: int, focus: Focus | None = None
) -> tuple[int, int, str] | None:
    """(first line, last line, text) of the part of `content` most about
    `query` (or around `focus`) that fits `budget` tokens; None if nothing does."""
    lines = content.splitlines(keepends=True)
    if not lines or budget <= 0:
        return None
    if focus is not None:
        centre = max(0, min(len(lines) - 1, (focus.start_line + focus.end_line) // 2 - 1))
    else:
        words = {w.lower() for w in re.findall(r"[A-Za-z_]{3,}", query)}
        scores = [sum(1 for w in re.findall(r"[A-Za-z_]{3,}", line) if w.lower() in words) for line in lines]
        centre = max(range(len(lines)), key=lambda i: scores[i]) if any(scores) else 0
    start = end = centre
    used = count_tokens(lines[centre])
    if used > budget:
        return None
    # Grow the window one line at a time on alternate sides until the budget is spent.
    while start > 0 or end < len(lines) - 1:
        grew = False
        for side in ("down", "up"):
            if side == "down" and end < len(lines) - 1:
                cost = count_tokens(lines[end + 1])
                if used + cost <= budget:
                    end, used, grew = end + 1, used + cost, True
            elif side == "up" and start > 0:
                cost = count_tokens(lines[start - 1])
                if used + cost <= budget:
                    start, used, grew = start - 1, used + cost, True
        if not grew:
            break
    if end - start + 1 < min(SPAN_MIN_LINES, len(lines)):
        return None
    return start + 1, end + 1, "".join(lines[start : end + 1])


def apply_feedback(exc: ApplyError) -> str:
    """What the model is told when its reply did not apply: the error and the
    closest lines of the file ("did you mean")."""
    text = (
        f"Your edit could not be applied: {exc.feedback()}\n"
        "Copy the lines to change exactly from the current content."
    )
    return truncate_to_tokens(text, FEEDBACK_MAX_TOKENS)


def apply_reply(root: Path, tier: Tier, reply: str, path: str, original: str | None) -> str:
    """New content of `path` from a reply in the tier's format. Raises
    ApplyError when the reply does not apply or edits another file."""
    # The in-memory original stands in for the disk (a new file has none).
    files = {path: original} if original is not None else None
    changes = compute_changes(root, reply, path_hint=path, fmt=tier.edit_format, files=files)
    others = sorted(p for p in changes if p != path)
    if others:
        raise ApplyError(f"The reply edits {', '.join(others)}; edit only {path}.", path=path)
    return changes.get(path, original or "")


@dataclass(frozen=True)
class TierEdit:
    """What every planned file of one tier's edit is written with."""

    tier: Tier
    root: Path
    instruction: str
    index: RepoIndex
    focus: Focus | None = None
    feedback: str = ""
    cache_dir: Path | None = None
    conventions: str = ""
    query: Query | None = None
    memo: ContextMemo | None = None

    def focus_on(self, path: str) -> Focus | None:
        """The focus, where it lies in `path`."""
        return self.focus if self.focus is not None and self.focus.path == path else None


async def generate_file(edit: TierEdit, planned: PlannedFile) -> FileResult:
    """One planned file: one model call (plus one retry when the reply does
    not apply). Never raises for model or apply problems: see FileResult."""
    path = planned.path
    try:
        original = read_bytes(edit.root, path).decode("utf-8") if planned.exists else None
    except (OSError, UnicodeDecodeError) as exc:
        return FileResult(path, None, None, outcome="apply_failed", error=f"{path}: cannot read ({exc})")
    result = FileResult(path=path, original=original, new=None)
    try:
        await _write(edit, planned, result)
    except Exception as exc:  # a reply must never crash the engine
        _failed(result, exc)
    return result


async def _write(edit: TierEdit, planned: PlannedFile, result: FileResult) -> None:
    """The file's new content, on `result`: a reply that does not apply is
    asked again once, told why."""
    reply = await _call(edit, planned, result, "")
    try:
        result.new = apply_reply(edit.root, edit.tier, reply, planned.path, result.original)
    except ApplyError as exc:
        result.retried = True
        reply = await _call(edit, planned, result, apply_feedback(exc))
        result.new = apply_reply(edit.root, edit.tier, reply, planned.path, result.original)


def _failed(result: FileResult, exc: Exception) -> None:
    """Why the file failed, on `result`: an outcome as in EditError, and the error."""
    path = result.path
    match exc:
        case EditError():
            result.outcome, result.error = exc.outcome, exc.message
        case ModelError():
            result.outcome = exc.kind
            result.error = exc.message
            result.usage = result.usage + exc.usage
            if exc.raw_output:
                result.reply = exc.raw_output
        case ApplyError():
            result.outcome = "apply_failed"
            result.error = f"{path}: {exc.message}"
        case _:
            log.error("unexpected error while editing %s", path, exc_info=exc)
            result.outcome = "apply_failed"
            result.error = f"{path}: {type(exc).__name__}: {exc}"


async def _call(edit: TierEdit, planned: PlannedFile, result: FileResult, extra_feedback: str) -> str:
    """One model call for the file: its content (or the part that fits), and
    neighbour context in what the budget leaves. The reply and usage go on `result`."""
    feedback = "\n\n".join(p for p in (edit.feedback, extra_feedback) if p)
    fixed = _fixed_tokens(edit, planned, feedback)
    shown, change = _shown(edit, planned, result.original or "", fixed)
    grown = count_tokens(change) - count_tokens(planned.change)
    context_text = await _context(
        edit, planned.path, edit.tier.input_budget - fixed - count_tokens(shown) - grown
    )
    reply, usage = await models.write_file_edit(
        edit.tier, edit.instruction, change, planned.path, shown, context_text, feedback, edit.conventions
    )
    result.usage = result.usage + usage
    result.reply = reply
    return reply


def _fixed_tokens(edit: TierEdit, planned: PlannedFile, feedback: str) -> int:
    """The prompt's tokens besides the file's content and the context."""
    fixed = EDIT_OVERHEAD_TOKENS + count_tokens(edit.instruction) + count_tokens(planned.change)
    return fixed + count_tokens(planned.path) + count_tokens(feedback) + prompt_tokens(edit.conventions)


def _shown(edit: TierEdit, planned: PlannedFile, content: str, fixed: int) -> tuple[str, str]:
    """The content shown and the change asked: all of the file when it fits,
    else its part most about the change, the change then saying so."""
    if fixed + count_tokens(content) <= edit.tier.input_budget:
        return content, planned.change
    first, last, shown = _part(edit, planned, content, edit.tier.input_budget - fixed - 40)
    total = content.count("\n") + 1
    return (
        shown,
        f"{planned.change} (Only lines {first}-{last} of {total} are shown; the rest stays as it is.)",
    )


def _part(edit: TierEdit, planned: PlannedFile, content: str, budget: int) -> tuple[int, int, str]:
    """The part of the file most about the change within `budget` tokens (never
    for whole-file replies, which must give the whole file back). Raises
    EditError when no part fits."""
    tier = edit.tier
    span = None
    if tier.edit_format != "whole":
        query = f"{edit.instruction} {planned.change}"
        span = relevant_span(content, query, budget, edit.focus_on(planned.path))
    if span is not None:
        return span
    raise EditError(
        "too_large",
        f"{planned.path} ({count_tokens(content)} tokens) is too large for tier {tier.name}"
        f" (input budget {tier.input_budget} tokens)",
    )


async def _context(edit: TierEdit, path: str, remaining: int) -> str:
    """Neighbour context within `remaining` tokens; none where too few are left."""
    if remaining < MIN_CONTEXT_TOKENS:
        return ""
    # In a thread: the files of one tier are edited concurrently.
    ctx = await asyncio.to_thread(
        select_context,
        edit.root,
        edit.query if edit.query is not None else edit.instruction,
        remaining,
        focus=edit.focus,
        index=edit.index,
        memo=edit.memo,
        cache_dir=edit.cache_dir,
        exclude=[path],
    )
    text = ctx.render()
    return truncate_to_tokens(text, remaining) if count_tokens(text) > remaining else text


async def generate(
    tier: Tier,
    root: Path,
    instruction: str,
    plan: Plan,
    *,
    index: RepoIndex,
    focus: Focus | None = None,
    feedback: str = "",
    cache_dir: Path | None = None,
    concurrency: int | None = None,
    conventions: str = "",
    query: Query | None = None,
    memo: ContextMemo | None = None,
) -> Generated:
    """Edit every planned file, `concurrency` calls at a time (None: all at
    once). Raises EditError unless every file applied and something changed.
    `conventions` (bot.conventions) go into every file's prompt as given."""
    edit = TierEdit(tier, root, instruction, index, focus, feedback, cache_dir, conventions, query, memo)
    limit = asyncio.Semaphore(concurrency) if concurrency else None
    results = await asyncio.gather(*(_limited(limit, edit, p) for p in plan.files))
    return _generated(tier, results)


async def _limited(limit: asyncio.Semaphore | None, edit: TierEdit, planned: PlannedFile) -> FileResult:
    async with limit or contextlib.nullcontext():
        return await generate_file(edit, planned)


def _generated(tier: Tier, results: list[FileResult]) -> Generated:
    """The tier's change, from every file's result. Raises EditError unless
    every file applied and something changed."""
    usage = sum((r.usage for r in results), Usage())
    failed = [r for r in results if r.outcome is not None]
    if failed:
        raise _failure(failed, usage)
    changes = {r.path: r.new for r in results if r.new is not None and r.new != (r.original or "")}
    if not changes:
        last = results[-1].reply if results else ""
        raise EditError(
            "no_change", f"tier {tier.name}: the edit changes nothing", last_output=last, usage=usage
        )
    originals = {r.path: r.original for r in results if r.path in changes}
    return Generated(files=results, changes=changes, originals=originals, usage=usage)


def _failure(failed: list[FileResult], usage: Usage) -> EditError:
    """One error for the files that failed: all their errors, under the most telling outcome."""
    outcomes = {r.outcome for r in failed}
    # The most telling failure names the attempt: no answer before a bad one.
    ranked = ("too_large", *sorted(models.NO_ANSWER_KINDS), "bad_reply", "model_error", "apply_failed")
    outcome = next((o for o in ranked if o in outcomes), failed[0].outcome or "model_error")
    last = next((r.reply for r in reversed(failed) if r.reply), "")
    return EditError(outcome, "; ".join(r.error for r in failed), last_output=last, usage=usage)
