"""The edit applier: formats, tolerated faults, refusals, path safety and atomic writes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

import bot.apply as apply_mod
from bot.apply import (
    ApplyError,
    apply_edit,
    compute_changes,
    detect_format,
    extract_whole_file,
    write_changes,
)

CALC = """\
import math


def area(r):
    return math.pi * r * r


class Shape:
    def __init__(self, name):
        self.name = name

    def describe(self):
        label = self.name.upper()
        return f"<{label}>"
"""


def put(root: Path, rel: str, text: str | bytes) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_bytes(text.encode())
    return path


def sr(path: str, search: str, replace: str) -> str:
    """A SEARCH/REPLACE block; search and replace are newline-terminated texts ("" for none)."""
    return f"{path}\n<<<<<<< SEARCH\n{search}=======\n{replace}>>>>>>> REPLACE\n"


def files_in(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    put(tmp_path, "pkg/calc.py", CALC)
    put(tmp_path, "README.md", "# demo\n")
    return tmp_path


# --- unified diffs ----------------------------------------------------------------------------


def test_fenced_diff_two_files_with_prefixes(repo: Path) -> None:
    reply = """Here you go:

```diff
--- a/pkg/calc.py
+++ b/pkg/calc.py
@@ -4,2 +4,2 @@
 def area(r):
-    return math.pi * r * r
+    return math.pi * r**2
--- a/README.md
+++ b/README.md
@@ -1 +1,2 @@
 # demo
+More text.
```
"""
    changes = apply_edit(repo, reply)
    assert set(changes) == {"pkg/calc.py", "README.md"}
    assert "return math.pi * r**2\n" in (repo / "pkg/calc.py").read_text()
    assert (repo / "README.md").read_text() == "# demo\nMore text.\n"


def test_diff_without_line_numbers_or_headers_uses_path_hint(repo: Path) -> None:
    reply = """@@ ... @@
     def describe(self):
-        label = self.name.upper()
+        label = self.name.title()
"""
    changes = compute_changes(repo, reply, path_hint="pkg/calc.py")
    assert "label = self.name.title()" in changes["pkg/calc.py"]


def test_diff_with_wrong_line_numbers_and_counts(repo: Path) -> None:
    reply = """--- a/pkg/calc.py
+++ b/pkg/calc.py
@@ -40,9 +41,1 @@
 class Shape:
     def __init__(self, name):
-        self.name = name
+        self.name = name.strip()
"""
    changes = compute_changes(repo, reply)
    assert "self.name = name.strip()\n" in changes["pkg/calc.py"]


def test_diff_bare_at_at_and_missing_space_on_blank_context(repo: Path) -> None:
    reply = "--- pkg/calc.py\n+++ pkg/calc.py\n@@\n import math\n\n\n-def area(r):\n+def area(radius):\n"
    changes = compute_changes(repo, reply)
    assert "def area(radius):" in changes["pkg/calc.py"]


def test_diff_with_too_little_context_applies_when_unique(repo: Path) -> None:
    reply = '--- a/pkg/calc.py\n+++ b/pkg/calc.py\n@@ -14 +14 @@\n-        return f"<{label}>"\n'
    reply += "+        return label"
    assert compute_changes(repo, reply)["pkg/calc.py"].endswith("        return label\n")


def test_diff_lost_indentation_is_reindented(repo: Path) -> None:
    reply = """--- a/pkg/calc.py
+++ b/pkg/calc.py
@@ ... @@
 def describe(self):
     label = self.name.upper()
-    return f"<{label}>"
+    if not label:
+        return ""
+    return f"<{label}>"
"""
    text = compute_changes(repo, reply)["pkg/calc.py"]
    assert text.endswith('        if not label:\n            return ""\n        return f"<{label}>"\n')


def test_diff_trailing_whitespace_drift_keeps_file_text(repo: Path) -> None:
    reply = (
        "@@ -9,3 +9,3 @@\n class Shape:   \n     def __init__(self, name):\t\n"
        "-        self.name = name  \n+        self.name = str(name)\n"
    )
    text = compute_changes(repo, reply, path_hint="pkg/calc.py")["pkg/calc.py"]
    assert "class Shape:\n    def __init__(self, name):\n        self.name = str(name)\n" in text


def test_diff_elided_context(repo: Path) -> None:
    reply = """@@ ... @@
 class Shape:
 ...
     def describe(self):
