"""OpenAI-compatible routes: the official SDK against an app and a plain model; embeddings and their key rules."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

pytestmark = pytest.mark.integration

LLM = "smollm2-135m-instruct"
EMBEDDER = "all-minilm-l6-v2"


def test_openai_sdk_against_an_app(client: TestClient, spy_generator) -> None:
    openai = pytest.importorskip("openai")
    sdk = openai.OpenAI(base_url=f"{client.base_url}/v1", api_key="unused", http_client=client, max_retries=0)

    stream = sdk.chat.completions.create(
        model="app:docs", stream=True, max_tokens=6, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "What is the DP-220?"},
                  {"role": "assistant", "content": "A dosing pump."},
                  {"role": "user", "content": "What pressure does it reach?"}])
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    final = next(c for c in chunks if c.choices and c.choices[0].finish_reason)
    assert final.choices[0].finish_reason in ("stop", "length")
    assert final.model_extra["references"] and final.model_extra["references"][0]["document"].endswith(".md")
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens >= 1
    # history reached the model as chat turns, before the grounded question
    assert [m["role"] for m in spy_generator[-1]] == ["system", "user", "assistant", "user"]

    done = sdk.chat.completions.create(model="app:docs", max_tokens=6,
                                       messages=[{"role": "user", "content": "How long is the CTL-400 warranty?"}])
    assert done.object == "chat.completion" and done.choices[0].message.content
    assert done.model_extra["references"]

    plain = sdk.chat.completions.create(model=LLM, max_tokens=4, messages=[{"role": "user", "content": "Hi"}])
    assert plain.choices[0].message.role == "assistant" and "references" not in (plain.model_extra or {})
    assert plain.usage.prompt_tokens > 0

    with pytest.raises(openai.NotFoundError):
        sdk.chat.completions.create(model="app:nope", messages=[{"role": "user", "content": "x"}])
    assert {m.id for m in sdk.models.list()} >= {LLM, "app:docs"}


def test_embeddings_match_local_embedder(server: SimpleNamespace, minilm) -> None:
    texts = ["The CTL-400 has a 36-month warranty.", "dosing pump diaphragm"]
    auth = {"Authorization": f"Bearer {server.star}"}
    resp = httpx.post(f"{server.url}/embeddings", json={"model": EMBEDDER, "input": texts}, headers=auth, timeout=60)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["object"] == "list" and body["model"] == EMBEDDER and body["usage"]["prompt_tokens"] > len(texts)
    assert [d["index"] for d in body["data"]] == [0, 1] and {d["object"] for d in body["data"]} == {"embedding"}
    vectors = np.array([d["embedding"] for d in body["data"]])
    assert vectors.shape == (2, 384)
    np.testing.assert_allclose(vectors, minilm.encode(texts), atol=1e-5)

    from openai import OpenAI  # the official SDK asks for base64 by default

    sdk = OpenAI(base_url=server.url, api_key=server.star)
    one = sdk.embeddings.create(model=EMBEDDER, input=texts[0])
    assert len(one.data) == 1
    np.testing.assert_allclose(one.data[0].embedding, minilm.encode(texts[:1])[0], atol=1e-6)


def test_embeddings_key_rules(server: SimpleNamespace, minilm) -> None:
    def post(key: str | None, **body: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.post(f"{server.url}/embeddings", json={"input": "warranty", **body}, headers=headers, timeout=60)

    assert post(server.docs_key, model=EMBEDDER).status_code == 200  # the app's index model
    denied = post(server.docs_key, model=server.other_embedder)
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "model_not_allowed"
    assert EMBEDDER in denied.json()["error"]["message"]
    other = post(server.star, model=server.other_embedder)  # `*` keys: any index's model too
    assert other.status_code == 200
    np.testing.assert_allclose(other.json()["data"][0]["embedding"], minilm.encode(["warranty"])[0], atol=1e-5)
    assert post(None, model=EMBEDDER).status_code == 401
    for key, model in ((server.star, "no-such-embedder"), (server.star, LLM)):
        resp = post(key, model=model)
        assert resp.status_code == 404 and resp.json()["error"]["code"] == "model_not_found"
    assert post(server.star, model=EMBEDDER, input=["ok", ""]).json()["error"]["param"] == "input"
    assert post(server.star, model=EMBEDDER, dimensions=128).status_code == 400
    invalid = post(server.star, model=EMBEDDER, input=[1, 2])  # validation: 400 in OpenAI's shape, not 422
    assert invalid.status_code == 400 and invalid.json()["error"]["param"] == "input"
