"""Abuse of the HTTP API: oversized input on every route, many sessions; after each, a normal request is served."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import httpx
import pytest
from fastapi.testclient import TestClient

pytestmark = pytest.mark.integration

LLM = "smollm2-135m-instruct"
HUGE = "pump " * 25_000  # 125k characters
NORMAL_S = 60.0  # a served normal request takes seconds here; a server stuck on the abuse takes minutes


def _normal(client: TestClient) -> None:
    started = time.monotonic()
    resp = client.post("/v1/chat/completions", json={
        "model": "app:docs", "max_tokens": 4, "messages": [{"role": "user", "content": "What is the warranty?"}]})
    assert resp.status_code == 200 and resp.json()["choices"][0]["message"]["content"]
    assert time.monotonic() - started < NORMAL_S


ABUSES: dict[str, Callable[[TestClient], httpx.Response]] = {
    "chat, plain model": lambda c: c.post("/v1/chat/completions", json={
        "model": LLM, "messages": [{"role": "user", "content": HUGE}]}),
    "chat, app": lambda c: c.post("/v1/chat/completions", json={
        "model": "app:docs", "messages": [{"role": "user", "content": HUGE}]}),
    "chat, long history": lambda c: c.post("/v1/chat/completions", json={
        "model": "app:docs", "messages": [{"role": "user", "content": "pump " * 500}] * 60
        + [{"role": "user", "content": "What is the warranty?"}]}),
    "app completion": lambda c: c.post("/v1/apps/docs/completion", json={"query": HUGE}),
    "embeddings": lambda c: c.post("/v1/embeddings", json={"model": "all-minilm-l6-v2", "input": HUGE}),
    "embeddings, many inputs": lambda c: c.post("/v1/embeddings", json={
        "model": "all-minilm-l6-v2", "input": ["pump"] * 5000}),
    "body over the limit": lambda c: c.post("/v1/embeddings", content=b'{"input": "' + b"x" * (2 << 20) + b'"}',
                                            headers={"content-type": "application/json"}),
}


@pytest.mark.parametrize("abuse", list(ABUSES))
def test_oversized_input_is_refused_and_a_normal_request_is_served_after(client: TestClient, abuse: str) -> None:
    resp = ABUSES[abuse](client)
    assert resp.status_code in (400, 413), (abuse, resp.status_code, resp.text[:300])
    assert "error" in resp.json()  # OpenAI's envelope, never a bare 500
    _normal(client)


def test_many_sessions_leave_the_server_serving(client: TestClient) -> None:
    # "strict" finds no passage, so each turn answers the not-found text without generating.
    for _ in range(150):
        resp = client.post("/v1/apps/strict/completion",
                           json={"query": "anything at all?", "session_id": f"s-{uuid.uuid4().hex}"})
        assert resp.status_code == 200 and resp.json()["session_id"]
    _normal(client)
