"""The failure modes of small models answering for a whole change, in one place: the safety
bench (`bench/safety.py`) runs them through the engine, and the tests (`tests/test_safety.py`,
`tests/test_guards.py`) use them too.

Each mode takes a correct edit of one file (its text before and after) and writes the reply a
noisy model would give instead: a whole file with code elided, cut short, with lines dropped
or doubled, its indentation lost, wrapped in or replaced by prose, another file, another edit
format than asked, or the file unchanged. Pure functions: every random choice comes from the
`random.Random` passed in, so a seed gives the same replies every time.
"""

from __future__ import annotations

import ast
import random
from collections.abc import Callable
from dataclasses import dataclass
from difflib import SequenceMatcher

from bench.faults import make_hunks, render_diff, render_sr, split_lines, unique_hunks

# Mode -> the edit format the model was asked for. In report order; "clean" is the control.
MODES: dict[str, str] = {
    "clean": "whole",
    "prose_around": "whole",
    "elided_comment": "whole",
    "elided_bare": "whole",
    "truncated": "whole",
    "snippet": "whole",
    "dropped_lines": "whole",
    "duplicated_lines": "whole",
    "flattened": "whole",
    "tabs": "whole",
    "prose_instead": "whole",
    "wrong_file": "whole",
    "unchanged": "whole",
    "diff_for_whole": "whole",
    "sr_for_diff": "diff",
    "whole_for_diff": "diff",
}
# Markers small models put where they skip code (the bare `...` is also valid Python).
COMMENT_MARKERS = ("# ... rest unchanged", "# ... existing code ...", "// ...", "# ... (rest of the file)")
BARE_MARKER = "..."


@dataclass(frozen=True)
class Edit:
    path: str
    before: str
    after: str
    subject: str = ""
    other: str = ""  # another file's text, for "wrong_file"


@dataclass(frozen=True)
class Noisy:
    mode: str
    fmt: str  # the edit format the model was asked for
    reply: str
    # The file the reply stands for when it is a whole file, else None.
    content: str | None


def fenced(text: str, lang: str = "python") -> str:
    return f"```{lang}\n{text if text.endswith(chr(10)) else text + chr(10)}```\n"


def noisy(mode: str, edit: Edit, rnd: random.Random) -> Noisy | None:
    """`edit` answered in `mode`, or None when the mode cannot be made for it (no unchanged
    definition to elide, no indentation to lose, no other file)."""
    content = _CONTENT.get(mode)
    if content is not None:
        text = content(edit, rnd)
        return None if text is None or text == edit.after else Noisy(mode, MODES[mode], fenced(text), text)
    reply = _REPLIES[mode](edit, rnd)
    return None if reply is None else Noisy(mode, MODES[mode], reply, None)


# -- where the edit did not touch ---------------------------------------------------------------


def kept_lines(before: str, after: str) -> list[bool]:
    """Per line of `after`: True when the edit left it as it was."""
    a, b = split_lines(before), split_lines(after)
    kept = [False] * len(b)
    for tag, _i1, _i2, j1, j2 in SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            kept[j1:j2] = [True] * (j2 - j1)
    return kept


def kept_definitions(before: str, after: str) -> list[tuple[int, int, int]]:
    """(first line, end line, body's first line), 0-based and end exclusive, of every
    function, class or method of `after` the edit did not touch."""
    try:
        tree = ast.parse(after)
    except SyntaxError:
        return []
    kept = kept_lines(before, after)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and node.end_lineno:
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)]) - 1
            if all(kept[first : node.end_lineno]):
                found.append((first, node.end_lineno, node.body[0].lineno - 1))
    return sorted(found)


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def _join(lines: list[str]) -> str:
    return "\n".join(lines) + "\n"


def _kept_run(edit: Edit, rnd: random.Random, size: int) -> int | None:
    """Start of a run of `size` kept lines of `after`, the first one not blank."""
    kept = kept_lines(edit.before, edit.after)
    lines = split_lines(edit.after)
    starts = [i for i in range(len(lines) - size + 1) if all(kept[i : i + size]) and lines[i].strip()]
    return rnd.choice(starts) if starts else None


# -- whole files gone wrong --------------------------------------------------------------------


def _elided(edit: Edit, rnd: random.Random, markers: tuple[str, ...]) -> str | None:
    """An unchanged definition, its body, or the file's end after the change, as a marker."""
    lines = split_lines(edit.after)
    defs = kept_definitions(edit.before, edit.after)
    kept = kept_lines(edit.before, edit.after)
    last_change = max((i for i, k in enumerate(kept) if not k), default=-1)
    choices = ["definition", "body"] if defs else []
    if any(line.strip() for line in lines[last_change + 2 :]):
        choices.append("tail")
    if not choices:
        return None
    how, marker = rnd.choice(choices), rnd.choice(markers)
    if how == "tail":
        start = last_change + 2  # one kept line of context, as models write
        return _join([*lines[:start], marker])
    first, end, body = rnd.choice(defs)
    if how == "definition":
        return _join([*lines[:first], _indent(lines[first]) + marker, *lines[end:]])
    return _join([*lines[:body], _indent(lines[body]) + marker, *lines[end:]])


def elided_comment(edit: Edit, rnd: random.Random) -> str | None:
    return _elided(edit, rnd, COMMENT_MARKERS)


def elided_bare(edit: Edit, rnd: random.Random) -> str | None:
    return _elided(edit, rnd, (BARE_MARKER,))


