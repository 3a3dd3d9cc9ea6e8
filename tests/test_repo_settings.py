"""`.github/patchling.yml`: read from git, validated, defaults when absent."""

from __future__ import annotations

from pathlib import Path

import pygit2
import pytest

from bot.config import ChangeCaps, Tier
from bot.repo_settings import (
    MissingBranch,
    RepoSettings,
    RepoSettingsError,
    load_repo_settings,
    parse_repo_settings,
    select_tiers,
)
from tests.conftest import commit_all, make_git_repo

TIERS = [Tier(name="small", model="s"), Tier(name="medium", model="m"), Tier(name="large", model="l")]


def test_defaults() -> None:
    settings = parse_repo_settings("")
    assert settings == RepoSettings()
    assert settings.test is None and settings.setup is None and settings.tiers is None
    assert settings.branch_prefix == "patchling/"
    assert settings.protected_paths() == []
    assert settings.allow_workflows is False


def test_full_file() -> None:
    settings = parse_repo_settings(
        """
test: python -m pytest -q tests
setup: pip install -e .
protected: ["migrations/**", "LICENSE", ".github/**"]
branch_prefix: bot/
tiers: [medium, large]
"""
    )
    assert settings.test == "python -m pytest -q tests"
    assert settings.setup == "pip install -e ."
    assert settings.protected_paths() == ["migrations/**", "LICENSE"]  # .github/** always is
    assert settings.branch_prefix == "bot/"
    assert [t.name for t in select_tiers(TIERS, settings.tiers)] == ["medium", "large"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("test: [unclosed", "not valid YAML"),
        ("- a list", "must be a mapping"),
        ("tset: pytest", "`tset`"),  # a typo is an error, not silently ignored
        ("protected: 3", "`protected`"),
        ("test: '  '", "must not be empty"),
        ("branch_prefix: 'bad..name/'", "cannot start a git branch name"),
        ("tiers: []", "`tiers`"),
    ],
)
def test_bad_files_say_why(text: str, message: str) -> None:
    with pytest.raises(RepoSettingsError, match=message):
        parse_repo_settings(text)


def test_unknown_tier_names_the_offered_ones() -> None:
    assert select_tiers(TIERS, None) == TIERS
    with pytest.raises(RepoSettingsError, match=r"unknown tier.*huge.*small, medium, large"):
        select_tiers(TIERS, ["small", "huge"])


def test_read_from_the_committed_default_branch(tmp_path: Path) -> None:
    path = tmp_path / "r"
    path.mkdir()
    (path / "README.md").write_text("hello\n")
    repo = make_git_repo(path)
    assert load_repo_settings(repo, "refs/heads/main") == RepoSettings()

    (path / ".github").mkdir()
    (path / ".github" / "patchling.yml").write_text("test: make check\nprotected: [docs/**]\n")
    commit_all(repo, "Configure Patchling")
    # Uncommitted changes in a work tree never count: only what is committed does.
    (path / ".github" / "patchling.yml").write_text("test: rm -rf /\n")
    settings = load_repo_settings(repo, "refs/heads/main")
    assert settings.test == "make check" and settings.protected == ("docs/**",)

    bare = pygit2.clone_repository(str(path), str(tmp_path / "bare.git"), bare=True)
    assert load_repo_settings(bare, "refs/heads/main").test == "make check"


def test_yaml_extension_and_bad_bytes(tmp_path: Path) -> None:
    path = tmp_path / "r"
    (path / ".github").mkdir(parents=True)
    (path / ".github" / "patchling.yaml").write_bytes(b"test: \xff\xfe\n")
    repo = make_git_repo(path)
    with pytest.raises(RepoSettingsError, match="UTF-8"):
        load_repo_settings(repo, "refs/heads/main")


def test_missing_branch_or_empty_repository_says_so(tmp_path: Path) -> None:
    empty = pygit2.init_repository(str(tmp_path / "empty.git"), bare=True)
    with pytest.raises(MissingBranch, match="the repository is empty"):
        load_repo_settings(empty, "refs/heads/main")
    path = tmp_path / "r"
    path.mkdir()
    (path / "README.md").write_text("hello\n")
    repo = make_git_repo(path)
    with pytest.raises(MissingBranch, match="has no branch `trunk`"):
        load_repo_settings(repo, "refs/heads/trunk")


def test_workflows_and_caps_settings() -> None:
    assert RepoSettings().allow_workflows is False
    settings = parse_repo_settings("allow_workflows: true\ncaps: {max_files: 3, max_file_bytes: 5000000}\n")
    assert settings.allow_workflows is True
    server = ChangeCaps(max_files=20, max_file_bytes=1_000_000, max_changed_lines=2_000)
    # Lower than the server: taken; higher: the server's cap stays; unset: the server's.
    assert settings.caps_within(server) == ChangeCaps(
        max_files=3, max_file_bytes=1_000_000, max_changed_lines=2_000
    )
    assert RepoSettings().caps_within(server) == server


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("caps: {max_files: 0}", "`caps.max_files`"),
        ("caps: {max_lines: 10}", "`caps.max_lines`"),
        ("allow_workflows: [yes]", "`allow_workflows`"),
    ],
)
def test_bad_caps_or_workflow_settings_say_why(text: str, message: str) -> None:
    with pytest.raises(RepoSettingsError, match=message):
        parse_repo_settings(text)
