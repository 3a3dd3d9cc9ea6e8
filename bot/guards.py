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
import difflib
import re
from collections.abc import Mapping
from pathlib import PurePosixPath

from bot.config import ChangeCaps

# Over this share of its lines lost, a file was truncated rather than edited:
# adding, fixing or documenting code grows a file or changes it little, and
# truncated answers seen in practice lose half or more.
MAX_SHRINK = 0.30
# Smaller files are exempt from the share rule: a few lines is a large share of them.
MIN_LINES = 40
# Words asking for removal: then losing code is the point, and the tests judge.
REMOVAL_RE = re.compile(
    r"\b(remove[sd]?|delete[sd]?|drop(s|ped)?|strip|trim|rewrite|get rid)\b", re.IGNORECASE
)


_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def top_level_names(source: str) -> list[str] | None:
    """Module-level functions and classes of Python `source`, and the methods of
    its classes as `Class.method`; None when it does not parse. Methods count
    because a whole-file answer loses them as easily as classes (a dropped
    `Session.request` is as destructive as a dropped `Session`)."""
    try:
        tree = ast.parse(source)
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
    """shrink_problem for every changed file."""
    found = (shrink_problem(path, originals.get(path), new, request) for path, new in sorted(changes.items()))
    return [problem for problem in found if problem]


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
