"""Planning, per-file generation and in-memory apply (bot.edit)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from bot.config import Tier
from bot.edit import (
    EditError,
    Plan,
    PlannedFile,
    deterministic_plan,
    generate,
    is_protected,
    relevant_span,
    validate_plan,
)
from bot.index import build_index
from bot.query import parse_query
from bot.tokens import count_tokens
from tests.conftest import make_git_repo
from tests.modelserver import ScriptedModel, _message_text

CALC_PY = "calculator/calculator.py"


def tier(server: ScriptedModel, **kw: object) -> Tier:
    return Tier(name="tiny", model="tiny", base_url=server.url, timeout_s=30, **kw)


def plan_of(root: Path, *paths: str, change: str = "do it") -> Plan:
    return Plan(files=[PlannedFile(p, change, (root / p).is_file()) for p in paths], notes="", source="model")


# -- plans ---------------------------------------------------------------------


def test_validate_plan_drops_unsafe_paths(calculator_repo: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, calculator_repo / "escape")
    kept, dropped = validate_plan(
        calculator_repo,
        [
            ("./calculator/cli.py", "a"),
            ("calculator/cli.py", "duplicate"),
            ("../elsewhere.py", "b"),
            ("/etc/passwd", "c"),
            (".git/config", "d"),
            ("escape/evil.py", "e"),
            ("secrets/key.txt", "f"),
            ("calculator", "a directory"),
            ("tests/test_new.py", "new file"),
        ],
        protected=["secrets/"],
    )
    assert [(f.path, f.exists) for f in kept] == [("calculator/cli.py", True), ("tests/test_new.py", False)]
    assert len(dropped) == 6
    assert any("protected" in d for d in dropped) and any("inside .git" in d for d in dropped)


def test_validate_plan_drops_links_git_in_any_case_and_github(calculator_repo: Path) -> None:
    (calculator_repo / "alias.py").symlink_to("calculator/calculator.py")
    kept, dropped = validate_plan(
        calculator_repo,
        [
            ("alias.py", "through a link inside"),
            (".GIT/config", "git, another case"),
            (".github/workflows/ci.yml", "a workflow"),
            (".GitHub/patchling.yml", "the bot's own settings"),
            ("calculator/cli.py", "fine"),
        ],
        protected=[],
    )
    assert [f.path for f in kept] == ["calculator/cli.py"]
    assert "symbolic link" in dropped[0] and ".git" in dropped[1]
    assert dropped[2:] == [".github/workflows/ci.yml: protected", ".GitHub/patchling.yml: protected"]


def test_validate_plan_caps_the_number_of_files(calculator_repo: Path) -> None:
    kept, dropped = validate_plan(calculator_repo, [(f"f{n}.py", "x") for n in range(8)], [])
    assert len(kept) == 5 and len(dropped) == 3


def test_protection_globs() -> None:
    assert is_protected(".github/workflows/ci.yml", [".github/*"])
    assert is_protected("secrets/a/b.txt", ["secrets"])
    assert is_protected(".git/HEAD", [])
    assert not is_protected("src/app.py", ["*.lock", "docs/"])


@pytest.mark.parametrize(
    ("instruction", "expected"),
    [
        ("fix the help text in calculator/cli.py.", ("path", ["calculator/cli.py"])),
        ("tidy operations.py", ("path", ["calculator/operations.py"])),
        ("make `memory_recall` return 0 when empty", ("symbol", [CALC_PY])),
        ("format_number() should round to 2 places", ("symbol", ["calculator/cli.py"])),
        ("add memory clear", None),  # "add" is a function name, but a plain word here
        ("add `memory_clear`", None),  # a symbol that does not exist yet: the model plans
    ],
)
def test_deterministic_plan(calculator_repo: Path, instruction: str, expected: tuple | None) -> None:
    index = build_index(calculator_repo)
    plan = deterministic_plan(calculator_repo, index, parse_query(instruction), protected=[])
    if expected is None:
        assert plan is None
    else:
        assert plan is not None
        assert (plan.source, plan.paths()) == expected
        assert plan.files[0].change == instruction


def test_relevant_span_fits_the_budget() -> None:
    content = (
        "".join(f"line {n} filler words here\n" for n in range(400)) + "def target_function():\n    pass\n"
    )
    content += "".join(f"tail {n}\n" for n in range(400))
    first, last, text = relevant_span(content, "change target_function", budget=300)  # type: ignore[misc]
    assert "def target_function():" in text
    assert count_tokens(text) <= 300
    assert first < 401 < last


# -- generation ------------------------------------------------------------------


async def test_failed_apply_is_retried_once_with_the_nearest_lines(
    model_server: ScriptedModel, calculator_repo: Path
) -> None:
    wrong = (
        f"{CALC_PY}\n<<<<<<< SEARCH\n"
        "    def memory_recal(self) -> float:\n"
        "        if self.memory is None:\n"
        '            raise CalculatorError("memory is blank")\n'
        "=======\n"
        "    def memory_recall(self) -> float:\n"
        ">>>>>>> REPLACE\n"
    )
    right = (
        f"{CALC_PY}\n<<<<<<< SEARCH\n    def memory_recall(self) -> float:\n=======\n"
        "    def memory_clear(self) -> None:\n        self.memory = None\n\n"
        "    def memory_recall(self) -> float:\n>>>>>>> REPLACE\n"
    )
    model_server.script({"match": "could not be applied", "reply": right}, {"reply": wrong})
    index = build_index(calculator_repo)
    result = await generate(
        tier(model_server, edit_format="search_replace"),
        calculator_repo,
        "add memory clear",
        plan_of(calculator_repo, CALC_PY),
        index=index,
    )
    (file,) = result.files
    assert file.retried and file.outcome is None
    assert "def memory_clear(self) -> None:" in result.changes[CALC_PY]
    first, second = (_message_text(c["messages"]) for c in model_server.calls())
    assert "could not be applied" not in first
    # The retry names the problem and shows the closest lines of the real file.
    assert "memory_recal" in second and '            raise CalculatorError("memory is empty")' in second
    assert not (calculator_repo / CALC_PY).read_text().count("memory_clear")  # nothing written


async def test_all_or_nothing(model_server: ScriptedModel, calculator_repo: Path) -> None:
    good = "```python\n" + (calculator_repo / "calculator/operations.py").read_text() + "# ok\n```"
    model_server.script(
        {"match": "What to change in calculator/operations.py:", "reply": good},
        {"reply": "Sorry, I cannot help with that."},
    )
    with pytest.raises(EditError) as caught:
        await generate(
            tier(model_server),
            calculator_repo,
            "touch two files",
            plan_of(calculator_repo, "calculator/operations.py", "calculator/cli.py"),
            index=build_index(calculator_repo),
        )
    assert caught.value.outcome == "apply_failed"
    assert "calculator/cli.py" in caught.value.message
    assert caught.value.last_output == "Sorry, I cannot help with that."


async def test_unchanged_reply_is_no_change(model_server: ScriptedModel, calculator_repo: Path) -> None:
    same = "```python\n" + (calculator_repo / CALC_PY).read_text() + "```"
    model_server.script({"reply": same})
    with pytest.raises(EditError) as caught:
        await generate(
            tier(model_server),
            calculator_repo,
            "x",
            plan_of(calculator_repo, CALC_PY),
            index=build_index(calculator_repo),
        )
    assert caught.value.outcome == "no_change"


async def test_reply_editing_another_file_is_refused(
    model_server: ScriptedModel, calculator_repo: Path
) -> None:
    other = (
        "calculator/operations.py\n<<<<<<< SEARCH\ndef add(a: float, b: float) -> float:\n=======\n"
        "def add(a: float, b: float) -> float:  # sum\n>>>>>>> REPLACE\n"
    )
    model_server.script({"reply": other})
    with pytest.raises(EditError) as caught:
        await generate(
            tier(model_server, edit_format="search_replace"),
            calculator_repo,
            "x",
            plan_of(calculator_repo, CALC_PY),
            index=build_index(calculator_repo),
        )
    assert "edit only calculator/calculator.py" in caught.value.message


async def test_big_file_sends_a_span_within_budget(model_server: ScriptedModel, tmp_path: Path) -> None:
    root = tmp_path / "big"
    root.mkdir()
    body = "".join(f"def helper_{n}(x):\n    return x + {n}\n\n\n" for n in range(300))
    body += "def parse_config(path):\n    return open(path).read()\n\n\n"
    body += "".join(f"def other_{n}(x):\n    return x * {n}\n\n\n" for n in range(300))
    (root / "big.py").write_text(body)
    make_git_repo(root)
    small = tier(model_server, edit_format="search_replace", context_window=1500, max_output_tokens=300)
    assert count_tokens(body) > small.input_budget
    reply = (
        "big.py\n<<<<<<< SEARCH\ndef parse_config(path):\n    return open(path).read()\n=======\n"
        "def parse_config(path):\n    with open(path) as handle:\n        return handle.read()\n"
        ">>>>>>> REPLACE\n"
    )
    model_server.script({"reply": reply})
    result = await generate(
        small, root, "make parse_config close its file", plan_of(root, "big.py"), index=build_index(root)
    )
    assert "with open(path) as handle:" in result.changes["big.py"]
    assert result.changes["big.py"].count("def helper_") == 300  # the rest of the file kept
    (call,) = model_server.calls()
    text = _message_text(call["messages"])
    assert "def parse_config(path):" in text and "Only lines" in text
    assert count_tokens(text) <= small.input_budget

    whole = tier(model_server, context_window=1500, max_output_tokens=300)
    with pytest.raises(EditError) as caught:
        await generate(whole, root, "x", plan_of(root, "big.py"), index=build_index(root))
    assert caught.value.outcome == "too_large"
    assert "too large for tier tiny" in caught.value.message


async def test_context_is_selected_off_the_event_loop(
    model_server: ScriptedModel, calculator_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    import bot.edit

    real = bot.edit.select_context
    threads: list[int] = []

    def spy(*args: Any, **kwargs: Any) -> Any:
        threads.append(threading.get_ident())
        return real(*args, **kwargs)

    monkeypatch.setattr(bot.edit, "select_context", spy)
    new = (calculator_repo / CALC_PY).read_text() + "# done\n"
    model_server.script({"reply": "```python\n" + new + "```"})
    result = await generate(
        tier(model_server),
        calculator_repo,
        "add a comment",
        plan_of(calculator_repo, CALC_PY),
        index=build_index(calculator_repo),
        concurrency=1,
    )
    assert result.changes[CALC_PY] == new
    assert threads and threading.get_ident() not in threads
