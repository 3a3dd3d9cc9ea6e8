"""The prompts in baml_src/ as the model receives them: instructions, repository
text and feedback are data, so they appear in the user part, never in the
system part, whose words are Patchling's own."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from bot import fences
from bot.baml_client.sync_client import b

FUNCTIONS = sorted(name for name in dir(b.request) if not name.startswith("_"))


def rendered(function: str) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """Each parameter filled with a marker of its own, and the messages the
    model would be sent (rendered offline: nothing is requested)."""
    method = getattr(b.request, function)
    names = [p for p in inspect.signature(method).parameters if p != "baml_options"]
    markers = {name: f"@@{name.upper()}-MARKER@@" for name in names}
    request = method(**markers)
    return markers, request.body.json()["messages"]


def test_every_prompt_is_checked() -> None:
    assert {"PlanEdit", "RewriteFile", "EditSearchReplace", "EditUnifiedDiff"} <= set(FUNCTIONS)


@pytest.mark.parametrize("function", FUNCTIONS)
def test_untrusted_text_stays_out_of_the_system_part(function: str) -> None:
    markers, messages = rendered(function)
    system = " ".join(str(m["content"]) for m in messages if m["role"] == "system")
    user = " ".join(str(m["content"]) for m in messages if m["role"] == "user")
    assert system, "every prompt sets its rules in a system part"
    for name, marker in markers.items():
        assert marker not in system, f"{function}: {name} is in the system part"
        assert marker in user, f"{function}: {name} never reaches the model"


EDIT_FUNCTIONS = ["RewriteFile", "EditSearchReplace", "EditUnifiedDiff"]


@pytest.mark.parametrize("function", EDIT_FUNCTIONS)
@pytest.mark.parametrize(
    ("path", "language", "fence"),
    [("cmd/units.go", "Go", "go"), ("src/app.tsx", "TypeScript", "tsx"), ("notes.txt", "", "")],
)
def test_edit_prompts_name_the_language_and_fence_with_its_tag(
    function: str, path: str, language: str, fence: str
) -> None:
    # The values the edit call passes (bot.models.write_file_edit), from the path alone.
    assert (fences.language_name(path), fences.fence_tag(path)) == (language, fence)
    content = "CONTENT-LINE\n"
    request = getattr(b.request, function)(
        instruction="i",
        change="c",
        path=path,
        content=content,
        context="",
        feedback="",
        language=language,
        fence=fence,
        conventions="",
    )
    user = " ".join(str(m["content"]) for m in request.body.json()["messages"] if m["role"] == "user")
    assert f"```{fence}\n{content}" in user
    assert (f"{path} is written in {language}" in user) == bool(language)


def test_fence_tags_follow_the_language() -> None:
    tags = {
        p: fences.fence_tag(p) for p in ("a.py", "b.ts", "c.rs", "d.cs", "e.cpp", "f.sh", "g.yml", "h.md")
    }
    assert tags == {
        "a.py": "python",
        "b.ts": "typescript",
        "c.rs": "rust",
        "d.cs": "csharp",
        "e.cpp": "cpp",
        "f.sh": "sh",
        "g.yml": "yaml",
        "h.md": "markdown",
    }
