"""The `patchling` command line, in process (typer's CliRunner) and as the
installed console script."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import app
from bot.records import RecordStore
from bot.tokens import count_tokens
from tests.conftest import ROOT
from tests.modelserver import ScriptedModel, free_port
from tests.test_engine import (
    CALC_PY,
    CLI_PY,
    INSTRUCTION,
    NEW_TEST,
    edit_rules,
    git_clean,
    plan_rule,
    tree_state,
)

runner = CliRunner()
PATCHLING = ROOT / ".venv" / "bin" / "patchling"


def write_config(path: Path, base_url: str, data_dir: Path, names: tuple[str, ...] = ("tiny",)) -> Path:
    tiers = "".join(
        f'\n[[tiers]]\nname = "{name}"\nmodel = "{name}"\nbase_url = "{base_url}"\ntimeout_s = 30\n'
        for name in names
    )
    path.write_text(f'data_dir = "{data_dir}"\n{tiers}')
    return path


@pytest.mark.slow
def test_edit_json_verified_and_recorded(
    model_server: ScriptedModel, calculator_repo: Path, tmp_path: Path
) -> None:
    model_server.script(plan_rule(), *edit_rules())
    data_dir = tmp_path / "data"
    config = write_config(tmp_path / "patchling.toml", model_server.url, data_dir)
    result = runner.invoke(
        app, ["edit", "--repo", str(calculator_repo), "--config", str(config), "--json", INSTRUCTION]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)  # only JSON on stdout
    assert data["status"] == "verified" and data["tier"] == "tiny"
    assert data["files_changed"] == [CALC_PY, CLI_PY, NEW_TEST]
    assert data["tests"]["before"]["passed"] == 15 and data["tests"]["after"]["passed"] == 17
    assert data["tokens"]["in"] > 0 and data["tokens"]["out"] > 0
    assert [a["outcome"] for a in data["attempts"]] == ["verified"]
    assert set(data["attempts"][0]) >= {
        "tier",
        "model",
        "edit_format",
        "tokens_in",
        "tokens_out",
        "latency_s",
    }
    assert "memory_clear" in data["diff"] and data["notes"]
    # What the tests ran in: the calculator's own environment, built for this data directory.
    assert data["environment"]["installed"] == ["pyproject.toml", "pytest", "coverage"]
    assert data["environment"]["reused"] is False and data["environment"]["seconds"] > 0
    assert (data_dir / "envs" / data["environment"]["key"]).is_dir()
    assert "def memory_clear" in (calculator_repo / CALC_PY).read_text()

    stats = runner.invoke(app, ["stats", "--data-dir", str(data_dir), "--json"])
    assert stats.exit_code == 0, stats.output
    (row,) = json.loads(stats.stdout)
    assert (row["tier"], row["attempts"], row["verified"], row["success_rate"]) == ("tiny", 1, 1, 1.0)


def test_edit_readable_summary(model_server: ScriptedModel, calculator_repo: Path, tmp_path: Path) -> None:
    model_server.script(plan_rule(), *edit_rules())
    config = write_config(tmp_path / "p.toml", model_server.url, tmp_path / "data")
    result = runner.invoke(
        app, ["edit", "--repo", str(calculator_repo), "--config", str(config), "--dry-run", INSTRUCTION]
    )
    assert result.exit_code == 0, result.output
    assert "UNVERIFIED" in result.stdout and "dry run" in result.stdout
    assert "memory_clear" in result.stdout  # the diff
    assert "plan:" in result.stderr  # progress goes to stderr
    assert git_clean(calculator_repo)


def test_edit_failed_exits_1(model_server: ScriptedModel, calculator_repo: Path, tmp_path: Path) -> None:
    model_server.script(plan_rule(), {"match": "What to change in", "reply": "no idea, sorry."})
    config = write_config(tmp_path / "p.toml", model_server.url, tmp_path / "data")
    before = tree_state(calculator_repo)
    result = runner.invoke(
        app, ["edit", "--repo", str(calculator_repo), "--config", str(config), "--json", "x y"]
    )
    assert result.exit_code == 1, result.output
    assert json.loads(result.stdout)["status"] == "failed"
    assert tree_state(calculator_repo) == before


def test_edit_with_no_reachable_tier(calculator_repo: Path, tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    config = write_config(tmp_path / "p.toml", url, tmp_path / "data", names=("qwen-1.5b", "qwen-7b"))
    before = tree_state(calculator_repo)
    proc = subprocess.run(
        [str(PATCHLING), "edit", "--repo", str(calculator_repo), "--config", str(config), INSTRUCTION],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    expected = (
        f"no model tier is reachable: qwen-1.5b ({url}: connection refused),"
        f" qwen-7b ({url}: connection refused)"
    )
    assert expected in proc.stdout.splitlines()[0]
    assert tree_state(calculator_repo) == before


def test_edit_bad_input_exits_2(calculator_repo: Path, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    cases = [
        (["edit", "--repo", str(tmp_path / "missing"), "x"], "no such directory"),
        (["edit", "--repo", str(calculator_repo / "README.md"), "x"], "not a directory"),
        (["edit", "--repo", str(plain), "x"], "not a git work tree"),
        (["edit", "--repo", str(calculator_repo), "   "], "instruction is empty"),
        (["edit", "--repo", str(calculator_repo), "--tier", "nope", "x"], "unknown tier nope"),
    ]
    for args, message in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert message in " ".join(result.stderr.split()), (args, result.stderr)
    assert git_clean(calculator_repo)


SEARCH_REPLACE_OK = """calculator/calculator.py
<<<<<<< SEARCH
    def memory_recall(self) -> float:
