"""Test runners by ecosystem: detection from a checkout's files, the reading of
each runner's real output (captured from real runs into tests/data/runners/),
and real runs in the sandbox where the toolchain is installed."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from bot import runners
from bot.verify import TestRun, default_test_command, run_tests, worse_than
from tests.conftest import ROOT

DATA = Path(__file__).parent / "data" / "runners"
EXAMPLES = ROOT / "examples"


def read(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8")


# -- detection ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("files", "command"),
    [
        ({"go.mod": "module example.com/x\n"}, "go test -json ./..."),
        ({"Cargo.toml": "[package]\nname = 'x'\n"}, "cargo test"),
        ({"package.json": '{"scripts": {"test": "node --test"}}'}, "npm test"),
        ({"package.json": '{"scripts": {"test": "jest"}}', "pnpm-lock.yaml": ""}, "pnpm test"),
        ({"package.json": '{"scripts": {"test": "vitest run"}}', "yarn.lock": ""}, "yarn test"),
        ({"package.json": '{"scripts": {"test": "echo \\"Error: no test specified\\" && exit 1"}}'}, None),
        ({"package.json": "{not json"}, None),
        ({"pom.xml": "<project/>"}, "mvn -B test"),
        ({"pom.xml": "<project/>", "mvnw": ""}, "./mvnw -B test"),
        ({"build.gradle.kts": "", "gradlew": ""}, "./gradlew test"),
        ({"README.md": "nothing to run\n"}, None),
    ],
)
def test_default_command_from_the_root_files(
    tmp_path: Path, files: dict[str, str], command: str | None
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    assert default_test_command(tmp_path) == command


def test_python_tests_win_over_other_ecosystems(tmp_path: Path) -> None:
    (tmp_path / "package.json").write_text('{"scripts": {"test": "node --test"}}')
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_x.py").write_text("def test_x():\n    pass\n")
    assert (default_test_command(tmp_path) or "").startswith("python -m pytest")


@pytest.mark.parametrize(
    ("command", "runner"),
    [
        ("go test -json ./...", "go"),
        ("cd sub && /usr/local/go/bin/go test -json -run TestX ./pkg/...", "go"),
        ("cargo test --workspace", "cargo"),
        ("npm test", "node"),
        ("npx vitest run --reporter=json", "node"),
        ("./gradlew test", "junit"),
        ("mvn -B -q test", "junit"),
        ("python -m pytest -q", None),
        ("make test", None),
    ],
)
def test_the_runner_is_read_from_the_command(command: str, runner: str | None) -> None:
    found = runners.runner_for(command)
    assert (found.name if found is not None else None) == runner


# -- reading output -------------------------------------------------------------------


def test_only_plain_go_test_writes_a_coverage_profile(tmp_path: Path) -> None:
    profile = tmp_path / "coverage.out"
    covered = runners.go_cover("go test -json -race ./...", profile)
    assert covered == f"go test -coverprofile={profile} -coverpkg=./... -json -race ./..."
    assert runners.go_cover("go test ./... && go vet ./...", profile) is None  # shell syntax
    assert runners.go_cover("go test -coverprofile=c.out ./...", profile) is None  # its own coverage
    assert runners.go_cover("make test", profile) is None


def test_go_json_events() -> None:
    counts = runners.parse_go_json(read("go-test-fail.jsonl"), Path("."), 0.0)
    assert counts is not None
    assert (counts.passed, counts.failed, counts.errors, counts.skipped) == (3, 1, 0, 1)
    assert counts.failing == ["example.com/units.TestFahrenheitToCelsius"]


def test_go_build_failure_is_an_error_of_its_package() -> None:
    counts = runners.parse_go_json(read("go-test-build-failed.txt"), Path("."), 0.0)
    assert counts is not None
    assert (counts.passed, counts.errors) == (0, 1)
    assert counts.failing == ["example.com/units (build failed)"]


def test_go_output_without_events_is_not_recognised() -> None:
    assert runners.parse_go_json("ok  \texample.com/units\t0.003s\n", Path("."), 0.0) is None


def test_cargo_summaries_and_failing_names() -> None:
    failing = runners.parse_cargo(read("cargo-test-fail.txt"), Path("."), 0.0)
    assert failing is not None
    assert (failing.passed, failing.failed, failing.skipped, failing.failing) == (1, 1, 1, ["tests::wrong"])
    # Unit tests and doc tests: one `test result:` line per test binary, summed.
    ok = runners.parse_cargo(read("cargo-test-ok.txt"), Path("."), 0.0)
    assert ok is not None and (ok.passed, ok.failed, ok.skipped, ok.failing) == (3, 0, 1, [])


def test_cargo_compile_error_means_the_tests_did_not_run() -> None:
    counts = runners.parse_cargo(read("cargo-test-compile-error.txt"), Path("."), 0.0)
    assert counts is not None
    assert counts.could_not_run == (
        "the build failed: error[E0425]: cannot find value `c` in this scope (at src/lib.rs:7:9)"
    )


@pytest.mark.parametrize("name", ["node-test-tap.txt", "node-test-spec.txt"])
def test_node_test_runner_reporters(name: str) -> None:
    counts = runners.parse_node(read(name), Path("."), 0.0)
    assert counts is not None
    assert (counts.passed, counts.failed, counts.skipped) == (2, 1, 1)
    assert counts.failing == ["fails one"]


def test_jest_json_report() -> None:
    # The shape of `jest --json` (vitest's json reporter writes the same fields).
    report = {
        "numTotalTests": 4,
        "numPassedTests": 2,
        "numFailedTests": 1,
        "numPendingTests": 1,
        "numTodoTests": 0,
        "testResults": [
            {
                "name": "/src/app/sum.test.js",
                "assertionResults": [
                    {"fullName": "sum adds", "title": "adds", "status": "passed"},
                    {"fullName": "sum carries", "title": "carries", "status": "failed"},
                ],
            }
        ],
    }
    output = "> app@1.0.0 test\n> jest --json\n\n" + json.dumps(report) + "\n"
    counts = runners.parse_node(output, Path("."), 0.0)
    assert counts is not None
    assert (counts.passed, counts.failed, counts.skipped, counts.failing) == (2, 1, 1, ["sum carries"])


def test_typescript_build_error_means_the_tests_did_not_run() -> None:
    output = (
        "> todo@1.0.0 test\n> tsc -p . && node --test dist/test/\n\n"
        "src/todo.ts(3,5): error TS2322: Type 'string' is not assignable to type 'number'.\n"
    )
    counts = runners.parse_node(output, Path("."), 0.0)
    assert counts is not None and counts.could_not_run is not None
    assert "src/todo.ts(3,5): error TS2322" in counts.could_not_run


SUREFIRE = """<?xml version="1.0" encoding="UTF-8"?>
<testsuite name="com.example.MathTest" tests="4" failures="1" errors="1" skipped="1">
  <testcase name="adds" classname="com.example.MathTest" time="0.001"/>
  <testcase name="divides" classname="com.example.MathTest" time="0.001">
    <failure message="expected: &lt;2&gt; but was: &lt;3&gt;" type="org.opentest4j.AssertionFailedError"/>
  </testcase>
  <testcase name="parses" classname="com.example.MathTest" time="0.001">
    <error message="boom" type="java.lang.IllegalStateException"/>
  </testcase>
  <testcase name="later" classname="com.example.MathTest" time="0"><skipped/></testcase>
