"""Secrets out of text that leaves the process: comments, PR bodies, prompts.

Installation tokens, model API keys, the webhook secret and the App's private
key never belong in what Patchling posts or sends to a model. A test the
repository controls could print one it managed to read (the key file, say), so
such text is masked before it goes anywhere. A PEM key is masked line by line:
output that echoes the file shows it one line at a time.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

MASK = "***"
# Shorter lines of a multi-line secret (PEM armour, a short last line) are not secret
# enough to mask without masking ordinary text too; every full base64 line is longer.
MIN_LINE = 16


def secret_parts(secrets: Iterable[str | None]) -> list[str]:
    """What to mask for `secrets`: each one whole, and each long line of a
    multi-line one; longest first, so a whole secret goes before its parts."""
    parts: set[str] = set()
    for secret in secrets:
        if not secret or not secret.strip():
            continue
        parts.add(secret)
        lines = [line.strip() for line in secret.splitlines()]
        parts.update(line for line in lines if len(line) >= MIN_LINE and not line.startswith("-----"))
    return sorted(parts, key=len, reverse=True)


def redact(text: str, parts: Sequence[str]) -> str:
    """`text` with every part (from secret_parts) replaced by MASK."""
    for part in parts:
        text = text.replace(part, MASK)
    return text
