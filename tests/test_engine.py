"""The engine end to end: real git checkouts of the calculator, the scripted
model server standing in for the models, and real pytest runs in the
repository's own environment where the test runner is the subject (marked
slow); elsewhere a trivial test command."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pygit2
import pytest

from bot.config import Tier
from bot.engine import KEPT_INDEXES, EditRequest, EditResult, run_edit
from bot.index import RepoIndex
from bot.progress import Progress, Refused
from bot.records import RecordStore
from bot.rollback import Snapshot
from bot.tokens import count_tokens
from tests.conftest import CALCULATOR, commit_all
from tests.modelserver import ScriptedModel, _message_text

INSTRUCTION = "add memory clear"
CALC_PY = "calculator/calculator.py"
CLI_PY = "calculator/cli.py"
NEW_TEST = "tests/test_memory_clear.py"
# A test command that needs no environment and passes: for tests about anything but the runner.
TRIVIAL = "true"

# -- the scripted "add memory clear" change -----------------------------------


def original(path: str) -> str:
    return (CALCULATOR / path).read_text()


def new_calculator() -> str:
    anchor = "        return self.memory\n"
    method = (
        "\n"
        "    def memory_clear(self) -> None:\n"
        '        """Forget the stored value."""\n'
        "        self.memory = None\n"
    )
    return original(CALC_PY).replace(anchor, anchor + method, 1)


def new_cli() -> str:
    text = original(CLI_PY).replace(
        "  mr             recall memory\n", "  mr             recall memory\n  mc             clear memory\n"
    )
    return text.replace(
        '        if command == "mr":\n',
        '        if command == "mc":\n            calc.memory_clear()\n            return "cleared"\n'
        '        if command == "mr":\n',
    )


NEW_TEST_TEXT = """import io

import pytest

from calculator import Calculator, CalculatorError
from calculator.cli import main


def test_memory_clear() -> None:
    calc = Calculator()
    calc.memory_store(5)
    calc.memory_clear()
    with pytest.raises(CalculatorError):
        calc.memory_recall()


def test_mc_command() -> None:
    out = io.StringIO()
    main(io.StringIO("ms 3\\nmc\\nmr\\n"), out)
    assert out.getvalue().splitlines() == ["stored", "cleared", "error: memory is empty"]
"""

PLAN = {
    "files": [
        {"path": CALC_PY, "change": "add a memory_clear method that empties the memory"},
        {"path": CLI_PY, "change": "add an `mc` command that calls memory_clear"},
        {"path": NEW_TEST, "change": "test memory_clear and the mc command"},
    ],
    "notes": "memory_clear on the calculator, mc in the CLI, tests for both",
}


def fenced(text: str, lang: str = "python") -> str:
    return f"```{lang}\n{text}```\n"


def plan_rule(plan: dict[str, Any] = PLAN, **extra: Any) -> dict[str, Any]:
    return {"match": "Answer in JSON", "reply": fenced(json.dumps(plan), "json"), **extra}


def edit_rules(**extra: Any) -> list[dict[str, Any]]:
    """Whole-file replies implementing memory clear, one per planned file."""
    return [
        {"match": f"What to change in {CALC_PY}:", "reply": fenced(new_calculator()), **extra},
        {"match": f"What to change in {CLI_PY}:", "reply": fenced(new_cli()), **extra},
        {"match": f"What to change in {NEW_TEST}:", "reply": fenced(NEW_TEST_TEXT), **extra},
    ]


def make_tier(server: ScriptedModel, name: str, **kw: Any) -> Tier:
    return Tier(name=name, model=name, base_url=server.url, timeout_s=kw.pop("timeout_s", 30), **kw)


# -- checkout state ----------------------------------------------------------------


def tree_state(root: Path) -> dict[str, str]:
    """Hash of every file outside .git: byte-identical trees compare equal."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".git" not in p.relative_to(root).parts
    }


def git_clean(root: Path) -> bool:
    return pygit2.Repository(str(root)).status() == {}


