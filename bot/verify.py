"""Checks on a change: syntax of the touched files, and the repository's tests
run in a sandboxed subprocess.

The test command runs the *repository's* code, which may be hostile or simply
careless. So it gets a scrubbed environment (a short allow-list, never a token
or key), a fresh HOME/TMPDIR, closed stdin, its own process group killed as a
whole on timeout, and its output goes to a file outside the checkout.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from bot.index import JUNK_DIRS

# Only these variables reach the command; everything else is dropped.
ENV_ALLOW = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TERM", "PYTHONHASHSEED", "SYSTEMROOT")
# Never passed even if allow-listed by mistake (patterns match upper-cased names).
ENV_DENY = ("*TOKEN*", "*SECRET*", "*_KEY", "*PASSWORD*", "BOT_*", "GITHUB_*", "PATCHLING_*", "*API_KEY*")
# Characters meaning the command needs a shell (pipes, globs, variables, ...).
SHELL_CHARS = set("|&;<>()$`*?[]{}~!\n")
OUTPUT_TAIL_CHARS = 8_000
# Parsed output is bounded too: a runaway test printing gigabytes must not OOM us.
OUTPUT_READ_LIMIT = 4_000_000

_COUNT_RE = re.compile(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed)\b")
_FAILING_RE = re.compile(r"^(FAILED|ERROR) (.+?)(?: - .*)?$")


@dataclass
class TestRun:
    __test__ = False  # not a pytest test class, whatever its name says

    command: str
    passed: int
    failed: int
    errors: int
    skipped: int
    failing: list[str] = field(default_factory=list)
    duration_s: float = 0.0
    exit_code: int | None = None
    timed_out: bool = False
    output_tail: str = ""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    @property
    def total(self) -> int:
        return self.passed + self.failed + self.errors

    def summary(self) -> str:
        text = f"{self.passed} passed, {self.failed} failed, {self.errors} errors, {self.skipped} skipped"
        return text + (" (timed out)" if self.timed_out else "")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# -- syntax -----------------------------------------------------------------


def check_syntax(changes: Mapping[str, str | bytes]) -> list[str]:
    """Problems with the new contents: Python must compile, JSON and TOML must
    parse, everything must be text. An empty list means all is well."""
    problems: list[str] = []
    for path, content in sorted(changes.items()):
        if isinstance(content, bytes):
            try:
                text = content.decode("utf-8")
            except UnicodeDecodeError as exc:
                problems.append(f"{path}: not valid UTF-8 ({exc.reason})")
                continue
        else:
            text = content
        suffix = Path(path).suffix.lower()
        try:
            if suffix in (".py", ".pyi"):
                compile(text, path, "exec", dont_inherit=True)
            elif suffix == ".json":
                json.loads(text)
            elif suffix == ".toml":
                tomllib.loads(text)
        except SyntaxError as exc:
            problems.append(f"{path}:{exc.lineno}: {exc.msg}")
        except (ValueError, tomllib.TOMLDecodeError) as exc:
            problems.append(f"{path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
    return problems


# -- which tests ------------------------------------------------------------


def has_python_tests(root: Path) -> bool:
    """A tests/ directory with Python in it, or any test_*.py / *_test.py."""
    tests_dir = root / "tests"
    if tests_dir.is_dir() and any(tests_dir.rglob("*.py")):
        return True
    for _dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in JUNK_DIRS and not d.startswith(".")]
        if any(
            (name.startswith("test_") and name.endswith(".py")) or name.endswith("_test.py")
            for name in filenames
        ):
            return True
    return False


def default_test_command(root: Path) -> str | None:
    """pytest when the repository has Python tests. `python` stands for the
    interpreter Patchling runs under (see command_argv), so reports name no
    path of the server's."""
    if not has_python_tests(Path(root)):
        return None
    return "python -m pytest -q -p no:cacheprovider -rfE"


# -- running ----------------------------------------------------------------


def _denied(name: str) -> bool:
    upper = name.upper()
    return any(fnmatch(upper, pattern) for pattern in ENV_DENY)


