"""Parsing `/edit` out of comments: pure functions."""

from __future__ import annotations

import pytest

from bot.commands import USAGE, Command, is_bot, issue_instruction, parse_comment


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("/edit add memory clear", Command("edit", "add memory clear")),
        ("/edit   add memory clear  ", Command("edit", "add memory clear")),
        ("Please:\n/edit add memory clear", Command("edit", "add memory clear")),
        ("  /edit indented a little", Command("edit", "indented a little")),
        ("/Edit add memory clear", Command("edit", "add memory clear")),
        (
            "/edit add memory clear\r\nand document it\r\n\r\nthanks",
            Command("edit", "add memory clear\nand document it"),
        ),
        ("/edit", Command("edit", "")),
        ("/edit\nadd memory clear", Command("edit", "add memory clear")),
        ("/edit help", Command("help")),
        ("/edit HELP", Command("help")),
        ("/retest\n/edit add memory clear", Command("edit", "add memory clear")),
        ("/edit first\n/edit second", Command("edit", "first")),
    ],
)
def test_commands(body: str, expected: Command) -> None:
    assert parse_comment(body) == expected


@pytest.mark.parametrize(
    "body",
    [
        None,
        "",
        "no command here",
        "see /edit add memory clear",  # not at the start of a line
        "/editor add memory clear",
        "/edits add memory clear",
        "/retest",
        "> /edit add memory clear",
        ">> /edit nested quote",
        "```\n/edit add memory clear\n```",
        "~~~python\n/edit add memory clear\n~~~",
        "````\n```\n/edit still inside the outer fence\n```\n````",
        "    /edit indented code block",
    ],
)
def test_not_commands(body: str | None) -> None:
    assert parse_comment(body) is None


def test_code_after_a_closed_fence_counts() -> None:
    assert parse_comment("```\n/edit no\n```\n/edit yes") == Command("edit", "yes")


def test_instruction_stops_at_quotes_and_fences() -> None:
    body = "/edit add memory clear\n> quoted reply\n```\ncode\n```"
    assert parse_comment(body) == Command("edit", "add memory clear")


def test_issue_instruction() -> None:
    assert issue_instruction(" Add memory clear ", "  With an `mc` command.\n") == (
        "Add memory clear\n\nWith an `mc` command."
    )
    assert issue_instruction("Add memory clear", None) == "Add memory clear"


@pytest.mark.parametrize(
    ("login", "kind", "expected"),
    [
        ("octocat", "User", False),
        ("patchling[bot]", "Bot", True),
        ("renovate[bot]", "User", True),
        ("github-actions", "Bot", True),
        (None, None, False),
    ],
)
def test_is_bot(login: str | None, kind: str | None, expected: bool) -> None:
    assert is_bot(login, kind) is expected


def test_usage_names_every_command() -> None:
    for text in ("/edit <instruction>", "/edit help", ".github/patchling.yml", "write"):
        assert text in USAGE
