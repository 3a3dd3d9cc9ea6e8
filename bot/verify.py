"""Checks on a change: syntax of the touched files, and the repository's tests
run in a sandbox.

The test command runs the *repository's* code, which may be hostile or simply
careless. So it runs in bot.sandbox (bubblewrap: only the work tree and the
environment mounted, no network, limits), with a scrubbed environment (a short
allow-list, never a token or key) and closed stdin.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shlex
import tempfile
import time
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Any, Protocol

from bot import grammars, runners
from bot.evidence import GO, PYTHON, Measure
from bot.files import ecosystem_of_test, list_files
from bot.index import language_of
from bot.sandbox import Network, Sandbox, SandboxUnavailable
from bot.sandbox import run as sandboxed

# Only these variables reach the command; everything else is dropped.
ENV_ALLOW = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TERM", "PYTHONHASHSEED", "SYSTEMROOT")
# Never passed even if allow-listed by mistake (patterns match upper-cased names).
ENV_DENY = ("*TOKEN*", "*SECRET*", "*_KEY", "*PASSWORD*", "BOT_*", "GITHUB_*", "PATCHLING_*", "*API_KEY*")
# Characters meaning the command needs a shell (pipes, globs, variables, ...).
SHELL_CHARS = set("|&;<>()$`*?[]{}~!\n")
OUTPUT_TAIL_CHARS = 8_000

_COUNT_RE = re.compile(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed)\b")
_FAILING_RE = re.compile(r"^(FAILED|ERROR) (.+?)(?: - .*)?$")
# pytest's exit codes that mean the tests did not run (collection errors or
# interruption, internal error, usage error, no tests collected).
PYTEST_NOT_RUN = {
    2: "collection errors or an interrupted run",
    3: "pytest hit an internal error",
    4: "pytest could not start (a usage error, or a conftest.py that fails to import)",
    5: "no tests were collected",
}
# Markers of pytest's output, for commands (make test, tox) that run it indirectly.
_PYTEST_OUTPUT_RE = re.compile(
    r"^(=+ .*(test session starts|ERRORS|short test summary info).* =+"
    r"|Interrupted: \d+ errors? during collection|ImportError while loading conftest .*"
    r"|ERROR: (usage|file or directory not found).*|no tests ran in .*)$",
    re.MULTILINE,
)
_NO_MODULE_RE = re.compile(r"No module named '?([A-Za-z_][\w.]*)'?")
# How a plain pytest command starts: such a command can run under coverage.py instead.
PYTEST_STARTS = (("python", "-m", "pytest"), ("python3", "-m", "pytest"), ("pytest",), ("py.test",))
# The report's export needs no more than this, whatever the tests left of the timeout.
COVERAGE_EXPORT_S = 60.0
# Runners that measure coverage themselves (Runner.cover), and how their reports are read.
RUNNER_MEASURES = {runners.GO.name: GO}


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
    # Why the tests did not run at all (then the counts mean nothing), or None.
    could_not_run: str | None = None
    # False only when the operator turned the sandbox off (`sandbox = "none"`).
    sandboxed: bool = True

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and self.could_not_run is None

    @property
    def total(self) -> int:
        return self.passed + self.failed + self.errors

    def summary(self) -> str:
        if self.could_not_run is not None:
            return f"tests could not run: {self.could_not_run}"
        text = f"{self.passed} passed, {self.failed} failed, {self.errors} errors, {self.skipped} skipped"
        text += " (timed out)" if self.timed_out else ""
        return text + ("" if self.sandboxed else " (ran unsandboxed)")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def not_run(cls, command: str, reason: str) -> TestRun:
        """A run that never started (its environment could not be built, say)."""
        return cls(command, 0, 0, 0, 0, could_not_run=reason)


@dataclass
class Mounts:
    """What a test environment adds to the sandbox (see bot.sandbox.run)."""

    writable: list[Path] = field(default_factory=list)
    readable: list[Path] = field(default_factory=list)
    binds: list[tuple[Path, str]] = field(default_factory=list)
    writable_binds: list[tuple[Path, str]] = field(default_factory=list)


class Environment(Protocol):
    """What the tests run in besides the checkout: the repository's Python
    environment (bot.pyenv) or its installed dependencies (bot.deps)."""

    reused: bool  # found ready rather than built for this run

    def apply(self, env: dict[str, str], root: Path) -> dict[str, str]:
        """The command's variables with this environment's added."""
        ...

    def mounts(self, root: Path, setup: bool) -> Mounts:
        """What the sandbox shows of it, for the setup command or the tests."""
        ...

    def to_json(self) -> dict[str, Any]: ...

    def describe(self) -> str: ...


# -- syntax -----------------------------------------------------------------


def _tree_sitter_problems(path: str, text: str) -> list[str]:
    """ "path: line L, column C: …" for each ERROR or MISSING node, in the
    languages with a tree-sitter grammar (Python keeps `compile`, whose
    messages say more)."""
    language = language_of(path)
    if language == "python" or language not in grammars.SUPPORTED:
        return []
    return [f"{path}: {problem.describe()}" for problem in grammars.syntax_problems(text, language, path)]


def check_syntax(changes: Mapping[str, str | bytes]) -> list[str]:
    """Problems with the new contents: Python must compile, code in the other
    languages tree-sitter reads must parse without an ERROR or MISSING node,
    JSON and TOML must parse, everything must be text. An empty list means all
    is well."""
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
            else:
                problems += _tree_sitter_problems(path, text)
        except SyntaxError as exc:
            problems.append(f"{path}:{exc.lineno}: {exc.msg}")
        except (ValueError, tomllib.TOMLDecodeError) as exc:
            problems.append(f"{path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
    return problems


# -- which tests ------------------------------------------------------------


def has_python_tests(root: Path) -> bool:
    """A tests/ directory with Python in it, or any test_*.py / *_test.py, among the
    project's files (bot.files: no junk, vendored or ignored directories, no links)."""
    return any(
        rel.endswith(".py") and (rel.startswith("tests/") or ecosystem_of_test(rel) == "python")
        for rel in list_files(Path(root))
    )


