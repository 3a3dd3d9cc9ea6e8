"""Whatever a model returns, the engine writes only confined, text, bounded
changes: no binary content, no file over the size cap, no more files or changed
lines per job than the caps allow, and `.github/workflows/` only when allowed.
Every refusal happens before anything is written, says why, and tells the next
tier. The scripted model server plays the models; git is real."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pygit2

from bot.config import ChangeCaps
from bot.engine import EditRequest, run_edit
from tests.conftest import commit_all, make_git_repo
from tests.modelserver import ScriptedModel, _message_text
from tests.test_engine import edit_calls, fenced, git_clean, make_tier, tree_state

WORKFLOW = ".github/workflows/ci.yml"
WORKFLOW_TEXT = "on: push\njobs: {}\n"


def notes_repo(tmp_path: Path) -> Path:
    """A git repository of text files, with a workflow and Patchling's settings."""
    root = tmp_path / "notes"
    (root / ".github" / "workflows").mkdir(parents=True)
    (root / "notes.txt").write_text("one\n")
    (root / "more.txt").write_text("more\n")
    (root / WORKFLOW).write_text(WORKFLOW_TEXT)
    (root / ".github" / "patchling.yml").write_text("test: 'true'\n")
    make_git_repo(root)
    return root


def whole(path: str, text: str, **extra: Any) -> dict[str, Any]:
    return {"match": f"What to change in {path}:", "reply": fenced(text, "text"), **extra}


def plan_of(*paths: str) -> dict[str, Any]:
    plan = {"files": [{"path": p, "change": "write it"} for p in paths], "notes": "n"}
    return {"match": "Answer in JSON", "reply": fenced(json.dumps(plan), "json")}


async def refused(server: ScriptedModel, root: Path, instruction: str, outcome: str, **kw: Any) -> str:
    """Run one tier that must be refused with `outcome`; the tree stays as it was."""
    before = tree_state(root)
    stages: list[str] = []
    result = await run_edit(
        EditRequest(root, instruction, test_command="true", **kw),
        tiers=[make_tier(server, "tiny")],
        on_progress=lambda event: stages.append(event.stage),
    )
    assert result.status == "failed", result.message
    assert [a.outcome for a in result.attempts] == [outcome]
    assert "applied" not in stages and "tests_after" not in stages
    assert tree_state(root) == before and git_clean(root)
    return result.attempts[0].detail


async def test_binary_content_is_refused(model_server: ScriptedModel, tmp_path: Path) -> None:
    root = notes_repo(tmp_path)
    model_server.script(whole("notes.txt", "one\n\0\0\0two\n"))
    detail = await refused(model_server, root, "append two to notes.txt", "binary")
    assert "notes.txt: the new content has NUL bytes" in detail


async def test_a_file_over_the_size_cap_is_refused(model_server: ScriptedModel, tmp_path: Path) -> None:
    root = notes_repo(tmp_path)
    model_server.script(whole("notes.txt", "one\n" + "two\n" * 100))
    caps = ChangeCaps(max_file_bytes=200)
    detail = await refused(model_server, root, "append two to notes.txt", "over_cap", caps=caps)
    assert "notes.txt: the new content is 404 bytes, over the cap of 200 bytes per file" in detail


async def test_too_many_files_are_refused(model_server: ScriptedModel, tmp_path: Path) -> None:
    root = notes_repo(tmp_path)
    model_server.script(
        plan_of("notes.txt", "more.txt", "new.txt"),
        whole("notes.txt", "one\ntwo\n"),
        whole("more.txt", "more\ntwo\n"),
        whole("new.txt", "two\n"),
    )
    caps = ChangeCaps(max_files=2)
    detail = await refused(model_server, root, "write two everywhere", "over_cap", caps=caps)
    assert "the change writes 3 files, over the cap of 2 per job" in detail


async def test_too_many_changed_lines_are_refused(model_server: ScriptedModel, tmp_path: Path) -> None:
    root = notes_repo(tmp_path)
    model_server.script(whole("notes.txt", "one\n" + "two\n" * 30))
    caps = ChangeCaps(max_changed_lines=20)
    detail = await refused(model_server, root, "append two to notes.txt", "over_cap", caps=caps)
    assert "adds or removes 30 lines, over the cap of 20 per job" in detail


async def test_a_refusal_is_told_to_the_next_tier(model_server: ScriptedModel, tmp_path: Path) -> None:
    root = notes_repo(tmp_path)
    model_server.script(
        whole("notes.txt", "one\n" + "two\n" * 30, model="tiny"),
        whole("notes.txt", "one\ntwo\n", model="bigger"),
    )
    result = await run_edit(
        EditRequest(
            root, "append two to notes.txt", test_command="true", caps=ChangeCaps(max_changed_lines=20)
        ),
        tiers=[make_tier(model_server, "tiny"), make_tier(model_server, "bigger")],
    )
    assert [a.outcome for a in result.attempts] == ["over_cap", "verified"]
    assert (root / "notes.txt").read_text() == "one\ntwo\n"
    texts = {c["model"]: _message_text(c["messages"]) for c in edit_calls(model_server)}
    assert "refused before writing" in texts["bigger"] and "over the cap of 20" in texts["bigger"]


async def test_workflows_are_never_written_by_default(model_server: ScriptedModel, tmp_path: Path) -> None:
    root = notes_repo(tmp_path)
    model_server.script(plan_of(WORKFLOW), whole(WORKFLOW, WORKFLOW_TEXT + "# changed\n"))
    detail = await refused(model_server, root, "add a comment to the CI workflow", "model_error")
    assert f"{WORKFLOW}: protected" in detail and not edit_calls(model_server)


async def test_allowed_workflows_are_written_and_nothing_else_in_github(
    model_server: ScriptedModel, tmp_path: Path
) -> None:
    root = notes_repo(tmp_path)
    model_server.script(plan_of(WORKFLOW), whole(WORKFLOW, WORKFLOW_TEXT + "# changed\n"))
    result = await run_edit(
        EditRequest(root, "add a comment to the CI workflow", test_command="true", allow_workflows=True),
        tiers=[make_tier(model_server, "tiny")],
    )
    assert result.status == "verified", result.message
    assert (root / WORKFLOW).read_text().endswith("# changed\n")

    commit_all(pygit2.Repository(str(root)), "the workflow change")
    # Patchling's own settings stay out of reach, whatever the model plans.
    model_server.script(plan_of(".github/patchling.yml"), whole(".github/patchling.yml", "test: 'false'\n"))
    detail = await refused(model_server, root, "change the settings", "model_error", allow_workflows=True)
    assert ".github/patchling.yml: protected" in detail
