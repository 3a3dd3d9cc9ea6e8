"""Repository code runs in bubblewrap: a hostile repository gets nothing.

The hostile "test suite" below tries each attack and prints `LEAK <name>` for
any that worked and `BLOCKED <name>` for each that failed; the host side then
checks the same from outside (files unchanged, secrets absent from output).
Limits are set small, so the fork bomb and the big file are safe for the machine.
"""

from __future__ import annotations

import http.server
import shlex
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.config import Settings
from bot.engine import EditResult
from bot.messages import UNSANDBOXED_NOTE, change_report, summarize_tests
from bot.repo_settings import RepoSettingsError, parse_repo_settings
from bot.sandbox import Limits, Sandbox, SandboxUnavailable, bwrap_argv
from bot.sandbox import run as sandboxed
from bot.verify import run_tests
from tests.test_jobs import job_request

KEY_TEXT = "-----BEGIN RSA PRIVATE KEY-----\nSECRET-KEY-MATERIAL-42\n-----END RSA PRIVATE KEY-----\n"
ENV_SECRET = "ghs_SECRET_TOKEN_IN_SERVER_ENV_77"
SMALL = Limits(processes=48, file_bytes=1 << 20, tmp_bytes=4 << 20, output_bytes=200_000, cpu_s=20)

HOSTILE = r"""
import glob, os, socket, sys

def attempt(name, action):
    try:
        got = action()
    except Exception as exc:
        print(f"BLOCKED {name}: {type(exc).__name__}")
        return
    print(f"LEAK {name}: {str(got)[:200]!r}" if got else f"BLOCKED {name}: nothing")

key, data, outside, port, token = sys.argv[1:6]

def environs():
    found = []
    for path in glob.glob("/proc/*/environ") + glob.glob("/proc/*/cmdline"):
        try:
            text = open(path, "rb").read().decode(errors="replace")
        except OSError:
            continue
        # The server's token, or the command line of the server (this test run).
        if "ghs_SECRET_TOKEN" in text or "test_sandbox.py" in text:
            found.append(path)
    return found

def write_outside():
    # A write may "succeed" on the sandbox's own tmpfs: the host checks its files afterwards.
    for path in (outside, *(f"/{d}/patchling-hostile-{token}" for d in ("usr", "etc", "root"))):
        try:
            open(path, "w").write("pwned")
        except OSError:
            pass

attempt("key", lambda: open(key).read())
attempt("data", lambda: os.listdir(data))
attempt("mirror", lambda: os.listdir(os.path.join(data, "mirrors")))
attempt("proc", environs)
attempt("api", lambda: socket.create_connection(("127.0.0.1", int(port)), timeout=2).close() or "connected")
attempt("outside", write_outside)
print("3 passed in 0.1s")
"""


@pytest.fixture
def api_port() -> Iterator[int]:
    """A real HTTP server on the host's loopback, standing for the GitHub API."""
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Path]]:
    """A server's secrets at real paths beside the work tree: key, data dir with mirrors."""
    key = tmp_path / "secret" / "private-key.pem"
    key.parent.mkdir()
    key.write_text(KEY_TEXT)
    key.chmod(0o600)
    data = tmp_path / "data"
    (data / "mirrors" / "other" / "repo.git").mkdir(parents=True)
    (data / "queue.sqlite3").write_text("jobs")
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "hostile.py").write_text(HOSTILE)
    monkeypatch.setenv("GITHUB_TOKEN", ENV_SECRET)  # in the server's environment, never passed on
    token = uuid.uuid4().hex
    system = [Path(f"/{d}/patchling-hostile-{token}") for d in ("usr", "etc", "root")]
    yield {"key": key, "data": data, "repo": repo, "outside": tmp_path / "outside.txt", "token": Path(token)}
    for path in system:  # only there if the sandbox failed: never leave them behind
        path.unlink(missing_ok=True)


def _hostile_command(host: dict[str, Path], port: int) -> str:
    args = [host["key"], host["data"], host["outside"], port, host["token"]]
    return "python3 hostile.py " + " ".join(shlex.quote(str(a)) for a in args)


def _assert_nothing_leaked(output: str, host: dict[str, Path]) -> None:
    blocked = {line.split()[1].rstrip(":") for line in output.splitlines() if line.startswith("BLOCKED ")}
    assert "LEAK" not in output, output
    assert blocked == {"key", "data", "mirror", "proc", "api", "outside"}, output
    assert "SECRET" not in output and ENV_SECRET not in output
    assert not host["outside"].exists()
    token = host["token"].name
    assert not any(Path(f"/{d}/patchling-hostile-{token}").exists() for d in ("usr", "etc", "root"))


