"""Shared fixtures: the scripted model server and real git repositories."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pygit2
import pytest

from tests.fakegithub import SHARED, SHARED_MISSING, shared_present
from tests.modelserver import ScriptedModel
from tests.redisserver import RedisServer

ROOT = Path(__file__).resolve().parents[1]
CALCULATOR = ROOT / "examples" / "calculator"


def pytest_sessionstart(session: pytest.Session) -> None:
    # Without the shared data the tests that read it skip, which must never pass
    # unnoticed where everything has to run (CI sets PATCHLING_REQUIRE_SHARED).
    if not shared_present() and os.environ.get("PATCHLING_REQUIRE_SHARED"):
        pytest.exit(f"PATCHLING_REQUIRE_SHARED is set, and the suite {SHARED_MISSING}", returncode=1)


def pytest_report_header(config: pytest.Config) -> str:
    if shared_present():
        return f"shared test data: {SHARED}"
    return f"shared test data: none at {SHARED}; the tests that need it are skipped"


@pytest.fixture(scope="session")
def shared_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory for the whole run, for tests that run a repository's
    real tests: each test environment under its envs/ is built at most once."""
    return tmp_path_factory.mktemp("shared-data")


@pytest.fixture(scope="session")
def model_server() -> Iterator[ScriptedModel]:
    """One scripted OpenAI-compatible server process for the whole run; each
    test scripts it afresh (scripting clears the call log)."""
    server = ScriptedModel().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server for the whole run (CI installs it: `make system`)."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (Debian package redis-server; `make system` installs it)")
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The shared redis-server, emptied for this test."""
    redis_server.flush()
    return redis_server.url


def commit_all(repo: pygit2.Repository, message: str) -> pygit2.Oid:
    """Stage everything in the work tree and commit it (a real git commit)."""
    repo.index.add_all()
    repo.index.write()
    tree = repo.index.write_tree()
    sig = pygit2.Signature("Test Author", "author@example.com")
    parents = [] if repo.head_is_unborn else [repo.head.target]
    return repo.create_commit("HEAD", sig, sig, message, tree, parents)


def make_git_repo(path: Path, source: Path | None = None) -> pygit2.Repository:
    if source is not None:
        shutil.copytree(source, path, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    path.mkdir(parents=True, exist_ok=True)
    repo = pygit2.init_repository(str(path), initial_head="main")
    commit_all(repo, "Initial commit")
    return repo


@pytest.fixture
def calculator_repo(tmp_path: Path) -> Path:
    """A fresh git checkout of the example calculator project."""
    path = tmp_path / "calculator"
    make_git_repo(path, CALCULATOR)
    return path
