"""Rules a generated change must pass before anything is written.

Model output is untrusted text, so these run after generation and before the
work tree is touched:

- Content: no binary files (a NUL byte, or text that stops being UTF-8).
- Caps (bot.config.ChangeCaps): no file over a size cap, no more than so many
  files, nor so many changed lines, per job. A confused or hostile answer then
  cannot bury a repository under a huge or sprawling change.
- Shrinking: small models answering with a whole file sometimes drop parts of it
  (a class, the second half). The tests may not notice (they may not cover it,
  or may not run at all), so a file may not lose a top-level definition nobody
  named, nor shrink by more than a set share, unless the request asks for removal.
"""

from __future__ import annotations

import ast
import builtins
import difflib
import itertools
import re
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import PurePosixPath

from bot.analysis import parse_python
from bot.config import ChangeCaps

# Over this share of its lines lost, a file was truncated rather than edited:
# adding, fixing or documenting code grows a file or changes it little, and
# truncated answers seen in practice lose half or more.
MAX_SHRINK = 0.30
# Smaller files are exempt from the share rule: a few lines is a large share of them.
MIN_LINES = 40
# Words asking for removal: then losing code is the point, and the tests judge.
REMOVAL_RE = re.compile(
    r"\b(remove[sd]?|delete[sd]?|drop(s|ped)?|strip|trim|rewrite|get rid|move[sd]?|clean ?up|cleanup)\b",
    re.IGNORECASE,
)


_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def top_level_names(source: str) -> list[str] | None:
    """Module-level functions and classes of Python `source`, and the methods of
    its classes as `Class.method`; None when it does not parse. Methods count
    because a whole-file answer loses them as easily as classes (a dropped
    `Session.request` is as destructive as a dropped `Session`)."""
    try:
        tree = parse_python(source)
    except (SyntaxError, ValueError):
        return None
    names: list[str] = []
    for node in tree.body:
        if isinstance(node, _DEFS):
            names.append(node.name)
        if isinstance(node, ast.ClassDef):
            names.extend(f"{node.name}.{item.name}" for item in node.body if isinstance(item, _DEFS))
    return names


def shrink_problem(path: str, before: str | None, after: str, request: str) -> str | None:
    """What `after` loses of `before` that `request` (the instruction and the
    plan's words) does not ask for, or None when the change is acceptable."""
    if before is None or REMOVAL_RE.search(request):
        return None
    named = set(re.findall(r"[A-Za-z_]\w*", request))
    if PurePosixPath(path).suffix in (".py", ".pyi"):
        old, new = top_level_names(before), top_level_names(after)
        if old is not None and new is not None:
            gone = [name for name in old if name not in new and not named & {name, name.rpartition(".")[2]}]
            # A lost class's methods go with it: name the class alone.
            lost = [name for name in gone if "." not in name or name.partition(".")[0] not in gone]
            if lost:
                shown = ", ".join(lost[:8]) + (" …" if len(lost) > 8 else "")
                return f"{path}: the change removes {shown}, which the request does not mention"
    old_lines, new_lines = len(before.splitlines()), len(after.splitlines())
    if old_lines >= MIN_LINES and old_lines - new_lines > MAX_SHRINK * old_lines:
        return (
            f"{path}: the change shrinks the file from {old_lines} to {new_lines} lines,"
            " which the request does not ask for"
        )
    return None


def shrink_problems(
    originals: Mapping[str, str | None], changes: Mapping[str, str], request: str
) -> list[str]:
    """What each changed file loses (shrink_problem) or how it is damaged
    (damage_problem) that the request does not ask for."""
    found = (
        shrink_problem(path, originals.get(path), new, request)
        or damage_problem(path, originals.get(path), new, request)
        for path, new in sorted(changes.items())
    )
    return [problem for problem in found if problem]


# -- damage: how a whole-file answer goes wrong without losing a definition ----------------

