"""OpenAI-compatible routes: the official SDK against an app and a plain model; embeddings and their key rules."""

from __future__ import annotations

import json
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


DAYS = [{"role": "user", "content": "List the days of the week."}]


def test_stop_ends_the_text_streamed_or_not(client: TestClient, sse_payloads) -> None:
    """``stop`` (a string or a list) ends the answer before the sequence, with finish_reason "stop"; a stream never
    sends a character past it."""
    chat = "/v1/chat/completions"
    full = client.post(chat, json={"model": LLM, "messages": DAYS, "max_tokens": 30, "temperature": 0}).json()
    text = full["choices"][0]["message"]["content"]
    assert "Monday" in text and full["choices"][0]["finish_reason"] == "length"
    expected = text[:text.index("Monday")]
    for stop in ("Monday", ["Friday", "Monday"]):
        resp = client.post(chat, json={"model": LLM, "messages": DAYS, "max_tokens": 30, "temperature": 0,
                                       "stop": stop})
        assert resp.status_code == 200, resp.text
        choice = resp.json()["choices"][0]
        assert choice["message"]["content"] == expected and choice["finish_reason"] == "stop"
        assert resp.json()["usage"]["completion_tokens"] < 30

    streamed = client.post(chat, json={"model": LLM, "messages": DAYS, "max_tokens": 30, "temperature": 0,
                                       "stop": ["Monday"], "stream": True})
    chunks = [json.loads(d) for d in sse_payloads(streamed.text) if d != "[DONE]"]
    sent = [c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]]
    assert "".join(sent) == expected and all("Mon" not in piece for piece in sent)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"

    app = client.post(chat, json={"model": "app:docs", "max_tokens": 12, "temperature": 0,
                                  "messages": [{"role": "user", "content": "How long is the CTL-400 warranty?"}]})
    answer = app.json()["choices"][0]["message"]["content"]
    assert len(answer.split()) >= 3, answer
    stop_word = answer.split()[2]
    cut = client.post(chat, json={"model": "app:docs", "max_tokens": 12, "temperature": 0, "stop": stop_word,
                                  "messages": [{"role": "user", "content": "How long is the CTL-400 warranty?"}]})
    assert cut.json()["choices"][0]["message"]["content"] == answer[:answer.index(stop_word)]
    assert cut.json()["choices"][0]["finish_reason"] == "stop" and cut.json()["references"]


def test_seed_and_penalties_through_the_sdk(client: TestClient) -> None:
    openai = pytest.importorskip("openai")
    sdk = openai.OpenAI(base_url=f"{client.base_url}/v1", api_key="unused", http_client=client, max_retries=0)

    def ask(**more: Any) -> str:
        done = sdk.chat.completions.create(model=LLM, messages=DAYS, max_tokens=12, **more)
        return done.choices[0].message.content

    seeded = ask(temperature=1.0, seed=11)
    assert ask(temperature=1.0, seed=11) == seeded
    assert any(ask(temperature=1.0, seed=s) != seeded for s in (12, 13, 14))
    repeat = [{"role": "user", "content": "Say the word apple twenty times."}]
    greedy = sdk.chat.completions.create(model=LLM, messages=repeat, max_tokens=30, temperature=0)
    penalised = sdk.chat.completions.create(model=LLM, messages=repeat, max_tokens=30, temperature=0,
                                            frequency_penalty=2.0, presence_penalty=0.5)
    assert penalised.choices[0].message.content != greedy.choices[0].message.content
    cut = sdk.chat.completions.create(model=LLM, messages=DAYS, max_tokens=30, temperature=0, stop=["Monday"])
    assert "Monday" not in cut.choices[0].message.content and cut.choices[0].finish_reason == "stop"


@pytest.mark.parametrize(("param", "value"), [
    ("tools", [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]),
    ("tool_choice", "required"),
    ("functions", [{"name": "f", "parameters": {}}]),
    ("function_call", "auto"),
    ("response_format", {"type": "json_object"}),
    ("logprobs", True),
    ("top_logprobs", 2),
    ("n", 2),
])
def test_unsupported_parameters_are_refused(client: TestClient, openai_error, param: str, value: Any) -> None:
    for model in (LLM, "app:docs"):
        resp = client.post("/v1/chat/completions", json={"model": model, "messages": DAYS, param: value})
        error = openai_error(resp, 400)
        assert error["param"] == param and error["code"] == "unsupported_parameter"
        assert error["type"] == "invalid_request_error"


def test_harmless_defaults_of_unsupported_parameters_are_accepted(client: TestClient) -> None:
    resp = client.post("/v1/chat/completions", json={
        "model": LLM, "messages": DAYS, "max_tokens": 2, "n": 1, "logprobs": False, "tool_choice": "none",
        "response_format": {"type": "text"}, "user": "someone"})
    assert resp.status_code == 200, resp.text


def test_bad_stop_is_400(client: TestClient, openai_error) -> None:
    for stop in (["a", "b", "c", "d", "e"], [""], 3):
        resp = client.post("/v1/chat/completions", json={"model": LLM, "messages": DAYS, "stop": stop})
        assert openai_error(resp, 400)["param"] == "stop"


def test_app_sources_are_message_annotations_for_openai_clients(
        client: TestClient, api, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ``openai`` SDK (as LangChain and other OpenAI clients) reads the sources from
    ``choices[0].message.annotations``: a url_citation per ``[n]`` marker; ``references`` stays for our clients."""
    openai = pytest.importorskip("openai")
    sdk = openai.OpenAI(base_url=f"{client.base_url}/v1", api_key="unused", http_client=client, max_retries=0)
    question = [{"role": "user", "content": "How long is the CTL-400 warranty?"}]

    real = sdk.chat.completions.create(model="app:docs", max_tokens=12, temperature=0, messages=question)
    message, refs = real.choices[0].message, real.model_extra["references"]
    assert message.annotations and refs  # the real model's answer: cited markers, or the whole answer per source
    assert {a.url_citation.url for a in message.annotations} <= {r["url"] for r in refs}
    assert all(a.type == "url_citation" and a.url_citation.title for a in message.annotations)

    generator = api.state.apps.get("docs").generator
    pieces = ["The CTL-400 warranty lasts ", "36 months [", "1]. Claims go through", " the portal [9]."]
    monkeypatch.setattr(generator, "stream", lambda messages, config=None, cancel=None: iter(pieces))
    done = sdk.chat.completions.create(model="app:docs", messages=question)
    text = done.choices[0].message.content
    assert text == "The CTL-400 warranty lasts 36 months [1]. Claims go through the portal ."  # [9] was never given
    (note,) = done.choices[0].message.annotations
    cited = done.model_extra["references"][0]
    assert text[note.url_citation.start_index:note.url_citation.end_index] == "[1]"
    assert note.url_citation.url == cited["url"] == f"domainrag://kb/{cited['document']}"
    assert note.url_citation.title.startswith(cited["document"])

    chunks = list(sdk.chat.completions.create(model="app:docs", messages=question, stream=True))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    final = next(c for c in chunks if c.choices and c.choices[0].finish_reason)
    (note,) = final.choices[0].delta.model_extra["annotations"]
    span = note["url_citation"]
    assert streamed[span["start_index"]:span["end_index"]] == "[1]" and final.model_extra["references"]
