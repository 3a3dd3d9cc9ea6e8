"""Ranking: a repository's files scored for an instruction, most relevant first.

Code does what code can: ranking is lexical (BM25 over identifier sub-words,
symbol names and path parts) plus literal mentions and the import graph; no
model is asked. Trimming the ranked files to a budget is bot.context's.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from bot.files import is_test_path
from bot.index import IDENT_RE, FileInfo, IndexDelta, RepoIndex, identifier_terms
from bot.query import BODY_MENTION, PATH_RE, Query, parse_query
from bot.terms import TermTable

_CODE_LANGUAGES = "python javascript typescript go rust java kotlin ruby php c cpp csharp swift shell"
CODE_LANGUAGES = frozenset(_CODE_LANGUAGES.split())
AUX_DIRS = frozenset(
    {"docs", "doc", "examples", "example", "samples", "sample", "benchmarks", "bench", "scripts"}
)
AUX_FILES = frozenset(
    {"setup.py", "conftest.py", "noxfile.py", "tasks.py", "fabfile.py", "conf.py", "manage.py"}
)

# BM25F-like weights: a term in a symbol name or the path says more than one in the text.
K1 = 1.2
B = 0.4
W_SYMBOL = 3.0
W_PATH = 4.0
PATH_BOOST = 2.0  # a file named in the subject line: twice the best lexical score
SPREAD = 0.3  # share of a top hit's score its import-graph neighbours get (split by degree)
SPREAD_SOURCES = 5  # the top hits that spread


_CHANGELOG_NAME_RE = re.compile(r"^(?:change(?:s|log)|history|news|releases?)(?:\.\w+)?$", re.IGNORECASE)


@dataclass
class Focus:
    """A review comment's place: that span goes in full."""

    path: str
    start_line: int
    end_line: int
    hunk: str | None = None


@dataclass
class NameStats:
    """Path terms per file, the corpus's term tables, document lengths and who
    defines each name, built once per index. Counts of the words and of the
    symbols' names are looked up per query term: a query needs a few dozen terms,
    not the corpus's all."""

    postings: dict[str, dict[str, float]]  # term -> {path: weight from the path}
    text: TermTable  # the files' words
    symbols: TermTable  # the words of the files' symbol names
    lengths: dict[str, float]
    avg_length: float
    defs: dict[str, set[str]]  # symbol name -> defining files


@dataclass
class RankingMemo:
    """What ranking derives from one index, kept by the run that owns the index
    so later calls (one per tier) reuse it."""

    index: RepoIndex
    names: NameStats | None = None
    postings: dict[str, dict[str, float]] = field(default_factory=dict)  # the terms asked for so far

    def name_stats(self) -> NameStats:
        if self.names is None:
            self.names = name_stats(self.index)
        return self.names


def name_stats(index: RepoIndex) -> NameStats:
    """The index's statistics, made once and kept with it; from the kept index's
    it was built from, only the changed files are counted again."""
    if index.ranking_stats is None:
        delta = index.delta
        if delta is not None and delta.stats is not None:
            index.ranking_stats = _updated(delta.stats, index, delta)
        else:
            index.ranking_stats = _name_stats(index)
        index.delta = None  # the kept index's statistics are let go
    return index.ranking_stats


def _defined(info: FileInfo) -> set[str]:
    return {sym.name for sym in info.symbols if sym.kind != "section"}


def _updated(old: NameStats, index: RepoIndex, delta: IndexDelta) -> NameStats:
    """`old` with the changed and removed files counted again. Copied where written:
    a run still ranking with the kept index keeps its statistics as they were."""
    postings = dict(old.postings)
    defs = dict(old.defs)
    for path, before in [*delta.changed.items(), *delta.removed.items()]:
        if before is None:
            continue
        for name in _defined(before):
            defs[name] = defs[name] - {path}
            if not defs[name]:
                del defs[name]
        if path not in index.files:
            for term in set(path_terms(path)):
                row = {p: w for p, w in postings[term].items() if p != path}
                if row:
                    postings[term] = row
                else:
                    del postings[term]
    for path, before in delta.changed.items():
        for name in _defined(index.files[path]):
            defs[name] = defs.get(name, set()) | {path}
        if before is None:
            for term in path_terms(path):
                postings[term] = row = dict(postings.get(term, {}))
                row[path] = row.get(path, 0.0) + W_PATH
    return _stats(index, postings, defs)


