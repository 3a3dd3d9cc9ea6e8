"""The shrink guard: a change may not lose what the request did not ask to lose."""

from __future__ import annotations

from bot.guards import MAX_SHRINK, MIN_LINES, shrink_problem, shrink_problems, top_level_names

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
    assert "Session, session" in problem and "src/requests/sessions.py" in problem


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
    assert top_level_names(MODULE) == ["merge_hooks", "Session", "session"]
    assert shrink_problem("old.py", "print 'py2'\n", "print('py3')\n", "port to python 3") is None


def test_every_changed_file_is_checked() -> None:
    originals = {"a.py": MODULE, "b.py": MODULE, "c.py": None}
    changes = {"a.py": MODULE + "# ok\n", "b.py": "", "c.py": "x = 1\n"}
    (problem,) = shrink_problems(originals, changes, "tidy up")
    assert problem.startswith("b.py:")
