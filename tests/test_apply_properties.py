"""Property tests for the edit applier.

A correct edit (replace, insert or delete a line range of a real project file or of generated,
deliberately repetitive text) is written as a unified diff or as a SEARCH/REPLACE block and
then distorted the way small models distort edits. Whatever the distortion, the applier must
produce exactly the intended file or refuse with ApplyError: never a different file.
"""

from __future__ import annotations

import difflib
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

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
ELISIONS = ["...", "# ... existing code ..."]
DIFF_FAULTS = [
    "none",
    "no_numbers",
    "wrong_numbers",
    "little_context",
    "lost_indent",
    "trailing_ws",
    "prefix",
    "basename",
    "elision",
    "crlf",
    "no_final_newline",
]
SR_FAULTS = [
    "none",
    "little_context",
    "lost_indent",
    "trailing_ws",
    "basename",
    "elision",
    "crlf",
    "no_final_newline",
]
FAULTS = {"diff": DIFF_FAULTS, "search_replace": SR_FAULTS}


class Chooser(Protocol):
    """What random.Random and a hypothesis draw adapter both provide."""

    def choice(self, seq: Sequence[Any]) -> Any: ...

    def randint(self, a: int, b: int) -> int: ...


class Draw:
    def __init__(self, data: st.DataObject) -> None:
        self.data = data

    def choice(self, seq: Sequence[Any]) -> Any:
        return self.data.draw(st.sampled_from(list(seq)))

    def randint(self, a: int, b: int) -> int:
        return self.data.draw(st.integers(a, b))


@dataclass
class Edit:
    path: str
    before: list[str]  # line bodies; the file ends with a newline unless a fault removes it
    new: list[str]
    i: int  # before[i:j] becomes new
    j: int

    @property
    def after(self) -> list[str]:
        return self.before[: self.i] + self.new + self.before[self.j :]


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
    if sources and rnd.choice([True, False]):
        path, lines = rnd.choice(sources)
    else:
        path, lines = "src/gen/mod.py", gen_lines(rnd)
    n = len(lines)
    op = rnd.choice(["replace", "insert", "delete"])
    i = rnd.randint(0, n if op == "insert" else n - 1)
    j = i if op == "insert" else rnd.randint(i + 1, min(n, i + 6))
    base = lines[min(i, n - 1)][: len(lines[min(i, n - 1)]) - len(lines[min(i, n - 1)].lstrip())]
    new = [] if op == "delete" else [gen_line(rnd, base) for _ in range(rnd.randint(1, 4))]
    return Edit(path, lines, new, i, j)


# --- writing the edit -----------------------------------------------------------------------------

Op = tuple[str, str]


@dataclass
class Hunk:
    a_start: int
    b_start: int
    ops: list[Op]


def diff_hunks(a: list[str], b: list[str], context: int) -> list[Hunk]:
    hunks = []
    for group in difflib.SequenceMatcher(None, a, b, autojunk=False).get_grouped_opcodes(context):
        ops: list[Op] = []
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                ops += [(" ", t) for t in a[i1:i2]]
            else:
                ops += [("-", t) for t in a[i1:i2]] + [("+", t) for t in b[j1:j2]]
        hunks.append(Hunk(group[0][1], group[0][3], ops))
    return hunks


def _range(start: int, length: int) -> str:
    return f"{start + 1 if length else start},{length}"


def header(h: Hunk, shift: int = 0) -> str:
    old = sum(t != "+" for t, _ in h.ops)
    new = sum(t != "-" for t, _ in h.ops)
    return f"@@ -{_range(h.a_start + shift, old)} +{_range(h.b_start + shift, new)} @@"


def render_diff(hunks: Sequence[Hunk], old: str, new: str, headers: Sequence[str]) -> str:
    out = [f"--- {old}", f"+++ {new}"]
    for h, head in zip(hunks, headers, strict=True):
        out.append(head)
        out += [tag + text for tag, text in h.ops]
    return "\n".join(out) + "\n"


def render_sr(path: str, search: Sequence[str], replace: Sequence[str]) -> str:
    body = "".join(line + "\n" for line in search) + "=======\n" + "".join(line + "\n" for line in replace)
    return f"{path}\n<<<<<<< SEARCH\n{body}>>>>>>> REPLACE\n"


def strip_indent(lines: Sequence[str], cut: int) -> list[str]:
    return [line[cut:] if line.strip() else line for line in lines]


def common_indent(lines: Sequence[str]) -> int:
    """Length of the leading whitespace shared by every non-blank line."""
    indents = [_indent_of(line) for line in lines if line.strip()]
    if not indents:
        return 0
    size = 0
    while all(len(ind) > size and ind[size] == indents[0][size] for ind in indents):
        size += 1
    return size


def drift(line: str, rnd: Chooser) -> str:
    return rnd.choice([line.rstrip(), line + " ", line + "\t ", line])


@dataclass
class Trial:
    reply: str
    fmt: str
    before: str  # file text given to the applier
    expected: str
    files: dict[str, str]


def _texts(edit: Edit, fault: str) -> tuple[str, str]:
    before = "".join(line + "\n" for line in edit.before)
    after = "".join(line + "\n" for line in edit.after)
    if fault == "crlf":
        return before.replace("\n", "\r\n"), after.replace("\n", "\r\n")
    if fault == "no_final_newline" and edit.before[-1].strip():
        # (A blank last line cannot lose its newline: the file would have one line less.)
        return before[:-1], after[:-1] if after else after
    return before, after


