"""Git with pygit2: mirrors, work trees, commits and pushes against a local bare remote."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pygit2
import pytest
from filelock import Timeout

from bot import workspace
from bot.workspace import Identity, WorkspaceError
from tests.conftest import CALCULATOR, commit_all
from tests.fakegithub import seed_remote

TOKEN = "ghs_not_a_real_token_0123456789"
BOT = Identity.user("patchling[bot]", 4242)


@pytest.fixture
def remote(tmp_path: Path) -> tuple[Path, pygit2.Repository]:
    return seed_remote(tmp_path, CALCULATOR)


def mirror_of(tmp_path: Path, url: str) -> pygit2.Repository:
    path = workspace.mirror_path(tmp_path / "data", "acme/calculator")
    with workspace.mirror_lock(path):
        return workspace.update_mirror(path, url, TOKEN)


# Holds the mirror's lock until told (a line on stdin) to let go.
HOLD_MIRROR_LOCK = """
import sys
from pathlib import Path
from bot import workspace
with workspace.mirror_lock(Path(sys.argv[1])):
    print("held", flush=True)
    sys.stdin.readline()
"""


def test_mirror_lock_excludes_another_process(tmp_path: Path) -> None:
    path = workspace.mirror_path(tmp_path / "data", "acme/calculator")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_MIRROR_LOCK, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(Timeout):
            workspace.mirror_lock(path).acquire(timeout=0)
    finally:
        holder.communicate("\n")
    assert holder.returncode == 0
    with workspace.mirror_lock(path).acquire(timeout=0):  # free once the other process let go
        pass


def test_mirror_lock_excludes_another_thread(tmp_path: Path) -> None:
    path = workspace.mirror_path(tmp_path / "data", "acme/calculator")
    other = workspace.mirror_path(tmp_path / "data", "acme/other")
    outcomes: list[str] = []

    def try_to_take(where: Path) -> None:
        try:
            with workspace.mirror_lock(where).acquire(timeout=0):
                outcomes.append(f"took {where.name}")
        except Timeout:
            outcomes.append(f"refused {where.name}")

    with workspace.mirror_lock(path):
        for where in (path, other):  # another mirror's lock is free meanwhile
            thread = threading.Thread(target=try_to_take, args=(where,))
            thread.start()
            thread.join()
    assert outcomes == ["refused calculator.git", "took other.git"]


def test_identity_is_githubs_noreply_form() -> None:
    assert BOT.email == "4242+patchling[bot]@users.noreply.github.com"
    assert Identity.user("octocat", 1).email == "1+octocat@users.noreply.github.com"


@pytest.mark.parametrize("name", ["acme", "acme/../etc", "../x/y", "a/b/c", "acme/calc ulator"])
def test_mirror_path_refuses_odd_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(WorkspaceError):
        workspace.mirror_path(tmp_path, name)


def test_mirror_follows_the_remote(tmp_path: Path, remote: tuple[Path, pygit2.Repository]) -> None:
    remote_path, remote_repo = remote
    mirror = mirror_of(tmp_path, f"file://{remote_path}")
    assert mirror.is_bare
    main = remote_repo.references["refs/heads/main"].target
    assert workspace.branch_tip(mirror, "main") == main

    # New commits and branches arrive; deleted branches go.
    seed = pygit2.Repository(str(tmp_path / "seed"))
    (tmp_path / "seed" / "NEWS.md").write_text("news\n")
    newer = commit_all(seed, "News")
    remote_repo.references.create("refs/heads/topic", main)
    seed_remote_push(seed, remote_path)
    mirror = mirror_of(tmp_path, f"file://{remote_path}")
    assert workspace.branch_tip(mirror, "main") == newer
    assert workspace.branch_tip(mirror, "topic") == main
    remote_repo.references.delete("refs/heads/topic")
    mirror = mirror_of(tmp_path, str(remote_path))  # a plain path works as well as file://
    assert workspace.branch_tip(mirror, "topic") is None
    assert mirror.remotes["origin"].url == str(remote_path)


def seed_remote_push(seed: pygit2.Repository, remote_path: Path) -> None:
    seed.remotes.create_anonymous(str(remote_path)).push(["refs/heads/main:refs/heads/main"])


def test_a_mirror_fetched_many_times_is_repacked(
    tmp_path: Path, remote: tuple[Path, pygit2.Repository], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(workspace, "MAX_PACKS", 3)
    remote_path, _ = remote
    seed = pygit2.Repository(str(tmp_path / "seed"))
    url = f"file://{remote_path}"
    counts = []
    for n in range(workspace.MAX_PACKS + 1):
        (tmp_path / "seed" / "NEWS.md").write_text(f"news {n}\n")
        tip = commit_all(seed, f"News {n}")
        seed_remote_push(seed, remote_path)
        mirror = mirror_of(tmp_path, url)
        counts.append(workspace.pack_count(Path(mirror.path)))
        assert workspace.branch_tip(mirror, "main") == tip
    # One pack per fetch until there are more than MAX_PACKS, then one pack.
    assert counts == [1, 2, 3, 1]
    assert mirror[tip].peel(pygit2.Commit).message == "News 3"


def test_checkout_commit_and_push(tmp_path: Path, remote: tuple[Path, pygit2.Repository]) -> None:
    remote_path, remote_repo = remote
    mirror = mirror_of(tmp_path, f"file://{remote_path}")
    tree = workspace.checkout(mirror, "main", tmp_path / "work", branch="patchling/7-clear")
    root = Path(tree.workdir)
    assert tree.head.shorthand == "patchling/7-clear"

    (root / "calculator" / "calculator.py").write_text("# changed\n")
    (root / "calculator" / "memory.py").write_text("MEMORY = None\n")
    (root / "calculator" / "__main__.py").unlink()
    (root / "stray.log").write_text("left by a test run\n")
    author = Identity.user("maintainer", 5150)
    oid = workspace.commit_paths(
        tree,
        ["calculator/calculator.py", "calculator/memory.py", "calculator/__main__.py"],
        "Clear memory",
        BOT,
        [author],
    )
    commit = tree[oid].peel(pygit2.Commit)
    assert commit.author.name == "patchling[bot]" and commit.committer.email == BOT.email
    assert commit.message == (
        "Clear memory\n\nCo-authored-by: maintainer <5150+maintainer@users.noreply.github.com>\n"
    )
    names = {delta.new_file.path for delta in tree.diff(commit.parents[0], commit).deltas}
    assert names == {"calculator/calculator.py", "calculator/memory.py", "calculator/__main__.py"}
    assert "stray.log" not in commit.tree
    assert "+MEMORY = None" in workspace.commit_diff(tree, oid)

    workspace.push(tree, f"file://{remote_path}", "patchling/7-clear", "patchling/7-clear", TOKEN)
    assert remote_repo.references["refs/heads/patchling/7-clear"].target == oid
    # The token is in no config: not the remote's, the mirror's or the work tree's.
    for config in (remote_path / "config", Path(mirror.path) / "config", root / ".git" / "config"):
        assert TOKEN not in config.read_text()


def test_push_is_fast_forward_only(tmp_path: Path, remote: tuple[Path, pygit2.Repository]) -> None:
    remote_path, remote_repo = remote
    mirror = mirror_of(tmp_path, str(remote_path))
    first = workspace.checkout(mirror, "main", tmp_path / "one", branch="main")
    second = workspace.checkout(mirror, "main", tmp_path / "two", branch="main")
    for repo, text in ((first, "one"), (second, "two")):
        Path(repo.workdir, "README.md").write_text(text)
        workspace.commit_paths(repo, ["README.md"], text, BOT)
    workspace.push(first, str(remote_path), "main", "main", None)
    with pytest.raises(WorkspaceError, match="pushing"):
        workspace.push(second, str(remote_path), "main", "main", None)
    assert remote_repo.references["refs/heads/main"].peel(pygit2.Commit).message == "one\n"


def test_commit_refuses_paths_outside_and_empty_changes(
    tmp_path: Path, remote: tuple[Path, pygit2.Repository]
) -> None:
    mirror = mirror_of(tmp_path, str(remote[0]))
    tree = workspace.checkout(mirror, "main", tmp_path / "work")
    for bad in ("../outside.py", ".git/config", ".GIT/config", "sub/.Git/HEAD", "/etc/passwd"):
        with pytest.raises(WorkspaceError, match="outside"):
            workspace.commit_paths(tree, [bad], "x", BOT)
    with pytest.raises(WorkspaceError, match="no change"):
        workspace.commit_paths(tree, ["README.md"], "x", BOT)


def test_checkout_of_a_missing_branch(tmp_path: Path, remote: tuple[Path, pygit2.Repository]) -> None:
    mirror = mirror_of(tmp_path, str(remote[0]))
    with pytest.raises(WorkspaceError, match="not in the repository"):
        workspace.checkout(mirror, "nope", tmp_path / "work")


def test_fetch_failure_names_no_secret(tmp_path: Path) -> None:
    with pytest.raises(WorkspaceError, match="fetching") as caught:
        mirror_of(tmp_path, f"file://{tmp_path}/missing.git")
    assert TOKEN not in str(caught.value)


def test_credentials_are_offered_once_as_the_installation_token() -> None:
    callbacks = workspace._TokenCallbacks(TOKEN)
    allowed = pygit2.enums.CredentialType.USERPASS_PLAINTEXT
    credential = callbacks.credentials("https://github.com/acme/calculator.git", None, allowed)
    assert isinstance(credential, pygit2.UserPass)
    assert credential.credential_tuple == ("x-access-token", TOKEN)
    # A refused token must fail the operation, not make libgit2 ask forever.
    with pytest.raises(WorkspaceError):
        callbacks.credentials("https://github.com/acme/calculator.git", None, allowed)
    with pytest.raises(WorkspaceError):
        workspace._TokenCallbacks(None).credentials("https://x", None, allowed)
