"""What context costs as a repository grows: CPU seconds and peak memory of one
`patchling context` call, cold (empty index cache) and warm (the cache filled by
the call before), and in the App's way, side by side.

    .venv/bin/python -m bench.index_cost [--repo PATH] [--files 10000] [--runs 3]
        [--before DIR] [--json]

Without --repo the bench builds its corpus from local data: the localisation
snapshots (`<workspace>/shared/bench/localize/*/src.tar.gz`) copied under distinct
top-level directory names until about --files files, committed to a fresh git
repository. With --repo it measures that tree as it is (a git work tree or a
plain directory); the App's rows, like the App, index a fresh checkout of a git
work tree's HEAD, and a committed copy of a plain directory.

The App's rows: "same tree" refreshes an index kept in memory after one file of
the tree changed; "next job" is what a worker does for a second command on the
same repository: a fresh checkout with one file changed by a commit, indexed
from the index the worker kept (`bot.index.KeptIndexes`), then context. CPU of
that process; its peak memory is what holding the index costs.

--before DIR runs every row a second time with the code in DIR (another
checkout of this repository, e.g. `git worktree add DIR main`), in the same run,
for a side-by-side comparison. Each measurement runs in its own process; CPU is
user + system time, memory the peak resident set (both from wait4). Nothing is
downloaded.
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

INSTRUCTION = "Facilitate proxy configuration by environment variables"
BUDGET = 4000
TARGET_WARM_S = 1.5
TARGET_COLD_S = 10.0
TARGET_APP_S = 1.0
TARGET_RSS_MB = 200.0
ROWS = ("cold CLI", "warm CLI", "App, same tree", "App, next job")
HERE = Path(__file__).resolve().parents[1]  # this checkout
TARGETS = (TARGET_COLD_S, TARGET_WARM_S, TARGET_APP_S, TARGET_APP_S)


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
    parents = [] if repo.head_is_unborn else [repo.head.target]
    repo.create_commit("HEAD", who, who, "snapshot", tree, parents)


def measured(argv: list[str], code: Path | None) -> tuple[float, float, str]:
    """(CPU seconds, peak RSS in MB, stdout) of one process running the modules
    of `code` (a checkout; None: this one)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(code or HERE)
    with tempfile.TemporaryFile() as err:
        # From that checkout: `python -m` puts the working directory before PYTHONPATH.
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, env=env, cwd=code or HERE)
        assert proc.stdout is not None
        out = proc.stdout.read()  # to its end: the process has closed it
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            raise SystemExit(f"{argv[2:4]} failed: {err.read().decode()[-2000:]}")
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, out.decode()


def cli_call(repo: Path, data_dir: Path, code: Path | None) -> tuple[float, float]:
    argv = [sys.executable, "-m", "bot.cli", "context", "--repo", str(repo), "--budget", str(BUDGET)]
    argv += ["--data-dir", str(data_dir), "--json", INSTRUCTION]
    cpu, rss, _ = measured(argv, code)
    return cpu, rss


def app_call(repo: Path, code: Path | None, runs: int) -> tuple[dict[str, list[float]], float]:
    """The App's rows, measured in one process running this file (`code`'s modules first)."""
    argv = [sys.executable, str(Path(__file__).resolve()), "--app-only", str(repo), "--runs", str(runs)]
    _, rss, out = measured(argv, code)
    return json.loads(out), rss


# --------------------------------------------------------------------------
# The App's way (runs in a process of its own, with the code measured)


def app_rows(repo: Path, runs: int) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory(prefix="patchling-app-") as tmp:
        cache = Path(tmp) / "cache"
        origin = _app_tree(repo, Path(tmp) / "origin")
        return {
            "same": same_tree(origin, cache, runs),
            "next": next_job(origin, Path(tmp), cache, runs),
        }


def _app_tree(repo: Path, dest: Path) -> Path:
    """The tree as the App has it: a fresh checkout (bot.workspace.checkout clones),
    whose git index records the files' own inodes and times. Not a copy of a work
    tree: its git index keeps the original's, so every status hashes every file to
    tell it is unchanged, a cost no checkout of the App ever pays. A plain
    directory is copied and committed, which records the copy's stat data."""
    if (repo / ".git").exists():
        return _checkout(repo, dest)
    shutil.copytree(repo, dest, symlinks=True)
    commit(dest)
    return dest


def same_tree(repo: Path, cache: Path, runs: int) -> list[float]:
    """CPU seconds to refresh an index kept in memory after one file changed, and select context."""
    from bot.context import ContextMemo, select_context
    from bot.index import build_index

    index = build_index(repo, cache)
    select_context(repo, INSTRUCTION, BUDGET, memo=ContextMemo(index))
    victim = _victim(repo)
    times: list[float] = []
    for n in range(runs):
        with open(repo / victim, "a") as fh:
            fh.write(f"\n# touched {n}\n")
        start = time.process_time()
        index = build_index(repo, cache, previous=index)
        select_context(repo, INSTRUCTION, BUDGET, memo=ContextMemo(index))
        times.append(time.process_time() - start)
    return times