def make_diff(edit: Edit, fault: str, rnd: Chooser) -> str:
    context = {"little_context": rnd.choice([0, 1]), "elision": 6}.get(fault, 3)
    hunks = diff_hunks(edit.before, edit.after, context)
    headers = [header(h) for h in hunks]
    old, new = f"a/{edit.path}", f"b/{edit.path}"
    if fault == "no_numbers":
        headers = [rnd.choice(["@@ ... @@", "@@"]) for _ in hunks]
    elif fault == "wrong_numbers":
        headers = [header(h, _nonzero_shift(h, rnd)) for h in hunks]
    elif fault == "lost_indent":
        for h in hunks:
            texts = [text for _, text in h.ops]
            cut = rnd.randint(0, common_indent(texts))
            h.ops = [(tag, text) for (tag, _), text in zip(h.ops, strip_indent(texts, cut), strict=True)]
    elif fault == "trailing_ws":
        for h in hunks:
            h.ops = [(tag, drift(text, rnd) if tag != "+" else text) for tag, text in h.ops]
    elif fault == "prefix":
        old, new = rnd.choice(
            [(edit.path, edit.path), (f"b/{edit.path}", f"a/{edit.path}"), (old, edit.path)]
        )
    elif fault == "basename":
        old = new = PurePosixPath(edit.path).name
    elif fault == "elision":
        for h in hunks:
            h.ops = _elide_context(h.ops, rnd)
    reply = render_diff(hunks, old, new, headers)
    return reply.rstrip("\n") if fault == "no_final_newline" else reply


def _nonzero_shift(h: Hunk, rnd: Chooser) -> int:
    # Mostly off by a few lines (the usual model error, and the likeliest to hit a look-alike).
    shift = rnd.choice([-1, 1]) * rnd.choice([1, 1, 2, 3, 4, 7, 12, 30])
    return shift if h.a_start + shift >= 0 and h.b_start + shift >= 0 else abs(shift)


def _elide_context(ops: list[Op], rnd: Chooser) -> list[Op]:
    """Replace a run of >= 3 context lines strictly inside the leading or trailing context."""
    lead = next((k for k, (t, _) in enumerate(ops) if t != " "), len(ops))
    trail = next((k for k, (t, _) in enumerate(reversed(ops)) if t != " "), len(ops))
    marker = rnd.choice(ELISIONS)
    if lead >= 5 and rnd.choice([True, False]):
        return [ops[0], (" ", _indent_of(ops[1][1]) + marker), *ops[lead - 1 :]]
    if trail >= 5:
        end = len(ops) - trail
        return [*ops[: end + 1], (" ", _indent_of(ops[end + 1][1]) + marker), ops[-1]]
    return ops


def _indent_of(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def make_sr(edit: Edit, fault: str, rnd: Chooser) -> str:
    if fault == "little_context":
        before_ctx, after_ctx = rnd.choice([0, 1]), rnd.choice([0, 1])
    else:
        before_ctx = after_ctx = 6 if fault == "elision" else 3
    lo, hi = max(0, edit.i - before_ctx), min(len(edit.before), edit.j + after_ctx)
    if lo == hi:  # an empty SEARCH would mean "append": keep one line of context
        lo, hi = (lo - 1, hi) if lo > 0 else (lo, hi + 1)
    search = edit.before[lo:hi]
    replace = edit.before[lo : edit.i] + edit.new + edit.before[edit.j : hi]
    path = edit.path
    if fault == "lost_indent":
        cut = rnd.randint(0, common_indent(search + replace))
        search, replace = strip_indent(search, cut), strip_indent(replace, cut)
    elif fault == "trailing_ws":
        search = [drift(line, rnd) for line in search]
    elif fault == "basename":
        path = PurePosixPath(path).name
    elif fault == "elision":
        search, replace = _elide_sr(search, replace, edit.i - lo, hi - edit.j, rnd)
    reply = render_sr(path, search, replace)
    return reply.rstrip("\n") if fault == "no_final_newline" else reply


def _elide_sr(
    search: list[str], replace: list[str], lead: int, trail: int, rnd: Chooser
) -> tuple[list[str], list[str]]:
    """Elide unchanged lines inside the SEARCH and REPLACE alike (the model skips them)."""
    marker = rnd.choice(ELISIONS)
    if lead >= 5:
        line = _indent_of(search[1]) + marker
        return [search[0], line, *search[lead - 1 :]], [replace[0], line, *replace[lead - 1 :]]
    if trail >= 5:
        line = _indent_of(search[-trail + 1]) + marker
        return [*search[: len(search) - trail + 1], line, search[-1]], [
            *replace[: len(replace) - trail + 1],
            line,
            replace[-1],
        ]
    return search, replace


def make_trial(edit: Edit, fmt: str, fault: str, rnd: Chooser, decoys: bool = True) -> Trial:
    before, expected = _texts(edit, fault)
    reply = make_diff(edit, fault, rnd) if fmt == "diff" else make_sr(edit, fault, rnd)
    files = {edit.path: before}
    if decoys and fault in ("basename", "prefix") and rnd.choice([True, False, False]):
        # A decoy with the same name elsewhere: a bare name is then ambiguous.
        files[f"decoy/{PurePosixPath(edit.path).name}"] = before
    return Trial(reply, fmt, before, expected, files)


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
    event(outcome)
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
