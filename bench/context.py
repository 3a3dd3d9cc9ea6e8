"""Context-selection benchmark: do the files a commit changed make it into
the context, within the budget?

For each repository in the localisation data set, the source tree is
extracted and indexed once; for each task, `select_context` runs on the
commit message and the result is scored against the task's gold files.

    .venv/bin/python -m bench.context [--budget 4000] [--json]

Besides recall, two kinds of near miss are counted per repository, since a
gold file that is merely present can still leave the model without the code
to change:

- outranked: a gold file is shown only as an outline or a listing line while
  a file outside the gold set got its text in full or as a span;
- phrase: the instruction spells out, as plain words, the name of a definition
  in a gold file ("the run command" for `run_command`, "--debug-port" for
  `debug_port`); counted is whether that definition's text is then shown in full.

Data: `<workspace>/shared/bench/localize/` (see its README), or the directory
named by `PATCHLING_BENCH_DATA`.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tarfile
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bench.shared import bench_data, need
from bench.targets import report_target
from bot.context import Context, ContextMemo, select_context
from bot.index import RepoIndex, Symbol, build_index, language_of, split_identifier
from bot.tokens import count_tokens

VISIBLE_MODES = frozenset({"full", "span", "skeleton"})
STRICT_MODES = frozenset({"full", "span"})
TARGET_RECALL = 0.80


@dataclass
class RepoResult:
    repo: str
    language: str = ""  # the language of most gold files
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
    outranked: int = 0  # tasks with a gold file outlined or listed while a non-gold file got text
    phrase_tasks: int = 0  # tasks whose instruction spells out a gold file's definition in words
    phrase_defs: int = 0  # such definitions (pooled count)
    phrase_full: int = 0  # ... of them shown in full
    misses: list[str] = field(default_factory=list)
    near_misses: list[str] = field(default_factory=list)

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
            "language": self.language,
            "tasks": self.tasks,
            "files": self.files,
            "recall": round(self.recall, 4),
            "recall_full_span": round(self.recall_strict, 4),
            "recall_micro": round(self.found / self.gold, 4) if self.gold else 0.0,
            "recall_micro_full_span": round(self.found_strict / self.gold, 4) if self.gold else 0.0,
            "all_gold_found": round(self.all_found / n, 4),
            "gold_outranked": round(self.outranked / n, 4),
            "phrase_tasks": self.phrase_tasks,
            "phrase_defs_full": round(self.phrase_full / self.phrase_defs, 4) if self.phrase_defs else None,
            "mean_tokens_sent": round(self.tokens_sent / n, 1),
            "mean_tokens_whole_files": round(self.tokens_whole / n, 1),
            "repo_tokens": self.repo_tokens,
            "index_s": round(self.index_s, 3),
            "select_ms_per_task": round(1000 * self.select_s / n, 1),
        }


def load_tasks(repo_dir: Path) -> list[dict]:
    with (repo_dir / "tasks.jsonl").open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def spelled_definitions(index: RepoIndex, path: str, instruction: str) -> list[Symbol]:
    """Definitions in `path` whose name the instruction writes as separate
    words. Deliberately its own rule, not the selector's, so that the count
    does not move when the selector changes."""
    info = index.files.get(path)
    if info is None:
        return []
    found: list[Symbol] = []
    for sym in info.symbols:
        parts = split_identifier(sym.name)
        if sym.kind in ("variable", "section") or len(parts) < 2:
            continue
        phrase = r"(?<![\w-])" + r"[ \t-]+".join(map(re.escape, parts)) + r"(?!\w)"
        if re.search(phrase, instruction, re.IGNORECASE):
            found.append(sym)
    return found


def shown_in_full(index: RepoIndex, ctx: Context, path: str, sym: Symbol) -> bool:
    sent = next((f for f in ctx.files if f.path == path), None)
    if sent is None or sent.mode not in STRICT_MODES:
        return False
    lines = index.read(path).splitlines()
    return "\n".join(lines[sym.start_line - 1 : sym.end_line]) in sent.text


def near_misses(index: RepoIndex, ctx: Context, task: dict, result: RepoResult) -> None:
    """Count the two kinds of near miss (see the module docstring) for one task."""
    gold = set(task["gold_files"])
    modes = {f.path: f.mode for f in ctx.files}
    with_text = {p for p, m in modes.items() if m in STRICT_MODES}
    outlined = sorted(p for p in gold if modes.get(p) in ("skeleton", "listing"))
    if outlined and with_text - gold:
        result.outranked += 1
        others = ", ".join(sorted(with_text - gold))
        for path in outlined:
            result.near_misses.append(f"{task['id']}: {path} {modes[path]}, while {others} got text")
    spelled = [(p, sym) for p in sorted(gold) for sym in spelled_definitions(index, p, task["instruction"])]
    result.phrase_tasks += bool(spelled)
    for path, sym in spelled:
        result.phrase_defs += 1
        if shown_in_full(index, ctx, path, sym):
            result.phrase_full += 1
        else:
            result.near_misses.append(f"{task['id']}: {path}:{sym.qualname} spelled out, not shown in full")


def file_tokens(index: RepoIndex) -> dict[str, int]:
    """Each indexed file's tokens (the index itself no longer counts them)."""
    return {p: count_tokens(index.read(p)) for p in index.files}


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
        tokens = file_tokens(index)
        result.repo_tokens = sum(tokens.values())
        memo = ContextMemo(index)  # what ranking derives from the index, kept across tasks as a run keeps it
        tasks = load_tasks(repo_dir)
        result.language = repo_language(tasks)
        for task in tasks:
            gold = set(task["gold_files"])
            start = time.perf_counter()
            ctx = select_context(root, task["instruction"], budget, memo=memo)
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
            result.tokens_whole += sum(tokens[p] for p in gold | shown if p in tokens)
            for path in sorted(gold - shown):
                result.misses.append(f"{task['id']}: {path} ({modes.get(path, 'absent')})")
            near_misses(index, ctx, task, result)
    return result


