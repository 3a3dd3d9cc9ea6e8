"""The safety bench without the engine: the checks made before anything is written, on every
edit of the corpus (`python -m bench.safety --guards-only`).

Per edit, the correct whole file and each whole-file failure mode of `bench/noise.py` go
through what the engine runs on a whole-file answer before writing it: "the edit changes
nothing" (bot.edit), the syntax check (bot.verify.check_syntax) and the shrink and damage
guards (bot.guards.shrink_problems), with the words the engine gives them (the instruction
and the plan's, here the commit's subject). It counts, per mode, the noisy answers that get
through (they would be written; only the tests stand behind them), and the correct answers
the guards refuse (a false refusal costs a tier its turn).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.noise import _CONTENT, Edit, noisy
from bot.guards import shrink_problems
from bot.verify import check_syntax

# Modes whose answer is a whole file; the others are replies the edit parser reads.
CONTENT_MODES = tuple(_CONTENT)


def asked(case: dict[str, str]) -> str:
    """The words the engine hands the guards: the instruction, then the plan's change."""
    instruction = f"{case['subject']} (in {case['path']})"
    return " ".join([instruction, "", case["subject"]])


def refusal(case: dict[str, str], content: str) -> str | None:
    """Why the engine refuses `content` as the new file before writing it, or None."""
    path, before = case["path"], case["before"]
    if content == before:
        return "no change"
    problems = check_syntax({path: content}) or shrink_problems({path: before}, {path: content}, asked(case))
    return "; ".join(problems) if problems else None


def guard_refusal(case: dict[str, str]) -> str | None:
    """Why the guards refuse the correct file (the syntax check left out: a corpus file that
    does not parse is no guard's doing)."""
    path = case["path"]
    problems = shrink_problems({path: case["before"]}, {path: case["after"]}, asked(case))
    return "; ".join(problems) if problems else None


@dataclass
class Tally:
    cases: int = 0
    correct_refused: list[str] = field(default_factory=list)  # "case: why"
    made: Counter[str] = field(default_factory=Counter)
    accepted: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)


def noisy_contents(case: dict[str, str], modes: Sequence[str]) -> Iterator[tuple[str, str]]:
    edit = Edit(case["path"], case["before"], case["after"], case["subject"], case.get("other", ""))
    for mode in modes:
        answer = noisy(mode, edit, random.Random(f"{case['id']}:{mode}"))
        if answer is not None and answer.content is not None:
            yield mode, answer.content


def run(cases: Sequence[dict[str, str]], modes: Sequence[str], keep: int = 3) -> Tally:
    tally = Tally(cases=len(cases))
    for k, case in enumerate(cases):
        case = {**case, "other": cases[(k + 1) % len(cases)]["after"]}
        why = guard_refusal(case)
        if why is not None:
            tally.correct_refused.append(f"{case['id']}: {why}")
        for mode, content in noisy_contents(case, [m for m in modes if m in CONTENT_MODES]):
            tally.made[mode] += 1
            if refusal(case, content) is None:
                tally.accepted[mode] += 1
                tally.examples.setdefault(mode, [])
                if len(tally.examples[mode]) < keep:
                    tally.examples[mode].append(case["id"])
    return tally


def report(tally: Tally) -> None:
    refused = len(tally.correct_refused)
    print(f"{tally.cases} edits; correct answers refused by the guards: {refused}")
    for line in tally.correct_refused[:10]:
        print(f"  {line[:300]}")
    print(f"\n{'mode':<18} {'n':>5} {'accepted':>9}")
    for mode in CONTENT_MODES:
        if tally.made[mode]:
            print(f"{mode:<18} {tally.made[mode]:>5} {tally.accepted[mode]:>9}")
    total, through = sum(tally.made.values()), sum(tally.accepted.values())
    print(f"{'all':<18} {total:>5} {through:>9}")
    for mode, ids in tally.examples.items():
        print(f"  {mode} accepted, e.g.: {', '.join(ids)}")


def to_json(tally: Tally) -> dict[str, Any]:
    data = asdict(tally)
    data["correct_refused"] = len(tally.correct_refused)
    data["refusals"] = tally.correct_refused
    return data