</testsuite>
"""


def test_junit_reports_written_during_the_run(tmp_path: Path) -> None:
    reports = tmp_path / "core" / "target" / "surefire-reports"
    reports.mkdir(parents=True)
    (reports / "TEST-com.example.MathTest.xml").write_text(SUREFIRE)
    stale = reports / "TEST-com.example.OldTest.xml"
    stale.write_text(SUREFIRE.replace("MathTest", "OldTest"))
    os.utime(stale, (time.time() - 3600, time.time() - 3600))  # from an earlier run: not counted
    counts = runners.parse_junit("", tmp_path, time.time() - 60)
    assert counts is not None
    assert (counts.passed, counts.failed, counts.errors, counts.skipped) == (1, 1, 1, 1)
    assert counts.failing == ["com.example.MathTest.divides", "com.example.MathTest.parses"]


def test_junit_reports_refuse_links_and_entity_bombs(tmp_path: Path) -> None:
    reports = tmp_path / "build" / "test-results" / "test"
    reports.mkdir(parents=True)
    secret = tmp_path.parent / "secret.xml"
    secret.write_text(SUREFIRE)
    (reports / "TEST-link.xml").symlink_to(secret)
    bomb = (
        '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><testsuite><testcase name="&a;"/></testsuite>'
    )
    (reports / "TEST-bomb.xml").write_text(bomb)
    counts = runners.parse_junit("", tmp_path, time.time() - 60)
    assert counts is not None and (counts.passed, counts.failed, counts.failing) == (0, 0, [])


def test_no_junit_report_and_a_javac_error(tmp_path: Path) -> None:
    output = "[ERROR] /src/Main.java:[3,5] ...\nsrc/main/java/Main.java:3: error: ';' expected\n"
    counts = runners.parse_junit(output, tmp_path, 0.0)
    assert counts is not None and counts.could_not_run is not None and "Main.java:3" in counts.could_not_run
    assert runners.parse_junit("BUILD SUCCESSFUL\n", tmp_path, 0.0) is None


# -- preconditions --------------------------------------------------------------------


def test_node_dependencies_must_be_installed(tmp_path: Path) -> None:
    (tmp_path / "package.json").write_text(
        '{"scripts": {"test": "jest"}, "devDependencies": {"jest": "^29", "ts-jest": "^29"}}'
    )
    run = run_tests(tmp_path, "npm test", 30)
    assert run.could_not_run is not None
    assert run.could_not_run.startswith("dependencies not installed (jest, ts-jest)")
    assert "npm ci --ignore-scripts" in run.could_not_run
    (tmp_path / "node_modules" / "jest").mkdir(parents=True)
    (tmp_path / "node_modules" / "ts-jest").mkdir()
    assert runners.node_precheck(tmp_path) is None


def test_go_modules_with_requirements_need_a_vendor_directory(tmp_path: Path) -> None:
    (tmp_path / "go.mod").write_text("module x\n\ngo 1.19\n\nrequire github.com/a/b v1.0.0\n")
    assert (runners.go_precheck(tmp_path) or "").startswith("dependencies not installed")
    (tmp_path / "vendor").mkdir()
    (tmp_path / "vendor" / "modules.txt").write_text("")
    assert runners.go_precheck(tmp_path) is None
    assert runners.go_env(tmp_path)["GOFLAGS"] == "-mod=vendor"


# -- real runs in the sandbox ---------------------------------------------------------


def copy_example(name: str, tmp_path: Path) -> Path:
    path = tmp_path / name
    shutil.copytree(EXAMPLES / name, path, ignore=shutil.ignore_patterns("dist", "node_modules"))
    return path


def needs(program: str) -> None:
    if shutil.which(program) is None:
        pytest.skip(f"{program} is not installed (`make system` installs it)")


def test_go_example_runs_and_a_broken_test_is_worse(tmp_path: Path) -> None:
    needs("go")
    root = copy_example("units", tmp_path)
    command = default_test_command(root)
    assert command == "go test -json ./..."
    before = run_tests(root, command, 120)
    assert (before.passed, before.failed, before.could_not_run) == (4, 0, None), before.output_tail
    test_file = root / "units_test.go"
    test_file.write_text(test_file.read_text().replace("!near(got, 212)", "!near(got, 213)"))
    after = run_tests(root, command, 120)
    assert (after.passed, after.failed) == (3, 1)
    assert worse_than(before, after) == "tests now failing: example.com/units.TestCelsiusToFahrenheit"


def test_typescript_example_runs(tmp_path: Path) -> None:
    needs("node")
    needs("tsc")
    root = copy_example("todo", tmp_path)
    command = default_test_command(root)
    assert command == "npm test"
    run: TestRun = run_tests(root, command, 120)
    assert (run.passed, run.failed, run.skipped, run.could_not_run) == (3, 0, 0, None), run.output_tail
    assert run.ok
