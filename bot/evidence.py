"""What a change's verification rests on, said plainly.

"Verified" means the tests pass, none got worse, and the tests ran the lines
the change added or modified (measured with coverage.py for Python, with
`go test -coverprofile` for Go). The
evidence level says how strong that is; each surface (PR body, status
comment, CLI, `--json`) renders the one label kept here.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

# A coverage report larger than this is not read: the tests wrote it, and they may be hostile.
MAX_REPORT_BYTES = 64 << 20
# Lines of a Go profile's blocks expanded at most: more, and the profile is refused (hostile or absurd).
MAX_PROFILE_LINES = 10_000_000
# Suffixes whose changed lines coverage.py measures.
MEASURED_SUFFIXES = (".py",)
# A Go coverage profile's block: `path/file.go:L1.C1,L2.C2 statements count`.
_GO_BLOCK_RE = re.compile(r"^(\S+\.go):(\d{1,9})\.\d{1,9},(\d{1,9})\.\d{1,9} \d{1,9} (\d{1,19})$")
# Lines that hold no statement whatever the language: closing or opening brackets alone.
_PUNCTUATION = frozenset("{}()[],;")
# bot.index's names for files that hold no code to run.
NOT_CODE = frozenset({"config", "markdown", "rst", "text"})


class Evidence(StrEnum):
    """How a change was shown to work, strongest first."""

    NEW_TEST = "new_test"
    COVERED = "covered"
    NO_WORSE = "no_worse"
    NOT_RUN = "not_run"

    @property
    def label(self) -> str:
        return LABELS[self]


LABELS = {
    Evidence.NEW_TEST: "new test failing→passing",
    Evidence.COVERED: "changed lines covered by tests",
    Evidence.NO_WORSE: "only: no test got worse",
    Evidence.NOT_RUN: "tests could not run",
}


# -- which lines changed --------------------------------------------------------


@dataclass(frozen=True)
class Measure:
    """What one coverage tool measures, and how its report is read."""

    suffixes: tuple[str, ...]
    comment: str  # how a comment-only line starts
    # Whether a measured file the report does not list never ran (coverage.py
    # lists every file imported), or holds no statement (Go lists blocks only).
    unlisted_unrun: bool


PYTHON = Measure(MEASURED_SUFFIXES, "#", unlisted_unrun=True)
GO = Measure((".go",), "//", unlisted_unrun=False)


def _is_code(line: str, measure: Measure) -> bool:
    text = line.strip()
    return bool(text) and not text.startswith(measure.comment) and not set(text) <= _PUNCTUATION


def changed_lines(
    originals: Mapping[str, str | None], changes: Mapping[str, str], measure: Measure = PYTHON
) -> dict[str, list[int]]:
    """Per measured file (.py, or `measure`'s), the 1-based numbers of the lines in its new
    content that the change added or modified, blank, comment-only and bracket-only lines left out."""
    found: dict[str, list[int]] = {}
    for path in sorted(changes):
        if not path.endswith(measure.suffixes):
            continue
        old = (originals.get(path) or "").splitlines()
        new = changes[path].splitlines()
        matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
        numbers = [
            j + 1
            for tag, _i1, _i2, j1, j2 in matcher.get_opcodes()
            if tag in ("replace", "insert")
            for j in range(j1, j2)
            if _is_code(new[j], measure)
        ]
        if numbers:
            found[path] = numbers
    return found


def unmeasured_languages(paths: Iterable[str], measure: Measure = PYTHON) -> list[str]:
    """The languages of changed code files coverage is not measured for."""
    # Imported here: the renderers (bot.messages) use this module and stay light.
    from bot.fences import NAMES
    from bot.index import language_of

    names = {language_of(p) for p in paths if not p.endswith(measure.suffixes)}
    return sorted(NAMES.get(n, n) for n in names if n not in NOT_CODE)


# -- what the tests ran ------------------------------------------------------------


@dataclass(frozen=True)
class FileLines:
    executed: frozenset[int]
    missing: frozenset[int]  # statements the tool saw and the tests did not run


def read_report(path: Path, root: Path) -> dict[str, FileLines] | None:
    """`coverage json`'s report, keyed by path relative to `root`; None when
    there is none or it cannot be read (the tests did not get that far)."""
    try:
        if path.stat().st_size > MAX_REPORT_BYTES:
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
        files = data["files"]
        return {_relative(name, root): _lines(entry) for name, entry in files.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _relative(name: str, root: Path) -> str:
    path = Path(name)
    if path.is_absolute():
        for base in (root, root.resolve()):
            if path.is_relative_to(base):
                return path.relative_to(base).as_posix()
    return path.as_posix()


def _lines(entry: Mapping[str, Any]) -> FileLines:
    return FileLines(
        frozenset(int(n) for n in entry["executed_lines"]), frozenset(int(n) for n in entry["missing_lines"])
    )


def read_go_profile(path: Path, root: Path) -> dict[str, FileLines] | None:
    """`go test -coverprofile`'s blocks, keyed by path relative to `root` (the
    module path of its go.mod taken off); None when there is none or it cannot
    be read. A line of some block that ran counts as executed, a line only in
    blocks that did not as missing; a block outside the module, or a malformed
    line, is passed over: the tests wrote the profile."""
    from bot.imports import go_module  # bot.imports pulls in the parsers; the renderers stay light

    try:
        module = go_module((root / "go.mod").read_text(encoding="utf-8"))
        if module is None or path.stat().st_size > MAX_REPORT_BYTES:
            return None
        text = path.read_text(encoding="utf-8")
    except (OSError, ValueError):
        return None
    lines = text.splitlines()
    if not lines or not lines[0].startswith("mode: "):
        return None
    return _go_lines(_go_blocks(lines[1:], module))


def _go_blocks(lines: Iterable[str], module: str) -> dict[tuple[str, int, int], bool]:
    """Each well-formed block inside the module, once: (path, first line, last line) -> whether it ran.
    A block reported by several test binaries (-coverpkg) ran if it ran in any."""
    blocks: dict[tuple[str, int, int], bool] = {}
    for line in lines:
        found = _GO_BLOCK_RE.match(line)
        path = _in_module(found.group(1), module) if found else None
        if found is None or path is None:
            continue
        first, last, count = int(found.group(2)), int(found.group(3)), int(found.group(4))
        if 0 < first <= last:
            key = (path, first, last)
            blocks[key] = blocks.get(key, False) or count > 0
    return blocks


def _in_module(name: str, module: str) -> str | None:
    """A profile's file name as a path in the checkout, or None outside it."""
    if not name.startswith(module + "/"):
        return None
    parts = name[len(module) + 1 :].split("/")
    return None if any(p in ("", ".", "..") for p in parts) else "/".join(parts)


