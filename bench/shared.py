"""Where the shared data lies: `../shared/` beside the checkout, or
$PATCHLING_SHARED; the benchmark data alone can be moved with
$PATCHLING_BENCH_DATA."""

from __future__ import annotations

import os
from pathlib import Path

SHARED = Path(os.environ.get("PATCHLING_SHARED") or Path(__file__).resolve().parents[2] / "shared")


def bench_data() -> Path:
    env = os.environ.get("PATCHLING_BENCH_DATA")
    return Path(env) if env else SHARED / "bench"
