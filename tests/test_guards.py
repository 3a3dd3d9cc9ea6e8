"""The guards on a generated change: no shrinking nobody asked for, no binary content, within the caps."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.config import ChangeCaps
from bot.guards import (
    MAX_SHRINK,
    MIN_LINES,
    binary_problem,
    binary_problems,
    cap_problems,
    changed_lines,
    damage_problem,
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


# -- damage: elided, truncated, duplicated, re-indented or replaced answers ------------------

LONG_MODULE = "".join(
    f"def step_{n}(value):\n    if value > {n}:\n        return value - {n}\n    return value\n\n\n"
    for n in range(8)
)


def test_an_elision_marker_standing_for_code_is_refused() -> None:
    for marker in ("# ... rest unchanged", "...", "// ..."):
        elided = LONG_MODULE.replace(
            "    if value > 3:\n        return value - 3\n    return value\n", f"    {marker}\n"
        )
        problem = damage_problem("steps.py", LONG_MODULE, elided, "add a docstring to step_1")
        assert problem is not None and "elides code" in problem, marker


def test_a_new_stub_with_a_bare_ellipsis_is_not_an_elision() -> None:
    added = LONG_MODULE + "def stub(value):\n    ...\n"
    assert damage_problem("steps.py", LONG_MODULE, added, "add a stub") is None


def test_a_file_cut_short_is_refused_even_mid_line() -> None:
    lines = LONG_MODULE.splitlines(keepends=True)
    for cut in (lines[:-3], [*lines[:-4], lines[-4][:12]]):
        problem = damage_problem("steps.py", LONG_MODULE, "".join(cut), "tweak step_7")
        assert problem is not None and "truncated" in problem
    # Asked for, removing the end of a file is the point.
    assert damage_problem("steps.py", LONG_MODULE, "".join(lines[:-3]), "remove the last return") is None


def test_lines_repeated_next_to_themselves_are_refused() -> None:
    doubled = LONG_MODULE.replace("    if value > 2:\n", "    if value > 2:\n" * 2, 1)
    repeated = LONG_MODULE.replace(
        "        return value - 5\n    return value\n", "        return value - 5\n    return value\n" * 2
    )
    problem = damage_problem("steps.py", LONG_MODULE, repeated, "change step_5")
    assert problem is not None and "duplicated" in problem
    # A single repeated line is not enough to judge: the tests (or the syntax check) decide.
    assert damage_problem("steps.py", LONG_MODULE, doubled, "change step_2") is None


def test_tabs_for_spaces_and_flattened_blocks_are_refused() -> None:
    tabbed = "\n".join(
        "\t" * ((len(line) - len(line.lstrip())) // 4) + line.lstrip() for line in LONG_MODULE.split("\n")
    )
    problem = damage_problem("steps.py", LONG_MODULE, tabbed, "add type hints")
    assert problem is not None and "tabs and spaces" in problem
    flat = "\n".join(line.lstrip() for line in LONG_MODULE.split("\n"))
    problem = damage_problem("steps.py", LONG_MODULE, flat, "add type hints")
    assert problem is not None and "indentation" in problem
    assert damage_problem("steps.py", LONG_MODULE, tabbed, "indent with tabs") is None


def test_wrapping_code_in_a_block_is_a_normal_edit() -> None:
    wrapped = LONG_MODULE.replace(
        "    if value > 4:\n        return value - 4\n",
        "    try:\n        if value > 4:\n            return value - 4\n"
        "    except TypeError:\n        pass\n",
    )
    assert damage_problem("steps.py", LONG_MODULE, wrapped, "guard step_4 against TypeError") is None


def test_another_file_instead_of_this_one_is_refused() -> None:
    other = "".join(f"CONSTANT_{n} = {n}\n" for n in range(30))
    problem = damage_problem("steps.py", LONG_MODULE, other, "add a constant")
    assert problem is not None and "not an edit of this file" in problem
    assert damage_problem("steps.py", LONG_MODULE, other, "rewrite steps.py as constants") is None


def test_the_engine_guard_reports_damage_too() -> None:
    elided = LONG_MODULE.replace(
        "    if value > 6:\n        return value - 6\n    return value\n", "    ...\n"
    )
    assert shrink_problems({"steps.py": LONG_MODULE}, {"steps.py": elided}, "edit step_1") != []
    assert shrink_problems({"steps.py": LONG_MODULE}, {"steps.py": LONG_MODULE + "X = 1\n"}, "add X") == []


def test_move_and_clean_up_ask_for_removal() -> None:
    moved = MODULE.split("class Session")[0]
    assert shrink_problem("s.py", MODULE, moved, "Move Session to its own module") is None
    assert shrink_problem("s.py", MODULE, moved, "clean up sessions") is None


@st.composite
def modules_with_an_elision(draw: st.DrawFn) -> tuple[str, str]:
    """A module of functions, and the same module with one or more whole functions, or a
    function's body, replaced by an elision marker."""
    count = draw(st.integers(2, 8))
    bodies = [
        draw(
            st.lists(st.sampled_from(["x = 1", "y = x + 2", "return y", "print(y)"]), min_size=1, max_size=4)
        )
        for _ in range(count)
    ]
    funcs = [f"def f{n}(x):\n" + "".join(f"    {line}\n" for line in body) for n, body in enumerate(bodies)]
    first = draw(st.integers(0, count - 1))
    last = draw(st.integers(first, count - 1))
    marker = draw(st.sampled_from(["...", "# ... rest unchanged", "# ... existing code ...", "// ..."]))
    if draw(st.booleans()):
        kept = [*funcs[:first], f"{marker}\n", *funcs[last + 1 :]]
    else:
        kept = [*funcs[:first], f"def f{first}(x):\n    {marker}\n", *funcs[first + 1 :]]
    return "\n\n".join(funcs), "\n\n".join(kept)