# Words a model writes around "..." to say "lines skipped here"; any other word makes the line code.
# A "strong" word alone is enough: "# ... existing __init__ code ...".
_STRONG_TEXT = (
    "existing unchanged rest omitted remains remaining same elided truncated snip unmodified untouched"
)
_WEAK_TEXT = """code of the file remain as before other others here more lines line methods method functions
function imports keep kept previous etc and body implementation original content contents class
stays is are no changes above below in between left as-is this all so on"""
_ELISION_STRONG = frozenset(_STRONG_TEXT.split())
_ELISION_WORDS = _ELISION_STRONG | frozenset(_WEAK_TEXT.split())
_COMMENT_LEAD = re.compile(r"^(?:#+|//+|/\*+|<!--|--|;+|\*)\s*")
_COMMENT_TAIL = re.compile(r"\s*(?:\*/|-->)$")
_ELISION_BODY = re.compile(r"(?:\.{3,}|…)?([\w\s,'’()/-]*?)(?:\.{3,}|…)?")


def is_elision(line: str) -> bool:
    """A line like `...` or `# ... existing code ...`: the model skipped unchanged lines."""
    s = line.strip()
    if "..." not in s and "…" not in s:
        return False
    body = _COMMENT_TAIL.sub("", _COMMENT_LEAD.sub("", s))
    m = _ELISION_BODY.fullmatch(body)
    if m is None or ("..." not in body and "…" not in body):
        return False
    words = [w.strip("'’()/-,").lower() for w in m.group(1).split()]
    words = [w for w in words if w]
    if any(w in _ELISION_STRONG for w in words):
        return True
    return all(w in _ELISION_WORDS for w in words)


# Asking for a rewrite makes other content in the file's place the point.
REWRITE_RE = re.compile(r"\b(rewrite|rewritten|rewriting)\b", re.IGNORECASE)
# Asking for these makes re-indenting the file the point.
REINDENT_RE = re.compile(r"\b(indent\w*|dedent\w*|tabs?|re-?format\w*|format(ting)?)\b", re.IGNORECASE)
# Places where consecutive kept lines changed their indentation relative to each other.
# Wrapping code in a block shifts it evenly (two such places per block); a lost or
# tabs-for-spaces indentation breaks it at every change of level.
MAX_INDENT_BREAKS = 3
# A file of this many non-blank lines that keeps under this share of them was replaced, not
# edited (another file's content, a different program).
MIN_KEPT_LINES = 8
MIN_KEPT_SHARE = 0.25


def _ops(old: list[str], new: list[str]) -> Sequence[tuple[str, int, int, int, int]]:
    return difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes()


def _lead(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def elision_problem(path: str, old: list[str], new: list[str]) -> str | None:
    """A marker such as `# ... rest unchanged` or a bare `...` standing where the file
    had code: written as it is, it deletes that code."""
    for tag, i1, i2, j1, j2 in _ops(old, new):
        removed = sum(1 for line in old[i1:i2] if line.strip())
        if tag != "replace" or not removed:
            continue
        for j in range(j1, j2):
            if is_elision(new[j]):
                return (
                    f"{path}: line {j + 1} ({new[j].strip()!r}) stands where {removed} lines of the"
                    " file were; the answer elides code instead of keeping it"
                )
    return None


def lost_tail(old: list[str], new: list[str]) -> list[str] | None:
    """The lines of `old` an answer that stops before the file's end leaves out: its last
    lines are the old ones, the last perhaps cut mid-way, and nothing follows. None when
    the answer reaches the file's end."""
    ops = _ops(old, new)
    tag, i1, i2, j1, j2 = ops[-1] if ops else ("equal", 0, 0, 0, 0)
    if tag not in ("delete", "replace") or i2 != len(old) or j2 != len(new):
        return None
    removed, added = old[i1:i2], new[j1:j2]
    if added:  # the last line may be cut short: then it begins the old one
        last = len(added) - 1
        if len(added) > len(removed) or added[:last] != removed[:last]:
            return None
        if not (added[last].strip() and removed[last].startswith(added[last])):
            return None
        removed = removed[last:]
    return removed if any(line.strip() for line in removed) else None


def truncation_problem(path: str, old: list[str], new: list[str]) -> str | None:
    """The answer stops before the file's end (lost_tail)."""
    tail = lost_tail(old, new)
    if tail is None:
        return None
    lost = sum(1 for line in tail if line.strip())
    return f"{path}: the answer stops at line {len(new)}, {lost} lines before the end of the file (truncated)"


def _bound_here(tree: ast.Module) -> set[str]:
    """Names the module's own statements bind (not those inside its functions or classes)."""
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, _DEFS):
            names.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).partition(".")[0] for a in node.names)
        else:
            names.update(
                n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
            )
    return names


