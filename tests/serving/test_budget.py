"""Input limits, prompt fitting and the generation deadline (``domainrag.serving.budget``)."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient

from domainrag.index.base import SearchHit
from domainrag.serving.budget import fit_rag_prompt
from domainrag.serving.http_errors import ApiError

LLM = "smollm2-135m-instruct"


def _chat(client: TestClient, model: str, content: str, **more: object):
    return client.post("/v1/chat/completions",
                       json={"model": model, "messages": [{"role": "user", "content": content}], **more})


def test_an_oversized_body_is_refused_before_it_is_read(client: TestClient, openai_error) -> None:
    resp = _chat(client, LLM, "x" * (2 << 20))
    assert openai_error(resp, 413)["code"] == "request_too_large"


def test_an_oversized_body_without_content_length_is_refused_as_it_streams_in(client: TestClient, openai_error) -> None:
    def chunks():  # a chunked upload: no Content-Length to check up front
        yield b'{"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "'
        for _ in range(40):
            yield b"x" * 65536
        yield b'"}]}'

    resp = client.post("/v1/chat/completions", content=chunks(), headers={"content-type": "application/json"})
    assert openai_error(resp, 413)["code"] == "request_too_large"


@pytest.mark.parametrize("model", [LLM, "app:docs"])
def test_an_oversized_message_is_refused_and_the_next_request_is_served(
    client: TestClient, openai_error, model: str
) -> None:
    started = time.monotonic()
    resp = _chat(client, model, "What is the warranty? " * 5000)  # ~110k characters
    assert openai_error(resp, 400)["code"] == "input_too_long"
    assert time.monotonic() - started < 30  # refused up front, the model never saw it
    ok = _chat(client, model, "What is the warranty?", max_tokens=4)
    assert ok.status_code == 200 and ok.json()["choices"][0]["message"]["content"]


def test_a_plain_chat_longer_than_the_context_is_refused(
    client: TestClient, openai_error, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOMAINRAG_MAX_INPUT_CHARS", "1000000")
    resp = _chat(client, LLM, "pump " * 20_000, max_tokens=8)  # ~20k tokens, SmolLM2 attends to 8k
    error = openai_error(resp, 400)
    assert error["code"] == "context_length_exceeded" and "8192" in error["message"]


def test_the_generation_deadline_stops_the_model_and_marks_the_answer_cut(
    client: TestClient, api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOMAINRAG_GENERATION_TIMEOUT", "0.5")
    generator = api.state.apps.get("docs").generator
    stopped = threading.Event()

    def endless(messages, config=None, cancel=None):
        try:
            while not (cancel and cancel.is_set()):
                time.sleep(0.05)
                yield "la "
        finally:  # cancelled or closed: either way the model stops
            stopped.set()

    monkeypatch.setattr(generator, "stream", endless)
    resp = _chat(client, "app:docs", "What is the warranty of the CTL-400?")
    assert resp.status_code == 200
    choice = resp.json()["choices"][0]
    assert choice["finish_reason"] == "length" and choice["message"]["content"].startswith("la")
    assert stopped.wait(10)  # the model was told to stop, not left running


class _Counting:
    """A generator stand-in whose prompt is one token per word, with a small context."""

    context_window = 60

    def count_prompt_tokens(self, messages: list[dict[str, str]]) -> int:
        return sum(len(m["content"].split()) for m in messages)


def _rag() -> SimpleNamespace:
    def messages(question, hits, history):
        return [*history, {"role": "user", "content": " ".join([h.text for h in hits] + [question])}]

    return SimpleNamespace(generator=_Counting(), messages=messages)


def _hits(n: int) -> list[SearchHit]:
    return [SearchHit(chunk_id=f"c{i}", doc_id=f"d{i}", text="word " * 10, score=1.0 - i / 10) for i in range(n)]


def test_app_prompts_drop_the_oldest_turns_first_then_the_lowest_ranked_passages() -> None:
    history = [{"role": "user", "content": "old " * 10}, {"role": "assistant", "content": "reply " * 10},
               {"role": "user", "content": "new " * 5}, {"role": "assistant", "content": "fine"}]
    hits, kept, tokens = fit_rag_prompt(_rag(), "q", _hits(3), history, max_new=20)
    assert kept == history[2:] and len(hits) == 3 and tokens + 20 <= 60  # one old turn went, passages stayed
    hits, kept, tokens = fit_rag_prompt(_rag(), "q", _hits(5), history, max_new=20)
    assert kept == [] and [h.chunk_id for h in hits] == ["c0", "c1", "c2"]  # best-ranked passages kept
    with pytest.raises(ApiError) as err:
        fit_rag_prompt(_rag(), "q " * 80, _hits(1), [], max_new=20)
    assert err.value.code == "context_length_exceeded"
