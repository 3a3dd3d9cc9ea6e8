"""Test-first edits: before a tier's change is written, the tier writes a new
test for the instruction, in the style of one of the repository's test files.
The test runs alone against the unchanged checkout, where it must fail; after
the change it must pass. Only then is it evidence (bot.evidence), and it is
committed with the change. A test that passes before the change proves
nothing and is discarded, with a note; so is one that does not compile or
holds no test.

Covered: pytest (test_*.py), Go (`*_test.go`, run as `go test -run
'^(TestName)$' ./pkg` with the repository's build flags), Rust (an
integration test `tests/name.rs`, run as `cargo test --test name`, with `-p
crate` in a workspace) and Node (`*.test.ts`, `*.spec.js`, `test/**`…, run by
the repository's own node --test, jest, vitest or mocha pointed at the one
file). Which runner is the one bot.runners reads the test command's output
with; which files are tests is bot.files.ecosystem_of_test. The test runs in the
same sandbox and environment as the repository's tests (bot.engine.tests_in_env).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from bot import models, runners
from bot.apply import ApplyError, extract_whole_file
from bot.config import Tier
from bot.files import NODE_TEST_MARKS, ecosystem_of_test, list_files, read_text
from bot.verify import TestRun, check_syntax, has_python_tests, pytest_args

# How a new pytest test runs alone, in the repository's environment.
ALONE_COMMAND = "python -m pytest -q -p no:cacheprovider -rfE"
# The style example is cut to this much: it shows the style, not every case.
EXAMPLE_CHARS = 4000
SLUG_WORDS = 5
# Exit codes of a run whose tests failed (1), or stopped before running at an
# error of the new test: pytest's import error (2), tsc's type error (2), a
# Go build failure (1), cargo's failed test or build (101). A name the change
# has yet to add fails that way.
FAILED_EXIT_CODES = (1, 2, 101)
# What each ecosystem's test files are called, for the notes.
TEST_FILES = {
    "python": "pytest test (test_*.py)",
    "go": "Go test (*_test.go)",
    "rust": "Rust integration test (tests/*.rs)",
    "node": "JavaScript or TypeScript test (*.test.ts, *.spec.js, test/…)",
}
# Where a repository that runs its tests some other way (make test, tox) shows it uses pytest.
PYTEST_FILES = ("pytest.ini", "conftest.py", "tests/conftest.py")
PYTEST_SETTINGS = ("pyproject.toml", "setup.cfg", "tox.ini", "setup.py", "noxfile.py", "Makefile")
PYTEST_RE = re.compile(r"\bpytest\b")
COVERED = (
    "test-first edits cover pytest, go test, cargo test and Node's runners (node --test, jest, vitest, mocha)"
)


class NoTest(Exception):
    """Why no test is written first, as the note says it."""


@dataclass(frozen=True)
class DraftTest:
    path: str
    text: str
    alone: str  # the command that runs this test alone


@dataclass(frozen=True)
class Way:
    """How a repository's new test is written and run: whose test-file
    conventions it follows, and the runner that runs it alone (None: pytest)."""

    ecosystem: str
    runner: runners.Runner | None = None

    def alone(self, root: Path, command: str, path: str, text: str) -> str:
        if self.runner is None or self.runner.alone is None:
            return f"{ALONE_COMMAND} {shlex.quote(path)}"
        return self.runner.alone(root, command, path, text)


def way_of(root: Path, command: str | None) -> Way:
    """How this repository's tests are written and run; NoTest says why none can be."""
    if not command:
        raise NoTest("no test written first: the repository has no tests to run")
    if pytest_args(command) is not None:
        return Way("python")
    runner = runners.runner_for(command)
    if runner is not None and runner.tests is not None:
        return Way(runner.tests, runner)
    if runner is None and has_python_tests(root):
        if uses_pytest(root):
            return Way("python")  # pytest runs the new file alone, whatever runs the rest
        raise NoTest(
            f"no test written first: the tests run with `{command}`, not pytest, and the repository"
            " shows no sign of pytest (no conftest.py or pytest.ini, no pytest in its settings or"
            " requirements) to run a new test alone with"
        )
    raise NoTest(f"no test written first: the tests run with `{command}`; {COVERED}")


