"""Test runners by ecosystem: which command runs a repository's tests when it
names none, and how each runner's output becomes counts and failing names.

Detected from files at the checkout's root: `go.mod` (go test -json),
`Cargo.toml` (cargo test), `package.json` with a test script (npm, pnpm or
yarn by lockfile), `pom.xml` (Maven) and `build.gradle[.kts]` (Gradle). A
configured command (`test:` in .github/patchling.yml) is read the same way:
its programs say which runner's output to expect, so `go test -json ./pkg/...`
is parsed as Go's. Where a runner's output is not recognised, bot.verify's
generic parse (pytest's summary, any "N passed / N failed" line) applies.

Machine-readable output where the runner has one: `go test -json` events,
JUnit XML reports (Maven's surefire, Gradle), jest's and vitest's JSON
reporters. Where it has none, the runner's own summary lines: cargo's
`test result:` lines, node's TAP or spec summary.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shlex
import shutil
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from defusedxml import ElementTree
from defusedxml.common import DefusedXmlException

from bot.files import PathRefused, ecosystem_of_test, open_file, read_text, text_reader
from bot.tsconfig import TsConfigError, load_tsconfig

# npm's placeholder script for a package without tests.
NPM_NO_TEST = "no test specified"
# Where JUnit XML reports are written, relative to a module's directory.
JUNIT_DIRS = ("target/surefire-reports", "target/failsafe-reports", "build/test-results")
JUNIT_MAX_FILES = 2000
JUNIT_MAX_BYTES = 20 << 20
# Programs whose output says which runner ran (a command may wrap them: make, sh -c).
NODE_PROGRAMS = frozenset({"npm", "pnpm", "yarn", "npx", "node", "jest", "vitest", "bun"})
JVM_PROGRAMS = frozenset({"mvn", "mvnw", "gradle", "gradlew"})

# How a run that stopped at a compiler's error is said (Counts.could_not_run).
BUILD_FAILED = "the build failed"
# Node runners that take test files as arguments.
NODE_FILE_RUNNERS = ("jest", "vitest", "mocha")
# What tsc compiles each TypeScript suffix to.
TS_OUTPUTS = {".ts": ".js", ".tsx": ".js", ".mts": ".mjs", ".cts": ".cjs"}

_GO_TEST_FUNC_RE = re.compile(r"^func (Test\w*)\(", re.MULTILINE)
# `go test` flags a new test runs with too: they change what is built or how it runs.
GO_VALUED_FLAGS = frozenset({"tags", "timeout", "count", "ldflags", "gcflags", "mod"})
GO_BOOL_FLAGS = frozenset({"race", "trimpath", "short"})
# `cargo test` options a new test runs with too (features, profile, lock
# file); target and package selection are the new test's own.
CARGO_VALUED_OPTIONS = frozenset(
    {"--features", "-F", "--profile", "--target", "--target-dir", "--manifest-path", "--config", "-Z"}
)
CARGO_BOOL_OPTIONS = frozenset(
    {"--all-features", "--no-default-features", "--release", "-r", "--locked", "--frozen", "--offline"}
)
# Options of the test harness (after `--`) carried over: tests that share state run one at a time.
CARGO_HARNESS_OPTIONS = frozenset({"--test-threads"})
_GO_BUILD_FAILED_RE = re.compile(r"^FAIL\t(\S+) \[(?:build|setup) failed\]$")
_CARGO_RESULT_RE = re.compile(
    r"^test result: \w+\. (\d+) passed; (\d+) failed; (\d+) ignored; \d+ measured; \d+ filtered out"
)
_CARGO_FAILED_RE = re.compile(r"^test (\S+) \.\.\. FAILED$")
# node --test: TAP ("# pass 3") or spec ("ℹ pass 3") summary lines.
_NODE_SUMMARY_RE = re.compile(r"^(?:#|ℹ) (tests|pass|fail|cancelled|skipped|todo) (\d+)$")
# A failed test: TAP's "not ok 2 - name", spec's "✖ name (1.2ms)".
_NODE_FAILED_RE = re.compile(r"^\s*(?:not ok \d+ - (.+?)(?:\s+#.*)?|✖ (.+?) \([\d.]+m?s\))$")
# Compilers that stop a test run before any test: tsc, rustc (through cargo), javac.
_BUILD_ERROR_RE = re.compile(
    r"^(.*error TS\d+:.*|error(\[E\d+\])?: .*|.*\.java:\d+: error: .*)$", re.MULTILINE
)

# rustc's ` --> tests/x.rs:3:5` under an error.
_RUSTC_AT_RE = re.compile(r"\n\s*--> (\S+)")
_ASSIGNMENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
# A command with any of these is shell syntax, not one program's plain invocation.
_SHELL_CHARS = frozenset("|&;<>()$`*?[]{}~!\\\n")


@dataclass
class Counts:
    """What a runner's output says: counts, failing test names, or why no test ran."""

    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0
    failing: list[str] = field(default_factory=list)
    could_not_run: str | None = None

    def fail(self, name: str) -> None:
        if name not in self.failing:
            self.failing.append(name)


