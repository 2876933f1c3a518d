"""Per-key limits: requests per minute and concurrent streams, 429 with Retry-After, each key on its own."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from domainrag.errors import DomainRagError
from domainrag.serving.api import create_api
from domainrag.serving.http_errors import ApiError
from domainrag.serving.keys import ApiKey
from domainrag.serving.quotas import KeyQuotas


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_rpm_bucket_allows_a_minute_then_refills() -> None:
    clock = Clock()
    quotas = KeyQuotas(clock=clock)
    key, other = ApiKey("key_a", "*", rpm=3), ApiKey("key_b", "*", rpm=3)
    for _ in range(3):
        quotas.check_rate(key)
    with pytest.raises(ApiError) as refused:
        quotas.check_rate(key)
    assert refused.value.status == 429 and refused.value.code == "rate_limit_exceeded"
    assert refused.value.headers["Retry-After"] == "20"  # 3 per minute: one every 20 s
    quotas.check_rate(other)  # another key is not affected
    clock.now += 19.5
    with pytest.raises(ApiError):
        quotas.check_rate(key)
    clock.now += 0.5
    quotas.check_rate(key)


def test_defaults_apply_to_keys_without_their_own() -> None:
    clock = Clock()
    quotas = KeyQuotas(default_rpm=1, default_streams=1, clock=clock)
    plain, unlimited = ApiKey("key_a", "*"), ApiKey("key_b", "*", rpm=0, max_streams=0)
    quotas.check_rate(plain)
    with pytest.raises(ApiError):
        quotas.check_rate(plain)
    for _ in range(100):
        quotas.check_rate(unlimited)
    release = quotas.open_stream(plain)
    with pytest.raises(ApiError) as refused:
        quotas.open_stream(plain)
    assert refused.value.code == "concurrency_limit_exceeded" and refused.value.headers["Retry-After"] == "1"
    held = [quotas.open_stream(unlimited) for _ in range(10)]
    assert quotas.streams("key_b") == 10
    release()
    release()  # twice is harmless: it never frees someone else's stream
    assert quotas.streams("key_a") == 0
    quotas.open_stream(plain)
    for r in held:
        r()
    assert quotas.streams("key_b") == 0


def test_bad_limits_are_clear_errors(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    from domainrag.serving.keys import create_key
    from domainrag.workspace import Workspace

    monkeypatch.setenv("DOMAINRAG_KEY_RPM", "ten")
    with pytest.raises(DomainRagError, match="DOMAINRAG_KEY_RPM='ten'"):
        KeyQuotas.from_env()
    monkeypatch.setenv("DOMAINRAG_KEY_RPM", "10")
    monkeypatch.setenv("DOMAINRAG_KEY_MAX_STREAMS", "2")
    assert (KeyQuotas.from_env().default_rpm, KeyQuotas.from_env().default_streams) == (10, 2)
    assert KeyQuotas.from_env(rpm=0).default_rpm == 0  # an explicit value wins
    with pytest.raises(DomainRagError, match="rpm must be >= 0"):
        create_key(Workspace.open(tmp_path / "ws"), "*", rpm=-1)


@pytest.fixture
def make_key(served_ws) -> Iterator[Callable[..., tuple[str, str]]]:
    """``make_key(**limits)``: a new `*` key on the shared workspace -> (token, key id); all removed afterwards."""
    from domainrag.serving.keys import create_key

    def make(**limits: Any) -> tuple[str, str]:
        token, record = create_key(served_ws, "*", **limits)
        return token, record["name"]

    yield make
    for record in served_ws.catalog.list("key"):
        served_ws.catalog.delete("key", record["name"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.integration
def test_rpm_limit_gives_429_then_recovers(served_ws, make_key, openai_error) -> None:
    limited, limited_id = make_key(rpm=2)
    other, _ = make_key()  # the server default below
    api = create_api(served_ws, require_keys=True, key_rpm=3)
    clock = Clock()
    api.state.quotas.clock = clock
    with TestClient(api) as client:
        for _ in range(2):
            assert client.get("/v1/apps", headers=bearer(limited)).status_code == 200
        refused = client.post("/v1/apps/strict/completion", headers=bearer(limited), json={"query": "warranty?"})
        error = openai_error(refused, 429)
        assert error["code"] == "rate_limit_exceeded" and "2 requests per minute" in error["message"]
        assert refused.headers["retry-after"] == "30" and refused.headers["x-request-id"]
        for _ in range(3):  # the other key has the server's default, untouched by the first
            assert client.get("/v1/apps", headers=bearer(other)).status_code == 200
        openai_error(client.get("/v1/apps", headers=bearer(other)), 429)
        clock.now += 30
        assert client.get("/v1/apps", headers=bearer(limited)).status_code == 200
        openai_error(client.get("/v1/apps", headers=bearer(limited)), 429)

        # a limit changed while the server runs applies at the key's next request
        from domainrag.serving.keys import set_key_limits

        set_key_limits(served_ws, limited_id, rpm=0, max_streams=None)
        for _ in range(5):
            assert client.get("/v1/apps", headers=bearer(limited)).status_code == 200


@pytest.mark.integration
def test_three_keys_with_one_stream_each_get_429_on_their_second(
    served_ws, make_key, monkeypatch: pytest.MonkeyPatch, sse_payloads, openai_error, serve_api
) -> None:
    keys = [make_key(max_streams=1) for _ in range(3)]
    api = create_api(served_ws, require_keys=True, max_concurrent=4)
    generator = api.state.apps.get("docs").generator
    gate, entered = threading.Event(), threading.Semaphore(0)
    real = generator.stream

    def held_stream(messages, config=None, cancel=None):  # each first stream waits here until the gate opens
        entered.release()
        assert gate.wait(60)
        return real(messages, config, cancel)

    monkeypatch.setattr(generator, "stream", held_stream)
    body = {"query": "CTL-400 warranty?", "stream": True}
    results: dict[str, tuple[int, str]] = {}

    with serve_api(api) as url, httpx.Client(base_url=url, timeout=60) as http:
        def first(token: str, kid: str) -> None:
            with http.stream("POST", "/v1/apps/docs/completion", json=body, headers=bearer(token)) as resp:
                results[kid] = (resp.status_code, resp.read().decode())

        threads = [threading.Thread(target=first, args=key) for key in keys]
        for t in threads:
            t.start()
        for _ in keys:
            assert entered.acquire(timeout=60), "a first stream never reached the model"
        quotas, limiter = api.state.quotas, api.state.limiter
        assert [quotas.streams(kid) for _, kid in keys] == [1, 1, 1] and limiter.in_use == 3
        for token, _ in keys:
            second = http.post("/v1/apps/docs/completion", json=body, headers=bearer(token))
            assert openai_error(second, 429)["code"] == "concurrency_limit_exceeded"
            assert second.headers["retry-after"] == "1"
        assert limiter.in_use == 3  # a refused request never took a slot of the pool
        metrics = http.get("/metrics", headers=bearer(keys[0][0])).text
        assert 'domainrag_rate_limited_total{reason="streams"} 3.0' in metrics
        assert "domainrag_generations_in_flight 3.0" in metrics

        gate.set()
        for t in threads:
            t.join(timeout=60)
        for _, kid in keys:
            status, text = results[kid]
            assert status == 200 and sse_payloads(text)[-1] == "[DONE]"
        deadline = time.monotonic() + 10  # released once the response is over, just after the client read it
        while any(quotas.streams(kid) for _, kid in keys):
            assert time.monotonic() < deadline, "a key's stream was never given back"
            time.sleep(0.02)
        for token, _ in keys:  # each stream came back: every key may stream again
            again = http.post("/v1/apps/docs/completion", json=body, headers=bearer(token))
            assert again.status_code == 200 and sse_payloads(again.text)[-1] == "[DONE]"
