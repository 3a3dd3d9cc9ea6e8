"""Things built once per key and reused: a repository's Python environment
(bot/pyenv.py), its node_modules or Go modules (bot/deps.py).

Each lives at `<place>/<key>/`, complete once it holds its marker file. It is
built in a temporary directory beside its final place and renamed into place,
under a lock per key, so a failed or concurrent build never leaves a half-made
one behind, and a second job waiting on the lock reuses the first one's.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

LOCK_TIMEOUT_S = 1800.0
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


def remove_tree(path: Path) -> None:
    """Remove `path` whatever its modes (Go writes its module cache read-only)."""
    if not os.path.lexists(path):
        return
    if path.is_dir() and not path.is_symlink():
        for dirpath, _, _ in os.walk(path):  # never follows links
            os.chmod(dirpath, stat.S_IRWXU)
    shutil.rmtree(path, ignore_errors=True)


def build_once(place: Path, key: str, marker: str, build: Callable[[Path], None], what: str) -> Built:
    """`<place>/<key>`, reused when it holds `marker`, else made by
    `build(target)` (which writes `target`, not yet existing, and raises
    EnvError on failure) and renamed into place with `marker` written last.
    `what` names it in messages ("this test environment")."""
    started = time.monotonic()
    final = place / key
    if (final / marker).is_file():
        return Built(final, True, time.monotonic() - started)
    place.mkdir(parents=True, exist_ok=True)
    try:
        with FileLock(str(place / f"{key}.lock"), timeout=LOCK_TIMEOUT_S):
            if (final / marker).is_file():  # another job built it while we waited
                return Built(final, True, time.monotonic() - started)
            building = Path(tempfile.mkdtemp(prefix=f".build-{key}-", dir=place))
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