def edit_calls(server: ScriptedModel) -> list[dict[str, Any]]:
    return [c for c in server.calls() if "Answer in JSON" not in _message_text(c["messages"])]


# -- tests ---------------------------------------------------------------------


@pytest.mark.slow
async def test_add_memory_clear_is_verified(
    model_server: ScriptedModel, calculator_repo: Path, tmp_path: Path, shared_data_dir: Path
) -> None:
    model_server.script(plan_rule(), *edit_rules())
    records = RecordStore(tmp_path / "records.sqlite3")
    stages: list[str] = []
    result = await run_edit(
        EditRequest(calculator_repo, f"  {INSTRUCTION}\n", job_id="job-1", data_dir=shared_data_dir),
        tiers=[make_tier(model_server, "tiny")],
        records=records,
        on_progress=lambda event: stages.append(event.stage),
    )
    assert result.status == "verified", result.message
    assert result.tier == "tiny"
    assert result.files_changed == [CALC_PY, CLI_PY, NEW_TEST]
    assert (calculator_repo / CALC_PY).read_text() == new_calculator()
    assert (calculator_repo / CLI_PY).read_text() == new_cli()
    assert (calculator_repo / NEW_TEST).read_text() == NEW_TEST_TEXT
    assert result.tests_before is not None and result.tests_after is not None
    assert (result.tests_before.passed, result.tests_before.failed) == (15, 0)
    assert (result.tests_after.passed, result.tests_after.failed) == (17, 0)
    assert [a.outcome for a in result.attempts] == ["verified"]
    assert result.tokens_in > 0 and result.tokens_in == result.attempts[0].tokens_in
    assert "+    def memory_clear(self) -> None:" in result.diff
    assert "--- /dev/null\n+++ b/tests/test_memory_clear.py" in result.diff
    assert result.notes == PLAN["notes"]
    assert stages == ["context", "plan", "generated", "applied", "environment", "tests_before", "tests_after"]
    assert result.environment is not None
    assert result.environment["installed"] == ["pyproject.toml", "pytest", "coverage"]
    stored = records.attempts(job_id="job-1")
    assert [(r["tier"], r["outcome"], r["instruction"]) for r in stored] == [
        ("tiny", "verified", INSTRUCTION)
    ]
    # Records name the repository, never the temporary checkout path.
    assert stored[0]["repo"] == calculator_repo.resolve().name
    data = result.to_json()
    assert data["tests"]["after"]["passed"] == 17 and data["tokens"]["in"] == result.tokens_in
    assert data["tests"]["after"]["could_not_run"] is None
    assert data["environment"]["installed"] == ["pyproject.toml", "pytest", "coverage"]
    json.dumps(data)  # serialisable as is


async def test_escalates_from_a_broken_diff_to_the_next_tier(
    model_server: ScriptedModel, calculator_repo: Path
) -> None:
    broken_diff = fenced(
        "--- a/calculator/calculator.py\n+++ b/calculator/calculator.py\n@@ -40,3 +40,6 @@\n"
        "     def memory_wipe(self):\n-        nothing like this exists\n+        self.memory = None\n",
        "diff",
    )
    model_server.script(
        plan_rule(),
        {"model": "tiny", "match": "What to change in", "reply": broken_diff},
        *[{**rule, "model": "bigger"} for rule in edit_rules()],
    )
    events: list[Progress] = []
    result = await run_edit(
        EditRequest(calculator_repo, INSTRUCTION, test_command=TRIVIAL),
        tiers=[make_tier(model_server, "tiny", edit_format="diff"), make_tier(model_server, "bigger")],
        on_progress=events.append,
    )
    assert result.status == "verified", result.message
    assert result.tier == "bigger"
    (refused,) = [e for e in events if isinstance(e, Refused)]
    assert (refused.tier, refused.outcome) == ("tiny", "apply_failed")
    assert [e.stage for e in events if e.tier == "bigger"] == [
        "context",
        "plan",
        "generated",
        "applied",
        "tests_after",
    ]
    assert [(a.tier, a.outcome) for a in result.attempts] == [
        ("tiny", "apply_failed"),
        ("bigger", "verified"),
    ]
    assert "calculator/calculator.py" in result.attempts[0].detail
    calls = edit_calls(model_server)
    tiny_calls = [c for c in calls if c["model"] == "tiny"]
    # Three files, and the broken one retried once with "did you mean" feedback.
    assert len(tiny_calls) >= 4
    assert any("Your edit could not be applied" in _message_text(c["messages"]) for c in tiny_calls)
    bigger_texts = [_message_text(c["messages"]) for c in calls if c["model"] == "bigger"]
    assert bigger_texts and all("An earlier attempt failed" in t for t in bigger_texts)
    assert (calculator_repo / CALC_PY).read_text() == new_calculator()