def default_test_command(root: Path) -> str | None:
    """pytest when the repository has Python tests (`python` is the one of the
    repository's environment, bot/pyenv.py, first on the command's PATH), else
    the ecosystem's runner its root files name (bot/runners.py)."""
    if has_python_tests(Path(root)):
        return "python -m pytest -q -p no:cacheprovider -rfE"
    found = runners.default_command(Path(root))
    return found[0] if found is not None else None


# -- running ----------------------------------------------------------------


def pytest_args(command: str) -> list[str] | None:
    """The arguments of a plain pytest command (no shell syntax), or None when
    `command` is something else."""
    if any(ch in SHELL_CHARS for ch in command):
        return None
    words = shlex.split(command)
    for start in PYTEST_STARTS:
        if tuple(words[: len(start)]) == start:
            return words[len(start) :]
    return None


def coverage_commands(command: str, report: Path) -> tuple[str, str] | None:
    """`command` run under coverage.py, its data file beside `report`, and the
    command that exports `report` (coverage.py's JSON); None when `command` is
    not plain pytest. Both run in the repository's environment, which has coverage."""
    args = pytest_args(command)
    if args is None:
        return None
    data = shlex.quote(f"--data-file={report.with_suffix('.data')}")
    run = f"python -m coverage run {data} -m pytest {shlex.join(args)}".rstrip()
    export = f"python -m coverage json {data} -o {shlex.quote(str(report))} -q --ignore-errors"
    return run, export


def measure_of(command: str) -> Measure:
    """Which tool measures `command`'s changed-line coverage: the runner's own
    (plain `go test`), else coverage.py (plain pytest, or nothing measured)."""
    runner = runners.runner_for(command)
    if runner is not None and runner.cover is not None and runner.cover(command, Path("profile")):
        return RUNNER_MEASURES.get(runner.name, PYTHON)
    return PYTHON


def measured_commands(command: str, report: Path) -> tuple[str, str | None] | None:
    """`command` made to write its coverage report at `report`, and the command
    that exports it where the tool needs one; None when `command` cannot be measured."""
    runner = runners.runner_for(command)
    if runner is not None and runner.cover is not None:
        covered = runner.cover(command, report)
        return (covered, None) if covered is not None else None
    return coverage_commands(command, report)


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
    # Programs are found on the command's own PATH (the environment's bin/ first).
    return words


def _step(
    sandbox: Sandbox,
    command: str,
    root: Path,
    env: dict[str, str],
    timeout_s: float,
    test_env: Environment | None,
    *,
    setup: bool,
    network: Network,
    toolchain: list[Path] | None = None,
    scratch: list[Path] | None = None,
) -> tuple[int | None, bool, str]:
    """One command in the sandbox: the work tree writable, plus what the
    environment shows (bot.pyenv's is writable for setup only, as it installs
    there), and the runner's toolchain read-only where it lives outside the
    system directories."""
    mounts = test_env.mounts(root, setup) if test_env is not None else Mounts()
    outcome = sandboxed(
        sandbox,
        command_argv(command),
        cwd=root,
        env=env,
        timeout_s=timeout_s,
        writable=[root, *mounts.writable, *(scratch or [])],
        readable=[*mounts.readable, *(toolchain or [])],
        binds=mounts.binds,
        writable_binds=mounts.writable_binds,
        network=network == "all" or (setup and network == "setup"),
    )
    output = outcome.output + (f"\n[patchling: {outcome.note}]\n" if outcome.note else "")
    return outcome.exit_code, outcome.timed_out, output


