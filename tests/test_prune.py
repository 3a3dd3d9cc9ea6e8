"""Pruning old test environments (bot/prune.py), on real directories with
made-up last uses (os.utime), real locks and a real second process."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.buildcache import BUILD_PREFIX, build_lock, build_once, use
from bot.cli import app
from bot.config import Settings
from bot.prune import (
    DAY_S,
    STAMP,
    Limits,
    due_after_job,
    entries,
    prune,
    prune_logged,
    size_text,
    tree_size,
)

NOW = time.time()
ROOMY = Limits(max_age_s=14 * DAY_S, max_bytes=10**12)
MARKER = "patchling-env.txt"


def make_entry(place: Path, name: str, days_ago: float, kib: int = 64) -> Path:
    """An environment of `kib` KiB last used `days_ago` days before NOW."""
    path = place / name
    (path / "lib").mkdir(parents=True)
    (path / "lib" / "module.py").write_bytes(os.urandom(kib * 1024))
    (path / MARKER).write_text(name + "\n")
    when = NOW - days_ago * DAY_S
    os.utime(path, (when, when))
    return path


def key(n: int) -> str:
    return f"{n:024x}"


def leftover_names(envs: Path) -> list[str]:
    return sorted(p.name for p in envs.rglob(".trash-*"))


def test_old_removed_recent_kept(tmp_path: Path) -> None:
    old = make_entry(tmp_path, key(1), days_ago=20)
    old_node = make_entry(tmp_path / "node", key(2), days_ago=15)
    recent = make_entry(tmp_path / "go", key(3), days_ago=1)
    cache = make_entry(tmp_path / ".uv-cache", "a" * 16, days_ago=30)
    old_cargo = make_entry(tmp_path / "cargo", key(4), days_ago=15)
    (old_cargo / "lib" / "module.py").chmod(0o444)  # cargo writes git's objects read-only
    os.utime(old_cargo, (NOW - 15 * DAY_S, NOW - 15 * DAY_S))
    sizes = sum(tree_size(p) for p in (old, old_node, cache, old_cargo))
    result = prune(tmp_path, ROOMY, now=NOW)
    assert not old.exists() and not old_node.exists() and not cache.exists() and not old_cargo.exists()
    assert recent.is_dir() and (recent / MARKER).is_file()
    assert sorted(e.path.name for e in result.removed) == sorted([key(1), key(2), key(4), "a" * 16])
    assert result.freed == sizes and result.freed > 4 * 64 * 1024
    assert result.kept == 1 and result.busy == []
    assert leftover_names(tmp_path) == []


def test_size_cap_removes_least_recently_used_first(tmp_path: Path) -> None:
    oldest = make_entry(tmp_path, key(1), days_ago=3)
    middle = make_entry(tmp_path / "node", key(2), days_ago=2)
    newest = make_entry(tmp_path, key(3), days_ago=1)
    cap = tree_size(middle) + tree_size(newest)
    result = prune(tmp_path, Limits(max_age_s=14 * DAY_S, max_bytes=cap), now=NOW)
    assert [e.path for e in result.removed] == [oldest]
    assert not oldest.exists() and middle.is_dir() and newest.is_dir()
    # One byte less room: the next least recently used goes too.
    result = prune(tmp_path, Limits(max_age_s=14 * DAY_S, max_bytes=cap - 1), now=NOW)
    assert [e.path for e in result.removed] == [middle]
    assert newest.is_dir()


def test_dry_run_removes_nothing(tmp_path: Path) -> None:
    old = make_entry(tmp_path, key(1), days_ago=20)
    trash = tmp_path / f".trash-{key(2)}-0a1b2c3d"
    (trash / "bin").mkdir(parents=True)
    result = prune(tmp_path, ROOMY, dry_run=True, now=NOW)
    assert sorted(e.path for e in result.removed) == sorted([old, trash])
    assert old.is_dir() and (old / MARKER).is_file() and trash.is_dir()
    assert entries(tmp_path)[0].used == pytest.approx(NOW - 20 * DAY_S)  # its last use untouched


def test_in_use_kept_until_released(tmp_path: Path) -> None:
    path = make_entry(tmp_path / "node", key(1), days_ago=20)
    with ExitStack() as hold:
        use(tmp_path / "node", key(1), hold)
        os.utime(path, (NOW - 20 * DAY_S, NOW - 20 * DAY_S))  # old, though in use
        result = prune(tmp_path, ROOMY, now=NOW)
        assert [e.path for e in result.busy] == [path] and result.removed == []
        assert path.is_dir()
    result = prune(tmp_path, ROOMY, now=NOW)
    assert [e.path for e in result.removed] == [path]
    assert not path.exists()


def test_in_use_by_another_process_kept(tmp_path: Path) -> None:
    path = make_entry(tmp_path, key(1), days_ago=20)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, contextlib, pathlib\n"
            "from bot.buildcache import use\n"
            "with contextlib.ExitStack() as hold:\n"
            f"    use(pathlib.Path({str(tmp_path)!r}), {key(1)!r}, hold)\n"
            "    print('held', flush=True)\n"
            "    sys.stdin.read()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        os.utime(path, (NOW - 20 * DAY_S, NOW - 20 * DAY_S))
        result = prune(tmp_path, Limits(max_age_s=DAY_S, max_bytes=0), now=NOW)
        assert [e.path for e in result.busy] == [path]
        assert path.is_dir() and (path / MARKER).is_file()
    finally:
        holder.communicate("")
    assert holder.returncode == 0
    assert [e.path for e in prune(tmp_path, ROOMY, now=NOW).removed] == [path]


def test_use_marks_the_last_use(tmp_path: Path) -> None:
    path = make_entry(tmp_path, key(1), days_ago=20)
    with ExitStack() as hold:
        use(tmp_path, key(1), hold)
    assert path.stat().st_mtime > NOW - DAY_S
    assert prune(tmp_path, ROOMY).removed == []


def test_leftovers_cleaned_but_not_a_build_in_progress(tmp_path: Path) -> None:
    trash = tmp_path / "node" / f".trash-{key(1)}-0a1b2c3d"
    dead_build = tmp_path / f"{BUILD_PREFIX}{key(2)}-x1y2z3"
    live_build = tmp_path / f"{BUILD_PREFIX}{key(3)}-a9b8c7"
    for path in (trash, dead_build, live_build):
        (path / "out" / "lib").mkdir(parents=True)
        (path / "out" / "lib" / "module.py").write_text("x = 1\n")
        os.chmod(path / "out" / "lib", 0o500)  # read-only, as Go leaves its module cache
    with build_lock(tmp_path, key(3)):
        result = prune(tmp_path, ROOMY, now=NOW)
    assert sorted(e.path for e in result.removed) == sorted([trash, dead_build])
    assert not trash.exists() and not dead_build.exists()
    assert live_build.is_dir()


def test_pruned_environment_is_built_again(tmp_path: Path) -> None:
    built: list[Path] = []

    def build(target: Path) -> None:
        target.mkdir()
        (target / "lib").write_text("made\n")
        built.append(target)

    first = build_once(tmp_path, key(1), MARKER, build, "the test environment")
    assert not first.reused
    with ExitStack() as hold:  # held by a job: a prune that wants it all gone leaves it
        again = build_once(tmp_path, key(1), MARKER, build, "the test environment", hold)
        assert again.reused
        assert [e.path for e in prune(tmp_path, Limits(max_age_s=0, max_bytes=0)).busy] == [first.path]
    result = prune(tmp_path, Limits(max_age_s=0, max_bytes=0), now=NOW + 1)
    assert [e.path for e in result.removed] == [first.path]
    rebuilt = build_once(tmp_path, key(1), MARKER, build, "the test environment")
    assert not rebuilt.reused and len(built) == 2
    assert (rebuilt.path / "lib").read_text() == "made\n"


def test_after_job_only_when_due(tmp_path: Path) -> None:
    envs = tmp_path / "envs"
    assert due_after_job(envs, now=NOW)  # never pruned: due, and marked
    assert not due_after_job(envs, now=NOW + 60)
    os.utime(envs / STAMP, (NOW - DAY_S, NOW - DAY_S))
    assert due_after_job(envs, now=NOW)
    assert (envs / STAMP).stat().st_mtime == pytest.approx(NOW)


def test_prune_logged_for_the_app(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(data_dir=tmp_path, envs_max_age_days=14, envs_max_gb=1)
    old = make_entry(tmp_path / "envs" / "go", key(1), days_ago=20)
    with caplog.at_level(logging.INFO, logger="bot.prune"):
        prune_logged(settings, after_job=True)
    assert not old.exists()
    assert f"removed go/{key(1)}" in caplog.text
    again = make_entry(tmp_path / "envs" / "go", key(2), days_ago=20)
    prune_logged(settings, after_job=True)  # just ran: not again yet
    assert again.is_dir()


def test_cli_prune(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no patchling.toml here
    monkeypatch.setenv("PATCHLING_ENVS_MAX_AGE_DAYS", "10")
    envs = tmp_path / "data" / "envs"
    old = make_entry(envs / "node", key(1), days_ago=11, kib=2048)
    recent = make_entry(envs, key(2), days_ago=9)
    runner = CliRunner()
    dry = runner.invoke(app, ["prune", "--data-dir", str(tmp_path / "data"), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    size = size_text(tree_size(old))
    assert size.endswith(" MB")
    assert f"would remove node/{key(1)} ({size})" in dry.output
    assert f"would free {size} in {envs}; kept 1, 0 in use" in dry.output
    assert old.is_dir()
    done = runner.invoke(app, ["prune", "--data-dir", str(tmp_path / "data")])
    assert done.exit_code == 0, done.output
    assert f"removed node/{key(1)} ({size})" in done.output and f"freed {size}" in done.output
    assert not old.exists() and recent.is_dir()
