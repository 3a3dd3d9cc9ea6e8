"""Which files are the project's, and which paths Patchling may read or write.

Every stage (index, context, edit, apply, engine, verify, the App's jobs) asks this module,
so they all give the same answer:

- Listing: in a git work tree, the tracked files (even when a .gitignore pattern matches
  them) plus the untracked files git does not ignore; in a plain directory, every file.
  Junk directories (caches, virtualenvs, build output), vendored code and nested
  repositories are never listed.
- `.git` is never listed, read or written, at any depth and in any spelling a file system
  may treat as the same name (`.GIT`, `.git.`, `GIT~1`).
- Symbolic links are never followed, read or written through. A listing names a link by its
  own name only (`Listing.links`), and a path with a link anywhere on it inside the root is
  refused. A committed `key.pem -> /etc/ssl/private/key.pem` must never reach a model's
  prompt; a link to a file inside the repository is refused too: that file is read under its
  own name anyway, and a write through the link would change it out of sight of the
  protected-path checks.
- Absolute paths and paths with `..` never pass.
- Protected globs: `.git/**` and `.github/**` are always protected, in the CLI and the App
  alike; configured globs (`--protected`, the repository's `protected:` setting) add to
  them. `.github/` holds the workflows, which run with the repository's secrets, and
  Patchling's own settings: a change there is made by a person, not a model. The one
  exception is opt-in: `allow_workflows` (`--allow-workflows`, the repository's
  `allow_workflows: true`) lifts the protection of `.github/workflows/**` alone; `.git/`
  and the rest of `.github/` stay protected, and configured globs still apply.
  Globs match case-insensitively, for the same reason as `.git`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import BinaryIO

import pygit2

# Directories that are never the project's own hand-written code.
JUNK_DIRS = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        "node_modules",
        "bower_components",
        ".venv",
        "venv",
        "build",
        "dist",
        "__pycache__",
        "site-packages",
        ".tox",
        ".nox",
        ".eggs",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".hypothesis",
        ".idea",
        ".vscode",
    }
)
VENDOR_DIRS = frozenset({"_vendor", "_vendored", "vendor", "vendored", "third_party", "thirdparty"})
LOCK_FILES = frozenset(
    {
        "package-lock.json",
        "npm-shrinkwrap.json",
        "yarn.lock",
        "pnpm-lock.yaml",
        "poetry.lock",
        "Pipfile.lock",
        "uv.lock",
        "pdm.lock",
        "Cargo.lock",
        "Gemfile.lock",
        "composer.lock",
        "go.sum",
    }
)
# Text formats that are data, not source: images, source maps, lock files.
JUNK_SUFFIXES = (
    ".min.js",
    ".min.css",
    ".js.map",
    ".css.map",
    ".map",
    ".svg",
    ".lock",
    "_pb2.py",
    "_pb2_grpc.py",
)

# Never edited, whatever the configuration says (see the module docstring)...
ALWAYS_PROTECTED = (".git/**", ".github/**")
# ...except the workflows, where a repository's settings allow them.
WORKFLOWS = ".github/workflows/**"

# Code points HFS+ ignores in names, so `.g\u200cit` is `.git` there (git refuses them too).
_HFS_IGNORED = dict.fromkeys(
    [0x200C, 0x200D, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x206A, 0x2070), 0xFEFF]
)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # a FIFO planted in the tree must not hang a read
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class PathRefused(PermissionError):
    """A path Patchling never reads or writes. An OSError, so a reader that skips
    unreadable files skips these too; `reason` says why, for people and models."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"Refusing path {path!r}: {reason}.")
        self.path = path
        self.reason = reason

    def __str__(self) -> str:
        return str(self.args[0])


# --------------------------------------------------------------------------
# Test files

# Directories that hold tests, in any language.
TEST_DIRS = frozenset({"tests", "test", "testsuite", "testing", "__tests__", "spec"})
# Where Node's runners look for tests by default: node --test, jest, vitest, mocha.
NODE_TEST_DIRS = frozenset({"test", "tests", "__tests__"})
NODE_SUFFIXES = (".js", ".mjs", ".cjs", ".jsx", ".ts", ".mts", ".cts", ".tsx")
NODE_TEST_MARKS = (".test", ".spec", "-test", "_test")


