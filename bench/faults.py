"""The faults small models make when they write an edit, in one place: the edit benchmark
(`bench/apply.py`) measures the applier on them, and the property tests
(`tests/test_apply_properties.py`) check that it never applies one at a wrong place.

An edit is a file's text before and after. It is written as a unified diff or as
SEARCH/REPLACE blocks, then distorted by one fault. Every random choice is drawn from a
`Chooser`: a seeded `random.Random` in the benchmark, hypothesis' draws in the tests (so a
failing example shrinks).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher
from pathlib import PurePosixPath
from typing import Protocol, TypeVar

T = TypeVar("T")

ELISIONS = ("...", "# ... existing code ...")
# In report order. A fault that cannot be made for an edit (no indentation to lose,
# nothing to elide, no final newline to drop) gives None for it.
DIFF_FAULTS = (
    "clean",
    "fenced",
    "no_line_numbers",
    "wrong_line_numbers",
    "wrong_counts",
    "little_context",
    "lost_indent",
    "trailing_ws",
    "elision",
    "prefix",
    "basename",
    "crlf",
    "no_final_newline",
)
SR_FAULTS = (
    "clean",
    "fenced_path",
    "marker_length",
    "little_context",
    "lost_indent",
    "trailing_ws",
    "elision",
    "basename",
    "crlf",
    "no_final_newline",
)
FAULTS = {"diff": DIFF_FAULTS, "search_replace": SR_FAULTS}


class Chooser(Protocol):
    """What random.Random and a hypothesis draw adapter both provide."""

    def choice(self, seq: Sequence[T]) -> T: ...

    def randint(self, a: int, b: int) -> int: ...


@dataclass
class Faulty:
    """One distorted edit: the reply, and the file before and after as the applier sees it."""

    fault: str
    reply: str
    before: str
    after: str


def distort(
    fmt: str, path: str, before: str, after: str, fault: str, rnd: Chooser, *, careful: bool = True
) -> Faulty | None:
    """The edit before -> after of `path`, written in `fmt` ("diff" or "search_replace")
    with `fault`; None when the fault cannot be made for this edit. `careful`: SEARCH
    blocks get context until each is unique (else three lines, unique or not)."""
    texts = _texts(before, after, fault)
    if texts is None:
        return None
    if fmt == "diff":
        reply = _diff_reply(path, before, after, fault, rnd)
    else:
        reply = _sr_reply(path, before, after, fault, rnd, careful)
    if reply is None:
        return None
    if fault == "no_final_newline":
        reply = reply.rstrip("\n")
    return Faulty(fault, reply, *texts)


def _texts(before: str, after: str, fault: str) -> tuple[str, str] | None:
    """The file as the applier finds it and as it should end; the reply is written for LF text."""
    if fault == "crlf":
        return before.replace("\n", "\r\n"), after.replace("\n", "\r\n")
    if fault == "no_final_newline":
        # A blank last line cannot lose its newline: the file would have one line less.
        if not all(t.endswith("\n") and not t.endswith("\n\n") for t in (before, after)):
            return None
        return before[:-1], after[:-1]
    return before, after


# ---------------------------------------------------------------------------------------------
# Edits as data: groups of changed lines with context
# ---------------------------------------------------------------------------------------------


@dataclass
class Hunk:
    a_start: int  # 0-based first old line
    b_start: int
    # (tag, text): " " context, "-" removed, "+" added, "=" an elision marker (on both
    # sides), "" a blank context line written bare, without its leading space.
    ops: list[tuple[str, str]]

    def old(self) -> list[str]:
        return [t for tag, t in self.ops if tag != "+"]

    def new(self) -> list[str]:
        return [t for tag, t in self.ops if tag != "-"]


def split_lines(text: str) -> list[str]:
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


def make_hunks(before: str, after: str, context: int) -> list[Hunk]:
    a, b = split_lines(before), split_lines(after)
    hunks = []
    for group in SequenceMatcher(None, a, b, autojunk=False).get_grouped_opcodes(context):
        ops: list[tuple[str, str]] = []
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                ops += [(" ", line) for line in a[i1:i2]]
            else:
                ops += [("-", line) for line in a[i1:i2]] + [("+", line) for line in b[j1:j2]]
        hunks.append(Hunk(group[0][1], group[0][3], ops))
    return hunks


def unique_hunks(before: str, after: str) -> tuple[list[Hunk], int]:
    """SEARCH/REPLACE as a careful model writes it: context widened until each SEARCH is unique."""
    a = split_lines(before)
    for context in range(3, 13):
        hunks = make_hunks(before, after, context)
        if all(_occurrences(a, h.old()) == 1 for h in hunks):
            break
    return hunks, context


def _occurrences(lines: Sequence[str], block: Sequence[str]) -> int:
    m = len(block)
    return sum(1 for i in range(len(lines) - m + 1) if lines[i : i + m] == list(block))


# ---------------------------------------------------------------------------------------------
# Writing an edit
# ---------------------------------------------------------------------------------------------


def _range(start: int, length: int) -> str:
    # Unified diff convention: an empty range names the line before it.
    first = start + 1 if length else start
    return f"{first}" if length == 1 else f"{first},{length}"


def header(h: Hunk, shift: int = 0, miscount: tuple[int, int] = (0, 0)) -> str:
    a_len, b_len = len(h.old()) + miscount[0], len(h.new()) + miscount[1]
    return f"@@ -{_range(h.a_start + shift, a_len)} +{_range(h.b_start + shift, b_len)} @@"


def render_diff(
    hunks: Sequence[Hunk], old_path: str, new_path: str, headers: Sequence[str] | None = None
) -> str:
    out = [f"--- {old_path}", f"+++ {new_path}"]
    for k, h in enumerate(hunks):
        out.append(headers[k] if headers else header(h))
        out += [f" {text}" if tag == "=" else f"{tag}{text}" for tag, text in h.ops]
    return "\n".join(out) + "\n"


def render_sr(
    hunks: Sequence[Hunk],
    path: str,
    *,
    marker: int = 7,
    fenced: bool = False,
    search: Callable[[list[str]], list[str]] = list,
) -> str:
    """SEARCH/REPLACE blocks; `search` distorts the SEARCH side only."""
    out: list[str] = []
    for h in hunks:
        out.append(f"`{path}`" if fenced else path)
        if fenced:
            out.append("```python")
        out.append("<" * marker + " SEARCH")
        out += search(h.old())
        out.append("=" * marker)
        out += h.new()
        out.append(">" * marker + " REPLACE")
        if fenced:
            out.append("```")
        out.append("")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# The faults
# ---------------------------------------------------------------------------------------------


def _diff_reply(path: str, before: str, after: str, fault: str, rnd: Chooser) -> str | None:
    hunks = make_hunks(before, after, 3)
    old, new = f"a/{path}", f"b/{path}"
    if fault == "fenced":
        return f"Here is the change:\n\n```diff\n{render_diff(hunks, old, new)}```\n\nThis fixes it.\n"
    if fault == "no_line_numbers":
        return render_diff(hunks, old, new, [rnd.choice(("@@ ... @@", "@@")) for _ in hunks])
    if fault == "wrong_line_numbers":
        return render_diff(hunks, old, new, [header(h, _shift(h, rnd)) for h in hunks])
    if fault == "wrong_counts":
        return render_diff(hunks, old, new, [header(h, miscount=_miscount(rnd)) for h in hunks])
    if fault == "little_context":
        return render_diff(make_hunks(before, after, rnd.choice((0, 1))), old, new)
    if fault == "lost_indent":
        return _if_changed(
            hunks, [_strip_indent(h, rnd) for h in hunks], lambda hs: render_diff(hs, old, new)
        )
    if fault == "trailing_ws":
        return render_diff([_ws_drift(h, rnd) for h in hunks], old, new)
    if fault == "elision":
        elided = _elide(before, after, 3, rnd)
        return None if elided is None else render_diff(elided, old, new)
    if fault == "prefix":
        old, new = rnd.choice(((path, path), (old, path), (new, old)))
    elif fault == "basename":
        old = new = PurePosixPath(path).name
    return render_diff(hunks, old, new)


def _sr_reply(path: str, before: str, after: str, fault: str, rnd: Chooser, careful: bool) -> str | None:
    hunks, context = unique_hunks(before, after) if careful else (make_hunks(before, after, 3), 3)
    if fault == "fenced_path":
        return render_sr(hunks, path, fenced=True)
    if fault == "marker_length":
        return render_sr(hunks, path, marker=rnd.choice((5, 6, 8, 9)))
    if fault == "little_context":
        a = split_lines(before)
        little = [_min_context(h, a) for h in make_hunks(before, after, rnd.choice((0, 1)))]
        return render_sr(little, path)
    if fault == "lost_indent":
        return _if_changed(hunks, [_strip_indent(h, rnd) for h in hunks], lambda hs: render_sr(hs, path))
    if fault == "trailing_ws":
        return render_sr(hunks, path, search=lambda lines: [_drift(line, rnd) for line in lines])
    if fault == "elision":
        elided = _elide(before, after, context, rnd)
        return None if elided is None else render_sr(elided, path)
    if fault == "basename":
        return render_sr(hunks, PurePosixPath(path).name)
    return render_sr(hunks, path)


def _if_changed(
    hunks: list[Hunk], faulty: list[Hunk | None], render: Callable[[list[Hunk]], str]
) -> str | None:
    """Hunks a fault could not touch stay as they were; None when it touched none."""
    if not any(faulty):
        return None
    return render([f or h for f, h in zip(faulty, hunks, strict=True)])


def _shift(h: Hunk, rnd: Chooser) -> int:
    # Mostly off by a few lines (the usual model error, and the likeliest to hit a look-alike).
    shift = rnd.choice((-1, 1)) * rnd.choice((1, 2, 3, 4, 7, 12, 30, 40))
    return shift if h.a_start + shift >= 0 and h.b_start + shift >= 0 else abs(shift)


def _miscount(rnd: Chooser) -> tuple[int, int]:
    return rnd.choice((-2, -1, 1, 2, 3)), rnd.choice((-2, -1, 1, 2, 3))


def _indent_of(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def common_indent(lines: Sequence[str]) -> int:
    """Length of the leading whitespace shared by every non-blank line."""
    indents = [_indent_of(line) for line in lines if line.strip()]
    if not indents:
        return 0
    size = 0
    while all(len(ind) > size and ind[size] == indents[0][size] for ind in indents):
        size += 1
    return size


def _strip_indent(h: Hunk, rnd: Chooser) -> Hunk | None:
    """The whole hunk dedented alike: all the shared indentation, or part of it."""
    common = common_indent([t for _, t in h.ops])
    if common == 0:
        return None
    cut = common if rnd.choice((True, False)) else rnd.randint(1, common)
    return Hunk(h.a_start, h.b_start, [(tag, t[cut:] if t.strip() else t) for tag, t in h.ops])


def _drift(line: str, rnd: Chooser) -> str:
    return rnd.choice((line.rstrip(), line + " ", line + "\t ", line + "  ", line))


def _ws_drift(h: Hunk, rnd: Chooser) -> Hunk:
    """Context and removed lines gain or lose trailing blanks; blank context may lose its space."""
    ops = []
    for tag, text in h.ops:
        if tag == " " and not text.strip():
            ops.append(rnd.choice(((tag, text), ("", ""))))
        elif tag in (" ", "-"):
            ops.append((tag, _drift(text, rnd)))
        else:
            ops.append((tag, text))
    return Hunk(h.a_start, h.b_start, ops)


def _elide(before: str, after: str, context: int, rnd: Chooser) -> list[Hunk] | None:
    """Unchanged lines replaced by an elision marker: between the first two change groups
    when there are two, else inside a group's leading or trailing context."""
    joined = _join_groups(before, after, context, rnd)
    if joined is not None:
        return joined
    hunks = make_hunks(before, after, max(context, 6))
    elided = [_elide_context(h, rnd) for h in hunks]
    if not any(elided):
        return None
    return [e or h for e, h in zip(elided, hunks, strict=True)]