def test_hostile_tests_and_setup_get_nothing(host: dict[str, Path], api_port: int) -> None:
    command = _hostile_command(host, api_port)
    # The same attacks as the setup command (network: none) and as the tests.
    run = run_tests(
        host["repo"], command, 60, setup_command=command + " && false", sandbox=Sandbox(), network="none"
    )
    assert run.sandboxed and run.could_not_run is None
    assert run.summary().startswith("3 passed, 0 failed, 1 errors"), run.output_tail  # the job still reports
    _assert_nothing_leaked(run.output_tail, host)
    assert run.output_tail.count("BLOCKED ") == 12  # six attacks in setup, six in the tests
    assert host["key"].read_text() == KEY_TEXT


def test_tests_get_no_network_even_when_setup_has_it(host: dict[str, Path], api_port: int) -> None:
    run = run_tests(host["repo"], _hostile_command(host, api_port), 60, sandbox=Sandbox(), network="setup")
    _assert_nothing_leaked(run.output_tail, host)


def test_the_work_tree_is_writable_and_the_rest_is_not(tmp_path: Path) -> None:
    (tmp_path / "repo").mkdir()
    script = "echo made > made.txt && touch /usr/x 2>/dev/null; echo usr=$?; echo tmp > /tmp/t; cat /tmp/t"
    outcome = sandboxed(
        Sandbox(), ["/bin/sh", "-c", script], cwd=tmp_path / "repo", env={"PATH": "/usr/bin:/bin"},
        timeout_s=30, writable=[tmp_path / "repo"],
    )  # fmt: skip
    assert outcome.exit_code == 0, outcome.output
    assert (tmp_path / "repo" / "made.txt").read_text() == "made\n"
    assert "usr=1" in outcome.output and "tmp" in outcome.output


def test_a_fork_bomb_ends_with_a_clear_message_and_the_server_lives(tmp_path: Path) -> None:
    bomb = "bomb() { bomb | bomb & }; bomb; sleep 1"
    outcome = sandboxed(
        Sandbox(limits=SMALL), ["/bin/sh", "-c", bomb], cwd=tmp_path, env={"PATH": "/usr/bin:/bin"},
        timeout_s=4, writable=[tmp_path],
    )  # fmt: skip
    assert f"the command hit the limit of {SMALL.processes} processes" in outcome.note
    # The server is healthy: it can still start processes of its own.
    assert subprocess.run([sys.executable, "-c", "print('alive')"], capture_output=True).stdout == b"alive\n"


def test_a_huge_file_or_a_full_tmp_is_stopped(tmp_path: Path) -> None:
    # 1 MiB file limit, 4 MiB tmpfs: a "10 GB file" stops at the limit.
    script = "head -c 10000000000 /dev/zero > big.bin; echo big=$?"
    outcome = sandboxed(
        Sandbox(limits=SMALL), ["/bin/sh", "-c", script], cwd=tmp_path, env={"PATH": "/usr/bin:/bin"},
        timeout_s=30, writable=[tmp_path],
    )  # fmt: skip
    assert (tmp_path / "big.bin").stat().st_size <= SMALL.file_bytes
    assert "big=153" in outcome.output  # 128 + SIGXFSZ
    many = "for i in 1 2 3 4 5 6; do head -c 1000000 /dev/zero > /tmp/f$i || echo full; done"
    outcome = sandboxed(
        Sandbox(limits=SMALL), ["/bin/sh", "-c", many], cwd=tmp_path, env={"PATH": "/usr/bin:/bin"},
        timeout_s=30, writable=[tmp_path],
    )  # fmt: skip
    assert "full" in outcome.output and "No space left" in outcome.output


def test_a_flood_of_output_keeps_only_its_end(tmp_path: Path) -> None:
    outcome = sandboxed(
        Sandbox(limits=SMALL), ["/bin/sh", "-c", "seq 1 100000; echo THE-END"], cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin"}, timeout_s=30, writable=[tmp_path],
    )  # fmt: skip
    assert len(outcome.output) <= SMALL.output_bytes and outcome.output.endswith("THE-END\n")
    assert "was cut to its last" in outcome.note