def ecosystem_of_test(path: str) -> str | None:
    """The ecosystem whose runner takes `path` for a test file by its default
    conventions: "python" (pytest's test_*.py, *_test.py), "go" (*_test.go),
    "rust" (cargo's integration tests, tests/*.rs: one test binary each;
    tests/common/mod.rs is a helper), "node" (*.test.ts, *.spec.js, … or any
    script under test/ or __tests__/); None for anything else."""
    *dirs, name = path.split("/")
    if name.endswith(".py"):
        return "python" if name.startswith("test_") or name.endswith("_test.py") else None
    if name.endswith("_test.go"):
        return "go"
    if name.endswith(".rs"):
        return "rust" if dirs[-1:] == ["tests"] else None
    stem, dot, suffix = name.rpartition(".")
    if not dot or f".{suffix}" not in NODE_SUFFIXES or stem.endswith(".d"):  # .d.ts: types, no tests
        return None
    if stem.endswith(NODE_TEST_MARKS) or NODE_TEST_DIRS.intersection(dirs):
        return "node"
    return None


def is_test_path(path: str) -> bool:
    """Whether `path` looks like test code, in any language: in a test
    directory, named as a test, or a runner's test file."""
    *dirs, name = path.split("/")
    stem = name.rpartition(".")[0] or name
    if TEST_DIRS.intersection(dirs) or name == "conftest.py" or name.startswith("test_"):
        return True
    return stem.endswith(("_test", "_tests", ".test", ".spec")) or ecosystem_of_test(path) is not None


# --------------------------------------------------------------------------
# Names


def is_git_name(name: str) -> bool:
    """`.git` as a case-insensitive (or NTFS / HFS+) file system may see it."""
    folded = name.translate(_HFS_IGNORED).rstrip(" .").casefold()
    return folded in (".git", "git~1")


def junk_dir(name: str) -> bool:
    return name in JUNK_DIRS or name.endswith(".egg-info") or is_git_name(name)


def vendored_dir(parent: Path, name: str) -> bool:
    """`_vendor/`, or `packages/` inside a Python package (`requests/packages/urllib3`):
    third-party code copied in. A top-level `packages/` (a monorepo) is the project's own."""
    return name in VENDOR_DIRS or (name == "packages" and (parent / "__init__.py").is_file())


_MAYBE_VENDORED = frozenset({*VENDOR_DIRS, "packages"})


def junk_file(name: str) -> bool:
    return name in LOCK_FILES or name.endswith(JUNK_SUFFIXES)


def junk_path(root: Path, rel: str) -> bool:
    """True when a directory on `rel` is junk or vendored."""
    parts = rel.split("/")[:-1]
    # The parent's path is built only for a name vendored_dir may accept: this runs for every file.
    return any(
        junk_dir(p) or (p in _MAYBE_VENDORED and vendored_dir(root.joinpath(*parts[:i]), p))
        for i, p in enumerate(parts)
    )


# --------------------------------------------------------------------------
# Judging a path


def clean_path(raw: str) -> str:
    """`raw` as a normalised relative posix path; PathRefused when it is absolute,
    empty, climbs with `..` or names anything inside `.git`. Looks at no file."""
    p = raw.replace("\\", "/")
    if "\0" in p:
        raise PathRefused(raw, "it contains a NUL byte")
    if not p or p.startswith("/") or (len(p) > 1 and p[1] == ":" and p[0].isalpha()):
        raise PathRefused(raw, "it must be relative to the repository root")
    parts = [part for part in p.split("/") if part not in ("", ".")]
    if not parts:
        raise PathRefused(raw, "it names no file")
    if ".." in parts:
        raise PathRefused(raw, "it may not contain '..'")
    # Every name a file system may take for `.git` holds "git" or a character
    # outside ASCII: a path with neither needs no look at its parts.
    maybe_git = not p.isascii() or "git" in p.lower()
    if maybe_git and any(is_git_name(part) for part in parts):
        raise PathRefused(raw, "files inside .git/ are never read or edited")
    return "/".join(parts)


