"""Old test environments removed, so the disk they take stays bounded.

What bot.buildcache builds once per key under the envs directory (Python
environments, node_modules, Go module caches, cargo homes) and each repository's download
caches are entries: directories named by a hex digest, whose mtime is their
last use (bot.buildcache.use sets it). Pruning removes the entries unused for
longer than the maximum age, then, least recently used first, as many as it
takes to bring the total under the maximum size.

A job holds each entry it uses under its `.use` lock, shared; removal takes it
exclusively without waiting and skips an entry in use. Under that lock the
entry is renamed to `.trash-*`, one atomic step (a job never finds half of one:
bot.buildcache reuses only a directory holding its marker, at its own name), and
deleted after. Leftovers go too: `.trash-*` from an interrupted removal, and
`.build-*` from a build whose process died (a build in progress holds its build
lock). The lock files themselves stay, empty: deleting one could let a job and
a removal each lock a different file.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from filelock import Timeout
from rich import filesize

from bot import deps, pyenv
from bot.buildcache import BUILD_PREFIX, build_lock, remove_tree, use_lock
from bot.config import Settings
from bot.pyenv import envs_dir_in

log = logging.getLogger(__name__)

# Where entries live under the envs directory ("": the Python environments).
PLACES = ("", *deps.KINDS, pyenv.CACHE_DIR, deps.CACHE_DIR)
ENTRY_NAME = re.compile(r"[0-9a-f]{16,64}")
TRASH_PREFIX = ".trash-"
# Its mtime: when pruning last ran after a job.
STAMP = ".pruned"
# After a job, pruning runs again only once this long has passed: measuring
# the entries walks every file of every one, too much to repeat after each job.
AFTER_JOB_EVERY_S = 600.0
GB = 10**9
DAY_S = 86_400.0


@dataclass(frozen=True)
class Limits:
    max_age_s: float
    max_bytes: int

    @classmethod
    def of(cls, max_age_days: float, max_gb: float) -> Limits:
        return cls(max_age_days * DAY_S, int(max_gb * GB))


@dataclass(frozen=True)
class Entry:
    path: Path
    used: float  # the last use, seconds since the epoch
    size: int  # bytes on disk


@dataclass
class Pruned:
    removed: list[Entry] = field(default_factory=list)  # or, in a dry run, would be
    busy: list[Entry] = field(default_factory=list)  # due to go, but in use
    kept: int = 0

    @property
    def freed(self) -> int:
        return sum(e.size for e in self.removed)


def tree_size(path: Path) -> int:
    """Bytes `path` takes on disk, each file once however many links it has
    here (uv links a venv's files to its cache: those count in both)."""
    seen: set[int] = set()
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):  # never follows links
        for name in (*dirnames, *filenames):
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue  # removed meanwhile
            if st.st_ino not in seen:
                seen.add(st.st_ino)
                total += st.st_blocks * 512
    return total


def _measure(path: Path) -> Entry | None:
    try:
        used = path.lstat().st_mtime
    except OSError:
        return None  # removed meanwhile
    return Entry(path, used, tree_size(path))


def _children(envs_dir: Path) -> Iterator[Path]:
    """Every directory (never a link) in each place."""
    for place in PLACES:
        try:
            found = list(os.scandir(envs_dir / place))
        except (FileNotFoundError, NotADirectoryError):
            continue
        yield from (Path(d.path) for d in found if d.is_dir(follow_symlinks=False))


def entries(envs_dir: Path) -> list[Entry]:
    """The entries under `envs_dir`, least recently used first."""
    found = [_measure(p) for p in _children(envs_dir) if ENTRY_NAME.fullmatch(p.name)]
    return sorted((e for e in found if e is not None), key=lambda e: e.used)


def leftovers(envs_dir: Path) -> list[Entry]:
    """Directories of removals and builds that did not finish (or have not yet)."""
    found = [_measure(p) for p in _children(envs_dir) if p.name.startswith((TRASH_PREFIX, BUILD_PREFIX))]
    return [e for e in found if e is not None]