def uses_pytest(root: Path) -> bool:
    """Whether the repository shows it uses pytest: its configuration files,
    or pytest named in its settings or requirements."""
    if any((root / name).is_file() for name in PYTEST_FILES):
        return True
    names = [*PYTEST_SETTINGS, *(p.name for p in root.glob("*requirements*.txt"))]
    return any(PYTEST_RE.search(_text(root, name)) for name in names)


def _text(root: Path, path: str) -> str:
    try:
        return read_text(root, path)
    except (OSError, ValueError):  # absent, a link, not UTF-8
        return ""


def style_example(root: Path, ecosystem: str = "python") -> tuple[str, str] | None:
    """One of the repository's test files of this ecosystem (the shallowest,
    then the first by name), cut to EXAMPLE_CHARS: its path and text; None
    when it has none."""
    tests = sorted((p for p in list_files(root) if ecosystem_of_test(p) == ecosystem), key=_shallow_first)
    for path in tests:
        text = _text(root, path)
        if text.strip():
            return path, text[:EXAMPLE_CHARS]
    return None


def _shallow_first(path: str) -> tuple[int, str]:
    return path.count("/"), path


def new_test_path(root: Path, beside: str, instruction: str) -> str:
    """A file name for the new test, in the example's directory and named as
    its ecosystem names tests (test_x.py, x_test.go, tests/x.rs, x.test.ts), not taken yet."""
    words = re.findall(r"[a-z0-9]+", instruction.lower())[:SLUG_WORDS] or ["change"]
    example = PurePosixPath(beside)
    for n in range(1, 100):
        name = _test_name(beside, [*words, str(n)] if n > 1 else words)
        path = (example.parent / name).as_posix()
        if not (root / path).exists():
            return path
    raise ValueError(f"no free test file name beside {beside}")


def _test_name(example: str, words: list[str]) -> str:
    ecosystem = ecosystem_of_test(example)
    if ecosystem == "go":
        return "_".join(words) + "_test.go"
    if ecosystem == "rust":
        return "_".join(words) + ".rs"
    if ecosystem == "node":
        stem, _, suffix = PurePosixPath(example).name.rpartition(".")
        mark = next((m for m in NODE_TEST_MARKS if stem.endswith(m)), "")
        return "-".join(words) + f"{mark}.{suffix}"
    return "test_" + "_".join(words) + ".py"


async def draft(
    tier: Tier, root: Path, command: str | None, instruction: str, context: str, conventions: str = ""
) -> tuple[DraftTest | None, models.Usage, str]:
    """The tier's new test, the tokens it took, and a note when there is none
    (tests this module cannot run alone, no example to follow, a reply that is
    not a test file). Raises models.ModelError when the model does not answer."""
    try:
        way = way_of(root, command)
    except NoTest as exc:
        return None, models.Usage(), str(exc)
    example = style_example(root, way.ecosystem)
    if example is None:
        why = f"the repository has no {TEST_FILES[way.ecosystem]} file to follow"
        return None, models.Usage(), f"no test written first: {why}"
    path = new_test_path(root, example[0], instruction)
    reply, usage = await models.write_test(tier, instruction, path, context, example, conventions)
    try:
        text = _checked(path, reply)
        alone = way.alone(root, command or "", path, text)
    except (ApplyError, runners.NoAlone) as exc:
        return None, usage, f"the test written first was discarded: {exc}"
    return DraftTest(path, text, alone), usage, ""


def _checked(path: str, reply: str) -> str:
    text = extract_whole_file(reply)
    problems = check_syntax({path: text})
    if problems:
        raise ApplyError(f"it does not compile ({problems[0]})")
    return text


def fails_before(path: str, run: TestRun) -> str | None:
    """None when the new test failed on the unchanged code, as it must; else
    why it is discarded as evidence. A build that stopped at the new test
    (a name the change has yet to add) is such a failure; one that stopped
    elsewhere is not."""
    broken = run.could_not_run or ""
    built = not broken.startswith(runners.BUILD_FAILED) or path in broken
    if run.exit_code in FAILED_EXIT_CODES and not run.timed_out and run.failed + run.errors > 0 and built:
        return None
    if run.exit_code == 0:
        return f"the test written first ({path}) passes before the change, so it proves nothing; discarded"
    why = run.could_not_run or run.summary()
    return f"the test written first ({path}) did not run before the change ({why}); discarded"


def passes_after(run: TestRun) -> bool:
    return run.ok and run.passed > 0 and run.failed + run.errors == 0