def symlink_on_path(root: Path, rel: str) -> str | None:
    """The first part of `rel` (relative to root, '/'-separated) that is a symlink, or None."""
    current = Path(root)
    parts = [part for part in rel.split("/") if part not in ("", ".")]
    for i, part in enumerate(parts):
        current = current / part
        if current.is_symlink():
            return "/".join(parts[: i + 1])
        if not current.exists():
            return None
    return None


def check_path(root: Path, raw: str) -> str:
    """The clean relative path of `raw` when Patchling may read or write it under root:
    no escape, nothing in .git, no symlink on the way (the file itself or a directory
    above it). Otherwise PathRefused. The file need not exist."""
    clean = clean_path(raw)
    root_real = Path(os.path.realpath(root))
    real = Path(os.path.realpath(root_real.joinpath(*clean.split("/"))))
    if real == root_real or not real.is_relative_to(root_real):
        raise PathRefused(raw, "it resolves outside the repository")
    if any(is_git_name(part) for part in real.relative_to(root_real).parts):
        raise PathRefused(raw, "it resolves into .git/")
    if link := symlink_on_path(root_real, clean):
        what = "it is" if link == clean else f"{link} is"
        raise PathRefused(raw, f"{what} a symbolic link; links are never read or edited")
    return clean


def resolve(root: Path, raw: str) -> Path:
    """Where `raw` lies under root's real path, after check_path."""
    clean = check_path(root, raw)
    return Path(os.path.realpath(root)).joinpath(*clean.split("/"))


def is_protected(path: str, patterns: Sequence[str] = (), *, allow_workflows: bool = False) -> bool:
    """True when `path` matches ALWAYS_PROTECTED or a glob in `patterns` (a pattern
    naming a directory covers everything below it). A path that could never be
    written (absolute, `..`, .git) counts as protected. `allow_workflows` exempts
    WORKFLOWS from ALWAYS_PROTECTED only: `patterns` still protect them."""
    try:
        clean = clean_path(path).casefold()
    except PathRefused:
        return True
    always = () if allow_workflows and _matches(clean, WORKFLOWS) else ALWAYS_PROTECTED
    return any(_matches(clean, pattern) for pattern in (*always, *patterns))


def _matches(clean: str, pattern: str) -> bool:
    glob = pattern.strip().replace("\\", "/").removeprefix("./").lstrip("/").casefold()
    return bool(glob) and (fnmatchcase(clean, glob) or fnmatchcase(clean, glob.rstrip("/") + "/*"))


# --------------------------------------------------------------------------
# Reading


@contextlib.contextmanager
def open_file(root: Path, raw: str) -> Iterator[BinaryIO]:
    """A regular file under root, opened for reading without following any link.

    check_path refuses links first, with a clear message; the descriptor walk below
    (each directory opened with O_NOFOLLOW relative to the one above) also closes the
    window where a link is swapped in between that check and the open.
    FileNotFoundError when the file is not there."""
    clean = check_path(root, raw)
    parts = clean.split("/")
    try:
        fd = _open_nofollow(Path(os.path.realpath(root)), parts)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EMLINK):
            raise PathRefused(raw, "it is a symbolic link; links are never read or edited") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise PathRefused(raw, "it is not a regular file")
    with os.fdopen(fd, "rb") as fh:
        yield fh


def _open_nofollow(root_real: Path, parts: Sequence[str]) -> int:
    file_flags = os.O_RDONLY | _O_NOFOLLOW | _O_NONBLOCK | _O_CLOEXEC
    if os.open not in os.supports_dir_fd or not _O_DIRECTORY:
        return os.open(root_real.joinpath(*parts), file_flags)
    dir_fd = os.open(root_real, os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC)
    try:
        for part in parts[:-1]:
            sub = os.open(part, os.O_RDONLY | _O_DIRECTORY | _O_NOFOLLOW | _O_CLOEXEC, dir_fd=dir_fd)
            os.close(dir_fd)
            dir_fd = sub
        return os.open(parts[-1], file_flags, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)


