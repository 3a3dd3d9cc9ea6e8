"""Tree-sitter grammars for the languages Patchling reads beyond Python's `ast`.

Each grammar comes from its own PyPI wheel (`tree-sitter-go`, `-rust`, …), which
ships the compiled parser: nothing is downloaded at run time, and the set costs
about 2.5 MB to download and 20 MB installed, against ~184 MB for the bundled language pack (whose 1.x
releases fetch grammars on first use and fail offline).

This module only answers "which grammar parses this language" and "where is
this text not valid syntax"; what a language's symbols and imports are is
decided by the query files beside it (`bot/queries/*.scm`).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cache

from tree_sitter import Language, Node, Parser, Tree

# language name (as `bot.index.language_of` spells it) -> (module, factory function)
_GRAMMARS: dict[str, tuple[str, str]] = {
    "python": ("tree_sitter_python", "language"),
    "javascript": ("tree_sitter_javascript", "language"),
    "typescript": ("tree_sitter_typescript", "language_typescript"),
    "tsx": ("tree_sitter_typescript", "language_tsx"),
    "go": ("tree_sitter_go", "language"),
    "rust": ("tree_sitter_rust", "language"),
    "java": ("tree_sitter_java", "language"),
    "csharp": ("tree_sitter_c_sharp", "language"),
    "ruby": ("tree_sitter_ruby", "language"),
    "c": ("tree_sitter_c", "language"),
    "cpp": ("tree_sitter_cpp", "language"),
}

SUPPORTED = frozenset(_GRAMMARS) - {"tsx"}


def grammar_name(language: str, path: str = "") -> str:
    """The grammar for a file: `.tsx` (and `.jsx`) need the TSX dialect of TypeScript."""
    if language in {"typescript", "javascript"} and path.lower().endswith((".tsx", ".jsx")):
        return "tsx"
    return language


@cache
def language(name: str) -> Language:
    module, factory = _GRAMMARS[name]
    return Language(getattr(importlib.import_module(module), factory)())


def parser(name: str) -> Parser:
    # Parsers are cheap; a fresh one per call keeps threads from sharing state.
    return Parser(language(name))


def parse(text: str, language_name: str, path: str = "") -> Tree:
    return parser(grammar_name(language_name, path)).parse(text.encode("utf-8"))


@dataclass(frozen=True, slots=True)
class SyntaxProblem:
    line: int  # 1-based
    column: int  # 1-based, in characters of the line's UTF-8 bytes
    kind: str  # "error" (unexpected text) or "missing" (the parser had to invent a token)
    detail: str

    def describe(self) -> str:
        return f"line {self.line}, column {self.column}: {self.detail}"


def _problem(node: Node) -> SyntaxProblem:
    row, col = node.start_point
    if node.is_missing:
        return SyntaxProblem(row + 1, col + 1, "missing", f"missing {node.type!r}")
    snippet = (node.text or b"").decode("utf-8", "replace").split("\n", 1)[0][:40]
    return SyntaxProblem(row + 1, col + 1, "error", f"unexpected {snippet!r}" if snippet else "syntax error")


def syntax_problems(text: str, language_name: str, path: str = "", limit: int = 5) -> list[SyntaxProblem]:
    """ERROR and MISSING nodes, outermost first, at most `limit` of them."""
    tree = parse(text, language_name, path)
    if not tree.root_node.has_error:
        return []
    found: list[SyntaxProblem] = []
    stack = [tree.root_node]
    while stack and len(found) < limit:
        node = stack.pop()
        if node.is_error or node.is_missing:
            found.append(_problem(node))
            continue  # one report per broken region
        if node.has_error:
            stack.extend(reversed(node.children))
    return found
