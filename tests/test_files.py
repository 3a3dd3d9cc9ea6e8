"""bot.files: listing the project's files, judging paths, reading without following links."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pygit2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot import files
from bot.files import PathRefused, check_path, clean_path, is_protected, list_files, read_bytes, scan
from bot.index import build_index
from bot.verify import has_python_tests
from tests.conftest import commit_all, make_git_repo

SECRET = "SECRET-KEY-MATERIAL-42"


def put(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory beside the project holding what must never be read: a key, a secret."""
    where = tmp_path / "outside"
    put(where, "key.pem", f"-----BEGIN PRIVATE KEY-----\n{SECRET}\n")
    put(where, "secret.txt", f"{SECRET}\n")
    put(where, "lib/stolen.py", f"TOKEN = '{SECRET}'\n")
    return where


def plant_links(root: Path, outside: Path) -> None:
    """The links of the report: to a key outside, to a system file, into a package, a
    linked directory, and a link to a file inside the project."""
    put(root, "pkg/__init__.py", "")
    put(root, "pkg/core.py", "def top(x):\n    return x + 2\n")
    (root / "deploy_key.pem").symlink_to(outside / "key.pem")
    (root / "etc_passwd").symlink_to("/etc/passwd")
    (root / "pkg/x.py").symlink_to(outside / "secret.txt")
    (root / "vendor_lib").symlink_to(outside / "lib", target_is_directory=True)
    (root / "alias.py").symlink_to("pkg/core.py")


LINKS = ["alias.py", "deploy_key.pem", "etc_passwd", "pkg/x.py", "vendor_lib"]


