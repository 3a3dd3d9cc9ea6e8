"""The engine's progress events as each surface shows them: the status
comment (bot.messages), the CLI (bot.report) and the log line (log_fields)."""

from __future__ import annotations

from bot import messages, report
from bot.progress import (
    ContextChosen,
    EnvironmentReady,
    Generated,
    Planned,
    Progress,
    Refused,
    Routed,
    TestsRan,
    Verified,
    log_fields,
)
from bot.verify import TestRun

RUN = TestRun("python -m pytest -q", 17, 1, 0, 2, duration_s=3.25)
EVENTS: list[Progress] = [
    ContextChosen("tiny", ["a.py", "b.py"], 1234, 4000),
    Planned("tiny", ["a.py"], "model"),
    Generated("tiny", ["a.py"]),
    Verified("tiny", ["a.py"]),
    Refused("tiny", "syntax_error", "syntax errors: a.py:3: invalid syntax\nmore detail"),
    EnvironmentReady("test environment built in 2.0s"),
    TestsRan("before", RUN),
    TestsRan("after", RUN, "tiny"),
]


def test_the_status_comment_has_a_line_per_event() -> None:
    assert [messages.progress_line(e) for e in EVENTS] == [
        "✅ context chosen: 2 files, 1,234 tokens (tier `tiny`)",
        "✅ plan: `a.py` (tier `tiny`)",
        "✅ edits generated (tier `tiny`)",
        "✅ applied: `a.py` (tier `tiny`)",
        "↪️ tier `tiny` failed (syntax_error): syntax errors: a.py:3: invalid syntax",
        "✅ test environment built in 2.0s",
        "✅ tests before: 17 passed, 1 failed, 0 errors in 3.2s",
        "✅ tests after: 17 passed, 1 failed, 0 errors in 3.2s (tier `tiny`)",
    ]


def test_the_cli_has_a_line_per_event() -> None:
    lines = [report.progress_line(e) for e in EVENTS]
    assert lines[0] == "context: 2 files, 1234 tokens"
    assert lines[4].startswith("failed (syntax_error): syntax errors: a.py:3")
    assert lines[6] == "tests before: 17 passed, 1 failed, 0 errors in 3.2s"


def test_a_long_refusal_is_cut_in_the_comment() -> None:
    line = messages.progress_line(Refused("tiny", "apply_failed", "x" * 500))
    assert line.endswith("x…") and len(line) < 260


def test_log_fields_are_counts_never_contents() -> None:
    stages = ["context", "plan", "generated", "applied", "tier_failed", "environment"]
    assert [e.stage for e in EVENTS] == [*stages, "tests_before", "tests_after"]
    assert log_fields(EVENTS[0]) == {"tier": "tiny", "files": 2}
    assert log_fields(EVENTS[4]) == {"tier": "tiny", "outcome": "syntax_error"}
    assert log_fields(EVENTS[6]) == {
        "passed": 17, "failed": 1, "errors": 0, "timed_out": False, "duration_s": 3.25,
    }  # fmt: skip


def test_the_route_is_one_line_on_every_surface() -> None:
    line = "route: started at tier small (verified 8/10 on 'change' in python)"
    event = Routed("small", ["small", "big"], line)
    assert messages.progress_line(event) == f"🧭 {line}"
    assert report.progress_line(event) == line
    assert event.stage == "route"
    assert log_fields(event) == {"tier": "small", "order": "small,big"}
