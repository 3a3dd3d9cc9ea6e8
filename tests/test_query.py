"""bot.query: one reading of the instruction for the planner and the ranker."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.index import STOPWORDS
from bot.query import parse_query, spelled_by_phrase


@pytest.mark.parametrize(
    ("instruction", "paths"),
    [
        ("fix the help text in calculator/cli.py.", ("calculator/cli.py",)),
        ("tidy ./operations.py and docs/index.md", ("operations.py", "docs/index.md")),
        ("see src/app.ts, then main.go", ("src/app.ts", "main.go")),
        ("Refactor shop.shipping", ()),  # a dotted module, not a file
        ("bump to v1.2.3", ()),
    ],
)
def test_paths(instruction: str, paths: tuple[str, ...]) -> None:
    assert parse_query(instruction).paths == paths


@pytest.mark.parametrize(
    ("instruction", "code_words"),
    [
        ("make `memory_recall` return 0", ("memory_recall",)),
        ("format_number() should round", ("format_number",)),
        ("Fix rounding in Invoice.compute_total", ("Invoice.compute_total",)),
        ("rename parseUrl and _private_helper", ("parseUrl", "_private_helper")),
        ("call helper(x) twice", ("helper",)),
        ("add memory clear", ()),  # plain words, whatever functions are called
        ("edit calculator/cli_main.py", ()),  # a path is not a code word
        ("`a` and `the`", ()),  # one letter and stopwords never name code
    ],
)
def test_code_words(instruction: str, code_words: tuple[str, ...]) -> None:
    assert parse_query(instruction).code_words == code_words


def test_the_subject_counts_more_and_the_hunk_only_ranks() -> None:
    query = parse_query("Fix `parse_date`\n\nalso parse_time is odd", extra="def hunk_only(): pass")
    assert query.subject_code_names == {"parse_date"}
    assert {"parse_date", "parse_time"} <= query.code_names
    assert "hunk_only" not in query.code_names and "hunk_only" not in query.code_words
    assert query.weights["hunk_only"] > 0  # the hunk's words still rank
    assert query.weights["parse_date"] > query.weights["parse_time"]


def test_test_docs_and_changelog_words() -> None:
    assert parse_query("Add tests for the parser").test_factor == 1.0
    assert parse_query("Fix the parser\n\nwith a test").test_factor == 0.6
    assert parse_query("Fix the parser").test_factor == 0.3
    assert parse_query("Update the docs").docs and not parse_query("Update the parser").docs
    assert parse_query("Add a changelog entry").changelog


def test_links_and_issue_numbers_name_nothing() -> None:
    query = parse_query("Fix #123, see https://example.com/foo_bar.py")
    assert query.paths == () and query.code_words == () and "foo_bar" not in query.words


def test_phrases_spell_identifiers() -> None:
    query = parse_query("the run command ignores --debug-port")
    assert spelled_by_phrase("run_command", query) and spelled_by_phrase("debugPort", query)
    assert not spelled_by_phrase("run", query)


_WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=2, max_size=8)


@given(st.lists(_WORD, min_size=1, max_size=12))
def test_plain_prose_holds_no_code(words: list[str]) -> None:
    query = parse_query(" ".join(words))
    assert query.code_words == () and query.code_names == frozenset() and query.paths == ()


@given(
    st.lists(_WORD.filter(lambda w: w not in STOPWORDS), min_size=2, max_size=3), st.lists(_WORD, max_size=6)
)
def test_a_snake_case_name_in_prose_is_code(parts: list[str], prose: list[str]) -> None:
    name = "_".join(parts)
    query = parse_query(" ".join([*prose, name, *prose]))
    assert name in query.code_words and name in query.code_names and name in query.subject_code_names


@given(st.text(max_size=200))
def test_any_text_parses_consistently(text: str) -> None:
    query = parse_query(text)
    assert query.subject_code_names <= query.code_names
    assert all(
        part in query.code_names or len(part) < 2 or part.lower() in STOPWORDS
        for word in query.code_words
        for part in word.split(".")
    )
    assert query.code_names <= query.words
    assert all(w > 0 for w in query.weights.values())
    assert parse_query(text) == query