=======
    def memory_clear(self) -> None:
        self.memory = None

    def memory_recall(self) -> float:
>>>>>>> REPLACE
"""

SEARCH_REPLACE_TWO_FILES_ONE_BAD = """calculator/cli.py
<<<<<<< SEARCH
  mr             recall memory
=======
  mr             recall memory
  mc             clear memory
>>>>>>> REPLACE

calculator/calculator.py
<<<<<<< SEARCH
    def memory_recal(self) -> float:
        if self.memory is None:
            raise CalculatorError("memory is blank")
=======
    def memory_recall(self) -> float:
>>>>>>> REPLACE
"""


def test_apply_patch_file(calculator_repo: Path, tmp_path: Path) -> None:
    patch = tmp_path / "reply.txt"
    patch.write_text(SEARCH_REPLACE_OK)
    result = runner.invoke(app, ["apply", "--repo", str(calculator_repo), str(patch)])
    assert result.exit_code == 0, result.output
    assert "applied: calculator/calculator.py" in result.stdout
    assert "def memory_clear(self) -> None:" in (calculator_repo / CALC_PY).read_text()


def test_apply_from_stdin(calculator_repo: Path) -> None:
    result = runner.invoke(app, ["apply", "--repo", str(calculator_repo), "-"], input=SEARCH_REPLACE_OK)
    assert result.exit_code == 0, result.output
    assert "def memory_clear" in (calculator_repo / CALC_PY).read_text()


def test_apply_failure_writes_nothing(calculator_repo: Path, tmp_path: Path) -> None:
    patch = tmp_path / "reply.txt"
    patch.write_text(SEARCH_REPLACE_TWO_FILES_ONE_BAD)
    before = tree_state(calculator_repo)
    result = runner.invoke(app, ["apply", "--repo", str(calculator_repo), str(patch)])
    assert result.exit_code == 1, result.output
    err = result.stderr
    assert "not applied in calculator/calculator.py (block" in " ".join(err.split())
    assert "nearest match" in err and "def memory_recall(self) -> float:" in err
    assert "nothing was written" in err
    assert tree_state(calculator_repo) == before and git_clean(calculator_repo)


def test_apply_bad_input_exits_2(calculator_repo: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["apply", "--repo", str(calculator_repo), str(tmp_path / "missing.patch")])
    assert result.exit_code == 2 and "cannot read" in result.stderr
    binary = tmp_path / "blob.patch"
    binary.write_bytes(b"\xff\xfe\x00")
    result = runner.invoke(app, ["apply", "--repo", str(calculator_repo), str(binary)])
    assert result.exit_code == 2
    result = runner.invoke(app, ["apply", "--repo", str(tmp_path), "-"], input=SEARCH_REPLACE_OK)
    assert result.exit_code == 2 and "not a git work tree" in result.stderr


@pytest.mark.parametrize("budget", [150, 600, 4000])
def test_context_json_within_budget(calculator_repo: Path, budget: int) -> None:
    result = runner.invoke(
        app,
        ["context", "--repo", str(calculator_repo), "--budget", str(budget), "--json", "add memory clear"],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) == {"files", "tokens"}
    assert data["tokens"] <= budget
    assert sum(f["tokens"] for f in data["files"]) <= budget
    assert all(set(f) == {"path", "mode", "tokens"} for f in data["files"])
    if budget >= 600:
        assert data["files"][0]["path"] == CALC_PY  # ranked: the memory code first


def test_context_table_and_bad_input(calculator_repo: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["context", "--repo", str(calculator_repo), "--budget", "800", "memory"])
    assert result.exit_code == 0 and "calculator/calculator.py" in result.stdout
    assert (
        runner.invoke(app, ["context", "--repo", str(tmp_path / "nope"), "--budget", "5", "x"]).exit_code == 2
    )
    assert (
        runner.invoke(app, ["context", "--repo", str(calculator_repo), "--budget", "5", " "]).exit_code == 2
    )


def test_stats_empty(tmp_path: Path) -> None:
    result = runner.invoke(app, ["stats", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0 and "no attempts" in result.stdout


def test_context_json_counts_match_rendered_text(calculator_repo: Path) -> None:
    from bot.context import select_context

    context = select_context(calculator_repo, "add memory clear", 500)
    assert count_tokens(context.render()) == context.tokens <= 500


def test_serve_without_app_settings_names_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("GITHUB_APP_ID", "GITHUB_PRIVATE_KEY", "GITHUB_PRIVATE_KEY_PATH", "GITHUB_WEBHOOK_SECRET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GITHUB_PRIVATE_KEY_PATH", str(tmp_path / "missing.pem"))
    result = CliRunner().invoke(app, ["serve"])
    assert result.exit_code == 2
    assert "GITHUB_APP_ID" in result.output and "GITHUB_WEBHOOK_SECRET" in result.output
    assert "missing.pem" in result.output
    assert list(tmp_path.iterdir()) == []  # nothing started, nothing written


# -- stdout is the report only; data never in the repository -----------------------


def cli_env(tmp_path: Path) -> dict[str, str]:
    """The user's environment, with data and cache directories of its own
    (platformdirs follows XDG on Linux) and no data directory setting."""
    env = {k: v for k, v in os.environ.items() if k not in ("PATCHLING_DATA_DIR", "BAML_LOG")}
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg-data")
    env["XDG_CACHE_HOME"] = str(tmp_path / "xdg-cache")
    return env


def tiers_only_config(path: Path, base_url: str, timeout_s: float = 30) -> Path:
    """Settings with a tier and no data_dir: the CLI's default directories apply."""
    path.write_text(
        f'[[tiers]]\nname = "tiny"\nmodel = "tiny"\nbase_url = "{base_url}"\ntimeout_s = {timeout_s}\n'
    )
    return path