# (output, checkout, wall-clock time the run started) -> counts, or None when not recognised.
Parser = Callable[[str, Path, float], "Counts | None"]
# (checkout, the repository's test command, new test's path, its text) -> the
# command that runs that test alone; raises NoAlone, saying why, when it cannot.
Alone = Callable[[Path, str, str, str], str]


class NoAlone(ValueError):
    """A new test file cannot be run alone: the message says why."""


@dataclass(frozen=True)
class Runner:
    name: str
    parse: Parser
    # What the tests need before they can run, checked first: None, or why not.
    precheck: Callable[[Path], str | None] = lambda root: None
    # Variables the command sees besides the scrubbed environment.
    env: Callable[[Path], dict[str, str]] = lambda root: {}
    # Host directories the toolchain lives in, shown read-only in the sandbox.
    toolchain: Callable[[], list[Path]] = lambda: []
    # Test-first edits (bot.testfirst): whose test-file conventions its tests
    # follow (bot.files.ecosystem_of_test), and the command that runs one new
    # test file alone; None where this runner has no such command.
    tests: str | None = None
    alone: Alone | None = None
    # (the repository's test command, where the profile goes) -> the command
    # that also writes the runner's own coverage profile there; None where the
    # command is not this runner's plain one (a wrapper, a pipe: left as it is).
    cover: Callable[[str, Path], str | None] | None = None


# -- Go -----------------------------------------------------------------------------


def parse_go_json(output: str, root: Path, since: float) -> Counts | None:
    """`go test -json` events: one per test's end (pass, fail, skip); a
    package that fails with no failing test (a build error) counts as an error."""
    counts, seen = Counts(), False
    failed_packages: list[str] = []
    packages_with_failures: set[str] = set()
    for line in output.splitlines():
        built = _GO_BUILD_FAILED_RE.match(line)
        if built:  # before Go 1.24, a build failure is a text line, not an event
            seen = True
            failed_packages.append(built.group(1))
        event = _json_object(line)
        if event is None or "Action" not in event:
            continue
        seen = True
        package, test, action = event.get("Package", ""), event.get("Test"), event["Action"]
        if test is None:
            if action == "fail":
                failed_packages.append(package)
            continue
        if action == "pass":
            counts.passed += 1
        elif action == "skip":
            counts.skipped += 1
        elif action == "fail":
            counts.failed += 1
            counts.fail(f"{package}.{test}")
            packages_with_failures.add(package)
    for package in dict.fromkeys(failed_packages):
        if package not in packages_with_failures:
            counts.errors += 1
            counts.fail(f"{package} (build failed)")
    return counts if seen else None


def go_env(root: Path) -> dict[str, str]:
    # Offline and local: no module download, no toolchain download, no telemetry.
    env = {"GOPROXY": "off", "GOTOOLCHAIN": "local", "GOTELEMETRY": "off", "CGO_ENABLED": "0"}
    if (root / "vendor" / "modules.txt").is_file():
        env["GOFLAGS"] = "-mod=vendor"
    return env