@dataclass(frozen=True)
class _TestPlan:
    """One run_tests call, resolved: what each of its steps needs."""

    root: Path
    command: str
    timeout_s: float  # shared by the setup command and the tests
    setup_command: str | None
    pyenv: Environment | None
    sandbox: Sandbox
    network: Network
    coverage_to: Path | None
    runner: runners.Runner | None
    started: float = field(default_factory=time.monotonic)  # when the call began
    since: float = field(default_factory=time.time)  # the same: reports written before it are stale


@dataclass(frozen=True)
class _Ran:
    """What came back from the sandbox: the test command's outcome, and a failed setup's note."""

    code: int | None
    timed_out: bool
    output: str
    setup_note: str


def run_tests(
    root: Path,
    command: str,
    timeout_s: float,
    setup_command: str | None = None,
    pyenv: Environment | None = None,
    *,
    sandbox: Sandbox | None = None,
    network: Network = "setup",
    coverage_to: Path | None = None,
) -> TestRun:
    """Run `setup_command` (if any) then `command` in `root`, in `sandbox`
    (bubblewrap by default), inside the repository's environment `pyenv` when
    given (its Python environment or its installed dependencies); both share
    `timeout_s`. A failing setup counts as one error of the run. Where the
    sandbox cannot run, the tests do not run either. With `coverage_to`, a
    plain pytest command runs under coverage.py, which writes its JSON report
    there, and plain `go test` writes its coverage profile there (the
    directory must exist and lie outside the checkout)."""
    runner = runners.runner_for(command)
    sandbox = sandbox or Sandbox()
    plan = _TestPlan(
        Path(root), command, timeout_s, setup_command, pyenv, sandbox, network, coverage_to, runner
    )
    reason = _precheck(plan)
    if reason is not None:
        return TestRun.not_run(command, reason)
    try:
        ran = _in_home(plan)
    except SandboxUnavailable as exc:
        return TestRun.not_run(command, f"sandbox unavailable: {exc}")
    return _test_run(plan, ran)


def _precheck(plan: _TestPlan) -> str | None:
    """Why the tests cannot run, as the runner sees it before they do; or None."""
    # Dependencies a setup command or the environment installs are not in the checkout yet.
    if plan.runner is None or plan.setup_command or plan.pyenv is not None:
        return None
    return plan.runner.precheck(plan.root)


def _in_home(plan: _TestPlan) -> _Ran:
    """The setup command, then the tests, with a home directory of their own."""
    toolchain = plan.runner.toolchain() if plan.runner is not None else []
    with tempfile.TemporaryDirectory(prefix="patchling-test-") as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        env = _test_env(plan, home)
        setup_note = _setup(plan, env, toolchain)
        code, timed_out, output = _tests(plan, env, toolchain)
        return _Ran(code, timed_out, output, setup_note)


def _test_env(plan: _TestPlan, home: Path) -> dict[str, str]:
    env = scrubbed_env(home) | (plan.runner.env(plan.root) if plan.runner is not None else {})
    return plan.pyenv.apply(env, plan.root) if plan.pyenv is not None else env


def _setup(plan: _TestPlan, env: dict[str, str], toolchain: list[Path]) -> str:
    """Run the setup command, if any: what went wrong with it, or ""."""
    if not plan.setup_command:
        return ""
    code, timed_out, output = _step(
        plan.sandbox,
        plan.setup_command,
        plan.root,
        env,
        plan.timeout_s,
        plan.pyenv,
        setup=True,
        network=plan.network,
        toolchain=toolchain,
    )
    if not timed_out and code == 0:
        return ""
    # Reported, and the tests still run: a baseline and an "after" run
    # see the same (incomplete) setup, so they stay comparable.
    why = "timed out" if timed_out else f"exited with {code}"
    return f"setup command {why}: {plan.setup_command}\n{output[-2000:]}\n"


def _tests(plan: _TestPlan, env: dict[str, str], toolchain: list[Path]) -> tuple[int | None, bool, str]:
    """The test command, in what is left of the timeout; under coverage.py when asked."""
    remaining = max(1.0, plan.timeout_s - (time.monotonic() - plan.started))
    coverage_to = plan.coverage_to
    measured = measured_commands(plan.command, coverage_to) if coverage_to is not None else None
    step = functools.partial(
        _step,
        plan.sandbox,
        root=plan.root,
        env=env,
        test_env=plan.pyenv,
        setup=False,
        network=plan.network,
        toolchain=toolchain,
        scratch=[coverage_to.parent] if measured and coverage_to else [],
    )
    code, timed_out, output = step(measured[0] if measured else plan.command, timeout_s=remaining)
    if measured and measured[1] and not timed_out:
        step(measured[1], timeout_s=COVERAGE_EXPORT_S)  # no report: not measured, said by the caller
    return code, timed_out, output


