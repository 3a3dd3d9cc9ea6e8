"""Word statistics."""

import re
from collections import Counter

WORD_RE = re.compile(r"[A-Za-z0-9']+")


def words(text: str) -> list[str]:
    """The words of `text`, lower-cased, punctuation left out."""
    return [w.lower() for w in WORD_RE.findall(text)]


def word_count(text: str) -> int:
    return len(words(text))


def top_words(text: str, n: int) -> list[tuple[str, int]]:
    """The `n` most frequent words with their counts, most frequent first;
    words as frequent as each other in alphabetical order."""
    counts = Counter(words(text))
    return sorted(counts.items(), key=lambda pair: (-pair[1], pair[0]))[:n]
