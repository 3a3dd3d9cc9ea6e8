"""Benchmark the edit applier on real before/after pairs, with the faults small models make.

For every case of the edits corpus the correct edit is written as a unified diff and as
SEARCH/REPLACE blocks, then distorted one fault at a time (`bench/faults.py`, the generator
the applier's property tests use too). Each variant is applied in a
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
from pathlib import Path

from bench.faults import DIFF_FAULTS, SR_FAULTS, distort
from bench.shared import bench_data, need
from bench.targets import report_target
from bot.apply import ApplyError, apply_edit

TOOLS = ("ours", "git", "patch")
# Row order of the report; a fault that does not apply to a case (no indentation to lose,
# nothing to elide) is skipped for that case, hence the smaller n on those rows.
ROWS = (
    *(f"diff:{f}" for f in DIFF_FAULTS),
    *(f"sr:{f}" for f in SR_FAULTS),
    "overall (diff faults)",
    "overall (sr faults)",
    "overall (all)",
)


def load_cases(limit: int | None) -> list[dict[str, str]]:
    path = need(bench_data() / "edits" / "cases.jsonl.gz")
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        cases = [json.loads(line) for line in fh if line.strip()]
    return cases[:limit] if limit else cases


@dataclass
class Variant:
    kind: str  # "diff:<fault>" or "sr:<fault>"
    reply: str
    before: str
    after: str
    path: str


def variants(case: dict[str, str], rng: random.Random) -> Iterator[Variant]:
    """The case's edit with each fault that can be made for it, as a diff and as SEARCH/REPLACE."""
    for fmt, label, faults in (("diff", "diff", DIFF_FAULTS), ("search_replace", "sr", SR_FAULTS)):
        for fault in faults:
            faulty = distort(fmt, case["path"], case["before"], case["after"], fault, rng)
            if faulty is not None:
                yield Variant(f"{label}:{fault}", faulty.reply, faulty.before, faulty.after, case["path"])


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
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="patchling-bench-") as tmp:
        for n, variant in enumerate(variants(case, rng)):
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
