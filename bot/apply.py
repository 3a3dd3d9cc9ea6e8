"""Turn an LLM edit reply into new file contents, robustly and atomically.

Three reply formats are understood: unified diffs, Aider-style SEARCH/REPLACE blocks and
whole-file rewrites. Small models make predictable mistakes (wrong line numbers, too little
context, lost indentation, trailing-whitespace drift, ``...`` elisions, a/ b/ prefixes, bare
file names, CRLF files), so every block is located with a tolerant matcher.

Safety rule: a block is applied only when every place it fits, under every tolerance and every
reading of its ``...`` lines, gives the same file. An exact match and a match with shifted
indentation are both candidates, so no supported distortion can make a block look unique at a
wrong place. Line numbers only break ties, and only when the diff proves them right. Otherwise
the block is refused (ApplyError) with a "did you mean" excerpt for a retry.

What is written: diff context lines keep the file's text; SEARCH only locates, and REPLACE is
written as given (re-indented by the shift found, keeping each line's CRLF/LF ending); lines
hidden behind an elision are kept.
"""

from __future__ import annotations

import bisect
import contextlib
import difflib
import heapq
import itertools
import os
import re
import secrets
import stat
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from bot.config import ChangeCaps, EditFormat
from bot.files import PathRefused, clean_path, is_protected, list_files, open_file, read_bytes, resolve
from bot.files import symlink_on_path as symlink_on_path
from bot.guards import binary_problem, size_problem
from bot.guards import is_elision as _is_elision
from bot.rollback import Snapshot

__all__ = [
    "ApplyError",
    "EditFormat",
    "apply_edit",
    "compute_changes",
    "detect_format",
    "extract_whole_file",
    "symlink_on_path",
    "write_changes",
]


class ApplyError(Exception):
    """An edit that cannot be applied safely. Nothing has been written when it is raised."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        block: int | None = None,
        nearest: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.block = block
        self.nearest = nearest

    def __str__(self) -> str:
        return self.message

    def feedback(self) -> str:
        """The message plus the closest lines of the file: ready to send back to the model."""
        if not self.nearest:
            return self.message
        return (
            f"{self.message}\nClosest lines of {self.path} (line numbers are not part of the file):\n"
            f"{self.nearest}"
        )


# ---------------------------------------------------------------------------------------------
# Edit model: a block is a list of ops, like the body of a diff hunk.
# ---------------------------------------------------------------------------------------------

Op = tuple[str, str]
# CONTEXT: a diff context line, the file's text is kept. COPY: a line common to SEARCH and
# REPLACE, written as REPLACE has it (SEARCH only locates). GAP: an elision ("...") of kept lines.
CONTEXT, COPY, REMOVE, ADD, GAP = " ", "=", "-", "+", "."

Kind = Literal["diff", "search_replace"]


@dataclass
class _Block:
    number: int  # 1-based position in the reply
    kind: Kind
    ops: tuple[Op, ...]  # literal reading: elision lines are plain context
    elided: tuple[tuple[Op, ...], ...] = ()  # readings with some elision lines as gaps
    unreadable: bool = False  # too many ways to read its elisions: never applied
    hint: int | None = None  # 0-based old-side start line from a hunk header
    new_hint: int | None = None  # 0-based new-side start line
    old_no_eol: bool = False  # "\ No newline at end of file" on the old / new side
    new_no_eol: bool = False
    append: bool = False  # SEARCH/REPLACE with an empty SEARCH

    def old_lines(self) -> list[str]:
        return [text for tag, text in self.ops if tag != ADD]

    def new_lines(self) -> list[str]:
        return [text for tag, text in self.ops if tag != REMOVE]


@dataclass
class _Section:
    """The blocks of one file: one diff file header, or one SEARCH/REPLACE block."""

    kind: Kind
    old_path: str | None = None  # paths as written (cleaned); None when the reply names none
    new_path: str | None = None
    blocks: list[_Block] = field(default_factory=list)
    from_git_line: bool = False


DEV_NULL = "/dev/null"

# ---------------------------------------------------------------------------------------------
# Small text helpers
# ---------------------------------------------------------------------------------------------

# Fences open at column 0 only: " ```" in a diff is a context line.
_FENCE_OPEN = re.compile(r"^(`{3,}|~{3,})\s*([^`\s]*)[^`]*$")


def _is_lazy_comment(line: str) -> bool:
    """An elision written as a comment or phrase; a bare `...` is valid Python and allowed."""
    return _is_elision(line) and line.strip() not in ("...", "…")


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def _split_lines(text: str) -> list[str]:
    """Split on \\n only (str.splitlines also splits on form feeds and other separators)."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


@dataclass
class _Fenced:
    info: str
    lines: list[str]
    closed: bool


def _fenced_blocks(lines: Sequence[str]) -> list[_Fenced]:
    """Markdown fenced code blocks; a closing fence has no info string and sits at column 0."""
    blocks: list[_Fenced] = []
    i = 0
    while i < len(lines):
        m = _FENCE_OPEN.match(lines[i])
        if m is None:
            i += 1
            continue
        fence = m.group(1)
        j = i + 1
        while j < len(lines) and not _closes(lines[j], fence):
            j += 1
        blocks.append(_Fenced(m.group(2).lower(), list(lines[i + 1 : j]), j < len(lines)))
        i = j + 1
    return blocks


def _closes(line: str, fence: str) -> bool:
    s = line.rstrip()
    return len(s) >= len(fence) and set(s) == {fence[0]}


# ---------------------------------------------------------------------------------------------
# File text: lines with their own line endings, so untouched lines keep CRLF/LF exactly.
# ---------------------------------------------------------------------------------------------

Line = tuple[str, str]  # (body, end of line)


@dataclass
class _Text:
    lines: list[Line]
    bom: str = ""
    eol: str = "\n"  # ending for new lines: the file's dominant style
    final_newline: bool = True

    @classmethod
    def parse(cls, text: str) -> _Text:
        bom = "\ufeff" if text.startswith("\ufeff") else ""
        parts = text[len(bom) :].split("\n")
        lines: list[Line] = []
        for part in parts[:-1]:
            lines.append((part[:-1], "\r\n") if part.endswith("\r") else (part, "\n"))
        if parts[-1]:
            lines.append((parts[-1], ""))
        crlf = sum(1 for _, e in lines if e == "\r\n")
        eol = "\r\n" if crlf * 2 > len(lines) else "\n"
        return cls(lines, bom, eol, final_newline=not parts[-1])

    def bodies(self) -> list[str]:
        return [body for body, _ in self.lines]

    def render(self) -> str:
        out = list(self.lines)
        for i in range(len(out) - 1):
            if not out[i][1]:
                out[i] = (out[i][0], self.eol)
        if out:
            body, end = out[-1]
            if self.final_newline and not end:
                out[-1] = (body, self.eol)
            elif not self.final_newline and end:
                out[-1] = (body, "")
        return self.bom + "".join(body + end for body, end in out)