@pytest.fixture
def git_project(tmp_path: Path, outside: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    plant_links(root, outside)
    make_git_repo(root)
    return root


@pytest.fixture
def plain_project(tmp_path: Path, outside: Path) -> Path:
    root = tmp_path / "plain"
    root.mkdir()
    plant_links(root, outside)
    return root


# -- listing ----------------------------------------------------------------------


def test_committed_links_are_listed_by_name_only(git_project: Path) -> None:
    index = pygit2.Repository(str(git_project)).index
    assert index["deploy_key.pem"].mode == pygit2.enums.FileMode.LINK  # committed as a link
    listing = scan(git_project)
    assert listing.files == ["pkg/__init__.py", "pkg/core.py"]
    assert listing.links == LINKS
    assert list_files(git_project) == listing.files


def test_links_in_a_plain_directory_are_listed_by_name_only(plain_project: Path) -> None:
    listing = scan(plain_project)
    assert listing.files == ["pkg/__init__.py", "pkg/core.py"]
    assert listing.links == LINKS


def test_the_index_mode_names_a_link_whatever_the_work_tree_holds(git_project: Path) -> None:
    # The work tree now holds a regular file where the commit has a link: the commit still
    # carries the link, so the path is treated as one.
    (git_project / "deploy_key.pem").unlink()
    put(git_project, "deploy_key.pem", "a regular file now\n")
    listing = scan(git_project)
    assert "deploy_key.pem" in listing.links and "deploy_key.pem" not in listing.files


def test_tracked_files_below_an_untracked_linked_directory_are_not_listed(
    git_project: Path, outside: Path
) -> None:
    # pkg/ is replaced by a link after the commit: its tracked files now live elsewhere.
    (git_project / "pkg/x.py").unlink()
    for name in ("__init__.py", "core.py"):
        (git_project / "pkg" / name).unlink()
    (git_project / "pkg").rmdir()
    put(outside, "pkg/core.py", f"SECRET = '{SECRET}'\n")
    (git_project / "pkg").symlink_to(outside / "pkg", target_is_directory=True)
    listing = scan(git_project)
    assert listing.files == []
    assert "pkg" in listing.links


def test_tracked_but_ignored_files_count_and_junk_never(git_project: Path) -> None:
    put(git_project, ".gitignore", "generated/\n")
    put(git_project, "generated/keep.py", "x = 1\n")
    repo = pygit2.Repository(str(git_project))
    repo.index.add("generated/keep.py")  # forced past the ignore rule, as `git add -f` would
    commit_all(repo, "tracked though ignored")
    put(git_project, "generated/untracked.py", "y = 2\n")
    put(git_project, "node_modules/lib/index.js", "z\n")
    put(git_project, "pkg/packages/vendored/mod.py", "w\n")
    listing = scan(git_project)
    assert "generated/keep.py" in listing.files and "generated/untracked.py" not in listing.files
    assert not any(p.startswith(("node_modules/", "pkg/packages/")) for p in listing.files)


def walked(root: Path) -> files.Listing:
    """The listing by walking every directory and asking git about each path: what
    `scan` did before it asked libgit2's status for the untracked files."""
    opened = files._open_repo(root)
    assert opened is not None
    repo, prefix = opened
    found: set[str] = set()
    links: set[str] = set()
    real_dirs = {""}
    files._walk(root, lambda rel: repo.path_is_ignored(prefix + rel), found, links, real_dirs)
    entries = files._entries(repo, prefix)
    # Every tracked path as if git's status named it: each is looked at, none vouched for.
    files._add_tracked(root, prefix, entries, {path: 0 for path, _, _ in entries}, found, links, real_dirs)
    return files.Listing(sorted(found), sorted(links))


def mixed_tree(root: Path, outside: Path) -> None:
    """Tracked, ignored, tracked-though-ignored, untracked (in known and in new
    directories), linked, junk, vendored and nested-repository files."""
    plant_links(root, outside)
    put(root, ".gitignore", "*.log\nignored_dir/\nsrc/gen/\n")
    put(root, "src/app/main.py", "x = 1\n")
    put(root, "src/gen/forced.py", "x = 2\n")
    put(root, "src/app/swapped.py", "x = 3\n")
    put(root, "ignored_dir/a.py", "x\n")
    repo = make_git_repo(root)
    repo.index.add("src/gen/forced.py")
    commit_all(repo, "forced past the ignore rule")
    put(root, "src/app/new.py", "y\n")  # untracked in a tracked directory
    put(root, "fresh/deep/er/one.py", "z\n")  # a whole new directory
    put(root, "fresh/skip.log", "log\n")
    put(root, "fresh/node_modules/x.js", "junk\n")
    put(root, "fresh/pkg/__init__.py", "")
    put(root, "fresh/pkg/packages/vendored.py", "v\n")
    put(root, "src/gen/untracked.py", "ignored\n")
    put(root, "build/out.py", "junk\n")
    put(root, "nested/inner.py", "theirs\n")
    pygit2.init_repository(str(root / "nested"))
    (root / "fresh/link_out").symlink_to(outside / "secret.txt")
    (root / "fresh/dir_link").symlink_to(outside / "lib", target_is_directory=True)
    (root / "new_link.py").symlink_to("src/app/main.py")
    (root / "src/app/main.py").unlink()  # tracked but deleted from the work tree
    (root / "src/app/swapped.py").unlink()
    (root / "src/app/swapped.py").symlink_to(outside / "secret.txt")  # tracked, now a link


@pytest.mark.parametrize("sub", ["", "src", "fresh"])
def test_the_status_listing_equals_the_walking_listing(tmp_path: Path, outside: Path, sub: str) -> None:
    root = tmp_path / "project"
    root.mkdir()
    mixed_tree(root, outside)
    listing = scan(root / sub if sub else root)
    assert listing == walked(root / sub if sub else root)
    if not sub:  # the tree does hold each kind of file
        assert {"src/app/new.py", "fresh/deep/er/one.py", "src/gen/forced.py"} <= set(listing.files)
        assert {"fresh/link_out", "fresh/dir_link", "new_link.py"} <= set(listing.links)
        assert not {"src/app/main.py", "nested/inner.py", "build/out.py"} & set(listing.files)
        assert not any(p.endswith((".log", "vendored.py", "x.js")) or "untracked" in p for p in listing.files)


@pytest.mark.parametrize("git_dir", [".git", ".GIT", ".Git", "sub/.git", "sub/.gIt"])
def test_git_directories_are_never_listed_in_any_case(tmp_path: Path, git_dir: str) -> None:
    put(tmp_path, f"{git_dir}/config", "[core]\n")
    put(tmp_path, "main.py", "x = 1\n")
    assert list_files(tmp_path) == ["main.py"]


def test_fifos_are_not_listed(tmp_path: Path) -> None:
    put(tmp_path, "main.py", "x = 1\n")
    os.mkfifo(tmp_path / "pipe.py")
    assert list_files(tmp_path) == ["main.py"]
    with pytest.raises(PathRefused, match="not a regular file"):
        read_bytes(tmp_path, "pipe.py")  # refused at once, never blocks


# -- reading ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "rel", ["deploy_key.pem", "etc_passwd", "pkg/x.py", "vendor_lib/stolen.py", "alias.py"]
)
def test_reading_through_a_link_is_refused(git_project: Path, rel: str) -> None:
    with pytest.raises(PathRefused) as caught:
        read_bytes(git_project, rel)
    assert caught.value.reason.endswith(("outside the repository", "links are never read or edited"))
    assert isinstance(caught.value, OSError)  # readers that skip unreadable files skip these


