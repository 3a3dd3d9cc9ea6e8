"""The `patchling` command line, in process (typer's CliRunner) and as the
installed console script."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import app
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
    assert data["environment"]["installed"] == ["pyproject.toml", "pytest"]
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
