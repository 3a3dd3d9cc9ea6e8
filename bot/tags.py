"""Definitions and imports of the languages with a tree-sitter grammar.

What a language's definitions, doc comments and imports look like is data:
one query per language in `bot/queries/<language>.scm` (its README lists the
captures). This module runs the query and turns the captures into `Symbol`s
with exact spans, the header line where the body opens (so skeletons elide the
body in the file's own syntax) and the first line of the doc comment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from tree_sitter import Node, Query, QueryCursor, QueryError

from bot.grammars import grammar_name, language, parse
from bot.symbols import ImportRef, Symbol, SymbolKind

QUERY_DIR = Path(__file__).with_name("queries")
LANGUAGES = frozenset({"javascript", "typescript", "go", "rust", "java", "csharp", "ruby", "c", "cpp"})

_KINDS: dict[str, SymbolKind] = {"function": "function", "method": "method", "class": "class"}
# Nodes that only wrap one definition (`export function f`, Go's `type T struct`, `const f = () => …`):
# the definition's span, and its doc comment, start at the wrapper.
_WRAPPERS = frozenset(
    {
        "export_statement",
        "ambient_declaration",
        "lexical_declaration",
        "variable_declaration",
        "type_declaration",
        "const_declaration",
        "var_declaration",
        "template_declaration",
    }
)
_DOC_MARKS = "/*!#"


class TagQueryError(RuntimeError):
    """A language's query file is missing or does not compile against its grammar."""


@cache
def tag_query(grammar: str, query_dir: Path = QUERY_DIR) -> Query:
    """The compiled query for a grammar (TSX shares TypeScript's file)."""
    stem = "typescript" if grammar == "tsx" else grammar
    path = query_dir / f"{stem}.scm"
    try:
        source = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TagQueryError(f"tag query for {grammar} unreadable: {path} ({exc.strerror or exc})") from exc
    try:
        return Query(language(grammar), source)
    except QueryError as exc:
        raise TagQueryError(f"tag query {path} is broken: {exc}") from exc


@dataclass
class _Def:
    node: Node  # the definition, widened to its wrapper
    name: str
    kind: str  # the capture's suffix: function, method, class, variable
    body: Node | None
    start: Node  # first attribute or doc comment line before it, or the node itself
    doc: str = ""
    children: list[_Def] = field(default_factory=list)


@dataclass
class Tags:
    symbols: list[Symbol]  # outermost first on each line
    imports: list[ImportRef]
    import_lines: set[int]  # 1-based lines of import statements


def tags(text: str, language_name: str, path: str = "") -> Tags:
    """The file's definitions and imports, by its language's query."""
    grammar = grammar_name(language_name, path)
    tree = parse(text, language_name, path)
    matches = QueryCursor(tag_query(grammar)).matches(tree.root_node)
    notes: list[Node] = []  # doc comments and attributes
    docs: set[tuple[int, int]] = set()
    defs: dict[int, _Def] = {}  # by the name node's start byte: one definition per name
    imports: list[ImportRef] = []
    import_lines: set[int] = set()
    for _, caps in matches:
        for kind, nodes in caps.items():
            if kind in ("doc", "attribute"):
                notes.extend(nodes)
                if kind == "doc":
                    docs.update(_key(n) for n in nodes)
            elif kind.startswith("import"):
                level = 1 if kind == "import.relative" else 0
                imports.extend(ImportRef(_text(n).strip("\"'`<>"), (), level, False) for n in nodes)
                import_lines.update(line for n in nodes for line in _statement_lines(n))
            elif kind.startswith("definition."):
                _add_def(defs, kind.removeprefix("definition."), nodes[0], caps)
    lines = text.splitlines()
    found = sorted(defs.values(), key=lambda d: (d.node.start_byte, -d.node.end_byte))
    by_last_line = {_last_row(n): n for n in notes if _own_line(n, lines)}
    for d in found:
        d.start, d.doc = _leading_notes(d.node, by_last_line, docs)
    return Tags(_symbols(found, lines), imports, import_lines)


def _key(node: Node) -> tuple[int, int]:
    return node.start_byte, node.end_byte


def _text(node: Node) -> str:
    return (node.text or b"").decode("utf-8", "replace")


def _statement_lines(node: Node) -> range:
    """The lines of the top-level import statement holding `node` (Go's whole
    `import ( … )` block), or only its own where it sits deeper (a `require` in a function)."""
    top = node
    while top.parent is not None and top.parent.parent is not None:
        top = top.parent
    if not any(word in top.type for word in ("import", "use", "include", "mod_item")):
        top = node
    return range(top.start_point.row + 1, top.end_point.row + 2)