def test_a_regular_file_reads(git_project: Path) -> None:
    assert read_bytes(git_project, "./pkg/core.py") == b"def top(x):\n    return x + 2\n"
    with pytest.raises(FileNotFoundError):
        read_bytes(git_project, "pkg/missing.py")


def test_the_open_never_follows_a_link_swapped_in_after_the_check(git_project: Path) -> None:
    # check_path runs before the open; a link planted between the two is still refused by
    # the descriptor walk, for a directory on the way and for the file itself.
    root = Path(os.path.realpath(git_project))
    for parts in (["vendor_lib", "stolen.py"], ["pkg", "x.py"], ["deploy_key.pem"]):
        with pytest.raises(OSError) as caught:
            files._open_nofollow(root, parts)
        assert caught.value.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK)


def test_the_index_never_reads_a_link(git_project: Path, tmp_path: Path) -> None:
    index = build_index(git_project, tmp_path / "cache")
    assert sorted(index.files) == ["pkg/__init__.py", "pkg/core.py"]
    assert {rel: index.stats.skipped[rel] for rel in LINKS} == dict.fromkeys(LINKS, "symlink")
    for rel in LINKS:
        with pytest.raises(PathRefused):
            index.read(rel)
    assert index.read("pkg/core.py").startswith("def top")


def test_python_tests_behind_a_link_do_not_count(tmp_path: Path, outside: Path) -> None:
    put(outside, "tests/test_x.py", "def test_x():\n    pass\n")
    root = tmp_path / "project"
    put(root, "main.py", "x = 1\n")
    (root / "tests").symlink_to(outside / "tests", target_is_directory=True)
    (root / "test_link.py").symlink_to(outside / "tests" / "test_x.py")
    assert not has_python_tests(root)
    put(root, "sub/test_real.py", "def test_real():\n    pass\n")
    assert has_python_tests(root)


# -- judging paths ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("/etc/passwd", "relative"),
        ("C:\\x.py", "relative"),
        ("", "relative"),
        ("./", "names no file"),
        ("a/../../x", "'..'"),
        (".git/config", ".git"),
        ("sub/.GIT/hooks/pre-commit", ".git"),
        (".git./config", ".git"),
        ("GIT~1/config", ".git"),
        (".g\u200cit/config", ".git"),
    ],
)
def test_clean_path_refuses(raw: str, why: str) -> None:
    with pytest.raises(PathRefused, match=why.replace(".", r"\.")):
        clean_path(raw)


