"""Safety bench: what the engine does with the answers small models get wrong.

For each case (a real edit of a Python file from `../shared/bench/edits`) a small git
repository is made: the file as it was before the edit, and a generated pytest module that
checks the edit (below). Then, per failure mode of `bench/noise.py`, `bot.engine.run_edit`
runs with two scripted tiers on the loopback model server: the first answers with the noisy
reply, the second with the correct whole file, so a refusal can be followed by a recovery.

    .venv/bin/python -m bench.safety [--cases N] [--modes a,b] [--jobs J] [--json]

Per mode, each run is one of:
  right      the noisy answer was accepted and the file is exactly the edit's "after"
  recovered  the noisy answer was refused and the second tier's correct answer accepted
  refused    both were refused (the guards refused the correct edit too)
  WRONG      an answer was accepted and the file is not the edit's "after"; split into
             "seen" (the generated checks fail on that file: they cover the fault, and the
             engine accepted it anyway) and "unseen" (damage the checks cannot see, such as a
             line added where nothing changed)
and "written" counts the noisy answers that passed every guard and reached the disk (the
tests then decided). Targets: no WRONG run the checks see, and no elided, truncated or
partial file ever written. The run always exits 0.

The generated checks (`bench/safety_checks.py`, copied into each repository and run there as
the test command) compare text, comments included: every run of lines the edit left alone is
still there, and every changed region stands as the edit wrote it. So the tests cover the
change by construction. The environment is built once, in a data directory shared by all
cases, and the modes of a case run `--jobs` at a time.

    .venv/bin/python -m bench.safety --guards-only [--modes a,b] [--failures K] [--json]

runs no engine: the guards alone (`bot.guards`, and the syntax check the engine runs before
them) on every edit of the corpus, the correct file and each whole-file failure mode, and
counts the correct answers refused and the noisy ones accepted (bench/safety_guards.py).
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import json
import os
import random
import shutil
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("BAML_LOG", "warn")

from bench import safety_checks, safety_guards
from bench.apply import load_cases
from bench.noise import MODES, Edit, Noisy, fenced, noisy
from bench.targets import report_target
from bot.config import Tier
from bot.engine import EditRequest, run_edit
from bot.progress import Progress, Verified
from tests.conftest import make_git_repo
from tests.modelserver import ScriptedModel

CHECKS = "safety_checks"
TEST_COMMAND = f"python {CHECKS}/check.py"
# Modes whose answer must never reach the disk, whatever the tests would say.
NEVER_WRITTEN = ("elided_comment", "elided_bare", "truncated", "snippet")
OUTCOMES = ("right", "recovered", "refused", "WRONG")


@dataclass
class Run:
    case: str
    mode: str
    outcome: str  # one of OUTCOMES
    written: bool  # the noisy answer passed the guards and was written
    seen: bool  # the generated checks fail on the file as it ended
    detail: str


def make_template(case: dict[str, str], root: Path) -> Path:
    """A git repository with the file before the edit and the generated checks."""
    target = root / case["path"]
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(case["before"].encode("utf-8"))
    checks = root / CHECKS
    checks.mkdir()
    shutil.copyfile(Path(safety_checks.__file__), checks / "check.py")
    spec = {"path": case["path"], "before": case["before"], "after": case["after"]}
    (checks / "spec.json").write_text(json.dumps(spec), encoding="utf-8")
    make_git_repo(root)
    return root


def pick_cases(n: int) -> list[dict[str, str]]:
    """`n` cases spread evenly over the corpus (it is grouped by repository), each with the
    text of another file for the "wrong_file" mode. Only cases whose files parse."""
    cases = [c for c in load_cases(None) if _parses(c)]
    step = max(1, len(cases) // max(1, n))
    chosen = cases[::step][:n]
    for k, case in enumerate(chosen):
        case["other"] = chosen[(k + 1) % len(chosen)]["after"] if len(chosen) > 1 else ""
    return chosen


def _parses(case: dict[str, str]) -> bool:
    try:
        ast.parse(case["before"])
        ast.parse(case["after"])
    except SyntaxError:
        return False
    return True


def answers(case: dict[str, str], modes: Sequence[str]) -> dict[str, Noisy]:
    edit = Edit(case["path"], case["before"], case["after"], case["subject"], case.get("other", ""))
    made = {mode: noisy(mode, edit, random.Random(f"{case['id']}:{mode}")) for mode in modes}
    return {mode: answer for mode, answer in made.items() if answer is not None}


def rules(made: dict[str, Noisy], case: dict[str, str]) -> list[dict[str, Any]]:
    correct = fenced(case["after"])
    plan = {"files": [{"path": case["path"], "change": case["subject"]}], "notes": ""}
    scripted: list[dict[str, Any]] = [{"match": "Answer in JSON", "reply": fenced(json.dumps(plan), "json")}]
    for mode, answer in made.items():
        scripted.append({"model": f"noisy-{mode}", "reply": answer.reply})
        scripted.append({"model": f"right-{mode}", "reply": correct})
    return scripted


async def run_mode(
    case: dict[str, str], answer: Noisy, template: Path, scratch: Path, server: ScriptedModel, data: Path
) -> Run:
    root = scratch / answer.mode
    shutil.copytree(template, root, symlinks=True)
    written: list[str] = []

    def progress(event: Progress) -> None:
        if isinstance(event, Verified):  # every guard passed: the change is written next
            written.append(event.tier)

    def tier(name: str, fmt: str) -> Tier:
        return Tier(
            name=name,
            model=f"{name}-{answer.mode}",
            base_url=server.url,
            edit_format=fmt,
            context_window=65_536,
            max_output_tokens=16_384,
            timeout_s=60,
        )

    request = EditRequest(
        root,
        f"{case['subject']} (in {case['path']})",
        test_command=TEST_COMMAND,
        test_timeout_s=120,
        data_dir=data,
        repo="safety-bench",
    )
    result = await run_edit(
        request, tiers=[tier("noisy", answer.fmt), tier("right", "whole")], on_progress=progress
    )
    final = (root / case["path"]).read_bytes().decode("utf-8", "replace")
    if result.status == "failed":
        outcome = "refused"
    elif final != case["after"]:
        outcome = "WRONG"
    else:
        outcome = "right" if result.tier == "noisy" else "recovered"
    detail = "; ".join(f"{a.tier}: {a.outcome}: {a.detail[:160]}" for a in result.attempts)
    seen = bool(safety_checks.failures(case["before"], case["after"], final))
    return Run(case["id"], answer.mode, outcome, "noisy" in written, seen, detail)


async def run_case(
    case: dict[str, str], modes: Sequence[str], server: ScriptedModel, data: Path, jobs: int
) -> list[Run]:
    made = answers(case, modes)
    server.script(*rules(made, case))
    limit = asyncio.Semaphore(jobs)
    with tempfile.TemporaryDirectory(prefix="patchling-safety-") as tmp:
        template = make_template(case, Path(tmp) / "template")

        async def one(answer: Noisy) -> Run:
            async with limit:
                return await run_mode(case, answer, template, Path(tmp), server, data)

        return list(await asyncio.gather(*(one(answer) for answer in made.values())))


# -- report -------------------------------------------------------------------------------------


@dataclass
class Row:
    n: int = 0
    right: int = 0
    recovered: int = 0
    refused: int = 0
    WRONG: int = 0
    wrong_seen: int = 0
    written: int = 0

    def add(self, run: Run) -> None:
        self.n += 1
        setattr(self, run.outcome, getattr(self, run.outcome) + 1)
        self.written += run.written
        self.wrong_seen += run.outcome == "WRONG" and run.seen


def tabulate(runs: Sequence[Run], modes: Sequence[str]) -> dict[str, Row]:
    table: dict[str, Row] = {mode: Row() for mode in modes}
    table["overall"] = Row()
    for run in runs:
        table[run.mode].add(run)
        table["overall"].add(run)
    return table


def print_table(table: dict[str, Row]) -> None:
    head = ("mode", "asked", "n", "right", "recovered", "refused", "WRONG seen", "unseen", "written")
    print("{:<18} {:<6} {:>4} {:>6} {:>10} {:>8} {:>11} {:>7} {:>8}".format(*head))
    for mode, row in table.items():
        asked = MODES.get(mode, "")
        print(
            f"{mode:<18} {asked:<6} {row.n:>4} {row.right:>6} {row.recovered:>10} {row.refused:>8}"
            f" {row.wrong_seen:>11} {row.WRONG - row.wrong_seen:>7} {row.written:>8}"
        )


async def run_all(cases: Sequence[dict[str, str]], modes: Sequence[str], jobs: int) -> list[Run]:
    server = ScriptedModel().start()
    runs: list[Run] = []
    try:
        with tempfile.TemporaryDirectory(prefix="patchling-safety-data-") as data:
            for k, case in enumerate(cases, 1):
                runs += await run_case(case, modes, server, Path(data), jobs)
                print(f"\r{k}/{len(cases)} cases", end="", file=sys.stderr, flush=True)
    finally:
        server.stop()
        print(file=sys.stderr)
    return runs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", type=int, default=40, help="how many edits (spread over the corpus)")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated failure modes")
    parser.add_argument("--jobs", type=int, default=1, help="modes of one case run at once")
    parser.add_argument("--json", action="store_true", help="print the runs as JSON")
    parser.add_argument(
        "--failures",
        type=int,
        default=3,
        help="show up to K WRONG or refused runs per mode (with --guards-only: K accepted cases per mode)",
    )
    parser.add_argument(
        "--guards-only", action="store_true", help="no engine: the guards alone on every edit of the corpus"
    )
    args = parser.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        parser.error(f"unknown modes: {', '.join(unknown)} (known: {', '.join(MODES)})")
    if args.guards_only:
        return _guards_only(modes, args.json, args.failures)

    started = time.monotonic()
    cases = pick_cases(args.cases)
    runs = asyncio.run(run_all(cases, modes, max(1, args.jobs)))
    elapsed = time.monotonic() - started
    table = tabulate(runs, modes)
    if args.json:
        rows = {mode: asdict(row) for mode, row in table.items()}
        json.dump({"cases": len(cases), "elapsed_s": round(elapsed, 1), "rows": rows}, sys.stdout, indent=2)
        print()
        return 0
    print(f"{len(cases)} cases, {len(runs)} runs in {elapsed:.0f} s ({args.jobs} at a time)")
    print_table(table)
    _print_failures(runs, args.failures)
    print()
    overall = table["overall"]
    report_target(f"no WRONG run the tests see ({overall.wrong_seen})", not overall.wrong_seen)
    leaked = sum(table[m].written for m in NEVER_WRITTEN if m in table)
    report_target(f"no elided, truncated or partial file written ({leaked})", leaked == 0)
    return 0


def _guards_only(modes: Sequence[str], as_json: bool, keep: int) -> int:
    started = time.monotonic()
    tally = safety_guards.run(load_cases(None), modes, keep)
    if as_json:
        json.dump(safety_guards.to_json(tally), sys.stdout, indent=2)
        print()
        return 0
    safety_guards.report(tally)
    print(f"\n{time.monotonic() - started:.0f} s")
    return 0


def _print_failures(runs: Sequence[Run], keep: int) -> None:
    shown: Counter[str] = Counter()
    by_mode: dict[str, list[str]] = defaultdict(list)
    for run in runs:
        if run.outcome in ("WRONG", "refused") and shown[run.mode] < keep:
            shown[run.mode] += 1
            unseen = " (unseen by the checks)" if run.outcome == "WRONG" and not run.seen else ""
            by_mode[run.mode].append(f"  {run.case}: {run.outcome}{unseen}: {run.detail}")
    for mode, lines in by_mode.items():
        print(f"\n{mode}:")
        print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
