"""`patchling edit` on the Go and TypeScript examples, with the scripted model:
a tier whose answer does not parse is refused with the place it breaks, the
next tier's good answer is verified by the ecosystem's own test runner, in the
sandbox, with its counts before and after."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from bot.cli import app
from tests.conftest import ROOT, make_git_repo
from tests.modelserver import ScriptedModel, _message_text
from tests.test_cli import write_config
from tests.test_engine import edit_calls, fenced, git_clean

runner = CliRunner()

UNITS_GO = "units.go"
UNITS_TEST = "units_test.go"
MILES = """
// MilesToKilometres converts miles to kilometres.
func MilesToKilometres(miles float64) float64 {
	return miles * 1.609344
}
"""
MILES_TEST = """
func TestMilesToKilometres(t *testing.T) {
	if got := MilesToKilometres(1); !near(got, 1.609344) {
		t.Fatalf("MilesToKilometres(1) = %v, want 1.609344", got)
	}
}
"""

TODO_TS = "src/todo.ts"
TODO_TEST = "test/todo.test.ts"
REMOVE = """
  /** Remove the item with this id. */
  remove(id: number): void {
    this.items = this.items.filter((i) => i.id !== id);
  }
}
"""
REMOVE_TEST = """
test("removed items are gone", () => {
  const list = new TodoList();
  const item = list.add("one");
  list.remove(item.id);
  assert.deepEqual(list.pending(), []);
});
"""


def example(name: str, tmp_path: Path) -> Path:
    path = tmp_path / name
    shutil.copytree(ROOT / "examples" / name, path)
    make_git_repo(path)
    return path


def plan(*files: str) -> dict[str, Any]:
    return {
        "match": "Answer in JSON",
        "reply": fenced(
            json.dumps({"files": [{"path": p, "change": "as asked"} for p in files], "notes": "n"})
        ),
    }


def answers(model: str, replies: dict[str, str], fence: str) -> list[dict[str, Any]]:
    return [
        {"model": model, "match": f"What to change in {path}:", "reply": fenced(text, fence)}
        for path, text in replies.items()
    ]


def edit(repo: Path, tmp_path: Path, server: ScriptedModel, instruction: str) -> dict[str, Any]:
    config = write_config(tmp_path / "patchling.toml", server.url, tmp_path / "data", ("tiny", "bigger"))
    result = runner.invoke(app, ["edit", "--repo", str(repo), "--config", str(config), "--json", instruction])
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.stdout))


def prompts_of(server: ScriptedModel, model: str) -> list[str]:
    return [_message_text(c["messages"]) for c in edit_calls(server) if c["model"] == model]


@pytest.mark.slow
def test_go_edit_broken_syntax_refused_then_verified(model_server: ScriptedModel, tmp_path: Path) -> None:
    if shutil.which("go") is None:
        pytest.skip("go is not installed (`make system` installs golang-go)")
    repo = example("units", tmp_path)
    source, tests = (repo / UNITS_GO).read_text(), (repo / UNITS_TEST).read_text()
    good = {UNITS_GO: source + MILES, UNITS_TEST: tests + MILES_TEST}
    broken = {**good, UNITS_GO: source + MILES.rstrip().removesuffix("}") + "\n"}  # the closing brace lost
    model_server.script(
        plan(UNITS_GO, UNITS_TEST), *answers("tiny", broken, "go"), *answers("bigger", good, "go")
    )
    data = edit(repo, tmp_path, model_server, "add MilesToKilometres")
    assert [a["outcome"] for a in data["attempts"]] == ["syntax_error", "verified"]
    lines = (source + MILES).count("\n")
    assert f"units.go: line {lines}, column 1: missing '}}'" in data["attempts"][0]["detail"]
    assert data["status"] == "verified" and data["tier"] == "bigger"
    assert data["tests"]["before"]["command"] == "go test -json ./..."
    assert (data["tests"]["before"]["passed"], data["tests"]["after"]["passed"]) == (4, 5)
    assert data["tests"]["after"]["failed"] == 0
    # go test's own profile says the new function ran in the new test.
    assert data["evidence"]["level"] == "covered" and data["evidence"]["coverage"] == "measured"
    assert data["evidence"]["unexercised"] == {} and data["evidence"]["notes"] == []
    # The next tier is told where the syntax broke, and sees Go fenced as Go.
    bigger = prompts_of(model_server, "bigger")
    assert bigger and all("units.go: line" in text and "```go\n" in text for text in bigger)
    assert "func MilesToKilometres" in (repo / UNITS_GO).read_text()
    assert not git_clean(repo)  # the change is in the work tree, for the caller to commit


@pytest.mark.slow
def test_typescript_edit_broken_syntax_refused_then_verified(
    model_server: ScriptedModel, tmp_path: Path
) -> None:
    if shutil.which("node") is None or shutil.which("tsc") is None:
        pytest.skip("node and tsc are not installed (`make system` installs nodejs and node-typescript)")
    repo = example("todo", tmp_path)
    source, tests = (repo / TODO_TS).read_text(), (repo / TODO_TEST).read_text()
    good = {TODO_TS: source.rstrip().removesuffix("}") + REMOVE, TODO_TEST: tests + REMOVE_TEST}
    broken = {**good, TODO_TS: good[TODO_TS].replace("(i) => i.id !== id", "(i) => i.id !== ")}
    model_server.script(
        plan(TODO_TS, TODO_TEST),
        *answers("tiny", broken, "typescript"),
        *answers("bigger", good, "typescript"),
    )
    data = edit(repo, tmp_path, model_server, "add a remove method to the to-do list")
    assert [a["outcome"] for a in data["attempts"]] == ["syntax_error", "verified"]
    assert "src/todo.ts: line " in data["attempts"][0]["detail"]
    assert data["tests"]["before"]["command"] == "npm test"
    assert (data["tests"]["before"]["passed"], data["tests"]["after"]["passed"]) == (3, 4)
    bigger = prompts_of(model_server, "bigger")
    assert bigger and all("```typescript\n" in text for text in bigger)
    assert "remove(id: number)" in (repo / TODO_TS).read_text()


@pytest.mark.slow
def test_go_function_no_test_calls_is_unexercised(model_server: ScriptedModel, tmp_path: Path) -> None:
    if shutil.which("go") is None:
        pytest.skip("go is not installed (`make system` installs golang-go)")
    repo = example("units", tmp_path)
    source = (repo / UNITS_GO).read_text()
    model_server.script(plan(UNITS_GO), *answers("tiny", {UNITS_GO: source + MILES}, "go"))
    data = edit(repo, tmp_path, model_server, "add MilesToKilometres")
    assert data["status"] == "unexercised"
    # The signature and the return: not the comment above, nor the closing brace.
    start = source.count("\n") + 3
    assert data["evidence"]["unexercised"] == {UNITS_GO: [start, start + 1]}
    assert f"lines {start}–{start + 1} of units.go are not exercised by any test" in data["message"]