def read_bytes(root: Path, raw: str) -> bytes:
    """The bytes of a regular file under root; never through a link (see open_file)."""
    with open_file(root, raw) as fh:
        return fh.read()


def read_text(root: Path, raw: str) -> str:
    return read_bytes(root, raw).decode("utf-8")


def text_reader(root: Path) -> Callable[[str], str | None]:
    """Reads repository files' text under root, never through a link; None for
    one that cannot be read (missing, a link, not UTF-8)."""

    def read(path: str) -> str | None:
        try:
            return read_text(root, path)
        except (OSError, UnicodeDecodeError):
            return None

    return read


# --------------------------------------------------------------------------
# Listing


@dataclass(frozen=True)
class Listing:
    files: list[str]  # regular files, relative posix paths, sorted
    links: list[str]  # symbolic links by their own name: never followed, never read
    # Git's blob id of each tracked file whose work-tree content is the index's
    # (status names none of it): the content's identity, known without reading it.
    blobs: dict[str, str] = field(default_factory=dict, compare=False)


def list_files(root: Path) -> list[str]:
    """The project's regular files under root (see the module docstring)."""
    return scan(root).files


_Entry = tuple[str, int, pygit2.Oid]  # a git index entry: path, mode, blob id


def scan(root: Path) -> Listing:
    """The project's files under root, and the links met on the way (by name only)."""
    root = Path(root)
    files: set[str] = set()
    links: set[str] = set()
    real_dirs: set[str] = {""}
    blobs: dict[str, str] = {}
    opened = _open_repo(root)
    if opened is None:
        _walk(root, None, files, links, real_dirs)
    else:
        repo, prefix = opened
        status = repo.status(untracked_files="normal")
        _add_untracked(root, repo, prefix, status, files, links, real_dirs)
        entries = _entries(repo, prefix)
        _add_tracked(root, prefix, entries, status, files, links, real_dirs)
        _add_blobs(prefix, entries, status, files, blobs)
    return Listing(sorted(files), sorted(links), blobs)


def _entries(repo: pygit2.Repository, prefix: str) -> list[_Entry]:
    """The git index's entries under prefix, read once (each is made into an object)."""
    return [(str(e.path), e.mode, e.id) for e in repo.index if str(e.path).startswith(prefix)]


def _add_blobs(
    prefix: str,
    entries: list[_Entry],
    status: dict[str, int],
    files: set[str],
    blobs: dict[str, str],
) -> None:
    for path, _, blob in entries:
        rel = path[len(prefix) :]
        if rel in files and path not in status:
            blobs[rel] = str(blob)


def _add_untracked(
    root: Path,
    repo: pygit2.Repository,
    prefix: str,
    status: dict[str, int],
    files: set[str],
    links: set[str],
    real_dirs: set[str],
) -> None:
    """The untracked files git does not ignore. libgit2's status names them (a new
    directory by its name alone), which is far cheaper than walking every tracked
    directory; only new directories are walked, by the same rules as a plain tree."""
    ignored = lambda rel: repo.path_is_ignored(prefix + rel)  # noqa: E731
    for raw, flags in status.items():
        if not flags & pygit2.enums.FileStatus.WT_NEW:
            continue
        if raw.endswith("/") and prefix.startswith(raw):  # root lies inside a new directory
            _walk(root, ignored, files, links, real_dirs)
            continue
        if not raw.startswith(prefix):
            continue
        try:
            rel = clean_path(raw[len(prefix) :])
        except PathRefused:
            continue
        if junk_path(root, rel + ("/" if raw.endswith("/") else "")):
            continue
        if not raw.endswith("/"):
            _add(root / rel, rel, files, links)
        elif not junk_dir(rel.rpartition("/")[2]) and not vendored_dir(
            (root / rel).parent, rel.rpartition("/")[2]
        ):
            _walk_new_dir(root, rel, ignored, files, links, real_dirs)


def _walk_new_dir(
    root: Path,
    rel: str,
    ignored: Callable[[str], bool],
    files: set[str],
    links: set[str],
    real_dirs: set[str],
) -> None:
    here = root / rel
    if here.is_symlink():
        links.add(rel)
    elif not os.path.lexists(here / ".git"):  # a nested repository is not ours
        real_dirs.add(rel)
        _walk(root, ignored, files, links, real_dirs, top=rel)