@settings(max_examples=150, deadline=None)
@given(modules_with_an_elision())
def test_any_elision_of_a_definition_is_refused(pair: tuple[str, str]) -> None:
    before, after = pair
    assert shrink_problems({"m.py": before}, {"m.py": after}, "add a docstring") != []


VERSION_PY = """# the project's banner
# second banner line
__title__ = "demo"
__version__ = "1.0"
__author__ = "someone"
__licence__ = "MIT"
"""


def test_an_answer_cut_mid_line_is_refused_even_when_the_request_removes_something() -> None:
    cut = VERSION_PY.replace('__version__ = "1.0"', '__version__ = "2.0"').split("__author__")[0] + "__aut"
    problem = damage_problem("v.py", VERSION_PY, cut, "remove the old version")
    assert problem is not None and "mid-line" in problem
    # Ending on a whole line of its own is not a cut.
    assert damage_problem("v.py", VERSION_PY, VERSION_PY + "__all__ = []\n", "remove nothing") is None


def test_an_answer_missing_the_files_head_or_tail_is_refused() -> None:
    bumped = VERSION_PY.replace('"1.0"', '"2.0"')
    headless = "".join(bumped.splitlines(keepends=True)[2:])
    problem = damage_problem("v.py", VERSION_PY, headless, "bump the version to 2.0")
    assert problem is not None and "first 2 lines" in problem
    tailless = "".join(bumped.splitlines(keepends=True)[:-2])
    problem = damage_problem("v.py", VERSION_PY, tailless, "bump the version to 2.0")
    assert problem is not None and "last 2 lines" in problem
    # One edge line kept, or the edit itself, passes; so does a removal asked for.
    assert damage_problem("v.py", VERSION_PY, bumped, "bump the version to 2.0") is None
    assert damage_problem("v.py", VERSION_PY, "".join(bumped.splitlines(keepends=True)[1:]), "bump") is None
    assert damage_problem("v.py", VERSION_PY, headless, "remove the banner") is None


