"""Identifier terms: how code and instructions are split into words.

The index counts a file's terms and the ranking weighs an instruction's with
the same rules, so both sides split and stem words alike.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CAMEL_RE = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
_STOPWORD_TEXT = """
    a an the and or not no of to in on at by for from with without into onto as is are was were be been
    being it its this that these those if else elif then than so such but do does did done can could should
    would will shall may might must we you he she they them their our your his her i me my us which who whom
    what when where why how all any each every some more most other same own only very too also just there
    here about above after again against before below between both during further once out over under until
    up down off while via per etc eg ie self cls def class return import pass none true false lambda yield
    try except finally raise assert del global nonlocal async await"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())


def stem(word: str) -> str:
    """A tiny suffix stripper: enough that "redirects", "redirected" and
    "redirect" meet, and identical on both the query and document side."""
    if len(word) > 4:
        if word.endswith("ies"):
            word = word[:-3] + "i"
        elif word.endswith("sses"):
            word = word[:-2]
        elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
            word = word[:-1]
    if len(word) > 5 and word.endswith("ing"):
        word = word[:-3]
    elif len(word) > 4 and word.endswith("ed"):
        word = word[:-2]
    if len(word) > 4 and word.endswith("e"):
        word = word[:-1]
    if len(word) > 3 and word.endswith("y"):
        word = word[:-1] + "i"
    return word


def split_identifier(ident: str) -> list[str]:
    """`raise_for_status` -> [raise, for, status]; `HTTPError` -> [http, error]."""
    parts: list[str] = []
    for chunk in ident.split("_"):
        if chunk:
            parts.extend(m.group(0).lower() for m in _CAMEL_RE.finditer(chunk))
    return parts


_TERMS_MEMO: dict[str, tuple[str, ...]] = {}


def identifier_terms(ident: str) -> tuple[str, ...]:
    """Stemmed sub-words of one identifier, plus the whole identifier when it
    has several parts (so an exact `raise_for_status` match counts extra)."""
    cached = _TERMS_MEMO.get(ident)
    if cached is not None:
        return cached
    parts = split_identifier(ident)
    terms = [stem(p) for p in parts if len(p) > 1 and not p.isdigit() and p not in STOPWORDS]
    if len(parts) > 1:
        terms.append(ident.lower().strip("_"))
    result = tuple(terms)
    if len(_TERMS_MEMO) < 500_000:
        _TERMS_MEMO[ident] = result
    return result


def text_terms(text: str) -> Counter[str]:
    counts: Counter[str] = Counter()
    for ident, n in Counter(IDENT_RE.findall(text)).items():
        for term in identifier_terms(ident):
            counts[term] += n
    return counts


@dataclass(frozen=True, slots=True)
class TermCounts:
    """One file's term counts packed in a string, " term:count" per term: a tenth
    of a dict's memory, stored in the cache and loaded as it is."""

    packed: str
    total: int  # the sum of the counts: the file's length for ranking

    @classmethod
    def of(cls, counts: Mapping[str, int]) -> TermCounts:
        # A term holding a separator (a heading's whole text, from a section's name)
        # is never asked for: no query term has a space or a colon.
        packed = "".join(f" {term}:{n}" for term, n in counts.items() if " " not in term and ":" not in term)
        return cls(packed, sum(counts.values()))

    def get(self, term: str) -> int:
        at = self.packed.find(f" {term}:")
        if at < 0:
            return 0
        start = at + len(term) + 2
        end = self.packed.find(" ", start)
        return int(self.packed[start : end if end >= 0 else None])

    def __contains__(self, term: str) -> bool:
        return self.get(term) > 0


# A scan for one term costs about 1/48 of reading every count into a dict: a
# table asked for more terms than that (long instructions, many queries on one
# index) reads them all once and answers from the dict.
SCANS_BEFORE_INVERTING = 48


class TermTable:
    """Many files' counts joined in one string, so finding a term across a corpus
    is one scan of that string rather than one lookup per file, and nothing is
    decoded for terms nobody asks for."""

    def __init__(self, items: Iterable[tuple[str, TermCounts]]) -> None:
        self.keys: list[str] = []
        self.starts: list[int] = []
        self.scans = 0
        self.inverted: dict[str, dict[str, int]] | None = None
        parts: list[str] = []
        at = 0
        for key, counts in items:
            self.keys.append(key)
            self.starts.append(at)
            parts.append(counts.packed)
            at += len(counts.packed)
        self.text = "".join(parts) + " "  # a closing separator: every count ends at a space

    def postings(self, term: str) -> dict[str, int]:
        """key -> count of `term`, for the keys whose counts hold it (not to be changed)."""
        if self.inverted is None and self.scans >= SCANS_BEFORE_INVERTING:
            self.inverted = self._invert()
        if self.inverted is not None:
            return self.inverted.get(term, {})
        self.scans += 1
        needle = f" {term}:"
        found: dict[str, int] = {}
        at = self.text.find(needle)
        while at >= 0:
            end = self.text.find(" ", at + len(needle))
            # An empty file shares its start with the next one: the last start at or before wins.
            key = self.keys[bisect_right(self.starts, at) - 1]
            found[key] = int(self.text[at + len(needle) : end])
            at = self.text.find(needle, end)
        return found

    def _invert(self) -> dict[str, dict[str, int]]:
        inverted: dict[str, dict[str, int]] = {}
        ends = [*self.starts[1:], len(self.text) - 1]
        for key, start, end in zip(self.keys, self.starts, ends, strict=True):
            for pair in self.text[start + 1 : end].split(" ") if end > start else ():
                term, _, n = pair.partition(":")
                inverted.setdefault(term, {})[key] = int(n)
        return inverted
