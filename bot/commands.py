"""Slash commands in comments: pure functions, no I/O.

A command is `/edit <instruction>` at the start of a line (up to three spaces
of indent, as Markdown allows before a paragraph). Lines inside fenced code
blocks and quoted (`>`) lines never count: people quote and document the
command without meaning to run it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

USAGE = """\
**Patchling** turns a comment into a tested change. Usage:

- `/edit <instruction>`: make the change and open a pull request (on an issue), or push a commit \
(on a pull request, or in a review thread, where the commented lines are the focus). The instruction \
runs to the end of its paragraph.
- `/edit` alone on an issue: do what the issue asks (its title and description are the instruction).
- `/edit help`: this message.

Only people with write, maintain or admin permission on the repository can start an edit. \
Settings live in `.github/patchling.yml` on the default branch (`test`, `setup`, `protected`, \
`branch_prefix`, `tiers`)."""

CommandName = Literal["edit", "help"]

# Up to three spaces: four would make an indented code block in Markdown.
_COMMAND_LINE = re.compile(r"^ {0,3}/(?P<name>[A-Za-z][\w-]*)(?:[ \t]+(?P<args>.*))?$")
_FENCE = re.compile(r"^ {0,3}(?P<fence>`{3,}|~{3,})")


@dataclass(frozen=True)
class Command:
    name: CommandName
    # Empty for a bare `/edit`: the caller decides what that means where it was said.
    instruction: str = ""


def _visible_lines(body: str) -> list[str | None]:
    """The comment's lines, with those inside code fences or quotes replaced by
    None so they neither match nor continue an instruction."""
    lines: list[str | None] = []
    fence: str | None = None
    for line in body.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        match = _FENCE.match(line)
        if fence is not None:
            # A fence closes only on the same character, at least as long.
            if match and match["fence"][0] == fence[0] and len(match["fence"]) >= len(fence):
                fence = None
            lines.append(None)
        elif match:
            fence = match["fence"]
            lines.append(None)
        elif line.lstrip().startswith(">"):
            lines.append(None)
        else:
            lines.append(line)
    return lines


def parse_comment(body: str | None) -> Command | None:
    """The first `/edit` command in a comment, or None. Unknown `/words` are
    ignored; `/edit help` asks for usage."""
    if not body or "/" not in body:
        return None
    lines = _visible_lines(body)
    for index, line in enumerate(lines):
        if line is None:
            continue
        match = _COMMAND_LINE.match(line)
        if not match or match["name"].lower() != "edit":
            continue
        first = (match["args"] or "").strip()
        if first.lower() == "help":
            return Command("help")
        parts = [first] if first else []
        # The instruction runs on to the end of its paragraph.
        for following in lines[index + 1 :]:
            if following is None or not following.strip() or _COMMAND_LINE.match(following):
                break
            parts.append(following.strip())
        return Command("edit", "\n".join(parts).strip())
    return None


def issue_instruction(title: str, body: str | None) -> str:
    """What a bare `/edit` on an issue means: do what the issue asks."""
    text = (body or "").strip()
    return f"{title.strip()}\n\n{text}".strip()


def is_bot(login: str | None, user_type: str | None) -> bool:
    """Bots (Patchling included) never trigger work: it would loop."""
    return user_type == "Bot" or (login or "").lower().endswith("[bot]")