@pytest.mark.parametrize(
    ("edit_format", "plan_reply", "edit_reply"),
    [
        pytest.param(
            "whole", None, "```python\nclass Calculator:\n    def memory_clear(self", id="unclosed-fence"
        ),
        pytest.param(
            "diff",
            None,
            "```diff\n--- a/calculator/calculator.py\n+++ b/calculator/calculator.py\n@@ -40,6 +40,9 @@\n"
            "     def memory_recall(self) -> float:\n-        if self",
            id="half-a-diff",
        ),
        pytest.param(
            "search_replace",
            None,
            "I would add a memory_clear method to the Calculator class.",
            id="prose-only",
        ),
        pytest.param("whole", '{"files": [{"path": "calculator/calc', None, id="invalid-json-plan"),
        pytest.param("whole", None, fenced("def memory_clear(:\n    pass\n" * 12), id="syntax-error"),
    ],
)
async def test_garbage_output_fails_and_leaves_the_checkout_untouched(
    model_server: ScriptedModel,
    calculator_repo: Path,
    edit_format: str,
    plan_reply: str | None,
    edit_reply: str | None,
) -> None:
    plan = {"match": "Answer in JSON", "reply": plan_reply} if plan_reply is not None else plan_rule()
    model_server.script(plan, {"match": "What to change in", "reply": edit_reply or "unused"})
    before = tree_state(calculator_repo)
    result = await run_edit(
        EditRequest(calculator_repo, INSTRUCTION, test_command=TRIVIAL),
        tiers=[make_tier(model_server, "tiny", edit_format=edit_format)],
    )
    assert result.status == "failed"
    assert result.diff == "" and result.files_changed == []
    assert result.attempts[0].outcome in ("apply_failed", "model_error", "bad_reply", "syntax_error")
    assert result.message.startswith("every tier failed: tiny:")
    assert result.last_output  # what the model said is kept for the report
    assert tree_state(calculator_repo) == before
    assert git_clean(calculator_repo)


@pytest.mark.slow
async def test_worse_tests_are_rejected_and_files_restored(
    model_server: ScriptedModel, calculator_repo: Path, shared_data_dir: Path
) -> None:
    broken = new_calculator().replace("        return self.memory\n", "        return 0.0\n", 1)
    model_server.script(
        plan_rule({"files": [PLAN["files"][0]], "notes": "n"}),
        {"match": f"What to change in {CALC_PY}:", "reply": fenced(broken)},
    )
    before = tree_state(calculator_repo)
    result = await run_edit(
        EditRequest(calculator_repo, INSTRUCTION, data_dir=shared_data_dir),
        tiers=[make_tier(model_server, "tiny")],
    )
    assert result.status == "failed"
    assert [a.outcome for a in result.attempts] == ["tests_worse"]
    assert "tests now failing" in result.attempts[0].detail
    assert result.tests_before is not None and result.tests_before.failed == 0
    assert tree_state(calculator_repo) == before and git_clean(calculator_repo)


