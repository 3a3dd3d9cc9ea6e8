"""A request's features (bot.features): kind, language, plan size."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot import features
from bot.context import ContextMemo
from bot.index import build_index
from bot.query import parse_query
from bot.ranking import Focus


@pytest.mark.parametrize(
    ("instruction", "kind"),
    [
        ("add memory clear", "add"),
        ("Please implement a --verbose flag", "add"),
        ("Fix the code that removes blank lines", "change"),
        ("remove the deprecated `total()` helper", "delete"),
        ("rename Calculator.mr to memory_recall\nand add a test", "rename"),
        ("Move parse_args into cli.py", "rename"),
        ("Update the README", "change"),
    ],
)
def test_kind_from_the_instruction_words(instruction: str, kind: str) -> None:
    assert features.kind_from_words(instruction) == kind
    assert features.of_request(instruction, "python").kind == kind


def test_silent_words_take_the_change_kind() -> None:
    assert features.kind_from_words("the divide-by-zero message should say which operand") is None
    base = features.of_request("the divide-by-zero message should say which operand", "python")
    base_text = "the log lines at startup"
    assert (base.kind, base.words) == ("change", 7)
    gone = features.with_change(base, base_text, {"a.py": "x\ny\nz\n"}, {"a.py": "x\n"})
    assert gone.kind == "delete"
    new = features.with_change(base, base_text, {"b.py": None}, {"b.py": "print()\n"})
    assert new.kind == "add"
    edited = features.with_change(base, base_text, {"a.py": "x\n"}, {"a.py": "y\n"})
    assert edited.kind == "change"
    # Words that name a kind win over what the change did.
    named = features.of_request("add logging", "python")
    assert features.with_change(named, "add logging", {"a.py": "x\ny\n"}, {"a.py": "x\n"}).kind == "add"


def test_language_and_plan_size(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "calc.py").write_text(
        "def divide(a, b):\n    return a / b\n\n\ndef add(a, b):\n    return a + b\n"
    )
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "page.ts").write_text("export function render(): string {\n  return 'x';\n}\n")
    index = build_index(tmp_path)
    memo = ContextMemo(index)
    query = parse_query("make divide refuse a zero divisor")
    assert features.likely_language(index, query, None, memo) == "python"
    assert features.likely_language(index, query, Focus("web/page.ts", 1, 2), memo) == "typescript"
    assert features.likely_language(index, parse_query("zzz qqq"), None, memo) == features.UNKNOWN_LANGUAGE

    base = features.of_request("make divide refuse a zero divisor", "python")
    planned = features.with_plan(
        base, index, ["pkg/calc.py", "web/page.ts", "web/new.ts"], "divide and render"
    )
    assert (planned.files, planned.symbols, planned.language) == (3, 2, "typescript")
    assert features.with_plan(base, index, [], "") == base