def _named(request: str, path: str) -> set[str]:
    """The words of `request`, lower-cased, without the file's own path (naming the file
    names none of its content), a plural also naming its singular."""
    words = {w.lower() for w in re.findall(r"[A-Za-z_]\w*", request.replace(path, " "))}
    return words | {w[:-1] for w in words if w.endswith("s")}


def tail_removal_problem(path: str, old: list[str], new: list[str], request: str) -> str | None:
    """Under a request for removal, an answer that stops before the file's end is still cut
    short unless what it leaves out is whole statements binding only names the request
    gives (`remove the helpers foo and bar` at the end of a module): a cut inside a block,
    or one dropping definitions, imports or settings nobody named, is a truncated answer.
    Python only: elsewhere the removal decides, as before."""
    tail = lost_tail(old, new)
    if tail is None or PurePosixPath(path).suffix not in (".py", ".pyi"):
        return None
    try:  # a cut inside a block leaves its body: dedented, that still reads as statements
        names = _bound_here(ast.parse(textwrap.dedent("\n".join(tail))))
    except (SyntaxError, ValueError):
        names = None
    named = _named(request, path)
    if names is not None and all(name.lower() in named for name in names):
        return None
    unnamed = sorted(names - {n for n in names if n.lower() in named}) if names else []
    what = f" ({', '.join(unnamed[:4])}{' …' if len(unnamed) > 4 else ''})" if unnamed else ""
    return (
        f"{path}: the answer stops at line {len(new)}, {sum(1 for line in tail if line.strip())} lines"
        f" before the end of the file{what}, which the request does not name (truncated)"
    )