def _join_groups(before: str, after: str, context: int, rnd: Chooser) -> list[Hunk] | None:
    a = split_lines(before)
    hunks = make_hunks(before, after, context)
    if len(hunks) < 2:
        return None
    first, second = hunks[0], hunks[1]
    gap_start = first.a_start + len(first.old())
    gap_end = second.a_start
    if gap_end - gap_start < 1:
        return None
    gap_line = next((line for line in a[gap_start:gap_end] if line.strip()), "")
    marker = _indent_of(gap_line) + rnd.choice(ELISIONS)
    return [Hunk(first.a_start, first.b_start, [*first.ops, ("=", marker), *second.ops]), *hunks[2:]]


def _elide_context(h: Hunk, rnd: Chooser) -> Hunk | None:
    """A run of >= 3 context lines strictly inside the leading or trailing context, elided."""
    ops = h.ops
    lead = next((k for k, (t, _) in enumerate(ops) if t != " "), len(ops))
    trail = next((k for k, (t, _) in enumerate(reversed(ops)) if t != " "), len(ops))
    marker = rnd.choice(ELISIONS)
    if lead >= 5 and rnd.choice((True, False)):
        new = [ops[0], ("=", _indent_of(ops[1][1]) + marker), *ops[lead - 1 :]]
    elif trail >= 5:
        end = len(ops) - trail
        new = [*ops[: end + 1], ("=", _indent_of(ops[end + 1][1]) + marker), ops[-1]]
    else:
        return None
    return Hunk(h.a_start, h.b_start, new)


def _min_context(h: Hunk, a: Sequence[str]) -> Hunk:
    """An empty SEARCH means "append": a pure insertion keeps one line of context."""
    if any(tag in " -" for tag, _ in h.ops) or not a:
        return h
    if h.a_start > 0:
        return Hunk(h.a_start - 1, h.b_start - 1, [(" ", a[h.a_start - 1]), *h.ops])
    return Hunk(h.a_start, h.b_start, [*h.ops, (" ", a[h.a_start])])
