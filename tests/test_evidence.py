"""What "verified" rests on: changed lines, coverage.py's report, test-first
edits, and the evidence level each surface shows. The engine tests run real
pytest under coverage.py in the sandbox, on a tiny repository (marked slow)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bot import evidence
from bot.config import Tier
from bot.engine import EditRequest, EditResult, run_edit
from bot.evidence import (
    GO,
    Evidence,
    FileLines,
    Proof,
    changed_lines,
    read_go_profile,
    read_report,
    spans,
    unexercised,
)
from bot.messages import evidence_section
from bot.progress import Progress, TestWritten
from bot.repo_settings import parse_repo_settings
from bot.testfirst import fails_before, new_test_path
from bot.verify import TestRun, coverage_commands
from tests.conftest import make_git_repo
from tests.modelserver import ScriptedModel

TINY = "def add(a, b):\n    return a + b\n\n\ndef unused():\n    return 1\n"
TINY_TEST = "from tiny import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n"


# -- changed lines and the report ---------------------------------------------------


def test_changed_lines_are_the_added_and_modified_code_lines_of_python_files() -> None:
    new = "def add(a, b):\n    # a comment\n\n    return b + a\n"
    found = changed_lines({"tiny.py": TINY, "README.md": "x\n"}, {"tiny.py": new, "README.md": "y\n"})
    assert found == {"tiny.py": [4]}  # the comment and blank line added are not code; README not measured
    assert changed_lines({"new.py": None}, {"new.py": "x = 1\n\ny = 2\n"}) == {"new.py": [1, 3]}


def test_spans_and_unexercised_lines() -> None:
    assert spans([7, 3, 4, 5, 9]) == "3–5, 7, 9"
    report = {"tiny.py": FileLines(frozenset({1, 2}), frozenset({6}))}
    changed = {"tiny.py": [2, 5, 6], "never_imported.py": [1, 2]}
    # Line 5 is no statement (neither ran nor missed); a file no test imported misses every line.
    assert unexercised(changed, report) == {"tiny.py": [6], "never_imported.py": [1, 2]}


def test_a_report_is_read_relative_to_the_checkout_and_garbage_is_not_read(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    report = tmp_path / "coverage.json"
    entry = {"executed_lines": [1, 2], "missing_lines": [5]}
    report.write_text(json.dumps({"files": {str(root / "pkg/mod.py"): entry, "tiny.py": entry}}))
    read = read_report(report, root)
    assert read is not None and set(read) == {"pkg/mod.py", "tiny.py"}
    assert read["tiny.py"].missing == frozenset({5})
    report.write_text('{"files": [1, 2]}')
    assert read_report(report, root) is None
    assert read_report(tmp_path / "absent.json", root) is None


GO_PROFILE = """mode: set
example.com/units/units.go:7.45,9.2 1 1
example.com/units/units.go:12.45,14.2 1 0
example.com/units/units.go:12.45,14.2 1 1
example.com/units/sub/x.go:4.14,6.2 1 0
example.com/units/../outside.go:1.1,3.2 1 0
example.com/other/y.go:1.1,3.2 1 0
example.com/units/units.go:20.1,22.2 one 0
example.com/units/units.go:30.1,28.2 1 0
"""


def test_a_go_profile_is_read_by_module_path_and_garbage_is_passed_over(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    (root / "go.mod").write_text("module example.com/units\n\ngo 1.19\n")
    profile = tmp_path / "coverage.out"
    profile.write_text(GO_PROFILE)
    read = read_go_profile(profile, root)
    # Outside the module, a path climbing out, a malformed count, a backwards block: not read.
    assert read is not None and set(read) == {"units.go", "sub/x.go"}
    # A block another test binary ran counts as run.
    assert read["units.go"] == FileLines(frozenset({7, 8, 9, 12, 13, 14}), frozenset())
    assert read["sub/x.go"] == FileLines(frozenset(), frozenset({4, 5, 6}))
    # A changed line in no block (a comment) is no statement; a file without blocks holds none.
    changed = {"sub/x.go": [3, 5], "sub/consts.go": [3]}
    assert unexercised(changed, read, GO) == {"sub/x.go": [5]}
    profile.write_text("example.com/units/units.go:7.45,9.2 1 1\n")  # no mode line: not a profile
    assert read_go_profile(profile, root) is None


def test_an_oversized_go_profile_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    (root / "go.mod").write_text("module example.com/units\n")
    profile = tmp_path / "coverage.out"
    profile.write_text(GO_PROFILE)
    monkeypatch.setattr(evidence, "MAX_REPORT_BYTES", len(GO_PROFILE) - 1)
    assert read_go_profile(profile, root) is None
    monkeypatch.setattr(evidence, "MAX_REPORT_BYTES", len(GO_PROFILE))
    monkeypatch.setattr(evidence, "MAX_PROFILE_LINES", 5)  # a block's lines are counted too
    assert read_go_profile(profile, root) is None


def test_go_changed_lines_leave_out_comments_and_brackets() -> None:
    new = "package units\n\n// F is.\nfunc F() int {\n\treturn 1\n}\n"
    assert changed_lines({"units.go": "package units\n"}, {"units.go": new}, GO) == {"units.go": [4, 5]}
    assert changed_lines({}, {"units.go": new}) == {}  # coverage.py's measure: Go not measured


def test_only_plain_pytest_runs_under_coverage(tmp_path: Path) -> None:
    target = tmp_path / "coverage.json"
    found = coverage_commands("python -m pytest -q -x", target)
    assert found is not None
    run, export = found
    assert run == f"python -m coverage run --data-file={tmp_path}/coverage.data -m pytest -q -x"
    assert export.startswith(f"python -m coverage json --data-file={tmp_path}/coverage.data -o {target}")
    assert coverage_commands("pytest", target) is not None
    assert coverage_commands("make test", target) is None
    assert coverage_commands("python -m pytest | tee log", target) is None


def test_a_test_written_first_must_fail_before_the_change() -> None:
    failing = TestRun("pytest t.py", 0, 1, 0, 0, exit_code=1)
    import_error = TestRun("pytest t.py", 0, 0, 1, 0, exit_code=2)  # a name the change has yet to add
    passing = TestRun("pytest t.py", 1, 0, 0, 0, exit_code=0)
    empty = TestRun("pytest t.py", 0, 0, 0, 0, exit_code=5, could_not_run="no tests were collected")
    assert fails_before("t.py", failing) is None and fails_before("t.py", import_error) is None
    assert "passes before the change" in (fails_before("t.py", passing) or "")
    assert "no tests were collected" in (fails_before("t.py", empty) or "")


def test_the_new_test_goes_beside_the_example_under_a_free_name(tmp_path: Path) -> None:
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_add_memory_clear.py").write_text("")
    assert (
        new_test_path(tmp_path, "tests/test_calc.py", "Add memory clear!")
        == "tests/test_add_memory_clear_2.py"
    )


def test_tests_setting_defaults_to_write_for_issues_only() -> None:
    default = parse_repo_settings("")
    assert default.write_test("issue") and not default.write_test("pull")
    assert parse_repo_settings("tests: write").write_test("review")
    assert not parse_repo_settings("tests: existing").write_test("issue")
    with pytest.raises(ValueError, match="tests"):
        parse_repo_settings("tests: sometimes")


def test_the_evidence_section_names_the_level_and_the_lines() -> None:
    proof = Proof(Evidence.NO_WORSE, {"tiny.py": [5, 6]}, "measured", notes=["coverage not measured for Go"])
    text = evidence_section(proof)
    assert text.startswith("**Evidence: only: no test got worse**")
    assert "Tests pass, but lines 5–6 of tiny.py are not exercised by any test." in text
    assert "- Coverage not measured for Go." in text
    assert "new test failing→passing" in evidence_section(
        Proof(Evidence.NEW_TEST, new_test="tests/test_x.py")
    )


# -- the engine, with real pytest under coverage.py ------------------------------------


def tiny_repo(tmp_path: Path) -> Path:
    root = tmp_path / "tiny"
    (root / "tests").mkdir(parents=True)
    (root / "tiny.py").write_text(TINY)
    (root / "tests" / "test_tiny.py").write_text(TINY_TEST)
    make_git_repo(root)
    return root


def script_change(model: ScriptedModel, new_source: str, *extra: dict[str, Any]) -> None:
    plan = {"files": [{"path": "tiny.py", "change": "the change"}], "notes": "n"}
    model.script(
        *extra,
        {"match": "Answer in JSON", "reply": f"```json\n{json.dumps(plan)}\n```"},
        {"match": "What to change in tiny.py:", "reply": f"```python\n{new_source}```"},
    )


def write_test_rule(text: str) -> dict[str, Any]:
    return {"match": "Write the new test file", "reply": f"```python\n{text}```"}


async def edit(model: ScriptedModel, root: Path, data_dir: Path, instruction: str, **kw: Any) -> EditResult:
    tier = Tier(name="tiny", model="tiny", base_url=model.url, timeout_s=30)
    on_progress = kw.pop("on_progress", None)
    # One label for every test here: they share one test environment.
    request = EditRequest(root, instruction, repo="evidence/tiny", data_dir=data_dir, **kw)
    return await run_edit(request, tiers=[tier], on_progress=on_progress)


@pytest.mark.slow
async def test_changed_lines_the_tests_run_are_verified_as_covered(
    model_server: ScriptedModel, tmp_path: Path, shared_data_dir: Path
) -> None:
    script_change(model_server, TINY.replace("return a + b", "return b + a"))
    result = await edit(model_server, tiny_repo(tmp_path), shared_data_dir, "swap the operands of add")
    assert result.status == "verified", result.message
    assert result.evidence is not None and result.evidence.level is Evidence.COVERED
    assert result.evidence.coverage == "measured" and result.evidence.unexercised == {}
    assert result.to_json()["evidence"]["label"] == "changed lines covered by tests"
    assert not list((tmp_path / "tiny").glob(".coverage*"))  # coverage's data stay out of the checkout


@pytest.mark.slow
async def test_a_change_no_test_runs_is_not_verified_and_names_its_lines(
    model_server: ScriptedModel, tmp_path: Path, shared_data_dir: Path
) -> None:
    script_change(model_server, TINY.replace("return 1", "total = 1\n    return total + 1"))
    result = await edit(model_server, tiny_repo(tmp_path), shared_data_dir, "make unused return two")
    assert result.status == "unexercised", result.message
    assert result.evidence is not None and result.evidence.unexercised == {"tiny.py": [6, 7]}
    assert "tests pass, but lines 6–7 of tiny.py are not exercised by any test" in result.message
    assert result.evidence.level is Evidence.NO_WORSE
    assert [a.outcome for a in result.attempts] == ["unexercised"]


THREE = "def add(*numbers):\n    return sum(numbers)\n\n\ndef unused():\n    return 1\n"
NEW_TEST = "from tiny import add\n\n\ndef test_add_three():\n    assert add(1, 2, 3) == 6\n"


@pytest.mark.slow
async def test_a_test_written_first_fails_before_passes_after_and_is_committed(
    model_server: ScriptedModel, tmp_path: Path, shared_data_dir: Path
) -> None:
    root = tiny_repo(tmp_path)
    script_change(model_server, THREE, write_test_rule(NEW_TEST))
    events: list[Progress] = []
    result = await edit(
        model_server,
        root,
        shared_data_dir,
        "let add take any count of numbers",
        write_test=True,
        on_progress=events.append,
    )
    path = "tests/test_let_add_take_any_count.py"
    assert result.status == "verified", result.message
    assert result.evidence is not None and result.evidence.level is Evidence.NEW_TEST
    assert result.evidence.new_test == path
    assert result.files_changed == [path, "tiny.py"] and (root / path).read_text() == NEW_TEST
    assert f"+++ b/{path}" in result.diff
    assert [e for e in events if isinstance(e, TestWritten)] == [TestWritten("tiny", path, True)]
    assert result.tests_after is not None and result.tests_after.passed == 2


@pytest.mark.slow
async def test_a_test_that_passes_before_the_change_is_discarded_with_a_note(
    model_server: ScriptedModel, tmp_path: Path, shared_data_dir: Path
) -> None:
    root = tiny_repo(tmp_path)
    passing = "from tiny import add\n\n\ndef test_add_two():\n    assert add(2, 2) == 4\n"
    script_change(model_server, THREE, write_test_rule(passing))
    result = await edit(
        model_server, root, shared_data_dir, "let add take any count of numbers", write_test=True
    )
    assert result.evidence is not None and result.evidence.new_test is None
    assert any("passes before the change, so it proves nothing" in n for n in result.evidence.notes)
    assert result.files_changed == ["tiny.py"]
    assert not (root / "tests/test_let_add_take_any_count.py").exists()
    # Its lines ran (add), so the change stands on coverage alone.
    assert result.status == "verified" and result.evidence.level is Evidence.COVERED