@pytest.mark.slow
async def test_worse_tests_escalate_with_the_failure_as_feedback(
    model_server: ScriptedModel, calculator_repo: Path, shared_data_dir: Path
) -> None:
    broken_cli = new_cli().replace('return "cleared"', 'return "wiped"')
    model_server.script(
        plan_rule(),
        {"model": "tiny", "match": f"What to change in {CLI_PY}:", "reply": fenced(broken_cli)},
        *[{**rule, "model": "tiny"} for rule in edit_rules() if CLI_PY not in rule["match"]],
        *[{**rule, "model": "bigger"} for rule in edit_rules()],
    )
    result = await run_edit(
        EditRequest(calculator_repo, INSTRUCTION, data_dir=shared_data_dir),
        tiers=[make_tier(model_server, "tiny"), make_tier(model_server, "bigger")],
    )
    assert [a.outcome for a in result.attempts] == ["tests_worse", "verified"]
    assert result.tier == "bigger" and result.status == "verified"
    bigger = [_message_text(c["messages"]) for c in edit_calls(model_server) if c["model"] == "bigger"]
    assert all("test_mc_command" in text for text in bigger)  # the failing test, passed on


async def test_per_file_calls_run_concurrently(model_server: ScriptedModel, calculator_repo: Path) -> None:
    files = [CALC_PY, CLI_PY, "calculator/operations.py", "README.md"]
    plan = {"files": [{"path": p, "change": "add a comment line at the end"} for p in files], "notes": ""}
    rules = [
        {
            "match": f"What to change in {path}:",
            "reply": fenced(original(path) + ("# reviewed\n" if path.endswith(".py") else "Reviewed.\n"), ""),
            "delay": 1.0,
        }
        for path in files
    ]
    model_server.script(plan_rule(plan), *rules)
    result = await run_edit(
        EditRequest(calculator_repo, "mark every module as reviewed", test_command=TRIVIAL),
        tiers=[make_tier(model_server, "tiny")],
    )
    assert result.status == "verified", result.message
    assert result.files_changed == sorted(files)
    calls = edit_calls(model_server)
    assert len(calls) == 4
    # Every call started before any call ended: the intervals all overlap.
    assert max(c["started"] for c in calls) < min(c["ended"] for c in calls)


async def test_requests_never_exceed_the_input_budget(
    model_server: ScriptedModel, calculator_repo: Path
) -> None:
    small = make_tier(model_server, "tiny", context_window=600, max_output_tokens=100)
    medium = make_tier(model_server, "medium", context_window=1200, max_output_tokens=200)
    assert count_tokens(original(CALC_PY)) > small.input_budget - 100  # the file alone does not fit
    model_server.script(
        plan_rule({"files": [PLAN["files"][0]], "notes": "n"}),
        {"model": "medium", "match": f"What to change in {CALC_PY}:", "reply": fenced(new_calculator())},
    )
    result = await run_edit(
        EditRequest(calculator_repo, INSTRUCTION, test_command=TRIVIAL), tiers=[small, medium]
    )
    assert [(a.tier, a.outcome) for a in result.attempts] == [("tiny", "too_large"), ("medium", "verified")]
    assert "too large for tier tiny" in result.attempts[0].detail
    budgets = {"tiny": small.input_budget, "medium": medium.input_budget}
    calls = model_server.calls()
    assert {c["model"] for c in calls} == {"tiny", "medium"}
    assert not [c for c in edit_calls(model_server) if c["model"] == "tiny"]  # refused before sending
    for call in calls:
        sent = count_tokens(_message_text(call["messages"]))
        assert sent <= budgets[call["model"]], (call["model"], sent)
    # The medium tier's edit call got trimmed neighbour context, not none at all.
    (edit,) = edit_calls(model_server)
    assert "calculator/cli.py" in _message_text(edit["messages"])


