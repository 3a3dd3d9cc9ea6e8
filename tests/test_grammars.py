"""Syntax problems found by the tree-sitter grammars, one valid and one broken file per language."""

import pytest

from bot.grammars import SUPPORTED, syntax_problems

CASES = {
    "python": ("def f():\n    return 1\n", "def f(:\n    return 1\n"),
    "javascript": ("function f() { return 1 }\n", "function f( { return 1 }\n"),
    "typescript": (
        "export const f = (a: number): number => a\n",
        "export function f(a: number: { }\n",
    ),
    "go": ("package main\n\nfunc f() int {\n\treturn 1\n}\n", "package main\n\nfunc f() int {\n\treturn 1\n"),
    "rust": ("fn f() -> i32 { 1 }\n", "fn f() -> i32 { let x = ; }\n"),
    "java": ("class A { int f() { return 1; } }\n", "class A { int f() { int x = ; } }\n"),
    "csharp": ("class A { int F() { return 1; } }\n", "class A { int F() { return 1 }\n"),
    "ruby": ("def f\n  1\nend\n", "def f(\n  1\n"),
    "c": ("int f(void) { return 1; }\n", "int f(void) { return 1;\n"),
    "cpp": ("namespace n { int f() { return 1; } }\n", "namespace n { int f() { return 1; }\n"),
}


def test_every_supported_language_has_a_case() -> None:
    assert set(CASES) == SUPPORTED


@pytest.mark.parametrize("language", sorted(CASES))
def test_valid_file_has_no_problems(language: str) -> None:
    assert syntax_problems(CASES[language][0], language) == []


@pytest.mark.parametrize("language", sorted(CASES))
def test_broken_file_is_located(language: str) -> None:
    problems = syntax_problems(CASES[language][1], language)
    assert problems, language
    assert all(p.line >= 1 and p.column >= 1 for p in problems)
    assert problems[0].describe().startswith(f"line {problems[0].line}, column")


def test_missing_token_is_named() -> None:
    [problem] = syntax_problems("package main\nfunc f() int {\n return 1\n", "go")
    assert problem.kind == "missing" and "'}'" in problem.detail and problem.line == 4


def test_tsx_needs_the_tsx_dialect() -> None:
    jsx = "const x = <div>hi</div>;\n"
    assert syntax_problems(jsx, "typescript", "view.tsx") == []
    assert syntax_problems(jsx, "typescript", "view.ts") != []
