"""Benchmark the edit applier on real before/after pairs, with the faults small models make.

For every case of the edits corpus the correct edit is written as a unified diff and as
SEARCH/REPLACE blocks, then distorted one fault at a time. Each variant is applied in a
temporary directory by our applier and, for diffs, by `git apply --recount` and `patch -F3`.
A run is correct (file == after), wrong (applied, file != after) or refused (error); a
refusal that changed a file, or left a stray file behind, is a partial write.

    .venv/bin/python -m bench.apply [--limit N] [--json] [--jobs J] [--failures K]

Target: ours >= 95 % correct overall with no wrong result and no partial write (reported; the
run exits 0 either way).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from difflib import SequenceMatcher
from pathlib import Path, PurePosixPath

from bench.shared import bench_data
from bench.targets import report_target
from bot.apply import ApplyError, apply_edit

TOOLS = ("ours", "git", "patch")
ELISIONS = ("...", "# ... existing code ...")
# Row order of the report; a fault that does not apply to a case (no indentation to lose, a
# single change group to elide) is skipped for that case, hence the smaller n on those rows.
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
    "no_prefix",
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
ROWS = (
    *(f"diff:{f}" for f in DIFF_FAULTS),
    *(f"sr:{f}" for f in SR_FAULTS),
    "overall (diff faults)",
    "overall (sr faults)",
    "overall (all)",
)


def load_cases(limit: int | None) -> list[dict[str, str]]:
    path = bench_data() / "edits" / "cases.jsonl.gz"
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        cases = [json.loads(line) for line in fh if line.strip()]
    return cases[:limit] if limit else cases


# ---------------------------------------------------------------------------------------------
# Edits as data: groups of changed lines with context, rendered as diffs or SEARCH/REPLACE
# ---------------------------------------------------------------------------------------------


@dataclass
class Hunk:
    a_start: int  # 0-based first old line
    b_start: int
    ops: list[tuple[str, str]]  # (" " | "-" | "+" | "=" elision, text)

    def old(self) -> list[str]:
        return [t for tag, t in self.ops if tag in " -="]

    def new(self) -> list[str]:
        return [t for tag, t in self.ops if tag in " +="]


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


def _range(start: int, length: int) -> str:
    # Unified diff convention: an empty range names the line before it.
    first = start + 1 if length else start
    return f"{first}" if length == 1 else f"{first},{length}"


def render_diff(
    hunks: Sequence[Hunk],
    old_path: str,
    new_path: str,
    *,
    numbers: Callable[[Hunk], str] | None = None,
) -> str:
    out = [f"--- {old_path}", f"+++ {new_path}"]
    for h in hunks:
        header = numbers(h) if numbers else _numbers(h)
        out.append(header)
        for tag, text in h.ops:
            out.append(f" {text}" if tag == "=" else f"{tag}{text}")
    return "\n".join(out) + "\n"


def _numbers(h: Hunk, da: int = 0, db: int = 0, dn: tuple[int, int] = (0, 0)) -> str:
    a_len, b_len = len(h.old()) + dn[0], len(h.new()) + dn[1]
    return f"@@ -{_range(h.a_start + da, a_len)} +{_range(h.b_start + db, b_len)} @@"


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
# Faults
# ---------------------------------------------------------------------------------------------


@dataclass
class Variant:
    kind: str  # "diff:<fault>" or "sr:<fault>"
    reply: str
    before: str
    after: str
    path: str


def _strip_indent(h: Hunk) -> Hunk | None:
    texts = [t for _, t in h.ops if t.strip()]
    if not texts:
        return None
    cut = min(len(t) - len(t.lstrip()) for t in texts)
    if cut == 0:
        return None
    return Hunk(h.a_start, h.b_start, [(tag, t[cut:] if t.strip() else t) for tag, t in h.ops])


def _ws_drift(h: Hunk) -> Hunk:
    """Diff context and removed lines gain trailing blanks; blank context loses its space."""
    ops = []
    for k, (tag, text) in enumerate(h.ops):
        if tag == " " and not text.strip():
            ops.append((tag, ""))  # written as an empty line, without the leading space
        elif tag in (" ", "-") and k % 2 == 0:
            ops.append((tag, text + "  "))
        else:
            ops.append((tag, text))
    return Hunk(h.a_start, h.b_start, ops)


def _drift_lines(lines: list[str]) -> list[str]:
    """SEARCH lines copied with trailing blanks (REPLACE is written as given, so it stays)."""
    return [line + " \t" if k % 2 == 0 else line for k, line in enumerate(lines)]


def _elide(before: str, after: str, rng: random.Random, context: int = 3) -> list[Hunk] | None:
    """Join the first two change groups into one block, eliding the unchanged lines between."""
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
    indent = gap_line[: len(gap_line) - len(gap_line.lstrip())]
    marker = indent + rng.choice(ELISIONS)
    joined = Hunk(first.a_start, first.b_start, [*first.ops, ("=", marker), *second.ops])
    return [joined, *hunks[2:]]


def _shifted(h: Hunk, rng: random.Random) -> str:
    shift = rng.choice([-1, 1]) * rng.randint(3, 40)
    shift = max(shift, -h.a_start, -h.b_start) or 5
    return _numbers(h, shift, shift)


def _miscounted(h: Hunk, rng: random.Random) -> str:
    return _numbers(h, dn=(rng.choice([-2, -1, 1, 2, 3]), rng.choice([-2, -1, 1, 2, 3])))


def diff_variants(case: dict[str, str], rng: random.Random) -> Iterator[Variant]:
    path, before, after = case["path"], case["before"], case["after"]
    a_path, b_path = f"a/{path}", f"b/{path}"
    hunks = make_hunks(before, after, 3)
    clean = render_diff(hunks, a_path, b_path)

    def v(kind: str, reply: str, b: str = before, x: str = after) -> Variant:
        return Variant(f"diff:{kind}", reply, b, x, path)

    yield v("clean", clean)
    yield v("fenced", f"Here is the change:\n\n```diff\n{clean}```\n\nThis fixes it.\n")
    yield v("no_line_numbers", render_diff(hunks, a_path, b_path, numbers=lambda h: "@@ ... @@"))
    yield v("wrong_line_numbers", render_diff(hunks, a_path, b_path, numbers=lambda h: _shifted(h, rng)))
    yield v("wrong_counts", render_diff(hunks, a_path, b_path, numbers=lambda h: _miscounted(h, rng)))
    little = make_hunks(before, after, rng.choice([0, 1]))
    yield v("little_context", render_diff(little, a_path, b_path))
    lost = [_strip_indent(h) for h in hunks]
    if any(lost):
        yield v(
            "lost_indent", render_diff([d or h for d, h in zip(lost, hunks, strict=True)], a_path, b_path)
        )
    drift = [_ws_drift(h) for h in hunks]
    yield v("trailing_ws", render_diff(drift, a_path, b_path))
    elided = _elide(before, after, rng)
    if elided:
        yield v("elision", render_diff(elided, a_path, b_path))
    yield v("no_prefix", render_diff(hunks, path, path))
    name = PurePosixPath(path).name
    yield v("basename", render_diff(hunks, name, name))
    yield v("crlf", clean, before.replace("\n", "\r\n"), after.replace("\n", "\r\n"))
    if before.endswith("\n") and after.endswith("\n"):
        yield v("no_final_newline", clean.rstrip("\n"), before[:-1], after[:-1])


def sr_variants(case: dict[str, str], rng: random.Random) -> Iterator[Variant]:
    path, before, after = case["path"], case["before"], case["after"]
    hunks, context = unique_hunks(before, after)
    clean = render_sr(hunks, path)

    def v(kind: str, reply: str, b: str = before, x: str = after) -> Variant:
        return Variant(f"sr:{kind}", reply, b, x, path)

    yield v("clean", clean)
    yield v("fenced_path", render_sr(hunks, path, fenced=True))
    yield v("marker_length", render_sr(hunks, path, marker=rng.choice([5, 6, 8, 9])))
    little = [_min_context(h, split_lines(before)) for h in make_hunks(before, after, rng.choice([0, 1]))]
    yield v("little_context", render_sr(little, path))
    lost = [_strip_indent(h) for h in hunks]
    if any(lost):
        yield v("lost_indent", render_sr([d or h for d, h in zip(lost, hunks, strict=True)], path))
    yield v("trailing_ws", render_sr(hunks, path, search=_drift_lines))
    elided = _elide(before, after, rng, context)
    if elided:
        yield v("elision", render_sr(elided, path))
    yield v("basename", render_sr(hunks, PurePosixPath(path).name))
    yield v("crlf", clean, before.replace("\n", "\r\n"), after.replace("\n", "\r\n"))
    if before.endswith("\n") and after.endswith("\n"):
        yield v("no_final_newline", clean.rstrip("\n"), before[:-1], after[:-1])


def _min_context(h: Hunk, a: Sequence[str]) -> Hunk:
    """An empty SEARCH means "append": a pure insertion keeps one line of context."""
    if any(tag in " -" for tag, _ in h.ops):
        return h
    if h.a_start > 0:
        return Hunk(h.a_start - 1, h.b_start - 1, [(" ", a[h.a_start - 1]), *h.ops])
    return Hunk(h.a_start, h.b_start, [*h.ops, (" ", a[h.a_start])])


# ---------------------------------------------------------------------------------------------
# Running one variant with one tool
# ---------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    case: str
    kind: str
    tool: str
    status: str  # correct | wrong | refused
    partial: bool = False
    detail: str = ""


def _snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def run_tool(tool: str, variant: Variant, root: Path) -> tuple[bool, str]:
    """Apply with one tool; (reported success, detail)."""
    fmt = "diff" if variant.kind.startswith("diff:") else "search_replace"
    if tool == "ours":
        try:
            apply_edit(root, variant.reply, path_hint=variant.path, fmt=fmt)  # type: ignore[arg-type]
        except ApplyError as exc:
            return False, str(exc)
        return True, ""
    patch_file = root.parent / "edit.patch"
    patch_file.write_text(variant.reply, encoding="utf-8", newline="")
    if tool == "git":
        cmd = ["git", "apply", "--recount", str(patch_file)]
    else:
        cmd = ["patch", "-p1", "-F3", "--batch", "--forward", "--no-backup-if-mismatch", "-r", "-", "-i"]
        cmd.append(str(patch_file))
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=60, check=False)
    return proc.returncode == 0, (proc.stderr or proc.stdout).strip()[:300]


def run_variant(case_id: str, variant: Variant, tool: str, scratch: Path) -> Outcome:
    root = scratch / "repo"
    root.mkdir()
    target = root / variant.path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(variant.before.encode("utf-8"))
    start = _snapshot(root)
    try:
        ok, detail = run_tool(tool, variant, root)
    except Exception as exc:  # a crash is a bug in the tool under test: count it, keep going
        ok, detail = False, f"CRASH {type(exc).__name__}: {exc}"
    end = _snapshot(root)
    result = end.get(variant.path)
    expected = variant.after.encode("utf-8")
    stray = set(end) - set(start)
    if not ok:
        return Outcome(case_id, variant.kind, tool, "refused", end != start, detail)
    status = "correct" if result == expected and not stray else "wrong"
    return Outcome(
        case_id, variant.kind, tool, status, False, "" if status == "correct" else "result differs"
    )


def run_case(case: dict[str, str]) -> list[Outcome]:
    rng = random.Random(case["id"])
    variants = [*diff_variants(case, rng), *sr_variants(case, rng)]
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="patchling-bench-") as tmp:
        for n, variant in enumerate(variants):
            tools = TOOLS if variant.kind.startswith("diff:") else ("ours",)
            for tool in tools:
                scratch = Path(tmp) / f"{n}-{tool}"
                scratch.mkdir()
                outcomes.append(run_variant(case["id"], variant, tool, scratch))
    return outcomes


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


@dataclass
class Tally:
    n: int = 0
    correct: int = 0
    wrong: int = 0
    refused: int = 0
    partial: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, o: Outcome, keep: int) -> None:
        self.n += 1
        setattr(self, o.status, getattr(self, o.status) + 1)
        self.partial += o.partial
        if o.status != "correct" and len(self.examples) < keep:
            self.examples.append(f"{o.case}: {o.status}: {o.detail[:160]}")

    def pct(self) -> float:
        return 100.0 * self.correct / self.n if self.n else 0.0


def tabulate(outcomes: Sequence[Outcome], keep: int) -> dict[tuple[str, str], Tally]:
    table: dict[tuple[str, str], Tally] = defaultdict(Tally)
    for o in outcomes:
        table[(o.kind, o.tool)].add(o, keep)
        table[("overall (diff faults)" if o.kind.startswith("diff:") else "overall (sr faults)", o.tool)].add(
            o, 0
        )
        table[("overall (all)", o.tool)].add(o, 0)
    return table


def print_table(table: dict[tuple[str, str], Tally], out: Callable[[str], None]) -> None:
    head = ("fault", "tool", "n", "correct", "wrong", "refused", "partial", "%")
    out("{:<24} {:<6} {:>5} {:>8} {:>6} {:>8} {:>8} {:>7}".format(*head))
    for kind in ROWS:
        if kind in ("sr:clean", "overall (diff faults)"):
            out("-" * 80)
        for tool in TOOLS:
            t = table.get((kind, tool))
            if t is None:
                continue
            out(
                f"{kind:<24} {tool:<6} {t.n:>5} {t.correct:>8} {t.wrong:>6} {t.refused:>8} {t.partial:>8}"
                f" {t.pct():>6.1f}%"
            )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--limit", type=int, default=None, help="only the first N cases")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes")
    parser.add_argument(
        "--failures", type=int, default=0, help="show up to K non-correct runs of ours per fault"
    )
    args = parser.parse_args(argv)

    started = time.monotonic()
    cases = load_cases(args.limit)
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        outcomes = [o for batch in pool.map(run_case, cases, chunksize=4) for o in batch]
    elapsed = time.monotonic() - started
    table = tabulate(outcomes, args.failures)
    ours = table[("overall (all)", "ours")]
    if args.json:
        rows = [
            {"fault": kind, "tool": tool, **asdict(table[(kind, tool)]), "pct_correct": round(t.pct(), 2)}
            for kind in ROWS
            for tool in TOOLS
            if (t := table.get((kind, tool))) is not None
        ]
        json.dump({"cases": len(cases), "elapsed_s": round(elapsed, 1), "rows": rows}, sys.stdout, indent=2)
        print()
    else:
        runs = ", ".join(f"{n} {tool}" for tool, n in Counter(o.tool for o in outcomes).items())
        print(f"{len(cases)} cases, {len(outcomes)} runs ({runs}) in {elapsed:.0f} s")
        print_table(table, print)
        for (kind, tool), t in table.items():
            if tool == "ours" and t.examples:
                print(f"\n{kind}:")
                for line in t.examples:
                    print(f"  {line}")
    if not args.json:
        print()
        report_target(f"ours >= 95 % correct ({ours.pct():.1f} %)", ours.pct() >= 95.0)
        report_target(f"ours: no wrong result ({ours.wrong})", ours.wrong == 0)
        report_target(f"ours: no partial write ({ours.partial})", ours.partial == 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