def _go_lines(blocks: Mapping[tuple[str, int, int], bool]) -> dict[str, FileLines] | None:
    if sum(last - first + 1 for _p, first, last in blocks) > MAX_PROFILE_LINES:
        return None
    ran: dict[str, set[int]] = {}
    seen: dict[str, set[int]] = {}
    for (path, first, last), count in blocks.items():
        seen.setdefault(path, set()).update(range(first, last + 1))
        if count:
            ran.setdefault(path, set()).update(range(first, last + 1))
    return {
        p: FileLines(frozenset(ran.get(p, ())), frozenset(lines - ran.get(p, set())))
        for p, lines in seen.items()
    }


def read_coverage(measure: Measure, path: Path, root: Path) -> dict[str, FileLines] | None:
    """The report `measure`'s tool wrote at `path`, read as its tool writes it."""
    return (read_go_profile if measure is GO else read_report)(path, root)


def unexercised(
    changed: Mapping[str, list[int]], report: Mapping[str, FileLines], measure: Measure = PYTHON
) -> dict[str, list[int]]:
    """The changed lines no test ran: statements the report marks missing, and
    every changed code line of a file the tests never imported (where the tool
    lists every file it loaded)."""
    found: dict[str, list[int]] = {}
    for path, numbers in changed.items():
        lines = report.get(path)
        if lines is None:
            missed = numbers if measure.unlisted_unrun else []
        else:
            missed = [n for n in numbers if n in lines.missing]
        if missed:
            found[path] = missed
    return found


def spans(numbers: Iterable[int]) -> str:
    """12, 14–16: consecutive numbers as a range."""
    runs: list[list[int]] = []
    for n in sorted(set(numbers)):
        if runs and n == runs[-1][-1] + 1:
            runs[-1].append(n)
        else:
            runs.append([n])
    return ", ".join(str(r[0]) if len(r) == 1 else f"{r[0]}–{r[-1]}" for r in runs)


def describe_unexercised(missed: Mapping[str, list[int]]) -> str:
    """Lines 4–6 of calc.py, line 9 of cli.py: in words."""
    return ", ".join(
        f"{'line' if len(lines) == 1 else 'lines'} {spans(lines)} of {path}" for path, lines in missed.items()
    )


def not_exercised(missed: Mapping[str, list[int]]) -> str:
    """The sentence for changed lines no test ran ("tests pass, but lines 4–6
    of calc.py are not exercised by any test")."""
    one = sum(len(lines) for lines in missed.values()) == 1
    return (
        f"tests pass, but {describe_unexercised(missed)} {'is' if one else 'are'} not exercised by any test"
    )


# -- the verdict -----------------------------------------------------------------------


@dataclass
class Proof:
    """What a change's tests showed, beyond the counts."""

    level: Evidence = Evidence.NO_WORSE
    # Changed lines no test ran (path -> line numbers); empty when all ran or not measured.
    unexercised: dict[str, list[int]] = field(default_factory=dict)
    # "measured", or why changed-line coverage was not ("" when no measured file changed).
    coverage: str = ""
    new_test: str | None = None  # the test written first, when it failed before and passes after
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "level": self.level.value,
            "label": self.level.label,
            "coverage": self.coverage,
            "unexercised": self.unexercised,
            "new_test": self.new_test,
            "notes": self.notes,
        }