def run_patchling(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # The installed console script in a real process: BAML writes to file
    # descriptor 1 itself, which an in-process runner would not see.
    return subprocess.run(
        [str(PATCHLING), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize(
    ("rules", "timeout_s", "outcome", "verbose"),
    [
        (
            [plan_rule(), {"status": 404, "reply": 'model "tiny" not found, try pulling it first'}],
            30,
            "model_not_found",
            False,
        ),
        ([{"match": "Answer in JSON", "reply": "I would rather not say."}], 30, "bad_reply", True),
        ([plan_rule(), {"match": "What to change in", "reply": "late", "delay": 4}], 1, "timeout", False),
    ],
    ids=["404", "garbage", "timeout"],
)
def test_edit_json_stdout_is_json_when_the_model_call_fails(
    model_server: ScriptedModel,
    calculator_repo: Path,
    tmp_path: Path,
    rules: list[dict[str, object]],
    timeout_s: float,
    outcome: str,
    verbose: bool,
) -> None:
    model_server.script(*rules)
    config = tiers_only_config(tmp_path / "p.toml", model_server.url, timeout_s)
    args = ["edit", "--repo", str(calculator_repo), "--config", str(config), "--json", INSTRUCTION]
    proc = run_patchling([*args, "--verbose"] if verbose else args, tmp_path, cli_env(tmp_path))
    assert proc.returncode == 1, proc.stderr
    data = json.loads(proc.stdout)  # nothing but the report on stdout
    assert data["status"] == "failed"
    assert data["attempts"][-1]["outcome"] == outcome
    if verbose:  # BAML's log, prompts and all, went to stderr
        assert "Answer in JSON" in proc.stderr
    else:  # and by default, no prompt anywhere
        assert "Answer in JSON" not in proc.stderr


def test_edit_leaves_no_files_in_the_repository(
    model_server: ScriptedModel, calculator_repo: Path, tmp_path: Path
) -> None:
    env = cli_env(tmp_path)
    config = tiers_only_config(tmp_path / "p.toml", model_server.url)
    # A failed run, then a dry run, both from inside the repository (--repo .).
    model_server.script(plan_rule(), {"status": 404, "reply": "model not found"})
    assert run_patchling(["edit", "--config", str(config), INSTRUCTION], calculator_repo, env).returncode == 1
    model_server.script(plan_rule(), *edit_rules())
    dry = run_patchling(["edit", "--config", str(config), "--dry-run", INSTRUCTION], calculator_repo, env)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert not (calculator_repo / ".patchling").exists()
    assert git_clean(calculator_repo)
    records = tmp_path / "xdg-data" / "patchling" / "records.sqlite3"
    assert {a["source"] for a in RecordStore(records).attempts()} == {"cli"}
    assert any((tmp_path / "xdg-cache" / "patchling" / "index").iterdir())

    # `stats` reads the same place from anywhere: the 404 was no attempt, the dry run is apart.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    stats = run_patchling(["stats", "--json"], elsewhere, env)
    assert stats.returncode == 0, stats.stderr
    (row,) = json.loads(stats.stdout)
    assert (row["tier"], row["attempts"], row["no_answer"], row["dry_runs"]) == ("tiny", 0, 1, 1)
    assert list(elsewhere.iterdir()) == []


def test_context_caches_its_index_where_edit_does(
    calculator_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in cli_env(tmp_path).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("PATCHLING_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    args = ["context", "--repo", str(calculator_repo), "--budget", "600", "--json", INSTRUCTION]
    assert runner.invoke(app, args).exit_code == 0
    assert any((tmp_path / "xdg-cache" / "patchling" / "index").iterdir())
    # PATCHLING_DATA_DIR moves it, as it moves edit's.
    monkeypatch.setenv("PATCHLING_DATA_DIR", str(tmp_path / "chosen"))
    assert runner.invoke(app, args).exit_code == 0
    assert any((tmp_path / "chosen" / "index").iterdir())
    assert not (calculator_repo / ".patchling").exists()


# -- help, version, --repo wording ----------------------------------------------------


@pytest.mark.parametrize("command", [[], ["edit"], ["apply"], ["context"], ["stats"], ["serve"]])
def test_help_has_no_type_placeholders(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"], terminal_width=120)
    assert result.exit_code == 0, result.output
    for placeholder in ("<bool>", "<list[str]>", "<str>", "<path>", "{"):
        assert placeholder not in result.output, (placeholder, result.output)


def test_version() -> None:
    import importlib.metadata

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"patchling {importlib.metadata.version('patchling')}"


def test_one_wording_for_a_bad_repo(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    for args in (["edit", "x"], ["apply", "-"], ["context", "--budget", "5", "x"]):
        result = runner.invoke(app, [args[0], "--repo", str(missing), *args[1:]], input="")
        assert result.exit_code == 2
        assert result.stderr.strip() == f"error: --repo {missing}: no such directory"


# -- serve: a private key that does not parse stops the start --------------------------


@pytest.mark.parametrize("kind", ["garbage", "public"])
def test_serve_refuses_a_key_that_is_not_a_private_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    from cryptography.hazmat.primitives import serialization

    from tests.fakegithub import private_key_pem

    key_file = tmp_path / "key.pem"
    if kind == "public":  # the mistake of pasting the public half
        private = serialization.load_pem_private_key(private_key_pem().encode(), password=None)
        key_file.write_bytes(
            private.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
    else:
        key_file.write_text("-----BEGIN RSA PRIVATE KEY-----\nnot a key\n-----END RSA PRIVATE KEY-----\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GITHUB_PRIVATE_KEY", raising=False)
    monkeypatch.setenv("GITHUB_APP_ID", "1")
    monkeypatch.setenv("GITHUB_PRIVATE_KEY_PATH", str(key_file))
    monkeypatch.setenv("GITHUB_WEBHOOK_SECRET", "s")
    result = CliRunner().invoke(app, ["serve"])
    assert result.exit_code == 2
    assert f"GITHUB_PRIVATE_KEY_PATH ({key_file}) does not hold a PEM private key" in result.stderr
    assert "public" not in result.stderr.lower()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["key.pem"]  # nothing started, nothing written


def test_apply_honours_the_size_cap_in_the_settings(calculator_repo: Path, tmp_path: Path) -> None:
    config = tmp_path / "patchling.toml"
    config.write_text("[caps]\nmax_file_bytes = 200\n")
    patch = tmp_path / "reply.txt"
    patch.write_text(SEARCH_REPLACE_OK)
    before = tree_state(calculator_repo)
    args = ["apply", "--repo", str(calculator_repo), "--config", str(config), str(patch)]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert "over the cap of 200 bytes per file" in " ".join(result.stderr.split())
    assert "nothing was written" in result.stderr
    assert tree_state(calculator_repo) == before


def test_apply_refuses_protected_paths_like_edit(calculator_repo: Path, tmp_path: Path) -> None:
    workflow = ".github/workflows/ci.yml"
    patch = tmp_path / "reply.txt"
    patch.write_text(f"{workflow}\n<<<<<<< SEARCH\n=======\non: push\n>>>>>>> REPLACE\n" + SEARCH_REPLACE_OK)
    before = tree_state(calculator_repo)
    cases = [
        ([], workflow),
        (["--protected", "calculator/*.py", "--allow-workflows"], CALC_PY),
    ]
    for extra, refused in cases:
        result = runner.invoke(app, ["apply", "--repo", str(calculator_repo), *extra, str(patch)])
        assert result.exit_code == 1, result.output
        assert f"Refused: {refused} is protected" in " ".join(result.stderr.split())
        assert tree_state(calculator_repo) == before
    result = runner.invoke(app, ["apply", "--repo", str(calculator_repo), "--allow-workflows", str(patch)])
    assert result.exit_code == 0, result.output
    assert (calculator_repo / workflow).read_text() == "on: push\n"
