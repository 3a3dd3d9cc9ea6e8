"""Syntax checks, the sandboxed test runner and test-output parsing."""

from __future__ import annotations

import json
import os
import shlex
import sys
import textwrap
import time
from pathlib import Path

import pytest

from bot.pyenv import PyEnv, ensure_env
from bot.verify import (
    TestRun,
    check_syntax,
    command_argv,
    default_test_command,
    not_run_reason,
    parse_test_output,
    run_tests,
    worse_than,
)

# The system's Python: the sandbox shows the system directories, never Patchling's environment.
PY = "python3"


def _run(passed: int = 0, failed: int = 0, errors: int = 0, failing: list[str] | None = None, code: int = 0):
    return TestRun("pytest", passed, failed, errors, 0, failing or [], 0.1, code, False, "")


def test_syntax_check_finds_broken_python_and_json() -> None:
    problems = check_syntax(
        {
            "ok.py": "x = 1\n",
            "bad.py": "def f(:\n    pass\n",
            "data.json": "{",
            "conf.toml": "a = 1\n",
            "notes.txt": "anything\n",
            "blob.bin": b"\xff\xfe",
        }
    )
    assert [p.split(":")[0] for p in problems] == ["bad.py", "blob.bin", "data.json"]
    assert problems[0].startswith("bad.py:1:")


