"""Language analysis: a file's definitions (with their spans, signatures and
docs) and its imports as written.

Code does what code can: Python goes through `ast` (with a regex fallback for
files `ast` rejects, such as Python 2 sources); the languages with a
tree-sitter grammar go through their tag queries (`bot.tags`); the rest get a
regular expression that finds definition lines. Resolving imports to files is
the index's business (`bot.index`, `bot.imports`).
"""

from __future__ import annotations

import ast
import re
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from bot.symbols import ImportRef as ImportRef
from bot.symbols import Symbol as Symbol
from bot.symbols import SymbolKind as SymbolKind
from bot.tags import LANGUAGES as TAGGED
from bot.tags import tags
from bot.terms import TermCounts, identifier_terms, text_terms

# --------------------------------------------------------------------------
# Python analysis with ast


class _PythonAnalyser:
    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.symbols: list[Symbol] = []

    def run(self, tree: ast.Module) -> list[Symbol]:
        self._body(tree.body, prefix="", in_class=False)
        self.symbols.sort(key=lambda s: (s.start_line, s.end_line))
        return self.symbols

    def _body(self, body: list[ast.stmt], prefix: str, in_class: bool) -> None:
        for node in body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                self._add(node, prefix, "method" if in_class else "function")
            elif isinstance(node, ast.ClassDef):
                self._add(node, prefix, "class")
                self._body(node.body, prefix + node.name + ".", in_class=True)
            elif isinstance(node, ast.If | ast.Try | ast.TryStar | ast.With):
                # Definitions under `if TYPE_CHECKING:`, `try:` shims and the like.
                for block in _blocks(node):
                    self._body(block, prefix, in_class)
            elif not in_class and isinstance(node, ast.Assign | ast.AnnAssign):
                self._add_variable(node, prefix)

    def _add(
        self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef, prefix: str, kind: SymbolKind
    ) -> None:
        start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        end = node.end_lineno or node.lineno
        first = node.body[0]
        one_line = first.lineno == node.lineno
        header_end = node.lineno if one_line else self._header_end(node.lineno, first.lineno)
        doc = ast.get_docstring(node, clean=True) or ""
        self.symbols.append(
            Symbol(
                name=node.name,
                qualname=prefix + node.name,
                kind=kind,
                start_line=start,
                end_line=end,
                signature=self._line(node.lineno).strip(),
                doc=_first_line(doc),
                header_end=header_end,
                body_col=first.col_offset,
                one_line=one_line,
            )
        )

    def _add_variable(self, node: ast.Assign | ast.AnnAssign, prefix: str) -> None:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        for target in targets:
            if isinstance(target, ast.Name):
                self.symbols.append(
                    Symbol(
                        name=target.id,
                        qualname=prefix + target.id,
                        kind="variable",
                        start_line=node.lineno,
                        end_line=node.end_lineno or node.lineno,
                        signature=self._line(node.lineno).strip(),
                        header_end=node.lineno,
                    )
                )

    def _line(self, lineno: int) -> str:
        return self.lines[lineno - 1] if 0 < lineno <= len(self.lines) else ""

    def _header_end(self, def_line: int, body_line: int) -> int:
        """The line with the header's colon: the first line from the `def`
        where brackets balance and the code ends with `:`."""
        depth = 0
        for lineno in range(def_line, body_line):
            code = _strip_strings_and_comment(self._line(lineno))
            depth += sum(code.count(c) for c in "([{") - sum(code.count(c) for c in ")]}")
            if depth <= 0 and code.rstrip().endswith(":"):
                return lineno
        return max(def_line, body_line - 1)


def _blocks(node: ast.If | ast.Try | ast.TryStar | ast.With) -> list[list[ast.stmt]]:
    if isinstance(node, ast.If):
        return [node.body, node.orelse]
    if isinstance(node, ast.Try | ast.TryStar):
        return [node.body, *(h.body for h in node.handlers), node.orelse, node.finalbody]
    return [node.body]


_STRING_RE = re.compile(r"'(?:\\.|[^'\\])*'|\"(?:\\.|[^\"\\])*\"")


def _strip_strings_and_comment(line: str) -> str:
    return _STRING_RE.sub("''", line).split("#", 1)[0]


def _first_line(doc: str) -> str:
    for line in doc.splitlines():
        if line.strip():
            return line.strip()
    return ""


