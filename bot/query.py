"""The instruction as a query: what in it is a path, a code name, a phrase, and
whether it speaks of tests, docs or the changelog.

One set of rules for every reader: the planner (`bot.edit`) looks up the paths
and code names it finds here, the ranker (`bot.context`) weighs the same words.
The engine parses an instruction once and hands the result to both.

- A path is a word shaped like a file name with a known extension, with or
  without directories: `httpx/_models.py`, `tax.py`.
- A code name is an identifier written as code: in backticks, followed by
  `(`, dotted (`Invoice.total`), snake_case, camelCase or `_private`. A plain
  English word ("add") never is, even when some function is called that.
- A phrase is a run of two to four words joined by spaces or hyphens, which may
  spell an identifier ("run command" for `run_command`).
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

from bot.index import IDENT_RE, LANGUAGES, STOPWORDS, identifier_terms, split_identifier, stem

# Words that say what kind of change it is, not where: weak evidence.
_GENERIC_WORDS = """
    fix fixes fixed fixing add added adds adding update updated updates use used uses using support
    supported make makes made change changes changed remove removed removes allow allows allowed improve
    improved handle handled issue issues bug bugs pr merge merged lint linting typo refactor cleanup clean
    code new now instead correct correctly properly proper better minor small close closes closed see ref
    bump version release work works working case cases way like want need needs needed thing things some
    time first also still should get set call called return returns value values default defaults option
    options run running check