-        label = self.name.upper()
+        label = self.name.lower()
"""
    text = compute_changes(repo, reply, path_hint="pkg/calc.py")["pkg/calc.py"]
    assert text == CALC.replace("name.upper()", "name.lower()")


def test_diff_new_file_from_dev_null(repo: Path) -> None:
    reply = "--- /dev/null\n+++ b/pkg/sub/new.py\n@@ -0,0 +1,2 @@\n+X = 1\n+Y = 2\n"
    assert apply_edit(repo, reply) == {"pkg/sub/new.py": "X = 1\nY = 2\n"}
    assert (repo / "pkg/sub/new.py").read_text() == "X = 1\nY = 2\n"


def test_diff_creating_an_existing_file_is_refused(repo: Path) -> None:
    reply = "--- /dev/null\n+++ b/README.md\n@@ -0,0 +1 @@\n+hello\n"
    with pytest.raises(ApplyError, match="already exists"):
        compute_changes(repo, reply)


def test_diff_deleting_a_file_is_refused(repo: Path) -> None:
    reply = "--- a/README.md\n+++ /dev/null\n@@ -1 +0,0 @@\n-# demo\n"
    with pytest.raises(ApplyError, match="deleting files"):
        compute_changes(repo, reply)


def test_diff_header_timestamps_and_git_lines(repo: Path) -> None:
    reply = """diff --git a/README.md b/README.md
index 1234567..89abcde 100644
--- a/README.md\t2024-01-01 10:00:00.000000000 +0000
+++ b/README.md\t2024-01-01 10:00:01.000000000 +0000
@@ -1 +1 @@
-# demo
+# Demo
"""
    assert compute_changes(repo, reply) == {"README.md": "# Demo\n"}


def test_no_newline_markers_are_honoured(tmp_path: Path) -> None:
    put(tmp_path, "a.txt", "one\ntwo")
    reply = "--- a/a.txt\n+++ b/a.txt\n@@ -1,2 +1,2 @@\n one\n-two\n\\ No newline at end of file\n+TWO\n"
    assert compute_changes(tmp_path, reply) == {"a.txt": "one\nTWO\n"}
    reply = "--- a/a.txt\n+++ b/a.txt\n@@ -1,2 +1,2 @@\n one\n-two\n+TWO\n\\ No newline at end of file\n"
    assert compute_changes(tmp_path, reply) == {"a.txt": "one\nTWO"}


def test_missing_final_newline_is_kept_without_markers(tmp_path: Path) -> None:
    put(tmp_path, "a.txt", "one\ntwo")
    reply = "--- a/a.txt\n+++ b/a.txt\n@@ -1,2 +1,3 @@\n one\n two\n+three"
    assert compute_changes(tmp_path, reply) == {"a.txt": "one\ntwo\nthree"}


def test_hunks_written_as_successive_edits_still_apply(repo: Path) -> None:
    # The second hunk's context is the first hunk's result (overlapping hunks).
    reply = """@@ ... @@
 def area(r):
-    return math.pi * r * r
+    return math.pi * r**2
@@ ... @@
-    return math.pi * r**2
+    return math.tau * r**2 / 2
"""
    text = compute_changes(repo, reply, path_hint="pkg/calc.py")["pkg/calc.py"]
    assert "    return math.tau * r**2 / 2\n" in text


def test_unclosed_diff_fence_is_refused_as_truncated(repo: Path) -> None:
    reply = "```diff\n--- a/README.md\n+++ b/README.md\n@@ -1 +1 @@\n-# demo\n+# Demo\n"
    with pytest.raises(ApplyError, match="truncated"):
        compute_changes(repo, reply)


# --- SEARCH/REPLACE ---------------------------------------------------------------------------


def test_search_replace_fenced_path_in_backticks(repo: Path) -> None:
    reply = """Change the label:

`pkg/calc.py`
```python
<<<<<<< SEARCH
        label = self.name.upper()
=======
        label = self.name.casefold()
>>>>>>> REPLACE
```
"""
    text = compute_changes(repo, reply, fmt="search_replace")["pkg/calc.py"]
    assert text == CALC.replace("upper()", "casefold()")


@pytest.mark.parametrize("size", [5, 6, 8, 9])
def test_search_replace_marker_lengths(repo: Path, size: int) -> None:
    reply = f"README.md\n{'<' * size} SEARCH\n# demo\n{'=' * size}\n# Demo\n{'>' * size} REPLACE\n"
    assert compute_changes(repo, reply) == {"README.md": "# Demo\n"}


def test_search_replace_blocks_apply_in_order_across_files(repo: Path) -> None:
    reply = """pkg/calc.py