def _name_stats(index: RepoIndex) -> NameStats:
    postings: dict[str, dict[str, float]] = {}
    defs: dict[str, set[str]] = {}
    for path, info in index.files.items():
        for sym in info.symbols:
            if sym.kind != "section":
                defs.setdefault(sym.name, set()).add(path)
        for term in path_terms(path):
            _bump(postings, term, path, W_PATH)
    return _stats(index, postings, defs)


def _stats(index: RepoIndex, postings: dict[str, dict[str, float]], defs: dict[str, set[str]]) -> NameStats:
    lengths = {path: info.terms.total + 1.0 for path, info in index.files.items()}
    return NameStats(
        postings=postings,
        text=TermTable((p, f.terms) for p, f in index.files.items()),
        symbols=TermTable((p, f.names) for p, f in index.files.items()),
        lengths=lengths,
        avg_length=sum(lengths.values()) / max(1, len(lengths)),
        defs=defs,
    )


def _bump(postings: dict[str, dict[str, float]], term: str, path: str, weight: float) -> None:
    row = postings.setdefault(term, {})
    row[path] = row.get(path, 0.0) + weight


# Paths are split with str methods, not PurePosixPath: ranking looks at every
# path of the repository per query, and building path objects cost more than the rest.


def _split(path: str) -> tuple[list[str], str, str]:
    """(directories, name, stem), as PurePosixPath's parent.parts, name and stem."""
    *dirs, name = path.split("/")
    dot = name.rfind(".")
    return dirs, name, name[:dot] if 0 < dot < len(name) - 1 else name


def path_terms(path: str) -> list[str]:
    dirs, _, file_stem = _split(path)
    parts = [*dirs, file_stem]
    terms: list[str] = []
    for part in parts:
        for ident in IDENT_RE.findall(part):
            terms.extend(identifier_terms(ident))
    return terms


def role_factor(info: FileInfo, query: Query) -> float:
    """Tests and auxiliary files (docs, examples, setup) rank lower unless asked for."""
    if is_test_path(info.path):
        return query.test_factor
    dirs, name, file_stem = _split(info.path)
    if _CHANGELOG_NAME_RE.match(name):
        # A changelog mentions everything, in the very words of commit messages.
        return 0.8 if query.changelog else 0.1
    if info.language not in CODE_LANGUAGES:
        return 0.8 if query.docs else 0.35
    if any(p in AUX_DIRS for p in dirs) or name in AUX_FILES:
        return 0.5
    if name.endswith(".pyi") and file_stem != name:
        return 0.6  # a stub mirrors its module's names; the module is where code changes
    return 1.0


def _bm25(memo: RankingMemo, names: NameStats, query: Query) -> dict[str, float]:
    index = memo.index
    scores: dict[str, float] = {}
    n_files = len(index.files)
    for term, weight in query.weights.items():
        posting = memo.postings.get(term)
        if posting is None:
            posting = memo.postings[term] = _posting(names, term)
        if not posting:
            continue
        idf = math.log(1.0 + (n_files - len(posting) + 0.5) / (len(posting) + 0.5))
        for path, tf in posting.items():
            norm = K1 * (1.0 - B + B * names.lengths[path] / names.avg_length)
            scores[path] = scores.get(path, 0.0) + weight * idf * tf * (K1 + 1.0) / (tf + norm)
    return scores