def test_hidden_paths_are_covered_even_under_a_mounted_directory(tmp_path: Path) -> None:
    mounted = tmp_path / "prefix"
    (mounted / "lib").mkdir(parents=True)
    (mounted / "lib" / "ok.txt").write_text("fine\n")
    (mounted / "patchling").mkdir()
    (mounted / "patchling" / "settings.txt").write_text("SECRET")
    sandbox = Sandbox(hidden=(mounted / "patchling",))
    argv = bwrap_argv(sandbox, ["true"], cwd=tmp_path, tmp=tmp_path, readable=[mounted])
    assert argv.index("--tmpfs", argv.index(str(mounted))) > 0
    (tmp_path / "w").mkdir()
    outcome = sandboxed(
        sandbox, ["/bin/sh", "-c", f"cat {mounted}/lib/ok.txt; ls -A {mounted}/patchling | wc -l"],
        cwd=tmp_path / "w", env={"PATH": "/usr/bin:/bin"}, timeout_s=30, readable=[mounted],
        writable=[tmp_path / "w"],
    )  # fmt: skip
    assert outcome.output.split() == ["fine", "0"]


def test_without_bubblewrap_repository_code_does_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    for broken in (Sandbox(bwrap="no-such-bwrap-xyz"), Sandbox(bwrap="/bin/false")):
        assert broken.unavailable() is not None
        with pytest.raises(SandboxUnavailable):
            sandboxed(broken, ["touch", str(marker)], cwd=tmp_path, env={}, timeout_s=10)
        run = run_tests(tmp_path, f"touch {marker}", 10, setup_command=f"touch {marker}", sandbox=broken)
        assert run.could_not_run is not None and run.could_not_run.startswith("sandbox unavailable: ")
        assert not run.ok and not marker.exists()


def test_sandbox_none_runs_and_every_report_says_unsandboxed(tmp_path: Path) -> None:
    run = run_tests(tmp_path, "python3 -c 'print(1)'", 30, sandbox=Sandbox(mode="none"))
    assert run.ok and not run.sandboxed and run.to_json()["sandboxed"] is False
    assert run.summary().endswith("(ran unsandboxed)")
    result = EditResult("verified", "tiny", [], "", ["a.py"], run, run, 1, 1, "", "m")
    assert UNSANDBOXED_NOTE in change_report(job_request(), result, "0" * 40)
    assert summarize_tests(run).endswith("(ran unsandboxed)")
    sandboxed_run = run_tests(tmp_path, "python3 -c 'print(1)'", 30)
    safe = EditResult("verified", "tiny", [], "", ["a.py"], sandboxed_run, sandboxed_run, 1, 1, "", "m")
    assert UNSANDBOXED_NOTE not in change_report(job_request(), safe, "0" * 40)


def test_settings_make_the_sandbox_and_hide_the_secrets(tmp_path: Path) -> None:
    key = tmp_path / "key.pem"
    settings = Settings(data_dir=tmp_path / "data", github_private_key_path=key, sandbox_processes=64)
    sandbox = settings.make_sandbox()
    assert sandbox.enabled and sandbox.limits.processes == 64
    assert (tmp_path / "data").resolve() in sandbox.hidden and key.resolve() in sandbox.hidden
    assert not Settings(sandbox="none").make_sandbox().enabled


def test_the_network_setting_is_checked() -> None:
    assert parse_repo_settings("").network == "setup"
    assert parse_repo_settings("network: none").network == "none"
    with pytest.raises(RepoSettingsError, match="network"):
        parse_repo_settings("network: sometimes")


def test_a_missing_program_is_told_apart_inside_the_sandbox(tmp_path: Path) -> None:
    run = run_tests(tmp_path, "no-such-program-xyz " + textwrap.shorten("--flag", 10), 30)
    assert run.exit_code == 127
    assert run.could_not_run == "command not found or not executable: no-such-program-xyz"


def test_a_mount_point_the_worker_cannot_make_is_left_to_bwrap(tmp_path: Path) -> None:
    from bot.sandbox import _mount_points

    source = tmp_path / "env"
    source.mkdir()
    made = tmp_path / "made"
    # /proc/sys refuses new entries even to root, as a root-owned directory does to the service user.
    refused = Path("/proc/sys") / f"patchling-{uuid.uuid4().hex}"
    with _mount_points([(source, str(refused)), (source, str(made))]):
        assert not refused.exists()
        assert made.is_dir()
    assert not made.exists()