<<<<<<< SEARCH
import math
=======
import math
import sys
>>>>>>> REPLACE

<<<<<<< SEARCH
import sys
=======
import os
>>>>>>> REPLACE

README.md
<<<<<<< SEARCH
# demo
=======
# Demo
>>>>>>> REPLACE
"""
    changes = compute_changes(repo, reply)
    assert changes["pkg/calc.py"].startswith("import math\nimport os\n\n")
    assert changes["README.md"] == "# Demo\n"


def test_search_replace_lost_and_extra_indentation(repo: Path) -> None:
    init = "def __init__(self, name):\n    self.name = name\n"
    lost = sr("pkg/calc.py", init, init + "    self.size = 0\n")
    text = compute_changes(repo, lost)["pkg/calc.py"]
    assert "        self.name = name\n        self.size = 0\n" in text
    extra = sr("pkg/calc.py", "        import math\n", "        import cmath\n")
    assert compute_changes(repo, extra)["pkg/calc.py"].startswith("import cmath\n")


def test_replace_text_is_written_as_given(tmp_path: Path) -> None:
    # SEARCH only locates: its whitespace drift never reaches the file, REPLACE text does.
    put(tmp_path, "t.py", "a = 1  \nb = 2\n")
    reply = sr("t.py", "a = 1\nb = 2 \t\n", "a = 1\nb = 3\n")
    assert compute_changes(tmp_path, reply) == {"t.py": "a = 1\nb = 3\n"}


def test_search_replace_elision_keeps_skipped_lines(repo: Path) -> None:
    reply = """pkg/calc.py
<<<<<<< SEARCH
class Shape:
    # ... existing code ...
        return f"<{label}>"
=======
class Shape:
    # ... existing code ...
        return f"[{label}]"
