"""Test-first edits: before a tier's change is written, the tier writes a new
pytest test for the instruction, in the style of one of the repository's test
files. The test runs alone against the unchanged checkout, where it must fail;
after the change it must pass. Only then is it evidence (bot.evidence), and it
is committed with the change. A test that passes before the change proves
nothing and is discarded, with a note; so is one that does not compile or
holds no test.

Python repositories with pytest tests only, for now. The test runs in the same
sandbox and environment as the repository's tests (bot.engine.tests_in_env).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from bot import models
from bot.apply import ApplyError, extract_whole_file
from bot.config import Tier
from bot.files import list_files, read_text
from bot.verify import TestRun, check_syntax

# How the new test runs alone: pytest, in the repository's environment.
ALONE_COMMAND = "python -m pytest -q -p no:cacheprovider -rfE"
# The style example is cut to this much: it shows the style, not every case.
EXAMPLE_CHARS = 4000
SLUG_WORDS = 5
# pytest's exit codes that mean "tests ran and some failed" (1) or "the module
# failed to import" (2): a name the change has yet to add fails the import.
FAILED_EXIT_CODES = (1, 2)


@dataclass(frozen=True)
class DraftTest:
    path: str
    text: str


def is_test_file(path: str) -> bool:
    name = PurePosixPath(path).name
    return name.endswith(".py") and (name.startswith("test_") or name.endswith("_test.py"))


def style_example(root: Path) -> tuple[str, str] | None:
    """One of the repository's test files (the shallowest, then the first by
    name), cut to EXAMPLE_CHARS: its path and text; None when it has none."""
    tests = sorted((p for p in list_files(root) if is_test_file(p)), key=lambda p: (p.count("/"), p))
    for path in tests:
        try:
            text = read_text(root, path)
        except (OSError, ValueError):  # unreadable, a link, not UTF-8: try the next
            continue
        if text.strip():
            return path, text[:EXAMPLE_CHARS]
    return None


def new_test_path(root: Path, beside: str, instruction: str) -> str:
    """A file name for the new test, in the example's directory, not taken yet."""
    words = re.findall(r"[a-z0-9]+", instruction.lower())[:SLUG_WORDS]
    stem = "test_" + ("_".join(words) or "change")
    folder = PurePosixPath(beside).parent
    for n in range(1, 100):
        path = (folder / f"{stem}{'' if n == 1 else f'_{n}'}.py").as_posix()
        if not (root / path).exists():
            return path
    raise ValueError(f"no free test file name for {stem} in {folder}")


async def draft(
    tier: Tier, root: Path, instruction: str, context: str, conventions: str = ""
) -> tuple[DraftTest | None, models.Usage, str]:
    """The tier's new test, the tokens it took, and a note when there is none
    (no example to follow, a reply that is not a Python file). Raises
    models.ModelError when the model does not answer."""
    example = style_example(root)
    if example is None:
        return None, models.Usage(), "no test written first: the repository has no pytest test to follow"
    path = new_test_path(root, example[0], instruction)
    reply, usage = await models.write_test(tier, instruction, path, context, example, conventions)
    try:
        text = extract_whole_file(reply)
    except ApplyError as exc:
        return None, usage, f"the test written first was discarded: {exc}"
    problems = check_syntax({path: text})
    if problems:
        return None, usage, f"the test written first was discarded: it does not compile ({problems[0]})"
    return DraftTest(path, text), usage, ""


def alone_command(path: str) -> str:
    return f"{ALONE_COMMAND} {shlex.quote(path)}"


def fails_before(path: str, run: TestRun) -> str | None:
    """None when the new test failed on the unchanged code, as it must; else
    why it is discarded as evidence."""
    if run.exit_code in FAILED_EXIT_CODES and not run.timed_out and run.failed + run.errors > 0:
        return None
    if run.exit_code == 0:
        return f"the test written first ({path}) passes before the change, so it proves nothing; discarded"
    why = run.could_not_run or run.summary()
    return f"the test written first ({path}) did not run before the change ({why}); discarded"


def passes_after(run: TestRun) -> bool:
    return run.ok and run.passed > 0 and run.failed + run.errors == 0