def truncated(edit: Edit, rnd: random.Random) -> str | None:
    """The answer stops after the change, at a line's end or in the middle of one (the
    fence still closed: the model thought it was done)."""
    lines = split_lines(edit.after)
    kept = kept_lines(edit.before, edit.after)
    last_change = max((i for i, k in enumerate(kept) if not k), default=0)
    cuts = [i for i in range(last_change + 1, len(lines)) if lines[i].strip()]
    if not cuts:
        return None
    cut = rnd.choice(cuts)
    line = lines[cut]
    if rnd.choice((True, False)) and len(line.strip()) > 4:
        return _join([*lines[:cut], line[: rnd.randint(len(_indent(line)) + 1, len(line) - 1)]])
    return _join(lines[:cut])


def snippet(edit: Edit, rnd: random.Random) -> str | None:
    """Only the changed part with a little context, as if it were the whole file."""
    hunks = make_hunks(edit.before, edit.after, rnd.choice((2, 3, 5)))
    text = _join([line for h in hunks for line in h.new()])
    return None if len(split_lines(text)) >= len(split_lines(edit.after)) else text


def dropped_lines(edit: Edit, rnd: random.Random) -> str | None:
    size = rnd.randint(1, 3)
    start = _kept_run(edit, rnd, size)
    if start is None:
        return None
    lines = split_lines(edit.after)
    return _join(lines[:start] + lines[start + size :])


def duplicated_lines(edit: Edit, rnd: random.Random) -> str | None:
    size = rnd.randint(2, 6)
    start = _kept_run(edit, rnd, size)
    if start is None:
        return None
    lines = split_lines(edit.after)
    run = lines[start : start + size]
    return _join([*lines[: start + size], *run, *lines[start + size :]])


def flattened(edit: Edit, rnd: random.Random) -> str | None:
    """Indentation lost: the whole file's, or one unchanged definition's."""
    lines = split_lines(edit.after)
    defs = [d for d in kept_definitions(edit.before, edit.after) if _indent(lines[d[2]])]
    if defs and rnd.random() < 0.5:
        first, end, _ = rnd.choice(defs)
    else:
        first, end = 0, len(lines)
    out = [*lines[:first], *(line.lstrip() for line in lines[first:end]), *lines[end:]]
    return _join(out) if out != lines else None


def tabs(edit: Edit, rnd: random.Random) -> str | None:
    """Spaces become tabs, or tabs spaces, across the file."""
    lines = split_lines(edit.after)
    out = [_swap_indent(_indent(line)) + line.lstrip() for line in lines]
    return _join(out) if out != lines else None


def _swap_indent(lead: str) -> str:
    if "\t" in lead:
        return lead.replace("\t", "    ")
    return "\t" * (len(lead) // 4) + " " * (len(lead) % 4)


def wrong_file(edit: Edit, rnd: random.Random) -> str | None:
    return edit.other if edit.other and edit.other != edit.before else None


def unchanged(edit: Edit, rnd: random.Random) -> str | None:
    return edit.before if edit.before != edit.after else None


# -- replies that are not one file ------------------------------------------------------------


def _clean_reply(edit: Edit, rnd: random.Random) -> str:
    return fenced(edit.after)


def _prose_around(edit: Edit, rnd: random.Random) -> str:
    opener = rnd.choice(("Here is the updated file:", f"Sure! Here's `{edit.path}` with the change:", ""))
    closer = rnd.choice(
        (
            "This keeps everything else as it was.",
            "Let me know if you want any other changes!",
            "Usage:\n\n```python\nimport this\n```\n",
        )
    )
    return f"{opener}\n\n{fenced(edit.after)}\n{closer}\n"


def _prose_instead(edit: Edit, rnd: random.Random) -> str:
    subject = edit.subject.strip().rstrip(".") or "make the change"
    return rnd.choice(
        (
            f"To {subject[:1].lower()}{subject[1:]}, you would edit `{edit.path}` and update the"
            " relevant function. The rest of the file stays the same.",
            f"I have made the requested change to {edit.path}. It now does what you asked.",
            "I'm sorry, but I cannot see enough of the code to make this change safely.",
        )
    )


def _diff_for_whole(edit: Edit, rnd: random.Random) -> str:
    hunks = make_hunks(edit.before, edit.after, 3)
    return fenced(render_diff(hunks, f"a/{edit.path}", f"b/{edit.path}"), "diff")


def _sr_for_diff(edit: Edit, rnd: random.Random) -> str:
    hunks, _ = unique_hunks(edit.before, edit.after)
    return render_sr(hunks, edit.path)


_CONTENT: dict[str, Callable[[Edit, random.Random], str | None]] = {
    "elided_comment": elided_comment,
    "elided_bare": elided_bare,
    "truncated": truncated,
    "snippet": snippet,
    "dropped_lines": dropped_lines,
    "duplicated_lines": duplicated_lines,
    "flattened": flattened,
    "tabs": tabs,
    "wrong_file": wrong_file,
    "unchanged": unchanged,
}
_REPLIES: dict[str, Callable[[Edit, random.Random], str | None]] = {
    "clean": _clean_reply,
    "prose_around": _prose_around,
    "prose_instead": _prose_instead,
    "diff_for_whole": _diff_for_whole,
    "sr_for_diff": _sr_for_diff,
    "whole_for_diff": _clean_reply,  # the right file, in the wrong format
}