def _posting(names: NameStats, term: str) -> dict[str, float]:
    """path -> weighted count of `term`: in the text, in symbol names, in the path."""
    tf = {path: float(n) for path, n in names.text.postings(term).items()}
    for path, n in names.symbols.postings(term).items():
        tf[path] = tf.get(path, 0.0) + W_SYMBOL * n
    for path, weight in names.postings.get(term, {}).items():
        tf[path] = tf.get(path, 0.0) + weight
    return tf


def _path_matches(index: RepoIndex, mention: str) -> list[str]:
    """Files a literal mention names: a path, a path suffix, a file name or a dotted module."""
    if "/" in mention or PATH_RE.fullmatch(mention):
        return [p for p in index.files if p == mention or p.endswith("/" + mention)]
    slashed = mention.replace(".", "/")
    hits: list[str] = []
    for suffix in (f"{slashed}.py", f"{slashed}/__init__.py"):
        hits.extend(p for p in index.files if p == suffix or p.endswith("/" + suffix))
    return hits


def _literal_boosts(index: RepoIndex, names: NameStats, query: Query) -> dict[str, float]:
    """Relative boosts (in units of the best lexical score) for files named
    literally: by path, by a symbol written as code, by a class name."""
    boosts: dict[str, float] = {}
    for mention, strength in query.path_mentions.items():
        hits = _path_matches(index, mention)
        for path in hits:
            boosts[path] = boosts.get(path, 0.0) + PATH_BOOST * strength / len(hits)
    for name in query.words:
        owners = names.defs.get(name)
        if not owners or len(owners) > 8:
            continue
        if name in query.subject_code_names:
            strength = 1.0
        elif name in query.code_names:
            strength = BODY_MENTION
        elif name[:1].isupper() and len(name) > 2:
            strength = 0.4  # "Response", "Client": a class named in prose
        else:
            continue
        for path in owners:
            boosts[path] = boosts.get(path, 0.0) + strength / len(owners)
    return boosts


def rank_files(
    index: RepoIndex, instruction: str | Query, focus: Focus | None = None, memo: RankingMemo | None = None
) -> list[tuple[str, float]]:
    """Every indexed file with a relevance score, most relevant first."""
    query = as_query(instruction, focus)
    return rank_paths(memo if memo is not None else RankingMemo(index), query, focus)


def as_query(instruction: str | Query, focus: Focus | None) -> Query:
    if isinstance(instruction, Query):
        return instruction
    return parse_query(instruction, (focus.hunk or "") if focus else "")


def rank_paths(memo: RankingMemo, query: Query, focus: Focus | None) -> list[tuple[str, float]]:
    index = memo.index
    names = memo.name_stats()
    lexical = _bm25(memo, names, query)
    top = max(lexical.values(), default=0.0) or 1.0
    boosts = _literal_boosts(index, names, query)
    base: dict[str, float] = {}
    for path, info in index.files.items():
        score = lexical.get(path, 0.0) * role_factor(info, query) + boosts.get(path, 0.0) * top
        if score > 0:
            base[path] = score
    if focus is not None and focus.path in index.files:
        base[focus.path] = base.get(focus.path, 0.0) + 10.0 * top
    scores = dict(base)
    # Spread relevance to the import-graph neighbours of the best hits.
    for path, score in sorted(base.items(), key=lambda kv: (-kv[1], kv[0]))[:SPREAD_SOURCES]:
        neighbours = set(index.files[path].imports) | set(index.importers(path))
        if not neighbours:
            continue
        share = SPREAD * score / math.sqrt(len(neighbours))
        for other in neighbours:
            scores[other] = scores.get(other, 0.0) + share * role_factor(index.files[other], query)
    ranked = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
    # Unscored files last: code before the rest, much-imported first.
    rest = sorted(
        (p for p in index.files if p not in scores),
        key=lambda p: (-role_factor(index.files[p], query), -len(index.importers(p)), p),
    )
    return ranked + [(p, 0.0) for p in rest]
