"""Every failure answers in OpenAI's error shape with the right status (404, 400; never 500): validation
errors too are 400, as OpenAI answers them, never FastAPI's 422."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

pytestmark = pytest.mark.integration


def test_unknown_app_and_model_are_404_in_openai_shape(client: TestClient, openai_error) -> None:
    assert openai_error(client.post("/v1/apps/nope/completion", json={"query": "x"}), 404)["code"] == \
        "app_not_found"
    openai_error(client.get("/v1/apps/nope"), 404)
    for model in ("app:nope", "no-such-model", "/etc", "someorg/some-model"):  # never loads arbitrary paths/hub ids
        err = openai_error(client.post("/v1/chat/completions",
                                              json={"model": model, "messages": [{"role": "user", "content": "x"}]}),
                                  404)
        assert err["type"] == "invalid_request_error"
    openai_error(client.get("/v1/nothing-here"), 404)


@pytest.mark.parametrize("body", [
    {}, {"query": ""}, {"query": "x", "top_k": 0}, {"query": "x", "unknown": 1}, {"query": 3},
    {"query": "x", "stream": "perhaps"},
])
def test_bad_completion_bodies_are_400(client: TestClient, body: dict[str, Any], openai_error) -> None:
    error = openai_error(client.post("/v1/apps/docs/completion", json=body), 400)
    assert error["code"] == "validation_error" and error["type"] == "invalid_request_error"


def test_bad_input_is_400_never_500(client: TestClient, openai_error) -> None:
    raw = client.post("/v1/apps/docs/completion", content=b"{not json", headers={"content-type": "application/json"})
    openai_error(raw, 400)
    openai_error(client.post("/v1/apps/docs/completion", json={"query": "   "}), 400)
    openai_error(client.post("/v1/apps/docs/completion", json={"query": "x", "filters": {"color": "red"}}), 400)
    openai_error(client.post("/v1/apps/docs/completion", json={"query": "x", "session_id": "bad id!"}), 400)
    chat = "/v1/chat/completions"
    error = openai_error(client.post(chat, json={"model": "app:docs", "messages": []}), 400)
    assert error["param"] == "messages" and "messages" in error["message"]
    assert openai_error(client.post(chat, json={"model": "app:docs", "n": 2, "messages": [
        {"role": "user", "content": "x"}]}), 400)["code"] == "unsupported_parameter"
    openai_error(client.post(chat, json={"model": "app:docs",
                                                "messages": [{"role": "assistant", "content": "x"}]}), 400)
    openai_error(client.post(chat, json={"model": "app:docs", "messages": [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}), 400)