def _add_def(defs: dict[int, _Def], kind: str, node: Node, caps: dict[str, list[Node]]) -> None:
    names = caps.get("name")
    if not names:
        return
    bodies = caps.get("body")
    body = bodies[0] if bodies else None
    node = _widen(node)
    known = defs.get(names[0].start_byte)
    # Alternative patterns may match one definition twice: keep the widest, with its body.
    if known is not None and (known.node.end_byte - known.node.start_byte, known.body is not None) >= (
        node.end_byte - node.start_byte,
        body is not None,
    ):
        return
    defs[names[0].start_byte] = _Def(node, _text(names[0]), kind, body, node)


def _widen(node: Node) -> Node:
    parent = node.parent
    while parent is not None and parent.type in _WRAPPERS and _only_child(parent, node):
        node, parent = parent, parent.parent
    return node


def _only_child(parent: Node, node: Node) -> bool:
    return all(c.id == node.id or "comment" in c.type for c in parent.named_children)


def _leading_notes(node: Node, notes: dict[int, Node], docs: set[tuple[int, int]]) -> tuple[Node, str]:
    """The first of the doc comments and attributes written on the lines just
    above `node` (by line, not by tree: grammars place comments unevenly), and
    the doc comment's first line of text."""
    start = node
    doc = ""
    while (prev := notes.get(start.start_point.row - 1)) is not None and prev.start_byte < start.start_byte:
        if _key(prev) in docs:
            doc = _doc_text(_text(prev)) or doc
        start = prev
    return start, doc


def _last_row(node: Node) -> int:
    """The row of the node's last character (Rust's `///` comments end past their newline)."""
    row, col = node.end_point
    return row - 1 if col == 0 and row > node.start_point.row else row


def _own_line(node: Node, lines: list[str]) -> bool:
    """A comment or attribute alone on its line(s), not trailing a statement."""
    row, col = node.start_point
    return row < len(lines) and not lines[row][:col].strip()


def _doc_text(comment: str) -> str:
    for line in comment.splitlines():
        cleaned = line.strip().lstrip(_DOC_MARKS).removesuffix("*/").strip().lstrip("*").strip()
        if cleaned:
            return cleaned
    return ""


def _symbols(found: list[_Def], lines: list[str]) -> list[Symbol]:
    symbols: list[Symbol] = []
    open_defs: list[tuple[_Def, str]] = []  # enclosing definitions, with their qualnames
    for d in found:
        while open_defs and open_defs[-1][0].node.end_byte < d.node.end_byte:
            open_defs.pop()
        parent = open_defs[-1] if open_defs else None
        if d.kind == "variable" and parent is not None:
            continue  # constants are listed at the top level only, as Python's are
        kind = _KINDS.get(d.kind, "variable")
        if kind == "function" and parent is not None and parent[0].kind == "class":
            kind = "method"
        qualname = f"{parent[1]}.{d.name}" if parent else d.name
        symbols.append(_symbol(d, kind, qualname, lines))
        open_defs.append((d, qualname))
    return symbols


def _symbol(d: _Def, kind: SymbolKind, qualname: str, lines: list[str]) -> Symbol:
    def_line = d.node.start_point.row + 1
    end_line = d.node.end_point.row + 1
    body = d.body
    header_end = body.start_point.row + 1 if body is not None else def_line
    # A body on the header's own line (`fn f() { 1 }`), or none at all, leaves nothing to elide.
    one_line = body is None or body.end_point.row + 1 == header_end
    return Symbol(
        name=d.name,
        qualname=qualname,
        kind=kind,
        start_line=d.start.start_point.row + 1,
        end_line=end_line,
        signature=lines[def_line - 1].strip() if def_line <= len(lines) else d.name,
        doc=d.doc,
        header_end=header_end,
        body_col=_body_col(body, lines, def_line),
        one_line=one_line,
        def_line=def_line,
        closer=not one_line and end_line > header_end,
    )


def _body_col(body: Node | None, lines: list[str], def_line: int) -> int:
    inner = [c for c in body.named_children if c.start_point.row > body.start_point.row] if body else []
    if inner:
        return inner[0].start_point.column
    line = lines[def_line - 1] if def_line <= len(lines) else ""
    return len(line) - len(line.lstrip()) + 4