# ---------------------------------------------------------------------------------------------
# Parsing: SEARCH/REPLACE blocks
# ---------------------------------------------------------------------------------------------

# Markers sit at column 0 (as Aider writes them): an indented one is file content.
_SR_START = re.compile(r"^<{5,9}\s*SEARCH\b.*$", re.IGNORECASE)
_SR_DIVIDER = re.compile(r"^={5,9}\s*$")
_SR_END = re.compile(r"^>{5,9}\s*REPLACE\b.*$", re.IGNORECASE)
_PATH_LINE = re.compile(r"^(?:\./)?[\w.@+-]+(?:/[\w.@+-]+)*$")
_PATH_LABEL = re.compile(r"^(?:file(?:name)?|path)\s*:\s*", re.IGNORECASE)


def _clean_path(raw: str) -> str:
    """A path as a model writes it: strip markdown, quotes, timestamps, ./ and trailing colons."""
    p = raw.split("\t", 1)[0].strip()
    p = re.sub(r"\s+\d{4}-\d\d-\d\d[\s\d:.+-]*$", "", p)  # `--- a/x.py 2024-01-01 10:00:00`
    p = _PATH_LABEL.sub("", p.lstrip("#").strip())
    p = p.strip("`*\"' ").rstrip(":").strip("`*\"' ")
    p = p.replace("\\", "/")
    while p.startswith("./"):
        p = p[2:]
    return p


def _path_before(lines: Sequence[str], i: int, floor: int) -> str | None:
    """The file path named just above a SEARCH marker (fence and blank lines skipped)."""
    for k in range(i - 1, max(floor, i - 4) - 1, -1):
        line = lines[k].strip()
        if not line or _FENCE_OPEN.match(lines[k]):
            continue
        candidate = _clean_path(line)
        if _PATH_LINE.match(candidate) and ("." in candidate or "/" in candidate):
            return candidate
        return None
    return None


def _parse_search_replace(reply: str) -> list[_Section]:
    lines = reply.split("\n")
    sections: list[_Section] = []
    last_path: str | None = None
    floor = 0
    i = 0
    while i < len(lines):
        if not _SR_START.match(lines[i]):
            i += 1
            continue
        number = len(sections) + 1
        path = _path_before(lines, i, floor) or last_path
        end = _find_end(lines, i, number, path)
        search, replace = _split_body(lines[i + 1 : end], number, path)
        sections.append(
            _Section("search_replace", new_path=path, blocks=[_sr_block(number, search, replace)])
        )
        last_path = path
        floor = i = end + 1
    return sections


def _find_end(lines: Sequence[str], i: int, number: int, path: str | None) -> int:
    """The block's last REPLACE marker before the next SEARCH: REPLACE text may quote one."""
    end = None
    for j in range(i + 1, len(lines)):
        if _SR_START.match(lines[j]):
            break
        if _SR_END.match(lines[j]):
            end = j
    if end is not None:
        return end
    raise ApplyError(
        f"SEARCH/REPLACE block {number} ({path or 'no file named'}) has no `>>>>>>> REPLACE` line;"
        " the reply may be truncated. Close every block with `>>>>>>> REPLACE`.",
        path=path,
        block=number,
    )


def _split_body(body: list[str], number: int, path: str | None) -> tuple[list[str], list[str]]:
    dividers = [k for k, line in enumerate(body) if _SR_DIVIDER.match(line)]
    if len(dividers) > 1:
        # A docstring may hold an RST underline: prefer the canonical 7-character divider.
        dividers = [k for k in dividers if body[k].strip() == "======="]
    if len(dividers) != 1:
        what = "no `=======` line" if not dividers else "several `=======` lines"
        raise ApplyError(
            f"SEARCH/REPLACE block {number} ({path or 'no file named'}) has {what} between"
            " SEARCH and REPLACE; write exactly one.",
            path=path,
            block=number,
        )
    return body[: dividers[0]], body[dividers[0] + 1 :]


