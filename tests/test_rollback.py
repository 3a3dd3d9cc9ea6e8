"""bot.rollback: whatever a failed step did to the paths it was about to write,
the checkout comes back byte for byte, modes included, and nothing is written
through a link that appeared meanwhile."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from bot.rollback import Snapshot, rollback_on_error


def tree(root: Path) -> dict[str, tuple[str, bytes | str, int]]:
    """Every entry under root: kind, content (a link's target) and mode."""
    found: dict[str, tuple[str, bytes | str, int]] = {}
    for path in sorted(root.rglob("*")):
        info = os.lstat(path)
        rel = path.relative_to(root).as_posix()
        if stat.S_ISLNK(info.st_mode):
            found[rel] = ("link", os.readlink(path), 0)
        elif stat.S_ISDIR(info.st_mode):
            found[rel] = ("dir", b"", stat.S_IMODE(info.st_mode))
        else:
            found[rel] = ("file", path.read_bytes(), stat.S_IMODE(info.st_mode))
    return found


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "calc.py").write_bytes(b"x = 1\r\n")
    (root / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (root / "run.sh").chmod(0o750)
    (root / "README.md").write_text("readme\n")
    return root


class Boom(Exception):
    pass


def test_a_failure_midway_leaves_the_checkout_byte_identical(checkout: Path) -> None:
    before = tree(checkout)
    paths = ["pkg/calc.py", "run.sh", "README.md", "new/deep/file.py", "pkg/added.py"]
    with pytest.raises(Boom), rollback_on_error(checkout, paths):
        (checkout / "pkg" / "calc.py").write_text("changed\n")
        (checkout / "run.sh").chmod(0o644)
        (checkout / "README.md").unlink()  # deleted: comes back
        (checkout / "new" / "deep").mkdir(parents=True)
        (checkout / "new" / "deep" / "file.py").write_text("new\n")  # new: goes, with its dirs
        (checkout / "pkg" / "added.py").write_text("new\n")
        raise Boom
    assert tree(checkout) == before


def test_without_a_failure_the_changes_stay(checkout: Path) -> None:
    with rollback_on_error(checkout, ["pkg/calc.py", "fresh.txt"]):
        (checkout / "pkg" / "calc.py").write_text("changed\n")
        (checkout / "fresh.txt").write_text("new\n")
    assert (checkout / "pkg" / "calc.py").read_text() == "changed\n"
    assert (checkout / "fresh.txt").read_text() == "new\n"


def test_a_deleted_directory_comes_back_with_its_file(checkout: Path) -> None:
    before = tree(checkout)
    snapshot = Snapshot.take(checkout, ["pkg/calc.py"])
    (checkout / "pkg" / "calc.py").unlink()
    (checkout / "pkg").rmdir()
    assert snapshot.restore() == []
    assert tree(checkout) == before


def test_an_untouched_file_is_not_rewritten(checkout: Path) -> None:
    target = checkout / "README.md"
    os.utime(target, ns=(1_000_000_000, 1_000_000_000))
    Snapshot.take(checkout, ["README.md"]).restore()
    assert target.stat().st_mtime_ns == 1_000_000_000


def test_a_link_swapped_in_is_removed_and_its_target_untouched(checkout: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("secret\n")
    before = tree(checkout)
    snapshot = Snapshot.take(checkout, ["README.md", "made.txt"])
    (checkout / "README.md").unlink()
    (checkout / "README.md").symlink_to(outside)
    (checkout / "made.txt").symlink_to(outside)
    assert snapshot.restore() == []
    assert tree(checkout) == before
    assert outside.read_text() == "secret\n"


def test_a_linked_directory_above_is_never_written_through(checkout: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "calc.py").write_text("theirs\n")
    snapshot = Snapshot.take(checkout, ["pkg/calc.py"])
    (checkout / "pkg" / "calc.py").unlink()
    (checkout / "pkg").rmdir()
    (checkout / "pkg").symlink_to(elsewhere, target_is_directory=True)
    assert snapshot.restore() == ["pkg/calc.py"]
    assert (elsewhere / "calc.py").read_text() == "theirs\n"


def test_paths_never_written_are_left_out(checkout: Path, tmp_path: Path) -> None:
    (checkout / "link.txt").symlink_to(tmp_path / "outside.txt")
    snapshot = Snapshot.take(checkout, ["../escape.txt", "link.txt", ".git/config", "README.md"])
    assert list(snapshot.files) == ["README.md"]