def _import_statements(body: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth. Imports are statements, so walking
    statement blocks alone finds them all, at a small part of `ast.walk`'s cost."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
            continue
        for name in ("body", "orelse", "finalbody"):
            block = getattr(node, name, None)
            if isinstance(block, list):
                yield from _import_statements(block)
        for sub in (*getattr(node, "handlers", ()), *getattr(node, "cases", ())):
            yield from _import_statements(sub.body)


def _python_imports(tree: ast.Module) -> list[ImportRef]:
    refs: list[ImportRef] = []
    for node in _import_statements(tree.body):
        if isinstance(node, ast.Import):
            refs.extend(ImportRef(alias.name, (), 0, is_from=False) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            refs.append(ImportRef(node.module, tuple(a.name for a in node.names), node.level))
    return refs


# --------------------------------------------------------------------------
# Regex fallback: Python that ast rejects, and other languages

_PY_DEF_RE = re.compile(r"^([ \t]*)(?:async[ \t]+)?(def|class)[ \t]+([A-Za-z_]\w*)")
_PY_FROM_RE = re.compile(r"^[ \t]*from[ \t]+(\.*)([\w.]*)[ \t]+import[ \t]+\(?([\w, \t]+)")
_PY_IMPORT_RE = re.compile(r"^[ \t]*import[ \t]+([\w., \t]+)")
_GENERIC_DEF_RE = re.compile(
    r"^[ \t]*(?:export[ \t]+)?(?:default[ \t]+)?(?:pub(?:\([\w:]+\))?[ \t]+)?(?:async[ \t]+)?"
    r"(def|function|class|func|fn|interface|struct|trait|impl|module)[ \t]+"
    r"(?:\([^)]*\)[ \t]*)?([A-Za-z_$][\w$]*)"
)
_MD_HEADING_RE = re.compile(r"^#{1,6}[ \t]+(\S.*)$")
_RST_UNDERLINE_RE = re.compile(r"^([=\-~^\"'#*+])\1{2,}[ \t]*$")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def _block_end(lines: list[str], start: int, indent: int) -> int:
    """Last line (1-based) of the indented block opened at line `start`."""
    end = start
    for i in range(start, len(lines)):  # lines[start] is the line after the header
        line = lines[i]
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if _indent(line) <= indent:
            break
        end = i + 1
    return end


def _regex_python(text: str) -> tuple[list[Symbol], list[ImportRef]]:
    lines = text.splitlines()
    symbols: list[Symbol] = []
    stack: list[tuple[int, str, str]] = []  # (indent, qualname, kind)
    imports: list[ImportRef] = []
    for i, line in enumerate(lines, start=1):
        m = _PY_DEF_RE.match(line)
        if m:
            indent = len(m.group(1).expandtabs())
            while stack and stack[-1][0] >= indent:
                stack.pop()
            if stack and stack[-1][2] == "function":
                continue  # nested helper functions are not part of the outline
            parent_is_class = bool(stack) and stack[-1][2] == "class"
            kind: SymbolKind = (
                "class" if m.group(2) == "class" else ("method" if parent_is_class else "function")
            )
            qual = (stack[-1][1] + "." if stack else "") + m.group(3)
            header_end = i
            while header_end < len(lines) and not _strip_strings_and_comment(
                lines[header_end - 1]
            ).rstrip().endswith(":"):
                header_end += 1
            end = _block_end(lines, header_end, _indent(line))
            one_line = end == header_end and not _strip_strings_and_comment(line).rstrip().endswith(":")
            body_col, doc = _regex_body(lines, header_end, end)
            start = i
            while start > 1 and lines[start - 2].strip().startswith("@"):
                start -= 1  # decorators belong to the definition
            symbols.append(
                Symbol(
                    name=m.group(3),
                    qualname=qual,
                    kind=kind,
                    start_line=start,
                    end_line=end,
                    signature=line.strip(),
                    doc=doc,
                    header_end=header_end,
                    body_col=body_col or indent + 4,
                    one_line=one_line,
                )
            )
            stack.append((indent, qual, "class" if kind == "class" else "function"))
            continue
        m = _PY_FROM_RE.match(line)
        if m:
            names = tuple(n.strip() for n in m.group(3).split(",") if n.strip())
            imports.append(ImportRef(m.group(2) or None, names, len(m.group(1))))
            continue
        m = _PY_IMPORT_RE.match(line)
        if m:
            for part in m.group(1).split(","):
                name = part.split(" as ")[0].strip()
                if name:
                    imports.append(ImportRef(name, (), 0, is_from=False))
    return symbols, imports


def _regex_body(lines: list[str], header_end: int, end: int) -> tuple[int, str]:
    """Body indentation and docstring first line of a regex-found definition."""
    for i in range(header_end, min(end, header_end + 3)):
        line = lines[i]
        if not line.strip():
            continue
        body = line.strip()
        for quote in ('"""', "'''", '"', "'"):
            if body.lstrip("rbuRBU").startswith(quote):
                inner = body.lstrip("rbuRBU")[len(quote) :]
                return _indent(line), inner.split(quote)[0].strip()
        return _indent(line), ""
    return 0, ""


def _regex_symbols(text: str, language: str) -> list[Symbol]:
    lines = text.splitlines()
    symbols: list[Symbol] = []
    for i, line in enumerate(lines, start=1):
        if language in {"markdown", "rst", "text"}:
            title = _heading(lines, i)
            if title:
                symbols.append(Symbol(title, title, "section", i, i, line.strip(), header_end=i))
            continue
        m = _GENERIC_DEF_RE.match(line)
        if m:
            kind: SymbolKind = (
                "class"
                if m.group(1) in {"class", "interface", "struct", "trait", "impl", "module"}
                else "function"
            )
            symbols.append(
                Symbol(m.group(2), m.group(2), kind, i, i, line.strip(), header_end=i, one_line=True)
            )
    return symbols


def _heading(lines: list[str], lineno: int) -> str:
    line = lines[lineno - 1]
    m = _MD_HEADING_RE.match(line)
    if m:
        return m.group(1).strip().strip("#").strip()
    title = line.strip()
    underline = lines[lineno].strip() if lineno < len(lines) else ""
    if (
        _RST_UNDERLINE_RE.match(underline)
        and len(underline) >= len(title) > 0
        and re.search(r"[A-Za-z]", title)
    ):
        return title
    return ""


# --------------------------------------------------------------------------
# Per-file analysis (what the cache stores)


@dataclass(slots=True)
class Analysis:
    symbols: list[Symbol]
    raw_imports: list[ImportRef]
    parsed: bool
    terms: TermCounts  # the words of the text, imports left out
    names: TermCounts  # the words of the symbols' names, counted at index time rather than per query


# CPython 3.11 before 3.11.8 can fail "AST constructor recursion depth mismatch"
# when two threads build Python ASTs at once (seen here indexing in two threads);
# the GIL serialises parsing anyway, so one lock costs nothing.
_AST_LOCK = threading.Lock()


def parse_python(text: str) -> ast.Module:
    """`ast.parse`, one thread at a time (SyntaxError/ValueError as it raises them)."""
    with _AST_LOCK:
        return ast.parse(text)


def analyse(text: str, language: str, path: str = "") -> Analysis:
    """Symbols, imports and terms of one file (`path` tells TSX from TypeScript)."""
    symbols: list[Symbol] = []
    imports: list[ImportRef] = []
    import_lines: set[int] = set()
    parsed = False
    if language == "python":
        try:
            tree = parse_python(text.removeprefix("\ufeff"))
            symbols = _PythonAnalyser(text).run(tree)
            imports = _python_imports(tree)
            import_lines = _ast_import_lines(tree)
            parsed = True
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            symbols, imports = _regex_python(text)
            import_lines = _regex_import_lines(text)
    elif language in TAGGED:
        found = tags(text, language, path)
        symbols, imports, import_lines, parsed = found.symbols, found.imports, found.import_lines, True
    else:
        symbols = _regex_symbols(text, language)
    # A file's words are what it says, not the names it imports: otherwise a
    # package's re-exporting __init__.py matches every query about the package.
    if import_lines:
        kept = [line for i, line in enumerate(text.splitlines(), start=1) if i not in import_lines]
        terms = text_terms("\n".join(kept))
    else:
        terms = text_terms(text)
    return Analysis(symbols, imports, parsed, TermCounts.of(terms), _name_terms(symbols))


def _name_terms(symbols: list[Symbol]) -> TermCounts:
    counts: Counter[str] = Counter()
    for sym in symbols:
        counts.update(identifier_terms(sym.name))
    return TermCounts.of(counts)


def _ast_import_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in _import_statements(tree.body):
        lines.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    return lines


def _regex_import_lines(text: str) -> set[int]:
    return {
        i
        for i, line in enumerate(text.splitlines(), start=1)
        if _PY_FROM_RE.match(line) or _PY_IMPORT_RE.match(line)
    }
