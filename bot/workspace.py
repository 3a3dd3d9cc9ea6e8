"""Git for jobs, with pygit2: a bare mirror per repository, a work tree per job.

The mirror under `data_dir/mirrors/<owner>/<repo>.git` is fetched for each job
(no full clone each time); a job's work tree is a local clone of the mirror in
a temporary folder, removed when the job ends. The installation token reaches
git only through the credential callback: it is never part of a remote URL,
the git config or any file.

Each fetch leaves a pack file in the mirror; past MAX_PACKS, `git repack`
(which libgit2 lacks) folds them into one, so lookups stay fast and the
folder stays small. The repack is local: no token, no network.
"""

from __future__ import annotations

import errno
import logging
import re
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pygit2
from filelock import FileLock

from bot.files import PathRefused, clean_path

log = logging.getLogger(__name__)

# Packs a mirror may gather before it is repacked (`git gc --auto` waits for 50).
MAX_PACKS = 16
REPACK_TIMEOUT_S = 600.0

_NAME = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_MIRROR_REFSPEC = "+refs/heads/*:refs/heads/*"


class WorkspaceError(RuntimeError):
    """A git step failed; the message is safe to show (it never holds a token)."""


class PushRejected(WorkspaceError):
    """The remote refused the push: `behind` (the branch moved on: not a fast
    forward), `protected` (branch protection or a ruleset), or `other`."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


class MirrorDamaged(WorkspaceError):
    """The mirror's objects cannot be read (a pack cut short, a flipped bit):
    the caller removes it and clones afresh."""


# How libgit2 words objects it cannot read.
_DAMAGE = re.compile(
    r"zlib|inflat|corrupt|pack ?file|invalid pack|object not found|failed to find|checksum|truncated"
    r"|bad object|invalid object|failed to read object|loose object|odb",
    re.IGNORECASE,
)


def is_damage(exc: BaseException) -> bool:
    """Whether a failed read of a mirror means its objects are damaged (a
    full disk cuts writes short too, but a fresh clone would not help)."""
    if is_disk_full(exc):
        return False
    if isinstance(exc, MirrorDamaged):
        return True
    return isinstance(exc, pygit2.GitError) and bool(_DAMAGE.search(str(exc)))


# How libgit2, SQLite and the OS word a full disk or a spent quota.
_DISK_FULL = re.compile(
    r"no space left on device|database or disk is full|disk quota exceeded", re.IGNORECASE
)


def is_disk_full(exc: BaseException) -> bool:
    """Whether `exc` (an OSError, or a library's error that only words it) means the disk is full."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return bool(_DISK_FULL.search(str(exc)))


# How libgit2 and GitHub word a refusal (libgit2 checks fast-forwards itself).
_BEHIND = re.compile(r"not present locally|non-fast-?forward|fetch first", re.IGNORECASE)
_PROTECTED = re.compile(r"protected branch|GH006|GH013|repository rule violations", re.IGNORECASE)


def rejection_kind(message: str) -> str:
    if _PROTECTED.search(message):
        return "protected"
    return "behind" if _BEHIND.search(message) else "other"


@dataclass(frozen=True)
class Identity:
    name: str
    email: str

    @classmethod
    def user(cls, login: str, user_id: int) -> Identity:
        return cls(login, f"{user_id}+{login}@users.noreply.github.com")

    def signature(self) -> pygit2.Signature:
        return pygit2.Signature(self.name, self.email)


class _TokenCallbacks(pygit2.RemoteCallbacks):
    """Hands the token to libgit2 once per operation (a wrong token must fail,
    not loop), and collects the refs a push had rejected."""

    def __init__(self, token: str | None) -> None:
        super().__init__()
        self._token = token
        self._offered = False
        self.rejected: dict[str, str] = {}

    def credentials(
        self, url: str, username_from_url: str | None, allowed_types: pygit2.enums.CredentialType
    ) -> pygit2.UserPass:
        if self._token is None or self._offered:
            raise WorkspaceError("the remote refused the credentials")
        self._offered = True
        return pygit2.UserPass("x-access-token", self._token)

    def push_update_reference(self, refname: str, message: str | None) -> None:
        if message:
            self.rejected[refname] = message


def mirror_path(data_dir: Path, full_name: str) -> Path:
    if not _NAME.match(full_name) or ".." in full_name:
        raise WorkspaceError(f"not a repository name: {full_name!r}")
    owner, name = full_name.split("/")
    return data_dir / "mirrors" / owner / f"{name}.git"


def mirror_lock(path: Path) -> FileLock:
    """One fetch or clone at a time per mirror (jobs on other branches share
    it), across threads and processes on one data directory: a lock file
    beside the mirror, which outlives the mirror's removal. Each call is a
    lock of its own (a FileLock is reentrant only within one object)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path.with_name(path.name + ".lock")))


def update_mirror(path: Path, clone_url: str, token: str | None = None) -> pygit2.Repository:
    """Create the bare mirror if needed and fetch every branch (pruning deleted ones).
    Call it holding `mirror_lock(path)`. A first clone that fails leaves nothing."""
    if (path / "HEAD").exists():
        try:
            mirror = pygit2.Repository(str(path))
        except pygit2.GitError as exc:
            raise MirrorDamaged(f"the mirror cannot be opened: {exc}") from None
        return _fetch(mirror, path, clone_url, token)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return _fetch(pygit2.init_repository(str(path), bare=True), path, clone_url, token)
    except BaseException:
        remove_mirror(path)  # half made (a full disk, a refused fetch): the next job starts clean
        raise


def _fetch(mirror: pygit2.Repository, path: Path, clone_url: str, token: str | None) -> pygit2.Repository:
    if "origin" not in mirror.remotes.names():
        mirror.remotes.create("origin", clone_url, _MIRROR_REFSPEC)
    elif mirror.remotes["origin"].url != clone_url:
        # Renamed or transferred repository: follow the payload's URL.
        mirror.remotes.set_url("origin", clone_url)
    try:
        mirror.remotes["origin"].fetch(
            [_MIRROR_REFSPEC], callbacks=_TokenCallbacks(token), prune=pygit2.enums.FetchPrune.PRUNE
        )
    except (pygit2.GitError, OSError) as exc:
        message = f"fetching {_safe_url(clone_url)} failed: {_scrub(exc, token)}"
        raise (MirrorDamaged(message) if is_damage(exc) else WorkspaceError(message)) from None
    if pack_count(path) > MAX_PACKS and repack(path):
        mirror = pygit2.Repository(str(path))  # reopened: the old packs are gone
    return mirror


def remove_mirror(path: Path) -> None:
    """Delete a mirror (damaged: the next update_mirror clones it afresh).
    Call it holding `mirror_lock(path)`."""
    shutil.rmtree(path, ignore_errors=True)


def disk_usage(path: Path) -> int:
    """Bytes of the files under `path` (0 when it is not there)."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def pack_count(path: Path) -> int:
    return sum(1 for _ in (path / "objects" / "pack").glob("*.pack"))


def repack(path: Path) -> bool:
    """Fold the repository's packs into one (`git repack -a -d`). A failure is
    logged, not raised: the mirror still works with many packs."""
    try:
        subprocess.run(
            ["git", "-C", str(path), "repack", "-a", "-d", "-q"],
            check=True,
            capture_output=True,
            stdin=subprocess.DEVNULL,
            timeout=REPACK_TIMEOUT_S,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("repacking %s failed: %s", path, exc)
        return False
    return True


def branch_tip(repo: pygit2.Repository, branch: str) -> pygit2.Oid | None:
    ref = repo.references.get(f"refs/heads/{branch}")
    # A branch resolves to a commit id (only a symbolic reference's own target is a name).
    target = None if ref is None else ref.resolve().target
    return target if isinstance(target, pygit2.Oid) else None


def branch_holds(repo: pygit2.Repository, branch: str, sha: str) -> bool:
    """Whether commit `sha` is the branch's tip or one of its ancestors."""
    tip = branch_tip(repo, branch)
    if tip is None:
        return False
    try:
        oid = pygit2.Oid(hex=sha)
    except ValueError:
        return False
    if tip == oid:
        return True
    return oid in repo and repo.descendant_of(tip, oid)


def checkout(
    mirror: pygit2.Repository, base_branch: str, dest: Path, branch: str | None = None
) -> pygit2.Repository:
    """A work tree of `base_branch` from the mirror at `dest`; with `branch`, on a
    new local branch of that name starting at the same commit."""
    if branch_tip(mirror, base_branch) is None:
        raise WorkspaceError(f"branch {base_branch!r} is not in the repository")
    try:
        repo = pygit2.clone_repository(mirror.path, str(dest), checkout_branch=base_branch)
    except pygit2.GitError as exc:
        message = f"checking out {base_branch!r} failed: {exc}"
        raise (MirrorDamaged(message) if is_damage(exc) else WorkspaceError(message)) from None
    if branch is not None and branch != base_branch:
        commit = repo.head.peel(pygit2.Commit)
        ref = repo.branches.local.create(branch, commit)
        repo.checkout(ref)
    return repo


def commit_paths(
    repo: pygit2.Repository,
    paths: Iterable[str],
    message: str,
    author: Identity,
    co_authors: Iterable[Identity] = (),
) -> pygit2.Oid:
    """Commit exactly `paths` (changed, added or deleted) on HEAD's branch.
    Only the paths the edit reported: test runs leave caches in the tree."""
    root = Path(repo.workdir).resolve()
    index = repo.index
    index.read()
    for rel in sorted(set(paths)):
        try:
            clean_path(rel)
        except PathRefused as exc:
            raise WorkspaceError(
                f"refusing to commit a path outside the work tree: {rel!r} ({exc.reason})"
            ) from None
        target = (root / rel).resolve()
        if not target.is_relative_to(root) or target == root:
            raise WorkspaceError(f"refusing to commit a path outside the work tree: {rel!r}")
        if target.is_file():
            index.add(rel)
        elif rel in index:
            index.remove(rel)
    index.write()
    tree = index.write_tree()
    parent = repo.head.peel(pygit2.Commit)
    if tree == parent.tree_id:
        raise WorkspaceError("the edit left no change to commit")
    trailers = "".join(f"\nCo-authored-by: {who.name} <{who.email}>" for who in co_authors)
    full_message = f"{message.rstrip()}\n{trailers}\n" if trailers else f"{message.rstrip()}\n"
    signature = author.signature()
    return repo.create_commit("HEAD", signature, signature, full_message, tree, [parent.id])


def commit_diff(repo: pygit2.Repository, oid: pygit2.Oid) -> str:
    commit = repo[oid].peel(pygit2.Commit)
    return repo.diff(commit.parents[0], commit).patch or ""


def push(
    repo: pygit2.Repository, clone_url: str, local_branch: str, remote_branch: str, token: str | None
) -> None:
    """Push `local_branch` to `remote_branch` of `clone_url` (fast-forward only).
    The remote is anonymous: the URL is not saved in the work tree's config."""
    callbacks = _TokenCallbacks(token)
    remote = repo.remotes.create_anonymous(clone_url)
    try:
        remote.push([f"refs/heads/{local_branch}:refs/heads/{remote_branch}"], callbacks=callbacks)
    except (pygit2.GitError, OSError) as exc:
        text = _scrub(exc, token)
        message = f"pushing to {remote_branch!r} failed: {text}"
        kind = rejection_kind(text)
        raise (PushRejected(message, kind) if kind != "other" else WorkspaceError(message)) from None
    if callbacks.rejected:
        reasons = "; ".join(f"{ref}: {why}" for ref, why in callbacks.rejected.items())
        raise PushRejected(f"the remote rejected the push ({reasons})", rejection_kind(reasons))


def replay(
    repo: pygit2.Repository, oid: pygit2.Oid, branch: str, clone_url: str, token: str | None
) -> pygit2.Oid:
    """Re-apply commit `oid` (the tip of local `branch`) onto the branch as
    `clone_url` now has it, after a push found the branch moved on. Raises
    WorkspaceError when the two changes conflict."""
    fetched = f"refs/patchling/upstream/{branch}"
    try:
        repo.remotes.create_anonymous(clone_url).fetch(
            [f"+refs/heads/{branch}:{fetched}"], callbacks=_TokenCallbacks(token)
        )
    except (pygit2.GitError, OSError) as exc:
        raise WorkspaceError(f"fetching {branch!r} again failed: {_scrub(exc, token)}") from None
    onto = repo.references[fetched].peel(pygit2.Commit)
    commit = repo[oid].peel(pygit2.Commit)
    index = repo.merge_trees(commit.parents[0].tree, onto.tree, commit.tree)
    if index.conflicts is not None:
        raise WorkspaceError(
            f"`{branch}` changed while the edit was made, and the edit conflicts with those changes"
        )
    tree = index.write_tree(repo)
    new = repo.create_commit(None, commit.author, commit.committer, commit.message, tree, [onto.id])
    repo.references[f"refs/heads/{branch}"].set_target(new)
    return new


def _safe_url(url: str) -> str:
    # Drop any userinfo a configured URL might carry before it reaches a message.
    return re.sub(r"//[^/@]*@", "//", url)


def _scrub(exc: BaseException, token: str | None) -> str:
    text = str(exc)
    return text.replace(token, "***") if token else text
