"""Settings: one pydantic-settings model, read from the environment, `.env`
and `patchling.toml` (in that order of precedence)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, PositiveInt, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from bot.sandbox import Limits, Sandbox, patchling_paths

EditFormat = Literal["whole", "search_replace", "diff"]

# The name deploy/patchling.service gives the App's key in `LoadCredential=`.
PRIVATE_KEY_CREDENTIAL = "github-private-key"


class Tier(BaseModel):
    """One model tier. The tiers form a ladder in the configured order, cheapest
    first; the router (bot.routing) decides where on it a request starts."""

    name: str
    provider: str = "openai-generic"
    model: str
    base_url: str | None = None
    # The *name* of the variable holding the key, never the key itself.
    api_key_env: str | None = None
    context_window: int = 32_768
    max_output_tokens: int = 4_096
    edit_format: EditFormat = "whole"
    timeout_s: float = 120.0

    @property
    def input_budget(self) -> int:
        """Tokens the prompt may use: the window minus room for the answer."""
        return max(0, self.context_window - self.max_output_tokens)

    def api_key(self) -> str | None:
        return os.environ.get(self.api_key_env) if self.api_key_env else None

    def available(self) -> bool:
        """A tier that needs a key is only usable when its variable is set."""
        return self.api_key_env is None or bool(self.api_key())


def default_tiers() -> list[Tier]:
    tiers = [
        Tier(
            name="qwen-1.5b",
            model="qwen2.5-coder:1.5b",
            base_url="http://localhost:11434/v1",
            context_window=32_768,
            max_output_tokens=4_096,
            edit_format="whole",
        ),
        Tier(
            name="qwen-7b",
            model="qwen2.5-coder:7b",
            base_url="http://localhost:11434/v1",
            context_window=32_768,
            max_output_tokens=4_096,
            edit_format="whole",
        ),
        Tier(
            name="gpt-4o-mini",
            provider="openai",
            model="gpt-4o-mini",
            api_key_env="OPENAI_API_KEY",
            context_window=128_000,
            max_output_tokens=16_000,
            edit_format="search_replace",
        ),
        Tier(
            name="claude",
            provider="anthropic",
            model="claude-sonnet-4-5",
            api_key_env="ANTHROPIC_API_KEY",
            context_window=200_000,
            max_output_tokens=16_000,
            edit_format="search_replace",
        ),
    ]
    return tiers


class ChangeCaps(BaseModel):
    """How much one job's change may write (bot.guards applies them). Model output
    is untrusted: these bound the damage a confused or hostile answer can do.
    Set them under `[caps]` in patchling.toml or as PATCHLING_CAPS__MAX_FILES etc.;
    a repository may lower them, never raise them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_files: PositiveInt = 20
    max_file_bytes: PositiveInt = 1_000_000
    max_changed_lines: PositiveInt = 2_000