>>>>>>> REPLACE
"""
    assert compute_changes(repo, reply)["pkg/calc.py"] == CALC.replace('f"<{label}>"', 'f"[{label}]"')


def test_literal_ellipsis_in_the_file_is_matched_literally(tmp_path: Path) -> None:
    put(tmp_path, "p.py", "class P(Protocol):\n    def f(self) -> int:\n        ...\n")
    reply = sr("p.py", "    def f(self) -> int:\n        ...\n", "    def f(self) -> str:\n        ...\n")
    expected = "class P(Protocol):\n    def f(self) -> str:\n        ...\n"
    assert compute_changes(tmp_path, reply)["p.py"] == expected


def test_search_replace_empty_search_creates_then_appends(repo: Path) -> None:
    create = "pkg/new.py\n<<<<<<< SEARCH\n=======\nVALUE = 1\n>>>>>>> REPLACE\n"
    assert compute_changes(repo, create) == {"pkg/new.py": "VALUE = 1\n"}
    append = "README.md\n<<<<<<< SEARCH\n=======\nappended\n>>>>>>> REPLACE\n"
    assert compute_changes(repo, append) == {"README.md": "# demo\nappended\n"}


def test_blank_only_search_is_a_search_not_an_append(repo: Path) -> None:
    reply = "pkg/calc.py\n<<<<<<< SEARCH\n\n=======\n\n# note\n>>>>>>> REPLACE\n"
    with pytest.raises(ApplyError, match="places"):
        compute_changes(repo, reply)


def test_replace_text_may_quote_the_end_marker(tmp_path: Path) -> None:
    put(tmp_path, "doc.txt", "start\n")
    reply = "doc.txt\n<<<<<<< SEARCH\nstart\n=======\nstart\n>>>>>>> REPLACE\nend\n>>>>>>> REPLACE\n"
    assert compute_changes(tmp_path, reply) == {"doc.txt": "start\n>>>>>>> REPLACE\nend\n"}


def test_several_dividers_are_refused(tmp_path: Path) -> None:
    put(tmp_path, "doc.rst", "Title\n=======\n")
    reply = "doc.rst\n<<<<<<< SEARCH\nTitle\n=======\n=======\nHeading\n=======\n>>>>>>> REPLACE\n"
    with pytest.raises(ApplyError, match="several"):
        compute_changes(tmp_path, reply)


def test_missing_replace_marker_is_refused(repo: Path) -> None:
    with pytest.raises(ApplyError, match="REPLACE") as info:
        compute_changes(repo, "README.md\n<<<<<<< SEARCH\n# demo\n=======\n# Demo\n")
    assert info.value.block == 1


def test_reply_in_the_other_format_is_accepted(repo: Path) -> None:
    reply = "README.md\n<<<<<<< SEARCH\n# demo\n=======\n# Demo\n>>>>>>> REPLACE\n"
    assert compute_changes(repo, reply, fmt="diff") == {"README.md": "# Demo\n"}


# --- paths ------------------------------------------------------------------------------------


def test_basename_and_partial_paths_resolve_when_unique(repo: Path) -> None:
    reply = "--- calc.py\n+++ calc.py\n@@ -1 +1 @@\n-import math\n+import cmath as math\n"
    assert "pkg/calc.py" in compute_changes(repo, reply)
    reply = "`calc.py`\n<<<<<<< SEARCH\nimport math\n=======\nimport cmath\n>>>>>>> REPLACE\n"
    assert "pkg/calc.py" in compute_changes(repo, reply)


def test_ambiguous_basename_is_refused(repo: Path) -> None:
    put(repo, "other/calc.py", CALC)
    reply = "calc.py\n<<<<<<< SEARCH\nimport math\n=======\nimport cmath\n>>>>>>> REPLACE\n"
    with pytest.raises(ApplyError, match="ambiguous") as info:
        compute_changes(repo, reply)
    assert info.value.block == 1


def test_a_b_prefixes_are_optional_but_a_real_a_directory_wins_when_unprefixed(tmp_path: Path) -> None:
    put(tmp_path, "a/mod.py", "x = 1\n")
    unprefixed = "--- a/mod.py\n+++ a/mod.py\n@@ -1 +1 @@\n-x = 1\n+x = 2\n"
    assert compute_changes(tmp_path, unprefixed) == {"a/mod.py": "x = 2\n"}
    prefixed = "--- a/a/mod.py\n+++ b/a/mod.py\n@@ -1 +1 @@\n-x = 1\n+x = 2\n"
    assert compute_changes(tmp_path, prefixed) == {"a/mod.py": "x = 2\n"}


def test_unknown_file_suggests_close_paths(repo: Path) -> None:
    reply = "--- a/pkg/calcs.py\n+++ b/pkg/calcs.py\n@@ -1 +1 @@\n-import math\n+import cmath\n"
    with pytest.raises(ApplyError, match=r"Did you mean pkg/calc\.py"):
        compute_changes(repo, reply)


@pytest.mark.parametrize(
    "bad",
    ["../outside.py", "/etc/passwd", "pkg/../../x.py", "pkg/../README.md", ".git/config", "sub/.git/HEAD"],
)
def test_escaping_paths_are_refused_when_reading_and_writing(repo: Path, bad: str) -> None:
    before = files_in(repo)
    with pytest.raises(ApplyError, match="Refusing"):
        write_changes(repo, {"README.md": "changed\n", bad: "x\n"})
    reply = f"--- {bad}\n+++ {bad}\n@@ -1 +1 @@\n-a\n+b\n"
    with pytest.raises(ApplyError, match="Refusing"):
        compute_changes(repo, reply)
    assert files_in(repo) == before


def test_symlinks_out_of_root_are_refused(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    outside = tmp_path_factory.mktemp("outside")
    put(outside, "secret.py", "TOKEN = 1\n")
    (repo / "linkdir").symlink_to(outside, target_is_directory=True)
    (repo / "link.py").symlink_to(outside / "secret.py")
    for rel in ("linkdir/secret.py", "link.py", "linkdir/new.py"):
        with pytest.raises(ApplyError, match="outside"):
            write_changes(repo, {rel: "TOKEN = 2\n"})
    reply = "link.py\n<<<<<<< SEARCH\nTOKEN = 1\n=======\nTOKEN = 2\n>>>>>>> REPLACE\n"
    with pytest.raises(ApplyError, match="outside"):
        compute_changes(repo, reply)
    assert (outside / "secret.py").read_text() == "TOKEN = 1\n"
    assert not (outside / "new.py").exists()


def test_symlink_to_git_dir_is_refused(repo: Path) -> None:
    put(repo, ".git/config", "[core]\n")
    (repo / "cfg").symlink_to(repo / ".git" / "config")
    with pytest.raises(ApplyError, match=r"\.git"):
        write_changes(repo, {"cfg": "evil\n"})
    assert (repo / ".git/config").read_text() == "[core]\n"


def test_symlinks_inside_root_are_refused(repo: Path) -> None:
    # The commit would carry the unchanged link, and protected-path checks see only
    # the link's name: a link, or a linked directory on the way, is never written through.
    (repo / "alias.md").symlink_to("README.md")
    (repo / "docs").mkdir()
    (repo / "linked").symlink_to("docs", target_is_directory=True)
    readme = (repo / "README.md").read_bytes()
    for rel in ("alias.md", "linked/new.md", "./linked/x/y.md"):
        with pytest.raises(ApplyError, match="symbolic link"):
            write_changes(repo, {rel: "# new\n"})
    with pytest.raises(ApplyError, match="symbolic link"):
        compute_changes(repo, "alias.md\n<<<<<<< SEARCH\n=======\nx\n>>>>>>> REPLACE\n")
    assert (repo / "alias.md").is_symlink() and (repo / "linked").is_symlink()
    assert (repo / "README.md").read_bytes() == readme
    assert list((repo / "docs").iterdir()) == []


# --- ambiguity --------------------------------------------------------------------------------

TWICE = "def a():\n    x = 1\n    return x\n\n\ndef b():\n    x = 1\n    return x\n"


def test_ambiguous_search_is_refused_with_both_places(tmp_path: Path) -> None:
    put(tmp_path, "t.py", TWICE)
    reply = (
        "t.py\n<<<<<<< SEARCH\n    x = 1\n    return x\n=======\n    x = 2\n    return x\n>>>>>>> REPLACE\n"
    )
    with pytest.raises(ApplyError) as info:
        apply_edit(tmp_path, reply)
    err = info.value
    assert "2 places" in str(err) and "lines 2-3, 7-8" in str(err)
    assert err.path == "t.py" and err.block == 1
    assert err.nearest is not None and "2 |     x = 1" in err.nearest and "7 |     x = 1" in err.nearest
    assert (tmp_path / "t.py").read_text() == TWICE


def test_exact_match_plus_indent_shifted_match_is_ambiguous(tmp_path: Path) -> None:
    # Had the model lost indentation, the exact match would be the wrong place.
    put(tmp_path, "t.py", "def a():\n    return x\n\n\nclass B:\n    def b(self):\n        return x\n")
    reply = "t.py\n<<<<<<< SEARCH\n    return x\n=======\n    return y\n>>>>>>> REPLACE\n"
    with pytest.raises(ApplyError, match="2 places"):
        compute_changes(tmp_path, reply)


def test_line_numbers_break_ties_only_when_confirmed(tmp_path: Path) -> None:
    text = "first = 0\n" + TWICE
    put(tmp_path, "t.py", text)
    hunk2 = "@@ -8,2 +8,2 @@\n-    x = 1\n+    x = 2\n     return x\n"
    confirmed = "--- a/t.py\n+++ b/t.py\n@@ -1 +1 @@\n-first = 0\n+first = 1\n" + hunk2
    result = compute_changes(tmp_path, confirmed)["t.py"]
    assert result == "first = 1\n" + TWICE.replace("def b():\n    x = 1", "def b():\n    x = 2")
    wrong = "--- a/t.py\n+++ b/t.py\n@@ -2 +2 @@\n-first = 0\n+first = 1\n" + hunk2
    with pytest.raises(ApplyError, match="2 places"):
        compute_changes(tmp_path, wrong)
    alone = "--- a/t.py\n+++ b/t.py\n" + hunk2
    with pytest.raises(ApplyError, match="2 places"):
        compute_changes(tmp_path, alone)


def test_insertion_without_context_is_refused(repo: Path) -> None:
    reply = "--- a/pkg/calc.py\n+++ b/pkg/calc.py\n@@ -2,0 +3 @@\n+import sys\n"
    with pytest.raises(ApplyError, match="only adds lines"):
        compute_changes(repo, reply)


def test_not_found_reports_nearest_lines(repo: Path) -> None:
    reply = """pkg/calc.py