def go_precheck(root: Path) -> str | None:
    """Tests run offline: a module that requires others needs them vendored."""
    try:
        text = (root / "go.mod").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    if re.search(r"^require\b", text, re.MULTILINE) and not (root / "vendor").is_dir():
        return (
            "dependencies not installed: go.mod requires other modules and tests run offline;"
            " commit them with `go mod vendor`"
        )
    return None


def go_alone(root: Path, command: str, path: str, text: str) -> str:
    """`go test -json -tags x -race -run '^(TestA|TestB)$' ./pkg`: the new
    file's test functions, in its package, as a maintainer runs one test,
    with the build flags of the repository's own `go test` (its packages and
    any -run dropped)."""
    names = [n for n in _GO_TEST_FUNC_RE.findall(text) if n == "Test" or not n[4].islower()]
    if not names:
        raise NoAlone(f"{path} holds no Go test function (func TestXxx(t *testing.T))")
    folder = PurePosixPath(path).parent.as_posix()
    package = "." if folder == "." else f"./{folder}"
    assigned, words = _invocation(command, "go", "test")
    words = words[1:]  # after `test`
    run = shlex.quote("^(" + "|".join(names) + ")$")
    return " ".join([*assigned, "go test -json", *_go_flags(words), "-run", run, package])


def go_cover(command: str, profile: Path) -> str | None:
    """`go test -coverprofile=P -coverpkg=./... <the rest>`: every package of
    the module measured in every test binary (those without tests too), or
    None when `command` is not plain `go test` or chooses its own coverage."""
    if any(ch in _SHELL_CHARS for ch in command):
        return None
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    if words[:2] != ["go", "test"] or any(w.lstrip("-").startswith("cover") for w in words):
        return None
    flags = [f"-coverprofile={profile}", "-coverpkg=./..."]
    return shlex.join(["go", "test", *flags, *words[2:]])


def _go_flags(words: list[str]) -> list[str]:
    """The build-relevant flags among `go test`'s words (Go takes -f, --f,
    -f=v and -f v alike), quoted; the rest (packages, -run, -v, -json) dropped."""
    kept: list[str] = []
    for i, word in enumerate(words):
        if word == "-args":
            break  # what follows is the test binary's
        name, eq, _value = word.lstrip("-").partition("=")
        if not word.startswith("-"):
            continue
        if name in GO_VALUED_FLAGS and not eq and i + 1 < len(words):
            kept += [f"-{name}", shlex.quote(words[i + 1])]
        elif name in GO_VALUED_FLAGS or name in GO_BOOL_FLAGS:
            kept.append(shlex.quote(f"-{word.lstrip('-')}"))
    return kept


# -- Rust ---------------------------------------------------------------------------


def parse_cargo(output: str, root: Path, since: float) -> Counts | None:
    """cargo test's `test result:` line per test binary (unit, integration,
    doc tests), summed, and the `test name ... FAILED` lines."""
    counts, seen = Counts(), False
    for line in output.splitlines():
        line = line.strip()
        result = _CARGO_RESULT_RE.match(line)
        if result:
            seen = True
            counts.passed += int(result.group(1))
            counts.failed += int(result.group(2))
            counts.skipped += int(result.group(3))
        failed = _CARGO_FAILED_RE.match(line)
        if failed:
            counts.fail(failed.group(1))
    if not seen:
        return _build_failure(output)
    return counts


def cargo_env(root: Path) -> dict[str, str]:
    # The registry cache goes to the sandbox's own home; the toolchain stays read-only.
    env = {"CARGO_NET_OFFLINE": "true", "CARGO_HOME": "/tmp/home/.cargo", "CARGO_TERM_COLOR": "never"}
    rustup = _rustup_home()
    if rustup is not None:
        env["RUSTUP_HOME"] = str(rustup)
    return env


def _rustup_home() -> Path | None:
    home = Path(os.environ.get("RUSTUP_HOME") or Path.home() / ".rustup")
    return home if home.is_dir() else None


