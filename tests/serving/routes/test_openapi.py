"""The OpenAPI document: typed response models and every error status, each in OpenAI's envelope; real answers
match the documented models (the models forbid undeclared fields, so a route that sends more fails here)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from domainrag.serving.schemas import (
    AppAnswer,
    AppList,
    AppView,
    ChatCompletion,
    ErrorResponse,
    ModelList,
    TextCompletion,
)

pytestmark = pytest.mark.integration

LLM = "smollm2-135m-instruct"
KEYED = {"400", "401", "403", "404", "429"}
GENERATING = KEYED | {"413", "503"}
ROUTES = {  # (path, method): (model of the 200 answer, error statuses documented)
    ("/v1/chat/completions", "post"): ("ChatCompletion", GENERATING),
    ("/v1/completions", "post"): ("TextCompletion", GENERATING),
    ("/v1/apps/{app}/completion", "post"): ("AppAnswer", GENERATING),
    ("/v1/embeddings", "post"): (None, GENERATING),
    ("/v1/models", "get"): ("ModelList", KEYED),
    ("/v1/apps", "get"): ("AppList", KEYED),
    ("/v1/apps/{app}", "get"): ("AppView", KEYED),
    ("/v1/indexes", "get"): (None, KEYED),
}


def _ref(response: dict[str, Any]) -> str:
    return response["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]


def test_openapi_documents_response_models_and_errors(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    for (path, method), (model, errors) in ROUTES.items():
        responses = spec["paths"][path][method]["responses"]
        assert errors <= set(responses), (path, set(responses))
        for status in errors:
            assert _ref(responses[status]) == "ErrorResponse", (path, status)
            assert responses[status]["description"], (path, status)
        if model:
            assert _ref(responses["200"]) == model, path
        assert "422" not in responses, path  # validation errors are 400 in OpenAI's envelope
    for path, method in (("/v1/chat/completions", "post"), ("/v1/completions", "post")):
        assert "text/event-stream" in spec["paths"][path][method]["responses"]["200"]["content"]

    assert set(schemas["ErrorResponse"]["properties"]) == {"error"}
    assert set(schemas["ErrorDetail"]["properties"]) == {"message", "type", "param", "code"}
    assert {"id", "object", "created", "model", "choices", "usage", "references"} <= set(
        schemas["ChatCompletion"]["properties"])
    assert "annotations" in schemas["AssistantMessage"]["properties"]
    assert set(schemas["ModelEntry"]["properties"]["kind"]["enum"]) == {"llm", "embedding", "app"}
    assert {"text", "cited", "excerpt", "url"} <= set(schemas["Reference"]["properties"])
    assert schemas["AppAnswer"]["properties"]["finish_reason"]["enum"] == ["stop", "length"]


def test_answers_match_their_documented_models(client: TestClient) -> None:
    models = ModelList.model_validate(client.get("/v1/models").json())
    assert {m.kind for m in models.data} == {"llm", "embedding", "app"}
    apps = AppList.model_validate(client.get("/v1/apps").json())
    assert {a.name for a in apps.data} >= {"docs", "hr"}
    assert AppView.model_validate(client.get("/v1/apps/docs").json()).index == "kb"
    ErrorResponse.model_validate(client.get("/v1/apps/nope").json())
    ErrorResponse.model_validate(client.post("/v1/completions", json={"model": LLM}).json())

    question = "How long is the CTL-400 warranty?"
    chat = client.post("/v1/chat/completions", json={
        "model": "app:docs", "max_tokens": 3, "messages": [{"role": "user", "content": question}]})
    done = ChatCompletion.model_validate(chat.json())
    assert done.references and done.choices[0].message.annotations
    plain = client.post("/v1/chat/completions", json={"model": LLM, "max_tokens": 2,
                                                      "messages": [{"role": "user", "content": "Hi"}]})
    assert ChatCompletion.model_validate(plain.json()).references is None
    text = TextCompletion.model_validate(client.post("/v1/completions", json={
        "model": "app:docs", "prompt": question, "max_tokens": 3}).json())
    assert text.references
    answer = AppAnswer.model_validate(client.post("/v1/apps/docs/completion", json={"query": question}).json())
    assert answer.passages and all(p.cited is not None for p in answer.passages)
