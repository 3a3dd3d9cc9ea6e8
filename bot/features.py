"""What a request is like, for the attempt records and the router (bot.routing):
its kind of edit, its language, how long the instruction is and how much the
plan touches.

Simple rules, no model. The router decides before any tier has planned, so a
request's kind comes from the instruction's words and its language from the
file the instruction points at; the records then keep what each attempt's plan
and change showed (the planned files' language; for an instruction whose words
name no kind, what its change turned out to be).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from bot.index import IDENT_RE, RepoIndex, language_of
from bot.query import Query
from bot.ranking import Focus, RankingMemo, rank_files

EditKind = Literal["add", "change", "delete", "rename"]
KINDS: tuple[EditKind, ...] = ("add", "change", "delete", "rename")

# The words that name each kind. The first of them in the instruction's subject
# line decides: it is the verb, usually ("fix the code that removes X" is a change).
_WORDS_OF: tuple[tuple[EditKind, str], ...] = (
    ("rename", "rename renames renaming move moves"),
    ("delete", "delete deletes remove removes drop drops eliminate strip"),
    ("add", "add adds create creates implement implements introduce introduces new support write"),
    ("change", "change changes fix fixes update updates make modify replace refactor rewrite improve"),
)
_KIND_WORDS: dict[str, EditKind] = {word: kind for kind, words in _WORDS_OF for word in words.split()}
_WORD_RE = re.compile(r"[A-Za-z]+")
UNKNOWN_LANGUAGE = "unknown"


@dataclass(frozen=True)
class Features:
    kind: EditKind
    language: str
    words: int  # in the instruction
    files: int = 0  # in the plan (0: no plan yet)
    symbols: int = 0  # the planned files' definitions the plan names

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        return f"'{self.kind}' in {self.language}"


def kind_from_words(instruction: str) -> EditKind | None:
    """The kind the subject line's words name, or None when they name none."""
    subject = next((line for line in instruction.splitlines() if line.strip()), "")
    for word in _WORD_RE.findall(subject.lower()):
        if word in _KIND_WORDS:
            return _KIND_WORDS[word]
    return None


def kind_from_change(originals: Mapping[str, str | None], changes: Mapping[str, str]) -> EditKind:
    """What a change did: only new files is an add, only lost lines a delete."""
    if changes and all(originals.get(p) is None for p in changes):
        return "add"
    if changes and all(_only_removes(originals.get(p), new) for p, new in changes.items()):
        return "delete"
    return "change"


def _only_removes(before: str | None, after: str) -> bool:
    old, new = (before or "").splitlines(), after.splitlines()
    return len(new) < len(old) and set(new) <= set(old)


def likely_language(index: RepoIndex, query: Query, focus: Focus | None, memo: RankingMemo) -> str:
    """The language of the file the request points at: a review comment's file,
    else the one the instruction ranks first."""
    if focus is not None:
        return _language(index, focus.path)
    ranked = rank_files(index, query, focus, memo)
    if not ranked or ranked[0][1] <= 0:
        return UNKNOWN_LANGUAGE
    return _language(index, ranked[0][0])


def _language(index: RepoIndex, path: str) -> str:
    info = index.files.get(path)
    return info.language if info is not None else language_of(path)


def of_request(instruction: str, language: str) -> Features:
    """What is known before any tier plans: the kind the words name ("change"
    when they name none), the language, the instruction's length."""
    return Features(kind_from_words(instruction) or "change", language, len(instruction.split()))


def with_plan(features: Features, index: RepoIndex, paths: Collection[str], plan_text: str) -> Features:
    """The plan's files and the definitions in them it names; the language is
    the planned files' (the most of them, the first on a tie)."""
    if not paths:
        return features
    languages = Counter(_language(index, p) for p in paths)
    named = set(IDENT_RE.findall(plan_text))
    symbols = {
        (p, sym.name)
        for p in paths
        if p in index.files
        for sym in index.files[p].symbols
        if sym.name in named
    }
    language = languages.most_common(1)[0][0]
    return replace(features, language=language, files=len(paths), symbols=len(symbols))


def with_change(
    features: Features, instruction: str, originals: Mapping[str, str | None], changes: Mapping[str, str]
) -> Features:
    """An instruction whose words name no kind takes its change's."""
    if kind_from_words(instruction) is not None:
        return features
    return replace(features, kind=kind_from_change(originals, changes))