def test_check_path_refuses_what_resolves_outside_or_into_git(git_project: Path, tmp_path: Path) -> None:
    (git_project / "cfg").symlink_to(git_project / ".git" / "config")
    with pytest.raises(PathRefused, match=r"into \.git"):
        check_path(git_project, "cfg")
    with pytest.raises(PathRefused, match="outside"):
        check_path(git_project, "deploy_key.pem")
    with pytest.raises(PathRefused, match="it is a symbolic link"):
        check_path(git_project, "alias.py")
    (git_project / "pkg_link").symlink_to("pkg", target_is_directory=True)
    with pytest.raises(PathRefused, match="pkg_link is a symbolic link"):
        check_path(git_project, "pkg_link/new.py")
    assert check_path(git_project, "pkg//./new.py") == "pkg/new.py"


_PARTS = st.sampled_from(["a", "b.py", "..", ".", "", ".git", ".GIT", ".Git", "gIt~1", "src", ".github"])


@given(st.lists(_PARTS, min_size=1, max_size=6), st.booleans())
def test_clean_path_properties(parts: list[str], absolute: bool) -> None:
    raw = ("/" if absolute else "") + "/".join(parts)
    try:
        clean = clean_path(raw)
    except PathRefused:
        # An empty first part makes the path absolute too ("" + "/" + "a").
        git_part = any(files.is_git_name(p) for p in parts)
        assert raw.startswith("/") or ".." in parts or git_part or not raw.strip("/.")
        return
    assert not raw.startswith("/") and ".." not in parts
    out = clean.split("/")
    assert ".." not in out and "." not in out and "" not in out
    assert not any(p.casefold() in (".git", "git~1") for p in out)
    assert clean_path(clean) == clean
    assert is_protected(raw) == is_protected(clean)


@given(st.lists(_PARTS, min_size=1, max_size=6))
def test_check_path_stays_inside(tmp_path_factory: pytest.TempPathFactory, parts: list[str]) -> None:
    root = tmp_path_factory.getbasetemp() / "check-root"
    root.mkdir(exist_ok=True)
    try:
        clean = check_path(root, "/".join(parts))
    except PathRefused:
        return
    real = Path(os.path.realpath(root / clean))
    assert real.is_relative_to(os.path.realpath(root)) and real != Path(os.path.realpath(root))


@given(st.sampled_from([".git", ".GIT", ".Git."]), st.sampled_from([".github", ".GitHub", ".GITHUB"]))
def test_git_and_github_are_always_protected(git: str, github: str) -> None:
    assert is_protected(f"{git}/config")
    assert is_protected(f"{github}/workflows/ci.yml")
    assert is_protected(f"{github}/patchling.yml", ["docs/"])


def test_protected_globs() -> None:
    assert is_protected("secrets/a/b.txt", ["secrets"])
    assert is_protected("Secrets/a.txt", ["secrets/"])
    assert is_protected("migrations/0001.py", ["./migrations/**"])
    assert is_protected("../outside.py")  # could never be written: counts as protected
    assert not is_protected("src/app.py", ["*.lock", "docs/"])
    assert not is_protected("src/github.py")


@given(st.sampled_from([".github", ".GitHub"]), st.sampled_from(["workflows", "Workflows"]))
def test_allow_workflows_lifts_the_workflows_and_nothing_else(github: str, workflows: str) -> None:
    workflow = f"{github}/{workflows}/ci.yml"
    assert is_protected(workflow)
    assert not is_protected(workflow, allow_workflows=True)
    assert not is_protected(f"{github}/{workflows}/sub/deploy.yml", ["docs/"], allow_workflows=True)
    # The rest of .github/, .git/ and the configured globs stay protected.
    assert is_protected(f"{github}/patchling.yml", allow_workflows=True)
    assert is_protected(f"{github}/workflows.yml", allow_workflows=True)
    assert is_protected(f"{github}/CODEOWNERS", allow_workflows=True)
    assert is_protected(".git/config", allow_workflows=True)
    assert is_protected(".git/workflows/x", allow_workflows=True)
    assert is_protected(workflow, [".github/workflows/"], allow_workflows=True)
    assert is_protected(f"{github}/{workflows}/../patchling.yml", allow_workflows=True)
