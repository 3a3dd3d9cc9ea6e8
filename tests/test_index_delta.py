"""What an index derives from its files (imports, ranking's statistics) is
updated from the kept index for the changed files only, and equals what a fresh
build derives."""

from __future__ import annotations

from pathlib import Path

import pygit2

from bot.index import RepoIndex, build_index
from bot.ranking import _name_stats, name_stats
from tests.conftest import commit_all
from tests.test_index import write_tree

TREE = {
    "pkg/__init__.py": "from pkg.b import helper\n",
    "pkg/a.py": "from pkg.b import helper\n\ndef first_name():\n    return helper()\n",
    "pkg/b.py": "def helper():\n    return 1\n",
    "pkg/c.py": "def other():\n    return 2\n",
    "main.py": "from pkg import helper\n",
    "go.mod": "module example.com/m\n",
    "util/util.go": "package util\n\nfunc Util() int { return 1 }\n",
    "cmd/main.go": 'package main\n\nimport "example.com/m/util"\n\nfunc main() { util.Util() }\n',
    "web/a.ts": 'import { b } from "./b";\nexport const a = b;\n',
    "web/b.ts": "export const b = 1;\n",
    "web/c.ts": "export const c = 2;\n",
    "web/d.ts": 'import { b } from "#b";\n',
    "web/tsconfig.json": '{"extends": "./tsconfig.base.json"}',
    "web/tsconfig.base.json": '{"compilerOptions": {"paths": {"#b": ["./b.ts"]}}}',
}


def _job(origin: Path, dest: Path, changes: dict[str, str | None]) -> Path:
    """Commit `changes` (None: delete) to origin and check out a fresh work tree, as a job gets."""
    for rel, text in changes.items():
        if text is None:
            (origin / rel).unlink()
        else:
            write_tree(origin, {rel: text})
    commit_all(pygit2.Repository(str(origin)), "change")
    pygit2.clone_repository(str(origin), str(dest))
    return dest


def _origin(tmp_path: Path) -> Path:
    root = tmp_path / "origin"
    write_tree(root, TREE)
    pygit2.init_repository(str(root), initial_head="main")
    commit_all(pygit2.Repository(str(root)), "first")
    return root


def _kept_and_next(tmp_path: Path, changes: dict[str, str | None]) -> tuple[RepoIndex, RepoIndex]:
    origin = _origin(tmp_path)
    first = build_index(_job(origin, tmp_path / "job1", {}))
    name_stats(first)  # made as a run would, before the next job
    second = build_index(_job(origin, tmp_path / "job2", changes), previous=first)
    return first, second


def _assert_as_fresh(index: RepoIndex) -> None:
    fresh = build_index(index.root)
    assert {p: f.imports for p, f in index.files.items()} == {p: f.imports for p, f in fresh.files.items()}
    kept, made = name_stats(index), _name_stats(fresh)
    assert kept.postings == made.postings and kept.defs == made.defs
    assert kept.lengths == made.lengths and kept.avg_length == made.avg_length
    for term in ("first", "second", "helper", "other", "util", "pkg"):
        assert kept.text.postings(term) == made.text.postings(term)
        assert kept.symbols.postings(term) == made.symbols.postings(term)


def test_a_changed_python_file_gets_its_new_imports_and_names(tmp_path: Path) -> None:
    changed = "from pkg.c import other\n\ndef second_name():\n    return other()\n"
    first, second = _kept_and_next(tmp_path, {"pkg/a.py": changed})
    assert second.files["pkg/a.py"].imports == ["pkg/c.py"]
    assert second.importers("pkg/c.py") == ["pkg/a.py"]
    assert name_stats(second).defs["second_name"] == {"pkg/a.py"}
    assert "first_name" not in name_stats(second).defs
    _assert_as_fresh(second)
    # The kept index's statistics are as they were: a run may still rank with them.
    assert first.ranking_stats is not None and "second_name" not in first.ranking_stats.defs
    assert first.ranking_stats.defs["first_name"] == {"pkg/a.py"}