def _open_repo(root: Path) -> tuple[pygit2.Repository, str] | None:
    """The git repository holding `root` and root's prefix inside its work tree."""
    try:
        repo = pygit2.Repository(str(root))
    except (pygit2.GitError, KeyError, ValueError):
        return None
    if repo.is_bare or not repo.workdir:
        return None
    try:
        prefix = root.resolve().relative_to(Path(repo.workdir).resolve()).as_posix()
    except ValueError:
        return None
    return repo, "" if prefix == "." else prefix + "/"


def _walk(
    root: Path,
    ignored: Callable[[str], bool] | None,
    files: set[str],
    links: set[str],
    real_dirs: set[str],
    top: str = "",
) -> None:
    """Files under root (or its directory `top`); os.walk lists a linked directory but never enters it."""
    for dirpath, dirnames, filenames in os.walk(root / top):
        here = Path(dirpath)
        rel_dir = here.relative_to(root).as_posix()
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        keep = []
        for d in sorted(dirnames):
            rel = rel_dir + d
            if junk_dir(d) or vendored_dir(here, d) or (ignored is not None and ignored(rel + "/")):
                continue
            if (here / d).is_symlink():
                links.add(rel)
            elif not os.path.lexists(here / d / ".git"):  # a nested repository is not ours
                keep.append(d)
                real_dirs.add(rel)
        dirnames[:] = keep
        for name in filenames:
            rel = rel_dir + name
            if is_git_name(name) or (ignored is not None and ignored(rel)):
                continue
            _add(here / name, rel, files, links)


def _add(path: Path | str, rel: str, files: set[str], links: set[str]) -> None:
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return
    if stat.S_ISLNK(mode):
        links.add(rel)
    elif stat.S_ISREG(mode):  # not a FIFO, socket or device
        files.add(rel)


def _add_tracked(
    root: Path,
    prefix: str,
    entries: list[_Entry],
    status: dict[str, int],
    files: set[str],
    links: set[str],
    real_dirs: set[str],
) -> None:
    """Tracked files count even when a .gitignore pattern matches them. The index's own
    mode names a committed link, whatever the work tree holds at that path now."""
    linked: dict[str, str | None] = {d: None for d in real_dirs}  # directory -> the link on its path
    junk: dict[str, bool] = {}  # directory -> whether it lies under a junk or vendored one
    for path, mode, _ in entries:
        if mode == pygit2.enums.FileMode.COMMIT:
            continue
        try:
            rel = clean_path(path[len(prefix) :])
        except PathRefused:
            continue
        if _junk_on(root, rel, junk):
            continue
        if mode == pygit2.enums.FileMode.LINK:
            links.add(rel)
            files.discard(rel)
            continue
        if link := _link_on(root, rel.rpartition("/")[0], linked):
            links.add(link)
        elif path in status:
            _add(os.path.join(root, rel), rel, files, links)  # changed in the work tree: look at it
        else:
            files.add(rel)  # git's status compared it to the index: a regular file, unchanged


def _junk_on(root: Path, rel: str, junk: dict[str, bool]) -> bool:
    """junk_path, asked once per directory (memoised in `junk`): its answer depends
    on the directories alone, and a tree holds far fewer of them than files."""
    directory = rel.rpartition("/")[0]
    found = junk.get(directory)
    if found is None:
        found = junk[directory] = junk_path(root, rel)
    return found


def _link_on(root: Path, directory: str, linked: dict[str, str | None]) -> str | None:
    """The first symlink on `directory`'s path, one lstat per directory (memoised in `linked`)."""
    if directory in linked:
        return linked[directory]
    parent, _, _ = directory.rpartition("/")
    found = _link_on(root, parent, linked) if parent else None
    if found is None:
        try:
            found = directory if stat.S_ISLNK(os.lstat(os.path.join(root, directory)).st_mode) else None
        except OSError:
            found = None
    linked[directory] = found
    return found
