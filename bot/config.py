"""Settings: one pydantic-settings model, read from the environment, `.env`
and `patchling.toml` (in that order of precedence)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import AliasChoices, BaseModel, Field, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

EditFormat = Literal["whole", "search_replace", "diff"]

# The name deploy/patchling.service gives the App's key in `LoadCredential=`.
PRIVATE_KEY_CREDENTIAL = "github-private-key"


class Tier(BaseModel):
    """One model tier. Tiers are tried in order, smallest first."""

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
    # The job queue: SQLite under data_dir when unset, or `redis://...` for RedisHuey.
    queue_url: str | None = None

    # -- repository size cap --
    # Larger repositories are refused: before cloning by the size GitHub
    # reports, after fetching by the mirror's size on disk.
    max_repo_mb: int = Field(default=2048, ge=1)

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