def cargo_toolchain() -> list[Path]:
    """cargo's bin directory (rustup's proxies) and rustup's toolchains when
    they live outside the system directories: never the rest of CARGO_HOME,
    which may hold registry credentials."""
    found = shutil.which("cargo")
    if found is None or found.startswith(("/usr/", "/bin/")):
        return []
    dirs = [Path(found).parent]
    rustup = _rustup_home()
    return dirs + ([rustup] if rustup is not None else [])


def cargo_alone(root: Path, command: str, path: str, text: str) -> str:
    """`cargo test --test name`: the new integration test (tests/name.rs)
    alone, with the repository's own cargo options (features, profile, lock
    file) carried over; in a workspace, `-p crate` names the member crate
    whose directory holds it."""
    test = PurePosixPath(path)
    if test.suffix != ".rs" or test.parent.name != "tests":
        raise NoAlone(f"{path} is not a cargo integration test (tests/<name>.rs)")
    assigned, words = _invocation(command, "cargo", "test")
    if not words:  # `cargo nextest run` takes cargo's options too
        assigned, words = _invocation(command, "cargo", "nextest")
    toolchain = words[:1] if words[:1] and words[0].startswith("+") else []
    package = _cargo_package(root, test.parent.parent)
    pick = ["-p", package] if _is_workspace(root) else []
    line = ["cargo", *toolchain, "test", *_cargo_options(words), *pick, "--test", test.stem]
    harness = _cargo_harness(words)
    return " ".join([*assigned, shlex.join([*line, *(["--", *harness] if harness else [])])])


def _cargo_options(words: list[str]) -> list[str]:
    """cargo's own options among the words (before `--`) that CARGO_*_OPTIONS carry over."""
    kept: list[str] = []
    own = words[: words.index("--")] if "--" in words else words
    for i, word in enumerate(own):
        name = word.partition("=")[0]
        if word in CARGO_VALUED_OPTIONS and i + 1 < len(own):
            kept += [word, own[i + 1]]
        elif name in CARGO_VALUED_OPTIONS or word in CARGO_BOOL_OPTIONS:
            kept.append(word)
    return kept


def _cargo_harness(words: list[str]) -> list[str]:
    harness = words[words.index("--") + 1 :] if "--" in words else []
    kept: list[str] = []
    for i, word in enumerate(harness):
        if word in CARGO_HARNESS_OPTIONS and i + 1 < len(harness):
            kept += [word, harness[i + 1]]
        elif word.partition("=")[0] in CARGO_HARNESS_OPTIONS:
            kept.append(word)
    return kept


def _cargo_manifest(root: Path, folder: PurePosixPath) -> dict[str, Any]:
    try:
        return tomllib.loads(read_text(root, (folder / "Cargo.toml").as_posix()))
    except (OSError, ValueError):  # absent, a link, not UTF-8, not TOML
        return {}


def _is_workspace(root: Path) -> bool:
    return "workspace" in _cargo_manifest(root, PurePosixPath("."))


def _cargo_package(root: Path, crate: PurePosixPath) -> str:
    """The name of the crate whose tests/ directory holds the new test; NoAlone
    when its Cargo.toml names none, or turns off cargo's finding of tests/*.rs."""
    package = _cargo_manifest(root, crate).get("package")
    if not isinstance(package, dict) or not isinstance(package.get("name"), str):
        raise NoAlone(f"{crate / 'Cargo.toml'} names no [package] to hold {crate / 'tests'}")
    if package.get("autotests") is False:
        raise NoAlone(f"{crate / 'Cargo.toml'} sets autotests = false: cargo would not find a new tests/*.rs")
    return str(package["name"])


# -- Node ---------------------------------------------------------------------------


