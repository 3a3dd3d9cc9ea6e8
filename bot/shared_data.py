"""Where the project's shared data lies (real webhook deliveries, GitHub's
documented responses, the benchmark sets): `shared/` beside the checkout, or
$PATCHLING_SHARED; the benchmark part alone can be moved with
$PATCHLING_BENCH_DATA. One rule for the benchmarks, the tests and
`patchling eval --suite exercism`."""

from __future__ import annotations

import os
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    env = os.environ.get("PATCHLING_SHARED")
    return Path(env) if env else CHECKOUT.parent / "shared"


def bench_dir() -> Path:
    env = os.environ.get("PATCHLING_BENCH_DATA")
    return Path(env) if env else shared_dir() / "bench"
