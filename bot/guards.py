"""Refuse a change that loses much more than the request asked for.

Small models answering with a whole file sometimes drop parts of it (a class,
the second half). The tests may not notice (they may not cover it, or may not
run at all), so this check runs before anything is written: a file may not
lose a top-level definition nobody named, nor shrink by more than a set share,
unless the request asks for removal.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from pathlib import PurePosixPath

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


def top_level_names(source: str) -> list[str] | None:
    """Module-level functions and classes of Python `source`, or None when it does not parse."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    kinds = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    return [node.name for node in tree.body if isinstance(node, kinds)]


def shrink_problem(path: str, before: str | None, after: str, request: str) -> str | None:
    """What `after` loses of `before` that `request` (the instruction and the
    plan's words) does not ask for, or None when the change is acceptable."""
    if before is None or REMOVAL_RE.search(request):
        return None
    named = set(re.findall(r"[A-Za-z_]\w*", request))
    if PurePosixPath(path).suffix in (".py", ".pyi"):
        old, new = top_level_names(before), top_level_names(after)
        if old is not None and new is not None:
            lost = [name for name in old if name not in new and name not in named]
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