<<<<<<< SEARCH
import math
=======
import math
>>>>>>> REPLACE

pkg/calc.py
<<<<<<< SEARCH
    def describe(self):
        label = self.name.lower()
=======
    def describe(self):
        return self.name
>>>>>>> REPLACE
"""
    with pytest.raises(ApplyError) as info:
        compute_changes(repo, reply)
    err = info.value
    assert err.block == 2 and err.path == "pkg/calc.py"
    assert "block 2" in str(err) and "pkg/calc.py" in str(err) and "12-13" in str(err)
    assert err.nearest == "12 |     def describe(self):\n13 |         label = self.name.upper()"
    assert err.nearest in err.feedback()


# --- CRLF, final newline, encodings ------------------------------------------------------------


def test_crlf_file_keeps_crlf(tmp_path: Path) -> None:
    put(tmp_path, "w.py", CALC.replace("\n", "\r\n"))
    body = "    return math.pi * r * r\n"
    reply = sr("w.py", "def area(r):\n" + body, "def area(r):\n    '''Area.'''\n" + body)
    apply_edit(tmp_path, reply)
    expected = CALC.replace("def area(r):\n", "def area(r):\n    '''Area.'''\n").replace("\n", "\r\n")
    assert (tmp_path / "w.py").read_bytes() == expected.encode()


def test_crlf_reply_on_lf_file(repo: Path) -> None:
    reply = "README.md\r\n<<<<<<< SEARCH\r\n# demo\r\n=======\r\n# Demo\r\n>>>>>>> REPLACE\r\n"
    assert compute_changes(repo, reply) == {"README.md": "# Demo\n"}


def test_write_changes_matches_an_existing_crlf_file(tmp_path: Path) -> None:
    put(tmp_path, "w.txt", "a\r\nb\r\n")
    write_changes(tmp_path, {"w.txt": "a\nc\n", "new.txt": "x\n"})
    assert (tmp_path / "w.txt").read_bytes() == b"a\r\nc\r\n"
    assert (tmp_path / "new.txt").read_bytes() == b"x\n"


def test_non_utf8_bytes_survive(tmp_path: Path) -> None:
    put(tmp_path, "l1.py", b"# caf\xe9\nx = 1\n")
    apply_edit(tmp_path, "l1.py\n<<<<<<< SEARCH\nx = 1\n=======\nx = 2\n>>>>>>> REPLACE\n")
    assert (tmp_path / "l1.py").read_bytes() == b"# caf\xe9\nx = 2\n"


def test_binary_files_are_refused(tmp_path: Path) -> None:
    put(tmp_path, "b.bin", b"\x00\x01abc\n")
    with pytest.raises(ApplyError, match="binary"):
        compute_changes(tmp_path, "b.bin\n<<<<<<< SEARCH\nabc\n=======\nabd\n>>>>>>> REPLACE\n")


# --- whole-file replies -------------------------------------------------------------------------


def test_whole_file_reply_keeps_style(tmp_path: Path) -> None:
    put(tmp_path, "w.py", "a = 1\r\nb = 2")
    reply = "Sure:\n\n```python\na = 1\nb = 3\n```\n"
    assert compute_changes(tmp_path, reply, path_hint="w.py", fmt="whole") == {"w.py": "a = 1\r\nb = 3"}


def test_whole_file_new_file(tmp_path: Path) -> None:
    assert compute_changes(tmp_path, "```\nx = 1\n```", path_hint="n.py", fmt="whole") == {"n.py": "x = 1\n"}


def test_extract_whole_file() -> None:
    assert extract_whole_file("```py\nshort\n```\ntext\n```python\nlonger = 1\nmore = 2\n```") == (
        "longer = 1\nmore = 2\n"
    )
    assert extract_whole_file("x = 1\ny = 2\n\n") == "x = 1\ny = 2\n"
    assert extract_whole_file("~~~~\n```\nnested\n```\n~~~~\n") == "```\nnested\n```\n"
    for bad, why in [
        ("", "empty"),
        ("   \n", "empty"),
        ("I am sorry, I cannot make that change.", "prose"),
        ("Here it is:\n```python\nx = 1\n", "truncated"),
        ("```\n\n```", "empty"),
    ]:
        with pytest.raises(ApplyError, match=why):
            extract_whole_file(bad)


def test_whole_file_with_lazy_elision_is_refused(repo: Path) -> None:
    reply = "```python\nimport math\n\n# ... rest of the file unchanged ...\n```"
    with pytest.raises(ApplyError, match="omitted code"):
        compute_changes(repo, reply, path_hint="pkg/calc.py", fmt="whole")


def test_detect_format_and_whole_fallback(repo: Path) -> None:
    assert detect_format("x\n<<<<<<< SEARCH\na\n=======\nb\n>>>>>>> REPLACE") == "search_replace"
    assert detect_format("@@ -1 +1 @@\n-a\n+b") == "diff"
    assert detect_format("```\ncode\n```") is None
    changes = compute_changes(repo, "```\n# Demo!\n```", path_hint="README.md")
    assert changes == {"README.md": "# Demo!\n"}
    put(repo, "long.py", "".join(f"x{i} = {i}\n" for i in range(30)))
    with pytest.raises(ApplyError, match="snippet"):
        compute_changes(repo, "```\nx1 = 2\n```", path_hint="long.py")
    with pytest.raises(ApplyError, match="no edit"):
        compute_changes(repo, "Nothing to do here.", fmt="diff")
    # A diff without hunks (a model that changed nothing) is no whole file.
    with pytest.raises(ApplyError, match="no edit"):
        compute_changes(repo, "--- a/README.md\n+++ b/README.md\n", path_hint="README.md")
    with pytest.raises(ApplyError, match="no edit"):
        compute_changes(repo, "x = 1\n", path_hint="README.md")


# --- in-memory overrides, no-ops -----------------------------------------------------------------


def test_files_override_disk_content(repo: Path) -> None:
    first = compute_changes(repo, "README.md\n<<<<<<< SEARCH\n# demo\n=======\n# Demo\n>>>>>>> REPLACE\n")
    second = compute_changes(
        repo, "README.md\n<<<<<<< SEARCH\n# Demo\n=======\n# Demo 2\n>>>>>>> REPLACE\n", files=first
    )
    assert second == {"README.md": "# Demo 2\n"}
    assert (repo / "README.md").read_text() == "# demo\n"


def test_no_op_edit_returns_nothing(repo: Path) -> None:
    assert (
        compute_changes(repo, "README.md\n<<<<<<< SEARCH\n# demo\n=======\n# demo\n>>>>>>> REPLACE\n") == {}
    )


# --- atomicity -------------------------------------------------------------------------------------


def test_second_block_failing_writes_nothing(repo: Path) -> None:
    before = files_in(repo)
    reply = """README.md