def _sr_ops(search: Sequence[str], replace: Sequence[str]) -> list[Op]:
    """SEARCH/REPLACE as ops; lines common to both keep the file's line endings."""
    ops: list[Op] = []
    matcher = difflib.SequenceMatcher(None, search, replace, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            ops.extend((COPY, line) for line in search[i1:i2])
            continue
        ops.extend((REMOVE, line) for line in search[i1:i2])
        ops.extend((ADD, line) for line in replace[j1:j2])
    return ops


def _sr_block(number: int, search: list[str], replace: list[str]) -> _Block:
    # Only a truly empty SEARCH appends: one blank line is a (usually ambiguous) search.
    if not search:
        return _Block(number, "search_replace", tuple((ADD, line) for line in replace), append=True)
    elided = _sr_elided(search, replace)
    ops = tuple(_sr_ops(search, replace))
    return _Block(number, "search_replace", ops, elided or (), unreadable=elided is None)


_MAX_READINGS = 128


def _sr_elided(search: list[str], replace: list[str]) -> tuple[tuple[Op, ...], ...] | None:
    """Readings that pair SEARCH and REPLACE pieces around elision lines.

    Any elision-like line may also be real text (`...` is Python), so every pairing of k
    SEARCH lines with k REPLACE lines is a reading; readings that fit and disagree on the
    result make the block ambiguous. None: too many pairings to check them all.
    """
    cuts_s = [k for k, line in enumerate(search) if _is_elision(line)]
    cuts_r = [k for k, line in enumerate(replace) if _is_elision(line)]
    pairings = [
        (chosen_s, chosen_r)
        for size in range(1, min(len(cuts_s), len(cuts_r)) + 1)
        for chosen_s in itertools.combinations(cuts_s, size)
        for chosen_r in itertools.combinations(cuts_r, size)
    ]
    if len(pairings) > _MAX_READINGS:
        return None
    readings = [_paired(search, replace, list(cs), list(cr)) for cs, cr in pairings]
    return tuple(r for r in readings if r is not None)


def _paired(
    search: list[str], replace: list[str], cuts_s: list[int], cuts_r: list[int]
) -> tuple[Op, ...] | None:
    ops: list[Op] = []
    for k, (piece_s, piece_r) in enumerate(zip(_cut(search, cuts_s), _cut(replace, cuts_r), strict=True)):
        if k:
            ops.append((GAP, search[cuts_s[k - 1]]))
        ops.extend(_sr_ops(piece_s, piece_r))
    return _valid_gaps(ops)


def _cut(lines: list[str], cuts: list[int]) -> list[list[str]]:
    bounds = [-1, *cuts, len(lines)]
    return [lines[a + 1 : b] for a, b in itertools.pairwise(bounds)]


def _valid_gaps(ops: Sequence[Op]) -> tuple[Op, ...] | None:
    """Normalise an elided reading; None when a gap cannot be anchored on both sides."""
    ops = list(ops)
    while ops and ops[0][0] == GAP:  # a leading/trailing gap claims nothing beyond the block
        ops.pop(0)
    while ops and ops[-1][0] == GAP:
        ops.pop()
    merged: list[Op] = []
    for op in ops:
        if op[0] == GAP and merged and merged[-1][0] == GAP:
            continue
        merged.append(op)
    for segment in _segments(merged):
        if not any(tag != ADD for tag, _ in segment):
            return None
    return tuple(merged) if merged else None


def _segments(ops: Sequence[Op]) -> list[list[Op]]:
    out: list[list[Op]] = [[]]
    for op in ops:
        if op[0] == GAP:
            out.append([])
        else:
            out[-1].append(op)
    return out


# ---------------------------------------------------------------------------------------------
# Parsing: unified diffs
# ---------------------------------------------------------------------------------------------

_HUNK_NUMBERS = re.compile(r"-(\d+)(?:,(\d+))?\s+\+(\d+)(?:,(\d+))?")
_DIFF_INFO = {"diff", "patch", "udiff"}


def _diff_lines(reply: str) -> list[str]:
    """The diff text: fenced diff blocks when there are any, else the whole reply."""
    lines = reply.split("\n")
    blocks = [b for b in _fenced_blocks(lines) if b.info in _DIFF_INFO or _has_hunk(b.lines)]
    if not blocks:
        return lines
    for b in blocks:
        if not b.closed:
            raise ApplyError(
                "The diff's ``` block is not closed: the reply looks truncated. Send the complete diff."
            )
    return [line for b in blocks for line in [*b.lines, ""]]


def _has_hunk(lines: Sequence[str]) -> bool:
    return any(line.startswith("@@") for line in lines)


def _is_file_header(lines: Sequence[str], i: int) -> bool:
    """`--- x` + `+++ y` followed by a hunk; the lookahead keeps `--- text` removals apart."""
    if not (lines[i].startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ ")):
        return False
    k = i + 2
    while k < len(lines) and not lines[k].strip():
        k += 1
    return k < len(lines) and lines[k].startswith("@@")


def _parse_diff(reply: str) -> list[_Section]:
    lines = _diff_lines(reply)
    sections: list[_Section] = []
    current: _Section | None = None
    number = 0
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("diff --git "):
            old, new = _git_line_paths(line[len("diff --git ") :])
            current = _Section("diff", old, new, from_git_line=True)
            sections.append(current)
        elif _is_file_header(lines, i):
            old, new = _clean_path(line[4:]), _clean_path(lines[i + 1][4:])
            if current is not None and current.from_git_line and not current.blocks:
                current.old_path, current.new_path, current.from_git_line = old, new, False
            else:
                current = _Section("diff", old, new)
                sections.append(current)
            i += 2
            continue
        elif line.startswith("@@"):
            if current is None:
                current = _Section("diff")
                sections.append(current)
            number += 1
            block, i = _read_hunk(lines, i, number)
            current.blocks.append(block)
            continue
        i += 1
    return [s for s in sections if s.blocks]


def _git_line_paths(rest: str) -> tuple[str, str]:
    if " b/" in rest:
        old, new = rest.split(" b/", 1)
        return _clean_path(old), _clean_path("b/" + new)
    parts = rest.split()
    return _clean_path(parts[0]), _clean_path(parts[-1])


def _ends_hunk(lines: Sequence[str], j: int) -> bool:
    line = lines[j]
    return line.startswith("@@") or line.startswith("diff --git ") or _is_file_header(lines, j)


def _continues_hunk(lines: Sequence[str], j: int) -> bool:
    """An unprefixed line is context that lost its leading space if hunk lines follow it."""
    k = j + 1
    while k < len(lines) and not lines[k].strip():
        k += 1
    return k < len(lines) and lines[k][:1] in (" ", "-", "+") and not _ends_hunk(lines, k)


def _read_hunk(lines: Sequence[str], i: int, number: int) -> tuple[_Block, int]:
    numbers = _HUNK_NUMBERS.search(lines[i])
    ops: list[Op] = []
    bare: list[bool] = []  # context lines written as an empty line (no leading space)
    old_no_eol = new_no_eol = False
    j = i + 1
    while j < len(lines) and not _ends_hunk(lines, j):
        line = lines[j]
        if line == "":
            ops.append((CONTEXT, ""))
            bare.append(True)
        elif line[0] in (" ", "-", "+"):
            ops.append((line[0], line[1:]))
            bare.append(False)
        elif line.startswith("\\"):
            side = ops[-1][0] if ops else CONTEXT
            old_no_eol = old_no_eol or side != ADD
            new_no_eol = new_no_eol or side != REMOVE
        elif _is_elision(line) or _continues_hunk(lines, j):
            ops.append((CONTEXT, line))
            bare.append(False)
        else:
            break
        j += 1
    ops = _trim_trailing_blanks(ops, bare)
    old_count = sum(1 for tag, _ in ops if tag != ADD)
    new_count = sum(1 for tag, _ in ops if tag != REMOVE)
    hint = new_hint = None
    if numbers is not None:
        hint = _position(int(numbers.group(1)), old_count)
        new_hint = _position(int(numbers.group(3)), new_count)
    # Every elision-like context line as a gap: a superset of the places any mixed reading
    # fits (a literal `...` line just falls inside a gap), and context is kept either way.
    elided: tuple[tuple[Op, ...], ...] = ()
    if any(tag == CONTEXT and _is_elision(text) for tag, text in ops):
        gaps = _valid_gaps([(GAP, t) if tag == CONTEXT and _is_elision(t) else (tag, t) for tag, t in ops])
        elided = (gaps,) if gaps else ()
    block = _Block(
        number,
        "diff",
        tuple(ops),
        elided=elided,
        hint=hint,
        new_hint=new_hint,
        old_no_eol=old_no_eol,
        new_no_eol=new_no_eol,
    )
    return block, j


def _position(start: int, count: int) -> int:
    """0-based line index of a hunk side; an empty side names the line before it."""
    return start if count == 0 else max(0, start - 1)


def _trim_trailing_blanks(ops: list[Op], bare: list[bool]) -> list[Op]:
    """Empty lines after a hunk are separators, whatever the counts say.

    Dropping trailing context never changes what a hunk does, while keeping a separator by
    mistake could make it fit only at a wrong place.
    """
    end = len(ops)
    while end and bare[end - 1]:
        end -= 1
    return ops[:end]


# ---------------------------------------------------------------------------------------------
# Format detection
# ---------------------------------------------------------------------------------------------


def detect_format(reply: str) -> EditFormat | None:
    """ "search_replace" or "diff" when the reply has their markers, else None."""
    lines = reply.replace("\r\n", "\n").split("\n")
    if any(_SR_START.match(line) for line in lines):
        return "search_replace"
    if any(line.startswith("@@") for line in lines):
        return "diff"
    return None


# ---------------------------------------------------------------------------------------------
# Locating blocks
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Indent:
    """How the block's indentation relates to the file: +1 add `prefix`, -1 remove it."""

    sign: int = 0
    prefix: str = ""

    def apply(self, line: str) -> str:
        if self.sign == 0 or not line.strip():
            return line
        if self.sign > 0:
            return self.prefix + line
        return line.removeprefix(self.prefix)

    def fits(self, line: str) -> bool:
        """Whether `line` can be shifted (it has the indentation to remove)."""
        return self.sign >= 0 or not line.strip() or line.startswith(self.prefix)


_SAME = _Indent()
_NO_FIT = object()


@dataclass(frozen=True)
class _Match:
    start: int
    end: int
    rows: tuple[int, ...]  # file line of each old-side line, in order
    indent: _Indent | None  # None: only blank lines matched, the shift is unknown
    ops: tuple[Op, ...]  # the reading that matched (literal or elided)


class _Index:
    """File lines, stripped, with a lookup from stripped text to positions."""

    def __init__(self, bodies: list[str]) -> None:
        self.bodies = bodies
        self.stripped = [b.strip() for b in bodies]
        self.where: dict[str, list[int]] = {}
        for i, s in enumerate(self.stripped):
            self.where.setdefault(s, []).append(i)


def _offset(file_line: str, block_line: str) -> _Indent | None:
    fi, bi = _indent(file_line), _indent(block_line)
    if fi == bi:
        return _SAME
    if fi.endswith(bi):
        return _Indent(1, fi[: len(fi) - len(bi)])
    if bi.endswith(fi):
        return _Indent(-1, bi[: len(bi) - len(fi)])
    return None


def _fit(index: _Index, seg: Sequence[str], i: int) -> _Indent | object | None:
    """The uniform indentation offset under which `seg` matches at line i (None: all blank)."""
    found: _Indent | None = None
    for k, line in enumerate(seg):
        s = line.strip()
        if s != index.stripped[i + k]:
            return _NO_FIT
        if not s:
            continue
        off = _offset(index.bodies[i + k], line)
        if off is None or (found is not None and off != found):
            return _NO_FIT
        found = off
    return found


def _segment_matches(index: _Index, seg: Sequence[str]) -> list[tuple[int, _Indent | None]]:
    """Every start where `seg` matches, ignoring trailing whitespace and a uniform indent shift."""
    n, m = len(index.bodies), len(seg)
    if m == 0:
        return [(i, None) for i in range(n + 1)]
    anchor = next((k for k, line in enumerate(seg) if line.strip()), None)
    if anchor is None:
        starts: Sequence[int] = range(n - m + 1)
    else:
        starts = [p - anchor for p in index.where.get(seg[anchor].strip(), ()) if 0 <= p - anchor <= n - m]
    out: list[tuple[int, _Indent | None]] = []
    for i in starts:
        fit = _fit(index, seg, i)
        if fit is not _NO_FIT:
            out.append((i, fit))  # type: ignore[arg-type]
    return out


# Beyond this many places a block is ambiguous without further checks.
_MAX_CANDIDATES = 200


@dataclass
class _Found:
    matches: list[_Match]
    complete: bool = True  # False: more places exist than were listed


def _candidates(block: _Block, index: _Index) -> _Found:
    """All places the block fits, under every reading and tolerance.

    Matches are told apart by the file line of every block line and by the reading: two
    elided matches may share a span yet place their pieces, or pair them, differently.
    """
    if block.append:
        n = len(index.bodies)
        return _Found([_Match(n, n, (), _SAME, block.ops)])
    if block.unreadable:
        return _Found([], complete=False)
    found: dict[tuple[object, ...], _Match] = {}
    old = block.old_lines()
    for i, indent in _segment_matches(index, old):
        rows = tuple(range(i, i + len(old)))
        found.setdefault((i, rows, block.ops), _Match(i, i + len(old), rows, indent, block.ops))
    complete = True
    for reading in block.elided:
        gapped = _gap_matches(index, reading, _MAX_CANDIDATES + 1)
        complete = complete and len(gapped) <= _MAX_CANDIDATES
        for m in gapped:
            found.setdefault((m.start, m.rows, m.ops), m)
    return _Found(sorted(found.values(), key=lambda m: (m.start, m.end, m.rows)), complete)


def _gap_matches(index: _Index, ops: tuple[Op, ...], limit: int) -> list[_Match]:
    """Matches of an elided reading (its pieces in order, any lines between), at most `limit`."""
    pieces = [[text for tag, text in seg if tag != ADD] for seg in _segments(ops)]
    per_piece = [_segment_matches(index, piece) for piece in pieces]
    if any(not options for options in per_piece):
        return []
    starts = [[i for i, _ in options] for options in per_piece]
    results: list[_Match] = []

    def walk(k: int, lo: int, rows: tuple[int, ...], indent: _Indent | None) -> None:
        if len(results) >= limit:
            return
        if k == len(pieces):
            results.append(_Match(rows[0], rows[-1] + 1, rows, indent, ops))
            return
        for i, off in per_piece[k][bisect.bisect_left(starts[k], lo) :]:
            if off is not None and indent is not None and off != indent:
                continue
            walk(k + 1, i + len(pieces[k]), rows + tuple(range(i, i + len(pieces[k]))), indent or off)

    walk(0, 0, (), None)
    return results


def _render(m: _Match, lines: Sequence[Line], eol: str) -> list[Line]:
    """New lines for a match: the file's text for context and gaps, re-indented REPLACE text."""
    out: list[Line] = []
    indent = m.indent or _SAME
    k = 0
    for tag, text in m.ops:
        if tag == CONTEXT:
            out.append(lines[m.rows[k]])
            k += 1
        elif tag == COPY:
            out.append((indent.apply(text), lines[m.rows[k]][1]))
            k += 1
        elif tag == REMOVE:
            k += 1
        elif tag == ADD:
            out.append((indent.apply(text), eol))
        else:
            out.extend(lines[m.rows[k - 1] + 1 : m.rows[k]])
    return out


def _hints_trusted(blocks: Sequence[_Block], cands: Sequence[_Found]) -> bool:
    """Line numbers may break ties only when the diff proves them right.

    The headers must be self-consistent (in file order, new start = old start + the lines
    added so far), every hunk that can be checked must sit at its number, and at least one
    hunk must be placed by its text alone at exactly its number.
    """
    if not _headers_consistent(blocks):
        return False
    confirmed = False
    for block, found in zip(blocks, cands, strict=True):
        if not found.matches:
            continue
        if block.hint not in {m.start for m in found.matches}:
            return False
        confirmed = confirmed or len(found.matches) == 1
    return confirmed


def _headers_consistent(blocks: Sequence[_Block]) -> bool:
    delta = 0
    end = 0
    for block in blocks:
        if block.hint is None or block.new_hint is None:
            return False
        if block.new_hint - block.hint != delta or block.hint < end:
            return False
        old, new = len(block.old_lines()), len(block.new_lines())
        delta += new - old
        end = block.hint + old
    return True


# ---------------------------------------------------------------------------------------------
# Error messages with a "did you mean" excerpt
# ---------------------------------------------------------------------------------------------

_TOKEN = re.compile(r"\w+|[^\w\s]")


def _where(block: _Block, path: str) -> str:
    what = "SEARCH/REPLACE block" if block.kind == "search_replace" else "Hunk"
    return f"{what} {block.number} for {path}"


def _excerpt(bodies: Sequence[str], start: int, end: int, limit: int = 40) -> str:
    end = min(end, start + limit)
    width = len(str(end))
    return "\n".join(f"{i + 1:>{width}} | {bodies[i]}" for i in range(start, end))


def _nearest(bodies: Sequence[str], wanted: Sequence[str]) -> tuple[int, int, str] | None:
    """The window of the file most like `wanted`: token overlap to shortlist, difflib to pick."""
    want = [line for line in wanted if not _is_elision(line)]
    target = Counter(t for line in want for t in _TOKEN.findall(line))
    if not bodies or not target:
        return None
    size = min(max(len(want), 1), len(bodies))
    tokens = [Counter(_TOKEN.findall(b)) for b in bodies]
    scores = _window_scores(tokens, target, size)
    shortlist = heapq.nlargest(5, range(len(scores)), key=scores.__getitem__)
    text = "\n".join(line.strip() for line in want)

    def ratio(i: int) -> float:
        window = "\n".join(b.strip() for b in bodies[i : i + size])
        return difflib.SequenceMatcher(None, window, text, autojunk=False).ratio()

    best = max(shortlist, key=lambda i: (ratio(i), -i))
    if ratio(best) < 0.3:
        return None
    return best, best + size, _excerpt(bodies, best, best + size)


def _window_scores(tokens: Sequence[Counter[str]], target: Counter[str], size: int) -> list[int]:
    """Multiset overlap between `target` and every window of `size` lines, in one pass."""
    window: Counter[str] = Counter()
    score = 0
    scores: list[int] = []

    def shift(counts: Counter[str], sign: int) -> int:
        delta = 0
        for tok, k in counts.items():
            before = min(window[tok], target[tok])
            window[tok] += sign * k
            delta += min(window[tok], target[tok]) - before
        return delta

    for i, counts in enumerate(tokens):
        score += shift(counts, 1)
        if i >= size:
            score += shift(tokens[i - size], -1)
        if i >= size - 1:
            scores.append(score)
    return scores


def _not_found(block: _Block, path: str, index: _Index) -> ApplyError:
    what = "SEARCH text" if block.kind == "search_replace" else "context and removed lines"
    near = _nearest(index.bodies, block.old_lines())
    msg = (
        f"{_where(block, path)}: no place in the file matches its {what}, even ignoring indentation"
        " and trailing whitespace. Copy the lines exactly from the current file."
    )
    if near is None:
        return ApplyError(msg, path=path, block=block.number)
    return ApplyError(
        f"{msg} The closest lines are {near[0] + 1}-{near[1]}.",
        path=path,
        block=block.number,
        nearest=near[2],
    )


def _ambiguous(block: _Block, path: str, index: _Index, found: Sequence[_Match]) -> ApplyError:
    if not block.old_lines():
        return ApplyError(
            f"{_where(block, path)} only adds lines and has no unchanged lines around it to place it by;"
            " include a few unchanged lines before and after the change.",
            path=path,
            block=block.number,
        )
    spans = list(dict.fromkeys((m.start, m.end) for m in found))
    excerpts = "\n...\n".join(_excerpt(index.bodies, a, b, 12) for a, b in spans[:3])
    if len(spans) == 1:
        a, b = spans[0]
        return ApplyError(
            f"{_where(block, path)} fits lines {a + 1}-{b} in {len(found)} different ways: its `...`"
            " elisions leave open which lines are meant; write those lines out instead.",
            path=path,
            block=block.number,
            nearest=excerpts,
        )
    listed = ", ".join(f"{a + 1}-{b}" for a, b in spans[:6]) + (" and more" if len(spans) > 6 else "")
    return ApplyError(
        f"{_where(block, path)} matches {len(spans)} places equally well (lines {listed}), so it"
        " is not clear where it belongs; include more unchanged lines so that it matches one place.",
        path=path,
        block=block.number,
        nearest=excerpts,
    )


def _choose(block: _Block, found: _Found, hint: int | None, path: str, text: _Text) -> _Match:
    if not found.complete:
        raise ApplyError(
            f"{_where(block, path)} can be read in too many ways (too many places, or too many `...`"
            " lines that may be elisions or code); include fewer elisions and more unchanged lines.",
            path=path,
            block=block.number,
        )
    matches = _distinct_outcomes(block, found, text)
    if len(matches) == 1:
        return _checked_indent(block, matches[0], path, text)
    index = _Index(text.bodies())
    if not matches:
        raise _not_found(block, path, index)
    if hint is not None:
        at_hint = [m for m in matches if m.start == hint]
        if len(at_hint) == 1:
            return _checked_indent(block, at_hint[0], path, text)
    raise _ambiguous(block, path, index, matches)


def _checked_indent(block: _Block, m: _Match, path: str, text: _Text) -> _Match:
    """Added code needs a non-blank matched line to check its indentation against.

    (An empty file is the exception: there is nothing to be indented relative to.)
    """
    adds_code = any(tag in (ADD, COPY) and line.strip() for tag, line in m.ops)
    if m.indent is None and adds_code and text.lines:
        raise ApplyError(
            f"{_where(block, path)} matches only blank lines, so the indentation of its new lines cannot"
            " be checked; include a non-blank unchanged line next to the change.",
            path=path,
            block=block.number,
        )
    if m.indent is not None and not all(m.indent.fits(line) for tag, line in m.ops if tag in (ADD, COPY)):
        raise ApplyError(
            f"{_where(block, path)} is indented {len(m.indent.prefix)} characters deeper than the file,"
            " but some of its new lines are not; keep the file's indentation.",
            path=path,
            block=block.number,
        )
    return m


def _distinct_outcomes(block: _Block, found: _Found, text: _Text) -> list[_Match]:
    """One match per distinct resulting file: places that give the same file are not ambiguous.

    (E.g. an elided block whose outer context line repeats: context is kept either way.)
    """
    if not 1 < len(found.matches) <= _MAX_CANDIDATES:
        return list(found.matches)
    lo = min(m.start for m in found.matches)
    hi = max(m.end for m in found.matches)
    marked = block.old_no_eol or block.new_no_eol  # a match at the end may change the final newline
    seen: dict[tuple[object, ...], _Match] = {}
    for m in found.matches:
        local = (*text.lines[lo : m.start], *_render(m, text.lines, text.eol), *text.lines[m.end : hi])
        seen.setdefault((marked and m.end == len(text.lines), *local), m)
    return list(seen.values())


# ---------------------------------------------------------------------------------------------
# Applying blocks to a text
# ---------------------------------------------------------------------------------------------


def _splice(text: _Text, placed: Sequence[tuple[_Block, _Match]]) -> _Text:
    out: list[Line] = []
    pos = 0
    final = text.final_newline
    n = len(text.lines)
    for block, m in sorted(placed, key=lambda p: (p[1].start, p[1].end, p[0].number)):
        out.extend(text.lines[pos : m.start])
        out.extend(_render(m, text.lines, text.eol))
        pos = m.end
        if m.end == n and block.new_no_eol:
            final = False
        elif m.end == n and block.old_no_eol:
            final = True
    out.extend(text.lines[pos:])
    return _Text(out, text.bom, text.eol, final)


def _apply_hunks(text: _Text, blocks: Sequence[_Block], path: str) -> _Text:
    """Hunks refer to the original file: place them all there, then splice at once."""
    index = _Index(text.bodies())
    cands = [_candidates(b, index) for b in blocks]
    trusted = _hints_trusted(blocks, cands)
    try:
        placed = [
            (b, _choose(b, c, b.hint if trusted else None, path, text))
            for b, c in zip(blocks, cands, strict=True)
        ]
        _check_overlap(placed, path)
        return _splice(text, placed)
    except ApplyError as first:
        if len(blocks) < 2:
            raise
        # Models also write hunks as successive edits, each against the previous result.
        try:
            return _apply_in_turn(text, blocks, path, trusted)
        except ApplyError:
            raise first from None


def _apply_in_turn(text: _Text, blocks: Sequence[_Block], path: str, trusted: bool) -> _Text:
    delta = 0
    for block in blocks:
        index = _Index(text.bodies())
        hint = block.hint + delta if trusted and block.hint is not None else None
        m = _choose(block, _candidates(block, index), hint, path, text)
        after = _splice(text, [(block, m)])
        delta += len(after.lines) - len(text.lines)
        text = after
    return text


def _check_overlap(placed: Sequence[tuple[_Block, _Match]], path: str) -> None:
    ordered = sorted(placed, key=lambda p: (p[1].start, p[1].end))
    for (a, ma), (b, mb) in itertools.pairwise(ordered):
        if mb.start < ma.end:
            raise ApplyError(
                f"Hunks {a.number} and {b.number} for {path} overlap (lines {ma.start + 1}-{ma.end}"
                f" and {mb.start + 1}-{mb.end}); merge them into one hunk.",
                path=path,
                block=b.number,
            )


# ---------------------------------------------------------------------------------------------
# Paths and the workspace (file contents before and after the reply)
# ---------------------------------------------------------------------------------------------


def _check_rel(rel: str) -> str:
    """Normalise a repo-relative path; refuse absolute paths, `..` and anything in .git/."""
    try:
        return clean_path(rel)
    except PathRefused as exc:
        raise ApplyError(str(exc), path=rel) from None


def _inside(root: Path, rel: str) -> Path:
    """The path of `rel` under root, refusing anything that resolves outside it and any
    symlink on the way: the file itself or a directory above it inside the repository.

    A link is never edited or written through: the commit would carry the unchanged link
    while the change landed in its target, out of sight of the protected-path checks."""
    try:
        return resolve(root, rel)
    except PathRefused as exc:
        raise ApplyError(str(exc), path=rel) from None


def _decode(data: bytes, rel: str) -> str:
    if b"\0" in data[:8000]:
        raise ApplyError(f"{rel} looks like a binary file; it cannot be edited as text.", path=rel)
    # surrogateescape: a stray non-UTF-8 byte survives the round trip unchanged.
    return data.decode("utf-8", "surrogateescape")


class _Workspace:
    def __init__(self, root: Path, files: Mapping[str, str] | None) -> None:
        self.root = root
        self.overrides = {_check_rel(k): v for k, v in (files or {}).items()}
        self.original: dict[str, str | None] = {}
        self.current: dict[str, str | None] = {}
        self._listing: list[str] | None = None

    def read(self, rel: str) -> str | None:
        """Current text of `rel` (None: no such file)."""
        if rel not in self.current:
            self.original[rel] = self.current[rel] = self._load(rel)
        return self.current[rel]

    def _load(self, rel: str) -> str | None:
        if rel in self.overrides:
            return self.overrides[rel]
        try:
            data = read_bytes(self.root, rel)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except PathRefused as exc:
            raise ApplyError(str(exc), path=rel) from None
        except OSError as exc:
            raise ApplyError(f"Cannot read {rel}: {exc.strerror or exc}.", path=rel) from exc
        return _decode(data, rel)

    def exists(self, rel: str) -> bool:
        return self.read(rel) is not None

    def write(self, rel: str, text: str) -> None:
        self.read(rel)
        self.current[rel] = text

    def listing(self) -> list[str]:
        """The project's files (bot.files.list_files) plus overrides and files made so far."""
        if self._listing is None:
            self._listing = sorted({*self.overrides, *list_files(self.root)})
        return sorted({*self._listing, *(k for k, v in self.current.items() if v is not None)})

    def changes(self) -> dict[str, str]:
        return {
            rel: text
            for rel, text in self.current.items()
            if text is not None and text != self.original.get(rel)
        }

    # -- path resolution ---------------------------------------------------------------------

    def existing(self, raw: str, *, prefixed: bool) -> str | None:
        """The existing file a written path names: as is or without its a/ b/ prefix."""
        variants = _variants(raw, prefixed)
        found = list(dict.fromkeys(v for v in variants if self._exists_safely(v)))
        if len(found) > 1 and not prefixed:
            raise ApplyError(
                f"Path {raw!r} is ambiguous: it could mean {' or '.join(found)}. Write the full path.",
                path=raw,
            )
        return found[0] if found else None

    def by_suffix(self, raw: str, *, prefixed: bool) -> list[str]:
        """Files whose path ends with the written one (a bare name or a partial path)."""
        for variant in _variants(raw, prefixed):
            matches = [p for p in self.listing() if p.endswith("/" + variant)]
            if matches:
                return matches
        return []

    def _exists_safely(self, rel: str) -> bool:
        _check_rel(rel)
        return self.exists(rel)

    def suggest(self, raw: str) -> str:
        names = difflib.get_close_matches(raw, self.listing(), n=3, cutoff=0.5)
        return f" Did you mean {' or '.join(names)}?" if names else ""


def _variants(raw: str, prefixed: bool) -> list[str]:
    clean = _check_rel(raw)
    stripped = clean[2:] if clean[:2] in ("a/", "b/") and len(clean) > 2 else None
    if stripped is None:
        return [clean]
    return [stripped, clean] if prefixed else [clean, stripped]


# ---------------------------------------------------------------------------------------------
# Applying sections
# ---------------------------------------------------------------------------------------------


def _section_path(ws: _Workspace, sec: _Section, path_hint: str | None) -> str:
    number = sec.blocks[0].number
    try:
        return _resolve_section(ws, sec, path_hint)
    except ApplyError as exc:
        raise ApplyError(exc.message, path=exc.path, block=number) from None


def _resolve_section(ws: _Workspace, sec: _Section, path_hint: str | None) -> str:
    """The repo-relative path a section edits (or creates)."""
    number = sec.blocks[0].number
    old, new = sec.old_path, sec.new_path
    if new == DEV_NULL:
        raise ApplyError(f"Block {number} deletes {old}; deleting files is not supported.", path=old)
    if old == DEV_NULL and new:
        return _variants(new, new.startswith("b/"))[0]
    # git's a/ b/ prefixes are only certain when both headers carry them.
    prefixed = sec.kind == "diff" and bool(old and new and old.startswith("a/") and new.startswith("b/"))
    names = [p for p in (new, old) if p]
    if not names:
        if path_hint is None:
            raise ApplyError(f"Block {number} names no file and no path hint was given.")
        names = [path_hint]
    for name in names:
        rel = ws.existing(name, prefixed=prefixed)
        if rel is not None:
            return rel
    creating = all(_only_adds(b) for b in sec.blocks)
    for name in names:
        matches = ws.by_suffix(name, prefixed=prefixed)
        if len(matches) == 1 and not creating:
            return matches[0]
        if matches:
            # Several files fit a bare name, or a block that would create the file might mean one of them.
            raise ApplyError(
                f"Path {name!r} is ambiguous: {', '.join(matches[:5])} match it. Write the full path.",
                path=name,
            )
    if creating:
        return _variants(names[0], prefixed)[0]
    raise ApplyError(f"Block {number}: file {names[0]} does not exist.{ws.suggest(names[0])}", path=names[0])


def _apply_section(ws: _Workspace, sec: _Section, path_hint: str | None) -> None:
    rel = _section_path(ws, sec, path_hint)
    current = ws.read(rel)
    if current is None:
        ws.write(rel, _new_file_text(sec, rel))
        return
    if sec.old_path == DEV_NULL and current.strip():
        block = sec.blocks[0]
        raise ApplyError(
            f"{_where(block, rel)} creates {rel}, but that file already exists; edit it instead.",
            path=rel,
            block=block.number,
        )
    text = _Text.parse(current)
    if sec.kind == "diff":
        text = _apply_hunks(text, sec.blocks, rel)
    else:
        text = _apply_in_turn(text, sec.blocks, rel, trusted=False)
    ws.write(rel, text.render())


def _only_adds(block: _Block) -> bool:
    """A block that could create its file: nothing but blank lines to find."""
    return not any(line.strip() for line in block.old_lines())


def _new_file_text(sec: _Section, rel: str) -> str:
    lines: list[str] = []
    for block in sec.blocks:
        if not _only_adds(block):
            raise ApplyError(
                f"{_where(block, rel)}: {rel} does not exist, so the block can only add lines.",
                path=rel,
                block=block.number,
            )
        lines.extend(block.new_lines())
    final = not any(b.new_no_eol for b in sec.blocks)
    return _Text([(line, "\n") for line in lines], final_newline=final).render()


# ---------------------------------------------------------------------------------------------
# Whole-file replies
# ---------------------------------------------------------------------------------------------

_CODE_SIGNAL = re.compile(
    r"[=(){}\[\];<>]|^\s|^(?:def|class|import|from|return|if|for|while|@|#|//)\b", re.MULTILINE
)


def extract_whole_file(reply: str) -> str:
    """The file content of a whole-file reply: the longest fenced block, or the bare reply.

    Raises ApplyError when the reply is empty, looks truncated (an unclosed fence) or is prose.
    """
    text = reply.replace("\r\n", "\n")
    if not text.strip():
        raise ApplyError("The reply is empty; reply with the complete file in one fenced code block.")
    lines = text.split("\n")
    blocks = _fenced_blocks(lines)
    if any(not b.closed and any(line.strip() for line in b.lines) for b in blocks):
        raise ApplyError(
            "The reply's code block is not closed: it looks truncated. Reply with the complete file."
        )
    closed = [b for b in blocks if b.closed]
    if closed:
        content = max(closed, key=lambda b: len("\n".join(b.lines))).lines
        while content and not content[-1].strip():
            content = content[:-1]
        if not content:
            raise ApplyError("The reply's code block is empty; reply with the complete file.")
        return "\n".join(content) + "\n"
    if _looks_like_prose(text):
        raise ApplyError(
            "The reply has no code block and reads as prose; reply with the complete file in one"
            " fenced code block."
        )
    return text.strip("\n") + "\n"


def _looks_like_prose(text: str) -> bool:
    lines = [line for line in text.split("\n") if line.strip()]
    if any(_CODE_SIGNAL.search(line) for line in lines):
        return False
    words = sum(len(line.split()) for line in lines)
    return words >= 2 * len(lines) and bool(re.search(r"[.!?:,]\s*$", text.strip()))


def _whole_change(ws: _Workspace, reply: str, path_hint: str | None, guard: bool) -> None:
    if path_hint is None:
        raise ApplyError("A whole-file reply needs path_hint: the file it replaces.")
    rel = _check_rel(path_hint)
    content = extract_whole_file(reply)
    current = ws.read(rel)
    old_lines = _split_lines(current or "")
    new_lines = _split_lines(content)
    _refuse_lazy(old_lines, new_lines, rel)
    if guard and len(old_lines) >= 20 and len(new_lines) * 4 < len(old_lines):
        raise ApplyError(
            f"The reply has {len(new_lines)} lines for {rel}, which has {len(old_lines)}: it looks like a"
            " snippet, not the whole file.",
            path=rel,
        )
    ws.write(rel, _rewrite(current, new_lines))


def _refuse_lazy(old_lines: Sequence[str], new_lines: Sequence[str], rel: str) -> None:
    """`# ... existing code ...` in a whole-file reply would delete that code."""
    known = {line.strip() for line in old_lines}
    for i, line in enumerate(new_lines):
        if _is_lazy_comment(line) and line.strip() not in known:
            raise ApplyError(
                f"Line {i + 1} of the reply for {rel} ({line.strip()!r}) stands for omitted code; a"
                " whole-file reply must contain the complete file.",
                path=rel,
            )


def _rewrite(current: str | None, new_lines: Sequence[str]) -> str:
    """New content in the old file's style: per-line endings kept, BOM and final newline kept."""
    if current is None:
        return _Text([(line, "\n") for line in new_lines]).render()
    old = _Text.parse(current)
    out: list[Line] = []
    matcher = difflib.SequenceMatcher(None, old.bodies(), list(new_lines), autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            out.extend(old.lines[i1:i2])
        else:
            out.extend((line, old.eol) for line in new_lines[j1:j2])
    return _Text(out, old.bom, old.eol, old.final_newline or not old.lines).render()


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------


def compute_changes(
    root: Path,
    text: str,
    *,
    path_hint: str | None = None,
    fmt: EditFormat | None = None,
    files: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Parse an LLM reply and apply it in memory.

    Returns {repo-relative posix path: new full text} for every file that changes. `files`
    overrides the on-disk content of the given paths. fmt=None detects the format; without
    SEARCH/REPLACE or diff markers a fenced code block is taken as the whole new content of
    path_hint (refused when it is much shorter than the file: probably a snippet).
    Raises ApplyError and never returns a partial result.
    """
    root = Path(root)
    reply = text.replace("\r\n", "\n")
    ws = _Workspace(root, files)
    if fmt == "whole":
        # Asked for a whole file, a model sometimes answers with a diff or SEARCH/REPLACE
        # blocks: taken as the file, their markers would become its content.
        sections = _parse(reply, None) if detect_format(reply) else []
        if not sections:
            _whole_change(ws, reply, path_hint, guard=False)
            return ws.changes()
    else:
        sections = _parse(reply, fmt)
    if not sections:
        if fmt is None and path_hint is not None and _looks_like_whole_file(reply):
            _whole_change(ws, reply, path_hint, guard=True)
            return ws.changes()
        wanted = {"diff": "a unified diff", "search_replace": "SEARCH/REPLACE blocks"}.get(
            fmt or "", "an edit"
        )
        raise ApplyError(f"The reply contains no edit: expected {wanted}.")
    for sec in sections:
        _apply_section(ws, sec, path_hint)
    return ws.changes()


def _looks_like_whole_file(reply: str) -> bool:
    """Detection only takes a fenced block as a whole file, and never a diff without hunks."""
    lines = reply.split("\n")
    has_header = any(_is_header_pair(lines, i) for i in range(len(lines)))
    return not has_header and any(b.closed for b in _fenced_blocks(lines))


def _is_header_pair(lines: Sequence[str], i: int) -> bool:
    return lines[i].startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ ")


def _parse(reply: str, fmt: EditFormat | None) -> list[_Section]:
    # A model asked for one structured format sometimes answers in the other: accept both.
    parsers = [_parse_search_replace, _parse_diff]
    if fmt == "diff" or (fmt is None and detect_format(reply) == "diff"):
        parsers.reverse()
    for parser in parsers:
        sections = parser(reply)
        if sections:
            return sections
    return []


def apply_edit(
    root: Path,
    text: str,
    *,
    path_hint: str | None = None,
    fmt: EditFormat | None = None,
    caps: ChangeCaps | None = None,
    protected: Sequence[str] = (),
    allow_workflows: bool = False,
) -> dict[str, str]:
    """compute_changes + write_changes; returns the changes. Refuses (ApplyError,
    nothing written) protected paths (bot.files.is_protected, as for an edit),
    binary content and files over `caps.max_file_bytes`: a patch is as untrusted
    as the model that wrote it. The per-job caps on files and lines are the
    engine's: a person applying a patch has chosen its size."""
    changes = compute_changes(root, text, path_hint=path_hint, fmt=fmt)
    refused = sorted(p for p in changes if is_protected(p, protected, allow_workflows=allow_workflows))
    if refused:
        raise ApplyError(f"Refused: {', '.join(refused)} is protected.", path=refused[0])
    limit = (caps or ChangeCaps()).max_file_bytes
    before = _Workspace(Path(root), None)
    for rel, new in sorted(changes.items()):
        problem = binary_problem(rel, before.read(rel), new) or size_problem(rel, new, limit)
        if problem:
            raise ApplyError(f"Refused: {problem}.", path=rel)
    write_changes(root, changes)
    return changes


# ---------------------------------------------------------------------------------------------
# Writing: all files or none
# ---------------------------------------------------------------------------------------------


@dataclass
class _Write:
    rel: str
    target: Path  # never a symlink, nor below one (_inside refuses those)
    data: bytes
    old_mode: int | None  # kept by the new file; None: a new file
    tmp: Path | None = None


def write_changes(root: Path, changes: Mapping[str, str]) -> None:
    """Write all files or none: temp files + os.replace, bot.rollback on error.

    Keeps an existing file's mode and newline style. Refuses (ApplyError, nothing written)
    any path that is absolute, contains '..', resolves outside root, lies inside .git/ or
    is (or lies below) a symlink.
    """
    root = Path(root)
    plans = [_plan(root, rel, text) for rel, text in changes.items()]
    targets = Counter(p.target for p in plans)
    if dup := [p.rel for p in plans if targets[p.target] > 1]:
        raise ApplyError(f"Several changes write the same file: {', '.join(dup)}.", path=dup[0])
    snapshot = Snapshot.take(root, [p.rel for p in plans])
    try:
        for plan in plans:
            _stage(plan)
        for plan in plans:
            assert plan.tmp is not None
            os.replace(plan.tmp, plan.target)
            plan.tmp = None
    except BaseException as exc:
        for plan in plans:
            if plan.tmp is not None:
                _quiet_unlink(plan.tmp)
        failed = snapshot.restore()
        if not isinstance(exc, OSError):
            raise
        note = f" Rollback failed for {', '.join(failed)}." if failed else " No file was changed."
        where = f": {exc.filename}" if exc.filename else ""
        raise ApplyError(f"Writing the changes failed ({exc.strerror or exc}{where}).{note}") from exc


def _plan(root: Path, rel: str, text: str) -> _Write:
    target = _inside(root, rel)
    old_data = old_mode = None
    try:
        with open_file(root, rel) as fh:  # its newline style and mode; never through a link
            old_mode = stat.S_IMODE(os.fstat(fh.fileno()).st_mode)
            old_data = fh.read()
    except (FileNotFoundError, NotADirectoryError):
        pass  # a new file
    except PathRefused as exc:
        raise ApplyError(f"Refusing to write {rel}: {exc.reason}.", path=rel) from None
    except OSError as exc:
        raise ApplyError(f"Cannot read {rel}: {exc.strerror or exc}.", path=rel) from exc
    data = _match_newlines(text, old_data).encode("utf-8", "surrogateescape")
    return _Write(_check_rel(rel), target, data, old_mode)


def _match_newlines(text: str, old: bytes | None) -> str:
    """Give LF text to a CRLF file (and the reverse) when the new text uses one style only."""
    if old is None:
        return text
    old_crlf = old.count(b"\r\n")
    old_lf = old.count(b"\n") - old_crlf
    new_crlf = text.count("\r\n")
    new_lf = text.count("\n") - new_crlf
    if old_crlf > old_lf and new_lf and not new_crlf:
        return text.replace("\n", "\r\n")
    if old_lf > old_crlf and new_crlf and not new_lf:
        return text.replace("\r\n", "\n")
    return text


def _stage(plan: _Write) -> None:
    plan.target.parent.mkdir(parents=True, exist_ok=True)  # the snapshot removes what this makes
    tmp = plan.target.with_name(f".{plan.target.name}.{secrets.token_hex(4)}.patchling-tmp")
    # os.open applies the umask, which is what a new file should get.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666 if plan.old_mode is None else 0o600)
    plan.tmp = tmp
    with os.fdopen(fd, "wb") as fh:
        fh.write(plan.data)
    if plan.old_mode is not None:
        os.chmod(tmp, plan.old_mode)


def _quiet_unlink(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()