def test_a_reexport_changed_elsewhere_reaches_unchanged_importers(tmp_path: Path) -> None:
    # main.py is unchanged, but what `pkg` re-exports now comes from pkg/c.py.
    _, second = _kept_and_next(tmp_path, {"pkg/__init__.py": "from pkg.c import other as helper\n"})
    assert "pkg/c.py" in second.files["pkg/__init__.py"].imports
    assert second.files["main.py"].imports == [
        "pkg/__init__.py"
    ]  # pkg/b.py's helper is no longer re-exported
    _assert_as_fresh(second)


def test_changed_files_of_other_languages_are_resolved_again(tmp_path: Path) -> None:
    _, second = _kept_and_next(tmp_path, {"web/a.ts": 'import { c } from "./c";\nexport const a = c;\n'})
    assert second.files["web/a.ts"].imports == ["web/c.ts"]
    _assert_as_fresh(second)


def test_a_changed_configuration_resolves_unchanged_files_again(tmp_path: Path) -> None:
    first, second = _kept_and_next(tmp_path, {"go.mod": "module example.com/renamed\n"})
    assert first.files["cmd/main.go"].imports == ["util/util.go"]
    assert second.files["cmd/main.go"].imports == []
    _assert_as_fresh(second)


def test_a_changed_tsconfig_base_resolves_unchanged_files_again(tmp_path: Path) -> None:
    base = '{"compilerOptions": {"paths": {"#b": ["./c.ts"]}}}'
    first, second = _kept_and_next(tmp_path, {"web/tsconfig.base.json": base})
    assert first.files["web/d.ts"].imports == ["web/b.ts"]
    assert second.files["web/d.ts"].imports == ["web/c.ts"]
    _assert_as_fresh(second)


def test_added_and_removed_files_are_counted_as_a_fresh_build_counts_them(tmp_path: Path) -> None:
    added = "from pkg.b import helper\n\ndef second_name():\n    pass\n"
    _, second = _kept_and_next(tmp_path, {"pkg/c.py": None, "pkg/d.py": added})
    assert "pkg/c.py" not in second.files and second.files["pkg/d.py"].imports == ["pkg/b.py"]
    assert "pkg/c.py" not in name_stats(second).postings.get("c", {})
    _assert_as_fresh(second)


def test_an_unchanged_tree_lends_everything(tmp_path: Path) -> None:
    first, second = _kept_and_next(tmp_path, {})
    assert second.py_pairs is first.py_pairs
    assert second.files["cmd/main.go"].imports is first.files["cmd/main.go"].imports
    _assert_as_fresh(second)


def test_resolved_imports_are_recalled_from_the_cache_for_the_same_files_only(tmp_path: Path) -> None:
    root, cache = tmp_path / "plain", tmp_path / "cache"
    write_tree(root, TREE)
    first = build_index(root, cache)
    again = build_index(root, cache)
    assert first.py_pairs is not None and again.py_pairs is None  # made, then recalled
    assert {p: f.imports for p, f in again.files.items()} == {p: f.imports for p, f in first.files.items()}
    write_tree(root, {"pkg/a.py": "from pkg.c import other\n"})
    changed = build_index(root, cache)
    assert changed.py_pairs is not None and changed.files["pkg/a.py"].imports == ["pkg/c.py"]
    # An index whose imports were recalled lends nothing to the next build: all are resolved.
    write_tree(root, {"go.mod": "module example.com/renamed\n"})
    assert build_index(root, cache).files["cmd/main.go"].imports == []
    recalled = build_index(root, cache)
    assert recalled.py_pairs is None and recalled.files["cmd/main.go"].imports == []
    # An index whose imports were recalled lends nothing to the next build: all are resolved.
    write_tree(root, {"pkg/a.py": "from pkg.b import helper\n"})
    assert build_index(root, previous=recalled).files["pkg/a.py"].imports == ["pkg/b.py"]
