"""Where the shared data lies: `../shared/` beside the checkout, or
$PATCHLING_SHARED; the benchmark data alone can be moved with
$PATCHLING_BENCH_DATA."""

from __future__ import annotations

import os
import sys
from pathlib import Path

SHARED = Path(os.environ.get("PATCHLING_SHARED") or Path(__file__).resolve().parents[2] / "shared")


def bench_data() -> Path:
    env = os.environ.get("PATCHLING_BENCH_DATA")
    return Path(env) if env else SHARED / "bench"


def need(path: Path) -> Path:
    """`path`, or a clear exit (status 1) when the shared data is not there."""
    if not path.exists():
        sys.exit(
            f"no benchmark data at {path}: put shared/ beside the checkout, or set PATCHLING_SHARED "
            "(PATCHLING_BENCH_DATA for the bench/ part alone)"
        )
    return path
