"""Per-repository settings: `.github/patchling.yml` on the default branch.

Read from the local mirror with pygit2 (never through the API), so what
configures a job is exactly the commit the job starts from.

    test: python -m pytest -q          # test command (else the server's setting)
    setup: pip install -e .            # run once before the tests
    network: setup                     # network for repository code: setup (default), none, all
    protected: ["migrations/**"]       # globs the bot may not touch
    branch_prefix: patchling/          # branches for issue edits
    tiers: [qwen-7b, gpt-4o-mini]      # names of configured tiers, in order
    allow_workflows: true              # may change .github/workflows/ (default: never)
    caps: {max_files: 5}               # lower the server's caps per job (never raise them)
    tests: write                       # test-first: write (default for issue requests) or existing

Only the default branch configures a job, also one on a pull request: a pull
request cannot grant itself `allow_workflows` or higher caps by editing this file.

A file that does not validate stops the job with a comment that says why,
rather than running on defaults: a typo in `protected` must not let the bot
edit what the maintainers meant to fence off.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import pygit2
import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, field_validator

from bot.config import ChangeCaps, Tier
from bot.files import ALWAYS_PROTECTED
from bot.sandbox import Network

SETTINGS_PATHS = (".github/patchling.yml", ".github/patchling.yaml")


class RepoSettingsError(ValueError):
    """The settings file is there but unusable; the message is for people."""


class MissingBranch(RepoSettingsError):
    """The branch to read the settings from is not there (or the repository is empty)."""


class CapsSetting(BaseModel):
    """The repository's own caps (see bot.config.ChangeCaps); unset ones follow the server."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_files: PositiveInt | None = None
    max_file_bytes: PositiveInt | None = None
    max_changed_lines: PositiveInt | None = None


class RepoSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    test: str | None = None
    setup: str | None = None
    # Tests never get the network unless "all"; setup (and the environment build) unless "none".
    network: Network = "setup"
    protected: tuple[str, ...] = ()
    branch_prefix: str = "patchling/"
    tiers: tuple[str, ...] | None = Field(default=None, min_length=1)
    allow_workflows: bool = False
    caps: CapsSetting = CapsSetting()
    # "write": each tier first writes a test that must fail before its change (bot.testfirst);
    # "existing": the repository's own tests only. Unset: write for requests from issues.
    tests: Literal["write", "existing"] | None = None

    @field_validator("test", "setup")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("branch_prefix")
    @classmethod
    def _valid_prefix(cls, value: str) -> str:
        if not pygit2.reference_is_valid_name(f"refs/heads/{value}x"):
            raise ValueError(f"{value!r} cannot start a git branch name")
        return value

    def protected_paths(self) -> list[str]:
        """The repository's own protected globs. bot.files.is_protected adds
        ALWAYS_PROTECTED itself (the bot never edits .git, its own configuration or,
        unless `allow_workflows`, the workflows), so those are left out here: listed
        again, `.github/**` would fence off the workflows `allow_workflows` opens."""
        return [p for p in self.protected if p not in ALWAYS_PROTECTED]

    def write_test(self, target: str) -> bool:
        """Whether a request made on `target` ("issue", "pull", "review") writes its test first."""
        return self.tests == "write" if self.tests is not None else target == "issue"

    def caps_within(self, server: ChangeCaps) -> ChangeCaps:
        """The caps for a job: the repository's where lower than the server's. A
        repository may tighten them, never loosen them: the server's are its limits."""
        lowered = {
            name: min(mine, getattr(server, name))
            for name, mine in self.caps.model_dump().items()
            if mine is not None
        }
        return server.model_copy(update=lowered)


def parse_repo_settings(text: str, source: str = SETTINGS_PATHS[0]) -> RepoSettings:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RepoSettingsError(f"`{source}` is not valid YAML: {exc}") from None
    if data is None:
        return RepoSettings()
    if not isinstance(data, dict):
        raise RepoSettingsError(f"`{source}` must be a mapping of settings, not {type(data).__name__}")
    try:
        return RepoSettings.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"`{'.'.join(str(p) for p in err['loc']) or '(file)'}`: {err['msg']}" for err in exc.errors()
        )
        raise RepoSettingsError(f"`{source}` has invalid settings: {problems}") from None


def load_repo_settings(repo: pygit2.Repository, ref: str) -> RepoSettings:
    """Settings as committed at `ref` (e.g. `refs/heads/main`); defaults when absent."""
    try:
        tree = repo.revparse_single(ref).peel(pygit2.Commit).tree
    except (KeyError, pygit2.GitError):  # pygit2 raises KeyError (or GitError) for a missing ref
        if repo.is_empty:
            raise MissingBranch("the repository is empty: it has no commits yet") from None
        raise MissingBranch(f"the repository has no branch `{ref.removeprefix('refs/heads/')}`") from None
    for path in SETTINGS_PATHS:
        try:
            entry = tree[path]
        except KeyError:
            continue
        blob = repo[entry.id]
        if not isinstance(blob, pygit2.Blob):
            raise RepoSettingsError(f"`{path}` is not a file")
        try:
            text = blob.data.decode("utf-8")
        except UnicodeDecodeError:
            raise RepoSettingsError(f"`{path}` is not UTF-8 text") from None
        return parse_repo_settings(text, path)
    return RepoSettings()


def select_tiers(configured: Sequence[Tier], names: Sequence[str] | None) -> list[Tier]:
    """The repository's choice of tiers, in its order; all configured ones by default."""
    if names is None:
        return list(configured)
    by_name = {tier.name: tier for tier in configured}
    unknown = [name for name in names if name not in by_name]
    if unknown:
        raise RepoSettingsError(
            f"unknown tier(s) {', '.join(unknown)} in `tiers`; this server offers: {', '.join(by_name)}"
        )
    return [by_name[name] for name in names]
