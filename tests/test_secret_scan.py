"""Nothing secret leaks anywhere: after a job that succeeds and one that fails,
every byte Patchling wrote or sent is scanned for the App's private key, the
webhook secret, the installation tokens and the model API key.

Scanned: every file under the test's directory (the data directory with its
SQLite files and mirrors, the remote, what is left of the work trees), every
git object decompressed (commit messages, pushed trees), the logs (DEBUG) and
the process's stdout/stderr, every request body and URL the fake GitHub
received, and every prompt the model server received. The repository's test
command reads the key file and prints it, as a hostile test would: what it
prints must not travel into comments, PR bodies, logs or prompts either."""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pygit2
import pytest

from bot.config import Tier
from tests.conftest import CALCULATOR
from tests.fakegithub import WEBHOOK_SECRET, Harness, issue_comment, make_harness, private_key_pem
from tests.fakegithub import script_memory_clear as script_edit
from tests.modelserver import ScriptedModel
from tests.test_app_e2e import NEW_SOURCE

MODEL_KEY_ENV = "PATCHLING_SCAN_MODEL_KEY"
MODEL_KEY = "sk-scan-" + "7f3a9c1e" * 4
BREAKS_TESTS = "# BREAKS-THE-TESTS\n"


def key_forms(pem: str) -> list[str]:
    """The key as it could leak: its base64 lines one by one, and the body joined."""
    body = [line for line in pem.strip().splitlines() if not line.startswith("-----")]
    return [*body, "".join(body)]


def forms(secret: str) -> set[str]:
    """A secret and its URL-encoded forms."""
    return {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret)}


def git_objects(root: Path) -> Iterator[tuple[str, bytes]]:
    """Every object of every git repository under root, decompressed."""
    for marker in root.rglob("HEAD"):
        try:
            repo = pygit2.Repository(str(marker.parent))
        except pygit2.GitError:
            continue
        for oid in repo.odb:
            yield f"{marker.parent}:{oid}", repo.odb.read(oid)[1]


def written(root: Path) -> Iterator[tuple[str, bytes]]:
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            yield str(path), path.read_bytes()
    yield from git_objects(root)


@pytest.fixture
def hostile_app(
    tmp_path: Path, model_server: ScriptedModel, monkeypatch: pytest.MonkeyPatch
) -> tuple[Harness, Path]:
    """The App with its key in a file, a model tier that needs an API key, and a
    repository test command that prints the key file (and fails on BREAKS_TESTS)."""
    keys = tmp_path / "credentials"
    keys.mkdir()
    key_file = keys / "github-private-key.pem"
    key_file.write_text(private_key_pem())
    monkeypatch.setenv(MODEL_KEY_ENV, MODEL_KEY)
    test_command = f"cat {key_file}; ! grep -q BREAKS-THE-TESTS calculator/calculator.py"
    app = make_harness(tmp_path, CALCULATOR, model_server.url, test_command=test_command)
    app.settings.github_private_key = None
    app.settings.github_private_key_path = key_file
    assert app.settings.private_key() == private_key_pem()
    # Two tiers: the second is told why the first failed, test output included.
    app.settings.tiers[:] = [
        Tier(name=name, model=name, base_url=model_server.url, edit_format="whole", api_key_env=MODEL_KEY_ENV)
        for name in ("tiny", "bigger")
    ]
    return app, key_file


def test_no_secret_is_written_logged_posted_or_sent(
    hostile_app: tuple[Harness, Path],
    model_server: ScriptedModel,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    app, key_file = hostile_app
    caplog.set_level(logging.DEBUG)
    # A job that succeeds: a pull request with the change.
    script_edit(model_server, NEW_SOURCE)
    assert (
        app.deliver("issue_comment", issue_comment(app.repo, "/edit add memory clear", number=7)).status_code
        == 202
    )
    assert app.run_jobs() == 1
    assert len(app.fake.created_pulls) == 1, app.fake.bodies()
    prompts = [str(call["messages"]) for call in model_server.calls()]
    # A job that fails: the change breaks the tests, nothing is pushed, the requester is told why.
    script_edit(model_server, NEW_SOURCE + BREAKS_TESTS)
    assert (
        app.deliver("issue_comment", issue_comment(app.repo, "/edit add memory clear", number=8)).status_code
        == 202
    )
    assert app.run_jobs() == 1
    assert any("could not make a change" in c["body"] for c in app.fake.posted_to(8))
    assert len(app.fake.created_pulls) == 1
    prompts += [str(call["messages"]) for call in model_server.calls()]

    tokens = app.fake.tokens
    assert len(tokens) == 2 and app.fake.revoked == tokens
    named = {"private key": key_forms(private_key_pem()), "webhook secret": [WEBHOOK_SECRET]}
    named |= {"model API key": [MODEL_KEY], **{f"token {i}": [t] for i, t in enumerate(tokens)}}
    # Each form of each secret, to the name a failure shows (never the secret itself).
    secrets = {form: name for name, values in named.items() for value in values for form in forms(value)}
    out, err = capfd.readouterr()
    seen: list[tuple[str, str]] = [("log", caplog.text), ("stdout", out), ("stderr", err)]
    seen += [(f"posted #{i}", body) for i, body in enumerate(app.fake.bodies())]
    seen += [(f"request {r.method} {r.url.path}", f"{r.url} {r.content.decode()}") for r in app.fake.requests]
    seen += [(f"prompt #{i}", text) for i, text in enumerate(prompts)]
    files = [(where, data) for where, data in written(tmp_path) if not where.startswith(str(key_file))]
    # The scan reaches what matters: logs, requests, prompts, SQLite files, pushed commits.
    assert caplog.text and app.fake.requests and prompts
    assert any(where.endswith(".sqlite3") for where, _ in files)
    assert any(b"Patchling job" in data for where, data in files if str(app.remote_path) in where)

    leaks = {(where, name) for where, text in seen for form, name in secrets.items() if form in text}
    leaks |= {
        (where, name) for where, data in files for form, name in secrets.items() if form.encode() in data
    }
    assert sorted(leaks) == []
