"""Benchmark: the generate step for a 5-file plan, concurrent vs serial.

    .venv/bin/python -m bench.pipeline

Starts the scripted model server with a fixed delay per call, builds a temp
git repository with five Python files, and runs Patchling's own generate step
(`bot.edit.generate`) on a 5-file plan twice: as Patchling runs it (all files
at once) and with `concurrency=1` (the same code path, one call at a time).
Target: concurrent <= 1.5x one call, serial ~= 5x.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("BAML_LOG", "warn")

from bench.targets import report_target
from bot import models
from bot.config import Tier
from bot.edit import Plan, PlannedFile, generate
from bot.index import build_index
from tests.conftest import make_git_repo
from tests.modelserver import ScriptedModel

FILES = 5


def module_source(n: int) -> str:
    return f'"""Module {n}."""\n\n\ndef value_{n}() -> int:\n    return {n}\n'


def make_repo(root: Path) -> Path:
    root.mkdir(parents=True)
    for n in range(FILES):
        (root / f"mod{n}.py").write_text(module_source(n))
    make_git_repo(root)
    return root


def rules(delay: float) -> list[dict[str, object]]:
    # One reply per file: the file with its function renamed, in a whole-file fence.
    return [
        {
            "match": f"What to change in mod{n}.py",
            "reply": "```python\n" + module_source(n).replace(f"value_{n}", f"get_value_{n}") + "```",
            "delay": delay,
        }
        for n in range(FILES)
    ]


async def run(delay: float) -> dict[str, float]:
    server = ScriptedModel().start()
    try:
        server.script(*rules(delay))
        tier = Tier(name="bench", model="bench", base_url=server.url, edit_format="whole", timeout_s=60)
        with tempfile.TemporaryDirectory(prefix="patchling-bench-") as tmp:
            root = make_repo(Path(tmp) / "repo")
            index = build_index(root)
            plan = Plan(
                files=[PlannedFile(f"mod{n}.py", "rename the function", True) for n in range(FILES)],
                notes="",
                source="model",
            )
            instruction = "rename every value_N function to get_value_N"
            # Warm-up: the tokenizer, BAML runtime and HTTP connection pool.
            await models.write_file_edit(tier, instruction, "x", "mod0.py", module_source(0), "", "")

            started = time.perf_counter()
            await models.write_file_edit(tier, instruction, "x", "mod0.py", module_source(0), "", "")
            one_call = time.perf_counter() - started

            figures = {"one call": one_call}
            for label, concurrency in (("concurrent", None), ("serial", 1)):
                started = time.perf_counter()
                result = await generate(tier, root, instruction, plan, index=index, concurrency=concurrency)
                figures[label] = time.perf_counter() - started
                assert sorted(result.changes) == [f"mod{n}.py" for n in range(FILES)]
            return figures
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--delay", type=float, default=1.0, help="seconds per scripted model call")
    args = parser.parse_args()
    figures = asyncio.run(run(args.delay))
    one = figures["one call"]
    print(f"generate step, {FILES}-file plan, scripted model delay {args.delay:.1f}s per call")
    print(f"{'':<12}{'wall (s)':>10}{'x one call':>12}")
    for label in ("one call", "concurrent", "serial"):
        print(f"{label:<12}{figures[label]:>10.3f}{figures[label] / one:>12.2f}")
    report_target("concurrent <= 1.5x one call", figures["concurrent"] <= 1.5 * one)


if __name__ == "__main__":
    main()