def _test_run(plan: _TestPlan, ran: _Ran) -> TestRun:
    """The counts from the output: the runner's own reading where it has one."""
    duration_s = time.monotonic() - plan.started
    run = parse_test_output(
        plan.command, ran.output, exit_code=ran.code, timed_out=ran.timed_out, duration_s=duration_s
    )
    counts = plan.runner.parse(ran.output, plan.root, plan.since) if plan.runner is not None else None
    if counts is not None:
        _take_counts(run, counts)
    run.sandboxed = plan.sandbox.enabled
    run.could_not_run = (counts.could_not_run if counts is not None else None) or not_run_reason(
        plan.command, ran.output, ran.code, project_packages(plan.root)
    )
    if ran.setup_note:
        _count_setup(run, plan.setup_command, ran.setup_note)
    return run


def _count_setup(run: TestRun, setup_command: str | None, note: str) -> None:
    """A failed setup is one error of the run, its output first in the tail."""
    run.errors += 1
    run.failing.insert(0, f"setup: {setup_command}")
    run.output_tail = (note + run.output_tail)[-OUTPUT_TAIL_CHARS:]


# -- parsing ----------------------------------------------------------------


def _take_counts(run: TestRun, counts: runners.Counts) -> None:
    """A runner's own reading of its output, over the generic one (which
    stands when the runner found no counts: a build that failed, say)."""
    if counts.could_not_run is not None:
        return
    run.passed, run.failed, run.errors, run.skipped = (
        counts.passed,
        counts.failed,
        counts.errors,
        counts.skipped,
    )
    run.failing = list(counts.failing)
    if run.total == 0 and run.exit_code not in (0, None) and not run.failing:
        # Nothing ran, yet the command failed: still one failure, as the generic parse says.
        run.failed, run.failing = 1, [run.command]


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


def project_packages(root: Path) -> set[str]:
    """Top-level packages and modules of the checkout (root, and src/)."""
    names: set[str] = set()
    for base in (root, root / "src"):
        if not base.is_dir():
            continue
        for entry in base.iterdir():
            if entry.name.startswith((".", "_")) or entry.name in ("setup.py", "conftest.py"):
                continue
            if entry.is_dir() and (entry / "__init__.py").is_file():
                names.add(entry.name)
            elif entry.suffix == ".py" and entry.is_file():
                names.add(entry.stem)
    return names


def _is_pytest(command: str, output: str) -> bool:
    words = re.split(r"[\s/;&|()]+", command)
    return "pytest" in words or "py.test" in words or bool(_PYTEST_OUTPUT_RE.search(output))


def _first_error(output: str) -> str:
    """The line that best says what went wrong, for the reason."""
    for pattern in (r"^E\s+(\w*(Error|Exception)\b.*)$", r"^(\w*(Error|Exception)\b.*)$", r"^(ERROR: .*)$"):
        match = re.search(pattern, output, re.MULTILINE)
        if match:
            return match.group(1).strip()[:300]
    return ""


def not_run_reason(command: str, output: str, exit_code: int | None, packages: set[str]) -> str | None:
    """Why a finished command did not run the tests at all, or None: a missing
    program, pytest's "did not run" exit codes, the runner or the project
    itself not importable. A timeout is not this: it is a result of its own."""
    if exit_code is None:
        return None
    if exit_code in (126, 127):
        program = command.split()[0] if command.split() else command
        return f"command not found or not executable: {program}"
    missing = _NO_MODULE_RE.findall(output)
    if "pytest" in missing:
        return "pytest is not installed"
    # The package itself, not a submodule a test may import on purpose.
    own = sorted({m for m in missing if m in packages})
    if own and exit_code != 0:
        return f"the project's own package {own[0]!r} could not be imported"
    if exit_code in PYTEST_NOT_RUN and _is_pytest(command, output):
        error = _first_error(output)
        return PYTEST_NOT_RUN[exit_code] + (f" ({error})" if error else "")
    return None


def worse_than(before: TestRun, after: TestRun) -> str | None:
    """Why `after` is worse than the baseline `before`, or None when it is not:
    more failures or errors, a test failing that did not fail before (which
    includes a new test that fails), fewer passing, or a new timeout or crash.
    Tests that ran before and now cannot run are worse; a baseline that could
    not run leaves nothing to compare."""
    if after.could_not_run is not None and before.could_not_run is None:
        return f"the tests could not run after the change: {after.could_not_run}"
    if before.could_not_run is not None:
        return None
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
