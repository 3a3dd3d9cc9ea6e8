"""Property tests for the edit applier.

A correct edit (replace, insert or delete a line range of a real project file or of generated,
deliberately repetitive text) is written as a unified diff or as SEARCH/REPLACE blocks and
then distorted the way small models distort edits, by the generator the edit benchmark uses
(`bench/faults.py`). Whatever the distortion, the applier must produce exactly the intended
file or refuse with ApplyError: never a different file.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from bench.faults import FAULTS, Chooser, distort
from bot.apply import ApplyError, compute_changes

PROJECT = Path(__file__).resolve().parents[1]


def _project_sources() -> list[tuple[str, list[str]]]:
    """The project's own Python files under bot/ and tests/ (generated code left out)."""
    out = []
    for folder in ("bot", "tests"):
        for path in sorted((PROJECT / folder).rglob("*.py")):
            if "baml_client" in path.parts or path.stat().st_size > 80_000:
                continue
            lines = path.read_text(encoding="utf-8").split("\n")[:-1]
            if len(lines) >= 3:
                out.append((path.relative_to(PROJECT).as_posix(), lines))
    return out


SOURCES = _project_sources()
# A small vocabulary repeats a lot: the hard case for "never apply at a wrong place".
VOCAB = [
    "x = 1",
    "return x",
    "pass",
    "if x:",
    "else:",
    "y = f(x)",
    "# note",
    "...",
    "def f(x):",
    "x += 1",
    "",
]
T = TypeVar("T")


class Draw:
    """A fault generator's Chooser drawing from hypothesis, so failures shrink."""

    def __init__(self, data: st.DataObject) -> None:
        self.data = data

    def choice(self, seq: Sequence[T]) -> T:
        return self.data.draw(st.sampled_from(list(seq)))

    def randint(self, a: int, b: int) -> int:
        return self.data.draw(st.integers(a, b))


@dataclass
class Edit:
    path: str
    before: list[str]  # line bodies; the file ends with a newline unless a fault removes it
    after: list[str]


def gen_line(rnd: Chooser, base: str = "") -> str:
    word = rnd.choice(VOCAB)
    if not word:
        return ""
    return base + "    " * rnd.randint(0, 2) + word + rnd.choice(["", "", "", " "])


def gen_lines(rnd: Chooser) -> list[str]:
    """Random lines, or a short block repeated: every place then has look-alikes."""
    if rnd.choice([True, False]):
        return [gen_line(rnd) for _ in range(rnd.randint(1, 30))]
    block = [gen_line(rnd) for _ in range(rnd.randint(1, 4))]
    lines = block * rnd.randint(2, 8)
    for _ in range(rnd.randint(0, 2)):
        lines[rnd.randint(0, len(lines) - 1)] = gen_line(rnd)
    return lines


def random_edit(rnd: Chooser, sources: Sequence[tuple[str, list[str]]]) -> Edit:
    """One changed line range, or two (then several hunks, and an elision between them)."""
    if rnd.choice([True, False]) and sources:
        path, lines = rnd.choice(sources)
    else:
        path, lines = "src/gen/mod.py", gen_lines(rnd)
    after = change_range(rnd, lines, 0, len(lines))
    if rnd.choice([True, False, False]) and len(after) > len(lines) // 2 + 2:
        # A second change in the unchanged tail (in `after` terms: past the first change).
        first_end = len(after) - _common_tail(lines, after)
        if first_end < len(after) - 1:
            after = change_range(rnd, after, first_end + 1, len(after))
    return Edit(path, lines, after)


def change_range(rnd: Chooser, lines: list[str], lo: int, hi: int) -> list[str]:
    """`lines` with one range within [lo, hi) replaced, deleted, or lines inserted there."""
    op = rnd.choice(["replace", "insert", "delete"])
    i = rnd.randint(lo, hi if op == "insert" else hi - 1)
    j = i if op == "insert" else rnd.randint(i + 1, min(hi, i + 6))
    near = lines[min(i, len(lines) - 1)]
    base = near[: len(near) - len(near.lstrip())]
    new = [] if op == "delete" else [gen_line(rnd, base) for _ in range(rnd.randint(1, 4))]
    return lines[:i] + new + lines[j:]


