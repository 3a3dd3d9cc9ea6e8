"""Context selection: a repository's files, ranked for an instruction
(bot.ranking), trimmed to a token budget.

Trimming sends the likely edit target in full (or its
relevant symbols in full, the rest as an outline), neighbours as skeletons
and the rest as one-line listings, and never goes over the budget: the total
is the token count of exactly the text that `Context.render()` returns.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from bot.index import IDENT_RE, FileInfo, RepoIndex, Symbol, build_index, identifier_terms
from bot.query import Query, spelled_by_phrase
from bot.ranking import Focus, RankingMemo, as_query, rank_paths
from bot.tokens import count_tokens, truncate_to_tokens

Mode = Literal["full", "span", "skeleton", "listing"]
Role = Literal["focus", "primary", "secondary", "spare", "listing"]

# Trimming.
# The likely edit targets, in rank order, may take these shares of the budget in full or as spans;
# after the first, a file counts as a likely target from this share of the top score.
TARGET_SHARES = (0.5, 0.25, 0.15)
TARGET_SCORE = 0.5
FIRST_COVERAGE_SHARE = 0.4  # cheapest outlines for the best-ranked files, before the target
COVERAGE_SHARE = 0.7  # and after it, until this share of the budget is used
OUTLINE_SHARE = 0.15  # then outlines may grow to this share each
SKELETON_RANKS = 40  # files below this rank (or budget / 100) are only ever listed
FOCUS_CONTEXT_LINES = 5  # lines shown around a focus span
LISTING_NAMES = 4
SPAN_MATCH = 1.0  # the word-match score that makes a definition worth showing in full
SPAN_SYMBOLS = 3  # at most this many definitions by word match
HEAD_LINES = 20  # the stand-in outline of a file without definitions
SMALL_FILE_TOKENS = 120  # a file this small is sent whole rather than outlined

_DEF_LINE_RE = re.compile(r"^\s*(?:async\s+)?(?:def|class)\b")


@dataclass
class ContextFile:
    path: str
    mode: Mode
    text: str  # exactly what is sent for this file (with its header line)
    tokens: int


@dataclass
class Context:
    files: list[ContextFile]  # ranked most relevant first
    tokens: int  # total tokens of render(), never over budget
    budget: int

    def render(self) -> str:
        return "".join(f.text for f in self.files)

    def to_json(self) -> dict:
        return {
            "files": [{"path": f.path, "mode": f.mode, "tokens": f.tokens} for f in self.files],
            "tokens": self.tokens,
        }

    def paths(self) -> list[str]:
        return [f.path for f in self.files]


@dataclass
class ContextMemo(RankingMemo):
    """What context selection derives from one index (ranking's statistics, and the
    files' rendered views), kept by the run that owns the index so later calls
    (one per tier) reuse it."""

    views: dict[str, _Views] = field(default_factory=dict)
    listings: dict[str, _Option] = field(default_factory=dict)  # path -> its listing line, counted once


# --------------------------------------------------------------------------
# Rendering one file


def _header(path: str, mode: Mode) -> str:
    return f"### {path} ({mode})\n"


def _block(path: str, mode: Mode, body: str) -> str:
    # Not fenced: the path's extension names the language, and fences measured
    # 0.8 points of recall (bench.context) for the tokens they take from the budget.
    if body and not body.endswith("\n"):
        body += "\n"
    return _header(path, mode) + body + "\n"


def render_listing(path: str, info: FileInfo | None) -> str:
    names: list[str] = []
    if info is not None:
        for sym in info.symbols:
            top_level = "." not in sym.qualname
            if sym.kind != "variable" and top_level and not _private(sym.name) and sym.name not in names:
                names.append(sym.name)
    line = _header(path, "listing").rstrip("\n")
    if names:
        shown = names[:LISTING_NAMES]
        line += ": " + ", ".join(shown) + (", …" if len(names) > len(shown) else "")
    return line + "\n"


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def outline(
    lines: list[str], symbols: list[Symbol], level: int, full: Collection[tuple[int, int]] = ()
) -> str:
    """The file as an outline: `full` line ranges verbatim, other definitions
    reduced by `level`: 0 headers + docstring line + `...`; 1 headers + `...`;
    2 first signature line of public ones; 3 public top-level ones only;
    4 nothing but the headers around the `full` ranges."""
    entries: dict[tuple[int, int], str] = {}

    def show(ln: int) -> None:
        if 0 < ln <= len(lines):
            entries.setdefault((ln, 0), lines[ln - 1])

    for start, end in full:
        for ln in range(start, end + 1):
            show(ln)
    defs = [s for s in symbols if s.kind != "variable"]
    parents = {d.qualname.rsplit(".", 1)[0] for d in defs if "." in d.qualname}
    for sym in defs:
        if _covered(sym, full):
            continue
        holds_full = any(not (end < sym.start_line or start > sym.end_line) for start, end in full)
        if not holds_full:
            nested = "." in sym.qualname
            if level >= 4 or (level >= 3 and nested) or (level >= 2 and _private(sym.name)):
                continue
        if sym.def_line:
            _outline_braced(entries, lines, sym, level, holds_full, _holds_defs(sym, defs))
            continue
        if level <= 1 and not holds_full:
            for ln in range(sym.start_line, max(sym.start_line, sym.header_end) + 1):
                show(ln)
        else:
            show(_def_line(lines, sym))
        if sym.one_line or sym.kind == "section" or holds_full:
            continue
        indent = " " * sym.body_col
        if level == 0 and sym.doc:
            entries[(sym.header_end, 1)] = f'{indent}"""{sym.doc}"""'
        if level <= 1 and sym.qualname not in parents:
            entries[(sym.header_end, 2)] = f"{indent}..."
    return "\n".join(entries[k] for k in sorted(entries)) + ("\n" if entries else "")


def _outline_braced(
    entries: dict[tuple[int, int], str],
    lines: list[str],
    sym: Symbol,
    level: int,
    holds_full: bool,
    holds_defs: bool,
) -> None:
    """A definition outside Python, in its own syntax: its doc comment's first
    line (level 0), the header up to where the body opens, `…` for the body and
    the closing line (`}`, `end`); from level 2 the definition's first line only."""

    def show(ln: int, text: str | None = None) -> None:
        if 0 < ln <= len(lines):
            entries.setdefault((ln, 0), lines[ln - 1] if text is None else text)

    if level >= 2 and not holds_full:
        show(sym.def_line)
        return
    if level == 0 and sym.doc and not holds_full:
        doc_line = next((ln for ln in range(sym.start_line, sym.def_line) if sym.doc in lines[ln - 1]), 0)
        if doc_line:
            text = lines[doc_line - 1]
            if text.lstrip().startswith("*"):  # inside a /** … */ block: one line of it, closed
                text = f"{_indentation(lines[sym.def_line - 1])}/** {sym.doc} */"
            show(doc_line, text)
    for ln in range(sym.def_line, max(sym.def_line, sym.header_end) + 1):
        show(ln)
    if not sym.closer:
        return
    if not holds_full and not holds_defs:
        body = (lines[ln - 1] for ln in range(sym.header_end + 1, sym.end_line) if lines[ln - 1].strip())
        entries[(sym.header_end, 2)] = _indentation(next(body, " " * sym.body_col)) + "…"
    show(sym.end_line)


def _indentation(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def _holds_defs(sym: Symbol, defs: list[Symbol]) -> bool:
    """Whether other definitions sit inside `sym` (they show its body's outline)."""
    return any(
        d is not sym
        and sym.start_line <= d.start_line
        and d.end_line <= sym.end_line
        and d.def_line > sym.def_line
        for d in defs
    )


def _covered(sym: Symbol, full: Collection[tuple[int, int]]) -> bool:
    return any(start <= sym.start_line and sym.end_line <= end for start, end in full)


def _def_line(lines: list[str], sym: Symbol) -> int:
    """The `def`/`class` line itself, after any decorators."""
    for ln in range(sym.start_line, min(len(lines), max(sym.start_line, sym.header_end)) + 1):
        if _DEF_LINE_RE.match(lines[ln - 1]):
            return ln
    return sym.start_line


# --------------------------------------------------------------------------
# Trimming to the budget


@dataclass
class _Option:
    mode: Mode
    tier: int  # 0 full, 1 span, 2..5 skeleton levels 0..3, 6 listing
    text: str
    tokens: int
    late: bool = False  # only for budget left over once every file has its place


@dataclass
class _Candidate:
    path: str
    # focus: the review comment's file; primary: a likely edit target; secondary: a
    # relevant file, outlined; spare: an unscored file, listed, outlined only with room
    # to spare; listing: listed only.
    role: Role
    options: list[_Option]  # richest first, each cheaper than the one before
    level: int | None = None  # the chosen option; None: not sent
    cap: int | None = None  # a likely target's most tokens in full or as a span

    @property
    def current(self) -> _Option:
        assert self.level is not None
        return self.options[self.level]

    @property
    def cost(self) -> int:
        return 0 if self.level is None else self.options[self.level].tokens

    def choose(
        self, room: int, cap: int | None = None, max_tier: int = 6, cheapest: bool = False, late: bool = False
    ) -> bool:
        """Move to the richest (or cheapest) option within `max_tier` whose extra
        cost fits `room` and whose size fits `cap`; False when none does."""
        picks = [
            i
            for i, opt in enumerate(self.options)
            if opt.tier <= max_tier
            and (late or not opt.late)
            and opt.tokens - self.cost <= room
            and (cap is None or opt.tokens <= cap)
            and (self.level is None or i < self.level)
        ]
        if not picks:
            return False
        self.level = picks[-1] if cheapest else picks[0]
        return True


def _option(path: str, mode: Mode, tier: int, body_or_text: str, *, whole: bool = False) -> _Option:
    text = body_or_text if whole else _block(path, mode, body_or_text)
    return _Option(mode, tier, text, count_tokens(text))


def _dedupe(options: list[_Option]) -> list[_Option]:
    out: list[_Option] = []
    for opt in options:
        if opt.tokens == 0:
            continue
        if out and (opt.text == out[-1].text or opt.tokens >= out[-1].tokens):
            continue  # not cheaper than the richer option before it: useless
        out.append(opt)
    return out


@dataclass
class _Views:
    """The query-independent renderings of one file, kept per index."""

    sha: str
    lines: list[str]
    full: _Option
    outlines: list[_Option]  # skeleton levels 0..3, cheaper each
    listing: _Option


class _Renderer:
    def __init__(self, memo: ContextMemo, query: Query, budget: int) -> None:
        self.index = memo.index
        self.query = query
        self.budget = budget
        self.memo = memo.views
        self.listings = memo.listings

    def views(self, path: str, info: FileInfo) -> _Views | None:
        cached = self.memo.get(path)
        if cached is not None and cached.sha == info.sha:
            return cached
        try:
            text = self.index.read(path)
        except (OSError, UnicodeDecodeError):
            return None  # gone or changed since indexing: list it only
        lines = text.splitlines()
        outlines = [
            _option(path, "skeleton", 2 + level, body)
            for level in range(4)
            if (body := outline(lines, info.symbols, level))
        ]
        if not outlines and len(lines) > HEAD_LINES:
            # Nothing to outline (a script, a config file): its head stands in.
            head = "\n".join(lines[:HEAD_LINES]) + "\n...\n"
            outlines = [_option(path, "skeleton", 2, head)]
        views = _Views(info.sha, lines, _option(path, "full", 0, text), outlines, self.listing(path))
        self.memo[path] = views
        return views

    def listing(self, path: str) -> _Option:
        found = self.listings.get(path)
        if found is None:
            info = self.index.files.get(path)
            found = self.listings[path] = _option(path, "listing", 6, render_listing(path, info), whole=True)
        return found

    def options(self, path: str, role: str, cap: int) -> list[_Option]:
        info = self.index.files.get(path)
        views = self.views(path, info) if info is not None and role != "listing" else None
        if views is None or info is None:
            return [self.listing(path)]
        opts: list[_Option] = []
        richest_outline = views.outlines[0].tokens if views.outlines else 0
        if role == "primary":
            if views.full.tokens <= cap:
                opts.append(views.full)
            opts.extend(self.spans(path, info, views.lines, cap))
        elif views.full.tokens <= max(SMALL_FILE_TOKENS, int(1.3 * richest_outline)):
            opts.append(views.full)  # a small file costs about as much as its outline
        else:
            opts.append(replace(views.full, late=True))
        opts.extend(views.outlines)
        opts.append(views.listing)
        return _dedupe(opts)

    def spans(self, path: str, info: FileInfo, lines: list[str], cap: int) -> list[_Option]:
        """The symbols the instruction points at in full, the rest as outlines."""
        for group in (self.named_symbols(info), self.scored_symbols(info, lines)):
            chosen: list[tuple[int, int]] = []
            for sym in group:
                trial = [*chosen, (sym.start_line, sym.end_line)]
                if _option(path, "span", 1, outline(lines, info.symbols, 4, trial)).tokens <= cap:
                    chosen = trial
            if chosen:
                return [
                    _option(path, "span", 1, outline(lines, info.symbols, level, chosen))
                    for level in range(5)
                ]
            # None of the named ones fits (a whole class, say): the best-matching parts may.
        return []

    def named_symbols(self, info: FileInfo) -> list[Symbol]:
        """Definitions the instruction names: written as code first, then
        spelled out as a phrase ("run command"), then as a bare word ("command")."""
        query = self.query
        named = [
            s
            for s in info.symbols
            if s.kind not in ("variable", "section")
            and (
                s.name in query.code_names
                or spelled_by_phrase(s.name, query)
                or (s.name in query.words and len(s.name) > 3)
            )
        ]
        named.sort(
            key=lambda s: (
                s.name not in query.code_names,
                not spelled_by_phrase(s.name, query),
                s.end_line - s.start_line,
            )
        )
        return named[:SPAN_SYMBOLS]

    def scored_symbols(self, info: FileInfo, lines: list[str]) -> list[Symbol]:
        """The few functions whose names and bodies match the instruction's words best."""
        defs = [s for s in info.symbols if s.kind not in ("variable", "section")]
        scored: list[tuple[float, int, Symbol]] = []
        parents = {d.qualname.rsplit(".", 1)[0] for d in defs if "." in d.qualname}
        for sym in defs:
            if sym.kind == "class" and sym.qualname in parents:
                continue  # its methods compete on their own
            score = self.body_score(sym, lines)
            if score >= SPAN_MATCH:
                scored.append((score, sym.end_line - sym.start_line, sym))
        scored.sort(key=lambda x: (-x[0], x[1], x[2].start_line))
        return [s for _, _, s in scored[:SPAN_SYMBOLS]]

    def body_score(self, sym: Symbol, lines: list[str]) -> float:
        """Query words in a definition's name (counted thrice) and body."""
        counts: Counter[str] = Counter()
        for ident in identifier_terms(sym.name):
            counts[ident] += 3
        for line in lines[sym.start_line - 1 : sym.end_line]:
            for ident in IDENT_RE.findall(line):
                counts.update(identifier_terms(ident))
        weights = self.query.weights
        return sum(weights[t] * math.log1p(n) for t, n in counts.items() if t in weights)

    def focus_options(self, focus: Focus) -> list[_Option]:
        path = focus.path
        info = self.index.files.get(path)
        try:
            text = self.index.read(path)
        except (OSError, UnicodeDecodeError):
            return []
        lines = text.splitlines()
        n = len(lines)
        start = max(1, min(focus.start_line, n))
        end = max(start, min(focus.end_line, n))
        symbols = info.symbols if info else []
        around = (max(1, start - FOCUS_CONTEXT_LINES), min(n, end + FOCUS_CONTEXT_LINES))
        opts = [_option(path, "full", 0, text)] if text else []
        if opts and opts[0].tokens > int(self.budget * TARGET_SHARES[0]):
            opts = []
        enclosing = _enclosing(symbols, start, end)
        ranges = [around]
        if enclosing is not None:
            ranges = _merge([around, (enclosing.start_line, enclosing.end_line)])
        for rng in (ranges, [around]):
            for level in (0, 2, 3, 4):
                opts.append(_option(path, "span", 1, outline(lines, symbols, level, rng)))
        # Last resort: the span itself, cut to whatever the budget allows.
        snippet = "\n".join(lines[around[0] - 1 : around[1]])
        header = _header(path, "span")
        room = self.budget - count_tokens(header) - 1
        if room > 0:
            cut = truncate_to_tokens(snippet, room)
            opts.append(_option(path, "span", 1, header + cut + ("\n" if cut else ""), whole=True))
        return _dedupe(opts)


def _enclosing(symbols: list[Symbol], start: int, end: int) -> Symbol | None:
    best: Symbol | None = None
    for sym in symbols:
        if sym.kind in ("variable", "section"):
            continue
        inside = sym.start_line <= start and end <= sym.end_line
        if inside and (best is None or sym.end_line - sym.start_line < best.end_line - best.start_line):
            best = sym
    return best


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if out and start <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def _allocate(cands: list[_Candidate], budget: int) -> None:
    """Fill the budget greedily, in rank order within each step: the focus;
    a cheap outline for the best-ranked files; the likely target(s) in full
    or as a span; cheap outlines for more files; richer outlines; one-line
    listings for the rest; whatever is left to upgrades."""
    used = 0

    def take(
        cand: _Candidate,
        room: int,
        cap: int | None = None,
        max_tier: int = 6,
        cheapest: bool = False,
        late: bool = False,
    ) -> None:
        nonlocal used
        before = cand.cost
        if cand.choose(room, cap=cap, max_tier=max_tier, cheapest=cheapest, late=late):
            used += cand.cost - before

    def cover(limit: float) -> None:
        for cand in cands:
            if cand.role in outlined and cand.level is None:
                take(cand, min(budget, int(limit * budget)) - used, max_tier=5, cheapest=True)

    outlined = ("primary", "secondary")
    for cand in cands:
        if cand.role == "focus":
            take(cand, budget - used)
    cover(FIRST_COVERAGE_SHARE)
    # Every likely target gets its leanest full text or span before any of them a richer one,
    # so the first one's outline does not crowd out the second one's code.
    for cheapest in (True, False):
        for cand in cands:
            if cand.role == "primary":
                take(cand, budget - used, cap=cand.cap, max_tier=1, cheapest=cheapest)
    cover(COVERAGE_SHARE)
    for cand in cands:
        if cand.role in outlined and cand.level is not None:
            take(cand, budget - used, cap=int(budget * OUTLINE_SHARE))
    for cand in cands:
        if cand.level is None:
            take(cand, budget - used, max_tier=6, cheapest=True)
    for cand in cands:
        if cand.role in (*outlined, "spare") and cand.level is not None:
            take(cand, budget - used, late=True)


def _shrink(cands: list[_Candidate], budget: int) -> None:
    """Get back under `budget`: the least relevant file first, a cheaper
    rendering before dropping it; the focus last."""
    total = sum(c.cost for c in cands)
    order = [c for c in reversed(cands) if c.role != "focus"] + [c for c in cands if c.role == "focus"]
    for cand in order:
        while total > budget and cand.level is not None:
            before = cand.cost
            cand.level = cand.level + 1 if cand.level + 1 < len(cand.options) else None
            total += cand.cost - before
        if total <= budget:
            return


def _candidates(
    renderer: _Renderer, ranked: list[tuple[str, float]], focus: Focus | None, budget: int
) -> list[_Candidate]:
    cands: list[_Candidate] = []
    if focus is not None:
        opts = renderer.focus_options(focus)
        if opts:
            cands.append(_Candidate(focus.path, "focus", opts))
    top = ranked[0][1] if ranked else 0.0
    targets = 0
    # Even a bare listing line costs a few tokens: no more of them could fit.
    ranked = ranked[: max(SKELETON_RANKS, budget // 5)]
    outline_ranks = max(SKELETON_RANKS, budget // 100)
    for rank, (path, score) in enumerate(ranked):
        if focus is not None and path == focus.path:
            continue
        cap = None
        role: Role
        if rank >= outline_ranks:
            role = "listing"
        elif focus is None and targets < len(TARGET_SHARES) and (targets == 0 or score >= TARGET_SCORE * top):
            role = "primary"
            cap = int(budget * TARGET_SHARES[targets])
            targets += 1
        elif score > 0:
            role = "secondary"
        else:
            role = "spare"
        cands.append(_Candidate(path, role, renderer.options(path, role, cap or 0), cap=cap))
    return cands


def select_context(
    root: Path,
    instruction: str | Query,
    budget: int,
    *,
    focus: Focus | None = None,
    index: RepoIndex | None = None,
    memo: ContextMemo | None = None,
    cache_dir: Path | None = None,
    exclude: Collection[str] = (),
) -> Context:
    """The files to send a model for `instruction` (as written, or parsed by
    `bot.query.parse_query` with the focus's hunk), trimmed to `budget` tokens.
    `memo` keeps what is derived from the index for the run's next call."""
    if memo is None:
        memo = ContextMemo(index if index is not None else build_index(Path(root), cache_dir))
    elif index is not None and index is not memo.index:
        raise ValueError("the memo belongs to another index")
    query = as_query(instruction, focus)
    excluded = set(exclude)
    ranked = [(p, s) for p, s in rank_paths(memo, query, focus) if p not in excluded]
    if focus is not None and focus.path in excluded:
        focus = None
    renderer = _Renderer(memo, query, budget)
    cands = _candidates(renderer, ranked, focus, budget)
    _allocate(cands, budget)
    target = budget
    while True:
        _shrink(cands, target)
        kept = [c for c in cands if c.level is not None]
        files = [ContextFile(c.path, c.current.mode, c.current.text, c.current.tokens) for c in kept]
        total = count_tokens("".join(f.text for f in files))
        if total <= budget:
            return Context(files=files, tokens=total, budget=budget)
        # Tokens did not add up across file boundaries: aim lower and shrink again.
        target -= max(1, total - budget)
