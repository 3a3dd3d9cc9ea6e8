"""Where the shared data lies: `../shared/` beside the checkout, or
$PATCHLING_SHARED; the benchmark data alone can be moved with
$PATCHLING_BENCH_DATA."""

from __future__ import annotations

import sys
from pathlib import Path

from bot.shared_data import bench_dir, shared_dir

SHARED = shared_dir()


def bench_data() -> Path:
    return bench_dir()


def need(path: Path) -> Path:
    """`path`, or a clear exit (status 1) when the shared data is not there."""
    if not path.exists():
        sys.exit(
            f"no benchmark data at {path}: put shared/ beside the checkout, or set PATCHLING_SHARED "
            "(PATCHLING_BENCH_DATA for the bench/ part alone)"
        )
    return path