<<<<<<< SEARCH
# demo
=======
# Demo
>>>>>>> REPLACE

pkg/calc.py
<<<<<<< SEARCH
def volume(r):
=======
def volume(radius):
>>>>>>> REPLACE
"""
    with pytest.raises(ApplyError) as info:
        apply_edit(repo, reply)
    assert info.value.block == 2 and info.value.path == "pkg/calc.py"
    assert files_in(repo) == before


def test_failure_while_staging_leaves_nothing(repo: Path) -> None:
    before = files_in(repo)
    # "README.md/x.py" needs a directory where a file is: staging fails before any replace.
    with pytest.raises(ApplyError, match="No file was changed"):
        write_changes(repo, {"pkg/calc.py": "changed\n", "new/dir/a.py": "a\n", "README.md/x.py": "x\n"})
    assert files_in(repo) == before
    assert not (repo / "new").exists()


def test_failure_while_replacing_rolls_back(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = files_in(repo)
    real_replace = os.replace
    calls: list[str] = []

    def flaky_replace(src: os.PathLike[str], dst: os.PathLike[str]) -> None:
        calls.append(str(dst))
        if len(calls) == 3:
            raise OSError(28, "No space left on device", str(dst))
        real_replace(src, dst)

    monkeypatch.setattr(apply_mod.os, "replace", flaky_replace)
    changes = {"pkg/calc.py": "changed\n", "sub/new.py": "new\n", "README.md": "changed\n"}
    with pytest.raises(ApplyError, match="No file was changed"):
        write_changes(repo, changes)
    monkeypatch.undo()
    assert files_in(repo) == before
    assert not (repo / "sub").exists()


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_directory_rolls_back(repo: Path) -> None:
    put(repo, "locked/file.py", "x = 1\n")
    before = files_in(repo)
    (repo / "locked").chmod(0o555)
    try:
        with pytest.raises(ApplyError):
            write_changes(repo, {"README.md": "changed\n", "locked/file.py": "x = 2\n"})
    finally:
        (repo / "locked").chmod(0o755)
    assert files_in(repo) == before


def test_mode_is_preserved_and_new_files_follow_umask(repo: Path) -> None:
    script = put(repo, "run.sh", "#!/bin/sh\necho hi\n")
    script.chmod(0o750)
    write_changes(repo, {"run.sh": "#!/bin/sh\necho bye\n", "fresh.txt": "x\n"})
    assert stat.S_IMODE(script.stat().st_mode) == 0o750
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((repo / "fresh.txt").stat().st_mode) == 0o666 & ~umask
    assert not [p for p in repo.rglob("*patchling-tmp*")]


def test_elided_matches_with_the_same_span_but_different_pieces_are_ambiguous(tmp_path: Path) -> None:
    # The piece after the elision fits at line 2 or line 5, both inside the same span.
    put(tmp_path, "t.py", "head\nx\nmid\ny\nx\nmid\ny\ntail\n")
    reply = sr("t.py", "head\n...\nmid\ny\n...\ntail\n", "head\n...\nmid\nNEW\ny\n...\ntail\n")
    with pytest.raises(ApplyError, match="lines 1-8 in 2 different ways"):
        compute_changes(tmp_path, reply)


def test_blank_only_context_cannot_vouch_for_indentation(tmp_path: Path) -> None:
    put(tmp_path, "t.py", "def f():\n    a = 1\n\n    return a\n")
    with pytest.raises(ApplyError, match="only blank lines"):
        compute_changes(tmp_path, sr("t.py", "\n", "\nb = 2\n"))
    put(tmp_path, "empty.py", "")
    reply = "--- a/empty.py\n+++ b/empty.py\n@@ -0,0 +1,2 @@\n+def g():\n+    pass\n"
    assert compute_changes(tmp_path, reply) == {"empty.py": "def g():\n    pass\n"}


def test_elision_like_new_lines_do_not_pair_with_literal_ones(tmp_path: Path) -> None:
    # The file has a literal "..." line and the new text adds one: pairings disagree, so refuse.
    put(tmp_path, "t.py", "\nx = 1\nx = 1\n...\n\nx = 1\ny = 2\n")
    reply = sr("t.py", "\nx = 1\nx = 1\n...\n\n...\ny = 2\n", "... \n\n...\ny = 2\n")
    with pytest.raises(ApplyError, match="different ways"):
        compute_changes(tmp_path, reply)


def test_over_indented_block_with_a_shallower_new_line_is_refused(repo: Path) -> None:
    reply = sr("pkg/calc.py", "    import math\n", "    import math\nimport sys\n")
    with pytest.raises(ApplyError, match="deeper"):
        compute_changes(repo, reply)


def test_too_many_ways_to_read_elisions_is_refused(tmp_path: Path) -> None:
    # Every "..." may be code or an elision: the literal reading fits, but so might others.
    put(tmp_path, "stub.py", "x = 1\n" + "...\n" * 7)
    reply = sr("stub.py", "x = 1\n" + "...\n" * 4, "x = 1\n...\n...\nreturn x\n...\n...\n")
    with pytest.raises(ApplyError, match="places"):  # 69 readings, checked: they disagree
        compute_changes(tmp_path, reply)
    reply = sr("stub.py", "x = 1\n" + "...\n" * 5, "x = 1\n...\n...\nreturn x\n...\n...\n...\n")
    with pytest.raises(ApplyError, match="too many ways"):  # 251 readings: not even tried
        compute_changes(tmp_path, reply)


# -- binary content and the size cap --------------------------------------------------------


def test_apply_edit_refuses_binary_content(tmp_path: Path) -> None:
    put(tmp_path, "notes.txt", "one\n")
    reply = "notes.txt\n<<<<<<< SEARCH\none\n=======\none\n\0\0two\n>>>>>>> REPLACE\n"
    with pytest.raises(ApplyError, match=r"notes\.txt: the new content has NUL bytes"):
        apply_edit(tmp_path, reply)
    assert (tmp_path / "notes.txt").read_text() == "one\n"


def test_apply_edit_refuses_a_file_over_the_size_cap(tmp_path: Path) -> None:
    from bot.config import ChangeCaps

    put(tmp_path, "notes.txt", "one\n")
    reply = "notes.txt\n<<<<<<< SEARCH\none\n=======\none\n" + "two\n" * 30 + ">>>>>>> REPLACE\n"
    with pytest.raises(ApplyError, match="124 bytes, over the cap of 100 bytes"):
        apply_edit(tmp_path, reply, caps=ChangeCaps(max_file_bytes=100))
    assert (tmp_path / "notes.txt").read_text() == "one\n"
    assert apply_edit(tmp_path, reply) == {"notes.txt": "one\n" + "two\n" * 30}  # the default cap: 1 MB