async def test_dry_run_writes_nothing(model_server: ScriptedModel, calculator_repo: Path) -> None:
    model_server.script(plan_rule(), *edit_rules())
    before = tree_state(calculator_repo)
    result = await run_edit(
        EditRequest(calculator_repo, INSTRUCTION, dry_run=True), tiers=[make_tier(model_server, "tiny")]
    )
    assert result.status == "unverified"
    assert "dry run" in result.message
    assert result.tests_before is None and result.tests_after is None
    assert result.files_changed == [CALC_PY, CLI_PY, NEW_TEST] and "memory_clear" in result.diff
    assert tree_state(calculator_repo) == before and git_clean(calculator_repo)


async def test_a_second_job_on_the_same_repository_rereads_only_changed_files(
    model_server: ScriptedModel, calculator_repo: Path, tmp_path: Path
) -> None:
    label = f"owner/{tmp_path.name}"

    async def job(n: int) -> RepoIndex:
        """A dry run on a fresh checkout, as the App's workspace makes one per job."""
        tree = tmp_path / f"job{n}"
        pygit2.clone_repository(str(calculator_repo), str(tree))
        model_server.script(plan_rule(), *edit_rules())
        await run_edit(
            EditRequest(tree, INSTRUCTION, dry_run=True, repo=label), tiers=[make_tier(model_server, "tiny")]
        )
        return KEPT_INDEXES.kept[label]

    first = await job(0)
    with open(calculator_repo / CALC_PY, "a") as fh:
        fh.write("\n\ndef tripled(x):\n    return 3 * x\n")
    commit_all(pygit2.Repository(str(calculator_repo)), "tripled")
    second = await job(1)
    assert first.stats.read > 1 and second.stats.read == 1
    assert "tripled" in {s.name for s in second.files[CALC_PY].symbols}  # never the kept, stale record


async def test_protected_paths_are_never_changed(model_server: ScriptedModel, calculator_repo: Path) -> None:
    model_server.script(plan_rule(), *edit_rules())
    before = tree_state(calculator_repo)
    result = await run_edit(
        EditRequest(
            calculator_repo, INSTRUCTION, protected_paths=["calculator/*", "tests/"], test_command=TRIVIAL
        ),
        tiers=[make_tier(model_server, "tiny")],
    )
    assert result.status == "failed"
    assert "protected" in result.attempts[0].detail
    assert not edit_calls(model_server)
    assert tree_state(calculator_repo) == before


async def test_named_path_skips_the_planning_call(model_server: ScriptedModel, calculator_repo: Path) -> None:
    model_server.script(edit_rules()[0])
    result = await run_edit(
        EditRequest(calculator_repo, f"add a memory_clear method to {CALC_PY}", test_command=TRIVIAL),
        tiers=[make_tier(model_server, "tiny")],
    )
    assert result.status == "verified", result.message
    assert result.files_changed == [CALC_PY]
    assert len(model_server.calls()) == 1  # no PlanEdit call


def notes_repo(tmp_path: Path) -> Path:
    """A git repository with one text file and no tests."""
    from tests.conftest import make_git_repo

    root = tmp_path / "notes"
    root.mkdir()
    (root / "notes.txt").write_text("one\n")
    make_git_repo(root)
    return root


async def test_unverified_without_tests(model_server: ScriptedModel, tmp_path: Path) -> None:
    root = notes_repo(tmp_path)
    model_server.script({"match": "What to change in notes.txt:", "reply": fenced("one\ntwo\n", "text")})
    result = await run_edit(
        EditRequest(root, "append two to notes.txt"), tiers=[make_tier(model_server, "tiny")]
    )
    assert result.status == "unverified" and result.tests_before is None
    assert (root / "notes.txt").read_text() == "one\ntwo\n"


async def test_setup_command_runs_before_and_after(model_server: ScriptedModel, tmp_path: Path) -> None:
    root = notes_repo(tmp_path)
    model_server.script({"match": "What to change in notes.txt:", "reply": fenced("one\ntwo\n", "text")})
    records = RecordStore(tmp_path / "records.sqlite3")
    # The tests consume the marker setup leaves: they pass only if setup ran first, each time.
    result = await run_edit(
        EditRequest(
            root,
            "append two to notes.txt",
            setup_command="touch .ready",
            test_command="test -f .ready && rm .ready",
            job_id="job-setup",
            repo="owner/notes",
        ),
        tiers=[make_tier(model_server, "tiny")],
        records=records,
    )
    assert result.status == "verified", result.message
    assert result.tests_before is not None and result.tests_after is not None
    assert (result.tests_before.passed, result.tests_before.errors) == (1, 0)
    assert (result.tests_after.passed, result.tests_after.errors) == (1, 0)
    assert [r["repo"] for r in records.attempts(job_id="job-setup")] == ["owner/notes"]