def _remove_leftover(entry: Entry, dry_run: bool) -> bool:
    """Remove a trash or dead build directory; False for a build in progress."""
    name = entry.path.name
    if name.startswith(TRASH_PREFIX):
        if not dry_run:
            remove_tree(entry.path)
        return True
    key = name.removeprefix(BUILD_PREFIX).rsplit("-", 1)[0]
    try:
        with build_lock(entry.path.parent, key, timeout=0):
            if not dry_run:
                remove_tree(entry.path)
    except Timeout:
        return False
    return True


def _remove(entry: Entry, dry_run: bool) -> bool:
    """Rename `entry` to trash under its lock, then delete it; False when a job
    uses it or has since it was measured."""
    path = entry.path
    try:
        with use_lock(path.parent, path.name).write_lock(blocking=False):
            if path.lstat().st_mtime != entry.used:
                return False
            if dry_run:
                return True
            trash = path.rename(path.with_name(f"{TRASH_PREFIX}{path.name}-{uuid.uuid4().hex[:8]}"))
    except (Timeout, FileNotFoundError):  # in use, or another removal took it
        return False
    remove_tree(trash)
    return True


def _due(entry: Entry, total: int, now: float, limits: Limits) -> bool:
    return entry.used < now - limits.max_age_s or total > limits.max_bytes


def prune(envs_dir: Path, limits: Limits, *, dry_run: bool = False, now: float | None = None) -> Pruned:
    """Remove the leftovers, the entries older than the maximum age, and the least
    recently used until the rest fit the maximum size; never one in use. A dry
    run removes nothing and reports what would go."""
    now = time.time() if now is None else now
    result = Pruned()
    result.removed += [e for e in leftovers(envs_dir) if _remove_leftover(e, dry_run)]
    found = entries(envs_dir)
    total = sum(e.size for e in found)
    for entry in found:
        if not _due(entry, total, now, limits):
            result.kept += 1
        elif _remove(entry, dry_run):
            result.removed.append(entry)
            total -= entry.size
        else:
            result.busy.append(entry)
    return result


def due_after_job(envs_dir: Path, now: float | None = None) -> bool:
    """Whether pruning should run after a job: one stat when it should not.
    Marks it as run when it should, so that the job's threads take turns."""
    now = time.time() if now is None else now
    stamp = envs_dir / STAMP
    try:
        if stamp.stat().st_mtime > now - AFTER_JOB_EVERY_S:
            return False
    except FileNotFoundError:
        envs_dir.mkdir(parents=True, exist_ok=True)
        stamp.touch()
    os.utime(stamp, (now, now))
    return True


def limits_of(settings: Settings) -> Limits:
    return Limits.of(settings.envs_max_age_days, settings.envs_max_gb)


def prune_logged(settings: Settings, *, after_job: bool = False) -> None:
    """Prune for the App (at start-up, and after a job when due): what went is
    logged; a failure is logged too, never raised, since jobs go on without it."""
    envs_dir, limits = envs_dir_in(settings.data_dir), limits_of(settings)
    try:
        if after_job and not due_after_job(envs_dir):
            return
        result = prune(envs_dir, limits)
    except (OSError, sqlite3.Error) as exc:  # a full disk, say
        log.warning("pruning the test environments failed: %s", exc)
        return
    for entry in result.removed:
        log.info("removed %s (%s)", describe(entry, envs_dir), size_text(entry.size))
    if result.removed or result.busy:
        log.info(
            "test environments: %s freed, %d kept, %d in use",
            size_text(result.freed),
            result.kept,
            len(result.busy),
        )


def describe(entry: Entry, envs_dir: Path) -> str:
    return str(entry.path.relative_to(envs_dir))


def size_text(size: int) -> str:
    return filesize.decimal(size)
