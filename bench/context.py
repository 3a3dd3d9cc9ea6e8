"""Context-selection benchmark: do the files a commit changed make it into
the context, within the budget?

For each repository in the localisation data set, the source tree is
extracted and indexed once; for each task, `select_context` runs on the
commit message and the result is scored against the task's gold files.

    .venv/bin/python -m bench.context [--budget 4000] [--json]

Data: `<workspace>/shared/bench/localize/` (see its README), or the directory
named by `PATCHLING_BENCH_DATA`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.shared import bench_data, need
from bench.targets import report_target
from bot.context import select_context
from bot.index import build_index

VISIBLE_MODES = frozenset({"full", "span", "skeleton"})
STRICT_MODES = frozenset({"full", "span"})
TARGET_RECALL = 0.80


@dataclass
class RepoResult:
    repo: str
    tasks: int = 0
    gold: int = 0
    found: int = 0  # gold files shown as full, span or skeleton (pooled count)
    found_strict: int = 0  # gold files shown as full or span
    recall_sum: float = 0.0  # per-task recall, summed
    strict_sum: float = 0.0
    all_found: int = 0  # tasks whose every gold file was shown
    tokens_sent: int = 0
    tokens_whole: int = 0  # gold + shown files sent whole
    repo_tokens: int = 0  # the whole indexed repository
    files: int = 0
    index_s: float = 0.0
    select_s: float = 0.0
    misses: list[str] = field(default_factory=list)

    @property
    def recall(self) -> float:
        return self.recall_sum / self.tasks if self.tasks else 0.0

    @property
    def recall_strict(self) -> float:
        return self.strict_sum / self.tasks if self.tasks else 0.0

    def summary(self) -> dict:
        n = max(1, self.tasks)
        return {
            "repo": self.repo,
            "tasks": self.tasks,
            "files": self.files,
            "recall": round(self.recall, 4),
            "recall_full_span": round(self.recall_strict, 4),
            "recall_micro": round(self.found / self.gold, 4) if self.gold else 0.0,
            "recall_micro_full_span": round(self.found_strict / self.gold, 4) if self.gold else 0.0,
            "all_gold_found": round(self.all_found / n, 4),
            "mean_tokens_sent": round(self.tokens_sent / n, 1),
            "mean_tokens_whole_files": round(self.tokens_whole / n, 1),
            "repo_tokens": self.repo_tokens,
            "index_s": round(self.index_s, 3),
            "select_ms_per_task": round(1000 * self.select_s / n, 1),
        }


def load_tasks(repo_dir: Path) -> list[dict]:
    with (repo_dir / "tasks.jsonl").open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def run_repo(repo_dir: Path, budget: int) -> RepoResult:
    result = RepoResult(repo=repo_dir.name.replace("__", "/", 1))
    with tempfile.TemporaryDirectory(prefix="patchling-bench-") as tmp:
        root = Path(tmp) / "src"
        root.mkdir()
        with tarfile.open(repo_dir / "src.tar.gz") as tar:
            tar.extractall(root, filter="data")
        start = time.perf_counter()
        index = build_index(root)
        result.index_s = time.perf_counter() - start
        result.files = len(index.files)
        result.repo_tokens = sum(f.tokens for f in index.files.values())
        for task in load_tasks(repo_dir):
            gold = set(task["gold_files"])
            start = time.perf_counter()
            ctx = select_context(root, task["instruction"], budget, index=index)
            result.select_s += time.perf_counter() - start
            assert ctx.tokens <= budget, (task["id"], ctx.tokens)
            modes = {f.path: f.mode for f in ctx.files}
            shown = {p for p, m in modes.items() if m in VISIBLE_MODES}
            strict = {p for p, m in modes.items() if m in STRICT_MODES}
            found = gold & shown
            result.tasks += 1
            result.gold += len(gold)
            result.found += len(found)
            result.found_strict += len(gold & strict)
            result.recall_sum += len(found) / len(gold)
            result.strict_sum += len(gold & strict) / len(gold)
            result.all_found += found == gold
            result.tokens_sent += ctx.tokens
            result.tokens_whole += sum(index.files[p].tokens for p in gold | shown if p in index.files)
            for path in sorted(gold - shown):
                result.misses.append(f"{task['id']}: {path} ({modes.get(path, 'absent')})")
    return result


def pooled(results: list[RepoResult]) -> RepoResult:
    total = RepoResult(repo="pooled")
    for r in results:
        for name in (
            "tasks",
            "gold",
            "found",
            "found_strict",
            "recall_sum",
            "strict_sum",
            "all_found",
            "tokens_sent",
            "tokens_whole",
            "files",
            "index_s",
            "select_s",
        ):
            setattr(total, name, getattr(total, name) + getattr(r, name))
    total.repo_tokens = round(sum(r.repo_tokens for r in results) / max(1, len(results)))
    return total


def print_table(results: list[RepoResult], budget: int) -> None:
    header = (
        f"{'repo':<22} {'tasks':>5} {'files':>5} {'recall':>7} {'full/span':>9} {'all-gold':>8} "
        f"{'sent':>6} {'whole':>7} {'repo':>8} {'ms/task':>7}"
    )
    print(f"Context selection, budget {budget} tokens (recall: gold file shown as full/span/skeleton)")
    print(header)
    print("-" * len(header))
    rows = [*results, pooled(results)]
    for r in rows:
        s = r.summary()
        if r is rows[-1]:
            print("-" * len(header))
        print(
            f"{s['repo']:<22} {s['tasks']:>5} {s['files']:>5} {s['recall']:>7.3f} "
            f"{s['recall_full_span']:>9.3f} {s['all_gold_found']:>8.3f} {s['mean_tokens_sent']:>6.0f} "
            f"{s['mean_tokens_whole_files']:>7.0f} {s['repo_tokens']:>8} {s['select_ms_per_task']:>7.1f}"
        )
    total = pooled(results)
    print(
        "recall: mean per task of gold files shown (full/span/skeleton); full/span: the same counting "
        "only full or span;\nall-gold: tasks with every gold file shown; sent: mean tokens sent; "
        "whole: mean tokens of sending the gold and shown files whole;\nrepo: tokens of the whole "
        "indexed repository (pooled: mean over repos)"
    )
    report_target(
        f"pooled recall >= {TARGET_RECALL:.2f} within {budget} tokens", total.recall >= TARGET_RECALL
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--budget", type=int, default=4000, help="token budget per task (default 4000)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--misses", action="store_true", help="list the gold files not shown")
    parser.add_argument("--repo", action="append", default=[], help="only these repos (owner__name)")
    args = parser.parse_args(argv)

    root = need(bench_data() / "localize")
    if not root.is_dir():
        print(f"no benchmark data at {root} (set PATCHLING_BENCH_DATA)", file=sys.stderr)
        return 2
    repo_dirs = sorted(p for p in root.iterdir() if (p / "tasks.jsonl").exists())
    if args.repo:
        repo_dirs = [p for p in repo_dirs if p.name in args.repo]
    results = [run_repo(d, args.budget) for d in repo_dirs]
    if args.json:
        out = {
            "budget": args.budget,
            "repos": [r.summary() for r in results],
            "pooled": pooled(results).summary(),
        }
        if args.misses:
            out["misses"] = {r.repo: r.misses for r in results}
        print(json.dumps(out, indent=2))
    else:
        print_table(results, args.budget)
        if args.misses:
            for r in results:
                for miss in r.misses:
                    print("  miss", miss)
    return 0


if __name__ == "__main__":
    sys.exit(main())