ONE_FILE_PLAN = {"files": [PLAN["files"][0]], "notes": "n"}
# A whole-file answer that lost a class nobody asked about (as a truncating model does).
_FULL = new_calculator()
SHRUNK = _FULL[: _FULL.index("class CalculatorError")] + _FULL[_FULL.index("class Calculator:") :]


async def test_a_destructive_whole_file_is_refused_before_anything_runs(
    model_server: ScriptedModel, calculator_repo: Path
) -> None:
    assert "class CalculatorError" not in SHRUNK
    model_server.script(
        plan_rule(ONE_FILE_PLAN), {"match": f"What to change in {CALC_PY}:", "reply": fenced(SHRUNK)}
    )
    before = tree_state(calculator_repo)
    stages: list[str] = []
    result = await run_edit(
        EditRequest(calculator_repo, INSTRUCTION, test_command=TRIVIAL),
        tiers=[make_tier(model_server, "tiny")],
        on_progress=lambda event: stages.append(event.stage),
    )
    assert result.status == "failed" and [a.outcome for a in result.attempts] == ["shrunk"]
    assert "removes CalculatorError" in result.attempts[0].detail
    assert "applied" not in stages and "tests_after" not in stages
    assert tree_state(calculator_repo) == before and git_clean(calculator_repo)


@pytest.mark.slow
async def test_a_refused_or_untestable_change_escalates_until_one_is_accepted(
    model_server: ScriptedModel, calculator_repo: Path, shared_data_dir: Path
) -> None:
    unimportable = "import no_such_module_xyz\n" + new_calculator()
    model_server.script(
        plan_rule(ONE_FILE_PLAN),
        {"model": "tiny", "match": f"What to change in {CALC_PY}:", "reply": fenced(SHRUNK)},
        {"model": "medium", "match": f"What to change in {CALC_PY}:", "reply": fenced(unimportable)},
        {"model": "bigger", "match": f"What to change in {CALC_PY}:", "reply": fenced(new_calculator())},
    )
    result = await run_edit(
        EditRequest(calculator_repo, INSTRUCTION, data_dir=shared_data_dir),
        tiers=[make_tier(model_server, name) for name in ("tiny", "medium", "bigger")],
    )
    # Accepted, yet not verified: no test calls the new method (bot.evidence).
    assert [a.outcome for a in result.attempts] == ["shrunk", "tests_worse", "unexercised"]
    assert "the tests could not run after the change" in result.attempts[1].detail
    assert "no_such_module_xyz" in result.attempts[1].detail
    assert result.status == "unexercised" and (calculator_repo / CALC_PY).read_text() == new_calculator()
    texts = {c["model"]: _message_text(c["messages"]) for c in edit_calls(model_server)}
    assert "refused before testing" in texts["medium"] and "CalculatorError" in texts["medium"]
    assert "could not run" in texts["bigger"]


@pytest.mark.slow
async def test_tests_that_cannot_run_never_verify(
    model_server: ScriptedModel, tmp_path: Path, shared_data_dir: Path
) -> None:
    root = notes_repo(tmp_path)
    (root / "tests").mkdir()
    (root / "tests" / "test_notes.py").write_text(
        "import no_such_dependency_xyz\n\n\ndef test_x():\n    pass\n"
    )
    model_server.script({"match": "What to change in notes.txt:", "reply": fenced("one\ntwo\n", "text")})
    result = await run_edit(
        EditRequest(root, "append two to notes.txt", data_dir=shared_data_dir),
        tiers=[make_tier(model_server, "tiny")],
    )
    assert result.status == "unverified"
    assert result.tests_before is not None and result.tests_after is not None
    for run in (result.tests_before, result.tests_after):
        assert run.could_not_run is not None and "no_such_dependency_xyz" in run.could_not_run
        assert run.summary().startswith("tests could not run: collection errors")
    assert "tests could not run" in result.message and "passed" not in result.message
    assert result.to_json()["tests"]["after"]["could_not_run"] == result.tests_after.could_not_run


