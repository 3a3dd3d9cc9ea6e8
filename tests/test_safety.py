"""The failure modes of bench/noise.py through the real engine, on the calculator: a noisy
first tier, a correct second tier, and a test command that always passes, so the guards alone
stand between a damaged answer and the repository."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from bench import safety_checks
from bench.noise import MODES, Edit, fenced, noisy
from bot.config import Tier
from bot.engine import EditRequest, run_edit
from bot.progress import Progress, Verified
from tests.modelserver import ScriptedModel
from tests.test_engine import CALC_PY, CLI_PY, new_calculator, original

# Accepted as they are: the right file, wrapped in prose or in another edit format.
ACCEPTED = ("clean", "prose_around", "diff_for_whole", "sr_for_diff")
# Lines dropped from code the edit does not touch look like any other edit: only tests see them.
TESTS_DECIDE = ("dropped_lines",)
REFUSED = tuple(m for m in MODES if m not in ACCEPTED + TESTS_DECIDE)
SEEDS = (1,)  # more seeds: bench/safety.py runs many edits


def edit() -> Edit:
    return Edit(CALC_PY, original(CALC_PY), new_calculator(), "add memory clear", original(CLI_PY))


def tier(server: ScriptedModel, name: str, fmt: str) -> Tier:
    return Tier(name=name, model=name, base_url=server.url, edit_format=fmt, timeout_s=30)


async def run_mode(server: ScriptedModel, repo: Path, mode: str, seed: int) -> tuple[Any, list[str], str]:
    answer = noisy(mode, edit(), random.Random(seed))
    assert answer is not None, f"{mode} cannot be made for the calculator edit"
    server.script(
        {"model": "noisy", "reply": answer.reply}, {"model": "right", "reply": fenced(new_calculator())}
    )
    written: list[str] = []

    def progress(event: Progress) -> None:
        if isinstance(event, Verified):  # every guard passed: the change is written next
            written.append(event.tier)

    request = EditRequest(repo, f"add a memory_clear method to {CALC_PY}", test_command="true")
    result = await run_edit(
        request,
        tiers=[tier(server, "noisy", answer.fmt), tier(server, "right", "whole")],
        on_progress=progress,
    )
    return result, written, (repo / CALC_PY).read_text()


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("mode", REFUSED)
async def test_a_damaged_answer_is_refused_and_the_next_tier_recovers(
    model_server: ScriptedModel, calculator_repo: Path, mode: str, seed: int
) -> None:
    result, written, final = await run_mode(model_server, calculator_repo, mode, seed)
    assert [a.tier for a in result.attempts] == ["noisy", "right"], result.message
    assert result.attempts[0].outcome not in ("verified", "unverified")
    assert result.status == "verified" and result.tier == "right"
    assert written == ["right"]  # the noisy answer never reached the disk
    assert final == new_calculator()


@pytest.mark.parametrize("mode", ACCEPTED)
async def test_the_right_file_in_another_wrapping_is_accepted(
    model_server: ScriptedModel, calculator_repo: Path, mode: str
) -> None:
    result, written, final = await run_mode(model_server, calculator_repo, mode, 1)
    assert [(a.tier, a.outcome) for a in result.attempts] == [("noisy", "verified")], result.message
    assert written == ["noisy"] and final == new_calculator()


def test_every_mode_is_deterministic_for_a_seed() -> None:
    for mode in MODES:
        first, again = (noisy(mode, edit(), random.Random(7)) for _ in range(2))
        assert first == again, mode
    elided = noisy("elided_comment", edit(), random.Random(3))
    assert elided is not None and elided.content is not None
    assert len(elided.content.splitlines()) < len(new_calculator().splitlines())


def test_the_generated_checks_see_a_dropped_comment_and_pass_only_the_edit() -> None:
    before = "# licence\n# more\nVERSION = '1'\n\n\ndef f():\n    return 1\n"
    after = "# licence\n# more\nVERSION = '2'\n\n\ndef f():\n    return 1\n"
    assert safety_checks.failures(before, after, after) == []
    # Before the edit only the change's check fails; a dropped comment fails its kept
    # lines' check, and the change's, whose context it was.
    assert safety_checks.failures(before, after, before) == ["change:L3-3"]
    dropped = after.replace("# more\n", "")
    assert safety_checks.failures(before, after, dropped) == ["kept:L1-2", "change:L3-3"]
    # A deletion: the lines either side must now meet.
    assert safety_checks.failures(after, after.replace("\n\n\n", "\n\n"), after) == ["removed:after-L4"]
