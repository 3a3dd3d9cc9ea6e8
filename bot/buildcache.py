"""Things built once per key and reused: a repository's Python environment
(bot/pyenv.py), its node_modules, Go modules or Rust crates (bot/deps.py).

Each lives at `<place>/<key>/`, complete once it holds its marker file. It is
built in a temporary directory beside its final place and renamed into place,
under a lock per key, so a failed or concurrent build never leaves a half-made
one behind, and a second job waiting on the lock reuses the first one's.

A job that uses one holds `<place>/<key>.use` shared (filelock's
ReadWriteLock: across threads and processes) and sets the directory's mtime,
its last use; bot/prune.py removes one only under that lock held exclusively,
least recently used first.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, ReadWriteLock, Timeout

LOCK_TIMEOUT_S = 1800.0
USE_SUFFIX = ".use"
BUILD_PREFIX = ".build-"
# What every installer may see of the server's settings to reach its registry: the
# proxies and the certificate authorities. Each adds where its own registry is.
PROXY_AND_CA_ENV = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
)


class EnvError(Exception):
    """What the tests need could not be built; the message says why, for people."""


@dataclass
class Built:
    path: Path
    reused: bool
    seconds: float  # building it, or finding it when reused


def build_lock(place: Path, key: str, timeout: float = LOCK_TIMEOUT_S) -> FileLock:
    """Held while `<place>/<key>` is being built (in `<place>/.build-<key>-*`)."""
    return FileLock(str(place / f"{key}.lock"), timeout=timeout)


def remove_tree(path: Path) -> None:
    """Remove `path` whatever its modes (Go writes its module cache read-only)."""
    if not os.path.lexists(path):
        return
    if path.is_dir() and not path.is_symlink():
        for dirpath, _, _ in os.walk(path):  # never follows links
            os.chmod(dirpath, stat.S_IRWXU)
    shutil.rmtree(path, ignore_errors=True)


def use_lock(place: Path, name: str) -> ReadWriteLock:
    """The lock on `<place>/<name>`: shared while jobs use it, exclusive to remove it.
    Its own instance each time: SQLite then tells threads apart as it does processes."""
    return ReadWriteLock(str(place / f"{name}{USE_SUFFIX}"), timeout=LOCK_TIMEOUT_S, is_singleton=False)


def use(place: Path, name: str, hold: ExitStack) -> None:
    """Keep `<place>/<name>` from being pruned until `hold` closes, and mark it
    used now. Raises EnvError when it cannot be held."""
    place.mkdir(parents=True, exist_ok=True)
    try:
        hold.enter_context(use_lock(place, name).read_lock())
    except (Timeout, OSError, sqlite3.Error) as exc:  # the lock is an SQLite file
        raise EnvError(f"could not lock {name} for use: {exc}") from None
    touch(place / name)


def touch(path: Path) -> None:
    """Set `path`'s mtime, its last use, to now (never following a link)."""
    with suppress(FileNotFoundError):  # not built yet
        os.utime(path, follow_symlinks=False)


def build_once(
    place: Path,
    key: str,
    marker: str,
    build: Callable[[Path], None],
    what: str,
    hold: ExitStack | None = None,
) -> Built:
    """`<place>/<key>`, reused when it holds `marker`, else made by
    `build(target)` (which writes `target`, not yet existing, and raises
    EnvError on failure) and renamed into place with `marker` written last.
    `what` names it in messages ("this test environment"). It is held against
    pruning until `hold` closes, or while this runs without one."""
    with ExitStack() as own:
        use(place, key, hold if hold is not None else own)
        built = _build_once(place, key, marker, build, what)
        touch(built.path)
        return built


def _build_once(place: Path, key: str, marker: str, build: Callable[[Path], None], what: str) -> Built:
    started = time.monotonic()
    final = place / key
    if (final / marker).is_file():
        return Built(final, True, time.monotonic() - started)
    try:
        with build_lock(place, key):
            if (final / marker).is_file():  # another job built it while we waited
                return Built(final, True, time.monotonic() - started)
            building = Path(tempfile.mkdtemp(prefix=f"{BUILD_PREFIX}{key}-", dir=place))
            try:
                build(building / "out")
                (building / "out" / marker).write_text(key + "\n")
                remove_tree(final)  # a leftover without its marker
                (building / "out").rename(final)
            finally:
                remove_tree(building)
    except Timeout:
        raise EnvError(f"another job is still building {what}") from None
    except (OSError, subprocess.SubprocessError) as exc:
        raise EnvError(f"could not build {what}: {exc}") from None
    return Built(final, False, time.monotonic() - started)
