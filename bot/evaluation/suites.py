"""Task suites: what a model is asked, the files it starts from, and the
hidden tests that decide whether it succeeded.

Two layouts are read:

- a folder of task files (`*.toml`, see `TaskFile`): each names a project
  folder, optional edits that set up the starting state (a bug to fix), the
  instruction, the hidden tests and a reference solution;
- a folder of Exercism exercises (`<exercise>/reference/config.json`): the
  instructions and the stub in, the test file hidden, `reference/example.py`
  the reference solution.

The model only ever sees `Task.files()`; the hidden tests are added to a copy
of its work afterwards (runner.py).
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bot.files import PathRefused, clean_path, list_files
from bot.shared_data import CHECKOUT, bench_dir

__all__ = ["Edit", "Task", "TaskError", "load_suite", "pick_tasks", "suite_dir", "write_tree"]

# Where the shared benchmark data lies, as bench/shared.py has it: $PATCHLING_BENCH_DATA,
# else $PATCHLING_SHARED/bench, else shared/bench beside the checkout.
EXERCISM_FOLDER = "exercism-python"
SUITES = ("examples", "exercism")
EXERCISM_NOTE = (
    "Keep the names of the functions and classes the stub defines: other code uses them."
    " Use only Python's standard library."
)


class TaskError(Exception):
    """A suite or task that cannot be read; the message names the file and the problem."""


def suite_dir(name: str) -> Path:
    """The folder of a named suite: the shipped examples, or the shared Exercism exercises."""
    if name == "examples":
        return CHECKOUT / "examples" / "tasks"
    if name == "exercism":
        return bench_dir() / EXERCISM_FOLDER
    raise TaskError(f"unknown suite {name!r} (known: {', '.join(SUITES)}; or give --suite-dir)")


@dataclass(frozen=True)
class Edit:
    """A change to one file: `search` (which must occur exactly once) becomes
    `replace`; without `search`, `replace` is the file's whole new text."""

    path: str
    replace: str
    search: str | None = None

    def apply(self, files: dict[str, bytes], where: str) -> None:
        if self.search is None:
            files[self.path] = self.replace.encode()
            return
        if self.path not in files:
            raise TaskError(f"{where}: no file {self.path} to edit")
        text = files[self.path].decode()
        count = text.count(self.search)
        if count != 1:
            raise TaskError(f"{where}: the search text occurs {count} times in {self.path} (must be once)")
        files[self.path] = text.replace(self.search, self.replace).encode()


@dataclass(frozen=True)
class Task:
    name: str
    instruction: str
    base: Path  # the project folder the files come from
    paths: tuple[str, ...] | None  # files taken from `base`; None: all its project files
    hidden: Mapping[str, str]  # path -> text, added only to check the work
    reference: tuple[Edit, ...]  # the reference solution, applied over the starting state
    start: tuple[Edit, ...] = ()  # what makes the starting state (a bug to fix)
    test_command: str | None = None  # None: pytest (bot.verify.default_test_command)
    kind: str = ""  # a free label: fix, feature, refactor, ...

    def files(self) -> dict[str, bytes]:
        """The starting state: what the model sees and edits."""
        paths = self.paths if self.paths is not None else list_files(self.base)
        files = {path: (self.base / path).read_bytes() for path in paths}
        for edit in self.start:
            edit.apply(files, f"task {self.name}, start")
        return files

    def solution(self) -> dict[str, bytes]:
        """The starting state with the reference solution applied."""
        files = self.files()
        for edit in self.reference:
            edit.apply(files, f"task {self.name}, reference")
        return files


def write_tree(root: Path, files: Mapping[str, bytes | str]) -> None:
    """Write `files` under root (which may not exist yet)."""
    for rel, content in files.items():
        target = root / clean_path(rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content.encode() if isinstance(content, str) else content)


