"""Symlinks, end to end: a committed link never brings what it points at into a
model's prompt (`patchling context`, the edit engine), and no change is written
through one."""

from __future__ import annotations

import json
from pathlib import Path

import pygit2
import pytest
from typer.testing import CliRunner

from bot.cli import app
from bot.context import select_context
from bot.engine import EditRequest, run_edit
from tests.conftest import commit_all
from tests.modelserver import ScriptedModel, _message_text
from tests.test_engine import CALC_PY, edit_rules, fenced, make_tier, new_calculator, plan_rule, tree_state

SECRET = "SECRET-KEY-MATERIAL-42"
runner = CliRunner()


def plant(root: Path, outside: Path) -> list[str]:
    """Links to a key and a secret outside the project, a linked directory and a link to a
    file inside; the names are made to rank first for the instructions below."""
    outside.mkdir()
    (outside / "key.pem").write_text(f"-----BEGIN PRIVATE KEY-----\n{SECRET}\n")
    (outside / "secret.txt").write_text(f"deploy_key = '{SECRET}'\n")
    (outside / "lib").mkdir()
    (outside / "lib" / "deploy.py").write_text(f"def deploy_key():\n    return '{SECRET}'\n")
    (root / "deploy_key.pem").symlink_to(outside / "key.pem")
    (root / "etc_passwd").symlink_to("/etc/passwd")
    (root / "calculator" / "deploy_key.py").symlink_to(outside / "secret.txt")
    (root / "deploy_lib").symlink_to(outside / "lib", target_is_directory=True)
    (root / "calculator" / "alias.py").symlink_to("calculator.py")
    return ["calculator/alias.py", "calculator/deploy_key.py", "deploy_key.pem", "deploy_lib", "etc_passwd"]


@pytest.fixture(params=["git", "plain"])
def project(request: pytest.FixtureRequest, calculator_repo: Path, tmp_path: Path) -> tuple[Path, list[str]]:
    """The calculator with links committed (a git work tree) or in a plain directory."""
    root = calculator_repo
    links = plant(root, tmp_path / "outside")
    repo = pygit2.Repository(str(root))
    if request.param == "git":
        commit_all(repo, "links")
        assert repo.index["deploy_key.pem"].mode == pygit2.enums.FileMode.LINK
    else:
        plain = tmp_path / "plain"
        plain.mkdir()
        for entry in root.iterdir():
            if entry.name != ".git":
                entry.rename(plain / entry.name)
        root = plain
    return root, links


def test_patchling_context_never_shows_a_link(project: tuple[Path, list[str]]) -> None:
    root, links = project
    instruction = "rotate deploy_key in deploy_key.pem, deploy_lib/deploy.py and etc_passwd"
    result = runner.invoke(app, ["context", "--repo", str(root), "--budget", "8000", "--json", instruction])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    shown = [f["path"] for f in data["files"]]
    assert "full" in {f["mode"] for f in data["files"]}  # the budget holds whole files
    assert not any(p == link or p.startswith(link + "/") for p in shown for link in links)
    assert SECRET not in result.stdout
    assert SECRET not in select_context(root, instruction, 8000).render()
    table = runner.invoke(app, ["context", "--repo", str(root), "--budget", "8000", instruction])
    assert table.exit_code == 0 and SECRET not in table.stdout


async def test_the_edit_engine_never_sends_or_changes_a_link(
    model_server: ScriptedModel, calculator_repo: Path, tmp_path: Path
) -> None:
    links = plant(calculator_repo, tmp_path / "outside")
    commit_all(pygit2.Repository(str(calculator_repo)), "links")
    plan = {
        "files": [
            {"path": "deploy_key.pem", "change": "rotate the key"},
            {"path": "calculator/deploy_key.py", "change": "rotate the key"},
            {"path": "deploy_lib/deploy.py", "change": "rotate the key"},
            {"path": CALC_PY, "change": "add a memory_clear method"},
        ],
        "notes": "",
    }
    model_server.script(
        plan_rule(plan),
        *edit_rules(),
        {"match": "What to change in deploy", "reply": fenced("ROTATED\n", "text")},
        {"match": "What to change in calculator/deploy_key.py", "reply": fenced("ROTATED\n")},
    )
    outside_before = tree_state(tmp_path / "outside")
    result = await run_edit(
        EditRequest(
            calculator_repo,
            "add memory clear and rotate deploy_key in deploy_key.pem and deploy_lib/deploy.py",
        ),
        tiers=[make_tier(model_server, "tiny")],
    )
    prompts = [_message_text(call["messages"]) for call in model_server.calls()]
    assert prompts and not any(SECRET in prompt for prompt in prompts)
    assert result.files_changed == [CALC_PY], result.message
    assert (calculator_repo / CALC_PY).read_text() == new_calculator()
    assert tree_state(tmp_path / "outside") == outside_before
    assert all((calculator_repo / link).is_symlink() for link in links)


async def test_a_reply_writing_through_a_link_is_refused(
    model_server: ScriptedModel, calculator_repo: Path, tmp_path: Path
) -> None:
    links = plant(calculator_repo, tmp_path / "outside")
    commit_all(pygit2.Repository(str(calculator_repo)), "links")
    before = tree_state(calculator_repo)
    through_link = (
        "calculator/alias.py\n<<<<<<< SEARCH\n        return self.memory\n=======\n"
        "        return self.memory\n\n    def memory_clear(self) -> None:\n        self.memory = None\n"
        ">>>>>>> REPLACE\n"
    )
    model_server.script(
        plan_rule({"files": [{"path": CALC_PY, "change": "add memory_clear"}], "notes": ""}),
        {"match": f"What to change in {CALC_PY}:", "reply": through_link},
    )
    result = await run_edit(
        EditRequest(calculator_repo, "add memory clear"),
        tiers=[make_tier(model_server, "tiny", edit_format="search_replace")],
    )
    assert result.status == "failed" and result.files_changed == []
    assert [a.outcome for a in result.attempts] == ["apply_failed"]
    assert "symbolic link" in result.attempts[0].detail
    assert tree_state(calculator_repo) == before
    assert all((calculator_repo / link).is_symlink() for link in links)
