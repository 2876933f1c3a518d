"""``GET /metrics``: counters move by exactly the requests sent, the timing histograms by the answers given."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from domainrag.serving.api import create_api
from domainrag.serving.metrics import record_batch_size

pytestmark = pytest.mark.integration

LLM = "smollm2-135m-instruct"
COMPLETION = "/v1/apps/{app}/completion"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: TestClient, headers: dict[str, str] | None = None) -> Samples:
    resp = client.get("/metrics", headers=headers or {})
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain")
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(resp.text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


@pytest.fixture
def client(served_ws) -> Iterator[TestClient]:
    """A fresh API (its own registry) over the shared tiny workspace."""
    with TestClient(create_api(served_ws, require_keys=False, max_concurrent=3)) as c:
        yield c


def test_counters_move_by_exactly_the_requests_sent(client: TestClient) -> None:
    before = scrape(client)
    for stream in (False, False, True):
        resp = client.post("/v1/apps/docs/completion", json={"query": "CTL-400 warranty?", "stream": stream})
        assert resp.status_code == 200, resp.text
    assert client.post("/v1/apps/nope/completion", json={"query": "x"}).status_code == 404
    assert client.get("/v1/apps").status_code == 200
    assert client.get("/v1/apps").status_code == 200
    after = scrape(client)

    assert moved(before, after, "domainrag_http_requests_total", method="POST", route=COMPLETION, status="200") == 3
    assert moved(before, after, "domainrag_http_requests_total", method="POST", route=COMPLETION, status="404") == 1
    assert moved(before, after, "domainrag_http_requests_total", method="GET", route="/v1/apps", status="200") == 2
    assert moved(before, after, "domainrag_http_errors_total", route=COMPLETION, status="404") == 1
    assert moved(before, after, "domainrag_http_errors_total", route="/v1/apps", status="200") == 0
    # the scrape before this one is counted too, by its own route
    assert moved(before, after, "domainrag_http_requests_total", method="GET", route="/metrics", status="200") == 1
    assert moved(before, after, "domainrag_http_request_duration_seconds_count", method="POST", route=COMPLETION) == 4

    # three answers from the model: one first token each (streamed or not), later pieces are inter-token gaps
    assert moved(before, after, "domainrag_time_to_first_token_seconds_count", model=LLM) == 3
    assert moved(before, after, "domainrag_time_to_first_token_seconds_sum", model=LLM) > 0
    assert moved(before, after, "domainrag_inter_token_latency_seconds_count", model=LLM) >= 3
    assert moved(before, after, "domainrag_prompt_tokens_total", model=LLM) > 0
    assert 3 <= moved(before, after, "domainrag_completion_tokens_total", model=LLM) <= 3 * 12  # max_new_tokens=12
    # hybrid retrieval: each stage once per answered completion (the 404 never retrieved)
    for stage in ("embed", "dense", "bm25", "fusion", "total"):
        assert moved(before, after, "domainrag_retrieval_stage_seconds_count", stage=stage) == 3, stage
    assert moved(before, after, "domainrag_retrieval_stage_seconds_count", stage="rerank") == 0  # no reranker
    # every slot was given back, nobody waits
    assert value(after, "domainrag_generations_in_flight") == 0
    assert value(after, "domainrag_generations_queued") == 0
    assert value(after, "domainrag_generation_slots") == 3


def test_token_counters_equal_the_usage_reported(client: TestClient) -> None:
    before = scrape(client)
    resp = client.post("/v1/chat/completions", json={
        "model": LLM, "messages": [{"role": "user", "content": "Name a colour."}], "max_tokens": 5})
    assert resp.status_code == 200, resp.text
    usage = resp.json()["usage"]
    after = scrape(client)
    assert moved(before, after, "domainrag_prompt_tokens_total", model=LLM) == usage["prompt_tokens"] > 0
    assert moved(before, after, "domainrag_completion_tokens_total", model=LLM) == usage["completion_tokens"] > 0
    assert moved(before, after, "domainrag_time_to_first_token_seconds_count", model=LLM) == 1
    route = "/v1/chat/completions"
    assert moved(before, after, "domainrag_http_requests_total", method="POST", route=route, status="200") == 1
    # plain chat retrieves nothing
    assert moved(before, after, "domainrag_retrieval_stage_seconds_count", stage="total") == 0


def test_batch_size_is_recorded_in_every_live_api(client: TestClient, served_ws) -> None:
    with TestClient(create_api(served_ws, require_keys=False)) as other:
        record_batch_size("m", 3)
        record_batch_size("m", 5)
        for c in (client, other):
            samples = scrape(c)
            assert value(samples, "domainrag_batch_size_count", model="m") == 2
            assert value(samples, "domainrag_batch_size_sum", model="m") == 8
            assert value(samples, "domainrag_batch_running", model="m") == 5


def test_apis_keep_their_own_registries(served_ws) -> None:
    with TestClient(create_api(served_ws, require_keys=False)) as a, \
            TestClient(create_api(served_ws, require_keys=False)) as b:
        for _ in range(3):
            a.get("/healthz")
        healthz = {"method": "GET", "route": "/healthz", "status": "200"}
        assert value(scrape(a), "domainrag_http_requests_total", **healthz) == 3
        assert value(scrape(b), "domainrag_http_requests_total", **healthz) == 0


def test_metrics_need_a_star_key_once_keys_are_required(served_ws, openai_error) -> None:
    from domainrag.serving.keys import create_key

    star, _ = create_key(served_ws, "*")
    docs, _ = create_key(served_ws, "docs")
    try:
        with TestClient(create_api(served_ws)) as c:
            openai_error(c.get("/metrics"), 401)
            assert openai_error(c.get("/metrics", headers={"Authorization": f"Bearer {docs}"}), 403)["code"] == \
                "admin_key_required"
            samples = scrape(c, {"Authorization": f"Bearer {star}"})
            labels = {"method": "GET", "route": "/metrics"}
            assert value(samples, "domainrag_http_requests_total", status="401", **labels) == 1
            assert value(samples, "domainrag_http_errors_total", route="/metrics", status="403") == 1
    finally:
        for record in served_ws.catalog.list("key"):
            served_ws.catalog.delete("key", record["name"])