def scrubbed_env(home: Path) -> dict[str, str]:
    """The whole environment a test command sees."""
    env = {name: os.environ[name] for name in ENV_ALLOW if name in os.environ and not _denied(name)}
    env.setdefault("PATH", os.defpath)
    env.update(
        {
            "HOME": str(home),
            "TMPDIR": str(home),
            "TMP": str(home),
            "TEMP": str(home),
            # Keeps __pycache__ out of the checkout, so a run leaves it as it was.
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def command_argv(command: str) -> list[str]:
    """argv for `command`: split with shlex and run directly, unless it uses
    shell syntax (pipes, &&, redirects, globs, $VARS, VAR=x prefixes), which
    then runs under /bin/sh -c exactly as written. Either way it runs inside
    the same sandbox; the shell adds no privilege, only syntax."""
    words = shlex.split(command)
    if not words:
        raise ValueError("the test command is empty")
    if any(ch in SHELL_CHARS for ch in command) or re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
        return ["/bin/sh", "-c", command]
    if words[0] == "python":
        # The interpreter that carries pytest, whatever PATH says.
        words[0] = sys.executable
    return words


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


# The command gets SIGKILL when the server dies, even by kill -9, which leaves
# no chance to kill its process group (util-linux's setpriv: no preexec_fn in
# a threaded server). Only the direct child: a sandbox will take the rest.
_DIE_WITH_SERVER = ["setpriv", "--pdeathsig", "KILL", "--"] if shutil.which("setpriv") else []


def _run(
    argv: list[str], cwd: Path, env: dict[str, str], timeout_s: float, out_path: Path
) -> tuple[int | None, bool]:
    with open(out_path, "wb") as out:
        proc = subprocess.Popen(
            [*_DIE_WITH_SERVER, *argv],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: a timeout kills children too
        )
        try:
            code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            proc.wait()
            return None, True
        except BaseException:
            _kill_group(proc)
            proc.wait()
            raise
        # Background children left behind by a finished command go too.
        _kill_group(proc)
        return code, False


def _read_output(path: Path) -> str:
    size = path.stat().st_size
    with open(path, "rb") as handle:
        if size > OUTPUT_READ_LIMIT:
            handle.seek(size - OUTPUT_READ_LIMIT)
        return handle.read().decode("utf-8", errors="replace")


def run_tests(root: Path, command: str, timeout_s: float, setup_command: str | None = None) -> TestRun:
    """Run `setup_command` (if any) then `command` in `root`, sandboxed; both
    share `timeout_s`. A failing setup counts as one error of the run."""
    root = Path(root)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="patchling-test-") as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        env = scrubbed_env(home)
        out_path = Path(tmp) / "output.txt"
        setup_note = ""
        if setup_command:
            code, timed_out = _run(command_argv(setup_command), root, env, timeout_s, out_path)
            if timed_out or code != 0:
                # Reported, and the tests still run: a baseline and an "after" run
                # see the same (incomplete) setup, so they stay comparable.
                why = "timed out" if timed_out else f"exited with {code}"
                setup_note = f"setup command {why}: {setup_command}\n{_read_output(out_path)[-2000:]}\n"
        remaining = max(1.0, timeout_s - (time.monotonic() - started))
        code, timed_out = _run(command_argv(command), root, env, remaining, out_path)
        output = _read_output(out_path)
    run = parse_test_output(
        command, output, exit_code=code, timed_out=timed_out, duration_s=time.monotonic() - started
    )
    if setup_note:
        run.errors += 1
        run.failing.insert(0, f"setup: {setup_command}")
        run.output_tail = (setup_note + run.output_tail)[-OUTPUT_TAIL_CHARS:]
    return run


# -- parsing ----------------------------------------------------------------


def parse_test_output(
    command: str, output: str, *, exit_code: int | None, timed_out: bool = False, duration_s: float = 0.0
) -> TestRun:
    """Counts from pytest's summary line ("3 failed, 10 passed in 0.1s"), or
    from the last "N passed / N failed" line of any other runner. When no count
    can be found the command itself counts as one check, passed when it exits 0."""
    counts: dict[str, int] | None = None
    for line in reversed(output.splitlines()):
        found = _COUNT_RE.findall(line)
        if found:
            counts = {}
            for number, word in found:
                key = "errors" if word.startswith("error") else word
                counts[key] = counts.get(key, 0) + int(number)
            break
        if re.search(r"\bno tests ran\b", line):
            counts = {}
            break
    failing = []
    for line in output.splitlines():
        match = _FAILING_RE.match(line.strip())
        if match and match.group(2) not in failing:
            failing.append(match.group(2))
    if counts is None:
        counts = {}
        if timed_out or exit_code != 0:
            counts["failed"] = 1
            failing = failing or [command]
        else:
            counts["passed"] = 1
    return TestRun(
        command=command,
        passed=counts.get("passed", 0) + counts.get("xpassed", 0),
        failed=counts.get("failed", 0),
        errors=counts.get("errors", 0),
        skipped=counts.get("skipped", 0) + counts.get("xfailed", 0),
        failing=failing,
        duration_s=round(duration_s, 3),
        exit_code=exit_code,
        timed_out=timed_out,
        output_tail=output[-OUTPUT_TAIL_CHARS:],
    )


def worse_than(before: TestRun, after: TestRun) -> str | None:
    """Why `after` is worse than the baseline `before`, or None when it is not:
    more failures or errors, a test failing that did not fail before (which
    includes a new test that fails), fewer passing, or a new timeout or crash."""
    if after.timed_out and not before.timed_out:
        return f"the tests timed out ({after.command})"
    newly_failing = [test for test in after.failing if test not in before.failing]
    if newly_failing:
        shown = ", ".join(newly_failing[:5]) + (" …" if len(newly_failing) > 5 else "")
        return f"tests now failing: {shown}"
    if after.failed + after.errors > before.failed + before.errors:
        return (
            f"more failures: {after.failed} failed, {after.errors} errors"
            f" (before: {before.failed} failed, {before.errors} errors)"
        )
    if after.passed < before.passed:
        return f"fewer tests pass: {after.passed} (before: {before.passed})"
    if before.ok and not after.ok:
        return f"the test command now exits with {after.exit_code}"
    return None