def test_environment_is_scrubbed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = {
        "GITHUB_TOKEN": "ghs_fake",
        "OPENAI_API_KEY": "sk-fake",
        "ANTHROPIC_API_KEY": "sk-ant-fake",
        "PATCHLING_DATA_DIR": "/secret",
        "BOT_PRIVATE": "x",
        "MY_SECRET": "hunter2",
        "AWS_SESSION_TOKEN": "tok",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    script = tmp_path / "dump_env.py"
    out = tmp_path / "env.json"
    script.write_text(f"import json, os\nopen({str(out)!r}, 'w').write(json.dumps(dict(os.environ)))\n")
    run = run_tests(tmp_path, f"{PY} {shlex.quote(str(script))}", timeout_s=30)
    assert run.exit_code == 0, run.output_tail
    env = json.loads(out.read_text())
    for name, value in secrets.items():
        assert name not in env
        assert value not in env.values()
    assert env["HOME"] != os.environ.get("HOME")
    assert env["TMPDIR"] == "/tmp" and env["HOME"].startswith("/tmp/")  # the sandbox's own tmpfs
    assert not Path(env["HOME"]).exists()  # a fresh directory, gone afterwards
    assert "PATH" in env
    assert set(env) <= {
        "PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TERM", "PYTHONHASHSEED", "SYSTEMROOT",
        "HOME", "TMPDIR", "TMP", "TEMP", "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "USER", "PWD",
    }  # fmt: skip


def test_timeout_kills_the_whole_sandbox(tmp_path: Path) -> None:
    # A grandchild in a session of its own keeps writing a heartbeat: it must stop with the run.
    beat = tmp_path / "beat.txt"
    loop = f"import time\nwhile True:\n    open({str(beat)!r}, 'a').write('x')\n    time.sleep(0.05)\n"
    (tmp_path / "loop.py").write_text(loop)
    script = tmp_path / "spawn.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import subprocess, sys, time
            subprocess.Popen([sys.executable, {str(tmp_path / "loop.py")!r}], start_new_session=True)
            print("spawned", flush=True)
            time.sleep(60)
            """
        )
    )
    run = run_tests(tmp_path, f"{PY} {shlex.quote(str(script))}", timeout_s=1.5)
    assert run.timed_out and run.exit_code is None
    assert "spawned" in run.output_tail and beat.stat().st_size > 0
    size = beat.stat().st_size
    time.sleep(0.5)
    assert beat.stat().st_size == size  # nothing of the sandbox still runs


def test_stdin_is_closed(tmp_path: Path) -> None:
    run = run_tests(tmp_path, f'{PY} -c "import sys; print(repr(sys.stdin.read()))"', timeout_s=30)
    assert run.exit_code == 0
    assert "''" in run.output_tail


def test_shell_only_when_the_command_needs_one() -> None:
    # `python` stays a name: the command's PATH (the repository's environment first) finds it.
    assert command_argv("python -m pytest -q 'a b'") == ["python", "-m", "pytest", "-q", "a b"]
    assert command_argv("make test && echo ok")[:2] == ["/bin/sh", "-c"]
    assert command_argv("FOO=1 pytest")[:2] == ["/bin/sh", "-c"]
    assert command_argv("pytest tests/*.py")[:2] == ["/bin/sh", "-c"]
    with pytest.raises(ValueError):
        command_argv("   ")


def test_setup_runs_first_and_its_failure_is_reported(tmp_path: Path) -> None:
    ok = run_tests(
        tmp_path, f"{PY} -c 'import os; print(os.path.exists(\"made\"))'", 30, setup_command="touch made"
    )
    assert ok.exit_code == 0 and "True" in ok.output_tail and ok.errors == 0
    run = run_tests(tmp_path, f"{PY} -c 'print(1)'", timeout_s=30, setup_command="false")
    assert (run.passed, run.errors, run.exit_code) == (1, 1, 0)  # the tests still ran
    assert run.failing == ["setup: false"]
    assert run.output_tail.startswith("setup command exited with 1: false")


def _pytest_project(root: Path) -> None:
    (root / "tests").mkdir()
    (root / "tests" / "test_mixed.py").write_text(
        textwrap.dedent(
            """
            import pytest

            @pytest.fixture
            def broken():
                raise RuntimeError("fixture")

            def test_ok_one():
                assert True

            def test_ok_two():
                assert 1 + 1 == 2

            def test_bad():
                assert 1 == 2

            def test_errors(broken):
                pass

            @pytest.mark.skip(reason="later")
            def test_skipped():
                pass

            @pytest.mark.parametrize("n", [1, 2])
            def test_param(n):
                assert n == 1
            """
        )
    )


def _env(root: Path, data_dir: Path) -> PyEnv:
    return ensure_env(root, data_dir / "envs")


@pytest.mark.slow
def test_real_pytest_run_is_parsed(tmp_path: Path, shared_data_dir: Path) -> None:
    _pytest_project(tmp_path)
    command = default_test_command(tmp_path)
    assert command is not None
    run = run_tests(tmp_path, command, timeout_s=60, pyenv=_env(tmp_path, shared_data_dir))
    assert (run.passed, run.failed, run.errors, run.skipped) == (3, 2, 1, 1), run.output_tail
    assert sorted(run.failing) == [
        "tests/test_mixed.py::test_bad",
        "tests/test_mixed.py::test_errors",
        "tests/test_mixed.py::test_param[2]",
    ]
    assert run.exit_code == 1 and not run.timed_out and run.duration_s > 0
    assert run.could_not_run is None  # failing tests ran: a result, not a failure to run
    # PYTHONDONTWRITEBYTECODE and no cache provider: the checkout stays clean.
    assert not list(tmp_path.rglob("__pycache__")) and not (tmp_path / ".pytest_cache").exists()


@pytest.mark.slow
def test_real_pytest_run_with_no_tests(tmp_path: Path, shared_data_dir: Path) -> None:
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_none.py").write_text("x = 1\n")
    run = run_tests(tmp_path, default_test_command(tmp_path) or "", 60, pyenv=_env(tmp_path, shared_data_dir))
    assert (run.passed, run.failed, run.errors) == (0, 0, 0)
    assert run.exit_code == 5 and not run.ok
    assert run.summary() == "tests could not run: no tests were collected"


def test_a_missing_program_could_not_run(tmp_path: Path) -> None:
    direct = run_tests(tmp_path, "no-such-program-xyz --flag", timeout_s=30)
    assert direct.exit_code == 127 and not direct.ok
    assert direct.summary() == "tests could not run: command not found or not executable: no-such-program-xyz"
    shell = run_tests(tmp_path, "no-such-program-xyz && true", timeout_s=30)
    assert shell.exit_code == 127 and shell.could_not_run is not None


COLLECTION_ERROR = """
==================================== ERRORS ====================================
______________________ ERROR collecting tests/test_api.py ______________________
ImportError while importing test module 'tests/test_api.py'.
E   ImportError: cannot import name 'Session' from 'requests.sessions'
=========================== short test summary info ============================
ERROR tests/test_api.py
!!!!!!!!!!!!!!!!!!!! Interrupted: 1 error during collection !!!!!!!!!!!!!!!!!!!!
1 error in 0.12s
"""

CONFTEST_ERROR = """ImportError while loading conftest '/tmp/x/tests/conftest.py'.
tests/conftest.py:8: in <module>
    import flask
E   ModuleNotFoundError: No module named 'flask'
"""


def test_why_tests_could_not_run() -> None:
    pytest_cmd = "python -m pytest -q"
    reason = not_run_reason(pytest_cmd, COLLECTION_ERROR, 2, {"requests"})
    assert reason == (
        "collection errors or an interrupted run"
        " (ImportError: cannot import name 'Session' from 'requests.sessions')"
    )
    # The flask case: the project itself not importable, pytest exit 4.
    assert not_run_reason(pytest_cmd, CONFTEST_ERROR, 4, {"flask"}) == (
        "the project's own package 'flask' could not be imported"
    )
    assert not_run_reason(pytest_cmd, CONFTEST_ERROR, 4, set()) is not None
    assert not_run_reason(pytest_cmd, "", 3, set()) == "pytest hit an internal error"
    assert not_run_reason(pytest_cmd, "/env/bin/python: No module named pytest\n", 1, set()) == (
        "pytest is not installed"
    )
    # Results, not failures to run: failing tests, and exit 2 from a runner that is not pytest.
    assert not_run_reason(pytest_cmd, "FAILED t::a\n1 failed in 0.1s\n", 1, {"requests"}) is None
    assert not_run_reason("make check", "boom\n", 2, set()) is None
    # A test importing a missing submodule on purpose fails; the package itself was importable.
    assert (
        not_run_reason(pytest_cmd, "E   ModuleNotFoundError: No module named 'flask.nope'\n", 1, {"flask"})
        is None
    )
    assert not_run_reason(pytest_cmd, "", None, set()) is None  # a timeout is reported as such


def test_no_default_command_without_python_tests(tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text("print(1)\n")
    assert default_test_command(tmp_path) is None
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "thing_test.py").write_text("def test_x(): pass\n")
    assert default_test_command(tmp_path) is not None


def test_plain_runner_output_fallback() -> None:
    jest = parse_test_output("npm test", "Tests:       1 failed, 4 passed, 5 total\n", exit_code=1)
    assert (jest.passed, jest.failed) == (4, 1)
    cargo = parse_test_output("cargo test", "test result: ok. 7 passed; 0 failed; 1 ignored\n", exit_code=0)
    assert (cargo.passed, cargo.failed) == (7, 0)
    silent_ok = parse_test_output("make check", "all good\n", exit_code=0)
    assert (silent_ok.passed, silent_ok.failed) == (1, 0)
    silent_bad = parse_test_output("make check", "boom\n", exit_code=2)
    assert (silent_bad.passed, silent_bad.failed, silent_bad.failing) == (0, 1, ["make check"])


def test_worse_than_baseline() -> None:
    base = _run(passed=5, failed=1, failing=["t::a"], code=1)
    assert worse_than(base, _run(passed=5, failed=1, failing=["t::a"], code=1)) is None
    assert worse_than(base, _run(passed=6, failed=0, code=0)) is None  # fixed one
    assert "t::b" in (worse_than(base, _run(passed=5, failed=1, failing=["t::b"], code=1)) or "")
    assert "fewer" in (worse_than(base, _run(passed=4, failed=1, failing=["t::a"], code=1)) or "")
    assert "more failures" in (worse_than(base, _run(passed=5, failed=1, errors=1, failing=["t::a"])) or "")
    clean = _run(passed=3)
    assert worse_than(clean, _run(passed=3, code=2)) is not None
    timed = _run(passed=3)
    timed.timed_out = True
    assert "timed out" in (worse_than(clean, timed) or "")
    broken = TestRun.not_run("pytest", "collection errors")
    assert "could not run after the change: collection errors" in (worse_than(clean, broken) or "")
    assert worse_than(broken, _run(passed=1)) is None  # nothing to compare with


def test_default_command_names_no_server_path(tmp_path: Path) -> None:
    # It ends up in PR bodies and status comments.
    _pytest_project(tmp_path)
    command = default_test_command(tmp_path)
    assert command is not None
    assert sys.executable not in command
    assert command.split()[0] == "python"


def test_syntax_of_other_languages_is_checked_with_tree_sitter() -> None:
    problems = check_syntax(
        {
            "main.go": "package main\n\nfunc main() {\n\tx := 1\n",
            "ok.go": "package main\n\nfunc main() {}\n",
            "src/app.ts": "export function f(a: number): number {\n  return a +;\n}\n",
            "src/view.tsx": "export const V = () => <div>{1}</div>;\n",
            "lib.rs": "fn main() { let x = ; }\n",
            "notes.md": "# not code (\n",
        }
    )
    # Each names the file and where it breaks: the next attempt is told exactly this.
    assert problems == [
        "lib.rs: line 1, column 19: unexpected '='",
        "main.go: line 5, column 1: missing '}'",
        "src/app.ts: line 2, column 13: missing 'identifier'",
    ]
