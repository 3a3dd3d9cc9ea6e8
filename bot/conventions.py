"""The repository's own guidance for contributors and agents, for the edit
prompts: the first of AGENTS.md, .github/copilot-instructions.md and
CONTRIBUTING.md that is a regular file (read through bot.files: never through
a link), trimmed to a small share of the tier's input budget so that it never
crowds out the code being edited.
"""

from __future__ import annotations

from pathlib import Path

from bot.files import open_file
from bot.tokens import count_tokens, truncate_to_tokens

# In order of preference: guidance written for agents says most about how to edit.
SOURCES = ("AGENTS.md", ".github/copilot-instructions.md", "CONTRIBUTING.md")
# The share of a tier's input budget the conventions may take.
SHARE = 0.05
# Tokens of the prompt text that introduces them (baml_src/edit.baml), with headroom.
HEADING_TOKENS = 24
# Enough for any guide a person would write; more is not read at all.
MAX_READ_BYTES = 256 * 1024
CUT_NOTE = "\n(… the rest of the guide is left out)"


def read_conventions(root: Path) -> str:
    """The first guide in SOURCES that can be read, or "" when there is none."""
    for rel in SOURCES:
        try:
            with open_file(root, rel) as fh:
                text = fh.read(MAX_READ_BYTES).decode("utf-8", "replace").strip()
        except OSError:  # missing, a link (PathRefused), not a regular file
            continue
        if text:
            return text
    return ""


def fit_conventions(text: str, input_budget: int) -> str:
    """`text` within SHARE of `input_budget` tokens: cut at a line end, with a
    note saying so; "" when not even a line fits."""
    limit = int(input_budget * SHARE)
    if count_tokens(text) <= limit:
        return text
    kept = truncate_to_tokens(text, limit - count_tokens(CUT_NOTE))
    kept = kept[: kept.rfind("\n")].rstrip() if "\n" in kept else ""
    return kept + CUT_NOTE if kept else ""


def prompt_tokens(conventions: str) -> int:
    """What the conventions add to an edit prompt."""
    return count_tokens(conventions) + HEADING_TOKENS if conventions else 0