def next_job(origin: Path, tmp: Path, cache: Path, runs: int) -> list[float]:
    """CPU seconds of a worker's next job on the same repository: a fresh checkout
    (not counted: the workspace's cost) with one file changed by a commit, then
    the index and context. Code without kept indexes builds from the cache alone."""
    import bot.index
    from bot.context import ContextMemo, select_context

    kept = bot.index.KeptIndexes() if hasattr(bot.index, "KeptIndexes") else None

    def index_of(root: Path) -> object:
        return kept.build("bench/repo", root, cache) if kept else bot.index.build_index(root, cache)

    index_of(_checkout(origin, tmp / "job"))
    victim = _victim(origin)
    times: list[float] = []
    for n in range(runs):
        with open(origin / victim, "a") as fh:
            fh.write(f"\n# changed by commit {n}\n")
        commit(origin)
        tree = _checkout(origin, tmp / f"job{n}")
        start = time.process_time()
        index = index_of(tree)
        select_context(tree, INSTRUCTION, BUDGET, memo=ContextMemo(index))  # type: ignore[arg-type]
        times.append(time.process_time() - start)
        shutil.rmtree(tree)
    return times


def _checkout(origin: Path, dest: Path) -> Path:
    pygit2.clone_repository(str(origin), str(dest))
    return dest


def _victim(repo: Path) -> str:
    """A Python file of the tree, always the same one."""
    return min(p.relative_to(repo).as_posix() for p in repo.rglob("*.py") if ".git" not in p.parts)


# --------------------------------------------------------------------------
# Side by side


def measure(repo: Path, runs: int, code: Path | None) -> dict:
    cold: list[tuple[float, float]] = []
    warm: list[tuple[float, float]] = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="patchling-cost-") as tmp:
            cold.append(cli_call(repo, Path(tmp), code))
            warm.extend(cli_call(repo, Path(tmp), code) for _ in range(2))
    app, app_rss = app_call(repo, code, runs)
    return {
        "cpu_s": [
            _range([c[0] for c in cold]),
            _range([w[0] for w in warm]),
            _range(app["same"]),
            _range(app["next"]),
        ],
        "rss_mb": [_peak(cold), _peak(warm), round(app_rss, 1), round(app_rss, 1)],
    }


def _range(values: list[float]) -> list[float]:
    """min, median, max."""
    return [round(min(values), 2), round(statistics.median(values), 2), round(max(values), 2)]


def _peak(calls: list[tuple[float, float]]) -> float:
    return round(max(c[1] for c in calls), 1)


def print_table(result: dict) -> None:
    sides = [name for name in ("before", "after") if name in result]
    print(f"{result['files']} files; CPU seconds min / median / max of {result['runs']} runs; peak RSS")
    print(f"{'':<16}" + "".join(f"{side:>34}" for side in sides) + f"{'target':>16}")
    for i, (row, target) in enumerate(zip(ROWS, TARGETS, strict=True)):
        cells = ""
        for side in sides:
            low, mid, high = result[side]["cpu_s"][i]
            cells += f"{low:8.2f} /{mid:6.2f} /{high:6.2f} s {result[side]['rss_mb'][i]:6.0f} MB"
        print(f"{row:<16}{cells}   ≤ {target:4.1f} s, {TARGET_RSS_MB:.0f} MB")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repo", type=Path, help="measure this tree instead of a synthesised one")
    parser.add_argument(
        "--files", type=int, default=10_000, help="size of the synthesised tree (default 10000)"
    )
    parser.add_argument("--runs", type=int, default=3, help="cold runs, each followed by two warm ones")
    parser.add_argument("--before", type=Path, help="a checkout of earlier code, measured alongside")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--app-only", type=Path, help=argparse.SUPPRESS)  # the App's rows, as JSON
    args = parser.parse_args(argv)
    if args.app_only is not None:
        print(json.dumps(app_rows(args.app_only, args.runs)))
        return 0
    with tempfile.TemporaryDirectory(prefix="patchling-corpus-") as tmp:
        if args.repo is not None:
            repo = args.repo.resolve()
            if not repo.is_dir():
                print(f"{repo}: not a directory", file=sys.stderr)
                return 2
        else:
            repo = synthesise(Path(tmp) / "corpus", args.files)
        result: dict = {"files": _count(repo), "runs": args.runs}
        if args.before is not None:
            result["before"] = measure(repo, args.runs, args.before.resolve())
        result["after"] = measure(repo, args.runs, None)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)
    return 0


def _count(repo: Path) -> int:
    from bot.index import build_index

    return len(build_index(repo).files)


if __name__ == "__main__":
    sys.exit(main())
