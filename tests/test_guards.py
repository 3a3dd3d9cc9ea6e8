"""The guards on a generated change: no shrinking nobody asked for, no binary content, within the caps."""

from __future__ import annotations

from bot.config import ChangeCaps
from bot.guards import (
    MAX_SHRINK,
    MIN_LINES,
    binary_problem,
    binary_problems,
    cap_problems,
    changed_lines,
    shrink_problem,
    shrink_problems,
    size_problem,
    top_level_names,
)

MODULE = '''"""Sessions."""


def merge_hooks(a, b):
    return a + b


class Session:
    def get(self, url):
        return url


def session():
    return Session()
'''


def test_losing_a_definition_nobody_named_is_refused() -> None:
    documented = MODULE.replace("def merge_hooks(a, b):", 'def merge_hooks(a, b):\n    """Doc."""')
    truncated = documented.split("class Session")[0]
    problem = shrink_problem("src/requests/sessions.py", MODULE, truncated, "add a docstring to merge_hooks")
    assert problem is not None
    assert "removes Session, session, which" in problem and "src/requests/sessions.py" in problem


def test_losing_a_method_nobody_named_is_refused() -> None:
    without_get = MODULE.replace("    def get(self, url):\n        return url\n", "    pass\n")
    problem = shrink_problem("s.py", MODULE, without_get, "add a docstring to merge_hooks")
    assert problem == "s.py: the change removes Session.get, which the request does not mention"
    assert shrink_problem("s.py", MODULE, without_get, "replace Session.get with a property") is None
    assert shrink_problem("s.py", MODULE, without_get, "fold get into the constructor") is None


def test_named_or_requested_removals_pass() -> None:
    without = MODULE.replace("def session():\n    return Session()\n", "")
    assert shrink_problem("s.py", MODULE, without, "inline the session helper into callers") is None
    assert shrink_problem("s.py", MODULE, without, "Remove the unused helper") is None
    assert shrink_problem("s.py", MODULE, MODULE + "\n\ndef extra():\n    pass\n", "add extra") is None
    assert shrink_problem("new.py", None, "x = 1\n", "add new.py") is None


def test_a_large_share_of_lines_lost_is_refused_for_any_language() -> None:
    before = "".join(f"line {n}\n" for n in range(100))
    cut = int(100 * (1 - MAX_SHRINK)) - 1  # just over the share
    kept = "".join(before.splitlines(keepends=True)[:cut])
    problem = shrink_problem("README.md", before, kept, "fix a typo")
    assert (
        problem
        == "README.md: the change shrinks the file from 100 to 69 lines, which the request does not ask for"
    )
    at_limit = "".join(before.splitlines(keepends=True)[: int(100 * (1 - MAX_SHRINK))])
    assert shrink_problem("README.md", before, at_limit, "fix a typo") is None
    small = "".join(f"line {n}\n" for n in range(MIN_LINES - 1))
    assert shrink_problem("notes.txt", small, "line 0\n", "fix a typo") is None


def test_unparsable_python_skips_only_the_definition_rule() -> None:
    assert top_level_names("def f(:\n") is None
    assert top_level_names(MODULE) == ["merge_hooks", "Session", "Session.get", "session"]
    assert shrink_problem("old.py", "print 'py2'\n", "print('py3')\n", "port to python 3") is None


def test_every_changed_file_is_checked() -> None:
    originals = {"a.py": MODULE, "b.py": MODULE, "c.py": None}
    changes = {"a.py": MODULE + "# ok\n", "b.py": "", "c.py": "x = 1\n"}
    (problem,) = shrink_problems(originals, changes, "tidy up")
    assert problem.startswith("b.py:")


# -- content and caps -----------------------------------------------------------

CAPS = ChangeCaps(max_files=3, max_file_bytes=100, max_changed_lines=10)


def test_nul_bytes_are_binary() -> None:
    assert binary_problem("a.txt", "text\n", "text\n\0\0") is not None
    assert "NUL" in (binary_problem("new.bin", None, "\x89PNG\r\n\x1a\n\0\0\0") or "")
    assert binary_problem("a.txt", "text\n", "more text, ünïcode ✓\n") is None


def test_text_that_stops_being_utf8_is_binary() -> None:
    # A lone surrogate is written as a raw non-UTF-8 byte (surrogateescape).
    assert "not UTF-8" in (binary_problem("a.txt", "text\n", "text \udcff\n") or "")
    assert binary_problem("new.txt", None, "\udc80") is not None
    # A Latin-1 file edited around its own bytes stays as it was: not refused.
    assert binary_problem("latin.txt", "caf\udce9\n", "caf\udce9\nthé\n") is None
    assert binary_problems({"a": None}, {"a": "ok\n", "b": "x\0"}) == [
        "b: the new content has NUL bytes; binary files are never written"
    ]


def test_file_size_cap_counts_written_bytes() -> None:
    assert size_problem("a.txt", "x" * 100, 100) is None
    assert "101 bytes" in (size_problem("a.txt", "x" * 101, 100) or "")
    assert size_problem("a.txt", "é" * 51, 100) is not None  # 102 bytes in UTF-8


def test_changed_lines_counts_additions_and_removals() -> None:
    assert changed_lines(None, "a\nb\nc\n") == 3
    assert changed_lines("a\nb\nc\n", "a\nB\nc\n") == 2
    assert changed_lines("a\nb\n", "a\nb\n") == 0


def test_caps() -> None:
    assert cap_problems({}, {"a": "x\n", "b": "y\n", "c": "z\n"}, CAPS) == []
    too_many = cap_problems({}, {name: "x\n" for name in "abcd"}, CAPS)
    assert too_many == ["the change writes 4 files, over the cap of 3 per job"]
    too_long = cap_problems({"a": "a\n" * 5}, {"a": "b\n" * 6}, CAPS)
    assert too_long == ["the change adds or removes 11 lines, over the cap of 10 per job"]
    # Only what changes counts, not the size of the file around it.
    assert cap_problems({"a": "a\n" * 40}, {"a": "a\n" * 40 + "b\n" * 5}, CAPS) == []
    (too_big,) = cap_problems({}, {"big.txt": "x" * 101}, CAPS)
    assert too_big.startswith("big.txt: the new content is 101 bytes")