"""
GENERIC_TERMS = frozenset(stem(w) for w in _GENERIC_WORDS.split())

SUBJECT_WEIGHT = 1.0
BODY_WEIGHT = 0.4
GENERIC_WEIGHT = 0.2
CODE_WEIGHT = 2.0
BODY_MENTION = 0.3  # a name in the body is worth this share of one in the subject
PHRASE_WEIGHT = 0.5  # words spelling an identifier ("content type"): partly the evidence of the words alone
PHRASE_WORDS = 4  # the longest phrase that may spell one identifier

# Extensions that make a word a path: the indexed languages' and a few more.
_EXTENSIONS = sorted(
    {s.lstrip(".") for s in LANGUAGES} | {"cfg", "ini", "in", "lock", "env", "sql", "xml", "scm"},
    key=lambda e: (-len(e), e),
)
_URL_RE = re.compile(r"https?://\S+")
_REF_RE = re.compile(r"(?<![\w&])#\d+|\bgh-\d+\b", re.IGNORECASE)
_BACKTICK_RE = re.compile(r"`([^`\n]+)`")
PATH_RE = re.compile(
    r"(?<![\w/.-])((?:[\w.-]+/)*[\w-]*\w\.(?:" + "|".join(_EXTENSIONS) + r"))(?![\w/])", re.IGNORECASE
)
_DOTTED_RE = re.compile(r"(?<![\w.])[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+", re.ASCII)
# A word as code may write it: an identifier, dotted or not, maybe called.
# ASCII as IDENT_RE is: a code name is one the index can hold.
_CODE_WORD_RE = re.compile(r"(?<![\w.])([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)(\()?", re.ASCII)
_CAMEL_RE = re.compile(r"[a-z][A-Z]")
_TEST_WORD_RE = re.compile(r"\b(?:tests?|testing|pytest|unittest|test_\w+|\w+_test)\b", re.IGNORECASE)
_DOCS_WORD_RE = re.compile(r"\b(?:docs?|documentation|readme|changelog|changes)\b", re.IGNORECASE)
_CHANGELOG_WORD_RE = re.compile(r"\b(?:change ?log|changes|history|news|release notes?)\b", re.IGNORECASE)
# Words joined only by spaces or hyphens read as one phrase ("run command", "--debug-port");
# any other punctuation ends it.
_PHRASE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:[ \t-]+[A-Za-z_][A-Za-z0-9_]*)+")


@dataclass(frozen=True)
class Query:
    text: str  # the instruction as given
    weights: dict[str, float]  # stemmed term -> weight
    code_words: tuple[str, ...]  # code as written, in order, dotted names whole: `Calc.clear`, format()
    code_names: frozenset[str]  # the identifiers in them: Calc, clear, format
    subject_code_names: frozenset[str]  # those of them in the subject line
    words: frozenset[str]  # every identifier as written
    phrases: frozenset[str]  # runs of words that may spell one identifier: "run command" -> "runcommand"
    paths: tuple[str, ...]  # path-shaped words of the instruction, in order
    path_mentions: dict[str, float]  # paths and dotted modules ("httpx._models") -> strength
    test_factor: float  # how much test files are worth
    docs: bool  # the subject talks about documentation
    changelog: bool  # ... or about the changelog


def parse_query(instruction: str, extra: str = "") -> Query:
    """The instruction read once. `extra` (a review comment's diff hunk) adds
    words to rank by, at the body's weight; the planner never reads it."""
    text = _clean(instruction)
    lines = [line for line in text.splitlines() if line.strip()]
    subject = lines[0] if lines else ""
    body = "\n".join(lines[1:])
    code_words = _code_words(text)
    code_names = _names(code_words)
    parts = (
        (subject, SUBJECT_WEIGHT, 1.0),
        (body, BODY_WEIGHT, BODY_MENTION),
        (extra, BODY_WEIGHT, BODY_MENTION),
    )
    weights: dict[str, float] = {}
    mentions: dict[str, float] = {}
    phrases: set[str] = set()
    for part, weight, mention_weight in parts:
        for mention in mentions_in(part):
            mentions[mention] = max(mentions.get(mention, 0.0), mention_weight)
        _weigh_words(part, weight, code_names, weights)
        _weigh_phrases(part, weight, phrases, weights)
    return Query(
        text=instruction,
        weights=weights,
        code_words=tuple(code_words),
        code_names=code_names,
        subject_code_names=frozenset(IDENT_RE.findall(subject)) & code_names,
        words=frozenset(IDENT_RE.findall(text)),
        phrases=frozenset(phrases),
        paths=tuple(dict.fromkeys(path_words(instruction))),
        path_mentions=mentions,
        test_factor=_test_factor(subject, body),
        docs=bool(_DOCS_WORD_RE.search(subject)),
        changelog=bool(_CHANGELOG_WORD_RE.search(subject)),
    )


def _clean(text: str) -> str:
    """Links and issue references name no code."""
    return _REF_RE.sub(" ", _URL_RE.sub(" ", text))


def _weigh_words(part: str, weight: float, code_names: Collection[str], weights: dict[str, float]) -> None:
    """Code-looking words count more than prose, change-kind words ("fix") little."""
    # "httpx/_models.py" says httpx and models; the extension says nothing.
    prose = PATH_RE.sub(lambda m: m.group(1).rsplit(".", 1)[0], part)
    for ident in IDENT_RE.findall(prose):
        factor = CODE_WEIGHT if ident in code_names else 1.0
        for term in identifier_terms(ident):
            w = weight * factor * (GENERIC_WEIGHT if term in GENERIC_TERMS else 1.0)
            weights[term] = max(weights.get(term, 0.0), w)


def _weigh_phrases(part: str, weight: float, phrases: set[str], weights: dict[str, float]) -> None:
    for words in phrase_parts(part):
        phrases.add(phrase_key(words))
        # The index keeps a several-part identifier whole as well ("run_command", "runcommand"):
        # a phrase that spells it names it, however generic its words are alone.
        for term in ("_".join(words), "".join(words)):
            weights[term] = max(weights.get(term, 0.0), weight * PHRASE_WEIGHT)


def _test_factor(subject: str, body: str) -> float:
    if _TEST_WORD_RE.search(subject):
        return 1.0
    if _TEST_WORD_RE.search(body):
        return 0.6
    return 0.3


# --------------------------------------------------------------------------
# The rules


def path_words(text: str) -> list[str]:
    """Words shaped like a file path, as written (without a leading `./`)."""
    return [m.group(1).removeprefix("./") for m in PATH_RE.finditer(text)]


def mentions_in(text: str) -> list[str]:
    """Paths, and dotted names that may be modules (`httpx._models`)."""
    found = [m.group(1).lstrip("./") for m in PATH_RE.finditer(text)]
    found += [m.group(0) for m in _DOTTED_RE.finditer(text) if not PATH_RE.fullmatch(m.group(0))]
    return found


def _code_words(text: str) -> list[str]:
    """Words written as code, in order, each once; paths are not code words."""
    words: list[str] = []
    for span in _BACKTICK_RE.findall(text):
        words.extend(m.group(1) for m in _CODE_WORD_RE.finditer(PATH_RE.sub(" ", span)))
    prose = PATH_RE.sub(" ", _BACKTICK_RE.sub(" ", text))
    words.extend(
        m.group(1) for m in _CODE_WORD_RE.finditer(prose) if _looks_like_code(m.group(1), m.group(2))
    )
    return [w for w in dict.fromkeys(words) if _names([w])]


def _looks_like_code(word: str, call: str | None) -> bool:
    core = word.strip("_")
    return bool(
        call or "." in word or "_" in core or _CAMEL_RE.search(core) or (word.startswith("_") and core)
    )


def _names(code_words: Collection[str]) -> frozenset[str]:
    """The identifiers of code words; one letter and stopwords never name code."""
    parts = (part for word in code_words for part in word.split("."))
    return frozenset(p for p in parts if len(p) > 1 and p.lower() not in STOPWORDS)


def phrase_parts(text: str) -> list[list[str]]:
    """Every run of two to `PHRASE_WORDS` adjacent words, as identifier parts;
    runs of stopwords only ("is not") are left out."""
    found: list[list[str]] = []
    for m in _PHRASE_RE.finditer(text):
        words = [split_identifier(w) for w in IDENT_RE.findall(m.group(0))]
        for i in range(len(words)):
            for j in range(i + 2, min(len(words), i + PHRASE_WORDS) + 1):
                parts = [p for w in words[i:j] for p in w]
                if any(p not in STOPWORDS for p in parts):
                    found.append(parts)
    return found


def phrase_key(parts: Collection[str]) -> str:
    """One spelling for `run_command`, `RunCommand` and "run command"."""
    return "".join(parts)


def spelled_by_phrase(name: str, query: Query) -> bool:
    """Whether the instruction writes the identifier `name` out as words."""
    parts = split_identifier(name)
    return len(parts) > 1 and phrase_key(parts) in query.phrases