def repo_language(tasks: list[dict]) -> str:
    """The language most gold files are written in (TypeScript and JavaScript count as one)."""
    counts = Counter(language_of(p) for t in tasks for p in t["gold_files"])
    language = counts.most_common(1)[0][0] if counts else "text"
    return "typescript" if language == "javascript" else language


def by_language(results: list[RepoResult]) -> list[RepoResult]:
    languages = sorted({r.language for r in results})
    return [pooled([r for r in results if r.language == lang], name=lang) for lang in languages]


def pooled(results: list[RepoResult], name: str = "pooled") -> RepoResult:
    total = RepoResult(repo=name)
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
            "outranked",
            "phrase_tasks",
            "phrase_defs",
            "phrase_full",
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
    print_near_misses(rows)
    print_languages(results)


def print_languages(results: list[RepoResult]) -> None:
    header = f"{'language':<22} {'tasks':>5} {'recall':>7} {'full/span':>9} {'micro':>7} {'micro f/s':>9}"
    print()
    print("Per language (pooled over its repositories)")
    print(header)
    print("-" * len(header))
    for r in by_language(results):
        s = r.summary()
        print(
            f"{r.repo:<22} {s['tasks']:>5} {s['recall']:>7.3f} {s['recall_full_span']:>9.3f} "
            f"{s['recall_micro']:>7.3f} {s['recall_micro_full_span']:>9.3f}"
        )
    print(
        "micro: share of all gold files shown (full/span/skeleton); micro f/s: share of all gold files "
        "shown in full or as a span"
    )


def print_near_misses(rows: list[RepoResult]) -> None:
    header = f"{'repo':<22} {'outranked':>9} {'phrase tasks':>12} {'phrase defs in full':>19}"
    print()
    print("Near misses")
    print(header)
    print("-" * len(header))
    for r in rows:
        if r is rows[-1]:
            print("-" * len(header))
        full = f"{r.phrase_full}/{r.phrase_defs}" if r.phrase_defs else "-"
        print(f"{r.repo:<22} {r.outranked / max(1, r.tasks):>9.3f} {r.phrase_tasks:>12} {full:>19}")
    print(
        "outranked: share of tasks with a gold file outlined or listed while a non-gold file got full "
        "or span text;\nphrase: tasks whose instruction spells out a gold file's definition as words, "
        "and how many such definitions were shown in full"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--budget", type=int, default=4000, help="token budget per task (default 4000)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument(
        "--misses", action="store_true", help="list the gold files not shown, and the near misses"
    )
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
            "languages": [r.summary() for r in by_language(results)],
        }
        if args.misses:
            out["misses"] = {r.repo: r.misses for r in results}
            out["near_misses"] = {r.repo: r.near_misses for r in results}
        print(json.dumps(out, indent=2))
    else:
        print_table(results, args.budget)
        if args.misses:
            for r in results:
                for miss in r.misses:
                    print("  miss", miss)
                for miss in r.near_misses:
                    print("  near", miss)
    return 0


if __name__ == "__main__":
    sys.exit(main())
