"""Put a checkout back exactly as it was: the one rollback both the engine (a
tier whose change failed its tests) and `apply.write_changes` (a write that
failed halfway) use.

A Snapshot holds, per path about to be written, the file's bytes and mode, or
that it did not exist; and the directories the write will create. Restoring
puts every file back byte for byte (a deleted one comes back, a new one goes),
then removes the directories it made, deepest first and only when empty.

Links are never followed (bot.files): a file is read without following any
link, and a restore never writes through one. A link that appeared at a path
since the snapshot is removed (the link itself, never its target); one that
appeared on a directory above a path makes that path fail to restore, reported
to the caller rather than written through.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bot.files import PathRefused, check_path, open_file, symlink_on_path

__all__ = ["Snapshot", "rollback_on_error"]


@dataclass(frozen=True)
class _Saved:
    data: bytes
    mode: int  # permission bits only


@dataclass
class Snapshot:
    root: Path  # its real path: what check_path compares against
    files: dict[str, _Saved | None] = field(default_factory=dict)  # None: did not exist
    created_dirs: list[Path] = field(default_factory=list)

    @classmethod
    def take(cls, root: Path, paths: Iterable[str]) -> Snapshot:
        """What `paths` hold now. A path Patchling never writes (an escape, a
        link on the way) is left out: nothing of ours will be there to undo."""
        snapshot = cls(Path(os.path.realpath(root)))
        for raw in paths:
            with contextlib.suppress(PathRefused):
                snapshot._save(check_path(snapshot.root, raw))
        return snapshot

    def _save(self, rel: str) -> None:
        try:
            with open_file(self.root, rel) as fh:
                self.files[rel] = _Saved(fh.read(), stat.S_IMODE(os.fstat(fh.fileno()).st_mode))
            return
        except (FileNotFoundError, NotADirectoryError):
            self.files[rel] = None
        self._note_missing_dirs(self.root / rel)

    def _note_missing_dirs(self, target: Path) -> None:
        parent = target.parent
        while parent != self.root and not parent.exists():
            if parent not in self.created_dirs:
                self.created_dirs.append(parent)
            parent = parent.parent

    def restore(self) -> list[str]:
        """Put every path back; the paths that could not be (an OSError, a link
        on a directory above), for the caller to report. Never raises OSError."""
        failed = [rel for rel, saved in self.files.items() if not self._restore_one(rel, saved)]
        # Deepest first, and only if empty: never remove anything we did not make.
        for directory in sorted(self.created_dirs, key=lambda d: len(d.parts), reverse=True):
            with contextlib.suppress(OSError):
                directory.rmdir()
        return failed

    def _restore_one(self, rel: str, saved: _Saved | None) -> bool:
        link = symlink_on_path(self.root, rel)
        if link is not None and link != rel:
            return False  # a linked directory above: never write through it
        target = self.root / rel
        try:
            if saved is None:
                _remove(target)
            elif link is not None or not _holds(target, saved):
                _write_back(target, saved, drop_link=link is not None)
        except OSError:
            return False
        return True


def _holds(target: Path, saved: _Saved) -> bool:
    """True when `target` is a regular file with exactly the saved bytes and mode:
    left alone, so an untouched file keeps its timestamps too."""
    try:
        info = os.lstat(target)
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(info.st_mode) or stat.S_IMODE(info.st_mode) != saved.mode:
        return False
    return info.st_size == len(saved.data) and target.read_bytes() == saved.data


def _remove(target: Path) -> None:
    """A file (or link) that was not there before goes; a directory someone made
    there is not ours to delete."""
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        if stat.S_ISDIR(os.lstat(target).st_mode):
            raise IsADirectoryError(str(target))
        target.unlink()


def _write_back(target: Path, saved: _Saved, *, drop_link: bool) -> None:
    """The saved bytes through a temporary file and a rename: the rename replaces
    a link standing at `target` instead of following it."""
    if drop_link:
        target.unlink()
    target.parent.mkdir(parents=True, exist_ok=True)  # a test may have removed the directory
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.patchling-tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(saved.data)
        os.chmod(tmp, saved.mode)
        os.replace(tmp, target)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def rollback_on_error(root: Path, paths: Iterable[str]) -> Iterator[Snapshot]:
    """Run the block; if anything escapes it (an error, a refusal, a
    cancellation), put `paths` back as they were before re-raising."""
    snapshot = Snapshot.take(root, paths)
    try:
        yield snapshot
    except BaseException:
        snapshot.restore()
        raise