def test_emptying_a_file_is_a_removal_but_other_content_in_its_place_is_not() -> None:
    lines = [f"setting_{k} = {k}\n" for k in range(12)]
    original = "".join(lines)
    assert damage_problem("conf.py", original, "# moved to pyproject\n", "move the settings out") is None
    other = "".join(f"value_{k} = {k}\n" for k in range(12))
    problem = damage_problem("conf.py", original, other, "move the settings out")
    assert problem is not None and "not an edit of this file" in problem


def test_a_removal_does_not_excuse_a_file_cut_short_before_names_nobody_gave() -> None:
    lines = LONG_MODULE.splitlines(keepends=True)
    cut = "".join(lines[:-12])  # stops after step_5: step_6 and step_7 are gone
    problem = damage_problem("steps.py", LONG_MODULE, cut, "remove the unused import")
    assert problem is not None and "step_6, step_7" in problem and "truncated" in problem
    # A cut inside a block leaves part of a body behind: never whole statements.
    mid = "".join(lines[:-4])
    problem = damage_problem("steps.py", LONG_MODULE, mid, "drop the old comment")
    assert problem is not None and "truncated" in problem
    # Naming what goes at the end makes it the point; so does a plural naming the singular.
    assert damage_problem("steps.py", LONG_MODULE, cut, "remove step_6 and step_7") is None
    tail_class = MODULE.split("def session")[0]
    assert damage_problem("s.py", MODULE, tail_class, "remove the sessions factory") is None


def test_naming_the_file_names_none_of_its_content() -> None:
    setup = (
        "import sys\n\nif sys.version_info < (3, 9):\n    sys.exit(1)\n\n"
        "from setuptools import setup\n\nsetup()\n"
    )
    snippet = setup.replace("(3, 9)", "(3, 10)").split("\nfrom setuptools")[0]
    problem = damage_problem("setup.py", setup, snippet, "Drop Python 3.9 (in setup.py)")
    assert problem is not None and "(setup)" in problem


def test_an_answer_using_a_name_it_no_longer_binds_is_refused_whatever_the_request() -> None:
    app = "from flask import Flask\n\napp = Flask(__name__)\n\nfrom views import index  # noqa: F401\n"
    headless = app.replace("from flask import Flask\n", "").replace("F401", "E402, F401")
    for request in ("stop ignoring E402", "remove the noqa"):
        problem = damage_problem("app.py", app, headless, request)
        assert problem is not None and "uses Flask but no longer defines or imports it" in problem
    # Moving the import, or replacing it with another binding, binds it still; builtins need none.
    moved = app.replace("from flask import Flask\n", "") + "from flask import Flask\n"
    assert damage_problem("app.py", app, moved, "move the import") is None
    shadowed = "open = print\nopen(1)\n"
    assert damage_problem("o.py", shadowed, "open(1)\n", "remove the open shim") is None


def test_a_body_turned_into_a_bare_ellipsis_is_refused_even_when_the_diff_misaligns_it() -> None:
    # A new test inserted next to the elided one: difflib lines the `...` up with the
    # insertion, so only the function's body tells the code is gone.
    tests = "class TestX:\n    def test_a(self):\n        assert f(1) == 1\n        assert f(2) == 2\n"
    grown = tests + "\n    def test_b(self):\n        assert f(1) == 1\n        assert f(3) == 3\n"
    elided = tests.replace("        assert f(1) == 1\n        assert f(2) == 2\n", "        ...\n")
    elided += "\n    def test_b(self):\n        assert f(1) == 1\n        assert f(3) == 3\n"
    assert damage_problem("t.py", tests, grown, "add test_b") is None
    problem = damage_problem("t.py", tests, elided, "add test_b")
    assert problem is not None and "the body of TestX.test_a is `...`" in problem
    # Overloads are `...` by design, beside the implementation that keeps its code.
    overloaded = "from typing import overload\n\n@overload\ndef f(x: int) -> int: ...\n" + (
        "def f(x):\n    return x\n"
    )
    plain = "def f(x):\n    return x\n"
    assert damage_problem("o.py", plain, overloaded, "type f") is None