def _is_stub(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """A body of `...` alone (after a docstring, perhaps)."""
    body = node.body[1:] if ast.get_docstring(node) is not None else node.body
    value = body[0].value if len(body) == 1 and isinstance(body[0], ast.Expr) else None
    return isinstance(value, ast.Constant) and value.value is Ellipsis


def _overload(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """`@overload` (`@typing.overload`): a signature whose body is `...` by design."""
    return any(ast.unparse(d).rpartition(".")[2] == "overload" for d in node.decorator_list)


def _functions(tree: ast.Module) -> dict[str, ast.FunctionDef | ast.AsyncFunctionDef]:
    """Functions and methods by qualified name (`Class.method`, `outer.inner`)."""
    found: dict[str, ast.FunctionDef | ast.AsyncFunctionDef] = {}

    def visit(nodes: list[ast.stmt], prefix: str) -> None:
        for node in nodes:
            if isinstance(node, _DEFS):
                if not isinstance(node, ast.ClassDef) and not _overload(node):
                    found.setdefault(prefix + node.name, node)
                visit(node.body, f"{prefix}{node.name}.")

    visit(tree.body, "")
    return found


def stubbed_problem(path: str, before: str, after: str) -> str | None:
    """Python: a function that had code now has `...` for its body, the bare elision marker
    (which is valid Python, so the syntax check lets it through). Where the diff lines the
    marker up with lines added nearby, elision_problem does not see it."""
    if PurePosixPath(path).suffix not in (".py", ".pyi"):
        return None
    try:
        old, new = _functions(parse_python(before)), _functions(parse_python(after))
    except (SyntaxError, ValueError):
        return None
    for name, node in new.items():
        if _is_stub(node) and name in old and not _is_stub(old[name]):
            line = node.body[-1].lineno
            return f"{path}: line {line}: the body of {name} is `...` where the file had code (elided)"
    return None


def _bound_anywhere(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            names.add(node.id)
        elif isinstance(node, _DEFS):
            names.add(node.name)
        elif isinstance(node, ast.alias):
            names.add((node.asname or node.name).partition(".")[0])
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.ExceptHandler | ast.MatchAs | ast.MatchStar) and node.name:
            names.add(node.name)
        elif isinstance(node, ast.Global | ast.Nonlocal):
            names.update(node.names)
    return names


def _star_import(tree: ast.AST) -> bool:
    return any(isinstance(n, ast.ImportFrom) and any(a.name == "*" for a in n.names) for n in ast.walk(tree))


def unbound_problem(path: str, before: str, after: str) -> str | None:
    """Python: the answer still uses a name the file bound (an import, a function, a
    setting) but binds it nowhere any more: its head or the definition was dropped (a
    snippet, a cut answer). Never an edit, whatever the request asks: the file would fail
    with a NameError."""
    if PurePosixPath(path).suffix not in (".py", ".pyi"):
        return None
    try:
        old, new = parse_python(before), parse_python(after)
    except (SyntaxError, ValueError):
        return None
    if _star_import(new):
        return None
    used = {n.id for n in ast.walk(new) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    lost = sorted((used & _bound_anywhere(old)) - _bound_anywhere(new) - set(dir(builtins)))
    if not lost:
        return None
    shown = ", ".join(lost[:6]) + (" …" if len(lost) > 6 else "")
    return f"{path}: the answer uses {shown} but no longer defines or imports it"


def duplication_problem(path: str, old: list[str], new: list[str]) -> str | None:
    """Lines added as an exact copy of the lines just before or after them."""
    for tag, _i1, _i2, j1, j2 in _ops(old, new):
        block = new[j1:j2]
        if tag != "insert" or sum(1 for line in block if line.strip()) < 2:
            continue
        size = j2 - j1
        if new[j1 - size : j1] == block or new[j2 : j2 + size] == block:
            return f"{path}: lines {j1 + 1}-{j2} repeat the {size} lines next to them (duplicated)"
    return None


def _kept_pairs(old: list[str], new: list[str]) -> list[list[tuple[str, str]]]:
    """Runs of non-blank lines the answer kept (compared without their indentation), as
    (old line, new line) pairs, one list per run."""
    runs = []
    for tag, i1, i2, j1, _j2 in _ops([line.strip() for line in old], [line.strip() for line in new]):
        if tag == "equal":
            runs.append([(old[i1 + k], new[j1 + k]) for k in range(i2 - i1) if old[i1 + k].strip()])
    return runs


def _shift(pair: tuple[str, str]) -> int:
    return len(_lead(pair[1])) - len(_lead(pair[0]))


def indentation_problem(path: str, old: list[str], new: list[str]) -> str | None:
    """Kept lines whose indentation changed kind (tabs for spaces) or lost its shape."""
    runs = _kept_pairs(old, new)
    swapped = sum(
        1
        for run in runs
        for a, b in run
        if _lead(a) and _lead(b) and ("\t" in _lead(a)) != ("\t" in _lead(b))
    )
    if swapped >= 3:
        return (
            f"{path}: the answer changes the indentation of {swapped} unchanged lines between tabs and spaces"
        )
    breaks = sum(1 for run in runs for p, q in itertools.pairwise(run) if _shift(p) != _shift(q))
    if breaks > MAX_INDENT_BREAKS:
        return f"{path}: the answer loses the indentation of unchanged lines ({breaks} places)"
    return None


def replaced_problem(path: str, old: list[str], new: list[str], removal: bool = False) -> str | None:
    """So little of the file kept that the answer is some other content. When the request
    asks for removal, emptying a file is the point: then only an answer that also brings
    in lines of its own (another file's content) counts."""
    total = sum(1 for line in old if line.strip())
    kept = sum(
        1 for tag, i1, i2, _j1, _j2 in _ops(old, new) if tag == "equal" for line in old[i1:i2] if line.strip()
    )
    if total < MIN_KEPT_LINES or kept >= MIN_KEPT_SHARE * total:
        return None
    if removal and sum(1 for line in new if line.strip()) - kept < MIN_KEPT_LINES:
        return None
    return f"{path}: the answer keeps {kept} of the file's {total} lines; it is not an edit of this file"


# A whole-file answer that lost this many of the file's first or last non-blank lines, all
# of them, and got shorter, lost its head or tail (a snippet, a cut answer): an edit there
# keeps or rewrites them, it does not just lose them.
EDGE_LINES = 2


def cut_line_problem(path: str, old: list[str], new: list[str]) -> str | None:
    """The answer ends in the middle of one of the file's lines (a cut-off reply): never an
    edit, whatever the request asks."""
    ops = _ops(old, new)
    tag, i1, i2, _j1, j2 = ops[-1] if ops else ("equal", 0, 0, 0, 0)
    if tag != "replace" or i2 != len(old) or j2 != len(new) or not new[-1].strip():
        return None
    last, removed = new[-1], old[i1:i2]
    if last in removed or not any(line.startswith(last) for line in removed):
        return None
    return f"{path}: the answer stops mid-line at line {len(new)} ({last.strip()!r}) (truncated)"


def edge_problem(path: str, old: list[str], new: list[str]) -> str | None:
    """The file's first or last lines are gone and nothing took their place."""
    if len(new) >= len(old):
        return None
    code = [line.strip() for line in old if line.strip()]
    if len(code) <= 2 * EDGE_LINES:
        return None
    kept = {line.strip() for line in new}
    for where, edge in (("first", code[:EDGE_LINES]), ("last", code[-EDGE_LINES:])):
        if not kept & set(edge):
            return f"{path}: the answer lost the file's {where} {EDGE_LINES} lines ({edge[0]!r} …)"
    return None


def damage_problem(path: str, before: str | None, after: str, request: str) -> str | None:
    """How `after` damages `before` in a way the request does not ask for: code elided
    behind a marker, the file cut short or missing its head, lines doubled, indentation
    lost, or the file replaced by other content; these read lines, not syntax, so they hold
    for any language. Python answers are also read as code: a cut short that a removal does
    not explain, names used but no longer bound, a body turned into `...`."""
    if before is None:
        return None
    old, new = before.splitlines(), after.splitlines()
    removal = bool(REMOVAL_RE.search(request))
    problem = (
        elision_problem(path, old, new)
        or duplication_problem(path, old, new)
        or cut_line_problem(path, old, new)
        or (None if REWRITE_RE.search(request) else replaced_problem(path, old, new, removal))
    )
    if problem is None and not removal:
        problem = truncation_problem(path, old, new) or edge_problem(path, old, new)
    elif problem is None:
        problem = tail_removal_problem(path, old, new, request)
    problem = problem or unbound_problem(path, before, after) or stubbed_problem(path, before, after)
    if problem is None and not REINDENT_RE.search(request):
        problem = indentation_problem(path, old, new)
    return problem


# -- content and caps -----------------------------------------------------------


def encoded(text: str) -> bytes:
    """The bytes bot.apply writes for `text` (surrogateescape keeps a stray byte as it was)."""
    return text.encode("utf-8", "surrogateescape")


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def binary_problem(path: str, before: str | None, after: str) -> str | None:
    """Why `after` is not text to write, or None. A NUL byte is what git takes for
    binary. Bytes that are not UTF-8 are refused unless the file held such bytes
    already (bot.apply keeps them as they were when editing around them)."""
    if "\0" in after:
        return f"{path}: the new content has NUL bytes; binary files are never written"
    if not _is_utf8(after) and (before is None or _is_utf8(before)):
        return f"{path}: the new content is not UTF-8 text; binary files are never written"
    return None


def binary_problems(originals: Mapping[str, str | None], changes: Mapping[str, str]) -> list[str]:
    found = (binary_problem(path, originals.get(path), new) for path, new in sorted(changes.items()))
    return [problem for problem in found if problem]


def size_problem(path: str, after: str, max_file_bytes: int) -> str | None:
    size = len(encoded(after))
    if size > max_file_bytes:
        return f"{path}: the new content is {size:,} bytes, over the cap of {max_file_bytes:,} bytes per file"
    return None


def changed_lines(before: str | None, after: str) -> int:
    """Lines added plus lines removed, as `git diff --numstat` counts them (near
    enough: difflib's heuristic for very common lines keeps the cost linear-ish)."""
    old, new = (before or "").splitlines(), after.splitlines()
    matcher = difflib.SequenceMatcher(None, old, new)
    return sum((i2 - i1) + (j2 - j1) for tag, i1, i2, j1, j2 in matcher.get_opcodes() if tag != "equal")


def cap_problems(
    originals: Mapping[str, str | None], changes: Mapping[str, str], caps: ChangeCaps
) -> list[str]:
    """How the change goes over `caps`: per file size, files per job, changed lines per job."""
    problems = [
        p for path, new in sorted(changes.items()) if (p := size_problem(path, new, caps.max_file_bytes))
    ]
    if len(changes) > caps.max_files:
        problems.append(f"the change writes {len(changes)} files, over the cap of {caps.max_files} per job")
    if problems:  # oversized files are not worth diffing
        return problems
    lines = sum(changed_lines(originals.get(path), new) for path, new in changes.items())
    if lines > caps.max_changed_lines:
        problems.append(
            f"the change adds or removes {lines:,} lines, over the cap of {caps.max_changed_lines:,} per job"
        )
    return problems