async def test_no_reachable_tier(calculator_repo: Path) -> None:
    from tests.modelserver import free_port

    port = free_port()
    dead = Tier(name="qwen-1.5b", model="m", base_url=f"http://127.0.0.1:{port}/v1")
    keyless = Tier(name="cloud", model="m", provider="openai", api_key_env="PATCHLING_TEST_UNSET_KEY")
    before = tree_state(calculator_repo)
    result = await run_edit(EditRequest(calculator_repo, INSTRUCTION), tiers=[dead, keyless])
    assert result.status == "failed"
    assert result.message == (
        f"no model tier is reachable: qwen-1.5b (http://127.0.0.1:{port}/v1: connection refused),"
        " cloud (PATCHLING_TEST_UNSET_KEY is not set); to go on: configure a tier you can reach in"
        " patchling.toml (see README, Model tiers); or set PATCHLING_TEST_UNSET_KEY"
    )
    assert [a.outcome for a in result.attempts] == ["unreachable"]
    assert result.tests_before is None  # no point running tests
    assert tree_state(calculator_repo) == before


async def test_bad_input(calculator_repo: Path) -> None:
    tier = Tier(name="t", model="m", base_url="http://127.0.0.1:9/v1")
    with pytest.raises(ValueError, match="instruction is empty"):
        await run_edit(EditRequest(calculator_repo, "  \n "), tiers=[tier])
    with pytest.raises(ValueError, match="not a directory"):
        await run_edit(EditRequest(calculator_repo / "README.md", "x"), tiers=[tier])
    with pytest.raises(ValueError, match="no model tiers"):
        await run_edit(EditRequest(calculator_repo, "x"), tiers=[])


def test_result_json_shape() -> None:
    result = EditResult("failed", None, [], "", [], None, None, 0, 0, "", "why")
    assert set(result.to_json()) >= {
        "status", "tier", "attempts", "diff", "tests", "tokens", "files_changed", "notes", "message",
    }  # fmt: skip
    assert result.to_json()["tests"] == {"before": None, "after": None}


def test_restore_puts_back_files_and_new_directories(calculator_repo: Path) -> None:
    from bot.apply import write_changes

    root = calculator_repo.resolve()
    before = tree_state(root)
    changes = {CALC_PY: "changed\n", "new/deep/dir/file.py": "x = 1\n"}
    snapshot = Snapshot.take(root, sorted(changes))
    write_changes(root, changes)
    assert (root / CALC_PY).read_text() == "changed\n"
    assert snapshot.restore() == []
    assert tree_state(root) == before
    assert not (root / "new").exists()


def test_a_change_through_a_symlink_is_refused_and_left_alone(calculator_repo: Path) -> None:
    from bot.apply import ApplyError, write_changes

    root = calculator_repo.resolve()
    (root / "link.py").symlink_to("calculator/operations.py")
    (root / "pkg").symlink_to("calculator", target_is_directory=True)
    before = tree_state(root)
    for path in ("link.py", "pkg/operations.py"):
        changes = {CALC_PY: "changed\n", path: "through the link\n"}
        snapshot = Snapshot.take(root, sorted(changes))
        assert list(snapshot.files) == [CALC_PY]  # the link is not followed
        with pytest.raises(ApplyError, match="symbolic link"):
            write_changes(root, changes)
        assert snapshot.restore() == []
        assert tree_state(root) == before
    assert (root / "link.py").is_symlink() and (root / "pkg").is_symlink()