def parse_node(output: str, root: Path, since: float) -> Counts | None:
    """jest's or vitest's JSON report when the output holds one, else node's
    own test runner's TAP or spec summary; a TypeScript build that failed
    before any test ran is said as such."""
    report = _jest_report(output)
    if report is not None:
        return report
    totals: dict[str, int] = {}
    for line in output.splitlines():
        match = _NODE_SUMMARY_RE.match(line.strip())
        if match:
            totals[match.group(1)] = int(match.group(2))  # the last summary wins
    if not totals:
        return _build_failure(output)
    counts = Counts(
        passed=totals.get("pass", 0),
        failed=totals.get("fail", 0) + totals.get("cancelled", 0),
        skipped=totals.get("skipped", 0) + totals.get("todo", 0),
    )
    for line in output.splitlines():
        failed = _NODE_FAILED_RE.match(line)
        if failed:
            counts.fail((failed.group(1) or failed.group(2)).strip())
    return counts


def _jest_report(output: str) -> Counts | None:
    """The `--json` report of jest or vitest (same shape): a line holding one JSON object."""
    for line in reversed(output.splitlines()):
        report = _json_object(line)
        if report is None or "numTotalTests" not in report:
            continue
        counts = Counts(
            passed=int(report.get("numPassedTests", 0)),
            failed=int(report.get("numFailedTests", 0)),
            skipped=int(report.get("numPendingTests", 0)) + int(report.get("numTodoTests", 0)),
        )
        for suite in report.get("testResults") or []:
            for test in suite.get("assertionResults") or []:
                if test.get("status") == "failed":
                    counts.fail(str(test.get("fullName") or test.get("title")))
        return counts
    return None


