"""The bounded generation pool: 503 with Retry-After when full, slots back after JSON and streamed answers."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from domainrag.serving.api import create_api

pytestmark = pytest.mark.integration


def test_overload_is_503_with_retry_after(served_ws, openai_error) -> None:
    api = create_api(served_ws, require_keys=False, max_concurrent=1, queue_timeout=0.1)
    with TestClient(api) as client:
        slot = api.state.limiter.try_acquire()
        assert slot is not None
        busy = client.post("/v1/apps/strict/completion", json={"query": "warranty?"})
        err = openai_error(busy, 503)
        assert err["code"] == "server_overloaded" and int(busy.headers["retry-after"]) >= 1
        slot.release()
        assert client.post("/v1/apps/strict/completion", json={"query": "warranty?"}).status_code == 200
        # the stream released its slot too
        assert client.post("/v1/apps/strict/completion", json={"query": "warranty?", "stream": True}).status_code == 200
        assert api.state.limiter.try_acquire() is not None
