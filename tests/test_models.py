"""Tiers as BAML clients, against the scripted OpenAI-compatible server."""

from __future__ import annotations

import pytest

from bot import models
from bot.config import Tier
from bot.models import ModelError
from tests.modelserver import ScriptedModel, free_port

PLAN_REPLY = """Here is the plan.
```json
{"files": [{"path": "calc.py", "change": "add clear"}], "notes": "small change"}
```"""


def tier(server: ScriptedModel, **kw: object) -> Tier:
    return Tier(
        name=str(kw.pop("name", "tiny")), model=str(kw.pop("model", "tiny")), base_url=server.url, **kw
    )


async def test_plan_parses_a_fenced_json_reply(model_server: ScriptedModel) -> None:
    model_server.script({"reply": PLAN_REPLY})
    plan, usage = await models.plan(tier(model_server), "add memory clear", "context here")
    assert [(f.path, f.change) for f in plan.files] == [("calc.py", "add clear")]
    assert plan.notes == "small change"
    assert usage.tokens_in > 0 and usage.tokens_out > 0 and usage.latency_s > 0
    (call,) = model_server.calls()
    assert call["model"] == "tiny"
    assert "add memory clear" in str(call["messages"])


@pytest.mark.parametrize(
    ("edit_format", "marker"),
    [("whole", "complete new content"), ("search_replace", "SEARCH/REPLACE"), ("diff", "unified diff")],
)
async def test_edit_format_picks_the_function(
    model_server: ScriptedModel, edit_format: str, marker: str
) -> None:
    model_server.script({"reply": "REPLY"})
    reply, _ = await models.write_file_edit(
        tier(model_server, edit_format=edit_format), "do it", "change", "a.py", "x = 1\n", "ctx", "fb"
    )
    assert reply == "REPLY"
    text = str(model_server.calls()[0]["messages"])
    assert marker in text and "A previous attempt failed: fb" in text


async def test_unparseable_plan_is_a_bad_reply(model_server: ScriptedModel) -> None:
    model_server.script({"reply": "I think you should edit some files."})
    with pytest.raises(ModelError) as caught:
        await models.plan(tier(model_server), "x", "")
    assert caught.value.kind == "bad_reply"
    assert caught.value.message.startswith("tier tiny: the reply could not be parsed")
    assert caught.value.raw_output == "I think you should edit some files."


async def test_http_error_is_a_server_error(model_server: ScriptedModel) -> None:
    model_server.script({"reply": "overloaded", "status": 503})
    with pytest.raises(ModelError) as caught:
        await models.write_file_edit(tier(model_server), "x", "c", "a.py", "", "", "")
    assert caught.value.kind == "server_error"
    assert "HTTP 503" in caught.value.message and len(caught.value.message) < 300


async def test_unknown_model_says_which_model(model_server: ScriptedModel) -> None:
    # Ollama's and OpenAI's answer to a model they do not have.
    model_server.script({"reply": 'model "tiny" not found, try pulling it first', "status": 404})
    with pytest.raises(ModelError) as caught:
        await models.write_file_edit(tier(model_server), "x", "c", "a.py", "", "", "")
    assert caught.value.kind == "model_not_found"
    assert caught.value.message == (
        f"tier tiny: {model_server.url} has no model 'tiny' (HTTP 404);"
        " check the model name of tier tiny in patchling.toml"
    )


def test_unknown_model_on_ollama_says_what_to_pull() -> None:
    local = Tier(name="qwen-1.5b", model="qwen2.5-coder:1.5b", base_url="http://localhost:11434/v1")
    kind, message = models._http_error(local, 404, "Not Found")
    assert kind == "model_not_found"
    assert message.endswith("run `ollama pull qwen2.5-coder:1.5b`")


async def test_refused_key_is_an_auth_failure(model_server: ScriptedModel) -> None:
    model_server.script({"reply": "Incorrect API key provided", "status": 401})
    keyed = tier(model_server, api_key_env="TEST_TIER_KEY")
    with pytest.raises(ModelError) as caught:
        await models.write_file_edit(keyed, "x", "c", "a.py", "", "", "")
    assert caught.value.kind == "auth_failed"
    assert caught.value.message.endswith("(HTTP 401); check TEST_TIER_KEY")


def test_no_answer_kinds_are_what_records_leave_out() -> None:
    from bot.records import NO_ANSWER_OUTCOMES

    assert set(NO_ANSWER_OUTCOMES) == models.NO_ANSWER_KINDS


def test_next_steps_name_the_pull_and_the_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.config import default_tiers

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    steps = models.next_steps(default_tiers())
    assert "`ollama pull qwen2.5-coder:1.5b`" in steps
    assert "patchling.toml" in steps
    assert "set ANTHROPIC_API_KEY or OPENAI_API_KEY" in steps


async def test_timeout_comes_from_the_tier(model_server: ScriptedModel) -> None:
    model_server.script({"reply": "late", "delay": 10})
    with pytest.raises(ModelError) as caught:
        await models.write_file_edit(tier(model_server, timeout_s=0.5), "x", "c", "a.py", "", "", "")
    # The client gave up while the server was still holding its reply back.
    calls = model_server.calls()
    assert calls and not any("ended" in call for call in calls)
    assert caught.value.kind == "timeout"
    assert "within 0.5s" in caught.value.message


async def test_connection_refused_is_clear() -> None:
    port = free_port()
    dead = Tier(name="qwen-1.5b", model="m", base_url=f"http://127.0.0.1:{port}/v1")
    with pytest.raises(ModelError) as caught:
        await models.write_file_edit(dead, "x", "c", "a.py", "", "", "")
    assert caught.value.kind == "connection_refused"
    assert (
        caught.value.message
        == f"tier qwen-1.5b: cannot reach http://127.0.0.1:{port}/v1 (connection refused)"
    )
    assert await models.reachable(dead) == "connection refused"


async def test_reachable(model_server: ScriptedModel) -> None:
    assert await models.reachable(tier(model_server)) is None


def test_api_key_comes_from_the_named_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_TIER_KEY", "sk-test")
    keyed = Tier(name="k", model="m", provider="openai", api_key_env="TEST_TIER_KEY", timeout_s=7)
    options = models._client_options(keyed)
    assert options["api_key"] == "sk-test"
    assert options["max_retries"] == 0
    assert options["http"]["request_timeout_ms"] == 7000
    assert "base_url" not in options
    assert models.base_url(keyed) == "https://api.openai.com/v1"


async def test_bad_provider_is_a_model_error() -> None:
    bogus = Tier(name="odd", model="m", provider="no-such-provider", base_url="http://127.0.0.1:9/v1")
    with pytest.raises(ModelError) as caught:
        await models.plan(bogus, "x", "")
    assert caught.value.message.startswith("tier odd: invalid client settings:")
    assert "\n" not in caught.value.message
