"""What context costs as a repository grows: CPU seconds and peak memory of one
`patchling context` call, cold (empty index cache) and warm (the cache filled by
the call before), and in the App's way (the index kept in memory, one file
changed, context again), side by side.

    .venv/bin/python -m bench.index_cost [--repo PATH] [--files 10000] [--runs 3] [--json]

Without --repo the bench builds its corpus from local data: the localisation
snapshots (`<workspace>/shared/bench/localize/*/src.tar.gz`) copied under distinct
top-level directory names until about --files files, committed to a fresh git
repository. With --repo it measures that tree as it is (a git work tree or a
plain directory). Each CLI call runs in its own process; CPU is user + system
time, memory the peak resident set (both from wait4). Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import pygit2

from bench.shared import bench_data, need
from bot.context import ContextMemo, select_context
from bot.index import build_index

INSTRUCTION = "Facilitate proxy configuration by environment variables"
BUDGET = 4000
TARGET_WARM_S = 1.5
TARGET_COLD_S = 10.0
TARGET_APP_S = 1.0
TARGET_RSS_MB = 200.0


def synthesise(dest: Path, files: int) -> Path:
    """Copies of the localisation snapshots under distinct names, committed."""
    snapshots = sorted(need(bench_data() / "localize").glob("*/src.tar.gz"))
    dest.mkdir(parents=True)
    count, copy = 0, 0
    while count < files:
        for snap in snapshots:
            where = dest / f"copy{copy}_{snap.parent.name.replace('-', '_')}"
            with tarfile.open(snap) as tar:
                tar.extractall(where, filter="data")
            count += sum(1 for p in where.rglob("*") if p.is_file())
            if count >= files:
                break
        copy += 1
    commit(dest)
    return dest


def commit(root: Path) -> None:
    repo = pygit2.init_repository(str(root), initial_head="main")
    repo.index.add_all()
    repo.index.write()
    tree = repo.index.write_tree()
    who = pygit2.Signature("bench", "bench@example.invalid")
    repo.create_commit("HEAD", who, who, "snapshot", tree, [])


def cli_call(repo: Path, data_dir: Path) -> tuple[float, float, float]:
    """(CPU seconds, wall seconds, peak RSS in MB) of one `patchling context` process."""
    argv = [sys.executable, "-m", "bot.cli", "context", "--repo", str(repo), "--budget", str(BUDGET)]
    argv += ["--data-dir", str(data_dir), "--json", INSTRUCTION]
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        err = proc.stderr.read().decode() if proc.stderr else ""
        raise SystemExit(f"patchling context failed: {err[-2000:]}")
    return usage.ru_utime + usage.ru_stime, wall, usage.ru_maxrss / 1024


def app_refresh(repo: Path, data_dir: Path, runs: int) -> list[float]:
    """Seconds (CPU of this process) to refresh a kept index after one file changed
    and select context again: what the App pays per command on a warm repository."""
    cache = data_dir / "cache" / "index"
    index = build_index(repo, cache)
    memo = ContextMemo(index)
    select_context(repo, INSTRUCTION, BUDGET, memo=memo)
    victim = next(p for p in sorted(index.files) if p.endswith(".py"))
    times: list[float] = []
    for n in range(runs):
        with open(repo / victim, "a") as fh:
            fh.write(f"\n# touched {n}\n")
        start = time.process_time()
        index = build_index(repo, cache, previous=index)
        memo = ContextMemo(index)
        select_context(repo, INSTRUCTION, BUDGET, memo=memo)
        times.append(time.process_time() - start)
    return times


def measure(repo: Path, runs: int) -> dict:
    cold: list[tuple[float, float, float]] = []
    warm: list[tuple[float, float, float]] = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="patchling-cost-") as tmp:
            cold.append(cli_call(repo, Path(tmp)))
            warm.extend(cli_call(repo, Path(tmp)) for _ in range(2))
    with tempfile.TemporaryDirectory(prefix="patchling-cost-") as tmp:
        app = app_refresh(repo, Path(tmp), runs)
    return {
        "files": len(build_index(repo).files),
        "cold_cpu_s": _min_median([c[0] for c in cold]),
        "warm_cpu_s": _min_median([w[0] for w in warm]),
        "cold_rss_mb": round(max(c[2] for c in cold), 1),
        "warm_rss_mb": round(max(w[2] for w in warm), 1),
        "app_refresh_cpu_s": _min_median(app),
    }


def _min_median(values: list[float]) -> list[float]:
    return [round(min(values), 2), round(statistics.median(values), 2)]


def print_table(result: dict) -> None:
    print(f"{result['files']} indexed files; CPU seconds min / median; RSS peak")
    rows = [
        ("cold CLI", result["cold_cpu_s"], TARGET_COLD_S, result["cold_rss_mb"]),
        ("warm CLI", result["warm_cpu_s"], TARGET_WARM_S, result["warm_rss_mb"]),
        ("App, one file changed", result["app_refresh_cpu_s"], TARGET_APP_S, None),
    ]
    for name, (low, mid), target, rss in rows:
        memory = f"{rss:7.1f} MB (target {TARGET_RSS_MB:.0f})" if rss is not None else ""
        ratio = mid / target
        print(f"{name:<24} {low:6.2f} / {mid:6.2f} s  target {target:4.1f} s  ratio {ratio:5.2f}  {memory}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repo", type=Path, help="measure this tree instead of a synthesised one")
    parser.add_argument(
        "--files", type=int, default=10_000, help="size of the synthesised tree (default 10000)"
    )
    parser.add_argument("--runs", type=int, default=3, help="cold runs, each followed by two warm ones")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="patchling-corpus-") as tmp:
        if args.repo is not None:
            repo = args.repo.resolve()
            if not repo.is_dir():
                print(f"{repo}: not a directory", file=sys.stderr)
                return 2
        else:
            repo = synthesise(Path(tmp) / "corpus", args.files)
        result = measure(repo, args.runs)
        shutil.rmtree(Path(tmp), ignore_errors=True)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
