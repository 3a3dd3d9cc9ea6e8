"""The scripted model server behaves like an OpenAI-compatible endpoint."""

import httpx

from tests.modelserver import ScriptedModel


def chat(server: ScriptedModel, model: str, text: str) -> httpx.Response:
    return httpx.post(
        f"{server.url}/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": text}]},
        timeout=10,
    )


def test_rules_match_in_order_and_spend_their_budget(model_server: ScriptedModel) -> None:
    model_server.script(
        {"match": "alpha", "reply": "first", "times": 1},
        {"model": "big", "reply": "from big"},
        {"reply": "fallback"},
    )
    assert chat(model_server, "small", "alpha").json()["choices"][0]["message"]["content"] == "first"
    assert chat(model_server, "small", "alpha").json()["choices"][0]["message"]["content"] == "fallback"
    assert chat(model_server, "big", "x").json()["choices"][0]["message"]["content"] == "from big"
    assert [c["model"] for c in model_server.calls()] == ["small", "small", "big"]


def test_unscripted_request_is_a_server_error(model_server: ScriptedModel) -> None:
    model_server.script({"match": "never", "reply": "x"})
    assert chat(model_server, "m", "hello").status_code == 500
