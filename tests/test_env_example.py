"""deploy/.env.example against the settings the App really reads, so that it cannot rot:
every variable it names is read, every setting is named, and its values load."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import AliasChoices

from bot.config import Settings, default_tiers

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "deploy" / ".env.example"
# `NAME=value`, or `# NAME=value` for an optional setting shown commented out.
ASSIGNMENT = re.compile(r"^(?:#\s*)?([A-Z][A-Z0-9_]*)=(.*)$")


def example_lines() -> dict[str, str]:
    """Each variable the example names, with the line that sets it (uncommented)."""
    lines = {}
    for line in EXAMPLE.read_text(encoding="utf-8").splitlines():
        match = ASSIGNMENT.match(line.strip())
        if match:
            lines[match.group(1)] = f"{match.group(1)}={match.group(2)}"
    return lines


def setting_names() -> set[str]:
    """The variable names Settings reads: its aliases, or the prefixed field name."""
    prefix = Settings.model_config.get("env_prefix", "")
    names: set[str] = set()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(str(choice) for choice in alias.choices)
        else:
            names.add(f"{prefix}{name}".upper())
    return names


def key_names() -> set[str]:
    """Model keys, read by the default tiers that name them."""
    return {tier.api_key_env for tier in default_tiers() if tier.api_key_env}


def test_every_variable_in_the_example_is_read() -> None:
    unknown = set(example_lines()) - setting_names() - key_names()
    assert not unknown, f"deploy/.env.example names variables nothing reads: {sorted(unknown)}"


def test_every_setting_and_key_is_in_the_example() -> None:
    missing = (setting_names() | key_names()) - set(example_lines())
    assert not missing, f"deploy/.env.example does not mention: {sorted(missing)}"


def test_the_example_values_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Every line uncommented at once: each example value must be valid for its setting.
    env_file = tmp_path / ".env"
    env_file.write_text("\n".join(example_lines().values()) + "\n", encoding="utf-8")
    for name in setting_names():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no patchling.toml here
    settings = Settings(_env_file=env_file)
    assert settings.github_app_id == "123456"
    assert settings.github_private_key is not None
    key = settings.private_key()
    assert key is not None and key.startswith("-----BEGIN")
    assert settings.github_api_url.startswith("https://")
    assert settings.queue_url is not None and settings.queue_url.startswith("redis://")
    assert [tier.name for tier in settings.tiers] == ["qwen-7b"]
    assert settings.workers == 2
    assert settings.test_timeout_s == 600


@pytest.mark.parametrize(
    ("path", "mention"),
    [
        ("README.md", "deploy/.env.example"),
        ("deploy/Dockerfile", "--env-file deploy/.env"),
        ("deploy/patchling.service", "install -m 0600 .env.example"),
    ],
)
def test_the_files_that_point_to_the_example_still_do(path: str, mention: str) -> None:
    assert EXAMPLE.is_file()
    assert mention in (ROOT / path).read_text(encoding="utf-8")