class Routing(BaseModel):
    """Where each request starts on the tier ladder (bot.routing). The ladder is
    the configured tier order, cheapest first; records of past attempts decide
    where on it a request starts and which tiers it skips. Set under `[routing]`
    in patchling.toml or as PATCHLING_ROUTING__MIN_RATE etc."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    # A tier is trusted with a kind of request when it verified at least this share...
    min_rate: float = Field(default=0.6, ge=0.0, le=1.0)
    # ... of its last `window` attempts on similar requests, and made at least `min_samples`.
    window: PositiveInt = 50
    min_samples: PositiveInt = 5
    # A tier that failed this many times in a row on a kind of request is left out of it...
    max_failures: PositiveInt = 3
    # ... except on one request of that kind in this many, so its record can recover.
    reprobe_every: PositiveInt = 10


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PATCHLING_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        toml_file="patchling.toml",
        env_nested_delimiter="__",
    )

    # The App's data (queue, jobs, mirrors, records), relative to where `serve`
    # runs. The CLI leaves this default alone: see `cli_data_dirs`.
    data_dir: Path = Path(".patchling")
    tiers: list[Tier] = Field(default_factory=default_tiers)
    test_command: str | None = None
    test_timeout_s: float = 600.0
    caps: ChangeCaps = Field(default_factory=ChangeCaps)
    routing: Routing = Field(default_factory=Routing)

    # GitHub App settings keep GitHub's usual variable names.
    github_app_id: str | None = Field(default=None, validation_alias=AliasChoices("GITHUB_APP_ID"))
    github_private_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("GITHUB_PRIVATE_KEY")
    )
    github_private_key_path: Path | None = Field(
        default=None, validation_alias=AliasChoices("GITHUB_PRIVATE_KEY_PATH")
    )
    github_webhook_secret: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("GITHUB_WEBHOOK_SECRET")
    )
    github_api_url: str = Field(
        default="https://api.github.com", validation_alias=AliasChoices("GITHUB_API_URL")
    )
    # Parallel jobs across repositories (one at a time per repository branch).
    workers: int = 2
    # The job queue and ledger: SQLite under data_dir when unset, or `redis://...`
    # for RedisHuey and the ledger in the same Redis (shared between hosts).
    queue_url: str | None = None
    # Redis mode: a job whose worker process has not been heard from for this
    # long is given to another worker (see bot/lease.py).
    lease_s: float = Field(default=30, gt=0, le=110)
    # A job that finds its repository branch held by another job goes back to
    # the queue for this long (then tries again; waiting never counts as a run).
    busy_retry_s: float = Field(default=15, gt=0, le=600)
    # Repository code (setup, tests, environment builds) runs under bubblewrap.
    # "none" runs it as this server's user, seeing all it sees: reports then say so.
    sandbox: Literal["bwrap", "none"] = "bwrap"
    bwrap_path: str = "bwrap"
    # Limits per repository command (the wall clock is test_timeout_s).
    sandbox_cpu_s: int = Field(default=900, ge=1)
    sandbox_memory_mb: int = Field(default=4096, ge=64)
    sandbox_file_mb: int = Field(default=1024, ge=1)
    sandbox_processes: int = Field(default=256, ge=8)
    sandbox_output_kb: int = Field(default=4000, ge=16)
    sandbox_tmp_mb: int = Field(default=512, ge=16)

    # -- repository size cap --
    # Larger repositories are refused: before cloning by the size GitHub
    # reports, after fetching by the mirror's size on disk.
    max_repo_mb: int = Field(default=2048, ge=1)

    # -- first-run setup and webhook forwarding --
    # The address GitHub reaches this server at (https://patchling.example.com):
    # setup mode registers the App's webhook there, else at the request's own host.
    public_url: str | None = None
    # A smee-style channel relaying GitHub's deliveries to a server without a
    # public address (`patchling serve --forward`); setup mode registers it as the webhook.
    webhook_proxy_url: str | None = Field(default=None, validation_alias=AliasChoices("WEBHOOK_PROXY_URL"))
    # The App's OAuth client, written by setup mode with the rest of its credentials.
    github_client_id: str | None = Field(default=None, validation_alias=AliasChoices("GITHUB_CLIENT_ID"))
    github_client_secret: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("GITHUB_CLIENT_SECRET")
    )

    # -- dashboard --
    # GET /dashboard is served only when this is set (PATCHLING_DASHBOARD_TOKEN):
    # viewers send it as a bearer token or sign in with it once (a cookie).
    dashboard_token: SecretStr | None = None

    # -- test environments --
    # Built once per set of dependency files and reused, then pruned (at start-up,
    # after jobs, by `patchling prune`): those unused for this many days, and,
    # least recently used first, as many as it takes to stay under this size.
    envs_max_age_days: float = Field(default=14, gt=0)
    envs_max_gb: float = Field(default=20, gt=0)

    # -- operating --
    # `serve`'s log lines: one JSON object each, or "text" (key=value) for a terminal.
    log_format: Literal["json", "text"] = "json"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            dotenv_settings,
            TomlConfigSettingsSource(settings_cls),
            file_secret_settings,
        )

    @model_validator(mode="after")
    def _key_from_credentials(self) -> Settings:
        """Under systemd, the key arrives as a credential: a file only this
        service can read, in $CREDENTIALS_DIRECTORY. An explicit key wins."""
        if self.github_private_key is None and self.github_private_key_path is None:
            directory = os.environ.get("CREDENTIALS_DIRECTORY")
            credential = Path(directory) / PRIVATE_KEY_CREDENTIAL if directory else None
            if credential is not None and credential.is_file():
                self.github_private_key_path = credential
        return self

    def make_sandbox(self) -> Sandbox:
        """The sandbox for repository code, hiding what must stay secret even
        where it lies under a directory the sandbox mounts."""
        limits = Limits(
            cpu_s=self.sandbox_cpu_s,
            memory_bytes=self.sandbox_memory_mb << 20,
            file_bytes=self.sandbox_file_mb << 20,
            processes=self.sandbox_processes,
            output_bytes=self.sandbox_output_kb * 1000,
            tmp_bytes=self.sandbox_tmp_mb << 20,
        )
        hidden = [self.data_dir.resolve(), Path(".env").resolve(), *patchling_paths()]
        if self.github_private_key_path is not None:
            hidden.append(self.github_private_key_path.resolve())
        if os.environ.get("CREDENTIALS_DIRECTORY"):
            hidden.append(Path(os.environ["CREDENTIALS_DIRECTORY"]).resolve())
        return Sandbox(mode=self.sandbox, bwrap=self.bwrap_path, limits=limits, hidden=tuple(hidden))

    def private_key(self) -> str | None:
        if self.github_private_key is not None:
            return self.github_private_key.get_secret_value()
        if self.github_private_key_path is not None:
            return self.github_private_key_path.read_text()
        return None


def load_settings(config_file: Path | None = None, **overrides: object) -> Settings:
    """Load settings; `config_file` replaces the default `patchling.toml`."""
    if config_file is not None:

        class _Custom(Settings):
            model_config = SettingsConfigDict(toml_file=config_file)

        return _Custom(**overrides)  # type: ignore[arg-type]
    return Settings(**overrides)  # type: ignore[arg-type]


APP_NAME = "patchling"


@dataclass(frozen=True)
class DataDirs:
    """Where the CLI keeps attempt records (worth keeping) and caches (safe to delete)."""

    data: Path
    cache: Path

    @property
    def records(self) -> Path:
        return self.data / "records.sqlite3"


def cli_data_dirs(settings: Settings, override: Path | None = None) -> DataDirs:
    """The CLI's directories: `override` (--data-dir), else the settings'
    `data_dir` when set (PATCHLING_DATA_DIR, patchling.toml), else the user's
    data and cache directories. Never the current directory by default: the
    CLI runs inside the user's repositories and must leave no files there."""
    chosen = override
    if chosen is None and "data_dir" in settings.model_fields_set:
        chosen = settings.data_dir
    if chosen is not None:
        return DataDirs(data=chosen, cache=chosen)
    return DataDirs(data=platformdirs.user_data_path(APP_NAME), cache=platformdirs.user_cache_path(APP_NAME))