def load_suite(folder: Path) -> list[Task]:
    """Every task in `folder`, sorted by name: task files when there are any,
    else Exercism exercises."""
    folder = Path(folder)
    if not folder.is_dir():
        raise TaskError(f"no suite at {folder}: not a directory")
    task_files = sorted(folder.glob("*.toml"))
    if task_files:
        return [load_task_file(path) for path in task_files]
    exercises = sorted(p.parent.parent for p in folder.glob("*/reference/config.json"))
    if exercises:
        return [load_exercise(path) for path in exercises]
    raise TaskError(f"no tasks in {folder}: neither *.toml task files nor Exercism exercises")


def pick_tasks(tasks: Sequence[Task], patterns: Sequence[str]) -> list[Task]:
    """The tasks whose name matches one of `patterns` (all when none is given)."""
    picked = [t for t in tasks if not patterns or any(fnmatch(t.name, p) for p in patterns)]
    if not picked:
        raise TaskError(f"no task matches {', '.join(patterns)}")
    return picked


# -- task files -------------------------------------------------------------------


class EditModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str
    search: str | None = None
    replace: str


class TaskFile(BaseModel):
    """One `*.toml` task file (the README's "Evaluating tiers" documents it)."""

    model_config = ConfigDict(extra="forbid")

    project: str = Field(description="the project folder, relative to the task file")
    instruction: str = Field(min_length=1)
    kind: str = ""
    test_command: str | None = None
    start: list[EditModel] = []
    reference: list[EditModel] = Field(min_length=1)
    hidden: dict[str, str] = Field(min_length=1)


def _edits(models: Sequence[EditModel], where: str) -> tuple[Edit, ...]:
    return tuple(Edit(_clean(m.path, where), m.replace, m.search) for m in models)


def _clean(path: str, where: str) -> str:
    try:
        return clean_path(path)
    except PathRefused as exc:
        raise TaskError(f"{where}: {exc}") from None


def load_task_file(path: Path) -> Task:
    try:
        data = TaskFile.model_validate(tomllib.loads(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, ValidationError) as exc:
        raise TaskError(f"{path}: {exc}") from None
    base = (path.parent / data.project).resolve()
    if not base.is_dir():
        raise TaskError(f"{path}: project {data.project!r} is not a directory")
    hidden = {_clean(p, str(path)): text for p, text in data.hidden.items()}
    return Task(
        name=path.stem,
        instruction=data.instruction.strip(),
        base=base,
        paths=None,
        hidden=hidden,
        reference=_edits(data.reference, str(path)),
        start=_edits(data.start, str(path)),
        test_command=data.test_command,
        kind=data.kind,
    )


# -- Exercism exercises -------------------------------------------------------------


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8") if path.is_file() else ""


def exercise_instruction(folder: Path, solution: Sequence[str]) -> str:
    """What a person solving the exercise reads, and where the answer goes."""
    parts = [_read(folder / name).strip() for name in ("introduction.md", "instructions.md")]
    parts.append(_read(folder / "instructions.append.md").strip())
    files = ", ".join(solution)
    parts.append(f"Write the solution in {files}. {EXERCISM_NOTE}")
    return "\n\n".join(p for p in parts if p)


def load_exercise(folder: Path) -> Task:
    where = str(folder / "reference" / "config.json")
    try:
        config = json.loads((folder / "reference" / "config.json").read_text(encoding="utf-8"))
        solution = [_clean(p, where) for p in config["files"]["solution"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TaskError(f"{where}: {exc!r}") from None
    example = folder / "reference" / "example.py"
    if len(solution) != 1 or not example.is_file():
        raise TaskError(f"{where}: expected one solution file and reference/example.py")
    # Everything else beside the stub, bar the prose, is test code the model never sees.
    hidden = {
        p.name: p.read_text(encoding="utf-8")
        for p in sorted(folder.iterdir())
        if p.is_file() and p.suffix != ".md" and p.name not in solution
    }
    return Task(
        name=folder.name,
        instruction=exercise_instruction(folder, solution),
        base=folder,
        paths=tuple(solution),
        hidden=hidden,
        reference=(Edit(solution[0], example.read_text(encoding="utf-8")),),
        kind="exercism",
    )
