"""The repository's guidance for contributors reaches the edit prompts: the
preferred guide, trimmed to its share of the budget, and never through a link."""

from __future__ import annotations

from pathlib import Path

from bot.conventions import CUT_NOTE, SHARE, fit_conventions, read_conventions
from bot.engine import EditRequest, run_edit
from bot.tokens import count_tokens
from tests.modelserver import ScriptedModel, _message_text
from tests.test_engine import edit_calls, fenced, make_tier, notes_repo

HEADING = "The repository's guidance for contributors; follow it where it applies:\n"
RELATED = "Related code, for reference only:"


def guidance_sent(server: ScriptedModel) -> list[str]:
    """The guidance section of each edit prompt ("" where there is none)."""
    sections = []
    for call in edit_calls(server):
        text = _message_text(call["messages"])
        start = text.find(HEADING)
        sections.append("" if start < 0 else text[start + len(HEADING) : text.index(RELATED)].strip())
    return sections


async def edit_notes(server: ScriptedModel, root: Path) -> None:
    server.script({"match": "What to change in notes.txt:", "reply": fenced("one\ntwo\n", "text")})
    tier = make_tier(server, "tiny")
    result = await run_edit(EditRequest(root, "append two to notes.txt", test_command="true"), tiers=[tier])
    assert result.status == "verified", result.message


async def test_the_guide_is_in_every_edit_prompt(model_server: ScriptedModel, tmp_path: Path) -> None:
    root = notes_repo(tmp_path)
    (root / "AGENTS.md").write_text("# Agents\n\nEnd every list with a full stop.\n")
    (root / "CONTRIBUTING.md").write_text("Contributors sign the CLA.\n")
    await edit_notes(model_server, root)
    assert guidance_sent(model_server) == ["# Agents\n\nEnd every list with a full stop."]


async def test_a_long_guide_is_trimmed_to_its_share(model_server: ScriptedModel, tmp_path: Path) -> None:
    root = notes_repo(tmp_path)
    rules = [f"Rule {n}: name helpers after what they return, never after how." for n in range(1, 801)]
    (root / "CONTRIBUTING.md").write_text("\n".join(rules) + "\n")
    await edit_notes(model_server, root)
    (sent,) = guidance_sent(model_server)
    assert sent.startswith("Rule 1: ") and sent.endswith(CUT_NOTE.strip())
    assert "Rule 800:" not in sent
    budget = make_tier(model_server, "tiny").input_budget
    assert count_tokens(sent) <= budget * SHARE


async def test_a_linked_guide_is_never_read(model_server: ScriptedModel, tmp_path: Path) -> None:
    root = notes_repo(tmp_path)
    outside = tmp_path / "private.md"
    outside.write_text("PRIVATE-NOTE-7731\n")
    (root / "AGENTS.md").symlink_to(outside)
    await edit_notes(model_server, root)
    assert guidance_sent(model_server) == [""]
    assert all("PRIVATE-NOTE-7731" not in _message_text(c["messages"]) for c in model_server.calls())


def test_the_guides_in_order_of_preference(tmp_path: Path) -> None:
    assert read_conventions(tmp_path) == ""
    (tmp_path / "CONTRIBUTING.md").write_text("contributing\n")
    assert read_conventions(tmp_path) == "contributing"
    (tmp_path / ".github").mkdir()
    (tmp_path / ".github" / "copilot-instructions.md").write_text("copilot\n")
    assert read_conventions(tmp_path) == "copilot"
    (tmp_path / "AGENTS.md").write_text("  \n")  # empty: the next one counts
    assert read_conventions(tmp_path) == "copilot"
    (tmp_path / "AGENTS.md").write_text("agents\n")
    assert read_conventions(tmp_path) == "agents"


def test_fitting_cuts_at_a_line_end_within_the_share() -> None:
    text = "\n".join(f"line {n} of the guide" for n in range(500))
    fitted = fit_conventions(text, 4000)
    assert count_tokens(fitted) <= 4000 * SHARE
    assert fitted.endswith(CUT_NOTE) and fitted.removesuffix(CUT_NOTE).splitlines()[-1].endswith("guide")
    assert fit_conventions("short guide", 4000) == "short guide"
    assert fit_conventions("one long line " * 100, 400) == ""  # not even a line fits