def _common_tail(a: Sequence[str], b: Sequence[str]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[-1 - n] == b[-1 - n]:
        n += 1
    return n


# --- writing the edit, with a fault ---------------------------------------------------------------


def _text(lines: Sequence[str]) -> str:
    return "".join(line + "\n" for line in lines)


@dataclass
class Trial:
    reply: str
    fmt: str
    before: str  # file text given to the applier
    expected: str
    files: dict[str, str]
    distorted: bool = True  # False: the fault could not be made for this edit


def make_trial(edit: Edit, fmt: str, fault: str, rnd: Chooser, decoys: bool = True) -> Trial:
    # A careless SEARCH (three lines of context, unique or not) is the harder case.
    careful = rnd.choice([True, False])
    faulty = distort(fmt, edit.path, _text(edit.before), _text(edit.after), fault, rnd, careful=careful)
    distorted = faulty is not None
    if faulty is None:  # the fault cannot be made for this edit: the clean edit still must apply
        faulty = distort(fmt, edit.path, _text(edit.before), _text(edit.after), "clean", rnd, careful=careful)
        assert faulty is not None
    files = {edit.path: faulty.before}
    if decoys and fault in ("basename", "prefix") and rnd.choice([True, False, False]):
        # A decoy with the same name elsewhere: a bare name is then ambiguous.
        files[f"decoy/{PurePosixPath(edit.path).name}"] = faulty.before
    return Trial(faulty.reply, fmt, faulty.before, faulty.after, files, distorted)


def attempt(trial: Trial, root: Path, path: str, detect: bool = False) -> str:
    """'correct', 'refused' or 'wrong'."""
    fmt = None if detect else trial.fmt
    try:
        changes = compute_changes(root, trial.reply, path_hint=path, fmt=fmt, files=trial.files)  # type: ignore[arg-type]
    except ApplyError:
        return "refused"
    ok = changes.get(path, trial.before) == trial.expected and set(changes) <= {path}
    return "correct" if ok else "wrong"


# --- the properties -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def empty_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("empty-repo")


@pytest.mark.parametrize(
    ("fmt", "fault"), [(fmt, fault) for fmt, faults in FAULTS.items() for fault in faults]
)
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_distorted_edits_apply_exactly_or_are_refused(
    fmt: str, fault: str, data: st.DataObject, empty_root: Path
) -> None:
    rnd = Draw(data)
    edit = random_edit(rnd, SOURCES)
    trial = make_trial(edit, fmt, fault, rnd)
    outcome = attempt(trial, empty_root, edit.path, detect=rnd.choice([False, False, True]))
    event(outcome if trial.distorted else f"{outcome} (fault not applicable)")
    assert outcome != "wrong", f"{fmt}/{fault} applied at a wrong place:\n{trial.reply}"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_several_distortions_at_once_never_apply_elsewhere(data: st.DataObject, empty_root: Path) -> None:
    # Faults combined: line numbers can then no longer be trusted; refusing is fine.
    rnd = Draw(data)
    edit = random_edit(rnd, SOURCES)
    first = make_trial(edit, "diff", rnd.choice(["lost_indent", "trailing_ws", "little_context"]), rnd)
    reply = first.reply
    if rnd.choice([True, False]):
        reply = "\n".join(
            line if not line.startswith("@@") else "@@ -1,2 +1,2 @@" for line in reply.split("\n")
        )
    trial = Trial(reply, "diff", first.before, first.expected, first.files)
    assert attempt(trial, empty_root, edit.path) != "wrong"


# Files whose content this sweep may depend on: owned here or stable.
SWEEP_FILES = {"bot/apply.py", "bot/config.py", "tests/test_apply.py", "tests/modelserver.py"}
# Share of distorted edits of project files that must apply (the rest may be refused).
SWEEP_MINIMUM = {"little_context": 0.5, "elision": 0.6}


def test_distorted_edits_of_project_files_mostly_apply(empty_root: Path) -> None:
    sources = [s for s in SOURCES if s[0] in SWEEP_FILES]
    assert sources, "no project files to sweep"
    rnd = random.Random(20240601)
    outcomes: dict[tuple[str, str], Counter[str]] = {}
    for fmt, faults in FAULTS.items():
        for fault in faults:
            tally: Counter[str] = Counter()
            for _ in range(30):
                edit = random_edit(rnd, sources)
                while edit.path == "src/gen/mod.py":
                    edit = random_edit(rnd, sources)
                trial = make_trial(edit, fmt, fault, rnd, decoys=False)
                tally[attempt(trial, empty_root, edit.path)] += 1
            outcomes[(fmt, fault)] = tally
    assert all(t["wrong"] == 0 for t in outcomes.values()), outcomes
    low = {
        k: t for k, t in outcomes.items() if t["correct"] < SWEEP_MINIMUM.get(k[1], 0.85) * sum(t.values())
    }
    assert not low, low


@pytest.mark.parametrize("source", SOURCES[:12], ids=lambda s: s[0])
def test_whole_file_replies_round_trip(source: tuple[str, list[str]], empty_root: Path) -> None:
    path, lines = source
    if any(line.startswith("```") for line in lines):
        pytest.skip("a fenced reply cannot carry a file with its own fence lines")
    text = "".join(line + "\n" for line in lines)
    reply = f"Here is the file:\n\n```python\n{text}```\n"
    assert compute_changes(empty_root, reply, path_hint=path, fmt="whole", files={path: text}) == {}
    edited = text.replace("\n", "\n# edited\n", 1)
    reply = f"```python\n{edited}```"
    assert compute_changes(empty_root, reply, path_hint=path, fmt="whole", files={path: text}) == {
        path: edited
    }