def package_json(root: Path) -> dict[str, Any]:
    try:
        data = json.loads((root / "package.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def node_precheck(root: Path) -> str | None:
    """Tests see only what the checkout holds: declared dependencies must be
    installed there (by a `setup:` command such as `npm ci --ignore-scripts`,
    which runs in the sandbox with the network)."""
    data = package_json(root)
    declared: dict[str, Any] = {**(data.get("dependencies") or {}), **(data.get("devDependencies") or {})}
    missing = sorted(name for name in declared if not (root / "node_modules" / name).is_dir())
    if not missing:
        return None
    shown = ", ".join(missing[:3]) + (" …" if len(missing) > 3 else "")
    return (
        f"dependencies not installed ({shown}); set `setup: npm ci --ignore-scripts`"
        " in .github/patchling.yml to install them before the tests"
    )


def node_command(root: Path) -> str | None:
    script = ((package_json(root).get("scripts") or {}).get("test")) or ""
    if not isinstance(script, str) or not script.strip() or NPM_NO_TEST in script:
        return None
    if (root / "pnpm-lock.yaml").is_file():
        return "pnpm test"
    if (root / "yarn.lock").is_file():
        return "yarn test"
    return "npm test"


def node_alone(root: Path, command: str, path: str, text: str) -> str:
    """The repository's test script with its runner pointed at the new file
    alone: the steps before the runner (a `tsc -p .` build) kept, the runner's
    test locations (directories, globs, test files) replaced by the file
    (for node --test on TypeScript, the file tsc compiles it to)."""
    script = _script_of(root, command)
    steps = _steps(script)
    found = next((i for i in reversed(range(len(steps))) if _node_runner(steps[i])), None)
    if found is None:
        raise NoAlone(f"`{script}` runs none of {', '.join(NODE_FILE_RUNNERS)} or node --test")
    step = steps[found]
    kept = [w for w in step if not _test_location(root, w)]
    target = path
    if _node_runner(step) == "node --test" and PurePosixPath(path).suffix in TS_OUTPUTS:
        target = _compiled(root, path)
    line = " && ".join(shlex.join(s) for s in [*steps[:found], [*kept, target]])
    if package_json(root).get("devDependencies") or package_json(root).get("dependencies"):
        line = f'export PATH="$PWD/node_modules/.bin:$PATH" && {line}'  # as npm runs scripts
    return line


def _script_of(root: Path, command: str) -> str:
    """The package.json script a `npm test`-style command runs, else the command."""
    words = _words(command)
    if not words or words[0] not in ("npm", "pnpm", "yarn"):
        return command
    if words[1:] in (["test"], ["t"]):
        script = "test"
    elif len(words) == 3 and words[1] in ("run", "run-script"):
        script = words[2]
    else:
        return command
    text = (package_json(root).get("scripts") or {}).get(script)
    if not isinstance(text, str) or not text.strip():
        raise NoAlone(f"package.json has no `{script}` script")
    return text


def _steps(script: str) -> list[list[str]]:
    """The script's commands, split at `&&` and `;`; NoAlone for other shell
    syntax (pipes, `||`, redirects), which a rewrite could change the sense of."""
    lexer = shlex.shlex(script, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    steps: list[list[str]] = [[]]
    for word in lexer:
        if word in ("&&", ";"):
            steps.append([])
        elif word and set(word) <= set("|&<>()"):
            raise NoAlone(f"`{script}` uses `{word}`; write_test runs only scripts joined by && or ;")
        else:
            steps[-1].append(word)
    return [s for s in steps if s]


def _node_runner(step: list[str]) -> str | None:
    names = [PurePosixPath(w).name for w in step]
    if "node" in names and "--test" in names:
        return "node --test"
    return next((n for n in names if n in NODE_FILE_RUNNERS), None)


def _test_location(root: Path, word: str) -> bool:
    """A runner argument that says where tests are (not an option or program)."""
    if word.startswith("-"):
        return False
    if any(ch in word for ch in "*?{") or word.endswith("/") or (root / word).is_dir():
        return True
    return ecosystem_of_test(word) == "node"


def _compiled(root: Path, path: str) -> str:
    """Where tsc writes `path`: under compilerOptions.outDir, relative to rootDir
    (tsconfig.json's directory, the repository root, when it names none)."""
    try:
        config = load_tsconfig("tsconfig.json", text_reader(root))
    except TsConfigError as exc:
        raise NoAlone(f"node --test runs compiled tests, and {exc}") from None
    if config.out_dir is None:
        raise NoAlone("node --test runs compiled tests, and tsconfig.json names no outDir")
    root_dir = config.root_dir or "."
    source = PurePosixPath(path)
    try:
        relative = source.relative_to(PurePosixPath(root_dir))
    except ValueError:
        raise NoAlone(f"{path} lies outside tsconfig.json's rootDir ({root_dir})") from None
    compiled = PurePosixPath(config.out_dir or ".") / relative
    return compiled.with_suffix(TS_OUTPUTS[source.suffix]).as_posix()


# -- JVM ----------------------------------------------------------------------------


def parse_junit(output: str, root: Path, since: float) -> Counts | None:
    """The JUnit XML reports written during this run (Maven's surefire,
    Gradle's test-results), in any module of the checkout."""
    reports = _fresh_reports(root, since)
    if not reports:
        return _build_failure(output)
    counts = Counts()
    for rel in reports:
        try:
            with open_file(root, rel) as fh:
                tree = ElementTree.fromstring(fh.read(JUNIT_MAX_BYTES))
        except (OSError, PathRefused, ElementTree.ParseError, DefusedXmlException):
            continue
        for case in tree.iter("testcase"):
            name = f"{case.get('classname', '')}.{case.get('name', '')}".strip(".")
            if case.find("failure") is not None:
                counts.failed += 1
                counts.fail(name)
            elif case.find("error") is not None:
                counts.errors += 1
                counts.fail(name)
            elif case.find("skipped") is not None:
                counts.skipped += 1
            else:
                counts.passed += 1
    return counts


def _fresh_reports(root: Path, since: float) -> list[str]:
    """XML files under the report directories, written since `since`, as
    paths relative to root (links are never followed)."""
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in (".git", "node_modules")]
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        if not any(f"/{d}" in f"/{rel_dir}" for d in JUNIT_DIRS):
            continue
        for name in filenames:
            path = Path(dirpath) / name
            if name.endswith(".xml") and not path.is_symlink() and path.stat().st_mtime >= since - 1:
                found.append(f"{rel_dir}/{name}")
        if len(found) >= JUNIT_MAX_FILES:
            break
    return sorted(found)


def jvm_command(root: Path) -> str | None:
    if (root / "pom.xml").is_file():
        return "./mvnw -B test" if (root / "mvnw").is_file() else "mvn -B test"
    if (root / "build.gradle").is_file() or (root / "build.gradle.kts").is_file():
        return "./gradlew test" if (root / "gradlew").is_file() else "gradle test"
    return None


# -- shared -------------------------------------------------------------------------


def _json_object(line: str) -> dict[str, Any] | None:
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _invocation(command: str, program: str, sub: str) -> tuple[list[str], list[str]]:
    """Where `command` runs `program sub` (`go test`, `cargo +nightly test`):
    the VAR=value assignments before it, and its words after the program
    (rustup's `+toolchain`, then `sub` and what follows), up to the next shell
    operator; two empty lists when it does not."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        words = list(lexer)
    except ValueError:  # an unclosed quote: nothing to carry over
        return [], []
    for i, word in enumerate(words):
        rest = list(itertools.takewhile(_not_operator, words[i + 1 :]))
        toolchain = rest[:1] if rest[:1] and rest[0].startswith("+") else []
        if PurePosixPath(word).name == program and rest[len(toolchain) : len(toolchain) + 1] == [sub]:
            return _assignments(words[:i]), rest
    return [], []


def _not_operator(word: str) -> bool:
    return not (word and set(word) <= set("|&;<>()"))


def _assignments(before: list[str]) -> list[str]:
    """The VAR=value words right before a program (`GOFLAGS=-mod=mod go test`),
    quoted for the shell (the value only, or it would read as a program)."""
    found = list(itertools.takewhile(lambda w: _ASSIGNMENT_RE.match(w) is not None, reversed(before)))
    return [f"{name}={shlex.quote(value)}" for name, _, value in (w.partition("=") for w in found[::-1])]


def _build_failure(output: str) -> Counts | None:
    """A compiler's error before any test ran (tsc, rustc, javac): the tests
    did not run, and the first error says why; None when there is none."""
    match = _BUILD_ERROR_RE.search(output)
    if match is None:
        return None
    at = _RUSTC_AT_RE.match(output, match.end())  # rustc says where on the next line
    where = f" (at {at.group(1)})" if at else ""
    return Counts(could_not_run=f"{BUILD_FAILED}: {match.group(1).strip()[:300]}{where}")


GO = Runner("go", parse_go_json, precheck=go_precheck, env=go_env, tests="go", alone=go_alone, cover=go_cover)
CARGO = Runner(
    "cargo", parse_cargo, env=cargo_env, toolchain=cargo_toolchain, tests="rust", alone=cargo_alone
)
NODE = Runner("node", parse_node, precheck=node_precheck, tests="node", alone=node_alone)
JUNIT = Runner("junit", parse_junit)


def default_command(root: Path) -> tuple[str, Runner] | None:
    """The test command of a non-Python repository, from its root's files."""
    root = Path(root)
    if (root / "go.mod").is_file():
        return "go test -json ./...", GO
    if (root / "Cargo.toml").is_file():
        return "cargo test", CARGO
    node = node_command(root) if (root / "package.json").is_file() else None
    if node is not None:
        return node, NODE
    jvm = jvm_command(root)
    return (jvm, JUNIT) if jvm is not None else None


def _words(command: str) -> list[str]:
    try:
        return [Path(w).name for w in shlex.split(command)]
    except ValueError:
        return command.split()


def runner_for(command: str) -> Runner | None:
    """The runner whose output `command` produces, from the programs it names;
    None for pytest and anything unknown (the generic parse)."""
    words = _words(command)
    pairs = set(itertools.pairwise(words))
    if ("go", "test") in pairs:
        return GO
    if ("cargo", "test") in pairs or ("cargo", "nextest") in pairs:
        return CARGO
    if NODE_PROGRAMS & set(words):
        return NODE
    if JVM_PROGRAMS & set(words):
        return JUNIT
    return None
