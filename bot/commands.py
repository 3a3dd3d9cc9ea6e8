"""Slash commands in comments: pure functions, no I/O.

A command is `/edit <instruction>` at the start of a line (up to three spaces
of indent, as Markdown allows before a paragraph). Lines inside fenced code
blocks and quoted (`>`) lines never count: people quote and document the
command without meaning to run it.

Comments and issues are data, never instructions to Patchling itself: what
GitHub does not show (HTML comments, invisible and bidirectional control
characters) is dropped before anything is read, and an instruction longer
than MAX_INSTRUCTION is answered, not run. Collapsed `<details>` stay: the
reader can open them, so they are not hidden.
"""

from __future__ import annotations

import re
import unicodedata
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

# About 2,000 tokens: room for a detailed request, not for a document.
MAX_INSTRUCTION = 8_000

# Up to three spaces: four would make an indented code block in Markdown.
_COMMAND_LINE = re.compile(r"^ {0,3}/(?P<name>[A-Za-z][\w-]*)(?:[ \t]+(?P<args>.*))?$")
_FENCE = re.compile(r"^ {0,3}(?P<fence>`{3,}|~{3,})")
# An unclosed comment hides the rest of the text, as it does in Markdown.
_HTML_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.DOTALL)


@dataclass(frozen=True)
class Command:
    name: CommandName
    # Empty for a bare `/edit`: the caller decides what that means where it was said.
    instruction: str = ""
    # What to answer instead of working: the usage for `help`, or why a request was refused.
    reply: str = ""

    def __post_init__(self) -> None:
        if self.name == "help" and not self.reply:
            object.__setattr__(self, "reply", USAGE)


def visible_text(text: str) -> str:
    """`text` as a reader sees it on GitHub: without HTML comments or invisible
    characters (zero-width, bidirectional controls, Unicode tags), which could
    carry words to a model that no reviewer ever saw."""
    text = _HTML_COMMENT.sub("", text)
    if text.isascii():
        return text  # every invisible (Cf) character is outside ASCII; most comments are inside it
    return "".join(ch for ch in text if unicodedata.category(ch) != "Cf")


def edit_command(instruction: str) -> Command:
    """An `/edit` of `instruction`, or an answer when it is too long to run."""
    instruction = instruction.strip()
    if len(instruction) > MAX_INSTRUCTION:
        return Command(
            "help",
            reply=f"This instruction is {len(instruction):,} characters long; Patchling takes at most "
            f"{MAX_INSTRUCTION:,}. Please shorten it to what should change, and ask again.",
        )
    return Command("edit", instruction)


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
    lines = _visible_lines(visible_text(body))
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
        return edit_command("\n".join(parts))
    return None


def issue_instruction(title: str, body: str | None) -> str:
    """What a bare `/edit` on an issue means: do what the issue asks."""
    text = visible_text(body or "").strip()
    return f"{visible_text(title).strip()}\n\n{text}".strip()


def issue_command(title: str, body: str | None) -> Command:
    return edit_command(issue_instruction(title, body))


def is_bot(login: str | None, user_type: str | None) -> bool:
    """Bots (Patchling included) never trigger work: it would loop."""
    return user_type == "Bot" or (login or "").lower().endswith("[bot]")
